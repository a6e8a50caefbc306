"""Graph metrics, after GNNDelete (Cheng et al., ICLR 2023), over :class:`~.scores.GraphScores`
computed on the retain graph (registered in the catalogue for the ``graph`` modality).

Link prediction (``s(u, v) = <z_u, z_v>``):

* ``dt_auc`` / ``dt_aup``: AUROC / AUPRC of the test edges ``E_t`` (label 1) against their
  negative pairs (label 0): utility on the remaining graph;
* ``df_auc`` / ``df_aup``: AUROC / AUPRC of the deleted edges ``E_d`` (label 0) against as
  many retained training edges ``E_r`` drawn at random (label 1), averaged over ``rounds``
  seeded draws: how well the model tells deleted edges from kept ones;
* ``mi_ratio``: GNNDelete's membership-inference ratio, the mean over deleted edges of
  ``P_after(member | e) / P_before(member | e)``;

node classification: node accuracy on the deleted, retained and test nodes, and the gaps
of every metric to the retrained reference.
"""

from __future__ import annotations

import numpy as np

from ...evaluation.metrics import NAN, EvalInputs, register_metric

CITATION = (
    "Cheng et al. 2023 (ICLR), GNNDelete: A General Strategy for Unlearning in Graph Neural Networks "
    "(DT/DF AUROC-AUPRC, MI ratio; github.com/mims-harvard/GNNDelete)"
)
#: seeded draws of retained edges per DF AUC (GNNDelete draws 500)
DF_ROUNDS = 100


