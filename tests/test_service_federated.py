"""Federated model lines in the deletion-request service: a federation's global model deployed
as a line (3 clients on digits, 2 rounds, the local runtime), people deleted one batch after
another (the second batch carries the first's history: its ids leave every client and the
reference), a whole client leaving through a request naming its subjects, exact federated
retraining as the default method and federated retraining as the escalation, certificates and
the audit log verified, rollback, bad input refused with nothing written; and the Python API's
``answer_request`` / ``evaluate_run`` on a federated run (the modality's own flow)."""

from __future__ import annotations

import json
import shutil

import pytest

from service_pg import db_url, share_runs  # noqa: F401
from service_support import drain, make_service, row_counts
from unlearnkit.errors import ConfigError
from unlearnkit.modalities import get_modality
from unlearnkit.service import audit, crypto
from unlearnkit.service.policy import line_policy

pytest.importorskip("flwr")

from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import unlearnkit.cli.federated  # noqa: E402,F401  (registers the command group)
from unlearnkit.cli import app  # noqa: E402
from unlearnkit.modalities.federated.flow import run_task  # noqa: E402
from unlearnkit.orchestration.experiment import Workspace  # noqa: E402
from unlearnkit.requests import DeletionRequest, answer_request, evaluate_run  # noqa: E402
from unlearnkit.service.app import create_app  # noqa: E402

ONE = {"batch": {"max_size": 1, "window_seconds": 0}}


