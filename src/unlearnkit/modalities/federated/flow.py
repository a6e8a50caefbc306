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

**Model lines.** A request on a deployed line (the deletion-request service's, or any caller
passing ``history``) carries the ids deleted before it and the version it starts from
(:func:`line_task`): those ids leave every client (a client left with no data has left the
federation) and the reference; the forget set is resolved against what remains (a forget set
covering a client's whole remaining data is that client leaving); ``exact`` resumes from the
stored round before any deleted or forgotten example first contributed; the methods inside a
client start from the deployed version's global model (:class:`LineHistory`). The history is
recorded in the run's spec, so re-evaluation rebuilds the same task.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ...data.scenarios import Split, matched_holdout
from ...errors import ConfigError, ForgetSetError, UnknownIdsError
from ...utils import derive_seed, environment_info
from .history import FederatedCost, FederatedHistory, history_from_tensors
from .task import FederatedForget, FederatedTask, request_scenario, task_from_spec

#: the federated methods that are not a registered method run inside the client
OWN_METHODS = {"retrain": set(), "exact": set(), "federaser": {"delta_t", "calibration_ratio"}}
#: the ``local`` method's own parameters (the rest go to the method run inside the client)
LOCAL_PARAMS = ("unlearn_rounds", "recovery_rounds")


def resolve_method(
    name: str, params: dict, get_method: Callable[..., Any], local: str | None = None
) -> tuple[str, dict]:
    """``(federated method, keyword arguments)`` for method ``name`` with ``params``: one of
    retrain, exact, federaser, or a registered method serving the clients' local task
    (``local``: a modality name, default the classifier's; :func:`.unlearning.local_modality`
    of the federation's spec), run inside the target client (``local``; ``unlearn_rounds`` /
    ``recovery_rounds`` are its own)."""
    from .unlearning import LOCAL_MODALITY

    local = local or LOCAL_MODALITY
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
    if method is None or local not in tuple(getattr(method, "modalities", ()) or ()):
        raise ConfigError(
            f"unknown federated method {name!r}; choose retrain, exact, federaser or a method serving "
            f"{local} run inside the client (`unlearnkit methods` lists them)"
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
    history = getattr(request, "history", None)
    if history is not None and not isinstance(history, dict):
        raise ConfigError("a request's history is {excluded_ids: [...], base_artifact: hash}")
    if history and history.get("base_state"):
        raise ConfigError("a federated line's versions are global models: no training-state manifest applies")


# --------------------------------------------------------------------------- model lines
@dataclass
class LineHistory(FederatedHistory):
    """The stored rounds of a line's original training, as a later request on the line sees
    them: the methods inside a client start from ``base_state``, the deployed version's global
    model (``final_state``), and no stored round at or after ``deleted_from`` (the first round
    any example deleted before contributed to) may be resumed from, so ``first_round_of`` a
    client is never later than it (exact retraining and FedEraser then replay from there)."""

    base_state: dict | None = None
    deleted_from: int | None = None

    def first_round_of(self, client: str) -> int | None:
        n = super().first_round_of(client)
        if self.deleted_from is None:
            return n
        return self.deleted_from if n is None else min(n, self.deleted_from)

    @property
    def final_state(self):
        return self.base_state if self.base_state is not None else super().final_state


def _line_forget(task: FederatedTask, forget: FederatedForget, excluded: set[str]) -> list[str]:
    """The example ids ``forget`` names among the data that remain on the line (``task``'s,
    without ``excluded``); an unknown or already deleted id, subject or client is an error."""
    if forget.clients:
        ids = []
        for c in forget.clients:
            if c not in task.client_data:
                raise ConfigError(f"unknown client {c!r}; the federation has {', '.join(task.client_data)}")
            left = [str(i) for i in task.client_data[c].example_ids.tolist() if str(i) not in excluded]
            if not left:
                raise ConfigError(f"client {c!r} has left: every example it held was deleted before")
            ids += left
        return ids
    train = task.split.train
    if forget.subjects:
        remaining = train.without(sorted(excluded & set(map(str, train.example_ids.tolist()))), name=train.name)
        try:
            return [str(i) for i in remaining.ids_of_subjects(forget.subjects)]
        except UnknownIdsError as e:
            raise ConfigError(
                f"{str(e).split(' ', 1)[0]} subject(s) hold no training example that was not deleted before"
            ) from None
    ids = list(dict.fromkeys(map(str, forget.ids)))
    unknown = [i for i in ids if not train.has(i)]
    if unknown:
        raise ConfigError(f"no client holds example {unknown[0]!r} ({len(unknown)} unknown ids)")
    again = sorted(set(ids) & excluded)
    if again:
        shown = ", ".join(again[:5]) + (" ..." if len(again) > 5 else "")
        raise ConfigError(f"{len(again)} example(s) were deleted before: {shown}")
    return ids


def with_line_history(workspace, base: FederatedTask, forget: FederatedForget, history: dict) -> FederatedTask:
    """``base`` (a federation's task from its stored rounds) after a line's earlier
    deletions, with ``forget`` resolved against what remains.

    ``history``: ``{"excluded_ids": [...], "base_artifact": hash}``. The ids deleted before
    leave the training set and every client's data (a client left with none has left: it is
    never contacted again); the forget set is the ids ``forget`` names among the rest. Where
    it covers whole clients and nothing else, those clients leave (a client-level request:
    never contacted, as ``client:ID``); where it covers whole clients and examples of others,
    the covered clients leave too and the others drop the examples. Refused: an id that is not
    a training example, one deleted before, a forget set after which no client takes part from
    round 1 or none is left. The original is the deployed version (``base_artifact``, hash
    verified); the spec records the history (the task's key and its reference's key differ
    from the first request's). A task with its own metrics view (an LM federation's
    ``line_view``) builds it for the request, holdout included (never-trained people); a
    classifier federation's holdout is matched to the forget set from the server's pool."""
    excluded = sorted({str(i) for i in history.get("excluded_ids") or []})
    train = base.split.train
    unknown = [i for i in excluded if not train.has(i)]
    if unknown:
        raise ConfigError(f"{len(unknown)} id(s) deleted before are not training examples of this federation")
    gone = set(excluded)
    holders = [c for c, d in base.client_data.items() if gone & set(map(str, d.example_ids.tolist()))]
    firsts = [n for c in holders if (n := base.history.first_round_of(c)) is not None]
    client_data = {}
    for c, d in base.client_data.items():
        mine = [i for i in map(str, d.example_ids.tolist()) if i in gone]
        rest = d.without(mine, name=d.name) if mine else d
        if len(rest):
            client_data[c] = rest  # a client left with no data has left
    reduced = dataclasses.replace(base, client_data=client_data)
    forget_ids = _line_forget(reduced, forget, gone)
    if not forget_ids:
        raise ConfigError("the request names no example")
    fset = set(forget_ids)
    holding = {c: fset & set(map(str, d.example_ids.tolist())) for c, d in client_data.items()}
    holding = {c: got for c, got in holding.items() if got}
    covered = sorted(c for c, got in holding.items() if len(got) == len(client_data[c]))
    partial = sorted(c for c in holding if c not in covered)
    joins = {c: j for c, j in base.joins.items() if c in client_data}
    rest = [c for c in client_data if c not in covered]
    if not rest:
        raise ForgetSetError("this request, with the line's deletions before it, leaves no client with data")
    if min(joins[c] for c in rest) > 1:
        raise ForgetSetError("after this request no client with data takes part from round 1: no reference")
    count = len(forget_ids)
    if covered and not partial:
        request = FederatedForget(clients=tuple(covered))
        scenario = {"kind": "client", "client": covered[0], "clients": covered, "count": count}
    elif forget.subjects and not covered:
        request = FederatedForget(subjects=tuple(forget.subjects))
        scenario = {"kind": "subject", "client": partial[0], "subjects": sorted(forget.subjects), "count": count}
        if len(partial) > 1:
            scenario["clients"] = partial
    else:
        request = FederatedForget(ids=tuple(forget_ids))
        scenario = {"kind": "examples", "client": sorted(holding)[0], "count": count}
        if len(holding) > 1:
            scenario["clients"] = sorted(holding)
        for c in covered:  # whole clients inside an example request leave (never contacted again)
            joins.pop(c)
    train = train.without(excluded, name=train.name) if excluded else train
    own_view = getattr(base, "line_view", None)
    extra = {}
    if own_view is not None:  # an LM federation: its metrics' view, holdout = never-trained people
        extra["view"] = own_view(forget_ids, excluded)
        holdout = extra["view"].holdout
    else:  # a classifier federation: a holdout matched to the forget set from the server's pool
        rng = np.random.default_rng(derive_seed(base.seed, "holdout", len(forget_ids)))
        holdout = matched_holdout(base.pool, train.select(forget_ids), rng)
    split = Split(train, base.split.test, forget_ids, holdout, scenario)
    recorded = {"excluded_ids": excluded, "base_artifact": history.get("base_artifact")}
    spec = {k: v for k, v in base.spec.items() if k != "scenario"} | {"history": recorded}
    original = base.original
    if history.get("base_artifact"):
        original = workspace.artifacts.load(history["base_artifact"], base.model_factory(base.seed)).to(base.device)
        original.eval()  # SHA-256 verified: a missing or corrupt version raises
    from .runtime import state_of

    # the version's global model as the arrays that travel; a federation whose versions are
    # merged models (LoRA clients: adapters travel, versions are plain LMs) has none
    full = state_of(original)
    base_state = full if set(full) == set(base.initial_state()) else None
    kept = {f.name: getattr(base.history, f.name) for f in dataclasses.fields(FederatedHistory)}
    line_history = LineHistory(**kept, base_state=base_state, deleted_from=min(firsts) if firsts else None)
    return dataclasses.replace(
        base,
        split=split,
        client_data=client_data,
        joins=joins,
        history=line_history,
        forget_request=request,
        spec=spec,
        original=original,
        memo={},
        **extra,
    )


def line_task(workspace, train_rec, forget: FederatedForget, history: dict | None, progress: bool = False):
    """The task of ``forget`` on train run ``train_rec``'s federation: as :func:`stored_task`
    without ``history``; with it, after the line's earlier deletions (:func:`with_line_history`)."""
    if history is None:
        return stored_task(workspace, train_rec, forget, progress)
    return with_line_history(workspace, stored_task(workspace, train_rec, None, progress), forget, history)


def run_task(workspace, record, progress: bool = False) -> FederatedTask:
    """The task a recorded unlearned run was made on (its spec's history included)."""
    history = (record.task_spec or {}).get("history")
    return line_task(workspace, workspace.store.get(record.parent), request_of(record), history, progress)


def reference_key(task: FederatedTask) -> str:
    """The model cache's key of ``task``'s reference (federated retraining is the task's
    seed's: the request's seed does not change it)."""
    return f"federated-retrain-{task.key}-{task.split.forget_fingerprint}"


def reference(task: FederatedTask, workspace=None):
    """Federated retraining of ``task`` (a :class:`~.unlearning.FederatedResult`), from the
    workspace's model cache where it holds it (with the cost it had when it was trained), else
    trained and cached; a method whose answer *is* retraining (``exact`` where the data took
    part from round 1) caches it too (:func:`unlearn_record`)."""
    from .unlearning import FederatedResult, retrain

    memo = ("retrain", task.split.forget_fingerprint)
    if memo in task.memo:
        return task.memo[memo]
    cache = getattr(workspace, "cache", None)
    if cache is not None:
        model = task.model_factory(task.seed).to(task.device)
        info = cache.get(reference_key(task), model)
        if info is not None:
            fields = set(FederatedCost.__dataclass_fields__)
            cost = FederatedCost(**{k: v for k, v in (info.get("cost") or {}).items() if k in fields})
            task.memo[memo] = FederatedResult(model.eval(), cost, "retrain", {}, FederatedHistory(), task.seed)
            return task.memo[memo]
    result = retrain(task)
    if cache is not None:
        cache.put(reference_key(task), result.model, {"cost": result.cost.to_dict()})
    return result


def _cache_if_retraining(task: FederatedTask, result, workspace) -> None:
    cache = getattr(workspace, "cache", None)
    if cache is None or not (result.method == "retrain" or result.extra.get("equals_retrain")):
        return
    if cache.artifact(reference_key(task)) is None:
        cache.put(reference_key(task), result.model, {"cost": result.cost.to_dict()})


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
        "reference": {"key": reference_key(task), "artifact": None},
    }


def unlearn_record(
    task: FederatedTask, name: str, kwargs: dict, seed: int, workspace, parent: str | None, evaluate: bool = True
) -> tuple[dict, Any]:
    """Run federated method ``name`` on ``task``; the record fields of the unlearned model
    (its metrics against federated retraining when ``evaluate``) and the result."""
    from .metrics import evaluate_federated
    from .unlearning import unlearn_federated

    result = unlearn_federated(task, name, seed=seed, **kwargs)
    _cache_if_retraining(task, result, workspace)
    ref = reference(task, workspace) if evaluate else None
    metrics = evaluate_federated(task, result.model, result.cost, ref, seed=seed) if evaluate else {}
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
    None, "task": ..., "model": ..., "cost": FederatedCost, "reference_cost": ... or None}``.
    Checked before any training: the method and its parameters, the request's shape (``ids``,
    ``subjects`` or ``scenario`` ``client:ID``), the run and its stored rounds, and on a line
    (``history``) the ids deleted before it and the version it starts from."""
    from .unlearning import local_modality

    _check_request(request)
    parent = workspace.store.get(request.run)
    name, kwargs = resolve_method(request.method, request.params, get_method, local_modality(parent.task_spec))
    forget = request_scenario(ids=request.ids, subjects=request.subjects, scenario=request.scenario)
    _check_local(name, kwargs, forget)  # before the task is built (which may train the federation again)
    task = line_task(workspace, parent, forget, getattr(request, "history", None), progress)
    if name == "local" and len(task.target_clients) > 1:  # a line's batch may span clients
        raise ConfigError("the methods inside a client unlearn one client at a time; this request spans several")
    history = getattr(request, "history", None) or {}
    if (
        name == "local"
        and history.get("base_artifact") not in (None, parent.artifact)
        and getattr(task.history, "base_state", True) is None
    ):
        raise ConfigError(
            "the methods inside a client start from the deployed version's travelling arrays, and this "
            "federation's versions are merged models; answer with exact, retrain or federaser"
        )
    fields, result = unlearn_record(task, name, kwargs, request.seed, workspace, parent.id, request.evaluate)
    if getattr(request, "run_id", None):
        fields["id"] = request.run_id
    if getattr(request, "save_model", None):
        workspace.artifacts.save_file(result.model, request.save_model)
    evaluation = evaluation_inputs(task, request.seed, fields["artifact"]) if request.evaluate else None
    ref = task.memo.get(("retrain", task.split.forget_fingerprint)) if request.evaluate else None
    return {
        "record": fields,
        "extra": dict(result.extra),
        "evaluation": evaluation,
        "task": task,
        "model": result.model,
        "cost": result.cost,
        "reference_cost": ref.cost if ref is not None else None,
    }


def evaluate_run(workspace, record, seed: int | None = None, progress: bool = False) -> dict:
    """Every federated metric of recorded unlearned run ``record`` against federated
    retraining without its data: ``{"metrics": ..., "inputs": ...}`` (the caller stores the
    evaluation; the run keeps the metrics it was recorded with)."""
    from .metrics import evaluate_federated

    if record.kind != "unlearn":
        raise ConfigError(f"run {record.id} is a federation's original; evaluate its unlearned runs")
    if not record.artifact:
        raise ConfigError(f"run {record.id} has no model to evaluate (status {record.status})")
    seed = record.seed if seed is None else seed
    task = run_task(workspace, record, progress)
    model = workspace.artifacts.load(record.artifact, task.model_factory(task.seed)).eval()
    fields = set(FederatedCost.__dataclass_fields__)
    cost = FederatedCost(**{k: v for k, v in (record.cost or {}).items() if k in fields})
    ref = reference(task, workspace)
    metrics = evaluate_federated(task, model, cost, ref, seed=seed)
    return {
        "metrics": metrics,
        "inputs": evaluation_inputs(task, seed, record.artifact),
        "task": task,
        "model": model,
        "reference": ref,
    }


def reference_record(workspace, record, seed: int | None = None, progress: bool = False) -> dict:
    """The record fields of federated retraining for recorded unlearned run ``record``'s task:
    the exact answer to the same request (``federated:retrain``, its artifact saved, its cost
    the retraining's; the cached reference where the workspace holds it)."""
    task = run_task(workspace, record, progress)
    ref = reference(task, workspace)
    seed = record.seed if seed is None else seed
    return {
        "kind": "unlearn",
        "task_key": task.key,
        "method": "federated:retrain",
        "seed": int(seed),
        "task_spec": task.spec,
        "scenario": task.split.scenario,
        "forget_fingerprint": task.split.forget_fingerprint,
        "forget_ids": [str(i) for i in task.split.forget_ids],
        "params": {},
        "metrics": {},
        "cost": ref.cost.to_dict(),
        "environment": environment_info(),
        "artifact": workspace.artifacts.save(ref.model),
        "parent": record.parent,
        "tags": {"reference_of": record.id, "holdout_ids": [str(i) for i in task.holdout.example_ids]},
    }


def method_is_exact(name: str) -> bool:
    """Whether federated method ``name`` answers exactly (retraining, exact resumption)."""
    return name in ("retrain", "exact")


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
    from .unlearning import local_modality

    recs = []
    for sc in scenarios:
        request = sc if isinstance(sc, FederatedForget) else FederatedForget.from_dict(sc) if sc else None
        task = base.with_forget_request(request) if request is not None else base
        recs.append(original_record(task, seed, workspace))
        names = [("retrain", {})] + [s for s in specs if s[0] != "retrain"]
        for name, params in names:
            method, kwargs = resolve_method(name, params, get_method, local_modality(base.spec))
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
