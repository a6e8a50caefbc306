"""Train and evaluate many small models at once (shadow models for per-example privacy attacks).

:func:`train_many` is the one entry point for training many models: one model per seed,
each on its own data (or all on the same data), with a task's recipe (or a weighted sum of
mean losses on several streams). :func:`run_plans` runs any loop-based method's objective for
many models the same way (see "Any loop-based objective, many models" below). :func:`ensemble_logits`
and :func:`stack_models` score many models on the same inputs.

The vectorised path trains the ``E`` models as one: their parameters become stacked leaves
of shape ``(E, ...)``, one forward pass computes all ``E`` models' logits on an
``(E, B, ...)`` batch, and plain autograd on the stacked leaves gives every model's gradient
at once (model ``e``'s loss depends only on slice ``e``, so the gradient of the sum of the
``E`` losses is, slice by slice, each model's own gradient). The forward pass has two forms:

* **chain models** (``Flatten``, ``Linear`` and element-wise layers in a row, as
  :func:`torch.fx.symbolic_trace` shows it; the project's ``linear`` and ``mlp``): hand-batched
  matrix products, one ``baddbmm`` per layer on weights stored ``(E, in, out)``
  (the "ensemble layer" of batch-ensemble style code). Measured on digits with 64 MLPs it is
  about 20% faster per step than the general form;
* **any other model**: :func:`torch.func.functional_call` ``vmap``-ped over parameters stacked
  by :func:`torch.func.stack_module_state` (the "model ensembling" recipe of the torch.func
  docs), e.g. small CNNs.

Element-wise optimisers (SGD with momentum, Adam, AdamW: the ones
:class:`~unlearnkit.loop.TrainConfig` offers) applied to stacked tensors are exactly ``E``
independent optimisers with the same hyperparameters, so the recipe's own ``torch.optim``
class (:func:`~unlearnkit.loop.make_optimizer`, with torch's fused kernel) runs on the
stacked leaves. What :func:`~unlearnkit.loop.run_loop` does is kept, model by model:

* **data order**: each model draws its batches exactly as ``run_loop``'s ``"train"`` stream
  would with its seed (a fresh seeded permutation of *its own* examples each epoch, a short
  last batch), so ``epochs`` counts passes over each model's own data. The ``E`` batches of
  one step are gathered into one ``(E, B, ...)`` tensor (``x[idx]``) from a pool holding
  every distinct example once. (Sharing one batch of the union and masking non-members
  would waste the non-members' share of every batch and change the epoch semantics.)
  Short batches are padded and padding gets weight 0, so each model's loss is the mean
  over its real examples, as in the loop. A model never sees an example outside its set.
* **steps**: ``count_steps(cfg, len(model's data))`` per model. Models whose step counts
  differ are trained as separate vectorised groups (one per step count), so each model has
  its own step budget and learning-rate schedule exactly.
* **clipping**: each model's own gradient norm over all its parameters is clipped to
  ``cfg.grad_clip`` (``clip_grad_norm_`` per model, not the norm of the stacked tensors).
* **divergence guard**: a non-finite loss, a loss above ``cfg.divergence_threshold`` or a
  non-finite gradient norm in any model raises :class:`DivergenceError` naming the model.
* **initialisation**: ``model_factory(seed)`` per model, as in the loop.

Differences from the loop: results agree to float32 rounding, not bit for bit (batched
matrix products and the fused optimiser kernel sum in another order; over hundreds of Adam
steps, parameters whose gradients are near zero can drift apart by up to about ``lr`` per
step, because Adam normalises even rounding noise, while accuracies stay the same);
dropout masks are drawn independently per model but from another random stream than the
loop's, so models with dropout agree with the loop in distribution only.

When it vectorises (``vectorize=None``): two or more models, ``cfg.trainer == "loop"``,
every model of the same architecture (parameter names, shapes, dtypes), no normalisation
layer that tracks running statistics (BatchNorm, InstanceNorm with ``track_running_stats``:
they update buffers in train mode), and either a chain model or one for which a probe
(forward and backward of two stacked copies on two examples under ``vmap``) succeeds: the
probe fails on data-dependent control flow and on operations ``vmap`` cannot batch.
Otherwise the loop. ``vectorize=True`` raises :class:`ConfigError` with the reason instead.
The adapter must accept precomputed logits (``per_example_loss(model, batch, logits=...)``,
as :class:`~unlearnkit.modalities.classifier.ClassifierAdapter` does).

**Any loop-based objective, many models** (:class:`LoopPlan`, :func:`run_plans`). A method
whose update is one :func:`~unlearnkit.loop.run_loop` call describes that call as a
:class:`LoopPlan` (``Method.loop_plan``): the model, the objective it already passes to the
loop, the streams, the recipe, the frozen modules the objective reads (teachers, references,
a module holding per-model tensors as buffers), gradient masks and what preparing the plan
cost. One model runs the plan through :func:`run_plan` (exactly the loop it ran before);
``Method.unlearn_many`` builds one plan per model (each from its own original and seed:
its own teacher copies, relabelled data, saliency masks) and :func:`run_plans` trains them
as one. The objective is written once and is not changed: at every step it runs once, under
``vmap`` over the ``E`` models of :func:`torch.func.grad_and_value` of
:func:`torch.func.functional_call` on a root module holding the plan's model and frozen
modules, with every model's parameters, buffers and frozen modules stacked ``(E, ...)``
(``stack_module_state``-style, the frozen ones the same way). Inside, ``ctx.model`` and each
frozen module compute with the traced model's own tensors, ``ctx.batch(name)`` hands the
objective that model's own batch (drawn, outside the vectorised call, exactly as
``run_loop``'s stream ``name`` draws it with that model's seed), and the cost counters count
per model. The result is every model's loss ``(E,)`` and gradient, then, as above, the
divergence guard per model, the gradient masks, per-model clipping and the recipe's
optimiser on the stacked leaves; the trained leaves are written back into each plan's model.
``requires_grad`` inside the objective is true exactly for the plan's trainable parameters
(``params``; a frozen layer reads as frozen, as in the loop), and ``torch.no_grad`` blocks
(teachers) are respected.

The models of one vectorised group must pull batches of the same sizes at every step, so
:func:`run_plans` groups plans by stream sizes, step count, recipe, trainable parameter
names, number of frozen modules and masks: shadow models of one task agree on all of these
(an IMU run keeps a per-model number of forget examples: those models form smaller groups).
It runs a group one by one instead when the plan has callbacks (checkpoints, early stopping:
per-model Python state), when a model has normalisation layers with running statistics, when
the architectures differ, or when ``vmap`` cannot run the objective on the first step
(``.item()``, a Python branch on a tensor, an operation without a batching rule that fails):
nothing has changed by then. Operations ``vmap`` has no batching rule for but can loop over
inside (in-place ``scatter_``: CE-U's and UNDIAL's logit edits) give the same result, more
slowly. Results agree with the loop to float32 rounding as above
(tests/test_vectorised_methods.py: parameters within 1e-4 after a dozen Adam steps; measured
at most 4.8e-6, for UNSIR's noise learned at lr 0.1). Everything that holds data or models
lives on the plan's device; only the data order's generators are on the CPU, as in the loop.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ..data.dataset import ExampleSet
from ..errors import ConfigError, DivergenceError
from ..utils import derive_seed, seed_everything
from .loop import LoopStats, StepContext, TrainConfig, count_steps, make_optimizer, run_loop

#: steps of batch indices drawn ahead at a time (bounds the memory of the data order)
_BLOCK = 256


def train_many(
    model_factory: Callable[[int], nn.Module] | None,
    data: ExampleSet | Sequence[ExampleSet],
    adapter,
    cfg: TrainConfig,
    seeds: Sequence[int],
    device: torch.device | str = "cpu",
    vectorize: bool | None = None,
    progress: bool = False,
    init: Sequence[nn.Module] | None = None,
    stream: str = "train",
    weight: float = 1.0,
    extra_streams: dict[str, tuple[ExampleSet, float]] | None = None,
) -> tuple[list[nn.Module], LoopStats]:
    """Train ``len(seeds)`` models; returns them (separate modules, eval mode) and the total cost.

    Args:
        model_factory: ``seed -> fresh model`` (same architecture for every seed); unused
            (may be ``None``) when ``init`` is given.
        data: one ExampleSet for all models, or one per seed.
        adapter: gives ``per_example_loss(model, batch)`` (the loss each model minimises).
        cfg: the training recipe (epochs over each model's data, batch size, optimiser).
        seeds: one per model: initialisation and data order.
        vectorize: ``None`` = vectorise when possible (see the module docstring for the
            rule); ``True`` = vectorise or raise :class:`ConfigError`; ``False`` = loop
            (one :func:`run_loop` per model; or the recipe's ``trainer`` per model).
        init: start from these trained models (one per seed; copies are trained, the
            models themselves stay untouched) instead of fresh ones: fine-tuning many
            models at once, e.g. unlearning every shadow original by fine-tuning.
        stream: the name of the data stream in :func:`run_loop` terms; it seeds each
            model's data order, so ``stream="retain"`` reproduces
            ``run_loop(..., {"retain": data}, cfg, seed)``.
        weight, extra_streams: each model minimises ``weight * mean loss on a batch of its
            data + sum_s w_s * mean loss on a batch of stream s`` for ``extra_streams =
            {s: (set, w_s)}`` (shared by every model, each drawing its own batches, seeded
            by ``s``); ``epochs`` count passes over ``data``. Negative weights ascend: e.g.
            NegGrad+ is ``data=forget, weight=-(1 - alpha), extra_streams={"retain":
            (retain, alpha)}``.

    The cost is counted per model so ratios stay comparable to a loop: ``steps`` and
    ``examples_forward``/``examples_backward`` are summed over models (a vectorised step of
    ``E`` models counts ``E`` steps), ``wall_time_s`` is the time actually spent, ``losses``
    are each model's per-step losses, model after model, and ``final_loss`` the last model's.
    """
    sets = [data] * len(seeds) if isinstance(data, ExampleSet) else list(data)
    if len(sets) != len(seeds):
        raise ConfigError(f"give one ExampleSet, or one per seed ({len(sets)} sets for {len(seeds)} seeds)")
    if not seeds:
        return [], LoopStats()
    streams = dict(extra_streams or {})
    if stream in streams:
        raise ConfigError(f"extra_streams must not reuse the data stream's name {stream!r}")
    if any(not isinstance(d, ExampleSet) or len(d) == 0 for d, _ in streams.values()):
        raise ConfigError("every extra stream needs a non-empty ExampleSet")
    if (streams or weight != 1.0) and cfg.trainer != "loop":
        raise ConfigError("weights and extra streams need trainer 'loop'")
    if init is not None:
        if len(init) != len(seeds):
            raise ConfigError(f"give one initial model per seed ({len(init)} models for {len(seeds)} seeds)")
        if cfg.trainer != "loop":
            raise ConfigError(f"trainer {cfg.trainer!r} trains from scratch; init needs trainer 'loop'")
        start = list(init)

        def make(i: int) -> nn.Module:
            return copy.deepcopy(start[i]).to(device)
    elif model_factory is None:
        raise ConfigError("train_many needs a model_factory or init models")
    else:

        def make(i: int) -> nn.Module:
            return model_factory(seeds[i]).to(device)

    device = torch.device(device)
    if vectorize is False or (vectorize is None and (len(seeds) < 2 or cfg.trainer != "loop")):
        return _train_loop(make, sets, adapter, cfg, seeds, device, progress, stream, weight, streams)
    if cfg.trainer != "loop":
        raise ConfigError(f"trainer {cfg.trainer!r} trains one model at a time; pass vectorize=None")
    first = make(0)
    reason = vectorize_blocker(first, adapter, sets[0])
    models = [first] + [make(i) for i in range(1, len(seeds))] if reason is None else [first]
    reason = reason or _architecture_mismatch(models)
    if reason is not None:
        if vectorize:
            raise ConfigError(f"cannot vectorise these models: {reason}; pass vectorize=None or False")
        return _train_loop(make, sets, adapter, cfg, seeds, device, progress, stream, weight, streams)
    return _train_vectorized(models, sets, adapter, cfg, list(seeds), device, progress, stream, weight, streams)


def _weighted_objective(adapter, weights: dict[str, float]):
    """``sum_s w_s * mean per-example loss on a batch of stream s`` (the first stream first)."""

    def objective(ctx):
        terms = [w * adapter.per_example_loss(ctx.model, ctx.batch(s)).mean() for s, w in weights.items()]
        return sum(terms[1:], terms[0])

    return objective


def _train_loop(make, sets, adapter, cfg, seeds, device, progress, stream="train", weight=1.0, extra=None):
    """One model after the other, each trained as :meth:`Task.train_from_scratch` would (its mean
    loss on ``stream``, times 1.0), or on the weighted objective of a weight and extra streams."""
    extra = extra or {}
    objective = _weighted_objective(adapter, {stream: weight, **{k: w for k, (_, w) in extra.items()}})
    models, total = [], LoopStats()
    for i, (s, d) in enumerate(zip(seeds, sets)):
        m = make(i)
        if cfg.trainer == "linear_optimum":
            from .linear import train_linear_optimum

            _, stats = train_linear_optimum(d, lam=cfg.weight_decay, sigma=cfg.objective_noise, seed=s, model=m)
        else:
            stats = run_loop(
                m,
                objective,
                {stream: d, **{k: x for k, (x, _) in extra.items()}},
                cfg,
                seed=s,
                device=device,
                progress=progress,
                desc=f"model {s}",
            )
        total = total + stats
        models.append(m.eval())
    return models, total


# ---------------------------------------------------------------------------- when to vectorise
def _tracks_running_stats(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats for m in model.modules())


def vectorize_blocker(model: nn.Module, adapter=None, data: ExampleSet | None = None) -> str | None:
    """Why ``model`` cannot be trained by the vectorised path, or ``None`` if it can.

    Structural rule first (normalisation layers with running statistics); a model that is
    a plain chain of Flatten / Linear / element-wise layers (see :func:`_chain`) always
    can; otherwise, given an ``adapter`` and ``data``, a probe decides: forward and
    backward of two stacked copies of the model on two examples under ``vmap`` (it fails
    on data-dependent control flow and on operations ``vmap`` cannot batch).
    """
    if _tracks_running_stats(model):
        return "it has BatchNorm/InstanceNorm layers that update running statistics in train mode"
    if _chain(model) is not None or adapter is None or data is None or len(data) == 0:
        return None
    was = model.training
    try:
        stack = _VmapStack([model.train(), model])
        x, y = data.inputs[:2].to(stack.device), data.labels[:2].to(stack.device)
        w = torch.full((2, len(y)), 1.0 / len(y), device=stack.device)
        _losses(stack, adapter, x.expand(2, *x.shape), y.expand(2, *y.shape), w).sum().backward()
    except Exception as e:  # noqa: BLE001 - any failure means "use the loop"
        return f"vmap cannot run it ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
    finally:
        model.train(was)
    return None


def _architecture_mismatch(models: Sequence[nn.Module]) -> str | None:
    def sig(m):
        return (
            [(k, tuple(v.shape), v.dtype, v.requires_grad) for k, v in m.named_parameters()]
            + [(k, tuple(v.shape), v.dtype) for k, v in m.named_buffers()]
            + [(k, type(v)) for k, v in m.named_modules()]
        )

    ref = sig(models[0])
    if any(sig(m) != ref for m in models[1:]):
        return "model_factory returned models of different architectures"
    return None


# ---------------------------------------------------------------------------- stacked models
_ELEMENTWISE = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Identity,
    nn.Dropout,
)


def _chain(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """``model`` as a list of ``(name, layer)`` if its forward is a plain chain of
    ``Flatten`` (of example dimensions only), ``Linear`` (all parameters trainable) and
    element-wise layers, as :func:`torch.fx.symbolic_trace` shows it; else ``None``."""
    try:
        nodes = list(torch.fx.symbolic_trace(model).graph.nodes)
    except Exception:  # noqa: BLE001 - untraceable: not a chain
        return None
    if len(nodes) < 3 or nodes[0].op != "placeholder" or nodes[-1].op != "output":
        return None
    chain, prev = [], nodes[0]
    for n in nodes[1:-1]:
        if n.op != "call_module" or n.args != (prev,) or n.kwargs:
            return None
        m = model.get_submodule(n.target)
        if not (
            isinstance(m, _ELEMENTWISE)
            or (isinstance(m, nn.Flatten) and m.start_dim >= 1)
            or (isinstance(m, nn.Linear) and all(p.requires_grad for p in m.parameters()))
        ):
            return None
        chain.append((n.target, m))
        prev = n
    has_linear = any(isinstance(m, nn.Linear) for _, m in chain)
    return chain if has_linear and nodes[-1].args == (prev,) else None


class _ChainStack:
    """``E`` chain models (see :func:`_chain`) as batched matrix products; inputs ``(E, B, ...)``.

    Each ``Linear`` becomes the leaves ``W`` ``(E, in, out)`` (its weight transposed, so the
    forward is one ``baddbmm`` and no transposed copy is made) and ``b`` ``(E, 1, out)``.
    Element-wise layers act on the stacked activations as they are.
    """

    def __init__(self, models: Sequence[nn.Module], chain: list[tuple[str, nn.Module]]):
        self.chain, self.E = chain, len(models)
        self.weights: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        with torch.no_grad():
            for name, layer in chain:
                if isinstance(layer, nn.Linear):
                    mods = [m.get_submodule(name) for m in models]
                    w = torch.stack([m.weight.T for m in mods]).contiguous().requires_grad_()
                    b = (
                        torch.stack([m.bias for m in mods]).unsqueeze(1).requires_grad_()
                        if layer.bias is not None
                        else None
                    )
                    self.weights[name] = (w, b)
        self.leaves = [t for wb in self.weights.values() for t in wb if t is not None]
        self.device = self.leaves[0].device

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, fresh = x, False
        for name, layer in self.chain:
            fresh_in, fresh = fresh, isinstance(layer, nn.Linear)
            if isinstance(layer, nn.Linear):
                w, b = self.weights[name]
                shape = h.shape
                h = h if h.ndim == 3 else h.reshape(self.E, -1, shape[-1])
                h = torch.bmm(h, w) if b is None else torch.baddbmm(b, h, w)
                h = h if len(shape) == 3 else h.view(*shape[:-1], -1)
            elif type(layer) is nn.ReLU:
                h = torch.relu_(h) if fresh_in else torch.relu(h)  # baddbmm's backward needs no output
            elif isinstance(layer, nn.Flatten):
                end = layer.end_dim + 1 if layer.end_dim >= 0 else layer.end_dim
                h = h.flatten(layer.start_dim + 1, end)
            else:
                h = layer(h)
        return h

    def write_back(self, models: Sequence[nn.Module]) -> None:
        with torch.no_grad():
            for name, (w, b) in self.weights.items():
                for e, m in enumerate(models):
                    m.get_submodule(name).weight.copy_(w[e].T)
                    if b is not None:
                        m.get_submodule(name).bias.copy_(b[e, 0])


class _VmapStack:
    """``E`` models of any ``vmap``-able architecture: ``functional_call`` of the model
    ``vmap``-ped over parameters stacked by :func:`torch.func.stack_module_state`."""

    def __init__(self, models: Sequence[nn.Module]):
        self.params, self.buffers = stack_module_state(models)
        self.leaves = [p for p in self.params.values() if p.requires_grad]
        self.device = next(iter(self.params.values())).device
        base = copy.deepcopy(models[0]).to("meta")
        self._f = vmap(lambda p, b, x: functional_call(base, (p, b), (x,)), randomness="different")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._f(self.params, self.buffers, x)

    def write_back(self, models: Sequence[nn.Module]) -> None:
        with torch.no_grad():
            for e, m in enumerate(models):
                for name, t in self.params.items():
                    m.get_parameter(name).copy_(t[e])
                for name, t in self.buffers.items():
                    m.get_buffer(name).copy_(t[e])


def _losses(stack, adapter, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``(E,)`` per-model losses: the adapter's per-example loss of each model's logits,
    weighted by ``w`` ``(E, B)`` (``1/count`` for real examples, 0 for padding)."""
    logits = stack(x)
    per = adapter.per_example_loss(None, {"y": y.flatten()}, logits=logits.flatten(0, 1))
    return (per.view_as(w) * w).sum(1)


# ---------------------------------------------------------------------------- vectorised training
def _pool(sets: Sequence[ExampleSet]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Every distinct example of ``sets`` once; returns (inputs, labels, pool rows of each set).

    Examples are matched by id; an id whose inputs or label differ between sets (a
    relabelled copy) gets a row of its own, so each model trains on exactly its own set.
    """
    index: dict[str, int] = {}
    xs, ys, rows, done = [], [], [], {}
    n = 0
    for s in sets:
        if id(s) in done:
            rows.append(done[id(s)])
            continue
        r = np.fromiter((index.get(e, -1) for e in s.example_ids.tolist()), np.int64, len(s))
        new = np.flatnonzero(r < 0)
        r[new] = np.arange(n, n + len(new))
        index.update(zip(s.example_ids[new].tolist(), r[new].tolist()))
        n += len(new)
        xs.append(s.inputs[torch.as_tensor(new)])
        ys.append(s.labels[torch.as_tensor(new)])
        rows.append(r)
        done[id(s)] = r
    X, Y = torch.cat(xs), torch.cat(ys)
    extra_x, extra_y, checked = [], [], {}
    for i, (s, r) in enumerate(zip(sets, rows)):
        if id(s) in checked:
            rows[i] = checked[id(s)]
            continue
        rr = torch.as_tensor(r)
        differs = (X[rr] != s.inputs).flatten(1).any(1) | (Y[rr] != s.labels)
        if differs.any():
            pos = differs.nonzero().flatten()
            rr = rr.clone()
            rr[pos] = torch.arange(n, n + len(pos))
            n += len(pos)
            extra_x.append(s.inputs[pos])
            extra_y.append(s.labels[pos])
        rows[i] = checked[id(s)] = rr
    if extra_x:
        X, Y = torch.cat([X] + extra_x), torch.cat([Y] + extra_y)
    return X, Y, rows


class _Orders:
    """Each model's batches exactly as ``run_loop``'s ``"train"`` stream draws them.

    ``next_block(k)`` gives the pool rows of the next ``k`` steps, shape ``(k, E, B)``,
    short batches padded with -1.
    """

    def __init__(self, rows: Sequence[torch.Tensor], seeds: Sequence[int], batch_size: int, stream: str = "train"):
        self.rows, self.b = list(rows), batch_size
        self.gens = [torch.Generator().manual_seed(derive_seed(s, "stream", stream) % (2**63)) for s in seeds]
        self.bufs = [torch.empty(0, dtype=torch.long) for _ in rows]

    def next_block(self, k: int) -> torch.Tensor:
        out = []
        for i, (r, g) in enumerate(zip(self.rows, self.gens)):
            parts = [self.bufs[i]]
            have = len(parts[0])
            while have < k * self.b:
                order = r[torch.randperm(len(r), generator=g)]  # as ExampleSet.batches
                pad = torch.full(((-len(r)) % self.b,), -1, dtype=torch.long)
                parts += [order, pad]
                have += len(order) + len(pad)
            buf = torch.cat(parts)
            out.append(buf[: k * self.b].view(k, self.b))
            self.bufs[i] = buf[k * self.b :]
        return torch.stack(out, 1)


def _train_vectorized(models, sets, adapter, cfg, seeds, device, progress, stream="train", weight=1.0, extra=None):
    extra = extra or {}
    X, Y, rows = _pool(list(sets) + [d for d, _ in extra.values()])
    X, Y = X.to(device), Y.to(device)
    extra_rows = dict(zip(extra, rows[len(sets) :]))
    rows = rows[: len(sets)]
    groups: dict[int, list[int]] = defaultdict(list)
    for i, d in enumerate(sets):
        groups[count_steps(cfg, len(d))].append(i)
    per_model: list[LoopStats] = [LoopStats() for _ in models]
    t0 = time.perf_counter()
    for steps, members in groups.items():
        streams = [(stream, [rows[i] for i in members], weight)]
        streams += [(k, [extra_rows[k]] * len(members), w) for k, (_, w) in extra.items()]
        stats = _train_group(
            [models[i] for i in members],
            streams,
            [seeds[i] for i in members],
            X,
            Y,
            adapter,
            cfg,
            steps,
            device,
            progress,
        )
        for i, st in zip(members, stats):
            per_model[i] = st
    total = LoopStats()
    for st in per_model:
        total = total + st
    total.wall_time_s = time.perf_counter() - t0
    return [m.eval() for m in models], total


def _optimizer(leaves: Sequence[torch.Tensor], cfg: TrainConfig) -> torch.optim.Optimizer:
    """The recipe's optimiser on the stacked leaves, with torch's fused kernel where it has one
    (one pass over the parameters and their state instead of one per operation)."""
    try:
        return make_optimizer(leaves, cfg, fused=True)
    except (RuntimeError, ValueError, TypeError):  # no fused kernel for this device or dtype
        return make_optimizer(leaves, cfg)


def _train_group(
    models, streams, seeds, X, Y, adapter, cfg: TrainConfig, steps: int, device, progress: bool
) -> list[LoopStats]:
    """Train models that share a step count together; writes the weights back into ``models``.

    ``streams``: ``(name, pool rows of each model's set, weight)``, the primary stream first;
    each model's loss is the weighted sum of its mean loss on a batch of every stream."""
    E = len(models)
    for m in models:
        m.train()
    chain = _chain(models[0])
    stack = _ChainStack(models, chain) if chain is not None else _VmapStack(models)
    leaves = stack.leaves
    opt = _optimizer(leaves, cfg)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps)) if cfg.schedule == "cosine" else None
    seed_everything(derive_seed(seeds[0], "loop", "ensemble", E) % (2**31))  # dropout masks
    orders = [(_Orders(rows, seeds, cfg.batch_size, name), w) for name, rows, w in streams]
    losses: list[torch.Tensor] = []
    seen = torch.zeros(E, dtype=torch.long, device=device)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=f"ensemble of {E}", leave=False, dynamic_ncols=True)
    try:
        step = 0
        while step < steps:
            blocks = []
            for o, w in orders:
                block = o.next_block(min(_BLOCK, steps - step)).to(device)
                valid = block >= 0
                count = valid.sum(2)  # (k, E) real examples per batch
                seen += count.sum(0)
                blocks.append((block.clamp(min=0), valid / count.unsqueeze(-1), w))
            for k in range(len(blocks[0][0])):
                terms = [w * _losses(stack, adapter, X[idx[k]], Y[idx[k]], weights[k]) for idx, weights, w in blocks]
                loss = sum(terms[1:], terms[0])
                _guard(loss, cfg.divergence_threshold, seeds, step, "loss")
                for p in leaves:
                    p.grad = None
                loss.sum().backward()
                if cfg.grad_clip:
                    _clip_per_model(leaves, cfg.grad_clip, seeds, step)
                opt.step()
                if sched is not None:
                    sched.step()
                losses.append(loss.detach())
                step += 1
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    stack.write_back(models)
    L = torch.stack(losses).T.cpu().tolist() if losses else [[] for _ in models]
    n = seen.cpu().tolist()
    return [LoopStats(steps, n[e], n[e], 0.0, L[e][-1] if L[e] else float("nan"), L[e]) for e in range(E)]


def _guard(values: torch.Tensor, threshold: float | None, seeds, step: int, what: str) -> None:
    """The divergence guard of :func:`run_loop`, per model: ``values`` has one entry per model."""
    bad = ~torch.isfinite(values)
    if threshold is not None:
        bad |= values.abs() > threshold
    if bad.any():
        e = int(bad.nonzero()[0])
        raise DivergenceError(
            f"model {seeds[e]}: {what} became {values[e].item()} at step {step}; "
            "lower the learning rate or the step budget",
            step,
        )


def _clip_per_model(leaves: Sequence[torch.Tensor], max_norm: float, seeds, step: int) -> None:
    """``clip_grad_norm_`` applied to each model's own gradient (slice ``e`` of every leaf)."""
    grads = [p.grad for p in leaves if p.grad is not None]
    norms = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads]), dim=0)
    _guard(norms, None, seeds, step, "gradient norm")
    if bool((norms + 1e-6 > max_norm).any()):  # otherwise every factor is exactly 1
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *[1] * (g.ndim - 1)))


