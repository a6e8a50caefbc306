"""Federated metrics: the global model's accuracy on the forgotten data, the remaining
clients' data and the server's test set, with gaps to the reference (federated retraining
without the data); membership inference against the forgotten data; and cost in rounds,
client compute and bytes exchanged as ratios to retraining.

The accuracy and attack metrics are registered in the catalogue for the ``federated``
modality (over :mod:`.scores`); :func:`evaluate_federated` computes every number of one
unlearned model, cost ratios included (the catalogue's cost metrics read a
:class:`~unlearnkit.engines.loop.LoopStats`, which has no rounds or bytes)."""

from __future__ import annotations

import numpy as np

from ...evaluation import mia
from ...evaluation.cost import forget_set_passes
from ...evaluation.metrics import NAN, EvalInputs, register_metric, register_outputs
from .history import FederatedCost
from .scores import score_model

SETS = ("forget", "retain", "test")
WHERE = ("forgotten data", "remaining clients' data", "server's test set")


@register_metric(
    "federated_accuracy",
    {"fed_acc_forget": "reference", "fed_acc_retain": "higher", "fed_acc_test": "higher"},
    "Top-1 accuracy of the global model per split, as federated unlearning papers report it "
    "(e.g. Liu et al. 2021, FedEraser; Oblivionis 2025 for utility and forgetting).",
    splits=SETS,
    modalities=("federated",),
    headline=True,
    help={
        "fed_acc_forget": "accuracy on the forgotten data (closest to the reference is best)",
        "fed_acc_retain": "accuracy on the remaining clients' data",
        "fed_acc_test": "accuracy on the server's test set",
    },
)
def federated_accuracy(inputs: EvalInputs) -> dict[str, float]:
    """Accuracy of the global model on the forget, retain and test sets."""
    return {f"fed_acc_{s}": inputs.model[s].accuracy() for s in SETS}


@register_metric(
    "federated_accuracy_gap",
    {"fed_gap_acc_forget": "lower", "fed_gap_acc_retain": "lower", "fed_gap_acc_test": "lower"},
    "Absolute accuracy gap to the retrained reference, per split (Fan et al. 2024, SalUn, 'Avg. Gap').",
    needs=("reference",),
    splits=SETS,
    modalities=("federated",),
    headline=("fed_gap_acc_test",),
    help={f"fed_gap_acc_{s}": f"|accuracy - the reference's| on the {w}" for s, w in zip(SETS, WHERE)},
)
def federated_accuracy_gap(inputs: EvalInputs) -> dict[str, float]:
    """``|acc(model) - acc(reference)|`` on each split."""
    return {f"fed_gap_acc_{s}": abs(inputs.model[s].accuracy() - inputs.reference[s].accuracy()) for s in SETS}


@register_metric(
    "federated_mia",
    {"fed_mia_loss_auc": "reference", "fed_mia_loss_advantage": "reference"},
    "Loss-threshold membership inference (Yeom et al. 2018) of the forgotten data against "
    "never-trained examples drawn class for class like them.",
    splits=("forget", "holdout"),
    modalities=("federated",),
    headline=("fed_mia_loss_auc",),
)
def federated_mia(inputs: EvalInputs) -> dict[str, float]:
    """AUC and advantage of the rule "low loss means member" on forget vs holdout
    (:func:`unlearnkit.evaluation.mia.threshold_attack` on ``-loss``); 0.5 is chance, the
    reference's value is what a model that never saw the data gives."""
    auc, adv = mia.threshold_attack(-inputs.model["forget"].loss, -inputs.model["holdout"].loss)
    return {"fed_mia_loss_auc": auc, "fed_mia_loss_advantage": adv}


