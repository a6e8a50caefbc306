"""``unlearnkit bench``: a methods x scenarios x seeds grid from a YAML file."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from . import app
from .common import HomeOpt, JsonOpt, StoreOpt, clean, rows_text, summary_keys, workspace
from .common import out as emit


@contextlib.contextmanager
def job_bar(desc: str):
    """A progress bar on stderr over finished jobs; yields ``done(i, n)``."""
    from tqdm.auto import tqdm

    bar = None

    def done(i: int, n: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=n, desc=desc, unit="job", dynamic_ncols=True, file=sys.stderr)
        bar.update(i - bar.n)

    try:
        yield done
    finally:
        if bar is not None:
            bar.close()


@app.command()
def bench(
    grid_file: Path = typer.Argument(
        ..., help="YAML grid: dataset, model, seeds, scenarios, methods, workers (e.g. benchmarks/grid.yaml)."
    ),
    workers: Optional[int] = typer.Option(
        None, "--workers", help="Jobs at a time (overrides the grid): 1 runs here, more run on Ray."
    ),
    address: Optional[str] = typer.Option(
        None,
        "--address",
        help="Ray cluster to run the jobs on: auto, HOST:PORT or ray://HOST:PORT (default: a local Ray "
        "instance with --workers CPUs). Its workers must see --home at the same path.",
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write a report to this folder."),
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Run a methods x scenarios x seeds grid (here, or on Ray with --workers > 1 or --address)
    and store every run."""
    from ..orchestration.bench import check_backend, load_grid, run_grid
    from ..orchestration.report import summarise, write_report

    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, not {workers}")
    grid = load_grid(grid_file)  # every name, hyperparameter and scenario checked before training
    check_backend(workers or grid.workers, address)  # the address, and Ray where it is needed
    ws = workspace(home, store)
    with job_bar("bench jobs") as done:
        records = run_grid(grid, ws.root, workers, on_done=done, address=address)
    for r in records:
        ws.store.add(r)
    paths = write_report(records, out, title=f"unlearnkit bench: {grid_file.name}") if out else {}
    rows = summarise(records)
    doc = {"runs": [r.id for r in records], "rows": rows, "report": {k: str(v) for k, v in paths.items()}}
    text = rows_text(rows, summary_keys(grid.modality, [r.get("mean", {}) for r in rows])) + (
        f"\nreport: {paths['html']}" if paths else ""
    )
    emit(clean(doc), as_json, text)
