"""Classifier metrics, derived from per-example :class:`~.scores.Scores` of the evaluated
model, the reference and the original (registered in the catalogue,
:mod:`unlearnkit.evaluation.metrics`)."""

from __future__ import annotations

import math

import numpy as np

from ...errors import DataError
from ...evaluation import mia
from ...evaluation.metrics import NAN, EvalInputs, register_metric, register_outputs
from ...evaluation.shadow import PRIVACY_OUTPUTS
from ...utils import derive_seed
from .scores import Scores


def aligned_probs(a: Scores, b: Scores, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Predictive distributions of ``a`` and ``b`` in the same example order (``a``'s).

    Raises :class:`DataError` when the two do not hold the same example ids exactly once
    each, or differ in number of classes.
    """
    ia, ib = np.asarray(a.example_ids).astype(str), np.asarray(b.example_ids).astype(str)
    if len(np.unique(ia)) != len(ia) or len(np.unique(ib)) != len(ib) or set(ia) != set(ib):
        raise DataError(
            f"the {split!r} scores of the model and the reference hold different "
            "example ids; score both models on the same split"
        )
    if a.logits.shape[1] != b.logits.shape[1]:
        raise DataError(
            f"the {split!r} scores have {a.logits.shape[1]} vs {b.logits.shape[1]} "
            "classes; compare models with the same output size"
        )
    if np.array_equal(ia, ib):
        return a.probs, b.probs
    pos = {e: i for i, e in enumerate(ib)}
    return a.probs, b.probs[[pos[e] for e in ia]]


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise Jensen-Shannon divergence (natural log, in [0, ln 2]) of two probability arrays."""
    from scipy.special import rel_entr

    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    m = 0.5 * (p + q)
    js = 0.5 * rel_entr(p, m).sum(axis=1) + 0.5 * rel_entr(q, m).sum(axis=1)
    return np.clip(js, 0.0, math.log(2))


# --------------------------------------------------------------------------- accuracy


@register_metric(
    "accuracy",
    {"acc_forget": "reference", "acc_retain": "higher", "acc_test": "higher", "acc_holdout": "reference"},
    "Standard top-1 accuracy; as reported per split in e.g. Jia et al. 2023 and Fan et al. 2024 (SalUn).",
    order=10,
    headline=("acc_forget", "acc_retain", "acc_test"),
    help={
        "acc_forget": (
            "accuracy on the forget set",
            "close to the reference's (not necessarily 0: a retrained model still "
            "generalises to data like the forget set)",
        ),
        "acc_retain": ("accuracy on the retain set (training data kept)", "high, close to the reference's"),
        "acc_test": ("accuracy on the test set (utility)", "high, close to the reference's"),
        "acc_holdout": (
            "accuracy on the holdout: never-trained data drawn like the forget set",
            "the reference's acc_forget should be close to this",
        ),
    },
)
def accuracy(inputs: EvalInputs) -> dict[str, float]:
    """Top-1 accuracy of the evaluated model on each split present (``acc_<split>``).

    ``acc = mean_i [argmax_c z_ic == y_i]``. Forget accuracy is best when it equals the
    reference's (below it is over-forgetting, above it is remembering); an empty split
    gives nan.
    """
    return {f"acc_{s}": sc.accuracy() for s, sc in inputs.model.items()}


@register_metric(
    "accuracy_gap",
    {"gap_acc_forget": "lower", "gap_acc_retain": "lower", "gap_acc_test": "lower"},
    "Fan et al. 2024 (SalUn, ICLR), 'Avg. Gap' to Retrain; Jia et al. 2023 (NeurIPS).",
    needs=("reference",),
    splits=("forget", "retain", "test"),
    order=20,
    headline=("gap_acc_forget",),
    help={
        f"gap_acc_{s}": (f"|accuracy − reference's accuracy| on the {s} set, in accuracy units", "→ 0")
        for s in ("forget", "retain", "test")
    },
)
def accuracy_gap(inputs: EvalInputs) -> dict[str, float]:
    """Absolute accuracy gap to the retrained reference on forget, retain and test.

    ``gap_acc_s = |acc_s(model) - acc_s(reference)|`` in accuracy units (0..1). SalUn
    averages such gaps (with MIA-efficacy) into one 'Avg. Gap' and reports percent;
    we keep each gap separate and in fractions.
    """
    return {
        f"gap_acc_{s}": abs(inputs.model[s].accuracy() - inputs.reference[s].accuracy())
        for s in ("forget", "retain", "test")
    }


# ------------------------------------------------------------------- membership inference


@register_metric(
    "mia_threshold",
    {
        "mia_loss_auc": "reference",
        "mia_confidence_auc": "reference",
        "mia_entropy_auc": "reference",
        "mia_loss_advantage": "lower",
        "mia_confidence_advantage": "lower",
        "mia_entropy_advantage": "lower",
    },
    "Yeom et al. 2018 (CSF), 'Privacy Risk in Machine Learning' (loss attack, membership "
    "advantage); Song & Mittal 2021 (USENIX Security) metric-based attacks (confidence, entropy).",
    splits=("forget", "holdout"),
    order=31,
    headline=("mia_loss_auc",),
    headline_group="membership AUC",
    help={
        **{
            f"mia_{a}_auc": (
                f"membership-inference AUC of the {a} threshold attack, forget set (members) vs holdout (non-members)",
                "the reference's value (≈ 0.5: the attack cannot tell forget data from unseen data)",
            )
            for a in ("loss", "confidence", "entropy")
        },
        **{
            f"mia_{a}_advantage": (
                f"advantage max(TPR − FPR) of the {a} threshold attack on forget vs holdout",
                "the reference's value (≈ 0)",
            )
            for a in ("loss", "confidence", "entropy")
        },
    },
)
def mia_threshold(inputs: EvalInputs) -> dict[str, float]:
    """Threshold membership attacks on loss, confidence and entropy: forget (members) vs holdout.

    Rules: lower loss, higher true-label confidence, lower predictive entropy mean member.
    For each score: ROC AUC, and advantage ``max_t TPR(t) - FPR(t)`` (Yeom et al.'s
    ``Adv = TPR - FPR`` at the best threshold, chosen knowing membership: optimistic
    for the attacker). Ideal AUC is the reference's (about 0.5 when the holdout is drawn
    like the forget set); an AUC well below it signals over-forgetting (the forget set
    now stands out the other way). Population attacks understate per-example leakage.
    """
    f, h = inputs.model["forget"], inputs.model["holdout"]
    out: dict[str, float] = {}
    for key, sign, attr in (("loss", -1, "loss"), ("confidence", 1, "confidence"), ("entropy", -1, "entropy")):
        auc, adv = mia.threshold_attack(sign * getattr(f, attr), sign * getattr(h, attr))
        out[f"mia_{key}_auc"], out[f"mia_{key}_advantage"] = auc, adv
    return out


@register_metric(
    "mia_lr",
    {"mia_lr_auc": "reference", "mia_lr_advantage": "lower"},
    "Shokri et al. 2017 (S&P) learned attack, reduced to per-example scores; advantage as in Yeom et al. 2018.",
    splits=("forget", "holdout"),
    order=30,
    headline=("mia_lr_auc",),
    headline_group="membership AUC",
    help={
        "mia_lr_auc": (
            "membership-inference AUC of a logistic-regression attack on (loss, confidence, "
            "entropy), forget set (members) vs holdout (non-members)",
            "the reference's value (≈ 0.5: the attack cannot tell forget data from unseen data)",
        ),
        "mia_lr_advantage": (
            "advantage max(TPR − FPR) of the logistic-regression attack on forget vs holdout",
            "the reference's value (≈ 0)",
        ),
    },
)
def mia_lr(inputs: EvalInputs) -> dict[str, float]:
    """Logistic-regression membership attack on (loss, confidence, entropy), forget vs holdout.

    Standardised features, seeded stratified k-fold (k = min(5, smallest class)) over
    forget ∪ holdout; AUC and ``max_t TPR - FPR`` of the out-of-fold member
    probabilities (see :func:`unlearnkit.evaluation.mia.logistic_attack`). Departure
    from Shokri et al.: no shadow models; the attack is trained on the evaluated
    model's own (held-out-fold) members and non-members. nan when a class has < 2 examples.
    """
    f, h = ([s.loss, s.confidence, s.entropy] for s in (inputs.model["forget"], inputs.model["holdout"]))
    auc, adv = mia.logistic_attack(np.stack(f, axis=1), np.stack(h, axis=1), seed=derive_seed(inputs.seed, "mia_lr"))
    return {"mia_lr_auc": auc, "mia_lr_advantage": adv}


@register_metric(
    "mia_efficacy",
    {"mia_efficacy": "reference"},
    "Jia et al. 2023 (NeurIPS), 'Model sparsity can simplify machine unlearning' (MIA-Efficacy); "
    "Fan et al. 2024 (ICLR), SalUn.",
    splits=("forget", "retain", "test"),
    order=32,
    help={
        "mia_efficacy": "share of forget examples an SVC attack (trained on retain vs test "
        "confidences) calls non-members (Jia et al. 2023)"
    },
)
def mia_efficacy(inputs: EvalInputs) -> dict[str, float]:
    """SalUn's MIA-efficacy: share of forget examples an SVC attack calls non-members.

    An ``SVC(C=3, gamma="auto", rbf)`` is trained on the evaluated model's true-label
    confidence of retain examples (members) vs test examples (non-members), balanced
    by subsampling; ``mia_efficacy = TN / |D_f|`` = fraction of the forget set
    predicted non-member. Higher means more forgetting; the ideal is the reference's
    value (SalUn scores methods by their gap to Retrain). Their code also runs the SVC
    on entropy, modified entropy, correctness and the probability vector and reports
    the confidence variant, the one kept here. Departures: a seeded random subsample
    of retain rather than its first |test| examples, and at most 5000 examples per
    class (see :func:`unlearnkit.evaluation.mia.svc_efficacy`).
    """
    m = inputs.model
    return {
        "mia_efficacy": mia.svc_efficacy(
            m["retain"].confidence,
            m["test"].confidence,
            m["forget"].confidence,
            seed=derive_seed(inputs.seed, "mia_efficacy"),
        )
    }


# ----------------------------------------------------------------- distance to reference


@register_metric(
    "forget_quality",
    {"forget_quality": "higher", "forget_ks_stat": "lower"},
    "Maini et al. 2024 (TOFU), forget quality = KS-test p-value against the retain-only model; "
    "adapted to classifier confidences.",
    needs=("reference",),
    splits=("forget",),
    order=40,
    headline=("forget_quality",),
    help={
        "forget_quality": (
            "KS-test p-value of the forget set's true-label confidences against the "
            "reference's (TOFU's forget quality, Maini et al. 2024, adapted to classifiers)",
            "high (above 0.05: indistinguishable from the reference)",
        ),
        "forget_ks_stat": ("the KS statistic behind forget_quality", "→ 0"),
    },
)
def forget_quality(inputs: EvalInputs) -> dict[str, float]:
    """Two-sample KS test of the forget-set confidences of the model vs the reference.

    ``forget_ks_stat = sup_x |F_model(x) - F_ref(x)|`` over the empirical CDFs of the
    true-label confidence on the forget set, ``forget_quality`` its p-value
    (``scipy.stats.ks_2samp``, two-sided, exact for small sets). TOFU KS-tests the
    *truth ratio* of generated answers; classifiers have no paraphrased answers, so
    this adaptation tests the confidences instead: a high p-value means the two
    models' forget-set confidence distributions cannot be told apart. Identical
    samples (ties included) give p = 1; an empty forget set gives nan.
    """
    from scipy.stats import ks_2samp

    a, b = inputs.model["forget"].confidence, inputs.reference["forget"].confidence
    if len(a) == 0 or len(b) == 0 or np.isnan(a).any() or np.isnan(b).any():
        return {"forget_quality": NAN, "forget_ks_stat": NAN}
    res = ks_2samp(a, b)
    return {"forget_quality": float(res.pvalue), "forget_ks_stat": float(res.statistic)}


@register_metric(
    "js_divergence",
    {"js_forget": "lower", "js_test": "lower"},
    "Lin 1991 (IEEE Trans. Inf. Theory), Jensen-Shannon divergence; Chundawat et al. 2023 (AAAI), "
    "'Can bad teaching induce forgetting?', ZRF score (mean per-example JS between two models).",
    needs=("reference",),
    splits=("forget", "test"),
    order=50,
    headline=("js_forget",),
    help={
        f"js_{s}": (f"mean Jensen–Shannon divergence of output distributions to the reference's on the {s} set", "→ 0")
        for s in ("forget", "test")
    },
)
def js_to_reference(inputs: EvalInputs) -> dict[str, float]:
    """Mean per-example Jensen-Shannon divergence between model and reference outputs.

    ``JS(P, Q) = 1/2 KL(P || M) + 1/2 KL(Q || M)``, ``M = (P + Q)/2``, natural log so
    each term lies in [0, ln 2]; averaged over the forget and the test examples, with
    the two models' rows matched by example id (:class:`DataError` if the ids differ).
    Chundawat et al.'s ZRF compares against a randomly initialised model; we compare
    against the retrained reference.
    """
    out = {}
    for s in ("forget", "test"):
        p, q = aligned_probs(inputs.model[s], inputs.reference[s], s)
        out[f"js_{s}"] = float(js_divergence(p, q).mean()) if len(p) else NAN
    return out


# ------------------------------------------------------------------------ scenario metrics


def _rate(hit: np.ndarray) -> float:
    return float(hit.mean()) if len(hit) else NAN


@register_metric(
    "bias",
    {"bias_spurious_rate": "reference", "bias_acc_marked": "higher"},
    "Kurmanji et al. 2023 (NeurIPS), SCRUB, 'removing biases' (RB) application; the planted-marker "
    "measurement is ours (see unlearnkit.data.scenarios.BiasForget).",
    needs=("scenario",),
    splits=("test",),
    order=60,
    headline=("bias_spurious_rate",),
    help={
        "bias_spurious_rate": (
            "bias scenario: share of marked test examples of other classes predicted as the biased class",
            "the reference's value (≈ 0: it never saw the marker)",
        ),
        "bias_acc_marked": (
            "bias scenario: accuracy on marked test examples of other classes",
            "high, close to the reference's",
        ),
    },
)
def bias(inputs: EvalInputs) -> dict[str, float]:
    """Bias scenario only: how often the planted marker drags other classes' examples to the biased class.

    Over the test examples that carry the marker (id ends in ``+marked``) and whose label
    ``y`` is not the scenario's ``label`` c: ``bias_spurious_rate = mean [pred = c]`` and
    ``bias_acc_marked = mean [pred = y]``. The reference never saw the marker, so its
    spurious rate is the base rate of mistaking those examples for c; the ideal is to
    match it. SCRUB measures RB by forget error only; the marker makes the bias
    measurable off the forget set. Empty for other scenarios; nan without marked examples.
    """
    sc = inputs.scenario or {}
    if sc.get("kind") != "bias":
        return {}
    from ...data.scenarios import MARK_SUFFIX

    t, c = inputs.model["test"], int(sc.get("label", 0))
    marked = np.char.endswith(np.asarray(t.example_ids).astype(str), MARK_SUFFIX) & (t.labels != c)
    pred, y = t.pred[marked], t.labels[marked]
    return {"bias_spurious_rate": _rate(pred == c), "bias_acc_marked": _rate(pred == y)}


@register_metric(
    "confusion",
    {"confusion_ic_test": "lower", "confusion_ic_forget": "lower", "confusion_err_test": "lower"},
    "Goel et al. 2022 (arXiv 2201.06640), interclass confusion (IC) test; Kurmanji et al. 2023 "
    "(NeurIPS), SCRUB, 'resolving confusion' (RC) and its IC-ERR.",
    needs=("scenario",),
    splits=("test", "forget"),
    order=61,
    headline=("confusion_ic_test", "confusion_ic_forget"),
    help={
        "confusion_ic_test": (
            "confusion scenario: share of test examples of the two swapped classes "
            "predicted as the other one (Goel et al.'s interclass confusion)",
            "low, as the reference's",
        ),
        "confusion_ic_forget": (
            "confusion scenario: share of forget examples predicted as their swapped (wrong) label",
            "→ 0",
        ),
        "confusion_err_test": (
            "confusion scenario: error on test examples of the two swapped classes (SCRUB's IC-ERR)",
            "low, as the reference's",
        ),
    },
)
def confusion(inputs: EvalInputs) -> dict[str, float]:
    """Confusion scenario only: what is left of the a/b label swap (Goel et al.'s interclass confusion).

    With the scenario's classes a and b and ``other(a) = b``, ``other(b) = a``:
    ``confusion_ic_test`` = share of test examples of a or b predicted as the other class
    of the pair (Goel et al.'s IC measure; SCRUB's code counts the same pairs as "FGT");
    ``confusion_err_test`` = share of them misclassified at all (SCRUB's IC-ERR);
    ``confusion_ic_forget`` = share of forget examples predicted as the swapped label they
    were trained with (memorisation of the confusion). Lower is better; the reference,
    trained without the swapped examples, shows the natural a/b confusion. Empty for other
    scenarios; nan on empty selections.
    """
    sc = inputs.scenario or {}
    if sc.get("kind") != "confusion":
        return {}
    a, b = int(sc.get("a", 3)), int(sc.get("b", 8))
    t, f = inputs.model["test"], inputs.model["forget"]
    pair = np.isin(t.labels, (a, b))
    other = np.where(t.labels == a, b, a)
    return {
        "confusion_ic_test": _rate((t.pred == other)[pair]),
        "confusion_err_test": _rate((t.pred != t.labels)[pair]),
        "confusion_ic_forget": _rate((f.pred == f.labels)[np.isin(f.labels, (a, b))]),
    }


# ------------------------------------------------------------- keys computed elsewhere

register_outputs(
    "train_accuracy",
    {"acc_train": "higher"},
    "Accuracy of the freshly trained original on its training data.",
    "Standard top-1 accuracy.",
    computed_by="unlearnkit.modalities.classifier.task.train_metrics",
    order=11,
    help={"acc_train": ("accuracy of the original on its training data (train runs only)", "high")},
)

register_outputs(
    "privacy_report",
    PRIVACY_OUTPUTS,
    "Shadow-model privacy of a method: its unlearned models against models retrained without "
    "the forget set, over many seeds (U-LiRA, the NeurIPS 2023 competition score, the "
    "Unlearning Comparator's privacy score).",
    "Hayes et al. 2024 (U-LiRA, 'Inexact unlearning needs more careful evaluations'); NeurIPS 2023 "
    "machine unlearning competition (Triantafillou et al. 2024); Lee et al. 2025 (Unlearning Comparator).",
    computed_by="unlearnkit.evaluation.shadow.privacy_report (`unlearnkit privacy`)",
    # one report for both (graphs through modalities/graph/privacy.py); declared here because
    # the catalogue loads every modality's metrics, this one's included
    modalities=("classifier", "graph"),
    order=35,
    help={
        "ulira_auc": (
            "U-LiRA (Hayes et al. 2024): per-example likelihood-ratio attack telling the method's "
            "unlearned models from retrained ones, over shadow models; AUC",
            "0.5 (indistinguishable from retraining)",
        ),
        "ulira_tpr_at_1fpr": ("U-LiRA true-positive rate at 1% false positives", "≈ the FPR (0.01)"),
        "ulira_tpr_at_01fpr": ("U-LiRA true-positive rate at 0.1% false positives", "≈ the FPR (0.001)"),
        "ulira_acc": ("U-LiRA balanced accuracy (likelihood ratio > 1)", "0.5"),
        "competition_F": (
            "NeurIPS 2023 unlearning competition forgetting score F from per-example "
            "epsilons (unlearned vs retrained models)",
            "retrain's own F (finite samples keep it below 1)",
        ),
        "competition_score": ("competition score F × RA_u/RA_r × TA_u/TA_r", "high; compare with retrain's"),
        "comparator_privacy": (
            "Unlearning Comparator worst-case privacy score (entropy and confidence "
            "attacks swept over thresholds, vs the reference)",
            "1",
        ),
        "privacy_wall_time_s": "wall time of the privacy report's shadow models, seconds",
        "privacy_cost_examples": "examples processed to train the privacy report's shadow models",
        "privacy_cost_retrains": "retrained models the privacy report trained",
    },
    units={"privacy_wall_time_s": "seconds", "privacy_cost_examples": "count", "privacy_cost_retrains": "count"},
)
