"""The HTTP surface of the deletion-request service (``unlearnkit.service.app``) through
FastAPI's ``TestClient``: authentication and scopes, rate limits, model lines, submission
with idempotency and bad input, the answered lifecycle with its signed certificate,
keyset pagination, health and metrics, rollback, and the checked-in OpenAPI document.

Batches are answered synchronously with :func:`service_support.drain` / ``drive``; the
``home`` fixture (a private copy of a trained digits workspace) is in ``conftest.py``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("dbos")

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from service_support import drain, drive, make_service  # noqa: E402
from unlearnkit.service import crypto  # noqa: E402
from unlearnkit.service.app import create_app, openapi_document  # noqa: E402
from unlearnkit.service.core import Service, body_hash  # noqa: E402
from unlearnkit.service.db import (  # noqa: E402
    audit_log,
    certificates,
    deletion_requests,
    idempotency_keys,
    model_lines,
    tombstones,
)

PROBLEM = "application/problem+json"
DOCS_OPENAPI = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"
LINE = "digits"
SUBMIT_URL = f"/v1/model-lines/{LINE}/deletion-requests"
REQUEST_TABLES = (deletion_requests, tombstones, audit_log, idempotency_keys)


@dataclass
class Api:
    svc: Service
    queue: object
    client: TestClient
    run: str
    admin: dict
    submit: dict
    read: dict
    submit_key_id: str


def hdr(token: str, x_api_key: bool = False) -> dict:
    return {"X-API-Key": token} if x_api_key else {"Authorization": f"Bearer {token}"}


def make_api(home_run, policy: dict | None = None, register: bool = True) -> Api:
    """A service over a private workspace, an app, three keys and (``register``) the line ``digits``."""
    path, run = home_run
    svc, queue = make_service(path, policy=policy)
    admin, _ = svc.create_key("admin", ["model:admin", "deletion:read"], rate_per_minute=10_000)
    submit, info = svc.create_key("submitter", ["deletion:submit", "deletion:read"], rate_per_minute=10_000)
    read, _ = svc.create_key("reader", ["deletion:read"], rate_per_minute=10_000)
    api = Api(svc, queue, TestClient(create_app(svc)), run, hdr(admin), hdr(submit), hdr(read), info["id"])
    if register:
        r = api.client.post("/v1/model-lines", json={"name": LINE, "train_run": run}, headers=api.admin)
        assert r.status_code == 201, r.text
    return api


def assert_problem(r, status: int) -> dict:
    """``r`` is an RFC 9457 problem of ``status``; returns its body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].split(";")[0].strip() == PROBLEM, r.headers
    body = r.json()
    assert body["status"] == status
    for field in ("type", "title", "detail"):
        assert isinstance(body[field], str) and body[field], body
    assert body["type"].startswith("https://"), body
    return body


def row_counts(svc: Service, tables=REQUEST_TABLES) -> dict:
    with svc.engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in tables}


def audit_text(svc: Service) -> str:
    with svc.engine.connect() as conn:
        return json.dumps([dict(r._mapping) for r in conn.execute(select(audit_log))], default=str)


def submit(api: Api, body: dict, key: str | None = None, status: int = 202) -> dict:
    headers = dict(api.submit, **({"Idempotency-Key": key} if key else {}))
    r = api.client.post(SUBMIT_URL, json=body, headers=headers)
    assert r.status_code == status, r.text
    return r.json()


# --------------------------------------------------------------------------- the document
def test_openapi_document_is_current(home):
    svc, _ = make_service(home[0])
    live = json.loads(openapi_document(svc))
    checked_in = json.loads(DOCS_OPENAPI.read_text())
    assert live == checked_in, (
        "docs/openapi.json is stale: regenerate it with `unlearnkit serve --openapi docs/openapi.json`"
    )
    client = TestClient(create_app(svc))
    assert client.get("/v1/openapi.json").json() == checked_in


