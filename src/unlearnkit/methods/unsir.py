"""UNSIR: learn error-maximising noise for the forget labels, impair the model with it, then repair."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import ExampleSet
from ..engines.ensemble import LoopPlan, run_plan
from ..engines.loop import LoopStats, TrainConfig, cross_entropy_objective
from ..errors import ConfigError
from ..utils import derive_seed
from .base import LoopParams, Method, hp, register


@dataclass
class UNSIRParams(LoopParams):
    epochs: float = hp(1.0, "impair passes over noise + retain subset")
    lr: float = hp(3e-3, "impair learning rate (the paper's impair step uses a high one)")
    repair_epochs: float = hp(2.0, "repair passes over the retain subset")
    repair_lr: float = hp(1e-3, "repair learning rate")
    retain_fraction: float = hp(0.5, "fraction of the retain set (per class) used by impair and repair")
    noise_size: int = hp(
        64,
        "most distinct noise examples learned per forget label (the impair data "
        "repeats them to as many as the forget set has of that label)",
    )
    noise_steps: int = hp(40, "Adam steps that learn the noise (all forget labels at once)")
    noise_lr: float = hp(0.1, "learning rate of the noise")
    noise_lambda: float = hp(0.1, "weight of the noise's squared L2 norm (keeps it bounded)")

    def __post_init__(self) -> None:
        if not 0.0 < self.retain_fraction <= 1.0:
            raise ConfigError(f"unsir: retain_fraction must be in (0, 1], not {self.retain_fraction}")
        if self.noise_size < 1 or self.noise_steps < 0 or self.noise_lambda < 0:
            raise ConfigError("unsir: noise_size must be >= 1, noise_steps and noise_lambda >= 0")
        if self.repair_epochs < 0 or self.noise_lr <= 0 or self.repair_lr <= 0:
            raise ConfigError("unsir: repair_epochs must be >= 0 and the learning rates > 0")


class _Noise(nn.Module):
    """A learnable batch of inputs."""

    def __init__(self, init: torch.Tensor):
        super().__init__()
        self.x = nn.Parameter(init)

    def forward(self) -> torch.Tensor:
        return self.x


def learn_noise(
    model: nn.Module, task, labels: torch.Tensor, p: UNSIRParams, seed: int, steps: int
) -> tuple[torch.Tensor, LoopStats]:
    """Error-maximising noise, one input per entry of ``labels``:
    ``argmin_N -mean_i CE(f(N_i; w_o), y_i) + lambda * mean_i ||N_i||^2`` from ``N ~ N(0, I)``, by
    Adam with the model frozen (eval mode). Every input's gradient is its own term scaled by
    ``1/len(labels)``, so with Adam (scale-invariant) learning all labels in one batch equals
    learning each label's noise on its own, as the paper does. (:func:`noise_plan`, run.)"""
    plan = noise_plan(model, task, labels, p, seed, steps)
    stats = run_plan(plan, task.device, task.adapter)
    return plan.model.x.detach().cpu(), stats


def noise_plan(model: nn.Module, task, labels: torch.Tensor, p: UNSIRParams, seed: int, steps: int) -> LoopPlan:
    """:func:`learn_noise`'s loop as a plan: the trained "model" is the noise, ``model`` is frozen
    (eval mode, no gradients until the plan has run)."""
    gen = torch.Generator().manual_seed(derive_seed(seed, "unsir", "noise") % (2**63))
    noise = _Noise(torch.randn((len(labels), *task.forget.input_shape), generator=gen))
    y = labels.to(task.device)
    flags = [q.requires_grad for q in model.parameters()]
    was = model.training
    model.eval().requires_grad_(False)

    def objective(ctx):
        x = ctx.model()
        ctx.count_forward(len(x))
        ctx.stats.examples_backward += len(x)
        ce = F.cross_entropy(task.adapter.logits(model, {"x": x}), y)
        return -ce + p.noise_lambda * x.pow(2).flatten(1).sum(1).mean()

    def restore() -> None:
        for q, f in zip(model.parameters(), flags):
            q.requires_grad_(f)
        model.train(was)

    cfg = TrainConfig(epochs=1, lr=p.noise_lr, optimizer="adam", grad_clip=None)
    # the stream is not drawn from: the noise itself is the data
    return LoopPlan(
        noise,
        objective,
        {"forget": task.forget},
        cfg,
        derive_seed(seed, "unsir-noise"),
        steps=steps,
        frozen=[model],
        desc="unsir-noise",
        after=restore,
    )


