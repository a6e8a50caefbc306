"""Classifier metrics, derived from per-example :class:`~.scores.Scores` of the evaluated
model, the reference and the original (registered in the catalogue,
:mod:`unlearnkit.evaluation.metrics`)."""

from __future__ import annotations

import math

import numpy as np

from ...errors import ConfigError, DataError
from ...evaluation import mia
from ...evaluation.metrics import NAN, EvalInputs, register_metric
from ...utils import derive_seed
from .scores import Scores


def aligned_probs(a: Scores, b: Scores, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Predictive distributions of ``a`` and ``b`` in the same example order (``a``'s).

    Raises :class:`DataError` when the two do not hold the same example ids exactly once
    each, or differ in number of classes.
    """
    ia, ib = np.asarray(a.example_ids).astype(str), np.asarray(b.example_ids).astype(str)
    if len(np.unique(ia)) != len(ia) or len(np.unique(ib)) != len(ib) or set(ia) != set(ib):
        raise DataError(f"the {split!r} scores of the model and the reference hold different "
                        "example ids; score both models on the same split")
    if a.logits.shape[1] != b.logits.shape[1]:
        raise DataError(f"the {split!r} scores have {a.logits.shape[1]} vs {b.logits.shape[1]} "
                        "classes; compare models with the same output size")
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
    "Standard top-1 accuracy; as reported per split in e.g. Jia et al. 2023 and Fan et al. 2024 (SalUn).")
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
    needs=("reference",), splits=("forget", "retain", "test"))
def accuracy_gap(inputs: EvalInputs) -> dict[str, float]:
    """Absolute accuracy gap to the retrained reference on forget, retain and test.

    ``gap_acc_s = |acc_s(model) - acc_s(reference)|`` in accuracy units (0..1). SalUn
    averages such gaps (with MIA-efficacy) into one 'Avg. Gap' and reports percent;
    we keep each gap separate and in fractions.
    """
    return {f"gap_acc_{s}": abs(inputs.model[s].accuracy() - inputs.reference[s].accuracy())
            for s in ("forget", "retain", "test")}


# ------------------------------------------------------------------- membership inference

@register_metric(
    "mia_threshold",
    {"mia_loss_auc": "reference", "mia_confidence_auc": "reference", "mia_entropy_auc": "reference",
     "mia_loss_advantage": "lower", "mia_confidence_advantage": "lower",
     "mia_entropy_advantage": "lower"},
    "Yeom et al. 2018 (CSF), 'Privacy Risk in Machine Learning' (loss attack, membership "
    "advantage); Song & Mittal 2021 (USENIX Security) metric-based attacks (confidence, entropy).",
    splits=("forget", "holdout"))
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
    for key, sign, attr in (("loss", -1, "loss"), ("confidence", 1, "confidence"),
                            ("entropy", -1, "entropy")):
        auc, adv = mia.threshold_attack(sign * getattr(f, attr), sign * getattr(h, attr))
        out[f"mia_{key}_auc"], out[f"mia_{key}_advantage"] = auc, adv
    return out


@register_metric(
    "mia_lr",
    {"mia_lr_auc": "reference", "mia_lr_advantage": "lower"},
    "Shokri et al. 2017 (S&P) learned attack, reduced to per-example scores; advantage as in "
    "Yeom et al. 2018.",
    splits=("forget", "holdout"))
def mia_lr(inputs: EvalInputs) -> dict[str, float]:
    """Logistic-regression membership attack on (loss, confidence, entropy), forget vs holdout.

    Standardised features, seeded stratified k-fold (k = min(5, smallest class)) over
    forget ∪ holdout; AUC and ``max_t TPR - FPR`` of the out-of-fold member
    probabilities (see :func:`unlearnkit.evaluation.mia.logistic_attack`). Departure
    from Shokri et al.: no shadow models; the attack is trained on the evaluated
    model's own (held-out-fold) members and non-members. nan when a class has < 2 examples.
    """
    f, h = ([s.loss, s.confidence, s.entropy] for s in (inputs.model["forget"], inputs.model["holdout"]))
    auc, adv = mia.logistic_attack(np.stack(f, axis=1), np.stack(h, axis=1),
                                   seed=derive_seed(inputs.seed, "mia_lr"))
    return {"mia_lr_auc": auc, "mia_lr_advantage": adv}


@register_metric(
    "mia_efficacy",
    {"mia_efficacy": "reference"},
    "Jia et al. 2023 (NeurIPS), 'Model sparsity can simplify machine unlearning' (MIA-Efficacy); "
    "Fan et al. 2024 (ICLR), SalUn.",
    splits=("forget", "retain", "test"))
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
    return {"mia_efficacy": mia.svc_efficacy(m["retain"].confidence, m["test"].confidence,
                                             m["forget"].confidence,
                                             seed=derive_seed(inputs.seed, "mia_efficacy"))}


# ----------------------------------------------------------------- distance to reference

@register_metric(
    "forget_quality",
    {"forget_quality": "higher", "forget_ks_stat": "lower"},
    "Maini et al. 2024 (TOFU), forget quality = KS-test p-value against the retain-only model; "
    "adapted to classifier confidences.",
    needs=("reference",), splits=("forget",))
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
    needs=("reference",), splits=("forget", "test"))
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
    needs=("scenario",), splits=("test",))
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
    from ..data.scenarios import MARK_SUFFIX

    t, c = inputs.model["test"], int(sc.get("label", 0))
    marked = np.char.endswith(np.asarray(t.example_ids).astype(str), MARK_SUFFIX) & (t.labels != c)
    pred, y = t.pred[marked], t.labels[marked]
    return {"bias_spurious_rate": _rate(pred == c), "bias_acc_marked": _rate(pred == y)}


@register_metric(
    "confusion",
    {"confusion_ic_test": "lower", "confusion_ic_forget": "lower", "confusion_err_test": "lower"},
    "Goel et al. 2022 (arXiv 2201.06640), interclass confusion (IC) test; Kurmanji et al. 2023 "
    "(NeurIPS), SCRUB, 'resolving confusion' (RC) and its IC-ERR.",
    needs=("scenario",), splits=("test", "forget"))
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
    return {"confusion_ic_test": _rate((t.pred == other)[pair]),
            "confusion_err_test": _rate((t.pred != t.labels)[pair]),
            "confusion_ic_forget": _rate((f.pred == f.labels)[np.isin(f.labels, (a, b))])}
