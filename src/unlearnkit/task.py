"""Task: a modality adapter + data split + a trained original model + its training recipe.

A task can produce the reference model (the same training run on the retain set
only) through :meth:`Task.train_from_scratch`. Build one from a built-in dataset with
:func:`make_task`, or around your own model and data with :meth:`Task.from_model`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from .data.dataset import ExampleSet
from .data.loaders import load_dataset
from .data.scenarios import Partition, Scenario, Split, matched_holdout, partition
from .errors import ConfigError
from .loop import LoopStats, TrainConfig, cross_entropy_objective, run_loop
from .modalities.classifier import ClassifierAdapter
from .modalities.models import build_model
from .utils import derive_seed, resolve_device, seed_everything, stable_hash


class ModelCache(Protocol):
    """What :func:`make_task` needs from a cache of trained models (see orchestration)."""

    def get(self, key: str, model: nn.Module) -> dict | None: ...
    def put(self, key: str, model: nn.Module, info: dict) -> None: ...


def default_recipe(arch: str, trainer: str = "loop", objective_noise: float = 0.0) -> TrainConfig:
    """Training settings that fit the built-in models on the bundled datasets.

    ``trainer="linear_optimum"`` (linear models only): L-BFGS to the exact minimiser of
    the L2-regularised logistic objective, lambda = 1e-3 (for certified removal), with
    Guo et al.'s objective perturbation of standard deviation ``objective_noise``.
    """
    if trainer == "linear_optimum":
        if arch != "linear":
            raise ConfigError("trainer linear_optimum needs --model linear")
        return TrainConfig(weight_decay=1e-3, trainer="linear_optimum", objective_noise=objective_noise)
    if objective_noise:
        raise ConfigError("objective_noise needs trainer linear_optimum")
    if arch == "linear":
        return TrainConfig(epochs=30, batch_size=64, lr=1e-2, optimizer="adam", weight_decay=1e-4)
    if arch == "resnet18":
        return TrainConfig(epochs=10, batch_size=64, lr=1e-3, optimizer="adam")
    return TrainConfig(epochs=30, batch_size=64, lr=1e-3, optimizer="adam", weight_decay=5e-4)


@dataclass
class Task:
    """Everything a method and a metric need.

    Attributes:
        split: train / forget / retain / test / holdout sets.
        adapter: the modality adapter (per-example losses, logits).
        model_factory: ``seed -> fresh model`` of the original's architecture.
        recipe: how the original was trained (the reference is trained the same way).
        original: the trained original model (never modified by methods).
        original_cost: what training the original cost.
        seed: the task's seed (data partition, scenario, original's init).
        spec: JSON-able description used for cache keys and the store.
        pool: never-trained examples that holdouts are drawn from (built-in tasks).
        eval_sets: further named evaluation sets (causal-LM tasks: probes such as
            ``forget_paraphrase`` and the answer variants truth ratios need, see
            :mod:`unlearnkit.lm_task`); empty for classifier tasks.
        lora: LoRA settings (``with_lora`` keyword arguments) that every weight-changing
            method trains through on a causal-LM task, or None for full fine-tuning.
    """

    split: Split
    adapter: ClassifierAdapter
    model_factory: Callable[[int], nn.Module]
    recipe: TrainConfig
    original: nn.Module
    original_cost: LoopStats = field(default_factory=LoopStats)
    seed: int = 0
    spec: dict = field(default_factory=dict)
    pool: ExampleSet | None = None
    eval_sets: dict[str, ExampleSet] = field(default_factory=dict)
    lora: dict | None = None

    @property
    def modality(self) -> str:
        return getattr(self.adapter, "modality", "classifier")

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
    def num_classes(self) -> int:
        return int(getattr(self.adapter, "num_classes", 0))

    @property
    def device(self) -> torch.device:
        return torch.device(self.adapter.device)

    @property
    def key(self) -> str:
        """Identifies the original (data, labels, architecture, recipe, seed); neither the
        forget set nor the LoRA setting of unlearning changes it."""
        return stable_hash({k: v for k, v in self.spec.items() if k not in ("scenario", "lora")})

    def reference_key(self, seed: int) -> str:
        """Cache key of the reference: (task, forget fingerprint, seed)."""
        return f"{self.key}-{self.split.forget_fingerprint}-{seed}"

    def train_from_scratch(self, data: ExampleSet, seed: int, progress: bool = False,
                           desc: str = "retrain") -> tuple[nn.Module, LoopStats]:
        """Fresh model, trained with the original's recipe on ``data``."""
        model = self.model_factory(seed).to(self.device)
        if self.recipe.trainer == "linear_optimum":
            from .linear import train_linear_optimum

            return train_linear_optimum(data, lam=self.recipe.weight_decay, sigma=self.recipe.objective_noise,
                                        seed=seed, model=model)
        stats = run_loop(model, cross_entropy_objective(self.adapter), {"train": data}, self.recipe,
                         seed=seed, device=self.device, progress=progress, desc=desc)
        return model, stats

    def with_forget(self, forget_ids: Sequence[str], scenario: dict | None = None) -> "Task":
        """The same original with another forget set (a new deletion request).

        The holdout is drawn like the new forget set from the never-trained pool
        (or from the test set when the task has no pool).
        """
        forget_ids = [str(i) for i in forget_ids]
        rng = np.random.default_rng(derive_seed(self.seed, "holdout", len(forget_ids)))
        forget = self.split.train.select(forget_ids)
        if self.modality == "classifier":
            holdout = matched_holdout(self.pool if self.pool is not None else self.split.test, forget, rng)
        else:  # no classes to match: the task's never-trained holdout stays
            holdout = self.split.holdout
        split = Split(self.split.train, self.split.test, forget_ids, holdout,
                      scenario or {"kind": "ids", "count": len(forget_ids)})
        return Task(split, self.adapter, self.model_factory, self.recipe, self.original,
                    self.original_cost, self.seed, dict(self.spec, scenario=split.scenario), self.pool,
                    self.eval_sets, self.lora)

    # ------------------------------------------------------------------ user models
    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        train: ExampleSet,
        forget_ids: Sequence[str],
        test: ExampleSet,
        holdout: ExampleSet | None = None,
        recipe: TrainConfig | None = None,
        model_factory: Callable[[int], nn.Module] | None = None,
        num_classes: int | None = None,
        seed: int = 0,
        device: str | torch.device | None = None,
        name: str = "custom",
    ) -> "Task":
        """Wrap your own trained model and data.

        ``recipe`` says how ``model`` was trained, so the reference can be trained the
        same way on the retain set. ``model_factory(seed)`` builds a fresh model; by
        default a deep copy of ``model`` with every layer's parameters re-initialised.
        Without a ``holdout``, one is drawn from ``test`` like the forget set.
        """
        device = resolve_device(device)
        k = int(num_classes or max(train.num_classes or 0, test.num_classes or 0))
        adapter = ClassifierAdapter(k, device)
        model = model.to(device)
        adapter.check_model(model, train)
        if model_factory is None:
            model_factory = _reinit_factory(model)
        rng = np.random.default_rng(derive_seed(seed, "holdout"))
        if holdout is None:
            holdout = matched_holdout(test, train.select(forget_ids), rng)
        split = Split(train, test, list(forget_ids), holdout, {"kind": "ids", "count": len(forget_ids)})
        spec = {"dataset": name, "train_fingerprint": train.fingerprint, "model": type(model).__name__,
                "recipe": (recipe or TrainConfig()).to_dict(), "seed": seed, "scenario": split.scenario,
                "weights": _weights_hash(model)}
        return cls(split, adapter, model_factory, recipe or TrainConfig(), model.eval(), LoopStats(),
                   seed, spec)


