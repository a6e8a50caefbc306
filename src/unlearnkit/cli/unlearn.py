"""``unlearnkit unlearn``: answer a deletion request (one function, ``unlearn``)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import ConfigError
from . import app
from .common import (HomeOpt, JsonOpt, SeedOpt, StoreOpt, check_output_file, clean, fmt, out, parse_params,
                     read_lines, summary_keys, workspace)


@app.command()
def unlearn(
    from_run: str = typer.Option(..., "--from", help="Run id of the trained original (see `unlearnkit train`)."),
    method: str = typer.Option(..., "--method", help="Method name (see `unlearnkit methods`)."),
    forget_ids: Optional[Path] = typer.Option(None, "--forget-ids", help="File with one example id per line "
                                              "(`unlearnkit data ids DATASET` lists them)."),
    forget_subjects: Optional[Path] = typer.Option(None, "--forget-subjects", help="File with one subject id per line "
                                                   "(language-model tasks: person ids such as p0003; "
                                                   "`unlearnkit data ids DATASET --subjects` lists them)."),
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
    from ..methods import get_method
    from ..modalities import modality_of_spec
    from ..orchestration.experiment import _jsonable, evaluate_model, get_reference, score_model
    from ..orchestration.records import RunRecord
    from ..utils import environment_info

    # everything that can be checked is checked before any work: the request's shape, the
    # method and its hyperparameters, output paths, the store's writability, the id files
    if len([x for x in (forget_ids, forget_subjects, scenario) if x]) > 1:
        raise ConfigError("give exactly one of --forget-ids, --forget-subjects or --scenario")
    if lora < 0:
        raise ConfigError("--lora must be a rank >= 1, or 0 for full weights")
    m = get_method(method, **parse_params(param))
    if save_model:
        check_output_file(save_model, "--save-model")
    ids = read_lines(forget_ids) if forget_ids else None
    if forget_ids and not ids:
        raise ConfigError(f"{forget_ids} is empty: it lists no example ids")
    subjects = read_lines(forget_subjects) if forget_subjects else None
    if forget_subjects and not subjects:
        raise ConfigError(f"{forget_subjects} lists no subject ids (the file is empty)")
    ws = workspace(home, store)  # the store is checked writable here, before the run
    parent = ws.store.get(from_run)
    if parent.kind != "train":
        raise ConfigError(f"run {parent.id} is a {parent.kind!r} run; --from needs a `train` run")
    modality = modality_of_spec(parent.task_spec)
    if lora and not modality.supports("lora"):
        raise ConfigError(f"--lora applies to tasks whose modality trains LoRA adapters; {modality.name} "
                          "tasks do not")
    sc = modality.request_scenario(ids=ids, subjects=subjects, scenario=scenario)
    task = modality.task_from_spec(parent.task_spec, sc, ws.cache, progress=not as_json)
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
    lora_tag = getattr(task, "lora", None)
    rec = RunRecord(kind="unlearn", task_key=task.key, method=method, seed=seed, task_spec=task.spec,
                    scenario=task.split.scenario, forget_fingerprint=task.split.forget_fingerprint,
                    forget_ids=[str(i) for i in task.split.forget_ids], params=result.params,
                    metrics=metrics, cost=result.cost.to_dict(), environment=environment_info(),
                    artifact=ws.artifacts.save(result.model), parent=parent.id,
                    tags={**_jsonable(result.extra), **({"lora": lora_tag} if lora_tag else {})})
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
        text += "\n" + "\n".join(f"  {k:<20} {fmt(metrics.get(k))}" for k in summary_keys(modality, metrics))
    out(clean(doc), as_json, text)
