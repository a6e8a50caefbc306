"""What the service's tests share (the ``trained`` and ``home`` fixtures, a trained digits
workspace and a private copy of it, are in ``conftest.py``): a service whose batches are queued in a list instead of DBOS, and a driver that answers
them through the workflow's own control flow (:func:`unlearnkit.service.workflows.answer_batch`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("dbos")

from typer.testing import CliRunner  # noqa: E402

from unlearnkit.cli import app  # noqa: E402
from unlearnkit.service.core import Service  # noqa: E402
from unlearnkit.service.workflows import answer_batch, call_step  # noqa: E402

#: a fast policy for tests: small batches, no window
FAST = {"batch": {"max_size": 4, "window_seconds": 0}}


def train_home(root: Path, *extra: str) -> tuple[Path, str]:
    """Train a digits MLP into workspace ``root``; returns (home, train run id)."""
    res = CliRunner().invoke(app, ["train", "--home", str(root), "--json", *extra])
    assert res.exit_code == 0, res.output
    return root, json.loads(res.stdout)["run_id"]


class Queue:
    """Stands in for DBOS's queue: remembers each enqueued batch (in order)."""

    def __init__(self):
        self.batches: list[str] = []
        self.answered = 0  # how many of them drain() has answered

    def __call__(self, conn, batch_id, line_id, delay):
        self.batches.append(batch_id)


def make_service(home: Path, url: str | None = None, policy: dict | None = None) -> tuple[Service, Queue]:
    q = Queue()
    svc = Service(home, url, policy if policy is not None else FAST, enqueue=q)
    return svc, q


def drive(svc: Service, batch_id: str, decisions: list[str] | None = None) -> str:
    """Answer one batch the way the workflow does; ``decisions`` answers holds in turn."""
    pending = list(decisions or [])

    def wait():
        if not pending:
            raise AssertionError(f"batch {batch_id} is held and the test gave no decision")
        svc.decide(batch_id, pending.pop(0), "test", "tester")

    return answer_batch(batch_id, lambda name, b, *a: call_step(svc, name, b, *a), wait)


def drain(svc: Service, q: Queue) -> list[str]:
    """Answer every batch queued since the last drain (and those they queue), in order;
    their end states."""
    out = []
    while q.answered < len(q.batches):
        out.append(drive(svc, q.batches[q.answered]))
        q.answered += 1
    return out


def row_counts(svc: Service) -> dict:
    """Rows of the tables a refused request must leave alone (requests, tombstones, audit)."""
    from sqlalchemy import func, select

    from unlearnkit.service.db import audit_log, deletion_requests, tombstones

    with svc.engine.connect() as c:
        return {
            t.name: c.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (deletion_requests, tombstones, audit_log)
        }
