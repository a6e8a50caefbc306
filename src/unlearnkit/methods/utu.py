"""UtU, Unlink to Unlearn: edge unlearning by removing the deleted edges from the graph the
trained GNN runs on, with no training (Tan et al. 2024)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engines.loop import LoopStats
from ..modalities.graph.adapter import EDGE
from .base import Method, register


@dataclass
class UtUParams:
    """UtU has no hyperparameters: it trains nothing."""


@register
class UtU(Method):
    """UtU, Unlink to Unlearn (Tan, Sun, Yang, Dai, Wang and Zhang 2024, WWW '24 Companion,
    "Unlink to Unlearn: Simplifying Edge Unlearning in GNNs").

    The unlearned model is the original's weights run on the graph without the deleted
    edges: ``f_UtU(G) = f_theta(V, E \\ E_d)``, ``theta`` the original's, zero optimiser
    steps (``steps = 0``, no example forward or backward at unlearning time). The paper's
    observation is that unlinking alone removes the deleted edges' messages from every
    prediction and, on its benchmarks, lands close to retraining; GNNDelete's and INPO's
    repositories run it as a baseline (INPO's ``UtUTrainer`` only runs the original on
    ``train_pos_edge_index[:, dr_mask]``).

    Node and feature deletions: the node's edges are unlinked (every edge of a deleted node
    leaves message passing) and a deleted feature row is zeroed, which is what the task's
    retain graph already is; the node's own row keeps the original's prediction from its own
    features. No weight is changed, so whatever the original memorised of a deleted node's
    label (node classification) stays in the weights: UtU is exact only for what the graph
    carries, not for what the training labels put into the weights.

    Departure, specific to unlearnkit: every model here is scored on the retain graph
    (``GraphTask.scoring_view``), the original included, so UtU's scores equal the
    original's; the method exists so that "unlink and keep the weights" is a named,
    costed line (a deletion request served by it stores the original's weights and the
    retain graph it runs on). ``extra`` reports how many edges were unlinked.
    """

    name = "utu"
    summary = "Unlink to Unlearn: the original's weights on the graph without the deleted edges (no training)"
    Params = UtUParams
    modalities = ("graph",)
    citation = (
        "Tan, Sun, Yang, Dai, Wang and Zhang 2024 (WWW '24 Companion), Unlink to Unlearn: Simplifying "
        "Edge Unlearning in GNNs"
    )
    uses_lora = False
    contract_exempt = {
        "changes_model": "UtU changes no weight: the unlearned model is the original's weights run on the retain "
        "graph (tests/test_graph_methods_more.py checks the weights equal the original's)",
        "step_budget": "UtU takes no optimiser step and has no step budget",
        "divergence": "UtU runs no optimisation (no learning rate)",
        "cost_accounting": "UtU runs no forward or backward pass at unlearning time (steps 0, 0 examples backward)",
        "moves_forget:graph": "every model is scored on the retain graph here, the original too, so UtU's forget-edge "
        "loss is the original's (1.12 on the tiny karate task; the reference is at 1.56)",
    }

    def unlearn(self, task, seed: int = 0, progress: bool = False):
        result = super().unlearn(task, seed, progress)
        f = task.split.forget
        lost = task.train.edge_keep & ~task.retain.edge_keep
        result.extra.update(
            unlinked_edges=int(lost.sum()),
            deleted_edge_rows=int((f.kind == EDGE).sum()),
            nodes_with_unlinked_edges=int(len(np.unique(task.graph.edges.numpy()[lost]))),
        )
        return result

    def _unlearn(self, model, task, seed, progress) -> LoopStats:
        return LoopStats(steps=0, examples_forward=0, examples_backward=0, final_loss=float("nan"))
