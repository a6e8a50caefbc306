"""INPO: influence-aware negative preference optimisation for graph unlearning (Chen et al.
2025): NPO on the deleted rows, each weighted by its influence estimated by removal, a
retain term and the topological-entropy term on the deleted edges' end nodes."""

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


@dataclass
class INPOParams(LoopParams):
    epochs: float = hp(20.0, "passes over the deleted rows (one full-graph step each when they fit a batch)")
    lr: float = hp(1e-2, "learning rate (Adam)")
    batch_size: int = hp(4096, "deleted rows per step")
    beta: float = hp(0.5, "inverse temperature of the NPO term (the official code: 5 on Cora, 0.5 on DBLP)")
    retain_weight: float = hp(1.0, "weight of the mean retain loss (the official GD_loss term, weight 1)")
    te_weight: float = hp(0.5, "weight of the topological entropy term (the official 0.5)")
    influence: str = hp("removal", "removal (per-row NPO weight from removal influence) or none (weights 1)")

    def __post_init__(self) -> None:
        if self.beta <= 0 or self.retain_weight < 0 or self.te_weight < 0:
            raise ConfigError("inpo: beta must be > 0, retain_weight and te_weight >= 0")
        if self.influence not in INFLUENCES:
            raise ConfigError(f"inpo: influence must be one of {', '.join(INFLUENCES)}, not {self.influence!r}")


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
    of retained rows, on the retain graph:

    ``L = mean_{r in D_f} w_r * L_NPO(r) + retain_weight * mean_{D_r} loss + te_weight * TE``

    * ``L_NPO(r) = (2/beta) softplus(beta * (log p_theta(r) - log p_ref(r)))`` (Zhang et al.
      2024, the project's :func:`~.losses.npo_loss`), ``p_ref`` the frozen original, ``log p``
      the adapter's row log-likelihood (an edge: ``log sigma(s(u, v)) + log(1 - sigma(s(u, n)))``);
    * ``w_r = I_r / mean_s I_s``, the row's influence estimated by removal
      (:func:`removal_influence`): the summed L2 change of the other nodes' outputs of the
      original when the row alone is removed from the training graph, normalised to mean 1;
    * ``TE`` the topological entropy term (:func:`topological_entropy`): the cross entropy
      between ``softmax`` of the original's node outputs on the training graph and of the
      unlearned model's, at the deleted rows' end nodes;
    * the retain term is the adapter's loss on retained rows (the official ``GD_loss``).

    Sources and departures: the paper's abstract and a summary could be read here, and the
    official repository's ``NPOTrainer`` (which computes ``loss_NPO + GD_loss + 0.5 * TE``,
    TE as above, and an edge influence ``I(u) + I(v)`` from NORA's node influence); its
    method section's equations could not. What we do differently: (1) the paper's
    influence-aware *message function* (influence-weighted messages inside the GNN during
    unlearning) is not implemented: the influence enters as the per-row weight of the NPO
    term instead, so the unlearned model keeps the original's architecture; (2) influence is
    exact removal (one forward pass per deleted row, counted in the cost), not NORA's
    gradient approximation, and is an edge's own, not the sum of its end nodes'; (3) the NPO
    term reads the adapter's log-likelihood, which for an edge includes its fixed negative
    pair (the official code: ``sigma(s(u, v))`` alone) and for a node its class; (4) the
    official code's retain term applies BCE-with-logits to probabilities; ours is the
    adapter's loss; (5) defaults are the project's graph NPO's (20 full-graph Adam steps at
    ``1e-2``, ``beta = 0.5``; the official uses ``beta = 5`` on Cora, 0.5 on DBLP), with
    ``te_weight = 0.5`` as the official. ``influence="none"`` gives all weights 1 (NPO + RT +
    TE, the ablation).
    """

    name = "inpo"
    summary = "Influence-weighted NPO on the deleted rows, a retain term and the topological entropy term"
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
        return result

    def _unlearn(self, model, task, seed, progress) -> LoopStats:
        p = self.params
        adapter = task.adapter
        ref = copy.deepcopy(task.original).to(task.device).eval().requires_grad_(False)
        forget = task.forget
        n = len(forget)
        influence = removal_influence(ref, task) if p.influence == "removal" else np.ones(n)
        self._weights = influence_weights(influence)
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

        cost = self.run_forget_loop(model, task, forget_loss, seed, progress)
        # the original's passes: one on the forget rows, one on the training graph, and one
        # per deleted row for its removal influence
        cost.examples_forward += 2 * n + (n if p.influence == "removal" else 0)
        return cost
