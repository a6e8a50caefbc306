"""``unlearnkit report``: Markdown and HTML from stored runs (reads the store only)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from . import app
from .common import HomeOpt, JsonOpt, StoreOpt, workspace
from .common import out as emit


@app.command()
def report(
    out: Path = typer.Option(Path("unlearnkit-report"), "--out", help="Folder for report.md/.html/.json."),
    run_ids: Optional[str] = typer.Option(
        None, "--runs", help="Comma-separated run ids (default: every stored run with metrics)."
    ),
    title: str = typer.Option("unlearnkit report", "--title"),
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Markdown and self-contained HTML tables and plots from stored runs."""
    from ..orchestration.report import write_report

    ws = workspace(home, store, mode="r")
    if run_ids:
        records = [ws.store.get(r.strip()) for r in run_ids.split(",") if r.strip()]
    else:
        records = [r for r in ws.store.list() if r.metrics or r.status != "ok"]
    if not records:
        raise ConfigError("no runs with metrics to report; run `unlearnkit evaluate RUN` or `bench` first")
    paths = write_report(records, out, title=title)
    emit({k: str(v) for k, v in paths.items()}, as_json, "\n".join(f"{k}: {v}" for k, v in paths.items()))
