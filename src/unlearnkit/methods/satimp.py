"""SatImp: gradient ascent with each token weighted by its saturation and its importance."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engines.ensemble import LoopPlan
from ..errors import ConfigError
from .base import LoopParams, Method, hp, register


def satimp_weights(log_probs: torch.Tensor, beta1: float = 5.0, beta2: float = 1.0) -> torch.Tensor:
    """SatImp's per-token weights ``w_t = p_t^beta1 * (1 - p_t)^beta2`` (detached), with
    ``p_t = exp(log_probs)`` the token's own probability: the saturation factor ``p^beta1``
    leaves tokens already forgotten alone, the importance factor ``(1 - p)^beta2`` leaves the
    tokens the model finds trivial alone."""
    p = log_probs.detach().exp()
    return p**beta1 * (1.0 - p) ** beta2


def satimp_loss(log_probs: torch.Tensor, beta1: float = 5.0, beta2: float = 1.0) -> torch.Tensor:
    """``mean_t( w_t * log p_t )`` over the flat scored tokens, ``w_t`` of :func:`satimp_weights`:
    OpenUnlearning's ``compute_satimp_loss`` (``-mean(w * NLL)`` over the answer tokens of the
    batch). Minimising it ascends each token's NLL in proportion to its weight."""
    if beta1 < 0 or beta2 < 0:
        raise ValueError("beta1 and beta2 must be >= 0")
    return (satimp_weights(log_probs, beta1, beta2) * log_probs).mean()


@dataclass
class SatImpParams(LoopParams):
    epochs: float = hp(5.0, "passes over the forget set (each step also draws a retain batch)")
    lr: float = hp(1e-5, "learning rate (OpenUnlearning's config: 1e-5 on TOFU's 1B-8B models)")
    batch_size: int = hp(16, "batch size of each stream")
    beta1: float = hp(5.0, "power of the saturation weight p^beta1")
    beta2: float = hp(1.0, "power of the importance weight (1 - p)^beta2")
    forget_weight: float = hp(1.0, "gamma: weight of the weighted forget term")
    retain_weight: float = hp(0.1, "alpha: weight of the retain answer NLL (0: the forget term alone)")

    def __post_init__(self) -> None:
        if self.beta1 < 0 or self.beta2 < 0:
            raise ConfigError("satimp: beta1 and beta2 must be >= 0")
        if self.forget_weight <= 0 or self.retain_weight < 0:
            raise ConfigError("satimp: forget_weight must be > 0 and retain_weight >= 0")


@register
class SatImp(Method):
    """SatImp (Yang, Wang, Huang, Liu, Zhang and Han 2025, ICML, "Exploring Criteria of Loss
    Reweighting to Enhance LLM Unlearning"), as OpenUnlearning implements it
    (``src/trainer/unlearn/satimp.py``, ``compute_satimp_loss`` in ``src/trainer/utils.py``,
    ``configs/trainer/SatImp.yaml``):

    ``L = gamma * mean_{t in D_f} [ w_t * log p_theta(y_t | x, y_<t) ] + alpha * E_{D_r} NLL``
    ``w_t = stopgrad( p_t^beta1 * (1 - p_t)^beta2 )``,   ``p_t = p_theta(y_t | x, y_<t)``

    the mean over every answer token of the forget batch (:func:`satimp_loss`). The weight
    combines *saturation* (``p^beta1``: tokens whose probability has already fallen stop being
    pushed, as in WGA) with *importance* (``(1 - p)^beta2``: tokens the model is sure of, such as
    template words, are pushed less than the informative ones it is less sure of). The retain
    term is GradDiff's answer NLL (``retain_loss_type: NLL``).

    Defaults: ``beta1 = 5``, ``beta2 = 1``, ``gamma = 1`` (``forget_weight``) and ``alpha = 0.1``
    (``retain_weight``), the paper's choice as OpenUnlearning's README and SatImp class state
    them (forget:retain = 10); OpenUnlearning's ``SatImp.yaml`` overrides them with
    ``gamma = 0.1``, ``alpha = 1`` (what a run with its config gets). 5 epochs at ``lr = 1e-5`` and
    batches of 16 are the config's and the README's (billion-parameter models). Departures:
    Adam instead of AdamW with a warm-up schedule; on a causal-LM task ``lr = 3e-3``, batches
    of 8 and 10 epochs (``modalities/causal_lm/defaults.py``), measured on the tiny profiles
    task (seed 0: forget answer NLL 0.003 -> 3.18, retain 0.002 -> 0.041): 1e-5 does not move
    a tiny Llama trained from scratch, and with the yaml's ``gamma = 0.1``, ``alpha = 1`` the
    same run only reaches a forget NLL of 0.07 (the memorised tokens have ``p`` near 1, so
    ``(1 - p)^beta2`` starts the ascent very small). Each step draws one forget and one retain
    batch; ``epochs`` counts passes over the forget set (OpenUnlearning's forget-anchored
    dataset). Answer-position logits only (``token_log_probs``).
    """

    name = "satimp"
    modalities = ("causal_lm",)
    summary = "gradient ascent per token weighted by saturation p^beta1 and importance (1-p)^beta2, plus a retain NLL"
    Params = SatImpParams
    citation = (
        "Yang, Wang, Huang, Liu, Zhang and Han 2025 (ICML), Exploring Criteria of Loss Reweighting "
        "to Enhance LLM Unlearning (SatImp); OpenUnlearning's implementation"
    )
    needs_retain = True

    def loop_plan(self, model, task, seed) -> LoopPlan:
        p = self.params
        adapter = task.adapter

        def forget_loss(ctx, batch):
            lp, mask = adapter.token_log_probs(ctx.model, batch)  # answer positions' logits only
            return p.forget_weight * satimp_loss(lp[mask], p.beta1, p.beta2)

        return self.forget_loop_plan(model, task, forget_loss, seed)
