"""The Python API in a few calls.

>>> import unlearnkit as uk
>>> task = uk.make_task("digits", model="mlp", scenario=uk.ClassForget(3), seed=0)
>>> result = uk.unlearn(task, "scrub", seed=0)
>>> ev = uk.evaluate(result.model, task, cost=result.cost)
>>> ev.metrics["acc_forget"], ev.metrics["mia_lr_auc"]

A deletion request against a stored train run goes through the one flow the CLI's
``unlearn`` and the service use (:mod:`unlearnkit.requests`):

>>> from unlearnkit.api import DeletionRequest, Workspace, answer_request
>>> ws = Workspace.open("unlearnkit-home")
>>> outcome = answer_request(ws, DeletionRequest(run_id, "scrub", subjects=["subject-007"], evaluate=True))
>>> outcome.record.id, outcome.artifact, outcome.metrics["cost_ratio_time"]
"""

from __future__ import annotations

from torch import nn

from .engines.loop import LoopStats
from .methods import UnlearnResult, get_method
from .orchestration.artifacts import ModelCache
from .orchestration.experiment import Evaluation, Workspace, evaluate_model, get_reference, score_model
from .requests import DeletionRequest, EvaluationOutcome, RequestOutcome, answer_request, evaluate_run
from .task import Task


def unlearn(task: Task, method: str, seed: int = 0, progress: bool = False, **params) -> UnlearnResult:
    """Apply a registered method (see ``unlearnkit methods``) to ``task``."""
    return get_method(method, **params).unlearn(task, seed=seed, progress=progress)


def evaluate(
    model: nn.Module,
    task: Task,
    seed: int | None = None,
    reference: nn.Module | None = None,
    cost: LoopStats | None = None,
    reference_cost: LoopStats | None = None,
    cache: ModelCache | None = None,
    progress: bool = False,
) -> Evaluation:
    """Every metric of ``model`` on ``task``, against the reference.

    Without ``reference``, the reference is retrained on the retain set (or loaded
    from ``cache``) with ``seed`` (default: the task's seed).
    """
    seed = task.seed if seed is None else seed
    if reference is None:
        reference, reference_cost, _ = get_reference(task, seed, cache, progress)
    return evaluate_model(
        model, task, score_model(reference, task), cost, reference_cost, seed, reference_model=reference
    )


__all__ = [
    "unlearn",
    "evaluate",
    "answer_request",
    "evaluate_run",
    "DeletionRequest",
    "RequestOutcome",
    "EvaluationOutcome",
    "Evaluation",
    "Workspace",
]
