"""INPO: influence-aware negative preference optimisation for graph unlearning (Chen et al.
2025): NPO on the deleted rows, each weighted by its influence estimated by removal, an
influence-aware message function (messages at the deleted rows' end nodes attenuated while
unlearning), a retain term and the topological-entropy term on the deleted edges' end
nodes."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import vmap

from ..engines.loop import LoopStats
from ..errors import ConfigError
from ..modalities.graph.adapter import EDGE, FEAT, NODE
from .base import LoopParams, Method, hp, register
from .losses import npo_loss

INFLUENCES = ("removal", "none")
MESSAGES = ("influence", "none")


@dataclass
class INPOParams(LoopParams):
    epochs: float = hp(20.0, "passes over the deleted rows (one full-graph step each when they fit a batch)")
    lr: float = hp(1e-2, "learning rate (Adam)")
    batch_size: int = hp(4096, "deleted rows per step")
    beta: float = hp(0.5, "inverse temperature of the NPO term (the official code: 5 on Cora, 0.5 on DBLP)")
    retain_weight: float = hp(1.0, "weight of the mean retain loss (the official GD_loss term, weight 1)")
    te_weight: float = hp(0.5, "weight of the topological entropy term (the official 0.5)")
    influence: str = hp("removal", "removal (per-row NPO weight from removal influence) or none (weights 1)")
    message: str = hp(
        "influence",
        "influence (while unlearning, each message s->t scaled by exp(-(a_s + a_t)), a the removal "
        "influence of the deleted rows at a node, max-normalised) or none (plain message passing)",
    )

    def __post_init__(self) -> None:
        if self.beta <= 0 or self.retain_weight < 0 or self.te_weight < 0:
            raise ConfigError("inpo: beta must be > 0, retain_weight and te_weight >= 0")
        if self.influence not in INFLUENCES:
            raise ConfigError(f"inpo: influence must be one of {', '.join(INFLUENCES)}, not {self.influence!r}")
        if self.message not in MESSAGES:
            raise ConfigError(f"inpo: message must be one of {', '.join(MESSAGES)}, not {self.message!r}")


def _without_row(view, graph_edges: np.ndarray, kind: int, u: int, eref: int):
    """``(x, edge_index)`` of ``view`` with one row removed as ``GraphExampleSet.without``
    removes it: an edge leaves message passing, a node loses every edge, a feature row is
    zeroed."""
    keep = view.edge_keep.copy()
    x = view.x
    if kind == EDGE:
        keep[eref] = False
    elif kind == NODE:
        keep &= (graph_edges[:, 0] != u) & (graph_edges[:, 1] != u)
    elif kind == FEAT:
        x = x.clone()
        x[u] = 0.0
    e = torch.from_numpy(graph_edges[keep])
    return x, torch.cat([e.t(), e.t().flip(0)], dim=1).contiguous()


@torch.no_grad()
def removal_influence(model, task) -> np.ndarray:
    """Per forget row ``r``, its influence estimated by removal (exact, one forward pass per
    row): ``I_r = sum_{w not an end node of r} || z_w(G) - z_w(G without r) ||_2``, ``z``
    the model's node outputs, ``G`` the training graph (``task.train.view``): the change in
    the other nodes' outputs (within the model's receptive field, the neighbours) when the
    row alone is removed."""
    was = model.training
    model.eval()
    dev = task.device
    view = task.train.view
    x, ei = view.on(dev)
    z = model(x, ei)
    ge = task.graph.edges.numpy()
    f = task.split.forget
    out = np.zeros(len(f), dtype=np.float64)
    for i in range(len(f)):
        k, u, v, e = int(f.kind[i]), int(f.u[i]), int(f.v[i]), int(f.eref[i])
        xi, eii = _without_row(view, ge, k, u, e)
        d = (model(xi.to(dev), eii.to(dev)) - z).norm(dim=1)
        d[u] = 0.0
        if v >= 0:
            d[v] = 0.0
        out[i] = float(d.sum())
    model.train(was)
    return out


def influence_weights(influence: np.ndarray) -> np.ndarray:
    """The per-row NPO weights: influence normalised to mean 1 (``w_r = I_r / mean_s I_s``);
    all ones where no row has any influence."""
    m = float(np.mean(influence)) if len(influence) else 0.0
    return np.ones_like(influence) if m <= 0 else influence / m


def node_influence(influence: np.ndarray, u: np.ndarray, v: np.ndarray, num_nodes: int) -> np.ndarray:
    """The message function's node scores: ``a_w = s_w / max_x s_x`` with
    ``s_w = sum_{r in D_f, w in ends(r)} I_r`` (each deleted row's removal influence ``I_r``
    given to its end nodes, ``v = -1`` for a node or feature row), so ``a`` lies in
    ``[0, 1]`` and is 0 at every node no deleted row touches; all zeros where no row has any
    influence."""
    s = np.zeros(num_nodes, dtype=np.float64)
    np.add.at(s, u, influence)
    has_v = v >= 0
    np.add.at(s, v[has_v], influence[has_v])
    top = float(s.max()) if num_nodes else 0.0
    return s / top if top > 0 else s


def message_weights(edge_index: torch.Tensor, node_score: torch.Tensor) -> torch.Tensor:
    """The influence-aware message function's weight of every directed edge ``s -> t``
    (``edge_index[0] = s``, ``edge_index[1] = t``): ``m_st = exp(-(a_s + a_t))``, the
    official code's ``exp(-(I(s) + I(t)))``, so a message is attenuated by the influence at
    both of its ends (between ``exp(-2)`` and 1)."""
    return torch.exp(-(node_score[edge_index[0]] + node_score[edge_index[1]]))


def _message_layers(model) -> list:
    try:
        from torch_geometric.nn.conv import MessagePassing
    except ImportError:  # the graph modality needs PyG; a model without it has no layer to weight
        return []
    return [m for m in model.modules() if isinstance(m, MessagePassing)]


def set_message_weights(model, edge_index: torch.Tensor, weights: torch.Tensor) -> None:
    """Multiply every message of every PyTorch Geometric message-passing layer of ``model``
    by ``weights`` (one per column of ``edge_index``, the graph the model runs on), after
    the layer's own message (a GCN's ``deg^-1/2``-normalised ``x_s``, a GAT's
    attention-weighted ``x_s``, GraphSAGE's and GIN's ``x_s``) and before aggregation; the
    self-loops a GCN or GAT layer adds keep weight 1. Uses PyG's per-message mask (the
    mechanism its explainers use, ``torch_geometric.explain.algorithm.utils.set_masks``), so
    it works for every layer of :data:`~unlearnkit.modalities.graph.models.ARCHS` whether or
    not the layer takes an ``edge_weight`` (only GCN's does, and it renormalises by the
    weighted degree, which would undo part of the attenuation). A forward on a graph of
    another size fails loudly. :func:`clear_message_weights` undoes it."""
    from torch_geometric.explain.algorithm.utils import set_masks

    if not _message_layers(model):
        raise ConfigError(
            "inpo: message=influence needs a model with PyTorch Geometric message-passing layers; use message=none"
        )
    set_masks(model, weights, edge_index, apply_sigmoid=False)


def clear_message_weights(model) -> None:
    from torch_geometric.explain.algorithm.utils import clear_masks

    clear_masks(model)


def weighted_npo(log_lik: torch.Tensor, ref_log_lik: torch.Tensor, weights: torch.Tensor, beta: float) -> torch.Tensor:
    """``mean_r w_r * L_NPO(r)``, ``L_NPO(r)`` the project's :func:`~.losses.npo_loss` of the
    one row (evaluated per row with ``vmap``)."""
    per_row = vmap(lambda a, b: npo_loss(a, b, beta))(log_lik.unsqueeze(1), ref_log_lik.unsqueeze(1))
    return (weights * per_row).mean()


def topological_entropy(z: torch.Tensor, z_ref: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
    """The official code's topological-entropy ("local-structure alignment") term:
    ``TE = mean_{w in nodes} - sum_d softmax(z_ref_w)_d * log softmax(z_w)_d``, the cross
    entropy of the unlearned model's node outputs against the original's, over the deleted
    rows' end nodes (listed once per end, as ``[u_1..u_k, v_1..v_k]``)."""
    return -(F.softmax(z_ref[nodes], dim=1) * F.log_softmax(z[nodes], dim=1)).sum(1).mean()


