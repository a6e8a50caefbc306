"""``unlearnkit runs list|show``: the store, read only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from . import runs_app
from .common import LIST_COLUMNS, HomeOpt, JsonOpt, StoreOpt, clean, fmt, out, table, workspace


def _headline(r) -> list:
    """Forgetting and utility, in the run's modality's terms."""
    from ..modalities import modality_of_spec

    try:
        name = modality_of_spec(r.task_spec).name
    except Exception:  # noqa: BLE001 - a record of a modality not installed here
        name = None
    cols = LIST_COLUMNS.get(name, LIST_COLUMNS["classifier"])
    labelled = cols[0][0] != cols[0][1]
    return [f"{lab} {fmt(r.metrics.get(key))}" if labelled else r.metrics.get(key) for lab, key in cols]


@runs_app.command("list")
def runs_list(
    kind: Optional[str] = typer.Option(None, "--kind", help="train, reference or unlearn."),
    method: Optional[str] = typer.Option(None, "--method"),
    limit: int = typer.Option(50, "--limit"),
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """List stored runs, newest first."""
    from ..orchestration.report import scenario_label

    ws = workspace(home, store, mode="r")
    recs = ws.store.list(kind=kind, method=method, limit=limit)
    rows = [
        [r.id, r.created_at, r.kind, r.method, r.seed, r.status, scenario_label(r.scenario) if r.scenario else "-"]
        + _headline(r)
        for r in recs
    ]
    out(
        clean([r.to_dict() for r in recs]),
        as_json,
        table(rows, ["id", "created", "kind", "method", "seed", "status", "scenario", "acc_forget|FQ", "acc_test|MU"])
        if rows
        else "no runs",
    )


@runs_app.command("show")
def runs_show(
    run_id: str = typer.Argument(..., help="Run id or unique prefix."),
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Show one run: task, scenario, hyperparameters, metrics, cost, environment, and every
    evaluation of it (oldest first, each with the fingerprint of its inputs)."""
    ws = workspace(home, store, mode="r")
    rec = ws.store.get(run_id)
    r = rec.to_dict()
    r["evaluations"] = [e.to_dict() for e in ws.store.evaluations(rec.id)]

    def short(ids):
        return ids[:20] + [f"... ({len(ids)} in all)"] if ids and len(ids) > 20 and not as_json else ids

    r["forget_ids"] = short(r.get("forget_ids"))
    split = (r.get("tags") or {}).get("split") or {}
    if split.get("holdout_ids"):
        split["holdout_ids"] = short(split["holdout_ids"])
    for e in r["evaluations"]:
        es = (e.get("inputs") or {}).get("split") or {}
        if es.get("holdout_ids"):
            es["holdout_ids"] = short(es["holdout_ids"])
    out(clean(r), as_json, json.dumps(clean(r), indent=2))
