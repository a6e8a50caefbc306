"""The service's semantics without HTTP: cumulative deletions and tombstones, hierarchical
subjects, the gate's outcomes (escalate, reject, hold then release or refuse), promotion as
compare-and-swap against a rollback, and the audit log and certificates checked offline."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import select, text, update
from typer.testing import CliRunner

from service_support import FAST, drain, drive, make_service, train_home
from unlearnkit.cli import app
from unlearnkit.orchestration.experiment import rebuild_task, task_of_run
from unlearnkit.requests import DeletionRequest, answer_request, evaluate_run
from unlearnkit.service import audit, crypto
from unlearnkit.service.core import ServiceError
from unlearnkit.service.db import audit_log, model_versions, tombstones


def _ids(svc, req_id):
    from unlearnkit.service.db import deletion_requests

    with svc.engine.connect() as c:
        return set(
            c.execute(select(deletion_requests.c.resolved_ids).where(deletion_requests.c.id == req_id)).scalar_one()
        )


def _log_ok(svc):
    with svc.engine.connect() as c:
        exported = audit.export(c, svc.public_key_pem())
    return audit.verify_log(exported["entries"], exported["checkpoints"], svc.public_key_pem())


def test_deletions_are_cumulative_and_reproducible_from_the_record(home):
    h, run = home
    svc, q = make_service(h)
    svc.register_line("d", run)
    a = svc.submit("d", subjects=["subject-001"]).body
    assert drain(svc, q) == ["promoted"]
    b = svc.submit("d", subjects=["subject-002"]).body
    assert drain(svc, q) == ["promoted"]
    a_ids, b_ids = _ids(svc, a["id"]), _ids(svc, b["id"])
    assert a_ids and b_ids and not a_ids & b_ids

    batch_b = svc.get_batch(b["batch"])
    steps = svc._steps(b["batch"])[0]["steps"]
    assert set(steps["resolve"]["excluded_ids"]) == a_ids  # what was deleted before leaves the task
    assert steps["resolve"]["base_version"] == 1  # and the batch starts from the latest version
    assert batch_b["steps"]["resolve"]["excluded_count"] == len(a_ids)
    assert svc.get_line("d")["current_version"] == 2

    rec = svc.workspace.store.get(steps["unlearn"]["run_id"])
    assert set(rec.task_spec["history"]["excluded_ids"]) == a_ids
    task = rebuild_task(svc.workspace, rec)  # the record alone rebuilds the cumulative task
    train = set(map(str, task.split.train.example_ids))
    assert not train & a_ids and b_ids <= train
    assert set(map(str, task.split.forget_ids)) == b_ids
    assert not set(map(str, task.retain.example_ids)) & (a_ids | b_ids)
    first = svc.workspace.store.get(svc._steps(a["batch"])[0]["steps"]["unlearn"]["run_id"])
    assert rebuild_task(svc.workspace, first).reference_key(0) != task.reference_key(0)
    # the reference depends on what was removed, not on the version it started from: one
    # request removing both people at once shares it
    at_once = task_of_run(svc.workspace, svc.workspace.store.get(run), {"kind": "ids", "ids": sorted(a_ids | b_ids)})
    assert at_once.reference_key(0) == task.reference_key(0)
    # re-evaluating the stored run gives the numbers the gate saw
    again = evaluate_run(svc.workspace, rec.id)
    gate = steps["verify"]["metrics"]
    for k in ("acc_forget", "acc_retain", "acc_test", "gap_acc_test", "mia_loss_auc"):
        assert again.metrics[k] == pytest.approx(gate[k], abs=1e-9), k

    with svc.engine.connect() as c:
        dead = {r.example_id for r in c.execute(select(tombstones.c.example_id))}
        chain = c.execute(select(model_versions).order_by(model_versions.c.version)).all()
    assert dead == a_ids | b_ids
    assert [v.version for v in chain] == [0, 1, 2] and [v.parent_version for v in chain] == [None, 0, 1]
    assert [v.status for v in chain] == ["superseded", "superseded", "deployed"]
    # a request for what was deleted before is refused and writes nothing
    with pytest.raises(ServiceError) as e:
        svc.submit("d", subjects=["subject-001"])
    assert e.value.status == 422 and e.value.kind == "already-deleted"
    assert _log_ok(svc).ok


def test_tombstoned_ids_stay_out_of_a_sisa_retrain(home):
    h, run = home
    svc, q = make_service(h)
    svc.register_line("d", run)
    a = svc.submit("d", subjects=["subject-003"]).body
    drain(svc, q)
    gone = sorted(_ids(svc, a["id"]))
    train = svc._task(run).split.train
    other = [i for i in map(str, train.example_ids) if i not in set(gone)][:3]
    out = answer_request(
        svc.workspace,
        DeletionRequest(run=run, method="sisa", params={"num_shards": 2, "num_slices": 1}, ids=other,
                        history={"excluded_ids": gone, "base_artifact": None}),
    )  # fmt: skip
    shard_data = set(map(str, out.model.state.data.example_ids))
    assert not shard_data & set(gone) and not shard_data & set(other)


def test_hierarchical_subjects_delete_everything_under_a_patient(tmp_path):
    from sklearn.datasets import load_digits

    d = load_digits()
    n = len(d.target)
    rng = np.random.default_rng(0)
    patients = rng.integers(0, 40, size=n)
    subjects = np.array([f"hosp-{p % 2}/patient-{p}/study-{i % 3}" for i, p in enumerate(patients)])
    path = tmp_path / "clinic.npz"
    np.savez(path, x=d.data.astype("float32") / 16, y=d.target, subject_id=subjects)
    h, run = train_home(tmp_path / "home", "--dataset", str(path))
    svc, q = make_service(h)
    svc.register_line("clinic", run)
    train = svc._task(run).split.train
    r = svc.submit("clinic", subjects=["hosp-0/patient-4"]).body
    subj = dict(zip(map(str, train.example_ids), map(str, train.subject_ids)))
    got = _ids(svc, r["id"])
    assert got == {i for i, s in subj.items() if s.startswith("hosp-0/patient-4/")}
    assert len({subj[i] for i in got}) > 1  # several studies of one patient
    assert not any(subj[i].startswith("hosp-0/patient-40/") for i in got)
    assert "hosp-0/patient-4" not in json.dumps(r)
    drain(svc, q)
    with svc.engine.connect() as c:
        rows = json.dumps([dict(x._mapping) for x in c.execute(select(audit_log))], default=str)
    assert "patient-4" not in rows  # raw subject ids never reach the audit log
    assert "patient-4" not in json.dumps(svc.certificate(r["id"]))


def test_a_failed_gate_escalates_to_the_exact_retrain(home):
    h, run = home
    policy = {**FAST, "gate": {"checks": [{"metric": "gap_acc_test", "max": -1.0}]}}  # nothing approximate passes
    svc, q = make_service(h, policy=policy)
    svc.register_line("d", run)
    r = svc.submit("d", subjects=["subject-004"]).body
    assert drain(svc, q) == ["promoted"]
    s = svc._steps(r["batch"])[0]["steps"]
    assert not s["verify"]["passed"] and s["escalate"]["method"] == "retrain"
    assert s["verify_escalate"]["metrics"]["gap_acc_test"] == 0.0  # the reference itself
    cert = svc.certificate(r["id"])["body"]
    assert cert["method"]["exact"] and cert["verification"]["escalated"]
    assert cert["model"]["after"]["artifact"] == s["escalate"]["artifact"]


def test_on_failure_reject_keeps_the_deployed_version(home):
    h, run = home
    policy = {**FAST, "on_failure": "reject", "gate": {"checks": [{"metric": "gap_acc_test", "max": -1.0}]}}
    svc, q = make_service(h, policy=policy)
    svc.register_line("d", run)
    r = svc.submit("d", subjects=["subject-005"]).body
    assert drain(svc, q) == ["failed"]
    got = svc.get_request(r["id"])
    assert got["state"] == "failed" and "gap_acc_test" in got["reason"]
    assert svc.get_line("d")["current_version"] == 0
    assert svc.get_line("d")["deleted_examples"] == got["examples"]  # the data stays deleted
    with pytest.raises(ServiceError):
        svc.certificate(r["id"])


@pytest.mark.parametrize("decision", ["refuse", "release"])
def test_a_deletion_that_moves_unrelated_predictions_is_held_for_a_person(home, decision):
    h, run = home
    # any retrain moves canary losses a little: a zero limit holds every batch
    policy = {**FAST, "gate": {"canary": {"size": 50, "max_reference_loss_shift": 0.0}}}
    svc, q = make_service(h, policy=policy)
    svc.register_line("d", run)
    r = svc.submit("d", subjects=["subject-006"]).body
    state = drive(svc, q.batches[0], decisions=[decision])
    got = svc.get_request(r["id"])
    events = [e["event"] for e in got["timeline"]]
    assert "batch.hold" in events and "batch.decision" in events
    if decision == "refuse":
        assert state == "refused" and got["state"] == "refused"
        assert svc.get_line("d")["current_version"] == 0
        assert svc.get_line("d")["deleted_examples"] == 0  # refused: its data is not tombstoned
    else:
        assert state == "promoted" and got["state"] == "answered"
    with pytest.raises(ServiceError) as e:
        svc.decide(q.batches[0], "release", "", "x")
    assert e.value.status == 409


def test_promotion_loses_the_swap_to_a_rollback_and_answers_again(home):
    h, run = home
    svc, q = make_service(h)
    svc.register_line("d", run)
    a = svc.submit("d", subjects=["subject-007"]).body
    drain(svc, q)
    b = svc.submit("d", subjects=["subject-008"]).body
    bid = q.batches[-1]
    for step in ("close", "resolve", "unlearn"):
        getattr(svc, f"step_{step}")(bid)
    svc.step_verify(bid)
    rb = svc.rollback("d", 0)  # meanwhile, version 1 is rolled back: request a is re-opened
    assert rb["reopened"] == [a["id"]]
    assert svc.get_request(a["id"])["state"] == "queued"
    p = svc.step_promote(bid)
    assert p["superseded"]  # base 1 is no longer current: no promotion from a stale base
    assert svc.get_request(b["id"])["state"] == "queued"
    assert drain(svc, q)[-2:] == ["promoted", "promoted"]
    for rid in (a["id"], b["id"]):
        assert svc.get_request(rid)["state"] == "answered"
        assert crypto.verify_document(svc.certificate(rid), svc.public_key_pem()) == []
    with svc.engine.connect() as c:
        chain = c.execute(select(model_versions).order_by(model_versions.c.version)).all()
    assert [v.status for v in chain] == ["superseded", "rolled_back", "superseded", "deployed"]
    assert [v.parent_version for v in chain] == [None, 0, 0, 2]  # a linear chain from the rollback
    assert _log_ok(svc).ok


def test_tampering_with_the_log_or_a_certificate_is_detected_offline(home, tmp_path):
    h, run = home
    svc, q = make_service(h)
    svc.register_line("d", run)
    r = svc.submit("d", subjects=["subject-009"]).body
    drain(svc, q)
    cert = tmp_path / "cert.json"
    cert.write_text(json.dumps(svc.certificate(r["id"])))
    log = tmp_path / "log.json"
    pub = tmp_path / "key.pub"
    pub.write_text(svc.public_key_pem())
    runner = CliRunner()
    res = runner.invoke(app, ["audit", "export", "--home", str(h), "--out", str(log)])
    assert res.exit_code == 0, res.output
    ok = runner.invoke(
        app, ["audit", "verify", "--log", str(log), "--certificate", str(cert), "--public-key", str(pub)]
    )
    assert ok.exit_code == 0 and "log: OK" in ok.stdout and "certificate" in ok.stdout, ok.output

    doc = json.loads(cert.read_text())
    doc["body"]["examples"]["count"] += 1
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    bad = runner.invoke(app, ["audit", "verify", "--log", str(log), "--certificate", str(tmp_path / "bad.json")])
    assert bad.exit_code == 1 and "FAILED" in bad.stdout

    with svc.engine.begin() as c:  # alter one entry in place: the chain breaks there
        c.execute(update(audit_log).where(audit_log.c.seq == 3).values(actor="someone-else"))
    report = _log_ok(svc)
    assert not report.ok and any("entry 3" in p for p in report.problems)
    live = runner.invoke(app, ["audit", "verify", "--home", str(h)])
    assert live.exit_code == 1 and "entry 3" in live.stdout
    with svc.engine.begin() as c:  # restore it
        c.execute(update(audit_log).where(audit_log.c.seq == 3).values(actor=_actor_of(log, 3)))
    assert _log_ok(svc).ok
    with svc.engine.begin() as c:  # cut the tail behind the last checkpoint
        last = c.execute(text("SELECT MAX(seq) FROM audit_log")).scalar_one()
        c.execute(audit_log.delete().where(audit_log.c.seq == last))
    report = _log_ok(svc)
    assert not report.ok and any("ends before" in p for p in report.problems)


def _actor_of(log_path, seq):
    return next(e["actor"] for e in json.loads(log_path.read_text())["entries"] if e["seq"] == seq)


def test_a_request_crafted_to_damage_the_model_is_held(home):
    """Deleting a whole class (fewer examples than the policy's size limit) changes what
    the model predicts for unrelated, never-trained examples: the batch is held."""
    h, run = home
    svc, q = make_service(h)  # the classifier's default gate and canary limits
    svc.register_line("d", run)
    train = svc._task(run).split.train
    ids = [str(i) for i, y in zip(train.example_ids, train.labels.tolist()) if y == 3]
    r = svc.submit("d", example_ids=ids).body
    assert drive(svc, q.batches[0], decisions=["refuse"]) == "refused"
    effect = svc._steps(r["batch"])[0]["steps"]["verify"]["deletion_effect"]
    flip = next(e for e in effect if e["measure"] == "reference_flip_rate")
    assert not flip["passed"] and flip["value"] > 0.05
    assert svc.get_request(r["id"])["state"] == "refused" and svc.get_line("d")["current_version"] == 0


def test_a_policy_the_line_s_modality_cannot_run_is_refused(home):
    from unlearnkit.orchestration.records import RunRecord

    h, _ = home
    svc, _ = make_service(h)
    spec = {"modality": "causal_lm"}
    rec = RunRecord(kind="train", task_key="k", method="train", seed=0, task_spec=spec, artifact="0" * 64)
    svc.workspace.store.add(rec)
    with pytest.raises(ServiceError) as e:  # language models have no shadow-model privacy
        svc.register_line("lm", rec.id, {"gate": {"privacy_shadows": 4}})
    assert e.value.status == 422 and "shadow-model privacy" in e.value.detail
    assert svc.list_lines() == []


def test_the_gate_can_run_the_per_example_u_lira_attack(home):
    h, run = home
    policy = {**FAST, "gate": {"privacy_shadows": 4, "checks": [{"metric": "ulira_auc", "max": 1.0}]}}
    svc, q = make_service(h, policy=policy)
    svc.register_line("d", run)
    r = svc.submit("d", subjects=["subject-011"]).body
    drain(svc, q)
    v = svc._steps(r["batch"])[0]["steps"]["verify"]
    check = v["checks"][0]
    assert check["metric"] == "ulira_auc" and 0.0 <= check["value"] <= 1.0 and check["passed"]
    assert "ulira_tpr_at_1fpr" in v["metrics"]
    with pytest.raises(ServiceError) as e:
        svc.register_line("e", run, {"gate": {"privacy_shadows": 2}})
    assert e.value.status == 422 and "privacy_shadows" in e.value.detail


@pytest.mark.parametrize("on_failure", ["retrain", "reject"])
def test_a_method_that_diverges_is_answered_by_the_exact_path_or_fails_clearly(home, on_failure):
    h, run = home
    policy = {**FAST, "method": {"name": "gradient_ascent", "params": {"lr": 1e12}}, "on_failure": on_failure}
    svc, q = make_service(h, policy=policy)
    svc.register_line("d", run)
    r = svc.submit("d", subjects=["subject-012"]).body
    state = drain(svc, q)
    s = svc._steps(r["batch"])[0]["steps"]
    assert "DivergenceError" in s["unlearn"]["error"] and not s["verify"]["passed"]
    got = svc.get_request(r["id"])
    if on_failure == "retrain":
        assert state == ["promoted"] and got["state"] == "answered"
        assert svc.certificate(r["id"])["body"]["method"] == {
            **svc.certificate(r["id"])["body"]["method"],
            "name": "retrain",
            "exact": True,
        }
    else:
        assert state == ["failed"] and got["state"] == "failed" and "DivergenceError" in got["reason"]
        assert svc.get_line("d")["current_version"] == 0


def test_a_batch_dbos_gave_up_fails_its_requests_with_the_reason(home):
    from unlearnkit.service.workflows import MAX_RECOVERIES, fail_dead_batches

    h, run = home
    svc, q = make_service(h)
    svc.register_line("d", run)
    r = svc.submit("d", subjects=["subject-013"]).body
    svc.step_close(q.batches[0])
    svc.step_resolve(q.batches[0])  # ... and every worker that took it died
    assert fail_dead_batches(svc, [(f"wf-{q.batches[0]}", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")]) == [q.batches[0]]
    got = svc.get_request(r["id"])
    assert got["state"] == "failed" and f"died {MAX_RECOVERIES} times" in got["reason"]
    assert "batch.abandoned" in [e["event"] for e in got["timeline"]]
    assert fail_dead_batches(svc, [(f"wf-{q.batches[0]}", "ERROR")]) == []  # once
    assert svc.get_line("d")["current_version"] == 0 and svc.get_line("d")["deleted_examples"] == got["examples"]
