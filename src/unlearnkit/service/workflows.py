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

_state: dict = {"service": None, "client": None, "launched": False}
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

    with _lock:
        if _state["client"] is None:
            DBOS.migrate(system_database_url(service))
            _state["client"] = DBOSClient(system_database_url=system_database_url(service))
        return _state["client"]


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


def shutdown() -> None:
    from dbos import DBOS

    with _lock:
        if _state["launched"]:
            DBOS.destroy(destroy_registry=False)
            _state.update(launched=False, service=None, client=None)


# --------------------------------------------------------------------------- the workflow
def _steps():
    """Register the workflow and its steps with DBOS (at import, before any launch)."""
    from dbos import DBOS

    @DBOS.step(name="unlearnkit.close")
    def close(batch_id: str) -> dict:
        return _service().step_close(batch_id)

    @DBOS.step(name="unlearnkit.resolve")
    def resolve(batch_id: str) -> dict:
        out = _service().step_resolve(batch_id)
        return {"forget": len(out["forget_ids"]), "base_version": out["base_version"]}

    @DBOS.step(name="unlearnkit.unlearn")
    def unlearn(batch_id: str) -> dict:
        return {"run_id": _service().step_unlearn(batch_id)["run_id"]}

    @DBOS.step(name="unlearnkit.verify")
    def verify(batch_id: str, candidate: str) -> dict:
        v = _service().step_verify(batch_id, candidate)
        return {"passed": v["passed"], "hold": v["hold"]}

    @DBOS.step(name="unlearnkit.escalate")
    def escalate(batch_id: str) -> dict:
        return {"run_id": _service().step_escalate(batch_id)["run_id"]}

    @DBOS.step(name="unlearnkit.hold")
    def hold(batch_id: str) -> None:
        _service().step_hold(batch_id)

    @DBOS.step(name="unlearnkit.decision")
    def decision(batch_id: str) -> str | None:
        return _service().decision_of(batch_id)

    @DBOS.step(name="unlearnkit.refuse")
    def refuse(batch_id: str) -> None:
        _service().step_refuse(batch_id)

    @DBOS.step(name="unlearnkit.fail")
    def fail(batch_id: str) -> None:
        _service().step_fail(batch_id)

    @DBOS.step(name="unlearnkit.promote")
    def promote(batch_id: str) -> dict:
        return _service().step_promote(batch_id)

    @DBOS.step(name="unlearnkit.certify")
    def certify(batch_id: str) -> dict:
        return _service().step_certify(batch_id)

    @DBOS.workflow(name=WORKFLOW)
    def batch(batch_id: str) -> str:
        close(batch_id)
        resolve(batch_id)
        unlearn(batch_id)
        v = verify(batch_id, "unlearn")
        if v["hold"]:
            hold(batch_id)
            while decision(batch_id) is None:
                DBOS.recv("decision", timeout_seconds=60)  # woken by the decision endpoint
            if decision(batch_id) == "refuse":
                refuse(batch_id)
                return "refused"
        if not v["passed"]:
            if _policy_rejects(batch_id):
                fail(batch_id)
                return "failed"
            escalate(batch_id)
            verify(batch_id, "escalate")
        p = promote(batch_id)
        if p.get("superseded"):
            return "superseded"
        certify(batch_id)
        return "promoted"

    @DBOS.step(name="unlearnkit.on_failure")
    def _on_failure(batch_id: str) -> str:
        return _service()._steps(batch_id)[2].on_failure

    def _policy_rejects(batch_id: str) -> bool:
        return _on_failure(batch_id) == "reject"

    return batch


batch_workflow = _steps()


def notify_decision(service: Service, batch_id: str) -> None:
    """Wake a held batch's workflow after a decision (it also polls every minute)."""
    try:
        client(service).send(f"wf-{batch_id}", "decided", "decision")
    except Exception as e:  # noqa: BLE001 - the workflow polls; a lost wake-up only delays it
        log.warning("decision wake-up not sent", extra={"event": "decision.notify_failed", "error": str(e)})
