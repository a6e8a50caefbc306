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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from torch import nn

from ..data.scenarios import Scenario
from ..engines.loop import LoopStats
from ..errors import CheckpointError, ConfigError, StoreError, UnlearnkitError
from ..evaluation.metrics import EvalInputs, compute_metrics
from ..methods import get_method
from ..modalities import modality_of_spec
from ..task import Task
from ..utils import environment_info
from .artifacts import ArtifactStore, ModelCache
from .records import EvaluationRecord, RunRecord
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
    read_only: bool = False

    class _ReadOnlyCache(ModelCache):
        """A cache that is read, never written (a read-only workspace)."""

        def put(self, key, model, info) -> None:  # noqa: D102 - nothing is written
            return None

    @classmethod
    def open(cls, root: str | Path | None = None, store_url: str | None = None, mode: str = "rw") -> "Workspace":
        """Open the workspace at ``root`` (default ``$UNLEARNKIT_HOME`` or ./unlearnkit-home).

        ``mode``: ``"rw"`` creates it where missing and checks that runs can be written
        before any work starts; ``"r"`` (read commands) never creates anything and works on
        a workspace the user may only read; ``"existing"`` never creates anything and
        writes where it can (``read_only`` tells which it got).
        """
        if mode not in ("r", "rw", "existing"):
            raise ValueError(f"mode must be 'r', 'rw' or 'existing', not {mode!r}")
        root = Path(root) if root is not None else default_home()
        if mode == "rw":
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create workspace {root}: {e.strerror}") from None
            if not os.access(root, os.W_OK):
                raise StoreError(f"workspace {root} is not writable")
            store = RunStore(store_url or root / "runs.db")
            store.check_writable()
            return cls(root, store, ArtifactStore(root / "artifacts"), ModelCache(root / "cache"))
        if not root.is_dir() and store_url is None:
            what = "is not a folder" if root.exists() else "does not exist"
            raise StoreError(
                f"no workspace at {root} (it {what}); pass --home, or train a model first "
                "(reading never creates a workspace)"
            )
        location = store_url or root / "runs.db"
        store = RunStore(location, mode="r")  # it exists and can be read
        read_only = True
        if mode == "existing" and os.access(root, os.W_OK):
            try:
                writable = RunStore(location)
                writable.check_writable()
            except StoreError:
                pass
            else:
                store.close()
                store, read_only = writable, False
        cache_cls = cls._ReadOnlyCache if read_only else ModelCache
        return cls(root, store, ArtifactStore(root / "artifacts"), cache_cls(root / "cache"), read_only)


def warm_up(task: Task, progress: bool = False) -> None:
    """One optimiser step of the task's own loop on a throwaway copy of its original.

    A fresh process pays one-off start-up costs on its first training step: lazy imports
    (the loop's optimiser and progress bar, autograd's kernels), thread pools, allocator
    growth. Timing a method in a fresh process without this charges that start-up to the
    method, while a cached reference's time was measured in some other, warm process; with
    it, both sides of a cost ratio are timed warm (see the ``cost_ratio`` metric). It costs
    one batch of forward and backward, and changes nothing the task holds, nor the global
    random state (Python, NumPy, torch) that follows it.
    """
    import copy
    import dataclasses as _dc
    import random

    import torch

    from ..engines.loop import cross_entropy_objective, run_loop

    data = task.retain if len(task.retain) else task.train
    model = copy.deepcopy(task.original).to(task.device)
    cfg = _dc.replace(
        task.recipe, trainer="loop", objective_noise=0.0, max_steps=1, epochs=1.0, divergence_threshold=None
    )
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        run_loop(
            model,
            cross_entropy_objective(task.adapter),
            {"train": data},
            cfg,
            seed=0,
            device=task.device,
            progress=progress,
            desc="warm-up",
        )
    except UnlearnkitError:
        pass  # a warm-up that diverges has still warmed up
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
    del model


