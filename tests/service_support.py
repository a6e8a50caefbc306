"""What the service's tests share: a trained workspace (once per session, copied per test),
a service whose batches are queued in a list instead of DBOS, and a driver that answers
them through the workflow's own control flow (:func:`unlearnkit.service.workflows.answer_batch`)."""

from __future__ import annotations

import json
import shutil
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


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A workspace with one trained digits model: (home, run id). Do not write to it: copy it."""
    return train_home(tmp_path_factory.mktemp("trained") / "home")


@pytest.fixture
def home(trained, tmp_path):
    """A private copy of the trained workspace: (home, run id)."""
    src, run = trained
    dst = tmp_path / "home"
    shutil.copytree(src, dst)
    return dst, run


class Queue:
    """Stands in for DBOS's queue: remembers each enqueued batch (in order)."""

    def __init__(self):
        self.batches: list[str] = []

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
    """Answer every queued batch (and those they queue) in order; their end states."""
    done, out = 0, []
    while done < len(q.batches):
        out.append(drive(svc, q.batches[done]))
        done += 1
    return out
