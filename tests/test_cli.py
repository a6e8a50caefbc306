"""The CLI through its real entry point (a subprocess, as a user runs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(600)


def uk(*args: str, home: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "unlearnkit", *args]
    if home is not None:
        cmd += ["--home", str(home)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def js(p: subprocess.CompletedProcess):
    return json.loads(p.stdout)


def stored_runs(home: Path) -> int:
    """How many runs ``home``'s store holds, read in this process (read-only: opens no new
    file); the "nothing written" checks use it instead of a `runs list` process each."""
    from unlearnkit.orchestration.store import RunStore

    store = RunStore(Path(home) / "runs.db", mode="r")
    try:
        return len(store.list())
    finally:
        store.close()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    doc = js(uk("train", "--dataset", "digits", "--model", "mlp", "--epochs", "5", "--json", home=home))
    return home, doc


def test_methods_and_metrics_registries():
    ms = js(uk("methods", "--json"))
    names = {m["name"] for m in ms}
    assert {
        "retrain",
        "finetune",
        "gradient_ascent",
        "graddiff",
        "random_labels",
        "scrub",
        "npo",
        "salun",
        "sisa",
    } <= names
    for m in ms:
        assert m["citation"], m["name"]
    mets = js(uk("metrics", "--json"))
    assert len(mets) >= 5 and all(m["description"] for m in mets)
    assert "scrub" in uk("methods").stdout


def test_train_unlearn_evaluate_export(trained, tmp_path):
    home, doc = trained
    assert doc["metrics"]["acc_test"] > 0.8
    run = doc["run_id"]
    un = js(
        uk(
            "unlearn",
            "--from",
            run,
            "--method",
            "finetune",
            "-p",
            "epochs=1",
            "--scenario",
            "class:3",
            "--evaluate",
            "--json",
            home=home,
        )
    )
    m = un["metrics"]
    assert un["n_forget"] > 100
    for k in (
        "acc_forget",
        "acc_retain",
        "acc_test",
        "gap_acc_forget",
        "mia_lr_auc",
        "forget_quality",
        "js_forget",
        "cost_ratio_time",
    ):
        assert k in m
    assert 0 <= m["acc_forget"] <= 1
    out = tmp_path / "scores.csv"
    ev = js(uk("evaluate", un["run_id"], "--export-scores", str(out), "--json", home=home))
    assert ev["metrics"]["acc_forget"] == pytest.approx(m["acc_forget"])
    import pandas as pd

    df = pd.read_csv(out)
    assert {"example_id", "split", "model_role", "loss", "confidence", "pred", "label"} <= set(df.columns)
    assert set(df["model_role"]) == {"model", "reference", "original"}
    # the exported scores reproduce the metric independently
    f = df[(df.split == "forget") & (df.model_role == "model")]
    assert (f.pred == f.label).mean() == pytest.approx(m["acc_forget"])
    listed = js(uk("runs", "list", "--json", home=home))
    assert {r["id"] for r in listed} >= {run, un["run_id"]}
    shown = js(uk("runs", "show", un["run_id"][:8], "--json", home=home))
    assert shown["parent"] == run and shown["forget_fingerprint"]
    rep = js(uk("report", "--out", str(tmp_path / "rep"), "--json", home=home))
    assert Path(rep["html"]).exists()


def test_unlearn_by_ids_and_subjects(trained, tmp_path):
    home, doc = trained
    shown = js(uk("runs", "show", doc["run_id"], "--json", home=home))
    from unlearnkit.data import load_dataset

    d = load_dataset("digits")
    subj = tmp_path / "subjects.txt"
    subj.write_text("subject-001\nsubject-002\n")
    un = js(
        uk(
            "unlearn",
            "--from",
            doc["run_id"],
            "--method",
            "gradient_ascent",
            "-p",
            "max_steps=2",
            "--forget-subjects",
            str(subj),
            "--json",
            home=home,
        )
    )
    assert un["n_forget"] > 0
    assert shown["kind"] == "train"
    del d


@pytest.mark.parametrize(
    "content,needle",
    [
        ("no-such-id\n", "not in"),
        ("", "empty"),
    ],
)
def test_bad_forget_ids_fail_cleanly(trained, tmp_path, content, needle):
    home, doc = trained
    before = stored_runs(home)
    f = tmp_path / "ids.txt"
    f.write_text(content)
    p = uk("unlearn", "--from", doc["run_id"], "--method", "finetune", "--forget-ids", str(f), home=home, check=False)
    assert p.returncode == 2
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0]
    assert stored_runs(home) == before


def test_bad_input_errors(trained, tmp_path):
    home, doc = trained
    p = uk("unlearn", "--from", doc["run_id"], "--method", "nope", "--scenario", "class:3", home=home, check=False)
    assert p.returncode == 2 and "unknown method" in p.stderr
    p = uk("runs", "show", "ffffffffff", home=home, check=False)
    assert p.returncode == 2 and p.stderr.startswith("error:")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    p = uk("runs", "list", home=blocker / "sub", check=False)
    assert p.returncode == 2 and p.stderr.startswith("error:")
    p = uk("evaluate", doc["run_id"], "--export-scores", str(tmp_path / "x.txt"), home=home, check=False)
    assert p.returncode == 2


def test_divergence_leaves_store_clean(trained):
    home, doc = trained
    before = stored_runs(home)
    p = uk(
        "unlearn",
        "--from",
        doc["run_id"],
        "--method",
        "gradient_ascent",
        "-p",
        "lr=1e12",
        "-p",
        "grad_clip=null",
        "-p",
        "epochs=5",
        "--scenario",
        "class:3",
        home=home,
        check=False,
    )
    assert p.returncode == 2 and "error:" in p.stderr, p.stderr
    assert stored_runs(home) == before


def test_demo_json(tmp_path):
    out = tmp_path / "demo"
    doc = js(uk("demo", "--out", str(out), "--methods", "finetune,scrub", "--model", "mlp", "--json"))
    roles = {(m["scenario"], m["model"]) for m in doc["models"]}
    scenarios = {m["scenario"] for m in doc["models"]}
    assert len(scenarios) == 2
    for s in scenarios:
        assert {(s, "original"), (s, "retrain"), (s, "finetune"), (s, "scrub")} <= roles
    html = Path(doc["report"]["html"])
    assert html.exists() and "data:image/png;base64" in html.read_text()


def test_bench_grid(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "dataset: digits\nmodel: linear\nseeds: [0, 1]\nscenarios: ['random:0.1']\n"
        "methods: [finetune, {name: graddiff, params: {epochs: 1}}]\nworkers: 1\n"  # Ray: test_sweep.py
    )
    home = tmp_path / "home"
    doc = js(uk("bench", str(grid), "--json", "--out", str(tmp_path / "rep"), home=home))
    # per seed: original + reference + 2 methods
    assert len(doc["runs"]) == 8
    assert len(js(uk("runs", "list", "--json", home=home))) == 8
    bad = tmp_path / "bad.yaml"
    bad.write_text("methods: [nope]\n")
    p = uk("bench", str(bad), home=home, check=False)
    assert p.returncode == 2 and "unknown method" in p.stderr


def test_train_on_users_csv(tmp_path):
    """`train` on the user's own table with a named label column, ids and subjects."""
    import numpy as np
    import pandas as pd

    g = np.random.default_rng(0)
    n = 200
    y = g.integers(0, 2, n)
    df = pd.DataFrame(
        {
            "row": [f"r{i}" for i in range(n)],
            "person": [f"p{i % 25}" for i in range(n)],
            "f1": g.normal(size=n) + 2 * y,
            "f2": g.normal(size=n),
            "outcome": np.where(y == 1, "yes", "no"),
        }
    )
    csv = tmp_path / "people.csv"
    df.to_csv(csv, index=False)
    home = tmp_path / "home"
    doc = js(
        uk(
            "train",
            "--dataset",
            str(csv),
            "--label",
            "outcome",
            "--id-column",
            "row",
            "--subject-column",
            "person",
            "--model",
            "linear",
            "--json",
            home=home,
        )
    )
    assert doc["n_train"] + doc["n_test"] < n and doc["metrics"]["acc_test"] > 0.7
    subj = tmp_path / "s.txt"
    subj.write_text("p3\n")
    un = js(
        uk(
            "unlearn",
            "--from",
            doc["run_id"],
            "--method",
            "finetune",
            "--forget-subjects",
            str(subj),
            "--json",
            home=home,
        )
    )
    assert 0 < un["n_forget"] <= 8
    p = uk("train", "--dataset", str(csv), "--label", "nope", home=home, check=False)
    assert p.returncode == 2 and "nope" in p.stderr


