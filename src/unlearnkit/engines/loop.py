"""The one training loop: original training, retraining and every optimisation-based
unlearning method run through :func:`run_loop`.

What every loop needs is here, once: seeded determinism (each data stream shuffles
with its own generator derived from the seed), a step budget, gradient clipping, a
divergence guard (a non-finite loss or gradient raises :class:`DivergenceError`),
progress bars, callbacks (early stopping, checkpoints) and cost accounting (steps,
examples through forward and backward passes, wall time).

A method supplies an *objective*: a function of a :class:`StepContext` returning the
scalar loss to minimise. It pulls batches from named streams with
``ctx.batch("forget")``; the loop counts what it pulled.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Protocol, Sequence

import torch
from torch import nn

from ..data.dataset import ExampleSet
from ..errors import ConfigError, DivergenceError
from ..utils import derive_seed, seed_everything
from . import distributed


@dataclass
class TrainConfig:
    """Optimisation settings shared by training and unlearning.

    ``epochs`` counts passes over the *primary* stream; ``max_steps`` caps the
    number of optimiser steps whatever ``epochs`` says (the step budget).
    ``divergence_threshold``: a loss that is non-finite, or larger than this in
    magnitude, stops the run with :class:`DivergenceError` (ascent methods blow up
    without ever reaching inf in float32; ``None`` checks finiteness only).
    ``trainer``: how a task trains its original and its reference: ``"loop"`` (this
    loop) or ``"linear_optimum"`` (a linear model to the exact minimiser of the L2
    logistic objective with ``lambda = weight_decay``, :mod:`unlearnkit.linear`; what
    certified removal needs). Methods' own optimisation always uses the loop.
    ``objective_noise`` (``linear_optimum`` only): the standard deviation ``sigma`` of Guo
    et al.'s objective perturbation ``b^T theta``, ``b ~ N(0, sigma^2 I)``; every model
    trained with the recipe draws its own ``b`` from its seed (0 = no perturbation).
    """

    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    grad_clip: float | None = 5.0
    schedule: str = "constant"
    divergence_threshold: float | None = 1e6
    trainer: str = "loop"
    objective_noise: float = 0.0

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam", "adamw"):
            raise ConfigError(f"optimizer must be sgd, adam or adamw, not {self.optimizer!r}")
        if self.trainer not in ("loop", "linear_optimum"):
            raise ConfigError(f"trainer must be loop or linear_optimum, not {self.trainer!r}")
        if self.trainer == "linear_optimum" and self.weight_decay <= 0:
            raise ConfigError("trainer linear_optimum needs weight_decay > 0 (the L2 strength lambda)")
        if not self.objective_noise >= 0:
            raise ConfigError("objective_noise must be >= 0")
        if self.objective_noise and self.trainer != "linear_optimum":
            raise ConfigError("objective_noise (objective perturbation) needs trainer linear_optimum")
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"schedule must be constant or cosine, not {self.schedule!r}")
        if self.batch_size < 1 or self.lr <= 0 or self.epochs < 0:
            raise ConfigError("batch_size must be >= 1, lr > 0 and epochs >= 0")
        if self.max_steps is not None and self.max_steps < 0:
            raise ConfigError("max_steps must be >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LoopStats:
    """Cost of one optimisation: what the cost metrics are computed from."""

    steps: int = 0
    examples_forward: int = 0
    examples_backward: int = 0
    wall_time_s: float = 0.0
    final_loss: float = float("nan")
    losses: list[float] = field(default_factory=list)
    stopped_early: bool = False

    def __add__(self, other: "LoopStats") -> "LoopStats":
        return LoopStats(
            self.steps + other.steps,
            self.examples_forward + other.examples_forward,
            self.examples_backward + other.examples_backward,
            self.wall_time_s + other.wall_time_s,
            other.final_loss if other.steps else self.final_loss,
            self.losses + other.losses,
            self.stopped_early or other.stopped_early,
        )

    def to_dict(self, with_losses: bool = False) -> dict:
        d = asdict(self)
        if not with_losses:
            d.pop("losses")
        return d


class _Stream:
    """Endless seeded shuffled batches over one ExampleSet."""

    def __init__(self, data: ExampleSet, batch_size: int, seed: int, name: str):
        if len(data) == 0:
            raise ConfigError(f"the {name!r} data stream is empty")
        self.data = data
        self.batch_size = batch_size
        self.gen = torch.Generator().manual_seed(derive_seed(seed, "stream", name) % (2**63))
        self._it: Iterator[dict] = iter(())

    def next(self) -> dict:
        try:
            return next(self._it)
        except StopIteration:
            self._it = self.data.batches(self.batch_size, shuffle=True, generator=self.gen)
            return next(self._it)


class StepContext:
    """What an objective sees at one step."""

    def __init__(
        self,
        model: nn.Module,
        streams: dict[str, _Stream],
        stats: LoopStats,
        total_steps: int,
        device: torch.device,
        adapter=None,
    ):
        self.model = model
        self.adapter = adapter
        self._streams = streams
        self.stats = stats
        self.total_steps = total_steps
        self.device = device
        self.step = 0
        #: set by run_loop inside distributed.data_parallel(): batches are this rank's share
        self.data_parallel: distributed.DataParallel | None = None
        #: examples this rank / all ranks drew in the current step (data-parallel weights)
        self.step_examples = [0, 0]

    def batch(self, name: str) -> dict:
        """The next batch of stream ``name``, on the device; counted as forward+backward.
        Data-parallel, this rank's contiguous share of the global batch (counted as such)."""
        if name not in self._streams:
            raise ConfigError(f"no data stream named {name!r} (have {sorted(self._streams)})")
        b = self._streams[name].next()
        if self.data_parallel is not None:
            total = self.batch_size(b)
            b = distributed.shard_batch(b, total, self.data_parallel)
            self.step_examples[1] += total
            self.step_examples[0] += self.batch_size(b)
        n = self.batch_size(b)
        self.stats.examples_forward += n
        self.stats.examples_backward += n
        return {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in b.items()}

    def batch_size(self, batch: dict) -> int:
        """Examples in ``batch``: the adapter's count when the loop has one, else the
        length of the batch's ``index`` (every ExampleSet batch carries one)."""
        if self.adapter is not None:
            return int(self.adapter.batch_size(batch))
        return len(batch["index"])

    def count_forward(self, n: int) -> None:
        """Record ``n`` extra forward-only examples (e.g. a frozen teacher's pass)."""
        self.stats.examples_forward += int(n)

    @property
    def progress(self) -> float:
        return self.step / max(1, self.total_steps)


