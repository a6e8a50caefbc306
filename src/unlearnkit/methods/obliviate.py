"""OBLIVIATE: mask the forget set's target tokens, distil the rest from the original, keep world facts, through LoRA."""

from __future__ import annotations

import collections
import copy
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..engines.loop import LoopStats, run_loop
from ..errors import ConfigError
from ..utils import derive_seed
from .base import LoopParams, Method, UnlearnResult, hp, register
from .losses import prediction_positions

#: every linear projection of a Llama-style block, the modules OBLIVIATE's LoRA adapts
LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "gate_proj", "down_proj"]
TOKEN_MODES = ("answer", "all")
_WORD = re.compile(r"\w[\w'\-]*")


# --------------------------------------------------------------------------- target tokens
def row_texts(data, tokenizer, answer_only: bool) -> list[str]:
    """Each row's text: its answer tokens (``labels != -100``) or every attended token, decoded."""
    out = []
    for i in range(len(data)):
        keep = (data.labels[i] != -100) if answer_only else data.attention_mask[i].bool()
        out.append(tokenizer.decode(data.inputs[i][keep].tolist(), skip_special_tokens=True))
    return out


def extract_target_words(forget_texts: list[str], retain_texts: list[str]) -> list[str]:
    """The forget set's target words: the words of its answers that occur in no retain text
    (names, places, dates, titles: what is specific to the data to forget), sorted."""
    seen = {w for t in retain_texts for w in _WORD.findall(t)}
    return sorted({w for t in forget_texts for w in _WORD.findall(t)} - seen)


def target_token_ids(
    words: list[str], tokenizer, forget_ids: list[list[int]], retain_ids: list[list[int]], min_ratio: float = 0.0
) -> list[int]:
    """The vocabulary ids of the target words (each word tokenised alone and after a space, as
    it appears inside a text; special tokens left out), sorted. With ``min_ratio > 0`` an id is
    kept only where its relative frequency in the forget answers (``forget_ids``) is at least
    ``min_ratio`` times that in the retain rows (``retain_ids``): with a small vocabulary a
    name splits into pieces every other word uses too, and masking those would mask the
    alphabet."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    ids: set[int] = set()
    for w in words:
        for text in (w, " " + w):
            ids.update(tokenizer(text, add_special_tokens=False)["input_ids"])
    ids -= special
    if min_ratio > 0:
        cf = collections.Counter(t for row in forget_ids for t in row)
        cr = collections.Counter(t for row in retain_ids for t in row)
        nf, nr = max(1, sum(cf.values())), max(1, sum(cr.values()))
        ids = {t for t in ids if cf[t] / nf >= min_ratio * cr[t] / nr and cf[t] > 0}
    return sorted(ids)


def vocabulary_mask(token_ids: list[int], vocab_size: int, device=None) -> torch.Tensor:
    """``m`` over the vocabulary, ``(V,)`` bool: False on the target tokens, True elsewhere."""
    keep = torch.ones(vocab_size, dtype=torch.bool, device=device)
    keep[torch.as_tensor([t for t in token_ids if t < vocab_size], dtype=torch.long, device=device)] = False
    return keep


# --------------------------------------------------------------------------- the three losses
def masked_distribution(logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``q = softmax(stopgrad(z) + log m)``: the model's own next-token distribution with the
    target tokens' probability set to 0 and the rest renormalised, flat ``(N, V)``."""
    z = logits.detach().float().masked_fill(~keep, float("-inf"))
    return torch.softmax(z, -1)


