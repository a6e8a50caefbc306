"""Causal-LM metrics that run a model again: the relearning attack and FADE.

They declare ``needs=("models",)`` (the model, the reference and the task travel in
:attr:`EvalInputs.models`); results are cached per model, keyed weakly by the module and
invalidated when its parameters change in place. Sources: the relearning attacks of Lynch et
al. 2024 ("Eight methods to evaluate robust unlearning in LLMs") and Hu et al. 2024 ("Jogging
the memory of unlearned LLMs through targeted relearning attacks"), and FADE (Cho et al.
2025, arXiv:2510.12981, "Reference-specific unlearning metrics can hide the truth: a reality
check").
"""

from __future__ import annotations

import copy
import random
import weakref

import numpy as np
import torch
from torch import nn

from ...errors import DivergenceError
from ...evaluation.metrics import NAN, EvalInputs, register_metric
from ...utils import derive_seed
from .scores import IGNORE, _answer_spans, _prompts, decode_batch, score_lm_set
from .scores import mean_finite as _mean

LM = ("causal_lm",)
#: relearning attack: optimiser steps on the seeded half of the forget set, and its learning
#: rate as a fraction of the task recipe's (the recipe's own rate, 1e-2 on the tiny test task,
#: damaged what the original already knew within 10 full-batch steps)
RELEARN_STEPS = 10
RELEARN_LR_SCALE = 0.1
#: FADE-style estimate: sampled answers per forget prompt and per model
FADE_SAMPLES = 4
#: FADE samples run for the forget set's longest answer (tokens, eos included) plus this many
GEN_EXTRA = 4


class _Cache:
    """Per-model results of the model-based metrics (relearning, samples), keyed weakly by the
    module and invalidated when its parameters change in place (tensor version counters)."""

    def __init__(self) -> None:
        self._d: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @staticmethod
    def _version(model: nn.Module) -> int:
        return sum(p._version for p in model.parameters())

    def get(self, model: nn.Module, key):
        entry = self._d.get(model)
        if entry is None or entry[0] != self._version(model):
            return None
        return entry[1].get(key)

    def put(self, model: nn.Module, key, value) -> None:
        entry = self._d.get(model)
        v = self._version(model)
        if entry is None or entry[0] != v:
            entry = (v, {})
            self._d[model] = entry
        entry[1][key] = value


_CACHE = _Cache()


class _RngGuard:
    """Restore Python, NumPy and torch global RNG states (run_loop seeds them globally)."""

    def __enter__(self):
        self.s = (
            random.getstate(),
            np.random.get_state(),
            torch.get_rng_state(),
            torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        )

    def __exit__(self, *exc):
        random.setstate(self.s[0])
        np.random.set_state(self.s[1])
        torch.set_rng_state(self.s[2])
        if self.s[3] is not None:
            torch.cuda.set_rng_state_all(self.s[3])


def relearn_split(task, seed: int) -> tuple[list[str], list[str]]:
    """The seeded halves of the forget set: (relearned on, evaluated on)."""
    ids = np.asarray(task.forget.example_ids).astype(str)
    perm = np.random.default_rng(derive_seed(seed, "relearn_split") % (2**32)).permutation(len(ids))
    half = len(ids) // 2
    return sorted(ids[perm[:half]].tolist()), sorted(ids[perm[half:]].tolist())


def relearn_attack(
    model: nn.Module, task, seed: int = 0, steps: int = RELEARN_STEPS, lr: float | None = None
) -> dict[str, float]:
    """Fine-tune a deep copy of ``model`` on one seeded half of the forget set; score the other.

    ``steps`` full-batch AdamW steps (``lr`` defaults to :data:`RELEARN_LR_SCALE` times the task
    recipe's) through
    :func:`unlearnkit.loop.run_loop` with the plain answer cross-entropy; returns the held-out
    half's mean exact match, greedy ROUGE-L recall and normalised answer probability after the
    attack (nan if the attack diverges). ``model`` is not modified; global RNG states are
    restored afterwards.
    """
    from ...engines.loop import TrainConfig, cross_entropy_objective, run_loop

    key = ("relearn", id(task), seed, steps, lr)
    hit = _CACHE.get(model, key)
    if hit is not None:
        return dict(hit)
    train_ids, eval_ids = relearn_split(task, seed)
    if not train_ids or not eval_ids:
        return {}
    cfg = TrainConfig(
        epochs=float(steps),
        max_steps=steps,
        batch_size=len(train_ids),
        lr=lr or RELEARN_LR_SCALE * task.recipe.lr,
        optimizer="adamw",
        weight_decay=0.0,
        grad_clip=1.0,
        schedule="constant",
        divergence_threshold=None,
    )
    attacked = copy.deepcopy(model)
    for p in attacked.parameters():
        p.requires_grad_(True)
    try:
        with _RngGuard():
            run_loop(
                attacked,
                cross_entropy_objective(task.adapter),
                {"train": task.forget.select(train_ids)},
                cfg,
                seed=derive_seed(seed, "relearn"),
                device=task.device,
            )
    except DivergenceError:  # e.g. a model whose forget loss is already non-finite
        return {"exact": NAN, "rouge": NAN, "prob": NAN}
    sc = score_lm_set(attacked, task.forget.select(eval_ids), task.adapter, generate=True)
    del attacked
    res = {"exact": _mean(sc.exact), "rouge": _mean(sc.rouge), "prob": _mean(sc.prob)}
    _CACHE.put(model, key, res)
    return dict(res)


