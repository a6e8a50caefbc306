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
from ...evaluation.metrics import NAN, EvalInputs, register_metric
from .history import FederatedCost
from .scores import score_model

SETS = ("forget", "retain", "test")


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


def cost_ratios(cost: FederatedCost, reference: FederatedCost) -> dict[str, float]:
    """Rounds, client compute (examples forward + backward on every client) and bytes
    exchanged (arrays both ways), each divided by retraining's."""

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else NAN

    return {
        "rounds": float(cost.rounds),
        "ratio_rounds": ratio(cost.rounds, reference.rounds),
        "ratio_client_examples": ratio(cost.client_examples, reference.client_examples),
        "ratio_bytes": ratio(cost.bytes_exchanged, reference.bytes_exchanged),
        "ratio_wall_time": ratio(cost.wall_time_s, reference.wall_time_s),
    }


def evaluate_federated(task, model, cost: FederatedCost, reference, seed: int = 0) -> dict[str, float]:
    """Every federated number of ``model``: accuracy per split, gaps to ``reference`` (a
    :class:`~.unlearning.FederatedResult` of retraining), loss-threshold and learned MIA
    AUCs on the forgotten data, and cost ratios to retraining."""
    scores, ref_scores = score_model(model, task), score_model(reference.model, task)
    inputs = EvalInputs(model=scores, reference=ref_scores, seed=seed, modality="federated")
    out = federated_accuracy(inputs) | federated_accuracy_gap(inputs) | federated_mia(inputs)
    out["fed_mia_loss_auc_reference"] = federated_mia(EvalInputs(model=ref_scores, modality="federated"))[
        "fed_mia_loss_auc"
    ]
    feats = {s: np.stack([scores[s].loss, scores[s].confidence, scores[s].entropy], 1) for s in ("forget", "holdout")}
    out["fed_mia_lr_auc"] = mia.logistic_attack(feats["forget"], feats["holdout"], seed=seed)[0]
    return out | cost_ratios(cost, reference.cost)
