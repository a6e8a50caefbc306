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
    from .unlearn import own_flow

    flow = own_flow(ws, run_id, "evaluate_run")
    if flow is not None:  # e.g. a federation: its reference is federated retraining
        if export_scores or privacy:
            raise ConfigError("--export-scores and --privacy serve the generic runs, not this modality's")
        return _evaluate_own(flow, ws, run_id, as_json)
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


def _evaluate_own(flow, ws, run_id: str, as_json: bool) -> None:
    """``evaluate`` on a run whose modality evaluates it itself: the metrics are stored as a
    new evaluation beside the earlier ones (not on a read-only workspace), as the generic
    flow does; the run's own metrics are never replaced."""
    from ..orchestration.records import EvaluationRecord
    from ..utils import stable_hash

    rec = ws.store.get(run_id)
    result = flow(ws, rec, progress=not as_json)
    metrics, inputs = result["metrics"], result["inputs"]
    evaluation = EvaluationRecord(rec.id, stable_hash(inputs), inputs, dict(metrics))
    same = next(
        (e.id for e in ws.store.evaluations(rec.id) if e.inputs_fingerprint == evaluation.inputs_fingerprint), None
    )
    stored = not getattr(ws, "read_only", False)
    if stored:
        ws.store.add_evaluation(evaluation)
    else:
        typer.echo(f"note: {ws.store.location} is read-only; the metrics are not stored", err=True)
    text = f"{rec.method} (run {rec.id}):\n" + "\n".join(f"  {k:<26} {fmt(v)}" for k, v in sorted(metrics.items()))
    text += (
        f"\nsame inputs as evaluation {same}" if same else (f"\nstored as evaluation {evaluation.id}" if stored else "")
    )
    doc = {
        "run_id": rec.id,
        "method": rec.method,
        "metrics": metrics,
        "evaluation_id": evaluation.id,
        "inputs_fingerprint": evaluation.inputs_fingerprint,
        "same_inputs_as": same,
        "stored": stored,
        "not_computed": {},
    }
    out(clean(doc), as_json, text)
