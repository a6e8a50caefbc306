"""One flow for a deletion request (unlearnkit.requests) and evaluations reproducible from the record."""

from __future__ import annotations

import dataclasses
import math
import os
import stat

import numpy as np
import pandas as pd
import pytest
import torch

from unlearnkit.errors import CheckpointError, ConfigError, StoreError, UnknownIdsError
from unlearnkit.modalities.classifier.metrics import js_divergence
from unlearnkit.modalities.classifier.task import default_recipe, make_task
from unlearnkit.orchestration import experiment
from unlearnkit.orchestration.experiment import Workspace, _record
from unlearnkit.requests import DeletionRequest, answer_request, evaluate_run
from unlearnkit.utils import environment_info

pytestmark = pytest.mark.timeout(600)


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def _train_run(ws: Workspace):
    recipe = dataclasses.replace(default_recipe("mlp"), epochs=2)
    task = make_task("digits", "mlp", seed=0, recipe=recipe, cache=ws.cache)
    rec = _record(
        task,
        "train",
        "original",
        0,
        {"recipe": recipe.to_dict()},
        task.original_cost,
        {},
        ws.artifacts.save(task.original),
        environment_info(),
    )
    ws.store.add(rec)
    return task, rec


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ws = Workspace.open(tmp_path_factory.mktemp("req"))
    task, rec = _train_run(ws)
    subjects = sorted(set(task.train.subject_ids))[:3]
    return ws, task, rec, subjects


def _n_artifacts(ws: Workspace) -> int:
    return sum(1 for _ in ws.artifacts.root.rglob("*.safetensors")) if ws.artifacts.root.exists() else 0


# --------------------------------------------------------------------------- reproducible evaluation
def test_unlearn_evaluate_then_evaluate_is_identical_and_overwrites_nothing(trained):
    ws, task, rec, subjects = trained
    out = answer_request(
        ws, DeletionRequest(rec.id, "finetune", {"epochs": 1}, subjects=subjects, seed=0, evaluate=True)
    )
    assert out.record.parent == rec.id and out.record.kind == "unlearn"
    assert set(out.forget_ids) == set(task.train.ids_of_subjects(subjects))
    assert out.artifact == out.record.artifact and ws.artifacts.exists(out.artifact)
    assert "mia_loss_auc" in out.metrics and "cost_ratio_time" in out.metrics
    stored = ws.store.get(out.run_id)
    split = stored.tags["split"]
    assert split["holdout_ids"] == out.holdout_ids  # the record names every split it was evaluated on
    assert {"retain_fingerprint", "test_fingerprint", "holdout_fingerprint"} <= set(split)

    again = evaluate_run(ws, out.run_id)
    assert again.metrics.keys() == out.metrics.keys()
    for k, v in out.metrics.items():
        assert _same(v, again.metrics[k]), (k, v, again.metrics[k])
    evals = ws.store.evaluations(out.run_id)
    assert [e.id for e in evals] == [out.evaluation.id, again.evaluation.id]
    assert evals[0].inputs_fingerprint == evals[1].inputs_fingerprint
    assert again.same_inputs_as == out.evaluation.id
    after = ws.store.get(out.run_id).metrics
    assert after.keys() == stored.metrics.keys() and all(_same(after[k], stored.metrics[k]) for k in after)


def test_changed_inputs_are_a_new_evaluation_beside_the_old(trained):
    ws, task, rec, subjects = trained
    out = answer_request(
        ws, DeletionRequest(rec.id, "gradient_ascent", {"epochs": 1}, subjects=subjects[:1], evaluate=True)
    )
    # the cached reference is replaced by another model: other inputs, other numbers
    t = experiment.rebuild_task(ws, ws.store.get(out.run_id))
    other = t.model_factory(123).to(t.device)
    ws.cache.put(f"reference-{t.reference_key(0)}", other, {"cost": out.reference_cost.to_dict()})
    ev = evaluate_run(ws, out.run_id)
    evals = ws.store.evaluations(out.run_id)
    assert len(evals) == 2 and evals[0].inputs_fingerprint != evals[1].inputs_fingerprint
    assert ev.same_inputs_as is None
    assert evals[0].metrics["js_forget"] == out.metrics["js_forget"] != ev.metrics["js_forget"]
    assert ws.store.get(out.run_id).metrics["js_forget"] == out.metrics["js_forget"]  # never replaced


