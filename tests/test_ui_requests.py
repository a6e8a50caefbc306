"""The comparator's deletion-request views (``unlearnkit.ui.requests``) over a real service
database: one request answered by the service's own workflow, then listed, its timeline,
gate and certificate read back read-only, the certificate's signature checked, and a
tampered certificate caught."""

from __future__ import annotations

import json

import pytest

from service_support import drain, make_service

pytest.importorskip("fastapi")

from sqlalchemy import update  # noqa: E402

from unlearnkit.orchestration.experiment import Workspace  # noqa: E402
from unlearnkit.service import crypto  # noqa: E402
from unlearnkit.service.db import certificates  # noqa: E402
from unlearnkit.ui import requests as ui_requests  # noqa: E402
from unlearnkit.ui.models import UIError  # noqa: E402


@pytest.fixture
def answered(home):
    """A workspace whose service answered one request naming a person: (home, service, request)."""
    h, run = home
    svc, q = make_service(h)
    svc.register_line("digits", run)
    person = sorted(set(map(str, svc._task(run).split.train.subject_ids)))[0]
    req = svc.submit("digits", subjects=[person]).body
    assert drain(svc, q) == ["promoted"]
    return h, svc, req, person


def _files(h):
    return {p.name: p.stat().st_mtime_ns for p in h.iterdir() if p.is_file()}


def test_list_and_detail_of_an_answered_request(answered):
    h, svc, req, person = answered
    before = _files(h)
    ws = Workspace.open(h, mode="r")
    assert ui_requests.has_service(ws)

    listed = ui_requests.list_requests(ws)
    assert listed["truncated"] is False
    (row,) = listed["requests"]
    got = svc.get_request(req["id"])
    assert row["id"] == req["id"] and row["line"] == "digits" and row["state"] == "answered"
    assert row["batch"] == got["batch"] and row["version"] == 1 == got["version"]
    assert row["n_examples"] == got["examples"] > 0 and row["n_subjects"] == 1
    assert row["received_at"] == got["created_at"] and row["certificate"] == got["certificate"]
    steps = svc._steps(got["batch"])[0]["steps"]
    # the runs that answered it: the batch's unlearn run, stored in the workspace's runs
    assert row["unlearn_run"] == steps["unlearn"]["run_id"] == row["run"] and row["escalate_run"] is None
    assert row["runs"] == [row["run"]] and ws.store.get(row["run"]).kind == "unlearn"

    d = ui_requests.request_detail(ws, req["id"])
    assert d["request"]["id"] == req["id"] and d["request"]["subjects"] == got["subjects"]
    events = [e["event"] for e in d["timeline"]]
    for e in ("received", "batched", "resolved", "unlearned", "verified", "promoted", "certificate issued"):
        assert e in events, events
    assert events.index("received") < events.index("unlearned") < events.index("verified") < events.index("promoted")
    assert [e["seq"] for e in d["timeline"]] == sorted(e["seq"] for e in d["timeline"])
    assert [(e["at"], e["action"]) for e in d["timeline"]] == [(e["at"], e["event"]) for e in got["timeline"]]

    steps = svc._steps(got["batch"])[0]["steps"]
    gate = d["gate"]
    assert gate["passed"] is True and gate["escalated"] is False and gate["method"] == steps["unlearn"]["method"]
    assert gate["checks"] == steps["verify"]["checks"] and len(gate["checks"]) >= 3
    for c in gate["checks"]:
        assert {"metric", "bound", "threshold", "value", "passed"} <= set(c)
    assert gate["canary"] == steps["verify"]["canary"]
    assert d["batch"]["run_id"] == steps["unlearn"]["run_id"] and d["batch"]["state"] == "promoted"

    cert = d["certificate"]
    assert cert["verified"] is True and cert["why"] is None and cert["revoked_at"] is None
    assert cert["document"] == svc.certificate(req["id"])
    assert cert["document"]["body"]["request_id"] == req["id"]

    # the person appears as the service's pseudonym only, never by their id
    text = json.dumps([listed, d])
    assert person not in text and svc.pseudonymizer.pseudonym(person) in text
    assert _files(h) == before  # nothing was written


