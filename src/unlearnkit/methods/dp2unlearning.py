"""DP2Unlearning: fine-tune a DP-SGD original on the retain set for half of retrain's budget."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..engines.loop import LoopStats, cross_entropy_objective, run_loop
from ..errors import ConfigError
from .base import LoopParams, Method, hp, register

#: the hyperparameters that default to the task's recipe (the retrain's), unless given
_FROM_RECIPE = ("lr", "batch_size", "optimizer", "grad_clip")


@dataclass
class DP2UnlearningParams(LoopParams):
    budget: float = hp(
        0.5,
        "fine-tuning epochs as a share of the retrain's (the task's recipe): the paper fine-tunes 5 epochs "
        "where retraining from scratch takes 10",
    )
    epochs: float | None = hp(None, "passes over the retain set; None: budget * the recipe's epochs")
    lr: float | None = hp(None, "learning rate; None: the recipe's")
    batch_size: int | None = hp(None, "batch size; None: the recipe's")
    optimizer: str | None = hp(None, "sgd, adam or adamw; None: the recipe's")
    grad_clip: float | None = hp(None, "clip the gradient norm to this value; unset: the recipe's (None given: none)")

    def __post_init__(self) -> None:
        if not 0 < self.budget <= 1:
            raise ConfigError(f"dp2unlearning: budget must be in (0, 1], not {self.budget}")


@register
class DP2Unlearning(Method):
    """Unlearning by fine-tuning a differentially private original on the retain set.

    Al Mahmud, Jebreel, Domingo-Ferrer & Sanchez 2025 ("DP2Unlearning: An Efficient and
    Guaranteed Unlearning Framework for LLMs"): stage 1 ("unlearning-ready" training) trains
    the original with epsilon-DP, here DP-SGD (Abadi et al. 2016: per-example gradients
    clipped to ``C``, Gaussian noise ``N(0, sigma^2 C^2 I)`` added to their sum, Poisson
    batches; ``sigma`` from Opacus' RDP accountant for the target ``(epsilon, delta)``;
    :func:`unlearnkit.engines.dp.train_dp_original`), so any training row's influence on
    ``theta_DP`` is bounded by ``(epsilon, delta)``; stage 2 answers a deletion request by
    minimising ``E_{D_r} loss(theta)`` from ``theta_DP`` with ordinary (non-private) training
    for ``budget`` times the retrain's epochs (the paper: 5 fine-tuning epochs against 10 for
    retraining, "about half the cost"). Fine-tuning reads only the retain set, so the forget
    set's disclosure is what ``theta_DP`` leaked: at most ``(epsilon, delta)`` per row
    (post-processing).

    Needs an original trained that way (``make_lm_task(dp=...)``, ``unlearnkit train --task
    profiles --dp-epsilon E``); any other original is refused, since fine-tuning a
    non-private model on the retain set is only ``finetune``. The learning rate, batch size,
    optimiser, clipping and schedule are the task's recipe (the retrain's) unless given.

    Departures: the paper fine-tunes a pretrained Phi-1.5 / Llama-2 with DP-SGD (SGD, lr
    5e-5) and compares against retraining from that pretrained start; here the tiny Llama is
    trained from scratch by both, with the recipe's optimiser (AdamW) inside DP-SGD as well.
    The paper's second variant (DP-MLM, a text-level DP rewriting of the training data) is not
    here. The guarantee is per training row (one QA pair), not per person.
    """

    name = "dp2unlearning"
    # causal LMs, the paper's setting; a DP classifier original (make_task(dp=...)) would take the same
    # fine-tuning, but a classifier method must also vectorise over shadow models from non-DP originals
    modalities = ("causal_lm",)
    Params = DP2UnlearningParams
    citation = (
        "Al Mahmud, Jebreel, Domingo-Ferrer & Sanchez 2025, 'DP2Unlearning: An Efficient and Guaranteed "
        "Unlearning Framework for LLMs' (arXiv:2504.13774); DP-SGD: Abadi et al. 2016 (CCS)"
    )
    needs_retain = True
    contract_exempt = dict.fromkeys(
        ("changes_model", "deterministic", "step_budget", "moves_forget", "divergence", "cost_accounting"),
        "needs an original trained with DP-SGD; the contract task's original is not (tests/test_dp_lm.py runs "
        "these checks on a DP-trained tiny Llama)",
    )

    def _prepare(self, task) -> None:
        super()._prepare(task)
        if not task.spec.get("dp"):  # before any copy or step
            raise ConfigError(
                "dp2unlearning needs an original trained with DP-SGD (make_lm_task(dp=...) or "
                "unlearnkit train --task profiles --dp-epsilon E); for a non-private original use finetune"
            )

    def _unlearn(self, model, task, seed, progress) -> LoopStats:
        p, recipe = self.params, task.recipe
        cfg = dataclasses.replace(
            recipe,
            epochs=p.epochs if p.epochs is not None else p.budget * recipe.epochs,
            max_steps=p.max_steps,
            trainer="loop",
            objective_noise=0.0,
            **{k: getattr(p, k) for k in _FROM_RECIPE if k in self._explicit or getattr(p, k) is not None},
        )
        return run_loop(
            model,
            cross_entropy_objective(task.adapter, "retain"),
            {"retain": task.retain},
            cfg,
            seed,
            device=task.device,
            adapter=task.adapter,
            progress=progress,
            desc=self.name,
        )

    def unlearn(self, task, seed: int = 0, progress: bool = False):
        result = super().unlearn(task, seed, progress)
        dp = task.spec["dp"]
        result.extra.update(
            epsilon=dp["epsilon_spent"],
            delta=dp["delta"],
            noise_multiplier=dp["noise_multiplier"],
            accountant=dp.get("accountant"),
        )
        return result