# --------------------------------------------------------------------------- starting from the run's model
def test_starts_from_the_runs_own_artifact_even_with_a_corrupt_cache(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    task, rec = _train_run(ws)
    cached = ws.cache.artifact(f"original-{task.key}")
    path = ws.cache.artifacts.path(cached)
    os.chmod(path, stat.S_IWUSR | stat.S_IRUSR)
    path.write_bytes(b"not a model")  # the cached original is corrupt
    n_runs = len(ws.store.list())
    ids = [str(i) for i in task.train.example_ids[:5]]
    out = answer_request(ws, DeletionRequest(rec.id, "finetune", {"epochs": 1}, ids=ids))
    want = ws.artifacts.load_state_dict(rec.artifact)
    got = out.task.original.state_dict()
    assert all(torch.equal(want[k], got[k].cpu()) for k in want)  # the train run's model, not a retrained one
    assert ws.cache.artifact(f"original-{task.key}") in (None, cached)  # no new original was trained and cached
    assert len(ws.store.list()) == n_runs + 1

    # a corrupt or missing train-run artifact is an error before any work, nothing written
    apath = ws.artifacts.path(rec.artifact)
    good = apath.read_bytes()
    os.chmod(apath, stat.S_IWUSR | stat.S_IRUSR)
    apath.write_bytes(good[:-7] + b"garbage")
    n_art = _n_artifacts(ws)
    with pytest.raises(CheckpointError, match="corrupt"):
        answer_request(ws, DeletionRequest(rec.id, "finetune", {"epochs": 1}, ids=ids))
    apath.unlink()
    with pytest.raises(CheckpointError, match="not found"):
        answer_request(ws, DeletionRequest(rec.id, "finetune", {"epochs": 1}, ids=ids))
    assert len(ws.store.list()) == n_runs + 1 and _n_artifacts(ws) == n_art - 1


# --------------------------------------------------------------------------- validation before compute
def test_bad_requests_fail_before_any_work(trained, monkeypatch):
    ws, task, rec, subjects = trained

    def boom(*a, **k):
        raise AssertionError("computed before validating")

    monkeypatch.setattr("unlearnkit.requests.warm_up", boom)
    n = len(ws.store.list())
    with pytest.raises(ConfigError):
        answer_request(ws, DeletionRequest(rec.id, "no_such_method", ids=["x"]))
    with pytest.raises(ConfigError):
        answer_request(ws, DeletionRequest(rec.id, "finetune", {"no_such_param": 1}, ids=["x"]))
    with pytest.raises(UnknownIdsError):
        answer_request(ws, DeletionRequest(rec.id, "finetune", ids=["no-such-example"]))
    with pytest.raises(ConfigError, match="exactly one"):
        answer_request(ws, DeletionRequest(rec.id, "finetune"))
    from unlearnkit.methods import list_methods

    lm_only = [m["name"] for m in list_methods() if "classifier" not in m["modalities"]]
    if lm_only:
        with pytest.raises(ConfigError, match="works on"):
            answer_request(ws, DeletionRequest(rec.id, lm_only[0], subjects=subjects))
    with pytest.raises(ConfigError, match="lora"):
        answer_request(ws, DeletionRequest(rec.id, "finetune", subjects=subjects, lora=4))
    with pytest.raises(ConfigError, match="is a folder"):
        answer_request(ws, DeletionRequest(rec.id, "finetune", subjects=subjects, save_model=ws.root))
    ro = dataclasses.replace(ws, read_only=True) if "read_only" in Workspace.__dataclass_fields__ else None
    if ro is not None:
        with pytest.raises(StoreError):
            answer_request(ro, DeletionRequest(rec.id, "finetune", subjects=subjects))
    assert len(ws.store.list()) == n


# --------------------------------------------------------------------------- export
def test_exported_scores_recompute_js_forget(trained, tmp_path):
    ws, task, rec, subjects = trained
    out = answer_request(ws, DeletionRequest(rec.id, "finetune", {"epochs": 1}, subjects=subjects[1:2]))
    path = tmp_path / "scores.csv"
    ev = evaluate_run(ws, out.run_id, export_scores=path)
    df = pd.read_csv(path)
    cols = sorted((c for c in df.columns if c.startswith("prob_")), key=lambda c: int(c.split("_")[1]))
    assert len(cols) == task.num_classes

    def probs(role):
        d = df[(df.model_role == role) & (df.split == "forget")].sort_values("example_id")
        return d, d[cols].to_numpy()

    (dm, pm), (dr, pr) = probs("model"), probs("reference")
    assert list(dm.example_id) == list(dr.example_id) and len(dm) == len(out.forget_ids)
    js = float(js_divergence(pm, pr).mean())
    stored = ws.store.get(out.run_id).metrics["js_forget"]
    assert js == pytest.approx(stored, rel=1e-6, abs=1e-9) and stored == ev.metrics["js_forget"]
    assert np.allclose(pm.sum(axis=1), 1.0)


def test_unwritable_export_path_fails_before_the_store_is_touched(trained, tmp_path):
    ws, task, rec, subjects = trained
    out = answer_request(ws, DeletionRequest(rec.id, "finetune", {"epochs": 1}, subjects=subjects[2:3]))
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="is not a folder"):
        evaluate_run(ws, out.run_id, export_scores=a_file / "s.csv")  # its "folder" is a file
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, stat.S_IRUSR | stat.S_IXUSR)
    try:
        if not os.access(locked, os.W_OK):  # (root may write anywhere)
            with pytest.raises(ConfigError, match="cannot write in"):
                evaluate_run(ws, out.run_id, export_scores=locked / "s.csv")
    finally:
        os.chmod(locked, stat.S_IRWXU)
    with pytest.raises(ConfigError, match="parquet or .csv"):
        evaluate_run(ws, out.run_id, export_scores=tmp_path / "s.txt")
    assert ws.store.evaluations(out.run_id) == [] and ws.store.get(out.run_id).metrics == {}


