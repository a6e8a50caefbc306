"""Membership-inference attacks over per-example scores (plain functions over arrays).

Every attack here is *population* level: it learns or sweeps one decision rule over
the whole member / non-member population. Such attacks understate what a per-example
attack (LiRA, Carlini et al. 2022) can recover, so a low number here is necessary but
not sufficient evidence of forgetting.

Conventions: ``members`` are scores of examples the attacker should call members
(the forget set, for unlearning), ``nonmembers`` scores of never-trained examples
drawn like them (the holdout). A score's direction is fixed by the caller: for the
threshold attacks pass scores where *higher means member* (e.g. ``-loss``).
Empty inputs or NaN scores give ``nan``, never an exception.
"""

from __future__ import annotations

import numpy as np

_CLIP = 1e6  # features beyond this carry no extra ranking information; keeps sklearn finite


def _clean(x: np.ndarray) -> np.ndarray | None:
    """Float64 copy with +-inf clipped; ``None`` if empty or any NaN."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0 or np.isnan(x).any():
        return None
    return np.clip(x, -_CLIP, _CLIP)


def _labelled(members, nonmembers) -> tuple[np.ndarray, np.ndarray] | None:
    m, n = _clean(members), _clean(nonmembers)
    if m is None or n is None:
        return None
    y = np.concatenate([np.ones(len(m)), np.zeros(len(n))])
    return np.concatenate([m, n]), y


def auc_and_advantage(scores: np.ndarray, is_member: np.ndarray) -> tuple[float, float]:
    """ROC AUC and membership advantage of the rule "score > t means member".

    Advantage (Yeom et al. 2018, "Privacy Risk in Machine Learning", Def. 4):
    ``Adv = TPR - FPR``; we report ``max_t (TPR(t) - FPR(t))`` over every threshold
    ``t``, i.e. the best threshold chosen *with* knowledge of membership, an optimistic
    (upper) estimate for a threshold attacker. It is >= 0 by construction (the empty
    rule has TPR = FPR = 0); an AUC below 0.5 means the scores point the other way.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    scores, is_member = np.asarray(scores, dtype=np.float64), np.asarray(is_member)
    if np.isnan(scores).any() or len(np.unique(is_member)) < 2:
        return float("nan"), float("nan")
    scores = np.clip(scores, -_CLIP, _CLIP)
    fpr, tpr, _ = roc_curve(is_member, scores, drop_intermediate=False)
    return float(roc_auc_score(is_member, scores)), float(np.max(tpr - fpr))


def threshold_attack(members: np.ndarray, nonmembers: np.ndarray) -> tuple[float, float]:
    """Threshold attack on one score (Yeom et al. 2018; Song & Mittal 2021, metric-based).

    ``members``/``nonmembers``: 1-D scores where higher means member (pass ``-loss``,
    ``confidence``, ``-entropy``). Returns ``(AUC, max_t TPR - FPR)``; see
    :func:`auc_and_advantage`.
    """
    data = _labelled(members, nonmembers)
    if data is None:
        return float("nan"), float("nan")
    return auc_and_advantage(*data)


def logistic_attack(
    members: np.ndarray, nonmembers: np.ndarray, seed: int = 0, max_folds: int = 5
) -> tuple[float, float]:
    """Logistic-regression membership classifier, scored out of fold.

    Features: the columns of ``members``/``nonmembers`` (shape ``(n, d)``; the metric
    passes loss, confidence and entropy), standardised inside each fold
    (``StandardScaler`` + ``LogisticRegression``). Evaluated by seeded stratified
    k-fold cross-validation over members ∪ non-members with ``k = min(max_folds,
    smallest class count)``; every example is scored by the model that did not see
    it, and AUC and advantage (:func:`auc_and_advantage`) are computed over the pooled
    out-of-fold probabilities. Returns ``(nan, nan)`` when ``k < 2``.

    This is the learned (Shokri et al. 2017 style) attack reduced to per-example
    scores rather than shadow models' full output vectors: a departure, and a weaker
    attacker than LiRA. Pooling folds mixes slightly different classifiers.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    m, n = _clean(members), _clean(nonmembers)
    if m is None or n is None:
        return float("nan"), float("nan")
    m, n = m.reshape(len(m), -1), n.reshape(len(n), -1)
    k = min(max_folds, len(m), len(n))
    if k < 2:
        return float("nan"), float("nan")
    x = np.concatenate([m, n])
    y = np.concatenate([np.ones(len(m)), np.zeros(len(n))])
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed % (2**32))
    p = cross_val_predict(clf, x, y, cv=folds, method="predict_proba")[:, 1]
    return auc_and_advantage(p, y)


def svc_efficacy(
    members: np.ndarray, nonmembers: np.ndarray, targets: np.ndarray, seed: int = 0, max_per_class: int | None = 5000
) -> float:
    """Fraction of ``targets`` an SVC membership classifier calls non-members.

    Jia et al. 2023 ("Model sparsity can simplify machine unlearning", NeurIPS) /
    Fan et al. 2024 (SalUn, ICLR) MIA-efficacy: fit ``SVC(C=3, gamma="auto",
    kernel="rbf")`` on a feature of members (retain) labelled 1 vs non-members (test)
    labelled 0, then report ``TN / |D_f| = 1 - mean(predict(forget))``. Higher means
    the forget set looks less like training data.

    Departures: the larger of the two training populations is subsampled *at random*
    (seeded) to the size of the smaller one (their code takes the first ``|test|``
    retain examples), and both to at most ``max_per_class`` (an RBF SVC costs
    O(n^2); a 1-D feature needs few thousand points to place its boundary).
    Returns ``nan`` when any of the three inputs is empty.
    """
    from sklearn.svm import SVC

    m, n, t = _clean(members), _clean(nonmembers), _clean(targets)
    if m is None or n is None or t is None:
        return float("nan")
    rng = np.random.default_rng(seed)
    size = min(len(m), len(n), max_per_class or len(m))
    m = m[np.sort(rng.choice(len(m), size, replace=False))]
    n = n[np.sort(rng.choice(len(n), size, replace=False))]
    x = np.concatenate([m, n]).reshape(2 * size, -1)
    y = np.concatenate([np.ones(size), np.zeros(size)])
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    return float(1.0 - clf.predict(t.reshape(len(t), -1)).mean())
