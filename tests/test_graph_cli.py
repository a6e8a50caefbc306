"""Graph runs through the CLI (in process: PyG's import is paid once): train a link
predictor on the karate club, unlearn edges named in a file, evaluate; bad input (an edge
not in the graph, a deletion removing every edge, feature deletion on a featureless graph)
gives one ``error:`` line, exit status 2 and nothing stored."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch_geometric")

from cli_support import cli as uk  # noqa: E402


def test_train_unlearn_evaluate_and_bad_input(tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    code, out, err = uk(
        capsys,
        monkeypatch,
        "train",
        "--task",
        "graph-link",
        "--dataset",
        "karate",
        "--epochs",
        "60",
        "--json",
        home=home,
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["modality"] == "graph" and doc["dataset"] == "karate" and 0.5 < doc["metrics"]["auc_test"] <= 1
    run = doc["run_id"]
    ids = tmp_path / "edges.txt"
    ids.write_text("edge:0-3\nedge:0-5\n")
    code, out, err = uk(
        capsys,
        monkeypatch,
        "unlearn",
        "--from",
        run,
        "--method",
        "finetune",
        "--forget-ids",
        str(ids),
        "--evaluate",
        "--json",
        home=home,
    )
    assert code == 0, err
    u = json.loads(out)
    m = u["metrics"]
    assert {"dt_auc", "df_auc", "mi_ratio", "gap_df_auc", "cost_ratio_time"} <= set(m)
    assert u["n_forget"] == 2
    from unlearnkit.utils import fingerprint_ids

    assert u["forget_fingerprint"] == fingerprint_ids(["edge:0-3", "edge:0-5"])
    code, out, err = uk(capsys, monkeypatch, "evaluate", u["run_id"], "--json", home=home)
    assert code == 0, err
    assert json.loads(out)["metrics"]["dt_auc"] == pytest.approx(m["dt_auc"])

    code, out, _ = uk(capsys, monkeypatch, "runs", "list", "--json", home=home)
    n_runs = len(json.loads(out))
    bad = tmp_path / "bad.txt"
    for args, words in (
        (["--forget-ids", str(bad)], "edge:0-99 (no such node)"),
        (["--scenario", "edges:1.0"], "removes every edge"),
        (["--scenario", "features:0.1"], "no node features"),
    ):
        bad.write_text("edge:0-99\n")
        code, out, err = uk(capsys, monkeypatch, "unlearn", "--from", run, "--method", "npo", *args, home=home)
        assert code == 2 and err.startswith("error: ") and words in err and len(err.strip().splitlines()) == 1, err
    code, out, _ = uk(capsys, monkeypatch, "runs", "list", "--json", home=home)
    assert len(json.loads(out)) == n_runs  # nothing written


def test_node_classification_train(tmp_path, capsys, monkeypatch):
    code, out, err = uk(
        capsys,
        monkeypatch,
        "train",
        "--task",
        "graph",
        "--dataset",
        "sbm:80",
        "--model",
        "sage",
        "--epochs",
        "40",
        "--json",
        home=tmp_path,
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["metrics"]["acc_train"] > 0.8 and doc["n_test"] == 16
    code, _, err = uk(capsys, monkeypatch, "train", "--task", "graph", "--dataset", "nope", home=tmp_path)
    assert code == 2 and "unknown graph 'nope'" in err


def test_bench_grid_and_report_on_graph_runs(tmp_path, capsys, monkeypatch):
    """A bench grid of a graph task (scenarios as strings and as mappings) stores every run,
    and `report` tables them with the graph metrics (DT/DF AUC), not a classifier's."""
    home = tmp_path / "home"
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "task: graph-link\ndataset: karate\nmodel: gcn\nseeds: [0]\n"
        "options: {epochs: 30}\n"
        'scenarios: ["edges-in:3", {kind: edge-class, label: 0}]\n'
        "methods: [utu, {name: finetune, params: {epochs: 2}}]\nworkers: 1\n"
    )
    code, out, err = uk(capsys, monkeypatch, "bench", str(grid), "--json", home=home)
    assert code == 0, err
    code, out, err = uk(capsys, monkeypatch, "runs", "list", "--json", home=home)
    runs = json.loads(out)
    unlearn = [r for r in runs if r["kind"] == "unlearn"]
    assert sorted((r["method"], r["scenario"]["kind"]) for r in unlearn) == [
        ("finetune", "edge-class"),
        ("finetune", "edges-in"),
        ("utu", "edge-class"),
        ("utu", "edges-in"),
    ]
    code, out, err = uk(capsys, monkeypatch, "report", "--out", str(tmp_path / "rep"), "--json", home=home)
    assert code == 0, err
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "dt_auc" in md and "df_auc" in md and "acc_test" not in md
    assert (tmp_path / "rep" / "report.html").is_file()


