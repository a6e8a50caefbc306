"""What the project's generic surfaces call on a federated run: the deletion-request flow of
``unlearnkit unlearn``, the re-evaluation of ``unlearnkit evaluate`` and a ``bench`` job.

A federated run is not one model and a recipe: its original is a federation's stored rounds,
its reference is federated retraining, and its methods (``exact``, ``federaser``, the
project's methods inside a client) are functions of this package, not registered ``Method``s.
So the generic flow (:func:`unlearnkit.requests.answer_request`) cannot answer it, and this
module does, through the task module's hooks (:func:`.task.answer_request`,
:func:`.task.evaluate_run`, :func:`.task.bench_job`).

This is a modality package, below the methods and orchestration layers, so it imports
neither: the caller passes ``get_method`` (the methods registry's constructor) and its
workspace (anything with ``artifacts.save / load / load_state_dict / metadata /
save_file``), and gets back plain record fields (the keys of
:class:`~unlearnkit.orchestration.records.RunRecord`), which the caller builds and stores.
"""

from __future__ import annotations

from typing import Any, Callable

from ...errors import ConfigError
from ...utils import environment_info
from .history import FederatedCost, history_from_tensors
from .task import FederatedForget, FederatedTask, request_scenario, task_from_spec

#: the federated methods that are not a registered method run inside the client
OWN_METHODS = {"retrain": set(), "exact": set(), "federaser": {"delta_t", "calibration_ratio"}}
#: the ``local`` method's own parameters (the rest go to the method run inside the client)
LOCAL_PARAMS = ("unlearn_rounds", "recovery_rounds")


def resolve_method(name: str, params: dict, get_method: Callable[..., Any]) -> tuple[str, dict]:
    """``(federated method, keyword arguments)`` for method ``name`` with ``params``: one of
    retrain, exact, federaser, or a registered method serving classifiers, run inside the
    target client (``local``; ``unlearn_rounds`` / ``recovery_rounds`` are its own)."""
    from .unlearning import LOCAL_MODALITY

    params = dict(params or {})
    if name in OWN_METHODS:
        allowed = OWN_METHODS[name]
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise ConfigError(f"federated method {name!r} takes {', '.join(sorted(allowed)) or 'no --param'}")
        return name, params
    rounds = {k: int(params.pop(k)) for k in LOCAL_PARAMS if k in params}
    try:
        method = get_method(name, **params)
    except ConfigError as e:
        if "unknown method" not in str(e):
            raise  # the method exists: its hyperparameters are wrong
        method = None
    if method is None or LOCAL_MODALITY not in tuple(getattr(method, "modalities", ()) or ()):
        raise ConfigError(
            f"unknown federated method {name!r}; choose retrain, exact, federaser or a classifier "
            "method run inside the client (`unlearnkit methods` lists those serving classifiers)"
        )
    return "local", {"unlearner": method, **rounds}


def stored_task(workspace, train_rec, request: FederatedForget | None, progress: bool = False) -> FederatedTask:
    """The federated task of train run ``train_rec`` with ``request``: from its stored rounds
    (``tags["federated_history"]``, written by ``unlearnkit federated train``), else by
    training the federation again (the generic ``unlearnkit train --task federated`` keeps no
    rounds; the local runtime is deterministic under the spec's seed). Either way the rounds
    must end in the recorded original (content hash), or nothing goes on."""
    if train_rec.kind != "train":
        raise ConfigError(f"run {train_rec.id} is an unlearned model; unlearn from its federation's train run")
    if not train_rec.artifact:
        raise ConfigError(f"run {train_rec.id} has no stored model (status {train_rec.status})")
    h = (train_rec.tags or {}).get("federated_history")
    stored = (
        history_from_tensors(workspace.artifacts.load_state_dict(h), workspace.artifacts.metadata(h)) if h else None
    )
    task = task_from_spec(train_rec.task_spec, request, stored=stored)  # the request is checked first
    if workspace.artifacts.save(task.original) != train_rec.artifact:
        where = "stored rounds do not end" if h else "federation, trained again, does not end"
        raise ConfigError(f"run {train_rec.id}'s {where} in its recorded global model")
    return task


