"""Federated runs on the generic surfaces: ``unlearnkit unlearn --from RUN`` and ``evaluate
RUN`` through the modality's task-module hooks, ``unlearnkit report`` (tables and the
federated figures the modality declares), and the bench job hook; bad input refused with
one line and nothing written."""

from __future__ import annotations

import contextlib
import io
import json
import sys

import pytest

import unlearnkit.cli.federated  # noqa: F401  (registers the command group)
from cli_support import cli, cli_json
from unlearnkit.data.loaders import load_dataset
from unlearnkit.data.scenarios import partition
from unlearnkit.errors import ConfigError
from unlearnkit.methods import get_method
from unlearnkit.modalities.federated.partition import partition_clients
from unlearnkit.modalities.federated.task import FederatedForget, bench_job, check_methods, make_federated_task
from unlearnkit.orchestration.records import RunRecord
from unlearnkit.orchestration.report import summarise, write_report


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("fedsurf")


def _run(home, *args: str) -> dict:
    """A command for a module fixture (capsys is function-scoped): its JSON document."""
    from unlearnkit.cli import main

    mp = pytest.MonkeyPatch()
    buf = io.StringIO()
    try:
        mp.setattr(sys, "argv", ["unlearnkit", *args, "--json", "--home", str(home)])
        with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
            main()
    finally:
        mp.undo()
    return json.loads(buf.getvalue())


@pytest.fixture(scope="module")
def trained(home):
    """3 clients, 3 rounds, client-02 joining at round 2 (so exact resumes from round 2)."""
    return _run(home, "federated", "train", "--clients", "3", "--rounds", "3", "--join", "client-02:2")


@pytest.fixture(scope="module")
def exact_run(home, trained):
    args = ["unlearn", "--from", trained["run_id"], "--method", "exact", "--client", "client-02", "--evaluate"]
    return _run(home, *args)


def _runs(capsys, monkeypatch, home) -> list:
    return cli_json(capsys, monkeypatch, "runs", "list", "--json", home=home)


def test_generic_unlearn_answers_a_client_deletion(exact_run, trained):
    m = exact_run["metrics"]
    assert exact_run["method"] == "federated:exact" and exact_run["parent"] == trained["run_id"]
    assert exact_run["extra"]["resumed_from_round"] == 2
    # exact retraining from the round-2 checkpoint equals retraining: no gap, 2 of 3 rounds
    assert m["fed_gap_acc_test"] == 0.0 and m["fed_gap_acc_forget"] == 0.0
    assert m["ratio_rounds"] == pytest.approx(2 / 3) and m["ratio_bytes"] < 1
    train = partition(load_dataset("digits"), 0, 0.2, 0.15).train
    assert exact_run["n_forget"] == len(partition_clients(train, 3, "subject", 0).data_of("client-02", train))
    assert exact_run["evaluation_id"]


def test_generic_evaluate_recomputes_and_stores_an_evaluation(capsys, monkeypatch, home, exact_run):
    first = cli_json(capsys, monkeypatch, "evaluate", exact_run["run_id"], "--json", home=home)
    assert first["stored"] and first["metrics"]["fed_acc_test"] == exact_run["metrics"]["fed_acc_test"]
    assert first["metrics"]["fed_gap_acc_test"] == 0.0
    # the evaluation `unlearn --evaluate` stored was on the same inputs (model, splits, reference)
    assert first["same_inputs_as"] == exact_run["evaluation_id"] != first["evaluation_id"]
    again = cli_json(capsys, monkeypatch, "evaluate", exact_run["run_id"], "--json", home=home)
    timed = {"ratio_wall_time"}  # over a retraining timed afresh each evaluation
    assert {k: v for k, v in again["metrics"].items() if k not in timed} == {
        k: v for k, v in first["metrics"].items() if k not in timed
    }


def test_the_federated_group_is_an_alias_of_the_generic_commands(capsys, monkeypatch, home, trained):
    generic = ["unlearn", "--from", trained["run_id"], "--method", "federaser", "--scenario", "client:client-02"]
    a = cli_json(capsys, monkeypatch, *generic, "--param", "delta_t=2", "--evaluate", "--json", home=home)
    alias = ["federated", "unlearn", trained["run_id"], "--client", "client-02", "--method", "federaser"]
    b = cli_json(capsys, monkeypatch, *alias, "--param", "delta_t=2", "--json", home=home)
    timed = {"ratio_wall_time"}  # the one number that depends on the machine's load
    assert {k: v for k, v in a["metrics"].items() if k not in timed} == {
        k: v for k, v in b["metrics"].items() if k not in timed
    }
    runs = {r["id"]: r for r in _runs(capsys, monkeypatch, home)}
    assert runs[a["run_id"]]["method"] == runs[b["run_id"]]["method"] == "federated:federaser"
    assert a["artifact"] == runs[b["run_id"]]["artifact"]  # the same global model, byte for byte