# --------------------------------------------------------------------------- cost
def test_method_and_reference_are_both_timed_after_a_warm_up(trained, monkeypatch):
    """The mechanism that makes a fresh-process ratio match an in-process one: the method's
    timing (answer_request) and the reference's retraining (get_reference) each follow one
    warm-up step; the warm-up leaves the task's original untouched."""
    ws, task, rec, subjects = trained
    before = {k: v.clone() for k, v in task.original.state_dict().items()}
    torch.manual_seed(5)
    np.random.seed(5)
    experiment.warm_up(task)
    assert all(torch.equal(before[k], v) for k, v in task.original.state_dict().items())
    a = (torch.rand(3), np.random.rand(3))  # the global random state is as it was
    torch.manual_seed(5)
    np.random.seed(5)
    assert torch.equal(a[0], torch.rand(3)) and np.array_equal(a[1], np.random.rand(3))

    events = []
    real_warm = experiment.warm_up
    monkeypatch.setattr(experiment, "warm_up", lambda t, p=False: (events.append("warm"), real_warm(t, p)))
    monkeypatch.setattr("unlearnkit.requests.warm_up", experiment.warm_up)
    from unlearnkit.methods import base

    real_unlearn = base.Method.unlearn

    def unlearn(self, t, seed=0, progress=False):
        events.append(self.name)
        return real_unlearn(self, t, seed=seed, progress=progress)

    monkeypatch.setattr(base.Method, "unlearn", unlearn)
    answer_request(
        ws, DeletionRequest(rec.id, "finetune", {"epochs": 1}, ids=[str(task.train.example_ids[7])], evaluate=True)
    )
    assert events[:2] == ["warm", "finetune"]
    assert events[2:] == ["warm", "retrain"]  # a new forget set: its reference is retrained, warm too


# --------------------------------------------------------------------------- through the command line
def test_cli_unlearn_subjects_evaluate_then_evaluate_is_identical(tmp_path):
    """As the issue tried it: `unlearn --forget-subjects F --evaluate`, then `evaluate RUN`."""
    import json
    import subprocess
    import sys

    home = tmp_path / "home"

    def uk(*args):
        p = subprocess.run(
            [sys.executable, "-m", "unlearnkit", *args, "--home", str(home), "--json"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    run = uk("train", "--dataset", "digits", "--model", "linear", "--epochs", "2")["run_id"]
    subjects = tmp_path / "subjects.txt"
    subjects.write_text("subject-003\nsubject-011\n")
    un = uk(
        "unlearn",
        "--from",
        run,
        "--method",
        "finetune",
        "-p",
        "epochs=1",
        "--forget-subjects",
        str(subjects),
        "--evaluate",
    )
    ev = uk("evaluate", un["run_id"])
    assert un["metrics"].keys() == ev["metrics"].keys()
    assert un["metrics"] == ev["metrics"]  # (JSON: nan is null on both sides)
    assert ev["same_inputs_as"] == un["evaluation_id"]
    shown = uk("runs", "show", un["run_id"])
    assert [e["id"] for e in shown["evaluations"]] == [un["evaluation_id"], ev["evaluation_id"]]
    assert shown["metrics"] == un["metrics"]  # nothing overwritten


def test_one_off_start_up_is_charged_to_neither_side(trained, monkeypatch):
    """A simulated cold start (the process's first optimiser set-up takes 2 s) is absorbed by
    the warm-up: the method's timed cost does not include it."""
    ws, task, rec, subjects = trained
    from unlearnkit.engines import loop

    real, calls = loop.make_optimizer, []

    def cold_first(*a, **k):
        if not calls:
            import time

            time.sleep(2.0)
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(loop, "make_optimizer", cold_first)
    out = answer_request(
        ws,
        DeletionRequest(rec.id, "gradient_ascent", {"epochs": 1}, ids=[str(i) for i in task.train.example_ids[20:23]]),
    )
    assert len(calls) >= 2 and out.cost.wall_time_s < 2.0
