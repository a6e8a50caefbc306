"""The service on both back ends, SQLite and PostgreSQL (``db_url``, tests/service_pg.py):
requests answered with verifiable certificates and audit log, the Alembic migration equal
to the tables' metadata, concurrent submitters serialised (contiguous ``seq``, one
unforked hash chain), and real DBOS workflows, launched, shut down and launched again."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from service_pg import db_url, share_runs  # noqa: F401
from service_support import FAST, drain, make_service  # (the home and trained fixtures: conftest.py)
from unlearnkit.service import audit, crypto
from unlearnkit.service.core import Service, ServiceError
from unlearnkit.service.db import VERSION_TABLE, deletion_requests, make_engine, metadata, migrate, tombstones


def _service(home, url, **kw):
    h, run = home
    share_runs(h, url)  # a service on PostgreSQL keeps its run store there too
    svc, q = make_service(h, url, **kw)
    return svc, q, run


def _log(svc):
    with svc.engine.connect() as c:
        exported = audit.export(c, svc.public_key_pem())
    return exported, audit.verify_log(exported["entries"], exported["checkpoints"], svc.public_key_pem())


def _close(svc):
    for engine in {svc.engine, getattr(svc, "reader", svc.engine)}:
        engine.dispose()
    svc.workspace.store.close()


def test_requests_are_answered_certified_and_audited(home, db_url):  # noqa: F811
    svc, q, run = _service(home, db_url)
    try:
        assert svc.engine.dialect.name == ("sqlite" if db_url is None else "postgresql")
        svc.register_line("d", run)
        reqs = [svc.submit("d", subjects=[f"subject-00{i}"]).body for i in range(3)]
        assert drain(svc, q) == ["promoted"]
        with svc.engine.connect() as c:
            rows = c.execute(select(deletion_requests).order_by(deletion_requests.c.seq)).all()
            dead = {r.example_id for r in c.execute(select(tombstones.c.example_id))}
        assert [r.id for r in rows] == [r["id"] for r in reqs] and [r.seq for r in rows] == [1, 2, 3]
        deleted = set()
        for r in rows:
            assert svc.get_request(r.id)["state"] == "answered"
            doc = svc.certificate(r.id)
            assert crypto.verify_document(doc, svc.public_key_pem()) == []
            assert doc["body"]["request_id"] == r.id
            assert doc["body"]["examples"]["count"] == r.n_resolved == len(r.resolved_ids) > 0
            deleted |= set(r.resolved_ids)
        assert deleted <= dead and dead == deleted
        exported, report = _log(svc)
        assert report.ok, report.problems
        assert report.checkpoints >= 1 and report.last_signed_seq > 0
        assert {e["action"] for e in exported["entries"]} >= {"line.registered", "request.received", "batch.certify"}
        assert svc.get_line("d")["current_version"] == 1 and svc.get_line("d")["deleted_examples"] == len(dead)
    finally:
        _close(svc)


def test_migration_matches_the_metadata(tmp_path, db_url):  # noqa: F811
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    url = db_url or f"sqlite:///{tmp_path / 'fresh.db'}"
    engine = make_engine(url)
    try:
        migrate(engine)
        migrate(engine)  # idempotent
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE, "compare_type": True})
            assert compare_metadata(ctx, metadata) == []
            assert ctx.get_current_revision() == "0002"
    finally:
        engine.dispose()


def test_concurrent_submitters_are_serialised(home, db_url):  # noqa: F811
    svc, q, run = _service(home, db_url, policy={"batch": {"max_size": 3, "window_seconds": 0}})
    try:
        svc.register_line("d", run)
        present = set(svc._task(run).split.train.subject_ids)
        subjects = [f"subject-{i:03d}" for i in range(20)]
        assert set(subjects) <= present
        barrier = threading.Barrier(4)
        errors: list[BaseException] = []
        answers: list[dict] = []

        def submitter(k):
            try:
                barrier.wait(timeout=30)
                for s in subjects[k * 5 : (k + 1) * 5]:
                    answers.append(svc.submit("d", subjects=[s], key_id=f"t{k}").body)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=submitter, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        assert errors == [], errors
        with svc.engine.connect() as c:
            rows = c.execute(select(deletion_requests).order_by(deletion_requests.c.seq)).all()
        assert len(rows) == len(answers) == 20
        assert [r.seq for r in rows] == list(range(1, 21))
        assert {r.id for r in rows} == {a["id"] for a in answers}
        # every request in exactly one batch of at most 3, each batch queued once
        members = [b for b in q.batches]
        assert len(members) == len(set(members)) == 7
        sizes = {b: len(svc.get_batch(b)["requests"]) for b in members}
        assert sum(sizes.values()) == 20 and max(sizes.values()) == 3
        exported, report = _log(svc)
        assert report.ok, report.problems  # no fork: seqs contiguous, every link to the one before
        assert [e["seq"] for e in exported["entries"]] == list(range(1, len(exported["entries"]) + 1))
        assert sum(e["action"] == "request.received" for e in exported["entries"]) == 20
        # the same subject again, from two threads at once: one is accepted, the other refused
        outcome: list = []

        def again():
            try:
                outcome.append(svc.submit("d", subjects=["subject-020"]).status)
            except ServiceError as e:
                outcome.append(e.kind)

        pair = [threading.Thread(target=again) for _ in range(2)]
        for t in pair:
            t.start()
        for t in pair:
            t.join(timeout=60)
        assert sorted(outcome, key=str) == [202, "already-deleted"]
        assert _log(svc)[1].ok
    finally:
        _close(svc)


def test_rollback_idempotency_and_keys(home, db_url):  # noqa: F811
    """The rest of the surface that writes: idempotency keys raced by threads (one 202, the
    others replay it or wait: never a second request), API keys (bytea secrets on
    PostgreSQL), a rollback re-opening and answering again."""
    svc, q, run = _service(home, db_url)
    try:
        svc.register_line("d", run)
        outcome: list = []
        barrier = threading.Barrier(4)

        def same_key():
            barrier.wait(timeout=30)
            try:
                outcome.append(svc.submit("d", subjects=["subject-005"], key_id="k", idempotency_key="once").status)
            except ServiceError as e:
                outcome.append(e.kind)

        threads = [threading.Thread(target=same_key) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert outcome.count(202) == 1 and set(outcome) <= {202, 200, "in-flight"}, outcome
        assert svc.submit("d", subjects=["subject-005"], key_id="k", idempotency_key="once").status == 200
        with pytest.raises(ServiceError) as e:
            svc.submit("d", subjects=["subject-006"], key_id="k", idempotency_key="once")
        assert e.value.kind == "idempotency-key-reused"
        token, info = svc.create_key("ops", ["deletion:read"], rate_per_minute=5)
        assert svc.authenticate(token).scopes == ("deletion:read",)
        svc.revoke_key(info["id"])
        assert svc.authenticate(token) is None
        assert drain(svc, q) == ["promoted"]
        (first,) = svc.list_requests()[0]
        rb = svc.rollback("d", 0)
        assert rb["reopened"] == [first["id"]] and svc.get_request(first["id"])["state"] == "queued"
        assert drain(svc, q) == ["promoted"]
        assert svc.get_request(first["id"])["state"] == "answered" and svc.get_line("d")["current_version"] == 2
        assert crypto.verify_document(svc.certificate(first["id"]), svc.public_key_pem()) == []
        counts = svc.counts()
        assert counts["requests"] == {"answered": 1} and counts["batches"].get("promoted") == 2
        assert _log(svc)[1].ok
    finally:
        _close(svc)


def test_submitters_racing_a_worker(home, db_url):  # noqa: F811
    """Requests keep arriving while a worker closes each batch as soon as it is queued:
    every request ends in its batch's close record, and no transaction deadlocks."""
    svc, q, run = _service(home, db_url, policy={"batch": {"max_size": 50, "window_seconds": 0}})
    try:
        svc.register_line("d", run)
        errors: list = []
        submitted = threading.Event()

        def submitter():
            for i in range(30):
                try:
                    svc.submit("d", subjects=[f"subject-{i:03d}"])
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(("submit", repr(e)))
            submitted.set()

        def worker():
            done = 0
            while not submitted.is_set() or done < len(q.batches):
                if done == len(q.batches):
                    time.sleep(0.001)
                    continue
                for _ in range(400):  # queued inside the submitting transaction: wait for its commit
                    try:
                        svc.step_close(q.batches[done])
                        break
                    except ServiceError as e:
                        if e.kind != "unknown-batch":
                            raise
                        time.sleep(0.005)
                    except Exception as e:  # noqa: BLE001 - reported below
                        errors.append(("close", repr(e)))
                        break
                done += 1

        threads = [threading.Thread(target=submitter), threading.Thread(target=worker)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        with svc.engine.connect() as c:
            rows = c.execute(select(deletion_requests.c.id, deletion_requests.c.batch_id)).all()
        closed = {}
        for b in {r.batch_id for r in rows}:
            steps = svc._steps(b)[0]["steps"]
            closed.update({rid: b for rid in steps.get("close", {}).get("requests", [])})
        stranded = [r.id for r in rows if closed.get(r.id) != r.batch_id]
        assert errors == [] and stranded == [], (errors[:2], len(stranded))
        assert _log(svc)[1].ok
    finally:
        _close(svc)


# ------------------------------------------------------------------ DBOS
def _wait_answered(svc: Service, req_ids: list[str], timeout: float = 60.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        states = [svc.get_request(r, timeline=False)["state"] for r in req_ids]
        if all(s in ("answered", "failed", "refused") for s in states) or time.monotonic() > deadline:
            return states
        time.sleep(0.25)


def _wait_workflow(workflow_id: str, timeout: float = 60.0) -> str | None:
    """The workflow's DBOS status once it has finished (the request is answered a moment
    before DBOS records the workflow's end), or as it stands after ``timeout``."""
    from dbos import DBOS

    deadline = time.monotonic() + timeout
    while True:
        st = DBOS.get_workflow_status(workflow_id)
        status = st.status if st is not None else None
        if status in ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED") or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def test_dbos_workflow_answers_requests_and_relaunches(home, db_url):  # noqa: F811
    """A real DBOS worker on the service's database (SQLite, then PostgreSQL: DBOS is
    launched, shut down and launched again in one process); a second launch after
    shutdown on the same service works too."""
    from unlearnkit.service import workflows

    h, run = home
    share_runs(h, db_url)
    svc = Service(h, db_url, FAST)
    try:
        assert workflows.system_database_url(svc) == svc.url
        workflows.launch(svc, "w-test")
        try:
            svc.register_line("d", run)
            first = svc.submit("d", subjects=["subject-001"]).body
            assert _wait_answered(svc, [first["id"]]) == ["answered"]
            assert _wait_workflow(f"wf-{first['batch']}") == "SUCCESS"
            assert crypto.verify_document(svc.certificate(first["id"]), svc.public_key_pem()) == []
        finally:
            workflows.shutdown()
        workflows.launch(svc, "w-test")  # again, in the same process
        try:
            second = svc.submit("d", subjects=["subject-002"]).body
            assert _wait_answered(svc, [second["id"]]) == ["answered"]
            assert _wait_workflow(f"wf-{second['batch']}") == "SUCCESS"
        finally:
            workflows.shutdown()
        from dbos import DBOSClient

        c = DBOSClient(system_database_url=workflows.system_database_url(svc))
        try:
            done = {w.workflow_id: w.status for w in c.list_workflows(name=workflows.WORKFLOW)}
        finally:
            c.destroy()
        assert done == {f"wf-{first['batch']}": "SUCCESS", f"wf-{second['batch']}": "SUCCESS"}
        assert _log(svc)[1].ok
        if db_url is not None:
            with svc.engine.connect() as conn:
                schemas = {r[0] for r in conn.exec_driver_sql("SELECT schema_name FROM information_schema.schemata")}
            assert "dbos" in schemas
    finally:
        _close(svc)


@pytest.fixture(autouse=True)
def _no_dbos_left():
    """A test that fails mid-way leaves no DBOS launched for the next one."""
    yield
    from unlearnkit.service import workflows

    workflows.shutdown()
