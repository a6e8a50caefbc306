"""NPO: negative preference optimisation on the forget set, against the frozen original."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ..engines.ensemble import LoopPlan
from ..errors import ConfigError
from .base import LoopParams, Method, hp, register
from .losses import npo_loss


@dataclass
class NPOParams(LoopParams):
    epochs: float = hp(5.0, "passes over the forget set")
    lr: float = hp(1e-3, "learning rate")
    beta: float = hp(2.0, "inverse temperature of the NPO loss (small beta approaches gradient ascent)")
    retain_weight: float = hp(1.0, "weight of the retain cross-entropy (NPO+RT); 0 gives plain NPO")

    def __post_init__(self) -> None:
        if self.beta <= 0 or self.retain_weight < 0:
            raise ConfigError("npo: beta must be > 0 and retain_weight >= 0")


@register
class NPO(Method):
    """Negative Preference Optimization (Zhang et al. 2024, COLM, eq. 3):

    ``L_NPO = (2/beta) * E_{D_f} log(1 + (p_theta(y|x) / p_ref(y|x))^beta)
            = (2/beta) * E_{D_f} softplus(beta * (log p_theta(y|x) - log p_ref(y|x)))``

    with ``p_ref`` the frozen original; NPO+RT adds ``retain_weight * E_{D_r} CE`` (the
    paper's retain term). Its gradient is gradient ascent's, weighted by
    ``2 p_theta^beta / (p_theta^beta + p_ref^beta)``, which vanishes as a forget example's
    probability falls, so it does not diverge the way ascent does. On a causal-LM
    task ``log p(y|x)`` is the summed answer-token log-probability and ``beta = 0.1``, as in
    the paper (``modalities/causal_lm/defaults.py``). Departure for classifiers: ``log p(y|x)`` is the class
    log-likelihood and the default ``beta = 2`` was tuned on the digits task.
    The reference model's forward passes are counted in the cost. On a causal LM each forget
    row's ``log p_ref(y|x)`` is computed the first time a batch draws it and reused at later
    epochs (the reference is frozen and the rows fixed; ``FrozenLogLikelihood``), and the
    likelihoods come from the answer positions' logits only (``sequence_log_likelihood``).
    """

    name = "npo"
    modalities = ("classifier", "causal_lm", "graph", "recommender")
    Params = NPOParams
    citation = (
        "Zhang et al. 2024 (COLM), Negative Preference Optimization: From Catastrophic Collapse to Effective Unlearning"
    )
    needs_retain = True

    def loop_plan(self, model, task, seed) -> LoopPlan:
        p = self.params
        adapter = task.adapter
        ref = copy.deepcopy(model).eval().requires_grad_(False)
        # a causal LM's adapter keeps each forget row's reference log-likelihood once computed
        cached = getattr(adapter, "frozen_log_likelihood", None)
        ref_cache = cached(ref, len(task.forget)) if cached is not None else None

        if ref_cache is not None and hasattr(adapter, "sequence_stats"):

            def forget_term(ctx, batch, log_lik, length):
                ref_log_lik, n_ref = ref_cache(batch)
                ctx.count_forward(n_ref)
                return npo_loss(log_lik, ref_log_lik, p.beta)

            return lm_forget_retain_plan(self, model, task, forget_term, seed, frozen=[ref])

        def forget_loss(ctx, batch):
            if ref_cache is not None:
                log_lik = adapter.sequence_log_likelihood(ctx.model, batch)
                ref_log_lik, n_ref = ref_cache(batch)
                ctx.count_forward(n_ref)
                return npo_loss(log_lik, ref_log_lik, p.beta)
            log_lik = adapter.log_likelihood(adapter.logits(ctx.model, batch), batch["y"])
            with torch.no_grad():
                ref_log_lik = adapter.log_likelihood(adapter.logits(ref, batch), batch["y"])
            ctx.count_forward(ctx.batch_size(batch))
            loss = npo_loss(log_lik, ref_log_lik, p.beta)
            return loss

        return self.forget_loop_plan(model, task, forget_loss, seed, frozen=[ref])


def lm_forget_retain_plan(method: Method, model, task, forget_term, seed: int, frozen=()) -> LoopPlan:
    """:meth:`Method.forget_loop_plan` on a causal LM whose adapter has ``sequence_stats``:
    the step's forget batch and (``retain_weight > 0``) retain batch go through the model in
    one length-grouped set of forward passes (``adapter.sequence_stats``: the same per-row
    values as a pass per batch, fewer padded tokens). ``forget_term(ctx, batch, log_lik,
    length)`` is the forget loss from the forget rows' ``log p(y|x)`` and ``|y|``; the retain
    term is ``retain_weight`` times the mean answer-token NLL, as in ``forget_loop_plan``."""
    p, adapter = method.params, task.adapter
    weight = float(getattr(p, "retain_weight", 0.0) or 0.0)

    def objective(ctx):
        batches = [ctx.batch("forget")] + ([ctx.batch("retain")] if weight else [])
        stats = adapter.sequence_stats(ctx.model, batches)
        loss = forget_term(ctx, batches[0], *stats[0])
        if weight:
            s, n = stats[1]
            loss = loss + weight * (-s / n.clamp_min(1)).mean()
        return loss

    streams = {"forget": task.forget} | ({"retain": task.retain} if weight else {})
    return LoopPlan(
        model, objective, streams, p.train_config(), seed, primary="forget", frozen=tuple(frozen), desc=method.name
    )
