"""l1-sparse unlearning: fine-tune on the retain set with a decaying L1 penalty on the weights."""

from __future__ import annotations

from dataclasses import dataclass

from ..engines.ensemble import LoopPlan
from ..errors import ConfigError
from .base import LoopParams, Method, hp, register


@dataclass
class L1SparseParams(LoopParams):
    epochs: float = hp(3.0, "passes over the retain set")
    lr: float = hp(3e-3, "learning rate")
    gamma: float = hp(3e-4, "initial weight gamma of the L1 penalty gamma_t * ||theta||_1 (sum of |theta_i|)")

    def __post_init__(self) -> None:
        if self.gamma < 0:
            raise ConfigError(f"l1_sparse: gamma must be >= 0, not {self.gamma}")


def l1_weight(gamma: float, progress: float) -> float:
    """The linearly decaying schedule ``gamma_t = gamma * (1 - t / T)``."""
    return gamma * max(0.0, 1.0 - progress)


@register
class L1Sparse(Method):
    """l1-sparse unlearning (Jia et al. 2023, NeurIPS, "Model Sparsity Can Simplify Machine
    Unlearning", Sec. 4, eq. 4): fine-tune the original on the retain set with a sparsity
    penalty whose weight decays linearly over the unlearning run,

    ``min_theta  E_{(x, y) in D_r} CE(f(x; theta), y) + gamma_t * ||theta||_1``,
    ``gamma_t = gamma * (1 - t / T)``,

    from ``theta = theta_o`` (the paper's "linearly decreasing" scheme, found better than a
    constant or growing ``gamma_t``). ``||theta||_1`` is the sum of absolute values of all
    trainable parameters, as in the official code (github.com/OPTML-Group/Unlearn-Sparse,
    ``FT_l1``).

    Departures: ``t / T`` is the fraction of optimiser steps done, so the weight decays per
    step (the official code decays it per epoch); Adam with defaults set on the digits task
    (the paper uses SGD at ``lr = 0.01`` with ``gamma`` around ``5e-4`` on CIFAR-10). The
    paper's other route, pruning the model before unlearning (the "prune first, then
    unlearn" paradigm), is out of scope: this is the sparsity-aware unlearning step only.
    """

    name = "l1_sparse"
    summary = "Fine-tune on the retain set with a linearly decaying L1 penalty"
    Params = L1SparseParams
    citation = "Jia et al. 2023 (NeurIPS), Model Sparsity Can Simplify Machine Unlearning (l1-sparse)"
    needs_retain = True

    def loop_plan(self, model, task, seed) -> LoopPlan:
        p = self.params
        adapter = task.adapter

        def objective(ctx):
            loss = adapter.per_example_loss(ctx.model, ctx.batch("retain")).mean()
            gamma_t = l1_weight(p.gamma, ctx.progress)
            if gamma_t:
                loss = loss + gamma_t * sum(w.abs().sum() for w in ctx.model.parameters() if w.requires_grad)
            return loss

        return LoopPlan(model, objective, {"retain": task.retain}, p.train_config(), seed, desc=self.name)