# --------------------------------------------------------------------------- auth
def test_auth_scopes_and_health(home):
    api = make_api(home)
    c = api.client
    body = {"subjects": ["subject-003"]}
    before = row_counts(api.svc)

    assert_problem(c.get("/v1/model-lines"), 401)
    assert_problem(c.post(SUBMIT_URL, json=body), 401)
    for bad in (
        "uk_notakey",
        "uk_000000000000_" + "a" * 40,  # well formed, unknown
        api.submit["Authorization"][7:-3] + "zzz",  # a known key id with a wrong secret
        "",
    ):
        assert_problem(c.get("/v1/model-lines", headers=hdr(bad)), 401)
        assert_problem(c.get("/v1/model-lines", headers=hdr(bad, x_api_key=True)), 401)
    assert_problem(c.get("/v1/model-lines", headers={"Authorization": "Basic dXNlcjpwYXNz"}), 401)

    # a read-only key may not submit; a submit key may not register a line
    detail = assert_problem(c.post(SUBMIT_URL, json=body, headers=api.read), 403)["detail"]
    assert "deletion:submit" in detail
    r = c.post("/v1/model-lines", json={"name": "other", "train_run": api.run}, headers=api.submit)
    assert "model:admin" in assert_problem(r, 403)["detail"]
    assert_problem(c.post(f"/v1/model-lines/{LINE}/rollback", json={"to_version": 0}, headers=api.read), 403)
    assert row_counts(api.svc) == before

    # the X-API-Key header works as well as the bearer token
    token = api.read["Authorization"][7:]
    assert c.get("/v1/model-lines", headers=hdr(token, x_api_key=True)).status_code == 200

    # a revoked key is unknown
    tok, info = api.svc.create_key("short-lived", ["deletion:read"])
    assert c.get("/v1/model-lines", headers=hdr(tok)).status_code == 200
    api.svc.revoke_key(info["id"])
    assert_problem(c.get("/v1/model-lines", headers=hdr(tok)), 401)

    # no key needed for health, metrics and the signing key
    assert c.get("/healthz").status_code == 200 and c.get("/healthz").json() == {"status": "ok"}
    assert c.get("/readyz").status_code == 200 and c.get("/readyz").json() == {"status": "ready"}
    r = c.get("/v1/signing-key")
    assert r.status_code == 200 and r.json()["key_id"] == api.svc.key.key_id
    assert r.json()["public_key"] == api.svc.public_key_pem()
    assert c.get("/metrics").status_code == 200

    # unknown path: a problem too
    assert_problem(c.get("/v1/nothing-here"), 404)


def test_rate_limit(home):
    api = make_api(home)
    tok, _ = api.svc.create_key("slow", ["deletion:read"], rate_per_minute=3)
    for _ in range(3):
        assert api.client.get("/v1/model-lines", headers=hdr(tok)).status_code == 200
    r = api.client.get("/v1/model-lines", headers=hdr(tok))
    assert_problem(r, 429)
    assert int(r.headers["Retry-After"]) >= 1
    # other keys are not limited by it
    assert api.client.get("/v1/model-lines", headers=api.read).status_code == 200


# --------------------------------------------------------------------------- model lines
def test_register_line(home):
    api = make_api(home, register=False)
    c, svc = api.client, api.svc
    tables = (model_lines, audit_log)

    r = c.post("/v1/model-lines", json={"name": LINE, "train_run": api.run}, headers=api.admin)
    assert r.status_code == 201, r.text
    line = r.json()
    assert line["name"] == LINE and line["train_run"] == api.run and line["current_version"] == 0
    assert line["deleted_examples"] == 0 and line["modality"] == "classifier"
    assert c.get(f"/v1/model-lines/{LINE}", headers=api.read).json() == line
    assert [x["name"] for x in c.get("/v1/model-lines", headers=api.read).json()] == [LINE]

    before = row_counts(svc, tables)
    r = c.post("/v1/model-lines", json={"name": LINE, "train_run": api.run}, headers=api.admin)
    assert_problem(r, 409)
    r = c.post("/v1/model-lines", json={"name": "other", "train_run": "ffffffffffff"}, headers=api.admin)
    assert_problem(r, 404)
    for name in ("Bad Name", "-starts-with-dash", "", "x" * 65, "a/b"):
        assert_problem(c.post("/v1/model-lines", json={"name": name, "train_run": api.run}, headers=api.admin), 422)
    for policy, words in (
        ({"method": {"name": "no-such-method"}}, "no-such-method"),
        ({"gate": {"checks": [{"metric": "no_such_metric", "max": 0.1}]}}, "no_such_metric"),
        ({"no_such_field": 1}, "no_such_field"),
        ({"batch": {"max_size": 0}}, "batch.max_size"),
    ):
        r = c.post("/v1/model-lines", json={"name": "other", "train_run": api.run, "policy": policy}, headers=api.admin)
        detail = assert_problem(r, 422)["detail"]
        assert "\n" not in detail and words in detail, detail
    assert row_counts(svc, tables) == before
    assert c.get("/v1/model-lines/other", headers=api.read).status_code == 404
    assert_problem(c.get("/v1/model-lines/no-such-line/versions", headers=api.read), 404)


