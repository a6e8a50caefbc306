"""Bench grids and hyperparameter sweeps on Ray (issue 13): a bench grid on a local Ray
instance of 2 CPUs gives the records the in-process run gives; a sweep stores one run per
trial, resumes its study, and returns a Pareto front that is exactly the non-dominated
trials; bad input is one error line before any compute or Ray start."""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import pytest

import unlearnkit.cli.sweep  # noqa: F401 - registers `unlearnkit sweep` (until cli/__init__ imports it)
from cli_support import cli, cli_json
from unlearnkit.errors import ConfigError
from unlearnkit.orchestration import jobs
from unlearnkit.orchestration.bench import Grid, run_grid
from unlearnkit.orchestration.experiment import Workspace
from unlearnkit.orchestration.sweep import Sweep, dominates, run_sweep, write_plot

pytestmark = pytest.mark.timeout(300)

#: metrics that depend on wall-clock time (everything else is a function of seeds and data)
TIMED = {"wall_time_s", "cost_ratio_time"}


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance of 2 CPUs for this module. Its session folder is a fresh one
    under /tmp (Ray's socket paths must stay short, which pytest's tmp paths are not);
    ``address="local"`` starts a new instance even where another test process has one."""
    ray = pytest.importorskip("ray")
    temp = tempfile.mkdtemp(prefix="ukray-")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Ray's note on accelerator env vars
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def ray_submits(monkeypatch):
    """How many jobs went to Ray (the parent's side of :class:`jobs.OnRay`)."""
    calls = []
    submit = jobs.OnRay.submit

    def counting(self, fn, *args):
        calls.append(fn.__name__)
        return submit(self, fn, *args)

    monkeypatch.setattr(jobs.OnRay, "submit", counting)
    return calls


def _key(r) -> tuple:
    return (r.kind, r.method, r.seed, r.scenario.get("kind"), r.scenario.get("fraction"))


def test_bench_grid_on_ray_equals_the_in_process_run(tmp_path, local_ray, ray_submits):
    grid = Grid(
        dataset="iris",
        model="linear",
        seeds=[0, 1],
        scenarios=["random:0.1"],
        methods=["finetune", {"name": "graddiff", "params": {"epochs": 1}}],
    )
    here = run_grid(grid, tmp_path / "here", workers=1, threads=1)
    assert ray_submits == []  # one worker: no Ray
    done = []
    on_ray = run_grid(grid, tmp_path / "ray", workers=2, threads=1, on_done=lambda i, n: done.append((i, n)))
    assert ray_submits == ["run_job", "run_job"]  # one job per seed, both on Ray
    assert done == [(1, 2), (2, 2)]
    assert len(here) == len(on_ray) == 8  # per seed: original, reference, 2 methods
    a, b = {_key(r): r for r in here}, {_key(r): r for r in on_ray}
    assert set(a) == set(b) and len(a) == 8
    for k, r in a.items():
        s = b[k]
        assert r.status == s.status == "ok", (k, r.error, s.error)
        assert r.forget_ids == s.forget_ids and r.params == s.params
        untimed = {m for m in r.metrics if m not in TIMED}
        assert untimed == {m for m in s.metrics if m not in TIMED} and len(untimed) > 5
        for m in untimed:  # the training is seeded: the same numbers, bit for bit
            x, y = r.metrics[m], s.metrics[m]
            assert x == y or (math.isnan(x) and math.isnan(y)), (k, m, x, y)
        assert {c: v for c, v in r.cost.items() if c != "wall_time_s"} == {
            c: v for c, v in s.cost.items() if c != "wall_time_s"
        }
    assert Workspace.open(tmp_path / "ray").store.list() == []  # jobs never write the store


def _stored_trials(ws: Workspace, study: str) -> list:
    return [r for r in ws.store.list() if (r.tags or {}).get("sweep", {}).get("study") == study]


def test_sweep_stores_a_run_per_trial_and_a_non_dominated_front(tmp_path, local_ray, ray_submits):
    ws = Workspace.open(tmp_path / "home")
    sweep = Sweep(
        method="graddiff",
        model="linear",
        params={"lr": "1e-3:3e-1:log", "epochs": "1:3:int", "batch_size": 32},
        trials=4,
        parallel=2,
    )
    result = run_sweep(sweep, ws)
    assert ray_submits == ["run_job"] * 5  # the original and reference, then 4 trials, on Ray
    assert [o.metric for o in result.objectives] == ["acc_forget", "acc_test", "cost_ratio_time"]
    assert [o.direction for o in result.objectives] == ["minimize", "maximize", "minimize"]
    runs = _stored_trials(ws, result.study)
    assert len(runs) == len(result.runs) == len(result.trials) == 4
    assert sorted(r.tags["sweep"]["trial"] for r in runs) == [0, 1, 2, 3]
    by_id = {r.id: r for r in runs}
    ref = ws.store.get(result.base["reference"])
    assert ref.kind == "reference" and ws.store.get(result.base["train"]).kind == "train"
    for t in result.trials:
        run = by_id[t["run_id"]]
        assert run.kind == "unlearn" and run.method == "graddiff"
        assert run.params["batch_size"] == 32 and run.params["lr"] == pytest.approx(t["params"]["lr"])
        assert 1e-3 <= t["params"]["lr"] <= 3e-1 and t["params"]["epochs"] in (1, 2, 3)
        if t["state"] == "complete":  # each objective is read from the stored run
            assert t["values"]["forgetting"] == pytest.approx(
                abs(run.metrics["acc_forget"] - ref.metrics["acc_forget"])
            )
            assert t["values"]["forgetting"] == pytest.approx(run.metrics["gap_acc_forget"])
            assert t["values"]["utility"] == run.metrics["acc_test"]
            assert t["values"]["cost"] == run.metrics["cost_ratio_time"]
    complete = [t for t in result.trials if t["state"] == "complete"]
    assert complete
    directions = [o.direction for o in result.objectives]
    vals = {t["number"]: [t["values"][o.name] for o in result.objectives] for t in complete}
    front = set(result.pareto)
    assert front and front <= set(vals)
    for n, v in vals.items():  # the front is exactly the trials no other trial dominates
        dominated = any(dominates(w, v, directions) for m, w in vals.items() if m != n)
        assert dominated == (n not in front), (n, v, vals)

    # the same sweep again resumes its study (here in this process: one at a time)
    again = run_sweep(Sweep(**{**sweep.__dict__, "trials": 2, "parallel": 1}), ws)
    assert ray_submits == ["run_job"] * 5  # one at a time runs here; the base was not trained again
    assert again.study == result.study and again.base == result.base
    assert len(again.trials) == 6 and len(_stored_trials(ws, result.study)) == 6
    assert len(ws.store.list()) == 2 + 6  # the original and the reference stored once

    # a trial an interrupted call asked for and never told is marked failed on the next call
    import optuna

    study = optuna.load_study(study_name=result.study, storage=result.storage)
    stale = study.ask().number
    third = run_sweep(Sweep(**{**sweep.__dict__, "trials": 1, "parallel": 1}), ws)
    states = {t["number"]: t["state"] for t in third.trials}
    assert states[stale] == "fail" and len(states) == 8 and states[7] in ("complete", "fail")


def test_sweep_cli_json_plot_and_risk_marks(tmp_path, capsys, monkeypatch):
    """The command's JSON, its plot, resuming in text, and --risk-budget marking the trials
    that `unlearnkit risk` certifies on the same runs."""
    home = tmp_path / "home"
    plot = tmp_path / "front.png"
    args = ["sweep", "finetune", "--model", "linear", "--param", "lr=1e-3:1e-1:log", "--param", "epochs=1:2:int"]
    risk = ["--risk-budget", "0.3", "--alpha", "0.2"]
    doc = cli_json(capsys, monkeypatch, *args, "--trials", "2", "--plot", str(plot), *risk, "--json", home=home)
    assert len(doc["trials"]) == 2 and len(doc["runs"]) == 2 and doc["pareto"]
    assert {t["number"] for t in doc["pareto"]} <= {t["number"] for t in doc["trials"]}
    assert [o["name"] for o in doc["objectives"]] == ["forgetting", "utility", "cost"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and doc["plot"] == str(plot)
    assert Path(doc["storage"].removeprefix("sqlite:///")) == (home / "sweeps.db").resolve()
    ok = [t for t in doc["trials"] if t["state"] == "complete"]
    assessed = cli_json(
        capsys,
        monkeypatch,
        "risk",
        *[t["run_id"] for t in ok],
        "--budget",
        "0.3",
        "--alpha",
        "0.2",
        "--json",
        home=home,
    )
    feasible = set(assessed["feasible"])
    for t in ok:  # the same bound and the same decision as `unlearnkit risk`
        row = next(r for r in assessed["runs"] if r["run_id"] == t["run_id"])
        assert t["cur"] == pytest.approx(row["cur"]) and t["risk_controlled"] == (t["run_id"] in feasible)
    assert doc["risk"]["feasible_trials"] == [t["number"] for t in ok if t["run_id"] in feasible]
    code, out, err = cli(capsys, monkeypatch, *args, "--trials", "1", home=home)  # text, resumed
    assert code == 0, err
    assert f"study {doc['study']}" in out and "3 trials" in out and "Pareto front" in out


def test_a_diverging_trial_is_a_failed_run_and_never_on_the_front(tmp_path):
    ws = Workspace.open(tmp_path / "home")
    sweep = Sweep(method="gradient_ascent", dataset="iris", model="linear", params={"lr": "1e29:1e30:log"}, trials=2)
    result = run_sweep(sweep, ws)
    assert [t["state"] for t in result.trials] == ["fail", "fail"] and result.pareto == []
    runs = [ws.store.get(t["run_id"]) for t in result.trials]
    assert all(r.status == "failed" and r.kind == "unlearn" for r in runs)
    assert all(t["why"] == r.error and r.error for t, r in zip(result.trials, runs))
    with pytest.raises(ConfigError, match="no trial of the sweep finished"):
        write_plot(result, tmp_path / "front.png")
    assert not (tmp_path / "front.png").exists()
    # the same study name for another search space is refused before any compute
    other = Sweep(**{**sweep.__dict__, "params": {"lr": "1e-3:1e-2:log"}})
    before = len(ws.store.list())
    with pytest.raises(ConfigError, match="searches another space"):
        run_sweep(other, ws, study_name=result.study)
    assert len(ws.store.list()) == before


@pytest.mark.parametrize(
    "args, needle",
    [
        (["sweep", "graddiff", "--param", "nope=1:2"], "no hyperparameter nope"),
        (["sweep", "graddiff", "--param", "lr=1e-1:1e-4:log"], "below the high bound"),
        (["sweep", "graddiff", "--param", "lr=0:1e-1:log"], "log range needs a low bound > 0"),
        (["sweep", "graddiff", "--param", "lr=a:b"], "not a finite number"),
        (["sweep", "graddiff", "--param", "lr=1e-3:1e-1:cubic"], "a range is LOW:HIGH"),
        (["sweep", "graddiff", "--param", "batch_size=8.0:64.0"], "takes integers"),
        (["sweep", "graddiff", "--param", "epochs=1.5:3:int"], "integer bounds"),
        (["sweep", "graddiff", "--param", "retain_loss=nll,7"], "retain_loss=7"),
        (["sweep", "graddiff"], "nothing to search"),
        (["sweep", "nope", "--param", "lr=1e-3:1e-1"], "unknown method"),
        (["sweep", "rmu", "--param", "lr=1e-3:1e-1"], "not classifier"),
        (["sweep", "graddiff", "--param", "lr=1e-3:1e-1", "--trials", "0"], "--trials"),
        (["sweep", "graddiff", "--param", "lr=1e-3:1e-1", "--parallel", "0"], "--parallel"),
        (["sweep", "graddiff", "--param", "lr=1e-3:1e-1", "--parallel", "2", "--address", "ray://host"], "address"),
        (["sweep", "graddiff", "--param", "lr=1e-3:1e-1", "--address", "http://h:1"], "not a Ray address"),
        (["sweep", "graddiff", "--param", "lr=1e-3:1e-1", "--address", "h:99999"], "not a Ray address"),
        (["sweep", "graddiff", "--param", "lr=1e-3:1e-1", "--forgetting", "nope"], "unknown metric"),
        (["sweep", "graddiff", "--param", "lr=1e-3:1e-1", "--cost", "money"], "--cost"),
        (["sweep", "graddiff", "--param", "lr=1e-3:1e-1", "--sampler", "grid"], "--sampler"),
        (["sweep", "graddiff", "--param", "lr=1e-3:1e-1", "--plot", "front.svg"], "must end in .png"),
        (["sweep", "graddiff", "--param", "lr=1e-3:1e-1", "--storage", "::::"], "--storage"),
        (["sweep", "graddiff", "--param", "lr=1e-3:1e-1", "--scenario", "nope:1"], "scenario"),
        (["sweep", "--config", "missing.yaml"], "no such sweep file"),
        (["sweep", "graddiff", "--param", "lr=1e-3:1e-1", "--risk-budget", "1.5"], "--risk-budget"),
        (["sweep", "graddiff", "--param", "lr=1e-3:1e-1", "--risk-budget", "0.2", "--alpha", "0"], "--alpha"),
    ],
)
def test_sweep_bad_input_is_one_line_before_any_compute(tmp_path, capsys, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    code, out, err = cli(capsys, monkeypatch, *args, home=home)
    assert code == 2 and out == "", (code, out, err)
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert needle in err, err
    assert not home.exists()  # nothing written: no workspace, no store, no study


def test_sweep_file_and_its_bad_keys(tmp_path, capsys, monkeypatch):
    spec = tmp_path / "sweep.yaml"
    spec.write_text("method: graddiff\nparams: {lr: {low: 1e-3, high: 1e-1, log: true}}\ncolour: blue\n")
    code, _, err = cli(capsys, monkeypatch, "sweep", "--config", str(spec), home=tmp_path / "h")
    assert code == 2 and "unknown sweep keys ['colour']" in err
    spec.write_text("method: graddiff\nparams: {lr: {low: 1e-3}}\n")
    code, _, err = cli(capsys, monkeypatch, "sweep", "--config", str(spec), home=tmp_path / "h")
    assert code == 2 and "needs low and high" in err
    assert not (tmp_path / "h").exists()


def test_without_ray_more_than_one_worker_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    home = tmp_path / "home"
    grid = tmp_path / "grid.yaml"
    grid.write_text("dataset: iris\nmodel: linear\nmethods: [finetune]\nworkers: 2\n")
    code, _, err = cli(capsys, monkeypatch, "bench", str(grid), home=home)
    assert code == 2 and "Ray, which is not installed" in err and "unlearnkit[sweep]" in err, err
    args = ("sweep", "graddiff", "--param", "lr=1e-3:1e-1", "--parallel", "2")
    code, _, err = cli(capsys, monkeypatch, *args, home=home)
    assert code == 2 and "unlearnkit[sweep]" in err, err
    assert not home.exists()


def test_bench_refuses_a_malformed_address_before_any_work(tmp_path, capsys, monkeypatch):
    grid = tmp_path / "grid.yaml"
    grid.write_text("dataset: iris\nmodel: linear\nmethods: [finetune]\n")
    for address in ("ray://", "ray://host:0", "10.0.0.1", "host:port"):
        code, _, err = cli(capsys, monkeypatch, "bench", str(grid), "--address", address, home=tmp_path / "h")
        assert code == 2 and "not a Ray address" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "h").exists()
