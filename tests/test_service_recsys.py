"""Recommender model lines in the deletion-request service, over REST: people (a user id:
their whole training history) and interactions deleted cumulatively from a BPR-MF line
answered by CRAGRU (whose versions hold score tables and no trainable parameter, and whose
cost has a NaN final loss), promoted versions, certificates and the audit log verified, and
bad requests refused with nothing written."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import select

from service_pg import db_url, share_runs  # noqa: F401
from service_support import drain, make_service, row_counts, train_home
from unlearnkit.methods.cragru import CragruModel  # noqa: E402
from unlearnkit.modalities import get_modality  # noqa: E402
from unlearnkit.orchestration.experiment import load_run_model, rebuild_task  # noqa: E402
from unlearnkit.service import audit, crypto  # noqa: E402
from unlearnkit.service.app import create_app  # noqa: E402
from unlearnkit.service.core import finite_json  # noqa: E402
from unlearnkit.service.policy import line_policy  # noqa: E402

ONE = {"batch": {"max_size": 1, "window_seconds": 0}}
#: the candidate is promoted whatever its numbers (so each request starts from CRAGRU's answer)
NO_CHECKS = {"gate": {"checks": [], "canary": {"max_reference_loss_shift": 1e9, "max_excess_loss_shift": 1e9}}}


@pytest.fixture(scope="module")
def trained_rec(tmp_path_factory):
    """A BPR-MF recommender on synthetic 120 users x 80 items (20 epochs): (home, run)."""
    return train_home(
        tmp_path_factory.mktemp("rec") / "home", "--task", "recsys", "--dataset", "synthetic:120:80", "--epochs", "20"
    )


def _copy(trained_rec, tmp_path):
    import shutil

    src, run = trained_rec
    shutil.copytree(src, tmp_path / "home")
    return tmp_path / "home", run


def _ids_of(task, user: str) -> set[str]:
    tr = task.split.train
    return {str(i) for i, s in zip(tr.example_ids, tr.subject_ids) if str(s) == user}


def _scores(model) -> torch.Tensor:
    users, items = model(None)
    return users @ items.T


def test_non_finite_floats_become_null_and_finite_content_canonicalises_as_before():
    finite = {"cost": {"final_loss": 0.25, "steps": 3}, "checks": [{"value": 1.5}], "name": "x"}
    assert crypto.canonical_json(finite_json(finite)) == crypto.canonical_json(finite)
    with pytest.raises(ValueError, match="NaN"):
        crypto.canonical_json({"final_loss": math.nan})
    odd = {"final_loss": math.nan, "v": [math.inf, -math.inf, np.float32(2.0)], "ok": 1}
    assert finite_json(odd) == {"final_loss": None, "v": [None, None, 2.0], "ok": 1}
    crypto.canonical_json(finite_json(odd))  # canonicalises


def test_recommender_line_over_rest_people_and_interactions_cumulatively(trained_rec, tmp_path):
    h, run = _copy(trained_rec, tmp_path)
    svc, q = make_service(h, policy=ONE)
    admin, _ = svc.create_key("admin", ["deletion:submit", "deletion:read", "model:admin"], rate_per_minute=10_000)
    auth = {"Authorization": f"Bearer {admin}"}
    client = TestClient(create_app(svc))

    # the modality's default policy: CRAGRU, the NDCG / forget-loss gate, the canary loss shift
    default = line_policy(get_modality("recommender"), {}, {}, {})
    assert default.method == "cragru"
    assert {c.metric for c in default.checks} == {"ndcg10_retained", "bpr_loss_forget"}
    r = client.post("/v1/model-lines", json={"name": "recs", "train_run": run, "policy": NO_CHECKS}, headers=auth)
    assert r.status_code == 201, r.text
    line = r.json()
    assert line["modality"] == "recommender" and line["policy"]["method"]["name"] == "cragru"

    first = svc._task(run)
    with svc.engine.connect() as conn:
        canary = set(svc._line_row(conn, "recs")["canary_ids"])
    assert canary and canary <= {str(i) for i in first.split.test.example_ids}  # held-out interactions
    users = [str(u) for u in first.data.user_ids]
    a, b, c = users[3], users[40], users[77]
    url = "/v1/model-lines/recs/deletion-requests"
    answered = []
    for body in ({"subjects": [a]}, {"subjects": [b]}):
        r = client.post(url, json=body, headers=auth)
        assert r.status_code == 202, r.text
        answered.append(r.json())
        assert drain(svc, q) == ["promoted"]
    # an interaction of a third user, from the second CRAGRU version
    inter = sorted(_ids_of(first, c))[0]
    r = client.post(url, json={"example_ids": [inter]}, headers=auth)
    assert r.status_code == 202 and r.json()["examples"] == 1, r.text
    answered.append(r.json())
    assert drain(svc, q) == ["promoted"]
    assert answered[0]["examples"] == len(_ids_of(first, a)) and answered[1]["examples"] == len(_ids_of(first, b))

    versions = client.get("/v1/model-lines/recs/versions", headers=auth).json()
    assert [v["version"] for v in versions] == [0, 1, 2, 3]
    assert [v["training_state"] for v in versions[1:]] == [
        {"kind": "model", "methods": ["cragru"] * n} for n in (1, 2, 3)
    ]
    assert client.get("/v1/model-lines/recs", headers=auth).json()["current_version"] == 3

    steps = [svc._steps(x["batch"])[0]["steps"] for x in answered]
    for s in steps:
        assert "escalate" not in s and "error" not in s["unlearn"], s["unlearn"]
        # CRAGRU takes no optimiser step: its final loss is NaN in the run store, null here
        assert s["unlearn"]["cost"]["final_loss"] is None and s["unlearn"]["cost"]["steps"] == 0
        assert math.isnan(svc.workspace.store.get(s["unlearn"]["run_id"]).cost["final_loss"])
    # cumulative: each batch's task lacks everything deleted before, and so does its reference
    gone_a, gone_b = _ids_of(first, a), _ids_of(first, b)
    assert set(steps[1]["resolve"]["excluded_ids"]) == gone_a
    assert set(steps[2]["resolve"]["excluded_ids"]) == gone_a | gone_b
    assert steps[2]["resolve"]["base_state"]["kind"] == "model"
    models, tasks = [], []
    for s in steps:
        rec = svc.workspace.store.get(s["unlearn"]["run_id"])
        task = rebuild_task(svc.workspace, rec)
        tasks.append(task)
        models.append(load_run_model(svc.workspace, rec, task))
    t3 = tasks[2]
    train3 = {str(i) for i in t3.split.train.example_ids}
    assert not (gone_a | gone_b) & train3 and inter in train3
    assert set(map(str, t3.split.forget_ids)) == {inter}
    assert not (gone_a | gone_b | {inter}) & {str(i) for i in t3.retain.example_ids}  # what the reference trains on
    # the chain keeps CRAGRU's table shape; users a later request does not touch keep their scores
    assert all(isinstance(m, CragruModel) for m in models)
    assert {tuple(m.users.shape) for m in models} == {tuple(models[0].users.shape)}
    pos = {u: k for k, u in enumerate(first.data.user_ids.tolist())}
    s1, s2, s3 = (_scores(m) for m in models)
    base = _scores_of_original(first)
    untouched = [k for u, k in pos.items() if u not in (a, b, c)]
    d = models[2].items.shape[1] - first.n_items
    kept = models[2].items[:, :d].abs().sum(1) > 0  # items a deletion left with no interaction lose theirs
    for s in (s1, s2, s3):
        assert torch.allclose(s[untouched][:, kept], base[untouched][:, kept], atol=1e-5)
    assert torch.equal(s2[pos[a]], s1[pos[a]]) and torch.equal(s3[pos[b]], s2[pos[b]])  # re-ranked before: kept
    assert not torch.allclose(s1[pos[a]], base[pos[a]]) and not torch.allclose(s3[pos[c]], s2[pos[c]])

    pub = client.get("/v1/signing-key", headers=auth).json()["public_key"]
    for x in answered:
        assert client.get(f"/v1/deletion-requests/{x['id']}", headers=auth).json()["state"] == "answered"
        cert = client.get(f"/v1/deletion-requests/{x['id']}/certificate", headers=auth).json()
        assert crypto.verify_document(cert, pub) == [] and cert["body"]["method"]["name"] == "cragru"
    exported = client.get("/v1/audit/export", headers=auth).json()
    assert audit.verify_log(exported["entries"], exported["checkpoints"], pub).problems == []


def _scores_of_original(task) -> torch.Tensor:
    with torch.no_grad():
        ue, ie = task.adapter.embeddings(task.original.eval(), task.split.train.structure)
    return ue @ ie.T


def test_default_gate_answers_a_person_and_bad_requests_write_nothing(trained_rec, tmp_path):
    h, run = _copy(trained_rec, tmp_path)
    svc, q = make_service(h, policy=ONE)
    key, _ = svc.create_key("submitter", ["deletion:submit", "deletion:read"], rate_per_minute=10_000)
    auth = {"Authorization": f"Bearer {key}"}
    svc.register_line("recs", run, policy={"limits": {"max_fraction_per_request": 1.0}})
    client = TestClient(create_app(svc))
    url = "/v1/model-lines/recs/deletion-requests"
    task = svc._task(run)
    data, train = task.data, task.split.train
    user0 = str(train.subject_ids[0])
    test_row = str(task.split.test.example_ids[0])
    trained_items = set(train.item.tolist())
    unseen = [k for k in range(data.n_items) if k not in trained_items]  # no training interaction at all
    item = str(data.item_ids[unseen[0]]) if unseen else "no-such-item-99"
    before = row_counts(svc)
    cases = [
        ({"subjects": ["99999"]}, "subject id(s)", "unknown-subject"),
        ({"example_ids": [f"user:{user0}/item:{item}"]}, "an item nobody interacted with", "unknown-example"),
        ({"example_ids": ["user:99999/item:1"]}, "no such user", "unknown-example"),
        ({"example_ids": [test_row]}, "not a training interaction", "unknown-example"),
        ({"example_ids": ["member-3"]}, "not an interaction id", "unknown-example"),
        ({"example_ids": [str(i) for i in train.example_ids]}, "every remaining example", "deletes-everything"),
        ({}, "either subjects or example_ids", "empty-request"),
    ]
    for body, says, kind in cases:
        r = client.post(url, json=body, headers=auth)
        assert r.status_code == 422, r.text
        problem = r.json()
        assert says in problem["detail"] and problem["type"].endswith(kind), problem
        assert "99999" not in problem["detail"] and "member-3" not in problem["detail"]  # never echoed
    assert row_counts(svc) == before and q.batches == []

    # the default policy's gate answers a person: promoted, by CRAGRU or (failed gate) the exact path
    r = client.post(url, json={"subjects": [user0]}, headers=auth)
    assert r.status_code == 202, r.text
    assert drain(svc, q) == ["promoted"]
    s = svc._steps(r.json()["batch"])[0]["steps"]
    assert s["unlearn"]["method"] == "cragru" and "error" not in s["unlearn"]
    assert {c["metric"] for c in s["verify"]["checks"]} == {"ndcg10_retained", "bpr_loss_forget"}
    assert all(isinstance(c["value"], float) and "reference" in c for c in s["verify"]["checks"])
    assert {x["measure"] for x in s["verify"]["canary"]} == {"excess_loss_shift"}
    assert s["verify"]["passed"] == ("escalate" not in s)
    assert crypto.verify_document(svc.certificate(r.json()["id"]), svc.public_key_pem()) == []
    # the person's interactions are tombstoned: asking again is refused, nothing written
    before = row_counts(svc)
    r = client.post(url, json={"subjects": [user0]}, headers=auth)
    assert r.status_code == 422 and r.json()["type"].endswith("already-deleted"), r.text
    assert row_counts(svc) == before


def test_the_warm_up_of_a_parameter_free_version_trains_a_fresh_model(trained_rec, tmp_path):
    import dataclasses

    from unlearnkit.requests import warm_task

    home, run = _copy(trained_rec, tmp_path)
    svc, _ = make_service(home, policy=ONE)
    task = svc._task(run)
    assert warm_task(task) is task  # a trainable original warms itself
    frozen = CragruModel(torch.zeros(task.n_users, 4), torch.zeros(task.n_items, 4))
    t = dataclasses.replace(task, original=frozen)
    state = torch.get_rng_state()
    w = warm_task(t)
    assert torch.equal(torch.get_rng_state(), state)  # the factory's seeding does not leak
    assert type(w.original) is type(task.original) and any(p.requires_grad for p in w.original.parameters())
    assert w.reference_key(0) == t.reference_key(0) and w.split is t.split and t.original is frozen


def test_a_cragru_answer_is_stored_and_certified_on_both_back_ends(trained_rec, tmp_path, db_url):  # noqa: F811
    """PostgreSQL's JSON refuses NaN as RFC 8785 does: the forward-only answer's step output
    (NaN final loss) is stored as null on either back end, and its certificate verifies."""
    h, run = _copy(trained_rec, tmp_path)
    share_runs(h, db_url)
    svc, q = make_service(h, db_url, policy=ONE)
    assert svc.engine.dialect.name == ("sqlite" if db_url is None else "postgresql")
    svc.register_line("recs", run, policy=NO_CHECKS)
    user = str(svc._task(run).data.user_ids[5])
    r = svc.submit("recs", subjects=[user]).body
    assert drain(svc, q) == ["promoted"]
    s = svc._steps(r["batch"])[0]["steps"]
    assert s["unlearn"]["method"] == "cragru" and s["unlearn"]["cost"]["final_loss"] is None
    assert crypto.verify_document(svc.certificate(r["id"]), svc.public_key_pem()) == []
    with svc.engine.connect() as conn:
        exported = audit.export(conn, svc.public_key_pem())
    assert audit.verify_log(exported["entries"], exported["checkpoints"], svc.public_key_pem()).problems == []


def test_a_trainable_method_on_a_cragru_version_goes_to_the_exact_path(trained_rec, tmp_path):
    """A method that updates its original's parameters has none to update on a CRAGRU
    version: refused before any compute (not an optimiser error mid-step), so the gate sends
    the batch to the exact path, whose plain recommender the next request fine-tunes."""
    from sqlalchemy import update

    from unlearnkit.service.db import model_lines

    h, run = _copy(trained_rec, tmp_path)
    svc, q = make_service(h, policy=ONE)
    svc.register_line("recs", run, policy=NO_CHECKS)
    users = [str(u) for u in svc._task(run).data.user_ids]
    svc.submit("recs", subjects=[users[1]])
    assert drain(svc, q) == ["promoted"]
    with svc.engine.begin() as conn:
        pol = conn.execute(select(model_lines.c.policy).where(model_lines.c.name == "recs")).scalar_one()
        conn.execute(
            update(model_lines)
            .where(model_lines.c.name == "recs")
            .values(policy=dict(pol, method={"name": "finetune", "params": {}}))
        )
    b = svc.submit("recs", subjects=[users[2]]).body
    assert drain(svc, q) == ["promoted"]
    s = svc._steps(b["batch"])[0]["steps"]
    assert "no trainable parameter" in s["unlearn"]["error"] and s["escalate"]["method"] == "retrain"
    assert svc.versions("recs")[-1]["training_state"] is None  # model_factory's recommender again
    c = svc.submit("recs", subjects=[users[3]]).body
    assert drain(svc, q) == ["promoted"]
    s = svc._steps(c["batch"])[0]["steps"]
    assert s["unlearn"]["method"] == "finetune" and "error" not in s["unlearn"] and s["unlearn"]["cost"]["steps"] > 0
    assert crypto.verify_document(svc.certificate(c["id"]), svc.public_key_pem()) == []


def test_an_item_only_held_out_is_refused_with_nothing_written(tmp_path):
    """MovieLens-style data where one item's only interaction is a user's latest (held out
    for testing): the item is in the data and nobody trained on it."""
    rows = [(u, (u * 7 + k) % 20 + 1, 5, 100 * u + k) for u in range(1, 31) for k in range(6)]
    rows.append((1, 999, 5, 10**6))  # user 1's latest: their test interaction
    (tmp_path / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows))
    home, run = train_home(
        tmp_path / "home", "--task", "recsys", "--dataset", str(tmp_path / "u.data"), "--epochs", "5"
    )
    svc, q = make_service(home, policy=ONE)
    svc.register_line("ml", run)
    task = svc._task(run)
    assert "999" in set(map(str, task.data.item_ids))
    assert "user:1/item:999" in {str(i) for i in task.split.test.example_ids}
    key, _ = svc.create_key("submitter", ["deletion:submit"], rate_per_minute=10_000)
    client = TestClient(create_app(svc))
    before = row_counts(svc)
    for body, says in (
        ({"example_ids": ["user:2/item:999"]}, "an item nobody interacted with in training: 1"),
        ({"example_ids": ["user:1/item:999"]}, "an item nobody interacted with in training: 1"),
        ({"example_ids": ["user:1/item:999", "user:31/item:1"]}, "no such user: 1"),
    ):
        r = client.post("/v1/model-lines/ml/deletion-requests", json=body, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 422 and says in r.json()["detail"], r.text
    assert row_counts(svc) == before and q.batches == []