Objective = Callable[[StepContext], torch.Tensor]


class Callback(Protocol):
    def __call__(self, ctx: StepContext, loss: float) -> bool | None:
        """Called after each step; return True to stop."""


def make_optimizer(params, cfg: TrainConfig, **kwargs) -> torch.optim.Optimizer:
    """The optimiser ``cfg`` names; ``kwargs`` go to its constructor (e.g. ``fused=True``)."""
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **kwargs)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kwargs)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kwargs)


def count_steps(cfg: TrainConfig, primary_size: int) -> int:
    steps = int(math.ceil(cfg.epochs * math.ceil(primary_size / cfg.batch_size)))
    if cfg.max_steps is not None:
        steps = min(steps, cfg.max_steps)
    return steps


def run_loop(
    model: nn.Module,
    objective: Objective,
    streams: dict[str, ExampleSet],
    cfg: TrainConfig,
    seed: int,
    primary: str | None = None,
    steps: int | None = None,
    callbacks: Sequence[Callback] = (),
    grad_hook: Callable[[nn.Module], None] | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
    desc: str = "train",
    params: Sequence[torch.nn.Parameter] | None = None,
    adapter=None,
) -> LoopStats:
    """Minimise ``objective`` over ``streams`` for a budget of steps; returns the cost.

    Args:
        model: trained in place (methods pass a copy; the original stays untouched).
        objective: ``ctx -> scalar loss``.
        streams: named example sets the objective draws batches from.
        cfg: optimiser, batch size, epochs, step budget, clipping.
        seed: seeds weight noise (dropout) and every stream's shuffling.
        primary: the stream ``cfg.epochs`` counts passes over (default: the first).
        steps: an explicit number of steps (still capped by ``cfg.max_steps``).
        grad_hook: called after ``backward()`` and before clipping (e.g. saliency masks).
        params: the parameters to optimise (default: all that require grad).
        adapter: the task's adapter; its ``batch_size(batch)`` counts the examples of each
            batch (without one, the batch's ``index`` length).

    Inside :func:`unlearnkit.engines.distributed.data_parallel` the loop runs data-parallel
    (see that module): each rank takes its share of every global batch, gradients and the
    loss are averaged across ranks, the cost counters are summed, only rank 0 draws a
    progress bar. Outside it nothing here talks to other processes.
    """
    if not streams:
        raise ConfigError("run_loop needs at least one data stream")
    device = torch.device(device)
    primary = primary or next(iter(streams))
    if steps is None:
        steps = count_steps(cfg, len(streams[primary]))
    elif cfg.max_steps is not None:
        steps = min(steps, cfg.max_steps)
    dp = distributed.active()
    if dp is not None:
        distributed.check_streams({name: len(data) for name, data in streams.items()}, cfg.batch_size, dp)
    seed_everything(derive_seed(seed, "loop") % (2**31))
    s = {name: _Stream(data, cfg.batch_size, seed, name) for name, data in streams.items()}
    stats = LoopStats()
    model.to(device).train()
    if dp is not None:
        distributed.broadcast_module(model, dp)
        reduce_on = distributed.reduce_device(device)
        shared = [p for p in model.parameters() if p.requires_grad]
        shared += [p for p in (params or ()) if p.requires_grad and all(p is not q for q in shared)]
    opt = make_optimizer(params if params is not None else model.parameters(), cfg)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps)) if cfg.schedule == "cosine" else None
    ctx = StepContext(model, s, stats, steps, device, adapter)
    ctx.data_parallel = dp
    t0 = time.perf_counter()
    bar = None
    if progress and (dp is None or dp.is_main):
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=desc, leave=False, dynamic_ncols=True)
    try:
        for step in range(steps):
            ctx.step = step
            opt.zero_grad(set_to_none=True)
            ctx.step_examples = [0, 0]
            loss = objective(ctx)
            lv = float(loss.detach())  # the step's one read of the loss (a device sync on a GPU)
            if dp is not None:  # this rank's weight: its share of the examples the step drew
                mine, drawn = ctx.step_examples
                weight = mine / drawn if drawn else 1.0 / dp.world_size
                lv = distributed.all_sum([lv * weight], dp, reduce_on)[0]
            if not math.isfinite(lv) or (cfg.divergence_threshold is not None and abs(lv) > cfg.divergence_threshold):
                raise DivergenceError(
                    f"{desc}: loss became {lv} at step {step}; lower the learning rate or the step budget", step
                )
            loss.backward()
            if dp is not None:
                distributed.reduce_gradients(shared, weight, dp)
            if grad_hook is not None:
                grad_hook(model)
            if cfg.grad_clip:
                norm = torch.nn.utils.clip_grad_norm_(
                    [p for p in model.parameters() if p.grad is not None], cfg.grad_clip
                )
                if not torch.isfinite(norm):
                    raise DivergenceError(f"{desc}: gradient norm became {norm.item()} at step {step}", step)
            opt.step()
            if sched is not None:
                sched.step()
            stats.steps += 1
            stats.losses.append(lv)
            stats.final_loss = lv
            if bar is not None:
                bar.update(1)
                if step % 10 == 0:
                    bar.set_postfix(loss=f"{lv:.4f}")
            stop = any(cb(ctx, lv) for cb in callbacks)
            if dp is not None and callbacks:
                stop = distributed.any_rank(stop, dp, reduce_on)
            if stop:
                stats.stopped_early = True
                break
    finally:
        if bar is not None:
            bar.close()
        stats.wall_time_s = time.perf_counter() - t0
    if dp is not None:  # the run's cost is every rank's examples together
        fwd, bwd = distributed.all_sum([stats.examples_forward, stats.examples_backward], dp, reduce_on)
        stats.examples_forward, stats.examples_backward = int(fwd), int(bwd)
    model.eval()
    return stats


