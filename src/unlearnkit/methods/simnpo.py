"""SimNPO: negative preference optimisation without a reference model."""

from __future__ import annotations

from dataclasses import dataclass

from ..engines.ensemble import LoopPlan
from ..errors import ConfigError
from .base import LoopParams, Method, hp, register
from .losses import simnpo_loss
from .npo import lm_forget_retain_plan


@dataclass
class SimNPOParams(LoopParams):
    epochs: float = hp(5.0, "passes over the forget set")
    lr: float = hp(1e-3, "learning rate")
    beta: float = hp(2.5, "inverse temperature: the forget loss stops pushing once beta * CE >> gamma")
    gamma: float = hp(0.0, "reward margin gamma (0: no margin)")
    retain_weight: float = hp(1.0, "weight of the retain cross-entropy; 0 gives plain SimNPO")

    def __post_init__(self) -> None:
        if self.beta <= 0 or self.retain_weight < 0:
            raise ConfigError("simnpo: beta must be > 0 and retain_weight >= 0")


@register
class SimNPO(Method):
    """SimNPO (Fan et al. 2024, "Simplicity Prevails: Rethinking Negative Preference
    Optimization for LLM Unlearning"), for classifiers and causal LMs:

    ``L = -(2/beta) * E_{D_f} log sigmoid( -(beta/|y|) * log p_theta(y|x) - gamma )
          + retain_weight * E_{D_r} CE(f(x), y)``

    with ``|y| = 1`` for a class label and ``|y|`` the answer's token count on a causal LM
    (``adapter.answer_length``, the paper's length normalisation;
    :func:`~unlearnkit.methods.losses.simnpo_loss`). It is
    NPO with the reference model's likelihood replaced by a length-normalised reward and a
    margin ``gamma``, so no frozen copy of the model is run. The retain term is the paper's
    regulariser (SimNPO with GradDiff's retain loss). Departures: on a classifier ``log p(y|x)``
    is the class log-likelihood instead of a token sequence's; ``beta = 2.5``, ``gamma = 0`` and Adam
    at ``lr = 1e-3`` were chosen on the digits task (the paper tunes them per LLM benchmark);
    each step draws one forget and one retain batch and ``epochs`` counts passes over the
    forget set.
    """

    name = "simnpo"
    modalities = ("classifier", "causal_lm")
    summary = "reference-free NPO: length-normalised likelihood with a margin, plus a retain term"
    Params = SimNPOParams
    citation = (
        "Fan et al. 2024, Simplicity Prevails: Rethinking Negative Preference Optimization for LLM Unlearning (SimNPO)"
    )
    needs_retain = True

    def loop_plan(self, model, task, seed) -> LoopPlan:
        p = self.params
        adapter = task.adapter

        if hasattr(adapter, "sequence_stats"):  # a causal LM: forget and retain rows in one grouped pass

            def forget_term(ctx, batch, log_lik, length):
                return simnpo_loss(log_lik, p.beta, p.gamma, length)

            return lm_forget_retain_plan(self, model, task, forget_term, seed)

        def forget_loss(ctx, batch):
            if hasattr(adapter, "sequence_log_likelihood"):  # a causal LM: answer positions' logits only
                log_lik = adapter.sequence_log_likelihood(ctx.model, batch)
            else:
                log_lik = adapter.log_likelihood(adapter.logits(ctx.model, batch), batch["y"])
            length = adapter.answer_length(batch["y"]) if hasattr(adapter, "answer_length") else 1
            loss = simnpo_loss(log_lik, p.beta, p.gamma, length)
            return loss

        return self.forget_loop_plan(model, task, forget_loss, seed)