# ---------------------------------------------------------------------------- vectorised inference
def stack_models(models: Sequence[nn.Module]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function ``x (B, ...) -> (E, B, C)``: every model's output on the same inputs.

    Takes a snapshot of the models' current weights and modes. Vectorised (``vmap`` of
    ``functional_call`` over the stacked parameters, the inputs shared) when the models
    share an architecture and mode and are either in eval mode or free of normalisation
    layers with running statistics; otherwise, or when ``vmap`` fails on the first call,
    a loop over the models. Runs without gradients.
    """
    models = list(models)
    if not models:
        raise ConfigError("stack_models needs at least one model")

    def loop(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.stack([m(x) for m in models])

    mode = models[0].training
    if (
        len(models) < 2
        or _architecture_mismatch(models) is not None
        or any(m.training != mode for m in models)
        or (mode and any(_tracks_running_stats(m) for m in models))
    ):
        return loop
    with torch.no_grad():
        params, buffers = stack_module_state(models)
        params = {k: v.detach() for k, v in params.items()}
    base = copy.deepcopy(models[0]).to("meta").train(mode)
    f = vmap(lambda p, b, x: functional_call(base, (p, b), (x,)), in_dims=(0, 0, None), randomness="different")
    state = {"vmap": True}

    def run(x: torch.Tensor) -> torch.Tensor:
        if state["vmap"]:
            try:
                with torch.no_grad():
                    return f(params, buffers, x.to(next(iter(params.values())).device))
            except Exception:  # noqa: BLE001 - data-dependent control flow etc.: loop instead
                state["vmap"] = False
        return loop(x)

    return run


def ensemble_logits(models: Sequence[nn.Module], x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Every model's logits on the same inputs, shape ``(E, B, C)`` (see :func:`stack_models`).

    ``batch_size`` rows of ``x`` go through all models at a time (bounds memory).
    """
    if batch_size < 1:
        raise ConfigError("batch_size must be >= 1")
    f = stack_models(models)
    return torch.cat([f(x[i : i + batch_size]) for i in range(0, len(x), batch_size)], dim=1)


