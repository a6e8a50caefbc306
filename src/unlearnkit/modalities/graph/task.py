"""Graph tasks: one graph, node classification or link prediction, a GNN trained on it, and
what to delete (edges, nodes with their edges, node features, a class of nodes, a class of
edges, edges inside or outside the 2-hop enclosing subgraph of the test set, ids, subjects).

Splits (seeded by the task's seed):

* node classification (``task="node"``): a ``test_fraction`` of the nodes are test nodes
  (in the graph, labels never trained on; transductive, as Planetoid and GNNDelete
  split); the training set holds a row per training node, per edge and per training
  node's features;
* link prediction (``task="link"``): a ``test_fraction`` of the edges are held out as test
  edges (out of the graph, each with a fixed negative pair); the training set holds a row
  per remaining edge, per node and per node's features.

The holdout (never-trained examples of the forget set's kind) is the test set.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from ...data.graphs import Graph, load_graph, within_hops
from ...data.scenarios import Split
from ...engines.loop import LoopStats, TrainConfig, run_loop
from ...errors import ConfigError, ForgetSetError, UnknownIdsError
from ...task import ModelCache, Task
from ...utils import derive_seed, resolve_device, seed_everything
from .adapter import EDGE, FEAT, NODE, GraphAdapter, GraphExampleSet, GraphView
from .models import ARCHS, build_graph_model

TASK_KINDS = {"graph": "node", "graph-link": "link"}


def default_recipe(task_kind: str = "node") -> TrainConfig:
    """Full-batch Adam, 200 epochs (one step each on graphs up to 4,096 training rows)."""
    return TrainConfig(epochs=200, batch_size=4096, lr=1e-2, optimizer="adam", weight_decay=5e-4)


# --------------------------------------------------------------------------- scenarios
AMOUNT_KINDS = ("edges", "nodes", "features", "edges-in", "edges-out")
#: GNNDelete's two ways to sample the deleted edges (Cheng et al., ICLR 2023; official
#: ``prepare_dataset.py``): inside / outside the 2-hop enclosing subgraph of the test set
REGION_HOPS = 2


@dataclass
class GraphForget:
    """What to delete from a graph task.

    ``kind``:

    * ``edges`` / ``nodes`` / ``features`` (``amount``: a float is a fraction of the training
      rows of that kind, in (0, 1]; an int a count; drawn with the seed);
    * ``edges-in`` / ``edges-out`` (GNNDelete's settings): edges drawn among the training
      edges inside (both end nodes within 2 hops of a test element) or outside (the rest) the
      2-hop enclosing subgraph of the test set, over the training graph; ``amount`` as for
      ``edges`` (a fraction of *all* training edges, as GNNDelete's ``df_size``);
    * ``class`` (every training node of class ``label``);
    * ``edge-class`` (every training edge both of whose end nodes have class ``label``, or,
      with ``label_b``, that joins a node of class ``label`` and one of class ``label_b``);
    * ``ids`` (example ids: ``node:<id>``, ``edge:<u>-<v>``, ``node:<id>/x``) or ``subjects``
      (user ids: their nodes, features and every edge touching them).

    Deleting a node deletes its edges and feature row with it (the forget set lists them all)."""

    kind: str = "edges"
    amount: float | None = None
    label: int | None = None
    ids: list[str] | None = None
    subjects: list[str] | None = None
    label_b: int | None = None
    KINDS: ClassVar[tuple[str, ...]] = (
        "edges",
        "nodes",
        "features",
        "edges-in",
        "edges-out",
        "class",
        "edge-class",
        "ids",
        "subjects",
    )
    FIELDS: ClassVar[tuple[str, ...]] = ("kind", "amount", "label", "label_b", "ids", "subjects")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ConfigError(f"unknown graph scenario {self.kind!r}; choose one of {', '.join(self.KINDS)}")
        if self.kind in AMOUNT_KINDS:
            a = 0.05 if self.amount is None else self.amount
            if isinstance(a, bool) or not isinstance(a, (int, float)) or not (a > 0 and np.isfinite(a)):
                raise ConfigError(f"{self.kind}:<amount> needs a fraction in (0, 1] or a whole count, not {a!r}")
            if isinstance(a, float) and a > 1:
                if a != int(a):
                    raise ConfigError(f"{self.kind}:<amount> needs a fraction in (0, 1] or a whole count, not {a}")
                a = int(a)
            self.amount = a
        if self.kind in ("class", "edge-class") and self.label is None:
            raise ConfigError(f"{self.kind}:<label> needs a class label")
        if self.kind == "edge-class":  # one canonical form: integers, a <= b, and a-a is a
            for v in (self.label, self.label_b):
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer))):
                    raise ConfigError(f"edge-class:<a>-<b> needs integer class labels, not {v!r}")
            a, b = int(self.label), None if self.label_b is None else int(self.label_b)
            if b is not None and b < a:
                a, b = b, a
            self.label, self.label_b = a, (None if b == a else b)
        elif self.label_b is not None:
            raise ConfigError(f"label_b belongs to edge-class scenarios, not {self.kind}")

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"kind": self.kind}
        for k in self.FIELDS[1:]:
            v = getattr(self, k)
            if v is not None:
                d[k] = list(v) if isinstance(v, list) else v
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GraphForget":
        d = dict(d)
        d.pop("count", None)
        return cls(**{k: d[k] for k in cls.FIELDS if k in d})

    @classmethod
    def parse(cls, text: str) -> "GraphForget":
        """``edges:0.05`` (a fraction), ``edges:10`` (a count), ``nodes:3``, ``features:0.1``,
        ``edges-in:0.05``, ``edges-out:20``, ``class:2``, ``edge-class:1`` (edges within class
        1), ``edge-class:0-3`` (edges joining classes 0 and 3); ``edges:1.0`` is every edge,
        ``edges:1`` one."""
        kind, _, arg = text.partition(":")
        kind, arg = kind.strip(), arg.strip()
        if kind == "class":
            if not arg.lstrip("-").isdigit():
                raise ConfigError(f"class:<label> needs an integer label, not {arg!r}")
            return cls("class", label=int(arg))
        if kind == "edge-class":
            a, dash, b = arg.partition("-")
            if not a.strip().isdigit() or (dash and not b.strip().isdigit()):
                raise ConfigError(
                    f"edge-class:<a> or edge-class:<a>-<b> needs class labels (integers >= 0), not {arg!r}"
                )
            return cls("edge-class", label=int(a), label_b=int(b) if dash else None)
        if kind in AMOUNT_KINDS:
            try:
                amount = None if not arg else int(arg) if arg.isdigit() else float(arg)
            except ValueError:
                raise ConfigError(f"{kind}:<amount> needs a number, not {arg!r}") from None
            return cls(kind, amount=amount)
        raise ConfigError(
            f"unknown graph scenario {text!r}; use edges:<fraction|count>, edges-in:<...>, edges-out:<...>, "
            "nodes:<...>, features:<...>, class:<label> or edge-class:<a>[-<b>]"
        )

    # ---------------------------------------------------------------- resolution
    def resolve(self, train: GraphExampleSet, seed: int, test: GraphExampleSet | None = None) -> list[str]:
        """The forget ids (with what they take along), checked against the training graph
        (``test``: the task's test set, which ``edges-in`` / ``edges-out`` are drawn around)."""
        rng = np.random.default_rng(derive_seed(seed, "graph-forget", self.kind))
        g = train.graph
        if self.kind == "features" and not g.has_features:
            raise ForgetSetError(
                f"the graph {g.name!r} has no node features of its own (its features are synthetic): "
                "there are no features to delete"
            )
        if self.kind in AMOUNT_KINDS:
            want = {"nodes": NODE, "features": FEAT}.get(self.kind, EDGE)
            every = np.flatnonzero(train.kind == want)
            what = "edges" if want == EDGE else self.kind
            if not len(every):
                raise ForgetSetError(f"the training set has no {what} to delete")
            cand, where = every, ""
            if self.kind in ("edges-in", "edges-out"):
                inside = in_test_region(train, test)[every]
                cand = every[inside if self.kind == "edges-in" else ~inside]
                side = "inside" if self.kind == "edges-in" else "outside"
                where = f" {side} the {REGION_HOPS}-hop enclosing subgraph of the test {_test_things(train)}"
            # an int is a count, a float a fraction of the training rows of that kind (so
            # nodes:1 is one node, edges:1.0 every edge, edges-in:0.1 a tenth of all edges)
            n = int(self.amount) if isinstance(self.amount, int) else int(round(self.amount * len(every)))
            n = max(1, n)
            if n > len(cand) and not where:
                raise ForgetSetError(f"asked to delete {n} {what} but the training set has {len(cand)}")
            if n > len(cand):
                raise ForgetSetError(
                    f"asked to delete {n} edges{where} but only {len(cand)} of the {len(every)} training edges "
                    "lie there (with many test elements the region covers the graph: train with a smaller "
                    "--test-fraction, or use a sparser or larger graph)"
                )
            pos = np.sort(rng.choice(cand, size=n, replace=False))
            ids = train.example_ids[pos].tolist()
        elif self.kind == "class":
            if train.task_kind != "node":
                raise ConfigError("class:<label> deletes a class of nodes; it needs a node-classification task")
            pos = np.flatnonzero((train.kind == NODE) & (train.labels.numpy() == int(self.label)))
            if not len(pos):
                raise ForgetSetError(f"no training node has class {self.label}")
            ids = train.example_ids[pos].tolist()
        elif self.kind == "edge-class":
            ids = train.example_ids[_edges_of_classes(train, int(self.label), self.label_b)].tolist()
        elif self.kind == "subjects":
            ids = train.ids_of_subjects(self.subjects or []).tolist()
        else:
            ids = [str(i) for i in self.ids or []]
            _check_ids(train, ids)
        if not ids:
            raise ForgetSetError("the forget set is empty: select at least one node, edge or feature row")
        return train.closure(ids)


def _test_things(train: GraphExampleSet) -> str:
    return "edges" if train.task_kind == "link" else "nodes"


def in_test_region(train: GraphExampleSet, test: GraphExampleSet | None, hops: int = REGION_HOPS) -> np.ndarray:
    """Per row of ``train``, whether it is an edge inside the ``hops``-hop enclosing subgraph
    of the test set: both end nodes within ``hops`` hops, over the training graph's edges, of
    an end node of a test edge (link prediction) or of a test node (node classification).

    GNNDelete (official ``prepare_dataset.py``) takes the edge mask of
    ``k_hop_subgraph(test end nodes, 2, train_pos_edge_index)``: an edge is in when both its
    end nodes are in the 2-hop node set; ``edges-in`` samples there, ``edges-out`` outside."""
    if test is None:
        raise ConfigError("edges-in / edges-out are drawn around the test set; resolve them with the task's test set")
    n = train.graph.num_nodes
    seeds = np.zeros(n, bool)
    if train.task_kind == "link":
        e = test.kind == EDGE
        seeds[test.u[e]] = True
        seeds[test.v[e]] = True
    else:
        seeds[test.u[test.kind == NODE]] = True
    near = within_hops(train.view.edge_index.numpy(), seeds, hops)
    is_edge = train.kind == EDGE
    out = np.zeros(len(train), bool)
    out[is_edge] = near[train.u[is_edge]] & near[train.v[is_edge]]
    return out


def scenario_from_dict(d: dict) -> GraphForget:
    """A scenario given as a mapping (a bench grid's ``{kind: edges, amount: 0.05}``, a stored
    record's) as a validated :class:`GraphForget`."""
    if not isinstance(d, dict) or not isinstance(d.get("kind"), str):
        raise ConfigError(f"a graph scenario mapping needs a kind (edges, nodes, ...), not {d!r}")
    return GraphForget.from_dict(d)


def _edges_of_classes(train: GraphExampleSet, a: int, b: int | None) -> np.ndarray:
    """Positions of the training edges joining a node of class ``a`` and one of class ``b``
    (``b`` None: both end nodes of class ``a``), by the graph's node labels."""
    g = train.graph
    name = f"edge-class:{a}" + (f"-{b}" if b is not None else "")
    if g.y is None:
        raise ConfigError(f"{name} selects edges by their end nodes' classes; the graph {g.name!r} has no node labels")
    y = g.y.numpy()
    classes = np.unique(y)
    for c in (a,) if b is None else (a, b):
        if c not in classes:
            raise ConfigError(
                f"{name}: the graph {g.name!r} has no class {c} (its classes: {', '.join(map(str, classes.tolist()))})"
            )
    b = a if b is None else b
    e = np.flatnonzero(train.kind == EDGE)
    yu, yv = y[train.u[e]], y[train.v[e]]
    pos = e[((yu == a) & (yv == b)) | ((yu == b) & (yv == a))]
    if not len(pos):
        joined = f"both end nodes of class {a}" if a == b else f"a node of class {a} and one of class {b}"
        raise ConfigError(f"{name}: no training edge of the graph {g.name!r} has {joined}")
    return pos


def _check_ids(train: GraphExampleSet, ids: Sequence[str]) -> None:
    """Unknown ids as one error saying what each is (not an edge of the graph, a test node...)."""
    missing = [i for i in ids if not train.has(i)]
    if not missing:
        return
    g = train.graph
    nodes = set(g.node_ids.tolist())
    ge = g.edges.numpy()
    held_out = (
        {f"edge:{g.node_ids[a]}-{g.node_ids[b]}" for a, b in ge[~train.edge_keep]}
        if train.task_kind == "link"
        else set()
    )
    why = []
    for i in missing[:5]:
        if i.startswith("edge:"):
            a, _, b = i[5:].partition("-")
            if a not in nodes or b not in nodes:
                why.append(f"{i} (no such node)")
            elif f"edge:{a}-{b}" in held_out:
                why.append(f"{i} (a held-out test edge: never trained on)")
            else:
                why.append(f"{i} (not an edge of the graph)")
        elif i.startswith("node:"):
            nid = i[5:].split("/")[0]
            if nid not in nodes:
                why.append(f"{i} (no such node)")
            elif i.endswith("/x") and not g.has_features:
                why.append(f"{i} (the graph has no node features)")
            else:
                why.append(f"{i} (a test node: its label was never trained on)")
        else:
            why.append(f"{i} (ids are node:<id>, edge:<u>-<v> or node:<id>/x)")
    more = " ..." if len(missing) > 5 else ""
    raise UnknownIdsError(f"{len(missing)} id(s) not in the training graph {g.name!r}: {', '.join(why)}{more}")


def _check_retain(retain: GraphExampleSet) -> None:
    if retain.view.num_edges == 0:
        raise ForgetSetError(
            "the deletion removes every edge of the training graph: nothing would carry messages; "
            "retrain on new data instead"
        )
    if len(retain.supervised()) == 0:
        raise ForgetSetError("the deletion removes every training example of the task; nothing would remain")


# --------------------------------------------------------------------------- task
@dataclass
class GraphTask(Task):
    """A graph task. Besides :class:`~unlearnkit.task.Task`'s fields:

    Attributes:
        graph: the whole graph.
        task_kind: ``"node"`` or ``"link"``.

    ``task.forget`` is the forget rows scored on the retain graph (what a model sees once
    the data are deleted); ``train_from_scratch(data)`` trains on ``data``'s supervised rows
    with message passing over ``data``'s graph only.
    """

    graph: Graph | None = None
    task_kind: str = "node"
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def scoring_view(self) -> GraphView:
        """The graph every split is scored on, and the forget rows are unlearned on: the
        retain graph (the deleted edges gone, every edge of a deleted node gone, deleted
        features zeroed), except that a deleted node keeps its own features: it has no
        edge left, so they reach no other node, and the model is asked about the node from
        its own features alone (zeroed, every deleted node would look the same)."""
        key = ("view", self.split.forget_fingerprint, id(self.split))
        hit = self.memo.get(key)
        if hit is None:
            r, f = self.split.retain, self.split.forget
            gone = f.u[f.kind == NODE]
            if len(gone):
                x_zero = r.x_zero.copy()
                x_zero[gone] = False
                hit = GraphView(r.graph, r.edge_keep, x_zero)
            else:
                hit = r.view
            self.memo[key] = hit
        return hit

    @property
    def forget(self) -> GraphExampleSet:
        """The forget rows on :attr:`scoring_view` (the graph once they are deleted)."""
        key = ("forget", self.split.forget_fingerprint, id(self.split))
        hit = self.memo.get(key)
        if hit is None:
            view = self.scoring_view
            hit = self.split.forget.with_structure_of(self.split.retain, name="forget")
            hit.x_zero, hit._view = view.x_zero, view
            self.memo[key] = hit
        return hit

    def train_from_scratch(
        self, data: GraphExampleSet, seed: int, progress: bool = False, desc: str = "retrain"
    ) -> tuple[nn.Module, LoopStats]:
        model = self.model_factory(seed).to(self.device)
        sup = data.supervised(name=f"{data.name}/supervised")
        return model, fit_graph_model(model, sup, self.adapter, self.recipe, seed, self.device, progress, desc)

    def with_forget(self, forget_ids: Sequence[str], scenario: dict | None = None) -> "GraphTask":
        ids = [str(i) for i in forget_ids]
        _check_ids(self.split.train, ids)
        return super().with_forget(self.split.train.closure(ids), scenario)


def fit_graph_model(
    model: nn.Module,
    sup: GraphExampleSet,
    adapter: GraphAdapter,
    recipe: TrainConfig,
    seed: int,
    device,
    progress: bool = False,
    desc: str = "train",
    negatives: torch.Tensor | None = None,
) -> LoopStats:
    """Train ``model`` in place on the supervised rows ``sup`` with ``recipe``: each step the
    adapter's loss on a batch; on link prediction every edge row gets a fresh negative node
    (seeded from ``seed``) drawn uniformly from ``negatives`` (node indices; default every
    node of the graph). How originals, references and GraphEraser's shards are trained."""
    n = sup.graph.num_nodes
    gen = torch.Generator().manual_seed(derive_seed(seed, "negatives") % (2**63))

    def objective(ctx):
        batch = ctx.batch("train")
        if adapter.task_kind == "link":  # fresh negatives every step (seeded)
            if negatives is None:
                batch["neg"] = torch.randint(0, n, (len(batch["index"]),), generator=gen).to(ctx.device)
            else:
                pick = torch.randint(0, len(negatives), (len(batch["index"]),), generator=gen)
                batch["neg"] = negatives[pick].to(ctx.device)
        return adapter.per_example_loss(ctx.model, batch).mean()

    return run_loop(
        model,
        objective,
        {"train": sup},
        recipe,
        seed=seed,
        device=device,
        progress=progress,
        desc=desc,
        adapter=adapter,
    )


def graph_fingerprint(g: Graph) -> str:
    h = hashlib.sha256()
    for t in (g.x, g.edges, g.y if g.y is not None else torch.zeros(0)):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update("|".join(g.node_ids.tolist()).encode())
    return h.hexdigest()[:16]


def _negatives(g: Graph, u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A node per row that is neither ``u`` nor one of its neighbours (uniform; the last
    draw is kept after 20 tries on a near-complete neighbourhood)."""
    n = g.num_nodes
    adj = set(map(tuple, g.edges.tolist()))
    out = np.empty(len(u), dtype=np.int64)
    for i, a in enumerate(u.tolist()):
        for _ in range(20):
            b = int(rng.integers(0, n))
            if b != a and (min(a, b), max(a, b)) not in adj:
                break
        out[i] = b
    return out


def _sets(g: Graph, task_kind: str, test_fraction: float, seed: int) -> tuple[GraphExampleSet, GraphExampleSet]:
    rng = np.random.default_rng(derive_seed(seed, "graph-split", g.name, task_kind))
    nid = g.node_ids
    N, E = g.num_nodes, g.num_edges
    ge = g.edges.numpy()
    eid = np.asarray([f"edge:{nid[a]}-{nid[b]}" for a, b in ge], dtype=object)
    subj = g.subject_ids
    rows: dict[str, list] = {k: [] for k in ("kind", "u", "v", "eref", "neg", "y", "ids", "subj")}

    def add(kind, u, v, eref, neg, y, ids, s):
        for k, val in zip(rows, (kind, u, v, eref, neg, y, ids, s)):
            rows[k].append(np.asarray(val))

    def make(r, name, edge_keep, k):
        kind = np.concatenate(r["kind"]).astype(np.int64)
        u, v = np.concatenate(r["u"]).astype(np.int64), np.concatenate(r["v"]).astype(np.int64)
        return GraphExampleSet(
            torch.from_numpy(np.stack([kind, u, v], 1).astype(np.float32)),
            torch.from_numpy(np.concatenate(r["y"]).astype(np.int64)),
            np.concatenate(r["ids"]),
            np.concatenate(r["subj"]),
            num_classes=k,
            name=name,
            graph=g,
            kind=kind,
            u=u,
            v=v,
            eref=np.concatenate(r["eref"]).astype(np.int64),
            neg=np.concatenate(r["neg"]).astype(np.int64),
            edge_keep=edge_keep,
            task_kind=task_kind,
        )

    if not 0 < test_fraction < 1:
        raise ConfigError("test_fraction must be in (0, 1)")
    if task_kind == "node":
        if g.y is None:
            raise ConfigError(
                f"the graph {g.name!r} has no node labels; use a link-prediction task (--task graph-link)"
            )
        if E == 0:
            raise ConfigError(f"the graph {g.name!r} has no edges")
        perm = rng.permutation(N)
        n_test = max(1, int(round(N * test_fraction)))
        test_nodes, train_nodes = np.sort(perm[:n_test]), np.sort(perm[n_test:])
        y = g.y.numpy()
        k = g.num_classes
        minus = lambda m: np.full(m, -1)  # noqa: E731
        add(
            np.full(len(train_nodes), NODE),
            train_nodes,
            minus(len(train_nodes)),
            minus(len(train_nodes)),
            minus(len(train_nodes)),
            y[train_nodes],
            [f"node:{nid[i]}" for i in train_nodes],
            subj[train_nodes],
        )
        add(np.full(E, EDGE), ge[:, 0], ge[:, 1], np.arange(E), minus(E), minus(E), eid, subj[ge[:, 0]])
        if g.has_features:
            add(
                np.full(len(train_nodes), FEAT),
                train_nodes,
                minus(len(train_nodes)),
                minus(len(train_nodes)),
                minus(len(train_nodes)),
                y[train_nodes],
                [f"node:{nid[i]}/x" for i in train_nodes],
                subj[train_nodes],
            )
        keep = np.ones(E, bool)
        train = make(rows, f"{g.name}/train", keep, k)
        t: dict[str, list] = {key: [] for key in rows}
        rows = t
        m = len(test_nodes)
        add(
            np.full(m, NODE),
            test_nodes,
            minus(m),
            minus(m),
            minus(m),
            y[test_nodes],
            [f"node:{nid[i]}" for i in test_nodes],
            subj[test_nodes],
        )
        test = make(rows, f"{g.name}/test", keep, k)
        return train, test
    # link prediction
    if E < 4:
        raise ConfigError(f"the graph {g.name!r} has {E} edges; link prediction needs at least 4")
    perm = rng.permutation(E)
    n_test = max(1, int(round(E * test_fraction)))
    test_e, train_e = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    keep = np.zeros(E, bool)
    keep[train_e] = True
    minus = lambda m: np.full(m, -1)  # noqa: E731
    nodes = np.arange(N)

    def add_edges(idx: np.ndarray) -> None:  # edge rows, each with its seeded negative
        src = ge[idx, 0]
        add(
            np.full(len(idx), EDGE),
            src,
            ge[idx, 1],
            idx,
            _negatives(g, src, rng),
            np.ones(len(idx)),
            eid[idx],
            subj[src],
        )

    add_edges(train_e)
    add(np.full(N, NODE), nodes, minus(N), minus(N), minus(N), minus(N), [f"node:{i}" for i in nid], subj)
    if g.has_features:
        add(np.full(N, FEAT), nodes, minus(N), minus(N), minus(N), minus(N), [f"node:{i}/x" for i in nid], subj)
    train = make(rows, f"{g.name}/train", keep, 2)
    rows = {key: [] for key in rows}
    add_edges(test_e)
    test = make(rows, f"{g.name}/test", keep, 2)
    return train, test


def make_graph_task(
    graph: str | Graph = "karate",
    task: str = "node",
    model: str = "gcn",
    scenario: GraphForget | str | dict | None = None,
    seed: int = 0,
    recipe: TrainConfig | None = None,
    model_kwargs: dict | None = None,
    test_fraction: float = 0.2,
    device: str | torch.device | None = None,
    cache: ModelCache | None = None,
    progress: bool = False,
) -> GraphTask:
    """Load a graph, split it, choose what to delete, and train (or load from ``cache``) the
    original GNN.

    Args:
        graph: a built-in name (``karate``, ``lesmis``, ``digits-knn``, ``sbm:500``, ...; see
            :func:`unlearnkit.data.graphs.load_graph`), a PyG dataset folder, or a Graph.
        task: ``node`` (node classification) or ``link`` (link prediction).
        model: ``gcn``, ``gat``, ``gin`` or ``sage``; ``model_kwargs``: ``hidden`` (32),
            ``layers`` (2), ``heads`` (GAT, 4), ``dropout`` (0).
        scenario: a :class:`GraphForget`, its dict, or a string (``edges:0.05``, ``nodes:3``,
            ``features:0.1``, ``edges-in:0.05``, ``edges-out:0.05``, ``class:2``,
            ``edge-class:1``, ``edge-class:0-3``); default ``edges:0.05``.
    """
    if task not in ("node", "link"):
        raise ConfigError(f"a graph task is node (classification) or link (prediction), not {task!r}")
    if model not in ARCHS:
        raise ConfigError(f"unknown graph model {model!r}; choose one of {', '.join(ARCHS)}")
    device = resolve_device(device)
    source = graph if isinstance(graph, str) else None
    g = load_graph(graph) if isinstance(graph, str) else graph
    if isinstance(scenario, str):
        scenario = GraphForget.parse(scenario)
    elif isinstance(scenario, dict):
        scenario = GraphForget.from_dict(scenario)
    scenario = scenario or GraphForget("edges", 0.05)
    train, test = _sets(g, task, test_fraction, seed)
    forget_ids = scenario.resolve(train, seed, test)
    sdict = dict(scenario.to_dict(), count=len(forget_ids))
    split = Split(train, test, forget_ids, test, sdict)
    _check_retain(split.retain)
    recipe = recipe or default_recipe(task)
    model_kwargs = dict(model_kwargs or {})
    k = g.num_classes if task == "node" else 2
    d_out = k if task == "node" else int(model_kwargs.get("hidden", 32))
    adapter = GraphAdapter(task, k, device)

    def factory(s: int) -> nn.Module:
        seed_everything(derive_seed(s, "init") % (2**31))
        return build_graph_model(model, int(g.x.shape[1]), d_out, **model_kwargs)

    spec = {
        "modality": "graph",
        "task": task,
        "dataset": g.name,
        "source": source,
        "graph_fingerprint": graph_fingerprint(g),
        "model": model,
        "model_kwargs": model_kwargs,
        "recipe": recipe.to_dict(),
        "seed": seed,
        "test_fraction": test_fraction,
        "scenario": split.scenario,
    }
    t = GraphTask(
        split, adapter, factory, recipe, factory(seed).to(device), LoopStats(), seed, spec, graph=g, task_kind=task
    )
    adapter.check_model(t.original, train)
    t.load_or_train_original(cache, progress)
    return t


# --------------------------------------------------------------------------- the layers above
def task_from_spec(
    spec: dict,
    scenario: GraphForget | dict | None = None,
    cache: ModelCache | None = None,
    progress: bool = False,
    device: str | torch.device | None = None,
) -> GraphTask:
    """Rebuild a stored graph task (the original from ``cache`` when it holds it)."""
    if spec.get("source") is None:
        raise ConfigError("this run's graph was built in memory; rebuild it in Python with make_graph_task")
    return make_graph_task(
        spec["source"],
        spec["task"],
        spec["model"],
        scenario or spec["scenario"],
        seed=spec["seed"],
        recipe=TrainConfig(**spec["recipe"]),
        model_kwargs=spec.get("model_kwargs"),
        test_fraction=spec["test_fraction"],
        device=device,
        cache=cache,
        progress=progress,
    )


def request_scenario(
    ids: list[str] | None = None, subjects: list[str] | None = None, scenario: str | None = None
) -> GraphForget:
    """A deletion request's scenario: example ids (``node:<id>``, ``edge:<u>-<v>``,
    ``node:<id>/x``), subject (user) ids, or a scenario string; exactly one."""
    given = [x for x in (ids, subjects, scenario) if x]
    if len(given) != 1:
        raise ConfigError("give exactly one of --forget-ids, --forget-subjects or --scenario")
    if ids:
        return GraphForget("ids", ids=[str(i) for i in ids])
    if subjects:
        return GraphForget("subjects", subjects=[str(s) for s in subjects])
    return GraphForget.parse(str(scenario))


def build_task(
    kind: str, options: dict, seed: int = 0, cache: ModelCache | None = None, progress: bool = False
) -> GraphTask:
    """``unlearnkit train --task graph`` (node classification) or ``--task graph-link`` (link
    prediction): ``dataset`` a graph name (``digits`` means ``digits-knn``) or PyG folder,
    ``model`` gcn/gat/gin/sage, recipe overrides ``epochs``, ``lr``, ``batch_size``, and
    ``test_fraction`` (default 0.2)."""
    from pathlib import Path

    if kind not in TASK_KINDS:
        raise ConfigError(f"graph task kinds are {', '.join(TASK_KINDS)}, not {kind!r}")
    o = {k: v for k, v in options.items() if v is not None}
    dataset = str(o.get("dataset", "karate"))
    if dataset == "digits":
        dataset = "digits-knn"
    p = Path(dataset)
    source = str(p.resolve()) if p.exists() else dataset
    model = str(o.get("model") or "gcn")
    task_kind = TASK_KINDS[kind]
    recipe = replace(default_recipe(task_kind), **{k: o[k] for k in ("epochs", "lr", "batch_size") if k in o})
    split = {"test_fraction": float(o["test_fraction"])} if "test_fraction" in o else {}
    return make_graph_task(source, task_kind, model, seed=seed, recipe=recipe, cache=cache, progress=progress, **split)


def train_metrics(task: GraphTask) -> dict[str, float]:
    """Node classification: accuracy on the training and test nodes; link prediction: AUC
    of the test edges against their negative pairs (DT AUC of the original)."""
    from .scores import score_set

    view = task.train.view  # the graph the original was trained on
    if task.task_kind == "node":
        out = {}
        for name, data in (("acc_train", task.train.supervised()), ("acc_test", task.test)):
            sc = score_set(task.original, data, task.adapter, view)
            out[name] = sc.accuracy()
        return out
    from .metrics import link_auc

    sc = score_set(task.original, task.test, task.adapter, view)
    auc, _ = link_auc(sc.pos_score, sc.neg_score)
    return {"auc_test": auc}


def task_label(spec: dict) -> str:
    parts = [str(spec[k]) for k in ("dataset", "model", "task") if spec.get(k) not in (None, "")]
    return " · ".join(parts) or "graph"


# --------------------------------------------------------------------------- the contract's tiny task
def tiny_graph_task(seed: int = 0, **kw) -> GraphTask:
    """Karate club, link prediction, 10% of its training edges to delete, a 2-layer GCN
    (hidden 16) trained 150 full-batch epochs: it fits its edges (forget loss well below the
    reference's). Needs torch-geometric."""
    args: dict[str, Any] = dict(
        graph="karate",
        task="link",
        model="gcn",
        scenario=GraphForget("edges", 0.1),
        seed=seed,
        recipe=TrainConfig(epochs=150, batch_size=4096, lr=1e-2, weight_decay=0.0),
        model_kwargs={"hidden": 16},
        device="cpu",
    )
    args.update(kw)
    return make_graph_task(**args)


# --------------------------------------------------------------------------- service hooks
# What the deletion-request service (unlearnkit.service.core) asks a graph model line for,
# found by name in this module like task_from_spec: a request's ids with what they take
# along, the check that a line keeps a graph to train on, and the canary rows scored as
# every split is.
def resolve_request_ids(train: GraphExampleSet, ids: Sequence[str]) -> list[str]:
    """A deletion request's example ids (``node:<id>``, ``edge:<u>-<v>``, ``node:<id>/x``) and
    what deleting them deletes with them (:meth:`GraphExampleSet.closure`: a node's edges and
    feature row). Ids not in the training graph raise :class:`UnknownIdsError`; its
    ``reasons`` count them by reason and name none (the service shows them to the requester
    and never echoes ids)."""
    ids = [str(i) for i in ids]
    missing = [i for i in ids if not train.has(i)]
    if missing:
        reasons: dict[str, int] = {}
        for why in _why_not_trained(train, missing):
            reasons[why] = reasons.get(why, 0) + 1
        counted = ", ".join(f"{why}: {n}" for why, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
        err = UnknownIdsError(f"{len(missing)} id(s) not in the training graph {train.graph.name!r}: {counted}")
        err.reasons = counted  # type: ignore[attr-defined]
        raise err
    return train.closure(ids)


def _why_not_trained(train: GraphExampleSet, ids: Sequence[str]) -> list[str]:
    """Per id (none of them a training row), why not: no such node, a held-out test edge, not
    an edge of the graph, a test node, no node features, or not a graph id at all."""
    g = train.graph
    nodes = set(g.node_ids.tolist())
    ge = g.edges.numpy()
    nid = g.node_ids
    held_out = {f"edge:{nid[a]}-{nid[b]}" for a, b in ge[~train.edge_keep]} if train.task_kind == "link" else set()
    out = []
    for i in ids:
        if i.startswith("edge:"):
            a, _, b = i[5:].partition("-")
            if a not in nodes or b not in nodes:
                out.append("no such node")
            elif i in held_out:
                out.append("held-out test edge (never trained on)")
            else:
                out.append("not an edge of the graph")
        elif i.startswith("node:"):
            n = i[5:].split("/")[0]
            if n not in nodes:
                out.append("no such node")
            elif i.endswith("/x") and not g.has_features:
                out.append("features of a graph without node features")
            else:
                out.append("test node (its label never trained on)")
        else:
            out.append("not a graph id (node:<id>, edge:<u>-<v> or node:<id>/x)")
    return out


def check_deletion(train: GraphExampleSet, ids: Sequence[str]) -> None:
    """Raise :class:`ForgetSetError` if deleting ``ids`` (a line's every deletion so far and
    a new request's) would leave no edge to carry messages or no training example."""
    _check_retain(train.without(ids))


def canary_examples(task: GraphTask, ids: Sequence[str]) -> GraphExampleSet:
    """The test rows ``ids`` (a line's canary: test edges of link prediction, test nodes of
    node classification) on :attr:`GraphTask.scoring_view`, the graph every split is scored
    on, so canary outputs see the graph without every deleted element."""
    view = task.scoring_view
    rows = task.split.test.select([str(i) for i in ids], name="canary")
    out = rows.with_structure_of(task.split.retain, name="canary")
    out.x_zero, out._view = view.x_zero, view
    return out


def _without_examples(self: GraphTask, ids: Sequence[str]) -> GraphTask:
    """Task.without_examples for graphs: the split (filtered by ``with_history``) already
    carries the graph without the earlier deletions and nodes keep their positions, so only
    the cached views and scores (``memo``, keyed by the split) start afresh."""
    return replace(self, memo={})


GraphTask.without_examples = _without_examples  # type: ignore[method-assign]


# --------------------------------------------------------------------------- id files
def _graph_of_spec(spec: dict) -> Graph:
    if spec.get("source") is None:
        raise ConfigError("this run's graph was built in memory; name its rows as ids (--forget-ids)")
    return load_graph(spec["source"])


def edge_request_ids(spec: dict, lines: Sequence[str]) -> list[str]:
    """The ``edge:<u>-<v>`` ids of the edges ``lines`` name (``unlearnkit unlearn --forget-edges``):
    one edge per line as ``u v``, ``u,v``, ``u-v`` or ``edge:u-v``, in either order, by the
    graph's node ids. A line that is not an edge, or names a node the graph does not have, is
    one ConfigError naming the first few; whether each is a training edge is checked later,
    as for ``--forget-ids``."""
    g = _graph_of_spec(spec)
    index = {str(n): i for i, n in enumerate(g.node_ids)}
    nid = g.node_ids
    out, bad = [], []
    for k, line in enumerate(lines, start=1):
        text = line.strip().removeprefix("edge:")
        parts = text.replace(",", " ").split() if (" " in text or "," in text) else text.split("-")
        if len(parts) != 2 or any(p not in index for p in parts):
            bad.append(f"line {k}: {line.strip()!r}")
            continue
        a, b = sorted((index[parts[0]], index[parts[1]]))
        out.append(f"edge:{nid[a]}-{nid[b]}")
    if bad:
        shown = "; ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ConfigError(
            f"--forget-edges: {len(bad)} line(s) name no edge between nodes of {g.name!r} "
            f"(one edge per line, 'u v', 'u,v' or 'u-v'): {shown}"
        )
    return list(dict.fromkeys(out))


def node_request_ids(spec: dict, lines: Sequence[str]) -> list[str]:
    """The ``node:<id>`` ids of the nodes ``lines`` name (``--forget-nodes``: one node id per
    line, ``node:`` optional); a node the graph does not have is one ConfigError. Each node
    takes its edges and features along, as a ``node:`` id does."""
    g = _graph_of_spec(spec)
    known = {str(n) for n in g.node_ids}
    ids = [line.strip().removeprefix("node:") for line in lines]
    bad = [f"line {k}: {line.strip()!r}" for k, (line, i) in enumerate(zip(lines, ids), start=1) if i not in known]
    if bad:
        shown = "; ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ConfigError(f"--forget-nodes: {len(bad)} line(s) name no node of {g.name!r}: {shown}")
    return list(dict.fromkeys(f"node:{i}" for i in ids))
