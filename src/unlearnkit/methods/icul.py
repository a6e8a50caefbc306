"""ICUL: in-context unlearning, a fixed context prepended to every input; no weight changes."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..engines.loop import LoopStats
from ..errors import ConfigError, ModelDataMismatchError
from ..utils import derive_seed
from .base import Method, UnlearnResult, hp, register

IGNORE = -100
ANSWER_SOURCES = ("perturbed", "idk")


class _ContextCache:
    """What :class:`InContextModel` hands back as ``past_key_values``: the base model's KV
    cache of ``[context, input]`` and the combined attention mask so far. Pass it back
    unchanged with the next tokens (incremental decoding, as ``decode_batch`` does)."""

    def __init__(self, past, mask: torch.Tensor):
        self.past, self.mask = past, mask

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return int(self.mask.shape[1])


class InContextModel(nn.Module):
    """A causal LM that sees a fixed context before every input.

    The context is a sequence of segments (whole QA examples, each ending with eos)
    stored as persistent buffers, so ``state_dict`` = the base model's weights (under
    ``model.``) + ``context_ids`` ``(K,)`` (padded to a fixed capacity), ``segment_ends``
    ``(S,)`` (end offset of each segment in ``context_ids``), ``segment_forget`` ``(S,)``
    (whether a segment is a forget example) and ``generation_room`` (positions kept free
    for generated tokens).

    ``forward(input_ids, attention_mask)`` runs the base model on ``[context, input]`` per
    row and returns logits ``(B, T, V)`` aligned with the *original* input (the context
    positions are stripped). Padding is handled per row: a row's context is placed
    immediately before its own tokens (rows are left-aligned into one batch), position ids
    count attended tokens only (any ``position_ids`` given are recomputed the same way),
    and logits at a row's trailing padding are 0. The context is shortened, never the
    input, to fit ``config.max_position_embeddings`` (less ``generation_room`` when
    ``use_cache`` asks for incremental decoding): whole segments are dropped, keeping
    forget examples first (those sharing most tokens with the row's input first), then
    retain examples, in their original order. An input longer than the context window on
    its own raises :class:`ModelDataMismatchError`. Each row's context depends only on the
    row, so its logits do not depend on the rest of the batch. With ``use_cache=True`` the
    returned ``past_key_values`` (a :class:`_ContextCache`) continues decoding: later calls
    take the new tokens and the caller's attention mask over everything so far.
    """

    def __init__(
        self,
        model: nn.Module,
        context_ids: torch.Tensor,
        segment_ends: torch.Tensor,
        segment_forget: torch.Tensor,
        generation_room: int = 0,
    ):
        super().__init__()
        self.model = model
        self.register_buffer("context_ids", torch.as_tensor(context_ids).long().reshape(-1))
        self.register_buffer("segment_ends", torch.as_tensor(segment_ends).long().reshape(-1))
        self.register_buffer("segment_forget", torch.as_tensor(segment_forget).bool().reshape(-1))
        self.register_buffer("generation_room", torch.tensor(int(generation_room), dtype=torch.long))
        if self.segment_ends.shape != self.segment_forget.shape:
            raise ConfigError("segment_ends and segment_forget must have one entry per segment")

    # ------------------------------------------------------------------ delegation
    @property
    def config(self):
        return self.model.config

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module | None:
        return self.model.get_output_embeddings()

    @property
    def max_positions(self) -> int | float:
        n = getattr(self.config, "max_position_embeddings", None)
        return math.inf if n is None else int(n)

    @property
    def pad_token_id(self) -> int:
        pad = getattr(self.config, "pad_token_id", None)
        return 0 if pad is None else int(pad)

    # ------------------------------------------------------------------ context
    def segments(self) -> list[tuple[int, int, bool]]:
        """``(start, end, is_forget)`` of every context segment."""
        ends = self.segment_ends.tolist()
        starts = [0] + ends[:-1]
        return [(s, e, bool(f)) for s, e, f in zip(starts, ends, self.segment_forget.tolist()) if e > s]

    def context_for(self, tokens: torch.Tensor, budget: int | float) -> torch.Tensor:
        """The context ids placed before ``tokens`` (one row's real tokens) in ``budget`` positions."""
        segs = self.segments()
        ctx = self.context_ids
        if sum(e - s for s, e, _ in segs) > budget:
            row = set(tokens.tolist())
            forget = sorted((g for g in segs if g[2]), key=lambda g: -len(row & set(ctx[g[0] : g[1]].tolist())))
            keep, used = [], 0
            for g in forget + [g for g in segs if not g[2]]:
                if used + g[1] - g[0] <= budget:
                    keep.append(g)
                    used += g[1] - g[0]
            segs = sorted(keep)
        if not segs:
            return ctx[:0]
        return torch.cat([ctx[s:e] for s, e, _ in segs])

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        past_key_values: _ContextCache | None = None,
        use_cache: bool | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs,
    ):
        from transformers.modeling_outputs import CausalLMOutputWithPast

        for k in ("inputs_embeds", "output_hidden_states", "output_attentions"):
            if kwargs.pop(k, None) not in (None, False):
                raise ConfigError(f"InContextModel does not support {k}: it returns aligned logits only")
        b, t = input_ids.shape
        dev = input_ids.device
        am = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(dev)
        if past_key_values is not None:  # incremental decoding: only the new tokens
            if not isinstance(past_key_values, _ContextCache):
                raise ConfigError("pass back the past_key_values that InContextModel returned")
            mask = torch.cat([past_key_values.mask, am[:, -t:]], 1)
            out = self.model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=(mask.cumsum(1) - 1).clamp_min(0)[:, -t:],
                past_key_values=past_key_values.past,
                use_cache=True,
                **kwargs,
            )
            return CausalLMOutputWithPast(logits=out.logits, past_key_values=_ContextCache(out.past_key_values, mask))
        steps = torch.arange(1, t + 1, device=dev)
        lengths = (am.ne(0) * steps).amax(1).tolist()  # up to the last attended token
        attended = am.ne(0).sum(1).tolist()
        if max(attended, default=0) > self.max_positions:
            raise ModelDataMismatchError(
                f"an input has {max(attended)} tokens, more than the model's context of "
                f"{self.max_positions}, before any in-context example: shorten the input"
            )
        room = int(self.generation_room) if use_cache else 0
        ctxs = [
            self.context_for(input_ids[i, :n][am[i, :n].ne(0)], self.max_positions - a - room)
            for i, (n, a) in enumerate(zip(lengths, attended))
        ]
        width = max(len(c) + n for c, n in zip(ctxs, lengths)) or 1
        ids = torch.full((b, width), self.pad_token_id, dtype=input_ids.dtype, device=dev)
        mask = torch.zeros((b, width), dtype=am.dtype, device=dev)
        for i, (c, n) in enumerate(zip(ctxs, lengths)):  # left-aligned: [pad, context, input]
            s = width - n - len(c)
            ids[i, s : s + len(c)], mask[i, s : s + len(c)] = c.to(dev), 1
            ids[i, width - n :], mask[i, width - n :] = input_ids[i, :n], am[i, :n]
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=(mask.cumsum(1) - 1).clamp_min(0),
            use_cache=bool(use_cache),
            **kwargs,
        )
        pos = torch.arange(t, device=dev)
        n = torch.tensor(lengths, device=dev)[:, None]
        idx = (width - n + pos).clamp_max(width - 1).to(out.logits.device)
        logits = out.logits.gather(1, idx[..., None].expand(b, t, out.logits.shape[-1]))
        logits = logits * (pos < n)[..., None].to(logits.device, logits.dtype)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                labels[:, 1:].reshape(-1).to(logits.device),
                ignore_index=IGNORE,
            )
        past = _ContextCache(out.past_key_values, mask) if use_cache else None
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=past)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        """The base model's ``generate`` on ``[context, prompt]`` per row (left-padded, the
        prompt's own padding removed); returns ``input_ids`` followed by the new tokens, as
        Hugging Face's ``generate`` does. The context is shortened to leave room for
        ``max_new_tokens``."""
        am = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(input_ids.device)
        new = int(kwargs.get("max_new_tokens") or 0)
        rows = [input_ids[i][am[i].ne(0)] for i in range(len(input_ids))]
        if any(len(r) + new > self.max_positions for r in rows):
            raise ModelDataMismatchError(
                f"a prompt plus max_new_tokens exceeds the model's context of {self.max_positions}: shorten the prompt"
            )
        seqs = [torch.cat([self.context_for(r, self.max_positions - len(r) - new).to(r.device), r]) for r in rows]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_token_id, dtype=input_ids.dtype, device=input_ids.device)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(seqs):
            ids[i, width - len(s) :], mask[i, width - len(s) :] = s, 1
        kwargs.setdefault("pad_token_id", self.pad_token_id)
        out = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        return torch.cat([input_ids, out[:, width:].to(input_ids.device)], 1)


