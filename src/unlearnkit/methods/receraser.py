"""RecEraser (Chen et al., WWW 2022, "Recommendation Unlearning"): SISA for recommenders.
The training interactions are cut into balanced shards by embeddings (users, items or
interactions: UBP, IBP, InBP), one recommender is trained per shard, their embeddings are
combined by a learned attention, and a deletion retrains only the shards that held it, then
the aggregation."""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..engines.loop import LoopStats, TrainConfig, run_loop
from ..errors import ConfigError
from ..modalities.recommender.adapter import InteractionGraph, InteractionSet
from ..modalities.recommender.task import draw_negatives, fit_rec_model
from ..utils import derive_seed, seed_everything
from .base import Method, UnlearnResult, hp, register
from .graph_eraser import bekm, shard_capacity

PARTITIONS = ("ubp", "ibp", "inbp", "random")


@dataclass
class RecEraserParams:
    num_shards: int = hp(5, "K: shards, one recommender each")
    partition: str = hp(
        "ubp", "ubp (balanced k-means of users), ibp (of items), inbp (of interactions) or random (equal random parts)"
    )
    partition_iters: int = hp(10, "balanced k-means iterations")
    agg_epochs: float = hp(10.0, "epochs of the attention aggregation over the training interactions")
    agg_lr: float = hp(1e-2, "Adam learning rate of the aggregation")
    agg_l2: float = hp(1e-5, "L2 weight on the per-shard transfer matrices (the official 1e-5)")

    def __post_init__(self) -> None:
        if isinstance(self.num_shards, bool) or int(self.num_shards) != self.num_shards or self.num_shards < 1:
            raise ConfigError(f"receraser: num_shards must be an integer >= 1, not {self.num_shards!r}")
        self.num_shards = int(self.num_shards)
        if self.partition not in PARTITIONS:
            raise ConfigError(f"receraser: partition must be one of {', '.join(PARTITIONS)}, not {self.partition!r}")
        if self.partition_iters < 1 or self.agg_epochs < 0 or self.agg_lr <= 0 or self.agg_l2 < 0:
            raise ConfigError("receraser: partition_iters >= 1, agg_epochs >= 0, agg_lr > 0 and agg_l2 >= 0")