@register
class INPO(Method):
    """INPO, Influence-aware Negative Preference Optimization (Chen, Wu, He, Lin, Jiang, You,
    Xu, Chen and Su 2025, arXiv 2510.19479, "Graph Unlearning Meets Influence-aware Negative
    Preference Optimization"; code github.com/sh-qiangchen/INPO).

    Each step, on a batch of deleted rows ``D_f`` (edges, or a deleted node's rows) and one
    of retained rows, on the retain graph, with the influence-aware message function:

    ``L = mean_{r in D_f} w_r * L_NPO(r) + retain_weight * mean_{D_r} loss + te_weight * TE``

    * ``L_NPO(r) = (2/beta) softplus(beta * (log p_theta(r) - log p_ref(r)))`` (Zhang et al.
      2024, the project's :func:`~.losses.npo_loss`), ``p_ref`` the frozen original, ``log p``
      the adapter's row log-likelihood (an edge: ``log sigma(s(u, v)) + log(1 - sigma(s(u, n)))``);
    * ``w_r = I_r / mean_s I_s``, the row's influence estimated by removal
      (:func:`removal_influence`): the summed L2 change of the other nodes' outputs of the
      original when the row alone is removed from the training graph, normalised to mean 1;
    * the message function (:func:`message_weights`, ``message="influence"``): while
      unlearning, every message ``s -> t`` of every message-passing layer is multiplied by
      ``m_st = exp(-(a_s + a_t))``, ``a_w`` the removal influence of the deleted rows ending at
      node ``w``, max-normalised to ``[0, 1]`` (:func:`node_influence`); the unlearned model
      that is returned runs plain message passing;
    * ``TE`` the topological entropy term (:func:`topological_entropy`): the cross entropy
      between ``softmax`` of the original's node outputs on the training graph and of the
      unlearned model's, at the deleted rows' end nodes;
    * the retain term is the adapter's loss on retained rows (the official ``GD_loss``).

    Sources and departures: the paper's abstract and a summary could be read here ("an
    influence-aware message function to amplify the influence of unlearned edges and mitigate
    the tight topological coupling between the forget set and the retain set"), and the
    official repository (``NPOTrainer``: ``loss_NPO + GD_loss + 0.5 * TE``; its GCN layer's
    ``propagate``: the ``deg^-1/2``-normalised weight of each edge multiplied by
    ``exp(-(I(s) + I(t)))`` while unlearning, ``I`` NORA's node influence min-max normalised
    to ``[0, 1]``); its method section's equations could not. The message function's form
    ``exp(-(score_s + score_t))`` after the layer's normalisation is the official code's.
    What we do differently: (1) the node score is the exact removal influence of the deleted
    rows at the node (``a_w`` above), not NORA's influence of removing the node itself, so
    only messages at the deleted rows' end nodes are attenuated (the official scores every
    node and so scales nearly every message; exact removal of every node would cost one
    full-graph pass per node); (2) the message function acts on every PyG message-passing
    layer through PyG's per-message mask (GCN, GAT, GraphSAGE, GIN alike; the official has it
    in its GCN layer only), and the self-loops GCN and GAT add keep weight 1 (the official
    also scales a node's self-loop by ``exp(-2 I(w))``); (3) the unlearning forward runs on
    the retain graph, where the deleted edges carry no message (the official runs it on the
    training graph, deleted edges included); for a node deletion the deleted node has no
    edge left, so only feature rows and edge rows get attenuated messages; (4) the NPO
    weights ``w_r`` are ours (the official's NPO term is unweighted; it uses the influence in
    the message function only); (5) the NPO term reads the adapter's log-likelihood, which
    for an edge includes its fixed negative pair (the official code: ``sigma(s(u, v))``
    alone) and for a node its class; (6) the official code's retain term applies
    BCE-with-logits to probabilities; ours is the adapter's loss; (7) defaults are the
    project's graph NPO's (20 full-graph Adam steps at ``1e-2``, ``beta = 0.5``; the official
    uses ``beta = 5`` on Cora, 0.5 on DBLP), with ``te_weight = 0.5`` as the official.
    ``influence="none"`` gives all NPO weights 1 and ``message="none"`` plain message
    passing (the ablations).
    """

    name = "inpo"
    summary = (
        "Influence-weighted NPO on the deleted rows with influence-attenuated messages, a retain term and the "
        "topological entropy term"
    )
    Params = INPOParams
    modalities = ("graph",)
    citation = (
        "Chen, Wu, He, Lin, Jiang, You, Xu, Chen and Su 2025 (arXiv 2510.19479), Graph Unlearning Meets "
        "Influence-aware Negative Preference Optimization (INPO)"
    )
    needs_retain = True

    def unlearn(self, task, seed: int = 0, progress: bool = False):
        result = super().unlearn(task, seed, progress)
        w = self._weights
        result.extra.update(influence_weight_min=float(w.min()), influence_weight_max=float(w.max()))
        if self._messages is not None:
            m = self._messages
            result.extra.update(message_weight_min=float(m.min()), message_edges_attenuated=int((m < 1).sum()))
        return result

    def _unlearn(self, model, task, seed, progress) -> LoopStats:
        p = self.params
        adapter = task.adapter
        ref = copy.deepcopy(task.original).to(task.device).eval().requires_grad_(False)
        forget = task.forget
        n = len(forget)
        need_influence = p.influence == "removal" or p.message == "influence"
        influence = removal_influence(ref, task) if need_influence else np.ones(n)
        self._weights = influence_weights(influence) if p.influence == "removal" else np.ones(n)
        weights = torch.as_tensor(self._weights, dtype=torch.float32, device=task.device)
        with torch.no_grad():
            full = adapter.to_device(next(forget.batches(n)))
            ref_ll = adapter.log_likelihood(adapter.logits(ref, full), full["y"])
            z_ref = ref(*task.train.view.on(task.device))  # the original on the training graph
        ends_u = torch.from_numpy(forget.u).to(task.device)
        ends_v = torch.from_numpy(forget.v).to(task.device)
        beta, te_w = float(p.beta), float(p.te_weight)

        def forget_loss(ctx, batch):
            idx = batch["index"].to(task.device)
            z = adapter.node_outputs(ctx.model, batch)
            log_lik = adapter.log_likelihood(adapter.readout(z, batch), batch["y"])
            loss = weighted_npo(log_lik, ref_ll[idx], weights[idx], beta)
            if te_w:
                v = ends_v[idx]
                nodes = torch.cat([ends_u[idx], v[v >= 0]])
                loss = loss + te_w * topological_entropy(z, z_ref, nodes)
            return loss

        self._messages = None
        if p.message == "influence":
            # the forget and retain rows both run on the retain graph (task.scoring_view), so one
            # weight per directed edge of it serves every forward of the loop
            _, edge_index = task.scoring_view.on(task.device)
            score = node_influence(influence, forget.u, forget.v, task.graph.num_nodes)
            messages = message_weights(edge_index, torch.as_tensor(score, dtype=torch.float32, device=task.device))
            self._messages = messages.cpu().numpy()
            set_message_weights(model, edge_index, messages)
        try:
            cost = self.run_forget_loop(model, task, forget_loss, seed, progress)
        finally:
            if p.message == "influence":
                clear_message_weights(model)  # the unlearned model runs plain message passing
        # the original's passes: one on the forget rows, one on the training graph, and one
        # per deleted row for its removal influence
        cost.examples_forward += 2 * n + (n if need_influence else 0)
        return cost