def test_certified_removal_through_the_cli(tmp_path):
    """A linear model trained to the optimum of its (objective-perturbed) objective; certified
    removal matches the retrained reference."""
    home = tmp_path / "home"
    doc = js(
        uk("train", "--model", "linear", "--trainer", "linear_optimum", "--objective-noise", "0.1", "--json", home=home)
    )
    un = js(
        uk(
            "unlearn",
            "--from",
            doc["run_id"],
            "--method",
            "certified_removal",
            "--scenario",
            "random:0.02",
            "--evaluate",
            "--json",
            home=home,
        )
    )
    m = un["metrics"]
    assert max(m["gap_acc_forget"], m["gap_acc_retain"], m["gap_acc_test"]) <= 0.01
    assert m["js_test"] < 1e-4 and m["cost_ratio_time"] < 1
    ex = un["extra"]  # the method's own report, also kept with the run
    assert 0 < ex["certified_epsilon"] < float("inf") and ex["gradient_residual_norm"] <= ex["gradient_residual_bound"]
    p = uk("train", "--model", "mlp", "--trainer", "linear_optimum", home=home, check=False)
    assert p.returncode == 2 and "linear" in p.stderr
    p = uk("train", "--model", "linear", "--objective-noise", "1", home=home, check=False)
    assert p.returncode == 2 and "linear_optimum" in p.stderr


def test_evaluate_with_per_example_privacy(trained):
    home, doc = trained
    un = js(
        uk(
            "unlearn",
            "--from",
            doc["run_id"],
            "--method",
            "finetune",
            "-p",
            "epochs=1",
            "--scenario",
            "random:0.05",
            "--json",
            home=home,
        )
    )
    ev = js(uk("evaluate", un["run_id"], "--privacy", "4", "--json", home=home))
    m = ev["metrics"]
    assert 0 <= m["ulira_auc"] <= 1 and 0 <= m["competition_score"] <= 1 and m["n_shadow"] == 4
    p = uk("evaluate", doc["run_id"], "--privacy", "4", home=home, check=False)
    assert p.returncode == 2 and "unlearn run" in p.stderr