# --------------------------------------------------------------------------- submission
def test_submit_idempotency_and_bad_input(home):
    api = make_api(home)
    c, svc = api.client, api.svc
    train = svc._task(api.run).split.train
    n_train = len(train)

    # accepted: 202, Location, pseudonyms only
    r = c.post(SUBMIT_URL, json={"subjects": ["subject-004"]}, headers=dict(api.submit, **{"Idempotency-Key": "k1"}))
    assert r.status_code == 202, r.text
    first = r.json()
    assert r.headers["Location"] == f"/v1/deletion-requests/{first['id']}"
    assert first["state"] == "queued" and first["examples"] > 0
    assert len(first["subjects"]) == 1 and first["subjects"][0].startswith("hs256:")
    assert "subject-004" not in r.text
    assert c.get(r.headers["Location"], headers=api.read).json()["id"] == first["id"]

    # the same key and body: the first answer again, no second row
    before = row_counts(svc)
    r = c.post(SUBMIT_URL, json={"subjects": ["subject-004"]}, headers=dict(api.submit, **{"Idempotency-Key": "k1"}))
    assert r.status_code == 200, r.text
    assert r.json() == first and r.headers["Location"] == f"/v1/deletion-requests/{first['id']}"
    # the same key, another body: 422
    r = c.post(SUBMIT_URL, json={"subjects": ["subject-005"]}, headers=dict(api.submit, **{"Idempotency-Key": "k1"}))
    assert assert_problem(r, 422)["type"].endswith("idempotency-key-reused")
    assert row_counts(svc) == before

    # in flight: a row for this key id, not yet done, created now
    body = {"subjects": ["subject-006"]}
    with svc.engine.begin() as conn:
        conn.execute(
            insert(idempotency_keys).values(
                key_id=api.submit_key_id,
                key="k-busy",
                body_hash=body_hash({"line": LINE, "subjects": body["subjects"], "example_ids": []}),
                state="in_flight",
                created_at=datetime.now(timezone.utc).isoformat(timespec="microseconds"),
            )
        )
    before = row_counts(svc)
    r = c.post(SUBMIT_URL, json=body, headers=dict(api.submit, **{"Idempotency-Key": "k-busy"}))
    assert assert_problem(r, 409)["type"].endswith("in-flight")
    assert row_counts(svc) == before

    # deleted before: submit some ids, then the same ids again
    ids = [str(i) for i in train.example_ids[:3]]
    submit(api, {"example_ids": ids})
    all_ids = [str(i) for i in train.example_ids]
    big = all_ids[10 : 10 + int(0.3 * n_train)]  # over 25 % even without subject-004

    bad = [
        ("/v1/model-lines/no-such-line/deletion-requests", {"subjects": ["subject-007"]}, 404, None),
        (SUBMIT_URL, {"subjects": ["subject-007", "patient-raw-secret-42"]}, 422, "unknown-subject"),
        (SUBMIT_URL, {"example_ids": ["digits-99999-nope"]}, 422, "unknown-example"),
        (SUBMIT_URL, {}, 422, "empty-request"),
        (SUBMIT_URL, {"subjects": [], "example_ids": []}, 422, "empty-request"),
        (SUBMIT_URL, {"subjects": ["subject-007"], "example_ids": [ids[0]]}, 422, "empty-request"),
        (SUBMIT_URL, {"example_ids": ids}, 422, "already-deleted"),
        (SUBMIT_URL, {"example_ids": big}, 422, "request-too-large"),
        (SUBMIT_URL, {"subjects": "x"}, 422, "validation"),
        (SUBMIT_URL, {"subjects": ["subject-007"], "extra": 1}, 422, "validation"),
        (SUBMIT_URL, {"subjects": [7]}, 422, "validation"),
        (SUBMIT_URL, [], 422, "validation"),
    ]
    before = row_counts(svc)
    for i, (url, body, status, kind) in enumerate(bad):
        r = c.post(url, json=body, headers=dict(api.submit, **{"Idempotency-Key": f"bad-{i}"}))
        problem = assert_problem(r, status)
        if kind:
            assert problem["type"].endswith(kind), (body, problem)
        assert "patient-raw-secret-42" not in r.text
        assert row_counts(svc) == before, (body, r.text)
    # malformed JSON and a body over 1,000,000 bytes (with and without Content-Length)
    r = c.post(SUBMIT_URL, content=b'{"subjects": [', headers=dict(api.submit, **{"Content-Type": "application/json"}))
    assert_problem(r, 422)
    huge = b'{"subjects": ["' + b"a" * 1_000_001 + b'"]}'
    r = c.post(SUBMIT_URL, content=huge, headers=dict(api.submit, **{"Content-Type": "application/json"}))
    assert_problem(r, 413)
    r = c.post(
        SUBMIT_URL,
        content=iter([huge[:500_000], huge[500_000:]]),  # chunked: no Content-Length
        headers=dict(api.submit, **{"Content-Type": "application/json"}),
    )
    assert_problem(r, 413)
    assert row_counts(svc) == before

    # a request that would delete every remaining example, on a line that allows any fraction
    r = c.post(
        "/v1/model-lines",
        json={"name": "everything", "train_run": api.run, "policy": {"limits": {"max_fraction_per_request": 1.0}}},
        headers=api.admin,
    )
    assert r.status_code == 201, r.text
    before = row_counts(svc)
    r = c.post("/v1/model-lines/everything/deletion-requests", json={"example_ids": all_ids}, headers=api.submit)
    assert assert_problem(r, 422)["type"].endswith("deletes-everything")
    assert row_counts(svc) == before
    # ... while all but one is accepted there
    r = c.post("/v1/model-lines/everything/deletion-requests", json={"example_ids": all_ids[1:]}, headers=api.submit)
    assert r.status_code == 202 and r.json()["examples"] == n_train - 1