class Aggregator(nn.Module):
    """RecEraser's attention-based adaptive aggregation (official code): per shard ``k`` a
    transfer ``e'_k = W_k e_k + b_k`` (shared by users and items), then per user (and, with
    their own parameters, per item) ``a_k = softmax_k(h^T ReLU(W_A e'_k + b_A))`` and
    ``e = sum_k a_k e'_k``; attention width ``d / 2``."""

    def __init__(self, num_shards: int, dim: int):
        super().__init__()
        a = max(1, dim // 2)
        eye = torch.eye(dim).repeat(num_shards, 1, 1)
        self.trans_w = nn.Parameter(eye + 0.01 * torch.randn(num_shards, dim, dim))
        self.trans_b = nn.Parameter(torch.zeros(num_shards, dim))
        std = (2.0 / (a + dim)) ** 0.5
        self.wa = nn.Parameter(torch.randn(dim, a) * std)
        self.ba = nn.Parameter(torch.zeros(a))
        self.ha = nn.Parameter(torch.full((a, 1), 0.01))
        self.wb = nn.Parameter(torch.randn(dim, a) * std)
        self.bb = nn.Parameter(torch.zeros(a))
        self.hb = nn.Parameter(torch.full((a, 1), 0.01))

    def _attend(self, e: torch.Tensor, w, b, h) -> torch.Tensor:
        """``e``: (K, N, d) -> (N, d)."""
        t = torch.einsum("knd,kde->kne", e, self.trans_w) + self.trans_b[:, None, :]
        logits = torch.relu(t @ w + b) @ h  # (K, N, 1)
        return (torch.softmax(logits, dim=0) * t).sum(0)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._attend(users, self.wa, self.ba, self.ha), self._attend(items, self.wb, self.bb, self.hb)


class RecEraserModel(nn.Module):
    """The shard recommenders and their aggregation: ``forward`` runs every shard on its own
    interaction graph (a LightGCN shard propagates only over its shard's retained
    interactions; the graph given is ignored) and aggregates the embeddings."""

    def __init__(self, shards: list[nn.Module], graphs: list[InteractionGraph], dim: int):
        super().__init__()
        self.shards = nn.ModuleList(shards)
        self.graphs = list(graphs)
        self.aggregator = Aggregator(len(shards), dim)

    def shard_embeddings(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        outs = [m(g.edge_index(device)) for m, g in zip(self.shards, self.graphs)]
        return torch.stack([u for u, _ in outs]), torch.stack([i for _, i in outs])

    def forward(self, edge_index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        dev = self.aggregator.trans_w.device
        return self.aggregator(*self.shard_embeddings(dev))


class _CachedAggregation(nn.Module):
    """The aggregation over frozen shard embeddings computed once (what training it needs)."""

    def __init__(self, aggregator: Aggregator, users: torch.Tensor, items: torch.Tensor):
        super().__init__()
        self.aggregator = aggregator
        self.register_buffer("users", users)
        self.register_buffer("items", items)

    def forward(self, edge_index=None):
        return self.aggregator(self.users, self.items)


@dataclass
class RecEraserState:
    shard_of: np.ndarray  # per training interaction its shard
    model: RecEraserModel
    preparation_cost: LoopStats


@register
class RecEraser(Method):
    """RecEraser (Chen, Zhang, Zhang, Liu and Ma 2022, WWW, "Recommendation Unlearning"; the
    official TensorFlow code read for the aggregation): SISA (Bourtoule et al. 2021) for
    recommenders.

    1. **Balanced partition** of the training interactions into ``K`` shards by embeddings of
       the original model: ``ubp`` (user-based: balanced k-means of the user embeddings, a
       user's interactions follow the user), ``ibp`` (item-based, the same over items) or
       ``inbp`` (interaction-based: balanced k-means of ``[e_u ; e_i]`` of every interaction),
       each cluster at most ``ceil(n/K)`` members (the paper's balanced anchors: every
       (member, anchor) pair sorted by distance, each member to the nearest anchor with room,
       anchors moved to their members' mean; :func:`~unlearnkit.methods.graph_eraser.bekm`);
       ``random`` for equal random parts.
    2. **One recommender per shard**: the task's architecture and recipe, trained with the
       BPR loss on the shard's interactions only (LightGCN over the shard's graph).
    3. **Attention-based aggregation** (:class:`Aggregator`), trained after the shards with
       their embeddings frozen, by BPR on all training interactions (fresh negatives), Adam,
       ``agg_epochs``, plus ``agg_l2`` times the squared norm of the transfer parameters.
    4. **Unlearning**: the shards holding a deleted interaction are retrained from their
       initialisation on what remains of them; the others are kept bit for bit; the
       aggregation is retrained from its initialisation on the retained interactions. No
       shard and no attention weight saw a deleted interaction; the partition, computed from
       the original's embeddings before any request (as the paper's), is kept.

    Preparation (partition, every shard, the aggregation; cached per task and seed like
    ``sisa``) is in ``extra["preparation_cost"]``; ``cost`` is the request's (the affected
    shards and the aggregation; the one forward pass of every shard that caches their
    embeddings for the aggregation is not counted).

    Departures: the official code trains with Adagrad and early stopping on test recall;
    here the task's recipe (Adam, fixed epochs) for shards and Adam for the aggregation, no
    dropout on the aggregated user embedding; the transfer matrices start at the identity
    (the official: Xavier). The partition's k-means runs on the original's embeddings (the
    paper pre-trains embeddings for it); its random anchors are seeded by the task's seed, so
    the stored model's shape can be rebuilt from the task.
    """

    name = "receraser"
    summary = "RecEraser: balanced shards of users/items/interactions, attention aggregation; retrain affected shards"
    Params = RecEraserParams
    modalities = ("recommender",)
    citation = (
        "Chen, Zhang, Zhang, Liu and Ma 2022 (WWW), Recommendation Unlearning (RecEraser); Bourtoule et al. 2021 "
        "(IEEE S&P), Machine Unlearning"
    )
    exact = True
    uses_lora = False
    contract_exempt = {
        "step_budget": "a request's work is retraining the affected shards with the task's recipe; capping it "
        "would break exactness (as sisa)",
        "divergence": "shards retrain with the task's recipe, no learning rate of its own to misconfigure (as sisa)",
    }
    _cache_size = 2

    def __init__(self, **params):
        super().__init__(**params)
        self._prepared: dict[tuple, RecEraserState] = {}

    # ------------------------------------------------------------------ partition
    def partition(self, task) -> np.ndarray:
        """Per training interaction its shard (seeded by the task's seed)."""
        p, tr = self.params, task.split.train
        rng = np.random.default_rng(derive_seed(task.seed, "receraser", p.partition, p.num_shards))
        n, k = len(tr), p.num_shards
        if p.partition == "random":
            return rng.permutation(np.arange(n) % k)
        with torch.no_grad():
            ue, ie = task.adapter.embeddings(task.original.eval(), tr.structure)
        ue, ie = ue.detach().float().cpu().numpy(), ie.detach().float().cpu().numpy()
        if p.partition == "inbp":
            return bekm(
                np.concatenate([ue[tr.user], ie[tr.item]], 1), k, shard_capacity(n, k, 0.0), p.partition_iters, rng
            )
        key, emb = (tr.user, ue) if p.partition == "ubp" else (tr.item, ie)
        present = np.unique(key)
        if len(present) < k:
            raise ConfigError(f"receraser: {len(present)} {p.partition[0]}sers/items cannot fill {k} shards")
        cluster = bekm(emb[present], k, shard_capacity(len(present), k, 0.0), p.partition_iters, rng)
        of = np.full(int(key.max()) + 1, -1, np.int64)
        of[present] = cluster
        return of[key]

    # ------------------------------------------------------------------ training
    def _shard_set(self, data: InteractionSet, train: InteractionSet, shard_of: np.ndarray, s: int) -> InteractionSet:
        """The rows of ``data`` in shard ``s`` on the graph of those rows."""
        in_shard = shard_of[train.positions(data.example_ids)] == s if len(data) != len(train) else shard_of == s
        rows = data.take(np.flatnonzero(in_shard), name=f"shard{s}")
        rows.structure = InteractionGraph(rows.user, rows.item, data.n_users, data.n_items)
        return rows

    def _train_shard(
        self, task, rows: InteractionSet, s: int, seed: int, progress: bool
    ) -> tuple[nn.Module, LoopStats]:
        model = task.model_factory(derive_seed(seed, "receraser-shard", s) % (2**31)).to(task.device)
        if not len(rows):  # a shard emptied by the deletion keeps its initialisation
            return model.eval(), LoopStats()
        cost = fit_rec_model(model, rows, task.adapter, task.recipe, seed + s, task.device, progress, f"shard {s}")
        return model.eval(), cost

    def _fit_aggregation(self, task, model: RecEraserModel, data: InteractionSet, seed: int) -> LoopStats:
        p = self.params
        seed_everything(derive_seed(seed, "receraser-agg") % (2**31))
        model.aggregator = Aggregator(len(model.shards), model.aggregator.trans_w.shape[-1]).to(task.device)
        if p.agg_epochs == 0:
            return LoopStats()
        with torch.no_grad():
            users, items = model.shard_embeddings(task.device)
        cached = _CachedAggregation(model.aggregator, users.detach(), items.detach())
        gen = torch.Generator().manual_seed(derive_seed(seed, "receraser-neg") % (2**63))
        positives = data.structure.keys()
        adapter = task.adapter

        def objective(ctx):
            batch = ctx.batch("train")
            batch["neg"] = draw_negatives(batch["user"], data.n_items, positives, gen).to(ctx.device)
            agg = cached.aggregator
            l2 = agg.trans_w.pow(2).sum() + agg.trans_b.pow(2).sum()
            return adapter.per_example_loss(ctx.model, batch).mean() + p.agg_l2 * 0.5 * l2

        cfg = TrainConfig(epochs=p.agg_epochs, batch_size=task.recipe.batch_size, lr=p.agg_lr, optimizer="adam")
        return run_loop(
            cached,
            objective,
            {"train": data},
            cfg,
            seed=seed,
            device=task.device,
            desc="receraser-agg",
            adapter=adapter,
        )

    def _graphs(self, task, data: InteractionSet, shard_of: np.ndarray) -> list[InteractionGraph]:
        return [self._shard_set(data, task.split.train, shard_of, s).structure for s in range(self.params.num_shards)]

    def prepare(self, task, seed: int = 0, progress: bool = False) -> RecEraserState:
        """Partition, train every shard on ``task.train`` and the aggregation (cached)."""
        key = (task.key, task.train.fingerprint, seed)
        if key in self._prepared:
            return self._prepared[key]
        t0 = time.perf_counter()
        shard_of = self.partition(task)
        shards, graphs, cost = [], [], LoopStats()
        for s in range(self.params.num_shards):
            rows = self._shard_set(task.split.train, task.split.train, shard_of, s)
            m, c = self._train_shard(task, rows, s, seed, progress)
            shards.append(m)
            graphs.append(rows.structure)
            cost += c
        dim = int(task.original(task.split.train.structure.edge_index(task.device))[0].shape[1])
        model = RecEraserModel(shards, graphs, dim).to(task.device)
        cost += self._fit_aggregation(task, model, task.split.train, seed)
        cost.wall_time_s = time.perf_counter() - t0
        while len(self._prepared) >= self._cache_size:
            self._prepared.pop(next(iter(self._prepared)))
        self._prepared[key] = state = RecEraserState(shard_of, model.eval(), cost)
        return state

    def affected_shards(self, task, shard_of: np.ndarray) -> list[int]:
        """The shards holding a deleted interaction."""
        pos = task.split.train.positions(task.split.forget_ids)
        return sorted(set(shard_of[pos].tolist()))

    def model_template(self, task) -> RecEraserModel:
        """An untrained model of this shape on the task's retained shard graphs."""
        shard_of = self.partition(task)
        graphs = self._graphs(task, task.split.retain, shard_of)
        shards = [task.model_factory(0).to(task.device) for _ in graphs]
        dim = int(shards[0](graphs[0].edge_index(task.device))[0].shape[1])
        return RecEraserModel(shards, graphs, dim).to(task.device)

    def unlearn(self, task, seed: int = 0, progress: bool = False) -> UnlearnResult:
        self._prepare(task)  # refuses a task of a modality it does not serve
        p = self.params
        state = self.prepare(task, seed, progress)
        t0 = time.perf_counter()
        model = copy.deepcopy(state.model)
        hit = self.affected_shards(task, state.shard_of)
        cost = LoopStats()
        for s in hit:
            rows = self._shard_set(task.split.retain, task.split.train, state.shard_of, s)
            model.shards[s], c = self._train_shard(task, rows, s, seed, progress)
            model.graphs[s] = rows.structure
            cost += c
        cost += self._fit_aggregation(task, model, task.split.retain, seed)
        cost.wall_time_s = time.perf_counter() - t0
        model.eval()
        sizes = np.bincount(state.shard_of, minlength=p.num_shards)
        extra = {
            "preparation_cost": state.preparation_cost.to_dict(),
            "affected_shards": hit,
            "shard_sizes": sizes.tolist(),
        }
        return UnlearnResult(model, cost, self.name, dataclasses.asdict(p), seed, extra)
