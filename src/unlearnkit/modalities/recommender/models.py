"""Built-in recommenders: BPR matrix factorisation, LightGCN (PyTorch Geometric's
``LightGCN``) and a two-tower model (``bpr``, ``lightgcn``, ``two-tower``).

Each maps the interaction graph's ``edge_index`` (users ``0..U-1``, items ``U..U+I-1``, both
directions) to ``(user embeddings (U, d), item embeddings (I, d))``; the score of a pair is
the inner product, as in all three papers. Only LightGCN reads the graph.
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import ConfigError

ARCHS = ("bpr", "lightgcn", "two-tower")


class MatrixFactorisation(nn.Module):
    """BPR-MF (Rendle et al., UAI 2009): a free embedding per user and per item,
    ``s(u, i) = <p_u, q_i>``; initialised N(0, 0.1^2) (their code's scale)."""

    def __init__(self, n_users: int, n_items: int, dim: int = 32):
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user.weight, std=0.1)
        nn.init.normal_(self.item.weight, std=0.1)

    def forward(self, edge_index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user.weight, self.item.weight


class LightGCNRecommender(nn.Module):
    """LightGCN (He et al., SIGIR 2020) through PyG's ``torch_geometric.nn.models.LightGCN``:
    ego embeddings propagated ``layers`` times over the symmetric-normalised bipartite graph,
    ``e = sum_k alpha_k e^(k)`` with ``alpha_k = 1 / (layers + 1)`` (the paper's choice)."""

    def __init__(self, n_users: int, n_items: int, dim: int = 32, layers: int = 2):
        super().__init__()
        try:
            from torch_geometric.nn.models import LightGCN
        except ImportError:
            raise ConfigError("the lightgcn model needs torch-geometric (pip install unlearnkit[graph])") from None
        if layers < 1:
            raise ConfigError("lightgcn needs at least one layer")
        self.n_users, self.n_items = n_users, n_items
        self.gcn = LightGCN(n_users + n_items, dim, layers)
        nn.init.normal_(self.gcn.embedding.weight, std=0.1)

    def forward(self, edge_index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if edge_index is None:
            raise ConfigError("lightgcn runs on the interaction graph; give its edge_index")
        z = self.gcn.get_embedding(edge_index)
        return z[: self.n_users], z[self.n_users :]


class TwoTower(nn.Module):
    """A two-tower (dual-encoder) model, as in YouTube's retrieval towers (Yi et al., RecSys
    2019): a user tower and an item tower, each an id embedding through a two-layer MLP,
    ``s(u, i) = <f(u), g(i)>``. Departure: ids are the only features (the data here have none
    other)."""

    def __init__(self, n_users: int, n_items: int, dim: int = 32, hidden: int = 64):
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user.weight, std=0.1)
        nn.init.normal_(self.item.weight, std=0.1)
        self.user_tower = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.item_tower = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, edge_index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_tower(self.user.weight), self.item_tower(self.item.weight)


def build_rec_model(arch: str, n_users: int, n_items: int, **kwargs) -> nn.Module:
    """A built-in recommender (``arch`` in :data:`ARCHS`; ``dim`` for all, ``layers`` for
    lightgcn, ``hidden`` for two-tower)."""
    allowed = {"bpr": {"dim"}, "lightgcn": {"dim", "layers"}, "two-tower": {"dim", "hidden"}}
    if arch not in allowed:
        raise ConfigError(f"unknown recommender {arch!r}; choose one of {', '.join(ARCHS)}")
    unknown = set(kwargs) - allowed[arch]
    if unknown:
        raise ConfigError(f"unknown {arch} option(s) {sorted(unknown)}; it takes {', '.join(sorted(allowed[arch]))}")
    cls = {"bpr": MatrixFactorisation, "lightgcn": LightGCNRecommender, "two-tower": TwoTower}[arch]
    return cls(n_users, n_items, **kwargs)
