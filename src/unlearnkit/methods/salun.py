"""SalUn: random-label unlearning restricted to the weights most salient for the forget set."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..engines.ensemble import LoopPlan
from ..engines.loop import LoopStats, cross_entropy_objective
from ..errors import ConfigError
from .base import Method, hp, register
from .losses import saliency_mask
from .random_labels import RandomLabelsParams, random_label_data


@dataclass
class SalUnParams(RandomLabelsParams):
    sparsity: float = hp(0.5, "fraction of weights updated: those with the largest forget-loss gradient")

    def __post_init__(self) -> None:
        if not 0.0 < self.sparsity <= 1.0:
            raise ConfigError(f"salun: sparsity must be in (0, 1], not {self.sparsity}")


def forget_gradients(model: nn.Module, task, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Gradient of the mean forget-set cross-entropy at the current weights (one pass, eval
    mode so that normalisation statistics are not updated)."""
    was_training = model.training
    model.eval().zero_grad(set_to_none=True)
    n = len(task.forget)
    for batch in task.forget.batches(batch_size):
        (task.adapter.per_example_loss(model, batch).sum() / n).backward()
    grads = {
        name: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
        for name, p in model.named_parameters()
        if p.requires_grad
    }
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return grads


@register
class SalUn(Method):
    """SalUn (Fan et al. 2024, ICLR, "SalUn: Empowering Machine Unlearning via
    Gradient-based Weight Saliency").

    1. Saliency (eq. 5): ``m = 1(|grad_theta l_f(theta; D_f)|_{theta=theta_o} >= gamma)`` with
       ``l_f`` the forgetting loss (``-CE`` on the forget set, whose gradient has the same
       magnitude as CE's) and ``gamma`` the global threshold keeping the ``sparsity`` fraction
       of weights (the paper's 50%).
    2. Unlearning (eq. 6 with random labels): minimise ``E_{D_f' ∪ D_r} CE(f(x), y)`` (the
       forget set relabelled with random wrong labels, shuffled with the retain set, as in
       :class:`~unlearnkit.methods.random_labels.RandomLabels`) updating only masked weights,
       ``theta_u = m * (theta_o + Delta) + (1 - m) * theta_o`` (gradients outside the mask
       are zeroed before each step).

    The saliency pass (one forward and backward over the forget set) is counted in the
    cost. Departures: random labels are always wrong (the official code draws from all
    classes); the mask is exact only for optimisers without decoupled weight decay (the
    default Adam has none).
    """

    name = "salun"
    Params = SalUnParams
    citation = (
        "Fan et al. 2024 (ICLR), SalUn: Empowering Machine Unlearning via "
        "Gradient-based Weight Saliency in Both Image Classification and Generation"
    )
    needs_retain = True

    def loop_plan(self, model, task, seed) -> LoopPlan:
        p = self.params
        masks = saliency_mask(forget_gradients(model, task), p.sparsity)
        n = len(task.forget)
        return LoopPlan(
            model,
            cross_entropy_objective(task.adapter, "train"),
            {"train": random_label_data(task, seed, p.use_retain)},
            p.train_config(),
            seed,
            grad_masks=masks,
            desc=self.name,
            cost=LoopStats(examples_forward=n, examples_backward=n),
        )
