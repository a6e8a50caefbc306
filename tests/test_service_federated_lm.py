"""A line of an LM federation on the deletion-request service (modalities/federated/lm.py:
profiles people dealt to 3 clients, LoRA adapters on a frozen tiny Llama, 2 rounds): the
default policy is the LM federation's (causal-LM metrics, the canary's loss shift on
never-trained holdout people), two people deleted one batch after another with ``exact``
(the second with the first's history), certificates verified, re-evaluation reproducing the
gate's numbers; an in-client method answered from version 0 and escalated to ``retrain``,
refused (one line, nothing written) from a merged version; an unknown person refused with
nothing written."""

from __future__ import annotations

import json
import shutil

import pytest
from sqlalchemy import select

from service_support import drain, make_service, row_counts
from unlearnkit.errors import ConfigError
from unlearnkit.modalities import get_modality
from unlearnkit.service import audit, crypto
from unlearnkit.service.policy import line_policy

pytest.importorskip("flwr")
pytest.importorskip("peft")

from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import unlearnkit.cli.federated  # noqa: E402,F401  (registers the command group)
from unlearnkit.cli import app  # noqa: E402
from unlearnkit.modalities.federated.flow import run_task  # noqa: E402
from unlearnkit.requests import DeletionRequest, answer_request, evaluate_run  # noqa: E402
from unlearnkit.service.app import create_app  # noqa: E402

ONE = {"batch": {"max_size": 1, "window_seconds": 0}}


@pytest.fixture(scope="module")
def trained_lm(tmp_path_factory):
    """12 people, 3 clients of 4, FedAvg, 2 rounds, the tiny Llama: (home, train run)."""
    home = tmp_path_factory.mktemp("fedlm") / "home"
    args = ["federated", "train", "--task", "lm", "--home", str(home), "--json", "--clients", "3", "--rounds", "2"]
    res = CliRunner().invoke(app, [*args, "--people", "12"])
    assert res.exit_code == 0, res.output
    return home, json.loads(res.stdout[res.stdout.index("{") :])["run_id"]


def _people(task, client: str) -> list[str]:
    return sorted({str(s) for s in task.client_data[client].subject_ids})


def _ids(task, client: str, people) -> set[str]:
    d = task.client_data[client]
    return {str(i) for i, s in zip(d.example_ids, d.subject_ids) if str(s) in people}


