"""GraphEraser (Chen et al., CCS 2022): SISA for graphs. The training graph's nodes are cut
into balanced shards (BEKM: balanced k-means on the original's node embeddings; BLPA:
balanced label propagation), one GNN is trained per shard on its subgraph, their
predictions are aggregated (mean, majority vote or the learned LBAggr weights), and a
deletion retrains only the shards holding a deleted example."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..engines.loop import LoopStats
from ..errors import ConfigError
from ..modalities.graph.adapter import NODE
from ..modalities.graph.task import fit_graph_model
from ..utils import derive_seed
from .base import Method, UnlearnResult, hp, register

PARTITIONS = ("bekm", "blpa", "random")
AGGREGATIONS = ("mean", "vote", "lbaggr")


@dataclass
class GraphEraserParams:
    num_shards: int = hp(10, "k: shards, one GNN each (the official default 10)")
    partition: str = hp("bekm", "bekm (balanced embedding k-means), blpa (balanced label propagation) or random")
    aggregation: str = hp(
        "lbaggr", "mean (mean posterior), vote (majority; node classification only) or lbaggr (learned weights)"
    )
    shard_size_delta: float = hp(
        0.005, "delta of the shard capacity ceil(n/k + delta (n - n/k)) (the official --shard_size_delta)"
    )
    partition_iters: int | None = hp(None, "partition iterations (None: the official 20 for BEKM, 100 for BLPA)")
    opt_epochs: int = hp(50, "LBAggr: epochs over the sampled training rows (the official 50)")
    opt_lr: float = hp(1e-3, "LBAggr: Adam learning rate of the shard weights (the official 1e-3)")
    opt_samples: int = hp(1000, "LBAggr: training rows sampled to fit the weights (the official 1000)")
    opt_batch_size: int = hp(32, "LBAggr: batch size (the official 32)")
    opt_l2: float = hp(1.0, "LBAggr: weight of ||alpha||_2 in its loss (the official adds it with weight 1)")

    def __post_init__(self) -> None:
        if isinstance(self.num_shards, bool) or int(self.num_shards) != self.num_shards or self.num_shards < 1:
            raise ConfigError(f"graph_eraser: num_shards must be an integer >= 1, not {self.num_shards!r}")
        if self.partition not in PARTITIONS:
            raise ConfigError(f"graph_eraser: partition must be one of {', '.join(PARTITIONS)}, not {self.partition!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(
                f"graph_eraser: aggregation must be one of {', '.join(AGGREGATIONS)}, not {self.aggregation!r}"
            )
        if not 0 <= self.shard_size_delta <= 1:
            raise ConfigError(f"graph_eraser: shard_size_delta must be in [0, 1], not {self.shard_size_delta}")
        if self.partition_iters is not None and self.partition_iters < 1:
            raise ConfigError("graph_eraser: partition_iters must be >= 1")
        if (
            self.opt_epochs < 1
            or self.opt_lr <= 0
            or self.opt_samples < 1
            or self.opt_batch_size < 1
            or self.opt_l2 < 0
        ):
            raise ConfigError("graph_eraser: opt_epochs, opt_samples, opt_batch_size >= 1, opt_lr > 0, opt_l2 >= 0")


# --------------------------------------------------------------------------- balanced partitions
def shard_capacity(n: int, k: int, delta: float) -> int:
    """The official per-shard node threshold ``ceil(n/k + delta (n - n/k))``."""
    return int(math.ceil(n / k + delta * (n - n / k)))


def bekm(emb: np.ndarray, k: int, capacity: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """Balanced embedding k-means (GraphEraser's BEKM, the official ``ConstrainedKmeans``):
    ``k`` centroids start at random nodes; each iteration sorts every (node, centroid) pair by
    squared distance, ascending, and gives each node the nearest centroid that still has room
    (``capacity`` nodes), then moves each centroid to its nodes' mean; it stops when no
    centroid moves or after ``iterations``. Returns each node's shard."""
    n = len(emb)
    if k * capacity < n:
        raise ConfigError(f"{k} shards of at most {capacity} nodes cannot hold {n} nodes")
    cent = emb[rng.choice(n, k, replace=False)].astype(np.float64)
    x = emb.astype(np.float64)
    shard = np.full(n, -1, dtype=np.int64)
    for _ in range(iterations):
        d = ((x[None, :, :] - cent[:, None, :]) ** 2).sum(-1)  # (k, n)
        order = np.argsort(d, axis=None, kind="stable")
        c_of, n_of = np.unravel_index(order, d.shape)
        shard = np.full(n, -1, dtype=np.int64)
        size = np.zeros(k, dtype=np.int64)
        for c, v in zip(c_of.tolist(), n_of.tolist()):
            if shard[v] < 0 and size[c] < capacity:
                shard[v] = c
                size[c] += 1
        new = np.stack([x[shard == c].mean(0) if size[c] else cent[c] for c in range(k)])
        moved = float(np.abs(new - cent).sum())
        cent = new
        if moved <= 0.0:
            break
    return shard


def blpa(edges: np.ndarray, n: int, k: int, capacity: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """Balanced label propagation (GraphEraser's BLPA, the official ``ConstrainedLPA``): nodes
    start in ``k`` equal random parts; each iteration every node's desired move is to the
    shard most of its neighbours are in (ties at random), with that count as its priority;
    in descending priority a node moves when the destination has room (below ``capacity``),
    else it waits for that shard, and each move out of a shard lets the first node waiting
    for it in (and so on along the chain); it stops when no node moves or after
    ``iterations``. ``edges`` (E, 2) over nodes ``0..n-1``. Returns each node's shard."""
    shard = np.empty(n, dtype=np.int64)
    for c, part in enumerate(np.array_split(rng.permutation(n), k)):
        shard[part] = c
    src, dst = np.concatenate([edges[:, 0], edges[:, 1]]), np.concatenate([edges[:, 1], edges[:, 0]])
    for _ in range(iterations):
        counts = np.zeros((n, k), dtype=np.float64)
        np.add.at(counts, (src, shard[dst]), 1.0)
        best = counts.max(1)
        tie = rng.random((n, k)) * (counts == best[:, None])  # a random one of the tied shards
        want = np.where(best > 0, tie.argmax(1), shard)
        size = np.bincount(shard, minlength=k)
        waiting: list[list[int]] = [[] for _ in range(k)]
        before = shard.copy()
        for v in np.argsort(-best, kind="stable").tolist():
            a, b = int(shard[v]), int(want[v])
            if a == b:
                continue
            if size[b] < capacity:
                shard[v] = b
                size[b] += 1
                size[a] -= 1
                freed = a
                while waiting[freed]:  # the chain of nodes waiting for the freed shard
                    w = waiting[freed].pop(0)
                    origin = int(shard[w])
                    shard[w] = freed
                    size[freed] += 1
                    size[origin] -= 1
                    freed = origin
            else:
                waiting[b].append(v)
        if int((shard != before).sum()) == 0:
            break
    return shard


# --------------------------------------------------------------------------- the ensemble
class GraphEraserModel(nn.Module):
    """The shard GNNs and their aggregation: one output row per node, so the graph adapter
    reads it as it reads one GNN.

    * node classification: shard ``s`` runs on the given graph restricted to the edges with
      both ends in ``seen[s]`` (its training nodes and the test nodes, as the official shard
      data); ``mean`` and ``lbaggr`` return ``log sum_s alpha_s softmax(f_s)`` (``alpha``
      uniform or learned), ``vote`` the majority of the shards' labels, ties broken by the mean
      posterior (``log`` of ``votes + 0.5 mean_prob``, normalised, as the project's SISA);
    * link prediction: every shard runs on the whole given graph and the output is
      ``[sqrt(alpha_1) z^1, ..., sqrt(alpha_k) z^k]``, so the inner-product decoder gives
      ``s(u, v) = sum_s alpha_s <z^s_u, z^s_v>``, the weighted mean of the shards' edge logits.

    ``alpha`` (``weights``), ``seen`` and ``active`` (shards with training rows) are buffers,
    stored with the weights."""

    def __init__(self, shards: list[nn.Module], task_kind: str, aggregation: str, num_nodes: int):
        super().__init__()
        self.shards = nn.ModuleList(shards)
        self.task_kind = task_kind
        self.aggregation = aggregation
        k = len(shards)
        self.register_buffer("weights", torch.full((k,), 1.0 / k))
        self.register_buffer("seen", torch.ones(k, num_nodes, dtype=torch.bool))
        self.register_buffer("active", torch.ones(k, dtype=torch.bool))

    def shard_outputs(self, x: torch.Tensor, edge_index: torch.Tensor) -> list[torch.Tensor | None]:
        """Each shard's own output on its part of the graph (None for an inactive shard)."""
        outs: list[torch.Tensor | None] = []
        for s, m in enumerate(self.shards):
            if not bool(self.active[s]):
                outs.append(None)
                continue
            ei = edge_index
            if self.task_kind == "node":
                seen = self.seen[s]
                ei = edge_index[:, seen[edge_index[0]] & seen[edge_index[1]]]
            outs.append(m(x, ei))
        return outs

    def aggregate(self, outs: list[torch.Tensor | None], weights: torch.Tensor) -> torch.Tensor:
        on = [i for i, o in enumerate(outs) if o is not None]
        w = weights[on]
        w = w / w.sum().clamp_min(1e-12)
        if self.task_kind == "link":
            return torch.cat([outs[i] * w[j].clamp_min(0).sqrt() for j, i in enumerate(on)], dim=1)
        probs = torch.stack([F.softmax(outs[i], -1) for i in on])  # (k', N, C)
        if self.aggregation == "vote":
            c = probs.shape[-1]
            votes = F.one_hot(probs.argmax(-1), c).sum(0).to(probs.dtype)
            score = votes + 0.5 * probs.mean(0)
            return torch.log(score / score.sum(-1, keepdim=True))
        return torch.log((w[:, None, None] * probs).sum(0).clamp_min(1e-30))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.aggregate(self.shard_outputs(x, edge_index), self.weights)


# --------------------------------------------------------------------------- the state
@dataclass
class EraserState:
    """What a request needs: each partitioned node's shard, the rows each shard trains on."""

    shard_of: np.ndarray  # (N,) shard of each node, -1 for nodes not partitioned (test nodes)
    model: GraphEraserModel
    preparation_cost: LoopStats


def _shard_data(task, data, shard_of: np.ndarray, s: int):
    """Shard ``s``'s training rows of ``data`` on its subgraph, as a graph of its own: the
    nodes of the shard's graph (its nodes, and on node tasks the test nodes) renumbered in
    order, the edges of ``data``'s graph with both ends there, and the rows whose nodes all
    lie there (example ids unchanged). A GNN's outputs at these nodes equal its outputs on
    the whole graph with only these edges, so this is the official induced shard graph,
    computed at the shard's size. Returns the rows and the shard's nodes (positions in the
    task's graph)."""
    from ..data.graphs import Graph
    from ..modalities.graph.adapter import GraphExampleSet

    seen = _seen(task, shard_of, s)
    nodes = np.flatnonzero(seen)
    pos = np.full(len(seen), -1, dtype=np.int64)
    pos[nodes] = np.arange(len(nodes))
    g = task.graph
    ge = g.edges.numpy()
    inside = seen[ge[:, 0]] & seen[ge[:, 1]]
    epos = np.full(len(ge), -1, dtype=np.int64)
    epos[inside] = np.arange(int(inside.sum()))
    sub = Graph(
        g.x[torch.from_numpy(nodes)],
        torch.from_numpy(pos[ge[inside]]),  # a monotone renumbering keeps the edges' sorted order
        None if g.y is None else g.y[torch.from_numpy(nodes)],
        node_ids=g.node_ids[nodes],
        subject_ids=g.subject_ids[nodes],
        has_features=g.has_features,
        name=f"{g.name}/shard{s}",
    )
    v = np.where(data.v >= 0, data.v, data.u)
    rows = np.flatnonzero(seen[data.u] & seen[v])
    tr = torch.from_numpy(rows)

    def remap(a: np.ndarray, table: np.ndarray) -> np.ndarray:
        a = a[rows]
        return np.where(a >= 0, table[np.maximum(a, 0)], -1)

    out = GraphExampleSet(
        data.inputs[tr],
        data.labels[tr],
        data.example_ids[rows],
        None if data.subject_ids is None else data.subject_ids[rows],
        num_classes=data.num_classes,
        name=f"{data.name}/shard{s}",
        graph=sub,
        kind=data.kind[rows],
        u=remap(data.u, pos),
        v=remap(data.v, pos),
        eref=remap(data.eref, epos),
        neg=remap(data.neg, pos),
        edge_keep=data.edge_keep[inside],
        x_zero=data.x_zero[nodes],
        task_kind=data.task_kind,
    )
    return out, nodes


def _seen(task, shard_of: np.ndarray, s: int) -> np.ndarray:
    """The nodes of shard ``s``'s training graph: its nodes, plus the never-partitioned test
    nodes on node tasks (the official shard data holds the test nodes, transductively)."""
    return (shard_of == s) | ((shard_of < 0) if task.task_kind == "node" else False)


@register
class GraphEraser(Method):
    """GraphEraser (Chen, Zhang, Wang, Backes, Humbert and Zhang 2022, CCS, "Graph Unlearning";
    code github.com/MinChen00/Graph-Unlearning, read): SISA (Bourtoule et al. 2021) for graphs.

    1. **Balanced partition** of the training graph's nodes into ``k`` shards of at most
       ``ceil(n/k + delta (n - n/k))`` nodes (the official capacity, ``delta = 0.005``):
       :func:`bekm` (balanced k-means on the original's node outputs on the training graph, the
       official ``sage_km`` clusters a trained GNN's outputs), :func:`blpa` (balanced label
       propagation over the training edges) or ``random`` (equal random parts). On node
       classification the training nodes are partitioned (test nodes are in no shard); on link
       prediction every node.
    2. **One GNN per shard**, the task's architecture and recipe (full-batch Adam), trained on
       the shard's rows on the shard's subgraph (:func:`_shard_data`): node classification, the
       shard's training nodes with the edges among the shard's and the test nodes (the
       official ``filter_edge_index_1`` on ``shard ∪ test``); link prediction, the training
       edges with both ends in the shard as positives and message-passing edges, negatives
       drawn uniformly from the shard's nodes each step. Edges between shards train no shard.
    3. **Aggregation** (:class:`GraphEraserModel`): ``mean`` (uniform ``alpha``), ``vote``
       (majority of the shards' labels; node classification only) or ``lbaggr``, GraphEraser's
       learning-based aggregation: shard weights ``alpha`` (start ``1/k``) fitted on
       ``opt_samples`` sampled training rows by Adam (``opt_lr``, batches of ``opt_batch_size``,
       ``opt_epochs``), ``alpha`` clamped to ``>= 0`` after each step, loss
       ``CE(softmax(sum_s alpha_s P_s), y) + opt_l2 ||alpha||_2`` (``P_s`` the shard's posterior;
       link rows: the BCE of ``sum_s alpha_s s_s(u, v)`` and of the negative pair's), the epoch of
       least total loss kept, ``alpha`` normalised to sum 1 (all as the official
       ``OptimalAggregator``).
    4. **Unlearning**: a deleted row (node, edge, feature row) lies in the shards whose graph
       holds all its nodes; exactly those shards are retrained from their initialisation on
       their remaining rows (the partition is kept, the official ``repartition=False``), the
       others are kept bit for bit, and LBAggr's weights are refitted on the remaining rows.
       Exact in SISA's sense (``exact = True``): no shard model and no weight saw a deleted row.
       The partition is fixed before any request, as the paper's; BEKM's is computed from the
       original's outputs and BLPA's from the training edges, both of which the deleted rows
       were part of (``random`` depends on the node count alone).

    Preparation (partition and training every shard, cached per task and seed like ``sisa``) is
    in ``extra["preparation_cost"]``; ``cost`` is the request's: the retrained shards and the
    weight fit (its steps; each sampled row one forward and backward per epoch through the
    weights, the shards' posteriors one forward). ``extra`` lists shard sizes, capacity and the
    affected shards.

    Departures: the official mean aggregator averages log-posteriors and its LBAggr applies
    its softmax to a weighted sum of log-posteriors; here posteriors (probabilities) are
    averaged and weighted. The paper is node classification; link prediction is this
    project's extension (edges inside a shard train it; the aggregate is the weighted mean of
    edge logits, so ``vote`` is refused there; every shard embeds the whole graph it is given at
    scoring time, which holds no deleted edge). BEKM clusters the original's outputs rather
    than a separately trained GraphSAGE's. BLPA skips nodes without neighbours (the official
    moves them toward shard 0 with priority 0). The paper's text could not be read here; the
    formulas are the official code's.
    """

    name = "graph_eraser"
    summary = "GraphEraser: balanced graph shards (BEKM/BLPA), one GNN each, aggregated; retrain affected shards"
    Params = GraphEraserParams
    modalities = ("graph",)
    citation = (
        "Chen, Zhang, Wang, Backes, Humbert and Zhang 2022 (CCS), Graph Unlearning (GraphEraser); Bourtoule et "
        "al. 2021 (IEEE S&P), Machine Unlearning"
    )
    exact = True
    uses_lora = False
    contract_exempt = {
        "step_budget": "a request's work is retraining the affected shards with the task's recipe; capping it "
        "would break exactness (as sisa)",
        "divergence": "shards retrain with the task's recipe, no learning rate of its own (as sisa)",
    }
    _cache_size = 2

    def __init__(self, **params):
        super().__init__(**params)
        self._prepared: dict[tuple, EraserState] = {}

    # ------------------------------------------------------------------ shape
    def model_template(self, task) -> GraphEraserModel:
        """Untrained shards of the task's architecture in this method's shape, to load a stored
        GraphEraser model into (weights, seen masks and active flags come with it)."""
        p = self.params_for(task.modality)
        shards = [task.model_factory(0).to(task.device) for _ in range(p.num_shards)]
        return GraphEraserModel(shards, task.task_kind, p.aggregation, task.graph.num_nodes).to(task.device)

    # ------------------------------------------------------------------ partition
    def partition(self, task, seed: int) -> np.ndarray:
        """Each node's shard (-1: not partitioned, the test nodes of a node task)."""
        p = self.params
        n_all = task.graph.num_nodes
        train = task.train
        if task.task_kind == "node":
            nodes = np.sort(train.u[train.kind == NODE])
        else:
            nodes = np.arange(n_all)
        k, n = p.num_shards, len(nodes)
        if k > n:
            raise ConfigError(f"graph_eraser: {k} shards for {n} nodes; use at most as many shards as nodes")
        cap = shard_capacity(n, k, p.shard_size_delta)
        rng = np.random.default_rng(derive_seed(seed, "graph-eraser", "partition", p.partition))
        if p.partition == "bekm":
            with torch.no_grad():
                was = task.original.training
                task.original.eval()
                emb = task.original(*train.view.on(task.device)).detach().cpu().numpy()
                task.original.train(was)
            local = bekm(emb[nodes], k, cap, p.partition_iters or 20, rng)
        elif p.partition == "blpa":
            pos = np.full(n_all, -1)
            pos[nodes] = np.arange(n)
            ge = task.graph.edges.numpy()[train.edge_keep]
            ge = ge[(pos[ge[:, 0]] >= 0) & (pos[ge[:, 1]] >= 0)]
            local = blpa(pos[ge], n, k, cap, p.partition_iters or 100, rng)
        else:
            local = np.empty(n, dtype=np.int64)
            for c, part in enumerate(np.array_split(rng.permutation(n), k)):
                local[part] = c
        shard_of = np.full(n_all, -1, dtype=np.int64)
        shard_of[nodes] = local
        return shard_of

    # ------------------------------------------------------------------ training
    def _train_shard(self, task, data, shard_of: np.ndarray, s: int, seed: int, progress: bool):
        """Shard ``s``'s GNN trained from its initialisation on its rows of ``data``: the
        model and its cost (None, zero cost when the shard has no training row left)."""
        sub, nodes = _shard_data(task, data, shard_of, s)
        sup = sub.supervised(name=f"{sub.name}/supervised")
        s_seed = derive_seed(seed, "graph-eraser", "shard", s) % (2**31)
        model = task.model_factory(s_seed).to(task.device)
        if len(sup) == 0:
            return model, LoopStats(), False
        pool = torch.from_numpy(np.flatnonzero(shard_of[nodes] == s))  # the shard's own nodes, renumbered
        stats = fit_graph_model(
            model, sup, task.adapter, task.recipe, s_seed, task.device, progress, f"graph_eraser shard {s}", pool
        )
        return model.eval(), stats, True

    def _fit_weights(self, task, model: GraphEraserModel, data, seed: int) -> LoopStats:
        """LBAggr (see the class docstring) on ``data``'s training rows; uniform weights for
        ``mean`` and ``vote``. Sets ``model.weights``."""
        p = self.params
        k = len(model.shards)
        on = model.active.clone()
        if p.aggregation != "lbaggr":
            model.weights.copy_(on.float() / on.float().sum().clamp_min(1))
            return LoopStats()
        sup = data.supervised()
        rng = np.random.default_rng(derive_seed(seed, "graph-eraser", "lbaggr"))
        pick = np.sort(rng.choice(len(sup), min(p.opt_samples, len(sup)), replace=False))
        sample = sup.take(pick)
        adapter = task.adapter
        batch = adapter.to_device(next(sample.batches(len(sample))))
        with torch.no_grad():
            outs = model.shard_outputs(*batch["graph"].on(task.device))
            per = [adapter.readout(o, batch) if o is not None else None for o in outs]  # (m, C) each
        idx = [i for i in range(k) if per[i] is not None]
        stack = torch.stack([per[i] for i in idx])  # (k', m, C)
        if task.task_kind == "node":
            stack = F.softmax(stack, -1)
        y = batch["y"]
        w = nn.Parameter(torch.full((len(idx),), 1.0 / k, device=task.device))
        opt = torch.optim.Adam([w], lr=p.opt_lr)
        gen = torch.Generator().manual_seed(derive_seed(seed, "graph-eraser", "lbaggr-order") % (2**63))
        m = stack.shape[1]
        best, best_w, steps = math.inf, w.detach().clone(), 0
        for _ in range(p.opt_epochs):
            total = 0.0
            for b in torch.randperm(m, generator=gen).split(p.opt_batch_size):
                agg = torch.einsum("s,smc->mc", w, stack[:, b.to(stack.device)])
                if task.task_kind == "node":
                    fit = F.cross_entropy(agg, y[b])
                else:
                    fit = (F.softplus(-agg[:, 0]) + F.softplus(agg[:, 1])).mean()
                loss = fit + p.opt_l2 * w.norm()
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    w.clamp_(min=0.0)
                total += float(loss.detach())
                steps += 1
            if total < best:
                best, best_w = total, w.detach().clone()
        full = torch.zeros(k, device=task.device)
        full[idx] = best_w
        if float(full.sum()) <= 0:
            full[idx] = 1.0
        model.weights.copy_(full / full.sum())
        return LoopStats(
            steps=steps,
            examples_forward=m * (1 + p.opt_epochs),
            examples_backward=m * p.opt_epochs,
            final_loss=best,
        )

    def prepare(self, task, seed: int = 0, progress: bool = False) -> EraserState:
        """Partition, train every shard on ``task.train`` and fit the aggregation (cached)."""
        key = (task.key, task.train.fingerprint, seed)
        if key in self._prepared:
            return self._prepared[key]
        p = self.params
        if p.aggregation == "vote" and task.task_kind == "link":
            raise ConfigError(
                "graph_eraser: vote aggregation needs class predictions; on link prediction use mean or lbaggr "
                "(the aggregate is the weighted mean of the shards' edge logits)"
            )
        t0 = time.perf_counter()
        shard_of = self.partition(task, seed)
        shards, cost, active = [], LoopStats(), []
        for s in range(p.num_shards):
            m, c, ok = self._train_shard(task, task.train, shard_of, s, seed, progress)
            shards.append(m)
            cost += c
            active.append(ok)
        if not any(active):
            raise ConfigError("graph_eraser: no shard holds a training row; use fewer shards")
        model = GraphEraserModel(shards, task.task_kind, p.aggregation, task.graph.num_nodes).to(task.device)
        with torch.no_grad():
            model.active.copy_(torch.tensor(active))
            model.seen.copy_(torch.from_numpy(np.stack([_seen(task, shard_of, s) for s in range(p.num_shards)])))
        cost += self._fit_weights(task, model, task.train, seed)
        cost.wall_time_s = time.perf_counter() - t0
        while len(self._prepared) >= self._cache_size:
            self._prepared.pop(next(iter(self._prepared)))
        self._prepared[key] = state = EraserState(shard_of, model.eval(), cost)
        return state

    def affected_shards(self, task, shard_of: np.ndarray) -> list[int]:
        """The shards whose training graph holds a deleted row (all of its nodes)."""
        f = task.split.forget
        v = np.where(f.v >= 0, f.v, f.u)
        return [
            s
            for s in range(self.params.num_shards)
            if bool((_seen(task, shard_of, s)[f.u] & _seen(task, shard_of, s)[v]).any())
        ]

    def unlearn(self, task, seed: int = 0, progress: bool = False) -> UnlearnResult:
        self._prepare(task)
        p = self.params
        state = self.prepare(task, seed, progress)
        t0 = time.perf_counter()
        model = copy.deepcopy(state.model)
        hit = self.affected_shards(task, state.shard_of)
        cost = LoopStats()
        for s in hit:
            m, c, ok = self._train_shard(task, task.retain, state.shard_of, s, seed, progress)
            model.shards[s] = m
            model.active[s] = ok
            cost += c
        if not bool(model.active.any()):
            raise ConfigError("graph_eraser: the deletion leaves no shard with a training row")
        cost += self._fit_weights(task, model, task.retain, seed)
        cost.wall_time_s = time.perf_counter() - t0
        model.eval()
        sizes = np.bincount(state.shard_of[state.shard_of >= 0], minlength=p.num_shards)
        extra = {
            "preparation_cost": state.preparation_cost.to_dict(),
            "affected_shards": hit,
            "shard_sizes": sizes.tolist(),
            "capacity": shard_capacity(int(sizes.sum()), p.num_shards, p.shard_size_delta),
            "weights": [float(w) for w in model.weights],
        }
        return UnlearnResult(model, cost, self.name, dataclasses.asdict(p), seed, extra)
