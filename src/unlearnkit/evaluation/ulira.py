"""U-LiRA: the per-example unlearning likelihood-ratio attack (a plain function over arrays).

Hayes, Shumailov, Triantafillou, Khalifa & Papernot 2024, "Inexact Unlearning Needs More
Careful Evaluations to Avoid a False Sense of Privacy" (arXiv:2403.01218), adapt LiRA
(Carlini et al. 2022, "Membership Inference Attacks From First Principles") to unlearning:
for each forget example ``x`` the attacker holds the logit-scaled confidence
``phi(x) = log p_y - log(1 - p_y)`` of ``x`` under many models that were trained *with* ``x``
and then unlearned it ("in", shadow unlearns) and under many models that never saw it
("out", shadow retrains), fits one Gaussian to each, and calls a target model "unlearned"
when the likelihood ratio ``N(phi; mu_in, s_in^2) / N(phi; mu_out, s_out^2)`` is large.
A perfect unlearning method makes the two distributions equal: AUC 0.5.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataError


def _check(in_scores, out_scores) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(in_scores, dtype=np.float64), np.asarray(out_scores, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.shape[1] == 0:
        raise ConfigError(
            "pass in_scores (N_in, n_examples) and out_scores (N_out, n_examples) "
            f"with the same examples; got shapes {a.shape} and {b.shape}"
        )
    if min(len(a), len(b)) < 3:
        raise ConfigError(
            "U-LiRA needs at least 3 models on each side (one is held out as the target); train more shadow models"
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise DataError("U-LiRA scores must be finite; compute them with Scores.scaled_confidence")
    return a, b


def _loo(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased variance of each column of ``x`` without row ``j``, for every ``j``."""
    n = len(x)
    s, q = x.sum(0), (x * x).sum(0)
    mean = (s - x) / (n - 1)
    var = ((q - x * x) - (n - 1) * mean * mean) / (n - 2)
    return mean, np.maximum(var, 0.0)


def _logpdf(x: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    return -0.5 * (np.log(2 * np.pi * var) + (x - mean) ** 2 / var)


def _tpr_at(fpr: np.ndarray, tpr: np.ndarray, at: float) -> float:
    """Highest TPR among ROC points whose FPR is at most ``at`` (Carlini et al.'s low-FPR read-out)."""
    ok = fpr <= at
    return float(tpr[ok].max()) if ok.any() else 0.0


def ulira(in_scores: np.ndarray, out_scores: np.ndarray, fixed_variance: bool = False, min_std: float = 1e-3) -> dict:
    """Run U-LiRA with leave-one-out targets; return overall and per-example attack success.

    Args:
        in_scores: ``(N_in, n)`` logit-scaled confidences of the ``n`` forget examples under
            ``N_in`` models trained on them and then unlearned (shadow unlearns).
        out_scores: ``(N_out, n)`` the same under models trained without them (shadow retrains).
        fixed_variance: use one variance per side, the mean of the per-example variances
            (Carlini et al.'s "global variance", steadier with few models).
        min_std: floor on every fitted standard deviation (identical scores have variance 0).

    Per example ``i`` and target model ``t`` (each of the ``N_in + N_out`` models in turn),
    ``mu_in, s_in`` and ``mu_out, s_out`` are fitted on the models *other than* ``t`` and one
    partner model of the other side (leave-one-pair-out: in model ``j`` pairs with out model
    ``j mod N_out`` and out model ``k`` with in model ``k mod N_in``). A target is never in the
    set it is judged against, and both Gaussians come from equally many models: with plain
    leave-one-out the target's own side has one model fewer, its fit is noisier, and the
    attack is biased (AUC about 0.42 instead of 0.5 for N = 4 retrains vs retrains). The
    attack score is ``LLR_ti = log N(phi_ti; mu_in, s_in^2) - log N(phi_ti; mu_out, s_out^2)``;
    the label is 1 when ``t`` is an unlearned model.

    Returns a dict with ``auc`` (ROC AUC over all (target, example) pairs pooled, as LiRA
    reports it), ``tpr_at_1fpr`` and ``tpr_at_01fpr`` (TPR at FPR <= 1% and <= 0.1% on that
    pooled ROC), ``acc`` (balanced accuracy of the rule ``LLR > 0``, i.e. likelihood ratio
    above 1: the accuracy Hayes et al. report), ``per_example_acc`` (that accuracy per
    example, ``(n,)``), ``per_example_auc`` (AUC per example over its ``N_in + N_out``
    targets, ``(n,)``), and ``llr_in`` / ``llr_out`` (the attack scores).

    Departures from Hayes et al.: the paper draws a random forget set for each shadow model
    so one pool of models serves all examples, and judges separate target models; here the
    forget set is the task's one set and the shadow models themselves are the targets,
    left out in turn, which needs no extra models.
    """
    from scipy.stats import rankdata
    from sklearn.metrics import roc_auc_score, roc_curve

    a, b = _check(in_scores, out_scores)
    (m_in, v_in), (m_out, v_out) = _loo(a), _loo(b)
    pair_out = np.arange(len(a)) % len(b)  # the out model left out with in target j
    pair_in = np.arange(len(b)) % len(a)  # the in model left out with out target k
    fits = {  # target side -> (in mean, in var, out mean, out var), one row per target
        "in": (m_in, v_in, m_out[pair_out], v_out[pair_out]),
        "out": (m_in[pair_in], v_in[pair_in], m_out, v_out),
    }
    llr = {}
    for side, x in (("in", a), ("out", b)):
        mi, vi, mo, vo = fits[side]
        if fixed_variance:
            vi, vo = vi.mean(1, keepdims=True), vo.mean(1, keepdims=True)
        floor = min_std**2
        llr[side] = _logpdf(x, mi, np.maximum(vi, floor)) - _logpdf(x, mo, np.maximum(vo, floor))
    scores = np.concatenate([llr["in"].ravel(), llr["out"].ravel()])
    labels = np.concatenate([np.ones(llr["in"].size), np.zeros(llr["out"].size)])
    fpr, tpr, _ = roc_curve(labels, scores)
    per_acc = 0.5 * ((llr["in"] > 0).mean(0) + (llr["out"] <= 0).mean(0))
    ranks = rankdata(np.concatenate([llr["in"], llr["out"]]), axis=0)
    n_in, n_out = len(a), len(b)
    per_auc = (ranks[:n_in].sum(0) - n_in * (n_in + 1) / 2) / (n_in * n_out)
    return {
        "auc": float(roc_auc_score(labels, scores)),
        "tpr_at_1fpr": _tpr_at(fpr, tpr, 0.01),
        "tpr_at_01fpr": _tpr_at(fpr, tpr, 0.001),
        "acc": float(per_acc.mean()),
        "per_example_acc": per_acc,
        "per_example_auc": per_auc,
        "llr_in": llr["in"],
        "llr_out": llr["out"],
    }