# ------------------------------------------------------------- keys computed elsewhere
# evaluate_federated computes these outside the catalogue (the catalogue's cost metrics read a
# LoopStats, which has no rounds or bytes); declared so that reports, `unlearnkit metrics` and
# the CLI summaries know their goal, unit and help
register_outputs(
    "federated_cost",
    {
        "ratio_rounds": "lower",
        "ratio_client_examples": "lower",
        "ratio_bytes": "lower",
        "ratio_wall_time": "lower",
        "rounds": "lower",
    },
    "Cost of federated unlearning in rounds, client compute and bytes exchanged, each over "
    "federated retraining's, counted in the same run.",
    "Liu et al. 2021 (FedEraser) report rounds and time as a speed-up over retraining.",
    computed_by="unlearnkit.modalities.federated.metrics.cost_ratios",
    modalities=("federated",),
    headline=("ratio_rounds", "ratio_client_examples", "ratio_bytes"),
    units={
        "ratio_rounds": "ratio",
        "ratio_client_examples": "ratio",
        "ratio_bytes": "ratio",
        "ratio_wall_time": "ratio",
        "rounds": "count",
    },
    help={
        "ratio_rounds": "rounds the method ran over retraining's",
        "ratio_client_examples": "examples forward + backward on every client over retraining's",
        "ratio_bytes": "arrays exchanged both ways (global model down, client models up) over retraining's",
        "ratio_wall_time": "wall time over retraining's (same process)",
        "rounds": "rounds the method ran (a train run: the federation's training rounds)",
    },
)
register_outputs(
    "federated_mia_extra",
    {"fed_mia_loss_auc_reference": "reference", "fed_mia_lr_auc": "reference"},
    "Membership inference of the forgotten data against never-trained examples drawn like them.",
    "Yeom et al. 2018 (loss threshold); a learned attack over loss, confidence and entropy "
    "(Shokri et al. 2017's features).",
    computed_by="unlearnkit.modalities.federated.metrics.evaluate_federated",
    modalities=("federated",),
    help={
        "fed_mia_loss_auc_reference": "the reference's loss-threshold AUC (what a model that never saw the data gives)",
        "fed_mia_lr_auc": "AUC of a logistic attack over loss, confidence and entropy (forget vs holdout)",
    },
)
register_outputs(
    "federated_train",
    {"bytes_exchanged": "lower"},
    "Bytes the federation's training exchanged (train runs).",
    "Arrays both ways, counted per message.",
    computed_by="unlearnkit.modalities.federated.task.train_metrics",
    modalities=("federated",),
    units={"bytes_exchanged": "count"},
)

#: the report's figures of federated runs (:mod:`unlearnkit.orchestration.report.plots`
#: draws them with its own plot kinds; each is drawn where its metrics are present)
REPORT_PLOTS = {
    "federated_tradeoff": {
        "title": "Federated: forgetting vs utility",
        "kind": "tradeoff",
        "args": {"x": "fed_gap_acc_forget", "y": "fed_acc_test"},
        "caption": "Each point is a method (mean ± std over seeds): the gap to federated retraining's accuracy "
        "on the forgotten data against the global model's test accuracy. Ideal: left and high.",
    },
    "federated_privacy": {
        "title": "Federated: membership inference on the forgotten data",
        "kind": "privacy",
        "args": {"metrics": ["fed_mia_loss_auc", "fed_mia_lr_auc"]},
        "caption": "Attack AUC on the forgotten data vs never-trained examples drawn like them. Ideal: the "
        "reference's value (dotted); 0.5 (dashed) is chance.",
    },
    "federated_rounds": {
        "title": "Federated: rounds",
        "kind": "cost",
        "args": {"metric": "ratio_rounds"},
        "caption": "Rounds over federated retraining's (log scale); below the dashed 1x line is fewer rounds.",
    },
    "federated_client_compute": {
        "title": "Federated: client compute",
        "kind": "cost",
        "args": {"metric": "ratio_client_examples"},
        "caption": "Examples forward + backward on every client over retraining's (log scale).",
    },
    "federated_bytes": {
        "title": "Federated: bytes exchanged",
        "kind": "cost",
        "args": {"metric": "ratio_bytes"},
        "caption": "Arrays exchanged both ways over retraining's (log scale).",
    },
}


def cost_ratios(cost: FederatedCost, reference: FederatedCost, forget_size: int | None = None) -> dict[str, float]:
    """Rounds, client compute (examples forward + backward on every client) and bytes
    exchanged (arrays both ways), each divided by retraining's; with ``forget_size``, also
    the client compute in forget-set passes (:func:`~unlearnkit.evaluation.cost.forget_set_passes`,
    the catalogue's ``forget_passes``: one forward and backward pass over the forgotten
    examples is 1)."""

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else NAN

    return {
        "rounds": float(cost.rounds),
        "ratio_rounds": ratio(cost.rounds, reference.rounds),
        "ratio_client_examples": ratio(cost.client_examples, reference.client_examples),
        "ratio_bytes": ratio(cost.bytes_exchanged, reference.bytes_exchanged),
        "ratio_wall_time": ratio(cost.wall_time_s, reference.wall_time_s),
    } | (
        {"forget_passes": forget_set_passes(cost.examples_forward, cost.examples_backward, forget_size)}
        if forget_size is not None
        else {}
    )


def evaluate_federated(task, model, cost: FederatedCost, reference, seed: int = 0) -> dict[str, float]:
    """Every federated number of ``model``: accuracy per split, gaps to ``reference`` (a
    :class:`~.unlearning.FederatedResult` of retraining), loss-threshold and learned MIA
    AUCs on the forgotten data, and cost ratios to retraining. A task with its own local
    metrics (an LM federation, :meth:`.lm.FederatedLMTask.evaluate_global`) computes them."""
    own = getattr(task, "evaluate_global", None)
    if own is not None:
        return own(model, cost, reference, seed)
    scores, ref_scores = score_model(model, task), score_model(reference.model, task)
    inputs = EvalInputs(model=scores, reference=ref_scores, seed=seed, modality="federated")
    out = federated_accuracy(inputs) | federated_accuracy_gap(inputs) | federated_mia(inputs)
    out["fed_mia_loss_auc_reference"] = federated_mia(EvalInputs(model=ref_scores, modality="federated"))[
        "fed_mia_loss_auc"
    ]
    feats = {s: np.stack([scores[s].loss, scores[s].confidence, scores[s].entropy], 1) for s in ("forget", "holdout")}
    out["fed_mia_lr_auc"] = mia.logistic_attack(feats["forget"], feats["holdout"], seed=seed)[0]
    return out | cost_ratios(cost, reference.cost, len(task.forget))


