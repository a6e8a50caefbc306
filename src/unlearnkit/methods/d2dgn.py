"""D2DGN (Distill to Delete in GNNs): a student distilled from the original (the
*preserver*) on the retained part of the graph and from a randomly initialised GNN (the
*destroyer*) on the deleted part, with response-based soft targets (KL at a temperature)
and feature-based node-embedding terms (Sinha, Mandal and Kankanhalli 2023)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..engines.loop import LoopStats, run_loop
from ..errors import ConfigError
from ..utils import derive_seed
from .base import LoopParams, Method, hp, register

STUDENTS = ("original", "fresh")


@dataclass
class D2DGNParams(LoopParams):
    epochs: float = hp(50.0, "passes over the deleted rows (each step: a batch of them and a batch of retained rows)")
    lr: float = hp(1e-2, "learning rate of the student (Adam)")
    batch_size: int = hp(4096, "rows per step of each part (retained, deleted)")
    alpha: float = hp(0.5, "alpha: Loss = alpha * Loss_r (retained part) + (1 - alpha) * Loss_f (deleted part)")
    temperature: float = hp(1.0, "T of the response-based soft targets (KL scaled by T^2)")
    feature_weight: float = hp(1.0, "beta: weight of the node-embedding MSE terms beside the KL in each part")
    student: str = hp("original", "original (the student starts from the original's weights) or fresh (a new init)")

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0 or self.temperature <= 0 or self.feature_weight < 0:
            raise ConfigError("d2dgn: alpha must be in [0, 1], temperature > 0 and feature_weight >= 0")
        if self.student not in STUDENTS:
            raise ConfigError(f"d2dgn: student must be one of {', '.join(STUDENTS)}, not {self.student!r}")


def _outputs(model, batch, adapter) -> list[torch.Tensor]:
    """Every layer's node outputs ``[h1, ..., out]`` of ``model`` on the batch's graph."""
    x, ei = batch["graph"].on(adapter.device)
    if not hasattr(model, "layer_outputs"):
        raise ConfigError("d2dgn distils every layer's node embeddings: it needs a built-in graph model")
    return model.layer_outputs(x, ei)[1:]


def d2dgn_part_loss(
    student: list[torch.Tensor], teacher: list[torch.Tensor], batch: dict, adapter, temperature: float, beta: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One part's ``(loss, KL term, feature term)`` over the batch's rows, from the student's
    and the teacher's layer outputs on the same graph:

    ``KL term = T^2 * mean_{supervised rows} KL(p_teacher^T || p_student^T)`` (the adapter's
    per-row KL on logits divided by ``T``: class softmax of a node, Bernoulli of an edge and
    of its negative pair), ``feature term = sum_l MSE(e^l_student, e^l_teacher)`` over every
    row's embedding at every layer (a node's ``h_u^l``, an edge's ``h_u^l * h_v^l``),
    ``loss = KL term + beta * feature term``."""
    t = float(temperature)
    s_logits = adapter.readout(student[-1], batch)
    t_logits = adapter.readout(teacher[-1], batch)
    kl = adapter.per_example_kl(s_logits / t, t_logits / t, batch)
    n_sup = (batch["y"].to(kl.device) >= 0).sum().clamp(min=1)
    kl_term = (t * t) * kl.sum() / n_sup
    feat = sum(
        F.mse_loss(adapter.row_embedding(hs, batch), adapter.row_embedding(ht, batch))
        for hs, ht in zip(student, teacher)
    )
    return kl_term + beta * feat, kl_term, feat


