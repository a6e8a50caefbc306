"""Federated unlearning: what the server (and the client holding the request) do to remove a
client, or subjects / examples inside one client, from the global model.

Methods (:data:`FEDERATED_METHODS`):

* ``retrain``: the reference. Federated training from the same initial model, with the same
  strategy, rounds, join schedule and per-(client, round) seeds, without the forgotten data
  (the client leaves the federation, or drops the examples from its own data).
* ``exact``: exact federated retraining from checkpoints. Rounds before the forgotten data
  first contributed (the target client's first round, :meth:`FederatedHistory.first_round_of`)
  never saw it: restore that round's stored global model and strategy state and run the
  remaining rounds without the data. Where the client took part from round 1 this *is*
  retraining (same computation, same cost). On the local runtime its model equals
  ``retrain``'s bit for bit (tests check it).
* ``federaser``: FedEraser (Liu et al. 2021, IWQoS): from the stored global model of the
  target's first round ``t_1``, every ``delta_t``-th stored round ``t_j`` is replayed as one
  calibration round: each remaining client trains ``calibration_ratio`` of its local epochs
  from the calibrated global model, and the server combines the stored update's length with
  the calibration update's direction (:func:`~.runtime.federaser_step`). Departures:
  the calibrated updates are averaged (FedAvg) whatever strategy trained the original
  (FedEraser is defined on FedAvg; a server optimiser's state is not replayed); for a
  subject / example deletion the target client stays and calibrates on the rest of its data
  (FedEraser itself removes whole clients).
* ``local``: the project's unlearning methods inside the target client's loop, as Oblivionis
  (federated LLM unlearning, 2025) runs them: for ``unlearn_rounds`` rounds the target
  client runs the method (its own objective, e.g. GA, GradDiff, NPO, SimNPO, through
  ``Method.unlearn`` on the client's local task) while the others train as usual and the
  strategy aggregates; then ``recovery_rounds`` rounds without the forgotten data. The
  method instance is passed in by the caller (a modality does not import the methods
  layer). GradDiff, NPO and SimNPO need retain data on the client, so they cannot serve a
  whole client's departure (a ConfigError says so). The method must serve the clients' local
  task (:func:`local_modality`: a classifier, or the causal LM of an LM federation, whose
  clients train LoRA adapters, :mod:`.lm`).

Every method here works on whatever arrays the federation exchanges (a classifier's whole
state, or an LM federation's adapters; :class:`~.runtime.ClientSetup`'s ``get_state``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ...errors import ConfigError
from .history import FederatedCost, FederatedHistory
from .runtime import Phase, ServerProgram
from .task import FederatedTask

FEDERATED_METHODS = ("retrain", "exact", "federaser", "local")
#: the modality of a client's local task: the methods ``local`` can run are those serving it
LOCAL_MODALITY = "classifier"
#: a federation's local task (``spec["local_task"]``) -> the modality its clients' methods serve
LOCAL_MODALITIES = {"lm": "causal_lm"}


def local_modality(spec: dict | None) -> str:
    """The modality of the local task of the federation ``spec`` describes (a classifier, or
    the causal LM of an LM federation, :mod:`.lm`): what a method run inside a client serves."""
    return LOCAL_MODALITIES.get(str((spec or {}).get("local_task")), LOCAL_MODALITY)


@dataclass
class FederatedResult:
    """An unlearned global model, what producing it cost, and its rounds."""

    model: nn.Module
    cost: FederatedCost
    method: str
    params: dict
    history: FederatedHistory
    seed: int = 0
    extra: dict = field(default_factory=dict)


def _exclusion(task: FederatedTask) -> tuple[frozenset[str], dict]:
    """How the forgotten data leave the federation: the whole client, or its examples."""
    if task.forget_request.level == "client":
        return frozenset(task.target_clients), {}
    return frozenset(), {"exclude-ids": json.dumps(task.split.forget_ids.tolist())}


def _first_round(task: FederatedTask) -> int | None:
    """The first round any of the forgotten data contributed to (None: never)."""
    rounds = [n for c in task.target_clients if (n := task.history.first_round_of(c)) is not None]
    return min(rounds) if rounds else None


def _finish(task, history: FederatedHistory, wall: float, method: str, params: dict, seed: int) -> FederatedResult:
    model = task.global_model(history.final_state)
    return FederatedResult(model, FederatedCost.of_rounds(history.rounds, wall), method, params, history, seed)


def retrain(task: FederatedTask) -> FederatedResult:
    """The reference: the whole federated training again without the forgotten data."""
    key = ("retrain", task.split.forget_fingerprint)
    if key in task.memo:
        return task.memo[key]
    exclude, config = _exclusion(task)
    joins = {c: j for c, j in task.joins.items()}
    if exclude and min(j for c, j in joins.items() if c not in exclude) > 1:
        raise ConfigError("without the forgotten client no client takes part from round 1")
    phase = Phase(task.rounds, 1, exclude, config)
    program = ServerProgram(
        task.strategy, task.initial_state(), [phase], joins, task.local_epochs, task.strategy_kwargs
    )
    history, wall = task.run_program(program)
    task.memo[key] = _finish(task, history, wall, "retrain", {}, task.seed)
    return task.memo[key]


def exact(task: FederatedTask) -> FederatedResult:
    """Resume from the stored checkpoint before the forgotten data first contributed."""
    start = _first_round(task)
    if start is None or start == 1:
        r = retrain(task)
        return dataclasses.replace(r, method="exact", extra={"resumed_from_round": 1, "equals_retrain": True})
    exclude, config = _exclusion(task)
    stored = task.history.round(start)
    program = ServerProgram(
        task.strategy,
        stored.global_before,
        [Phase(task.rounds - start + 1, start, exclude, config)],
        task.joins,
        task.local_epochs,
        task.strategy_kwargs,
        strategy_state=stored.strategy_state,
    )
    history, wall = task.run_program(program)
    result = _finish(task, history, wall, "exact", {}, task.seed)
    result.extra = {"resumed_from_round": start, "equals_retrain": False}
    return result


def federaser(task: FederatedTask, delta_t: int = 2, calibration_ratio: float = 0.5) -> FederatedResult:
    """FedEraser's calibrated recomputation from the stored rounds (see the module docstring)."""
    if delta_t < 1 or not 0 < calibration_ratio <= 1:
        raise ConfigError("federaser: delta_t must be >= 1 and calibration_ratio in (0, 1]")
    start = _first_round(task) or 1
    calibrate = tuple(range(start, task.rounds + 1, delta_t))
    exclude, config = _exclusion(task)
    phase = Phase(
        len(calibrate),
        start,
        exclude,
        config,
        kind="federaser",
        calibrate=calibrate,
        calibration_epochs=calibration_ratio * task.local_epochs,
    )
    program = ServerProgram(
        task.strategy,
        task.history.round(start).global_before,
        [phase],
        task.joins,
        task.local_epochs,
        task.strategy_kwargs,
        stored=task.history,
    )
    history, wall = task.run_program(program)
    return _finish(
        task, history, wall, "federaser", {"delta_t": delta_t, "calibration_ratio": calibration_ratio}, task.seed
    )