# ---------------------------------------------------------------------------- any objective, many models
@dataclass
class LoopPlan:
    """One :func:`~unlearnkit.loop.run_loop` call as data: what a loop-based method's update is.

    ``model`` is trained in place on ``objective`` over ``streams`` (``primary``, ``steps``,
    ``params``, ``callbacks`` and ``desc`` as :func:`run_loop` takes them). ``frozen``: every
    module the objective reads besides ``model`` (frozen teachers and references, or a module
    holding per-model tensors as buffers): the vectorised path stacks them like the trained
    models. ``grad_masks``: per-parameter masks the gradient is multiplied by after each
    backward pass, before clipping (SalUn's saliency). ``cost``: what preparing the plan cost
    (a saliency or influence pass), added to the loop's. ``after``: called once the plan has
    run, on either path (e.g. to restore ``requires_grad`` flags set for the run).
    ``checkpoints``: step counts after which the model's ``state_dict`` is kept (cloned) in
    ``states[step]``, on either path (SCRUB+R rewinds to one of them).
    """

    model: nn.Module
    objective: Callable
    streams: dict[str, ExampleSet]
    cfg: TrainConfig
    seed: int
    primary: str | None = None
    steps: int | None = None
    params: Sequence[nn.Parameter] | None = None
    frozen: Sequence[nn.Module] = ()
    grad_masks: dict[str, torch.Tensor] | None = None
    callbacks: Sequence[Callable] = ()
    desc: str = "train"
    cost: LoopStats = field(default_factory=LoopStats)
    after: Callable[[], None] | None = None
    checkpoints: Sequence[int] = ()
    states: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)

    def total_steps(self) -> int:
        primary = self.primary or next(iter(self.streams))
        if self.steps is None:
            return count_steps(self.cfg, len(self.streams[primary]))
        return self.steps if self.cfg.max_steps is None else min(self.steps, self.cfg.max_steps)


