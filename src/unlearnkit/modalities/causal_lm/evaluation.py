"""Language-model evaluation: score a causal LM on a task's sets, and the LM metrics.

:func:`score_lm_splits` runs a causal LM over the sets of a causal-LM task (built by
:func:`unlearnkit.lm_task.make_lm_task`) and keeps, per example, the quantities every
LM metric derives from (:class:`LMScores`): one teacher-forced pass per set, plus one
batched greedy generation per set for ROUGE. The metrics below are registered in the
same registry as the classifier metrics (:mod:`unlearnkit.evaluation.metrics`), but only
for causal-LM inputs (``EvalInputs.modality == "causal_lm"``), and are computed by
``evaluate_model`` / ``compare`` like the classifier ones.

Sets scored (keys of the returned dict, the "splits" of :class:`EvalInputs`):

* ``forget`` (members), ``holdout`` (never-trained non-members), ``retain`` (the
  ``retain_eval`` sample of the retain set, the retain-utility set; the whole retain set
  only when the task has no ``retain_eval``);
* every ``task.eval_sets`` entry: the probes (``forget_paraphrase``, ``forget_alias``,
  ``forget_multihop``), the utility sets (``retain_eval``, ``other``, ``world``) and the
  truth-ratio answer variants ``<set>@para`` / ``<set>@pert<j>`` (teacher-forced only:
  they share their base set's questions, so nothing is generated for them).

Metric sources: TOFU (Maini et al. 2024; official code locuslab/tofu
``aggregate_eval_stat.py``), MUSE (Shi et al. 2024; official code swj0419/muse_bench,
and OpenUnlearning's reproduction), OpenUnlearning (locuslab/open-unlearning), the
relearning attacks of Lynch et al. 2024 ("Eight methods to evaluate robust unlearning
in LLMs") and Hu et al. 2024 ("Jogging the memory of unlearned LLMs through targeted
relearning attacks"), and FADE (Cho et al. 2025, arXiv:2510.12981, "Reference-specific
unlearning metrics can hide the truth: a reality check").
"""

from __future__ import annotations

import copy
import random
import re
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError, DataError, DivergenceError
from ...utils import derive_seed
from . import formulas as lmm
from ...evaluation.metrics import NAN, EvalInputs, register_metric

IGNORE = -100
LM = ("causal_lm",)
#: Min-K% / Min-K%++ token fraction: MUSE's PrivLeak uses Min-40% (``forget_holdout_Min-40%``)
MIN_K = 0.4
#: greedy generation runs for the set's longest answer (tokens, eos included) plus this many
GEN_EXTRA = 4
#: relearning attack: optimiser steps on the seeded half of the forget set, and its learning
#: rate as a fraction of the task recipe's (the recipe's own rate, 1e-2 on the tiny test task,
#: damaged what the original already knew within 10 full-batch steps)
RELEARN_STEPS = 10
RELEARN_LR_SCALE = 0.1
#: FADE-style estimate: sampled answers per forget prompt and per model
FADE_SAMPLES = 4
PROBES = ("forget_paraphrase", "forget_alias", "forget_multihop")
UTILITY = {"retain": "retain", "other": "real_authors", "world": "world_facts"}
_PERT = re.compile(r"@pert(\d+)$")


