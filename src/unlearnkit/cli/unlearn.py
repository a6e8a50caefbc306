"""``unlearnkit unlearn``: answer a deletion request (one function, ``unlearn``)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import ConfigError
from . import app
from .common import (
    HomeOpt,
    JsonOpt,
    SeedOpt,
    StoreOpt,
    clean,
    fmt,
    not_computed_text,
    out,
    parse_params,
    read_lines,
    summary_keys,
    workspace,
)


def _graph_ids(flag: str, path: Path, from_run: str, home: Path | None, store: str | None) -> list[str]:
    """The example ids of the edges or nodes a ``--forget-edges`` / ``--forget-nodes`` file
    names, by the run's graph (a run of another modality is refused)."""
    from ..modalities import modality_of_spec

    lines = read_lines(path)
    if not lines:
        raise ConfigError(f"{path} is empty: it lists no {'edges' if flag == '--forget-edges' else 'nodes'}")
    rec = workspace(home, store).store.get(from_run)
    if modality_of_spec(rec.task_spec).name != "graph":
        raise ConfigError(f"{flag} is for graph runs; run {from_run} is a {rec.task_spec.get('modality')} run")
    task_module = modality_of_spec(rec.task_spec).part("task")
    convert = task_module.edge_request_ids if flag == "--forget-edges" else task_module.node_request_ids
    return convert(rec.task_spec, lines)


def record_own_answer(ws, answer: dict):
    """Store a modality's own answer (:func:`unlearnkit.requests.record_own_answer`; what
    ``unlearnkit federated unlearn`` records with)."""
    from ..requests import record_own_answer as record

    return record(ws, answer)


def _print_own(outcome, as_json: bool) -> None:
    """What ``unlearn`` prints for a run its modality answered with its own flow (a federation:
    rounds, not optimiser steps)."""
    from ..modalities import modality_of_spec

    rec, ev = outcome.record, outcome.evaluation
    cost = rec.cost or {}
    doc = {
        "run_id": rec.id,
        "method": rec.method,
        "parent": rec.parent,
        "scenario": rec.scenario,
        "n_forget": len(rec.forget_ids or ()),
        "forget_fingerprint": rec.forget_fingerprint,
        "artifact": rec.artifact,
        "cost": cost,
        "metrics": rec.metrics,
        "evaluation_id": ev.id if ev else None,
        "not_computed": {},
        "extra": outcome.extra or {},
    }
    text = (
        f"{rec.method}: forgot {doc['n_forget']} examples in {float(cost.get('wall_time_s', 0.0)):.2f}s "
        f"({cost.get('rounds', '?')} rounds)\nrun id: {rec.id}"
    )
    if rec.metrics:
        modality = modality_of_spec(rec.task_spec)
        text += "\n" + "\n".join(f"  {k:<22} {fmt(rec.metrics.get(k))}" for k in summary_keys(modality, rec.metrics))
    out(clean(doc), as_json, text)


