"""The comparator on graph tasks (``unlearnkit.modalities.graph``): what the classifier and
attack views compute for node classification and link prediction.

A graph task is recognised by its adapter, not its class: an adapter that reads every
node's output of one graph (``node_outputs``) and says which ``task_kind`` it serves
(``"node"`` or ``"link"``). Everything is read on the task's scoring view (the retain
graph, ``GraphTask.scoring_view``), as the graph metrics are:

* node classification: the classifier views over the *node rows* (node and feature rows
  with a label: the rows ``node_acc_*`` reads), the embeddings and CKA over nodes (one full
  forward pass per model, read at the sampled nodes), the attack over the forget nodes vs
  the test nodes;
* link prediction: the attack over the forget edges vs the test edges, with
  ``confidence = s(u, v)`` (the logit of ``p(edge) = sigma(s)``), ``entropy`` the binary
  entropy of ``sigma(s / 2)`` and ``loss`` the adapter's
  ``softplus(-s(u, v)) + softplus(s(u, neg))`` (:attr:`GraphScores.loss`); the classifier
  views are not for link prediction.

Hidden representations come from the model's own pure functions (``layer_outputs``,
``hidden``: they record nothing on the model), or, for a model without them, from forward hooks
on its message-passing layers through :class:`unlearnkit.ui.analysis._OwnPasses` (only the
calling thread's passes, into a buffer of the call's own): the models are shared by the
server's threads (see the comment above ``_OwnPasses``). Layers are matched across models by
position (``layer 1`` .. ``layer L``), so a GNNDelete model (the GNN inside a wrapper, its
deletion operators after each layer) compares with the original it was made from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import ModelDataMismatchError
from ..evaluation.comparator import entropy_feature
from . import analysis

NODE, EDGE, FEAT = 0, 1, 2  # the row kinds of GraphExampleSet (unlearnkit.modalities.graph.adapter)
LINK_CLASSES = ["no edge", "edge"]
TOP_FEATURES = 8


def graph_kind(task) -> str | None:
    """``"node"`` or ``"link"`` when ``task``'s adapter is a graph adapter (it reads the
    node outputs of one graph and names its task kind), else None."""
    ad = getattr(task, "adapter", None)
    kind = getattr(ad, "task_kind", None)
    if callable(getattr(ad, "node_outputs", None)) and kind in ("node", "link") and hasattr(task, "scoring_view"):
        return kind
    return None


# --------------------------------------------------------------------------- rows of scores
@dataclass
class Rows:
    """Scores of some rows of one split, in the shape :mod:`analysis` reads (``labels``,
    ``pred``, ``correct``, ``logits``, ``loss``), with the rows' ids and nodes."""

    example_ids: np.ndarray
    u: np.ndarray
    labels: np.ndarray
    pred: np.ndarray
    logits: np.ndarray
    loss: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        return self.pred == self.labels

    def __len__(self) -> int:
        return len(self.example_ids)


def node_rows(scores, data) -> Rows:
    """The node rows (node and feature rows with a label) of a split's :class:`GraphScores`
    (``data``: the split's GraphExampleSet, same row order), one per node: a node's row and
    its feature row carry the same label and logits, so a node is counted once (its first
    row), and the class counts of the splits sum to the labelled nodes."""
    m = np.asarray(scores.node_rows).copy()
    pos = np.flatnonzero(m)
    _, first = np.unique(np.asarray(data.u)[pos], return_index=True)
    m[:] = False
    m[pos[first]] = True
    return Rows(
        scores.example_ids[m].astype(str),
        np.asarray(data.u)[m],
        scores.labels[m],
        scores.pred[m],
        scores.logits[m],
        scores.loss[m],
    )


