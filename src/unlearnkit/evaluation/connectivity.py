"""Mode connectivity: metrics along paths in parameter space between two models.

Cheng & Amiri 2025 ("Understanding Machine Unlearning Through the Lens of Mode
Connectivity", arXiv:2504.06407) connect pairs of unlearned models derived from the same
original (two methods; curriculum vs plain; first- vs second-order optimisers) with the
curves of Garipov et al. 2018 ("Loss Surfaces, Mode Connectivity, and Fast Ensembling of
DNNs", NeurIPS) and read how each evaluation metric fluctuates along the curve. This
module gives the two paths and the read-out:

* the straight line ``phi(t) = (1 - t) a + t b`` (:func:`interpolate_linear`);
* a quadratic Bezier curve ``phi(t) = (1 - t)^2 a + 2 t (1 - t) theta + t^2 b`` with a
  trained control point ``theta`` (:func:`fit_bezier`; Garipov et al. Sec. 3.2, one
  bend), fitted by minimising ``E_{t ~ U(0, 1)} L(phi(t))`` on data (their Sec. 3.1: the
  uniform-``t`` loss, not the arc-length-weighted one), one ``t`` per step;
* :func:`evaluate_path`: accuracy, mean loss, membership attack and divergence to the
  reference at each ``t``; :func:`barrier`: the largest rise of a metric above the
  straight line between its endpoint values.

BatchNorm: running statistics are not parameters, and interpolating them does not give
the statistics of the interpolated network. Garipov et al. recompute them at each ``t``
with a pass over training data; we do the same whenever a ``bn_data`` set is given
(:func:`recompute_batchnorm`; :func:`evaluate_path` passes the task's retain set). Without
``bn_data`` the running statistics are interpolated like the weights (an approximation).
During curve fitting BatchNorm layers use batch statistics, as in Garipov et al.'s code.

Departures: Garipov et al. fit the curve with the models' full training recipe (and
weight decay on ``theta``, here ``cfg.weight_decay``); the CLI fits it with a small step
budget on the retain set, since the retain loss is what both an unlearned model and the
reference are meant to keep low. Cheng & Amiri work with language models on TOFU and
MU-Bench; here the paths are evaluated with unlearnkit's classifier metrics, and
connecting an unlearned model to the retrained reference (``unlearnkit connect RUN --to
reference``) is our use of the tool, not one of theirs.
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from ..data.dataset import ExampleSet
from ..engines.loop import LoopStats, StepContext, TrainConfig, run_loop
from ..errors import ConfigError
from ..modalities.classifier.scores import SPLITS, Scores, score_splits
from ..utils import derive_seed
from .metrics import EvalInputs, compute_metrics

#: metrics computed at each point of a path (see ``unlearnkit metrics``)
PATH_METRICS = ("accuracy", "mia_lr", "js_divergence")


def _check_same_architecture(model_a: nn.Module, model_b: nn.Module) -> None:
    sa, sb = model_a.state_dict(), model_b.state_dict()
    if list(sa) != list(sb) or any(sa[k].shape != sb[k].shape for k in sa):
        diff = sorted(set(sa) ^ set(sb))[:3] or [k for k in sa if sa[k].shape != sb[k].shape][:3]
        raise ConfigError(
            f"the two models have different architectures (first differences: {diff}); "
            "connect two models of the same architecture"
        )


def _mix(weights: Sequence[tuple[float | torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """``sum_i w_i x_i`` with each term computed as written (exact at a curve's ends)."""
    out = weights[0][0] * weights[0][1]
    for w, x in weights[1:]:
        out = out + w * x
    return out


def _interp_buffers(
    bufs_a: Sequence[torch.Tensor], bufs_b: Sequence[torch.Tensor], t: float | torch.Tensor
) -> list[torch.Tensor]:
    """Floating buffers linearly in ``t``; integer ones (``num_batches_tracked``) from ``a``."""
    return [_mix([(1 - t, a), (t, b)]) if a.is_floating_point() else a.clone() for a, b in zip(bufs_a, bufs_b)]


def has_batchnorm(model: nn.Module) -> bool:
    """Whether any layer keeps BatchNorm running statistics."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, data: ExampleSet, adapter=None, batch_size: int = 256) -> nn.Module:
    """Reset every BatchNorm layer's running statistics and re-estimate them on ``data``.

    Garipov et al.'s ``update_bn``: one pass in training mode with momentum
    ``b / (n + b)`` for a batch of ``b`` after ``n`` examples, so the running mean is the
    example-weighted mean of the batch means. Weights are not changed; returns ``model``
    in eval mode. ``adapter.logits`` runs the forward pass (default: ``model(batch["x"])``).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model
    if len(data) == 0:
        raise ConfigError("cannot recompute BatchNorm statistics on an empty data set")
    device = next(model.parameters()).device
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
    model.train()
    seen = 0
    try:
        for batch in data.batches(batch_size):
            b = len(batch["index"])
            for m in bns:
                m.momentum = b / (seen + b)
            if adapter is not None:
                adapter.logits(model, batch)
            else:
                model(batch["x"].to(device))
            seen += b
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
    return model.eval()


def _assemble(
    template: nn.Module, state: dict[str, torch.Tensor], device: torch.device, bn_data: ExampleSet | None, adapter
) -> nn.Module:
    model = copy.deepcopy(template)
    model.load_state_dict({k: v.detach() for k, v in state.items()})
    model.to(device).eval()
    if bn_data is not None and has_batchnorm(model):
        recompute_batchnorm(model, bn_data, adapter)
    return model


def interpolate_linear(
    model_a: nn.Module, model_b: nn.Module, t: float, bn_data: ExampleSet | None = None, adapter=None
) -> nn.Module:
    """A new model at ``phi(t) = (1 - t) a + t b`` on the straight line from ``a`` to ``b``.

    Parameters and floating buffers are interpolated (``t`` outside [0, 1] extrapolates);
    ``phi(0)`` and ``phi(1)`` equal the endpoints exactly. With ``bn_data``, BatchNorm
    running statistics are then recomputed on it (Garipov et al. 2018); without, they
    stay interpolated. Neither input model is modified.
    """
    if not np.isfinite(t):
        raise ConfigError(f"t must be a finite number, not {t!r}")
    _check_same_architecture(model_a, model_b)
    sa, sb = model_a.state_dict(), model_b.state_dict()
    device = next(iter(sa.values())).device
    keys = list(sa)
    vals = _interp_buffers([sa[k] for k in keys], [sb[k].to(device) for k in keys], float(t))
    return _assemble(model_a, dict(zip(keys, vals)), device, bn_data, adapter)


class _CurvePoint(nn.Module):
    """The network at one point of a curve, evaluated with ``functional_call`` (no copy)."""

    def __init__(self, curve: "BezierCurve", t: float | torch.Tensor):
        super().__init__()
        self.curve, self.t = curve, t

    def forward(self, *args, **kwargs):
        return self.curve(self.t, *args, **kwargs)


class BezierCurve(nn.Module):
    """Quadratic Bezier curve ``phi(t) = (1-t)^2 a + 2t(1-t) theta + t^2 b`` between two models.

    The endpoints ``a`` and ``b`` are frozen buffers (``a_i``, ``b_i``); the control point
    ``theta`` (one tensor per parameter of the network, initialised at the midpoint
    ``(a + b) / 2``, i.e. on the straight line) is this module's only parameter. Model
    buffers (BatchNorm statistics) follow the straight line. ``curve(t, x)`` runs the
    network at ``phi(t)`` through :func:`torch.func.functional_call`, so gradients reach
    ``theta`` without copying the network; :meth:`at` wraps that as a module an adapter
    can call; :meth:`model_at` builds a standalone model.
    """

    def __init__(self, model_a: nn.Module, model_b: nn.Module):
        super().__init__()
        _check_same_architecture(model_a, model_b)
        # the network's structure; its own tensors are never used (plain attribute, not a submodule)
        self.__dict__["template"] = copy.deepcopy(model_a).eval()
        pa, pb = dict(model_a.named_parameters()), dict(model_b.named_parameters())
        ba, bb = dict(model_a.named_buffers()), dict(model_b.named_buffers())
        self.param_names, self.buffer_names = list(pa), list(ba)
        for i, n in enumerate(self.param_names):
            self.register_buffer(f"a_{i}", pa[n].detach().clone())
            self.register_buffer(f"b_{i}", pb[n].detach().clone().to(pa[n].device))
        for i, n in enumerate(self.buffer_names):
            self.register_buffer(f"abuf_{i}", ba[n].detach().clone())
            self.register_buffer(f"bbuf_{i}", bb[n].detach().clone().to(ba[n].device))
        self.theta = nn.ParameterList(
            [nn.Parameter(((pa[n].detach() + pb[n].detach().to(pa[n].device)) / 2).clone()) for n in self.param_names]
        )
        self.fit_stats: LoopStats | None = None

    def _ends(self, prefix: str, n: int) -> list[torch.Tensor]:
        return [getattr(self, f"{prefix}_{i}") for i in range(n)]

    def params_at(self, t: float | torch.Tensor) -> dict[str, torch.Tensor]:
        """``phi(t)`` per parameter name (differentiable in ``theta``)."""
        n = len(self.param_names)
        return {
            name: _mix([((1 - t) ** 2, a), (2 * t * (1 - t), th), (t**2, b)])
            for name, a, th, b in zip(self.param_names, self._ends("a", n), self.theta, self._ends("b", n))
        }

    def buffers_at(self, t: float | torch.Tensor) -> dict[str, torch.Tensor]:
        n = len(self.buffer_names)
        return dict(zip(self.buffer_names, _interp_buffers(self._ends("abuf", n), self._ends("bbuf", n), t)))

    def forward(self, t: float | torch.Tensor, *args, **kwargs):
        """The network at ``phi(t)`` applied to ``args`` (train/eval mode follows the curve's)."""
        self.template.train(self.training)
        return functional_call(self.template, {**self.params_at(t), **self.buffers_at(t)}, args, kwargs)

    def at(self, t: float | torch.Tensor) -> nn.Module:
        """A module computing the network at ``phi(t)`` (shares this curve's tensors)."""
        return _CurvePoint(self, t)

    @torch.no_grad()
    def model_at(self, t: float, bn_data: ExampleSet | None = None, adapter=None) -> nn.Module:
        """A standalone model with the weights ``phi(t)``; BatchNorm statistics recomputed
        on ``bn_data`` when given (Garipov et al.), else interpolated linearly."""
        if not np.isfinite(t):
            raise ConfigError(f"t must be a finite number, not {t!r}")
        state = {**self.params_at(float(t)), **self.buffers_at(float(t))}
        device = self.a_0.device if self.param_names else torch.device("cpu")
        return _assemble(self.template, state, device, bn_data, adapter)


def fit_bezier(
    model_a: nn.Module,
    model_b: nn.Module,
    data: ExampleSet,
    adapter,
    cfg: TrainConfig,
    seed: int,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> BezierCurve:
    """Fit the control point of a quadratic Bezier curve from ``model_a`` to ``model_b``.

    Garipov et al. 2018, Sec. 3.1, estimated stochastically: at each step draw
    ``t ~ U(0, 1)`` from a generator seeded by ``seed`` and take a gradient step on
    ``mean_i loss(phi(t); x_i, y_i)`` over one batch of ``data`` (the adapter's
    per-example loss), with respect to ``theta`` only; the endpoints stay fixed.
    Optimisation runs through :func:`unlearnkit.loop.run_loop` (``cfg``: optimiser,
    learning rate, weight decay on ``theta``, epochs over ``data``, step budget,
    clipping), so it is deterministic under ``seed`` and its cost is counted
    (``curve.fit_stats``).
    """
    device = torch.device(device) if device is not None else next(model_a.parameters()).device
    curve = BezierCurve(model_a, model_b).to(device)
    gen = torch.Generator().manual_seed(derive_seed(seed, "bezier-t") % (2**63))

    def objective(ctx: StepContext) -> torch.Tensor:
        t = float(torch.rand((), generator=gen))
        return adapter.per_example_loss(curve.at(t), ctx.batch("train")).mean()

    curve.fit_stats = run_loop(
        curve,
        objective,
        {"train": data},
        cfg,
        seed,
        device=device,
        progress=progress,
        desc="bezier",
        params=list(curve.theta),
    )
    return curve.eval()


def evaluate_path(
    path: BezierCurve | Callable[[float], nn.Module],
    task,
    ts: Sequence[float] = tuple(np.linspace(0, 1, 11)),
    reference_scores: dict[str, Scores] | None = None,
    metrics: Sequence[str] = PATH_METRICS,
    seed: int = 0,
) -> list[dict]:
    """Metrics of the model at each ``t`` of a path, one dict per ``t`` (in order).

    ``path`` is a :class:`BezierCurve` (its BatchNorm statistics are recomputed on the
    task's retain set at each ``t``) or any callable ``t -> model`` (e.g.
    ``lambda t: interpolate_linear(a, b, t, task.retain)``). Each dict holds ``t``,
    ``loss_<split>`` (mean cross-entropy, ``Scores.loss``) for every split, and the
    outputs of ``metrics`` (default: ``acc_<split>``, ``mia_lr_auc``/``_advantage``, and
    with ``reference_scores`` ``js_forget``/``js_test``), from one scoring pass per split.
    """
    if len(ts) == 0:
        raise ConfigError("give at least one t to evaluate the path at")
    if isinstance(path, BezierCurve):
        curve = path
        path = lambda t: curve.model_at(t, bn_data=task.retain, adapter=task.adapter)  # noqa: E731
    elif not callable(path):
        raise ConfigError("path must be a BezierCurve or a callable t -> model")
    out = []
    for t in ts:
        scores = score_splits(path(float(t)), task, SPLITS)
        point = {"t": float(t)}
        point.update({f"loss_{s}": float(sc.loss.mean()) if len(sc) else float("nan") for s, sc in scores.items()})
        point.update(compute_metrics(EvalInputs(scores, reference_scores, seed=seed), list(metrics)))
        out.append(point)
    return out


def barrier(points: Sequence[dict], key: str = "loss_retain") -> float:
    """Largest rise of ``key`` above the straight line between its values at the path's ends.

    ``max_t [v(t) - ((1 - t) v(t_0) + t v(t_1))]`` over the points, with ``t`` rescaled
    so the first and last points are the ends: the loss barrier of Entezari et al. 2022
    ("The Role of Permutation Invariance in Linear Mode Connectivity", ICLR), used by
    Garipov et al. and Frankle et al. 2020 in error form. 0 when the path never rises
    above the chord (connected modes); meant for lower-is-better keys (losses).
    """
    if len(points) < 2:
        raise ConfigError("a barrier needs at least the two endpoints of the path")
    t = np.array([p["t"] for p in points], dtype=float)
    v = np.array([p[key] for p in points], dtype=float)
    s = (t - t[0]) / (t[-1] - t[0])
    return float(np.max(v - ((1 - s) * v[0] + s * v[-1])))
