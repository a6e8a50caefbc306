"""Gradient difference / NegGrad+: ascend on the forget set, descend on the retain set."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ..engines.ensemble import LoopPlan
from ..errors import ConfigError
from .base import LoopParams, Method, hp, register
from .losses import gradient_difference_loss


@dataclass
class GradDiffParams(LoopParams):
    epochs: float = hp(5.0, "passes over the forget set (each step also draws a retain batch)")
    lr: float = hp(1e-3, "learning rate")
    alpha: float = hp(0.9, "weight of the retain loss; the forget loss gets 1 - alpha (in [0, 1))")
    retain_loss: str = hp(
        "nll",
        "retain term: nll (cross-entropy on the labels) or kl (KL from the frozen original's outputs to the model's)",
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha < 1.0:
            raise ConfigError(f"graddiff: alpha must be in [0, 1), not {self.alpha}")
        if self.retain_loss not in ("nll", "kl"):
            raise ConfigError(f"graddiff: retain_loss must be nll or kl, not {self.retain_loss!r}")


@register
class GradDiff(Method):
    """NegGrad+ (Kurmanji et al. 2023, "Towards Unbounded Machine Unlearning", NeurIPS):

    ``L = alpha * E_{D_r} CE(f(x), y) - (1 - alpha) * E_{D_f} CE(f(x), y)``

    minimised from the original weights; each step draws one forget batch and one retain
    batch. ``alpha = 0.5`` is Liu et al. 2022's gradient difference (GradDiff) up to a
    factor 2. ``retain_loss="kl"`` replaces the retain cross-entropy by
    ``E_{D_r} KL(p_orig(.|x) || p_theta(.|x))`` to the frozen original (TOFU's and
    OpenUnlearning's GradDiff ``retain_loss_type=KL``; on a causal LM the mean over the answer
    tokens of the next-token KL, where OpenUnlearning averages over every position of the
    sequence), whose forward passes are counted in the cost. Departure: ``epochs`` counts passes over the forget set (Kurmanji et al.
    iterate over the retain loader); the loss is unbounded below, so the gradient
    clipping and the step budget are its brakes.
    """

    name = "graddiff"
    modalities = ("classifier", "causal_lm", "graph", "recommender")
    Params = GradDiffParams
    citation = (
        "Kurmanji et al. 2023 (NeurIPS), Towards Unbounded Machine Unlearning, NegGrad+; "
        "Liu et al. 2022 (CoLLAs), Continual Learning and Private Unlearning, GradDiff"
    )
    needs_retain = True

    def loop_plan(self, model, task, seed) -> LoopPlan:
        adapter, alpha = task.adapter, self.params.alpha
        ref = copy.deepcopy(model).eval().requires_grad_(False) if self.params.retain_loss == "kl" else None

        def objective(ctx):
            if ref is None and hasattr(adapter, "sequence_stats"):  # a causal LM: one grouped pass
                (sf, nf), (sr, nr) = adapter.sequence_stats(ctx.model, [ctx.batch("forget"), ctx.batch("retain")])
                return gradient_difference_loss(-sf / nf.clamp_min(1), -sr / nr.clamp_min(1), alpha)
            lf = adapter.per_example_loss(ctx.model, ctx.batch("forget"))
            retain = ctx.batch("retain")
            if ref is None:
                lr = adapter.per_example_loss(ctx.model, retain)
            else:
                with torch.no_grad():
                    teacher = adapter.logits(ref, retain)
                ctx.count_forward(ctx.batch_size(retain))
                lr = adapter.per_example_kl(adapter.logits(ctx.model, retain), teacher, retain)
            return gradient_difference_loss(lf, lr, alpha)

        return LoopPlan(
            model,
            objective,
            {"forget": task.forget, "retain": task.retain},
            self.params.train_config(),
            seed,
            primary="forget",
            frozen=[ref] if ref is not None else [],
            desc=self.name,
        )

    def unlearn_many(self, task, originals, seeds, progress: bool = False):
        """Every model at once: with ``retain_loss="nll"`` as plain weighted training
        (:meth:`Method._train_many`: ``-(1 - alpha) * forget CE + alpha * retain CE``), with
        ``"kl"`` through the :meth:`loop_plan` (the frozen originals stacked as references)."""
        self._prepare(task)
        a = self.params.alpha
        many = (
            self._train_many(task, originals, seeds, progress, "forget", -(1.0 - a), {"retain": a})
            if self.params.retain_loss == "nll"
            else None
        )
        return many or super().unlearn_many(task, originals, seeds, progress)
