"""The ``unlearnkit`` command line.

Every command takes ``--json`` for scripts. Errors print one line ``error: ...`` on
stderr and exit with status 2; nothing is half-written.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .errors import ConfigError, UnlearnkitError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Machine unlearning: forget chosen training data, verify it against "
                       "retraining, keep a record of every request.")
runs_app = typer.Typer(no_args_is_help=True, help="List and show stored runs.")
app.add_typer(runs_app, name="runs")

HomeOpt = typer.Option(None, "--home", help="Workspace folder (store, artifacts, cache). "
                       "Default: $UNLEARNKIT_HOME or ./unlearnkit-home.")
StoreOpt = typer.Option(None, "--store", help="SQLAlchemy URL of the run store "
                        "(default: SQLite file <home>/runs.db), e.g. postgresql+psycopg://u@h/db.")
JsonOpt = typer.Option(False, "--json", help="Print one JSON document instead of text.")
SeedOpt = typer.Option(0, "--seed", help="Seed (data split, scenario, training, method).")


def _out(obj, as_json: bool, text: str | None = None) -> None:
    if as_json:
        typer.echo(json.dumps(obj, indent=2, default=_json_default, allow_nan=False))
    elif text is not None:
        typer.echo(text)


def _json_default(o):
    if isinstance(o, float):
        return None
    if isinstance(o, Path):
        return str(o)
    return str(o)


def _clean(obj):
    """Replace NaN/inf by None so that --json output is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _workspace(home, store):
    from .orchestration.experiment import Workspace

    return Workspace.open(home, store)


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


LM_SUMMARY = ["forget_quality", "model_utility", "rouge_forget", "paraphrase_rouge", "privleak",
              "relearn_rouge", "fade_sym_kl", "cost_ratio_time"]
SUMMARY = ["acc_forget", "acc_retain", "acc_test", "mia_lr_auc", "forget_quality", "js_forget",
           "cost_ratio_time"]


def _parse_params(items: list[str]) -> dict:
    out = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep:
            raise ConfigError(f"--param expects NAME=VALUE, got {it!r}")
        out[k.strip()] = _value(v.strip())
    return out


def _value(v: str):
    """int, float (``1e-3`` included), true/false, null, a YAML/JSON list, or the string."""
    import yaml

    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    try:
        return yaml.safe_load(v)
    except yaml.YAMLError:
        return v


def _read_lines(path: Path) -> list[str]:
    try:
        lines = [ln.strip() for ln in Path(path).read_text().splitlines()]
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    return [ln for ln in lines if ln and not ln.startswith("#")]


def _summary_keys(task) -> list[str]:
    return LM_SUMMARY if task.modality == "causal_lm" else SUMMARY


def _load_run_model(ws, rec, task):
    """The stored model of run ``rec`` (a method's own shape, e.g. a SISA ensemble, for unlearn runs)."""
    from .methods import get_method

    if rec.status != "ok" or not rec.artifact:
        raise ConfigError(f"run {rec.id} has no stored model (status {rec.status})")
    template = (get_method(rec.method, **rec.params).model_template(task) if rec.kind == "unlearn"
                else task.model_factory(rec.seed).to(task.device))
    return ws.artifacts.load(rec.artifact, template)


