"""A language-model line: people deleted one after the other from a tiny Llama trained on
generated profiles, verified with TOFU's forget quality and utility, the paraphrase, alias
and relearning probes, and canary questions about never-trained people."""

from __future__ import annotations

import pytest

from service_support import drain, make_service, train_home
from test_lm_cli import TINY  # the tiny Llama the LM command-line tests train
from unlearnkit.orchestration.experiment import rebuild_task
from unlearnkit.service import crypto

pytest.importorskip("transformers")


@pytest.mark.timeout(600)
def test_people_are_deleted_cumulatively_from_a_language_model_line(tmp_path):
    h, run = train_home(tmp_path / "home", *TINY)
    svc, q = make_service(h, policy={"batch": {"max_size": 1, "window_seconds": 0}})
    line = svc.register_line("lm", run)
    assert line["modality"] == "causal_lm" and line["policy"]["method"]["name"] == "npo"
    train = svc._task(run).split.train
    people = sorted({s for s in map(str, train.subject_ids) if s.startswith("p")})[:2]
    first = svc.submit("lm", subjects=[people[0]]).body
    assert drain(svc, q) == ["promoted"]
    second = svc.submit("lm", subjects=[people[1]]).body
    assert drain(svc, q) == ["promoted"]

    for r in (first, second):
        got = svc.get_request(r["id"])
        assert got["state"] == "answered"
        assert crypto.verify_document(svc.certificate(r["id"]), svc.public_key_pem()) == []
    steps = svc._steps(second["batch"])[0]["steps"]
    checked = {c["metric"] for c in steps["verify"]["checks"]}
    assert {"forget_quality", "model_utility", "paraphrase_rouge", "alias_rouge", "relearn_rouge"} <= checked
    assert all("reference" in c for c in steps["verify"]["checks"] if c["bound"].endswith("_reference"))
    assert {e["measure"] for e in steps["verify"]["deletion_effect"]} == {"reference_loss_shift"}

    gone = {str(i) for i, s in zip(train.example_ids, train.subject_ids) if str(s) == people[0]}
    assert set(steps["resolve"]["excluded_ids"]) == gone
    cand = steps.get("escalate") or steps["unlearn"]
    task = rebuild_task(svc.workspace, svc.workspace.store.get(cand["run_id"]))
    assert not gone & set(map(str, task.split.train.example_ids))
    for name, es in task.eval_sets.items():  # no evaluation set still asks about the first person
        assert not gone & set(map(str, es.example_ids)), name
    assert svc.get_line("lm")["current_version"] == 2
