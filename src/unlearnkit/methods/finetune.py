"""Fine-tune on the retain set (catastrophic forgetting of the forget set)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from torch import nn

from ..engines.loop import LoopStats, cross_entropy_objective, run_loop
from .base import LoopParams, Method, hp, register


@dataclass
class FinetuneParams(LoopParams):
    epochs: float = hp(3.0, "passes over the retain set")
    lr: float = hp(3e-3, "learning rate")


@register
class Finetune(Method):
    """Continue training the original on the retain set only.

    Warnecke et al. 2023 ("Machine Unlearning of Features and Labels") and Golatkar et
    al. 2020 use it as the baseline "FT": minimise ``E_{(x,y) in D_r} CE(f(x), y)``
    starting from the original weights, relying on catastrophic forgetting.
    """

    name = "finetune"
    modalities = ("classifier", "causal_lm", "graph", "recommender")
    Params = FinetuneParams
    citation = "Golatkar et al. 2020 (CVPR), Eternal Sunshine, fine-tuning baseline; Warnecke et al. 2023"
    needs_retain = True
    contract_exempt = {
        "moves_forget:causal_lm": (
            "a language model that has memorised an answer keeps it through fine-tuning on other "
            "rows (the forget NLL stays near 0 on the test task): the baseline that shows why "
            "catastrophic forgetting is no unlearning method"
        ),
        "moves_forget:recommender": (
            "fine-tuning on the retain set never touches a deleted user's own embedding (BPR-MF: a "
            "user's vector gets gradients only from their own interactions), so their forget loss "
            "stays where the original left it (measured 0.105 before, 0.104 after on the tiny task; "
            "the reference's 0.76)"
        ),
    }

    def _unlearn(self, model, task, seed, progress) -> LoopStats:
        p = self.params
        return run_loop(
            model,
            cross_entropy_objective(task.adapter, "retain"),
            {"retain": task.retain},
            p.train_config(),
            seed,
            device=task.device,
            adapter=task.adapter,
            progress=progress,
            desc=self.name,
        )

    def unlearn_many(
        self, task, originals: Sequence[nn.Module], seeds: Sequence[int], progress: bool = False
    ) -> tuple[list[nn.Module], LoopStats]:
        """All models fine-tuned at once (:meth:`Method._train_many`: one vectorised ensemble,
        each model with its own seed's data order, as :meth:`unlearn` would run it)."""
        self._prepare(task)
        return self._train_many(task, originals, seeds, progress, "retain") or super().unlearn_many(
            task, originals, seeds, progress
        )