def _weights_hash(model: nn.Module) -> str:
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _reinit_factory(model: nn.Module) -> Callable[[int], nn.Module]:
    template = copy.deepcopy(model).cpu()

    def factory(seed: int) -> nn.Module:
        seed_everything(seed)
        m = copy.deepcopy(template)
        for mod in m.modules():
            if hasattr(mod, "reset_parameters"):
                mod.reset_parameters()
        return m

    return factory


def make_task(
    dataset: str | ExampleSet = "digits",
    model: str = "mlp",
    scenario: Scenario | None = None,
    seed: int = 0,
    recipe: TrainConfig | None = None,
    model_kwargs: dict | None = None,
    device: str | torch.device | None = None,
    cache: ModelCache | None = None,
    progress: bool = False,
    test_fraction: float = 0.2,
    pool_fraction: float = 0.15,
    dataset_kwargs: dict | None = None,
    dp: dict | None = None,
) -> Task:
    """Load data, choose the forget set, and train (or load from ``cache``) the original.

    Args:
        dataset: a built-in name or path (see :func:`load_dataset`) or an ExampleSet.
        model: ``linear``, ``mlp``, ``cnn`` or ``resnet18``.
        scenario: how the forget set is chosen (default: random 10%).
        seed: seeds the partition, the scenario and the original's training.
        cache: where trained originals are kept (keyed by data, labels, model, recipe, seed).
        dataset_kwargs: passed to :func:`load_dataset` (e.g. ``label=`` for a CSV file).
        dp: train the original with DP-SGD instead (see :mod:`unlearnkit.dp`), e.g.
            ``{"epsilon": 8, "delta": 1e-5, "max_grad_norm": 1.0}``; ``spec["dp"]`` records it
            with the noise multiplier and the epsilon spent. The reference stays the ordinary
            (non-DP) retrain on the retain set: the gold standard DP2Unlearning compares with.
    """
    from .data.scenarios import RandomForget

    device = resolve_device(device)
    dataset_kwargs = dict(dataset_kwargs or {})
    data = load_dataset(dataset, **dataset_kwargs) if isinstance(dataset, str) else dataset
    scenario = scenario or RandomForget(0.1)
    part: Partition = partition(data, seed, test_fraction, pool_fraction)
    split = scenario.build(part, seed)
    recipe = recipe or default_recipe(model)
    model_kwargs = dict(model_kwargs or {})
    k = int(data.num_classes)
    adapter = ClassifierAdapter(k, device)

    def factory(s: int) -> nn.Module:
        seed_everything(derive_seed(s, "init") % (2**31))
        return build_model(model, data.input_shape, k, **model_kwargs)

    spec = {
        "dataset": data.name, "data_fingerprint": data.fingerprint,
        "source": dataset if isinstance(dataset, str) else None, "dataset_kwargs": dataset_kwargs,
        "train_fingerprint": split.train.fingerprint,
        "train_labels": stable_hash(split.train.labels.tolist()),
        "model": model, "model_kwargs": model_kwargs, "recipe": recipe.to_dict(), "seed": seed,
        "test_fraction": test_fraction, "pool_fraction": pool_fraction,
        "scenario": split.scenario,
    }
    if dp is not None:
        from .dp import DPConfig, dp_plan

        spec["dp"] = dp_plan(len(split.train), recipe, DPConfig.from_dict(dp))
    task = Task(split, adapter, factory, recipe, factory(seed).to(device), LoopStats(), seed, spec,
                part.pool)
    adapter.check_model(task.original, split.train)
    info = cache.get(f"original-{task.key}", task.original) if cache is not None else None
    if info is None:
        if dp is None:
            original, stats = task.train_from_scratch(split.train, seed, progress, desc="original")
        else:
            from .dp import train_dp_original

            d = spec["dp"]
            original, stats, _ = train_dp_original(factory(seed).to(device), split.train, adapter, recipe,
                                                   seed, d["epsilon"], d["delta"], d["max_grad_norm"],
                                                   device, progress)
        task.original = original
        task.original_cost = stats
        if cache is not None:
            cache.put(f"original-{task.key}", original, {"cost": stats.to_dict()})
    else:
        task.original_cost = LoopStats(**info["cost"])
    task.original.eval()
    return task