# --------------------------------------------------------------------------- scores
@dataclass
class LMScores:
    """Per-example quantities of one causal LM on one set, one row per example.

    All arrays are ``(N,)`` and aligned with ``example_ids``. Log-probabilities are over
    the answer tokens only (eos included), under teacher forcing.

    Attributes:
        mean_logprob: ``(1/|y|) sum_t log p(y_t | x, y_<t)``; also the LOSS attack score.
        sum_logprob: ``log p(y | x)``.
        length: ``|y|``, answer tokens.
        token_acc: share of answer tokens that are the argmax next token given the true
            prefix = exact memorisation (Tirumala et al. 2022, :func:`lm_metrics.exact_memorization`).
        exact: 1.0 when every answer token is the argmax (= greedy decoding reproduces the
            answer through its eos), else 0.0.
        extraction: extraction strength (Wang et al. 2025, :func:`lm_metrics.extraction_strength`).
        mia_zlib, mia_min_k, mia_min_k_pp: zlib, Min-40% and Min-40%++ attack scores
            (higher = more likely a member; :mod:`lm_metrics`).
        answers: the true answer texts.
        generations: greedy answers (None when not generated).
        rouge: ROUGE-L recall of the greedy answer against the true answer (nan when not generated).
    """

    example_ids: np.ndarray
    mean_logprob: np.ndarray
    sum_logprob: np.ndarray
    length: np.ndarray
    token_acc: np.ndarray
    exact: np.ndarray
    extraction: np.ndarray
    mia_zlib: np.ndarray
    mia_min_k: np.ndarray
    mia_min_k_pp: np.ndarray
    answers: np.ndarray
    generations: np.ndarray | None = None
    rouge: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.example_ids)

    @property
    def prob(self) -> np.ndarray:
        """TOFU's normalised answer probability ``P(y|x)^(1/|y|)``."""
        return np.exp(self.mean_logprob)

    @property
    def mia_loss(self) -> np.ndarray:
        return self.mean_logprob

    def reindex(self, ids: Sequence[str]) -> LMScores:
        """The rows of ``ids`` in that order (DataError if one is missing)."""
        ids = [str(i) for i in ids]
        own = np.asarray(self.example_ids).astype(str)
        if len(ids) == len(own) and np.array_equal(own, ids):
            return self
        pos = {e: i for i, e in enumerate(own.tolist())}
        missing = [i for i in ids if i not in pos]
        if missing:
            raise DataError(f"LM scores lack example(s) {missing[:3]}; score both sets on the same task")
        idx = np.array([pos[i] for i in ids], dtype=np.int64)
        return LMScores(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[idx])
                           for f in fields(self)})

    def rows(self, split: str, role: str) -> dict[str, np.ndarray]:
        """Columns for export (``--export-scores``): one row per example."""
        n = len(self)
        gen = self.generations if self.generations is not None else np.full(n, "", dtype=object)
        rouge = self.rouge if self.rouge is not None else np.full(n, NAN)
        return {"example_id": np.asarray(self.example_ids).astype(str), "split": np.full(n, split),
                "model_role": np.full(n, role), "mean_logprob": self.mean_logprob,
                "sum_logprob": self.sum_logprob, "answer_tokens": self.length, "prob": self.prob,
                "token_acc": self.token_acc, "exact": self.exact, "extraction_strength": self.extraction,
                "mia_zlib": self.mia_zlib, "mia_min_k": self.mia_min_k, "mia_min_k_pp": self.mia_min_k_pp,
                "rouge_l_recall": rouge, "answer": np.asarray(self.answers, dtype=object),
                "generation": np.asarray(gen, dtype=object)}


def _tokenizer(task_or_adapter):
    adapter = getattr(task_or_adapter, "adapter", task_or_adapter)
    tok = getattr(adapter, "tokenizer", None)
    if tok is None or tok.pad_token_id is None or tok.eos_token_id is None:
        raise ConfigError("LM evaluation needs the task's tokenizer with pad and eos tokens: "
                          "build the task with make_lm_task")
    return tok


def _answer_spans(data) -> list[tuple[int, int]]:
    """Per example ``(start, end)``: answer positions ``[start, end)`` (labels != -100)."""
    lab = data.labels
    spans = []
    for i in range(len(lab)):
        pos = torch.nonzero(lab[i] != IGNORE).flatten()
        if len(pos) == 0:
            raise DataError(f"example {data.example_ids[i]} has no answer tokens; re-encode it with encode_qa")
        spans.append((int(pos[0]), int(pos[-1]) + 1))
    return spans


def _decode(tok, ids: Iterable[int]) -> str:
    return tok.decode([int(t) for t in ids if int(t) != tok.eos_token_id], skip_special_tokens=True).strip()