def test_generic_unlearn_of_a_subject_with_a_method_inside_the_client(capsys, monkeypatch, home, trained, tmp_path):
    train = partition(load_dataset("digits"), 0, 0.2, 0.15).train
    subject = partition_clients(train, 3, "subject", 0).clients["client-01"][0]
    (tmp_path / "s.txt").write_text(subject + "\n")
    args = ["unlearn", "--from", trained["run_id"], "--method", "gradient_ascent"]
    doc = cli_json(
        capsys,
        monkeypatch,
        *args,
        "--forget-subjects",
        str(tmp_path / "s.txt"),
        "-p",
        "recovery_rounds=1",
        "--json",
        home=home,
    )
    assert doc["scenario"] == {**doc["scenario"], "kind": "subject", "client": "client-01", "subjects": [subject]}
    assert doc["method"] == "federated:local:gradient_ascent" and doc["metrics"] == {}  # no --evaluate
    assert doc["cost"]["rounds"] == 2 and doc["evaluation_id"] is None


def test_a_generic_train_run_is_rebuilt_by_training_again(capsys, monkeypatch, tmp_path):
    """``train --task federated`` keeps no rounds: the flow trains the federation again and
    goes on only because it ends in the recorded model (content hash)."""
    h = tmp_path / "g"
    rec = cli_json(capsys, monkeypatch, "train", "--task", "federated", "--json", home=h)
    doc = cli_json(
        capsys, monkeypatch, "unlearn", "--from", rec["run_id"], "--method", "exact", "--client", "client-04",
        "--evaluate", "--json", home=h,
    )  # fmt: skip
    assert doc["extra"]["equals_retrain"] and doc["metrics"]["fed_gap_acc_test"] == 0.0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--client", "client-09", "--method", "exact"], "unknown client"),
        (["--client", "client-00", "--method", "sisa_federated"], "unknown federated method"),
        (["--client", "client-00", "--scenario", "client:client-01", "--method", "exact"], "exactly one"),
        (["--client", "client-00", "--method", "npo"], "retain data"),
        (["--client", "client-00,client-01", "--method", "gradient_ascent"], "one client at a time"),
        (["--client", "client-00", "--method", "exact", "--lora", "4"], "lora"),
        (["--scenario", "random:0.1", "--method", "exact"], "client:ID"),
        (["--client", "client-00", "--method", "federaser", "-p", "lr=1"], "takes calibration_ratio"),
    ],
)
def test_bad_generic_requests_write_nothing(capsys, monkeypatch, home, trained, args, message):
    before = _runs(capsys, monkeypatch, home)
    code, out, err = cli(capsys, monkeypatch, "unlearn", "--from", trained["run_id"], *args, home=home)
    assert code == 2 and message in err and err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert _runs(capsys, monkeypatch, home) == before


@pytest.mark.parametrize(
    "extra, message",
    [([], "federation's original"), (["--privacy", "2"], "--privacy"), (["--export-scores", "x.csv"], "--export")],
)
def test_bad_evaluations_are_refused(capsys, monkeypatch, home, trained, exact_run, extra, message):
    run = trained["run_id"] if not extra else exact_run["run_id"]
    code, out, err = cli(capsys, monkeypatch, "evaluate", run, *extra, home=home)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_report_shows_federated_tables_and_figures(capsys, monkeypatch, home, exact_run, tmp_path):
    paths = cli_json(capsys, monkeypatch, "report", "--out", str(tmp_path / "r"), "--json", home=home)
    assert set(paths) >= {"markdown", "html", "json", "federated_tradeoff"}
    for key in ("federated_tradeoff", "federated_privacy", "federated_rounds", "federated_bytes"):
        assert (tmp_path / "r" / f"{key}.png").stat().st_size > 1000
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    row = next(w for w in doc["rows"] if w["method"] == "federated:exact")
    assert row["scenario"] == "client client-02"
    assert row["mean"]["fed_gap_acc_test"] == 0.0 and row["mean"]["ratio_rounds"] == pytest.approx(2 / 3)
    # the original is filed under no request (its spec names the federation only), with its test accuracy
    orig = next(w for w in doc["rows"] if w["role"] == "original")
    assert orig["scenario"] == "unspecified" and orig["mean"]["fed_acc_test"] > 0.5
    md = (tmp_path / "r" / "report.md").read_text()
    header = next(ln for ln in md.splitlines() if ln.startswith("| method | seeds | fed_acc_forget"))
    for col in ("fed_acc_retain", "fed_acc_test", "fed_gap_acc_test", "fed_mia_loss_auc", "ratio_bytes"):
        assert col in header
    assert "| federated:exact | 1 |" in md and "0.67x" in md  # cost ratios in the catalogue's unit
    assert "(not in the metric catalogue)" not in md  # every federated key is declared


@pytest.fixture(scope="module")
def bench_records(home):
    from unlearnkit.orchestration.experiment import Workspace

    base = make_federated_task(n_clients=3, rounds=3, joins={"client-02": 2})
    ws = Workspace.open(home)
    specs = [("exact", {}), ("graddiff", {})]  # graddiff needs retain data: a leaving client has none
    out = []
    for seed in (0, 1):
        scen = [FederatedForget(client="client-02").to_dict()]
        out += bench_job(base if seed == 0 else make_federated_task(n_clients=3, rounds=3, joins={"client-02": 2},
                         seed=1), scen, specs, seed, ws, get_method)  # fmt: skip
    return [RunRecord.from_dict(r) for r in out]