# ---------------------------------------------------------------------------- demo
@app.command()
def demo(
    out: Path = typer.Option(Path("demo-output"), "--out", help="Folder for the report."),
    home: Optional[Path] = typer.Option(None, "--home", help="Workspace (default: <out>/home)."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated method names."),
    seeds: str = typer.Option("0", "--seeds", help="Comma-separated seeds."),
    model: str = typer.Option("cnn", "--model", help="linear, mlp, cnn or resnet18."),
    task_kind: str = typer.Option("classifier", "--task", help="classifier (digits) or profiles (a tiny "
                                  "causal LM forgets 10% of generated fictitious people; about 3 minutes)."),
    as_json: bool = JsonOpt,
):
    """The main job: a digits classifier answers deletion requests (5 subjects; class 3) with
    every method; prints the comparison and writes a self-contained HTML report. With
    ``--task profiles``, the same for a language model and its methods."""
    from .orchestration.demo import run_demo, run_lm_demo

    log = (lambda s: typer.echo(s, err=True)) if as_json else typer.echo
    chosen = methods.split(",") if methods else None
    seed_list = [int(s) for s in seeds.split(",")]
    if task_kind == "profiles":
        doc = run_lm_demo(out if out != Path("demo-output") else Path("demo-lm-output"), home, chosen,
                          seed_list, progress=not as_json, log=log)
    elif task_kind == "classifier":
        doc = run_demo(out, home, chosen, seed_list, model=model, progress=not as_json, log=log)
    else:
        raise ConfigError(f"--task must be classifier or profiles, not {task_kind!r}")
    if as_json:
        _out(_clean(doc), True)
        return
    by_scen: dict[str, list] = {}
    for m in doc["models"]:
        by_scen.setdefault(m["scenario"], []).append(m)
    for scen, ms in by_scen.items():
        typer.echo(f"\n== {scen} ==")
        keys = LM_SUMMARY if task_kind == "profiles" else SUMMARY
        rows = [[m["model"]] + ([m["metrics"].get(k) for k in keys] if m["status"] == "ok"
                                else [f"failed: {m['error']}"] + [None] * (len(keys) - 1)) for m in ms]
        typer.echo(_table(rows, ["model"] + keys))
    typer.echo(f"\nreport: {doc['report']['html']}")


# ---------------------------------------------------------------------------- train
@app.command()
def train(
    task_kind: str = typer.Option("classifier", "--task", help="classifier (--dataset), profiles (generated "
                                  "TOFU-style QA about fictitious people), bible (MUSE-style verbatim text of "
                                  "KJV books) or qa (--dataset: a folder of <split>.jsonl QA files, TOFU or MUSE-style text on "
                                  "disk). The last three train a tiny causal language model."),
    dataset: str = typer.Option("digits", "--dataset", help="Built-in name (digits, digits-coarse, "
                                "breast_cancer, wine, iris, mnist1d) or a .csv/.parquet/.npz file or image "
                                "folder; with --task qa, the QA folder."),
    forget: str = typer.Option("forget10", "--forget", help="Language-model tasks: the split whose people are "
                               "forgotten by default (forget01, forget05, forget10)."),
    people: int = typer.Option(100, "--people", help="--task profiles: training people to generate."),
    qa_per_person: int = typer.Option(10, "--qa-per-person", help="--task profiles: direct questions per person."),
    lm_size: Optional[str] = typer.Option(None, "--lm-size", help="Tiny Llama sizes, e.g. "
                                          "hidden=128,layers=2,heads=4,intermediate=256."),
    label: Optional[str] = typer.Option(None, "--label", help="Label column of a CSV/parquet file."),
    id_column: Optional[str] = typer.Option(None, "--id-column", help="Example-id column of a table."),
    subject_column: Optional[str] = typer.Option(None, "--subject-column", help="Subject-id column of a table."),
    model: str = typer.Option("mlp", "--model", help="linear, mlp, cnn or resnet18."),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="Training epochs (default: the model's recipe)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    trainer: str = typer.Option("loop", "--trainer", help="loop (SGD-style training) or linear_optimum "
                                "(--model linear only: L-BFGS to the exact L2-logistic optimum, what "
                                "certified_removal needs)."),
    objective_noise: float = typer.Option(0.0, "--objective-noise", help="--trainer linear_optimum: std "
                                          "sigma of Guo et al.'s objective perturbation b^T theta; every "
                                          "model trained for the run (reference, shadows) draws its own b."),
    seed: int = SeedOpt,
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Train an original model and record it; later commands refer to it by run id."""
    from dataclasses import replace

    from .orchestration.experiment import evaluate_model
    from .orchestration.records import RunRecord
    from .modalities.classifier.task import default_recipe, make_task
    from .utils import environment_info

    if task_kind not in ("classifier", "profiles", "bible", "qa"):
        raise ConfigError(f"--task must be classifier, profiles, bible or qa, not {task_kind!r}")
    if task_kind != "classifier":
        return _train_lm(task_kind, dataset, forget, people, qa_per_person, lm_size, epochs, lr,
                         batch_size, seed, home, store, as_json)
    ws = _workspace(home, store)
    kwargs = {k: v for k, v in dict(label=label, id_column=id_column, subject_column=subject_column).items() if v}
    p = Path(dataset)
    source = str(p.resolve()) if p.exists() else dataset
    recipe = default_recipe(model, trainer, objective_noise)
    over = {k: v for k, v in dict(epochs=epochs, lr=lr, batch_size=batch_size).items() if v is not None}
    recipe = replace(recipe, **over)
    task = make_task(source, model, seed=seed, recipe=recipe, cache=ws.cache, progress=not as_json,
                     dataset_kwargs=kwargs)
    ev = evaluate_model(task.original, task, cost=task.original_cost, seed=seed,
                        metrics=["accuracy", "cost"])
    rec = RunRecord(kind="train", task_key=task.key, method="original", seed=seed, task_spec=task.spec,
                    scenario=task.split.scenario, params={"recipe": recipe.to_dict()},
                    metrics=ev.metrics, cost=task.original_cost.to_dict(),
                    environment=environment_info(), artifact=ws.artifacts.save(task.original))
    ws.store.add(rec)
    doc = {"run_id": rec.id, "artifact": rec.artifact, "metrics": {k: ev.metrics.get(k) for k in ("acc_test", "acc_retain")},
           "n_train": len(task.train), "n_test": len(task.test), "dataset": task.spec["dataset"]}
    _out(_clean(doc), as_json, f"trained {model} on {task.spec['dataset']} ({len(task.train)} examples): "
         f"test accuracy {ev.metrics.get('acc_test', float('nan')):.3f}\nrun id: {rec.id}")


def _train_lm(kind, dataset, forget, people, qa_per_person, lm_size, epochs, lr, batch_size, seed,
              home, store, as_json) -> None:
    from dataclasses import replace

    from .modalities.causal_lm.task import default_lm_recipe, make_lm_task
    from .orchestration.records import RunRecord
    from .utils import environment_info

    sizes = None
    if lm_size:
        sizes = {}
        for part in lm_size.split(","):
            k, sep, v = part.partition("=")
            if not sep or not v.strip().isdigit():
                raise ConfigError(f"--lm-size expects NAME=INT pairs, got {part!r}")
            sizes[k.strip()] = int(v)
    if kind == "qa":
        p = Path(dataset)
        if not p.exists():
            raise ConfigError(f"--task qa needs --dataset FOLDER of QA files; {dataset} does not exist")
        source = str(p.resolve())
    else:
        source = kind
    recipe = replace(default_lm_recipe(), **{k: v for k, v in dict(epochs=epochs, lr=lr, batch_size=batch_size).items()
                                             if v is not None})
    ws = _workspace(home, store)
    task = make_lm_task(source, forget=forget, seed=seed, n_people=people, qa_per_person=qa_per_person,
                        model=sizes, recipe=recipe, cache=ws.cache, progress=not as_json)
    acc = task.adapter.answer_accuracy(task.original, task.train)
    metrics = {"exact_match_train": float(acc["exact"].mean()), "token_acc_train": float(acc["token_acc"].mean())}
    rec = RunRecord(kind="train", task_key=task.key, method="original", seed=seed, task_spec=task.spec,
                    scenario=task.split.scenario, params={"recipe": recipe.to_dict()}, metrics=metrics,
                    cost=task.original_cost.to_dict(), environment=environment_info(),
                    artifact=ws.artifacts.save(task.original))
    ws.store.add(rec)
    n_params = sum(p.numel() for p in task.original.parameters())
    doc = {"run_id": rec.id, "artifact": rec.artifact, "metrics": metrics, "n_train": len(task.train),
           "n_forget": len(task.forget), "n_holdout": len(task.holdout), "task": kind, "parameters": n_params}
    _out(_clean(doc), as_json, f"trained a {n_params:,}-parameter causal LM on {len(task.train)} {kind} rows: "
         f"exact match {metrics['exact_match_train']:.3f} on the training answers\nrun id: {rec.id}")


# ---------------------------------------------------------------------------- unlearn
@app.command()
def unlearn(
    from_run: str = typer.Option(..., "--from", help="Run id of the trained original (see `unlearnkit train`)."),
    method: str = typer.Option(..., "--method", help="Method name (see `unlearnkit methods`)."),
    forget_ids: Optional[Path] = typer.Option(None, "--forget-ids", help="File with one example id per line."),
    forget_subjects: Optional[Path] = typer.Option(None, "--forget-subjects", help="File with one subject id per line "
                                                   "(language-model tasks: person ids such as p0003)."),
    scenario: Optional[str] = typer.Option(None, "--scenario", help="random:0.1, class:3, subclass:3, "
                                           "subjects:5, mislabelled:0.1; language-model tasks: a split "
                                           "name (forget01, forget05, forget10)"),
    param: List[str] = typer.Option([], "--param", "-p", help="Hyperparameter NAME=VALUE (repeatable)."),
    lora: int = typer.Option(0, "--lora", help="Language-model tasks: train LoRA adapters of this rank "
                             "(peft; q_proj and v_proj), merged into the weights afterwards; 0 = full weights."),
    seed: int = SeedOpt,
    evaluate_: bool = typer.Option(False, "--evaluate", help="Also compute every metric (trains or loads the reference)."),
    save_model: Optional[Path] = typer.Option(None, "--save-model", help="Also write the unlearned model to this safetensors file."),
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Answer a deletion request: apply a method to a trained original."""
    from .data.scenarios import IdsForget, SubjectForget, parse_scenario
    from .methods import get_method
    from .orchestration.experiment import _jsonable, evaluate_model, get_reference, score_model, task_from_spec
    from .orchestration.records import RunRecord
    from .utils import environment_info

    chosen = [x for x in (forget_ids, forget_subjects, scenario) if x]
    if len(chosen) > 1:
        raise ConfigError("give exactly one of --forget-ids, --forget-subjects or --scenario")
    if lora < 0:
        raise ConfigError("--lora must be a rank >= 1, or 0 for full weights")
    m = get_method(method, **_parse_params(param))  # validate before any work
    ws = _workspace(home, store)
    parent = ws.store.get(from_run)
    if parent.kind != "train":
        raise ConfigError(f"run {parent.id} is a {parent.kind!r} run; --from needs a `train` run")
    is_lm = parent.task_spec.get("modality") == "causal_lm"
    if not chosen and not is_lm:
        raise ConfigError("give exactly one of --forget-ids, --forget-subjects or --scenario")
    if lora and not is_lm:
        raise ConfigError("--lora applies to language-model tasks only")
    subjects = _read_lines(forget_subjects) if forget_subjects else None
    if forget_subjects and not subjects:
        raise ConfigError(f"{forget_subjects} lists no subject ids")
    if is_lm:
        forget = ({"ids": _read_lines(forget_ids)} if forget_ids else
                  {"subjects": subjects} if subjects else scenario)
        sc = {"kind": "lm", "forget": forget} if forget else None  # None: the split it was trained for
    elif forget_ids:
        sc = IdsForget(ids=_read_lines(forget_ids))
    elif subjects:
        sc = SubjectForget(subjects=subjects)
    else:
        sc = parse_scenario(scenario)
    task = task_from_spec(parent.task_spec, sc, ws.cache, progress=not as_json)
    if lora:
        task.lora = {"r": lora}
    result = m.unlearn(task, seed=seed, progress=not as_json)
    metrics: dict = {}
    if evaluate_:
        ref, ref_cost, _ = get_reference(task, seed, ws.cache, progress=not as_json)
        metrics = evaluate_model(result.model, task, score_model(ref, task), result.cost, ref_cost, seed,
                                 reference_model=ref).metrics
    if save_model:
        ws.artifacts.save_file(result.model, save_model)
    rec = RunRecord(kind="unlearn", task_key=task.key, method=method, seed=seed, task_spec=task.spec,
                    scenario=task.split.scenario, forget_fingerprint=task.split.forget_fingerprint,
                    forget_ids=[str(i) for i in task.split.forget_ids], params=result.params,
                    metrics=metrics, cost=result.cost.to_dict(), environment=environment_info(),
                    artifact=ws.artifacts.save(result.model), parent=parent.id,
                    tags={**_jsonable(result.extra), **({"lora": task.lora} if task.lora else {})})
    ws.store.add(rec)
    doc = {"run_id": rec.id, "method": method, "n_forget": len(task.forget),
           "forget_fingerprint": rec.forget_fingerprint, "artifact": rec.artifact, "cost": rec.cost,
           "metrics": metrics, "extra": _jsonable(result.extra)}
    text = (f"{method}: forgot {len(task.forget)} examples in {result.cost.wall_time_s:.2f}s "
            f"({result.cost.steps} steps)\nrun id: {rec.id}")
    scalars = {k: v for k, v in result.extra.items() if isinstance(v, (int, float))}
    if scalars:  # what the method reports about itself (e.g. certified removal's epsilon)
        text += "\n" + "\n".join(f"  {k:<24} {v:.4g}" for k, v in scalars.items())
    if metrics:
        text += "\n" + "\n".join(f"  {k:<20} {_fmt(metrics.get(k))}" for k in _summary_keys(task))
    _out(_clean(doc), as_json, text)


# ---------------------------------------------------------------------------- evaluate
@app.command()
def evaluate(
    run_id: str = typer.Argument(..., help="Run id (or unique prefix) of an unlearn or train run."),
    export_scores: Optional[Path] = typer.Option(None, "--export-scores", help="Write per-example scores "
                                                 "of the model, reference and original to .parquet or .csv."),
    privacy: int = typer.Option(0, "--privacy", help="Also run the per-example privacy evaluation with this "
                                "many shadow models of each kind (U-LiRA, competition score, comparator "
                                "privacy); 0 = off. Unlearn runs only."),
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Compute every metric of a stored model against the (cached) reference."""
    from .engines.loop import LoopStats
    from .orchestration.experiment import evaluate_model, get_reference, score_model, task_from_spec

    if export_scores and export_scores.suffix not in (".parquet", ".csv"):
        raise ConfigError("--export-scores must end in .parquet or .csv")
    ws = _workspace(home, store)
    rec = ws.store.get(run_id)
    if rec.status != "ok" or not rec.artifact:
        raise ConfigError(f"run {rec.id} has no model to evaluate (status {rec.status})")
    scenario = {"kind": "ids", "ids": rec.forget_ids} if rec.forget_ids else rec.scenario
    task = task_from_spec(rec.task_spec, scenario, ws.cache, progress=not as_json)
    model = _load_run_model(ws, rec, task)
    ref, ref_cost, _ = get_reference(task, rec.seed, ws.cache, progress=not as_json)
    ref_scores = score_model(ref, task)
    cost = LoopStats(**rec.cost) if rec.cost else None
    ev = evaluate_model(model, task, ref_scores, cost, ref_cost, rec.seed, reference_model=ref)
    if privacy:
        if task.modality != "classifier":
            raise ConfigError("--privacy (U-LiRA with shadow models) serves classifier tasks; language-model "
                              "tasks report loss/zlib/Min-K% attacks and privleak among their metrics")
        if rec.kind != "unlearn":
            raise ConfigError("--privacy needs an unlearn run (it re-runs the run's method on shadow models)")
        from .evaluation.shadow import privacy_report

        ev.metrics.update(privacy_report(task, rec.method, rec.params, n_shadow=privacy, seed=rec.seed,
                                         cache=ws.cache, progress=not as_json))
    ws.store.update_metrics(rec.id, ev.metrics)
    if export_scores:
        _export_scores(export_scores, {"model": ev.scores, "reference": ref_scores,
                                       "original": score_model(task.original, task)})
    doc = {"run_id": rec.id, "method": rec.method, "metrics": ev.metrics,
           "scores_file": str(export_scores) if export_scores else None}
    text = f"{rec.method} (run {rec.id}):\n" + "\n".join(f"  {k:<26} {_fmt(v)}" for k, v in sorted(ev.metrics.items()))
    if export_scores:
        text += f"\nper-example scores: {export_scores}"
    _out(_clean(doc), as_json, text)


def _export_scores(path: Path, by_role: dict) -> None:
    import pandas as pd

    from .utils import atomic_path

    frames = [pd.DataFrame(sc.rows(split, role)) for role, splits in by_role.items()
              for split, sc in splits.items()]
    df = pd.concat(frames, ignore_index=True)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)


# ---------------------------------------------------------------------------- connect
@app.command()
def connect(
    run_a: str = typer.Argument(..., help="Run id (or unique prefix) of the first model; its task "
                                "(data, forget set) is the one evaluated on."),
    run_b: Optional[str] = typer.Argument(None, help="The second model: a run id of the same task, "
                                          "`original` (RUN_A's original) or `reference` (retrain on "
                                          "RUN_A's retain set, cached). Same as --to."),
    to: Optional[str] = typer.Option(None, "--to", help="The second model, as RUN_B: a run id, "
                                     "`original` or `reference`."),
    curve: str = typer.Option("both", "--curve", help="linear (straight line), bezier (trained "
                              "quadratic Bezier curve) or both."),
    points: int = typer.Option(11, "--points", help="Evaluate at this many evenly spaced t in [0, 1]."),
    steps: int = typer.Option(300, "--steps", help="Step budget for fitting the Bezier curve on the retain set."),
    seed: int = typer.Option(0, "--seed", help="Seeds the curve fit (batch order, t draws) and the attack's folds."),
    out: Path = typer.Option(Path("unlearnkit-connect"), "--out", help="Folder for the plot (.png) "
                             "and values (.json)."),
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Mode connectivity (Cheng & Amiri 2025; Garipov et al. 2018): metrics along the straight line
    and a trained Bezier curve between two stored models, e.g. `connect RUN --to reference`."""
    from dataclasses import replace

    import numpy as np

    from .evaluation.connectivity import barrier, evaluate_path, fit_bezier, interpolate_linear
    from .modalities.classifier.scores import score_splits
    from .orchestration.experiment import get_reference, task_from_spec
    from .utils import atomic_write

    if (run_b is None) == (to is None):
        raise ConfigError("name the second model once: `connect RUN_A RUN_B` or `connect RUN_A --to RUN_B`")
    run_b = run_b or to
    if curve not in ("linear", "bezier", "both"):
        raise ConfigError(f"--curve must be linear, bezier or both, not {curve!r}")
    if points < 2 or steps < 1:
        raise ConfigError("--points must be >= 2 and --steps >= 1")
    ws = _workspace(home, store)

    rec_a = ws.store.get(run_a)
    rec_b = None if run_b in ("original", "reference") else ws.store.get(run_b)
    if rec_b is not None and rec_b.task_key != rec_a.task_key:
        raise ConfigError(f"runs {rec_a.id} and {rec_b.id} are on different tasks "
                          f"({rec_a.task_key} vs {rec_b.task_key}); connect models of the same task")
    if rec_a.task_spec.get("modality") == "causal_lm":
        raise ConfigError("connect serves classifier tasks (its path metrics and BatchNorm recomputation "
                          "are the classifier's); evaluate language-model runs with `unlearnkit evaluate`")
    scenario = {"kind": "ids", "ids": rec_a.forget_ids} if rec_a.forget_ids else rec_a.scenario
    task = task_from_spec(rec_a.task_spec, scenario, ws.cache, progress=not as_json)
    model_a = _load_run_model(ws, rec_a, task)
    ref, _, _ = get_reference(task, rec_a.seed, ws.cache, progress=not as_json)
    if rec_b is None:
        model_b, name_b = (task.original if run_b == "original" else ref), run_b
    else:
        model_b, name_b = _load_run_model(ws, rec_b, task), f"{rec_b.method} ({rec_b.id})"
    name_a = f"{rec_a.method} ({rec_a.id})"
    ts = np.linspace(0, 1, points)
    ref_scores = score_splits(ref, task)
    curves, fit = {}, None
    if curve in ("linear", "both"):
        line = lambda t: interpolate_linear(model_a, model_b, t, task.retain, task.adapter)  # noqa: E731
        curves["linear"] = evaluate_path(line, task, ts, ref_scores, seed=seed)
    if curve in ("bezier", "both"):
        cfg = replace(task.recipe, epochs=float(steps), max_steps=steps)  # exactly `steps` steps
        bez = fit_bezier(model_a, model_b, task.retain, task.adapter, cfg, seed, device=task.device,
                         progress=not as_json)
        fit = {"steps": bez.fit_stats.steps, "final_loss": bez.fit_stats.final_loss,
               "wall_time_s": bez.fit_stats.wall_time_s, "lr": cfg.lr, "data": "retain"}
        curves["bezier"] = evaluate_path(bez, task, ts, ref_scores, seed=seed)
    stem = f"connect-{rec_a.id}-{run_b if rec_b is None else rec_b.id}"
    png, jpath = out / f"{stem}.png", out / f"{stem}.json"
    _plot_connect(png, curves, name_a, name_b)
    doc = _clean({"run_a": rec_a.id, "model_a": name_a, "model_b": name_b, "task_key": rec_a.task_key,
                  "forget_fingerprint": task.split.forget_fingerprint, "bezier_fit": fit,
                  "barrier": {c: {k: barrier(pts, k) for k in ("loss_forget", "loss_retain", "loss_test")}
                              for c, pts in curves.items()},
                  "curves": curves, "plot": str(png), "json": str(jpath)})
    with atomic_write(jpath, "w") as fh:
        json.dump(doc, fh, indent=2, allow_nan=False)
    text = "\n".join(f"{c}: retain-loss barrier {_fmt(doc['barrier'][c]['loss_retain'])}" for c in curves)
    _out(doc, as_json, f"{name_a} -> {name_b}\n{text}\nplot: {png}\nvalues: {jpath}")


def _plot_connect(path: Path, curves: dict[str, list[dict]], name_a: str, name_b: str) -> None:
    """Accuracy and mean loss on forget/retain/test vs t; one line style per curve."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .utils import atomic_path

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    colors = {"forget": "tab:red", "retain": "tab:blue", "test": "tab:green"}
    styles = {"linear": "-", "bezier": "--"}
    for ax, what in zip(axes, ("acc", "loss")):
        for c, pts in curves.items():
            t = [p["t"] for p in pts]
            for s, col in colors.items():
                ax.plot(t, [p.get(f"{what}_{s}", float("nan")) for p in pts], styles[c], color=col,
                        marker="o", ms=3, label=f"{s} ({c})")
        ax.set_xlabel(f"t   (0: {name_a}, 1: {name_b})", fontsize=8)
        ax.set_ylabel("accuracy" if what == "acc" else "mean cross-entropy")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("mode connectivity", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


# ---------------------------------------------------------------------------- bench
@app.command()
def bench(
    grid_file: Path = typer.Argument(..., help="YAML grid: dataset, model, seeds, scenarios, methods, workers."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Parallel processes (overrides the grid)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write a report to this folder."),
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Run a methods x scenarios x seeds grid in parallel processes and store every run."""
    from .orchestration.bench import load_grid, run_grid
    from .orchestration.report import summarise, write_report

    grid = load_grid(grid_file)
    ws = _workspace(home, store)
    done = (lambda i, n: typer.echo(f"job {i}/{n} done", err=True))
    records = run_grid(grid, ws.root, workers, on_done=done)
    for r in records:
        ws.store.add(r)
    paths = write_report(records, out, title=f"unlearnkit bench: {grid_file.name}") if out else {}
    rows = summarise(records)
    doc = {"runs": [r.id for r in records], "rows": rows, "report": {k: str(v) for k, v in paths.items()}}
    text = _rows_text(rows) + (f"\nreport: {paths['html']}" if paths else "")
    _out(_clean(doc), as_json, text)


def _rows_text(rows: list[dict]) -> str:
    out = []
    for scen in dict.fromkeys(r["scenario"] for r in rows):
        out.append(f"\n== {scen} ==")
        tab = []
        for r in rows:
            if r["scenario"] != scen:
                continue
            mean = r.get("mean", {})
            tab.append([r["method"], r.get("n_seeds")] + [mean.get(k) for k in SUMMARY])
        out.append(_table(tab, ["method", "seeds"] + SUMMARY))
    return "\n".join(out)


# ---------------------------------------------------------------------------- report
@app.command()
def report(
    out: Path = typer.Option(Path("unlearnkit-report"), "--out", help="Folder for report.md/.html/.json."),
    run_ids: Optional[str] = typer.Option(None, "--runs", help="Comma-separated run ids (default: every stored run with metrics)."),
    title: str = typer.Option("unlearnkit report", "--title"),
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Markdown and self-contained HTML tables and plots from stored runs."""
    from .orchestration.report import write_report

    ws = _workspace(home, store)
    if run_ids:
        records = [ws.store.get(r.strip()) for r in run_ids.split(",") if r.strip()]
    else:
        records = [r for r in ws.store.list() if r.metrics or r.status != "ok"]
    if not records:
        raise ConfigError("no runs with metrics to report; run `unlearnkit evaluate RUN` or `bench` first")
    paths = write_report(records, out, title=title)
    _out({k: str(v) for k, v in paths.items()}, as_json, "\n".join(f"{k}: {v}" for k, v in paths.items()))


# ---------------------------------------------------------------------------- runs
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
    ws = _workspace(home, store)
    recs = ws.store.list(kind=kind, method=method, limit=limit)
    from .orchestration.report import scenario_label

    def headline(r) -> list:  # utility and forgetting, in the run's modality's terms
        if r.task_spec.get("modality") == "causal_lm":
            return [f"FQ {_fmt(r.metrics.get('forget_quality'))}", f"MU {_fmt(r.metrics.get('model_utility'))}"]
        return [r.metrics.get("acc_forget"), r.metrics.get("acc_test")]

    rows = [[r.id, r.created_at, r.kind, r.method, r.seed, r.status, scenario_label(r.scenario)] + headline(r)
            for r in recs]
    _out(_clean([r.to_dict() for r in recs]), as_json,
         _table(rows, ["id", "created", "kind", "method", "seed", "status", "scenario",
                       "acc_forget|FQ", "acc_test|MU"]) if rows else "no runs")


@runs_app.command("show")
def runs_show(
    run_id: str = typer.Argument(..., help="Run id or unique prefix."),
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Show one run: task, scenario, hyperparameters, metrics, cost, environment."""
    ws = _workspace(home, store)
    r = ws.store.get(run_id).to_dict()
    if r.get("forget_ids") and len(r["forget_ids"]) > 20 and not as_json:
        r["forget_ids"] = r["forget_ids"][:20] + [f"... ({len(r['forget_ids'])} in all)"]
    _out(_clean(r), as_json, json.dumps(_clean(r), indent=2))


# ---------------------------------------------------------------------------- registries
@app.command()
def methods(as_json: bool = JsonOpt):
    """List the unlearning methods with their hyperparameters and defaults."""
    from .methods import list_methods

    ms = list_methods()
    lines = []
    for m in ms:
        lines.append(f"{m['name']}{'  (exact)' if m['exact'] else ''}: {m['summary']}")
        lines.append(f"    source: {m['citation']}")
        lines.append(f"    serves: {', '.join(m['modalities'])}")
        for p in m["params"]:
            lm = "".join(f" ({mod}: {d[p['name']]!r})" for mod, d in m["defaults"].items()
                         if p["name"] in d)
            lines.append(f"    --param {p['name']}={p['default']!r}".ljust(38) + f"  {p['help']}{lm}")
    _out(_clean(ms), as_json, "\n".join(lines))


@app.command()
def metrics(as_json: bool = JsonOpt):
    """List the metrics, what they output, and their sources."""
    from .evaluation.metrics import list_metrics

    ms = list_metrics()
    lines = []
    for m in ms:
        lines.append(f"{m['name']}: {m['description']}")
        lines.append(f"    outputs: {', '.join(m.get('outputs', []))}")
        lines.append(f"    serves: {', '.join(m.get('modalities', ['classifier']))}")
        lines.append(f"    source: {m.get('citation', '')}")
    _out(_clean(ms), as_json, "\n".join(lines))


def main() -> None:
    try:
        app()
    except UnlearnkitError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
