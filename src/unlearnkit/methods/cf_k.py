"""CF-k: catastrophically forget by fine-tuning only the last k layers on the retain set."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..engines.ensemble import LoopPlan
from ..engines.loop import cross_entropy_objective
from ..errors import ConfigError
from .base import LoopParams, Method, hp, register


def last_k_layers(model: nn.Module, k: int) -> list[nn.Module]:
    """The last ``k`` *layers* of ``model``: modules that own parameters directly
    (``parameters(recurse=False)``), in module registration order (``model.modules()``).

    For the built-in MLP the layers are its ``Linear`` modules (``k=1`` is the output
    head); a BatchNorm counts as a layer of its own. Registration order is the forward
    order for sequential models; for others it is the order the modules were assigned.
    """
    layers = [m for m in model.modules() if next(m.parameters(recurse=False), None) is not None]
    if not 1 <= k <= len(layers):
        raise ConfigError(f"k must be between 1 and {len(layers)} (the model's layers with parameters), not {k}")
    return layers[-k:]


def last_k_plan(model: nn.Module, layers: list[nn.Module], task, cfg, seed: int, desc: str) -> LoopPlan:
    """Minimise the retain cross-entropy over the parameters of ``layers`` only.

    Every other parameter is frozen (no gradient) and every other module is kept in eval
    mode, so frozen BatchNorm statistics do not move either. ``requires_grad`` flags are
    restored once the plan has run.
    """
    trainable = {id(p) for m in layers for p in m.parameters(recurse=False)}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)
    train_modules = {id(m) for layer in layers for m in layer.modules()}
    base = cross_entropy_objective(task.adapter, "retain")

    def objective(ctx):
        for m in ctx.model.modules():
            m.training = id(m) in train_modules
        return base(ctx)

    def restore() -> None:
        for name, p in model.named_parameters():
            p.requires_grad_(flags[name])

    return LoopPlan(
        model,
        objective,
        {"retain": task.retain},
        cfg,
        seed,
        params=[p for m in layers for p in m.parameters(recurse=False)],
        desc=desc,
        after=restore,
    )


@dataclass
class CFkParams(LoopParams):
    k: int = hp(1, "number of last layers (modules with parameters, in registration order) to fine-tune")
    epochs: float = hp(3.0, "passes over the retain set")
    lr: float = hp(1e-2, "learning rate")


@register
class CFk(Method):
    """CF-k, "catastrophic forgetting of the last k layers" (Goel et al. 2022, "Towards
    Adversarial Evaluation of Machine Unlearning" / "Evaluating Inexact Unlearning Requires
    Revisiting Forgetting"):

    ``min_{theta_L} E_{(x,y) in D_r} CE(f(x; theta_{1..L-k}^o, theta_L), y)``, ``theta_L`` the
    parameters of the last ``k`` layers, starting from the original weights; the first
    layers are frozen at ``theta^o``.

    A *layer* is defined generically as a module that owns parameters, in module
    registration order (see :func:`last_k_layers`); Goel et al. count ResNet blocks.
    Departures: Adam at ``lr = 1e-2`` for 3 retain epochs (the paper continues the original
    SGD recipe), checked on the digits task; frozen modules are kept in eval mode.
    """

    name = "cf_k"
    summary = "fine-tune only the last k layers on the retain set"
    Params = CFkParams
    citation = (
        "Goel et al. 2022, Towards Adversarial Evaluation of Machine Unlearning "
        "(Evaluating Inexact Unlearning Requires Revisiting Forgetting), CF-k"
    )
    needs_retain = True

    def loop_plan(self, model, task, seed) -> LoopPlan:
        p = self.params
        return last_k_plan(model, last_k_layers(model, p.k), task, p.train_config(), seed, self.name)