def test_an_lm_federation_line_deletes_two_people_cumulatively_with_exact(trained_lm, tmp_path):
    src, run = trained_lm
    home = tmp_path / "home"
    shutil.copytree(src, home)
    svc, q = make_service(home, policy=ONE)
    admin, _ = svc.create_key("admin", ["deletion:submit", "deletion:read", "model:admin"], rate_per_minute=10_000)
    auth = {"Authorization": f"Bearer {admin}"}
    client = TestClient(create_app(svc))

    # the default policy follows the line's task: an LM federation's checks and canary
    spec = svc.workspace.store.get(run).task_spec
    pol = line_policy(get_modality("federated"), {}, {}, spec)
    assert pol.method == "exact" and {c.metric for c in pol.checks} >= {"forget_quality", "fed_gap_model_utility"}
    assert set(pol.canary_limits) == {"max_reference_loss_shift", "max_excess_loss_shift"}
    assert "fed_gap_acc_test" in {c.metric for c in line_policy(get_modality("federated"), {}, {}, {}).checks}
    r = client.post("/v1/model-lines", json={"name": "lm", "train_run": run}, headers=auth)
    assert r.status_code == 201, r.text
    assert r.json()["policy"]["gate"]["checks"][0]["metric"] == "forget_quality"

    task = svc._task(run)
    line = svc.get_line("lm")
    holdout = {str(i) for i in task.split.test.example_ids}
    assert line["canary_size"] > 0
    assert not {str(s) for s in task.split.test.subject_ids} & {str(s) for s in task.split.train.subject_ids}
    a, b = _people(task, "client-00")[0], _people(task, "client-01")[0]
    url = "/v1/model-lines/lm/deletion-requests"

    # bad input: an unknown person is refused (one line), nothing written
    before = row_counts(svc)
    bad = client.post(url, json={"subjects": ["p9999"]}, headers=auth)
    assert bad.status_code == 422 and bad.json()["type"].endswith("unknown-subject"), bad.text
    assert "\n" not in bad.json()["detail"] and "p9999" not in bad.json()["detail"]
    assert row_counts(svc) == before and q.batches == []

    r1 = client.post(url, json={"subjects": [a]}, headers=auth)
    assert r1.status_code == 202, r1.text
    assert drain(svc, q) == ["promoted"]
    r2 = client.post(url, json={"subjects": [b]}, headers=auth)
    assert r2.status_code == 202, r2.text
    assert drain(svc, q) == ["promoted"]

    s1, s2 = (svc._steps(r.json()["batch"])[0]["steps"] for r in (r1, r2))
    gone = _ids(task, "client-00", {a})
    assert set(s1["resolve"]["forget_ids"]) == gone and s1["resolve"]["excluded_ids"] == []
    assert set(s2["resolve"]["excluded_ids"]) == gone and set(s2["resolve"]["forget_ids"]) == _ids(
        task, "client-01", {b}
    )
    for s in (s1, s2):
        assert s["unlearn"]["method"] == "exact" and "error" not in s["unlearn"] and "escalate" not in s
        v = s["verify"]
        assert v["passed"] and not v["hold"], v
        assert v["metrics"]["fed_gap_model_utility"] == 0.0 and v["metrics"]["forget_quality"] == 1.0
        assert s["promote"]["artifact"] == v["reference_artifact"]  # exact is federated retraining
        assert [c["measure"] for c in v["canary"]] == ["excess_loss_shift"] and v["canary"][0]["value"] == 0.0
        effect = v["deletion_effect"]
        assert [c["measure"] for c in effect] == ["reference_loss_shift"] and 0 < effect[0]["value"] < 0.5
    # the canary is never-trained holdout people's rows
    with svc.engine.connect() as c:
        from unlearnkit.service.db import model_lines

        canary = c.execute(select(model_lines.c.canary_ids).where(model_lines.c.name == "lm")).scalar_one()
    assert set(canary) <= holdout

    # the second run's task: the first person left client-00, the reference and the view's retain sample
    rec2 = svc.workspace.store.get(s2["unlearn"]["run_id"])
    assert set(rec2.task_spec["history"]["excluded_ids"]) == gone
    assert rec2.task_spec["history"]["base_artifact"] == s1["promote"]["artifact"]
    t2 = run_task(svc.workspace, rec2)
    assert not gone & {str(i) for d in t2.client_data.values() for i in d.example_ids}
    assert set(map(str, t2.view.forget.subject_ids)) == {b}
    assert not gone & {
        str(i) for n, es in t2.view.eval_sets.items() if n.startswith("retain_eval") for i in es.example_ids
    }
    assert {str(i) for i in t2.split.holdout.example_ids} == {str(i) for i in t2.view.holdout.example_ids}
    # re-evaluation rebuilds the same task and reproduces the gate's numbers
    again = evaluate_run(svc.workspace, rec2.id)
    assert again.same_inputs_as == s2["verify"]["evaluation_id"]
    for k in ("forget_quality", "model_utility", "rouge_forget", "mia_loss_auc"):
        assert again.metrics[k] == s2["verify"]["metrics"][k], k

    pub = svc.public_key_pem()
    for r in (r1, r2):
        cert = svc.certificate(r.json()["id"])
        assert crypto.verify_document(cert, pub) == []
        assert cert["body"]["method"]["name"] == "exact" and cert["body"]["method"]["exact"] is True
        assert a not in json.dumps(cert)
    with svc.engine.connect() as conn:
        exported = audit.export(conn, pub)
    assert audit.verify_log(exported["entries"], exported["checkpoints"], pub).problems == []

    # an in-client method (NPO inside client-00, 2 epochs to keep the test short) answers from
    # version 0; its canary excess fails the gate (held to 0.01 here: the default 0.1 escalated
    # every 10-epoch NPO answer when calibrated) and retraining answers
    npo = {"method": {"name": "npo", "params": {"epochs": 2.0}}, "gate": {"canary": {"max_excess_loss_shift": 0.01}}}
    svc.register_line("lm-npo", run, policy=npo)
    n1 = svc.submit("lm-npo", subjects=[a]).body
    assert drain(svc, q) == ["promoted"]
    s = svc._steps(n1["batch"])[0]["steps"]
    assert s["unlearn"]["method"] == "npo" and "error" not in s["unlearn"], s["unlearn"]
    assert not s["verify"]["passed"] and s["escalate"]["method"] == "retrain" and s["verify_escalate"]["passed"]
    assert s["promote"]["artifact"] == s1["promote"]["artifact"]  # retraining without a, as exact gave
    # from version 1 (a merged model) it refuses before any training, one line, nothing written
    n_runs = len(svc.workspace.store.list())
    history = {"excluded_ids": sorted(gone), "base_artifact": s1["promote"]["artifact"]}
    with pytest.raises(ConfigError, match="merged models") as e:
        answer_request(svc.workspace, DeletionRequest(run, "npo", subjects=[b], history=history))
    assert "\n" not in str(e.value) and len(svc.workspace.store.list()) == n_runs