def run_plan(plan: LoopPlan, device: torch.device | str = "cpu", adapter=None, progress: bool = False) -> LoopStats:
    """The plan's :func:`run_loop` (the one-model path); returns ``plan.cost`` plus its cost."""
    hook = None
    if plan.grad_masks is not None:
        masks = plan.grad_masks

        def hook(m: nn.Module) -> None:
            for name, p in m.named_parameters():
                if p.grad is not None and name in masks:
                    p.grad.mul_(masks[name])

    callbacks = list(plan.callbacks)
    if plan.checkpoints:
        at = set(plan.checkpoints)

        def keep(ctx, loss) -> bool:
            if ctx.step + 1 in at:
                plan.states[ctx.step + 1] = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}
            return False

        callbacks.append(keep)
    try:
        stats = run_loop(
            plan.model,
            plan.objective,
            plan.streams,
            plan.cfg,
            plan.seed,
            primary=plan.primary,
            steps=plan.steps,
            callbacks=callbacks,
            grad_hook=hook,
            device=device,
            progress=progress,
            desc=plan.desc,
            params=plan.params,
            adapter=adapter,
        )
    finally:
        if plan.after is not None:
            plan.after()
    return plan.cost + stats


def run_plans(
    plans: Sequence[LoopPlan],
    device: torch.device | str = "cpu",
    adapter=None,
    vectorize: bool | None = None,
    progress: bool = False,
) -> list[LoopStats]:
    """Run every plan; returns each plan's cost (``wall_time_s`` split evenly within a
    vectorised group, so the costs sum to the time spent).

    ``vectorize=None``: plans that agree on everything but their models, frozen modules,
    data order and data (same stream names and sizes, step count, recipe, trainable
    parameter names, number of frozen modules, masks or none; no callbacks; no normalisation
    layer with running statistics) run as one vectorised group each (see the module
    docstring); a group whose objective ``vmap`` cannot run, or of one plan, runs
    :func:`run_plan` per plan; so do plans with convolutions on a CPU, where ``vmap`` runs a
    batch of convolutions as one grouped convolution, measured slower than the loop (16 small
    CNNs on tiny digits, 20 SCRUB steps: 4.5 s against 3.6 s). ``True``: vectorise or raise
    :class:`ConfigError` with the reason; ``False``: :func:`run_plan` per plan.
    """
    plans = list(plans)
    device = torch.device(device)
    out: list[LoopStats | None] = [None] * len(plans)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, p in enumerate(plans):
        groups[_plan_signature(p)].append(i)
    for members in groups.values():
        stats, reason = None, "one plan"
        if vectorize is None and device.type == "cpu" and _has_conv(plans[members[0]]):
            reason = "on a CPU convolutional models are not vectorised (grouped convolutions are slower)"
        elif vectorize is not False and len(members) > 1:
            stats, reason = _run_plans_vectorized([plans[i] for i in members], device, adapter, progress)
            for i in members if stats is not None else ():
                if plans[i].after is not None:
                    plans[i].after()
        if stats is None:
            if vectorize and len(plans) > 1:
                raise ConfigError(f"cannot vectorise these plans: {reason}; pass vectorize=None or False")
            stats = [run_plan(plans[i], device, adapter, progress) for i in members]
        for i, s in zip(members, stats):
            out[i] = s
    return out  # type: ignore[return-value]


