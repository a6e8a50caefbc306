"""The NeurIPS 2023 Machine Unlearning competition's score (plain functions over arrays).

Triantafillou et al., "Are we making progress in unlearning? Findings from the first NeurIPS
unlearning competition" (arXiv:2406.09073), and the evaluation whitepaper / official code
(github.com/google-deepmind/unlearning_evaluation, ``metric.py`` and ``main.py``).

Per forget example ``x``, with the logit-scaled confidences of ``x`` under ``N`` unlearned
models and ``N`` retrained models (never trained on ``x``):

1. the *positive* distribution is the one with the larger median;
2. a family of decision rules is swept: single thresholds (``phi >= t`` → positive) and
   double thresholds (``l <= phi <= r`` → the peakier distribution, the one with the smaller
   range); each rule gives (FPR, FNR);
3. each rule gives ``eps = max(log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR)``
   (clipped below at 0), with ``delta = 1e-5``; a rule with FPR = FNR = 0 gives ``inf``, a
   rule with exactly one of them 0 is discarded (too few samples to estimate it);
   ``eps(x)`` is the largest over the rules, clipped to ``[0, 50]``; if one distribution's
   range is below 1% of the other's (very peaky), ``eps(x) = 50``;
4. ``eps(x)`` falls in a bucket of width 0.5: ``k(x) = floor(eps(x) / 0.5)``, worth
   ``2^{-k(x)}`` points (i.e. ``2 / 2^{k}`` for 1-based ``k``) if the bucket ends at or before
   ``ceil(log(N - 1))`` (the largest epsilon ``N`` samples can certify) and 0 beyond;
   ``F = (1/|S|) sum_x points(x)``;
5. the final score is ``F x (RA_u / RA_r) x (TA_u / TA_r)`` with retain/test accuracies
   averaged over the unlearned and over the retrained models.

Identical distributions give ``eps = 0`` everywhere and ``F = 1``; perfectly separated ones
give ``eps = 50`` and ``F = 0``.

The rule family is the official one (double thresholds whose right end lies within 2 of
the peaky distribution's maximum and whose width lies within 2 of its range; these bounds
matter: with every interval allowed, chance finds
narrow intervals holding several samples of one side and one of the other).

Read ``F`` against exact retraining's: two finite samples of the *same* distribution still
show epsilon (a threshold above all but a few samples compares counts like 5 vs 1, log 5 =
1.6); in simulation, Gaussian samples give a median epsilon of about 1.6 and ``F`` about
0.2 at every N from 8 to 512. So ``F`` is far below 1 even for the retrain method;
compare methods with it at the same N.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError, DataError

DELTA = 1e-5
EPSILON_CAP = 50.0
BUCKET = 0.5
THRESHOLDS_PER_UNIT = 100
BUFFER = 2.0  # double thresholds: right end / width within this of the peaky side's max / range


def _epsilon_of_rules(fpr: np.ndarray, fnr: np.ndarray, delta: float) -> float:
    """Largest epsilon over decision rules given their FPR and FNR (nan when no rule counts)."""
    fpr, fnr = np.asarray(fpr, np.float64).ravel(), np.asarray(fnr, np.float64).ravel()
    if np.any((fpr == 0) & (fnr == 0)):
        return math.inf  # perfect separation
    keep = (fpr > 0) & (fnr > 0)
    if not keep.any():
        return math.nan
    f, g = fpr[keep], fnr[keep]
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.fmax(np.log(1 - delta - f) - np.log(g), np.log(1 - delta - g) - np.log(f))
    e = e[~np.isnan(e)]
    return float(np.clip(e.max(), 0, None)) if e.size else math.nan


def _grid(lo: float, hi: float) -> np.ndarray:
    return np.linspace(lo, hi, int(math.ceil((hi - lo) * THRESHOLDS_PER_UNIT)))


def _distinct_rates(in_a: np.ndarray, in_b: np.ndarray, n_a: int, n_b: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (fraction of a, fraction of b) pairs among rules given by their counts."""
    present = np.bincount(in_a * (n_b + 1) + in_b, minlength=(n_a + 1) * (n_b + 1)) > 0
    a, b = np.divmod(np.flatnonzero(present), n_b + 1)
    return a / n_a, b / n_b


