"""Property-based tests of the deletion-request service.

* Schemathesis tests every operation of the live app's OpenAPI document (its coverage and
  fuzzing phases, positive and negative data; path parameters generated and, where an
  operation has them, the ids of a real line, request and batch), sending a valid admin
  key on every call: no response is a 5xx, every 4xx is RFC 9457 ``application/problem+json``
  with its fields, and no schema-violating input is accepted.
* A Hypothesis state machine drives :class:`~unlearnkit.service.core.Service` directly
  (submissions with and without ``Idempotency-Key``, replays, answering batches) against a
  model of what idempotency and the request states must be.

(Schemathesis's pytest integration, ``from_fixture(...).parametrize()``, fails on pytest 9
(``'Function' object has no attribute '_nodeid'``): the per-operation tests it builds, from
``schemathesis.pytest.lazy.get_all_tests``, are run by hand here.)
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("dbos")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.pytest.lazy import get_all_tests  # noqa: E402
from schemathesis.specs.openapi.checks import negative_data_rejection  # noqa: E402
from sqlalchemy import select  # noqa: E402

from service_support import drive, make_service  # noqa: E402
from unlearnkit.service import audit  # noqa: E402
from unlearnkit.service.app import create_app  # noqa: E402
from unlearnkit.service.core import REQUEST_STATES, Service, ServiceError  # noqa: E402
from unlearnkit.service.db import audit_checkpoints, certificates, deletion_requests, idempotency_keys  # noqa: E402

PROBLEM = "application/problem+json"
FUZZ_EXAMPLES = 25  # fuzzing examples per operation and variant (the coverage phase adds its own)
FUZZ_BUDGET_S = 45.0  # the whole fuzzing run stays well under a minute
SUBJECTS = [f"subject-00{i}" for i in range(5)]
IDEMPOTENCY_KEYS = ["k0", "k1", "k2"]


def _copy(trained, tmp_path_factory, name: str):
    src, run = trained
    dst = tmp_path_factory.mktemp(name) / "home"
    shutil.copytree(src, dst)
    return dst, run


# --------------------------------------------------------------------------- schemathesis
@dataclass
class FuzzEnv:
    svc: Service
    app: object
    token: str
    ids: dict  # path parameter -> a real value


@pytest.fixture(scope="module")
def fuzz_env(trained, tmp_path_factory):
    """A line ``digits`` with one answered request (and its batch) and one queued one."""
    home, run = _copy(trained, tmp_path_factory, "fuzz")
    svc, queue = make_service(home)
    token, _ = svc.create_key("fuzz", ["model:admin", "deletion:read", "deletion:submit"], rate_per_minute=10**6)
    svc.register_line("digits", run)
    answered = svc.submit("digits", ["subject-050"]).body
    assert drive(svc, queue.batches[-1]) == "promoted"
    svc.submit("digits", ["subject-051"])
    return FuzzEnv(
        svc, create_app(svc), token, {"name": "digits", "request_id": answered["id"], "batch_id": answered["batch"]}
    )


def problem_details(ctx, response, case):
    """Every 4xx is an RFC 9457 problem: its media type, ``type``, ``title``, ``status``, ``detail``."""
    if not 400 <= response.status_code < 500:
        return None
    value = {k.lower(): v for k, v in response.headers.items()}.get("content-type") or ""
    media = (value[0] if isinstance(value, list) else value).split(";")[0].strip()
    assert media == PROBLEM, f"a {response.status_code} answered as {media!r}, not {PROBLEM}"
    body = json.loads(response.content)
    assert isinstance(body, dict), f"the problem is not a JSON object: {body!r}"
    for field in ("type", "title", "detail"):
        assert isinstance(body.get(field), str) and body[field], f"problem field {field!r}: {body!r}"
    assert body.get("status") == response.status_code, f"problem status {body.get('status')!r}"
    return None


#: no 5xx, every 4xx a problem, and no schema-violating input accepted (this one found
#: ``{"to_version": false}`` rolling a line back to version 0)
CHECKS = [not_a_server_error, problem_details, negative_data_rejection]


def test_schemathesis_fuzz(fuzz_env):
    """Every operation, twice: with generated path parameters (mostly unknown ids), and
    with those of a real line, request and batch (schemathesis ``parameters``), through
    schemathesis's coverage and fuzzing phases, positive and negative data."""
    headers = {"X-API-Key": fuzz_env.token}
    hyp = settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    known = schemathesis.Config.from_dict({"parameters": {f"path.{k}": v for k, v in fuzz_env.ids.items()}})
    started = time.monotonic()
    failures: list[str] = []
    calls: dict[str, Counter] = {}

    for variant, config in (("generated ids", None), ("known ids", known)):
        schema = schemathesis.openapi.from_asgi("/v1/openapi.json", fuzz_env.app, config=config)
        operations = {r.ok().label for r in schema.get_all_operations()}

        def make_call(variant: str):
            def call(case):
                response = case.call(headers=headers)
                calls.setdefault(f"{case.operation.label} [{variant}]", Counter())[response.status_code] += 1
                case.validate_response(response, checks=CHECKS, headers=headers)

            return call

        for result in get_all_tests(schema=schema, test_func=make_call(variant), settings=hyp, given_kwargs=None):
            op, test = result.ok()
            if variant == "known ids" and "{" not in op.path:
                continue
            try:
                test()
            except (Exception, BaseExceptionGroup) as e:  # a check failed: go on, report them all
                failures.append(f"{op.label} [{variant}]:\n{e}")
            assert time.monotonic() - started < FUZZ_BUDGET_S, f"fuzzing ran over {FUZZ_BUDGET_S} s at {op.label}"

    assert not failures, "\n\n".join(failures)
    labels = {label.rsplit(" [", 1)[0] for label in calls}
    assert labels == operations, sorted(operations - labels)  # every operation was called
    # with known ids the happy paths were reached too
    for label in ("GET /v1/model-lines/{name}", "GET /v1/deletion-requests/{request_id}", "GET /v1/batches/{batch_id}"):
        assert calls[f"{label} [known ids]"][200] > 0, calls[f"{label} [known ids]"]
    assert calls["POST /v1/batches/{batch_id}/decision [known ids]"][409] > 0  # the batch is not held