@torch.no_grad()
def _teacher_forced(model: nn.Module, data, adapter, tok, batch_size: int) -> dict[str, np.ndarray]:
    out: dict[str, list] = {k: [] for k in ("mean_logprob", "sum_logprob", "length", "token_acc", "exact",
                                            "extraction", "mia_zlib", "mia_min_k", "mia_min_k_pp", "answers")}
    for b in data.batches(batch_size):
        logits = adapter.logits(model, b).float()
        lab = b["labels"].to(logits.device)
        lp, mask = adapter.token_log_probs(model, b, logits=logits)
        full = torch.log_softmax(logits[:, :-1], -1)
        p = full.exp()
        safe = torch.where(p > 0, full, torch.zeros_like(full))
        mu = (p * safe).sum(-1)
        sigma = ((p * safe * safe).sum(-1) - mu * mu).clamp_min(0).sqrt()
        pred = F.pad(logits[:, :-1].argmax(-1), (1, 0), value=-1)
        mu, sigma = F.pad(mu, (1, 0)), F.pad(sigma, (1, 0))
        lp_n, m_n = lp.cpu().double().numpy(), mask.cpu().numpy()
        pred_n, tgt_n = pred.cpu().numpy(), lab.clamp_min(0).cpu().numpy()
        answers = [_decode(tok, row[mrow]) for row, mrow in zip(tgt_n, m_n)]
        out["answers"] += answers
        out["mean_logprob"].append(lmm.loss_score(lp_n, m_n))
        out["sum_logprob"].append((lp_n * m_n).sum(1))
        out["length"].append(m_n.sum(1))
        em = lmm.exact_memorization(pred_n, tgt_n, m_n)
        out["token_acc"].append(em)
        out["exact"].append((em == 1.0).astype(np.float64))
        out["extraction"].append(lmm.extraction_strength(pred_n, tgt_n, m_n))
        out["mia_zlib"].append(lmm.zlib_score(lp_n, m_n, answers))
        out["mia_min_k"].append(lmm.min_k_score(lp_n, m_n, k=MIN_K))
        out["mia_min_k_pp"].append(lmm.min_k_plus_plus_score(lp_n, mu.cpu().double().numpy(),
                                                             sigma.cpu().double().numpy(), m_n, k=MIN_K))
    res = {k: (np.asarray(v, dtype=object) if k == "answers" else np.concatenate(v)) for k, v in out.items()}
    res["length"] = res["length"].astype(np.int64)
    return res


@torch.no_grad()
def decode_batch(model: nn.Module, prompts: Sequence[torch.Tensor], pad_id: int, eos_id: int,
                 max_new_tokens: int, device, sample: bool = False,
                 generator: torch.Generator | None = None, temperature: float = 1.0) -> list[list[int]]:
    """Continue each prompt (1-D token ids) greedily, or by sampling at ``temperature``.

    Prompts are left-padded into one batch (position ids count real tokens only) and
    decoded with the KV cache for at most ``max_new_tokens`` tokens; a row stops at its
    first eos, which is kept in the returned ids (so its likelihood can be scored).
    Sampling draws from ``generator`` only, so it is reproducible without touching the
    global RNG.
    """
    b, plen = len(prompts), max(len(p) for p in prompts)
    ids = torch.full((b, plen), pad_id, dtype=torch.long)
    am = torch.zeros((b, plen), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, plen - len(p):] = p
        am[i, plen - len(p):] = 1
    ids, am = ids.to(device), am.to(device)
    pos = (am.cumsum(1) - 1).clamp_min(0)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    steps, past, cur, cur_pos = [], None, ids, pos
    for _ in range(max_new_tokens):
        out = model(input_ids=cur, attention_mask=am, position_ids=cur_pos, past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[:, -1].float()
        if sample:
            nxt = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)[:, 0]
        else:
            nxt = logits.argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        steps.append(nxt)
        done |= nxt == eos_id
        if bool(done.all()):
            break
        am = torch.cat([am, torch.ones((b, 1), dtype=am.dtype, device=device)], 1)
        cur, cur_pos = nxt[:, None], cur_pos[:, -1:] + 1
    toks = torch.stack(steps, 1).cpu().tolist()
    res = []
    for row in toks:
        k = row.index(eos_id) + 1 if eos_id in row else len(row)
        res.append(row[:k])
    return res