def edge_rows(scores, data) -> Rows:
    """The edge rows of a link task's split, with ``logits`` the 2-class logits
    ``(s(u, v), 0)`` (softmax: ``(sigma(s), 1 - sigma(s))``) and ``pred`` 1 for ``s >= 0``."""
    m = np.asarray(scores.edge_rows)
    s = scores.logits[m, 0].astype(np.float64)
    return Rows(
        scores.example_ids[m].astype(str),
        np.asarray(data.u)[m],
        np.ones(int(m.sum()), dtype=np.int64),
        (s >= 0).astype(np.int64),
        np.stack([s, np.zeros_like(s)], 1),
        scores.loss[m].astype(np.float64),
    )


def link_attack_features(rows: Rows) -> dict[str, np.ndarray]:
    """Per forget/test edge: ``entropy`` (nats) of ``Bernoulli(sigma(s / 2))``, ``confidence``
    ``s(u, v) = log p - log(1 - p)`` of ``p = sigma(s)`` (the edge's own side, not the larger
    one), ``loss`` the adapter's edge loss (positive pair and its fixed negative)."""
    s = rows.logits[:, 0]
    return {
        "entropy": entropy_feature(rows.logits, analysis.FEATURE_TEMPERATURE["entropy"]),
        "confidence": np.asarray(s, dtype=np.float64),
        "loss": np.asarray(rows.loss, dtype=np.float64),
    }


LINK_FEATURE_ABOUT = {
    "entropy": "binary entropy (nats) of sigma(s(u,v) / 2), s the inner product of the end nodes' embeddings",
    "confidence": "s(u,v) = log p - log(1 - p), p = sigma(s(u,v)): the model's log-odds that the edge exists",
    "loss": "softplus(-s(u,v)) + softplus(s(u,n)): the edge's training loss with its fixed negative node n",
}
NODE_FEATURE_ABOUT = {
    "entropy": "entropy (nats) of softmax(z_v / 2) over the classes",
    "confidence": "log p_max - log(1 - p_max) of softmax(z_v)",
    "loss": "cross-entropy of the node's label",
}


# --------------------------------------------------------------------------- representations
def gnn_layer_names(model: nn.Module) -> list[str]:
    """The model's message-passing layers (PyG ``MessagePassing`` modules not inside another
    one), in registration order: the "layers" of a GNN for CKA."""
    try:
        from torch_geometric.nn import MessagePassing
    except ImportError:  # pragma: no cover - a graph task needs PyG to exist at all
        return []
    out: list[str] = []
    for name, m in model.named_modules():
        if name and isinstance(m, MessagePassing) and not any(name.startswith(p + ".") for p in out):
            out.append(name)
    return out