def test_forget_edges_and_nodes_files(tmp_path, capsys, monkeypatch):
    """--forget-edges takes 'u v', 'u,v', 'u-v' or 'edge:u-v' lines in either order; --forget-nodes
    node ids; both become the same ids --forget-ids takes. Bad lines, missing files and a
    classifier run are one error line, exit 2, nothing stored."""
    home = tmp_path / "home"
    args = ("train", "--task", "graph-link", "--dataset", "karate", "--epochs", "20", "--json")
    code, out, err = uk(capsys, monkeypatch, *args, home=home)
    assert code == 0, err
    run = json.loads(out)["run_id"]
    from unlearnkit.modalities import get_modality
    from unlearnkit.orchestration.experiment import Workspace

    store = Workspace.open(home).store
    task = get_modality("graph").task_from_spec(store.get(run).task_spec)
    train_edges = [str(i) for i in task.train.example_ids if str(i).startswith("edge:")][:4]
    pairs = [e.removeprefix("edge:").split("-") for e in train_edges]
    (a, b), (c, d), (e, f), (g, h) = pairs
    (tmp_path / "edges.txt").write_text(f"{b} {a}\n{c},{d}\n{f}-{e}\n# a comment\nedge:{g}-{h}\n")
    (tmp_path / "nodes.txt").write_text("node:11\n11\n")
    base = ("unlearn", "--from", run, "--method", "utu", "--json")
    code, out, err = uk(capsys, monkeypatch, *base, "--forget-edges", str(tmp_path / "edges.txt"), home=home)
    assert code == 0, err
    assert sorted(store.get(json.loads(out)["run_id"]).forget_ids) == sorted(train_edges)
    code, out, err = uk(capsys, monkeypatch, *base, "--forget-nodes", str(tmp_path / "nodes.txt"), home=home)
    assert code == 0, err
    ids = store.get(json.loads(out)["run_id"]).forget_ids
    assert "node:11" in ids and any(i.startswith("edge:") for i in ids) and len(ids) == len(set(ids))  # with its edges
    code, out, _ = uk(capsys, monkeypatch, "runs", "list", "--json", home=home)
    n_runs = len(json.loads(out))
    (tmp_path / "bad.txt").write_text("0 1\n0 99\nx\n")
    (tmp_path / "nonedge.txt").write_text("16 25\n")
    for flag, path, words in (
        ("--forget-edges", "bad.txt", "2 line(s) name no edge"),
        ("--forget-nodes", "bad.txt", "3 line(s) name no node"),
        ("--forget-edges", "missing.txt", "cannot read"),
        ("--forget-edges", "nonedge.txt", "not an edge"),
    ):
        code, _, err = uk(capsys, monkeypatch, *base, flag, str(tmp_path / path), home=home)
        assert code == 2 and err.startswith("error: ") and words in err and len(err.strip().splitlines()) == 1, err
    code, _, err = uk(
        capsys, monkeypatch, *base, "--forget-edges", str(tmp_path / "edges.txt"), "--scenario", "edges:1", home=home
    )
    assert code == 2 and "exactly one of" in err
    code, out, _ = uk(capsys, monkeypatch, "runs", "list", "--json", home=home)
    assert len(json.loads(out)) == n_runs