def _prompts(data, spans: list[tuple[int, int]]) -> list[torch.Tensor]:
    return [data.inputs[i, :s] for i, (s, _) in enumerate(spans)]


@torch.no_grad()
def generate_answers(model: nn.Module, data, tok, device, batch_size: int = 32,
                     max_new_tokens: int | None = None) -> list[str]:
    """Greedy answers to the questions of ``data`` (prompt = tokens before the first answer
    token), decoded with ``tok``; ``max_new_tokens`` defaults to the set's longest answer
    (eos included) plus :data:`GEN_EXTRA`."""
    spans = _answer_spans(data)
    limit = max_new_tokens or max(e - s for s, e in spans) + GEN_EXTRA
    prompts = _prompts(data, spans)
    out = []
    for start in range(0, len(prompts), batch_size):
        out += decode_batch(model, prompts[start:start + batch_size], tok.pad_token_id, tok.eos_token_id,
                            limit, device)
    return [_decode(tok, ids) for ids in out]


def score_lm_set(model: nn.Module, data, adapter, generate: bool = True, batch_size: int = 32) -> LMScores:
    """:class:`LMScores` of ``model`` on one :class:`TokenExampleSet` (eval mode, no grad)."""
    tok = _tokenizer(adapter)
    was = model.training
    model.eval()
    try:
        tf = _teacher_forced(model, data, adapter, tok, batch_size)
        gens = rouge = None
        if generate:
            gens = np.asarray(generate_answers(model, data, tok, adapter.device, batch_size), dtype=object)
            rouge = np.array([lmm.rouge_l_recall(g, a) for g, a in zip(gens, tf["answers"])])
    finally:
        model.train(was)
    return LMScores(np.asarray(data.example_ids).astype(str).astype(object), generations=gens, rouge=rouge, **tf)


def lm_set_names(task) -> list[str]:
    """What :func:`score_lm_splits` scores by default: forget, retain, holdout, every eval set."""
    return ["forget", "retain", "holdout", *[n for n in task.eval_sets if n not in ("forget", "retain", "holdout")]]


def score_lm_splits(model: nn.Module, task, names: Sequence[str] | None = None, generate: bool = True,
                    batch_size: int = 32) -> dict[str, LMScores]:
    """:class:`LMScores` of ``model`` on each named set of a causal-LM ``task``.

    ``names`` default to :func:`lm_set_names`. ``retain`` is the ``retain_eval`` eval set
    when the task has one (the same object under both names; scored once). Greedy
    generation (for ROUGE) runs on every set without ``@`` in its name when ``generate``.
    """
    if getattr(task, "modality", None) != "causal_lm":
        raise ConfigError("score_lm_splits needs a causal-LM task (make_lm_task); use score_splits for classifiers")
    names = list(names) if names is not None else lm_set_names(task)
    out: dict[str, LMScores] = {}

    def data_of(name: str):
        if name == "retain" and "retain_eval" in task.eval_sets:
            return "retain_eval", task.eval_sets["retain_eval"]
        if name in ("forget", "retain", "holdout"):
            return name, getattr(task, name)
        if name in task.eval_sets:
            return name, task.eval_sets[name]
        raise ConfigError(f"the task has no set {name!r}; it has forget, retain, holdout, "
                          f"{', '.join(task.eval_sets)}")

    for name in names:
        key, data = data_of(name)
        if key not in out:
            out[key] = score_lm_set(model, data, task.adapter, generate and "@" not in key, batch_size)
        out[name] = out[key]
    return out


