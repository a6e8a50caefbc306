"""``unlearnkit federated train / unlearn / evaluate`` in process (tests/cli_support.py),
bad input refused with one line and nothing written."""

from __future__ import annotations

import contextlib
import io
import json
import sys

import numpy as np
import pytest

import unlearnkit.cli.federated  # noqa: F401  (registers the command group)
from cli_support import cli, cli_json
from unlearnkit.cli import main
from unlearnkit.data.loaders import load_dataset
from unlearnkit.data.scenarios import partition
from unlearnkit.modalities.federated.partition import partition_clients


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("fedcli")


@pytest.fixture(scope="module")
def trained(home):
    """One federation for the module (3 clients, 3 rounds, client-02 joining at round 2)."""
    argv = ["unlearnkit", "federated", "train", "--clients", "3", "--rounds", "3", "--join", "client-02:2"]
    mp = pytest.MonkeyPatch()
    mp.setattr(sys, "argv", [*argv, "--json", "--home", str(home)])
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
            main()
    finally:
        mp.undo()
    return json.loads(buf.getvalue())


def test_train_records_the_federation(trained):
    assert trained["cost"]["rounds"] == 3
    assert [c["joins"] for c in trained["clients"]] == [1, 1, 2]
    assert trained["metrics"]["acc_test"] > 0.5


def test_unlearn_and_evaluate_a_client(capsys, monkeypatch, home, trained):
    args = ["federated", "unlearn", trained["run_id"], "--client", "client-02", "--method", "exact", "--json"]
    doc = cli_json(capsys, monkeypatch, *args, home=home)
    m = doc["metrics"]
    assert doc["extra"]["resumed_from_round"] == 2
    assert m["fed_gap_acc_test"] == 0.0 and m["ratio_rounds"] == pytest.approx(2 / 3)
    again = cli_json(capsys, monkeypatch, "federated", "evaluate", doc["run_id"], "--json", home=home)
    assert again["metrics"]["fed_acc_test"] == m["fed_acc_test"]


def test_unlearn_a_subject_inside_the_client(capsys, monkeypatch, home, trained):
    train = partition(load_dataset("digits"), 0, 0.2, 0.15).train
    subject = partition_clients(train, 3, "subject", 0).clients["client-01"][0]
    args = ["federated", "unlearn", trained["run_id"], "--subjects", subject, "--method", "gradient_ascent"]
    doc = cli_json(capsys, monkeypatch, *args, "--param", "recovery_rounds=1", "--json", home=home)
    assert doc["scenario"]["kind"] == "subject" and doc["scenario"]["client"] == "client-01"
    assert doc["metrics"]["rounds"] == 2 and np.isfinite(doc["metrics"]["fed_mia_loss_auc"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--client", "client-09", "--method", "exact"], "unknown client"),
        (["--client", "client-00,client-01,client-02", "--method", "retrain"], "deleting every client"),
        (["--subjects", "subject-999", "--method", "exact"], "no client holds subject"),
        (["--client", "client-00", "--method", "sisa_federated"], "unknown federated method"),
        (["--client", "client-00", "--subjects", "x"], "exactly one"),
        (["--client", "client-00", "--method", "npo"], "retain data"),
        (["--client", "client-00", "--method", "federaser", "--param", "lr=1"], "takes calibration_ratio"),
    ],
)
def test_bad_unlearn_requests_write_nothing(capsys, monkeypatch, home, trained, args, message):
    before = cli_json(capsys, monkeypatch, "runs", "list", "--json", home=home)
    code, out, err = cli(capsys, monkeypatch, "federated", "unlearn", trained["run_id"], *args, home=home)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and err.startswith("error:")
    assert cli_json(capsys, monkeypatch, "runs", "list", "--json", home=home) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--strategy", "fedsgd"], "unknown strategy"),
        (["--partition", "dirichlet:0"], "positive alpha"),
        (["--clients", "1"], "clients must be between"),
        (["--join", "client-00"], "CLIENT:ROUND"),
        (["--join", "client-07:2"], "unknown client"),
    ],
)
def test_bad_train_arguments_write_nothing(capsys, monkeypatch, tmp_path, args, message):
    code, out, err = cli(capsys, monkeypatch, "federated", "train", "--rounds", "1", *args, home=tmp_path / "h")
    assert code == 2 and message in err and err.startswith("error:") and len(err.strip().splitlines()) == 1
