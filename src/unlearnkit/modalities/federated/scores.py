"""Per-example scores of a global model: the classifier's one forward pass per split
(forget: the forgotten client's or subjects' examples; retain: every other client's
examples; test: the server's test set; holdout: never-trained examples drawn like the
forget set)."""

from __future__ import annotations

from ..classifier.scores import SPLITS, Scores, compute_scores, score_splits

__all__ = ["SPLITS", "Scores", "compute_scores", "score_model"]


def score_model(model, task) -> dict[str, Scores]:
    """Scores of ``model`` on every split the federated metrics read."""
    return score_splits(model, task, SPLITS)
