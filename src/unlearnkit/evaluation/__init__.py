"""Evaluation layer: the metric catalogue, cost metrics, attacks (MIA, U-LiRA, shadow
models, competition and comparator scores), mode connectivity. Each modality's per-example
scores and metrics live in its package (``unlearnkit.modalities.<name>``)."""

from ..modalities.classifier.scores import SPLITS, Scores, compute_scores, score_splits
from .metrics import (
    METRICS,
    EvalInputs,
    MetricSpec,
    compute_metrics,
    list_metrics,
    metric_goal,
    register_metric,
)

__all__ = [
    "METRICS",
    "SPLITS",
    "EvalInputs",
    "MetricSpec",
    "Scores",
    "compute_metrics",
    "compute_scores",
    "list_metrics",
    "metric_goal",
    "register_metric",
    "score_splits",
]