def _has_conv(plan: LoopPlan) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for x in (plan.model, *plan.frozen) for m in x.modules())


def _trainable_names(plan: LoopPlan) -> list[str]:
    if plan.params is None:
        return [n for n, p in plan.model.named_parameters() if p.requires_grad]
    chosen = {id(p) for p in plan.params if p.requires_grad}
    return [n for n, p in plan.model.named_parameters() if id(p) in chosen]


def _plan_signature(p: LoopPlan) -> tuple:
    return (
        tuple((k, len(v)) for k, v in p.streams.items()),
        p.primary,
        p.total_steps(),
        tuple(sorted(p.cfg.to_dict().items())),
        tuple(_trainable_names(p)),
        len(p.frozen),
        None if p.grad_masks is None else tuple(sorted(p.grad_masks)),
        bool(p.callbacks),
        tuple(sorted(p.checkpoints)),
    )


class _Bundle(nn.Module):
    """The trained model (``m.0``) and the frozen modules (``m.1``, ...) under one root, so that
    one :func:`~torch.func.functional_call` swaps in every model's own tensors. It keeps the
    modules' own train/eval modes."""

    def __init__(self, modules: Sequence[nn.Module], ctx: "_StackedContext", objective: Callable):
        super().__init__()
        self.m = nn.ModuleList(modules)
        self._ctx, self._objective = ctx, objective

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        self._ctx.e = e
        return self._objective(self._ctx)


