"""``unlearnkit evaluate``: every metric of a stored model (one function, ``evaluate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from . import app
from .common import HomeOpt, JsonOpt, StoreOpt, clean, fmt, not_computed_text, out, workspace


@app.command()
def evaluate(
    run_id: str = typer.Argument(..., help="Run id (or unique prefix) of an unlearn or train run."),
    export_scores: Optional[Path] = typer.Option(
        None,
        "--export-scores",
        help="Write per-example scores of the model, reference and original to .parquet or .csv.",
    ),
    privacy: int = typer.Option(
        0,
        "--privacy",
        help="Also run the per-example privacy evaluation with this "
        "many shadow models of each kind (U-LiRA, competition score, comparator "
        "privacy); 0 = off. Unlearn runs of classifier and graph tasks only.",
    ),
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Compute every metric of a stored model against the (cached) reference, on exactly the
    splits its record names (forget and holdout ids), and store the result as a new
    evaluation beside the earlier ones (`runs show RUN` lists them; a run's own metrics are
    never replaced). On a workspace you may only read, the metrics are printed and not stored."""
    from ..requests import EXPORT_SUFFIXES, check_output_path, evaluate_run

    if export_scores:
        if export_scores.suffix not in EXPORT_SUFFIXES:
            raise ConfigError("--export-scores must end in .parquet or .csv")
        check_output_path(export_scores, "--export-scores")
    if privacy < 0:
        raise ConfigError(f"--privacy must be a number of shadow models >= 0, not {privacy}")
    ws = workspace(home, store, mode="existing")  # never creates one; read-only is fine
    outcome = evaluate_run(ws, run_id, export_scores=export_scores, privacy=privacy, progress=not as_json)
    rec, metrics = outcome.record, outcome.metrics
    if not outcome.stored:
        typer.echo(f"note: {ws.store.location} is read-only; the metrics are not stored", err=True)
    doc = outcome.to_dict()
    text = f"{rec.method} (run {rec.id}):\n" + "\n".join(f"  {k:<26} {fmt(v)}" for k, v in sorted(metrics.items()))
    if outcome.same_inputs_as:
        text += f"\nsame inputs as evaluation {outcome.same_inputs_as}"
    elif outcome.stored:
        text += f"\nstored as evaluation {outcome.evaluation.id}"
    if export_scores:
        text += f"\nper-example scores: {export_scores}"
    text += not_computed_text(outcome.not_computed)
    out(clean(doc), as_json, text)
