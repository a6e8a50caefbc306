"""EU-k: re-initialise the last k layers and train them from scratch on the retain set."""

from __future__ import annotations

from dataclasses import dataclass

from ..engines.ensemble import LoopPlan
from ..errors import ConfigError
from ..utils import derive_seed, seed_everything
from .base import LoopParams, Method, hp, register
from .cf_k import last_k_layers, last_k_plan


@dataclass
class EUkParams(LoopParams):
    k: int = hp(1, "number of last layers (modules with parameters, in registration order) to re-train")
    epochs: float = hp(5.0, "passes over the retain set")
    lr: float = hp(1e-2, "learning rate")


@register
class EUk(Method):
    """EU-k, "exact unlearning of the last k layers" (Goel et al. 2022, "Towards Adversarial
    Evaluation of Machine Unlearning" / "Evaluating Inexact Unlearning Requires Revisiting
    Forgetting"):

    ``theta_L <- init``, then ``min_{theta_L} E_{(x,y) in D_r} CE(f(x; theta_{1..L-k}^o, theta_L), y)``:
    the parameters of the last ``k`` layers are re-initialised (each module's
    ``reset_parameters()``, seeded) and trained from scratch on the retain set with the
    first layers frozen at the original weights. Exact for the last ``k`` layers when the
    frozen features are taken as given; the features still carry the forget set.

    A *layer* is a module that owns parameters, in registration order (see
    :func:`~unlearnkit.methods.cf_k.last_k_layers`). Departures: the paper re-trains with the
    original recipe; here Adam at ``lr = 1e-2`` for 5 retain epochs (checked on digits);
    frozen modules are kept in eval mode.
    """

    name = "eu_k"
    summary = "re-initialise the last k layers and train them from scratch on the retain set"
    Params = EUkParams
    citation = (
        "Goel et al. 2022, Towards Adversarial Evaluation of Machine Unlearning "
        "(Evaluating Inexact Unlearning Requires Revisiting Forgetting), EU-k"
    )
    needs_retain = True

    def loop_plan(self, model, task, seed) -> LoopPlan:
        p = self.params
        layers = last_k_layers(model, p.k)
        seed_everything(derive_seed(seed, "eu_k", "init") % (2**31))
        for m in layers:
            if not hasattr(m, "reset_parameters"):
                raise ConfigError(
                    f"eu_k cannot re-initialise {type(m).__name__}: it has no "
                    "reset_parameters(); use cf_k or a smaller k"
                )
            m.reset_parameters()
        return last_k_plan(model, layers, task, p.train_config(), seed, self.name)