def get_reference(
    task: Task, seed: int, cache: ModelCache | None = None, progress: bool = False
) -> tuple[nn.Module, LoopStats, bool]:
    """The reference for ``task`` under ``seed``: retrain on the retain set, cached.

    Returns ``(model, cost, from_cache)``. The cached cost is the cost of the original
    retraining, so cost ratios stay meaningful on a cache hit; the retraining is timed
    after :func:`warm_up`, as methods answering a request are, so that process start-up
    is charged to neither side.
    """
    key = f"reference-{task.reference_key(seed)}"
    if cache is not None:
        model = task.model_factory(seed).to(task.device)
        info = cache.get(key, model)
        if info is not None:
            return model.eval(), LoopStats(**info["cost"]), True
    warm_up(task, progress)
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
    #: headline values the modality could not compute here, each with why (e.g. TOFU's truth
    #: ratios without perturbed answers): shown beside the metrics, never a silent skip
    not_computed: dict[str, str] = field(default_factory=dict)


def score_model(model: nn.Module, task: Task) -> dict:
    """The scores every metric of ``task``'s modality derives from (one pass per split)."""
    return task.modality_info.score_model(model, task)


def evaluate_model(
    model: nn.Module,
    task: Task,
    reference_scores: dict | None = None,
    cost: LoopStats | None = None,
    reference_cost: LoopStats | None = None,
    seed: int = 0,
    metrics: Sequence[str] | None = None,
    scores: dict | None = None,
    reference_model: nn.Module | None = None,
) -> Evaluation:
    """Score ``model`` once per split and derive every metric of its modality from the scores.

    ``reference_scores`` come from :func:`score_model` of the reference. The inputs also carry
    ``models`` (``model``, ``reference``, ``task``) for the metrics that run a model again
    (the language models' relearning attack and FADE).
    """
    scores = scores or score_model(model, task)
    if reference_scores is not None:
        kinds = {type(v) for v in scores.values()}
        if any(type(v) not in kinds for v in reference_scores.values()):
            raise ConfigError(
                "the reference scores are of another kind than the model's: "
                "compute them with score_model(reference, task)"
            )
    inputs = EvalInputs(
        scores,
        reference_scores,
        cost,
        reference_cost,
        seed,
        scenario=task.split.scenario,
        modality=task.modality,
        models={"model": model, "reference": reference_model, "task": task},
        forget_size=len(task.forget),
    )
    values = compute_metrics(inputs, list(metrics) if metrics else None)
    diagnose = getattr(task.modality_info.part("metrics"), "not_computed", None)
    missing = diagnose(inputs) if diagnose is not None and not metrics else {}
    return Evaluation(values, scores, missing)


def split_record(task: Task) -> dict:
    """Every split of ``task`` as a record keeps it: sizes and fingerprints of train, forget,
    retain, test and holdout, and the holdout's example ids (the forget ids are the
    record's ``forget_ids``), so that the run can be evaluated again on exactly these splits."""
    return {
        **task.split.describe(),
        "retain_fingerprint": task.retain.fingerprint,
        "holdout_ids": [str(i) for i in task.holdout.example_ids],
    }


def _record(
    task: Task,
    kind: str,
    method: str,
    seed: int,
    params: dict,
    cost: LoopStats | None,
    metrics: dict,
    artifact: str | None,
    env: dict,
    tags: dict | None = None,
    **kw,
) -> RunRecord:
    """A record of one model on ``task``: the one place run records are built.

    ``tags["split"]`` holds every split's size and fingerprint and the holdout's ids
    (:func:`split_record`)."""
    return RunRecord(
        kind=kind,
        task_key=task.key,
        method=method,
        seed=seed,
        task_spec=task.spec,
        scenario=task.split.scenario,
        forget_fingerprint=task.split.forget_fingerprint,
        forget_ids=[str(i) for i in task.split.forget_ids],
        params=params,
        metrics=metrics,
        cost=cost.to_dict() if cost is not None else {},
        environment=env,
        artifact=artifact,
        tags={"split": split_record(task), **(tags or {})},
        **kw,
    )


