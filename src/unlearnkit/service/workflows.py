"""Durable execution of batches on DBOS Transact (https://docs.dbos.dev).

A batch is one DBOS workflow, ``unlearnkit.batch``, on the queue ``unlearnkit-batches``,
whose steps are the :class:`~unlearnkit.service.core.Service` steps. DBOS records each
finished step's output in its system tables (the service's own database), so after
``kill -9`` of a worker, a worker restarted with the same ``--worker-id`` resumes the
workflow at the first unfinished step; the steps themselves are idempotent (they return
what they recorded), so the one step that was running when the process died is run
again without doing twice what it did.

* The workflow is enqueued in the transaction that opens the batch
  (``DBOSClient.enqueue_in_transaction``): a request is never accepted without the
  workflow that answers it, nor a workflow started for a request that was not stored.
* ``delay_seconds`` is the policy's batching window: requests arriving meanwhile join
  the batch.
* The queue is partitioned by model line with ``partition_concurrency=1``: one batch per
  line at a time across all workers (cumulative deletions need the previous version),
  lines in parallel.
* Workers on several machines share the database (PostgreSQL) and the workspace's
  artifacts folder; each takes a distinct, stable ``--worker-id`` (DBOS's executor id,
  under which it recovers its own unfinished workflows on restart).

DBOS is a process-wide singleton: :func:`launch` configures it once per process for
one :class:`Service`, which the workflow's steps reach through :func:`_service`.
"""

from __future__ import annotations

import logging
import threading

from .. import __version__
from .core import Service

log = logging.getLogger("unlearnkit.service")

QUEUE = "unlearnkit-batches"
WORKFLOW = "unlearnkit.batch"
#: the application version every process enqueues and runs under (DBOS recovers and
#: dequeues workflows of its own version only); bump it when the workflow's steps change
APP_VERSION = f"unlearnkit-{__version__}-batch-v1"

_state: dict = {"service": None, "clients": {}, "launched": False}
#: recoveries of one batch before DBOS gives it up (a batch that kills every worker that
#: takes it: too big for the memory, say); its requests are then failed with the reason
MAX_RECOVERIES = 20
#: DBOS end states of a batch whose steps did not finish
DEAD = ("MAX_RECOVERY_ATTEMPTS_EXCEEDED", "ERROR", "CANCELLED")
_lock = threading.Lock()


def _service() -> Service:
    svc = _state["service"]
    if svc is None:  # pragma: no cover - a workflow ran before launch()
        raise RuntimeError("no service in this process; call unlearnkit.service.workflows.launch first")
    return svc


def system_database_url(service: Service) -> str:
    return service.url


def client(service: Service):
    """The process's DBOS client on the service's database (migrated first)."""
    from dbos import DBOS, DBOSClient

    url = system_database_url(service)
    with _lock:
        clients = _state.setdefault("clients", {})
        if url not in clients:
            DBOS.migrate(url)
            clients[url] = DBOSClient(system_database_url=url)
        return clients[url]


def enqueuer(service: Service):
    """The ``enqueue`` hook of a :class:`Service`: the batch's workflow, in the caller's transaction."""
    c = client(service)

    def enqueue(conn, batch_id: str, line_id: str, delay: float) -> None:
        options = {
            "workflow_name": WORKFLOW,
            "queue_name": QUEUE,
            "workflow_id": f"wf-{batch_id}",
            "queue_partition_key": line_id,
            "app_version": APP_VERSION,
        }
        if delay > 0:
            options["delay_seconds"] = float(delay)
        c.enqueue_in_transaction(conn, options, batch_id)

    return enqueue


def attach(service: Service) -> Service:
    """Give ``service`` its enqueue hook (API processes; no workflow runs here)."""
    service.enqueue = enqueuer(service)
    return service


def launch(service: Service, worker_id: str = "local") -> None:
    """Run batches in this process: DBOS launched on the service's database, recovering this
    worker's unfinished workflows and dequeuing new ones."""
    from dbos import DBOS

    with _lock:
        if _state["launched"]:
            if _state["service"] is not service:
                raise RuntimeError("DBOS is launched in this process for another service")
            return
        _state["service"] = service
        DBOS(
            config={
                "name": "unlearnkit",
                "system_database_url": system_database_url(service),
                "application_version": APP_VERSION,
                "executor_id": worker_id,
                "log_level": "WARNING",
            }
        )
        DBOS.launch()
        DBOS.register_queue(QUEUE, partition_concurrency=1, polling_interval_sec=0.2)
        _state["launched"] = True
    attach(service)
    statuses = DBOS.list_workflows(status=list(DEAD), name=WORKFLOW, load_input=False, load_output=False)
    fail_dead_batches(service, [(w.workflow_id, w.status) for w in statuses])