# --------------------------------------------------------------------------- the state machine
@dataclass
class MachineEnv:
    svc: Service
    queue: object
    run: str


_counter = itertools.count()


@pytest.fixture(scope="module")
def machine_env(trained, tmp_path_factory):
    home, run = _copy(trained, tmp_path_factory, "machine")
    svc, queue = make_service(home)
    train = svc._task(run).split.train
    assert set(SUBJECTS) <= {str(s) for s in train.subject_ids}
    return MachineEnv(svc, queue, run)


def make_machine(env: MachineEnv):
    """Each example runs on a line (and an API key id) of its own in the shared service."""

    class IdempotencyMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            n = next(_counter)
            self.svc, self.queue = env.svc, env.queue
            self.line, self.key_id = f"machine-{n}", f"machine{n}"
            self.svc.register_line(self.line, env.run)
            self.first: dict[str, tuple[list[str], dict]] = {}  # idempotency key -> (subjects, first answer)
            self.deleted: set[str] = set()  # subjects accepted on this line (their examples are tombstoned)
            self.accepted: list[str] = []  # ids of the requests created (202)
            self.start = len(self.queue.batches)  # the batches queued from here on are this line's
            self.driven: set[str] = set()

        def _submit(self, subjects: list[str], key: str | None):
            return self.svc.submit(self.line, subjects, key_id=self.key_id, idempotency_key=key)

        @rule(
            key=st.sampled_from([*IDEMPOTENCY_KEYS, None]),
            subjects=st.lists(st.sampled_from(SUBJECTS), min_size=1, max_size=2, unique=True),
        )
        def submit(self, key, subjects):
            if key is not None and key in self.first:
                first_subjects, first = self.first[key]
                if first_subjects == subjects:
                    out = self._submit(subjects, key)
                    assert out.status == 200 and out.replayed and out.body == first
                    return
                with pytest.raises(ServiceError) as e:
                    self._submit(subjects, key)
                assert e.value.status == 422 and e.value.kind == "idempotency-key-reused"
                return
            if set(subjects) <= self.deleted:
                with pytest.raises(ServiceError) as e:
                    self._submit(subjects, key)
                assert e.value.status == 422 and e.value.kind == "already-deleted", e.value.detail
                if key is not None:  # nothing written: the key is free for another body
                    assert key not in self._keys_in_db()
                return
            out = self._submit(subjects, key)
            assert out.status == 202 and not out.replayed
            assert out.body["id"] not in self.accepted and out.body["state"] == "queued"
            assert all(s.startswith("hs256:") for s in out.body["subjects"])
            self.accepted.append(out.body["id"])
            self.deleted |= set(subjects)
            if key is not None:
                self.first[key] = (list(subjects), out.body)

        @precondition(lambda self: self.first)
        @rule(data=st.data())
        def replay(self, data):
            key = data.draw(st.sampled_from(sorted(self.first)))
            subjects, first = self.first[key]
            out = self._submit(subjects, key)
            assert out.status == 200 and out.replayed and out.body == first

        def _pending(self) -> list[str]:
            return [b for b in self.queue.batches[self.start :] if b not in self.driven]

        @precondition(lambda self: self._pending())
        @rule()
        def answer_batch(self):
            batch = self._pending()[0]
            assert drive(self.svc, batch, ["release"]) == "promoted"
            self.driven.add(batch)

        def _keys_in_db(self) -> dict[str, dict]:
            with self.svc.engine.connect() as conn:
                rows = conn.execute(select(idempotency_keys).where(idempotency_keys.c.key_id == self.key_id)).all()
            return {r.key: dict(r._mapping) for r in rows}

        @invariant()
        def idempotency_keys_map_to_one_request(self):
            rows = self._keys_in_db()
            assert set(rows) == set(self.first)
            ids = [r["response"]["id"] for r in rows.values()]
            assert all(r["state"] == "done" for r in rows.values())
            assert len(ids) == len(set(ids)) and set(ids) <= set(self.accepted)
            for key, (_, first) in self.first.items():
                assert rows[key]["response"]["id"] == first["id"]

        @invariant()
        def requests_and_certificates(self):
            with self.svc.engine.connect() as conn:
                line_id = self.svc._line_row(conn, self.line)["id"]
                reqs = conn.execute(select(deletion_requests).where(deletion_requests.c.line_id == line_id)).all()
                certs = conn.execute(
                    select(certificates.c.request_id, certificates.c.revoked_at).where(
                        certificates.c.request_id.in_([r.id for r in reqs])
                    )
                ).all()
            assert sorted(r.id for r in reqs) == sorted(self.accepted)  # replays add no row
            live: dict[str, int] = {}
            for c in certs:
                if c.revoked_at is None:
                    live[c.request_id] = live.get(c.request_id, 0) + 1
            for r in reqs:
                assert r.state in REQUEST_STATES
                assert r.state == ("answered" if r.batch_id in self.driven else "queued"), (r.state, r.batch_id)
                assert live.get(r.id, 0) == (1 if r.state == "answered" else 0), r.id

        @invariant()
        def audit_log_verifies(self):
            with self.svc.engine.connect() as conn:
                rows = audit.read(conn)
                checkpoints = [dict(c._mapping) for c in conn.execute(select(audit_checkpoints))]
            report = audit.verify_log(rows, checkpoints, self.svc.public_key_pem())
            assert report.ok, report.problems

    return IdempotencyMachine


def test_idempotency_state_machine(machine_env):
    """About 10 examples of up to 8 steps (some 15 s here: answering a batch costs about 1 s)."""
    run_state_machine_as_test(
        make_machine(machine_env),
        settings=settings(
            max_examples=10,
            stateful_step_count=8,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
