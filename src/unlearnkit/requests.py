"""One flow for a deletion request, and the re-evaluation of a stored run.

:func:`answer_request` is what the CLI's ``unlearn``, the Python API and the HTTP service
call::

    DeletionRequest ──► validate (method and parameters, ids, store writable, paths)
         │                 nothing computed or written before this passes
         ▼
    train run ──► its artifact (SHA-256 verified) ──► task with the request's forget set
         │
         ├─► warm-up ─► method.unlearn ─► model ─► artifact
         ├─► (evaluate) reference (cached) ─► metrics against it
         ▼
    one RunRecord (experiment._record) ──► store, with its evaluation beside it

:func:`evaluate_run` evaluates a stored run again on exactly the splits its record
names (forget and holdout ids, fingerprints of retain and test); each evaluation is
appended to the store's ``evaluations`` table, and a run's own metrics are never replaced.
With ``privacy=N`` it also runs the shadow-model privacy report; its aggregates are metrics,
and U-LiRA's per-example result (a value per forget example, not a metric) is a small JSON
file keyed by the evaluation's id, ``<home>/privacy/<evaluation id>.json``
(:func:`privacy_examples_path`, read back by :func:`read_privacy_examples`).

A modality whose runs the generic flow cannot answer (a federation: its original is its
stored rounds, its methods its own functions, its reference federated retraining) offers
hooks in its task module (``answer_request``, ``evaluate_run``, ``reference_record``):
:func:`answer_request`, :func:`evaluate_run` and :func:`record_reference` call them where
they exist (:func:`own_flow`) and store what they return exactly as the generic flow stores
its own (one run record, its evaluation), so every surface shares this one path.

Nothing here prints: callers show the outcome.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from .engines.loop import LoopStats
from .errors import ConfigError, StoreError
from .methods import get_method
from .modalities import modality_of_spec
from .orchestration.experiment import (
    Workspace,
    _evaluation,
    _jsonable,
    _record,
    evaluate_model,
    evaluation_inputs,
    get_reference,
    load_run_model,
    rebuild_task,
    score_model,
    task_of_run,
    warm_up,
    with_history,
)
from .orchestration.records import EvaluationRecord, RunRecord
from .orchestration.training_state import export_training_state
from .utils import environment_info

if TYPE_CHECKING:  # pragma: no cover
    from .task import Task

EXPORT_SUFFIXES = (".parquet", ".csv")


@dataclass
class DeletionRequest:
    """What a data subject asked for, and how to answer it.

    Attributes:
        run: id (or unique prefix) of the ``train`` run whose model holds the data.
        method: a registered method name (``unlearnkit methods``); ``params`` its hyperparameters.
        ids / subjects / scenario: the data to forget: example ids, subject ids, or a scenario
            string (``random:0.1``, ``class:3``, a language model's split name); at most one,
            none only where the modality has a default forget split.
        seed: seeds the method (and the reference).
        evaluate: also compute every metric against the reference (retrained or cached).
        lora: language models: LoRA rank the method trains through (0 = full weights).
        save_model: also write the unlearned model to this safetensors file.
        options: modality options of the task (e.g. ``{"lora": {...}}`` for full LoRA settings).
        history: earlier deletions on a deployed line, ``{"excluded_ids": [...], "base_artifact":
            hash}``: those ids leave every split and the reference, and the request starts from
            that model version (:func:`~unlearnkit.orchestration.experiment.with_history`).
        run_id: the id the new run record gets (default: a fresh one); the service derives it
            from the batch so a repeated step finds the run it made.
    """

    run: str
    method: str
    params: dict = field(default_factory=dict)
    ids: list[str] | None = None
    subjects: list[str] | None = None
    scenario: str | None = None
    seed: int = 0
    evaluate: bool = False
    lora: int = 0
    save_model: Path | None = None
    options: dict = field(default_factory=dict)
    history: dict | None = None
    run_id: str | None = None


@dataclass
class RequestOutcome:
    """The answer to a :class:`DeletionRequest`.

    ``record`` is the stored run (``record.id``, ``record.artifact``: the unlearned model's
    content hash); ``metrics`` are against the reference (empty without ``evaluate``),
    ``evaluation`` the stored evaluation they form.
    """

    record: RunRecord
    forget_ids: list[str]
    holdout_ids: list[str]
    artifact: str
    metrics: dict[str, float]
    cost: LoopStats
    reference_cost: LoopStats | None
    extra: dict[str, Any]
    evaluation: EvaluationRecord | None
    task: "Task"
    model: nn.Module
    #: headline values that could not be computed, each with why (see ``Evaluation``)
    not_computed: dict[str, str] = field(default_factory=dict)
    #: True where the run's modality answered it with its own flow (:func:`own_flow`)
    own_flow: bool = False

    @property
    def run_id(self) -> str:
        return self.record.id

    def to_dict(self) -> dict:
        """The JSON-able summary (what the CLI's ``--json`` prints)."""
        return {
            "run_id": self.record.id,
            "method": self.record.method,
            "parent": self.record.parent,
            "n_forget": len(self.forget_ids),
            "forget_fingerprint": self.record.forget_fingerprint,
            "artifact": self.artifact,
            "cost": self.record.cost,
            "metrics": self.metrics,
            "evaluation_id": self.evaluation.id if self.evaluation else None,
            "not_computed": self.not_computed,
            "extra": _jsonable(self.extra),
        }


# --------------------------------------------------------------------------- checks
def check_writable(workspace: Workspace) -> None:
    """Raise :class:`StoreError` unless runs and artifacts can be written (before any work)."""
    if getattr(workspace, "read_only", False):
        raise StoreError(f"workspace {workspace.root} is read-only; answering a request writes a run")
    check = getattr(workspace.store, "check_writable", None)
    if check is not None:
        check()
    root = workspace.artifacts.root
    probe = root if root.exists() else workspace.root
    if not os.access(probe, os.W_OK):
        raise StoreError(f"artifacts folder {probe} is not writable")


def check_output_path(path: Path | None, what: str, suffixes: tuple[str, ...] | None = None) -> None:
    """Raise :class:`ConfigError` unless ``path`` can be written: its folder exists and is
    writable, an existing file is writable; checked before any work (no folder is created)."""
    if path is None:
        return
    import tempfile

    path = Path(path)
    if suffixes and path.suffix not in suffixes:
        raise ConfigError(f"{what} must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; give a file name")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        state = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(f"{what} {path}: {folder} {state}")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{what} {path} is not writable")
    try:  # the real test (permissions, read-only file systems, root or not)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".unlearnkit-probe-"):
            pass
    except OSError as e:
        raise ConfigError(f"{what} {path}: cannot write in {folder} ({e.strerror})") from None


def warm_task(task: "Task") -> "Task":
    """The task whose warm-up step (:func:`~unlearnkit.orchestration.experiment.warm_up`)
    warms this process for ``task``: ``task`` itself, or, where its original has no
    trainable parameter (a deployed CRAGRU version holds score tables as buffers: an
    optimiser over it has an empty parameter list), the same task with a fresh model of
    ``task.model_factory``'s architecture as the original. That is the model the reference
    retrains, so its timing stays warm too; the task's own original, splits and reference
    key are untouched (the warm-up trains a throwaway copy and restores every random state)."""
    import dataclasses as _dc
    import random

    import numpy as np
    import torch

    if any(p.requires_grad for p in task.original.parameters()):
        return task
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:  # a model factory may seed the global generators: the method after it must not notice
        fresh = task.model_factory(task.seed).to(task.device)
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
    return _dc.replace(task, original=fresh)


def check_trainable(method, task: "Task") -> None:
    """Raise :class:`ConfigError` if ``method`` updates its original's parameters (it keeps the
    original's shape: ``Method.model_template`` not overridden) and the original has no
    trainable one (a deployed CRAGRU version): it would have nothing to update, and the
    optimiser would fail mid-request. Methods that build their own model (``retrain``,
    ``cragru``, ``gnndelete``, ...) may start from it."""
    from .methods.base import Method

    if type(method).model_template is not Method.model_template:
        return
    if not any(p.requires_grad for p in task.original.parameters()):
        raise ConfigError(
            f"method {method.name!r} updates its original's parameters, and the model this request starts from "
            f"({type(task.original).__name__}) has no trainable parameter; answer with a method that builds its "
            "own model (retrain, or the one that made this version)"
        )


# --------------------------------------------------------------------------- a modality's own flow
def own_flow(workspace: Workspace, run: "str | RunRecord", hook: str):
    """The modality's own flow for ``run`` (a run id or record): its task module's function
    ``hook`` (``answer_request``, ``evaluate_run``, ``reference_record``), where the generic
    flow cannot serve it; None for every modality the generic flow serves."""
    rec = run if isinstance(run, RunRecord) else workspace.store.get(run)
    return getattr(modality_of_spec(rec.task_spec).part("task"), hook, None)


def record_own_answer(workspace: Workspace, answer: dict) -> tuple[RunRecord, EvaluationRecord | None]:
    """Store what a modality's own request flow returned (a run's fields, and the inputs of
    its evaluation where it computed metrics): the run record and its evaluation."""
    from .utils import stable_hash

    rec = RunRecord.from_dict(answer["record"])
    inputs = answer.get("evaluation")
    ev = EvaluationRecord(rec.id, stable_hash(inputs), inputs, dict(rec.metrics)) if inputs is not None else None
    workspace.store.add(rec)
    if ev is not None:
        workspace.store.add_evaluation(ev)
    return rec, ev


def _answer_own(workspace: Workspace, request: DeletionRequest, flow, progress: bool) -> RequestOutcome:
    """:func:`answer_request` through the modality's own flow, checked and recorded as the
    generic flow is (the output path and the store writable first; one run record, its
    evaluation)."""
    check_output_path(request.save_model, "save_model")
    check_writable(workspace)
    answer = flow(workspace, request, get_method, progress=progress)
    rec, ev = record_own_answer(workspace, answer)
    task = answer.get("task")
    holdout = (rec.tags or {}).get("holdout_ids") or (
        [str(i) for i in task.holdout.example_ids] if task is not None else []
    )
    return RequestOutcome(
        rec,
        [str(i) for i in rec.forget_ids or ()],
        list(holdout),
        rec.artifact,
        dict(rec.metrics),
        answer.get("cost"),
        answer.get("reference_cost"),
        dict(answer.get("extra") or {}),
        ev,
        task,
        answer.get("model"),
        {},
        own_flow=True,
    )


# --------------------------------------------------------------------------- the flow
def answer_request(workspace: Workspace, request: DeletionRequest, progress: bool = False) -> RequestOutcome:
    """Answer ``request``: resolve its data to example ids, unlearn them from the train
    run's own model, evaluate against the reference if asked, and store one run record.

    Everything that can be checked is checked before any compute: the method and its
    parameters, the request's shape, the store's and the output path's writability, the
    train run and its artifact (SHA-256 verified: a missing or corrupt model is a
    :class:`~unlearnkit.errors.CheckpointError`, never a silently retrained original), and
    the ids (unknown ids are an error). Cost is timed after a :func:`warm_up` step, as the
    reference's retraining is, so ``cost_ratio_*`` compares like with like.

    A run whose modality answers requests itself (:func:`own_flow`: a federation) goes to its
    flow, checked and stored the same way; the outcome says so (``own_flow``).
    """
    if request.lora < 0:
        raise ConfigError("lora must be a rank >= 1, or 0 for full weights")
    flow = own_flow(workspace, request.run, "answer_request")
    if flow is not None:  # e.g. a federation: its original is its stored rounds, not one model
        return _answer_own(workspace, request, flow, progress)
    method = get_method(request.method, **dict(request.params or {}))  # validates the parameters
    check_output_path(request.save_model, "save_model")
    check_writable(workspace)
    parent = workspace.store.get(request.run)
    if parent.kind != "train":
        raise ConfigError(f"run {parent.id} is a {parent.kind!r} run; a deletion request needs a `train` run")
    modality = modality_of_spec(parent.task_spec)
    serves = tuple(getattr(method, "modalities", ()) or ())
    if serves and modality.name not in serves:
        raise ConfigError(
            f"method {method.name!r} works on {' and '.join(serves)} tasks, not {modality.name}; "
            "`unlearnkit methods` lists what each method serves"
        )
    lora = dict(request.options.get("lora") or {}) or ({"r": int(request.lora)} if request.lora else {})
    if lora and not modality.supports("lora"):
        raise ConfigError(f"lora applies to tasks whose modality supports it; {modality.name!r} does not")
    scenario = modality.request_scenario(ids=request.ids, subjects=request.subjects, scenario=request.scenario)
    if not parent.artifact:
        raise ConfigError(f"run {parent.id} has no stored model (status {parent.status})")
    workspace.artifacts.load_state_dict(parent.artifact)  # missing or corrupt: CheckpointError, before any work
    task = task_of_run(workspace, parent, scenario, progress=progress)  # unknown ids raise here
    task = with_history(workspace, task, request.history)  # ids deleted before: an error, and out of every split
    if lora:
        task.lora = lora

    check_trainable(method, task)
    warm_up(warm_task(task), progress)
    result = method.unlearn(task, seed=request.seed, progress=progress)
    metrics: dict = {}
    not_computed: dict = {}
    ref_cost = None
    ref_artifact = None
    if request.evaluate:
        ref, ref_cost, _ = get_reference(warm_task(task), request.seed, workspace.cache, progress)
        ev = evaluate_model(
            result.model, task, score_model(ref, task), result.cost, ref_cost, request.seed, reference_model=ref
        )
        metrics, not_computed = ev.metrics, ev.not_computed
        ref_artifact = workspace.cache.artifact(f"reference-{task.reference_key(request.seed)}")
    artifact = workspace.artifacts.save(result.model)
    if request.save_model:
        workspace.artifacts.save_file(result.model, request.save_model)
    state = export_training_state(result.model, workspace.artifacts)  # a SISA ensemble's checkpoints
    tags = {
        **_jsonable(result.extra),
        **({"lora": lora} if lora else {}),
        **({"training_state": state} if state else {}),
        "cost_timing": "warm (after one warm-up step)",
    }
    rec = _record(
        task,
        "unlearn",
        request.method,
        request.seed,
        result.params,
        result.cost,
        metrics,
        artifact,
        environment_info(),
        tags=tags,
        parent=parent.id,
        **({"id": request.run_id} if request.run_id else {}),
    )
    evaluation = (
        _evaluation(rec.id, evaluation_inputs(task, request.seed, artifact, ref_artifact), metrics)
        if request.evaluate
        else None
    )
    workspace.store.add(rec)
    if evaluation is not None:
        workspace.store.add_evaluation(evaluation)
    return RequestOutcome(
        rec,
        [str(i) for i in task.split.forget_ids],
        [str(i) for i in task.holdout.example_ids],
        artifact,
        metrics,
        result.cost,
        ref_cost,
        dict(result.extra),
        evaluation,
        task,
        result.model,
        not_computed,
    )


# --------------------------------------------------------------------------- re-evaluation
@dataclass
class EvaluationOutcome:
    """What :func:`evaluate_run` computed: the metrics, the evaluation (``stored`` says
    whether it went to the store: not on a read-only workspace), the earlier evaluation on
    the same inputs (``same_inputs_as``), and the per-split scores."""

    record: RunRecord
    metrics: dict[str, float]
    evaluation: EvaluationRecord
    same_inputs_as: str | None
    scores: dict
    scores_file: Path | None = None
    stored: bool = True
    not_computed: dict[str, str] = field(default_factory=dict)
    #: U-LiRA per forget example (``privacy=N``): ``{ids, ulira_acc, ulira_auc, ...}``, else None
    privacy_examples: dict | None = None
    privacy_file: Path | None = None
    #: the task, the run's model and the reference's model the evaluation used; ``reference``:
    #: a modality's own reference object, where its own flow evaluated the run (None on the
    #: generic flow)
    task: Any = None
    model: Any = None
    reference_model: Any = None
    reference: Any = None
    #: the generic flow's reference scores and cost (``score_model`` of ``reference_model``),
    #: so a caller that also evaluates the reference (the service's gate) scores it once
    reference_scores: dict | None = None
    reference_cost: Any = None

    def to_dict(self) -> dict:
        return {
            "run_id": self.record.id,
            "method": self.record.method,
            "metrics": self.metrics,
            "evaluation_id": self.evaluation.id,
            "inputs_fingerprint": self.evaluation.inputs_fingerprint,
            "same_inputs_as": self.same_inputs_as,
            "stored": self.stored,
            "not_computed": self.not_computed,
            "scores_file": str(self.scores_file) if self.scores_file else None,
            "privacy_file": str(self.privacy_file) if self.privacy_file else None,
        }


#: where U-LiRA's per-example results live, under the workspace's root
PRIVACY_DIR = "privacy"


def privacy_examples_path(workspace: Workspace, evaluation_id: str) -> Path:
    """The per-example privacy file of evaluation ``evaluation_id`` (whether or not it exists)."""
    if not evaluation_id or "/" in evaluation_id or "\\" in evaluation_id or evaluation_id.startswith("."):
        raise ConfigError(f"not an evaluation id: {evaluation_id!r}")
    return Path(workspace.root) / PRIVACY_DIR / f"{evaluation_id}.json"


def read_privacy_examples(workspace: Workspace, evaluation_id: str) -> dict | None:
    """U-LiRA's per-example result stored with evaluation ``evaluation_id`` (``{evaluation_id,
    run_id, n_shadow, seed, method, ids, ulira_acc, ulira_auc}``), or None when that
    evaluation ran no privacy report (or its file is gone or unreadable)."""
    import json

    try:
        doc = json.loads(privacy_examples_path(workspace, evaluation_id).read_text())
    except (OSError, ValueError, ConfigError):
        return None
    if not isinstance(doc, dict) or doc.get("evaluation_id") != evaluation_id:
        return None
    ids, acc = doc.get("ids"), doc.get("ulira_acc")
    if not (isinstance(ids, list) and isinstance(acc, list) and len(ids) == len(acc)):
        return None
    return doc


def _write_privacy_examples(workspace: Workspace, evaluation: EvaluationRecord, doc: dict) -> Path:
    import json

    from .utils import atomic_write

    path = privacy_examples_path(workspace, evaluation.id)
    body = {"evaluation_id": evaluation.id, "run_id": evaluation.run_id, **doc}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "w") as f:
            json.dump(body, f, allow_nan=False)
    except (OSError, ValueError) as e:
        raise StoreError(f"cannot write the per-example privacy report {path}: {e}") from None
    return path


def evaluate_run(
    workspace: Workspace, run_id: str, export_scores: Path | None = None, privacy: int = 0, progress: bool = False
) -> EvaluationOutcome:
    """Every metric of a stored run against the (cached) reference, on exactly its recorded
    splits; stored as a new evaluation beside the earlier ones.

    The run's own ``metrics`` are never overwritten: metrics it does not hold yet are added
    when this evaluation's inputs are those of its first evaluation (or it has none);
    an evaluation on other inputs (the data or the reference changed) stays beside it.
    ``export_scores`` (.parquet/.csv) is checked for writability first and written before
    the store is touched. On a read-only workspace (an auditor's) nothing is stored. ``privacy``: shadow models of each kind for the per-example
    privacy report (unlearn runs of a modality with ``shadow_privacy``: classifiers, graphs).
    """
    check_output_path(export_scores, "--export-scores", EXPORT_SUFFIXES)
    if privacy < 0:
        raise ConfigError("--privacy must be >= 0")
    stored = not getattr(workspace, "read_only", False)  # a read-only workspace: computed, not stored
    if stored:
        check_writable(workspace)
    rec = workspace.store.get(run_id)
    flow = own_flow(workspace, rec, "evaluate_run")
    if flow is not None:  # e.g. a federation: its reference is federated retraining
        if export_scores or privacy:
            raise ConfigError("--export-scores and --privacy serve the generic runs, not this modality's")
        return _evaluate_own(workspace, rec, flow, stored, progress)
    if rec.status != "ok" or not rec.artifact:
        raise ConfigError(f"run {rec.id} has no model to evaluate (status {rec.status})")
    if privacy:
        if not modality_of_spec(rec.task_spec).supports("shadow_privacy"):
            raise ConfigError(
                "--privacy (U-LiRA with shadow models) serves classifier and graph tasks; language-model "
                "tasks report loss/zlib/Min-K% attacks and privleak among their metrics"
            )
        if rec.kind != "unlearn":
            raise ConfigError("--privacy needs an unlearn run (it re-runs the run's method on shadow models)")
    task = rebuild_task(workspace, rec, progress=progress)
    model = load_run_model(workspace, rec, task)
    ref, ref_cost, _ = get_reference(warm_task(task), rec.seed, workspace.cache, progress)
    ref_scores = score_model(ref, task)
    cost = LoopStats(**{k: v for k, v in rec.cost.items() if k in LoopStats.__dataclass_fields__}) if rec.cost else None
    ev = evaluate_model(model, task, ref_scores, cost, ref_cost, rec.seed, reference_model=ref)
    metrics = dict(ev.metrics)
    per_example = None
    if privacy:
        from .evaluation.shadow import privacy_evaluation

        aggregates, per_example = privacy_evaluation(
            task, rec.method, rec.params, n_shadow=privacy, seed=rec.seed, cache=workspace.cache, progress=progress
        )
        metrics.update(aggregates)
        per_example = {"n_shadow": int(privacy), "seed": int(rec.seed), "method": rec.method, **per_example}
    ref_artifact = workspace.cache.artifact(f"reference-{task.reference_key(rec.seed)}")
    inputs = evaluation_inputs(task, rec.seed, rec.artifact, ref_artifact)
    if privacy:
        inputs["privacy"] = {"n_shadow": int(privacy)}
    evaluation = _evaluation(rec.id, inputs, metrics)
    if export_scores:
        write_scores(
            export_scores, {"model": ev.scores, "reference": ref_scores, "original": score_model(task.original, task)}
        )
    earlier = workspace.store.evaluations(rec.id)
    same = next((e.id for e in earlier if e.inputs_fingerprint == evaluation.inputs_fingerprint), None)
    privacy_file = None
    if stored:
        if per_example is not None:  # before the evaluation: a stored evaluation always has its file
            privacy_file = _write_privacy_examples(workspace, evaluation, per_example)
        workspace.store.add_evaluation(evaluation)
        first_inputs = earlier[0].inputs_fingerprint if earlier else None
        if first_inputs in (None, evaluation.inputs_fingerprint):
            missing = {k: v for k, v in metrics.items() if k not in rec.metrics}
            if missing:
                rec = workspace.store.update_metrics(rec.id, missing)
    return EvaluationOutcome(
        rec,
        metrics,
        evaluation,
        same,
        ev.scores,
        export_scores,
        stored,
        ev.not_computed,
        per_example,
        privacy_file,
        task=task,
        model=model,
        reference_model=ref,
        reference_scores=ref_scores,
        reference_cost=ref_cost,
    )


def _evaluate_own(workspace: Workspace, rec: RunRecord, flow, stored: bool, progress: bool) -> EvaluationOutcome:
    """:func:`evaluate_run` through the modality's own flow: its metrics stored as a new
    evaluation beside the earlier ones (not on a read-only workspace); the run's own metrics
    are never replaced."""
    from .utils import stable_hash

    result = flow(workspace, rec, progress=progress)
    metrics, inputs = dict(result["metrics"]), result["inputs"]
    evaluation = EvaluationRecord(rec.id, stable_hash(inputs), inputs, dict(metrics))
    same = next(
        (e.id for e in workspace.store.evaluations(rec.id) if e.inputs_fingerprint == evaluation.inputs_fingerprint),
        None,
    )
    if stored:
        workspace.store.add_evaluation(evaluation)
    ref = result.get("reference")
    return EvaluationOutcome(
        rec,
        metrics,
        evaluation,
        same,
        {},
        None,
        stored,
        {},
        task=result.get("task"),
        model=result.get("model"),
        reference_model=getattr(ref, "model", ref),
        reference=ref,
    )


def write_scores(path: Path, by_role: dict) -> Path:
    """Write per-example scores (``{role: {split: scores}}``) to ``path`` (.parquet or .csv),
    atomically: one row per (role, split, example), with every column the modality's
    ``rows`` gives (for classifiers the whole predictive distribution ``prob_<k>``)."""
    import pandas as pd

    from .utils import atomic_path

    path = Path(path)
    frames = [pd.DataFrame(sc.rows(split, role)) for role, splits in by_role.items() for split, sc in splits.items()]
    df = pd.concat(frames, ignore_index=True)
    try:
        with atomic_path(path) as tmp:
            if path.suffix == ".parquet":
                df.to_parquet(tmp, index=False)
            else:
                df.to_csv(tmp, index=False)
    except OSError as e:
        raise ConfigError(f"cannot write scores to {path}: {e.strerror or e}") from None
    return path


def record_reference(
    workspace: Workspace, run_id: str, seed: int, new_run_id: str, progress: bool = False
) -> RunRecord:
    """Store the retrained reference of unlearn run ``run_id``'s task as a ``retrain`` run
    (the exact answer to the same request), with the reference's own cost; the cached
    reference is used where present, else retrained. Returns the new run (or the one with
    ``new_run_id`` stored before: a repeated call stores nothing)."""
    found = workspace.store.find(new_run_id)
    if found is not None:
        return found
    check_writable(workspace)
    run = workspace.store.get(run_id)
    flow = own_flow(workspace, run, "reference_record")
    if flow is not None:  # the modality's own exact answer (federated retraining)
        rec = RunRecord.from_dict({**flow(workspace, run, seed, progress=progress), "id": new_run_id})
        workspace.store.add(rec)
        return rec
    task = rebuild_task(workspace, run, progress=progress)
    ref, ref_cost, _ = get_reference(warm_task(task), seed, workspace.cache, progress)
    artifact = workspace.artifacts.save(ref)
    rec = _record(
        task,
        "unlearn",
        "retrain",
        seed,
        {},
        ref_cost,
        {},
        artifact,
        environment_info(),
        tags={"reference_of": run_id, "cost_timing": "warm (after one warm-up step)"},
        parent=run.parent,
        id=new_run_id,
    )
    workspace.store.add(rec)
    return rec
