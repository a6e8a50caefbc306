"""Bad input through the CLI: each case is one line ``error: ...`` on stderr, exit status 2,
and nothing written (no run, no artifact, no store, no workspace). The commands run in this
process through the console-script entry point (``unlearnkit.cli.main``) on tiny data."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(600)


def uk(*args: str, home: Path | None = None) -> tuple[int, str, str]:
    """Run ``unlearnkit ARGS [--home HOME]``; return (exit status, stdout, stderr)."""
    from unlearnkit.cli import main

    argv = ["unlearnkit", *args] + (["--home", str(home)] if home is not None else [])
    out, err = io.StringIO(), io.StringIO()
    old = sys.argv
    sys.argv = argv
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old
    return code, out.getvalue(), err.getvalue()


def ok(*args: str, home: Path | None = None):
    code, out, err = uk(*args, "--json", home=home)
    assert code == 0, f"{args} exited {code}: {err}"
    return json.loads(out)


def refused(*args: str, home: Path | None = None, needle: str | None = None) -> str:
    """Assert the one-line error contract; return the message."""
    code, out, err = uk(*args, home=home)
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    if needle is not None:
        assert needle in lines[0], lines[0]
    return lines[0]


def _store_content(path: Path) -> str:
    """The SQLite store's rows (read-only, the write-ahead log included): its bytes change
    when SQLite checkpoints the log into the file, which an earlier command's connection may
    do whenever it is closed, with no row written."""
    import hashlib
    import sqlite3

    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return hashlib.sha256("\n".join(con.iterdump()).encode()).hexdigest()
    finally:
        con.close()


def snapshot(root: Path) -> dict:
    """Every file under ``root`` with its size and mtime, the store by its rows (what 'nothing
    written' compares)."""
    return {
        str(p.relative_to(root)): _store_content(p) if p.suffix == ".db" else (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = tmp_path_factory.mktemp("home")
    ok("train", "--dataset", "iris", "--model", "linear", "--epochs", "1", home=h)
    return h


@pytest.fixture(scope="module")
def train_run(home):
    return ok("runs", "list", "--kind", "train", home=home)[0]["id"]


def runs(home: Path) -> int:
    return len(ok("runs", "list", home=home))


@pytest.mark.parametrize(
    "param, needle",
    [
        ("epochs=abc", "epochs"),
        ("lr=[1,2]", "lr"),
        ("lr=nan", "finite"),
        ("epochs=inf", "finite"),
    ],
)
def test_bad_hyperparameters(home, train_run, param, needle):
    before = snapshot(home)
    refused(
        "unlearn",
        "--from",
        train_run,
        "--method",
        "finetune",
        "-p",
        param,
        "--scenario",
        "class:1",
        home=home,
        needle=needle,
    )
    assert snapshot(home) == before


def test_train_epochs_nan(tmp_path):
    refused("train", "--dataset", "iris", "--epochs", "nan", home=tmp_path / "h", needle="--epochs")
    assert not (tmp_path / "h").exists()


def test_binary_subject_file(home, train_run, tmp_path):
    f = tmp_path / "subjects.bin"
    f.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" + bytes(range(256)))
    before = snapshot(home)
    refused(
        "unlearn",
        "--from",
        train_run,
        "--method",
        "finetune",
        "--forget-subjects",
        str(f),
        home=home,
        needle="text file",
    )
    assert snapshot(home) == before


def test_export_scores_to_unwritable_path(home, tmp_path):
    un = ok(
        "unlearn",
        "--from",
        ok("runs", "list", "--kind", "train", home=home)[0]["id"],
        "--method",
        "finetune",
        "-p",
        "epochs=1",
        "--scenario",
        "class:1",
        home=home,
    )["run_id"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    before = snapshot(home)
    refused("evaluate", un, "--export-scores", str(blocker / "scores.csv"), home=home, needle="--export-scores")
    refused("evaluate", un, "--export-scores", str(tmp_path / "no" / "such" / "s.csv"), home=home)
    assert snapshot(home) == before  # checked before any compute or store update
    assert ok("runs", "show", un, home=home)["metrics"] == {}


def test_bench_workers_and_bad_grid_params(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("dataset: iris\nmodel: linear\nmethods: [finetune]\n")
    refused("bench", str(grid), "--workers", "-3", home=tmp_path / "h", needle="--workers")
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: iris\nmodel: linear\nmethods: [{name: finetune, params: {epochs: abc}}]\n")
    refused("bench", str(bad), home=tmp_path / "h", needle="epochs")
    bad.write_text("dataset: iris\nmodel: linear\nworkers: -1\nmethods: [finetune]\n")
    refused("bench", str(bad), home=tmp_path / "h", needle="workers")
    assert not (tmp_path / "h").exists()  # failed before training: no store, no orphan artifact


@pytest.mark.parametrize("url", ["postgresql:/dbhost/runs", "::::"])
def test_malformed_store_url_is_refused(tmp_path, url, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for cmd in (["runs", "list"], ["train", "--dataset", "iris", "--epochs", "1"]):
        refused(*cmd, "--store", url, home=tmp_path / "h", needle="malformed")
    assert not (tmp_path / "h" / "runs.db").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["h"])  # no new store file anywhere
    assert not any((tmp_path / "h").rglob("*")) if (tmp_path / "h").exists() else True


def test_read_commands_never_create_a_workspace(tmp_path):
    missing = tmp_path / "nope"
    for cmd in (
        ["runs", "list"],
        ["runs", "show", "abc"],
        ["report", "--out", str(tmp_path / "r")],
        ["evaluate", "abc"],
    ):
        refused(*cmd, home=missing, needle="no workspace")
    assert not missing.exists()
    missing.mkdir()
    refused("runs", "list", home=missing, needle="no run store")
    assert list(missing.iterdir()) == []


def _read_only(monkeypatch, root: Path) -> None:
    """Make the workspace ``root`` look read-only (as to an auditor without write access):
    tests may run as root, to whom permission bits do not apply."""
    real = os.access
    root = root.resolve()

    def access(path, mode, *a, **kw):
        p = Path(path).resolve()
        if mode & os.W_OK and (p == root or root in p.parents):
            return False
        return real(path, mode, *a, **kw)

    monkeypatch.setattr(os, "access", access)


def test_read_only_workspace(home, train_run, monkeypatch):
    ok("unlearn", "--from", train_run, "--method", "finetune", "-p", "epochs=1", "--scenario", "class:2", home=home)
    _read_only(monkeypatch, home)
    before = snapshot(home)
    listed = ok("runs", "list", home=home)
    assert listed and ok("runs", "show", listed[0]["id"], home=home)["id"] == listed[0]["id"]
    code, out, err = uk("runs", "list", home=home)
    assert code == 0 and "original" in out
    # evaluate reads: it prints the metrics and stores nothing
    un = [r for r in listed if r["kind"] == "unlearn"][0]["id"]
    code, out, err = uk("evaluate", un, "--json", home=home)
    assert code == 0 and "not stored" in err and json.loads(out)["stored"] is False
    assert json.loads(out)["metrics"]["acc_forget"] >= 0
    assert snapshot(home) == before
    # a read-only store is found before any unlearning work
    train = [r for r in listed if r["kind"] == "train"][0]["id"]
    refused(
        "unlearn", "--from", train, "--method", "finetune", "--scenario", "class:1", home=home, needle="not writable"
    )
    assert snapshot(home) == before


def test_read_only_store_found_before_unlearning(home, train_run, monkeypatch):
    _read_only(monkeypatch, home / "runs.db")
    before = snapshot(home)
    refused(
        "unlearn", "--from", train_run, "--method", "finetune", "--scenario", "class:1", home=home, needle="read-only"
    )
    assert snapshot(home) == before  # no orphan artifact


def test_csv_with_an_infinite_feature(tmp_path):
    import numpy as np
    import pandas as pd

    g = np.random.default_rng(0)
    df = pd.DataFrame({"height": g.normal(size=40), "weight": g.normal(size=40), "y": [0, 1] * 20})
    df.loc[7, "weight"] = np.inf
    csv = tmp_path / "t.csv"
    df.to_csv(csv, index=False)
    msg = refused(
        "train",
        "--dataset",
        str(csv),
        "--label",
        "y",
        "--model",
        "linear",
        "--epochs",
        "1",
        home=tmp_path / "h",
        needle="weight",
    )
    assert "infinite" in msg and "learning rate" not in msg and "height" not in msg


def test_train_records_no_forget_scenario(home):
    rec = ok("runs", "list", "--kind", "train", home=home)[0]
    assert rec["scenario"] == {} and "acc_forget" not in rec["metrics"]
    code, out, _ = uk("runs", "list", "--kind", "train", home=home)
    row = out.splitlines()[2].split()
    assert code == 0 and row[6] == "-"


def test_data_ids(tmp_path):
    ids = ok("data", "ids", "iris")
    assert len(ids) == 150 and len(set(ids)) == 150
    train = ok("data", "ids", "iris", "--split", "train", "--seed", "0")
    assert 0 < len(train) < 150 and set(train) <= set(ids)
    subjects = ok("data", "ids", "iris", "--subjects")
    assert 0 < len(subjects) < 150
    code, out, _ = uk("data", "ids", "iris", "--subjects")
    assert code == 0 and out.split() == subjects
    # a table's own id and subject columns
    import pandas as pd

    pd.DataFrame(
        {"row": ["a", "b", "c", "d"], "who": ["p1", "p1", "p2", "p3"], "x": [1.0, 2, 3, 4], "y": [0, 1, 0, 1]}
    ).to_csv(tmp_path / "t.csv", index=False)
    assert ok(
        "data", "ids", str(tmp_path / "t.csv"), "--label", "y", "--id-column", "row", "--subject-column", "who"
    ) == list("abcd")
    assert ok(
        "data",
        "ids",
        str(tmp_path / "t.csv"),
        "--label",
        "y",
        "--id-column",
        "row",
        "--subject-column",
        "who",
        "--subjects",
    ) == ["p1", "p2", "p3"]
    refused("data", "ids", "iris", "--split", "nope", needle="--split")
    refused("data", "ids", "no-such-dataset", needle="no-such-dataset")


def test_data_ids_of_profiles():
    people = ok("data", "ids", "--task", "profiles", "--subjects", "--people", "10", "--qa-per-person", "3")
    assert {f"p{i:04d}" for i in range(10)} <= set(people)  # the training people (and the `other` people)
    rows = ok("data", "ids", "--task", "profiles", "--people", "10", "--qa-per-person", "3")
    assert len(rows) > len(people)


def test_the_readme_grid_exists_and_is_valid():
    from unlearnkit.orchestration.bench import load_grid

    grid = load_grid(Path(__file__).parent.parent / "benchmarks" / "grid.yaml")
    assert grid.dataset == "digits" and grid.model == "mlp" and len(grid.seeds) == 1
    assert len(grid.method_specs()) == 2


def test_no_modality_name_tests_in_the_cli():
    import re

    root = Path(__file__).parent.parent / "src" / "unlearnkit"
    pattern = re.compile(r"""[!=]=\s*["'](causal_lm|classifier)["']|\bis_lm\b""")
    for f in [*(root / "cli").glob("*.py"), root / "orchestration" / "bench.py"]:
        hits = [ln for ln in f.read_text().splitlines() if pattern.search(ln)]
        assert not hits, (f, hits)