def evaluation_inputs(task: Task, seed: int, model_artifact: str | None, reference_artifact: str | None) -> dict:
    """What an evaluation's metrics were computed from: the model, every split (sizes,
    fingerprints, holdout ids), the reference (its cache key and artifact) and the seed."""
    split = split_record(task)
    split.pop("scenario", None)
    return {
        "model_artifact": model_artifact,
        "seed": int(seed),
        "split": split,
        "reference": {"key": task.reference_key(seed), "artifact": reference_artifact},
    }


def _evaluation(run_id: str, inputs: dict, metrics: dict) -> EvaluationRecord:
    """An evaluation record of run ``run_id`` (the one place they are built)."""
    from ..utils import stable_hash

    return EvaluationRecord(run_id=run_id, inputs_fingerprint=stable_hash(inputs), inputs=inputs, metrics=dict(metrics))


class _PinnedOriginal:
    """A model cache whose ``original-<task key>`` entry is one stored run's own artifact.

    Rebuilding a run's task through this cache loads that run's model, verified against
    its SHA-256 (a missing or corrupt artifact is a :class:`CheckpointError`), instead of
    whatever the cache holds under the key, and never trains a new original. Other keys
    (references) go to ``cache``.
    """

    def __init__(self, cache: ModelCache | None, artifacts: ArtifactStore, run: RunRecord):
        self.cache, self.artifacts, self.run = cache, artifacts, run
        self.loaded = False

    def get(self, key: str, model: nn.Module) -> dict | None:
        if key.startswith("original-"):
            if key != f"original-{self.run.task_key}":
                raise ConfigError(
                    f"run {self.run.id}'s task no longer rebuilds to the task it was trained "
                    "on (its data, labels or recipe changed on disk); restore them"
                )
            if not self.run.artifact:
                raise CheckpointError(f"run {self.run.id} has no stored model (status {self.run.status})")
            self.artifacts.load(self.run.artifact, model)  # SHA-256 verified; raises when missing/corrupt
            self.loaded = True
            return {"cost": {k: v for k, v in (self.run.cost or {}).items() if k in LoopStats.__dataclass_fields__}}
        return self.cache.get(key, model) if self.cache is not None else None

    def put(self, key: str, model: nn.Module, info: dict) -> None:
        if not key.startswith("original-") and self.cache is not None:
            self.cache.put(key, model, info)


def task_of_run(
    workspace: "Workspace",
    run: RunRecord,
    scenario: Scenario | dict | None = None,
    progress: bool = False,
    device: str | None = None,
) -> Task:
    """The task of a stored train run with ``scenario`` (a deletion request's), its original
    being that run's own artifact (hash verified), never a cache entry that may differ."""
    if run.kind != "train":
        raise ConfigError(f"run {run.id} is a {run.kind!r} run; a deletion request starts from a `train` run")
    pinned = _PinnedOriginal(workspace.cache, workspace.artifacts, run)
    task = modality_of_spec(run.task_spec).task_from_spec(
        run.task_spec, scenario, cache=pinned, progress=progress, device=device
    )
    if not pinned.loaded:
        raise CheckpointError(f"the task of run {run.id} did not load the run's own model")
    return task