@pytest.fixture(scope="module")
def trained_fed(tmp_path_factory):
    """3 clients holding whole subjects of digits, FedAvg, 2 rounds: (home, train run)."""
    home = tmp_path_factory.mktemp("fed") / "home"
    args = ["federated", "train", "--home", str(home), "--json", "--clients", "3", "--rounds", "2"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return home, json.loads(res.stdout)["run_id"]


def _copy(trained_fed, tmp_path):
    src, run = trained_fed
    shutil.copytree(src, tmp_path / "home")
    return tmp_path / "home", run


def _subjects(task, client: str) -> list[str]:
    return sorted({str(s) for s in task.client_data[client].subject_ids})


def _ids(task, client: str, subjects=None) -> set[str]:
    d = task.client_data[client]
    return {str(i) for i, s in zip(d.example_ids, d.subject_ids) if subjects is None or str(s) in subjects}


def test_two_batches_a_person_then_a_whole_client_cumulatively(trained_fed, tmp_path):
    home, run = _copy(trained_fed, tmp_path)
    svc, q = make_service(home, policy=ONE)
    admin, _ = svc.create_key("admin", ["deletion:submit", "deletion:read", "model:admin"], rate_per_minute=10_000)
    auth = {"Authorization": f"Bearer {admin}"}
    client = TestClient(create_app(svc))

    default = line_policy(get_modality("federated"), {}, {}, {})
    assert default.method == "exact" and {c.metric for c in default.checks} >= {"fed_gap_acc_test"}
    # a client leaving a 3-client federation trained 2 rounds moves ~10% of the canary's
    # predictions (the deletion's own effect): allowed here (the default holds above 0.1)
    pol = {"gate": {"canary": {"max_reference_flip_rate": 0.5}}}
    r = client.post("/v1/model-lines", json={"name": "fed", "train_run": run, "policy": pol}, headers=auth)
    assert r.status_code == 201, r.text
    assert r.json()["modality"] == "federated" and r.json()["policy"]["method"]["name"] == "exact"

    task = svc._task(run)
    person = _subjects(task, "client-01")[0]
    url = "/v1/model-lines/fed/deletion-requests"
    r1 = client.post(url, json={"subjects": [person]}, headers=auth)
    assert r1.status_code == 202, r1.text
    assert drain(svc, q) == ["promoted"]
    # a whole client leaves: a request naming every one of its subjects
    r2 = client.post(url, json={"subjects": _subjects(task, "client-02")}, headers=auth)
    assert r2.status_code == 202, r2.text
    assert drain(svc, q) == ["promoted"]

    s1, s2 = (svc._steps(r.json()["batch"])[0]["steps"] for r in (r1, r2))
    gone = _ids(task, "client-01", {person})
    assert set(s1["resolve"]["forget_ids"]) == gone and s1["resolve"]["excluded_ids"] == []
    assert set(s2["resolve"]["excluded_ids"]) == gone and set(s2["resolve"]["forget_ids"]) == _ids(task, "client-02")
    for s in (s1, s2):
        assert s["unlearn"]["method"] == "exact" and "error" not in s["unlearn"] and "escalate" not in s
        assert s["verify"]["passed"] and not s["verify"]["hold"], s["verify"]
        assert s["verify"]["metrics"]["fed_gap_acc_test"] == 0.0  # exact equals federated retraining
        # every client took part from round 1: exact *is* retraining, the reference's very model
        assert s["promote"]["artifact"] == s["verify"]["reference_artifact"]
        assert {c["measure"] for c in s["verify"]["canary"]} == {"excess_flip_rate"}
        assert s["verify"]["canary"][0]["value"] == 0.0

    # the second run's task: the person's examples left client-01 and the reference; client-02 left
    rec2 = svc.workspace.store.get(s2["unlearn"]["run_id"])
    assert set(rec2.task_spec["history"]["excluded_ids"]) == gone
    assert rec2.task_spec["history"]["base_artifact"] == s1["promote"]["artifact"]
    assert rec2.scenario["kind"] == "client" and rec2.scenario["clients"] == ["client-02"]
    t2 = run_task(svc.workspace, rec2)
    assert not gone & {str(i) for d in t2.client_data.values() for i in d.example_ids}
    assert not gone & {str(i) for i in t2.split.train.example_ids}
    assert set(map(str, t2.split.forget_ids)) == _ids(task, "client-02")
    assert t2.forget_request.clients == ("client-02",)
    # re-evaluation rebuilds the same task and reproduces the gate's numbers
    again = evaluate_run(svc.workspace, rec2.id)
    assert again.same_inputs_as == s2["verify"]["evaluation_id"]
    assert again.metrics["fed_acc_test"] == s2["verify"]["metrics"]["fed_acc_test"]

    versions = client.get("/v1/model-lines/fed/versions", headers=auth).json()
    assert [v["version"] for v in versions] == [0, 1, 2]
    line = client.get("/v1/model-lines/fed", headers=auth).json()
    assert line["current_version"] == 2 and line["deleted_examples"] == len(gone) + len(_ids(task, "client-02"))
    pub = client.get("/v1/signing-key", headers=auth).json()["public_key"]
    for r in (r1, r2):
        cert = client.get(f"/v1/deletion-requests/{r.json()['id']}/certificate", headers=auth).json()
        assert crypto.verify_document(cert, pub) == []
        assert cert["body"]["method"]["name"] == "exact" and cert["body"]["method"]["exact"] is True
        assert person not in json.dumps(cert)  # raw subject ids never certified
    exported = client.get("/v1/audit/export", headers=auth).json()
    assert audit.verify_log(exported["entries"], exported["checkpoints"], pub).problems == []

    # client-02 has left: asking for its subjects again is refused, nothing written
    before = row_counts(svc)
    r = client.post(url, json={"subjects": _subjects(task, "client-02")[:1]}, headers=auth)
    assert r.status_code == 422 and r.json()["type"].endswith("already-deleted"), r.text
    assert row_counts(svc) == before


def test_a_failed_gate_escalates_to_federated_retraining_and_rollback_answers_again(trained_fed, tmp_path):
    home, run = _copy(trained_fed, tmp_path)
    svc, q = make_service(home, policy=ONE)
    # gradient ascent inside the client, held to the reference's exact test accuracy: it fails
    policy = {
        "method": {"name": "gradient_ascent", "params": {"recovery_rounds": 1}},
        "gate": {"checks": [{"metric": "fed_gap_acc_test", "max": 0.0}, {"metric": "fed_gap_acc_retain", "max": 0.0}]},
    }
    svc.register_line("fed", run, policy=policy)
    task = svc._task(run)
    people = _subjects(task, "client-00")[:2]
    first = svc.submit("fed", subjects=[people[0]]).body
    assert drain(svc, q) == ["promoted"]
    s = svc._steps(first["batch"])[0]["steps"]
    assert s["unlearn"]["method"] == "gradient_ascent" and "error" not in s["unlearn"], s["unlearn"]
    assert not s["verify"]["passed"] and "escalate" in s and s["escalate"]["method"] == "retrain"
    assert s["verify_escalate"]["passed"] and s["promote"]["artifact"] == s["verify_escalate"]["reference_artifact"]
    rec = svc.workspace.store.get(s["escalate"]["run_id"])
    assert rec.method == "federated:retrain" and rec.tags["reference_of"] == s["unlearn"]["run_id"]
    cert = svc.certificate(first["id"])
    assert crypto.verify_document(cert, svc.public_key_pem()) == []
    assert cert["body"]["method"] == {**cert["body"]["method"], "name": "retrain", "exact": True}
    assert cert["body"]["verification"]["escalated"] and not cert["body"]["verification"]["first_candidate_passed"]

    # the second person, from version 1 (in-client GA starts from the deployed global model)
    second = svc.submit("fed", subjects=[people[1]]).body
    assert drain(svc, q) == ["promoted"]
    s2 = svc._steps(second["batch"])[0]["steps"]
    assert set(s2["resolve"]["excluded_ids"]) == _ids(task, "client-00", {people[0]})
    assert s2["resolve"]["base_version"] == 1 and "error" not in s2["unlearn"], s2["unlearn"]

    # rollback to version 0: both requests are answered again from it, their ids stay tombstoned
    out = svc.rollback("fed", 0)
    assert sorted(out["reopened"]) == sorted([first["id"], second["id"]])
    assert drain(svc, q) == ["promoted"]
    assert svc.get_line("fed")["current_version"] == 3
    assert svc.get_request(first["id"])["state"] == "answered"
    assert crypto.verify_document(svc.certificate(second["id"]), svc.public_key_pem()) == []

    # a batch spanning two clients: a method inside a client answers one client at a time, so the
    # unlearn step fails (recorded) and the exact path answers the batch
    two = dict(policy, batch={"max_size": 2, "window_seconds": 0})
    svc.register_line("fed-two", run, policy=two)
    a = svc.submit("fed-two", subjects=_subjects(task, "client-01")[:1]).body
    b = svc.submit("fed-two", subjects=_subjects(task, "client-02")[:1]).body
    assert a["batch"] == b["batch"] and drain(svc, q) == ["promoted"]
    s = svc._steps(a["batch"])[0]["steps"]
    assert "one client at a time" in s["unlearn"]["error"] and s["escalate"]["method"] == "retrain"
    assert s["verify_escalate"]["passed"] and svc.get_request(b["id"])["state"] == "answered"


def test_bad_requests_and_policies_write_nothing(trained_fed, tmp_path):
    home, run = _copy(trained_fed, tmp_path)
    svc, q = make_service(home, policy=ONE)
    key, _ = svc.create_key("submitter", ["deletion:submit", "deletion:read"], rate_per_minute=10_000)
    auth = {"Authorization": f"Bearer {key}"}
    svc.register_line("fed", run, policy={"limits": {"max_fraction_per_request": 1.0}})
    client = TestClient(create_app(svc))
    url = "/v1/model-lines/fed/deletion-requests"
    task = svc._task(run)
    test_row = str(task.split.test.example_ids[0])
    everyone = sorted({str(s) for s in task.split.train.subject_ids})
    before = row_counts(svc)
    cases = [
        ({"subjects": ["no-such-person"]}, "subject id(s)", "unknown-subject"),
        ({"example_ids": [test_row]}, "example id(s)", "unknown-example"),
        ({"subjects": everyone}, "every remaining example", "deletes-everything"),
        ({}, "either subjects or example_ids", "empty-request"),
    ]
    for body, says, kind in cases:
        r = client.post(url, json=body, headers=auth)
        assert r.status_code == 422, r.text
        problem = r.json()
        assert says in problem["detail"] and problem["type"].endswith(kind), problem
        assert "no-such-person" not in problem["detail"] and "\n" not in problem["detail"]
    assert row_counts(svc) == before and q.batches == []
    # two clients leave, then the last one may not: no client would keep any data
    for c in ("client-00", "client-01"):
        assert svc.submit("fed", subjects=_subjects(task, c)).status == 202
    r = client.post(url, json={"subjects": _subjects(task, "client-02")[:1]}, headers=auth)
    assert r.status_code == 202, r.text  # one person of the last client is fine
    before = row_counts(svc)
    rest = _subjects(task, "client-02")[1:]
    r = client.post(url, json={"subjects": rest}, headers=auth)
    assert r.status_code == 422 and r.json()["type"].endswith("deletes-everything"), r.text
    assert row_counts(svc) == before
    # a policy naming a method the federation does not have, or a bad hyperparameter
    for bad, says in (
        ({"method": {"name": "no-such"}}, "unknown federated method"),
        ({"method": {"name": "federaser", "params": {"nope": 1}}}, "federaser"),
    ):
        with pytest.raises(Exception, match=says) as e:
            svc.register_line("fed2", run, policy=bad)
        assert getattr(e.value, "status", None) == 422 and "\n" not in str(e.value)
    assert "fed2" not in [x["name"] for x in svc.list_lines()]


def test_the_python_api_answers_and_evaluates_a_federated_run(trained_fed, tmp_path):
    home, run = _copy(trained_fed, tmp_path)
    ws = Workspace.open(home)
    n_runs = len(ws.store.list())
    out = answer_request(ws, DeletionRequest(run, "exact", scenario="client:client-01", evaluate=True))
    assert out.own_flow and out.record.method == "federated:exact" and out.record.parent == run
    assert out.metrics["fed_gap_acc_test"] == 0.0 and out.evaluation is not None
    assert ws.store.get(out.run_id).artifact == out.artifact and len(ws.store.list()) == n_runs + 1
    assert set(out.forget_ids) == _ids(out.task, "client-01") and out.model is not None
    ev = evaluate_run(ws, out.run_id)
    assert ev.same_inputs_as == out.evaluation.id and ev.metrics["fed_acc_test"] == out.metrics["fed_acc_test"]
    # with a line's history: an id deleted before is refused (one line), nothing written
    person = _subjects(out.task, "client-00")[0]
    gone = sorted(_ids(out.task, "client-00", {person}))
    history = {"excluded_ids": gone, "base_artifact": ws.store.get(run).artifact}
    with pytest.raises(ConfigError, match="deleted before") as e:
        answer_request(ws, DeletionRequest(run, "exact", ids=gone[:1], history=history))
    assert "\n" not in str(e.value) and len(ws.store.list()) == n_runs + 1
    with pytest.raises(ConfigError, match="deleted before"):
        answer_request(ws, DeletionRequest(run, "exact", subjects=[person], history=history))
    assert len(ws.store.list()) == n_runs + 1


def test_exact_with_history_resumes_before_any_deleted_example_and_equals_retraining(tmp_path):
    """client-02 joins at round 2: a request of its data resumes from round 2, unless an
    example deleted before (here one of client-00, from round 1) contributed earlier; either
    way the answer is federated retraining without everything deleted so far, bit for bit."""
    from unlearnkit.modalities.federated.flow import reference

    home = tmp_path / "late"
    args = ["federated", "train", "--home", str(home), "--json", "--clients", "3", "--rounds", "3"]
    res = CliRunner().invoke(app, [*args, "--join", "client-02:2"])
    assert res.exit_code == 0, res.output
    run = json.loads(res.stdout)["run_id"]
    ws = Workspace.open(home)
    base = ws.store.get(run).artifact
    first = answer_request(ws, DeletionRequest(run, "exact", scenario="client:client-01", evaluate=True))
    late, early = (sorted(_ids(first.task, c)) for c in ("client-02", "client-00"))
    cases = [(late[:3], late[3:6], 2), (early[:3], late[3:6], 1)]
    for excluded, forget, resumed in cases:
        history = {"excluded_ids": excluded, "base_artifact": base}
        out = answer_request(ws, DeletionRequest(run, "exact", ids=forget, history=history, evaluate=True))
        assert out.extra["resumed_from_round"] == resumed and out.cost.rounds == 3 - resumed + 1
        t = out.task
        assert not set(excluded) & {str(i) for d in t.client_data.values() for i in d.example_ids}
        assert set(map(str, t.split.forget_ids)) == set(forget) and out.metrics["fed_gap_acc_test"] == 0.0
        ref = reference(t, ws)
        assert ws.artifacts.save(ref.model) == out.artifact  # equal to retraining, bit for bit
        assert ws.store.get(out.run_id).task_spec["history"]["excluded_ids"] == sorted(excluded)


def test_a_federated_batch_is_stored_and_certified_on_both_back_ends(trained_fed, tmp_path, db_url):  # noqa: F811
    """The federated flow's run records and the service's tables in one database: SQLite, or
    PostgreSQL (the run store shared there)."""
    home, run = _copy(trained_fed, tmp_path)
    share_runs(home, db_url)
    svc, q = make_service(home, db_url, policy=ONE)
    assert svc.engine.dialect.name == ("sqlite" if db_url is None else "postgresql")
    svc.register_line("fed", run)
    task = svc._task(run)
    r = svc.submit("fed", subjects=_subjects(task, "client-00")[:1]).body
    assert drain(svc, q) == ["promoted"]
    s = svc._steps(r["batch"])[0]["steps"]
    assert s["unlearn"]["method"] == "exact" and s["verify"]["passed"]
    assert svc.workspace.store.get(s["unlearn"]["run_id"]).method == "federated:exact"
    assert crypto.verify_document(svc.certificate(r["id"]), svc.public_key_pem()) == []
    with svc.engine.connect() as conn:
        exported = audit.export(conn, svc.public_key_pem())
    assert audit.verify_log(exported["entries"], exported["checkpoints"], svc.public_key_pem()).problems == []
