"""Data-parallel training and unlearning under ``torch.distributed``.

The one loop (:func:`unlearnkit.engines.loop.run_loop`) runs unchanged method code on
several processes (one per GPU, or gloo processes on a CPU) when it is called inside
:func:`data_parallel`:

* every rank draws the same global batch of every stream (the streams' seeded orders are
  the same on every rank) and keeps a disjoint contiguous slice of it, so the global batch,
  the number of steps and the data order equal one process's;
* after ``backward()`` the gradients are averaged across ranks, each rank's weighted by its
  share of the examples the step drew (``n_r / n``); the loss the divergence guard reads is
  averaged the same way, so every rank takes the same decisions;
* the cost counters (examples through forward and backward passes, frozen teachers' passes
  counted with ``ctx.count_forward``) are summed across ranks at the end of the loop, so a
  run's cost equals the one-process run's;
* progress bars are drawn on rank 0 only; side effects outside the loop (store writes,
  artifacts, printing) are the caller's, gated by :func:`is_main`.

Why gradients are averaged with ``all_reduce`` and the model is not wrapped in
``DistributedDataParallel``: methods call the model several times per step (a forget and a
retain batch, SCRUB's alternating steps, NPO's and SCRUB's frozen references that are
separate modules), read it under ``torch.no_grad`` and pass it to adapters that look at its
type (the causal-LM adapter's answer-only logits path checks the model's ``forward``);
``DistributedDataParallel`` expects one forward per backward of a wrapped module and would
change what the adapters see. Averaging after ``backward()`` needs nothing from the method:
the objective, its frozen modules and its streams stay as they are. The price is that the
communication does not overlap the backward pass (DDP's buckets do); the gradients go in
one flattened ``all_reduce`` per step.

What this gives is the one-process result up to float reduction order when every stream's
batches split evenly (or when the objective reads one stream: the ``n_r / n`` weights make a
mean loss's gradient exactly the global batch's mean). An objective that averages over
several streams whose batches split unevenly (a short last batch of 5 on 2 ranks beside a
retain batch of 64) gets each rank's terms weighted by the rank's share of all examples the
step drew, as ``DistributedDataParallel`` weights ranks equally: close to, not equal to, the
one-process gradient. Dropout masks and other random draws inside the objective differ from
one process's (each rank draws for its own rows). Every rank must pull at least one example
of every stream at every step: a stream whose batches hold fewer examples than there are
ranks is refused before training.

Use (Python; the launcher is ``torchrun``, i.e. ``python -m torch.distributed.run``)::

    from unlearnkit.engines import distributed as dist_uk

    ctx = dist_uk.init_process_group(device="cuda:0")   # env:// from torchrun
    with dist_uk.data_parallel():
        result = method.unlearn(task, seed=0)        # same method code
    if dist_uk.is_main():
        save(result)
    dist_uk.destroy_process_group()

or, in tests and notebooks, :func:`launch` (``torch.multiprocessing.spawn``) runs a function
on ``world_size`` local processes and returns what each rank returned.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import socket
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError


@dataclass(frozen=True)
class DataParallel:
    """The process group a loop runs data-parallel in: this process's ``rank`` of
    ``world_size``, and the ``group`` (None: the default group)."""

    rank: int
    world_size: int
    group: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


# the data-parallel setting of the code running in this context (a context variable, not a
# module global: a thread or task that did not enter data_parallel() runs as one process)
_ACTIVE: contextvars.ContextVar[DataParallel | None] = contextvars.ContextVar("unlearnkit_data_parallel", default=None)


def active() -> DataParallel | None:
    """The data-parallel setting :func:`data_parallel` entered here, or None (one process)."""
    return _ACTIVE.get()


def is_main() -> bool:
    """True on rank 0 of an initialised process group, and in a process without one."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def default_backend(device: torch.device | str) -> str:
    """``nccl`` for CUDA devices, ``gloo`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_process_group(
    device: torch.device | str = "cpu", backend: str | None = None, timeout_s: float = 1800.0
) -> DataParallel:
    """Join the process group described by the environment (``env://``: ``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``, as ``torchrun`` sets them).

    ``device`` is this process's device (for CUDA, ``cuda:<LOCAL_RANK>`` is the usual choice;
    it is made the current device). ``backend`` defaults to :func:`default_backend`.
    """
    if not dist.is_available():
        raise ConfigError("torch.distributed is not available in this PyTorch build")
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(
            f"no process group to join: {', '.join(missing)} not set; start the processes with "
            "`python -m torch.distributed.run --nproc-per-node N ...` (torchrun) or unlearnkit's launch()"
        )
    device = torch.device(device)
    backend = backend or default_backend(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", timeout=timedelta(seconds=timeout_s))
    return DataParallel(dist.get_rank(), dist.get_world_size())


def destroy_process_group() -> None:
    """Leave the process group (a no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def data_parallel(group: Any = None) -> Iterator[DataParallel]:
    """Run every :func:`~unlearnkit.engines.loop.run_loop` inside the block data-parallel
    over ``group`` (default: the initialised default group)."""
    if not (dist.is_available() and dist.is_initialized()):
        raise ConfigError("data_parallel() needs an initialised process group: call init_process_group() first")
    dp = DataParallel(dist.get_rank(group), dist.get_world_size(group), group)
    token = _ACTIVE.set(dp)
    try:
        yield dp
    finally:
        _ACTIVE.reset(token)


# ------------------------------------------------------------------ what the loop calls
def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous slice ``[start, end)`` of ``n`` rows: sizes differ by at most one."""
    return n * rank // world_size, n * (rank + 1) // world_size


def shard_batch(batch: dict, n: int, dp: DataParallel) -> dict:
    """The rank's slice of a batch of ``n`` rows: every tensor (and list) whose first
    dimension is ``n`` is cut; anything else (a scalar, a shared table) is kept whole."""
    start, end = shard_bounds(n, dp.rank, dp.world_size)
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == n:
            out[k] = v[start:end]
        elif isinstance(v, (list, tuple)) and len(v) == n:
            out[k] = v[start:end]
        else:
            out[k] = v
    return out


def check_streams(sizes: dict[str, int], batch_size: int, dp: DataParallel) -> None:
    """Refuse, before any step, a stream whose batches cannot give every rank an example."""
    for name, n in sizes.items():
        full = min(batch_size, n)
        last = n % batch_size or full
        smallest = min(full, last)
        if smallest < dp.world_size:
            raise ConfigError(
                f"data-parallel: the {name!r} stream has batches of {smallest} example(s), fewer than the "
                f"{dp.world_size} ranks; raise the batch size, change the set's size or use fewer ranks"
            )


def broadcast_module(model: nn.Module, dp: DataParallel) -> None:
    """Make every rank's parameters and buffers rank 0's (``DistributedDataParallel`` does the
    same when it wraps a model): ranks start identical whatever they built."""
    src = dist.get_global_rank(dp.group, 0) if dp.group is not None else 0
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src=src, group=dp.group)


def reduce_gradients(params: Sequence[nn.Parameter], weight: float, dp: DataParallel) -> None:
    """``p.grad <- sum_r weight_r * p.grad_r`` for every parameter, in one ``all_reduce``.

    A parameter without a gradient on a rank contributes zero there; it gets a gradient if
    any rank had one and stays ``None`` if none had (an optimiser skips ``None`` gradients,
    and a zero gradient would still move Adam's moments)."""
    params = list(params)
    if not params:
        return
    ref = params[0]
    parts, flags = [], []
    for p in params:
        if p.grad is None:
            parts.append(torch.zeros(p.numel(), dtype=p.dtype, device=p.device))
            flags.append(0.0)
        else:
            parts.append(p.grad.detach().reshape(-1) * weight)
            flags.append(1.0)
    flat = torch.cat([*parts, torch.tensor(flags, dtype=ref.dtype, device=ref.device)])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=dp.group)
    offset = 0
    for p in params:
        g = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
        p.grad = g.clone() if p.grad is None else p.grad.copy_(g)
    had = flat[offset:]
    for p, h in zip(params, had.tolist()):
        if h == 0.0:
            p.grad = None


def all_sum(values: Sequence[float], dp: DataParallel, device: torch.device | str = "cpu") -> list[float]:
    """Sum numbers across ranks (float64, so counts stay exact)."""
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=dp.group)
    return t.tolist()


