"""Bounded parameter-efficient unlearning: gradient difference through sine-bounded LoRA adapters."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..engines.loop import LoopStats
from ..errors import ConfigError
from ..utils import derive_seed
from .base import LoopParams, Method, hp, register

MLP_MODULES = ["gate_proj", "up_proj", "down_proj"]


class BoundedLoRALinear(nn.Module):
    """``nn.Linear`` plus a sine-bounded low-rank update (Ji et al. 2024, Sine-LoRA):

    ``y = x (W_0 + dW)^T + b``,  ``dW = (alpha / r) * sin(omega * B A) / g``,  ``g = sqrt(in_features)``

    with ``A`` ``(r, in)`` (Kaiming-uniform), ``B`` ``(out, r)`` (zeros, so ``dW = 0`` at the
    start) and ``W_0``, ``b`` frozen. Every entry obeys ``|dW_ij| <= alpha / (r g)``
    (:attr:`bound`) whatever ``A`` and ``B`` become.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, omega: float, generator: torch.Generator | None = None):
        super().__init__()
        self.base = base
        self.r, self.omega = r, omega
        self.scaling = alpha / r
        self.g = math.sqrt(base.in_features)
        w = base.weight
        a = torch.empty(r, base.in_features)
        bound = 1.0 / math.sqrt(base.in_features)  # kaiming_uniform_(a=sqrt(5)), as nn.Linear and LoRA
        a.uniform_(-bound, bound, generator=generator)
        self.lora_A = nn.Parameter(a.to(device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, device=w.device, dtype=w.dtype))

    @property
    def bound(self) -> float:
        """The largest ``|dW_ij|`` the adapter can produce."""
        return self.scaling / self.g

    def delta(self) -> torch.Tensor:
        return self.scaling * torch.sin(self.omega * (self.lora_B @ self.lora_A)) / self.g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.base.weight + self.delta(), self.base.bias)

    def merged(self) -> nn.Linear:
        """The base layer with ``dW`` added to its weight (the adapter is gone)."""
        with torch.no_grad():
            self.base.weight.add_(self.delta().to(self.base.weight.dtype))
        return self.base


def add_bounded_lora(
    model: nn.Module, target_modules, r: int, alpha: float, omega: float, seed: int
) -> list[BoundedLoRALinear]:
    """Replace every ``nn.Linear`` whose name ends in one of ``target_modules`` by a
    :class:`BoundedLoRALinear` around it (in place); returns the adapters."""
    gen = torch.Generator().manual_seed(derive_seed(seed, "bounded_lora", "A") % (2**63))
    targets = tuple(target_modules)
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in targets]
    if not names:
        raise ConfigError(
            f"bounded_lora: no nn.Linear named {', '.join(targets)} in the model; "
            "set target_modules to the names of its projections (e.g. q_proj, v_proj)"
        )
    adapters = []
    for n in names:
        parent_name, _, child = n.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        wrapped = BoundedLoRALinear(getattr(parent, child), r, alpha, omega, gen)
        setattr(parent, child, wrapped)
        adapters.append(wrapped)
    return adapters


def merge_bounded_lora(model: nn.Module) -> nn.Module:
    """Fold every :class:`BoundedLoRALinear` into its base layer (in place)."""
    for n, m in list(model.named_modules()):
        if isinstance(m, BoundedLoRALinear):
            parent_name, _, child = n.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, m.merged())
    return model


