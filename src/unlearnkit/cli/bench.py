"""``unlearnkit bench``: a methods x scenarios x seeds grid from a YAML file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from . import app
from .common import HomeOpt, JsonOpt, StoreOpt, clean, rows_text, summary_keys, workspace
from .common import out as emit


@app.command()
def bench(
    grid_file: Path = typer.Argument(
        ..., help="YAML grid: dataset, model, seeds, scenarios, methods, workers (e.g. benchmarks/grid.yaml)."
    ),
    workers: Optional[int] = typer.Option(None, "--workers", help="Parallel processes (overrides the grid)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write a report to this folder."),
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Run a methods x scenarios x seeds grid in parallel processes and store every run."""
    from ..orchestration.bench import load_grid, run_grid
    from ..orchestration.report import summarise, write_report

    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, not {workers}")
    grid = load_grid(grid_file)  # every name, hyperparameter and scenario checked before training
    ws = workspace(home, store)
    done = lambda i, n: typer.echo(f"job {i}/{n} done", err=True)
    records = run_grid(grid, ws.root, workers, on_done=done)
    for r in records:
        ws.store.add(r)
    paths = write_report(records, out, title=f"unlearnkit bench: {grid_file.name}") if out else {}
    rows = summarise(records)
    doc = {"runs": [r.id for r in records], "rows": rows, "report": {k: str(v) for k, v in paths.items()}}
    text = rows_text(rows, summary_keys(grid.modality, [r.get("mean", {}) for r in rows])) + (
        f"\nreport: {paths['html']}" if paths else ""
    )
    emit(clean(doc), as_json, text)
