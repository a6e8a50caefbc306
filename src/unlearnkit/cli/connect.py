"""``unlearnkit connect``: mode connectivity between two stored models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from ..orchestration.experiment import load_run_model
from . import app
from .common import HomeOpt, JsonOpt, StoreOpt, clean, fmt, workspace
from .common import out as emit


@app.command()
def connect(
    run_a: str = typer.Argument(
        ..., help="Run id (or unique prefix) of the first model; its task (data, forget set) is the one evaluated on."
    ),
    run_b: Optional[str] = typer.Argument(
        None,
        help="The second model: a run id of the same task, "
        "`original` (RUN_A's original) or `reference` (retrain on "
        "RUN_A's retain set, cached). Same as --to.",
    ),
    to: Optional[str] = typer.Option(
        None, "--to", help="The second model, as RUN_B: a run id, `original` or `reference`."
    ),
    curve: str = typer.Option(
        "both", "--curve", help="linear (straight line), bezier (trained quadratic Bezier curve) or both."
    ),
    points: int = typer.Option(11, "--points", help="Evaluate at this many evenly spaced t in [0, 1]."),
    steps: int = typer.Option(300, "--steps", help="Step budget for fitting the Bezier curve on the retain set."),
    seed: int = typer.Option(0, "--seed", help="Seeds the curve fit (batch order, t draws) and the attack's folds."),
    out: Path = typer.Option(
        Path("unlearnkit-connect"), "--out", help="Folder for the plot (.png) and values (.json)."
    ),
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Mode connectivity (Cheng & Amiri 2025; Garipov et al. 2018): metrics along the straight line
    and a trained Bezier curve between two stored models, e.g. `connect RUN --to reference`."""
    from dataclasses import replace

    import numpy as np

    from ..evaluation.connectivity import barrier, evaluate_path, fit_bezier, interpolate_linear
    from ..modalities import modality_of_spec
    from ..orchestration.experiment import get_reference
    from ..utils import atomic_write

    if (run_b is None) == (to is None):
        raise ConfigError("name the second model once: `connect RUN_A RUN_B` or `connect RUN_A --to RUN_B`")
    run_b = run_b or to
    if curve not in ("linear", "bezier", "both"):
        raise ConfigError(f"--curve must be linear, bezier or both, not {curve!r}")
    if points < 2 or steps < 1:
        raise ConfigError("--points must be >= 2 and --steps >= 1")
    ws = workspace(home, store, mode="existing")  # reads runs; never creates a workspace

    rec_a = ws.store.get(run_a)
    rec_b = None if run_b in ("original", "reference") else ws.store.get(run_b)
    if rec_b is not None and rec_b.task_key != rec_a.task_key:
        raise ConfigError(
            f"runs {rec_a.id} and {rec_b.id} are on different tasks "
            f"({rec_a.task_key} vs {rec_b.task_key}); connect models of the same task"
        )
    modality = modality_of_spec(rec_a.task_spec)
    if not modality.supports("connect"):
        raise ConfigError(
            f"connect serves modalities with path metrics (classifier); {modality.name} "
            "runs are evaluated with `unlearnkit evaluate`"
        )
    scenario = {"kind": "ids", "ids": rec_a.forget_ids} if rec_a.forget_ids else (rec_a.scenario or None)
    task = modality.task_from_spec(rec_a.task_spec, scenario, ws.cache, progress=not as_json)
    model_a = load_run_model(ws, rec_a, task)
    ref, _, _ = get_reference(task, rec_a.seed, ws.cache, progress=not as_json)
    if rec_b is None:
        model_b, name_b = (task.original if run_b == "original" else ref), run_b
    else:
        model_b, name_b = load_run_model(ws, rec_b, task), f"{rec_b.method} ({rec_b.id})"
    name_a = f"{rec_a.method} ({rec_a.id})"
    ts = np.linspace(0, 1, points)
    ref_scores = modality.part("scores").score_splits(ref, task)
    curves, fit = {}, None
    if curve in ("linear", "both"):
        line = lambda t: interpolate_linear(model_a, model_b, t, task.retain, task.adapter)  # noqa: E731
        curves["linear"] = evaluate_path(line, task, ts, ref_scores, seed=seed)
    if curve in ("bezier", "both"):
        cfg = replace(task.recipe, epochs=float(steps), max_steps=steps)  # exactly `steps` steps
        bez = fit_bezier(
            model_a, model_b, task.retain, task.adapter, cfg, seed, device=task.device, progress=not as_json
        )
        fit = {
            "steps": bez.fit_stats.steps,
            "final_loss": bez.fit_stats.final_loss,
            "wall_time_s": bez.fit_stats.wall_time_s,
            "lr": cfg.lr,
            "data": "retain",
        }
        curves["bezier"] = evaluate_path(bez, task, ts, ref_scores, seed=seed)
    stem = f"connect-{rec_a.id}-{run_b if rec_b is None else rec_b.id}"
    png, jpath = out / f"{stem}.png", out / f"{stem}.json"
    _plot_connect(png, curves, name_a, name_b)
    doc = clean(
        {
            "run_a": rec_a.id,
            "model_a": name_a,
            "model_b": name_b,
            "task_key": rec_a.task_key,
            "forget_fingerprint": task.split.forget_fingerprint,
            "bezier_fit": fit,
            "barrier": {
                c: {k: barrier(pts, k) for k in ("loss_forget", "loss_retain", "loss_test")}
                for c, pts in curves.items()
            },
            "curves": curves,
            "plot": str(png),
            "json": str(jpath),
        }
    )
    with atomic_write(jpath, "w") as fh:
        json.dump(doc, fh, indent=2, allow_nan=False)
    text = "\n".join(f"{c}: retain-loss barrier {fmt(doc['barrier'][c]['loss_retain'])}" for c in curves)
    emit(doc, as_json, f"{name_a} -> {name_b}\n{text}\nplot: {png}\nvalues: {jpath}")


def _plot_connect(path: Path, curves: dict[str, list[dict]], name_a: str, name_b: str) -> None:
    """Accuracy and mean loss on forget/retain/test vs t; one line style per curve."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..utils import atomic_path

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    colors = {"forget": "tab:red", "retain": "tab:blue", "test": "tab:green"}
    styles = {"linear": "-", "bezier": "--"}
    for ax, what in zip(axes, ("acc", "loss")):
        for c, pts in curves.items():
            t = [p["t"] for p in pts]
            for s, col in colors.items():
                ax.plot(
                    t,
                    [p.get(f"{what}_{s}", float("nan")) for p in pts],
                    styles[c],
                    color=col,
                    marker="o",
                    ms=3,
                    label=f"{s} ({c})",
                )
        ax.set_xlabel(f"t   (0: {name_a}, 1: {name_b})", fontsize=8)
        ax.set_ylabel("accuracy" if what == "acc" else "mean cross-entropy")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("mode connectivity", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