class _StackedContext(StepContext):
    """The :class:`~unlearnkit.loop.StepContext` an objective sees inside the vectorised step.

    The objective runs once per step under ``vmap`` over the ``E`` models: ``batch(name)``
    draws the next batch of stream ``name`` for every model (each in its own seeded order,
    as ``run_loop`` draws it) and hands the objective the slice of the model it is traced
    for; counts are per model (every model pulls batches of the same sizes)."""

    def __init__(self, model, orders, stats, total_steps, device, adapter, X, Y):
        super().__init__(model, {}, stats, total_steps, device, adapter)
        self._orders, self._X, self._Y = orders, X, Y
        self.e: torch.Tensor | None = None

    def batch(self, name: str) -> dict:
        if name not in self._orders:
            raise ConfigError(f"no data stream named {name!r} (have {sorted(self._orders)})")
        pos, rows = self._orders[name].next()
        n = pos.shape[1]
        self.stats.examples_forward += n
        self.stats.examples_backward += n
        pick = self.e.reshape(1)  # the vmapped model index

        def mine(t: torch.Tensor) -> torch.Tensor:
            return t.index_select(0, pick)[0]

        return {"x": mine(self._X[rows]), "y": mine(self._Y[rows]), "index": mine(pos)}


class _LazyOrders:
    """One stream's batches for ``E`` models of equal set sizes, drawn ahead in blocks outside
    the vectorised objective (which only pops them): ``next()`` gives positions in each
    model's own set ``(E, B)`` and pool rows ``(E, B)``."""

    #: batches kept ready before each step (an objective pulls at most this many per stream and step)
    READY = 8

    def __init__(self, rows: torch.Tensor, seeds, batch_size: int, name: str, steps: int, device):
        n = rows.shape[1]
        self.orders = _Orders([torch.arange(n)] * len(seeds), seeds, batch_size, name)
        self.rows, self.left, self.device = rows.to(device), steps + self.READY, device
        self.ready: list[tuple[torch.Tensor, torch.Tensor]] = []

    def refill(self) -> None:
        """Outside the vectorised call: keep :attr:`READY` batches drawn."""
        if len(self.ready) >= self.READY:
            return
        k = max(self.READY, min(_BLOCK, self.left))
        self.left = max(0, self.left - k)
        block = self.orders.next_block(k)
        counts = (block[:, 0] >= 0).sum(1).tolist()  # the same for every model: one set size
        new = []
        for b, c in zip(block.unbind(0), counts):
            pos = b[:, :c].to(self.device)
            new.append((pos, self.rows.gather(1, pos)))
        self.ready = new[::-1] + self.ready

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.ready:
            raise ConfigError(f"the objective drew more than {self.READY} batches of one stream in one step")
        return self.ready.pop()