@register
class D2DGN(Method):
    """D2DGN, Distill to Delete (Sinha, Mandal and Kankanhalli 2023, arXiv 2309.16173,
    "Distill to Delete: Unlearning in Graph Networks with Knowledge Distillation").

    The graph's knowledge is split into a retained part (``task.retain``: the retained
    edges, nodes and features) and a deleted part (``task.forget``). A *preserver* (the
    frozen original) teaches the student on the retained part and a *destroyer* (a
    randomly initialised GNN of the same architecture, ``task.model_factory`` with a seed
    derived from the run's) on the deleted part, both through response-based soft targets
    and feature-based node embeddings, as the paper's

    ``Loss = alpha * Loss_r + (1 - alpha) * Loss_f``,
    ``Loss_x = T^2 * KL(p_teacher^T || p_student^T) + beta * sum_l MSE(h^l_student, h^l_teacher)``

    over the part's rows (:func:`d2dgn_part_loss`): on link prediction the soft targets are
    the Bernoulli probabilities ``sigma(s/T)`` of an edge and of its negative pair, on node
    classification the class softmax at ``T``; the embeddings are every layer's node
    outputs (an edge row reads ``h_u * h_v``). ``alpha = 0.5``. Every model runs on the
    retain graph (the deleted rows on the task's scoring view). Both teachers' forward passes
    are counted in the cost.

    Sources and departures: only the paper's abstract and summaries could be read here (its
    method section could not be retrieved), so the split into preserver/destroyer, the two
    knowledge kinds and the ``alpha`` combination are the paper's; the rest follows the
    OpenGU benchmark's reimplementation (``D2DGNTrainer``: ``alpha = 0.5``, a KL variant on
    soft targets and an MSE variant on every layer's embeddings, the destroyer an untrained
    model) and is ours where stated: we add the two variants in one loss with weight
    ``beta`` (OpenGU runs one or the other), scale the KL by ``T^2`` (Hinton et al.), and
    start the student from the original (``student="original"``, cheaper; OpenGU resets it,
    ``student="fresh"``); defaults (50 full-graph Adam steps at ``lr=1e-2``, ``T = 1``,
    ``beta = 1``) were set on the karate and digits-kNN link tasks.
    """

    name = "d2dgn"
    summary = "Distil the original on the retained part and a random GNN on the deleted part (KL + embeddings)"
    Params = D2DGNParams
    modalities = ("graph",)
    citation = (
        "Sinha, Mandal and Kankanhalli 2023 (arXiv 2309.16173), Distill to Delete: Unlearning in Graph "
        "Networks with Knowledge Distillation (D2DGN)"
    )
    needs_retain = True
    contract_exempt = {
        "moves_forget:graph": "the destroyer is a random GNN whose edge probabilities are about 0.5, so the "
        "deleted part converges to a forget-edge loss near 2 log 2 = 1.39 on the tiny karate task (1.12 -> "
        "1.27 at the defaults, 1.36 at most measured), short of the +0.3 the check asks; the reference is at "
        "1.56",
    }

    def _unlearn(self, model, task, seed, progress) -> LoopStats:
        p = self.params
        adapter = task.adapter
        preserver = copy.deepcopy(task.original).to(task.device).eval().requires_grad_(False)
        destroyer = task.model_factory(derive_seed(seed, "d2dgn", "destroyer") % (2**31))
        destroyer = destroyer.to(task.device).eval().requires_grad_(False)
        if p.student == "fresh":
            fresh = task.model_factory(derive_seed(seed, "d2dgn", "student") % (2**31))
            model.load_state_dict(fresh.state_dict())
        alpha, t, beta = float(p.alpha), float(p.temperature), float(p.feature_weight)

        def objective(ctx):
            br, bf = ctx.batch("retain"), ctx.batch("forget")
            with torch.no_grad():
                keep, drop = _outputs(preserver, br, adapter), _outputs(destroyer, bf, adapter)
            ctx.count_forward(ctx.batch_size(br) + ctx.batch_size(bf))
            mine = _outputs(ctx.model, br, adapter)  # one pass where both parts share a graph
            other = mine if bf["graph"] is br["graph"] else _outputs(ctx.model, bf, adapter)
            loss_r = d2dgn_part_loss(mine, keep, br, adapter, t, beta)[0]
            loss_f = d2dgn_part_loss(other, drop, bf, adapter, t, beta)[0]
            return alpha * loss_r + (1 - alpha) * loss_f

        return run_loop(
            model,
            objective,
            {"forget": task.forget, "retain": task.retain},
            p.train_config(),
            seed,
            primary="forget",
            device=task.device,
            adapter=adapter,
            progress=progress,
            desc=self.name,
        )