def with_history(workspace: "Workspace", task: Task, history: dict | None) -> Task:
    """The task after earlier deletions (a deployed model line's later request).

    ``history`` is ``{"excluded_ids": [...], "base_artifact": hash}`` (and ``"base_state"``,
    a training-state manifest, where the version is a SISA ensemble: see
    :mod:`unlearnkit.orchestration.training_state`): the ids deleted
    before leave the training set, so neither the retain set, nor the reference's
    retraining, nor any split a metric reads holds them; the original becomes the model
    version the request starts from (``base_artifact``, hash verified). The spec records
    the history, so the task's key (and its reference's cache key) differ from the first
    request's and :func:`rebuild_task` rebuilds the same task from the record.
    """
    import dataclasses as _dc

    from ..data.scenarios import Split

    if not history:
        return task
    excluded = sorted({str(i) for i in history.get("excluded_ids") or []})
    forget = [str(i) for i in task.split.forget_ids]
    # ids a request names that were deleted before are an error; ids its modality took along
    # with the named ones (a graph node's edges: closure) that were deleted before leave the forget set
    named = {str(i) for i in (task.split.scenario or {}).get("ids") or forget}
    again = sorted(set(excluded) & named & set(forget))
    if again:
        shown = ", ".join(again[:5]) + (" ..." if len(again) > 5 else "")
        raise ConfigError(f"{len(again)} example(s) were deleted before: {shown}")
    split = task.split
    if set(excluded) & set(forget):
        split = Split(
            split.train, split.test, [i for i in forget if i not in set(excluded)], split.holdout, split.scenario
        )
    train = split.train.without(excluded, name=split.train.name) if excluded else split.train
    recorded = {"excluded_ids": excluded, "base_artifact": history.get("base_artifact")}
    state = history.get("base_state")
    if state:
        recorded["base_state"] = state
    task = _dc.replace(
        task,
        split=Split(train, split.test, split.forget_ids, split.holdout, split.scenario),
        spec=dict(task.spec, history=recorded),
    ).without_examples(excluded)
    base = history.get("base_artifact")
    if base:
        if state:  # a sharded line's version: a SISA ensemble and its checkpoints
            from . import training_state

            make = training_state.template(state, task)
            model = workspace.artifacts.load(base, make())  # SHA-256 verified, as every checkpoint
            task.resume = training_state.restore(state, task, workspace.artifacts, model)
            task.base_template = make
        else:
            model = task.model_factory(task.seed).to(task.device)
            workspace.artifacts.load(base, model)  # SHA-256 verified: a missing or corrupt version raises
        model.eval()
        task.original = model
    return task


def rebuild_task(workspace: "Workspace", run: RunRecord, progress: bool = False, device: str | None = None) -> Task:
    """The task a stored run was made and evaluated on, with exactly its recorded splits.

    The forget set is rebuilt from the run's scenario (so a subjects scenario draws its
    holdout as it did), else from its forget ids; a recorded holdout (``tags["split"]
    ["holdout_ids"]``) is restored when the rebuilt one differs. The original is the train
    run's own artifact, hash verified (the run itself for a train run, its ``parent`` for
    an unlearn run); runs with no such parent (bench, compare) take it from the cache.
    """
    origin = run if run.kind == "train" else (workspace.store.get(run.parent) if run.parent else None)
    cache = _PinnedOriginal(workspace.cache, workspace.artifacts, origin) if origin is not None else workspace.cache
    modality = modality_of_spec(run.task_spec)
    history = (run.task_spec or {}).get("history")
    spec = {k: v for k, v in run.task_spec.items() if k != "history"} if history else run.task_spec
    candidates: list = []
    if run.scenario and run.scenario.get("kind"):
        candidates.append(run.scenario)
    if run.forget_ids:
        candidates.append({"kind": "ids", "ids": list(run.forget_ids)})
    if not candidates:
        candidates.append(None)
    task, error = None, None
    for sc in candidates:
        try:
            t = modality.task_from_spec(spec, sc, cache=cache, progress=progress, device=device)
            t = with_history(workspace, t, history)
        except CheckpointError:
            raise
        except UnlearnkitError as e:
            error = e
            continue
        if run.forget_fingerprint is None or t.split.forget_fingerprint == run.forget_fingerprint:
            task = t
            break
    if task is None:
        raise error or ConfigError(f"the forget set of run {run.id} cannot be rebuilt from its record")
    return _restore_holdout(task, (run.tags or {}).get("split") or {})


def _restore_holdout(task: Task, recorded: dict) -> Task:
    import dataclasses as _dc

    from ..data.scenarios import Split

    ids = recorded.get("holdout_ids")
    if not ids or task.holdout.fingerprint == recorded.get("holdout_fingerprint"):
        return task
    for source in (getattr(task, "pool", None), task.split.test, task.split.holdout):
        if source is None:
            continue
        try:
            holdout = source.select(ids, name="holdout")
        except UnlearnkitError:
            continue
        split = Split(task.split.train, task.split.test, task.split.forget_ids, holdout, task.split.scenario)
        return _dc.replace(task, split=split)
    return task  # the recorded holdout is gone: evaluated on another one (a new evaluation)


