"""Per-example scores of a causal LM (to be split out of ``evaluation.py``)."""

from .evaluation import LMScores, score_lm_splits


def score_model(model, task) -> dict[str, LMScores]:
    """Scores of ``model`` on the forget, retain, holdout and evaluation sets."""
    return score_lm_splits(model, task)