# --------------------------------------------------------------------------- LM federations
#: the causal-LM values an LM federation reports with their gap to the reference
LM_GAPS = ("forget_quality", "model_utility", "rouge_forget", "prob_forget", "mia_loss_auc", "mia_min_k_auc")

register_outputs(
    "federated_lm",
    {
        "fed_gap_model_utility": "lower",
        "fed_gap_rouge_forget": "lower",
        "fed_gap_prob_forget": "lower",
        "fed_gap_mia_loss_auc": "lower",
        "fed_gap_mia_min_k_auc": "lower",
        "model_utility_reference": "higher",
        "mia_loss_auc_reference": "reference",
    },
    "An LM federation's global model (LoRA adapters merged into the frozen base): the causal-LM "
    "metrics' gaps to federated retraining of the adapters without the data.",
    "TOFU (Maini et al. 2024) forget quality and model utility, LOSS (Yeom et al. 2018) and "
    "Min-K% (Shi et al. 2024) membership AUCs, through the causal_lm metrics code; gaps as "
    "Fan et al. 2024 (SalUn) 'Avg. Gap'.",
    computed_by="unlearnkit.modalities.federated.metrics.evaluate_lm_federated",
    modalities=("federated",),
    help={
        "fed_gap_model_utility": "|model utility - the reference's| (TOFU model utility)",
        "fed_gap_rouge_forget": "|ROUGE-L recall on the forgotten rows - the reference's|",
        "fed_gap_prob_forget": "|answer probability on the forgotten rows - the reference's|",
        "fed_gap_mia_loss_auc": "|LOSS attack AUC (forgotten rows vs holdout people) - the reference's|",
        "fed_gap_mia_min_k_auc": "|Min-40% attack AUC - the reference's|",
        "model_utility_reference": "the reference's TOFU model utility",
        "mia_loss_auc_reference": "the reference's LOSS attack AUC",
    },
)


def lm_values(view, model, reference_scores=None, seed: int = 0) -> tuple[dict[str, float], dict]:
    """The causal-LM metrics of ``model`` on ``view`` (an LM task: forget rows, probes,
    holdout people, utility sets), computed by the causal-LM modality's own catalogue
    functions (:mod:`unlearnkit.modalities.causal_lm.metrics`: ``tofu``,
    ``tofu_forget_quality``, ``tofu_model_utility``, ``lm_mia``), unchanged; and its scores."""
    from ..causal_lm import metrics as lmm
    from ..causal_lm.scores import score_lm_splits

    scores = score_lm_splits(model, view)
    ref = reference_scores if reference_scores is not None else scores
    inputs = EvalInputs(model=scores, reference=ref, seed=seed, modality="causal_lm")
    out = {**lmm.tofu(inputs), **lmm.tofu_model_utility(inputs), **lmm.lm_mia(inputs)}
    out |= lmm.tofu_forget_quality(inputs)
    return out, scores


def evaluate_lm_federated(task, model, cost: FederatedCost, reference, seed: int = 0) -> dict[str, float]:
    """Every number of an LM federation's global ``model`` against ``reference`` (federated
    retraining of the adapters without the data, a :class:`~.unlearning.FederatedResult`):
    TOFU forget quality (KS test of the forgotten rows' truth ratios against the reference's),
    model utility, ROUGE-L and answer probability on the forgotten rows, the LOSS and Min-K%
    membership AUCs of the forgotten rows against never-trained holdout people, the gaps
    ``fed_gap_<value> = |value - the reference's|``, and cost ratios to retraining
    (:func:`cost_ratios`). The reference's scores are computed once per request."""
    key = ("lm-reference-values", task.split.forget_fingerprint, id(reference.model))
    if key not in task.memo:
        task.memo[key] = lm_values(task.view, reference.model, seed=seed)
    ref_values, ref_scores = task.memo[key]
    out, _ = lm_values(task.view, model, ref_scores, seed)
    for k in LM_GAPS:
        if k in out and k in ref_values and k != "forget_quality":
            out[f"fed_gap_{k}"] = abs(out[k] - ref_values[k])
    out["model_utility_reference"] = ref_values.get("model_utility", NAN)
    out["mia_loss_auc_reference"] = ref_values.get("mia_loss_auc", NAN)
    return {k: float(v) for k, v in out.items()} | cost_ratios(cost, reference.cost, len(task.forget))
