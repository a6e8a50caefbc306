"""The causal-language-model adapter: question-answer data, answer-only losses, LoRA.

Methods and metrics talk to a model through an adapter (see ``classifier.py``). For a
causal LM an *example* is one question-answer pair, and the quantities are over the
answer tokens only (TOFU, Maini et al. 2024, sec. 3: the loss on the question is masked
out):

* ``per_example_loss`` = mean answer-token negative log-likelihood per example,
  ``-(1/|y|) sum_t log p(y_t | x, y_<t)``, shape ``(B,)``;
* ``log_likelihood`` = summed answer-token log-probability ``log p(y | x)``, the
  sequence-level quantity NPO (Zhang et al. 2024, eq. 3) and SimNPO compare, so
  ``methods/losses.npo_loss`` / ``simnpo_loss`` work unchanged.

Data: :func:`encode_qa` turns QA rows into a :class:`TokenExampleSet`, an
:class:`~unlearnkit.data.ExampleSet` whose ``inputs`` are token ids ``(N, T)`` and whose
``labels`` are the target tokens ``(N, T)`` with ``-100`` on the question and padding.
Its batches carry ``input_ids``, ``attention_mask``, ``labels`` and ``index``, plus the
aliases ``x`` (= ``input_ids``) and ``y`` (= ``labels``, the same tensors), so
``run_loop``'s counting and methods written against ``batch["y"]`` run unchanged.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...data.dataset import ExampleSet
from ...errors import ConfigError, DataError, ModelDataMismatchError

IGNORE = -100
DEFAULT_TEMPLATE = "Question: {question}\nAnswer:"


@dataclass
class TokenExampleSet(ExampleSet):
    """Tokenised QA examples: ``inputs`` ``(N, T)`` token ids, ``labels`` ``(N, T)`` targets
    (``-100`` = no loss), ``attention_mask`` ``(N, T)``. ``num_classes`` is unused (0).
    Selection (``select``/``without``/``ids_of_subjects``) is inherited from ExampleSet."""

    attention_mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.inputs = torch.as_tensor(self.inputs).long()
        self.labels = torch.as_tensor(self.labels).long()
        if self.attention_mask is None:
            self.attention_mask = torch.ones_like(self.inputs)
        self.attention_mask = torch.as_tensor(self.attention_mask).long()
        self.example_ids = np.asarray([str(e) for e in self.example_ids], dtype=object)
        n = len(self.example_ids)
        if (
            self.inputs.ndim != 2
            or self.labels.shape != self.inputs.shape
            or self.attention_mask.shape != self.inputs.shape
            or len(self.inputs) != n
        ):
            raise DataError("input_ids, labels and attention_mask must all be (N, T) with one example id per row")
        if len(set(self.example_ids.tolist())) != n:
            raise DataError("example_ids must be unique")
        if self.subject_ids is not None:
            self.subject_ids = np.asarray([str(s) for s in self.subject_ids], dtype=object)
        self.num_classes = 0
        self._index = {eid: i for i, eid in enumerate(self.example_ids.tolist())}

    def __len__(self) -> int:
        return len(self.inputs)

    def take(self, positions, name: str | None = None) -> "TokenExampleSet":
        p = np.asarray(positions, dtype=np.int64)
        pos = torch.as_tensor(p)
        return TokenExampleSet(
            self.inputs[pos],
            self.labels[pos],
            self.example_ids[p],
            None if self.subject_ids is None else self.subject_ids[p],
            None if self.groups is None else np.asarray(self.groups)[p],
            name=name or self.name,
            meta=dict(self.meta),
            attention_mask=self.attention_mask[pos],
        )

    def with_labels(self, labels: torch.Tensor, name: str | None = None) -> "TokenExampleSet":
        return TokenExampleSet(
            self.inputs,
            labels,
            self.example_ids,
            self.subject_ids,
            self.groups,
            name=name or self.name,
            meta=dict(self.meta),
            attention_mask=self.attention_mask,
        )

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[dict]:
        """Batches ``{input_ids, attention_mask, labels, index, x, y}``, trimmed to the
        longest sequence in the batch (right padding)."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            am = self.attention_mask[idx]
            t = max(1, int(am.sum(1).max()))
            ids, lab = self.inputs[idx, :t], self.labels[idx, :t]
            yield {"input_ids": ids, "attention_mask": am[:, :t], "labels": lab, "index": idx, "x": ids, "y": lab}

    @staticmethod
    def concat(sets: Sequence["TokenExampleSet"], name: str) -> "TokenExampleSet":
        if not sets:
            raise DataError("nothing to concatenate")
        t = max(s.inputs.shape[1] for s in sets)

        def pad(x: torch.Tensor, v: int) -> torch.Tensor:
            return F.pad(x, (0, t - x.shape[1]), value=v)

        pad_id = int(sets[0].meta.get("pad_token_id", 0))
        subj = np.concatenate([s.subject_ids for s in sets]) if all(s.subject_ids is not None for s in sets) else None
        return TokenExampleSet(
            torch.cat([pad(s.inputs, pad_id) for s in sets]),
            torch.cat([pad(s.labels, IGNORE) for s in sets]),
            np.concatenate([s.example_ids for s in sets]),
            subj,
            name=name,
            meta=dict(sets[0].meta),
            attention_mask=torch.cat([pad(s.attention_mask, 0) for s in sets]),
        )