# --------------------------------------------------------------------------- helpers
def _mean(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else NAN


def _variant_base(table: dict, name: str) -> str:
    """The eval-set name whose ``@para``/``@pert`` variants belong to split ``name``."""
    return "retain_eval" if name == "retain" and "retain_eval@para" in table else name


def _variants(table: dict, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean answer log-probs of the paraphrased ``(N,)`` and perturbed ``(N, K)`` answers of
    ``name``'s questions, in ``table[name]``'s order; None when the set has no variants."""
    base = _variant_base(table, name)
    para = table.get(f"{base}@para")
    perts = sorted(((int(m.group(1)), k) for k in table if k.startswith(f"{base}@pert")
                    and (m := _PERT.search(k))), key=lambda t: t[0])
    if para is None or not perts or name not in table:
        return None
    ids = np.asarray(table[name].example_ids).astype(str)
    return (para.reindex(ids).mean_logprob,
            np.stack([table[k].reindex(ids).mean_logprob for _, k in perts], axis=1))


def truth_ratios(table: dict, name: str) -> np.ndarray | None:
    """TOFU truth ratios ``R`` of the questions of ``name`` (see :func:`lm_metrics.truth_ratio`)."""
    v = _variants(table, name)
    return None if v is None else lmm.truth_ratio(*v)


def _tofu_values(table: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in ("forget", "retain", "other", "world"):
        if name not in table:
            continue
        s = table[name]
        v = _variants(table, name)
        if name in ("other", "world") and v is not None:
            out[f"prob_{name}"] = float(np.mean(lmm.option_probability(s.mean_logprob, v[1])))
        else:
            out[f"prob_{name}"] = float(np.mean(s.prob))
        out[f"rouge_{name}"] = _mean(s.rouge) if s.rouge is not None else NAN
        if v is not None:
            out[f"truth_ratio_{name}"] = lmm.truth_ratio_score(lmm.truth_ratio(*v),
                                                               "forget" if name == "forget" else "retain")
    return out


# --------------------------------------------------------------------------- TOFU
_TOFU_OUT = {"prob_forget": "reference", "rouge_forget": "reference", "truth_ratio_forget": "reference",
             **{f"{m}_{s}": "higher" for s in ("retain", "other", "world") for m in ("prob", "rouge", "truth_ratio")}}


@register_metric(
    "tofu", _TOFU_OUT,
    "Maini et al. 2024 (TOFU: A Task of Fictitious Unlearning for LLMs), Sec. 2.5; official code "
    "locuslab/tofu aggregate_eval_stat.get_model_utility.",
    splits=("forget",), modalities=LM)
def tofu(inputs: EvalInputs) -> dict[str, float]:
    """TOFU's answer probability, ROUGE-L recall and truth ratio on forget, retain, other and world.

    Per set s (``retain`` = the ``retain_eval`` sample; ``other`` = the never-forgotten other
    people, TOFU's Real Authors; ``world`` = world facts): ``prob_s`` = mean of
    ``P(y|x)^(1/|y|)`` on forget and retain, and on other / world TOFU's option probability
    ``p_true / (p_true + sum_k p_pert_k)`` over the perturbed answers; ``rouge_s`` = mean
    ROUGE-L recall of the greedy answer (no Porter stemming: see ``lm_metrics.rouge_l_recall``);
    ``truth_ratio_s`` from ``R = exp(mean_k lp_pert_k - lp_para)`` (mean token log-probs):
    ``mean(min(R, 1/R))`` on forget and ``mean(max(0, 1 - R))`` elsewhere, exactly TOFU's code
    (which writes it with ``1/R``: ``min(r, 1/r)`` and ``max(0, 1 - 1/r)`` for ``r = 1/R``).
    Keys of absent sets are left out. Forget values are best close to the reference's.
    """
    return _tofu_values(inputs.model)


@register_metric(
    "tofu_forget_quality", {"forget_quality": "higher", "forget_ks_stat": "lower"},
    "Maini et al. 2024 (TOFU), Sec. 2.5 'Forget Quality'; locuslab/tofu aggregate_eval_stat.get_forget_quality.",
    needs=("reference",), splits=("forget", "forget@para"), modalities=LM)
def tofu_forget_quality(inputs: EvalInputs) -> dict[str, float]:
    """TOFU forget quality: KS-test p-value of the forget-set truth ratios, model vs reference.

    ``scipy.stats.ks_2samp`` of the per-question truth ratios ``R`` on the forget set of the
    evaluated model and of the retrained reference (``forget_quality`` = p-value, high =
    indistinguishable; ``forget_ks_stat`` = KS statistic). TOFU tests ``1/R``; the KS test is
    invariant to that monotone map. The reference against itself gives 1.0.
    """
    a, b = truth_ratios(inputs.model, "forget"), truth_ratios(inputs.reference, "forget")
    if a is None or b is None:
        return {}
    p, stat = lmm.forget_quality(a, b)
    return {"forget_quality": p, "forget_ks_stat": stat}


@register_metric(
    "tofu_model_utility", {"model_utility": "higher"},
    "Maini et al. 2024 (TOFU), Sec. 2.5 'Model Utility'; locuslab/tofu aggregate_eval_stat.get_model_utility.",
    splits=("retain", "other", "world"), modalities=LM)
def tofu_model_utility(inputs: EvalInputs) -> dict[str, float]:
    """TOFU model utility: harmonic mean of the nine retain / other / world values of ``tofu``.

    ``hmean`` of {prob, rouge, truth_ratio} x {retain, other (Real Authors), world (World
    Facts)} as computed by the ``tofu`` metric (:func:`lm_metrics.model_utility`). Skipped
    (no key) when a set has no truth-ratio variants; nan when a ROUGE is missing.
    """
    vals = _tofu_values(inputs.model)
    need = {f"{UTILITY[s]}_{m}": f"{m}_{s}" for s in UTILITY for m in ("prob", "rouge", "truth_ratio")}
    if any(v not in vals for v in need.values()):
        return {}
    if any(np.isnan(vals[v]) for v in need.values()):
        return {"model_utility": NAN}
    return {"model_utility": lmm.model_utility({k: vals[v] for k, v in need.items()})}


# --------------------------------------------------------------------------- memorisation
@register_metric(
    "lm_memorization", {"em_forget": "reference", "es_forget": "reference", "exact_forget": "reference",
                        "exact_retain": "higher"},
    "Tirumala et al. 2022 (NeurIPS), exact memorisation; Wang et al. 2025 (ICLR), extraction strength; "
    "both as implemented in OpenUnlearning (locuslab/open-unlearning, memorization.py).",
    splits=("forget",), modalities=LM)
def lm_memorization(inputs: EvalInputs) -> dict[str, float]:
    """Verbatim memorisation of the forget answers: exact memorisation, extraction strength, exact match.

    Means over the forget set of: ``em_forget`` = ``(1/|y|) sum_t 1[argmax p(.|x, y_<t) = y_t]``
    (teacher forcing); ``es_forget`` = ``1 - k*/|y|`` with ``k*`` the shortest true answer
    prefix from which greedy decoding completes the answer (paper definition: 0 when even the
    last token is missed; OpenUnlearning stops at ``1/|y|``); ``exact_forget`` = share of
    answers greedy decoding reproduces exactly through eos. ``exact_retain`` the same on the
    retain sample (utility). The reference's values are the target on forget.
    """
    f = inputs.model["forget"]
    out = {"em_forget": _mean(f.token_acc), "es_forget": _mean(f.extraction), "exact_forget": _mean(f.exact)}
    if "retain" in inputs.model:
        out["exact_retain"] = _mean(inputs.model["retain"].exact)
    return out


# --------------------------------------------------------------------------- MIA / PrivLeak
_ATTACKS = {"loss": "mia_loss", "zlib": "mia_zlib", "min_k": "mia_min_k", "min_k_pp": "mia_min_k_pp"}


def _auc(table: dict, attr: str) -> float:
    return lmm.mia_auc(getattr(table["forget"], attr), getattr(table["holdout"], attr))


@register_metric(
    "lm_mia", {**{f"mia_{a}_auc": "reference" for a in _ATTACKS}, "mia_min_k_pvalue": "reference"},
    "Yeom et al. 2018 and Carlini et al. 2021 (LOSS, zlib); Shi et al. 2024 ICLR (Min-K% Prob); "
    "Zhang et al. 2024 arXiv:2404.02936 (Min-K%++); forget-vs-holdout AUC as in MUSE (Shi et al. 2024).",
    splits=("forget", "holdout"), modalities=LM)
def lm_mia(inputs: EvalInputs) -> dict[str, float]:
    """Membership attacks on the answers: forget (members) vs holdout (never trained), ROC AUC.

    Scores (higher = member): LOSS = mean answer-token log-prob; zlib = that over the zlib
    length of the answer text; Min-40% = mean of the lowest 40% token log-probs; Min-40%++ the
    same on standardised log-probs (``(log p - mu) / sigma`` over the vocabulary). AUC 0.5 =
    chance; ideal is the reference's value (forget and holdout rows need not be alike, e.g.
    alias questions). ``mia_min_k_pvalue``: one-sided Mann-Whitney U p-value that forget
    Min-40% scores exceed holdout ones (uncertainty of the AUC on small sets). MUSE uses
    Min-40%; Min-K%'s own default is 20%.
    """
    from scipy.stats import mannwhitneyu

    m = inputs.model
    out = {f"mia_{a}_auc": _auc(m, attr) for a, attr in _ATTACKS.items()}
    out["mia_min_k_pvalue"] = float(mannwhitneyu(m["forget"].mia_min_k, m["holdout"].mia_min_k,
                                                 alternative="greater").pvalue)
    return out


@register_metric(
    "lm_privleak", {"privleak": "reference"},
    "Shi et al. 2024 (MUSE: Machine Unlearning Six-Way Evaluation for Language Models), PrivLeak; "
    "sign as in MUSE's tables and OpenUnlearning's privleak (AUCs taken as 1 - AUC).",
    needs=("reference",), splits=("forget", "holdout"), modalities=LM)
def lm_privleak(inputs: EvalInputs) -> dict[str, float]:
    """MUSE PrivLeak: relative change of the Min-40% forget-vs-holdout MIA AUC against the reference, in percent.

    ``PrivLeak = (AUC'_unlearn - AUC'_retrain) / AUC'_retrain * 100`` with MUSE's AUC
    orientation ``AUC' = 1 - AUC`` (MUSE labels forget as the negative class; OpenUnlearning
    flips likewise), i.e. ``(AUC_ref - AUC) / (1 - AUC_ref) * 100`` with this package's AUC
    (higher = members detected). 0 is ideal (the reference gives exactly 0); negative =
    under-unlearning (the forget set still looks like training data: MUSE's target models
    sit near -100), positive = over-unlearning. nan when the reference's AUC is 1.
    """
    a, r = _auc(inputs.model, "mia_min_k"), _auc(inputs.reference, "mia_min_k")
    if r >= 1.0:
        return {"privleak": NAN}
    return {"privleak": lmm.privleak(1.0 - a, 1.0 - r)}


# --------------------------------------------------------------------------- probes
_PROBE_OUT = {f"{p.split('_', 1)[1]}_{m}": "reference" for p in PROBES for m in ("rouge", "exact", "prob")}


@register_metric(
    "lm_probes", _PROBE_OUT,
    "Maini et al. 2024 (TOFU), paraphrased questions; Shah et al. 2026 (arXiv:2603.11266, 'The Unlearning "
    "Mirage'), alias and multi-hop probes of the same facts.",
    splits=("forget",), modalities=LM)
def lm_probes(inputs: EvalInputs) -> dict[str, float]:
    """Forgetting under other wordings: paraphrased, alias and multi-hop questions about the forget people.

    On each probe set present (``forget_paraphrase``: reworded questions never trained;
    ``forget_alias`` / ``forget_multihop``: the forget rows reaching the person by an alias or a
    work's title): mean greedy ROUGE-L recall (``<probe>_rouge``), exact match (``<probe>_exact``)
    and normalised answer probability (``<probe>_prob``). A method that forgets only the
    trained wording keeps these high; the reference's values are the target.
    """
    out = {}
    for p in PROBES:
        if p in inputs.model:
            s, k = inputs.model[p], p.split("_", 1)[1]
            out[f"{k}_rouge"] = _mean(s.rouge) if s.rouge is not None else NAN
            out[f"{k}_exact"], out[f"{k}_prob"] = _mean(s.exact), _mean(s.prob)
    return out


# --------------------------------------------------------------------------- model-based
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
        self.s = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
                  torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)

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


def relearn_attack(model: nn.Module, task, seed: int = 0, steps: int = RELEARN_STEPS,
                   lr: float | None = None) -> dict[str, float]:
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
    cfg = TrainConfig(epochs=float(steps), max_steps=steps, batch_size=len(train_ids),
                      lr=lr or RELEARN_LR_SCALE * task.recipe.lr, optimizer="adamw", weight_decay=0.0, grad_clip=1.0,
                      schedule="constant", divergence_threshold=None)
    attacked = copy.deepcopy(model)
    for p in attacked.parameters():
        p.requires_grad_(True)
    try:
        with _RngGuard():
            run_loop(attacked, cross_entropy_objective(task.adapter), {"train": task.forget.select(train_ids)},
                     cfg, seed=derive_seed(seed, "relearn"), device=task.device)
    except DivergenceError:  # e.g. a model whose forget loss is already non-finite
        return {"exact": NAN, "rouge": NAN, "prob": NAN}
    sc = score_lm_set(attacked, task.forget.select(eval_ids), task.adapter, generate=True)
    del attacked
    res = {"exact": _mean(sc.exact), "rouge": _mean(sc.rouge), "prob": _mean(sc.prob)}
    _CACHE.put(model, key, res)
    return dict(res)


_RELEARN_KEYS = ("exact", "rouge", "prob", "gain_rouge", "gain_prob")


@register_metric(
    "lm_relearn", {f"relearn_{k}": "reference" for k in _RELEARN_KEYS}
    | {f"relearn_ref_{k}": "reference" for k in _RELEARN_KEYS},
    "Lynch et al. 2024 ('Eight methods to evaluate robust unlearning in LLMs', relearning); Hu et al. 2024 "
    "('Jogging the memory of unlearned LLMs through targeted relearning attacks').",
    needs=("models",), splits=("forget",), modalities=LM)
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
def _sequence_logprob(model: nn.Module, task, prompts: list[torch.Tensor], conts: list[list[int]],
                      batch_size: int = 32) -> np.ndarray:
    """``log p(cont | prompt)`` per pair (teacher forcing, right padding)."""
    pad = task.adapter.tokenizer.pad_token_id
    was = model.training
    model.eval()
    out = []
    try:
        for s in range(0, len(prompts), batch_size):
            ps, cs = prompts[s:s + batch_size], conts[s:s + batch_size]
            t = max(len(p) + len(c) for p, c in zip(ps, cs))
            ids = torch.full((len(ps), t), pad, dtype=torch.long)
            lab = torch.full((len(ps), t), IGNORE, dtype=torch.long)
            am = torch.zeros((len(ps), t), dtype=torch.long)
            for i, (p, c) in enumerate(zip(ps, cs)):
                seq = torch.cat([p.long(), torch.tensor(c, dtype=torch.long)])
                ids[i, :len(seq)], am[i, :len(seq)] = seq, 1
                lab[i, len(p):len(seq)] = torch.tensor(c, dtype=torch.long)
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
            conts += decode_batch(model, prompts[s:s + 64], tok.pad_token_id, tok.eos_token_id, limit,
                                  task.device, sample=True, generator=gen)
    finally:
        model.train(was)
    _CACHE.put(model, key, (prompts, conts))
    return prompts, conts


def fade_divergence(model: nn.Module, reference: nn.Module, task, seed: int = 0,
                    n_samples: int = FADE_SAMPLES) -> dict[str, float]:
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
    kl_mr = float(np.mean(_sequence_logprob(model, task, pm, cm) - _sequence_logprob(reference, task, pm, cm)))
    kl_rm = float(np.mean(_sequence_logprob(reference, task, pr, cr) - _sequence_logprob(model, task, pr, cr)))
    return {"fade_sym_kl": 0.5 * (kl_mr + kl_rm), "fade_kl_model_ref": kl_mr, "fade_kl_ref_model": kl_rm}


@register_metric(
    "lm_fade", {"fade_sym_kl": "lower", "fade_kl_model_ref": "lower", "fade_kl_ref_model": "lower"},
    "Cho et al. 2025, 'Reference-specific unlearning metrics can hide the truth: a reality check' "
    "(FADE, arXiv:2510.12981): distributional equivalence to the retain-only model from bidirectional "
    "likelihoods of generated samples.",
    needs=("models", "reference"), splits=("forget",), modalities=LM)
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
