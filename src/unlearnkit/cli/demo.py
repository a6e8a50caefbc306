"""``unlearnkit demo``: the main job end to end, with a report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from . import app
from .common import JsonOpt, clean, summary_keys, table
from .common import out as emit


def _demos() -> dict:
    """``demo --task`` value -> (runner, default output folder)."""
    from ..orchestration.demo import run_demo, run_lm_demo

    return {
        "classifier": (
            lambda out, home, chosen, seeds, model, progress, log: run_demo(
                out, home, chosen, seeds, model=model, progress=progress, log=log
            ),
            Path("demo-output"),
        ),
        "profiles": (
            lambda out, home, chosen, seeds, model, progress, log: run_lm_demo(
                out, home, chosen, seeds, progress=progress, log=log
            ),
            Path("demo-lm-output"),
        ),
    }


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-output"), "--out", help="Folder for the report."),
    home: Optional[Path] = typer.Option(None, "--home", help="Workspace (default: <out>/home)."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated method names."),
    seeds: str = typer.Option("0", "--seeds", help="Comma-separated seeds."),
    model: str = typer.Option("cnn", "--model", help="linear, mlp, cnn or resnet18."),
    task_kind: str = typer.Option(
        "classifier",
        "--task",
        help="classifier (digits) or profiles (a tiny "
        "causal LM forgets 10% of generated fictitious people; about 3 minutes).",
    ),
    as_json: bool = JsonOpt,
):
    """The main job: a digits classifier answers deletion requests (5 subjects; class 3) with
    every method; prints the comparison and writes a self-contained HTML report. With
    ``--task profiles``, the same for a language model and its methods."""
    from ..modalities import modality_for_task_kind

    demos = _demos()
    if task_kind not in demos:
        raise ConfigError(f"--task must be {' or '.join(demos)}, not {task_kind!r}")
    modality = modality_for_task_kind(task_kind)
    try:
        seed_list = [int(s) for s in seeds.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds expects comma-separated integers, got {seeds!r}") from None
    log = (lambda s: typer.echo(s, err=True)) if as_json else typer.echo
    chosen = methods.split(",") if methods else None
    runner, default_out = demos[task_kind]
    doc = runner(out if out != Path("demo-output") else default_out, home, chosen, seed_list, model, not as_json, log)
    if as_json:
        emit(clean(doc), True)
        return
    by_scen: dict[str, list] = {}
    for m in doc["models"]:
        by_scen.setdefault(m["scenario"], []).append(m)
    keys = summary_keys(modality, [m.get("metrics") or {} for m in doc["models"]])
    for scen, ms in by_scen.items():
        typer.echo(f"\n== {scen} ==")
        rows = [
            [m["model"]]
            + (
                [m["metrics"].get(k) for k in keys]
                if m["status"] == "ok"
                else [f"failed: {m['error']}"] + [None] * (len(keys) - 1)
            )
            for m in ms
        ]
        typer.echo(table(rows, ["model"] + keys))
    typer.echo(f"\nreport: {doc['report']['html']}")