# --------------------------------------------------------------------------- lifecycle
def test_lifecycle_certificate_and_metrics(home):
    api = make_api(home)
    c, svc = api.client, api.svc
    raw = ["subject-007", "subject-011"]
    r = c.post(SUBMIT_URL, json={"subjects": raw}, headers=api.submit)
    assert r.status_code == 202, r.text
    req = r.json()
    texts = [r.text]
    assert sorted(req["subjects"]) == sorted(svc.pseudonymizer.pseudonym(s) for s in raw)
    assert all(s.startswith("hs256:") for s in req["subjects"])

    assert drain(svc, api.queue) == ["promoted"]

    r = c.get(f"/v1/deletion-requests/{req['id']}", headers=api.read)
    texts.append(r.text)
    got = r.json()
    assert got["state"] == "answered" and got["version"] == 1
    assert got["certificate"] and got["certificate"].startswith("cert-")
    events = [e["event"] for e in got["timeline"]]
    wanted = ["request.received", "batch.unlearn", "batch.verify", "batch.promote", "certificate.issued"]
    positions = [events.index(w) for w in wanted]
    assert positions == sorted(positions), events

    r = c.get(f"/v1/deletion-requests/{req['id']}/certificate", headers=api.read)
    assert r.status_code == 200, r.text
    texts.append(r.text)
    doc = r.json()
    assert crypto.verify_document(doc, svc.public_key_pem()) == []
    assert doc["body"]["certificate_id"] == got["certificate"] and doc["body"]["request_id"] == req["id"]
    assert sorted(doc["body"]["subjects"]) == sorted(req["subjects"])
    assert doc["body"]["key_id"] == svc.key.key_id
    tampered = json.loads(r.text)
    tampered["body"]["examples"]["count"] += 1
    assert crypto.verify_document(tampered, svc.public_key_pem()) != []

    line = c.get(f"/v1/model-lines/{LINE}", headers=api.read).json()
    assert line["current_version"] == 1 and line["deleted_examples"] == got["examples"]
    versions = c.get(f"/v1/model-lines/{LINE}/versions", headers=api.read).json()
    assert [v["version"] for v in versions] == [0, 1]
    assert versions[1]["batch_id"] == got["batch"] and versions[1]["status"] == "deployed"

    # the raw subject ids are nowhere: responses, audit log, certificate, the database file
    texts.append(audit_text(svc))
    texts.append(c.get("/v1/audit/export", headers=api.read).text)
    with svc.engine.connect() as conn:
        texts.append(json.dumps([dict(x._mapping) for x in conn.execute(select(certificates))], default=str))
    db_bytes = b"".join(p.read_bytes() for p in Path(home[0]).glob("service.db*"))
    for s in raw:
        assert all(s not in t for t in texts), s
        assert s.encode() not in db_bytes, s

    # metrics are read from the database
    r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = re.search(r'^unlearnkit_deletion_requests\{state="answered"\} (\S+)$', r.text, re.M)
    assert m and float(m.group(1)) == 1.0, r.text
    m = re.search(r'^unlearnkit_deletion_requests\{state="queued"\} (\S+)$', r.text, re.M)
    assert m and float(m.group(1)) == 0.0
    assert re.search(r'^unlearnkit_batches\{state="promoted"\} 1(\.0)?$', r.text, re.M), r.text
    assert "unlearnkit_batch_latency_seconds_count 1" in r.text

    # the audit log as the API pages it, and the batch
    page = c.get("/v1/audit", params={"limit": 3}, headers=api.read).json()
    assert [e["seq"] for e in page["items"]] == [1, 2, 3] and page["next"] == 3
    batch = c.get(f"/v1/batches/{got['batch']}", headers=api.read).json()
    assert batch["state"] == "promoted" and batch["requests"] == [req["id"]]
    assert "forget_ids" not in json.dumps(batch["steps"])  # id lists leave as counts

    # a decision on a batch that is not held
    r = c.post(f"/v1/batches/{got['batch']}/decision", json={"decision": "release"}, headers=api.admin)
    assert assert_problem(r, 409)["type"].endswith("not-held")
    r = c.post("/v1/batches/bat-nope/decision", json={"decision": "release"}, headers=api.admin)
    assert_problem(r, 404)
    r = c.post(f"/v1/batches/{got['batch']}/decision", json={"decision": "maybe"}, headers=api.admin)
    assert_problem(r, 422)
    r = c.post(f"/v1/batches/{got['batch']}/decision", json={"decision": "release"}, headers=api.read)
    assert_problem(r, 403)