def _auc_ap(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """AUROC and average precision of ``pos`` (label 1) against ``neg`` (label 0), both
    non-empty: the definitions scikit-learn's ``roc_auc_score`` and
    ``average_precision_score`` implement (ties count one half in the AUROC; the AP is
    ``sum_n (R_n - R_(n-1)) P_n`` over the distinct scores, descending), in NumPy without
    their input validation, which dominated the DF AUC's 100 rounds."""
    neg_sorted = np.sort(neg)
    below = np.searchsorted(neg_sorted, pos, side="left")
    ties = np.searchsorted(neg_sorted, pos, side="right") - below
    auc = float((below + 0.5 * ties).sum() / (len(pos) * len(neg)))
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last row of each distinct score
    tps = np.cumsum(y)[last]
    precision = tps / (last + 1)
    recall = tps / tps[-1]
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return auc, ap


def link_auc(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """AUROC and AUPRC (average precision) of scores ``pos`` (label 1) against ``neg``
    (label 0); nan if either is empty."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if not len(pos) or not len(neg):
        return NAN, NAN
    return _auc_ap(pos, neg)


def df_auc(deleted: np.ndarray, retained: np.ndarray, seed: int = 0, rounds: int = DF_ROUNDS) -> tuple[float, float]:
    """GNNDelete's DF AUROC / AUPRC: deleted-edge scores as label 0 against ``len(deleted)``
    retained-edge scores drawn without replacement (label 1), averaged over ``rounds`` seeded
    draws (all retained edges at once when there are no more of them than deleted ones)."""
    deleted, retained = np.asarray(deleted, float), np.asarray(retained, float)
    if not len(deleted) or not len(retained):
        return NAN, NAN
    if len(retained) <= len(deleted):
        return link_auc(retained, deleted)
    rng = np.random.default_rng(seed)
    # the same draws as rng.choice(retained, ...) (choice picks positions, then indexes)
    draws = [_auc_ap(retained[rng.choice(len(retained), len(deleted), replace=False)], deleted) for _ in range(rounds)]
    return float(np.mean([a for a, _ in draws])), float(np.mean([p for _, p in draws]))


def mi_ratio(p_after: np.ndarray | None, p_before: np.ndarray | None) -> float:
    """``mean_e P_after(member | e) / P_before(member | e)`` over the deleted edges."""
    if p_after is None or p_before is None or not len(p_after):
        return NAN
    return float(np.mean(np.asarray(p_after) / np.maximum(np.asarray(p_before), 1e-12)))


def _link(inputs: EvalInputs) -> bool:
    return inputs.model["test"].task_kind == "link"


def _link_values(table: dict, seed: int) -> dict[str, float]:
    dt = link_auc(table["test"].pos_score, table["test"].neg_score)
    df = df_auc(table["forget"].pos_score, table["retain"].pos_score, seed)
    return {"dt_auc": dt[0], "dt_aup": dt[1], "df_auc": df[0], "df_aup": df[1]}


@register_metric(
    "graph_link",
    {"dt_auc": "higher", "dt_aup": "higher", "df_auc": "reference", "df_aup": "reference"},
    CITATION,
    splits=("forget", "retain", "test"),
    modalities=("graph",),
    order=10,
    headline=("dt_auc", "df_auc"),
    help={
        "dt_auc": ("AUROC of the test edges against their negative pairs (link prediction utility)", "high"),
        "dt_aup": ("AUPRC of the test edges against their negative pairs", "high"),
        "df_auc": (
            "AUROC telling deleted edges (label 0) from as many retained training edges (label 1), "
            "mean of 100 seeded draws",
            "the reference's value (a model that never saw the deleted edges)",
        ),
        "df_aup": ("AUPRC of the same deleted-vs-retained comparison", "the reference's value"),
    },
)
def graph_link(inputs: EvalInputs) -> dict[str, float]:
    """Link prediction after GNNDelete: DT AUROC/AUPRC on the test edges E_t vs their negative
    pairs, and DF AUROC/AUPRC of the deleted edges E_d (label 0) against equally many retained
    edges E_r (label 1).

    ``AUROC = P(s(e+) > s(e-))`` over positive/negative pairs, ``AUPRC`` = average precision;
    ``s(u, v) = <z_u, z_v>`` with ``z`` computed on the retain graph. DF draws the retained
    edges 100 times with the metric's seed (GNNDelete: 500) and averages. Link tasks only
    (a node-classification task gives none of these keys); DF is nan without deleted edges.
    """
    if not _link(inputs):
        return {}
    return _link_values(inputs.model, inputs.seed)


@register_metric(
    "graph_link_gap",
    {"gap_dt_auc": "lower", "gap_df_auc": "lower"},
    CITATION,
    needs=("reference",),
    splits=("forget", "retain", "test"),
    modalities=("graph",),
    order=20,
    headline=("gap_df_auc",),
    help={
        "gap_dt_auc": ("|DT AUROC − the reference's|", "→ 0"),
        "gap_df_auc": ("|DF AUROC − the reference's|", "→ 0 (the issue's goal: within 0.05)"),
    },
)
def graph_link_gap(inputs: EvalInputs) -> dict[str, float]:
    """Absolute gaps of DT and DF AUROC to the retrained reference's (link tasks):
    ``gap = |AUC(model) - AUC(reference)|``."""
    if not _link(inputs):
        return {}
    a = inputs.memo("graph_link_model", lambda: _link_values(inputs.model, inputs.seed))
    b = inputs.memo("graph_link_reference", lambda: _link_values(inputs.reference, inputs.seed))
    return {"gap_dt_auc": abs(a["dt_auc"] - b["dt_auc"]), "gap_df_auc": abs(a["df_auc"] - b["df_auc"])}


@register_metric(
    "graph_mi_ratio",
    {"mi_ratio": "reference"},
    CITATION,
    splits=("forget",),
    modalities=("graph",),
    order=30,
    headline=True,
    help={
        "mi_ratio": (
            "mean over deleted edges of P(member | this model) / P(member | original), by a logistic "
            "attack on (1 − σ(s), σ(s)) fitted on the original (trained edges vs test edges)",
            "the reference's value (below 1: the deleted edges look less like members than before)",
        )
    },
)
def graph_mi_ratio(inputs: EvalInputs) -> dict[str, float]:
    """GNNDelete's membership-inference ratio on the deleted edges:
    ``MI ratio = mean_{e in E_d} P_after(member | e) / P_before(member | e)``.

    GNNDelete's attack (after Olatunji et al. 2021) is trained on a shadow GNN; ours is a
    logistic regression on the same features ``(1 - sigma(s), sigma(s))`` fitted on the
    original model itself, its retained training edges as members against the test edges as
    non-members (seeded, equal numbers): no shadow model is trained. 1 for the original.
    """
    if not _link(inputs):
        return {}
    f = inputs.model["forget"]
    return {"mi_ratio": mi_ratio(f.mi_prob, f.mi_prob_original)}


def _node(inputs: EvalInputs) -> bool:
    return inputs.model["test"].task_kind == "node"


@register_metric(
    "graph_node_accuracy",
    {"node_acc_forget": "reference", "node_acc_retain": "higher", "node_acc_test": "higher"},
    CITATION,
    splits=("forget", "retain", "test"),
    modalities=("graph",),
    order=40,
    headline=True,
    help={
        "node_acc_forget": (
            "accuracy on the deleted nodes (and the nodes whose features were deleted), scored on the retain graph",
            "the reference's value",
        ),
        "node_acc_retain": ("accuracy on the retained training nodes", "high, close to the reference's"),
        "node_acc_test": ("accuracy on the test nodes (utility)", "high, close to the reference's"),
    },
)
def graph_node_accuracy(inputs: EvalInputs) -> dict[str, float]:
    """Node-classification accuracy ``mean [argmax_c z_vc = y_v]`` on the deleted nodes, the
    retained training nodes and the test nodes, all on the retain graph (GNNDelete reports
    node classification accuracy for node and node-feature deletion). Node tasks only;
    ``node_acc_forget`` is nan when only edges were deleted."""
    if not _node(inputs):
        return {}
    return {f"node_acc_{s}": inputs.model[s].accuracy() for s in ("forget", "retain", "test")}


@register_metric(
    "graph_node_accuracy_gap",
    {"gap_node_acc_forget": "lower", "gap_node_acc_retain": "lower", "gap_node_acc_test": "lower"},
    CITATION,
    needs=("reference",),
    splits=("forget", "retain", "test"),
    modalities=("graph",),
    order=50,
    headline=("gap_node_acc_test",),
    help={
        f"gap_node_acc_{s}": (f"|node accuracy − the reference's| on the {s} nodes", "→ 0")
        for s in ("forget", "retain", "test")
    },
)
def graph_node_accuracy_gap(inputs: EvalInputs) -> dict[str, float]:
    """Absolute node-accuracy gaps to the retrained reference:
    ``gap_s = |acc_s(model) - acc_s(reference)|`` for s in forget, retain, test."""
    if not _node(inputs):
        return {}
    return {
        f"gap_node_acc_{s}": abs(inputs.model[s].accuracy() - inputs.reference[s].accuracy())
        for s in ("forget", "retain", "test")
    }