def fail_dead_batches(service: Service, workflows: list[tuple[str, str]]) -> list[str]:
    """Fail the requests of every batch whose workflow DBOS gave up (``workflows``: its id
    and status), so that none waits for ever; returns the batches failed now."""
    failed = []
    for workflow_id, status in workflows:
        batch_id = workflow_id.removeprefix("wf-")
        why = {
            "MAX_RECOVERY_ATTEMPTS_EXCEEDED": f"the worker answering it died {MAX_RECOVERIES} times",
            "ERROR": "a step raised an unexpected error (see the worker's log)",
        }.get(status, f"its workflow was {status.lower()}")
        if service.abandon(batch_id, why):
            failed.append(batch_id)
    return failed


def shutdown() -> None:
    from dbos import DBOS

    with _lock:
        if _state["launched"]:
            # a running step may finish and record itself; what does not is resumed by the next launch
            DBOS.destroy(destroy_registry=False, workflow_completion_timeout_sec=5)
            _state.update(launched=False, service=None)
        for c in _state["clients"].values():
            c.destroy()
        _state["clients"] = {}


# --------------------------------------------------------------------------- the workflow
def answer_batch(batch_id: str, step, wait_for_decision) -> str:
    """The control flow of one batch (what the DBOS workflow runs): ``step(name, batch_id,
    *args)`` runs :meth:`Service.step_<name>` (as a DBOS step in the workflow, directly in
    tests) and returns its output's summary; ``wait_for_decision()`` blocks a while for a
    person's decision on a held batch. Returns the batch's end state."""
    step("close", batch_id)
    step("resolve", batch_id)
    step("unlearn", batch_id)
    v = step("verify", batch_id, "unlearn")
    if v["hold"]:
        step("hold", batch_id)
        while step("decision_of", batch_id) is None:
            wait_for_decision()
        if step("decision_of", batch_id) == "refuse":
            step("refuse", batch_id)
            return "refused"
    if not v["passed"]:
        if step("on_failure", batch_id) == "reject":
            step("fail", batch_id)
            return "failed"
        if step("escalate", batch_id)["error"]:  # even the exact path could not answer
            step("fail", batch_id)
            return "failed"
        step("verify", batch_id, "escalate")
    if step("promote", batch_id).get("superseded"):
        return "superseded"
    step("certify", batch_id)
    return "promoted"


#: what each step returns to the workflow (DBOS records it): small summaries, the full
#: outputs live in the batch's row
_SUMMARY = {
    "verify": lambda v: {"passed": v["passed"], "hold": v["hold"]},
    "promote": lambda p: {"superseded": bool(p.get("superseded")), "version": p.get("version")},
    "escalate": lambda e: {"error": "error" in e},
}
STEP_NAMES = (
    "close", "resolve", "unlearn", "verify", "hold", "decision_of", "refuse",
    "on_failure", "fail", "escalate", "promote", "certify",
)  # fmt: skip


#: crash-point injection for the recovery tests: ``before:<step>[:<arg>]`` or
#: ``after:<step>[:<arg>]`` SIGKILLs this process at that step boundary ("after": the step's
#: own writes are committed, DBOS has not recorded its output). No effect unless set.
CRASH_ENV = "UNLEARNKIT_CRASH_AT"


def _crash_point(when: str, name: str, args: tuple) -> None:
    import os

    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    parts = spec.split(":")
    if parts[0] == when and parts[1] == name and (len(parts) < 3 or (args and str(args[0]) == parts[2])):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def call_step(service: Service, name: str, batch_id: str, *args):
    """Run step ``name`` of ``service`` and return what the workflow sees of it."""
    _crash_point("before", name, args)
    out = _call_step(service, name, batch_id, *args)
    _crash_point("after", name, args)
    return out


def _call_step(service: Service, name: str, batch_id: str, *args):
    if name == "on_failure":
        return service._steps(batch_id)[2].on_failure
    fn = getattr(service, name if name == "decision_of" else f"step_{name}")
    out = fn(batch_id, *args)
    if name in _SUMMARY:
        return _SUMMARY[name](out)
    return out if name == "decision_of" else None


def _register():
    """Register the workflow and its steps with DBOS (at import, before any launch)."""
    from dbos import DBOS

    steps = {
        name: DBOS.step(name=f"unlearnkit.{name}")(
            lambda batch_id, *args, _n=name: call_step(_service(), _n, batch_id, *args)
        )
        for name in STEP_NAMES
    }

    @DBOS.workflow(name=WORKFLOW, max_recovery_attempts=MAX_RECOVERIES)
    def batch(batch_id: str) -> str:
        return answer_batch(
            batch_id,
            lambda name, b, *a: steps[name](b, *a),
            lambda: DBOS.recv("decision", timeout_seconds=60),  # woken by the decision endpoint
        )

    return batch


batch_workflow = _register()


def notify_decision(service: Service, batch_id: str) -> None:
    """Wake a held batch's workflow after a decision (it also polls every minute)."""
    try:
        client(service).send(f"wf-{batch_id}", "decided", "decision")
    except Exception as e:  # noqa: BLE001 - the workflow polls; a lost wake-up only delays it
        log.warning("decision wake-up not sent", extra={"event": "decision.notify_failed", "error": str(e)})
