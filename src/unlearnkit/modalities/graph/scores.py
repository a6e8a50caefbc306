"""Per-example scores of one graph model on every split, computed once per model.

Every split is scored on the *retain graph* (message passing over the edges that remain,
deleted features zeroed; a deleted node, isolated, keeps its own features:
``GraphTask.scoring_view``): once the data are deleted, that is the graph any model runs
on, so the original, the reference and the unlearned model are compared on the same
input and the only difference left is what their weights remember. A forget edge is then
scored as a pair of nodes the graph no longer joins, as GNNDelete scores its ``E_d``.

For link-prediction tasks the forget split also carries the membership-inference
probabilities of its edges (see :func:`member_probabilities`), under this model and
under the original.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .adapter import EDGE, FEAT, KIND_NAMES, NODE, GraphAdapter, GraphExampleSet, GraphView

SPLITS = ("forget", "retain", "test", "holdout")


@dataclass
class GraphScores:
    """Outputs of one model on the rows of one split (numpy).

    ``logits``: (n, K) per row as the adapter gives them (a node's class logits; an edge's
    ``(s(u, v), s(u, neg))``). ``mi_prob`` / ``mi_prob_original``: the attack's probability
    that each forget edge is a member, under this model and under the original (forget
    split of link tasks only, else None).
    """

    example_ids: np.ndarray
    kind: np.ndarray
    labels: np.ndarray
    logits: np.ndarray
    task_kind: str
    mi_prob: np.ndarray | None = None
    mi_prob_original: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.example_ids)

    @property
    def supervised(self) -> np.ndarray:
        return self.labels >= 0

    @property
    def node_rows(self) -> np.ndarray:
        """Rows that are a node's prediction (node and feature rows with a label)."""
        return (self.kind != EDGE) & self.supervised

    @property
    def edge_rows(self) -> np.ndarray:
        return (self.kind == EDGE) & self.supervised

    @property
    def loss(self) -> np.ndarray:
        """The adapter's per-row loss (0 on unsupervised rows)."""
        z = torch.from_numpy(self.logits)
        y = torch.from_numpy(self.labels)
        return (-GraphAdapter(self.task_kind, self.logits.shape[1]).log_likelihood(z, y)).numpy()

    @property
    def pred(self) -> np.ndarray:
        return self.logits.argmax(1)

    def accuracy(self) -> float:
        """Node accuracy over the node rows (nan without any)."""
        m = self.node_rows
        return float(np.mean(self.pred[m] == self.labels[m])) if m.any() else float("nan")

    @property
    def pos_score(self) -> np.ndarray:
        """``s(u, v)`` of the edge rows."""
        return self.logits[self.edge_rows, 0]

    @property
    def neg_score(self) -> np.ndarray:
        """``s(u, neg)`` of the edge rows' negative pairs."""
        return self.logits[self.edge_rows, 1]

    def rows(self, split: str, role: str) -> dict[str, np.ndarray]:
        n = len(self)
        out = {
            "example_id": self.example_ids.astype(str),
            "split": np.full(n, split),
            "model_role": np.full(n, role),
            "kind": np.asarray([KIND_NAMES[int(k)] for k in self.kind]),
            "label": self.labels,
            "loss": self.loss,
        }
        for c in range(self.logits.shape[1]):
            out[f"logit_{c}"] = self.logits[:, c]
        return out


@torch.no_grad()
def score_set(model: nn.Module, data: GraphExampleSet, adapter: GraphAdapter, view: GraphView) -> GraphScores:
    """One forward pass of ``model`` on ``view`` (eval mode), read out at ``data``'s rows."""
    was = model.training
    model.eval()
    try:
        batch = next(data.batches(max(1, len(data))))
        batch["graph"] = view
        logits = adapter.logits(model, adapter.to_device(batch)).float().cpu().numpy()
    finally:
        model.train(was)
    return GraphScores(data.example_ids.copy(), data.kind.copy(), data.labels.numpy().copy(), logits, data.task_kind)


def _sigmoid(s: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(s, -50, 50)))


def _features(s: np.ndarray) -> np.ndarray:
    p = _sigmoid(s)
    return np.stack([1 - p, p], 1)


def member_attack(task):
    """The membership attack on edges, fitted once per task on the original's outputs:
    logistic regression on ``(1 - sigma(s), sigma(s))`` of an edge's score (GNNDelete's
    attack features), trained edges of the retain set (members, label 1) against the test
    edges, never trained on (non-members, label 0), in equal numbers (seeded)."""
    key = ("mi-attack", task.split.forget_fingerprint, id(task.original))
    hit = task.memo.get(key)
    if hit is not None:
        return hit
    from sklearn.linear_model import LogisticRegression

    view = task.scoring_view
    members = score_set(task.original, task.retain.supervised(), task.adapter, view).pos_score
    non = score_set(task.original, task.test, task.adapter, view).pos_score
    rng = np.random.default_rng(task.seed)
    m = min(len(members), len(non))
    members = rng.choice(members, m, replace=False)
    non = rng.choice(non, m, replace=False)
    x = np.concatenate([_features(members), _features(non)])
    y = np.concatenate([np.ones(m), np.zeros(m)])
    attack = LogisticRegression().fit(x, y) if len(np.unique(y)) == 2 else None
    task.memo[key] = attack
    return attack


def member_probabilities(attack, scores: GraphScores) -> np.ndarray | None:
    if attack is None:
        return None
    return attack.predict_proba(_features(scores.pos_score))[:, 1]


def score_model(model: nn.Module, task) -> dict[str, GraphScores]:
    """Scores of ``model`` on forget, retain, test and holdout, all on the retain graph."""
    view = task.scoring_view
    out = {s: score_set(model, getattr(task, s), task.adapter, view) for s in SPLITS}
    if task.task_kind == "link" and out["forget"].edge_rows.any():
        attack = member_attack(task)
        key = ("forget-original", task.split.forget_fingerprint, id(task.original))
        orig = task.memo.get(key)
        if orig is None:
            orig = score_set(task.original, task.forget, task.adapter, view)
            task.memo[key] = orig
        out["forget"].mi_prob = member_probabilities(attack, out["forget"])
        out["forget"].mi_prob_original = member_probabilities(attack, orig)
    return out


__all__ = ["GraphScores", "SPLITS", "score_model", "score_set", "member_attack", "NODE", "EDGE", "FEAT"]