@torch.no_grad()
def node_layer_outputs(
    model: nn.Module, view, adapter, layers: list[str], what: str = "output"
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every node's output (``what="output"``) or input (``"input"``) of each named layer in
    one forward pass of ``model`` on ``view`` (eval mode), ``{name: (N, D) float64}``, and the
    model's output ``(N, C)``. Only this call's pass is recorded (the hooks of
    :class:`analysis._OwnPasses`), so other threads may run the same model meanwhile."""
    modules = dict(model.named_modules())
    missing = [n for n in layers if n not in modules]
    if missing:
        raise ModelDataMismatchError(f"the model has no module(s) {missing[:3]}")
    with analysis._EvalMode(model), analysis._OwnPasses(modules, layers, what) as rec:
        x, ei = view.on(adapter.device)
        out = model(x, ei)
    n = int(out.shape[0])
    reps = {}
    for name in layers:
        if rec.seen[name]:
            t = rec.seen[name][-1]  # a layer called twice in one pass: its last call
            reps[name] = t.reshape(n, -1).double().numpy()
    return reps, out.detach().float().cpu().numpy()


def _np(t: torch.Tensor, n: int) -> np.ndarray:
    return t.detach().reshape(n, -1).double().cpu().numpy()


@torch.no_grad()
def gnn_layers(model: nn.Module, view, adapter) -> tuple[list[np.ndarray], np.ndarray]:
    """Every node's output of each GNN layer, ``[(N, D_1), ..., (N, D_L)]`` (the last is the
    model's output), and the output ``(N, C)``, from one forward pass on ``view`` (eval mode).

    A model with ``layer_outputs(x, edge_index) -> [x, h_1, ..., out]`` (the built-in GNNs,
    GNNDelete's model with its deletion operators applied) is asked for them: a pure function
    of its inputs, nothing recorded on the shared model, so concurrent calls cannot mix. Any
    other model is read through forward hooks on its message-passing layers
    (:func:`node_layer_outputs`: this call's own passes only)."""
    x, ei = view.on(adapter.device)
    with analysis._EvalMode(model):
        if callable(getattr(model, "layer_outputs", None)):
            outs = model.layer_outputs(x, ei)
            n = int(outs[-1].shape[0])
            return [_np(t, n) for t in outs[1:]], outs[-1].detach().float().cpu().numpy()
    names = gnn_layer_names(model)
    if not names:
        raise ModelDataMismatchError("the graph model has no layer_outputs() and no message-passing layer to read")
    # layer i's output as the next layer receives it (after its activation), as layer_outputs
    # gives it: the input of layer i + 1; the last layer's is the model's output
    reps, out = node_layer_outputs(model, view, adapter, names[1:], "input")
    return [reps[n] for n in names[1:] if n in reps] + [out.astype(np.float64)], out


@torch.no_grad()
def penultimate_nodes(model: nn.Module, view, adapter) -> tuple[np.ndarray, np.ndarray]:
    """Every node's representation entering the model's last layer, ``(N, D)`` (what the graph
    adapter's ``representations`` defines for a node: ``model.hidden(x, edge_index)``, a pure
    function; else the input of the last message-passing layer, through this call's own
    hooks), and the model's output ``(N, C)``."""
    x, ei = view.on(adapter.device)
    if callable(getattr(model, "hidden", None)):
        with analysis._EvalMode(model):
            h = model.hidden(x, ei)
            out = model(x, ei)
        n = int(out.shape[0])
        return _np(h, n), out.detach().float().cpu().numpy()
    layers = gnn_layer_names(model)
    if not layers:
        raise ModelDataMismatchError("the graph model has no hidden() and no message-passing layer to read")
    reps, out = node_layer_outputs(model, view, adapter, [layers[-1]], "input")
    if layers[-1] not in reps:
        raise ModelDataMismatchError(f"the forward pass does not go through {layers[-1]!r}")
    return reps[layers[-1]], out


# --------------------------------------------------------------------------- the instance panel
def degrees(edges: np.ndarray, n: int, keep: np.ndarray | None = None) -> np.ndarray:
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if keep is not None:
        e = e[np.asarray(keep, bool)]
    return np.bincount(e.reshape(-1), minlength=n)


def node_input(graph, u: int, zeroed: bool) -> dict:
    """A node's feature row: its ``TOP_FEATURES`` largest features by magnitude (``x<j>``),
    or no features (a graph whose ``x`` is synthetic: identity one-hot)."""
    if not graph.has_features:
        return {"kind": "row", "features": [], "note": "no features (the graph's x is a one-hot identity)"}
    x = graph.x[u].double().numpy()
    order = np.argsort(-np.abs(x), kind="stable")[:TOP_FEATURES]
    feats = [[f"x{int(j)}", float(x[j])] for j in order]
    note = f"top {len(feats)} of {len(x)} features by |value|"
    if zeroed:
        note += "; zeroed in the retain graph (its features were deleted)"
    return {"kind": "row", "features": feats, "note": note}


__all__ = [
    "graph_kind",
    "Rows",
    "node_rows",
    "edge_rows",
    "link_attack_features",
    "gnn_layer_names",
    "node_layer_outputs",
    "penultimate_nodes",
    "gnn_layers",
    "degrees",
    "node_input",
    "LINK_CLASSES",
]
