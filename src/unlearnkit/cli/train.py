"""``unlearnkit train``: train an original model of any modality and record it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from . import app
from .common import HomeOpt, JsonOpt, SeedOpt, StoreOpt, clean, finite, out, workspace


def _lm_size(text: str | None) -> dict | None:
    if not text:
        return None
    sizes = {}
    for part in text.split(","):
        k, sep, v = part.partition("=")
        if not sep or not v.strip().isdigit():
            raise ConfigError(f"--lm-size expects NAME=INT pairs, got {part!r}")
        sizes[k.strip()] = int(v)
    return sizes


@app.command()
def train(
    task_kind: str = typer.Option(
        "classifier",
        "--task",
        help="classifier (--dataset), graph / graph-link (node classification / link prediction on a graph: "
        "--dataset karate, lesmis, florentine, davis, karate-nx, digits-knn, sbm:<n> or a PyG folder), profiles (generated "
        "TOFU-style QA about fictitious people), bible (MUSE-style verbatim text of "
        "KJV books) or qa (--dataset: a folder of <split>.jsonl QA files, TOFU or MUSE-style text on "
        "disk). The last three train a tiny causal language model.",
    ),
    dataset: str = typer.Option(
        "digits",
        "--dataset",
        help="Built-in name (digits, digits-coarse, "
        "breast_cancer, wine, iris, mnist1d) or a .csv/.parquet/.npz file or image "
        "folder; with --task qa, the QA folder.",
    ),
    forget: str = typer.Option(
        "forget10",
        "--forget",
        help="Language-model tasks: the split whose people are forgotten by default (forget01, forget05, forget10).",
    ),
    people: int = typer.Option(100, "--people", help="--task profiles: training people to generate."),
    qa_per_person: int = typer.Option(10, "--qa-per-person", help="--task profiles: direct questions per person."),
    lm_size: Optional[str] = typer.Option(
        None, "--lm-size", help="Tiny Llama sizes, e.g. hidden=128,layers=2,heads=4,intermediate=256."
    ),
    label: Optional[str] = typer.Option(None, "--label", help="Label column of a CSV/parquet file."),
    id_column: Optional[str] = typer.Option(None, "--id-column", help="Example-id column of a table."),
    subject_column: Optional[str] = typer.Option(None, "--subject-column", help="Subject-id column of a table."),
    model: Optional[str] = typer.Option(
        None,
        "--model",
        help="Classifiers: linear, mlp (default), cnn or resnet18; graphs: gcn (default), gat, gin or sage.",
    ),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="Training epochs (default: the model's recipe)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    test_fraction: Optional[float] = typer.Option(
        None,
        "--test-fraction",
        help="Graph tasks: the share of nodes (graph) or edges (graph-link) held out as the test set "
        "(default 0.2; GNNDelete's edges-out setting needs a small one, e.g. 0.05, on dense graphs).",
    ),
    trainer: str = typer.Option(
        "loop",
        "--trainer",
        help="loop (SGD-style training) or linear_optimum "
        "(--model linear only: L-BFGS to the exact L2-logistic optimum, what "
        "certified_removal needs).",
    ),
    objective_noise: float = typer.Option(
        0.0,
        "--objective-noise",
        help="--trainer linear_optimum: std "
        "sigma of Guo et al.'s objective perturbation b^T theta; every "
        "model trained for the run (reference, shadows) draws its own b.",
    ),
    seed: int = SeedOpt,
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Train an original model and record it; later commands refer to it by run id."""
    from ..modalities import modality_for_task_kind
    from ..orchestration.experiment import train_record

    modality = modality_for_task_kind(task_kind)
    finite("--epochs", epochs, 0)
    finite("--lr", lr, 0)
    finite("--objective-noise", objective_noise, 0, strict=False)
    if test_fraction is not None:
        finite("--test-fraction", test_fraction, 0)
        if not test_fraction < 1 or modality.name != "graph":
            raise ConfigError(
                "--test-fraction must be in (0, 1)"
                if modality.name == "graph"
                else "--test-fraction applies to graph tasks (--task graph or graph-link)"
            )
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, not {batch_size}")
    options = dict(
        dataset=dataset,
        model=model,
        label=label,
        id_column=id_column,
        subject_column=subject_column,
        trainer=trainer,
        objective_noise=objective_noise,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        test_fraction=test_fraction,
        forget=forget,
        people=people,
        qa_per_person=qa_per_person,
        lm_size=_lm_size(lm_size),
    )
    ws = workspace(home, store)  # created, and checked writable, before any training
    task = modality.build_task(task_kind, options, seed=seed, cache=ws.cache, progress=not as_json)
    metrics = modality.train_metrics(task)
    own_forget = modality.supports("default_forget")
    rec = train_record(task, metrics, ws.artifacts.save(task.original))
    ws.store.add(rec)
    n_params = sum(p.numel() for p in task.original.parameters())
    label_ = modality.task_label(task.spec)
    doc = {
        "run_id": rec.id,
        "artifact": rec.artifact,
        "metrics": metrics,
        "task": task_kind,
        "modality": modality.name,
        "dataset": task.spec.get("dataset", task.spec.get("source")),
        "n_train": len(task.train),
        "n_test": len(task.split.test),
        "parameters": n_params,
    }
    if own_forget:
        doc.update(n_forget=len(task.forget), n_holdout=len(task.split.holdout))
    shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, (int, float)))
    out(
        clean(doc),
        as_json,
        f"trained {label_} ({n_params:,} parameters) on {len(task.train)} examples: {shown}\nrun id: {rec.id}",
    )
