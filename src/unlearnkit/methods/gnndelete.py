"""GNNDelete: deletion operators after each GNN layer, trained to make deleted edges look
like random pairs while the influenced neighbourhood keeps its representations (Cheng et
al., ICLR 2023). The unlearned model is the frozen original plus the operators
(:class:`GNNDeleteModel`), another shape than the original: :meth:`GNNDelete.model_template`
builds it so a stored artifact loads back."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.graphs import k_hop_masks
from ..engines.loop import run_loop
from ..errors import ConfigError, ModelDataMismatchError
from ..modalities.graph.adapter import EDGE
from ..utils import derive_seed
from .base import LoopParams, Method, UnlearnResult, hp, register


@dataclass
class GNNDeleteParams(LoopParams):
    epochs: float = hp(
        50.0, "passes over the deleted rows; with batch_size above their count, one full-graph step each"
    )
    lr: float = hp(1e-2, "learning rate of the deletion operators (Adam)")
    batch_size: int = hp(4096, "deleted rows per step (the loss reads the whole graph every step)")
    lam: float = hp(0.5, "lambda: L = lambda * L_DEC + (1 - lambda) * L_NI per layer (the paper's 0.5)")

    def __post_init__(self) -> None:
        if not 0.0 <= self.lam <= 1.0:
            raise ConfigError(f"gnndelete: lam must be in [0, 1], not {self.lam}")


# --------------------------------------------------------------------------- the deleted subgraph
@dataclass
class DeletionSpec:
    """What GNNDelete reads off a task (node positions of the task's graph).

    Attributes:
        deleted_edges: (k, 2) the edges the retain graph lost (the deleted edges ``E_d``, and
            every edge of a deleted node or of a node whose features were deleted).
        seeds: (N,) bool, the end nodes of ``E_d`` and the deleted (or feature-deleted) nodes.
        influenced: (L, N) bool, ``S^l``: the nodes within ``l + 1`` hops of a seed in the
            training graph (deleted edges included), where layer ``l``'s operator applies.
        dec_nodes, dec_random: the DEC pairs, flattened: ``[u_1..u_k, v_1..v_k]`` against
            ``[p_1..p_k, q_1..q_k]``, a random pair of distinct non-adjacent nodes per deleted
            edge (seeded; the seeds themselves against random nodes when no edge was lost).
    """

    deleted_edges: np.ndarray
    seeds: np.ndarray
    influenced: np.ndarray
    dec_nodes: np.ndarray
    dec_random: np.ndarray

    def ni_nodes(self, layer: int) -> np.ndarray:
        """Layer ``layer``'s Neighbourhood Influence nodes: ``S^l`` without the seeds."""
        return self.influenced[layer] & ~self.seeds


def deletion_spec(task, layers: int, seed: int) -> DeletionSpec:
    """The deleted edges, seeds, influenced nodes per layer and DEC pairs of ``task``."""
    g = task.graph
    n = g.num_nodes
    ge = g.edges.numpy()
    lost = task.train.edge_keep & ~task.retain.edge_keep
    deleted = ge[lost]
    f = task.split.forget
    seeds = np.zeros(n, bool)
    seeds[deleted.ravel()] = True
    seeds[f.u[f.kind != EDGE]] = True
    influenced = k_hop_masks(task.train.view.edge_index.numpy(), seeds, layers)
    rng = np.random.default_rng(derive_seed(seed, "gnndelete", "random-pairs"))
    adj = {(int(a), int(b)) for a, b in ge}

    def joined(a: int, b: int) -> bool:
        return (min(a, b), max(a, b)) in adj

    if len(deleted):
        pairs = np.empty_like(deleted)
        for i in range(len(deleted)):
            for _ in range(50):  # a pair of distinct nodes the graph does not join (uniform)
                p, q = (int(x) for x in rng.integers(0, n, 2))
                if p != q and not joined(p, q):
                    break
            pairs[i] = (p, q)
        dec_nodes = np.concatenate([deleted[:, 0], deleted[:, 1]])
        dec_random = np.concatenate([pairs[:, 0], pairs[:, 1]])
    else:
        dec_nodes = np.flatnonzero(seeds)
        dec_random = rng.integers(0, n, len(dec_nodes))
    return DeletionSpec(deleted, seeds, influenced, dec_nodes.astype(np.int64), dec_random.astype(np.int64))


# --------------------------------------------------------------------------- the unlearned model
class GNNDeleteModel(nn.Module):
    """The original GNN (``base``, frozen, kept in eval mode) with a deletion operator after
    each layer: ``DEL^l(h_w) = h_w W_D^l`` for the influenced nodes ``w in S^l``, ``h_w``
    for every other node (applied to layer ``l``'s output before its activation). ``W_D^l``
    starts as the identity, so the model starts equal to the original. The influenced
    nodes are a buffer, stored with the weights."""

    def __init__(self, base: nn.Module, dims: list[int], influenced: torch.Tensor):
        super().__init__()
        self.base = base
        self.deletion = nn.ParameterList([nn.Parameter(torch.eye(d)) for d in dims])
        self.register_buffer("influenced", torch.as_tensor(influenced, dtype=torch.bool).clone())

    def train(self, mode: bool = True) -> "GNNDeleteModel":
        super().train(mode)
        self.base.eval()  # the original's weights are frozen, its dropout too
        return self

    def _delete(self, i: int, h: torch.Tensor) -> torch.Tensor:
        mask = self.influenced[i]
        if h.shape[0] != mask.shape[0]:
            raise ModelDataMismatchError(
                f"this GNNDelete model was made for a graph of {mask.shape[0]} nodes, not {h.shape[0]}"
            )
        return torch.where(mask.unsqueeze(1), h @ self.deletion[i], h)

    @property
    def convs(self) -> nn.ModuleList:
        return self.base.convs

    def layer_outputs(
        self, x: torch.Tensor, edge_index: torch.Tensor, isolate: bool = False, after=None, into=None
    ) -> list[torch.Tensor]:
        """``[x, DEL^1(h1), ..., DEL^L(out)]``; ``isolate`` detaches what enters each layer, so
        layer ``l``'s loss reaches only ``W_D^l`` (the paper trains the operators layer-wise).
        ``after``/``into`` as the GNN's, applied after this model's operators, so a later
        deletion can wrap this model in operators of its own (a model line's next request)."""
        into = into or ((lambda i, h: h.detach()) if isolate else None)
        then = self._delete if after is None else (lambda i, h: after(i, self._delete(i, h)))
        return self.base.layer_outputs(x, edge_index, after=then, into=into)

    def hidden(self, x: torch.Tensor, edge_index: torch.Tensor, layer: int | str | None = None) -> torch.Tensor:
        outs = self.layer_outputs(x, edge_index)
        return outs[len(self.deletion) - 1 if layer is None else int(layer)]

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.layer_outputs(x, edge_index)[-1]


def _check_gnn(model: nn.Module) -> None:
    fn = getattr(model, "layer_outputs", None)
    if fn is None or "after" not in inspect.signature(fn).parameters or not hasattr(model, "convs"):
        raise ConfigError(
            "gnndelete inserts its operators between a GNN's layers: it needs one of the built-in "
            "graph models (gcn, gat, gin, sage), whose layer_outputs(x, edge_index, after=...) it calls"
        )


@torch.no_grad()
def _layer_dims(base: nn.Module, task) -> list[int]:
    was = base.training
    base.eval()
    x, ei = task.train.view.on(task.device)
    dims = [int(h.shape[1]) for h in base.layer_outputs(x, ei)[1:]]
    base.train(was)
    return dims


def gnndelete_layer_loss(
    h: torch.Tensor, target: torch.Tensor, spec: DeletionSpec, layer: int, lam: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Layer ``l``'s ``(L^l, L_DEC^l, L_NI^l)`` with ``h`` the unlearned model's layer output and
    ``target`` the original's, both on the retain graph:

    ``L_DEC^l = MSE([h_u ; h_v]_{(u,v) in E_d}, [h^o_p ; h^o_q]_{(p,q) random})``,
    ``L_NI^l = MSE(h_w, h^o_w)_{w in S^l minus the seeds}``,
    ``L^l = lam * L_DEC^l + (1 - lam) * L_NI^l`` (MSE: the mean of squared differences)."""
    dev = h.device
    a, r = torch.from_numpy(spec.dec_nodes).to(dev), torch.from_numpy(spec.dec_random).to(dev)
    dec = F.mse_loss(h[a], target[r])
    ni_mask = torch.from_numpy(spec.ni_nodes(layer)).to(dev)
    ni = F.mse_loss(h[ni_mask], target[ni_mask]) if bool(ni_mask.any()) else h.new_zeros(())
    return lam * dec + (1 - lam) * ni, dec, ni


@register
class GNNDelete(Method):
    """GNNDelete (Cheng, Dasoulas, He, Agarwal and Zitnik 2023, ICLR, "GNNDelete: A General
    Strategy for Unlearning in Graph Neural Networks"; code github.com/mims-harvard/GNNDelete).

    The original GNN is frozen and a deletion operator ``DEL^l`` (a linear map ``W_D^l``, no
    bias, initialised to the identity) is inserted after each layer ``l``; it changes only
    the nodes of the local neighbourhood ``S^l`` of the deleted edges (within ``l`` hops of
    their end nodes: 1 hop after the first layer, 2 after the second, as the official
    ``sdf_node_1hop_mask`` / ``sdf_node_2hop_mask``). Each layer's operator minimises

    ``L^l = lam * L_DEC^l + (1 - lam) * L_NI^l``

    * Deleted Edge Consistency: the representations of the deleted edges' end nodes are made
      indistinguishable from those of random node pairs,
      ``L_DEC^l = MSE([h'_u ; h'_v]_{e_uv in E_d}, [h_p ; h_q]_{(p, q) random})``;
    * Neighbourhood Influence: the influenced nodes keep the original's representations,
      ``L_NI^l = MSE(h'_w, h_w)_{w in S^l, not an end node of E_d}``,

    with ``h'`` the unlearned model's layer output and ``h`` the original's on the graph
    without the deleted edges, ``lam = 0.5`` (the official ``alpha``), MSE the mean
    (``mse_mean``), each operator trained by its own layer's loss (``both_layerwise``: one
    Adam over all operators, the input of each layer detached, which gives the same
    gradients as one optimiser per layer). Deleting a node deletes its edges: ``E_d`` is
    every edge the retain graph lost (and the edges of feature-deleted nodes), and the
    deleted nodes are seeds of ``S^l`` themselves; node classification works the same way
    on the class-logit outputs (GNNDelete's node and node-feature deletion).

    The unlearned model is :class:`GNNDeleteModel` (the original plus operators and the
    influenced-node masks); :meth:`model_template` rebuilds that shape to load an artifact.

    Departures from the official code: the operators start at the identity (the official
    ``DeletionLayer`` initialises ``W_D`` to ``ones / 1000`` with the identity commented
    out; identity makes the model equal to the original before training, checked in the
    tests); the unlearned model is trained on the retain graph, the graph it is scored on
    (the official trainer runs it on the 2-hop enclosing subgraph with ``E_d`` still in it
    and evaluates on the retain graph); random pairs are drawn once per run (seeded, as
    the official ``negative_sampling`` before the loop), uniform distinct nodes the graph
    does not join; this is the official node-embedding trainer (``gnndelete_nodeemb``), not
    its edge-probability variant (DEC as ``MSE(s(u, v), s(p, q))``), which we measured at DT
    AUC 0.59 against 0.97 on digits-kNN; defaults 50 full-graph Adam steps at ``lr=1e-2``
    (the official: 3000 epochs at ``1e-3`` on Cora-size graphs), gradient clipping at 5 on
    all operators together; the original's one forward pass for the targets is counted in
    the cost. Only the paper's abstract could be read here: the formulas above are those
    of the official code, which names them after the paper's two properties.
    """

    name = "gnndelete"
    summary = "Deletion operators after each GNN layer (DEC + NI losses), the original frozen"
    Params = GNNDeleteParams
    modalities = ("graph",)
    citation = (
        "Cheng, Dasoulas, He, Agarwal and Zitnik 2023 (ICLR), GNNDelete: A General Strategy for "
        "Unlearning in Graph Neural Networks"
    )
    uses_lora = False
    contract_exempt = {
        "moves_forget:graph": "DEC moves the deleted edges to the scores of random non-adjacent pairs, not "
        "past them: on the tiny karate task that caps the forget-edge loss near 2 log 2 = 1.39 (1.12 -> 1.29 "
        "at the defaults, at most 1.44 for any lam < 1 measured), short of the +0.3 the check asks; the "
        "reference is at 1.56. tests/test_graph_methods.py checks DEC's own target instead",
    }

    def model_template(self, task) -> GNNDeleteModel:
        """An untrained original plus identity operators and empty masks, to load a stored
        GNNDelete model into (its masks come with its weights)."""
        base = task.base_template() if task.base_template else task.model_factory(task.seed).to(task.device)
        _check_gnn(base)
        dims = _layer_dims(base, task)
        return GNNDeleteModel(base, dims, torch.zeros(len(dims), task.graph.num_nodes, dtype=torch.bool)).to(
            task.device
        )

    def build(self, task, seed: int = 0) -> tuple[GNNDeleteModel, DeletionSpec]:
        """The untrained unlearned model (a frozen copy of the original plus identity
        operators on the influenced nodes) and the task's deleted subgraph."""
        base = copy.deepcopy(task.original).to(task.device)
        _check_gnn(base)
        base.requires_grad_(False)
        dims = _layer_dims(base, task)
        spec = deletion_spec(task, len(dims), seed)
        model = GNNDeleteModel(base, dims, torch.from_numpy(spec.influenced)).to(task.device)
        return model, spec

    def unlearn(self, task, seed: int = 0, progress: bool = False) -> UnlearnResult:
        self._prepare(task)
        p = self.params
        t0 = time.perf_counter()
        model, spec = self.build(task, seed)
        view = task.scoring_view
        with torch.no_grad():
            original = task.original
            was = original.training
            original.eval()
            targets = [t.detach() for t in original.layer_outputs(*view.on(task.device))[1:]]
            original.train(was)
        lam = float(p.lam)

        def objective(ctx):
            batch = ctx.batch("forget")  # the deleted rows; the loss reads the whole graph
            x, ei = batch["graph"].on(task.device)
            outs = ctx.model.layer_outputs(x, ei, isolate=True)[1:]
            return sum(gnndelete_layer_loss(h, t, spec, i, lam)[0] for i, (h, t) in enumerate(zip(outs, targets)))

        cost = run_loop(
            model,
            objective,
            {"forget": task.forget},
            p.train_config(),
            seed,
            device=task.device,
            adapter=task.adapter,
            progress=progress,
            desc=self.name,
            params=list(model.deletion.parameters()),
        )
        cost.examples_forward += len(task.forget)  # the original's pass for the targets
        cost.wall_time_s = time.perf_counter() - t0
        model.eval()
        extra = {
            "deleted_edges": int(len(spec.deleted_edges)),
            "influenced_nodes": [int(m.sum()) for m in spec.influenced],
        }
        return UnlearnResult(model, cost, self.name, dataclasses.asdict(p), seed, extra)
