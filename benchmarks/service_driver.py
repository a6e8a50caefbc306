"""The timed batch driver the deletion-request-service benchmarks share (``service.py``,
``service_federated.py``, ``service_graph.py``, ``service_recsys.py``): a service whose
``enqueue`` hook only records the batches it opens, and batches answered in this process
through the workflow's own control flow (``workflows.answer_batch`` + ``call_step``, as the
tests drive it), every hold released at once and counted, every step timed.

Each benchmark keeps its own reporting; this module only runs and times the requests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from unlearnkit.service import crypto
from unlearnkit.service.workflows import answer_batch, call_step


class Queue:
    """The service's ``enqueue`` hook: records the id of every batch it opens, in order (the
    benchmark answers them itself)."""

    def __init__(self):
        self.batches: list[str] = []

    def __call__(self, conn, batch_id, line_id, delay):
        self.batches.append(batch_id)


def answer(
    svc, batch: str, *, reason: str = "benchmark", actor: str = "bench", repeats: str = "sum"
) -> tuple[str, int, dict[str, float]]:
    """Answer ``batch`` through the workflow's steps, releasing every hold at once
    (``svc.decide(batch, "release", reason, actor)``): its end state, how many holds were
    released and the seconds per step (rounded to ms). A step run more than once (``verify``
    after an escalation, ``decision_of`` while held): ``repeats="sum"`` adds up its runs,
    ``repeats="again"`` keeps the first run under its name and the last repeat under
    ``"<step> (again)"``."""
    released = 0
    timed: dict[str, float] = {}

    def wait():
        nonlocal released
        released += 1
        svc.decide(batch, "release", reason, actor)

    def step(name, b, *a):
        t0 = time.perf_counter()
        try:
            return call_step(svc, name, b, *a)
        finally:
            dt = time.perf_counter() - t0
            if repeats == "sum":
                timed[name] = round(timed.get(name, 0.0) + dt, 3)
            else:
                timed[name if name not in timed else f"{name} (again)"] = round(dt, 3)

    end = answer_batch(batch, step, wait)
    return end, released, timed


@dataclass
class Answered:
    """One batch submitted and answered by :func:`timed_answer`."""

    #: the submissions' response bodies (``id``, ``batch``, ``examples``, ...), in order
    subs: list[dict]
    #: from the first submission to the batch's end state (certificates checked after)
    seconds: float
    #: the batch's end state (``promoted``, ``failed``, ``refused``, ``superseded``)
    end: str
    #: holds released
    released: int
    #: seconds per workflow step (see :func:`answer`)
    seconds_per_step: dict[str, float]
    #: every request's certificate verifies against the service's public key
    certificates_verify: bool
    #: the batch's recorded step outputs (``resolve``, ``unlearn``, ``verify``, ...)
    steps: dict


def timed_answer(
    svc,
    q: Queue,
    line: str,
    body: dict | list[dict],
    *,
    reason: str = "benchmark",
    actor: str = "bench",
    repeats: str = "sum",
) -> Answered:
    """Submit ``body`` to ``line`` (a list: several requests, which must make one batch) and
    answer the batch they opened (``q``'s newest) with :func:`answer`, timed from the first
    submission; then check every request's certificate."""
    t = time.perf_counter()
    bodies = body if isinstance(body, list) else [body]
    subs = [svc.submit(line, **b).body for b in bodies]
    batch = q.batches[-1]
    assert {x["batch"] for x in subs} == {batch}, "the submissions are not the newest batch"
    end, released, timed = answer(svc, batch, reason=reason, actor=actor, repeats=repeats)
    seconds = time.perf_counter() - t
    verify = all(crypto.verify_document(svc.certificate(x["id"]), svc.public_key_pem()) == [] for x in subs)
    steps = svc._steps(batch)[0]["steps"]
    return Answered(subs, seconds, end, released, timed, verify, steps)


def failed_checks(verify: dict) -> list[str]:
    """The gate checks and canary measures a verify step failed."""
    return [c["metric"] for c in verify["checks"] if not c["passed"]] + [
        c["measure"] for c in verify["canary"] if not c["passed"]
    ]
