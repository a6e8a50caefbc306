"""Which models a comparison shows: run specs resolved to hash-verified models and their tasks.

A *spec* names one model of the workspace (docs/comparator.md, "Run identifiers"):

* ``<run>``: a stored run (its id or a unique prefix), its own artifact;
* ``reference:<run>``: the retrained reference of that run's task and seed (the model cache's
  ``reference-<task.reference_key(seed)>``; trained and cached when missing and the
  workspace is writable, a 409 on a read-only one);
* ``original:<run>``: the original that run started from (its train run's artifact).

:func:`resolve_model` gives a :class:`Resolved` (record, task, model, label, artifact hash);
:func:`resolve_pair` checks that two of them can be compared (one task key, one forget set).
Every failure is a :class:`UIError` carrying the HTTP status and a sentence the page shows,
never a traceback. Rebuilt tasks and loaded models are kept per process (a small LRU keyed
by workspace, store and run), so a page's several views rebuild a task once.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from ..errors import CheckpointError, StoreError, UnlearnkitError
from ..orchestration.experiment import Workspace, get_reference, load_run_model, rebuild_task
from ..orchestration.records import RunRecord
from ..task import Task

#: spec prefixes naming a model derived from a run
PREFIXES = ("reference", "original")


class UIError(UnlearnkitError):
    """Bad input to the comparator, with the HTTP status it answers and a one-line reason.

    ``kind`` becomes the problem type (``https://unlearnkit.dev/problems/<kind>``)."""

    def __init__(self, status: int, detail: str, kind: str = "invalid-request", title: str | None = None):
        super().__init__(detail)
        self.status = int(status)
        self.detail = detail
        self.kind = kind
        self.title = title or _TITLES.get(self.status, "Error")


_TITLES = {
    400: "Bad request",
    404: "Not found",
    409: "Conflict",
    422: "Unprocessable request",
    500: "Internal error",
}


@dataclass
class Resolved:
    """One model of a comparison.

    Attributes:
        id: the spec as given (``<run>``, ``reference:<run>``, ``original:<run>``).
        kind: ``run``, ``reference`` or ``original``.
        record: the stored run the spec names (for ``reference:``/``original:`` the run
            they are derived from).
        task: the task the model is evaluated on (the run's, rebuilt with its recorded
            splits; in a pair, the one task both share).
        model: the model, in eval mode, hash verified.
        label: a short human label.
        artifact: SHA-256 of the model's safetensors file.
        method: the method that made it (``retrain`` for a reference, ``original``).
    """

    id: str
    kind: str
    record: RunRecord
    task: Task
    model: nn.Module
    label: str
    artifact: str | None
    method: str

    @property
    def forget_fingerprint(self) -> str | None:
        """The forget set the model answers (None: an original trained without one)."""
        if self.kind == "original" and self.record.kind == "train":
            return None
        return self.record.forget_fingerprint

    def to_json(self) -> dict:
        """The page's ``Model``: ``{id, label, kind, method, artifact, run}``."""
        return {
            "id": self.id,
            "label": self.label,
            "kind": self.kind if self.kind != "run" else self.record.kind,
            "method": self.method,
            "artifact": self.artifact,
            "run": self.record.id,
        }


# --------------------------------------------------------------------------- in-process cache
class _LRU:
    """A small thread-safe LRU of expensive objects (rebuilt tasks, loaded models)."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict = {}

    def get(self, key, build: Callable[[], Any]):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            lock = self._building.setdefault(key, threading.Lock())
        with lock:  # one build per key at a time (two views of one page ask at once)
            with self._lock:
                if key in self._items:
                    return self._items[key]
            value = build()
            with self._lock:
                self._items[key] = value
                self._items.move_to_end(key)
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
                self._building.pop(key, None)
            return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_TASKS = _LRU(8)
_MODELS = _LRU(16)


def clear_caches() -> None:
    """Forget every rebuilt task and loaded model of this process (tests, a changed workspace)."""
    _TASKS.clear()
    _MODELS.clear()


def _where(workspace: Workspace) -> tuple[str, str]:
    return (str(workspace.root.resolve()), str(workspace.store.location))


# --------------------------------------------------------------------------- resolution
def get_run(workspace: Workspace, spec: str) -> RunRecord:
    """The stored run ``spec`` names (id or unique prefix): 404 when none, 422 when ambiguous."""
    spec = (spec or "").strip()
    if not spec:
        raise UIError(422, "no run given; pass a run id (or a unique prefix of one)", "no-run")
    try:
        return workspace.store.get(spec)
    except StoreError as e:
        text = str(e)
        if "ambiguous" in text:
            raise UIError(422, text, "ambiguous-run") from None
        if text.startswith("no run"):
            raise UIError(
                404, f"no run {spec!r} in this workspace; the runs table lists the ids", "unknown-run"
            ) from None
        raise UIError(500, text, "store") from None


def _short(run: RunRecord) -> str:
    return run.id[:8]


def _missing(run: RunRecord, what: str, e: Exception) -> UIError:
    return UIError(
        409,
        f"{what} of run {run.id} cannot be loaded: {e}",
        "missing-artifact",
    )


def task_of(workspace: Workspace, run: RunRecord) -> Task:
    """The task ``run`` was made and evaluated on (:func:`rebuild_task`), cached per process.

    A missing or corrupt artifact of the original is a 409, any other failure to rebuild a 422."""

    def build() -> Task:
        try:
            return rebuild_task(workspace, run)
        except CheckpointError as e:
            raise _missing(run, "the original model", e) from None
        except UnlearnkitError as e:
            raise UIError(422, f"the task of run {run.id} cannot be rebuilt: {e}", "task") from None

    return _TASKS.get((*_where(workspace), run.id), build)


def _run_model(workspace: Workspace, run: RunRecord, task: Task) -> nn.Module:
    if run.status != "ok" or not run.artifact:
        why = f": {run.error}" if run.error else ""
        raise UIError(409, f"run {run.id} has no stored model (status {run.status}{why})", "no-model")
    if not workspace.artifacts.exists(run.artifact):
        raise UIError(
            409,
            f"the model of run {run.id} (artifact {run.artifact[:12]}) is missing from "
            f"{workspace.artifacts.root}; restore the file or delete the run",
            "missing-artifact",
        )

    def build() -> nn.Module:
        try:
            return load_run_model(workspace, run, task).eval()
        except CheckpointError as e:
            raise _missing(run, "the model", e) from None
        except UnlearnkitError as e:
            raise UIError(422, f"the model of run {run.id} cannot be built: {e}", "model") from None

    return _MODELS.get((*_where(workspace), "run", run.id, run.artifact), build)


def reference_key(task: Task, run: RunRecord) -> str:
    """The model cache key of the reference of ``run`` (its task and seed)."""
    return f"reference-{task.reference_key(run.seed)}"


def _reference(workspace: Workspace, run: RunRecord, task: Task) -> tuple[nn.Module, str | None]:
    if run.forget_fingerprint is None:
        raise UIError(
            422,
            f"run {run.id} is a {run.kind} run with no forget set, so it has no reference; "
            "pick an unlearn run (its reference is the retrain without its forget set)",
            "no-reference",
        )
    key = reference_key(task, run)
    if workspace.cache.artifact(key) is None and workspace.read_only:
        raise UIError(
            409,
            f"the reference of run {run.id} is not trained yet and this workspace is read-only; "
            f"run `unlearnkit evaluate {run.id}` on a writable copy first",
            "no-reference",
        )

    def build() -> tuple[nn.Module, str | None]:
        try:
            model, _, _ = get_reference(task, run.seed, workspace.cache)
        except UnlearnkitError as e:
            raise UIError(422, f"the reference of run {run.id} cannot be made: {e}", "no-reference") from None
        return model.eval(), workspace.cache.artifact(key)

    return _MODELS.get((*_where(workspace), "reference", key), build)


def _original_artifact(workspace: Workspace, run: RunRecord, task: Task) -> str | None:
    if run.kind == "train":
        return run.artifact
    if run.parent:
        parent = workspace.store.find(run.parent)
        if parent is not None:
            return parent.artifact
    return workspace.cache.artifact(f"original-{task.key}")


def resolve_model(workspace: Workspace, spec: str) -> Resolved:
    """The model ``spec`` names: ``<run>``, ``reference:<run>`` or ``original:<run>``.

    Raises :class:`UIError`: 404 for an unknown run, 422 for an ambiguous prefix, a bad
    spec or a run with no reference, 409 for a missing model (no artifact, a deleted file,
    a reference not trained on a read-only workspace)."""
    given = (spec or "").strip()
    prefix, sep, rest = given.partition(":")
    if sep and prefix in PREFIXES:
        run = get_run(workspace, rest)
        task = task_of(workspace, run)
        if prefix == "reference":
            model, artifact = _reference(workspace, run, task)
            return Resolved(given, "reference", run, task, model, f"reference of {_short(run)}", artifact, "retrain")
        return Resolved(
            given,
            "original",
            run,
            task,
            task.original.eval(),
            f"original of {_short(run)}",
            _original_artifact(workspace, run, task),
            "original",
        )
    if sep:  # run ids hold no ':'
        raise UIError(422, f"unknown model {given!r}: give a run id, reference:<run> or original:<run>", "bad-model")
    run = get_run(workspace, given)
    task = task_of(workspace, run)
    model = _run_model(workspace, run, task)
    label = f"{run.method} · {_short(run)}"
    return Resolved(given, "run", run, task, model, label, run.artifact, run.method)


def default_partner(workspace: Workspace, run: RunRecord | str) -> str:
    """The model a run is compared with by default: its reference (a run with a forget set),
    else (a train run) the newest unlearn run started from it, else its own original."""
    if isinstance(run, str):
        run = get_run(workspace, run)
    if run.forget_fingerprint is not None:
        return f"reference:{run.id}"
    children = [r for r in workspace.store.list(kind="unlearn") if r.parent == run.id and r.status == "ok"]
    return children[0].id if children else f"original:{run.id}"


def resolve_pair(workspace: Workspace, a: str, b: str | None = None) -> tuple[Resolved, Resolved]:
    """Two models that can be compared: the same task (task key) and the same forget set.

    ``b`` defaults to :func:`default_partner` of ``a``'s run (to the run itself where ``a`` is
    ``reference:<run>`` or ``original:<run>``). An original trained without a
    forget set (a ``train`` run, ``original:<run>``) takes the other model's task. Both models
    of the pair are then evaluated on one task object (``a``'s, or the one with a forget set).
    Different tasks or forget sets are a 422 whose sentence says which."""
    if not (a or "").strip():
        raise UIError(422, "pick a model: a=<run id>", "no-run")
    ra = resolve_model(workspace, a)
    if b is None or not str(b).strip():  # reference:<run> / original:<run> against <run> itself
        b = ra.record.id if ra.kind != "run" else default_partner(workspace, ra.record)
    rb = resolve_model(workspace, b)
    if ra.task.key != rb.task.key:
        raise UIError(
            422,
            f"{ra.label} and {rb.label} are models of different tasks "
            f"({task_label(ra.task)} vs {task_label(rb.task)}); pick two runs of one task",
            "different-tasks",
        )
    fa, fb = ra.forget_fingerprint, rb.forget_fingerprint
    if fa is not None and fb is not None and fa != fb:
        raise UIError(
            422,
            f"{ra.label} and {rb.label} forgot different sets ({len(ra.task.split.forget_ids)} vs "
            f"{len(rb.task.split.forget_ids)} examples, fingerprints {fa} vs {fb}); "
            "pick two runs that answer one forget set",
            "different-forget-sets",
        )
    task = rb.task if fa is None and fb is not None else ra.task
    return dataclasses.replace(ra, task=task), dataclasses.replace(rb, task=task)


def task_label(task: Task) -> str:
    """``dataset · model`` (the modality's own label of the task spec)."""
    try:
        return task.modality_info.task_label(task.spec)
    except Exception:  # noqa: BLE001 - a label is never worth an error
        return str(task.spec.get("dataset", task.modality))


__all__ = [
    "UIError",
    "Resolved",
    "resolve_model",
    "resolve_pair",
    "default_partner",
    "get_run",
    "task_of",
    "task_label",
    "reference_key",
    "clear_caches",
]
