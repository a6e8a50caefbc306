"""Recommender metrics over :class:`~.scores.RecScores` computed on the retain graph
(registered in the catalogue for the ``recommender`` modality).

* ranking utility of the retained users (HR@K, NDCG@K, Recall@K, K = 5, 10, 20) on their
  held-out interactions, training items excluded from the ranking (He et al. 2017, NCF;
  He et al. 2020, LightGCN), and its relative gap to the retrained reference;
* forgetting of the forgotten users: Jaccard overlap of their top-K with the reference's;
* unlearning bias (CRAGRU's concern, Zhang et al. ICDM 2025): how much more the forgotten
  users' behaviourally similar users lose in NDCG@10 than random users, relative to the
  reference;
* membership inference on interactions: a threshold attack on the BPR loss of the forget
  interactions against never-trained interactions of the same users
  (:func:`unlearnkit.evaluation.mia.threshold_attack`);
* the BPR loss of the forget and retain interactions.
"""

from __future__ import annotations

import numpy as np

from ...evaluation.metrics import NAN, EvalInputs, register_metric
from ...evaluation.mia import threshold_attack
from .scores import KS

MODALITIES = ("recommender",)
RANKING_CITATION = (
    "He et al. 2017 (WWW), Neural Collaborative Filtering (leave-one-out HR@K and NDCG@K); "
    "He et al. 2020 (SIGIR), LightGCN (Recall@K and NDCG@K, training items excluded from ranking)"
)
BIAS_CITATION = (
    "Zhang et al. 2025 (ICDM), Customized Retrieval-Augmented Generation with LLM for Debiasing "
    "Recommendation Unlearning (CRAGRU): unlearning bias on behaviourally similar users"
)


def _ranking(table: dict):
    return table["test"].ranking


def _mean(values: np.ndarray, users: np.ndarray) -> float:
    v = values[users] if len(users) else np.zeros(0)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else NAN


def ranking_values(table: dict) -> dict[str, float]:
    r = _ranking(table)
    users = r.groups["retained"]
    out = {}
    for k in KS:
        out[f"hr{k}_retained"] = _mean(r.hr[k], users)
        out[f"ndcg{k}_retained"] = _mean(r.ndcg[k], users)
        out[f"recall{k}_retained"] = _mean(r.recall[k], users)
    return out


@register_metric(
    "recsys_ranking",
    {f"{m}{k}_retained": "higher" for k in KS for m in ("hr", "ndcg", "recall")},
    RANKING_CITATION,
    splits=("test",),
    modalities=MODALITIES,
    order=10,
    headline=("ndcg10_retained",),
    help={
        **{f"hr{k}_retained": f"HR@{k}: share of retained users with a held-out item in their top {k}" for k in KS},
        **{f"ndcg{k}_retained": f"NDCG@{k} of the retained users' held-out items" for k in KS},
        **{f"recall{k}_retained": f"Recall@{k}: held-out items in the top {k} / held-out items" for k in KS},
    },
)
def recsys_ranking(inputs: EvalInputs) -> dict[str, float]:
    """Top-K ranking utility of the retained users (users with a held-out interaction who keep
    training interactions), averaged over users: ``HR@K = 1[|top_K ∩ T_u| > 0]``,
    ``Recall@K = |top_K ∩ T_u| / |T_u|``, ``NDCG@K = sum_{r<K, top_K[r] ∈ T_u} 1/log2(r+2) /
    sum_{r<min(K,|T_u|)} 1/log2(r+2)`` with ``T_u`` the user's held-out items and the user's
    retained training items excluded from the ranking (NCF's leave-one-out protocol ranks
    against 100 sampled negatives; here every item is ranked, as LightGCN evaluates)."""
    return ranking_values(inputs.model)


@register_metric(
    "recsys_ranking_gap",
    {"gap_ndcg10_retained": "lower", "gap_hr10_retained": "lower"},
    RANKING_CITATION,
    needs=("reference",),
    splits=("test",),
    modalities=MODALITIES,
    order=20,
    headline=("gap_ndcg10_retained",),
    units={"gap_ndcg10_retained": "ratio", "gap_hr10_retained": "ratio"},
    help={
        "gap_ndcg10_retained": (
            "|NDCG@10 − the reference's| / the reference's, retained users",
            "→ 0 (the issue's goal: within 2%)",
        ),
        "gap_hr10_retained": ("|HR@10 − the reference's| / the reference's, retained users", "→ 0"),
    },
)
def recsys_ranking_gap(inputs: EvalInputs) -> dict[str, float]:
    """Relative gaps of the retained users' NDCG@10 and HR@10 to the retrained reference's:
    ``|m(model) - m(reference)| / m(reference)``."""
    a = inputs.memo("recsys_ranking_model", lambda: ranking_values(inputs.model))
    b = inputs.memo("recsys_ranking_reference", lambda: ranking_values(inputs.reference))
    out = {}
    for key in ("ndcg10_retained", "hr10_retained"):
        out[f"gap_{key}"] = abs(a[key] - b[key]) / b[key] if b[key] > 0 else NAN
    return out


def target_users(r) -> np.ndarray:
    """The users whose recommendations must change: the forgotten users (whole history
    deleted), else every user the forget set touches."""
    return r.groups["forgotten"] if len(r.groups["forgotten"]) else r.groups["affected"]


