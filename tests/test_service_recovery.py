"""Crash-point enumeration: ``kill -9`` of the worker at every step boundary of a batch.

On SQLite and on PostgreSQL (``db_url``; there the ``after`` boundaries only: :func:`boundaries_for`), one batch (three requests, a gate that fails so the path takes every step: close, resolve,
unlearn, verify, escalate, verify again, promote, certify) is answered by a chain of
``unlearnkit worker`` processes; the k-th is SIGKILLed at the k-th boundary, before or after
a step (``after``: the step's own writes are committed but DBOS has not recorded its output,
so the next worker runs the step again), and the next resumes the batch. The last runs
to the end. Then: each request answered exactly once, one certificate each, a linear
version chain, one run per step that makes one, every step audited once, the audit
chain and the certificates verify, and DBOS says the workflow succeeded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from service_pg import db_url, share_runs  # noqa: F401
from unlearnkit.service import audit, crypto, workflows
from unlearnkit.service.core import Service
from unlearnkit.service.db import audit_log, certificates, deletion_requests, model_versions

PATH = ["close", "resolve", "unlearn", "verify:unlearn", "escalate", "verify:escalate", "promote", "certify"]
BOUNDARIES = [f"{when}:{step}" for step in PATH for when in ("before", "after")]
POLICY = {
    "batch": {"max_size": 3, "window_seconds": 0},
    "gate": {"checks": [{"metric": "gap_acc_test", "max": -1.0}]},  # fails: escalation runs too
}
UNLEARNKIT = str(Path(sys.executable).with_name("unlearnkit"))


def boundaries_for(url: str | None, every: list[str]) -> list[str]:
    """Every boundary on SQLite; on PostgreSQL the ``after`` ones only: there a step's own
    writes are committed and DBOS has not recorded its output, so the next worker runs the
    step again against the database's committed state, which is what differs between the
    back ends. A ``before`` boundary is DBOS's own recovery of an unstarted step, the same
    code on both; each one costs a worker process start (seconds), and the suite's time is
    budgeted."""
    return every if url is None else [b for b in every if b.startswith("after:")]


def _worker(home: Path, url: str | None, crash: str | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != workflows.CRASH_ENV}
    if crash:
        env[workflows.CRASH_ENV] = crash
    return subprocess.Popen(
        [UNLEARNKIT, "worker", "--home", str(home), "--worker-id", "w1", "--log-level", "warning"]
        + (["--store", url] if url else []),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _killed_at(home: Path, url: str | None, boundary: str) -> None:
    """Run a worker that SIGKILLs itself at ``boundary``; fail unless it got there."""
    p = _worker(home, url, boundary)
    try:
        rc = p.wait(timeout=90)
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail(f"the worker never reached {boundary}: {p.stderr.read()[-2000:]}")
    assert rc == -signal.SIGKILL, f"{boundary}: exit {rc}: {p.stderr.read()[-2000:]}"


@pytest.mark.timeout(600)
def test_sigkill_at_every_step_boundary_then_resume(home, db_url):  # noqa: F811
    h, run = home
    if db_url:
        share_runs(h, db_url)  # on PostgreSQL the run store is there too
    svc = workflows.attach(Service(h, db_url, policy=POLICY))
    svc.register_line("d", run)
    ids = [svc.submit("d", subjects=[f"subject-01{i}"]).body["id"] for i in range(3)]
    batch = svc.get_request(ids[0])["batch"]
    assert svc.get_batch(batch)["state"] == "closed"  # full: answered at once

    for boundary in boundaries_for(db_url, BOUNDARIES):
        _killed_at(h, db_url, boundary)
        promoted = boundary in ("after:promote", "before:certify", "after:certify")
        assert svc.get_line("d")["current_version"] == int(promoted)  # never promoted early, never lost

    p = _worker(h, db_url, None)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            done = workflows.client(svc).retrieve_workflow(f"wf-{batch}").get_status().status == "SUCCESS"
            if done and all(svc.get_request(i, timeline=False)["state"] == "answered" for i in ids):
                break
            time.sleep(0.5)
        else:
            states = [svc.get_request(i)["state"] for i in ids]
            pytest.fail(f"the workflow did not succeed after the last restart; requests {states}")
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)

    with svc.reader.connect() as c:
        certs = c.execute(select(certificates).where(certificates.c.revoked_at.is_(None))).all()
        versions = c.execute(select(model_versions).order_by(model_versions.c.version)).all()
        actions = [
            r.action
            for r in c.execute(select(audit_log).where(audit_log.c.entity_id == batch).order_by(audit_log.c.seq))
        ]
        issued = c.execute(
            select(func.count()).select_from(audit_log).where(audit_log.c.action == "certificate.issued")
        ).scalar_one()
        states = {r.id: r.state for r in c.execute(select(deletion_requests))}
        exported = audit.export(c, svc.public_key_pem())
    assert states == {i: "answered" for i in ids}  # none lost, none left behind
    assert sorted(r.request_id for r in certs) == sorted(ids)  # exactly one certificate each
    for r in certs:
        assert crypto.verify_document(r.document, svc.public_key_pem()) == []
    assert [(v.version, v.parent_version) for v in versions] == [(0, None), (1, 0)]  # one swap, linear
    steps = ["close", "resolve", "unlearn", "verify", "escalate", "verify_escalate", "promote", "certify"]
    assert actions == ["batch.opened", "batch.closed"] + [f"batch.{s}" for s in steps]  # each step once
    assert issued == 3
    made = sorted(r.id for r in svc.workspace.store.list() if r.id.startswith(batch))
    assert made == [f"{batch}-retrain", f"{batch}-unlearn"]  # re-run steps found their runs
    report = audit.verify_log(exported["entries"], exported["checkpoints"], svc.public_key_pem())
    assert report.ok, report.problems


SHARDED_BOUNDARIES = [f"{when}:{step}" for step in ("unlearn", "escalate", "promote") for when in ("before", "after")]


@pytest.mark.timeout(600)
def test_a_sharded_line_resumes_its_checkpoints_after_sigkill(home, db_url):  # noqa: F811
    """The steps a sharded line does its own way (an approximate answer on the ensemble, the
    SISA escalation from the stored checkpoints, the promotion carrying the training state),
    each killed before and after: the deployed ensemble is still exactly SISA training on
    what remains."""
    import torch

    from unlearnkit.engines.sharded import train_sisa
    from unlearnkit.orchestration.training_state import template

    h, run = home
    if db_url:
        share_runs(h, db_url)
    policy = dict(POLICY, sharding={"shards": 3, "slices": 2})
    svc = workflows.attach(Service(h, db_url, policy=policy))
    svc.register_line("d", run)
    ids = [svc.submit("d", subjects=[f"subject-02{i}"]).body["id"] for i in range(3)]
    batch = svc.get_request(ids[0])["batch"]
    for boundary in boundaries_for(db_url, SHARDED_BOUNDARIES):
        _killed_at(h, db_url, boundary)
    p = _worker(h, db_url, None)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if all(svc.get_request(i, timeline=False)["state"] == "answered" for i in ids):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"not answered after the last restart: {[svc.get_request(i)['state'] for i in ids]}")
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    made = sorted(r.id for r in svc.workspace.store.list() if r.id.startswith(batch))
    assert made == [f"{batch}-sisa", f"{batch}-unlearn"]  # re-run steps found their runs
    with svc.reader.connect() as c:
        versions = c.execute(select(model_versions).order_by(model_versions.c.version)).all()
        gone = sorted({i for r in c.execute(select(deletion_requests.c.resolved_ids)) for i in r.resolved_ids})
    assert [(v.version, v.parent_version) for v in versions] == [(0, None), (1, 0)]
    task = svc._task(run)
    deployed = svc.workspace.artifacts.load(versions[1].artifact, template(versions[1].training_state, task)())
    rest = task.split.train.without(gone, name=task.split.train.name)
    exact = train_sisa(rest, task.model_factory, task.adapter, task.recipe, 3, 2, 0, "mean_prob", assign="subject")
    a, b = deployed.state_dict(), exact.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