@dataclass
class BoundedLoRAParams(LoopParams):
    epochs: float = hp(10.0, "passes over the forget set (each step also draws a retain batch)")
    lr: float = hp(1e-2, "learning rate of the adapters")
    batch_size: int = hp(8, "batch size of each stream")
    r: int = hp(8, "adapter rank")
    lora_alpha: float = hp(3.0, "adapter scale alpha: every weight moves by at most alpha / (r sqrt(in_features))")
    omega: float = hp(100.0, "sine frequency omega (the slope of dW at the start is omega * alpha / (r g))")
    target_modules: list = hp(
        MLP_MODULES, "names of the nn.Linear layers that get adapters (the paper: the MLP projections)"
    )
    retain_weight: float = hp(1.0, "weight of the retain cross-entropy (gradient difference: 1)")

    def __post_init__(self) -> None:
        if self.r < 1 or self.lora_alpha <= 0 or self.omega <= 0 or self.retain_weight < 0:
            raise ConfigError("bounded_lora: r must be >= 1, lora_alpha and omega > 0, retain_weight >= 0")
        if isinstance(self.target_modules, str):
            self.target_modules = [self.target_modules]
        if not self.target_modules or not all(isinstance(t, str) and t for t in self.target_modules):
            raise ConfigError("bounded_lora: target_modules must be a non-empty list of module names")


@register
class BoundedLoRA(Method):
    """Bounded parameter-efficient unlearning (Garg, Saratchandran, Garg & Lucey 2025,
    "Stable Forgetting: Bounded Parameter-Efficient Unlearning in LLMs", arXiv:2509.24166),
    the paper's GD+Sine: gradient difference

    ``L = -E_{D_f} CE(f(x), y) + retain_weight * E_{D_r} CE(f(x), y)``  (answer-token CE)

    trained only through LoRA adapters on the MLP projections whose update is passed
    through a bounded function, the sine of Sine-LoRA (Ji et al. 2024, "Efficient Learning
    with Sine-Activated Low-Rank Matrices"; the same group):

    ``W = W_0 + (alpha / r) * sin(omega * B A) / g``,  ``g = sqrt(in_features)``.

    Gradient ascent through plain LoRA makes ``B A`` (and the weights and gradients)
    grow without bound; through the sine every weight moves by at most
    ``alpha / (r sqrt(in_features))``, so the ascent cannot blow the MLP up. After training
    the adapters are merged (``W_0 + dW``) and a plain model of the original's
    architecture (same state-dict keys) is returned.

    Sources and departures: the paper's text beyond the abstract (which says "applying
    bounded functions to MLP adapters") could not be consulted; the formula is the official
    Sine-LoRA code's (``sin(freq * B A) / s * scaling``, ``s = sqrt(in_features)``), which
    the paper builds on. ``omega = 100``, ``r = 8``, ``alpha = 3`` (a bound of 0.047 per
    weight on a 64-wide layer), Adam at 1e-2 and 10 epochs of batches of 8 were chosen on
    the tiny test task, not taken from the paper; ``alpha`` sets the bound and with it the
    forget/retain trade-off (the bound is what stops the ascent, not the step budget). The adapters
    are this module's own (:class:`BoundedLoRALinear`; peft has no sine variant), so
    ``task.lora`` is ignored (``uses_lora = False``); each step draws one forget and one
    retain batch and ``epochs`` counts passes over the forget set.
    """

    name = "bounded_lora"
    summary = "gradient difference through sine-bounded LoRA adapters on the MLP, merged back"
    modalities = ("causal_lm",)
    Params = BoundedLoRAParams
    citation = (
        "Garg et al. 2025, Stable Forgetting: Bounded Parameter-Efficient Unlearning in LLMs "
        "(arXiv:2509.24166); Ji et al. 2024, Sine-LoRA"
    )
    needs_retain = True
    uses_lora = False

    def _unlearn(self, model, task, seed, progress) -> LoopStats:
        p = self.params
        adapter = task.adapter
        flags = {n: q.requires_grad for n, q in model.named_parameters()}
        model.requires_grad_(False)
        adapters = add_bounded_lora(model, p.target_modules, p.r, p.lora_alpha, p.omega, seed)
        params = [q for a in adapters for q in (a.lora_A, a.lora_B)]

        def forget_loss(ctx, batch):
            loss = -adapter.per_example_loss(ctx.model, batch).mean()
            return loss

        stats = self.run_forget_loop(model, task, forget_loss, seed, progress, params=params)
        merge_bounded_lora(model)
        for n, q in model.named_parameters():
            q.requires_grad_(flags.get(n, True))
        return stats