@app.command()
def unlearn(
    from_run: str = typer.Option(..., "--from", help="Run id of the trained original (see `unlearnkit train`)."),
    method: str = typer.Option(..., "--method", help="Method name (see `unlearnkit methods`)."),
    forget_ids: Optional[Path] = typer.Option(
        None, "--forget-ids", help="File with one example id per line (`unlearnkit data ids DATASET` lists them)."
    ),
    forget_edges: Optional[Path] = typer.Option(
        None,
        "--forget-edges",
        help="Graph tasks: file with one edge per line ('u v', 'u,v' or 'u-v', the graph's node ids).",
    ),
    forget_nodes: Optional[Path] = typer.Option(
        None,
        "--forget-nodes",
        help="Graph tasks: file with one node id per line (each node with its edges and features).",
    ),
    forget_subjects: Optional[Path] = typer.Option(
        None,
        "--forget-subjects",
        help="File with one subject id per line "
        "(language-model tasks: person ids such as p0003; "
        "`unlearnkit data ids DATASET --subjects` lists them).",
    ),
    scenario: Optional[str] = typer.Option(
        None,
        "--scenario",
        help="random:0.1, class:3, subclass:3, "
        "subjects:5, mislabelled:0.1; language-model tasks: a split "
        "name (forget01, forget05, forget10); graph tasks: edges:0.05, nodes:3, "
        "features:0.1, class:2, edge-class:1 or edge-class:0-3 (edges between classes), "
        "edges-in:0.05 / edges-out:0.05 (edges inside / outside the test set's 2-hop subgraph); "
        "federated tasks: client:ID[,ID...]",
    ),
    client: Optional[str] = typer.Option(
        None,
        "--client",
        help="Federated tasks: the client that leaves (comma-separated: several at once); "
        "the same as --scenario client:ID.",
    ),
    param: List[str] = typer.Option([], "--param", "-p", help="Hyperparameter NAME=VALUE (repeatable)."),
    lora: int = typer.Option(
        0,
        "--lora",
        help="Language-model tasks: train LoRA adapters of this rank "
        "(peft; q_proj and v_proj), merged into the weights afterwards; 0 = full weights.",
    ),
    seed: int = SeedOpt,
    evaluate_: bool = typer.Option(
        False, "--evaluate", help="Also compute every metric (trains or loads the reference)."
    ),
    save_model: Optional[Path] = typer.Option(
        None, "--save-model", help="Also write the unlearned model to this safetensors file."
    ),
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Answer a deletion request: apply a method to a trained original (the flow of
    :func:`unlearnkit.requests.answer_request`; this command only reads options and prints)."""
    from ..modalities import modality_of_spec
    from ..requests import DeletionRequest, answer_request, check_output_path

    # what only the command line has is checked here (option combinations, id files); the
    # request itself (method and hyperparameters, ids, store, artifact) before any work there
    if len([x for x in (forget_ids, forget_edges, forget_nodes, forget_subjects, scenario, client) if x]) > 1:
        raise ConfigError(
            "give exactly one of --forget-ids, --forget-edges, --forget-nodes, --forget-subjects, --scenario "
            "or --client"
        )
    if client:
        scenario = f"client:{client}"  # the modality reads it (a modality without clients refuses it)
    if lora < 0:
        raise ConfigError("--lora must be a rank >= 1, or 0 for full weights")
    params = parse_params(param)
    if save_model:
        check_output_path(save_model, "--save-model")
    ids = read_lines(forget_ids) if forget_ids else None
    if forget_ids and not ids:
        raise ConfigError(f"{forget_ids} is empty: it lists no example ids")
    for flag, path in (("--forget-edges", forget_edges), ("--forget-nodes", forget_nodes)):
        if path:
            ids = _graph_ids(flag, path, from_run, home, store)
    subjects = read_lines(forget_subjects) if forget_subjects else None
    if forget_subjects and not subjects:
        raise ConfigError(f"{forget_subjects} lists no subject ids (the file is empty)")
    ws = workspace(home, store)  # the store is checked writable here, before the run
    request = DeletionRequest(
        from_run,
        method,
        params,
        ids=ids,
        subjects=subjects,
        scenario=scenario,
        seed=seed,
        evaluate=evaluate_,
        lora=lora,
        save_model=save_model,
    )
    outcome = answer_request(ws, request, progress=not as_json)
    if outcome.own_flow:  # e.g. a federation: its original is its stored rounds, not one model
        return _print_own(outcome, as_json)
    rec, metrics = outcome.record, outcome.metrics
    doc = outcome.to_dict()
    text = (
        f"{method}: forgot {len(outcome.forget_ids)} examples in {outcome.cost.wall_time_s:.2f}s "
        f"({outcome.cost.steps} steps)\nrun id: {rec.id}"
    )
    scalars = {k: v for k, v in outcome.extra.items() if isinstance(v, (int, float))}
    if scalars:  # what the method reports about itself (e.g. certified removal's epsilon)
        text += "\n" + "\n".join(f"  {k:<24} {v:.4g}" for k, v in scalars.items())
    if metrics:
        modality = modality_of_spec(rec.task_spec)
        text += "\n" + "\n".join(f"  {k:<20} {fmt(metrics.get(k))}" for k in summary_keys(modality, metrics))
    text += not_computed_text(outcome.not_computed)
    out(clean(doc), as_json, text)