def local(
    task: FederatedTask, unlearner: Any, unlearn_rounds: int = 1, recovery_rounds: int = 2, seed: int = 0
) -> FederatedResult:
    """``unlearner`` (a :class:`unlearnkit.methods.Method`) inside the target client for
    ``unlearn_rounds`` rounds, aggregated by the strategy, then ``recovery_rounds`` rounds
    without the forgotten data (see the module docstring)."""
    if unlearner is None or not hasattr(unlearner, "unlearn"):
        raise ConfigError("the local method needs an unlearning method (e.g. get_method('npo'))")
    if unlearn_rounds < 1 or recovery_rounds < 0:
        raise ConfigError("unlearn_rounds must be >= 1 and recovery_rounds >= 0")
    name = str(getattr(unlearner, "name", "method"))
    serves = local_modality(task.spec)
    if serves not in tuple(getattr(unlearner, "modalities", (serves,)) or ()):
        raise ConfigError(f"method {name!r} does not serve this federation's clients ({serves} tasks)")
    if len(task.target_clients) > 1:
        raise ConfigError("the methods inside a client unlearn one client at a time; forget the clients one by one")
    if task.forget_request.level == "client" and getattr(unlearner, "needs_retain", False):
        raise ConfigError(
            f"method {name!r} needs retain data on the client, and a leaving client keeps none; "
            "use it for a subject or examples inside a client"
        )
    last = task.rounds
    exclude, config = _exclusion(task)
    target = task.target_client
    unlearn_cfg = {
        "unlearn-client": target,
        "unlearner": name,
        "forget-ids": json.dumps(task.split.forget_ids.tolist()),
    }
    # the other clients of an unlearning round train on their data as usual (without the
    # forgotten examples: only the target holds them)
    phases = [
        Phase(unlearn_rounds, last + 1, frozenset(), {**unlearn_cfg, "seed": seed}),
        Phase(recovery_rounds, last + 1 + unlearn_rounds, exclude, config),
    ]
    phases = [p for p in phases if p.rounds]
    program = ServerProgram(
        task.strategy,
        task.history.final_state,
        phases,
        task.joins,
        task.local_epochs,
        task.strategy_kwargs,
        strategy_state=task.history.strategy_state,
    )
    history, wall = task.run_program(program, unlearners={name: copy.deepcopy(unlearner)})
    params = {"unlearn_rounds": unlearn_rounds, "recovery_rounds": recovery_rounds, "method_params": _params(unlearner)}
    return _finish(task, history, wall, f"local:{name}", params, seed)


def _params(unlearner) -> dict:
    p = getattr(unlearner, "params", None)
    return dataclasses.asdict(p) if dataclasses.is_dataclass(p) else {}


def unlearn_federated(task: FederatedTask, method: str, seed: int = 0, **kwargs) -> FederatedResult:
    """Run federated unlearning method ``method`` (:data:`FEDERATED_METHODS`) on ``task``."""
    if method == "retrain":
        return retrain(task, **kwargs)
    if method == "exact":
        return exact(task, **kwargs)
    if method == "federaser":
        return federaser(task, **kwargs)
    if method == "local":
        return local(task, seed=seed, **kwargs)
    raise ConfigError(f"unknown federated method {method!r}; choose one of {', '.join(FEDERATED_METHODS)}")
