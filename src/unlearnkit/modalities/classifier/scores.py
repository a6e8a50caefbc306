"""Per-example scores: the one forward pass per (model, split) every metric derives from.

:func:`compute_scores` runs the model once over an ExampleSet and keeps the logits;
loss, confidence, entropy, prediction and the logit-scaled confidence used by
LiRA-style attacks are derived from them without another pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

import numpy as np
import torch
from torch import nn

from ...data.dataset import ExampleSet

SPLITS = ("forget", "retain", "test", "holdout")


@dataclass
class Scores:
    """Outputs of one model on one split, one row per example."""

    example_ids: np.ndarray
    labels: np.ndarray
    logits: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @cached_property
    def log_probs(self) -> np.ndarray:
        z = self.logits.astype(np.float64)
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    @cached_property
    def probs(self) -> np.ndarray:
        return np.exp(self.log_probs)

    @cached_property
    def loss(self) -> np.ndarray:
        """Cross-entropy of the true label."""
        return -self.log_probs[np.arange(len(self)), self.labels]

    @cached_property
    def confidence(self) -> np.ndarray:
        """Probability given to the true label."""
        return self.probs[np.arange(len(self)), self.labels]

    @cached_property
    def max_prob(self) -> np.ndarray:
        return self.probs.max(axis=1)

    @cached_property
    def entropy(self) -> np.ndarray:
        """Shannon entropy (nats) of the predictive distribution."""
        p = self.probs
        return -(p * self.log_probs).sum(axis=1)

    @cached_property
    def pred(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    @cached_property
    def correct(self) -> np.ndarray:
        return self.pred == self.labels

    @cached_property
    def scaled_confidence(self) -> np.ndarray:
        """Carlini et al. 2022 (LiRA) logit scaling ``log p_y - log(1 - p_y)``, computed stably."""
        lp = self.log_probs
        idx = np.arange(len(self))
        lp_y = lp[idx, self.labels]
        others = lp.copy()
        others[idx, self.labels] = -np.inf
        m = others.max(axis=1)
        log_rest = m + np.log(np.exp(others - m[:, None]).sum(axis=1))
        return lp_y - log_rest

    def accuracy(self) -> float:
        return float(self.correct.mean()) if len(self) else float("nan")

    def rows(self, split: str, role: str) -> dict[str, np.ndarray]:
        """Columns for export: one row per example, with what every classifier metric is
        computed from: the label and prediction, the per-example loss, confidence, entropy
        and scaled confidence, and the whole predictive distribution (``prob_0`` ...
        ``prob_<K-1>``, the softmax of the logits in float64), so that e.g. the JS divergence
        to the reference can be recomputed from the file."""
        n = len(self)
        probs = {f"prob_{c}": self.probs[:, c] for c in range(self.probs.shape[1])}
        return {
            "example_id": self.example_ids.astype(str),
            "split": np.full(n, split),
            "model_role": np.full(n, role),
            "label": self.labels,
            "pred": self.pred,
            "loss": self.loss,
            "confidence": self.confidence,
            "max_prob": self.max_prob,
            "entropy": self.entropy,
            "scaled_confidence": self.scaled_confidence,
            **probs,
        }


@torch.no_grad()
def compute_scores(model: nn.Module, data: ExampleSet, adapter, batch_size: int = 1024) -> Scores:
    """One forward pass of ``model`` over ``data`` (eval mode)."""
    was_training = model.training
    model.eval()
    outs = []
    try:
        for batch in data.batches(batch_size):
            outs.append(adapter.logits(model, batch).float().cpu())
    finally:
        model.train(was_training)
    logits = torch.cat(outs).numpy() if outs else np.zeros((0, adapter.num_classes), np.float32)
    return Scores(data.example_ids.copy(), data.labels.numpy().copy(), logits)


def score_splits(model: nn.Module, task, splits: Iterable[str] = SPLITS) -> dict[str, Scores]:
    """Scores of ``model`` on each named split of ``task``."""
    return {s: compute_scores(model, getattr(task, s), task.adapter) for s in splits}


def score_model(model: nn.Module, task) -> dict[str, Scores]:
    """Scores of ``model`` on every split the classifier metrics read."""
    return score_splits(model, task, SPLITS)