def test_bench_job_records_reference_methods_and_failures(bench_records):
    by = {(r.method, r.seed): r for r in bench_records}
    assert {r.kind for r in bench_records if r.method == "federated:retrain"} == {"reference"}
    for seed in (0, 1):
        ref, ex = by["federated:retrain", seed], by["federated:exact", seed]
        assert ex.metrics["fed_acc_test"] == ref.metrics["fed_acc_test"] and ex.metrics["ratio_rounds"] < 1
        failed = by["federated:graddiff", seed]
        assert failed.status == "failed" and "retain data" in failed.error
        orig = by["original", seed]  # the model left as it is, against the same reference
        assert orig.kind == "train" and "ratio_rounds" not in orig.metrics
        assert orig.metrics["fed_gap_acc_test"] == pytest.approx(
            abs(orig.metrics["fed_acc_test"] - ref.metrics["fed_acc_test"])
        )
    rows = summarise(bench_records)
    exact = next(w for w in rows if w["method"] == "federated:exact")
    assert exact["n_seeds"] == 2 and exact["scenario"] == "client client-02"  # seeds averaged together


def test_report_of_a_bench_grid(bench_records, tmp_path):
    paths = write_report(bench_records, tmp_path / "b")
    assert {"federated_tradeoff", "federated_client_compute"} <= set(paths)
    assert "federated:retrain (reference)" in (tmp_path / "b" / "report.md").read_text()


def test_bench_methods_are_checked_before_training():
    with pytest.raises(ConfigError, match="unknown federated method"):
        check_methods([("exact", {}), ("nope", {})], get_method)
    with pytest.raises(ConfigError, match="takes calibration_ratio, delta_t"):
        check_methods([("federaser", {"steps": 3})], get_method)
    with pytest.raises(ConfigError, match="bogus"):  # a method inside the client: its own check
        check_methods([("npo", {"bogus": 1})], get_method)
    check_methods([("federaser", {"delta_t": 2}), ("npo", {"recovery_rounds": 1})], get_method)


def test_record_tags_keep_the_rounds_and_they_must_end_in_the_recorded_model(tmp_path, monkeypatch):
    """What `train --task federated` would keep through the hook: unlearning then reads the
    rounds back and trains nothing; rounds of another federation are refused."""
    from unlearnkit.modalities.federated import flow
    from unlearnkit.modalities.federated.task import FederatedTask, build_task, record_tags, train_metrics
    from unlearnkit.orchestration.experiment import Workspace, train_record

    ws = Workspace.open(tmp_path)
    task, other = (build_task("federated", {"clients": 3, "rounds": 2}, seed=s) for s in (0, 1))
    rec = train_record(task, train_metrics(task), ws.artifacts.save(task.original))
    rec.tags = {**rec.tags, **record_tags(task, ws.artifacts)}
    monkeypatch.setattr(FederatedTask, "run_program", lambda *a, **k: pytest.fail("the federation was trained again"))
    rebuilt = flow.stored_task(ws, rec, FederatedForget(client="client-01"))
    assert len(rebuilt.history.rounds) == 2 and ws.artifacts.save(rebuilt.original) == rec.artifact
    rec.tags = {**rec.tags, **record_tags(other, ws.artifacts)}
    with pytest.raises(ConfigError, match="do not end in its recorded global model"):
        flow.stored_task(ws, rec, FederatedForget(client="client-01"))


def test_bench_grid_of_a_federated_task_through_the_cli(tmp_path, capsys, monkeypatch):
    """`unlearnkit bench` on a `task: federated` grid: the modality's own methods (exact,
    federaser) pass the grid's checks and every run is stored; an unknown method is refused
    with one line before anything is trained."""
    from cli_support import cli, cli_json

    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "task: federated\noptions: {clients: 3, rounds: 3, strategy: fedavg}\nseeds: [0]\n"
        'scenarios: ["client:client-02"]\nmethods: [exact, {name: federaser, params: {delta_t: 2}}]\n'
    )
    home = tmp_path / "ws"
    cli_json(capsys, monkeypatch, "bench", str(grid), "--out", str(tmp_path / "rep"), "--json", home=home)
    runs = cli_json(capsys, monkeypatch, "runs", "list", "--json", home=home)
    rows = runs if isinstance(runs, list) else runs.get("runs", [])
    methods = {r["method"] for r in rows}
    assert {"federated:exact", "federated:federaser"} <= methods, methods
    bad = tmp_path / "bad.yaml"
    bad.write_text(grid.read_text().replace("[exact,", "[no_such_method,"))
    code, out, err = cli(capsys, monkeypatch, "bench", str(bad), "--out", str(tmp_path / "rep2"), home=tmp_path / "ws2")
    assert code == 2 and err.strip().startswith("error:") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "ws2" / "runs.db").exists()
