"""The recommender modality through the CLI (in process, tests/cli_support.py): train,
unlearn with the recommender methods, bad input as one-line errors with nothing written,
and evaluate / bench / report once retrain serves recommenders (a shared-file change:
the test gives the retrain class the modality for its duration)."""

from __future__ import annotations

import json

import pytest

from cli_support import cli, cli_json
from unlearnkit.methods import METHODS


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("rec-home")


@pytest.fixture
def trained(capsys, monkeypatch, home):
    doc = cli_json(
        capsys,
        monkeypatch,
        "train",
        "--task",
        "recsys",
        "--dataset",
        "synthetic:100:60",
        "--model",
        "bpr",
        "--epochs",
        "15",
        "--json",
        home=home,
    )
    return doc


def _runs(home) -> int:
    import sqlite3

    with sqlite3.connect(home / "runs.db") as db:
        return db.execute("select count(*) from runs").fetchone()[0]


def test_train_and_unlearn(capsys, monkeypatch, home, trained):
    assert trained["modality"] == "recommender" and trained["metrics"]["hr10_test"] > 0.2
    for method, scenario in (("cragru", "users:2"), ("receraser", "interactions:0.05")):
        doc = cli_json(
            capsys, monkeypatch, "unlearn", "--from", trained["run_id"], "--method", method, "--scenario", scenario,
            "--param", "num_shards=3" if method == "receraser" else "history_limit=5", "--json", home=home,
        )  # fmt: skip
        assert doc["method"] == method and doc["run_id"]


@pytest.mark.parametrize(
    "args, match",
    [
        (("--scenario", "item:no-such-item"), "item 'no-such-item' is not in the data"),
        (("--scenario", "users:100"), "nothing would remain"),
        (("--scenario", "edges:0.1"), "unknown recommender scenario"),
        (("--forget-ids", "IDS"), "not among the training interactions"),
        (("--forget-subjects", "SUBJ"), "subject id(s) not in"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(capsys, monkeypatch, home, trained, tmp_path, args, match):
    (tmp_path / "ids").write_text("user:u0/item:i999\n")
    (tmp_path / "subj").write_text("nobody\n")
    args = tuple(str(tmp_path / "ids") if a == "IDS" else str(tmp_path / "subj") if a == "SUBJ" else a for a in args)
    before = _runs(home)
    code, out, err = cli(
        capsys, monkeypatch, "unlearn", "--from", trained["run_id"], "--method", "cragru", *args, home=home
    )
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and match in lines[0], err
    assert "Traceback" not in err and _runs(home) == before


def test_training_bad_dataset(capsys, monkeypatch, home, tmp_path):
    bad = tmp_path / "u.data"
    bad.write_text("1\t2\n")
    code, _, err = cli(capsys, monkeypatch, "train", "--task", "recsys", "--dataset", str(bad), home=home)
    assert code == 2 and err.strip().startswith("error: u.data line 1") and "\n" not in err.strip()
    code, _, err = cli(capsys, monkeypatch, "train", "--task", "recsys", "--model", "gcn", home=home)
    assert code == 2 and "unknown recommender 'gcn'" in err


def test_evaluate_bench_report_once_retrain_serves_recommenders(capsys, monkeypatch, home, trained, tmp_path):
    retrain = METHODS["retrain"]
    if "recommender" not in retrain.modalities:  # the shared change this modality needs
        monkeypatch.setattr(retrain, "modalities", (*retrain.modalities, "recommender"))
    doc = cli_json(
        capsys, monkeypatch, "unlearn", "--from", trained["run_id"], "--method", "cragru", "--scenario", "users:3",
        "--json", home=home,
    )  # fmt: skip
    ev = cli_json(capsys, monkeypatch, "evaluate", doc["run_id"], "--json", home=home)
    metrics = ev.get("metrics", ev)
    for key in ("ndcg10_retained", "gap_ndcg10_retained", "jaccard10_forgotten", "unlearning_bias", "cost_ratio_time"):
        assert key in metrics, sorted(metrics)
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "task: recsys\nmodel: bpr\noptions: {dataset: synthetic:100:60, epochs: 10}\nmethods: [cragru]\n"
        "scenarios: [users:2]\nseeds: [0]\n"
    )
    bench = cli_json(capsys, monkeypatch, "bench", str(grid), "--json", home=home)
    assert json.dumps(bench)
    out = tmp_path / "report"
    cli_json(capsys, monkeypatch, "report", "--out", str(out), "--json", home=home)
    assert "ndcg10_retained" in (out / "report.md").read_text()


def test_movielens_file_and_a_person(capsys, monkeypatch, home, tmp_path):
    """A MovieLens u.data file on disk: train on it, then delete one person by subject id."""
    import numpy as np

    rng = np.random.default_rng(0)
    lines = [f"{u}\t{i}\t{rng.integers(1, 6)}\t{880000000 + k}" for k, (u, i) in enumerate(
        sorted({(int(rng.integers(1, 41)), int(rng.integers(1, 31))) for _ in range(500)}))]  # fmt: skip
    data = tmp_path / "u.data"
    data.write_text("\n".join(lines) + "\n")
    doc = cli_json(capsys, monkeypatch, "train", "--task", "recsys", "--dataset", str(data), "--epochs", "5",
                   "--json", home=home)  # fmt: skip
    assert doc["dataset"] == "movielens-u" and doc["n_train"] + doc["n_test"] == len(lines)
    (tmp_path / "people").write_text("7\n")
    out = cli_json(capsys, monkeypatch, "unlearn", "--from", doc["run_id"], "--method", "cragru",
                   "--forget-subjects", str(tmp_path / "people"), "--json", home=home)  # fmt: skip
    trained_on = [line for line in lines if line.startswith("7\t")]
    # every interaction of person 7 but the one held out for testing
    assert out["method"] == "cragru" and out["n_forget"] == len(trained_on) - 1
    assert out["extra"]["affected_users"] == 1