@register_metric(
    "recsys_forget_overlap",
    {f"jaccard{k}_forgotten": "higher" for k in KS},
    "unlearnkit: top-K agreement with the retrained reference (Jaccard index of the two top-K sets)",
    needs=("reference",),
    splits=("test",),
    modalities=MODALITIES,
    order=30,
    headline=("jaccard10_forgotten",),
    help={
        f"jaccard{k}_forgotten": (
            f"mean over the forgotten users of |top{k}(model) ∩ top{k}(reference)| / |top{k}(model) ∪ top{k}(reference)|",
            "1 (the recommendations a model that never saw them gives)",
        )
        for k in KS
    },
)
def recsys_forget_overlap(inputs: EvalInputs) -> dict[str, float]:
    """Overlap of the forgotten users' recommendations with the reference's:
    ``J@K = mean_u |A_u ∩ B_u| / |A_u ∪ B_u|`` with ``A_u``, ``B_u`` the top-K of the model and
    of the reference (the user's retained training items excluded from both). The users are
    those whose whole history was deleted, or, where the forget set deletes no whole history
    (``interactions:``, ``item:``), every user it touches."""
    a, b = _ranking(inputs.model), _ranking(inputs.reference)
    users = target_users(a)
    out = {}
    for k in KS:
        if not len(users):
            out[f"jaccard{k}_forgotten"] = NAN
            continue
        vals = []
        for u in users:
            x, y = set(a.topk[u, :k].tolist()) - {-1}, set(b.topk[u, :k].tolist()) - {-1}
            vals.append(len(x & y) / len(x | y) if x | y else 1.0)
        out[f"jaccard{k}_forgotten"] = float(np.mean(vals))
    return out


def _drop(model_ndcg: float, ref_ndcg: float) -> float:
    return (ref_ndcg - model_ndcg) / ref_ndcg if ref_ndcg > 0 else NAN


@register_metric(
    "recsys_unlearning_bias",
    {"unlearning_bias": "reference", "ndcg10_drop_neighbours": "reference", "ndcg10_drop_random": "reference"},
    BIAS_CITATION,
    needs=("reference",),
    splits=("test",),
    modalities=MODALITIES,
    order=40,
    headline=("unlearning_bias",),
    help={
        "unlearning_bias": (
            "relative NDCG@10 drop (vs the reference) of the forgotten users' nearest neighbours minus that of "
            "as many random retained users",
            "0 (the reference's own value: neighbours lose no more than anyone)",
        ),
        "ndcg10_drop_neighbours": (
            "(NDCG@10 of the reference − the model's) / the reference's, on the neighbours",
            "0",
        ),
        "ndcg10_drop_random": ("the same on random retained users", "0"),
    },
)
def recsys_unlearning_bias(inputs: EvalInputs) -> dict[str, float]:
    """Unlearning bias: ``bias = drop(N) - drop(R)`` with ``drop(X) = (NDCG@10_ref(X) -
    NDCG@10_model(X)) / NDCG@10_ref(X)`` over the forgotten users' nearest neighbours ``N``
    (per forgotten user the 10 retained users with the most similar training history, in its
    latent community where the data record one) and as many random retained users ``R``.
    CRAGRU names the propagation of a deletion to behaviourally similar users as the bias to
    avoid; this is our operational form of it (the paper's own formula is not in its
    abstract). Positive: the neighbours pay more than random users; the reference's value is
    0. nan without forgotten users (deletions of interactions or an item)."""
    a, b = _ranking(inputs.model), _ranking(inputs.reference)
    nb, rd = a.groups["neighbours"], a.groups["random"]
    if not len(nb) or not len(rd):
        return {"unlearning_bias": NAN, "ndcg10_drop_neighbours": NAN, "ndcg10_drop_random": NAN}
    dn = _drop(_mean(a.ndcg[10], nb), _mean(b.ndcg[10], nb))
    dr = _drop(_mean(a.ndcg[10], rd), _mean(b.ndcg[10], rd))
    return {"unlearning_bias": dn - dr, "ndcg10_drop_neighbours": dn, "ndcg10_drop_random": dr}


@register_metric(
    "recsys_mia",
    {"mia_auc_interactions": "reference"},
    "Yeom et al. 2018 (CSF), Privacy Risk in Machine Learning: the loss-threshold membership attack",
    splits=("forget", "holdout"),
    modalities=MODALITIES,
    order=50,
    headline=True,
    help={
        "mia_auc_interactions": (
            "AUC of the threshold attack on -BPR loss: forget interactions (members) vs never-trained "
            "interactions of the same users (the holdout)",
            "the reference's value",
        )
    },
)
def recsys_mia(inputs: EvalInputs) -> dict[str, float]:
    """Membership inference on interactions: the AUC of ``-loss > t`` telling the forget
    interactions from the holdout (the held-out test interactions of the users the forget set
    touches, never trained on), ``loss = softplus(-(s(u,i) - s(u,neg)))``. Population level,
    so a weak attacker (see :mod:`unlearnkit.evaluation.mia`)."""
    auc, _ = threshold_attack(-inputs.model["forget"].loss, -inputs.model["holdout"].loss)
    return {"mia_auc_interactions": auc}


@register_metric(
    "recsys_loss",
    {"bpr_loss_forget": "reference", "bpr_loss_retain": "lower"},
    "Rendle et al. 2009 (UAI), BPR: Bayesian Personalized Ranking from Implicit Feedback",
    splits=("forget", "retain"),
    modalities=MODALITIES,
    order=60,
    help={
        "bpr_loss_forget": ("mean BPR loss of the forget interactions (fixed negatives)", "the reference's value"),
        "bpr_loss_retain": ("mean BPR loss of the retained interactions", "low"),
    },
)
def recsys_loss(inputs: EvalInputs) -> dict[str, float]:
    """Mean BPR loss ``-log sigmoid(s(u,i) - s(u,neg))`` of the forget and retained
    interactions, each with its fixed seeded negative item, on the retain graph."""
    return {
        "bpr_loss_forget": float(inputs.model["forget"].loss.mean()),
        "bpr_loss_retain": float(inputs.model["retain"].loss.mean()),
    }