def mask_loss(logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``mean_positions KL( q || softmax(z) )`` with ``q`` of :func:`masked_distribution`.
    Its gradient on the logits is ``softmax(z) - q``: each target token's logit is pushed down
    by its probability, the others up in proportion; 0 once the targets have probability 0."""
    q = masked_distribution(logits, keep)
    return F.kl_div(torch.log_softmax(logits.float(), -1), q, reduction="none").sum(-1).mean()


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the student's and the frozen original's logits, flat ``(N, V)``."""
    return F.mse_loss(student.float(), teacher.detach().float())


def world_fact_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the student against the frozen original's greedy next token at each
    position, flat ``(N, V)``: the original's predictions on general-knowledge text are kept."""
    return F.cross_entropy(student.float(), teacher.detach().argmax(-1))


@dataclass
class ObliviateParams(LoopParams):
    epochs: float = hp(4.0, "passes over the forget set (each step also draws a retain and a world-fact batch)")
    lr: float = hp(3e-4, "learning rate of the LoRA adapters")
    batch_size: int = hp(1, "batch size of each stream")
    optimizer: str = hp("adamw", "sgd, adam or adamw")
    grad_clip: float | None = hp(1.0, "clip the gradient norm to this value")
    distill_weight: float = hp(0.2, "lambda_1: weight of the logit distillation on retain rows")
    world_weight: float = hp(0.7, "lambda_2: weight of the world-fact loss")
    tokens: str = hp("answer", "where the mask loss applies: answer (answer-predicting positions) or all")
    min_ratio: float = hp(
        0.0,
        "keep a target word's token only if it is at least this many times as frequent in the forget "
        "answers as in the retain rows (0: every token of the target words, the paper)",
    )
    lora_r: int = hp(8, "rank of the LoRA adapters")
    lora_alpha: float = hp(16.0, "LoRA scale alpha")
    lora_dropout: float = hp(0.05, "dropout on the LoRA adapters' input")
    target_modules: list = hp(LORA_MODULES, "names of the linear layers that get LoRA adapters")

    def __post_init__(self) -> None:
        if self.distill_weight < 0 or self.world_weight < 0 or self.min_ratio < 0:
            raise ConfigError("obliviate: distill_weight, world_weight and min_ratio must be >= 0")
        if self.tokens not in TOKEN_MODES:
            raise ConfigError(f"obliviate: tokens must be one of {', '.join(TOKEN_MODES)}, not {self.tokens!r}")
        if self.lora_r < 1 or self.lora_alpha <= 0 or not 0 <= self.lora_dropout < 1:
            raise ConfigError("obliviate: lora_r must be >= 1, lora_alpha > 0 and lora_dropout in [0, 1)")
        if not self.target_modules or not all(isinstance(t, str) and t for t in self.target_modules):
            raise ConfigError("obliviate: target_modules must be a non-empty list of module names")


def world_rows(task):
    """The general-knowledge rows the world-fact loss reads: the retain rows about nobody (the
    profiles task's world facts, subject id ""), or the whole retain set where there are none."""
    subj = task.retain.subject_ids
    if subj is not None:
        pos = [i for i, s in enumerate(subj.tolist()) if s == ""]
        if pos:
            return task.retain.take(pos, "world-facts")
    return task.retain


@register
class Obliviate(Method):
    """OBLIVIATE (Xu, Du, Ye and Hu 2025, "OBLIVIATE: Robust and Practical Machine Unlearning
    for Large Language Models", arXiv:2505.04416; official code
    github.com/XiaoyuXU1/OBLIVIATE_unlearning_LLM, ``main_tofu.py``):

    1. **Target tokens**: the forget set's target words, those of its answers that occur in no
       retain row (:func:`extract_target_words`), tokenised into the vocabulary set ``T``
       (:func:`target_token_ids`); the mask ``m_v = 0`` for ``v in T``, 1 elsewhere.
    2. **Loss** ``L = L_mask + lambda_1 L_distill + lambda_2 L_world`` with

       ``L_mask = E_{D_f} mean_t KL( q_t || p_theta(. | x, y_<t) )``,
       ``q_t = softmax(stopgrad(z_t) + log m)``  (the model's own distribution without ``T``;
       :func:`mask_loss`)

       ``L_distill = E_{D_r} mean_{t,v} ( z_theta,t,v - z_orig,t,v )^2`` (logit distillation from
       the frozen original on retain rows; :func:`distillation_loss`)

       ``L_world = E_{D_w} mean_t CE( p_theta(. | x_<t), argmax z_orig,t )`` (the original's
       greedy predictions on general-knowledge text; :func:`world_fact_loss`).
    3. **LoRA**: only low-rank adapters on every projection of each block are trained (peft),
       merged back afterwards, so a plain model of the original's architecture is returned.
       With ``task.lora`` set, the task's adapters are trained instead.

    Defaults from the official TOFU script: ``lambda_1 = 0.2``, ``lambda_2 = 0.7``, AdamW at
    ``3e-4``, gradient clipping at 1, 4 epochs, batches of 1, LoRA ``alpha = 16``, dropout
    0.05 on ``q/k/v/o/up/gate/down_proj``. Departures:

    * target tokens: the paper's TOFU lists were made outside the code (files of names, places,
      dates, professions and themes per split); here they are extracted from the data by the
      rule of step 1 (``result.extra["target_words"]`` shows them), and with ``min_ratio`` a
      word's pieces can be limited to those over-represented in the forget answers (small
      vocabularies split names into letters);
    * the mask: the code multiplies the logits by ``m`` (the targets' logits set to 0, which
      removes them only where the other logits are far above 0) and lets the gradient flow
      through the target; here the targets get probability exactly 0 and the target is
      detached (a CE-U-style moving target, so the loss is bounded);
    * positions: the mask loss reads the answer-predicting positions (``tokens="answer"``, as
      this project's other LM losses); the code's forget documents are "question: answer"
      texts scored at every position (``tokens="all"``); distillation and world-fact losses
      read every attended position, as the code;
    * data: the code's distillation reads retain rows twice (its two document lists are one
      list object, shuffled in place, so "same-style" and "other-style" terms are equal: an
      effective ``lambda_1`` of 0.4) and its world-fact loss mini-Wikipedia; here one
      distillation term on a retain batch and the world-fact loss on the task's own world
      facts (retain rows about nobody: :func:`world_rows`), the whole retain set where the
      task has none (Bible verses, users' folders); no text is downloaded;
    * LoRA rank 8 on every layer (the code: rank 256 on layers 4-7 of a 32-layer 7B model); no
      warm-up/cosine schedule; weight decay 0. On a causal-LM task ``lr``, epochs and batch size
      are this project's (``modalities/causal_lm/defaults.py``: AdamW at 3e-3, the rest the
      script's), measured on the tiny profiles task (seed 0: forget answer NLL 0.003 -> 2.77,
      retain 0.002 -> 0.074; at the script's 3e-4 the forget NLL stays at 0.004, at 1e-3 0.068).

    The original's forward passes (retain and world batches) are counted in the cost.
    """

    name = "obliviate"
    modalities = ("causal_lm",)
    summary = "mask the forget set's target tokens (KL), distil retain logits, keep world facts; LoRA, merged back"
    Params = ObliviateParams
    citation = (
        "Xu, Du, Ye and Hu 2025 (arXiv:2505.04416), OBLIVIATE: Robust and Practical Machine "
        "Unlearning for Large Language Models"
    )
    needs_retain = True

    def targets(self, task) -> tuple[list[str], list[int]]:
        """``(target words, target token ids)`` of the task's forget set (steps 1 and 2)."""
        tok = task.adapter.tokenizer
        words = extract_target_words(row_texts(task.forget, tok, True), row_texts(task.retain, tok, False))

        def ids(data, answer_only):
            return [
                data.inputs[i][(data.labels[i] != -100) if answer_only else data.attention_mask[i].bool()].tolist()
                for i in range(len(data))
            ]

        token_ids = target_token_ids(words, tok, ids(task.forget, True), ids(task.retain, False), self.params.min_ratio)
        if not token_ids:
            raise ConfigError(
                "obliviate: no target tokens: every word of the forget answers also occurs in the retain rows"
                + (" (or min_ratio leaves none; lower it)" if self.params.min_ratio else "")
            )
        return words, token_ids

    def unlearn(self, task, seed: int = 0, progress: bool = False) -> UnlearnResult:
        result = super().unlearn(task, seed, progress)
        result.extra.update(self._extra)
        return result

    def _unlearn(self, model, task, seed, progress) -> LoopStats:
        from ..modalities.causal_lm.adapter import with_lora

        p = self.params
        adapter = task.adapter
        words, token_ids = self.targets(task)
        self._extra = {"target_words": words, "target_tokens": len(token_ids)}
        teacher = copy.deepcopy(model).eval().requires_grad_(False)
        keep = vocabulary_mask(token_ids, model.get_output_embeddings().weight.shape[0], task.device)
        world = world_rows(task)
        flags = {n: q.requires_grad for n, q in model.named_parameters()}
        own = not hasattr(model, "peft_config")  # task-level LoRA already wraps it otherwise
        trained = model
        if own:
            # peft draws the adapters' initial A from the global generator: seed it from the run's
            # seed inside a forked RNG state, so a run is repeatable and nothing outside changes
            dev = torch.device(task.device)
            with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                torch.manual_seed(derive_seed(seed, "obliviate", "lora") % (2**63))
                trained = with_lora(model, p.lora_r, p.lora_alpha, p.lora_dropout, p.target_modules)  # type: ignore[arg-type]

        def attended(batch, logits):
            return logits[:, :-1][batch["attention_mask"][:, 1:].bool()]

        def objective(ctx):
            fb = ctx.batch("forget")
            if p.tokens == "answer":
                logits = adapter.answer_logits(ctx.model, fb)
                if logits is None:
                    logits, _, _ = prediction_positions(adapter.logits(ctx.model, fb), fb["labels"])
            else:
                logits = attended(fb, adapter.logits(ctx.model, fb))
            loss = mask_loss(logits, keep)
            for name, weight, term in (
                ("retain", p.distill_weight, distillation_loss),
                ("world", p.world_weight, world_fact_loss),
            ):
                if not weight:
                    continue
                b = ctx.batch(name)
                with torch.no_grad():
                    t = attended(b, adapter.logits(teacher, b))
                ctx.count_forward(ctx.batch_size(b))
                loss = loss + weight * term(attended(b, adapter.logits(ctx.model, b)), t)
            return loss

        streams = {"forget": task.forget}
        if p.distill_weight:
            streams["retain"] = task.retain
        if p.world_weight:
            streams["world"] = world
        try:
            stats = run_loop(
                trained,
                objective,
                streams,
                p.train_config(),
                seed,
                primary="forget",
                device=task.device,
                progress=progress,
                desc=self.name,
                adapter=adapter,
            )
        finally:
            if own:
                trained.merge_and_unload()  # folds the adapters into ``model`` in place
                for n, q in model.named_parameters():
                    q.requires_grad_(flags.get(n, True))
        return stats
