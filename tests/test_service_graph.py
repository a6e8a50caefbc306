"""Graph model lines in the deletion-request service: edges, nodes (with their edges) and
people (a node's user id) deleted cumulatively from a karate-club GCN, link prediction and
node classification; bad requests refused with nothing written; a GNNDelete version (the
GNN wrapped in deletion operators) deployed and answered from again."""

from __future__ import annotations

import json
import shutil

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from service_support import drain, make_service, row_counts, train_home

pytest.importorskip("torch_geometric")

from fastapi.testclient import TestClient  # noqa: E402

from unlearnkit.cli import app  # noqa: E402
from unlearnkit.modalities import get_modality  # noqa: E402
from unlearnkit.orchestration.experiment import load_run_model, rebuild_task  # noqa: E402
from unlearnkit.service import audit, crypto  # noqa: E402
from unlearnkit.service.app import create_app  # noqa: E402
from unlearnkit.service.core import ServiceError  # noqa: E402
from unlearnkit.service.db import model_lines  # noqa: E402
from unlearnkit.service.policy import line_policy  # noqa: E402

ONE = {"batch": {"max_size": 1, "window_seconds": 0}}
#: the candidate is promoted whatever its numbers
NO_CHECKS = {"gate": {"checks": [], "canary": {"max_reference_loss_shift": 1e9, "max_excess_loss_shift": 1e9}}}


@pytest.fixture(scope="module")
def trained_graphs(tmp_path_factory):
    """Karate-club GCNs (100 epochs): ``{"link": (home, run), "node": (home, run)}``."""
    out = {}
    for kind, task in (("link", "graph-link"), ("node", "graph")):
        out[kind] = train_home(
            tmp_path_factory.mktemp(kind) / "home", "--task", task, "--dataset", "karate", "--epochs", "100"
        )
    return out


def _copy(trained_graphs, kind, tmp_path):
    src, run = trained_graphs[kind]
    shutil.copytree(src, tmp_path / "home")
    return tmp_path / "home", run


def _task_of(svc, batch_id):
    """The answered batch's candidate run and its task rebuilt from the record alone."""
    s = svc._steps(batch_id)[0]["steps"]
    rec = svc.workspace.store.get((s.get("escalate") or s["unlearn"])["run_id"])
    return s, rec, rebuild_task(svc.workspace, rec)


def _edges_of(task, node: int) -> set[str]:
    ids = task.split.train.example_ids
    kind_edge = [str(i) for i in ids if str(i).startswith("edge:")]
    return {e for e in kind_edge if str(node) in e[5:].split("-")}


def test_link_line_deletes_edges_nodes_and_people_cumulatively(trained_graphs, tmp_path):
    h, run = _copy(trained_graphs, "link", tmp_path)
    svc, q = make_service(h, policy={"batch": {"max_size": 2, "window_seconds": 0}})
    # the graph default's link checks only (its node checks are dropped on a link task), with
    # bounds every candidate meets here: karate is too small for the digits-calibrated ones
    default = line_policy(get_modality("graph"), {}, {}, {"task": "link"})
    assert {c.metric for c in default.checks} == {"dt_auc", "gap_df_auc"} and default.method == "finetune"
    wide = [{k: v for k, v in c.items() if k == "metric" or k == "when"} for c in default.raw["gate"]["checks"]]
    for c, bound in zip(wide, ({"min_ratio_to_reference": 0.0}, {"max": 1.0})):
        c.update(bound)
    line = svc.register_line("karate", run, policy=dict(NO_CHECKS, gate=dict(NO_CHECKS["gate"], checks=wide)))
    assert line["modality"] == "graph" and line["policy"]["method"]["name"] == "finetune"
    first = svc._task(run)
    with svc.engine.connect() as conn:
        canary = set(svc._line_row(conn, "karate")["canary_ids"])
    assert canary and canary <= {str(i) for i in first.split.test.example_ids}  # test edges

    edge = sorted(_edges_of(first, 0))[0]
    a = svc.submit("karate", example_ids=[edge]).body
    b = svc.submit("karate", example_ids=["node:5"]).body  # a node takes its edges along
    assert a["examples"] == 1 and a["batch"] == b["batch"]
    node5 = {"node:5"} | _edges_of(first, 5)
    assert b["examples"] == len(node5 - {edge})
    assert drain(svc, q) == ["promoted"]
    # a person: their node and every edge, one of which (``edge``) was deleted before
    other = int(edge[5:].split("-")[1])
    c = svc.submit("karate", subjects=[f"member-{other}"]).body
    assert drain(svc, q) == ["promoted"]

    s, rec, task = _task_of(svc, c["batch"])  # version 2: without everything deleted so far
    person = {f"node:{other}"} | _edges_of(first, other)
    assert edge in person and other != 5
    gone = {edge} | node5
    assert set(s["resolve"]["forget_ids"]) == person - gone == set(map(str, task.split.forget_ids))
    assert set(s["resolve"]["excluded_ids"]) == gone
    train = {str(i) for i in task.split.train.example_ids}
    assert not gone & train and (person - gone) <= train
    retain = task.retain
    assert not (gone | person) & {str(i) for i in retain.example_ids}
    g = first.graph.edges.numpy()
    lost = {f"edge:{u}-{v}" for (u, v), keep in zip(g, retain.edge_keep) if not keep}
    held_out = {f"edge:{u}-{v}" for (u, v), keep in zip(g, first.split.train.edge_keep) if not keep}
    assert lost - held_out == {i for i in gone | person if i.startswith("edge:")}  # no message passes them
    assert {c["metric"] for c in s["verify"]["checks"]} == {"dt_auc", "gap_df_auc"} and s["verify"]["passed"]
    assert all("reference" in c for c in s["verify"]["checks"] if c["bound"].endswith("_reference"))
    assert {x["measure"] for x in s["verify"]["deletion_effect"]} == {"reference_loss_shift"}
    assert svc.get_line("karate")["current_version"] == 2

    pub = svc.public_key_pem()
    for r in (a, b, c):
        assert svc.get_request(r["id"])["state"] == "answered"
        assert crypto.verify_document(svc.certificate(r["id"]), pub) == []
    with svc.engine.connect() as conn:
        exported = audit.export(conn, pub)
    assert audit.verify_log(exported["entries"], exported["checkpoints"], pub).problems == []
    (tmp_path / "cert.json").write_text(json.dumps(svc.certificate(c["id"])))
    (tmp_path / "audit.json").write_text(json.dumps(exported))
    (tmp_path / "pub.pem").write_text(pub)
    res = CliRunner().invoke(
        app,
        [
            "audit",
            "verify",
            "--log",
            str(tmp_path / "audit.json"),
            "--certificate",
            str(tmp_path / "cert.json"),
            "--public-key",
            str(tmp_path / "pub.pem"),
        ],
    )
    assert res.exit_code == 0, res.output


