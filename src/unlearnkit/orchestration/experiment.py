"""Experiments: a workspace (store + artifacts + cache), the cached reference, and
running methods on a task into evaluated, stored runs.

Data flow of :func:`compare`::

    task ──► reference (retrain on retain; cached by task, forget fingerprint, seed)
      │            │
      ├─► method.unlearn(task, seed) ─► model ─┐
      │                                        ├─► scores (one pass per split) ─► metrics ─► RunRecord ─► store
      └─► original ────────────────────────────┘
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from torch import nn

from ..data.scenarios import Scenario
from ..engines.loop import LoopStats
from ..errors import ConfigError, StoreError, UnlearnkitError
from ..evaluation.metrics import EvalInputs, compute_metrics
from ..methods import get_method
from ..modalities import modality_of_spec
from ..task import Task
from ..utils import environment_info
from .artifacts import ArtifactStore, ModelCache
from .records import RunRecord
from .store import RunStore

DEFAULT_HOME = "unlearnkit-home"


def default_home() -> Path:
    return Path(os.environ.get("UNLEARNKIT_HOME", DEFAULT_HOME))


@dataclass
class Workspace:
    """Where runs (SQL store), model artifacts and cached originals/references live.

    ``root/runs.db`` is the SQLite store unless ``store_url`` names another database;
    ``root/artifacts`` holds safetensors files by content hash; ``root/cache`` maps
    (task, forget fingerprint, seed) to cached originals and references.
    """

    root: Path
    store: RunStore
    artifacts: ArtifactStore
    cache: ModelCache

    @classmethod
    def open(cls, root: str | Path | None = None, store_url: str | None = None) -> "Workspace":
        root = Path(root) if root is not None else default_home()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create workspace {root}: {e.strerror}") from None
        if not os.access(root, os.W_OK):
            raise StoreError(f"workspace {root} is not writable")
        store = RunStore(store_url or root / "runs.db")
        return cls(root, store, ArtifactStore(root / "artifacts"), ModelCache(root / "cache"))


def get_reference(task: Task, seed: int, cache: ModelCache | None = None,
                  progress: bool = False) -> tuple[nn.Module, LoopStats, bool]:
    """The reference for ``task`` under ``seed``: retrain on the retain set, cached.

    Returns ``(model, cost, from_cache)``. The cached cost is the cost of the original
    retraining, so cost ratios stay meaningful on a cache hit.
    """
    key = f"reference-{task.reference_key(seed)}"
    if cache is not None:
        model = task.model_factory(seed).to(task.device)
        info = cache.get(key, model)
        if info is not None:
            return model.eval(), LoopStats(**info["cost"]), True
    result = get_method("retrain").unlearn(task, seed=seed, progress=progress)
    if cache is not None:
        cache.put(key, result.model, {"cost": result.cost.to_dict()})
    return result.model, result.cost, False


@dataclass
class Evaluation:
    """Metrics of one model on a task, with the per-split scores they came from (the
    modality's score tables: ``Scores`` per split for classifiers, ``LMScores`` per set for
    causal LMs)."""

    metrics: dict[str, float]
    scores: dict


def score_model(model: nn.Module, task: Task) -> dict:
    """The scores every metric of ``task``'s modality derives from (one pass per split)."""
    return task.modality_info.score_model(model, task)


def evaluate_model(model: nn.Module, task: Task, reference_scores: dict | None = None,
                   cost: LoopStats | None = None, reference_cost: LoopStats | None = None,
                   seed: int = 0, metrics: Sequence[str] | None = None,
                   scores: dict | None = None,
                   reference_model: nn.Module | None = None) -> Evaluation:
    """Score ``model`` once per split and derive every metric of its modality from the scores.

    ``reference_scores`` come from :func:`score_model` of the reference. The inputs also carry
    ``models`` (``model``, ``reference``, ``task``) for the metrics that run a model again
    (the language models' relearning attack and FADE).
    """
    scores = scores or score_model(model, task)
    if reference_scores is not None:
        kinds = {type(v) for v in scores.values()}
        if any(type(v) not in kinds for v in reference_scores.values()):
            raise ConfigError("the reference scores are of another kind than the model's: "
                              "compute them with score_model(reference, task)")
    inputs = EvalInputs(scores, reference_scores, cost, reference_cost, seed, scenario=task.split.scenario,
                        modality=task.modality,
                        models={"model": model, "reference": reference_model, "task": task})
    return Evaluation(compute_metrics(inputs, list(metrics) if metrics else None), scores)


