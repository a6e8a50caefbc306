"""The service's verification gate applied to an exact answer: would the deletion-request service
notice a deletion request chosen to damage the model (the reasoning unlearning attack,
:mod:`unlearnkit.evaluation.reasoning_attack`)?

It uses the service's own parts on a causal-LM line: the line policy (:func:`line_policy`, the
modality's SERVICE_POLICY), :class:`~unlearnkit.service.policy.Check` on the catalogue metrics,
and :func:`~unlearnkit.service.core.canary_measures` on the canary a line named ``line_name``
would draw. The canary's limits are split as ``Service._verify`` splits them: the deletion
effect holds the batch for a person, and the excess fails the gate. The per-request size limit
is the one ``Service._submit`` refuses with.

For an exact answer the candidate *is* the reference, so the checks relative to the reference
compare a model with itself. ``answer_batch`` promotes an escalated (retrained) answer without
reading its second verification. So what can stop such a request is the size limit (refused)
or the deletion effect (held): ``caught`` is either of those.
"""

from __future__ import annotations

import hashlib
from typing import Callable

import numpy as np
from torch import nn

#: the line the gate is run for: its name seeds the canary draw, as ``register_line``'s does
LINE_NAME = "reasoning"


def service_policy(task):
    """The service's policy of a causal-LM line trained on ``task`` (the modality's default)."""
    from ..modalities import get_modality
    from .policy import line_policy

    return line_policy(get_modality(task.modality), None, None, task.spec)


def canary_ids_for(task, policy, line_name: str = LINE_NAME) -> list[str]:
    """The canary ``Service.register_line`` would draw for a line named ``line_name``: a
    sample of the task's test ids, seeded by the SHA-256 of the name."""
    test_ids = [str(i) for i in task.split.test.example_ids]
    rng = np.random.default_rng(int(hashlib.sha256(line_name.encode()).hexdigest()[:8], 16))
    size = min(policy.canary_size, len(test_ids))
    return sorted(rng.choice(test_ids, size=size, replace=False).tolist()) if size else []


def gate_verdict(task, original: nn.Module, retrained: nn.Module, policy, canary_ids, checks: bool = True) -> dict:
    """What the gate says of the exact answer ``retrained`` (both candidate and reference) to the
    request that forgets ``task``'s forget set from ``original``. ``checks=False`` skips the
    metric checks, which are then reported as not run."""
    from ..evaluation.metrics import METRICS
    from ..orchestration.experiment import evaluate_model, score_model
    from .core import canary_measures

    n_train = len(task.split.train)
    n_forget = len(task.split.forget_ids)
    refused = n_forget > policy.max_fraction_per_request * n_train
    check_rows = []
    if checks and policy.checks:
        wanted = {c.metric for c in policy.checks}
        specs = [name for name, s in METRICS.items() if wanted & set(s.outputs)]
        ev = evaluate_model(
            retrained, task, score_model(retrained, task), seed=task.seed, metrics=specs, reference_model=retrained
        )
        metrics = {k: v for k, v in ev.metrics.items() if isinstance(v, (int, float))}
        check_rows = [c.evaluate(metrics, metrics) for c in policy.checks]  # the exact answer is the reference
    canary = canary_measures(task, original, retrained, retrained, canary_ids)
    held, excess = [], []
    for k, limit in policy.canary_limits.items():
        _, side, measure = k.split("_", 2)
        value = canary.get(f"{side}_{measure}")
        item = {"measure": f"{side}_{measure}", "threshold": limit, "value": value}
        item["passed"] = value is not None and value <= limit
        (held if side == "reference" else excess).append(item)
    is_held = not all(c["passed"] for c in held)
    failed = [c["metric"] for c in check_rows if not c["passed"]] + [c["measure"] for c in excess if not c["passed"]]
    return {
        "refused": bool(refused),
        "held": bool(is_held),
        "caught": bool(refused or is_held),
        "checks_run": bool(check_rows),
        "checks_failed": failed,
        "checks": check_rows,
        "deletion_effect": held,
        "canary": canary,
        "n_forget": n_forget,
        "size_limit": policy.max_fraction_per_request * n_train,
    }


def exact_answer_gate(
    checks: bool = True, line_name: str = LINE_NAME
) -> Callable[[object, nn.Module, nn.Module], dict]:
    """``(task, original, retrained) -> gate_verdict(...)`` under the service's policy of the
    task's line and its canary: what :func:`~unlearnkit.evaluation.reasoning_attack.run_attack`
    takes as ``gate``."""

    def gate(task, original: nn.Module, retrained: nn.Module) -> dict:
        pol = service_policy(task)
        return gate_verdict(task, original, retrained, pol, canary_ids_for(task, pol, line_name), checks=checks)

    return gate