def cross_entropy_objective(adapter, stream: str = "train") -> Objective:
    """Plain supervised training: mean per-example loss on one stream."""

    def objective(ctx: StepContext) -> torch.Tensor:
        return adapter.per_example_loss(ctx.model, ctx.batch(stream)).mean()

    return objective


class EarlyStopping:
    """Stop when ``score(model)`` has not improved for ``patience`` checks (every ``every`` steps)."""

    def __init__(self, score: Callable[[nn.Module], float], every: int = 10, patience: int = 3, mode: str = "min"):
        self.score, self.every, self.patience, self.mode = score, every, patience, mode
        self.best = math.inf if mode == "min" else -math.inf
        self.bad = 0

    def __call__(self, ctx: StepContext, loss: float) -> bool:
        if (ctx.step + 1) % self.every:
            return False
        v = self.score(ctx.model)
        better = v < self.best if self.mode == "min" else v > self.best
        if better:
            self.best, self.bad = v, 0
        else:
            self.bad += 1
        return self.bad >= self.patience


class Checkpoint:
    """Keep a copy of the parameters every ``every`` steps (in memory, by step)."""

    def __init__(self, every: int):
        self.every = every
        self.states: dict[int, dict[str, torch.Tensor]] = {}

    def __call__(self, ctx: StepContext, loss: float) -> bool:
        if (ctx.step + 1) % self.every == 0:
            self.states[ctx.step + 1] = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}
        return False
