"""SCRUB: a student moves away from its frozen teacher on the forget set and stays close on the retain set."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from ..engines.ensemble import LoopPlan
from ..engines.loop import Objective
from ..errors import ConfigError
from .base import LoopParams, Method, hp, register
from .losses import kl_to_teacher


@dataclass
class ScrubParams(LoopParams):
    epochs: float = hp(
        3.0, "SCRUB epochs; each is a max pass over the forget set (first msteps) then a min pass over the retain set"
    )
    lr: float = hp(1e-3, "learning rate")
    batch_size: int = hp(64, "batch size of both streams")
    msteps: int = hp(2, "number of epochs that start with a max pass over the forget set")
    alpha: float = hp(0.001, "weight of KL(teacher || student) on the retain set")
    gamma: float = hp(0.99, "weight of the cross-entropy on the retain set")
    temperature: float = hp(4.0, "distillation temperature of the KL terms")

    def __post_init__(self) -> None:
        if self.msteps < 0 or self.alpha < 0 or self.gamma < 0 or self.temperature <= 0:
            raise ConfigError("scrub: msteps, alpha and gamma must be >= 0 and temperature > 0")


def scrub_schedule(epochs: float, msteps: int, forget_batches: int, retain_batches: int) -> list[str]:
    """The phase of each optimiser step: per epoch ``e``, ``forget_batches`` max steps when
    ``e < msteps``, then ``retain_batches`` min steps (a fractional last epoch is cut)."""
    phases: list[str] = []
    for e in range(int(math.ceil(epochs))):
        epoch = (["max"] * forget_batches if e < msteps else []) + ["min"] * retain_batches
        if e + 1 > epochs:
            epoch = epoch[: int(round((epochs - e) * len(epoch)))]
        phases += epoch
    return phases


@register
class Scrub(Method):
    """SCRUB (Kurmanji et al. 2023, "Towards Unbounded Machine Unlearning", NeurIPS).

    The student ``w^u`` starts at the original weights; the teacher ``w^o`` is the frozen
    original. With ``d(x; w^u) = KL(p(f(x; w^o)/T) || p(f(x; w^u)/T)) * T^2`` the paper's
    objective is

    ``min_{w^u}  alpha/N_r sum_r d(x_r; w^u) + gamma/N_r sum_r CE(f(x_r; w^u), y_r)
                 - 1/N_f sum_f d(x_f; w^u)``

    optimised by alternation: each epoch first takes *max* steps (minimise ``-d`` over one
    pass of the forget set), only during the first ``msteps`` epochs, then *min* steps
    (``alpha * d + gamma * CE`` over one pass of the retain set), with one optimiser as in
    the official code (github.com/meghdadk/SCRUB). Departures: Adam by default and one batch
    size for both sets (the official runs use SGD, forget batches of 32 and retain batches
    of 128); the defaults are the official small-scale ones (``alpha=0.001, gamma=0.99, T=4,
    msteps=2``, 3 epochs) with Adam at ``lr=1e-3``, checked on the bundled digits task. The teacher's forward passes are counted in the cost.
    """

    name = "scrub"
    Params = ScrubParams
    citation = "Kurmanji et al. 2023 (NeurIPS), Towards Unbounded Machine Unlearning (SCRUB)"
    needs_retain = True

    def loop_plan(self, model, task, seed) -> LoopPlan:
        p = self.params
        cfg = p.train_config()
        phases = scrub_schedule(
            p.epochs,
            p.msteps,
            math.ceil(len(task.forget) / cfg.batch_size),
            math.ceil(len(task.retain) / cfg.batch_size),
        )
        teacher = frozen_copy(model)
        return LoopPlan(
            model,
            scrub_objective(task.adapter, teacher, phases, p),
            {"forget": task.forget, "retain": task.retain},
            cfg,
            seed,
            steps=len(phases),
            frozen=[teacher],
            desc=self.name,
        )


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of ``model`` (eval mode, no gradients): a teacher or reference."""
    return copy.deepcopy(model).eval().requires_grad_(False)


def scrub_objective(adapter, teacher: torch.nn.Module, phases: list[str], p: ScrubParams) -> Objective:
    """SCRUB's step objective: ``-d`` on a forget batch at "max" steps, ``alpha * d + gamma * CE``
    on a retain batch at "min" steps, against the frozen ``teacher`` (:func:`frozen_copy` of the
    original). The teacher's forward passes are counted."""

    def objective(ctx):
        phase = phases[ctx.step]
        batch = ctx.batch("forget" if phase == "max" else "retain")
        logits = adapter.logits(ctx.model, batch)
        with torch.no_grad():
            teacher_logits = adapter.logits(teacher, batch)
        ctx.count_forward(ctx.batch_size(batch))
        kl = kl_to_teacher(logits, teacher_logits, p.temperature)
        if phase == "max":
            return -kl
        return p.alpha * kl + p.gamma * adapter.per_example_loss(ctx.model, batch, logits=logits).mean()

    return objective
