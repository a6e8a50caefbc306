"""Selective Synaptic Dampening: shrink the weights far more important to the forget set than to the training data."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engines.loop import LoopStats
from ..errors import ConfigError, DivergenceError
from .base import Method, hp, register
from .curvature import all_finite, diagonal_fisher, trainable


@dataclass
class SSDParams:
    alpha: float = hp(10.0, "selection weighting: dampen theta_i where []_Df,i > alpha * []_D,i")
    lam: float = hp(1.0, "dampening constant lambda: beta = min(lambda * []_D,i / []_Df,i, 1)")
    batch_size: int = hp(
        64,
        "batch size of the importance passes (the importances are mean "
        "squared mini-batch gradients, so they depend on it)",
    )

    def __post_init__(self) -> None:
        if self.alpha <= 0 or self.lam <= 0 or self.batch_size < 1:
            raise ConfigError("ssd: alpha and lam must be > 0 and batch_size >= 1")


@register
class SSD(Method):
    """Selective Synaptic Dampening (Foster, Schoepf and Brintrup 2024, AAAI, "Fast Machine
    Unlearning Without Retraining Through Selective Synaptic Dampening").

    With ``[]_D`` and ``[]_Df`` the diagonal Fisher information (importance) of each
    parameter on the full training data ``D`` and on the forget set ``D_f``, every
    parameter with ``[]_Df,i > alpha * []_D,i`` (selection, eq. 2) is multiplied by
    ``beta = min(lambda * []_D,i / []_Df,i, 1)`` (dampening, eq. 3); the others are left
    unchanged. Defaults are the paper's ``alpha = 10, lambda = 1``.

    The importances are computed as in the official code (github.com/if-loops/
    selective-synaptic-dampening): the squared gradient of each mini-batch's mean
    cross-entropy, averaged over the batches of ``D_f`` and of ``D = D_r ∪ D_f``
    (:func:`~unlearnkit.methods.curvature.diagonal_fisher`, ``kind="batch"``), with the
    model in eval mode. No optimisation loop: the cost is the two importance passes
    (``|D_f| + |D|`` examples forward and backward), recorded as one step (the update).
    """

    name = "ssd"
    summary = "Dampen weights far more important (Fisher) to the forget set than to the training data"
    Params = SSDParams
    citation = (
        "Foster, Schoepf and Brintrup 2024 (AAAI), Fast Machine Unlearning Without "
        "Retraining Through Selective Synaptic Dampening"
    )
    contract_exempt = {
        "step_budget": "no optimisation loop: a single closed-form dampening of the weights, so there "
        "is no max_steps to respect",
        "divergence": "no learning rate: the update only shrinks weights (beta <= 1) and cannot diverge",
    }

    def _unlearn(self, model, task, seed, progress) -> LoopStats:
        p = self.params
        forget_imp = diagonal_fisher(model, task.adapter, task.forget, p.batch_size, "batch")
        full_imp = diagonal_fisher(model, task.adapter, task.train, p.batch_size, "batch")
        with torch.no_grad():
            for name, param in trainable(model).items():
                f, d = forget_imp[name], full_imp[name]
                selected = f > p.alpha * d
                beta = torch.clamp(p.lam * d / f.clamp_min(torch.finfo(f.dtype).tiny), max=1.0)
                param.mul_(torch.where(selected, beta, torch.ones_like(beta)).to(param.dtype))
        if not all_finite(model):
            raise DivergenceError("ssd: the dampened weights are not finite")
        n = len(task.forget) + len(task.train)
        return LoopStats(steps=1, examples_forward=n, examples_backward=n)
