"""``unlearnkit sweep``: a multi-objective hyperparameter search of one method (Optuna, on Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import app
from .bench import job_bar
from .common import HomeOpt, JsonOpt, StoreOpt, clean, parse_params, table, workspace
from .common import out as emit


@app.command()
def sweep(
    method: Optional[str] = typer.Argument(None, help="Method to tune (see `unlearnkit methods`)."),
    config: Optional[Path] = typer.Option(
        None, "--config", help="YAML sweep file (method, task, dataset, model, options, scenario, seed, params, ...)."
    ),
    param: List[str] = typer.Option(
        [],
        "--param",
        "-p",
        help="Search range NAME=LOW:HIGH[:int][:log], NAME=A,B,C (a choice) or NAME=VALUE (fixed); repeatable.",
    ),
    task: Optional[str] = typer.Option(None, "--task", help="Task kind, as `train --task` (default: classifier)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset (default: digits)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model (default: mlp)."),
    option: List[str] = typer.Option([], "--option", help="Task build option NAME=VALUE, as `train` names it."),
    scenario: Optional[str] = typer.Option(None, "--scenario", help="Forget scenario (default: random:0.1)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the task, the method and the sampler."),
    trials: Optional[int] = typer.Option(None, "--trials", help="Trials to run now (default: 10)."),
    parallel: Optional[int] = typer.Option(
        None, "--parallel", help="Trials at a time: 1 runs here, more run on Ray (default: 1)."
    ),
    address: Optional[str] = typer.Option(
        None, "--address", help="Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: a local instance)."
    ),
    storage: Optional[str] = typer.Option(
        None, "--storage", help="Optuna storage URL (default: sqlite:///<home>/sweeps.db; the sweep resumes there)."
    ),
    study: Optional[str] = typer.Option(None, "--study", help="Study name (default: one named from the sweep)."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="tpe (default), nsga2 or random; seeded."),
    forgetting: Optional[str] = typer.Option(
        None, "--forgetting", help="Forget-side metric (default: the modality's, e.g. acc_forget, forget_quality)."
    ),
    utility: Optional[str] = typer.Option(
        None, "--utility", help="Utility metric (default: the modality's, e.g. acc_test, model_utility)."
    ),
    cost: Optional[str] = typer.Option(None, "--cost", help="Cost ratio to retrain: time (default) or examples."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Draw the Pareto front to this PNG file."),
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Search a method's hyperparameters for the Pareto front of forgetting, utility and cost;
    every trial is a run in the store."""
    from ..orchestration.bench import check_backend
    from ..orchestration.sweep import Sweep, check_plot_path, check_storage, load_sweep, parse_space, run_sweep

    ranges, fixed = parse_space(param)
    given = {
        "method": method,
        "task": task,
        "dataset": dataset,
        "model": model,
        "scenario": scenario,
        "seed": seed,
        "trials": trials,
        "parallel": parallel,
        "sampler": sampler,
        "forgetting": forgetting,
        "utility": utility,
        "cost": cost,
    }
    params = {**{k: d.to_dict() for k, d in ranges.items()}, **fixed}
    options = parse_params(option)
    if config is not None:
        spec = load_sweep(config, params=params, **given)
        spec.options = {**spec.options, **options}
    else:
        spec = Sweep(**{k: v for k, v in given.items() if v is not None} | {"method": method or ""})
        spec.params, spec.options = params, options
    spec.check()
    check_backend(spec.parallel, address)
    if storage is not None:
        check_storage(storage)
    check_plot_path(plot)
    ws = workspace(home, store)
    with job_bar("sweep trials") as done:
        result = run_sweep(
            spec, ws, address=address, storage=storage, study_name=study, on_trial=lambda i, n, t: done(i, n)
        )
    doc = result.to_dict()
    if plot is not None:
        doc["plot"] = str(_write(result, plot))
    emit(clean(doc), as_json, _text(result, doc.get("plot")))


def _write(result, path: Path) -> Path:
    from ..orchestration.sweep import write_plot

    return write_plot(result, path)


def _text(result, plot: str | None) -> str:
    states = [t["state"] for t in result.trials]
    names = sorted({k for t in result.front() for k in t["params"]})
    rows = [
        [t["number"], t["run_id"]]
        + [t["params"].get(k) for k in names]
        + [t["values"][o.name] for o in result.objectives]
        for t in result.front()
    ]
    header = (
        ["trial", "run"]
        + names
        + [f"{o.name}: {o.label} ({'min' if o.direction == 'minimize' else 'max'})" for o in result.objectives]
    )
    lines = [
        f"study {result.study} ({result.storage}): {len(states)} trials, "
        f"{states.count('complete')} complete, {states.count('fail')} failed; "
        f"{len(result.runs)} run(s) stored now",
        f"Pareto front ({len(rows)}):",
        table(rows, header) if rows else "  (no finished trial)",
    ]
    failed = [t for t in result.trials if t["state"] == "fail" and t.get("why")]
    if failed:
        lines.append("failed: " + "; ".join(f"trial {t['number']}: {_first(t['why'])}" for t in failed[:5]))
    if plot:
        lines.append(f"plot: {plot}")
    return "\n".join(lines)


def _first(text: str) -> str:
    return str(text).strip().splitlines()[0][:120] if str(text).strip() else ""