@dataclass
class ICULParams:
    n_retain: int = hp(4, "correctly answered retain examples placed after the forget examples")
    answer: str = hp(
        "perturbed",
        "wrong answer given to each forget question: perturbed (the row's "
        "perturbed answer, task.eval_sets['forget@pert0'], when the task has "
        "one, else idk) or idk",
    )
    idk_answer: str = hp("I don't know.", "the answer used for forget questions with answer=idk")
    generation_room: int = hp(
        48,
        "positions kept free for generated tokens when decoding with the "
        "KV cache (the context is shortened to leave them)",
    )

    def __post_init__(self) -> None:
        if self.n_retain < 0:
            raise ConfigError(f"icul: n_retain must be >= 0, not {self.n_retain}")
        if self.answer not in ANSWER_SOURCES:
            raise ConfigError(f"icul: answer must be one of {', '.join(ANSWER_SOURCES)}, not {self.answer!r}")
        if self.generation_room < 0:
            raise ConfigError(f"icul: generation_room must be >= 0, not {self.generation_room}")
        if not str(self.idk_answer).strip():
            raise ConfigError("icul: idk_answer must be non-empty text")


def _tokens(data, i: int) -> torch.Tensor:
    return data.inputs[i, : int(data.attention_mask[i].sum())]


@register
class ICUL(Method):
    """In-Context Unlearning (Pawelczyk, Neel & Lakkaraju 2024, "In-Context Unlearning:
    Language Models as Few Shot Unlearners", ICML): no weight changes; every query is
    preceded by a fixed context

    ``[x_f1, y~_f1] ... [x_fK, y~_fK]  [x_1, y_1] ... [x_s, y_s]  [query]``

    the forget points with *flipped* labels ``y~`` followed by ``s`` correctly labelled
    training points drawn at random. The paper flips the class label of a
    classification prompt; for question answering the flip becomes a wrong answer: the
    row's perturbed answer (``task.eval_sets["forget@pert0"]``, row-aligned with the forget
    set) when the task has one, else ``"I don't know."``; the correct points are
    ``n_retain`` retain examples (seeded). Each example is the task's encoded QA sequence
    (template, answer, eos).

    Returns an :class:`InContextModel` around an unchanged copy of the original: its
    forward takes the usual ``input_ids`` / ``attention_mask`` and returns logits aligned
    with them, so metrics run on it unchanged; its ``state_dict`` holds the weights and the
    context, and :meth:`model_template` builds the matching shape to reload it. Incremental
    decoding with ``use_cache`` (the evaluation's greedy decoder) keeps ``generation_room``
    positions free for the answer; ``InContextModel.generate`` wraps Hugging Face's.

    Departures: the label flip adapted to generation (above); when the model's context
    window cannot hold all of it, whole examples are dropped per query, keeping the forget
    examples that share most tokens with the query (see :class:`InContextModel`); the
    paper's models are 1B+ pretrained LMs with an in-context learning ability the tiny test
    models lack, there the context acts mostly as a distraction that also moves the
    retain answers. Cost: no optimiser step and no forward pass at unlearning time
    (``steps = 0``); ``extra["context_tokens"]`` is what every later query pays on top.
    """

    name = "icul"
    summary = "in-context unlearning: forget questions with wrong answers prepended; no weight change"
    modalities = ("causal_lm",)
    Params = ICULParams
    citation = "Pawelczyk, Neel & Lakkaraju 2024 (ICML), In-Context Unlearning: Language Models as Few Shot Unlearners"
    uses_lora = False
    contract_exempt = {
        "changes_model": "ICUL changes no weight; its outputs change (the context is part of the model)",
        "step_budget": "ICUL takes no optimiser step and has no step budget",
        "divergence": "ICUL runs no optimisation (no learning rate)",
        "cost_accounting": "ICUL runs no training pass; its cost is the context every query carries",
        "moves_forget:causal_lm": (
            "in-context unlearning needs a model that learns in context; the tiny test LM, trained "
            "on isolated QA rows, does not: its forget NLL rises by ~0.7 nats, its retain NLL by more"
        ),
    }

    # ------------------------------------------------------------------ context
    def _forget_segments(self, task) -> tuple[list[torch.Tensor], str]:
        forget = task.forget
        pert = getattr(task, "eval_sets", {}).get("forget@pert0")
        ids = forget.example_ids.tolist()
        if self.params.answer == "perturbed" and pert is not None and all(pert.has(e) for e in ids):
            pert = pert.select(ids)
            return [_tokens(pert, i) for i in range(len(pert))], "perturbed"
        tok = getattr(task.adapter, "tokenizer", None)
        if tok is None or tok.eos_token_id is None:
            raise ConfigError(
                "icul: the task has no perturbed answers and its adapter no tokenizer "
                "to encode the idk answer; give the adapter the data's tokenizer"
            )
        answer = tok(" " + self.params.idk_answer.strip(), add_special_tokens=False)["input_ids"]
        answer = torch.tensor(answer + [tok.eos_token_id], dtype=torch.long)
        segs = []
        for i in range(len(forget)):
            answer_pos = (forget.labels[i] != IGNORE).nonzero()
            q_len = int(answer_pos[0]) if len(answer_pos) else int(forget.attention_mask[i].sum())
            segs.append(torch.cat([forget.inputs[i, :q_len], answer]))
        return segs, "idk"

    def _retain_count(self, task) -> int:
        return min(self.params.n_retain, len(task.retain))

    def _capacity(self, task, forget_segs) -> int:
        """Context length that any seed's choice of retain examples fits in (the buffer size)."""
        lengths = sorted((int(m.sum()) for m in task.retain.attention_mask), reverse=True)
        return sum(len(s) for s in forget_segs) + sum(lengths[: self._retain_count(task)])

    def build_context(self, task, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
        """``(context_ids, segment_ends, segment_forget, answer_source)`` for an InContextModel."""
        forget_segs, source = self._forget_segments(task)
        gen = torch.Generator().manual_seed(derive_seed(seed, "icul", "retain") % (2**63))
        pick = torch.randperm(len(task.retain), generator=gen)[: self._retain_count(task)].tolist()
        segs = forget_segs + [_tokens(task.retain, i) for i in pick]
        flat = torch.cat(segs) if segs else torch.zeros(0, dtype=torch.long)
        cap = self._capacity(task, forget_segs)
        pad = int(task.forget.meta.get("pad_token_id", 0))
        ids = torch.cat([flat, torch.full((cap - len(flat),), pad, dtype=torch.long)])
        ends = torch.tensor([len(s) for s in segs], dtype=torch.long).cumsum(0)
        is_forget = torch.tensor([True] * len(forget_segs) + [False] * len(pick))
        return ids, ends, is_forget, source

    # ------------------------------------------------------------------ method
    def unlearn(self, task, seed: int = 0, progress: bool = False) -> UnlearnResult:
        self._prepare(task)
        t0 = time.perf_counter()
        ids, ends, is_forget, source = self.build_context(task, seed)
        model = (
            InContextModel(copy.deepcopy(task.original), ids, ends, is_forget, self.params.generation_room)
            .to(task.device)
            .eval()
        )
        cost = LoopStats(wall_time_s=time.perf_counter() - t0)
        used = int(ends[-1]) if len(ends) else 0
        extra = {
            "context_tokens": used,
            "forget_examples": int(is_forget.sum()),
            "retain_examples": int((~is_forget).sum()),
            "wrong_answers": source,
        }
        return UnlearnResult(model, cost, self.name, dataclasses.asdict(self.params), seed, extra)

    def model_template(self, task) -> nn.Module:
        forget_segs, _ = self._forget_segments(task)
        n = len(forget_segs) + self._retain_count(task)
        return InContextModel(
            task.model_factory(task.seed),
            torch.zeros(self._capacity(task, forget_segs)),
            torch.zeros(n),
            torch.zeros(n, dtype=torch.bool),
        ).to(task.device)