_RELEARN_KEYS = ("exact", "rouge", "prob", "gain_rouge", "gain_prob")


@register_metric(
    "lm_relearn",
    {f"relearn_{k}": "reference" for k in _RELEARN_KEYS} | {f"relearn_ref_{k}": "reference" for k in _RELEARN_KEYS},
    "Lynch et al. 2024 ('Eight methods to evaluate robust unlearning in LLMs', relearning); Hu et al. 2024 "
    "('Jogging the memory of unlearned LLMs through targeted relearning attacks').",
    needs=("models",),
    splits=("forget",),
    modalities=LM,
    order=46,
    headline=("relearn_rouge",),
    help={
        **{
            f"relearn_{k}": (
                f"relearning attack: a few fine-tuning steps on half the forget set, then the "
                f"other half is scored ({k.replace('_', ' ')})",
                "the reference's value; higher means the knowledge was hidden, not removed",
            )
            for k in _RELEARN_KEYS
        },
        **{
            f"relearn_ref_{k}": (
                f"the relearning attack on the reference ({k.replace('_', ' ')})",
                f"the value relearn_{k} is compared with",
            )
            for k in _RELEARN_KEYS
        },
    },
)
def lm_relearn(inputs: EvalInputs) -> dict[str, float]:
    """Relearning attack: fine-tune on half of the forget set, measure recovery of the other half.

    A deep copy of the model takes 10 full-batch AdamW steps (a tenth of the task recipe's
    learning rate, answer cross-entropy) on a seeded half of the forget set; ``relearn_exact`` /
    ``relearn_rouge`` / ``relearn_prob`` are the other half's exact match, greedy ROUGE-L
    recall and normalised answer probability afterwards, ``relearn_gain_rouge`` /
    ``relearn_gain_prob`` their rise over the same half before the attack. ``relearn_ref_*``:
    the same attack on the reference, which never saw either half (what fine-tuning on the
    half alone teaches).
    Knowledge only suppressed comes back faster than knowledge never learnt (Hu et al.);
    values close to the reference's are the goal. Departures: a fixed tiny budget and a random
    half of the set rather than the papers' chosen public / related texts.
    """
    models = inputs.models or {}
    model, task = models.get("model"), models.get("task")
    if model is None or task is None or len(task.forget) < 2:
        return {}
    _, eval_ids = relearn_split(task, inputs.seed)

    def attack(m: nn.Module, table: dict | None, prefix: str) -> dict[str, float]:
        res = relearn_attack(m, task, inputs.seed)
        if res and table is not None and "forget" in table:
            before = table["forget"].reindex(eval_ids)
            res["gain_rouge"] = res["rouge"] - (_mean(before.rouge) if before.rouge is not None else NAN)
            res["gain_prob"] = res["prob"] - _mean(before.prob)
        return {f"{prefix}{k}": v for k, v in res.items()}

    out = attack(model, inputs.model, "relearn_")
    if models.get("reference") is not None:
        out.update(attack(models["reference"], inputs.reference, "relearn_ref_"))
    return out


@torch.no_grad()
def _sequence_logprob(
    model: nn.Module, task, prompts: list[torch.Tensor], conts: list[list[int]], batch_size: int = 32
) -> np.ndarray:
    """``log p(cont | prompt)`` per pair (teacher forcing, right padding)."""
    pad = task.adapter.tokenizer.pad_token_id
    was = model.training
    model.eval()
    out = []
    try:
        for s in range(0, len(prompts), batch_size):
            ps, cs = prompts[s : s + batch_size], conts[s : s + batch_size]
            t = max(len(p) + len(c) for p, c in zip(ps, cs))
            ids = torch.full((len(ps), t), pad, dtype=torch.long)
            lab = torch.full((len(ps), t), IGNORE, dtype=torch.long)
            am = torch.zeros((len(ps), t), dtype=torch.long)
            for i, (p, c) in enumerate(zip(ps, cs)):
                seq = torch.cat([p.long(), torch.tensor(c, dtype=torch.long)])
                ids[i, : len(seq)], am[i, : len(seq)] = seq, 1
                lab[i, len(p) : len(seq)] = torch.tensor(c, dtype=torch.long)
            lp, _ = task.adapter.token_log_probs(model, {"input_ids": ids, "attention_mask": am, "labels": lab})
            out.append(lp.sum(1).double().cpu().numpy())
    finally:
        model.train(was)
    return np.concatenate(out)


