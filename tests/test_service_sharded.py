"""Sharded model lines: a SISA ensemble deployed, its checkpoints stored with every version,
each request answered in a new process by restore-and-retrain of the affected shards only,
and the result exactly the ensemble SISA training gives on what remains; an approximate
method first, SISA as the gate's exact path, which also removes the approximate answers'
examples exactly."""

from __future__ import annotations

import dataclasses

import torch
from sqlalchemy import select

from service_support import drain, make_service
from unlearnkit.data.scenarios import Split
from unlearnkit.engines.sharded import SisaEnsemble, train_sisa
from unlearnkit.orchestration.artifacts import ArtifactStore
from unlearnkit.orchestration.training_state import export_training_state, restore, template
from unlearnkit.service.db import model_versions

SHARDING = {"shards": 4, "slices": 3}
# bounds any SISA ensemble of the digits MLP meets (the gate is not what these tests check)
LOOSE = {"checks": [{"metric": "acc_test", "min": 0.5}], "canary": {"size": 50}}


def _exact(svc, run, removed: set[str]) -> SisaEnsemble:
    """SISA training from scratch on the train run's data without ``removed``."""
    task = svc._task(run)
    data = task.split.train.without(sorted(removed), name=task.split.train.name)
    return train_sisa(
        data, task.model_factory, task.adapter, task.recipe, 4, 3, 0, "mean_prob", task.device, assign="subject"
    )


def _deployed(svc, line="s") -> tuple[SisaEnsemble, dict]:
    info = svc.get_line(line)
    with svc.engine.connect() as c:
        v = c.execute(select(model_versions).where(model_versions.c.version == info["current_version"])).one()
    task = svc._task(info["train_run"])
    model = svc.workspace.artifacts.load(v.artifact, template(v.training_state, task)())
    return model, v.training_state


def _same(a: SisaEnsemble, b: SisaEnsemble) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _ids(svc, req_id) -> set[str]:
    from unlearnkit.service.db import deletion_requests

    with svc.engine.connect() as c:
        return set(
            c.execute(select(deletion_requests.c.resolved_ids).where(deletion_requests.c.id == req_id)).scalar_one()
        )


def test_a_resumed_ensemble_forgets_exactly_as_in_one_process(home, tmp_path):
    h, run = home
    svc, _ = make_service(h)
    task = svc._task(run)
    ens = train_sisa(
        task.split.train, task.model_factory, task.adapter, task.recipe, 4, 3, 0, "mean_prob", assign="subject"
    )
    store = ArtifactStore(tmp_path / "a")
    manifest = export_training_state(ens, store)
    ids = [str(i) for i in task.split.train.example_ids]
    first, second = ids[:7], ids[7:12]

    in_process = ens.clone()
    in_process.forget(first)
    in_process.forget(second)

    # another process: the ensemble and its checkpoints from the artifact store only
    step1 = store.load(store.save(ens), template(manifest, task)())
    step1.state = restore(manifest, task, store, step1)
    req = step1.forget(first)
    assert 0 < req.retrained_slices < 4 * 3
    m1 = export_training_state(step1, store)
    split = task.split
    task2 = dataclasses.replace(
        task, split=Split(split.train.without(first, name="t"), split.test, second, split.holdout, None)
    )
    step2 = store.load(store.save(step1), template(m1, task2)())
    step2.state = restore(m1, task2, store, step2)
    step2.forget(second)
    assert _same(step2, in_process)
    rest = task.split.train.without(first + second, name="x")
    scratch = train_sisa(rest, task.model_factory, task.adapter, task.recipe, 4, 3, 0, "mean_prob", assign="subject")
    assert _same(step2, scratch)
    # unchanged shards' checkpoints are stored once
    assert len({h for row in m1["checkpoints"] for h in row} & {h for row in manifest["checkpoints"] for h in row}) > 0


def test_a_sharded_line_answers_each_request_from_the_checkpoints(home):
    h, run = home
    svc, q = make_service(h)
    svc.register_line("s", run, {"sharding": SHARDING, "method": {"name": "sisa"}, "gate": LOOSE})
    v0, state0 = _deployed(svc)
    assert state0["num_shards"] == 4 and len(state0["checkpoints"][0]) == 4
    assert _same(v0, _exact(svc, run, set()))  # version 0 is the SISA training of the train run's data

    full = _exact(svc, run, set()).state.preparation_cost.examples_backward
    removed: set[str] = set()
    for subject in ("subject-001", "subject-002"):
        req = svc.submit("s", subjects=[subject]).body
        assert drain(svc, q) == ["promoted"]
        removed |= _ids(svc, req["id"])
        steps = svc._steps(req["batch"])[0]["steps"]
        assert "escalate" not in steps
        rec = svc.workspace.store.get(steps["unlearn"]["run_id"])
        assert rec.method == "sisa" and rec.tags["resumed"] is True
        # by subject (the default): a person's examples share one slice of one shard
        assert rec.tags["affected_shards"] and len(rec.tags["affected_shards"]) == 1
        assert rec.tags["retrained_slices"] <= 3 < rec.tags["total_slices"]
        assert 0 < rec.cost["examples_backward"] < full  # a fraction of training the ensemble again
        cert = svc.certificate(req["id"])["body"]
        assert cert["method"]["exact"] is True and cert["model_line"]["sharding"]["shards"] == 4
    deployed, _ = _deployed(svc)
    assert svc.get_line("s")["current_version"] == 2
    assert _same(deployed, _exact(svc, run, removed))  # exactly SISA training on what remains