def _stack(models: Sequence[nn.Module], prefix: str) -> tuple[dict, dict]:
    """Every model's parameters and buffers stacked ``(E, ...)`` under ``prefix.name`` (detached)."""
    with torch.no_grad():
        params = {
            f"{prefix}.{n}": torch.stack([dict(m.named_parameters())[n].detach() for m in models])
            for n, _ in models[0].named_parameters()
        }
        buffers = {
            f"{prefix}.{n}": torch.stack([dict(m.named_buffers())[n].detach() for m in models])
            for n, _ in models[0].named_buffers()
        }
    return params, buffers


def _plans_blocker(plans: Sequence[LoopPlan]) -> str | None:
    p0 = plans[0]
    if p0.callbacks:
        return "callbacks (early stopping, checkpoints) act on one model at a time"
    reason = vectorize_blocker(p0.model)
    if reason is not None:
        return reason
    slots = [[p.model for p in plans]] + [[p.frozen[k] for p in plans] for k in range(len(p0.frozen))]
    if any(_architecture_mismatch(s) is not None for s in slots):
        return "the plans' models (or frozen modules) differ in architecture"
    return None


def _run_plans_vectorized(plans, device, adapter, progress) -> tuple[list[LoopStats] | None, str]:
    """Train the plans' models as one: per step, ``vmap`` of :func:`torch.func.grad_and_value` of
    the objective (through :func:`~torch.func.functional_call` on every model's stacked
    tensors) gives every model's loss and gradient; then :func:`run_loop`'s guard, per-model
    clipping and the recipe's optimiser on the stacked leaves. ``(None, reason)`` when the
    plans cannot be vectorised (the models stay untouched)."""
    from torch.func import grad_and_value

    reason = _plans_blocker(plans)
    if reason is not None:
        return None, reason
    for p in plans:  # as run_loop moves its model
        p.model.to(device)
    E, p0 = len(plans), plans[0]
    cfg, steps, seeds = p0.cfg, p0.total_steps(), [p.seed for p in plans]
    trainable = _trainable_names(p0)
    if not trainable:
        return None, "the plan trains no parameter"
    t0 = time.perf_counter()
    student, student_buffers = _stack([p.model for p in plans], "m.0")
    leaves = {f"m.0.{k}": student.pop(f"m.0.{k}").requires_grad_() for k in trainable}
    other = {**student, **student_buffers}
    for k in range(len(p0.frozen)):
        fp, fb = _stack([p.frozen[k] for p in plans], f"m.{k + 1}")
        other.update(fp)
        other.update(fb)
    masks = None
    if p0.grad_masks is not None:
        masks = {
            f"m.0.{k}": torch.stack([p.grad_masks[k] for p in plans]).to(device)
            for k in trainable
            if k in p0.grad_masks
        }
    names = list(p0.streams)
    X, Y, rows = _pool([p.streams[s] for s in names for p in plans])
    X, Y = X.to(device), Y.to(device)
    orders = {
        s: _LazyOrders(torch.stack(rows[j * E : (j + 1) * E]), seeds, cfg.batch_size, s, steps, device)
        for j, s in enumerate(names)
    }
    stats = LoopStats()
    ctx = _StackedContext(p0.model, orders, stats, steps, device, adapter, X, Y)
    was = [m.training for m in p0.model.modules()]
    p0.model.train()
    bundle = _Bundle([p0.model, *p0.frozen], ctx, p0.objective)

    def one(train, rest, e):
        return functional_call(bundle, (train, rest), (e,))

    step_fn = vmap(grad_and_value(one), in_dims=(0, 0, 0), randomness="different")
    leaf_list = list(leaves.values())
    opt = _optimizer(leaf_list, cfg)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps)) if cfg.schedule == "cosine" else None
    seed_everything(derive_seed(seeds[0], "loop", "ensemble", E) % (2**31))  # dropout masks
    eidx = torch.arange(E, device=device)
    checkpoints, kept = set(p0.checkpoints), {}
    losses: list[torch.Tensor] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=f"{p0.desc} x{E}", leave=False, dynamic_ncols=True)
    try:
        for step in range(steps):
            ctx.step = step
            for o in orders.values():
                o.refill()
            detached = {k: v.detach() for k, v in leaves.items()}
            try:
                with warnings.catch_warnings():  # an op without a batching rule is looped inside: slower, same result
                    warnings.filterwarnings("ignore", "There is a performance drop because we have not yet implemented")
                    grads, loss = step_fn(detached, other, eidx)
            except (ConfigError, DivergenceError):
                raise
            except Exception as e:  # noqa: BLE001 - the objective cannot run under vmap: the loop
                if step:
                    raise
                for m, w in zip(p0.model.modules(), was):
                    m.training = w
                return None, f"vmap cannot run the objective ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
            _guard(loss.detach(), cfg.divergence_threshold, seeds, step, "loss")
            for k, v in leaves.items():
                v.grad = grads[k]
                if masks is not None and k in masks:
                    v.grad.mul_(masks[k])
            if cfg.grad_clip:
                _clip_per_model(leaf_list, cfg.grad_clip, seeds, step)
            opt.step()
            if sched is not None:
                sched.step()
            losses.append(loss.detach())
            if step + 1 in checkpoints:
                kept[step + 1] = {k: v.detach().clone() for k, v in leaves.items()}
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    with torch.no_grad():
        for e, p in enumerate(plans):
            for k, v in leaves.items():
                p.model.get_parameter(k[len("m.0.") :]).copy_(v[e])
            if kept:  # only the trainable leaves moved: the rest of each state is the model's own
                state = {k: v.detach().clone() for k, v in p.model.state_dict().items()}
                for s, ls in kept.items():
                    p.states[s] = {**state, **{k[len("m.0.") :]: v[e].clone() for k, v in ls.items()}}
    for p in plans:
        p.model.eval()
    L = torch.stack(losses).T.cpu().tolist() if losses else [[] for _ in plans]
    wall = (time.perf_counter() - t0) / E
    fwd, bwd = stats.examples_forward, stats.examples_backward
    return [
        p.cost + LoopStats(steps, fwd, bwd, wall, L[e][-1] if L[e] else float("nan"), L[e]) for e, p in enumerate(plans)
    ], ""
