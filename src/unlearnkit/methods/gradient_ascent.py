"""Gradient ascent on the forget set (NegGrad)."""

from __future__ import annotations

from dataclasses import dataclass

from ..engines.loop import LoopStats, run_loop
from .base import LoopParams, Method, hp, register
from .losses import gradient_ascent_loss


@dataclass
class GradientAscentParams(LoopParams):
    epochs: float = hp(5.0, "passes over the forget set")
    lr: float = hp(3e-4, "learning rate (ascent diverges fast: keep it small)")


@register
class GradientAscent(Method):
    """Maximise the loss on the forget set: minimise ``-E_{(x,y) in D_f} CE(f(x), y)``.

    Golatkar et al. 2020 ("NegGrad"), Jang et al. 2023 for language models. It has no
    term that keeps utility; the step budget and a small learning rate are its only
    brakes. The divergence guard stops it if the loss leaves the finite range.
    """

    name = "gradient_ascent"
    modalities = ("classifier", "causal_lm", "graph", "recommender")
    Params = GradientAscentParams
    citation = "Golatkar et al. 2020 (CVPR) NegGrad; Jang et al. 2023 (ACL) knowledge unlearning"

    def _unlearn(self, model, task, seed, progress) -> LoopStats:
        adapter = task.adapter

        def objective(ctx):
            return gradient_ascent_loss(adapter.per_example_loss(ctx.model, ctx.batch("forget")))

        return run_loop(
            model,
            objective,
            {"forget": task.forget},
            self.params.train_config(),
            seed,
            device=task.device,
            adapter=task.adapter,
            progress=progress,
            desc=self.name,
        )

    def unlearn_many(self, task, originals, seeds, progress: bool = False):
        """Every model at once (:meth:`Method._train_many` on ``-forget CE``)."""
        self._prepare(task)
        return self._train_many(task, originals, seeds, progress, "forget", -1.0) or super().unlearn_many(
            task, originals, seeds, progress
        )
