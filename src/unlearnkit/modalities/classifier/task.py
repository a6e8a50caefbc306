"""Classifier tasks: built-in and file datasets (:func:`make_task`), your own model and data
(:meth:`ClassifierTask.from_model`), and the spec round trip (:func:`task_from_spec`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ...data.dataset import ExampleSet
from ...data.loaders import load_dataset
from ...data.scenarios import (
    IdsForget,
    Partition,
    RandomForget,
    Scenario,
    Split,
    SubjectForget,
    matched_holdout,
    parse_scenario,
    partition,
    scenario_from_dict,
)
from ...engines.loop import LoopStats, TrainConfig
from ...errors import ConfigError, UnlearnkitError
from ...task import ModelCache, Task
from ...utils import derive_seed, resolve_device, seed_everything, stable_hash
from .adapter import ClassifierAdapter
from .models import build_model


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
class ClassifierTask(Task):
    """A classifier task. Besides :class:`~unlearnkit.task.Task`'s fields:

    Attributes:
        pool: never-trained examples that holdouts are drawn from (built-in tasks; None for
            :meth:`from_model`, whose holdouts are drawn from the test set).
    """

    pool: ExampleSet | None = None

    @property
    def num_classes(self) -> int:
        return int(self.adapter.num_classes)

    def holdout_for(self, forget: ExampleSet, rng: np.random.Generator) -> ExampleSet:
        """Drawn like ``forget`` (class for class) from the never-trained pool, or from the
        test set when the task has no pool."""
        return matched_holdout(self.pool if self.pool is not None else self.split.test, forget, rng)

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
    ) -> "ClassifierTask":
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
        spec = {
            "modality": "classifier",
            "dataset": name,
            "train_fingerprint": train.fingerprint,
            "model": type(model).__name__,
            "recipe": (recipe or TrainConfig()).to_dict(),
            "seed": seed,
            "scenario": split.scenario,
            "weights": _weights_hash(model),
        }
        return cls(split, adapter, model_factory, recipe or TrainConfig(), model.eval(), LoopStats(), seed, spec)


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
) -> ClassifierTask:
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
        "modality": "classifier",
        "dataset": data.name,
        "data_fingerprint": data.fingerprint,
        "source": dataset if isinstance(dataset, str) else None,
        "dataset_kwargs": dataset_kwargs,
        "train_fingerprint": split.train.fingerprint,
        "train_labels": stable_hash(split.train.labels.tolist()),
        "model": model,
        "model_kwargs": model_kwargs,
        "recipe": recipe.to_dict(),
        "seed": seed,
        "test_fraction": test_fraction,
        "pool_fraction": pool_fraction,
        "scenario": split.scenario,
    }
    if dp is not None:
        from ...engines.dp import DPConfig, dp_plan

        spec["dp"] = dp_plan(len(split.train), recipe, DPConfig.from_dict(dp))
    task = ClassifierTask(split, adapter, factory, recipe, factory(seed).to(device), LoopStats(), seed, spec, part.pool)
    adapter.check_model(task.original, split.train)
    info = cache.get(f"original-{task.key}", task.original) if cache is not None else None
    if info is None:
        if dp is None:
            original, stats = task.train_from_scratch(split.train, seed, progress, desc="original")
        else:
            from ...engines.dp import train_dp_original

            d = spec["dp"]
            original, stats, _ = train_dp_original(
                factory(seed).to(device),
                split.train,
                adapter,
                recipe,
                seed,
                d["epsilon"],
                d["delta"],
                d["max_grad_norm"],
                device,
                progress,
            )
        task.original = original
        task.original_cost = stats
        if cache is not None:
            cache.put(f"original-{task.key}", original, {"cost": stats.to_dict()})
    else:
        task.original_cost = LoopStats(**info["cost"])
    task.original.eval()
    return task


def task_from_spec(
    spec: dict,
    scenario: Scenario | dict | None = None,
    cache: ModelCache | None = None,
    progress: bool = False,
    device: str | torch.device | None = None,
) -> ClassifierTask:
    """Rebuild a built-in or file-based task from a stored ``task_spec`` (the original from
    ``cache`` when it holds it, as it does after ``train``)."""
    if spec.get("source") is None:
        raise UnlearnkitError(
            "this run's task was built from in-memory data; rebuild it in Python with Task.from_model"
        )
    if isinstance(scenario, dict):
        scenario = scenario_from_dict(scenario)
    return make_task(
        spec["source"],
        spec["model"],
        scenario or scenario_from_dict(spec["scenario"]),
        seed=spec["seed"],
        recipe=TrainConfig(**spec["recipe"]),
        model_kwargs=spec.get("model_kwargs"),
        device=device,
        cache=cache,
        progress=progress,
        test_fraction=spec["test_fraction"],
        pool_fraction=spec["pool_fraction"],
        dataset_kwargs=spec.get("dataset_kwargs"),
        dp=spec.get("dp"),
    )


def request_scenario(
    ids: list[str] | None = None, subjects: list[str] | None = None, scenario: str | None = None
) -> Scenario:
    """The scenario of a deletion request: example ids, subject ids or a scenario string
    (``random:0.1``, ``class:3``, ...); exactly one."""
    given = [x for x in (ids, subjects, scenario) if x]
    if len(given) != 1:
        raise ConfigError("give exactly one of --forget-ids, --forget-subjects or --scenario")
    if ids:
        return IdsForget(ids=list(ids))
    if subjects:
        return SubjectForget(subjects=list(subjects))
    return parse_scenario(scenario)


def build_task(
    kind: str, options: dict, seed: int = 0, cache: ModelCache | None = None, progress: bool = False
) -> ClassifierTask:
    """The task ``unlearnkit train`` builds: ``options`` holds ``dataset``, ``model``,
    ``trainer``, ``objective_noise``, recipe overrides (``epochs``, ``lr``, ``batch_size``) and
    table columns (``label``, ``id_column``, ``subject_column``); None = default."""
    from dataclasses import replace
    from pathlib import Path

    o = {k: v for k, v in options.items() if v is not None}
    dataset = str(o.get("dataset", "digits"))
    model = str(o.get("model", "mlp"))
    kwargs = {k: o[k] for k in ("label", "id_column", "subject_column") if o.get(k)}
    p = Path(dataset)
    source = str(p.resolve()) if p.exists() else dataset
    recipe = default_recipe(model, o.get("trainer", "loop"), float(o.get("objective_noise", 0.0)))
    recipe = replace(recipe, **{k: o[k] for k in ("epochs", "lr", "batch_size") if k in o})
    return make_task(source, model, seed=seed, recipe=recipe, cache=cache, progress=progress, dataset_kwargs=kwargs)


def train_metrics(task: ClassifierTask) -> dict[str, float]:
    """Accuracy of the freshly trained original on its training and test data."""
    from .scores import compute_scores

    out = {}
    for name, data in (("acc_train", task.train), ("acc_test", task.test)):
        sc = compute_scores(task.original, data, task.adapter)
        out[name] = float(np.mean(sc.pred == sc.labels)) if len(data) else float("nan")
    return out


def task_label(spec: dict) -> str:
    """``dataset · model`` of a task spec (empty parts left out)."""
    parts = [str(spec[k]) for k in ("dataset", "model") if spec.get(k) not in (None, "")]
    return " · ".join(parts) or "task"
