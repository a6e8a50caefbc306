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
        "disk). The last three train a tiny causal language model. recsys (implicit-feedback recommenders: "
        "--dataset synthetic, synthetic:<users>:<items> or a MovieLens / Netflix ratings file); federated "
        "(clients on Flower at the defaults; `unlearnkit federated train` sets clients, rounds, strategy).",
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
        help="Classifiers: linear, mlp (default), cnn or resnet18; graphs: gcn (default), gat, gin or sage; "
        "recommenders: bpr (default), lightgcn or two-tower.",
    ),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="Training epochs (default: the model's recipe)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    test_fraction: Optional[float] = typer.Option(
        None,
        "--test-fraction",
        help="Graph tasks: the share of nodes (graph) or edges (graph-link) held out as the test set "
        "(default 0.2; GNNDelete's edges-out setting needs a small one, e.g. 0.05, on dense graphs); "
        "recommenders: each user's held-out share (default: leave one out).",
    ),
    threshold: Optional[float] = typer.Option(
        None,
        "--threshold",
        help="Recommenders on a ratings file: ratings below it are no interaction (default: every rating is one).",
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
    dp_epsilon: Optional[float] = typer.Option(
        None,
        "--dp-epsilon",
        help="Language-model tasks: train the original with DP-SGD (Opacus: per-row clipping, Gaussian noise, "
        "the RDP accountant) to this epsilon; the original dp2unlearning needs.",
    ),
    dp_delta: float = typer.Option(1e-5, "--dp-delta", help="--dp-epsilon: the delta of (epsilon, delta)-DP."),
    dp_clip: float = typer.Option(1.0, "--dp-clip", help="--dp-epsilon: the per-row gradient norm bound C."),
    distributed: bool = typer.Option(
        False,
        "--distributed",
        help="Train data-parallel under torchrun (python -m torch.distributed.run --nproc-per-node N -m "
        "unlearnkit train ... --distributed): world size and rank from the environment, gloo on CPUs, nccl "
        "on GPUs (cuda:LOCAL_RANK); rank 0 records the run and prints.",
    ),
    seed: int = SeedOpt,
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Train an original model and record it; later commands refer to it by run id."""
    from ..modalities import modality_for_task_kind

    modality = modality_for_task_kind(task_kind)
    if dp_epsilon is not None:
        finite("--dp-epsilon", dp_epsilon, 0)
        finite("--dp-clip", dp_clip, 0)
        finite("--dp-delta", dp_delta, 0)
        if not dp_delta < 1:
            raise ConfigError(f"--dp-delta must be in (0, 1), not {dp_delta}")
        if not modality.supports("dp_training"):
            raise ConfigError(
                "--dp-epsilon applies to language-model tasks (--task profiles, bible or qa); "
                "a DP classifier original is built in Python: make_task(..., dp={...})"
            )
        if distributed:
            raise ConfigError("--dp-epsilon and --distributed: DP-SGD training runs in one process")
    finite("--epochs", epochs, 0)
    finite("--lr", lr, 0)
    finite("--objective-noise", objective_noise, 0, strict=False)
    if test_fraction is not None:
        finite("--test-fraction", test_fraction, 0)
        if not modality.supports("test_fraction"):
            raise ConfigError(
                "--test-fraction applies to graph and recommender tasks (--task graph, graph-link, recsys)"
            )
        if not test_fraction < 1:
            raise ConfigError("--test-fraction must be in (0, 1)")
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
        threshold=threshold,
        forget=forget,
        people=people,
        qa_per_person=qa_per_person,
        lm_size=_lm_size(lm_size),
    )
    if dp_epsilon is not None:
        options.update(dp_epsilon=dp_epsilon, dp_delta=dp_delta, dp_clip=dp_clip)
    if distributed:
        return _train_distributed(modality, task_kind, options, seed, home, store, as_json)
    ws = workspace(home, store)  # created, and checked writable, before any training
    task = modality.build_task(task_kind, options, seed=seed, cache=ws.cache, progress=not as_json)
    _record(modality, task, task_kind, ws, as_json)


def _record(modality, task, task_kind: str, ws, as_json: bool) -> None:
    """Save the trained original, add its run to the store and print what was trained."""
    from ..orchestration.experiment import train_record

    metrics = modality.train_metrics(task)
    own_forget = modality.supports("default_forget")
    rec = train_record(task, metrics, ws.artifacts.save(task.original))
    keep = getattr(modality.part("task"), "record_tags", None)  # what a modality keeps beside the
    if keep is not None:  # model (a federation's stored rounds), so later requests need not retrain
        rec.tags = {**rec.tags, **keep(task, ws.artifacts)}
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


class _ReadOnlyCache:
    """The workspace's cache of trained models for ranks other than 0: they find what rank 0
    finds (so every rank trains, or loads, the same models in step) and write nothing."""

    def __init__(self, cache):
        self._cache = cache

    def get(self, key, model):
        return self._cache.get(key, model)

    def put(self, key, model, info) -> None:
        return None


def _train_distributed(modality, task_kind: str, options: dict, seed: int, home, store, as_json: bool) -> None:
    """``train`` on every rank of a torchrun job: the same task built on each, its training
    loops data-parallel (:mod:`unlearnkit.engines.distributed`); rank 0 records and prints."""
    import os

    import torch
    import torch.distributed as dist

    from ..engines import distributed as data_parallel

    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}") if cuda else torch.device("cpu")
    owned = not (dist.is_available() and dist.is_initialized())  # a caller's group is left to the caller
    info = data_parallel.init_process_group(device)
    try:
        if info.is_main:  # rank 0 creates the workspace, and checks it writable, before the others read it
            ws = workspace(home, store)
            dist.barrier()
            cache = ws.cache
        else:
            dist.barrier()
            ws = workspace(home, store, mode="r")
            cache = _ReadOnlyCache(ws.cache)
        with data_parallel.data_parallel():
            task = modality.build_task(task_kind, options, seed=seed, cache=cache, progress=not as_json)
        if info.is_main:
            _record(modality, task, task_kind, ws, as_json)
        dist.barrier()  # every rank leaves once the run is recorded
    finally:
        if owned:
            data_parallel.destroy_process_group()