def request_of(record) -> FederatedForget:
    """The forget request an unlearned run's record answered."""
    scenario = dict(record.scenario or {})
    if scenario.get("kind") == "examples":
        return FederatedForget(ids=tuple(record.forget_ids or ()))
    return FederatedForget.from_dict(scenario)


def _check_request(request) -> None:
    if getattr(request, "lora", 0) or (getattr(request, "options", None) or {}).get("lora"):
        raise ConfigError("lora applies to tasks whose modality supports it; 'federated' does not")
    if getattr(request, "history", None):
        raise ConfigError("federated runs have no deployed model lines yet: earlier deletions cannot be replayed")


def _check_local(name: str, kwargs: dict, forget: FederatedForget) -> None:
    """What :func:`.unlearning.local` refuses, checked on the request alone."""
    if name != "local":
        return
    method = kwargs["unlearner"]
    if len(forget.clients) > 1:
        raise ConfigError("the methods inside a client unlearn one client at a time; forget the clients one by one")
    if forget.level == "client" and getattr(method, "needs_retain", False):
        raise ConfigError(
            f"method {method.name!r} needs retain data on the client, and a leaving client keeps none; "
            "use it for a subject or examples inside a client"
        )


def evaluation_inputs(task: FederatedTask, seed: int, artifact: str | None) -> dict:
    """What a federated evaluation is computed from (as the generic evaluation records it):
    the model, the splits (forget ids by fingerprint, holdout ids) and the reference."""
    return {
        "model_artifact": artifact,
        "seed": int(seed),
        "split": {
            "forget_fingerprint": task.split.forget_fingerprint,
            "holdout_ids": [str(i) for i in task.holdout.example_ids],
        },
        "reference": {"key": f"federated-retrain-{task.key}-{task.split.forget_fingerprint}", "artifact": None},
    }


def unlearn_record(
    task: FederatedTask, name: str, kwargs: dict, seed: int, workspace, parent: str | None, evaluate: bool = True
) -> tuple[dict, Any]:
    """Run federated method ``name`` on ``task``; the record fields of the unlearned model
    (its metrics against federated retraining when ``evaluate``) and the result."""
    from .metrics import evaluate_federated
    from .unlearning import retrain, unlearn_federated

    result = unlearn_federated(task, name, seed=seed, **kwargs)
    metrics = evaluate_federated(task, result.model, result.cost, retrain(task), seed=seed) if evaluate else {}
    artifact = workspace.artifacts.save(result.model)
    fields = {
        "kind": "unlearn",
        "task_key": task.key,
        "method": f"federated:{result.method}",
        "seed": int(seed),
        "task_spec": task.spec,
        "scenario": task.split.scenario,
        "forget_fingerprint": task.split.forget_fingerprint,
        "forget_ids": [str(i) for i in task.split.forget_ids],
        "params": result.params,
        "metrics": metrics,
        "cost": result.cost.to_dict(),
        "environment": environment_info(),
        "artifact": artifact,
        "parent": parent,
        "tags": {"federated_extra": dict(result.extra), "holdout_ids": [str(i) for i in task.holdout.example_ids]},
    }
    return fields, result


def answer_request(workspace, request, get_method: Callable[..., Any], progress: bool = False) -> dict:
    """Answer a deletion request (:class:`unlearnkit.requests.DeletionRequest`'s fields) on a
    federated train run; returns ``{"record": fields, "extra": ..., "evaluation": inputs or
    None}``. Checked before any training: the method and its parameters, the request's shape
    (``ids``, ``subjects`` or ``scenario`` ``client:ID``), the run and its stored rounds."""
    _check_request(request)
    name, kwargs = resolve_method(request.method, request.params, get_method)
    forget = request_scenario(ids=request.ids, subjects=request.subjects, scenario=request.scenario)
    _check_local(name, kwargs, forget)  # before the task is built (which may train the federation again)
    parent = workspace.store.get(request.run)
    task = stored_task(workspace, parent, forget, progress)
    fields, result = unlearn_record(task, name, kwargs, request.seed, workspace, parent.id, request.evaluate)
    if getattr(request, "save_model", None):
        workspace.artifacts.save_file(result.model, request.save_model)
    evaluation = evaluation_inputs(task, request.seed, fields["artifact"]) if request.evaluate else None
    return {"record": fields, "extra": dict(result.extra), "evaluation": evaluation}


