"""The graph adapter and the graph example set.

Every deletable element of the training graph is one example (one row), so forget sets,
fingerprints, the store and deletion requests work on ids as everywhere else:

* ``node:<id>``: a node (its label, where the task classifies nodes);
* ``edge:<u>-<v>``: an undirected edge (``u < v`` by node position);
* ``node:<id>/x``: the node's feature vector (only on graphs with real features).

A :class:`GraphExampleSet` is rows of these kinds *and* the graph the model runs on
when it scores them (its *structure*: which edges carry messages, which nodes' features
are zeroed). ``without(ids)`` removes the rows and their elements from the structure
(edges leave message passing; a node's incident edges leave with it; a feature row
zeroes its node's features), so ``train.without(forget)`` is the retain graph the
reference retrains on. ``take``/``select`` keep the structure.

The adapter turns (model, batch) into per-example outputs. A GNN runs once on the
batch's graph (full batch: the graphs this modality targets fit in memory), then

* node classification: a node row's logits are its class logits, its loss the
  cross-entropy; a feature row the same for its node;
* link prediction: an edge row's logits are ``(s(u, v), s(u, n))`` with
  ``s(a, b) = <z_a, z_b>`` and ``n`` the row's fixed negative node (seeded), its loss
  ``softplus(-s(u, v)) + softplus(s(u, n))`` (binary cross-entropy of the edge as present
  and the negative pair as absent);
* every other row (edges in node classification, nodes in link prediction) has label
  -1: logits 0, loss 0, log-likelihood 0. Such an element reaches the model only through
  the graph, never through a loss of its own; removing it is a change of the graph,
  which the retain set (fine-tuning, retraining) carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...data.dataset import ExampleSet, subject_mask
from ...data.graphs import Graph
from ...errors import ModelDataMismatchError

NODE, EDGE, FEAT = 0, 1, 2
KIND_NAMES = {NODE: "node", EDGE: "edge", FEAT: "features"}


class GraphView:
    """The graph a model runs on: features (zeroed where deleted) and both directions of
    every edge that carries messages; device copies cached."""

    def __init__(self, graph: Graph, edge_keep: np.ndarray, x_zero: np.ndarray):
        self.graph = graph
        self.edge_keep = edge_keep
        self.x_zero = x_zero
        x = graph.x.clone()
        if x_zero.any():
            x[torch.from_numpy(x_zero)] = 0.0
        e = graph.edges[torch.from_numpy(edge_keep)]
        self.x = x
        self.edge_index = torch.cat([e.t(), e.t().flip(0)], dim=1).contiguous()
        self._on: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def on(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        key = str(device)
        if key not in self._on:
            self._on[key] = (self.x.to(device), self.edge_index.to(device))
        return self._on[key]

    @property
    def num_edges(self) -> int:
        return int(self.edge_keep.sum())


@dataclass
class GraphExampleSet(ExampleSet):
    """Rows of graph elements (nodes, edges, node features) and the graph they are scored on.

    Attributes (besides :class:`~unlearnkit.data.ExampleSet`'s; ``inputs`` holds
    ``(kind, u, v)`` per row as floats, for display only):
        graph: the whole graph (every node and edge the task knows).
        kind: per row NODE, EDGE or FEAT.
        u, v: per row the node (NODE/FEAT: ``v = -1``) or the edge's end nodes.
        eref: per row the edge's index in ``graph.edges`` (-1 for other rows).
        neg: per EDGE row its fixed negative node (link prediction), else -1.
        edge_keep: per graph edge, whether it carries messages in this set's graph.
        x_zero: per graph node, whether its features are zeroed.
        task_kind: ``"node"`` (node classification) or ``"link"`` (link prediction).
        labels: the class (node rows), 1 (edge rows of link prediction) or -1 (rows the
            task does not supervise); ``num_classes`` the task's classes (2 for links).
    """

    graph: Graph | None = None
    kind: np.ndarray | None = None
    u: np.ndarray | None = None
    v: np.ndarray | None = None
    eref: np.ndarray | None = None
    neg: np.ndarray | None = None
    edge_keep: np.ndarray | None = None
    x_zero: np.ndarray | None = None
    task_kind: str = "node"

    def __post_init__(self) -> None:
        labels = torch.as_tensor(self.labels).long().reshape(-1)
        self.labels = labels.clamp(min=0)
        k = self.num_classes
        super().__post_init__()
        self.labels, self.num_classes = labels, k if k is not None else int(labels.max().clamp(min=0)) + 1
        n = len(labels)
        self.kind = np.asarray(self.kind, dtype=np.int64)
        self.u = np.asarray(self.u, dtype=np.int64)
        self.v = np.asarray(self.v, dtype=np.int64)
        self.eref = np.asarray(self.eref, dtype=np.int64)
        self.neg = np.full(n, -1, dtype=np.int64) if self.neg is None else np.asarray(self.neg, dtype=np.int64)
        g = self.graph
        self.edge_keep = np.ones(g.num_edges, bool) if self.edge_keep is None else np.asarray(self.edge_keep, bool)
        self.x_zero = np.zeros(g.num_nodes, bool) if self.x_zero is None else np.asarray(self.x_zero, bool)
        self._view: GraphView | None = None

    # ------------------------------------------------------------------ structure
    @property
    def view(self) -> GraphView:
        if self._view is None:
            self._view = GraphView(self.graph, self.edge_keep, self.x_zero)
        return self._view

    def _copy(self, pos: np.ndarray, name: str | None, edge_keep=None, x_zero=None, labels=None) -> "GraphExampleSet":
        p = np.asarray(pos, dtype=np.int64)
        tp = torch.as_tensor(p)
        out = GraphExampleSet(
            self.inputs[tp],
            (self.labels if labels is None else labels)[tp],
            self.example_ids[p],
            None if self.subject_ids is None else self.subject_ids[p],
            None if self.groups is None else self.groups[p],
            num_classes=self.num_classes,
            name=name or self.name,
            meta=dict(self.meta),
            graph=self.graph,
            kind=self.kind[p],
            u=self.u[p],
            v=self.v[p],
            eref=self.eref[p],
            neg=self.neg[p],
            edge_keep=self.edge_keep if edge_keep is None else edge_keep,
            x_zero=self.x_zero if x_zero is None else x_zero,
            task_kind=self.task_kind,
        )
        if edge_keep is None and x_zero is None:
            out._view = self._view  # same graph: share the cached view
        return out

    def take(self, positions, name: str | None = None) -> "GraphExampleSet":
        return self._copy(np.asarray(positions, dtype=np.int64), name)

    def with_structure_of(self, other: "GraphExampleSet", name: str | None = None) -> "GraphExampleSet":
        """These rows, scored on ``other``'s graph (the forget set on the retain graph)."""
        out = self._copy(np.arange(len(self)), name, other.edge_keep, other.x_zero)
        out._view = other.view
        return out

    def closure(self, ids: Iterable[str]) -> list[str]:
        """``ids`` plus what deleting them deletes with them: a node's incident edge rows
        and its feature row (those present in this set), in row order."""
        pos = self.positions(ids)
        drop = np.zeros(len(self), bool)
        drop[pos] = True
        nodes = set(self.u[pos][self.kind[pos] == NODE].tolist())
        if nodes:
            nodes_arr = np.fromiter(nodes, dtype=np.int64)
            drop |= (self.kind == EDGE) & (np.isin(self.u, nodes_arr) | np.isin(self.v, nodes_arr))
            drop |= (self.kind == FEAT) & np.isin(self.u, nodes_arr)
        return self.example_ids[drop].tolist()

    def without(self, ids: Iterable[str], name: str | None = None) -> "GraphExampleSet":
        """The rows except ``ids`` and what they take with them (:meth:`closure`), on the
        graph without them: their edges leave message passing, every edge of a deleted node
        with them, and a deleted feature row zeroes its node's features (a deleted node keeps
        its features, but with no edge left it reaches no other node)."""
        ids = list(ids)
        drop_ids = self.closure(ids) if ids else []
        drop = np.zeros(len(self), bool)
        if drop_ids:
            drop[self.positions(drop_ids)] = True
        edge_keep = self.edge_keep.copy()
        x_zero = self.x_zero.copy()
        k, u = self.kind[drop], self.u[drop]
        e = self.eref[drop][k == EDGE]
        edge_keep[e] = False
        gone = u[k == NODE]
        if len(gone):
            ge = self.graph.edges.numpy()
            edge_keep &= ~(np.isin(ge[:, 0], gone) | np.isin(ge[:, 1], gone))
        x_zero[u[k == FEAT]] = True
        return self._copy(np.flatnonzero(~drop), name, edge_keep, x_zero)

    def with_labels(self, labels: torch.Tensor, name: str | None = None) -> "GraphExampleSet":
        return self._copy(np.arange(len(self)), name, labels=torch.as_tensor(labels).long())

    def supervised(self, name: str | None = None) -> "GraphExampleSet":
        """The rows the task trains on: node rows with a label (node classification), edge
        rows (link prediction)."""
        want = NODE if self.task_kind == "node" else EDGE
        return self.take(np.flatnonzero((self.kind == want) & (self.labels.numpy() >= 0)), name)

    def ids_of_subjects(self, subjects: Iterable[str]) -> np.ndarray:
        """Every row about these subjects: their nodes and feature rows and every edge with
        one of their nodes at either end (a subject may name a path prefix, as in
        :meth:`ExampleSet.ids_of_subjects`); unknown subjects raise."""
        hit_nodes = subject_mask(self.graph.subject_ids, subjects, self.name)
        v = np.where(self.v >= 0, self.v, self.u)
        rows = hit_nodes[self.u] | ((self.kind == EDGE) & hit_nodes[v])
        return self.example_ids[rows]

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[dict]:
        """Batch dicts ``{"index", "kind", "u", "v", "neg", "y", "graph"}`` (``graph``: the
        :class:`GraphView` the model runs on)."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        view = self.view
        kind, u, v, neg = (torch.from_numpy(a) for a in (self.kind, self.u, self.v, self.neg))
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield {
                "index": idx,
                "kind": kind[idx],
                "u": u[idx],
                "v": v[idx],
                "neg": neg[idx],
                "y": self.labels[idx],
                "graph": view,
            }

    def describe_kinds(self) -> dict[str, int]:
        return {KIND_NAMES[k]: int((self.kind == k).sum()) for k in (NODE, EDGE, FEAT)}


@dataclass
class GraphAdapter:
    """What methods and metrics call on a graph model (see the module docstring).

    Args:
        task_kind: ``"node"`` or ``"link"``.
        num_classes: classes of node classification (2 for link prediction: the logits are
            the scores of the edge and of its negative pair).
        device: where the graph and the batch go.
    """

    task_kind: str
    num_classes: int
    device: torch.device | str = "cpu"
    modality: str = "graph"

    def to_device(self, batch: dict) -> dict:
        return {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}

    def batch_size(self, batch: dict) -> int:
        return int(len(batch["index"]))

    def node_outputs(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """The model's output of every node of the batch's graph, (N, D)."""
        x, ei = batch["graph"].on(self.device)
        return model(x, ei)

    def _rows(self, z: torch.Tensor, batch: dict) -> torch.Tensor:
        dev = z.device
        kind, u = batch["kind"].to(dev), batch["u"].to(dev)
        if self.task_kind == "node":
            keep = (kind != EDGE).unsqueeze(1)
            return torch.where(keep, z[u], torch.zeros((), device=dev, dtype=z.dtype))
        v, neg = batch["v"].to(dev), batch["neg"].to(dev)
        is_edge = kind == EDGE
        zu = z[u]
        s_pos = (zu * z[v.clamp(min=0)]).sum(-1)
        s_neg = (zu * z[neg.clamp(min=0)]).sum(-1)
        logits = torch.stack([s_pos, s_neg], dim=1)
        return torch.where(is_edge.unsqueeze(1), logits, torch.zeros((), device=dev, dtype=z.dtype))

    def readout(self, z: torch.Tensor, batch: dict) -> torch.Tensor:
        """:meth:`logits` from node outputs ``z`` (N, D) already computed on the batch's graph
        (a method that reads several layers of one forward pass)."""
        return self._rows(z, batch)

    def row_embedding(self, h: torch.Tensor, batch: dict) -> torch.Tensor:
        """Per row, a representation read from node representations ``h`` (N, D): a node's
        (and a feature row's) own ``h_u``, an edge's ``h_u * h_v`` (as :meth:`representations`)."""
        dev = h.device
        u, v = batch["u"].to(dev), batch["v"].to(dev)
        is_edge = (batch["kind"].to(dev) == EDGE).unsqueeze(1)
        return torch.where(is_edge, h[u] * h[v.clamp(min=0)], h[u])

    def logits(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """Per row, shape (B, num_classes): a node's class logits (node classification); an
        edge's ``(s(u, v), s(u, neg))`` (link prediction); 0 for rows the task does not
        supervise."""
        return self._rows(self.node_outputs(model, batch), batch)

    def log_likelihood(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``log p(y | x)`` per row: ``-CE`` of the node's class; for an edge
        ``log sigmoid(s(u, v)) + log sigmoid(-s(u, neg))``; 0 where the label is -1."""
        labels = labels.to(logits.device)
        sup = labels >= 0
        if self.task_kind == "node":
            ll = -F.cross_entropy(logits.float(), labels.clamp(min=0), reduction="none")
        else:
            ll = F.logsigmoid(logits[:, 0].float()) + F.logsigmoid(-logits[:, 1].float())
        return torch.where(sup, ll, torch.zeros((), device=ll.device, dtype=ll.dtype))

    def per_example_loss(
        self, model: nn.Module, batch: dict, labels: torch.Tensor | None = None, logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Training loss per row, shape (B,): ``-log_likelihood`` (cross-entropy of a node;
        ``softplus(-s(u, v)) + softplus(s(u, neg))`` of an edge; 0 for unsupervised rows)."""
        if logits is None:
            logits = self.logits(model, batch)
        return -self.log_likelihood(logits, batch["y"] if labels is None else labels)

    def per_example_kl(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """``KL(teacher || student)`` per row: over the classes of a node; for an edge the sum
        of the Bernoulli KLs of the edge and of its negative pair; 0 for unsupervised rows."""
        sup = batch["y"].to(student_logits.device) >= 0
        if self.task_kind == "node":
            kl = F.kl_div(
                F.log_softmax(student_logits.float(), -1),
                F.log_softmax(teacher_logits.float(), -1),
                log_target=True,
                reduction="none",
            ).sum(-1)
        else:
            s, t = student_logits.float(), teacher_logits.float()
            pt = torch.sigmoid(t)
            kl = (pt * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - pt) * (F.logsigmoid(-t) - F.logsigmoid(-s))).sum(-1)
        return torch.where(sup, kl, torch.zeros((), device=kl.device, dtype=kl.dtype))

    def representations(self, model: nn.Module, batch: dict, layer: str | int | None = None) -> torch.Tensor:
        """Per row, the hidden node representation (input of the model's last layer, or of
        layer ``layer``): a node's own, an edge's the product of its end nodes'."""
        x, ei = batch["graph"].on(self.device)
        if not hasattr(model, "hidden"):
            raise ModelDataMismatchError("the graph model has no hidden(x, edge_index, layer) to read")
        return self.row_embedding(model.hidden(x, ei, layer), batch)

    def check_model(self, model: nn.Module, data: GraphExampleSet) -> None:
        """Raise ModelDataMismatchError if the model cannot run on ``data``'s graph or its
        output does not fit the task."""
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                x, ei = data.view.on(self.device)
                out = model(x, ei)
        except (RuntimeError, TypeError) as e:
            raise ModelDataMismatchError(
                f"the model cannot run on the graph ({tuple(data.graph.x.shape)} features): {str(e).splitlines()[0]}"
            ) from None
        finally:
            model.train(was)
        if out.ndim != 2 or out.shape[0] != data.graph.num_nodes:
            raise ModelDataMismatchError(f"a graph model must output one row per node, got shape {tuple(out.shape)}")
        if self.task_kind == "node" and out.shape[1] != self.num_classes:
            raise ModelDataMismatchError(
                f"the model outputs {out.shape[1]} values per node but the task has {self.num_classes} classes"
            )
