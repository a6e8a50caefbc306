"""Fisher forgetting: Gaussian noise in the weights, shaped by the retain set's Fisher information."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engines.loop import LoopStats
from ..errors import ConfigError, DivergenceError
from ..utils import derive_seed
from .base import Method, hp, register
from .curvature import FISHER_KINDS, all_finite, diagonal_fisher, head_parameters, trainable


@dataclass
class FisherParams:
    alpha: float = hp(1e-6, "noise scale: variance alpha / F before the clamps (the official code's alpha)")
    max_inverse: float = hp(1e3, "clamp of 1 / F (1e2 for the output layer), the official code's bound")
    fisher: str = hp(
        "true",
        "Fisher estimate: true (expectation over the model's classes, as the "
        "official code), empirical (true labels only) or batch",
    )
    batch_size: int = hp(256, "batch size of the Fisher pass")

    def __post_init__(self) -> None:
        if self.alpha <= 0 or self.max_inverse <= 0 or self.batch_size < 1:
            raise ConfigError("fisher: alpha and max_inverse must be > 0 and batch_size >= 1")
        if self.fisher not in FISHER_KINDS:
            raise ConfigError(f"fisher: fisher must be one of {', '.join(FISHER_KINDS)}, not {self.fisher!r}")


def forgotten_classes(task) -> list[int]:
    """Classes the forget set removes entirely: some forget example has the label and no
    retain example has it."""
    retained = set(task.retain.labels.tolist())
    return sorted(set(task.forget.labels.tolist()) - retained)


@register
class Fisher(Method):
    """Fisher forgetting (Golatkar, Achille and Soatto 2020, CVPR, "Eternal Sunshine of the
    Spotless Net: Selective Forgetting in Deep Networks", Sec. 4).

    The scrubbing function adds Gaussian noise shaped by the Fisher information ``F`` of
    the retain set: the paper's ``S(w) = w + (lambda sigma_h^2)^{1/4} F^{-1/4} n``,
    ``n ~ N(0, I)`` (noise covariance ``sqrt(lambda sigma_h^2) F^{-1/2}``), so that weights
    the retain set does not constrain are destroyed and the others kept.

    Implemented as the official code (github.com/AdityaGolatkar/SelectiveForgetting,
    ``get_mean_var``), with ``F`` the diagonal Fisher of ``D_r``,
    ``F_i = mean_x sum_y p(y|x) (d CE(f(x), y) / d w_i)^2``:

    * ``var = alpha * min(1 / (F + 1e-8), max_inverse)`` (``min(., max_inverse / 10)`` for
      the output layer);
    * for a weight matrix, ``var`` is averaged over its input dimension (one variance per
      output unit);
    * output-layer and one-dimensional parameters (biases, norms): ``var *= 10``;
    * classes the forget set removes entirely (no retain example left) get their output
      row's mean set to 0 and variance to ``1e-4`` (before the ``x10``), as the official
      class-removal setting does;
    * ``w <- mean + sqrt(var) * n``, ``n`` drawn from a generator seeded by the run's seed.

    Departures: the official variance is ``alpha / F`` (noise standard deviation
    ``~ F^{-1/2}``), not the paper's ``F^{-1/4}``; we follow the code, whose ``alpha`` is
    the scale people tune. The output layer is found as the model's last layer with
    parameters (the code uses "first dimension equals the number of classes"). The Fisher
    pass is counted as ``K |D_r|`` examples forward and backward with ``fisher="true"`` (one
    backward per class and example, ``K`` classes; ``|D_r|`` for the other kinds); no
    optimisation loop, one step recorded (the update).
    """

    name = "fisher"
    summary = "Gaussian weight noise scaled by the inverse retain-set Fisher information"
    Params = FisherParams
    citation = (
        "Golatkar, Achille and Soatto 2020 (CVPR), Eternal Sunshine of the Spotless Net: "
        "Selective Forgetting in Deep Networks (Fisher forgetting)"
    )
    needs_retain = True
    contract_exempt = {
        "step_budget": "no optimisation loop: one Fisher pass and one noise draw, so there is no max_steps to respect",
        "divergence": "no learning rate: the update is bounded noise (clamped variances) and cannot diverge",
    }

    def _unlearn(self, model, task, seed, progress) -> LoopStats:
        p = self.params
        fisher = diagonal_fisher(model, task.adapter, task.retain, p.batch_size, p.fisher)
        head = set(head_parameters(model, task.num_classes))
        gone = forgotten_classes(task)
        gen = torch.Generator(device="cpu").manual_seed(derive_seed(seed, "fisher") % (2**63))
        with torch.no_grad():
            for name, w in trainable(model).items():
                is_head = name in head
                inv = (1.0 / (fisher[name] + 1e-8)).clamp(max=p.max_inverse / (10 if is_head else 1))
                var = p.alpha * inv
                if var.ndim > 1:
                    var = var.mean(dim=1, keepdim=True).expand_as(w).clone()
                mean = w.detach().clone()
                if is_head and gone:
                    mean[gone] = 0.0
                    var[gone] = 1e-4
                if is_head or w.ndim == 1:
                    var = var * 10
                noise = torch.randn(w.shape, generator=gen).to(w.device, w.dtype)
                w.copy_(mean + var.sqrt().to(w.dtype) * noise)
        if not all_finite(model):
            raise DivergenceError("fisher: the scrubbed weights are not finite")
        n = len(task.retain) * (task.num_classes if p.fisher == "true" else 1)
        return LoopStats(steps=1, examples_forward=n, examples_backward=n)