def _record(task: Task, kind: str, method: str, seed: int, params: dict, cost: LoopStats | None,
            metrics: dict, artifact: str | None, env: dict, tags: dict | None = None,
            **kw) -> RunRecord:
    """A record of one model on ``task``; ``tags["split"]`` holds every split's size and fingerprint."""
    return RunRecord(
        kind=kind, task_key=task.key, method=method, seed=seed, task_spec=task.spec,
        scenario=task.split.scenario, forget_fingerprint=task.split.forget_fingerprint,
        forget_ids=[str(i) for i in task.split.forget_ids], params=params,
        metrics=metrics, cost=cost.to_dict() if cost is not None else {}, environment=env,
        artifact=artifact, tags={"split": task.split.describe(), **(tags or {})}, **kw,
    )


@dataclass
class Comparison:
    """Records of the original, the reference and every method on one task and seed."""

    task: Task
    records: list[RunRecord] = field(default_factory=list)
    models: dict[str, nn.Module] = field(default_factory=dict)

    def by_method(self) -> dict[str, RunRecord]:
        return {r.method: r for r in self.records}


def compare(
    task: Task,
    methods: Iterable[str | tuple[str, dict]],
    seed: int | None = None,
    workspace: Workspace | None = None,
    progress: bool = False,
    keep_models: bool = False,
    on_record: Callable[[RunRecord], None] | None = None,
    store_records: bool = True,
) -> Comparison:
    """Run each method on ``task`` and evaluate it, the original and the reference.

    A method that fails (e.g. diverges) yields a record with ``status="failed"`` and
    its error; the others go on. With a ``workspace`` every model is saved as a
    content-addressed artifact and (unless ``store_records=False``) every record stored.
    """
    seed = task.seed if seed is None else seed
    env = environment_info()
    cache = workspace.cache if workspace else None
    ref_model, ref_cost, _ = get_reference(task, seed, cache, progress)
    ref_scores = score_model(ref_model, task)
    ref_eval = evaluate_model(ref_model, task, ref_scores, ref_cost, ref_cost, seed, scores=ref_scores,
                              reference_model=ref_model)
    out = Comparison(task)

    def save(model: nn.Module) -> str | None:
        return workspace.artifacts.save(model) if workspace else None

    def emit(rec: RunRecord, model: nn.Module | None) -> None:
        out.records.append(rec)
        if workspace and store_records:
            workspace.store.add(rec)
        if keep_models and model is not None:
            out.models[rec.method] = model
        if on_record:
            on_record(rec)

    orig_eval = evaluate_model(task.original, task, ref_eval.scores, task.original_cost, ref_cost, seed,
                               reference_model=ref_model)
    emit(_record(task, "train", "original", task.seed, {"recipe": task.recipe.to_dict()},
                 task.original_cost, orig_eval.metrics, save(task.original), env), task.original)
    emit(_record(task, "reference", "retrain", seed, {"recipe": task.recipe.to_dict()}, ref_cost,
                 ref_eval.metrics, save(ref_model), env), ref_model)
    for spec in methods:
        name, params = (spec, {}) if isinstance(spec, str) else spec
        try:
            method = get_method(name, **params)
            result = method.unlearn(task, seed=seed, progress=progress)
        except UnlearnkitError as e:
            emit(_record(task, "unlearn", name, seed, dict(params), None, {}, None, env,
                         status="failed", error=str(e)), None)
            continue
        ev = evaluate_model(result.model, task, ref_eval.scores, result.cost, ref_cost, seed,
                            reference_model=ref_model)
        emit(_record(task, "unlearn", name, seed, result.params, result.cost, ev.metrics,
                     save(result.model), env, tags={k: _jsonable(v) for k, v in result.extra.items()}),
             result.model)
    return out


def _jsonable(v):
    if isinstance(v, LoopStats):
        return v.to_dict()
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def task_from_spec(spec: dict, scenario: Scenario | dict | None = None,
                   cache: ModelCache | None = None, progress: bool = False,
                   device: str | None = None) -> Task:
    """Rebuild a stored task through its modality (``spec["modality"]``), with its own
    forget set or ``scenario``; the original comes from ``cache`` when it holds it (it does
    after ``train``)."""
    return modality_of_spec(spec).task_from_spec(spec, scenario, cache=cache, progress=progress, device=device)
