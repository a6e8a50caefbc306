"""The deletion-request service's hooks for recommender model lines (the graph modality keeps
its own in ``graph/task.py``; :func:`unlearnkit.service.core._task_hook` looks in a modality's
``service`` module first, then in its ``task`` module).

* :func:`resolve_request_ids`: a request's interaction ids (``user:<u>/item:<i>``), unknown
  ones counted by reason and never named (the service shows the detail to the requester);
* :func:`canary_examples`: a line's canary rows (held-out test interactions) on the retain
  graph, the graph every split is scored on (LightGCN propagates over it).

People (subjects: user ids, their whole training history) resolve through the training set's
subject ids as on every line; an unknown user is refused there.
"""

from __future__ import annotations

from typing import Sequence

from ...errors import UnknownIdsError
from .adapter import InteractionSet


def _parts(example_id: str) -> tuple[str, str] | None:
    """``(user, item)`` of an interaction id, or None where it is not one."""
    if not example_id.startswith("user:") or "/item:" not in example_id:
        return None
    user, _, item = example_id[5:].partition("/item:")
    return (user, item) if user and item else None


def why_not_trained(train: InteractionSet, ids: Sequence[str]) -> list[str]:
    """Per id (none of them a training interaction), why not: not an interaction id, no such
    user, an item nobody interacted with in training (a held-out item or none at all), or a
    pair of a known user and item that is not a training interaction (held out for testing,
    or never made: the training set alone cannot tell them apart, and neither is deletable)."""
    users = set(map(str, train.subject_ids)) if train.subject_ids is not None else set()
    items = {p[1] for p in map(_parts, map(str, train.example_ids)) if p}
    out = []
    for i in ids:
        p = _parts(str(i))
        if p is None:
            out.append("not an interaction id (user:<u>/item:<i>)")
        elif p[0] not in users:
            out.append("no such user")
        elif p[1] not in items:
            out.append("an item nobody interacted with in training")
        else:
            out.append("not a training interaction of the user (held out, or never made)")
    return out


def resolve_request_ids(train: InteractionSet, ids: Sequence[str]) -> list[str]:
    """A request's interaction ids, all of them training interactions; else an
    :class:`UnknownIdsError` whose ``reasons`` count the others by reason and name none."""
    ids = [str(i) for i in ids]
    missing = [i for i in ids if not train.has(i)]
    if missing:
        reasons: dict[str, int] = {}
        for why in why_not_trained(train, missing):
            reasons[why] = reasons.get(why, 0) + 1
        counted = ", ".join(f"{why}: {n}" for why, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
        err = UnknownIdsError(f"{len(missing)} id(s) not among the training interactions: {counted}")
        err.reasons = counted  # type: ignore[attr-defined]
        raise err
    return ids


def canary_examples(task, ids: Sequence[str]) -> InteractionSet:
    """The held-out test interactions ``ids`` (a line's canary) scored on the retain graph:
    the graph without every deleted interaction, as every split is scored."""
    rows = task.split.test.select([str(i) for i in ids], name="canary")
    return rows.on_structure_of(task.split.retain, name="canary")


__all__ = ["canary_examples", "resolve_request_ids", "why_not_trained"]
