"""Exact unlearning by retraining from scratch on the retain set (the gold standard)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..engines.loop import LoopStats
from .base import Method, register


@dataclass
class RetrainParams:
    pass


@register
class Retrain(Method):
    """Retrain from scratch on the retain set with the original's recipe.

    Exact by definition: the result is drawn from the same distribution as a model
    that never saw the forget set. It is the *reference* every other method is
    compared with (Bourtoule et al. 2021 call it the naive baseline).
    """

    name = "retrain"
    modalities = ("classifier", "causal_lm", "graph", "recommender")
    Params = RetrainParams
    citation = "Bourtoule et al. 2021, Machine Unlearning (IEEE S&P), the naive retraining baseline"
    exact = True
    needs_retain = True
    contract_exempt = {
        "step_budget": "retraining follows the original's recipe, which is its budget; it has no max_steps",
        "divergence": "it has no learning rate of its own to misconfigure; it uses the recipe",
    }

    def unlearn(self, task, seed: int = 0, progress: bool = False):
        self._prepare(task)  # a task of a modality it does not serve is refused before anything is read
        if task.base_template is not None:  # the original is another shape (a sharded line's SISA
            # ensemble): the retrained model is model_factory's whatever the original
            fresh = task.model_factory(task.seed).to(task.device)
            task = dataclasses.replace(task, original=fresh, base_template=None, resume=None)
        return super().unlearn(task, seed, progress)

    def model_template(self, task):
        return task.model_factory(task.seed).to(task.device)

    def _unlearn(self, model, task, seed, progress) -> LoopStats:
        fresh, stats = task.train_from_scratch(task.retain, seed, progress, desc="retrain")
        model.load_state_dict(fresh.state_dict())
        return stats
