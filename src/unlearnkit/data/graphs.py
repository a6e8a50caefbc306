"""Graphs: one graph held as plain tensors, and the offline sources of graphs.

A :class:`Graph` is one undirected graph: node features ``x`` (N, F), edges as unique
pairs ``u < v`` (``edges``, shape (E, 2)), node labels ``y`` (N,) where there are any,
stable node ids (strings) and subject ids (the user id of each node: whom a node is
about). ``Graph.to_pyg()`` gives the PyTorch Geometric ``Data`` (both directions of every
edge); nothing here imports PyG unless asked.

Sources, all offline:

* ``karate``: Zachary's karate club as PyTorch Geometric ships it (``KarateClub``: 34
  nodes, 78 edges, 4 community labels, identity features);
* networkx's bundled real graphs: ``karate-nx`` (the two factions as labels), ``lesmis``
  (Les Misérables co-occurrence), ``florentine`` (Florentine families), ``davis``
  (Davis southern women, bipartite: label 0 = woman, 1 = event); features are synthetic
  (none of these graphs has node features of its own);
* ``digits-knn``: the k-nearest-neighbour graph over scikit-learn's digits (1,797 nodes,
  features = the 64 pixels, labels = the digit), ``k=10`` by default;
* ``sbm``: a stochastic block model generated from a seed (:func:`sbm_graph`), with
  features drawn around a mean per block;
* a folder a PyG dataset was saved to (Planetoid, OGB node/link datasets): loaded, never
  downloaded (:func:`load_pyg_folder`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataError


@dataclass
class Graph:
    """One undirected graph.

    Attributes:
        x: node features, (N, F) float.
        edges: unique undirected edges, (E, 2) int64 with ``u < v`` in each row, sorted.
        y: node labels (N,) int64, or None.
        node_ids: (N,) strings; example ids are ``node:<id>`` and ``edge:<u>-<v>`` of these.
        subject_ids: (N,) strings: the person each node is about (default the node id).
        has_features: False when ``x`` is synthetic (identity, degree): node-feature
            deletion then has nothing to delete.
        name: short name for reports and cache keys.
        meta: provenance (source, generator arguments).
    """

    x: torch.Tensor
    edges: torch.Tensor
    y: torch.Tensor | None = None
    node_ids: np.ndarray | None = None
    subject_ids: np.ndarray | None = None
    has_features: bool = True
    name: str = "graph"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.x = torch.as_tensor(self.x, dtype=torch.float32)
        n = self.x.shape[0]
        e = torch.as_tensor(self.edges, dtype=torch.long).reshape(-1, 2)
        if len(e) and (int(e.min()) < 0 or int(e.max()) >= n):
            raise DataError(f"graph {self.name!r}: an edge names a node outside 0..{n - 1}")
        e = e[e[:, 0] != e[:, 1]]  # no self loops
        e = torch.sort(e, dim=1).values
        e = torch.unique(e, dim=0)  # sorted, unique
        self.edges = e
        if self.y is not None:
            self.y = torch.as_tensor(self.y, dtype=torch.long).reshape(-1)
            if len(self.y) != n:
                raise DataError(f"graph {self.name!r}: {len(self.y)} labels for {n} nodes")
        ids = np.arange(n).astype(str) if self.node_ids is None else np.asarray([str(i) for i in self.node_ids])
        if len(ids) != n or len(set(ids.tolist())) != n:
            raise DataError(f"graph {self.name!r}: node ids must be {n} unique strings")
        bad = [i for i in ids.tolist() if "-" in i or ":" in i or "/" in i]
        if bad:
            raise DataError(f"graph {self.name!r}: node ids may not contain '-', ':' or '/': {bad[:3]}")
        self.node_ids = ids.astype(object)
        subj = ids if self.subject_ids is None else np.asarray([str(s) for s in self.subject_ids])
        if len(subj) != n:
            raise DataError(f"graph {self.name!r}: subject ids must have one entry per node")
        self.subject_ids = subj.astype(object)

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edges.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.y.max()) + 1 if self.y is not None and len(self.y) else 0

    def edge_id(self, e: int) -> str:
        u, v = self.edges[e].tolist()
        return f"edge:{self.node_ids[u]}-{self.node_ids[v]}"

    def to_pyg(self):
        """The PyTorch Geometric ``Data`` (x, edge_index with both directions, y)."""
        from torch_geometric.data import Data

        ei = torch.cat([self.edges.t(), self.edges.t().flip(0)], dim=1)
        return Data(x=self.x, edge_index=ei, y=self.y, num_nodes=self.num_nodes)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "nodes": self.num_nodes,
            "edges": self.num_edges,
            "features": int(self.x.shape[1]),
            "classes": self.num_classes,
            "has_features": self.has_features,
        }


# ------------------------------------------------------------------------ constructors
def from_networkx(g, label_attr: str | None = None, name: str = "graph", labels=None) -> Graph:
    """A networkx graph as a :class:`Graph`: nodes in sorted order get ids ``0..N-1``,
    their original names become subject ids; features are one-hot node identity
    (``has_features=False``: synthetic). Labels from node attribute ``label_attr`` (each
    distinct value a class, in sorted order) or ``labels`` (a list per sorted node)."""
    nodes = sorted(g.nodes(), key=str)
    pos = {n: i for i, n in enumerate(nodes)}
    edges = [(pos[u], pos[v]) for u, v in g.edges()]
    y = None
    if label_attr is not None:
        vals = [g.nodes[n].get(label_attr) for n in nodes]
        classes = sorted({str(v) for v in vals})
        y = [classes.index(str(v)) for v in vals]
    elif labels is not None:
        y = list(labels)
    subjects = [str(n).replace("/", "_") for n in nodes]
    return Graph(
        torch.eye(len(nodes)),
        torch.tensor(edges, dtype=torch.long).reshape(-1, 2),
        None if y is None else torch.tensor(y),
        subject_ids=subjects,
        has_features=False,
        name=name,
        meta={"source": "networkx"},
    )


def karate() -> Graph:
    """Zachary's karate club as PyTorch Geometric bundles it (``KarateClub``): 34 members,
    78 friendships, 4 communities, identity features."""
    try:
        from torch_geometric.datasets import KarateClub
    except ImportError:
        raise ConfigError("the karate graph needs torch-geometric (pip install unlearnkit[graph])") from None
    d = KarateClub()[0]
    ei = d.edge_index.t()
    return Graph(
        d.x,
        ei,
        d.y,
        subject_ids=[f"member-{i}" for i in range(34)],
        has_features=False,
        name="karate",
        meta={"source": "torch_geometric.datasets.KarateClub"},
    )


def networkx_graph(name: str) -> Graph:
    """One of the small real graphs networkx ships (``karate-nx``, ``lesmis``,
    ``florentine``, ``davis``)."""
    import networkx as nx

    if name == "karate-nx":
        return from_networkx(nx.karate_club_graph(), label_attr="club", name=name)
    if name == "lesmis":
        g = nx.les_miserables_graph()
        # labels: the node's community by greedy modularity (the graph has none of its own)
        comms = nx.algorithms.community.greedy_modularity_communities(g)
        of = {n: i for i, c in enumerate(comms) for n in c}
        nodes = sorted(g.nodes(), key=str)
        return from_networkx(g, labels=[of[n] for n in nodes], name=name)
    if name == "florentine":
        g = nx.florentine_families_graph()
        comms = nx.algorithms.community.greedy_modularity_communities(g)
        of = {n: i for i, c in enumerate(comms) for n in c}
        nodes = sorted(g.nodes(), key=str)
        return from_networkx(g, labels=[of[n] for n in nodes], name=name)
    if name == "davis":
        return from_networkx(nx.davis_southern_women_graph(), label_attr="bipartite", name=name)
    raise ConfigError(f"unknown networkx graph {name!r}; choose karate-nx, lesmis, florentine or davis")


def digits_knn(k: int = 10) -> Graph:
    """The k-nearest-neighbour graph over scikit-learn's digits: 1,797 nodes, features the
    64 pixels scaled to [0, 1], labels the digit; an edge joins each image to its ``k``
    nearest others (Euclidean), made undirected."""
    from sklearn.datasets import load_digits
    from sklearn.neighbors import NearestNeighbors

    if k < 1:
        raise ConfigError("k must be >= 1")
    d = load_digits()
    x = d.data.astype(np.float32) / 16.0
    nn_ = NearestNeighbors(n_neighbors=k + 1).fit(x)
    _, idx = nn_.kneighbors(x)
    src = np.repeat(np.arange(len(x)), k)
    dst = idx[:, 1:].reshape(-1)
    return Graph(
        torch.from_numpy(x),
        torch.from_numpy(np.stack([src, dst], 1)),
        torch.from_numpy(d.target),
        subject_ids=[f"image-{i}" for i in range(len(x))],
        name=f"digits-knn{k}",
        meta={"source": "sklearn digits", "k": k},
    )


def sbm_graph(
    n: int = 200,
    blocks: int = 4,
    p_in: float | None = None,
    p_out: float | None = None,
    features: int = 16,
    seed: int = 0,
    noise: float = 1.0,
    degree: float = 10.0,
) -> Graph:
    """A stochastic block model: ``n`` nodes in ``blocks`` equal blocks (the labels), an edge
    inside a block with probability ``p_in``, across with ``p_out`` (defaults keep the mean
    degree near ``degree`` whatever ``n``, 80% of it inside the block and 20% across: 8 and 2
    at the default 10), features = a random mean per block plus Gaussian noise of std
    ``noise``. Seeded; O(E) memory (edges are sampled per block pair, not from a dense
    matrix)."""
    if n < blocks or blocks < 1:
        raise ConfigError("sbm needs n >= blocks >= 1")
    if not (math.isfinite(degree) and degree > 0):
        raise ConfigError(f"sbm: the mean degree must be a positive number, not {degree!r}")
    rng = np.random.default_rng(seed)
    size = n // blocks
    y = np.minimum(np.arange(n) // size, blocks - 1)
    per = np.bincount(y, minlength=blocks)
    p_in = min(1.0, 0.8 * degree / max(1, size - 1)) if p_in is None else p_in
    p_out = min(1.0, 0.2 * degree / max(1, n - size)) if p_out is None else p_out
    starts = np.concatenate([[0], np.cumsum(per)[:-1]])
    edges = []
    for a in range(blocks):
        for b in range(a, blocks):
            p = p_in if a == b else p_out
            pairs = per[a] * per[b] if a != b else per[a] * (per[a] - 1) // 2
            m = rng.binomial(pairs, p)
            if m == 0:
                continue
            u = rng.integers(0, per[a], size=m) + starts[a]
            v = rng.integers(0, per[b], size=m) + starts[b]
            edges.append(np.stack([u, v], 1))
    e = np.concatenate(edges) if edges else np.zeros((0, 2), dtype=np.int64)
    means = rng.normal(0, 1, size=(blocks, features))
    x = means[y] + rng.normal(0, noise, size=(n, features))
    return Graph(
        torch.from_numpy(x.astype(np.float32)),
        torch.from_numpy(e),
        torch.from_numpy(y),
        subject_ids=[f"user-{i}" for i in range(n)],
        name=f"sbm{n}" if degree == 10.0 else f"sbm{n}-d{degree:g}",
        meta={"source": "sbm", "n": n, "blocks": blocks, "p_in": p_in, "p_out": p_out, "seed": seed, "degree": degree},
    )


def load_pyg_folder(path: str | Path, name: str | None = None) -> Graph:
    """A PyG dataset already on disk (never downloaded): a Planetoid folder (``<root>/<Name>/
    processed/data.pt`` or ``raw/``, e.g. Cora, CiteSeer, PubMed) or an OGB node/link
    property folder (``ogbn-*`` / ``ogbl-*``, with ``processed/``), or a ``.pt`` file holding
    a ``Data``. A missing folder or file is a DataError saying what to put there."""
    p = Path(path)
    if not p.exists():
        raise DataError(
            f"no PyG dataset at {p}: unlearnkit never downloads; save it there first "
            "(e.g. torch_geometric.datasets.Planetoid(root, 'Cora') on a machine with internet)"
        )
    try:
        import torch_geometric  # noqa: F401
    except ImportError:
        raise ConfigError("PyG datasets need torch-geometric (pip install unlearnkit[graph])") from None
    data = None
    if p.is_file():
        obj = torch.load(p, weights_only=False)
        data = obj[0] if isinstance(obj, (tuple, list)) else obj
    else:
        base = p.name
        root = p.parent
        planetoid = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}
        if base.lower() in planetoid:
            from torch_geometric.datasets import Planetoid

            raw = p / "raw"
            if not (raw.exists() or (p / "processed").exists()):
                raise DataError(f"{p} has no raw/ or processed/ folder of a Planetoid dataset")
            ds = _no_download(lambda: Planetoid(str(root), planetoid[base.lower()]), p)
            data = ds[0]
        elif base.startswith("ogbn-") or base.startswith("ogbl-"):
            data = _load_ogb(p)
        else:
            raise DataError(f"{p}: not a Planetoid folder (Cora, CiteSeer, PubMed) nor an OGB folder (ogbn-*, ogbl-*)")
    x = data.x if getattr(data, "x", None) is not None else torch.eye(int(data.num_nodes))
    y = getattr(data, "y", None)
    if y is not None:
        y = y.reshape(-1) if y.dim() > 1 and y.shape[1] == 1 else y
        if y.dim() != 1 or len(y) != x.shape[0]:
            y = None
    return Graph(
        x,
        data.edge_index.t(),
        y,
        has_features=getattr(data, "x", None) is not None,
        name=name or p.stem.lower(),
        meta={"source": str(p.resolve())},
    )


def _no_download(build, where: Path):
    """Build a PyG dataset, turning any attempt to download into a DataError."""
    import torch_geometric.data.dataset as dsmod

    def refuse(*_a, **_k):
        raise DataError(f"{where}: the dataset's files are incomplete and unlearnkit does not download them")

    old = getattr(dsmod, "download_url", None)
    try:
        if old is not None:
            dsmod.download_url = refuse
        import torch_geometric.datasets.planetoid as pl

        old_pl = pl.download_url
        pl.download_url = refuse
        try:
            return build()
        finally:
            pl.download_url = old_pl
    finally:
        if old is not None:
            dsmod.download_url = old


def _load_ogb(p: Path):
    processed = p / "processed"
    files = sorted(processed.glob("*.pt")) if processed.exists() else []
    if not files:
        raise DataError(
            f"{p} has no processed/*.pt file of an OGB dataset (load it once with ogb where it can download)"
        )
    obj = torch.load(files[0], weights_only=False)
    data = obj[0] if isinstance(obj, (tuple, list)) else obj
    if isinstance(data, dict):  # InMemoryDataset's (data dict, slices)
        from torch_geometric.data import Data

        data = Data.from_dict(data)
    return data


def k_hop_masks(edge_index: np.ndarray, seeds: np.ndarray, hops: int) -> np.ndarray:
    """``(hops, N)`` bool: row ``h`` marks the nodes within ``h + 1`` hops of ``seeds`` over
    ``edge_index`` (2, M), both directions listed."""
    src, dst = np.asarray(edge_index[0]), np.asarray(edge_index[1])
    cur = np.asarray(seeds, bool).copy()
    out = []
    for _ in range(hops):
        nxt = cur.copy()
        nxt[dst[cur[src]]] = True
        nxt[src[cur[dst]]] = True
        out.append(nxt)
        cur = nxt
    return np.stack(out) if out else np.zeros((0, len(cur)), bool)


def within_hops(edge_index: np.ndarray, seeds: np.ndarray, hops: int) -> np.ndarray:
    """Per node, whether it is within ``hops`` hops of a ``seeds`` node (bool, N): the node
    set of PyG's ``k_hop_subgraph`` on an undirected graph (the last row of
    :func:`k_hop_masks`)."""
    return k_hop_masks(edge_index, seeds, hops)[-1] if hops > 0 else np.asarray(seeds, bool).copy()


#: built-in graph names (``load_graph``)
BUILTIN_GRAPHS = ("karate", "karate-nx", "lesmis", "florentine", "davis", "digits-knn", "sbm")


def load_graph(name: str, **kwargs) -> Graph:
    """A built-in graph by name (see :data:`BUILTIN_GRAPHS`; ``digits-knn`` takes ``k``, ``sbm``
    takes ``n``, ``blocks``, ``degree``, ``seed``...; ``sbm:<n>``, ``sbm:<n>:<mean degree>`` and
    ``digits-knn:<k>`` are shorthand) or a path to a PyG dataset on disk."""
    base, _, arg = name.partition(":")
    if base == "karate":
        return karate()
    if base in ("karate-nx", "lesmis", "florentine", "davis"):
        return networkx_graph(base)
    if base == "digits-knn":
        return digits_knn(int(arg) if arg else int(kwargs.get("k", 10)))
    if base == "sbm":
        kw = dict(kwargs)
        if arg:
            count, _, degree = arg.partition(":")
            if not count.isdigit():
                raise ConfigError(f"sbm:<n> needs a node count, not {count!r}")
            kw["n"] = int(count)
            if degree:
                try:
                    kw["degree"] = float(degree)
                except ValueError:
                    raise ConfigError(f"sbm:<n>:<mean degree> needs a number, not {degree!r}") from None
        keys = ("n", "blocks", "p_in", "p_out", "features", "seed", "degree")
        return sbm_graph(**{k: v for k, v in kw.items() if k in keys})
    if Path(name).exists() or "/" in name:
        return load_pyg_folder(name)
    raise ConfigError(f"unknown graph {name!r}; choose one of {', '.join(BUILTIN_GRAPHS)} or a PyG dataset folder")
