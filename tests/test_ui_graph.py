"""The comparator on graph runs (unlearnkit.ui.graph through the JSON API): a node-classification
pair (SBM with features, three nodes deleted) and a link-prediction pair (the karate club, two
edges deleted), each a finetune unlearn run against its reference. Every endpoint the pair's
``views`` lists answers with shapes consistent with the task (ids in the forget set, counts
summing to the split sizes); the classifier views of a link pair are a 422 saying they are not
for link prediction; a graph run against a digits run is a 422."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("torch_geometric")

from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from unlearnkit.cli import app as cli_app  # noqa: E402
from unlearnkit.orchestration.experiment import Workspace  # noqa: E402
from unlearnkit.ui import models  # noqa: E402
from unlearnkit.ui.app import create_app  # noqa: E402

PROBLEM = "application/problem+json"
SPLITS = ("forget", "retain", "test")


def _cli(*args: str) -> dict:
    res = CliRunner().invoke(cli_app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def graph_home(trained, tmp_path_factory):
    """The digits workspace (a copy) with a node-classification run (sbm:80, sage, three nodes
    forgotten by finetune, evaluated) and a link-prediction run (karate, gcn, two edges)."""
    src, digits = trained
    root = tmp_path_factory.mktemp("ui-graph")
    home = root / "home"
    shutil.copytree(src, home)
    h = ["--home", str(home)]
    node = _cli("train", *h, "--task", "graph", "--dataset", "sbm:80", "--model", "sage", "--epochs", "40")
    node_u = _cli(
        "unlearn", *h, "--from", node["run_id"], "--method", "finetune", "--scenario", "nodes:3", "--evaluate"
    )
    link = _cli("train", *h, "--task", "graph-link", "--dataset", "karate", "--epochs", "60")
    ids = root / "edges.txt"
    ids.write_text("edge:0-3\nedge:0-5\n")
    link_u = _cli(
        "unlearn", *h, "--from", link["run_id"], "--method", "finetune", "--forget-ids", str(ids), "--evaluate"
    )
    return home, {"digits": digits, "node": node_u["run_id"], "link": link_u["run_id"]}


@pytest.fixture(scope="module")
def client(graph_home):
    models.clear_caches()
    home, _ = graph_home
    with TestClient(create_app(Workspace.open(home, mode="existing"))) as c:
        yield c


def _ok(r) -> dict:
    assert r.status_code == 200, r.text
    return r.json()


def _problem(r, status: int, kind: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    if kind:
        assert body["type"].endswith("/" + kind), body
    return body


def _forget_ids(home, run_id: str) -> set[str]:
    run = Workspace.open(home, mode="existing").store.get(run_id)
    return set(run.forget_ids)


def test_node_classification_pair(client, graph_home):
    home, runs = graph_home
    q = {"a": runs["node"], "b": f"reference:{runs['node']}"}
    pair = _ok(client.get("/api/v1/pair", params=q))
    task = pair["task"]
    assert pair["views"] == ["classifier", "attack"] and task["modality"] == "graph"
    g = task["graph"]
    assert g["task_kind"] == "node" and g["nodes"] == 80 and g["has_features"]
    assert g["forget_kinds"]["node"] == 3 and g["forget_kinds"]["edge"] > 0 and g["retain_edges"] < g["edges"]
    k = len(task["classes"])
    assert k >= 2
    forget = _forget_ids(home, runs["node"])
    assert len(forget) == task["n_forget"] == sum(g["forget_kinds"].values())

    classes = _ok(client.get("/api/v1/classifier/classes", params=q))
    assert classes["classes"] == task["classes"]
    node_rows = {"forget": 3, "test": task["n_test"]}  # nodes, counted once (a node and its feature row)
    for side in ("a", "b"):
        for s in SPLITS:
            m = np.asarray(classes["matrix"][side][s])
            assert m.shape == (k, k)
            if s in node_rows:
                assert m.sum() == node_rows[s], (side, s)
            acc = classes["accuracy"][side][s]
            assert len(acc) == k and all(v is None or 0 <= v <= 1 for v in acc)
    # retain + forget node rows are the training nodes: 80 nodes, 20% test
    assert np.asarray(classes["matrix"]["a"]["retain"]).sum() + 3 + task["n_test"] == 80

    emb = _ok(client.get("/api/v1/classifier/embeddings", params={**q, "sample": 40}))
    n = len(emb["sample"]["ids"])
    assert 0 < n <= 40 and len(emb["a"]) == len(emb["b"]) == n and all(len(p) == 2 for p in emb["a"])
    assert len(emb["pred"]["a"]) == n and set(emb["pred"]["a"]) <= set(range(k))
    assert len(set(emb["sample"]["ids"])) == n and emb["layer"].startswith("input of layer 2")
    forget_pts = [i for i, s in zip(emb["sample"]["ids"], emb["sample"]["split"]) if s == "forget"]
    assert forget_pts and set(forget_pts) <= forget
    assert 0 <= emb["procrustes_disparity"] <= 1

    cka = _ok(client.get("/api/v1/classifier/cka", params=q))
    assert cka["layers"] == ["layer 1", "layer 2"] and cka["n"] == 80  # every node (80 < 1000)
    for key in ("a_vs_original", "b_vs_original", "a_vs_b", "a_vs_reference", "b_vs_reference"):
        assert len(cka[key]) == 2 and all(v is None or 0 <= v <= 1 for v in cka[key]), key
    assert cka["b_vs_reference"] == pytest.approx([1.0, 1.0])

    att = _ok(client.get("/api/v1/attack", params=q))
    assert att["rows"] == "nodes" and att["features"] == ["entropy", "confidence", "loss"]
    assert set(att["forget"]["ids"]) <= forget and len(att["forget"]["ids"]) == node_rows["forget"]
    assert len(att["holdout"]["ids"]) == task["n_holdout"]
    for split in ("forget", "holdout"):
        for side in ("a", "b"):
            for f in att["features"]:
                assert len(att[split][side][f]) == len(att[split]["ids"])

    node_id = sorted(i for i in forget if i.startswith("node:") and not i.endswith("/x"))[0]
    edge_id = sorted(i for i in forget if i.startswith("edge:"))[0]
    rows = _ok(client.get("/api/v1/classifier/instances", params={**q, "ids": f"{node_id},{edge_id},node:0"}))["rows"]
    assert [r["id"] for r in rows] == [node_id, edge_id, "node:0"]
    r = rows[0]
    assert r["split"] == "forget" and r["graph"]["kind"] == "node" and r["graph"]["degree_retain"] == 0
    assert r["graph"]["degree"] > 0 and r["input"]["kind"] == "row" and 0 < len(r["input"]["features"]) <= 8
    for side in ("a", "b"):
        assert len(r[side]["probs"]) == k and sum(r[side]["probs"]) == pytest.approx(1, abs=1e-5)
        assert r[side]["loss"] >= 0 and 0 <= r[side]["pred"] < k
    e = rows[1]
    assert e["graph"]["kind"] == "edge" and e["label"] == -1 and e["a"]["probs"] == [] and e["a"]["loss"] is None
    assert e["note"] and e["input"] == {"kind": "edge", "u": e["graph"]["u"], "v": e["graph"]["v"]}
    assert rows[2]["split"] in ("retain", "test")
    _problem(client.get("/api/v1/classifier/instances", params={**q, "ids": "node:999"}), 404, "unknown-example")


def test_link_prediction_pair(client, graph_home):
    _, runs = graph_home
    q = {"a": runs["link"], "b": f"reference:{runs['link']}"}
    pair = _ok(client.get("/api/v1/pair", params=q))
    task = pair["task"]
    assert pair["views"] == ["attack"] and "not for link prediction" in pair["unavailable"]["classifier"]
    assert task["graph"]["task_kind"] == "link" and task["graph"]["nodes"] == 34 and not task["graph"]["has_features"]
    assert task["graph"]["forget_kinds"] == {"node": 0, "edge": 2, "features": 0}
    assert task["n_forget"] == 2

    att = _ok(client.get("/api/v1/attack", params=q))
    assert att["rows"] == "edges" and sorted(att["forget"]["ids"]) == ["edge:0-3", "edge:0-5"]
    assert len(att["holdout"]["ids"]) == task["n_holdout"] == task["n_test"] > 0
    assert all(i.startswith("edge:") for i in att["holdout"]["ids"])
    assert set(att["about"]) == {"entropy", "confidence", "loss"}
    for split in ("forget", "holdout"):
        for side in ("a", "b"):
            f = att[split][side]
            assert len(f["confidence"]) == len(f["loss"]) == len(f["entropy"]) == len(att[split]["ids"])
            assert all(0 <= v <= np.log(2) + 1e-6 for v in f["entropy"]) and all(v >= 0 for v in f["loss"])
    assert att["ulira"]["a"] is None and att["ulira"]["reason"]["a"]

    rows = _ok(client.get("/api/v1/classifier/instances", params={**q, "ids": "edge:0-3,node:2"}))["rows"]
    e, n = rows
    assert e["id"] == "edge:0-3" and e["split"] == "forget" and e["label"] == 1
    assert e["graph"]["kind"] == "edge" and (e["graph"]["u"], e["graph"]["v"]) == ("0", "3")
    assert e["graph"]["in_retain_graph"] is False
    for side in ("a", "b"):
        p = e[side]["edge_prob"]
        assert 0 <= p <= 1 and e[side]["probs"] == pytest.approx([1 - p, p]) and e[side]["loss"] >= 0
        i = att["forget"]["ids"].index("edge:0-3")
        assert p == pytest.approx(1 / (1 + np.exp(-att["forget"][side]["confidence"][i])), abs=1e-5)
    assert n["graph"]["kind"] == "node" and n["input"]["features"] == [] and "no features" in n["input"]["note"]
    assert n["a"]["probs"] == [] and n["note"]

    for path in ("classes", "embeddings", "cka"):
        body = _problem(client.get(f"/api/v1/classifier/{path}", params=q), 422, "wrong-view")
        assert "not for link prediction" in body["detail"]


def test_graph_against_digits_is_422(client, graph_home):
    _, runs = graph_home
    for other in (runs["digits"], f"original:{runs['digits']}"):
        body = _problem(client.get("/api/v1/pair", params={"a": runs["node"], "b": other}), 422, "different-tasks")
        assert "different tasks" in body["detail"]
        _problem(client.get("/api/v1/attack", params={"a": runs["link"], "b": other}), 422, "different-tasks")
    _problem(client.get("/api/v1/pair", params={"a": runs["node"], "b": runs["link"]}), 422, "different-tasks")


def test_graph_views_computed_at_once_on_a_cold_cache(graph_home, tmp_path, monkeypatch):
    """The graph views on 12 threads at once over the same cached models, with no result
    cache: every answer equals the one computed alone (the GNN layer hooks record only their
    own thread's forward pass)."""
    from concurrent.futures import ThreadPoolExecutor

    from unlearnkit.ui import views
    from unlearnkit.ui.cache import ResultCache

    home, runs = graph_home
    ws = Workspace.open(home, mode="existing")
    monkeypatch.setattr(views, "_cache", lambda _ws: ResultCache(tmp_path / "no-cache", writable=False))
    a, b = runs["node"], f"original:{runs['node']}"
    calls = {
        "cka": lambda: views.cka_view(ws, a, b),
        "embeddings": lambda: views.embeddings_view(ws, a, b, sample=60),
        "classes": lambda: views.classes_view(ws, a, b),
    }
    alone = {k: f() for k, f in calls.items()}
    jobs = [k for _ in range(4) for k in calls]
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = [(k, pool.submit(calls[k])) for k in jobs]
        for k, fut in futures:
            assert fut.result(timeout=120) == alone[k], k


def test_layers_of_a_model_without_layer_outputs_are_read_through_hooks():
    """A GNN without layer_outputs()/hidden() is read through this call's hooks on its
    message-passing layers, and gives what the built-in GNN's layer_outputs() gives."""
    import torch
    from torch import nn

    from unlearnkit.modalities.graph.task import tiny_graph_task
    from unlearnkit.ui import graph as gviews

    task = tiny_graph_task(seed=0)
    gnn = task.original.eval()

    class Plain(nn.Module):
        def __init__(self, convs):
            super().__init__()
            self.convs = convs

        def forward(self, x, ei):
            for i, c in enumerate(self.convs):
                x = c(x, ei)
                if i < len(self.convs) - 1:
                    x = torch.relu(x)
            return x

    plain = Plain(gnn.convs).eval()
    view = task.scoring_view
    want, out = gviews.gnn_layers(gnn, view, task.adapter)
    got, out2 = gviews.gnn_layers(plain, view, task.adapter)
    assert len(got) == len(want) == 2 and np.allclose(out, out2)
    for g, w in zip(got, want):
        assert g.shape == w.shape and np.allclose(g, w, atol=1e-6)
    h, _ = gviews.penultimate_nodes(gnn, view, task.adapter)
    h2, _ = gviews.penultimate_nodes(plain, view, task.adapter)
    assert np.allclose(h, h2, atol=1e-6) and np.allclose(h, want[0], atol=1e-6)
    assert not plain.convs[0]._forward_hooks  # hooks removed


def test_node_task_forgetting_only_edges_has_no_attack(client, graph_home):
    """Edges deleted on a node task: the class views answer (no forget node: every forget
    count 0), the attack is not listed and answers 422 saying why."""
    home, runs = graph_home
    node_train = Workspace.open(home, mode="existing").store.get(runs["node"]).parent
    e = _cli("unlearn", "--home", str(home), "--from", node_train, "--method", "finetune", "--scenario", "edges:4")
    q = {"a": e["run_id"], "b": f"original:{e['run_id']}"}
    pair = _ok(client.get("/api/v1/pair", params=q))
    assert pair["views"] == ["classifier"] and "no labelled node" in pair["unavailable"]["attack"]
    classes = _ok(client.get("/api/v1/classifier/classes", params=q))
    assert np.asarray(classes["matrix"]["a"]["forget"]).sum() == 0
    assert np.asarray(classes["matrix"]["a"]["retain"]).sum() + pair["task"]["n_test"] == 80
    body = _problem(client.get("/api/v1/attack", params=q), 422, "wrong-view")
    assert "no labelled node" in body["detail"]