def test_bad_graph_requests_are_refused_and_write_nothing(trained_graphs, tmp_path):
    h, run = _copy(trained_graphs, "link", tmp_path)
    svc, q = make_service(h, policy=ONE)
    svc.register_line("karate", run, policy={"limits": {"max_fraction_per_request": 1.0}})
    key, _ = svc.create_key("submitter", ["deletion:submit", "deletion:read"], rate_per_minute=10_000)
    client = TestClient(create_app(svc))
    url = "/v1/model-lines/karate/deletion-requests"
    task = svc._task(run)
    test_edge = str(task.split.test.example_ids[0])
    every_edge = sorted(i for i in map(str, task.split.train.example_ids) if i.startswith("edge:"))
    before = row_counts(svc)
    cases = [
        ({"example_ids": ["node:99"]}, "no such node", "unknown-example"),
        ({"example_ids": [test_edge]}, "held-out test edge", "unknown-example"),
        ({"example_ids": ["edge:0-9"]}, "not an edge of the graph", "unknown-example"),  # 0 and 9 are not joined
        ({"example_ids": ["user-3"]}, "not a graph id", "unknown-example"),
        ({"subjects": ["member-99"]}, "subject id(s)", "unknown-subject"),
        ({"example_ids": every_edge}, "every edge", "deletes-everything"),
    ]
    for body, says, kind in cases:
        r = client.post(url, json=body, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 422, r.text
        problem = r.json()
        assert says in problem["detail"] and problem["type"].endswith(kind), problem
        assert "99" not in problem["detail"] and "user-3" not in problem["detail"]  # never echoed
        assert "\n" not in problem["detail"]
    assert row_counts(svc) == before and q.batches == []
    # every edge but one, then the last one: refused once the line's deletions are counted
    svc.submit("karate", example_ids=every_edge[:-1])
    before = row_counts(svc)
    r = client.post(url, json={"example_ids": every_edge[-1:]}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 422 and "deletions before it" in r.json()["detail"], r.text
    assert row_counts(svc) == before


def test_node_line_answers_nodes_and_people_and_refuses_test_nodes(trained_graphs, tmp_path):
    h, run = _copy(trained_graphs, "node", tmp_path)
    svc, q = make_service(h, policy={"batch": {"max_size": 2, "window_seconds": 0}})
    line = svc.register_line("club", run, policy={"method": {"name": "finetune", "params": {}}})
    assert {c["metric"] for c in line["policy"]["gate"]["checks"]} == {"node_acc_test", "gap_node_acc_retain"}
    task = svc._task(run)
    test_nodes = [str(i) for i in task.split.test.example_ids]
    train_nodes = [str(i) for i in task.split.train.example_ids if str(i).startswith("node:")]
    before = row_counts(svc)
    with pytest.raises(ServiceError, match="test node"):
        svc.submit("club", example_ids=[test_nodes[0]])
    assert row_counts(svc) == before
    person = next(i for i in train_nodes if _edges_of(task, int(i[5:])))
    a = svc.submit("club", example_ids=[train_nodes[-1]]).body
    b = svc.submit("club", subjects=[f"member-{person[5:]}"]).body
    assert drain(svc, q) == ["promoted"]  # one batch of both
    s, rec, t = _task_of(svc, a["batch"])
    want = {train_nodes[-1], person} | _edges_of(task, int(person[5:])) | _edges_of(task, int(train_nodes[-1][5:]))
    assert set(s["resolve"]["forget_ids"]) == want
    assert set(map(str, t.split.forget_ids)) == want
    canary = s["verify"]["canary"]
    assert {x["measure"] for x in canary} == {"excess_loss_shift"}
    assert svc.get_request(b["id"])["state"] == "answered"
    assert crypto.verify_document(svc.certificate(b["id"]), svc.public_key_pem()) == []
    # canary rows are test nodes scored on the graph without the deleted edges
    from unlearnkit.modalities.graph.task import canary_examples

    rows = canary_examples(t, test_nodes[:3])
    assert rows.view is t.scoring_view and not set(map(str, rows.example_ids)) - set(test_nodes)


def test_a_gnndelete_version_is_deployed_and_answered_from_again(trained_graphs, tmp_path):
    h, run = _copy(trained_graphs, "link", tmp_path)
    svc, q = make_service(h, policy=ONE)
    svc.register_line("karate", run, policy=NO_CHECKS)
    task = svc._task(run)
    edges = sorted(i for i in map(str, task.split.train.example_ids) if i.startswith("edge:"))

    def answer(method: str, edge: str) -> dict:
        with svc.engine.begin() as conn:  # the line's method for its next batch
            pol = conn.execute(select(model_lines.c.policy).where(model_lines.c.name == "karate")).scalar_one()
            conn.execute(
                update(model_lines)
                .where(model_lines.c.name == "karate")
                .values(policy=dict(pol, method={"name": method, "params": {}}))
            )
        r = svc.submit("karate", example_ids=[edge]).body
        assert drain(svc, q) == ["promoted"]
        s = svc._steps(r["batch"])[0]["steps"]
        assert "escalate" not in s and "error" not in s["unlearn"], s["unlearn"]
        assert crypto.verify_document(svc.certificate(r["id"]), svc.public_key_pem()) == []
        rec = svc.workspace.store.get(s["unlearn"]["run_id"])
        model = load_run_model(svc.workspace, rec, rebuild_task(svc.workspace, rec))
        return {"version": svc.versions("karate")[-1], "model": model, "steps": s}

    one = answer("gnndelete", edges[0])
    assert one["version"]["training_state"] == {"kind": "model", "methods": ["gnndelete"]}
    assert type(one["model"]).__name__ == "GNNDeleteModel"
    two = answer("finetune", edges[1])  # fine-tunes the GNNDelete model: the same shape
    assert two["steps"]["resolve"]["base_state"]["kind"] == "model"
    assert two["version"]["training_state"] == {"kind": "model", "methods": ["gnndelete"]}
    three = answer("gnndelete", edges[2])  # new operators around the deployed GNNDelete model
    assert three["version"]["training_state"] == {"kind": "model", "methods": ["gnndelete", "gnndelete"]}
    assert type(three["model"].base).__name__ == "GNNDeleteModel"
    assert set(three["steps"]["resolve"]["excluded_ids"]) == set(edges[:2])
    four = answer("retrain", edges[3])  # the exact path gives model_factory's GNN back
    assert four["version"]["training_state"] is None and type(four["model"]).__name__ == "GNN"


def test_policy_when_and_model_manifests_are_checked():
    from unlearnkit.errors import ConfigError
    from unlearnkit.orchestration import training_state

    graph = get_modality("graph")
    node = line_policy(graph, {}, {}, {"task": "node"})
    assert {c.metric for c in node.checks} == {"node_acc_test", "gap_node_acc_retain"}
    assert len(line_policy(graph, {}, {}).checks) == 4  # no spec: nothing dropped
    for bad in ([1], {"task": ["link"]}, "link"):
        with pytest.raises(ConfigError, match="when"):
            line_policy(graph, {}, {"gate": {"checks": [{"metric": "dt_auc", "max": 1, "when": bad}]}})
    for bad in ({"kind": "model"}, {"kind": "model", "methods": []}, {"kind": "model", "methods": [{"params": {}}]}):
        with pytest.raises(ConfigError, match="methods"):
            training_state.check_manifest(bad)
    manifest = {"kind": "model", "methods": [{"name": "gnndelete", "params": {}}]}
    # a method keeping its original's shape keeps the manifest, without building a model
    assert training_state.after_method(manifest, "finetune", {}, None) == manifest
    assert training_state.after_method(None, "graddiff", {}, None) is None
    with pytest.raises(ConfigError, match="pending"):
        training_state.after_approximate(manifest, None)