def test_a_tampered_certificate_is_not_verified(answered):
    h, svc, req, _ = answered
    ws = Workspace.open(h, mode="r")
    signed = svc.certificate(req["id"])
    # a valid certificate of another request is not this one's
    ok, why = ui_requests.verify_certificate(signed, "req-other", svc.public_key_pem())
    assert ok is False and "req-other" in why

    with svc.engine.begin() as conn:
        doc = json.loads(json.dumps(signed))
        doc["body"]["examples"]["count"] += 1  # claim one more example was deleted
        conn.execute(update(certificates).where(certificates.c.request_id == req["id"]).values(document=doc))
    cert = ui_requests.request_detail(ws, req["id"])["certificate"]
    assert cert["verified"] is False and "signature" in cert["why"]
    assert cert["document"]["body"]["examples"]["count"] == signed["body"]["examples"]["count"] + 1
    assert crypto.verify_document(cert["document"], svc.public_key_pem()) != []  # the service's check agrees

    # without the service's public key nothing verifies, not even the untouched document
    with svc.engine.begin() as conn:
        conn.execute(update(certificates).where(certificates.c.request_id == req["id"]).values(document=signed))
    assert ui_requests.request_detail(ws, req["id"])["certificate"]["verified"] is True
    (h / ui_requests.PUBLIC_KEY).unlink()
    cert = ui_requests.request_detail(ws, req["id"])["certificate"]
    assert cert["verified"] is False and "public key" in cert["why"]


def test_a_workspace_without_the_service(home):
    h, _ = home
    ws = Workspace.open(h, mode="r")
    assert ui_requests.has_service(ws) is False
    for call in (lambda: ui_requests.list_requests(ws), lambda: ui_requests.request_detail(ws, "req-x")):
        with pytest.raises(UIError) as e:
            call()
        assert e.value.status == 404 and e.value.kind == "no-service"
    assert not (h / "service.db").exists()  # reading never creates the database


def test_an_unknown_request_is_a_404(answered):
    h, *_ = answered
    with pytest.raises(UIError) as e:
        ui_requests.request_detail(Workspace.open(h, mode="r"), "req-0000")
    assert e.value.status == 404 and e.value.kind == "unknown-request" and "req-0000" in e.value.detail


def test_a_failed_gate_shows_the_escalation(home):
    h, run = home
    svc, q = make_service(h)
    svc.register_line("digits", run, policy={"gate": {"checks": [{"metric": "acc_test", "min": 2.0}]}})
    req = svc.submit("digits", example_ids=[str(i) for i in svc._task(run).split.train.example_ids[:2]]).body
    assert drain(svc, q) == ["promoted"]  # by the exact path
    d = ui_requests.request_detail(Workspace.open(h, mode="r"), req["id"])
    gate = d["gate"]
    assert gate["escalated"] is True and gate["candidate"] == "escalate" and gate["method"] == "retrain"
    first, exact = gate["attempts"]
    assert first["candidate"] == "unlearn" and first["passed"] is False
    assert first["checks"][0] == {**first["checks"][0], "metric": "acc_test", "bound": "min", "threshold": 2.0}
    assert exact["method"] == "retrain" and gate["checks"] == exact["checks"] and gate["passed"] is exact["passed"]
    events = [e["event"] for e in d["timeline"]]
    assert events.index("gate failed") < events.index("escalated") < events.index("promoted")
    assert d["batch"]["method"] == "retrain" and d["certificate"]["verified"] is True
    steps = svc._steps(d["batch"]["id"])[0]["steps"]
    (row,) = ui_requests.list_requests(Workspace.open(h, mode="r"))["requests"]
    assert row["unlearn_run"] == steps["unlearn"]["run_id"] and row["escalate_run"] == steps["escalate"]["run_id"]
    assert row["run"] == row["escalate_run"] == d["batch"]["run_id"] and row["runs"] == [row["unlearn_run"], row["run"]]
    assert d["batch"]["unlearn_run"] == row["unlearn_run"] and d["batch"]["escalate_run"] == row["escalate_run"]
    body = d["certificate"]["document"]["body"]
    assert body["verification"]["escalated"] is True and body["method"]["name"] == "retrain"