def any_rank(flag: bool, dp: DataParallel, device: torch.device | str = "cpu") -> bool:
    """Whether ``flag`` is true on any rank (so every rank stops together)."""
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=dp.group)
    return bool(t.item() > 0)


def reduce_device(device: torch.device) -> torch.device:
    """Where small tensors for collectives live: the loop's device (nccl needs CUDA tensors)."""
    return device if device.type == "cuda" else torch.device("cpu")


# ------------------------------------------------------------------ launcher for tests and notebooks
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, fn: Callable, world_size: int, port: int, args: tuple, out_dir: str, timeout_s: float) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    init_process_group("cpu", backend="gloo", timeout_s=timeout_s)
    try:
        with data_parallel():
            result = fn(*args)
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        destroy_process_group()


def launch(fn: Callable, world_size: int, args: tuple = (), timeout_s: float = 120.0) -> list[Any]:
    """Run ``fn(*args)`` on ``world_size`` local CPU processes (gloo) inside
    :func:`data_parallel`; returns each rank's return value, by rank.

    ``fn`` must be importable by name (a module-level function): the processes are spawned,
    not forked, so a script calling ``launch`` needs the ``if __name__ == "__main__":`` guard. Its return value travels through ``torch.save`` (tensors, dicts, numbers).
    ``timeout_s`` bounds each collective, so a rank that fails does not leave the others
    waiting forever. Every process starts with one torch thread (``OMP_NUM_THREADS`` is
    inherited; set it before calling on a shared machine).
    """
    import torch.multiprocessing as mp

    if world_size < 1:
        raise ConfigError(f"world_size must be >= 1, not {world_size}")
    with tempfile.TemporaryDirectory(prefix="unlearnkit-dp-") as out_dir:
        mp.spawn(
            _worker, args=(fn, world_size, _free_port(), tuple(args), out_dir, timeout_s), nprocs=world_size, join=True
        )
        return [torch.load(Path(out_dir) / f"rank{r}.pt", weights_only=False) for r in range(world_size)]
