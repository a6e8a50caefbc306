"""``unlearnkit sweep``: a multi-objective hyperparameter search of one method (Optuna, on Ray)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import ConfigError
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
    risk_budget: Optional[float] = typer.Option(
        None,
        "--risk-budget",
        help="Mark the trials whose Conformal Unlearning Risk is certified within this budget in (0, 1) "
        "(as `unlearnkit risk` computes it; docs/risk.md).",
    ),
    alpha: float = typer.Option(0.1, "--alpha", help="Level of --risk-budget in (0, 1)."),
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Search a method's hyperparameters for the Pareto front of forgetting, utility and cost;
    every trial is a run in the store."""
    from ..orchestration.bench import check_backend
    from ..orchestration.sweep import Sweep, check_storage, load_sweep, parse_space, run_sweep
    from ..requests import check_output_path

    for name, v in (("--risk-budget", risk_budget), ("--alpha", alpha)):
        if v is not None and not (math.isfinite(v) and 0.0 < v < 1.0):
            raise ConfigError(f"{name} must be in (0, 1), not {v}")

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
    check_output_path(plot, "--plot", (".png",))
    ws = workspace(home, store)
    with job_bar("sweep trials") as done:
        result = run_sweep(
            spec, ws, address=address, storage=storage, study_name=study, on_trial=lambda i, n, t: done(i, n)
        )
    doc = result.to_dict()
    if risk_budget is not None:
        doc["risk"] = _risk(ws, result, risk_budget, alpha, spec.seed)
        feasible = set(doc["risk"]["feasible_trials"])
        for t in doc["trials"] + doc["pareto"]:
            t["risk_controlled"] = t["number"] in feasible if t["state"] == "complete" else None
            t["cur"] = doc["risk"]["cur"].get(str(t["number"]))
    if plot is not None:
        doc["plot"] = str(_write(result, plot))
    emit(clean(doc), as_json, _text(result, doc))


def _risk(ws, result, budget: float, alpha: float, seed: int) -> dict:
    """The Conformal Unlearning Risk of every finished trial's run and the risk-controlled
    trials at ``budget`` and level ``alpha`` (Bonferroni over the trials, calibration on half of
    the forget set, seeded; the defaults of `unlearnkit risk`)."""
    from ..evaluation.risk import DEFAULT_FPR, assess
    from .risk import run_losses, select_runs

    trial_of = {t["run_id"]: t["number"] for t in result.trials if t["state"] == "complete" and t["run_id"]}
    if not trial_of:
        raise ConfigError("--risk-budget: no trial of the sweep finished")
    recs = select_runs(ws, list(trial_of), None)
    configs, reference = run_losses(ws, recs, DEFAULT_FPR)
    a = assess(configs, budget, alpha, 0.5, seed, reference=reference)
    c = a.control
    return {
        "budget": c.budget,
        "alpha": c.alpha,
        "correction": c.correction,
        "fpr": DEFAULT_FPR,
        "n_calibration": c.n[c.names[0]],
        "feasible_trials": [trial_of[k] for k in c.feasible],
        "chosen_trial": trial_of[a.chosen] if a.chosen else None,
        "cur": {str(trial_of[k]): c.cur[k] for k in c.names},
        "cur_family": {str(trial_of[k]): c.cur_family[k] for k in c.names},
        "test_risk": {str(trial_of[k]): a.test_risk[k] for k in c.names},
    }


def _write(result, path: Path) -> Path:
    from ..orchestration.sweep import write_plot

    return write_plot(result, path)


def _text(result, doc: dict) -> str:
    states = [t["state"] for t in result.trials]
    names = sorted({k for t in result.front() for k in t["params"]})
    risk = doc.get("risk")
    rows = [
        [t["number"], t["run_id"]]
        + [_param(t["params"].get(k)) for k in names]
        + [t["values"][o.name] for o in result.objectives]
        + ([t.get("cur"), "yes" if t.get("risk_controlled") else "no"] if risk else [])
        for t in doc["pareto"]
    ]
    header = (
        ["trial", "run"]
        + names
        + [f"{o.name}: {o.label} ({'min' if o.direction == 'minimize' else 'max'})" for o in result.objectives]
        + ([f"CUR@{risk['alpha']:g}", f"risk <= {risk['budget']:g}"] if risk else [])
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
    if risk:
        lines.append(
            f"risk-controlled trials (budget {risk['budget']:g}, alpha {risk['alpha']:g}, {risk['correction']}): "
            + (", ".join(map(str, risk["feasible_trials"])) or "none")
        )
    if doc.get("plot"):
        lines.append(f"plot: {doc['plot']}")
    return "\n".join(lines)


def _param(v):
    """A hyperparameter in three significant digits (a learning rate of 1e-4 is not 0.000)."""
    return f"{v:.3g}" if isinstance(v, float) else v


def _first(text: str) -> str:
    return str(text).strip().splitlines()[0][:120] if str(text).strip() else ""
