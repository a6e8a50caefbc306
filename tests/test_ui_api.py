"""The comparator's JSON API (unlearnkit.ui.app) through FastAPI's TestClient on a tiny digits
workspace: every endpoint, the default pair, the result cache, read-only workspaces, and bad
input (an empty workspace, runs of different tasks or forget sets, a missing artifact, an
unknown run); and `unlearnkit ui` on bad input."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import socket
import sys

import numpy as np
import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from unlearnkit.cli import app as cli_app  # noqa: E402
from unlearnkit.evaluation.comparator import confidence_feature, entropy_feature  # noqa: E402
from unlearnkit.orchestration.experiment import Workspace  # noqa: E402
from unlearnkit.orchestration.records import new_run_id  # noqa: E402
from unlearnkit.ui import analysis, models, views  # noqa: E402
from unlearnkit.ui import app as ui_app  # noqa: E402
from unlearnkit.ui.app import create_app  # noqa: E402

PROBLEM = "application/problem+json"


def _cli(*args: str) -> dict:
    res = CliRunner().invoke(cli_app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def ws_home(trained, tmp_path_factory):
    """The trained digits workspace (a copy) with: ``a``, finetune forgetting class 3 (evaluated,
    so it has metrics and its reference is cached); ``c``, finetune forgetting a random 10%;
    ``other``, a linear model on digits (another task)."""
    src, train_id = trained
    home = tmp_path_factory.mktemp("ui") / "home"
    shutil.copytree(src, home)
    a = _cli(
        "unlearn",
        "--home",
        str(home),
        "--from",
        train_id,
        "--method",
        "finetune",
        "--scenario",
        "class:3",
        "--evaluate",
    )
    c = _cli("unlearn", "--home", str(home), "--from", train_id, "--method", "finetune", "--scenario", "random:0.1")
    other = _cli("train", "--home", str(home), "--model", "linear", "--epochs", "1")
    return home, {"train": train_id, "a": a["run_id"], "c": c["run_id"], "other": other["run_id"]}


@pytest.fixture(scope="module")
def client(ws_home):
    models.clear_caches()
    home, _ = ws_home
    with TestClient(create_app(Workspace.open(home, mode="existing"))) as c:
        yield c


def _problem(r, status: int, kind: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert set(body) >= {"type", "title", "status", "detail"} and body["status"] == status and body["detail"]
    if kind:
        assert body["type"].endswith("/" + kind), body
    return body


def _finite(obj) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite(v) for v in obj)
    return True


# --------------------------------------------------------------------------- workspace and runs
def test_workspace_and_runs(client, ws_home):
    _, ids = ws_home
    w = client.get("/api/v1/workspace").json()
    assert w["runs"] == 4 and w["modalities"] == ["classifier"] and w["service"] is False and w["read_only"] is False
    body = client.get("/api/v1/runs").json()
    assert {r["id"] for r in body["runs"]} == set(ids.values())
    run = next(r for r in body["runs"] if r["id"] == ids["a"])
    assert run["kind"] == "unlearn" and run["method"] == "finetune" and run["parent"] == ids["train"]
    assert run["scenario_label"] == "class 3" and run["task_label"] == "digits · mlp" and run["artifact_present"]
    assert run["n_forget"] > 0 and 0.0 <= run["metrics"]["acc_forget"] <= 1.0
    cols = {c["key"]: c for c in body["columns"]}
    assert {"acc_forget", "acc_test", "mia_lr_auc"} <= set(cols)
    assert cols["acc_test"]["goal"] in ("max", "reference") and cols["acc_test"]["help"]
    assert all(c["goal"] in ("max", "min", "zero", "reference", None) for c in body["columns"])
    # filters
    only = client.get("/api/v1/runs", params={"kind": "unlearn", "scenario": "class 3"}).json()["runs"]
    assert [r["id"] for r in only] == [ids["a"]]
    assert client.get("/api/v1/runs", params={"method": "nothing"}).json()["runs"] == []
    assert len(client.get("/api/v1/runs", params={"task": run["task_key"][:6]}).json()["runs"]) == 3


# --------------------------------------------------------------------------- the pair
def test_the_default_pair_is_a_run_and_its_reference(client, ws_home):
    _, ids = ws_home
    body = client.get("/api/v1/pair", params={"a": ids["a"][:7]}).json()
    assert body["a"]["id"] == ids["a"][:7] and body["a"]["run"] == ids["a"] and body["a"]["kind"] == "unlearn"
    assert body["b"]["id"] == f"reference:{ids['a']}" and body["b"]["kind"] == "reference"
    assert len(body["b"]["artifact"]) == 64 and body["b"]["method"] == "retrain"
    task = body["task"]
    assert task["modality"] == "classifier" and task["classes"] == [str(i) for i in range(10)]
    assert task["forget_classes"] == [3] and task["n_forget"] > 0 and body["views"] == ["classifier", "attack"]
    # a train run's default partner: the newest unlearn run made from it
    t = client.get("/api/v1/pair", params={"a": ids["train"]}).json()
    assert t["a"]["kind"] == "train" and t["b"]["run"] in (ids["a"], ids["c"])
    orig = client.get("/api/v1/pair", params={"a": ids["a"], "b": f"original:{ids['a']}"}).json()
    assert orig["b"]["kind"] == "original" and orig["b"]["artifact"] == t["a"]["artifact"]


def test_bad_pairs_answer_problems(client, ws_home):
    _, ids = ws_home
    body = _problem(client.get("/api/v1/pair", params={"a": ids["a"], "b": ids["other"]}), 422, "different-tasks")
    assert "different tasks" in body["detail"] and "digits · linear" in body["detail"]
    body = _problem(client.get("/api/v1/pair", params={"a": ids["a"], "b": ids["c"]}), 422, "different-forget-sets")
    assert "different sets" in body["detail"]
    _problem(client.get("/api/v1/classifier/classes", params={"a": ids["a"], "b": ids["other"]}), 422)
    _problem(client.get("/api/v1/pair", params={"a": "ffffffffff"}), 404, "unknown-run")
    _problem(client.get("/api/v1/pair", params={"a": "nonsense:x"}), 422, "bad-model")
    _problem(client.get("/api/v1/pair", params={"a": f"reference:{ids['train']}"}), 422, "no-reference")
    _problem(client.get("/api/v1/pair"), 422, "validation")
    _problem(client.get("/api/v1/classifier/embeddings", params={"a": ids["a"], "projection": "tsne"}), 422)
    _problem(client.get("/api/v1/classifier/embeddings", params={"a": ids["a"], "sample": 0}), 422)
    _problem(client.get("/api/v1/nothing/here"), 404)


# --------------------------------------------------------------------------- classifier views
def test_classes(client, ws_home):
    _, ids = ws_home
    body = client.get("/api/v1/classifier/classes", params={"a": ids["a"]}).json()
    assert body["splits"] == ["forget", "retain", "test"] and body["forget_classes"] == [3]
    acc = body["accuracy"]
    # class forgetting: the forget split holds class 3 only, the retain split every other class
    assert [i for i, v in enumerate(acc["a"]["forget"]) if v is not None] == [3]
    assert acc["a"]["retain"][3] is None and all(v is not None for i, v in enumerate(acc["a"]["retain"]) if i != 3)
    m = np.array(body["matrix"]["b"]["forget"])
    assert m.shape == (10, 10) and m.sum() == m[3].sum() > 0
    # the retrained reference never saw class 3: it gets (almost) none of it right
    assert acc["b"]["forget"][3] < 0.2
    assert np.trace(m) / m.sum() == pytest.approx(acc["b"]["forget"][3])
    run = client.get("/api/v1/runs", params={"kind": "unlearn", "scenario": "class 3"}).json()["runs"][0]
    assert acc["a"]["forget"][3] == pytest.approx(run["metrics"]["acc_forget"])


def test_embeddings_are_aligned_and_cached_per_parameters(client, ws_home):
    home, ids = ws_home
    body = client.get("/api/v1/classifier/embeddings", params={"a": ids["a"], "sample": 300}).json()
    n = len(body["sample"]["ids"])
    assert n == 300 and len(body["a"]) == len(body["b"]) == n and len(body["sample"]["label"]) == n
    assert set(body["sample"]["split"]) == {"forget", "retain", "test"}
    assert body["projection"] == "pca" and 0.0 <= body["procrustes_disparity"] <= 1.0
    assert body["layer"] == "input of net.5" and len(body["pred"]["a"]) == n
    forget_ids = set(client.get("/api/v1/attack", params={"a": ids["a"]}).json()["forget"]["ids"])
    assert {i for i, s in zip(body["sample"]["ids"], body["sample"]["split"]) if s == "forget"} <= forget_ids
    # a model against itself: the same points, disparity 0
    same = client.get("/api/v1/classifier/embeddings", params={"a": ids["a"], "b": ids["a"], "sample": 100}).json()
    assert same["procrustes_disparity"] == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(same["a"], same["b"], atol=1e-4)
    files = sorted((home / "ui-cache").glob("*.json"))
    again = client.get("/api/v1/classifier/embeddings", params={"a": ids["a"], "sample": 300}).json()
    assert again == body and sorted((home / "ui-cache").glob("*.json")) == files


def test_cka_against_original_and_reference(client, ws_home):
    _, ids = ws_home
    body = client.get("/api/v1/classifier/cka", params={"a": ids["a"]}).json()
    assert body["layers"] == ["net.1", "net.3", "net.5"] and body["n"] == 1000
    assert body["reference"]["id"] == f"reference:{ids['a']}" and body["reference_missing"] is None
    for key in ("a_vs_original", "a_vs_reference", "b_vs_original", "b_vs_reference", "a_vs_b"):
        assert len(body[key]) == 3 and all(0.0 <= v <= 1.0 for v in body[key]), key
    assert body["b_vs_reference"] == pytest.approx([1.0, 1.0, 1.0])  # b is the reference
    assert body["a_vs_b"] == pytest.approx(body["a_vs_reference"])
    # fine-tuning from the original stays closer to it than the retrain does (last layer)
    assert body["a_vs_original"][-1] > body["b_vs_original"][-1]


def test_instances(client, ws_home):
    _, ids = ws_home
    att = client.get("/api/v1/attack", params={"a": ids["a"]}).json()
    want = [att["forget"]["ids"][0], att["holdout"]["ids"][0]]
    rows = client.get("/api/v1/classifier/instances", params={"a": ids["a"], "ids": ",".join(want)}).json()["rows"]
    assert [r["id"] for r in rows] == want and [r["split"] for r in rows] == ["forget", "holdout"]
    for r in rows:
        assert r["label"] == 3 and r["input"]["kind"] == "image" and len(r["input"]["pixels"]) == 64
        for side in ("a", "b"):
            p = r[side]["probs"]
            assert len(p) == 10 and sum(p) == pytest.approx(1.0, abs=1e-4) and r[side]["pred"] == int(np.argmax(p))
            assert r[side]["loss"] == pytest.approx(-math.log(p[r["label"]]), rel=1e-3, abs=1e-4)
    assert client.get("/api/v1/classifier/instances", params={"a": ids["a"]}).json() == {"rows": []}
    body = _problem(client.get("/api/v1/classifier/instances", params={"a": ids["a"], "ids": "nope"}), 404)
    assert "nope" in body["detail"]


def test_attack_features_are_the_comparators(client, ws_home):
    home, ids = ws_home
    body = client.get("/api/v1/attack", params={"a": ids["a"]}).json()
    assert body["features"] == ["entropy", "confidence", "loss"] and body["bins"] == 201
    assert body["ranges"]["entropy"] == [0.0, 2.5] and body["temperatures"] == {"entropy": 2.0, "confidence": 1.0}
    run = Workspace.open(home, mode="r").store.get(ids["a"])
    assert set(body["forget"]["ids"]) == set(run.forget_ids)
    assert len(body["holdout"]["ids"]) == len(run.tags["split"]["holdout_ids"])
    for split in ("forget", "holdout"):
        for side in ("a", "b"):
            f = body[split][side]
            assert len(f["entropy"]) == len(f["confidence"]) == len(f["loss"]) == len(body[split]["ids"])
    # recompute model a's forget features from its own scores
    ma = models.resolve_model(Workspace.open(home, mode="r"), ids["a"])
    sc = views.scores_of(ma)["forget"]
    np.testing.assert_allclose(body["forget"]["a"]["entropy"], entropy_feature(sc.logits, 2.0), atol=1e-6)
    np.testing.assert_allclose(body["forget"]["a"]["confidence"], confidence_feature(sc.logits, 1.0), atol=1e-6)
    np.testing.assert_allclose(body["forget"]["a"]["loss"], sc.loss, atol=1e-6)
    u = body["ulira"]
    assert u["a"] is None and u["b"] is None and "privacy" in u["reason"]["a"] and u["summary"]["a"] is None
    assert _finite(body)


def test_attack_has_ulira_per_example_after_evaluate_privacy(home):
    """`evaluate --privacy 4` keeps U-LiRA per forget example; the attack view reads it for the
    run (ids = the run's forget set, aligned with the attack's forget ids) and says why the
    reference has none."""
    h, train = home
    run = _cli("unlearn", "--home", str(h), "--from", train, "--method", "finetune", "--scenario", "random:0.05")
    rid = run["run_id"]
    models.clear_caches()
    c = TestClient(create_app(Workspace.open(h, mode="existing")))  # trains the reference
    before = c.get("/api/v1/attack", params={"a": rid}).json()["ulira"]
    assert before["a"] is None and "privacy" in before["reason"]["a"]

    ev = _cli("evaluate", rid, "--home", str(h), "--privacy", "4")
    assert ev["privacy_file"] and ev["metrics"]["n_shadow"] == 4
    body = c.get("/api/v1/attack", params={"a": rid}).json()
    u = body["ulira"]
    forget = Workspace.open(h, mode="r").store.get(rid).forget_ids
    assert u["a"] is not None and u["reason"]["a"] is None and u["a"]["evaluation"] == ev["evaluation_id"]
    assert sorted(u["a"]["ids"]) == sorted(map(str, forget)) and set(u["a"]["ids"]) == set(body["forget"]["ids"])
    assert len(u["a"]["success"]) == len(u["a"]["auc"]) == len(forget) and u["a"]["n_shadow"] == 4
    assert all(0.0 <= v <= 1.0 for v in u["a"]["success"])
    assert np.mean(u["a"]["success"]) == pytest.approx(u["summary"]["a"]["ulira_acc"], abs=1e-9)
    assert u["b"] is None and "not a run" in u["reason"]["b"] and _finite(body)
    # the same answer with the models swapped, on the other side
    swapped = c.get("/api/v1/attack", params={"a": f"reference:{rid}", "b": rid}).json()["ulira"]
    assert swapped["b"] == u["a"] and swapped["a"] is None


# --------------------------------------------------------------------------- the cache
def test_a_cached_view_is_not_computed_again(ws_home, monkeypatch):
    home, ids = ws_home
    models.clear_caches()
    c = TestClient(create_app(Workspace.open(home, mode="existing")), raise_server_exceptions=False)
    params = {"a": ids["a"], "b": f"original:{ids['a']}"}
    before = set((home / "ui-cache").glob("*.json"))
    first = c.get("/api/v1/classifier/classes", params=params)
    assert first.status_code == 200
    new = set((home / "ui-cache").glob("*.json")) - before
    assert len(new) == 1 and json.loads(new.pop().read_text())["value"] == first.json()

    def boom(*a, **k):
        raise AssertionError("computed again")

    monkeypatch.setattr(analysis, "prediction_matrix", boom)
    assert c.get("/api/v1/classifier/classes", params=params).json() == first.json()
    # other inputs (the pair swapped) are another key: computed, so it fails here
    r = c.get("/api/v1/classifier/classes", params={"a": params["b"], "b": params["a"]})
    _problem(r, 500, "internal")
    assert "AssertionError" in r.json()["detail"] and "Traceback" not in r.text


def test_a_read_only_workspace_is_served_without_writing(ws_home, tmp_path):
    home, ids = ws_home
    copy = tmp_path / "ro"
    shutil.copytree(home, copy, ignore=shutil.ignore_patterns("ui-cache"))
    models.clear_caches()
    ws = Workspace.open(copy, mode="r")
    assert ws.read_only
    c = TestClient(create_app(ws))
    assert c.get("/api/v1/workspace").json()["read_only"] is True
    assert c.get("/api/v1/classifier/classes", params={"a": ids["a"]}).status_code == 200  # reference cached
    assert c.get("/api/v1/attack", params={"a": ids["a"], "b": f"original:{ids['a']}"}).status_code == 200
    assert not (copy / "ui-cache").exists()
    # c's reference was never trained: a read-only workspace cannot make it
    body = _problem(c.get("/api/v1/pair", params={"a": ids["c"]}), 409, "no-reference")
    assert "read-only" in body["detail"]


# --------------------------------------------------------------------------- bad workspaces and runs
def test_missing_artifact_and_failed_run(ws_home, tmp_path):
    home, ids = ws_home
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    ws = Workspace.open(copy, mode="existing")
    run = ws.store.get(ids["a"])
    gone = dataclasses.replace(run, id=new_run_id(), artifact="ab" * 32)
    failed = dataclasses.replace(run, id=new_run_id(), artifact=None, status="failed", error="diverged at step 3")
    ws.store.add(gone)
    ws.store.add(failed)
    models.clear_caches()
    c = TestClient(create_app(ws))
    body = _problem(c.get("/api/v1/pair", params={"a": gone.id}), 409, "missing-artifact")
    assert "missing" in body["detail"] and gone.id in body["detail"]
    assert next(r for r in c.get("/api/v1/runs").json()["runs"] if r["id"] == gone.id)["artifact_present"] is False
    body = _problem(c.get("/api/v1/classifier/classes", params={"a": failed.id}), 409, "no-model")
    assert "diverged" in body["detail"]
    # the original's file deleted: the task cannot be rebuilt, a 409 that says so
    ws.artifacts.path(ws.store.get(ids["train"]).artifact).unlink()
    models.clear_caches()
    _problem(c.get("/api/v1/pair", params={"a": ids["a"]}), 409, "missing-artifact")
    # two runs whose ids share a prefix
    for rid in ("aaaa0001", "aaaa0002"):
        ws.store.add(dataclasses.replace(run, id=rid))
    _problem(c.get("/api/v1/pair", params={"a": "aaaa"}), 422, "ambiguous-run")
    models.clear_caches()


def test_an_empty_workspace(tmp_path):
    ws = Workspace.open(tmp_path / "empty", mode="rw")
    c = TestClient(create_app(ws))
    assert c.get("/api/v1/workspace").json() == {
        "home": str(tmp_path / "empty"),
        "runs": 0,
        "modalities": [],
        "service": False,
        "read_only": False,
    }
    assert c.get("/api/v1/runs").json() == {"runs": [], "columns": []}
    _problem(c.get("/api/v1/pair", params={"a": "abc"}), 404, "unknown-run")
    _problem(c.get("/api/v1/attack", params={"a": "abc"}), 404)


# --------------------------------------------------------------------------- the page and optional views
def test_the_page_or_a_message_to_build_it(client, monkeypatch, tmp_path):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    empty = tmp_path / "no-bundle"
    empty.mkdir()
    monkeypatch.setattr(ui_app, "STATIC", empty)
    r = client.get("/")
    assert r.status_code == 200 and "make ui" in r.text and "api/v1/workspace" in r.text
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<!doctype html><title>bundle</title><script src='static/app.js'></script>")
    (static / "app.js").write_text("console.log(1)")
    monkeypatch.setattr(ui_app, "STATIC", static)
    assert "bundle" in client.get("/").text
    js = client.get("/static/app.js")
    assert js.status_code == 200 and js.text == "console.log(1)" and "javascript" in js.headers["content-type"]
    assert client.get("/app.js").text == "console.log(1)"
    _problem(client.get("/static/nothing.js"), 404)
    _problem(client.get("/static/..%2Fsecret"), 404)


def test_lm_and_request_routes_without_their_modules(client, ws_home):
    _, ids = ws_home
    if ui_app.optional_module("lm") is None:
        _problem(client.get("/api/v1/lm/overview"), 404, "not-available")
        _problem(client.get("/api/v1/lm/probes", params={"a": ids["a"]}), 404, "not-available")
    if ui_app.optional_module("requests") is None:
        _problem(client.get("/api/v1/requests"), 404, "not-available")
        _problem(client.get("/api/v1/requests/r1"), 404, "not-available")


def test_lm_and_request_routes_call_their_modules(client, monkeypatch):
    import types

    lm = types.SimpleNamespace(
        overview=lambda ws: {"runs": [], "x": float("nan")},
        probes=lambda ws, a, b: {"a": a, "b": b},
        questions=lambda ws, a, b, split: {"split": split},
        question=lambda ws, a, b, split, index: {"index": index},
    )
    req = types.SimpleNamespace(
        has_service=lambda ws: True, list_requests=lambda ws: {"requests": []}, request_detail=lambda ws, i: {"id": i}
    )
    monkeypatch.setattr(ui_app, "optional_module", lambda name: {"lm": lm, "requests": req}[name])
    assert client.get("/api/v1/lm/overview").json() == {"runs": [], "x": None}
    assert client.get("/api/v1/lm/probes", params={"a": "r1", "b": "r2"}).json() == {"a": "r1", "b": "r2"}
    assert client.get("/api/v1/lm/questions", params={"a": "r1", "split": "retain"}).json() == {"split": "retain"}
    assert client.get("/api/v1/lm/question", params={"a": "r1", "index": 2}).json() == {"index": 2}
    _problem(client.get("/api/v1/lm/questions", params={"a": "r1", "split": "both"}), 422)
    assert client.get("/api/v1/requests").json() == {"requests": []}
    assert client.get("/api/v1/requests/q7").json() == {"id": "q7"}
    req.has_service = lambda ws: False
    _problem(client.get("/api/v1/requests"), 404, "no-service")


# --------------------------------------------------------------------------- `unlearnkit ui` on bad input
def _main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    from unlearnkit.cli import main

    monkeypatch.setattr(sys, "argv", ["unlearnkit", "ui", *args])
    with pytest.raises(SystemExit) as e:
        main()
    return e.value.code, capsys.readouterr().err


def test_ui_command_bad_input(monkeypatch, capsys, tmp_path, ws_home):
    home, _ = ws_home
    code, err = _main(monkeypatch, capsys, "--home", str(tmp_path / "missing"), "--no-open")
    assert code == 2 and err.startswith("error: no workspace") and err.count("\n") == 1
    assert not (tmp_path / "missing").exists()
    for port in ("0", "70000"):
        code, err = _main(monkeypatch, capsys, "--home", str(home), "--port", port, "--no-open")
        assert code == 2 and err.startswith("error: --port must be in 1..65535") and "Traceback" not in err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, err = _main(monkeypatch, capsys, "--home", str(home), "--port", str(port), "--no-open")
    assert code == 2 and err.startswith(f"error: cannot listen on 127.0.0.1:{port}") and err.count("\n") == 1


def test_umap_projection_through_the_api(client, ws_home, monkeypatch):
    """projection=umap goes through umap-learn's UMAP (a stand-in here: the real one JIT-compiles
    for ~20 s); without the package it is a 501 problem that says what to install."""
    import types

    _, ids = ws_home
    calls = []

    class FakeUMAP:
        def __init__(self, **kw):
            calls.append(kw)

        def fit_transform(self, x):
            return np.asarray(x)[:, :2] * 2.0

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    body = client.get(
        "/api/v1/classifier/embeddings", params={"a": ids["a"], "projection": "umap", "sample": 50}
    ).json()
    assert body["projection"] == "umap" and len(body["a"]) == 50
    assert len(calls) == 2 and calls[0]["n_components"] == 2 and calls[0]["random_state"] is not None
    monkeypatch.setitem(sys.modules, "umap", None)
    r = client.get("/api/v1/classifier/embeddings", params={"a": ids["a"], "projection": "umap", "sample": 60})
    body = _problem(r, 501, "missing-dependency")
    assert "umap-learn" in body["detail"]