def test_an_approximate_answer_is_made_exact_by_the_next_escalation(home):
    h, run = home
    svc, q = make_service(h)
    svc.register_line("s", run, {"sharding": SHARDING, "gate": LOOSE})  # finetune on the ensemble
    a = svc.submit("s", subjects=["subject-001"]).body
    assert drain(svc, q) == ["promoted"]
    a_ids = _ids(svc, a["id"])
    steps = svc._steps(a["batch"])[0]["steps"]
    assert steps["unlearn"]["method"] == "finetune" and "escalate" not in steps
    _, state1 = _deployed(svc)
    assert set(state1["pending"]) == a_ids and state1["stale"] == [0, 1, 2, 3]

    # a gate no model passes (and a new process): the exact path is SISA from the checkpoints
    for engine in {svc.engine, svc.reader}:
        engine.dispose()
    svc.workspace.store.close()
    svc, q = make_service(h)
    with svc._tx() as conn:
        from unlearnkit.service.db import model_lines

        line = svc._line_row(conn, "s")
        pol = dict(line["policy"], gate={"checks": [{"metric": "acc_test", "min": 1.01}], "canary": {"size": 50}})
        conn.execute(model_lines.update().where(model_lines.c.id == line["id"]).values(policy=pol))
    b = svc.submit("s", subjects=["subject-002"]).body
    assert drain(svc, q) == ["promoted"]
    steps = svc._steps(b["batch"])[0]["steps"]
    assert steps["escalate"]["method"] == "sisa" and not steps["verify"]["passed"]
    deployed, state2 = _deployed(svc)
    assert state2["pending"] == {} and state2["stale"] == []
    assert _same(deployed, _exact(svc, run, a_ids | _ids(svc, b["id"])))
    cert = svc.certificate(b["id"])["body"]
    assert cert["method"]["name"] == "sisa" and cert["method"]["exact"] is True


def test_a_sharded_line_over_http_and_its_policy_errors(home):
    import pytest
    from fastapi.testclient import TestClient

    from unlearnkit.errors import ConfigError
    from unlearnkit.modalities import get_modality
    from unlearnkit.service.app import create_app
    from unlearnkit.service.policy import line_policy

    h, run = home
    svc, q = make_service(h)
    token, _ = svc.create_key("admin", ["model:admin", "deletion:read", "deletion:submit"], rate_per_minute=10_000)
    client = TestClient(create_app(svc))
    auth = {"Authorization": f"Bearer {token}"}
    body = {"name": "s", "train_run": run, "policy": {"sharding": SHARDING, "method": {"name": "sisa"}, "gate": LOOSE}}
    r = client.post("/v1/model-lines", json=body, headers=auth)
    assert r.status_code == 201, r.text
    assert r.json()["policy"]["sharding"] == SHARDING
    r = client.post("/v1/model-lines/s/deletion-requests", json={"subjects": ["subject-003"]}, headers=auth)
    assert r.status_code == 202, r.text
    assert drain(svc, q) == ["promoted"]
    versions = client.get("/v1/model-lines/s/versions", headers=auth).json()
    assert [v["training_state"]["shards"] for v in versions] == [4, 4]
    assert versions[1]["training_state"]["pending_deletions"] == 0 and "exact" not in versions[1]["note"]

    bad = {
        "policy: method sisa answers sharded lines only": {"method": {"name": "sisa"}},
        "exact path is sisa": {"sharding": SHARDING, "method": {"name": "retrain"}},
        "sharding.by must be": {"sharding": {**SHARDING, "by": "row"}},
        "unknown sharding field": {"sharding": {**SHARDING, "replicas": 2}},
        "sharding.shards must be an integer": {"sharding": {"shards": 0}},
        "privacy_shadows is not available": {"sharding": SHARDING, "gate": {"privacy_shadows": 4}},
        "sisa's params must be the line's sharding": {
            "sharding": SHARDING,
            "method": {"name": "sisa", "params": {"num_shards": 9}},
        },
    }
    for why, policy in bad.items():
        with pytest.raises(ConfigError, match=why):
            line_policy(get_modality("classifier"), {}, policy)
    r = client.post(
        "/v1/model-lines", json={"name": "t", "train_run": run, "policy": bad["exact path is sisa"]}, headers=auth
    )
    assert r.status_code == 422 and "exact path is sisa" in r.json()["detail"]
    with pytest.raises(ConfigError, match="serve classifier tasks only"):
        line_policy(get_modality("causal_lm"), {}, {"sharding": SHARDING})