def encode_qa(
    rows: Sequence[dict],
    tokenizer,
    max_length: int,
    chat_template: str | None = None,
    answer_key: str = "answer",
    name: str = "qa",
) -> TokenExampleSet:
    """Tokenise QA rows (``example_id``, ``question``, ``answer``, optional ``subject_id``).

    The sequence is ``template(question)`` then ``" " + answer + eos``; the prompt is
    tokenised separately from the answer so the boundary is exact, and only answer
    tokens (with the eos) get labels. ``chat_template`` is a format string with a
    ``{question}`` field (default ``"Question: {question}\\nAnswer:"``). ``answer_key``
    picks another answer field (e.g. ``paraphrased_answer``). Rows are right-padded to
    the longest; nothing is truncated: a row longer than ``max_length`` (the model's
    context) raises DataError naming it.
    """
    template = chat_template or DEFAULT_TEMPLATE
    if "{question}" not in template:
        raise ConfigError("chat_template must contain a {question} field")
    if not rows:
        raise DataError("no QA rows to encode")
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ConfigError("the tokenizer needs pad and eos tokens: set tokenizer.pad_token / eos_token")
    seqs, labs, ids, subj = [], [], [], []
    for i, r in enumerate(rows):
        eid = str(r.get("example_id", f"{name}-{i:06d}"))
        answer = str(r.get(answer_key) or "").strip()
        if not answer:
            raise DataError(f"example {eid} has an empty {answer_key!r}: drop it or fill it in")
        q = tokenizer(template.format(question=r["question"]), add_special_tokens=False)["input_ids"]
        a = tokenizer(" " + answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        if len(q) + len(a) > max_length:
            raise DataError(
                f"example {eid} has {len(q) + len(a)} tokens, more than the context of "
                f"{max_length}: shorten it or use a model with a longer context"
            )
        seqs.append(q + a)
        labs.append([IGNORE] * len(q) + a)
        ids.append(eid)
        subj.append(r.get("subject_id"))
    t = max(len(s) for s in seqs)
    pad = tokenizer.pad_token_id
    inputs = torch.tensor([s + [pad] * (t - len(s)) for s in seqs])
    labels = torch.tensor([lab + [IGNORE] * (t - len(lab)) for lab in labs])
    mask = torch.tensor([[1] * len(s) + [0] * (t - len(s)) for s in seqs])
    # rows about nobody (world facts) get the empty subject id beside rows about people
    subjects = None if all(s is None for s in subj) else np.asarray([s or "" for s in subj], dtype=object)
    return TokenExampleSet(
        inputs,
        labels,
        np.asarray(ids, dtype=object),
        subjects,
        name=name,
        meta={"pad_token_id": pad, "vocab_size": len(tokenizer), "template": template},
        attention_mask=mask,
    )


def replace_answers(
    data: TokenExampleSet, answers: Sequence[str], tokenizer, max_length: int | None = None
) -> TokenExampleSet:
    """``data`` with each example's answer replaced by ``answers[i]`` (e.g. "I don't know"
    answers for DPO), keeping the question, the example ids, subjects and groups.

    The prompt is the tokens before the first answer label; the new answer is encoded as
    :func:`encode_qa` does (``" " + answer.strip()`` then eos, labels on the answer only),
    so ``replace_answers(encode_qa(rows), other)`` equals ``encode_qa`` of the rows with the
    other answers. Rows are right-padded to the longest; a row longer than ``max_length``
    (the model's context), an empty answer or a row with no answer raise DataError.
    """
    if len(answers) != len(data):
        raise DataError(f"replace_answers got {len(answers)} answers for {len(data)} examples: give one per example")
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ConfigError("the tokenizer needs pad and eos tokens: set tokenizer.pad_token / eos_token")
    seqs, labs = [], []
    for i, answer in enumerate(answers):
        eid = data.example_ids[i]
        answer = str(answer or "").strip()
        if not answer:
            raise DataError(f"the new answer of example {eid} is empty: give a non-empty answer")
        is_answer = (data.labels[i] != IGNORE).nonzero()
        if len(is_answer) == 0:
            raise DataError(f"example {eid} has no answer tokens to replace")
        q = data.inputs[i, : int(is_answer[0])].tolist()
        a = tokenizer(" " + answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        if max_length is not None and len(q) + len(a) > max_length:
            raise DataError(
                f"example {eid} with its new answer has {len(q) + len(a)} tokens, more than the "
                f"context of {max_length}: shorten the answer"
            )
        seqs.append(q + a)
        labs.append([IGNORE] * len(q) + a)
    t = max(len(s) for s in seqs)
    pad = tokenizer.pad_token_id
    return TokenExampleSet(
        torch.tensor([s + [pad] * (t - len(s)) for s in seqs]),
        torch.tensor([lab + [IGNORE] * (t - len(lab)) for lab in labs]),
        data.example_ids,
        data.subject_ids,
        data.groups,
        name=data.name,
        meta=dict(data.meta),
        attention_mask=torch.tensor([[1] * len(s) + [0] * (t - len(s)) for s in seqs]),
    )


def _forward_takes(cls: type, name: str) -> bool:
    try:
        return name in inspect.signature(cls.forward).parameters
    except (TypeError, ValueError, AttributeError):
        return False


def _takes_logits_to_keep(model: nn.Module) -> bool:
    """Whether ``model``'s forward is a transformers causal LM's that takes ``logits_to_keep``
    (directly, or through a peft wrapper, which passes its keywords to the base model)."""
    if _forward_takes(type(model), "logits_to_keep"):
        return True
    base = getattr(model, "get_base_model", None)
    if callable(base) and type(model).__module__.startswith("peft"):
        return _forward_takes(type(base()), "logits_to_keep")
    return False


@dataclass
class CausalLMAdapter:
    """Answer-token losses and log-likelihoods for Hugging Face causal LMs.

    Args:
        tokenizer: the tokenizer the data was encoded with (its size is checked against
            the model's embedding).
        device: where batches are moved before the forward pass.
    """

    tokenizer: object = None
    device: torch.device | str = "cpu"
    modality: str = "causal_lm"

    def to_device(self, batch: dict) -> dict:
        return {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}

    def batch_size(self, batch: dict) -> int:
        """Examples (question-answer rows) in the batch."""
        return int(batch["input_ids"].shape[0])

    def representations(self, model: nn.Module, batch: dict, layer: int | None = None) -> torch.Tensor:
        """Hidden state of each example, shape ``(B, D)``: the mean over its attended tokens of
        hidden layer ``layer`` (``output_hidden_states`` index; default the last)."""
        ids = batch["input_ids"].to(self.device)
        am = batch.get("attention_mask")
        am = torch.ones_like(ids) if am is None else am.to(self.device)
        hidden = model(input_ids=ids, attention_mask=am, output_hidden_states=True).hidden_states
        h = hidden[-1 if layer is None else layer].float()
        w = am[..., None].to(h.dtype)
        return (h * w).sum(1) / w.sum(1).clamp_min(1)

    def logits(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """Next-token logits, shape ``(B, T, V)``."""
        ids = batch["input_ids"].to(self.device)
        am = batch.get("attention_mask")
        return model(input_ids=ids, attention_mask=None if am is None else am.to(self.device)).logits

    @classmethod
    def _token_log_probs(cls, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """From full ``(B, T, V)`` logits; the log-softmax runs on the answer positions only
        (it is row-wise, so the values are the same as over every position)."""
        labels = labels.to(logits.device)
        return cls._flat_token_log_probs(logits[:, :-1][labels[:, 1:] != IGNORE], labels)

    def answer_logits(self, model: nn.Module, batch: dict, labels: torch.Tensor | None = None) -> torch.Tensor | None:
        """The next-token logits of the answer predictions only, ``(N, V)``: position ``t - 1``
        of each row wherever ``labels[:, t]`` is an answer token, in row-major order (the
        order of ``labels[:, 1:][labels[:, 1:] != -100]``).

        The vocabulary projection (and, downstream, the log-softmax and its backward) then
        runs on the answer positions only instead of all ``B * T``: transformers' boolean
        ``logits_to_keep`` mask, which slices the hidden states before ``lm_head`` (and before
        any logit soft-capping, so the values are the full logits' rows). ``None`` where the
        model does not take that argument (it then returns all ``(B, T, V)`` logits, or
        refuses the keyword), and for any model that is not a transformers causal LM taking
        ``logits_to_keep`` itself (or a peft wrapper of one): a wrapper that changes the
        sequence (ICUL's in-context model) must see its own inputs only. Callers then fall
        back to :meth:`logits`."""
        if not _takes_logits_to_keep(model):
            return None
        labels = (batch["labels"] if labels is None else labels).to(self.device)
        keep = F.pad(labels[:, 1:] != IGNORE, (0, 1), value=False)
        ids = batch["input_ids"].to(self.device)
        am = batch.get("attention_mask")
        try:
            out = model(
                input_ids=ids, attention_mask=None if am is None else am.to(self.device), logits_to_keep=keep
            ).logits
        except TypeError:
            return None
        return out if out.ndim == 2 else None

    def token_log_probs(
        self, model: nn.Module, batch: dict, labels: torch.Tensor | None = None, logits: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p(token_t | tokens_<t), mask)``, both ``(B, T)`` aligned with ``labels``;
        ``mask`` marks answer tokens and the log-probs are 0 elsewhere. Without ``logits``,
        only the answer positions' logits are computed (:meth:`answer_logits`); the values
        are those of the full logits up to float rounding of the smaller projection."""
        labels = batch["labels"] if labels is None else labels
        if logits is None:
            flat = self.answer_logits(model, batch, labels)
            if flat is not None:
                return self._flat_token_log_probs(flat, labels.to(flat.device))
            logits = self.logits(model, batch)
        return self._token_log_probs(logits, labels)

    @staticmethod
    def _flat_token_log_probs(flat: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_token_log_probs` from :meth:`answer_logits`' ``(N, V)`` rows."""
        mask = labels != IGNORE
        tgt = labels[:, 1:][mask[:, 1:]]
        lp_flat = torch.log_softmax(flat.float(), -1).gather(-1, tgt[:, None])[:, 0]
        lp = lp_flat.new_zeros(mask[:, 1:].shape).masked_scatter(mask[:, 1:], lp_flat)
        return F.pad(lp, (1, 0)), mask

    def sequence_log_likelihood(
        self, model: nn.Module, batch: dict, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``log p(answer | question)`` of each row of ``batch``, ``(B,)``: the same number as
        ``log_likelihood(logits(model, batch), labels)`` from the answer positions' logits only."""
        return self.token_log_probs(model, batch, labels)[0].sum(1)

    #: a forward pass's fixed cost in padded tokens (:meth:`sequence_stats`' grouping): on a
    #: CPU one more pass costs about as much as ~100 more tokens; on a GPU padding is nearly free
    group_overhead_tokens = {"cpu": 128}
    GROUP_OVERHEAD_OTHER = 4096

    def sequence_stats(self, model: nn.Module, batches: Sequence[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """For each of ``batches``, ``(log p(answer | question), |answer|)`` of its rows, both
        ``(B,)``: ``sequence_log_likelihood`` and ``answer_length``, so ``per_example_loss`` is
        ``-s / n.clamp_min(1)``. The rows of all the batches go through the model together,
        sorted by length and split into the groups that minimise the padded tokens plus a
        fixed cost per forward pass (``group_overhead_tokens``), each group trimmed to its
        longest row. A causal model's row does not depend on the other rows of its pass nor on
        padding after its last token, so the values are those of one pass per batch up to the
        float rounding of other matrix shapes; the training step costs fewer tokens (a
        32-row batch is padded to its longest row, often twice its median). Batches without
        an attention mask, or under ``vmap``, go through one pass each."""
        plain = any(
            "attention_mask" not in b
            or b["attention_mask"] is None
            or torch._C._functorch.is_batchedtensor(b["input_ids"])
            for b in batches
        )
        if plain:
            out = []
            for b in batches:
                lp, mask = self.token_log_probs(model, b)
                out.append((lp.sum(1), mask.sum(1)))
            return out
        sizes = [int(b["input_ids"].shape[0]) for b in batches]
        t_all = max(int(b["input_ids"].shape[1]) for b in batches)

        def padded(b: dict, k: str, v: int) -> torch.Tensor:
            x = b[k].to(self.device)
            return F.pad(x, (0, t_all - x.shape[1]), value=v)

        ids = torch.cat([padded(b, "input_ids", 0) for b in batches])
        labels = torch.cat([padded(b, "labels", IGNORE) for b in batches])
        am = torch.cat([padded(b, "attention_mask", 0) for b in batches])
        # each row's length: through its last attended position (any padding side)
        pos = torch.arange(1, t_all + 1, device=am.device)
        lengths = ((am != 0) * pos).amax(1).clamp_min(1).cpu()
        order = torch.argsort(lengths, stable=True)
        groups = _length_groups(
            lengths[order].numpy(),
            self.group_overhead_tokens.get(torch.device(self.device).type, self.GROUP_OVERHEAD_OTHER),
        )
        parts = []
        for a, b_, t in groups:
            rows = order[a:b_].to(ids.device)
            sub = {"input_ids": ids[rows, :t], "labels": labels[rows, :t], "attention_mask": am[rows, :t]}
            parts.append(self.token_log_probs(model, sub)[0].sum(1))
        vals = torch.cat(parts)
        s = vals[torch.argsort(order).to(vals.device)]  # back to the batches' row order
        n = (labels != IGNORE).sum(1).to(s.device)
        return list(zip(s.split(sizes), n.split(sizes)))

    def per_example_loss(
        self, model: nn.Module, batch: dict, labels: torch.Tensor | None = None, logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean answer-token NLL per example, ``(B,)``; ``labels`` override ``batch["labels"]``."""
        lp, mask = self.token_log_probs(model, batch, labels, logits)
        return -lp.sum(1) / mask.sum(1).clamp_min(1)

    def log_likelihood(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``log p(answer | question)`` = summed answer-token log-probability, ``(B,)``."""
        return self._token_log_probs(logits, labels)[0].sum(1)

    def frozen_log_likelihood(self, model: nn.Module, n_rows: int) -> "FrozenLogLikelihood":
        """:class:`FrozenLogLikelihood` of ``model`` (frozen) over an example set of ``n_rows`` rows."""
        return FrozenLogLikelihood(self, model, n_rows)

    def per_example_kl(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """Mean over each example's answer tokens of the next-token ``KL(teacher || student)``,
        shape ``(B,)``: positions ``t - 1`` whose target ``labels[:, t]`` is an answer token
        (``batch["labels"]``), so the question and the padding are left out."""
        labels = batch["labels"].to(student_logits.device)
        mask = (labels[:, 1:] != IGNORE).float()
        kl = F.kl_div(
            F.log_softmax(student_logits[:, :-1].float(), -1),
            F.log_softmax(teacher_logits[:, :-1].float(), -1),
            log_target=True,
            reduction="none",
        ).sum(-1)
        return (kl * mask).sum(1) / mask.sum(1).clamp_min(1)

    @staticmethod
    def answer_length(labels: torch.Tensor) -> torch.Tensor:
        """``|y|`` per example (answer tokens), for length-normalised losses (SimNPO)."""
        return (labels != IGNORE).sum(1)

    @torch.no_grad()
    def answer_accuracy(self, model: nn.Module, data: TokenExampleSet, batch_size: int = 32) -> dict[str, np.ndarray]:
        """Per example: ``token_acc`` (share of answer tokens that are the argmax next
        token given the true prefix) and ``exact`` (all of them are). ``exact`` equals
        greedy-decoding exact match of the answer through its eos: greedy decoding
        reproduces the answer iff every answer token is the argmax after the true prefix
        (ties in the argmax aside)."""
        was = model.training
        model.eval()
        acc, exact = [], []
        for b in data.batches(batch_size):
            logits = self.logits(model, b)
            lab = b["labels"].to(logits.device)
            hit = (logits[:, :-1].argmax(-1) == lab[:, 1:]) & (lab[:, 1:] != IGNORE)
            n = (lab[:, 1:] != IGNORE).sum(1)
            acc.append((hit.sum(1) / n.clamp_min(1)).cpu())
            exact.append((hit.sum(1) == n).cpu())
        model.train(was)
        return {"token_acc": torch.cat(acc).numpy(), "exact": torch.cat(exact).numpy()}

    def check_model(self, model: nn.Module, data: TokenExampleSet) -> None:
        """Raise ModelDataMismatchError if the tokenizer or data do not fit the model."""
        emb = model.get_input_embeddings().num_embeddings
        vocab = len(self.tokenizer) if self.tokenizer is not None else int(data.meta.get("vocab_size", 0))
        if vocab > emb:
            raise ModelDataMismatchError(
                f"the tokenizer has {vocab} tokens but the model embeds only {emb}: use the model's "
                "own tokenizer or resize_token_embeddings"
            )
        if len(data) and int(data.inputs.max()) >= emb:
            raise ModelDataMismatchError(
                f"the data holds token id {int(data.inputs.max())} but the model "
                f"embeds only {emb}: re-encode with the model's tokenizer"
            )
        ctx = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        if ctx is not None and data.inputs.shape[1] > ctx:
            raise ModelDataMismatchError(
                f"sequences of {data.inputs.shape[1]} tokens exceed the model's "
                f"context of {ctx}: encode with max_length={ctx}"
            )


def _length_groups(lengths: np.ndarray, overhead: float) -> list[tuple[int, int, int]]:
    """Contiguous groups ``(start, stop, length)`` of the ascending ``lengths`` that minimise
    ``sum(rows * longest) + overhead * groups`` (a dynamic programme over the distinct lengths)."""
    n = len(lengths)
    ends = np.flatnonzero(np.r_[lengths[1:] != lengths[:-1], True]) + 1  # group ends: after a run
    best = np.zeros(len(ends) + 1)
    cut = np.zeros(len(ends) + 1, dtype=np.int64)
    starts = np.r_[0, ends[:-1]]
    for j, e in enumerate(ends, start=1):
        cost = best[:j] + (e - starts[:j]) * float(lengths[e - 1]) + overhead
        cut[j] = int(np.argmin(cost))
        best[j] = cost[cut[j]]
    out, j = [], len(ends)
    while j > 0:
        i = cut[j]
        out.append((int(starts[i]), int(ends[j - 1]), int(lengths[ends[j - 1] - 1])))
        j = i
    assert out[0][1] == n
    return out[::-1]


class FrozenLogLikelihood:
    """``log p_ref(y | x)`` of the rows of one example set under a frozen model (NPO's
    reference), each row's computed the first time a batch draws it and reused afterwards.

    A frozen model in eval mode on a fixed row gives the same number at every epoch, so
    only the first epoch pays for the reference's forward passes (a batch's rows not yet
    seen go through the reference as one sub-batch trimmed to their longest row). A value
    reused from an earlier batch can differ from recomputing it in the current batch only
    by float rounding (a different batch shape); the first epoch's are the same numbers.
    ``batch["index"]`` must hold the rows' positions in the example set (every
    :meth:`TokenExampleSet.batches` batch does).
    """

    def __init__(self, adapter: CausalLMAdapter, model: nn.Module, n_rows: int):
        self.adapter, self.model = adapter, model
        self.values = torch.zeros(n_rows, device=adapter.device)
        self.have = torch.zeros(n_rows, dtype=torch.bool)  # on the CPU: which rows to compute is a host decision

    def __call__(self, batch: dict) -> tuple[torch.Tensor, int]:
        """``(log p_ref(y|x)`` of the batch's rows ``(B,)``, rows computed now``)``."""
        idx = batch["index"].cpu()
        new = ~self.have[idx]
        n = int(new.sum())
        if n:
            rows = new.nonzero()[:, 0]
            am = batch["attention_mask"][rows.to(batch["attention_mask"].device)]
            t = max(1, int(am.sum(1).max()))
            sub = {k: batch[k][rows.to(batch[k].device)][:, :t] for k in ("input_ids", "labels")}
            sub["attention_mask"] = am[:, :t]
            with torch.no_grad():
                ll = self.adapter.sequence_log_likelihood(self.model, sub)
            pos = idx[rows]
            self.values[pos.to(self.values.device)] = ll.to(self.values.dtype)
            self.have[pos] = True
        return self.values[idx.to(self.values.device)], n


def with_lora(
    model: nn.Module,
    r: int = 8,
    alpha: int | None = None,
    dropout: float = 0.0,
    target_modules: Sequence[str] = ("q_proj", "v_proj"),
) -> nn.Module:
    """Wrap ``model`` with LoRA adapters (Hu et al. 2022: ``W + (alpha / r) B A``, ``B = 0``
    at start) via peft; only the adapter weights require grad afterwards, so every method's
    optimiser (``make_optimizer`` skips frozen parameters) updates the adapters only.
    ``alpha`` defaults to ``2 r``."""
    from peft import LoraConfig, get_peft_model

    if r < 1:
        raise ConfigError("LoRA rank r must be >= 1")
    cfg = LoraConfig(
        r=r, lora_alpha=alpha or 2 * r, lora_dropout=dropout, target_modules=list(target_modules), task_type="CAUSAL_LM"
    )
    return get_peft_model(model, cfg)
