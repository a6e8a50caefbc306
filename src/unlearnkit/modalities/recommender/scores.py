"""Per-example and per-user scores of one recommender, computed once per model.

Every split is scored on the *retain graph* (the interactions that remain once the forget
set is deleted): that is the graph any model runs on after the deletion, so the original,
the reference and the unlearned model are compared on the same input (only LightGCN reads
it). Per interaction: ``s(u, i)``, ``s(u, neg)`` and the BPR loss. Per user, on the test
split: the top-``K_MAX`` items among those the user has no retained training interaction
with (training items excluded from ranking, as NCF and LightGCN evaluate), and HR, NDCG and
Recall at every K of :data:`KS` against the user's held-out items; with the user groups the
metrics compare (:meth:`RecTask.user_groups`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .adapter import InteractionGraph, InteractionSet

SPLITS = ("forget", "retain", "test", "holdout")
KS = (5, 10, 20)
K_MAX = max(KS)


@dataclass
class Ranking:
    """Every user's top-``K_MAX`` items and the ranking metrics of their held-out items.

    ``topk``: (U, K_MAX) item positions, best first (-1 past a user's last candidate). ``hr``, ``ndcg``, ``recall``: K -> (U,)
    per-user values (nan for users without a test interaction). ``groups``: name -> user
    positions (``forgotten``, ``affected``, ``retained``, ``neighbours``, ``random``)."""

    topk: np.ndarray
    hr: dict[int, np.ndarray]
    ndcg: dict[int, np.ndarray]
    recall: dict[int, np.ndarray]
    groups: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class RecScores:
    """Outputs of one model on the rows of one split (numpy); ``ranking`` on the test split."""

    example_ids: np.ndarray
    user: np.ndarray
    item: np.ndarray
    pos: np.ndarray
    neg: np.ndarray
    ranking: Ranking | None = None

    def __len__(self) -> int:
        return len(self.example_ids)

    @property
    def loss(self) -> np.ndarray:
        """The BPR loss per row, ``softplus(-(s(u, i) - s(u, neg)))``."""
        return np.logaddexp(0.0, -(self.pos - self.neg))

    def rows(self, split: str, role: str) -> dict[str, np.ndarray]:
        n = len(self)
        return {
            "example_id": self.example_ids.astype(str),
            "split": np.full(n, split),
            "model_role": np.full(n, role),
            "user": self.user,
            "item": self.item,
            "score": self.pos,
            "negative_score": self.neg,
            "loss": self.loss,
        }


@torch.no_grad()
def embeddings(model: nn.Module, task, graph: InteractionGraph) -> tuple[torch.Tensor, torch.Tensor]:
    was = model.training
    model.eval()
    try:
        ue, ie = task.adapter.embeddings(model, graph)
    finally:
        model.train(was)
    return ue.detach().float().cpu().clone(), ie.detach().float().cpu().clone()


def score_rows(ue: torch.Tensor, ie: torch.Tensor, data: InteractionSet) -> RecScores:
    u, i, j = (torch.from_numpy(a) for a in (data.user, data.item, data.neg))
    pos = (ue[u] * ie[i]).sum(-1).numpy()
    neg = (ue[u] * ie[j]).sum(-1).numpy()
    return RecScores(data.example_ids.copy(), data.user.copy(), data.item.copy(), pos, neg)


def ranking_metrics(topk: np.ndarray, test: InteractionSet, n_users: int, n_items: int) -> tuple[dict, dict, dict]:
    """HR@K, NDCG@K and Recall@K per user of the held-out items ``T_u`` of ``test``:

    ``HR@K = 1[|top_K ∩ T_u| > 0]``, ``Recall@K = |top_K ∩ T_u| / |T_u|``,
    ``NDCG@K = sum_{r < K, top_K[r] in T_u} 1 / log2(r + 2) / sum_{r < min(K, |T_u|)} 1 / log2(r + 2)``
    (He et al. 2017 NCF's leave-one-out HR and NDCG; with one held-out item NDCG is
    ``1 / log2(rank + 2)``; Recall and NDCG with several as LightGCN's evaluation)."""
    n_test = np.bincount(test.user, minlength=n_users)
    hit = (topk >= 0) & np.isin(np.arange(n_users)[:, None] * n_items + topk, test.user * n_items + test.item)
    disc = 1.0 / np.log2(np.arange(topk.shape[1]) + 2.0)
    hr, ndcg, recall = {}, {}, {}
    has = n_test > 0
    for k in KS:
        h = hit[:, :k]
        nh = h.sum(1)
        idcg = np.array([disc[: min(k, t)].sum() for t in n_test])
        hr[k] = np.where(has, (nh > 0).astype(float), np.nan)
        recall[k] = np.where(has, nh / np.maximum(n_test, 1), np.nan)
        ndcg[k] = np.where(has, (h * disc[:k]).sum(1) / np.where(idcg > 0, idcg, 1.0), np.nan)
    return hr, ndcg, recall


def rank_users(model: nn.Module, task, graph: InteractionGraph, exclude: InteractionSet, ue=None, ie=None) -> Ranking:
    """Every user's top-``K_MAX`` items by ``model`` on ``graph``, the items of ``exclude``'s
    interactions (the user's training items) left out, with the ranking metrics of the test
    split."""
    if ue is None:
        ue, ie = embeddings(model, task, graph)
    s = ue @ ie.T
    s[torch.from_numpy(exclude.user), torch.from_numpy(exclude.item)] = -torch.inf
    best = torch.topk(s, min(K_MAX, s.shape[1]), dim=1)
    # a user with fewer candidates than K_MAX gets -1 (no item) in the places left
    topk = torch.where(torch.isinf(best.values), -1, best.indices).numpy()
    hr, ndcg, recall = ranking_metrics(topk, task.split.test, task.n_users, task.n_items)
    return Ranking(topk, hr, ndcg, recall)


def score_model(model: nn.Module, task) -> dict[str, RecScores]:
    """Scores of ``model`` on forget, retain, test and holdout, all on the retain graph;
    the test split carries every user's ranking (retained training items excluded)."""
    graph = task.split.retain.structure
    ue, ie = embeddings(model, task, graph)
    out = {s: score_rows(ue, ie, getattr(task, s)) for s in SPLITS}
    ranking = rank_users(model, task, graph, task.split.retain, ue, ie)
    ranking.groups = task.user_groups()
    out["test"].ranking = ranking
    return out


__all__ = ["KS", "K_MAX", "Ranking", "RecScores", "SPLITS", "rank_users", "ranking_metrics", "score_model"]
