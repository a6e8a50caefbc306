"""Language-model unlearning metrics as plain functions over per-token quantities.

Nothing here calls a model: the LM adapter computes, per example, the log-probability
of every target token under teacher forcing (``token_logprobs``, shape ``(N, T)``),
a ``mask`` of the same shape marking the tokens that count (1 = scored; e.g. the
answer tokens of a QA pair, 0 = prompt or padding), argmax token ids, or the full
per-position log-distribution, and these functions turn them into metrics.

Conventions:

* A 1-D ``(T,)`` input is one example and is promoted to ``(1, T)``; per-example
  functions always return an ``(N,)`` float array.
* Every row must have at least one masked token; an empty input, a shape mismatch,
  NaN or a row with no target token raises :class:`~unlearnkit.errors.DataError`.
* Membership-inference (MIA) scores are oriented so that **higher means "more likely
  a member"** (seen in training), the convention of ``unlearnkit.evaluation.mia``.

Sources: TOFU (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs",
official code locuslab/tofu ``aggregate_eval_stat.py``), OpenUnlearning
(locuslab/open-unlearning ``src/evals/metrics``), MUSE (Shi et al. 2024, official
code swj0419/muse_bench ``eval.py``), Min-K% (Shi et al. 2024, ICLR), Min-K%++
(Zhang et al. 2024, arXiv:2404.02936), zlib / LOSS attacks (Carlini et al. 2021,
"Extracting Training Data from Large Language Models", USENIX Security).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np

from ...errors import ConfigError, DataError

MODEL_UTILITY_KEYS: tuple[str, ...] = tuple(
    f"{split}_{metric}"
    for split in ("retain", "real_authors", "world_facts")
    for metric in ("prob", "rouge", "truth_ratio")
)
"""The nine TOFU model-utility inputs: {retain, real authors, world facts} x
{answer probability, ROUGE-L recall, truth-ratio score}."""

_SIGMA_FLOOR = 1e-3  # Min-K%++: OpenUnlearning clamps the vocabulary variance at 1e-6
_AUC_CLIP = 1e6  # as evaluation.mia: scores beyond this carry no extra ranking information


# --------------------------------------------------------------------------- checks
def _rows(x, name: str, dtype=np.float64) -> np.ndarray:
    """``x`` as a 2-D array (1-D promoted to one row); rejects empty input and NaN."""
    a = np.asarray(x, dtype=dtype)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.size == 0:
        raise DataError(f"{name} must be a non-empty (N, T) array, got shape {np.shape(x)}; pass one row per example")
    if np.issubdtype(a.dtype, np.floating) and np.isnan(a).any():
        raise DataError(f"{name} contains NaN; recompute it from finite logits")
    return a


def _mask(mask, shape: tuple[int, int], name: str = "mask") -> np.ndarray:
    """Boolean mask of ``shape`` (``None`` = all tokens); every row needs one token."""
    m = np.ones(shape, dtype=bool) if mask is None else _rows(mask, name, dtype=np.float64)
    if m.shape != shape:
        raise DataError(
            f"{name} has shape {m.shape} but the token array has shape {shape}; give both the same (N, T) shape"
        )
    m = m.astype(bool)
    empty = np.flatnonzero(~m.any(axis=1))
    if empty.size:
        raise DataError(f"example(s) {empty[:5].tolist()} have no target tokens in {name}; drop them or fix the mask")
    return m


def _vector(x, name: str) -> np.ndarray:
    """Non-empty, finite 1-D float array."""
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size == 0 or not np.isfinite(a).all():
        raise DataError(f"{name} must be a non-empty array of finite numbers; drop examples that produced NaN or inf")
    return a


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask, values, 0.0).sum(axis=1) / mask.sum(axis=1)


# --------------------------------------------------------------------------- TOFU
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    """rouge_score's default tokenisation before stemming: lower-case, non-``[a-z0-9]`` runs
    -> space, split on whitespace (so "Don't!" -> ``["don", "t"]``; accented letters split
    words). :func:`rouge_l_recall` also Porter-stems tokens longer than 3 characters."""
    return _NON_ALNUM.sub(" ", text.lower()).split()


@lru_cache(maxsize=1)
def _rouge_scorer():
    try:
        from rouge_score import rouge_scorer
    except ImportError:  # pragma: no cover - rouge-score is in the llm extra
        raise ConfigError(
            "ROUGE-L needs the rouge-score package: pip install rouge-score (or unlearnkit[llm])"
        ) from None
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_recall(prediction: str, reference: str) -> float:
    """ROUGE-L recall of ``prediction`` against ``reference``: ``LCS(pred, ref) / |ref|``.

    Lin 2004 ("ROUGE", sentence-level ROUGE-L, recall ``R_lcs = LCS(X, Y) / m`` with
    ``m = |reference|``), computed exactly as TOFU (locuslab/tofu
    ``evaluate_util.eval_rouge_recall``) and OpenUnlearning (``eval_text_similarity``) do:
    ``rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(reference,
    prediction)["rougeL"].recall`` from the ``rouge-score`` package. Its tokenizer lower-cases,
    turns non-``[a-z0-9]`` runs into spaces (:func:`rouge_tokens`) and Porter-stems tokens
    longer than 3 characters, so "running dogs" matches "run dog" (recall 1.0). An empty
    prediction or reference (after tokenisation) scores 0.0.
    """
    if not isinstance(prediction, str) or not isinstance(reference, str):
        raise DataError("rouge_l_recall takes two strings; decode token ids to text first")
    return float(_rouge_scorer().score(reference, prediction)["rougeL"].recall)


def answer_probability(token_logprobs, mask=None) -> np.ndarray:
    """TOFU's length-normalised answer probability ``P(a|q)^(1/|a|)`` per example.

    Maini et al. 2024, Sec. 2.5 "Probability": ``P(a|q)^(1/|a|)`` with ``|a|`` the answer
    length in tokens; official code ``exp(-avg_gt_loss)`` where ``avg_gt_loss`` is the
    mean token NLL over the answer. Here: ``exp(mean_{t in mask} log p(x_t))``.
    Returns shape ``(N,)``.
    """
    lp = _rows(token_logprobs, "token_logprobs")
    return np.exp(_masked_mean(lp, _mask(mask, lp.shape)))


def option_probability(true_logprob_mean, false_logprob_means) -> np.ndarray:
    """TOFU's probability on Real Authors / World Facts: ``p_true / (p_true + sum p_false)``.

    locuslab/tofu ``aggregate_eval_stat.get_model_utility`` (non-``eval_log`` files):
    with ``p = exp(mean token log-prob)`` (:func:`answer_probability`) of the correct
    answer and of each of the ``K`` wrong options. Inputs: ``(N,)`` mean log-probs of
    the true answers and ``(N, K)`` of the wrong ones. Returns ``(N,)``.
    """
    t = _vector(true_logprob_mean, "true_logprob_mean")
    f = _rows(false_logprob_means, "false_logprob_means")
    if f.shape[0] != t.size or not np.isfinite(f).all():
        raise DataError(
            f"false_logprob_means must be finite with shape ({t.size}, K), got "
            f"{f.shape}; pass one row of K wrong-option scores per example"
        )
    p_true, p_false = np.exp(t), np.exp(f).sum(axis=1)
    return p_true / (p_true + p_false)


def truth_ratio(paraphrased_logprob_mean, perturbed_logprob_means) -> np.ndarray:
    """TOFU truth ratio ``R = P(a_pert|q)^(1/|a_pert|) / P(a_para|q)^(1/|a_para|)``.

    Maini et al. 2024, Sec. 2.5 "Truth Ratio": ``R_truth = [mean_{a in A_pert}
    P(a|q)^(1/|a|)] / P(a~|q)^(1/|a~|)``, ``a~`` the paraphrased answer, ``A_pert`` the
    perturbed (wrong) answers. Inputs are *mean token log-probs*: ``(N,)`` for the
    paraphrase, ``(N, K)`` for the ``K`` perturbations. Returns ``(N,)``; ``R < 1``
    means the model prefers the correct (paraphrased) answer.

    Departure from the paper's text, following both official codes: the average over
    perturbations is taken in log space (a geometric mean of the normalised
    probabilities): ``R = exp(mean_k lp_pert[k] - lp_para)`` — locuslab/tofu computes
    ``exp(average_perturb_loss.mean(-1) - avg_paraphrased_loss)`` (its inverse, ``1/R``)
    and OpenUnlearning ``exp(-mean(wrong_avg_loss)) / exp(-correct_avg_loss)``.
    """
    para = _vector(paraphrased_logprob_mean, "paraphrased_logprob_mean")
    pert = _rows(perturbed_logprob_means, "perturbed_logprob_means")
    if pert.shape[0] != para.size or not np.isfinite(pert).all():
        raise DataError(
            f"perturbed_logprob_means must be finite with shape ({para.size}, K), "
            f"got {pert.shape}; pass one row of K perturbed scores per example"
        )
    return np.exp(pert.mean(axis=1) - para)


def truth_ratio_score(ratios, split: str = "retain") -> float:
    """TOFU's aggregated truth-ratio score (higher is better) from per-example ``R``.

    locuslab/tofu ``get_model_utility`` / OpenUnlearning ``truth_ratio``:

    * ``split="forget"``: ``mean(min(R, 1/R))`` ("closer_to_1_better": a model that
      cannot tell true from false answers scores 1);
    * ``split="retain"`` (also real authors / world facts): ``mean(max(0, 1 - R))``
      ("true_better").

    Forget quality uses the raw ``R`` distribution instead (:func:`forget_quality`).
    """
    r = _vector(ratios, "ratios")
    if (r <= 0).any():
        raise DataError("truth ratios must be > 0; compute them with truth_ratio()")
    if split == "forget":
        return float(np.mean(np.minimum(r, 1.0 / r)))
    if split == "retain":
        return float(np.mean(np.maximum(0.0, 1.0 - r)))
    raise ConfigError(f"split must be 'forget' or 'retain', got {split!r}")


def forget_quality(truth_ratios_unlearned, truth_ratios_reference) -> tuple[float, float]:
    """TOFU forget quality: two-sample Kolmogorov-Smirnov test on forget-set truth ratios.

    Maini et al. 2024, Sec. 2.5 "Forget Quality": ``scipy.stats.ks_2samp`` between the
    per-example truth ratios of the unlearned model and of the retain-only (retrained)
    reference model on the forget set; returns ``(p_value, ks_statistic)``. A high
    p-value means the distributions are indistinguishable (good forgetting).
    locuslab/tofu tests ``1/R`` and OpenUnlearning ``1/R`` too; KS is invariant under the
    monotone map ``R -> 1/R``, so testing ``R`` gives the same statistic and p-value.
    """
    from scipy.stats import ks_2samp

    u = _vector(truth_ratios_unlearned, "truth_ratios_unlearned")
    r = _vector(truth_ratios_reference, "truth_ratios_reference")
    res = ks_2samp(u, r)
    return float(res.pvalue), float(res.statistic)


def model_utility(values: Mapping[str, float]) -> float:
    """TOFU model utility: harmonic mean of the nine :data:`MODEL_UTILITY_KEYS` values.

    locuslab/tofu ``get_model_utility``: ``scipy.stats.hmean`` over {Prob., ROUGE,
    Truth Ratio} x {Retain, Real Authors, Real World}, where Prob. is
    :func:`answer_probability` averaged on retain and :func:`option_probability` on the
    other two, ROUGE is mean :func:`rouge_l_recall`, and Truth Ratio is
    :func:`truth_ratio_score` with ``split="retain"``.

    A missing or unknown key, or a negative / non-finite value, raises. A value of exactly
    0 (e.g. a truth-ratio score clipped at 0) gives 0.0, the harmonic mean's limit and
    what ``scipy.stats.hmean`` returns.
    """
    missing = [k for k in MODEL_UTILITY_KEYS if k not in values]
    unknown = [k for k in values if k not in MODEL_UTILITY_KEYS]
    if missing or unknown:
        raise DataError(
            f"model_utility needs exactly the keys {list(MODEL_UTILITY_KEYS)}; missing {missing}, unknown {unknown}"
        )
    v = np.array([float(values[k]) for k in MODEL_UTILITY_KEYS])
    if not np.isfinite(v).all() or (v < 0).any():
        raise DataError("model_utility values must be finite and >= 0; check the nine inputs")
    if (v == 0).any():
        return 0.0
    return float(len(v) / np.sum(1.0 / v))


# --------------------------------------------------------------------------- memorisation
def _id_pair(pred_token_ids, target_token_ids) -> tuple[np.ndarray, np.ndarray]:
    p = _rows(pred_token_ids, "pred_token_ids", dtype=np.int64)
    t = _rows(target_token_ids, "target_token_ids", dtype=np.int64)
    if p.shape != t.shape:
        raise DataError(
            f"pred_token_ids {p.shape} and target_token_ids {t.shape} differ; "
            "align predictions with the tokens they predict"
        )
    return p, t


def exact_memorization(pred_token_ids, target_token_ids, mask=None) -> np.ndarray:
    """Exact memorisation: fraction of target tokens the model predicts, per example.

    Tirumala et al. 2022 ("Memorization without overfitting", NeurIPS), as used for
    unlearning by OpenUnlearning (``exact_memorization``):
    ``EM = (1/|y|) sum_t 1[argmax_v p(v | x, y_<t) = y_t]`` under teacher forcing.
    ``pred_token_ids[i, t]`` is the argmax prediction for position ``t`` given the true
    prefix. Returns ``(N,)`` in ``[0, 1]``.
    """
    p, t = _id_pair(pred_token_ids, target_token_ids)
    m = _mask(mask, p.shape)
    return _masked_mean((p == t).astype(np.float64), m)


def extraction_strength(pred_token_ids, target_token_ids, mask=None) -> np.ndarray:
    """Extraction strength: how short a prefix of the target suffices to extract the rest.

    Wang et al. 2025 ("Towards Effective Evaluations and Comparisons for LLM Unlearning
    Methods", ICLR), building on Carlini et al. 2021's extraction notion; implemented in
    OpenUnlearning (``extraction_strength``):
    ``ES = 1 - (1/|y|) min{k : f(x, y_<k) greedily generates y_>=k}``. Greedy decoding
    from the true prefix ``y_<k`` reproduces ``y_>=k`` exactly iff every teacher-forced
    argmax prediction from position ``k`` on is correct, so ``k`` is the start of the
    longest all-correct tail of ``pred == target``: ES = 1 when all tokens are predicted,
    0 when the last one is wrong (``k = |y|``).

    Departure: OpenUnlearning's loop stops at ``k = |y| - 1`` and so gives ``1/|y|``
    (not 0) when even the last token is wrong; we follow the paper's definition.
    With a ``mask``, the target is the masked tokens of each row, in order.
    Returns ``(N,)`` in ``[0, 1]``.
    """
    p, t = _id_pair(pred_token_ids, target_token_ids)
    m = _mask(mask, p.shape)
    out = np.empty(p.shape[0])
    for i in range(p.shape[0]):
        hit = (p[i] == t[i])[m[i]]
        tail = len(hit) - (np.flatnonzero(~hit)[-1] + 1) if (~hit).any() else len(hit)
        out[i] = tail / len(hit)  # = 1 - k / |y| with k = |y| - tail
    return out


# --------------------------------------------------------------------------- MIA scores
def loss_score(token_logprobs, mask=None) -> np.ndarray:
    """LOSS attack score (Yeom et al. 2018; Carlini et al. 2021): ``-mean token NLL``.

    ``mean_{t in mask} log p(x_t | x_<t)``; higher = lower loss = more likely member.
    (OpenUnlearning's ``mia_loss`` returns the loss itself, i.e. the negation.)
    """
    lp = _rows(token_logprobs, "token_logprobs")
    return _masked_mean(lp, _mask(mask, lp.shape))


def zlib_score(token_logprobs, mask, texts: Sequence[str]) -> np.ndarray:
    """zlib attack score (Carlini et al. 2021, Sec. 5.1 "zlib"): ``-loss / zlib_len``.

    Carlini et al. rank samples by the ratio of the model's log-perplexity to the zlib
    entropy of the text; OpenUnlearning (``mia_zlib``) uses ``mean token NLL /
    len(zlib.compress(text.encode("utf-8")))`` (compressed length in bytes). We return
    that ratio negated so that higher = more likely member. ``texts[i]`` is the text
    whose tokens row ``i`` scores.
    """
    nll = -loss_score(token_logprobs, mask)
    if isinstance(texts, str) or len(texts) != nll.size:
        raise DataError(f"texts must be a list of {nll.size} strings, one per example")
    zlen = np.array([len(zlib.compress(str(s).encode("utf-8"))) for s in texts], dtype=float)
    return -nll / zlen


def _bottom_k_mean(values: np.ndarray, mask: np.ndarray, k: float) -> np.ndarray:
    if not 0.0 < k <= 1.0:
        raise ConfigError(f"k is a fraction of tokens in (0, 1], got {k}")
    out = np.empty(values.shape[0])
    for i in range(values.shape[0]):
        v = np.sort(values[i][mask[i]])
        out[i] = v[: max(1, int(len(v) * k))].mean()
    return out


def min_k_score(token_logprobs, mask=None, k: float = 0.2) -> np.ndarray:
    """Min-K% Prob (Shi et al. 2024, "Detecting Pretraining Data from LLMs", ICLR).

    ``(1/|S|) sum_{t in S} log p(x_t | x_<t)`` over the set ``S`` of the ``k`` fraction of
    masked tokens with the lowest log-prob, ``|S| = max(1, floor(k * n_tokens))``
    (official code: ``int(len * ratio)``; the ``max(1, .)`` floor is OpenUnlearning's).
    Higher = more likely member (OpenUnlearning returns the negation).
    """
    lp = _rows(token_logprobs, "token_logprobs")
    return _bottom_k_mean(lp, _mask(mask, lp.shape), k)


def vocab_stats(log_probs_full) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of ``log p(z)`` for ``z ~ p`` at each position (Min-K%++'s mu, sigma).

    Zhang et al. 2024 ("Min-K%++", arXiv:2404.02936), Eq. 3: ``mu_t = E_{z~p(.|x_<t)}
    [log p(z|x_<t)] = sum_z p log p`` and ``sigma_t = sqrt(E[(log p)^2] - mu_t^2)``.
    ``log_probs_full``: ``(T, V)`` or ``(N, T, V)`` normalised log-probabilities
    (``log_softmax`` of the logits). Returns ``(mu, sigma)`` of shape ``(T,)`` /
    ``(N, T)``. Zero-probability entries (``-inf``) contribute 0.
    """
    lp = np.asarray(log_probs_full, dtype=np.float64)
    if lp.ndim not in (2, 3) or lp.size == 0 or np.isnan(lp).any():
        raise DataError(
            f"log_probs_full must be a non-empty (T, V) or (N, T, V) array without NaN, got shape {lp.shape}"
        )
    p = np.exp(lp)
    if not np.allclose(p.sum(axis=-1), 1.0, atol=1e-4):
        raise DataError("log_probs_full rows do not sum to 1 in probability; pass log_softmax(logits), not raw logits")
    safe = np.where(p > 0, lp, 0.0)
    mu = (p * safe).sum(axis=-1)
    var = (p * safe**2).sum(axis=-1) - mu**2
    return mu, np.sqrt(np.maximum(var, 0.0))


def min_k_plus_plus_score(token_logprobs, token_mu, token_sigma, mask=None, k: float = 0.2) -> np.ndarray:
    """Min-K%++ (Zhang et al. 2024, arXiv:2404.02936, Eq. 3-4).

    Per token ``z_t = (log p(x_t|x_<t) - mu_t) / sigma_t`` with ``mu_t, sigma_t`` from
    :func:`vocab_stats`; score = mean of the lowest ``k`` fraction of ``z_t`` (same
    ``max(1, floor(k n))`` count as :func:`min_k_score`). Higher = more likely member.
    ``sigma_t`` is floored at 1e-3 (OpenUnlearning clamps the variance at 1e-6), so
    near-deterministic positions do not divide by zero.
    """
    lp = _rows(token_logprobs, "token_logprobs")
    mu, sigma = _rows(token_mu, "token_mu"), _rows(token_sigma, "token_sigma")
    if mu.shape != lp.shape or sigma.shape != lp.shape:
        raise DataError(
            f"token_mu {mu.shape} and token_sigma {sigma.shape} must match "
            f"token_logprobs {lp.shape}; compute them with vocab_stats()"
        )
    if (sigma < 0).any():
        raise DataError("token_sigma must be >= 0; compute it with vocab_stats()")
    z = (lp - mu) / np.maximum(sigma, _SIGMA_FLOOR)
    return _bottom_k_mean(z, _mask(mask, lp.shape), k)


def mia_auc(member_scores, nonmember_scores) -> float:
    """ROC AUC of the rule "score > t means member" (scores: higher = member).

    0.5 = chance; 1 = members always score higher; ties count half (``sklearn.metrics.
    roc_auc_score``, scores clipped to +-1e6 as :func:`unlearnkit.evaluation.mia.threshold_attack`
    does, so the value is the same as that attack's AUC). Unlike it, empty or NaN input
    raises instead of returning NaN.
    """
    from sklearn.metrics import roc_auc_score

    m = np.asarray(member_scores, dtype=np.float64).reshape(-1)
    n = np.asarray(nonmember_scores, dtype=np.float64).reshape(-1)
    if m.size == 0 or n.size == 0 or np.isnan(m).any() or np.isnan(n).any():
        raise DataError("mia_auc needs non-empty member and non-member scores without NaN")
    scores = np.clip(np.concatenate([m, n]), -_AUC_CLIP, _AUC_CLIP)
    return float(roc_auc_score(np.r_[np.ones(m.size), np.zeros(n.size)], scores))


def privleak(auc_unlearned: float, auc_reference: float) -> float:
    """MUSE PrivLeak in percent: ``(AUC_unlearn - AUC_retrain) / AUC_retrain * 100``.

    Shi et al. 2024 ("MUSE: Machine Unlearning Six-Way Evaluation for Language Models"),
    official code swj0419/muse_bench ``eval.py``:
    ``(auc - AUC_RETRAIN) / AUC_RETRAIN * 100``, with the AUC of a forget-vs-holdout MIA
    (MUSE uses Min-40%) on the unlearned and on the retrained model. 0 is ideal.

    Sign: the value is the literal formula on the AUCs passed. With :func:`mia_auc`'s
    orientation (higher = member), a model that still remembers the forget set has
    AUC > AUC_retrain and a *positive* PrivLeak (under-unlearning); a negative value
    means the forget set looks *less* like training data than under retraining
    (over-unlearning). MUSE's own tables may use the opposite AUC orientation (its
    reported sign convention was not verified here); compare signs only within one
    orientation.
    """
    for name, a in (("auc_unlearned", auc_unlearned), ("auc_reference", auc_reference)):
        if not 0.0 <= float(a) <= 1.0:
            raise DataError(f"{name} must be an AUC in [0, 1], got {a}")
    if float(auc_reference) == 0.0:
        raise DataError("auc_reference is 0, PrivLeak is undefined; check the reference MIA")
    return (float(auc_unlearned) - float(auc_reference)) / float(auc_reference) * 100.0