def example_epsilon(pos: np.ndarray, neg: np.ndarray, delta: float = DELTA, cap: float = EPSILON_CAP) -> float:
    """Epsilon of one example from its ``pos`` and ``neg`` samples (one value per model).

    ``pos`` is the distribution with the larger median. The rules are the official ones on
    the official grid (100 thresholds per unit): single thresholds from the smallest to the
    largest value; double thresholds ``[l, r]`` with ``r`` within 2 of the peaky
    distribution's largest value and width ``r - l`` within 2 of its range. A rule's rates
    depend only on how many samples of each side it holds, so for each ``r`` every count of
    samples below ``l`` that ``l`` can reach in its range is enumerated instead of stepping
    ``l`` by 0.01 (400 x 400 rules per example): the same partitions, plus any that fall
    between two samples closer than the step. Each distinct (TPR, FPR) is scored once.
    """
    pos, neg = np.sort(np.asarray(pos, np.float64)), np.sort(np.asarray(neg, np.float64))
    n_p, n_n = len(pos), len(neg)
    rp, rn = pos[-1] - pos[0], neg[-1] - neg[0]
    largest, smallest = max(rp, rn), min(rp, rn)
    if largest == 0:
        return 0.0 if pos[0] == neg[0] else cap
    if smallest / largest < 0.01:
        return cap
    # single threshold: phi >= t predicts positive
    t = _grid(min(pos[0], neg[0]), max(pos[-1], neg[-1]))
    tpr, fpr = _distinct_rates(
        n_p - np.searchsorted(pos, t, side="left"), n_n - np.searchsorted(neg, t, side="left"), n_p, n_n
    )
    # double threshold: l <= phi <= r predicts the peakier distribution (smaller range)
    peaky, other = (neg, pos) if rp >= rn else (pos, neg)
    both = np.concatenate([peaky, other])
    order = np.argsort(both, kind="stable")
    values, from_peaky = both[order], order < len(peaky)
    cum_p = np.r_[0, np.cumsum(from_peaky)]
    cum_o = np.r_[0, np.cumsum(~from_peaky)]
    right = _grid(peaky[0] + smallest - BUFFER, peaky[-1] + BUFFER)
    upto = np.searchsorted(values, right, side="right")  # samples <= r
    first = np.searchsorted(values, right - smallest - BUFFER, side="left")  # samples < l, l lowest
    last = np.searchsorted(values, right - smallest + BUFFER, side="left")  # ... l highest
    below = first[:, None] + np.arange(len(values) + 1)[None, :]
    keep = below <= last[:, None]
    upto, below = np.broadcast_to(upto[:, None], below.shape)[keep], below[keep]
    tpr_d, fpr_d = _distinct_rates(
        np.maximum(cum_p[upto] - cum_p[below], 0), np.maximum(cum_o[upto] - cum_o[below], 0), len(peaky), len(other)
    )
    eps = _epsilon_of_rules(np.concatenate([fpr, fpr_d]), np.concatenate([1 - tpr, 1 - tpr_d]), delta)
    return 0.0 if math.isnan(eps) else float(min(eps, cap))


def _check(unlearned, retrained) -> tuple[np.ndarray, np.ndarray]:
    u, r = np.asarray(unlearned, np.float64), np.asarray(retrained, np.float64)
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1] or u.shape[1] == 0:
        raise ConfigError(
            "pass unlearned (N_u, n_examples) and retrained (N_r, n_examples) "
            f"confidences over the same examples; got shapes {u.shape} and {r.shape}"
        )
    if min(len(u), len(r)) < 3:
        raise ConfigError(
            "the competition score needs at least 3 unlearned and 3 retrained "
            "models (log(N - 1) bounds the epsilon it can certify)"
        )
    if not (np.isfinite(u).all() and np.isfinite(r).all()):
        raise DataError("confidences must be finite; compute them with Scores.scaled_confidence")
    return u, r


def example_epsilons(
    unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA, cap: float = EPSILON_CAP
) -> np.ndarray:
    """Per-example epsilon, ``(n,)``, from ``(N_u, n)`` unlearned and ``(N_r, n)`` retrained
    logit-scaled confidences (the positive side per example is the one with the larger median)."""
    u, r = _check(unlearned, retrained)
    retrain_pos = np.median(r, 0) > np.median(u, 0)
    return np.array(
        [
            example_epsilon(r[:, i], u[:, i], delta, cap)
            if retrain_pos[i]
            else example_epsilon(u[:, i], r[:, i], delta, cap)
            for i in range(u.shape[1])
        ]
    )


def bucket_points(eps: np.ndarray, n_models: int) -> np.ndarray:
    """Points per example: ``2^{-floor(eps / 0.5)}`` within ``[0, ceil(log(n_models - 1)))``, else 0."""
    eps = np.asarray(eps, np.float64)
    n_buckets = int(math.ceil(math.log(n_models - 1)) / BUCKET) if n_models > 2 else 0
    k = np.floor(eps / BUCKET)
    return np.where(k < n_buckets, 0.5 ** np.minimum(k, 1000), 0.0)


def forget_score(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA) -> float:
    """The competition's forgetting quality ``F`` in [0, 1] (1 = indistinguishable from retraining).

    ``F = (1/|S|) sum_x 2^{-k(x)}``, ``k(x) = floor(eps(x) / 0.5)``, buckets up to
    ``ceil(log(N_u - 1))`` (``N_u``: number of unlearned models, as in the official code).
    """
    eps = example_epsilons(unlearned, retrained, delta)
    return float(bucket_points(eps, len(unlearned)).mean())


def competition_score(
    unlearned: np.ndarray,
    retrained: np.ndarray,
    ra_unlearned,
    ra_retrained,
    ta_unlearned,
    ta_retrained,
    delta: float = DELTA,
) -> dict:
    """``F``, the per-example epsilons and the final score ``F x (RA_u/RA_r) x (TA_u/TA_r)``.

    ``ra_*`` / ``ta_*``: retain / test accuracy of each unlearned / retrained model (scalars or
    one per model; each side is averaged). Returns ``{"F", "score", "eps", "ra_ratio",
    "ta_ratio"}``; a ratio is nan when the retrained accuracy is 0.
    """
    eps = example_epsilons(unlearned, retrained, delta)
    f = float(bucket_points(eps, len(unlearned)).mean())
    ra_r, ta_r = float(np.mean(ra_retrained)), float(np.mean(ta_retrained))
    ra = float(np.mean(ra_unlearned)) / ra_r if ra_r > 0 else math.nan
    ta = float(np.mean(ta_unlearned)) / ta_r if ta_r > 0 else math.nan
    return {"F": f, "score": f * ra * ta, "eps": eps, "ra_ratio": ra, "ta_ratio": ta}