# --------------------------------------------------------------------------- pagination
def test_keyset_pagination_and_state_filter(home):
    api = make_api(home)
    c, svc = api.client, api.svc
    ids = [submit(api, {"subjects": [f"subject-02{i}"]})["id"] for i in range(5)]
    # FAST batches hold 4: the first four fill a batch, the fifth opens another
    assert len(api.queue.batches) == 2
    assert drive(svc, api.queue.batches[0]) == "promoted"

    seen, pages, after = [], 0, None
    while True:
        params = {"limit": 2} | ({"after": after} if after is not None else {})
        r = c.get("/v1/deletion-requests", params=params, headers=api.read)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= 2
        seen += [x["id"] for x in page["items"]]
        pages += 1
        after = page.get("next")
        if after is None:
            break
        assert pages < 10
    assert seen == ids and pages == 3

    def listed(**params):
        r = c.get("/v1/deletion-requests", params=params, headers=api.read)
        assert r.status_code == 200, r.text
        return [x["id"] for x in r.json()["items"]]

    assert listed(state="answered") == ids[:4]
    assert listed(state="queued") == ids[4:]
    assert listed(state="failed") == []
    assert listed(state="answered", limit=3, after=0) == ids[:3]
    assert listed(line=LINE) == ids
    assert_problem(c.get("/v1/deletion-requests", params={"state": "nonsense"}, headers=api.read), 422)
    assert_problem(c.get("/v1/deletion-requests", params={"limit": 0}, headers=api.read), 422)
    assert_problem(c.get("/v1/deletion-requests", params={"after": -1}, headers=api.read), 422)
    assert_problem(c.get("/v1/deletion-requests", params={"line": "no-such-line"}, headers=api.read), 404)
    assert_problem(c.get("/v1/deletion-requests/req-nope", headers=api.read), 404)
    assert_problem(c.get(f"/v1/deletion-requests/{ids[4]}/certificate", headers=api.read), 404)

    text = c.get("/metrics").text
    assert re.search(r'^unlearnkit_deletion_requests\{state="answered"\} 4(\.0)?$', text, re.M), text
    assert re.search(r'^unlearnkit_deletion_requests\{state="queued"\} 1(\.0)?$', text, re.M), text