def _samples(model: nn.Module, task, seed: int, n: int) -> tuple[list[torch.Tensor], list[list[int]]]:
    key = ("fade_samples", id(task), seed, n)
    hit = _CACHE.get(model, key)
    if hit is not None:
        return hit
    data = task.forget
    spans = _answer_spans(data)
    limit = max(e - s for s, e in spans) + GEN_EXTRA
    prompts = [p for p in _prompts(data, spans) for _ in range(n)]
    tok = task.adapter.tokenizer
    gen = torch.Generator(device=task.device)
    gen.manual_seed(int(derive_seed(seed, "fade") % (2**63)))
    was = model.training
    model.eval()
    try:
        conts = []
        for s in range(0, len(prompts), 64):
            conts += decode_batch(
                model,
                prompts[s : s + 64],
                tok.pad_token_id,
                tok.eos_token_id,
                limit,
                task.device,
                sample=True,
                generator=gen,
            )
    finally:
        model.train(was)
    _CACHE.put(model, key, (prompts, conts))
    return prompts, conts


def _self_logprob(model: nn.Module, task, seed: int, n: int) -> np.ndarray:
    """``log p(sample | prompt)`` of a model's own :func:`_samples` under itself: a quantity of
    that model alone, cached with its samples (the reference's is computed once, not at every
    model compared with it)."""
    key = ("fade_self_logprob", id(task), seed, n)
    hit = _CACHE.get(model, key)
    if hit is None:
        hit = _sequence_logprob(model, task, *_samples(model, task, seed, n))
        _CACHE.put(model, key, hit)
    return hit


def fade_divergence(
    model: nn.Module, reference: nn.Module, task, seed: int = 0, n_samples: int = FADE_SAMPLES
) -> dict[str, float]:
    """Monte-Carlo KL estimates between the answer distributions of two models on the forget prompts.

    ``n_samples`` answers per forget question are sampled (temperature 1, seeded, at most the
    longest answer + :data:`GEN_EXTRA` tokens, stopping at eos) from each model; each sample is
    scored under both. ``KL(m||r) ~ mean_{y~m} [log m(y|x) - log r(y|x)]`` and vice versa,
    in nats per answer; the estimates are unbiased but can be slightly negative.
    """
    if model is reference:
        return {"fade_sym_kl": 0.0, "fade_kl_model_ref": 0.0, "fade_kl_ref_model": 0.0}
    pm, cm = _samples(model, task, seed, n_samples)
    pr, cr = _samples(reference, task, seed, n_samples)
    kl_mr = float(np.mean(_self_logprob(model, task, seed, n_samples) - _sequence_logprob(reference, task, pm, cm)))
    kl_rm = float(np.mean(_self_logprob(reference, task, seed, n_samples) - _sequence_logprob(model, task, pr, cr)))
    return {"fade_sym_kl": 0.5 * (kl_mr + kl_rm), "fade_kl_model_ref": kl_mr, "fade_kl_ref_model": kl_rm}


@register_metric(
    "lm_fade",
    {"fade_sym_kl": "lower", "fade_kl_model_ref": "lower", "fade_kl_ref_model": "lower"},
    "Cho et al. 2025, 'Reference-specific unlearning metrics can hide the truth: a reality check' "
    "(FADE, arXiv:2510.12981): distributional equivalence to the retain-only model from bidirectional "
    "likelihoods of generated samples.",
    needs=("models", "reference"),
    splits=("forget",),
    modalities=LM,
    order=47,
    headline=("fade_sym_kl",),
    help={
        "fade_sym_kl": (
            "FADE distributional distance to the reference on generated forget answers (symmetric KL estimate)",
            "→ 0",
        ),
        "fade_kl_model_ref": ("FADE: KL(model ‖ reference) estimate on generated forget answers", "→ 0"),
        "fade_kl_ref_model": ("FADE: KL(reference ‖ model) estimate on generated forget answers", "→ 0"),
    },
)
def lm_fade(inputs: EvalInputs) -> dict[str, float]:
    """Distributional equivalence to the reference on the forget questions (FADE-style), 0 = equivalent.

    Answers are sampled from both the model and the reference for every forget question
    (4 per question, temperature 1, seeded) and each sample is scored under both models:
    ``fade_kl_model_ref = mean_{y~model} [log p_model(y|x) - log p_ref(y|x)]``,
    ``fade_kl_ref_model`` the converse, ``fade_sym_kl`` their mean (half Jeffreys divergence),
    nats per answer. Departure: FADE (Cho et al. 2025) turns the same bidirectional likelihoods
    of generated samples into a probabilistic precision/recall score; we report the symmetric
    KL estimate instead (its exact statistic was not verified here). The reference vs itself is 0.
    """
    models = inputs.models or {}
    model, ref, task = models.get("model"), models.get("reference"), models.get("task")
    if model is None or ref is None or task is None:
        return {}
    return fade_divergence(model, ref, task, inputs.seed)
