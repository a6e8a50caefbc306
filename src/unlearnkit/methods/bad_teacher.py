"""Bad teacher: distil from an incompetent teacher on the forget set and the original on retain data."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from ..data.dataset import ExampleSet
from ..engines.ensemble import LoopPlan
from ..errors import ConfigError
from ..utils import derive_seed
from .base import LoopParams, Method, hp, register
from .losses import kl_to_teacher


@dataclass
class BadTeacherParams(LoopParams):
    epochs: float = hp(3.0, "passes over the mixed data (forget set + retain subset)")
    lr: float = hp(1e-3, "learning rate")
    retain_fraction: float = hp(0.3, "fraction of the retain set distilled from the competent teacher")
    temperature: float = hp(1.0, "distillation temperature of the KL term")

    def __post_init__(self) -> None:
        if not 0.0 <= self.retain_fraction <= 1.0 or self.temperature <= 0:
            raise ConfigError("bad_teacher: retain_fraction must be in [0, 1] and temperature > 0")


def unlearning_data(task, seed: int, retain_fraction: float) -> tuple[ExampleSet, int]:
    """``D_f`` followed by a seeded random ``retain_fraction`` of ``D_r``, and ``|D_f|``: an
    example is a forget example (unlearning label 1) iff its position is below ``|D_f|``."""
    n_r = round(retain_fraction * len(task.retain))
    rng = np.random.default_rng(derive_seed(seed, "bad_teacher", "retain"))
    subset = task.retain.take(np.sort(rng.choice(len(task.retain), n_r, replace=False)))
    return ExampleSet.concat([task.forget, subset], "bad-teacher-data"), len(task.forget)


@register
class BadTeacher(Method):
    """Bad teacher (Chundawat, Tarun, Mandal and Kankanhalli 2023, AAAI, "Can Bad Teaching
    Induce Forgetting? Unlearning in Deep Networks Using an Incompetent Teacher").

    The student starts from the original; the *competent* teacher ``T_s`` is the frozen
    original and the *incompetent* teacher ``T_d`` a randomly initialised model of the same
    architecture (``task.model_factory`` with a seed derived from the run's seed). On
    batches mixing forget examples (unlearning label ``l_u = 1``) and a random subset ``X_r``
    of the retain set (``l_u = 0``, the paper uses 30%), the student minimises (eq. 2-4)

    ``L(x, l_u) = (1 - l_u) * KL(T_s(x) || S(x)) + l_u * KL(T_d(x) || S(x))``

    on softmax outputs at temperature ``T``, i.e. the KL from each example's own teacher
    to the student (:func:`~unlearnkit.methods.losses.kl_to_teacher`). Both teachers'
    forward passes are counted in the cost.

    Departures: the KL is averaged per example and scaled by ``T^2`` (the official code,
    github.com/vikram2000b/bad-teaching-unlearning, uses ``F.kl_div``'s element-wise mean,
    a constant factor ``1/K`` that Adam does not see); defaults were set on the digits
    task (3 epochs, Adam at ``1e-3``, batch 64) where the official run uses 1 epoch of Adam
    at ``1e-4`` with batches of 256 on CIFAR.
    """

    name = "bad_teacher"
    summary = "Distil from the original on retain data and from a random model on the forget set"
    Params = BadTeacherParams
    citation = (
        "Chundawat, Tarun, Mandal and Kankanhalli 2023 (AAAI), Can Bad Teaching Induce "
        "Forgetting? Unlearning in Deep Networks Using an Incompetent Teacher"
    )
    needs_retain = True

    def loop_plan(self, model, task, seed) -> LoopPlan:
        p = self.params
        adapter = task.adapter
        competent = copy.deepcopy(model).eval().requires_grad_(False)
        incompetent = task.model_factory(derive_seed(seed, "bad_teacher", "incompetent") % (2**31))
        incompetent = incompetent.to(task.device).eval().requires_grad_(False)
        data, n_forget = unlearning_data(task, seed, p.retain_fraction)

        def objective(ctx):
            batch = ctx.batch("train")
            logits = adapter.logits(ctx.model, batch)
            with torch.no_grad():
                good, bad = adapter.logits(competent, batch), adapter.logits(incompetent, batch)
            ctx.count_forward(2 * ctx.batch_size(batch))
            forget = (batch["index"] < n_forget).to(logits.device)[:, None]
            return kl_to_teacher(logits, torch.where(forget, bad, good), p.temperature)

        return LoopPlan(
            model, objective, {"train": data}, p.train_config(), seed, frozen=[competent, incompetent], desc=self.name
        )