def evaluate_run(workspace, record, seed: int | None = None, progress: bool = False) -> dict:
    """Every federated metric of recorded unlearned run ``record`` against federated
    retraining without its data: ``{"metrics": ..., "inputs": ...}`` (the caller stores the
    evaluation; the run keeps the metrics it was recorded with)."""
    from .metrics import evaluate_federated
    from .unlearning import retrain

    if record.kind != "unlearn":
        raise ConfigError(f"run {record.id} is a federation's original; evaluate its unlearned runs")
    if not record.artifact:
        raise ConfigError(f"run {record.id} has no model to evaluate (status {record.status})")
    seed = record.seed if seed is None else seed
    task = stored_task(workspace, workspace.store.get(record.parent), request_of(record), progress)
    model = workspace.artifacts.load(record.artifact, task.model_factory(task.seed)).eval()
    fields = set(FederatedCost.__dataclass_fields__)
    cost = FederatedCost(**{k: v for k, v in (record.cost or {}).items() if k in fields})
    metrics = evaluate_federated(task, model, cost, retrain(task), seed=seed)
    return {"metrics": metrics, "inputs": evaluation_inputs(task, seed, record.artifact)}


def check_methods(specs: list[tuple[str, dict]], get_method: Callable[..., Any]) -> None:
    """Refuse a grid's methods before any training (names and hyperparameters)."""
    for name, params in specs:
        resolve_method(name, params, get_method)


def original_record(task: FederatedTask, seed: int, workspace) -> dict:
    """The original's row of a bench scenario: its federated metrics against retraining
    (what leaving the model as it is gives); it unlearns nothing, so no cost ratios."""
    from .metrics import evaluate_federated
    from .unlearning import retrain

    metrics = evaluate_federated(task, task.original, FederatedCost(), retrain(task), seed=seed)
    return {
        "kind": "train",
        "task_key": task.key,
        "method": "original",
        "seed": int(seed),
        "task_spec": task.spec,
        "scenario": task.split.scenario,
        "forget_fingerprint": task.split.forget_fingerprint,
        "params": {},
        "metrics": {k: v for k, v in metrics.items() if not k.startswith("ratio_") and k != "rounds"},
        "cost": task.federated_cost.to_dict(),
        "environment": environment_info(),
        "artifact": workspace.artifacts.save(task.original),
    }


def bench_job(
    base: FederatedTask, scenarios: list, specs: list[tuple[str, dict]], seed: int, workspace, get_method
) -> list[dict]:
    """A ``bench`` job on one federation (``base``, trained once): per scenario, the original
    (:func:`original_record`), federated retraining (the reference, recorded as
    ``federated:retrain``) and every method in
    ``specs``, each with its metrics; the records' fields (none stored). A method that fails
    is a failed record with its error, the others go on."""
    from ...errors import UnlearnkitError

    recs = []
    for sc in scenarios:
        request = sc if isinstance(sc, FederatedForget) else FederatedForget.from_dict(sc) if sc else None
        task = base.with_forget_request(request) if request is not None else base
        recs.append(original_record(task, seed, workspace))
        names = [("retrain", {})] + [s for s in specs if s[0] != "retrain"]
        for name, params in names:
            method, kwargs = resolve_method(name, params, get_method)
            try:
                fields, _ = unlearn_record(task, method, kwargs, seed, workspace, None)
            except UnlearnkitError as e:
                fields = {
                    "kind": "unlearn",
                    "task_key": task.key,
                    "method": f"federated:{name}",
                    "seed": int(seed),
                    "task_spec": task.spec,
                    "scenario": task.split.scenario,
                    "params": dict(params),
                    "status": "failed",
                    "error": str(e).splitlines()[0],
                }
            if name == "retrain":
                fields["kind"] = "reference"
            recs.append(fields)
    return recs