def retain_subset(task, fraction: float, seed: int) -> ExampleSet:
    """A seeded ``fraction`` of each class of the retain set (at least one example per class)."""
    if fraction >= 1.0:
        return task.retain
    rng = np.random.default_rng(derive_seed(seed, "unsir", "retain"))
    labels = task.retain.labels.numpy()
    keep = []
    for c in np.unique(labels):
        pos = np.flatnonzero(labels == c)
        keep.extend(rng.choice(pos, max(1, int(round(fraction * len(pos)))), replace=False))
    return task.retain.take(np.sort(keep), name="retain-subset")


@register
class UNSIR(Method):
    """UNSIR (Tarun et al. 2023, IEEE TNNLS, "Fast Yet Effective Machine Unlearning").

    1. Noise: for each forget label ``c``, learn a noise batch ``N_c`` (at most ``noise_size``
       inputs) that maximises the frozen original's loss on ``c``:
       ``argmin_N -CE(f(N; w_o), c) + lambda * ||N||``, with the official code's squared L2 norm
       per input averaged over the batch, by Adam (``noise_steps`` steps at ``noise_lr``,
       ``lambda = 0.1``) from ``N ~ N(0, I)``; all labels' batches are learned as one batch
       (equivalent under Adam, see :func:`learn_noise`).
    2. Impair: ``epochs`` (1) pass of ``min_w E CE(f(x; w), y)`` over ``{(N_c, c)}`` shuffled with
       a subset of the retain set, at a high learning rate. Each label's noise batch is repeated to as
       many examples as the forget set has of that label (the paper's 256 noise inputs x 20
       copies against 5000 forget images per CIFAR-10 class).
    3. Repair: ``repair_epochs`` passes of ``min_w E CE`` on the same retain subset.

    Designed for class forgetting. For other scenarios noise is learned for every label
    present in the forget set, in proportion to its count, which impairs those classes as
    a whole (not only the forget examples) and leaves it to repair to restore them. All
    optimiser steps (noise, impair, repair) count against ``max_steps``, in that order, and
    all their passes are in the cost. Departures: sizes and rates scaled to small data and
    checked on digits (the paper: ResNets on CIFAR, 1000 retain images per class, one
    impair epoch at Adam 0.02, one repair epoch at 0.01; here 50% of the retain set,
    impair at 3e-3, two repair epochs at 1e-3); the noise is not clamped to the input range.

    :meth:`unlearn_many` runs every model's noise, impair and repair loops as three vectorised
    ensembles in a row (:meth:`loop_plans`; the noise is the trained "model" of the first).
    """

    name = "unsir"
    summary = "learn error-maximising noise for the forget labels, impair with it, repair on retain"
    Params = UNSIRParams
    citation = "Tarun et al. 2023 (IEEE TNNLS), Fast Yet Effective Machine Unlearning (UNSIR)"
    needs_retain = True

    def loop_plans(self, model, task, seed):
        p = self.params
        budget = p.max_steps if p.max_steps is not None else math.inf
        labels, counts = np.unique(task.forget.labels.numpy(), return_counts=True)
        sizes = np.minimum(counts, p.noise_size)
        noise_labels = torch.as_tensor(np.repeat(labels, sizes))
        plan = noise_plan(model, task, noise_labels, p, seed, int(min(p.noise_steps, budget)))
        total = yield plan
        noise = plan.model.x.detach().cpu()
        # each label's noise batch, cycled to as many inputs as the forget set has of that label
        first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        pick = np.concatenate([f + np.arange(n) % k for f, n, k in zip(first, counts, sizes)])
        noise_set = ExampleSet(
            noise[pick],
            noise_labels[pick],
            [f"unsir-noise-{i}" for i in range(len(pick))],
            num_classes=task.num_classes,
            name="unsir-noise",
        )
        retain = retain_subset(task, p.retain_fraction, seed)
        phases = (
            ("unsir-impair", ExampleSet.concat([noise_set, retain], "unsir-impair"), p.epochs, p.lr),
            ("unsir-repair", retain, p.repair_epochs, p.repair_lr),
        )
        for desc, data, epochs, lr in phases:
            left = budget - total.steps
            if left <= 0:
                break
            cfg = p.train_config(epochs=epochs, lr=lr, max_steps=None if left == math.inf else int(left))
            total = total + (
                yield LoopPlan(
                    model,
                    cross_entropy_objective(task.adapter, "train"),
                    {"train": data},
                    cfg,
                    derive_seed(seed, desc),
                    desc=desc,
                )
            )
        return None
