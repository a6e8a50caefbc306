"""``unlearnkit evaluate``: every metric of a stored model (one function, ``evaluate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from . import app
from .common import HomeOpt, JsonOpt, StoreOpt, check_output_file, clean, fmt, load_run_model, out, workspace


@app.command()
def evaluate(
    run_id: str = typer.Argument(..., help="Run id (or unique prefix) of an unlearn or train run."),
    export_scores: Optional[Path] = typer.Option(None, "--export-scores", help="Write per-example scores "
                                                 "of the model, reference and original to .parquet or .csv."),
    privacy: int = typer.Option(0, "--privacy", help="Also run the per-example privacy evaluation with this "
                                "many shadow models of each kind (U-LiRA, competition score, comparator "
                                "privacy); 0 = off. Unlearn runs only."),
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Compute every metric of a stored model against the (cached) reference. On a workspace
    you may only read, the metrics are printed and not stored."""
    from ..engines.loop import LoopStats
    from ..modalities import modality_of_spec
    from ..orchestration.experiment import evaluate_model, get_reference, score_model

    if export_scores:
        if export_scores.suffix not in (".parquet", ".csv"):
            raise ConfigError("--export-scores must end in .parquet or .csv")
        check_output_file(export_scores, "--export-scores")
    if privacy < 0:
        raise ConfigError(f"--privacy must be a number of shadow models >= 0, not {privacy}")
    ws = workspace(home, store, mode="existing")  # never creates one; read-only is fine
    rec = ws.store.get(run_id)
    if rec.status != "ok" or not rec.artifact:
        raise ConfigError(f"run {rec.id} has no model to evaluate (status {rec.status})")
    modality = modality_of_spec(rec.task_spec)
    if privacy:
        if not modality.supports("shadow_privacy"):
            raise ConfigError(f"--privacy (U-LiRA with shadow models) serves modalities with shadow-model "
                              f"privacy; {modality.name} tasks report their attacks among their metrics")
        if rec.kind != "unlearn":
            raise ConfigError("--privacy needs an unlearn run (it re-runs the run's method on shadow models)")
    scenario = {"kind": "ids", "ids": rec.forget_ids} if rec.forget_ids else (rec.scenario or None)
    task = modality.task_from_spec(rec.task_spec, scenario, ws.cache, progress=not as_json)
    model = load_run_model(ws, rec, task)
    ref, ref_cost, _ = get_reference(task, rec.seed, ws.cache, progress=not as_json)
    ref_scores = score_model(ref, task)
    cost = LoopStats(**rec.cost) if rec.cost else None
    ev = evaluate_model(model, task, ref_scores, cost, ref_cost, rec.seed, reference_model=ref)
    if privacy:
        from ..evaluation.shadow import privacy_report

        ev.metrics.update(privacy_report(task, rec.method, rec.params, n_shadow=privacy, seed=rec.seed,
                                         cache=ws.cache, progress=not as_json))
    if export_scores:  # before the store is updated: a failure here leaves the store as it was
        _export_scores(export_scores, {"model": ev.scores, "reference": ref_scores,
                                       "original": score_model(task.original, task)})
    if ws.read_only:
        typer.echo(f"note: {ws.store.location} is read-only; the metrics are not stored", err=True)
    else:
        ws.store.update_metrics(rec.id, ev.metrics)
    doc = {"run_id": rec.id, "method": rec.method, "metrics": ev.metrics, "stored": not ws.read_only,
           "scores_file": str(export_scores) if export_scores else None}
    text = f"{rec.method} (run {rec.id}):\n" + "\n".join(f"  {k:<26} {fmt(v)}" for k, v in sorted(ev.metrics.items()))
    if export_scores:
        text += f"\nper-example scores: {export_scores}"
    out(clean(doc), as_json, text)


def _export_scores(path: Path, by_role: dict) -> None:
    import pandas as pd

    from ..utils import atomic_path

    frames = [pd.DataFrame(sc.rows(split, role)) for role, splits in by_role.items()
              for split, sc in splits.items()]
    df = pd.concat(frames, ignore_index=True)
    try:
        with atomic_path(path) as tmp:
            if path.suffix == ".parquet":
                df.to_parquet(tmp, index=False)
            else:
                df.to_csv(tmp, index=False)
    except OSError as e:
        raise ConfigError(f"--export-scores {path}: cannot write ({e.strerror})") from None
