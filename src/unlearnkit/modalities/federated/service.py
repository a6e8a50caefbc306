"""The deletion-request service's hooks for federated model lines
(:func:`unlearnkit.service.core._task_hook` looks in a modality's ``service`` module first,
then in its ``task`` module).

A federated line deploys a federation's global model (version 0: the final global model of
a ``unlearnkit federated train`` run, whose stored rounds are kept beside it). Requests name
subjects (every example of those subjects, whichever client holds them) or example ids; a
whole client leaves by a request naming all of its subjects (or all of its remaining
examples): a batch whose forget set covers a client's whole remaining data answers it as
that client leaving (never contacted again), as ``unlearnkit unlearn --client`` does. Each
batch is answered by the federated flow (:func:`.flow.answer_request`, through
:func:`unlearnkit.requests.answer_request`) with the line's history: the ids deleted before
leave every client and the reference, and a client left with no data has left.

* :func:`line_task`: the train run's federation, from its stored rounds (subjects resolve
  through its training set; its test set gives the canary);
* :func:`check_line_deletion`: a request that, with the line's deletions before it, leaves
  no client with data or no client taking part from round 1 (no reference could be trained);
* :func:`policy_method`: a policy's method: ``retrain``, ``exact``, ``federaser`` or a
  registered classifier method run inside the client (checked with its hyperparameters);
* :func:`method_is_exact`: whether a method answers exactly (the certificate says so);
* :func:`version_state`: a federated version is a plain global model (no training-state
  manifest);
* :func:`reference_metrics`: the reference's own federated metrics, for the checks bounded
  relative to it;
* :func:`service_policy_for`: the default policy of a line by its federation's local task
  (an LM federation's gate checks the causal-LM metrics and the canary's loss shift,
  :data:`.defaults.LM_SERVICE_POLICY`; a classifier federation's its accuracy gaps and
  flip rates, :data:`.defaults.SERVICE_POLICY`).

An LM federation's line answers the same way: its requests name people (every row about
them) or rows; each request's metrics view is rebuilt with the forgotten people and without
the people deleted before (:meth:`.lm.FederatedLMTask.line_view`); its canary is rows of
never-trained holdout people (the train run's test split, as on a causal-LM line). Its
versions are merged models (base + adapters), so the methods inside a client answer only
from version 0; ``exact``, ``retrain`` and ``federaser`` answer from any version.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ...errors import ConfigError, ForgetSetError
from .flow import method_is_exact, resolve_method, stored_task


def line_task(workspace, run):
    """The federation of train run ``run`` (its stored rounds, hash-checked against its model)."""
    return stored_task(workspace, run, None)


def check_line_deletion(task, ids: Sequence[str]) -> None:
    """Raise where deleting ``ids`` (everything deleted on the line so far, this request
    included) leaves no client with data or no client taking part from round 1."""
    gone = {str(i) for i in ids}
    left = [c for c, d in task.client_data.items() if any(str(i) not in gone for i in d.example_ids.tolist())]
    if not left:
        raise ForgetSetError("no client would keep any data")
    if min(task.joins[c] for c in left) > 1:
        raise ForgetSetError("no client keeping data would take part from round 1 (no reference could be trained)")


def policy_method(name: str, params: dict, get_method: Callable[..., Any]) -> dict:
    """The parameters of policy method ``name`` on a federated line, checked (an unknown
    method or hyperparameter is a ConfigError)."""
    resolve_method(name, params, get_method)
    return dict(params or {})


def version_state(base_state, method: str, params: dict, task) -> None:
    """A federated version is the global model itself: no manifest."""
    if base_state:
        raise ConfigError("a federated line's versions are global models: no training-state manifest applies")
    return None


def reference_metrics(task, reference, seed: int = 0) -> dict:
    """The reference's own federated metrics (for ``min_ratio_to_reference`` /
    ``max_gap_to_reference`` bounds): ``reference`` is the flow's federated retraining."""
    from .metrics import evaluate_federated

    metrics = evaluate_federated(task, reference.model, reference.cost, reference, seed=seed)
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def service_policy_for(spec: dict) -> dict:
    """The default policy of a line whose train run has task spec ``spec``: an LM
    federation's (``local_task`` ``lm``) or a classifier federation's."""
    import copy

    from . import defaults

    lm = (spec or {}).get("local_task") == "lm"
    return copy.deepcopy(defaults.LM_SERVICE_POLICY if lm else defaults.SERVICE_POLICY)


__all__ = [
    "check_line_deletion",
    "line_task",
    "method_is_exact",
    "policy_method",
    "reference_metrics",
    "service_policy_for",
    "version_state",
]
