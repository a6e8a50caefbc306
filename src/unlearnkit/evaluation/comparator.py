"""The Unlearning Comparator's worst-case privacy score (a plain function over two Scores).

Lee, Yu, Jang, Woo & Jo 2025, "Unlearning Comparator: A Visual Analytics System for
Comparative Evaluation of Machine Unlearning Methods" (arXiv:2508.12730; official code
github.com/gnueaj/Machine-Unlearning-Comparator, ``backend/app/utils/attack*.py``).

An attacker sees one model's outputs on the forget set and must tell the unlearned model
from the retrained reference. Two per-example features are used:

* entropy ``H = -sum_c p_c log p_c`` of ``p = softmax(z / T1)``, ``T1 = 2``;
* confidence ``log p_max - log(1 - p_max)`` of ``p = softmax(z / T2)``, ``T2 = 1``
  (the top class, not the true label);

each clipped to a fixed range (entropy ``[0, 2.5]``, confidence ``[-2.5, 10]``) and swept
over ``bins = 201`` evenly spaced thresholds ``t``, in both directions (positives = the
unlearned model's values, or the reference's). For one threshold, ``TPR = P(pos >= t)``,
``FPR = P(neg >= t)``, ``FNR = 1 - TPR`` and (``delta = 1e-5``)

``eps(t) = max(0, min(log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR))``,

with the forgetting quality ``FQ(t) = 2^{-eps(t)}`` (``FQ = 0`` when FPR = FNR = 0, ``FQ = 1``
when FPR or FNR >= 1 - delta) and the attack score ``1 - FQ(t)``. The **worst-case privacy
score** is ``1 - max`` over both features, both directions and every threshold of the
attack score, i.e. ``min FQ`` in [0, 1]: 1 = no threshold attack separates the two models.

We follow the official code (which takes the *min* of the two log-ratios, a smaller epsilon
than the DP-style max) and its ranges and bins; the features are computed from the logits
stably (log-sum-exp) instead of adding 1e-45 inside the logs.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import DataError
from ..modalities.classifier.scores import Scores

DELTA = 1e-5
_EPS = 1e-10


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def entropy_feature(logits: np.ndarray, temperature: float = 2.0) -> np.ndarray:
    """Entropy (nats) of ``softmax(logits / temperature)``, one per row."""
    lp = _log_softmax(np.asarray(logits, np.float64) / temperature)
    return -(np.exp(lp) * lp).sum(axis=1)


def confidence_feature(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``log p_max - log(1 - p_max)`` of ``softmax(logits / temperature)``, one per row."""
    lp = _log_softmax(np.asarray(logits, np.float64) / temperature)
    top = lp.argmax(axis=1)
    idx = np.arange(len(lp))
    rest = lp.copy()
    rest[idx, top] = -np.inf
    m = rest.max(axis=1)
    log_rest = m + np.log(np.exp(rest - m[:, None]).sum(axis=1))
    return lp[idx, top] - log_rest


def attack_scores(pos: np.ndarray, neg: np.ndarray, thresholds: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """Attack score ``1 - FQ(t)`` of the rule "value >= t means positive", per threshold."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    t = np.asarray(thresholds, np.float64)[:, None]
    tpr = (pos[None, :] >= t).mean(1)
    fpr = (neg[None, :] >= t).mean(1)
    fnr = 1.0 - tpr
    sfp = np.clip(fpr, _EPS, 1 - delta - _EPS)
    sfn = np.clip(fnr, _EPS, 1 - delta - _EPS)
    eps = np.maximum(0.0, np.minimum(np.log(1 - delta - sfp) - np.log(sfn), np.log(1 - delta - sfn) - np.log(sfp)))
    fq = np.where((fpr == 0) & (fnr == 0), 0.0, np.where((fpr >= 1 - delta) | (fnr >= 1 - delta), 1.0, 2.0 ** (-eps)))
    return 1.0 - fq


def comparator_privacy(
    unlearned: Scores,
    reference: Scores,
    entropy_temperature: float = 2.0,
    confidence_temperature: float = 1.0,
    bins: int = 201,
    entropy_range: tuple[float, float] = (0.0, 2.5),
    confidence_range: tuple[float, float] = (-2.5, 10.0),
    delta: float = DELTA,
) -> dict:
    """Worst-case privacy score of ``unlearned`` against the retrained ``reference`` on one split.

    Pass both models' :class:`Scores` on the forget set. Returns ``{"privacy": min FQ in
    [0, 1] (higher = more private), "entropy": the score from the entropy attacks alone,
    "confidence": from the confidence attacks alone, "attack": the winning attack's name,
    "threshold": its threshold}``.
    """
    if len(unlearned) == 0 or len(reference) == 0:
        raise DataError("the comparator privacy score needs both models' scores on a non-empty forget set")
    features = {
        "entropy": (entropy_feature, entropy_temperature, entropy_range),
        "confidence": (confidence_feature, confidence_temperature, confidence_range),
    }
    out: dict = {"privacy": 1.0, "attack": "", "threshold": math.nan}
    for name, (fn, temp, (lo, hi)) in features.items():
        u = np.clip(fn(unlearned.logits, temp), lo, hi)
        r = np.clip(fn(reference.logits, temp), lo, hi)
        thr = np.linspace(lo, hi, bins)
        best = 1.0
        for direction, (pos, neg) in (("unlearned", (u, r)), ("reference", (r, u))):
            a = attack_scores(pos, neg, thr, delta)
            i = int(np.argmax(a))
            best = min(best, 1.0 - a[i])
            if 1.0 - a[i] < out["privacy"]:
                out.update(privacy=float(1.0 - a[i]), attack=f"{name}>=t:{direction}", threshold=float(thr[i]))
        out[name] = float(best)
    out["privacy"] = float(min(max(out["privacy"], 0.0), 1.0))
    return out