# --------------------------------------------------------------------------- rollback
def test_rollback_reopens_and_answers_again(home):
    api = make_api(home)
    c, svc = api.client, api.svc
    a = submit(api, {"subjects": ["subject-031"]})
    assert drain(svc, api.queue) == ["promoted"]
    b = submit(api, {"subjects": ["subject-032"]})
    assert drain(svc, api.queue)[-1:] == ["promoted"]
    cert_a = c.get(f"/v1/deletion-requests/{a['id']}", headers=api.read).json()["certificate"]
    old_b = c.get(f"/v1/deletion-requests/{b['id']}", headers=api.read).json()
    assert old_b["state"] == "answered" and old_b["version"] == 2 and old_b["certificate"]
    assert c.get(f"/v1/model-lines/{LINE}", headers=api.read).json()["current_version"] == 2

    url = f"/v1/model-lines/{LINE}/rollback"
    assert_problem(c.post(url, json={"to_version": 1}, headers=api.submit), 403)
    assert_problem(c.post(url, json={"to_version": 2}, headers=api.admin), 409)  # the current one
    assert_problem(c.post(url, json={"to_version": 7}, headers=api.admin), 409)  # a later one
    assert_problem(c.post(url, json={"to_version": -1}, headers=api.admin), 422)
    # not an integer: refused, never coerced (JSON false once rolled a line back to version 0)
    for bad in (False, True, "1", "one", 1.0, None, [1]):
        assert_problem(c.post(url, json={"to_version": bad}, headers=api.admin), 422)
    assert_problem(c.post(url, json={"to_version": 1, "extra": 0}, headers=api.admin), 422)
    assert c.get(f"/v1/model-lines/{LINE}", headers=api.read).json()["current_version"] == 2
    assert_problem(c.post("/v1/model-lines/no-such-line/rollback", json={"to_version": 0}, headers=api.admin), 404)
    n_batches = len(api.queue.batches)

    r = c.post(url, json={"to_version": 1}, headers=api.admin)
    assert r.status_code == 200, r.text
    rb = r.json()
    assert rb["from"] == 2 and rb["to"] == 1 and rb["reopened"] == [b["id"]] and rb["batch"]
    assert api.queue.batches[n_batches:] == [rb["batch"]]
    assert c.get(f"/v1/model-lines/{LINE}", headers=api.read).json()["current_version"] == 1
    statuses = {v["version"]: v["status"] for v in c.get(f"/v1/model-lines/{LINE}/versions", headers=api.read).json()}
    assert statuses == {0: "superseded", 1: "deployed", 2: "rolled_back"}
    reopened = c.get(f"/v1/deletion-requests/{b['id']}", headers=api.read).json()
    assert reopened["state"] == "queued" and reopened["certificate"] is None and reopened["batch"] == rb["batch"]
    assert_problem(c.get(f"/v1/deletion-requests/{b['id']}/certificate", headers=api.read), 404)
    # the request answered by version 1 is untouched
    kept = c.get(f"/v1/deletion-requests/{a['id']}", headers=api.read).json()
    assert kept["state"] == "answered" and kept["certificate"] == cert_a
    assert_problem(c.post(url, json={"to_version": 1}, headers=api.admin), 409)  # now the current one

    assert drain(svc, api.queue)[-1] == "promoted"
    again = c.get(f"/v1/deletion-requests/{b['id']}", headers=api.read).json()
    assert again["state"] == "answered" and again["version"] == 3
    assert again["certificate"] and again["certificate"] != old_b["certificate"]
    doc = c.get(f"/v1/deletion-requests/{b['id']}/certificate", headers=api.read).json()
    assert crypto.verify_document(doc, svc.public_key_pem()) == []
    assert doc["body"]["certificate_id"] == again["certificate"]
    assert doc["body"]["model"]["before"]["version"] == 1 and doc["body"]["model"]["after"]["version"] == 3
    assert c.get(f"/v1/model-lines/{LINE}", headers=api.read).json()["current_version"] == 3
    with svc.engine.connect() as conn:
        revoked = conn.execute(
            select(certificates.c.id).where(
                certificates.c.request_id == b["id"], certificates.c.revoked_at.is_not(None)
            )
        ).all()
    assert [x.id for x in revoked] == [old_b["certificate"]]


@pytest.mark.parametrize("field", ["subjects", "example_ids"])
def test_list_bounds_are_enforced(home, field):
    """Lists longer than the schema allows are refused before any work."""
    api = make_api(home)
    n = 1001 if field == "subjects" else 10_001
    before = row_counts(api.svc)
    r = api.client.post(SUBMIT_URL, json={field: [f"x{i}" for i in range(n)]}, headers=api.submit)
    assert_problem(r, 422)
    assert row_counts(api.svc) == before