def load_run_model(workspace: "Workspace", run: RunRecord, task: Task) -> nn.Module:
    """The stored model of ``run`` (a method's own shape, e.g. a SISA ensemble, for unlearn
    runs), hash verified."""
    if run.status != "ok" or not run.artifact:
        raise ConfigError(f"run {run.id} has no stored model (status {run.status})")
    template = (
        get_method(run.method, **run.params).model_template(task)
        if run.kind == "unlearn"
        else task.model_factory(run.seed).to(task.device)
    )
    return workspace.artifacts.load(run.artifact, template)


def train_record(task: Task, metrics: dict, artifact: str) -> RunRecord:
    """The record of a freshly trained original (``unlearnkit train``). A forget set is part
    of a trained task only where the modality has one of its own (``default_forget``);
    elsewhere the user chose none, so none is recorded."""
    rec = _record(
        task,
        "train",
        "original",
        task.seed,
        {"recipe": task.recipe.to_dict()},
        task.original_cost,
        metrics,
        artifact,
        environment_info(),
    )
    if task.modality_info.supports("default_forget"):
        return rec
    return replace(
        rec,
        scenario={},
        forget_ids=None,
        forget_fingerprint=None,
        tags={k: v for k, v in rec.tags.items() if k != "split"},
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
    Methods and the reference's retraining are timed warm (:func:`warm_up`).
    """
    seed = task.seed if seed is None else seed
    env = environment_info()
    cache = workspace.cache if workspace else None
    ref_model, ref_cost, ref_cached = get_reference(task, seed, cache, progress)
    if ref_cached:  # the methods are timed warm, as the reference's retraining was
        warm_up(task, progress)
    ref_scores = score_model(ref_model, task)
    ref_eval = evaluate_model(
        ref_model, task, ref_scores, ref_cost, ref_cost, seed, scores=ref_scores, reference_model=ref_model
    )
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

    orig_eval = evaluate_model(
        task.original, task, ref_eval.scores, task.original_cost, ref_cost, seed, reference_model=ref_model
    )
    emit(
        _record(
            task,
            "train",
            "original",
            task.seed,
            {"recipe": task.recipe.to_dict()},
            task.original_cost,
            orig_eval.metrics,
            save(task.original),
            env,
        ),
        task.original,
    )
    emit(
        _record(
            task,
            "reference",
            "retrain",
            seed,
            {"recipe": task.recipe.to_dict()},
            ref_cost,
            ref_eval.metrics,
            save(ref_model),
            env,
        ),
        ref_model,
    )
    for spec in methods:
        name, params = (spec, {}) if isinstance(spec, str) else spec
        try:
            method = get_method(name, **params)
            result = method.unlearn(task, seed=seed, progress=progress)
        except UnlearnkitError as e:
            emit(
                _record(task, "unlearn", name, seed, dict(params), None, {}, None, env, status="failed", error=str(e)),
                None,
            )
            continue
        ev = evaluate_model(result.model, task, ref_eval.scores, result.cost, ref_cost, seed, reference_model=ref_model)
        emit(
            _record(
                task,
                "unlearn",
                name,
                seed,
                result.params,
                result.cost,
                ev.metrics,
                save(result.model),
                env,
                tags={k: _jsonable(v) for k, v in result.extra.items()},
            ),
            result.model,
        )
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


def task_from_spec(
    spec: dict,
    scenario: Scenario | dict | None = None,
    cache: ModelCache | None = None,
    progress: bool = False,
    device: str | None = None,
) -> Task:
    """Rebuild a stored task through its modality (``spec["modality"]``), with its own
    forget set or ``scenario``; the original comes from ``cache`` when it holds it (it does
    after ``train``)."""
    return modality_of_spec(spec).task_from_spec(spec, scenario, cache=cache, progress=progress, device=device)
