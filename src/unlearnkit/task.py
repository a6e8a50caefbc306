"""Task: a modality adapter + data split + a trained original model + its training recipe.

A task can produce the reference model (the same training run on the retain set
only) through :meth:`Task.train_from_scratch`. :class:`Task` holds only what every
modality has; each modality's task subclass adds its own fields (a classifier's pool of
never-trained examples, a language model's evaluation sets and LoRA setting) and is
built by the modality's builder: :func:`unlearnkit.make_task` (classifiers),
:func:`unlearnkit.modalities.causal_lm.task.make_lm_task` (language models), or
:meth:`Task.from_model` around your own classifier and data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from .data.dataset import ExampleSet
from .data.scenarios import Split
from .engines.loop import LoopStats, TrainConfig, cross_entropy_objective, run_loop
from .modalities import Modality, get_modality
from .utils import derive_seed, stable_hash

if TYPE_CHECKING:  # pragma: no cover
    from .methods.base import Method


class ModelCache(Protocol):
    """What task builders need from a cache of trained models (see orchestration)."""

    def get(self, key: str, model: nn.Module) -> dict | None: ...
    def put(self, key: str, model: nn.Module, info: dict) -> None: ...


@dataclass
class Task:
    """Everything a method and a metric need, whatever the modality.

    Attributes:
        split: train / forget / retain / test / holdout sets.
        adapter: the modality adapter (per-example losses, logits; see
            :class:`unlearnkit.modalities.Adapter`).
        model_factory: ``seed -> fresh model`` of the original's architecture.
        recipe: how the original was trained (the reference is trained the same way).
        original: the trained original model (never modified by methods).
        original_cost: what training the original cost.
        seed: the task's seed (data partition, scenario, original's init).
        spec: JSON-able description used for cache keys and the store; ``spec["modality"]``
            names the modality that rebuilds it.
        base_template: ``() -> fresh model`` of the original's shape where that is not
            ``model_factory``'s (a sharded model line's SISA ensemble); None otherwise.
        resume: the training state the original was saved with, for an exact method that
            continues it (a SISA ensemble's checkpoints, :class:`~unlearnkit.engines.sharded.
            SisaState`); None otherwise.
    """

    split: Split
    adapter: object
    model_factory: Callable[[int], nn.Module]
    recipe: TrainConfig
    original: nn.Module
    original_cost: LoopStats = field(default_factory=LoopStats)
    seed: int = 0
    spec: dict = field(default_factory=dict)
    # keyword-only: a modality's task subclass adds its own fields after these
    base_template: Callable[[], nn.Module] | None = field(default=None, kw_only=True)
    resume: object | None = field(default=None, kw_only=True)

    @property
    def modality(self) -> str:
        return self.adapter.modality

    @property
    def modality_info(self) -> Modality:
        """The registered :class:`~unlearnkit.modalities.Modality` of this task."""
        return get_modality(self.modality)

    @property
    def forget(self) -> ExampleSet:
        return self.split.forget

    @property
    def retain(self) -> ExampleSet:
        return self.split.retain

    @property
    def test(self) -> ExampleSet:
        return self.split.test

    @property
    def holdout(self) -> ExampleSet:
        return self.split.holdout

    @property
    def train(self) -> ExampleSet:
        return self.split.train

    @property
    def device(self) -> torch.device:
        return torch.device(self.adapter.device)

    @property
    def key(self) -> str:
        """Identifies the original (data, labels, architecture, recipe, seed); neither the
        forget set nor the LoRA setting of unlearning changes it."""
        return stable_hash({k: v for k, v in self.spec.items() if k not in ("scenario", "lora")})

    def reference_key(self, seed: int) -> str:
        """Cache key of the reference: (task, forget fingerprint, seed).

        After earlier deletions (``spec["history"]``) the reference is the retrain without
        every removed example, whatever model version the request starts from: the key is
        that of the task before any deletion with the fingerprint of all removed ids, so
        batches that remove the same examples in all (or a single request removing them at
        once) share one reference."""
        history = self.spec.get("history")
        if not history:
            return f"{self.key}-{self.split.forget_fingerprint}-{seed}"
        from .utils import fingerprint_ids

        original = stable_hash({k: v for k, v in self.spec.items() if k not in ("scenario", "lora", "history")})
        removed = {str(i) for i in self.split.forget_ids} | {str(i) for i in history.get("excluded_ids") or []}
        return f"{original}-{fingerprint_ids(removed)}-{seed}"

    def load_or_train_original(self, cache=None, progress: bool = False) -> None:
        """Set ``original`` (eval mode) and ``original_cost``: the cached original of this task's
        key where ``cache`` holds one, else trained on the training set with the recipe (and
        cached with its cost)."""
        info = cache.get(f"original-{self.key}", self.original) if cache is not None else None
        if info is None:
            self.original, self.original_cost = self.train_from_scratch(
                self.train, self.seed, progress, desc="original"
            )
            if cache is not None:
                cache.put(f"original-{self.key}", self.original, {"cost": self.original_cost.to_dict()})
        else:
            self.original_cost = LoopStats(**info["cost"])
        self.original.eval()

    def train_from_scratch(
        self, data: ExampleSet, seed: int, progress: bool = False, desc: str = "retrain"
    ) -> tuple[nn.Module, LoopStats]:
        """Fresh model, trained with the original's recipe on ``data``."""
        model = self.model_factory(seed).to(self.device)
        if self.recipe.trainer == "linear_optimum":
            from .engines.linear import train_linear_optimum

            return train_linear_optimum(
                data, lam=self.recipe.weight_decay, sigma=self.recipe.objective_noise, seed=seed, model=model
            )
        stats = run_loop(
            model,
            cross_entropy_objective(self.adapter),
            {"train": data},
            self.recipe,
            seed=seed,
            device=self.device,
            progress=progress,
            desc=desc,
            adapter=self.adapter,
        )
        return model, stats

    # -------------------------------------------------------------- modality hooks
    def holdout_for(self, forget: ExampleSet, rng: np.random.Generator) -> ExampleSet:
        """The never-trained examples a new forget set is compared with (membership
        inference): by default the task's own holdout stays."""
        return self.split.holdout

    def wraps_model(self, method: "Method") -> bool:
        """Whether :meth:`trainable_model` wraps what ``method`` trains (then the vectorised
        ensemble paths, which train plain models, do not apply)."""
        return False

    def trainable_model(self, model: nn.Module, method: "Method") -> nn.Module:
        """What ``method`` trains in place of ``model`` (e.g. LoRA adapters around it)."""
        return model

    def finished_model(self, model: nn.Module, method: "Method") -> nn.Module:
        """Turn what the method trained back into a model of the original's architecture."""
        return model

    def without_examples(self, ids: Sequence[str]) -> "Task":
        """The task with examples deleted before (a deployed line's history) left out of
        whatever the modality's task holds beyond its split (the split itself is filtered
        by :func:`~unlearnkit.orchestration.experiment.with_history`); nothing here."""
        return self

    def with_forget(self, forget_ids: Sequence[str], scenario: dict | None = None) -> "Task":
        """The same original with another forget set (a new deletion request); the holdout
        is chosen by :meth:`holdout_for`."""
        forget_ids = [str(i) for i in forget_ids]
        rng = np.random.default_rng(derive_seed(self.seed, "holdout", len(forget_ids)))
        holdout = self.holdout_for(self.split.train.select(forget_ids), rng)
        split = Split(
            self.split.train,
            self.split.test,
            forget_ids,
            holdout,
            scenario or {"kind": "ids", "count": len(forget_ids)},
        )
        return dataclasses.replace(self, split=split, spec=dict(self.spec, scenario=split.scenario))

    # ------------------------------------------------------------------ user models
    @classmethod
    def from_model(
        cls, model: nn.Module, train: ExampleSet, forget_ids: Sequence[str], test: ExampleSet, *args, **kwargs
    ) -> "Task":
        """Wrap your own trained classifier and data: see
        :meth:`unlearnkit.modalities.classifier.task.ClassifierTask.from_model` (the keyword
        arguments are its: ``holdout``, ``recipe``, ``model_factory``, ``num_classes``,
        ``seed``, ``device``, ``name``)."""
        from .modalities.classifier.task import ClassifierTask

        return ClassifierTask.from_model(model, train, forget_ids, test, *args, **kwargs)
