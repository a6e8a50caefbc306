"""Concurrent views on the comparator's shared, per-process cached models: FastAPI runs the
sync endpoints in a thread pool, so /classifier/cka (forward hooks on every layer) and
/classifier/embeddings (the penultimate layer's input), or any view scoring a model, run
forward passes through the same module objects at the same time. What one call reads from
hooks must be its own forward passes only.

The race made deterministic: a gate module at the end of the model holds one thread's forward
pass after every hooked layer has fired, while another thread runs a whole forward pass
through the same model; then the first thread finishes. Before the fix, the first call's
hooks also recorded the other call's batch (CKA answered 422 "(2143, 256) and (1000, 256)";
the embeddings could silently take the other batch's representations)."""

from __future__ import annotations

import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from torch import nn

from unlearnkit.data.dataset import ExampleSet
from unlearnkit.modalities.classifier.adapter import ClassifierAdapter
from unlearnkit.ui import analysis

WAIT_S = 30


class Gate(nn.Module):
    """Identity; when armed, the next forward pass that reaches it (in whatever thread) waits
    at the gate until ``release()``. ``inside`` is set once a pass waits there."""

    def __init__(self):
        super().__init__()
        self.armed = False
        self.inside = threading.Event()
        self._go = threading.Event()
        self._lock = threading.Lock()

    def forward(self, x):
        with self._lock:
            hold, self.armed = self.armed, False
        if hold:
            self.inside.set()
            assert self._go.wait(WAIT_S), "the gate was never released"
        return x

    def release(self) -> None:
        self._go.set()


def _model() -> tuple[nn.Module, Gate]:
    torch.manual_seed(0)
    gate = Gate()
    # the gate after the last Linear: every hooked layer of the held pass has fired already
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3), gate).eval()
    return model, gate


def _data(n: int, seed: int) -> ExampleSet:
    g = torch.Generator().manual_seed(seed)
    return ExampleSet.from_tensors(torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g))


def _held(gate: Gate, call, other) -> object:
    """``call()`` in a thread held at the gate while ``other()`` runs here; call's result."""
    gate.armed = True
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(call)
        assert gate.inside.wait(WAIT_S), "the held call never reached the gate"
        try:
            other()
        finally:
            gate.release()
        return fut.result(timeout=WAIT_S)


@pytest.mark.parametrize("other", ["forward", "layer_outputs", "penultimate"])
def test_layer_outputs_see_only_their_own_forward_passes(other):
    model, gate = _model()
    adapter = ClassifierAdapter(3)
    mine, theirs = _data(40, 1), _data(25, 2)
    want = analysis.layer_outputs(model, mine, adapter)
    others = {
        "forward": lambda: adapter.logits(model, next(iter(theirs.batches(100)))),  # e.g. /classifier/classes scoring
        "layer_outputs": lambda: analysis.layer_outputs(model, theirs, adapter),  # another CKA
        "penultimate": lambda: analysis.penultimate(model, theirs, adapter),  # /classifier/embeddings
    }
    got = _held(gate, lambda: analysis.layer_outputs(model, mine, adapter), others[other])
    assert list(got) == list(want) == ["0", "2", "4"]
    for name in want:
        assert got[name].shape == want[name].shape == (40, want[name].shape[1]), name
        np.testing.assert_array_equal(got[name], want[name])


@pytest.mark.parametrize("other", ["forward", "layer_outputs"])
def test_penultimate_sees_only_its_own_forward_passes(other):
    model, gate = _model()
    adapter = ClassifierAdapter(3)
    mine, theirs = _data(40, 1), _data(40, 2)  # the same size: a wrong answer would be silent
    want = analysis.penultimate(model, mine, adapter)
    others = {
        "forward": lambda: adapter.logits(model, next(iter(theirs.batches(100)))),
        "layer_outputs": lambda: analysis.layer_outputs(model, theirs, adapter),
    }
    got = _held(gate, lambda: analysis.penultimate(model, mine, adapter), others[other])
    assert got.shape == want.shape == (40, 8)
    np.testing.assert_array_equal(got, want)
    # and what it reads is the input of the last Linear, as the adapter's representations say
    with torch.no_grad():
        rep = adapter.representations(model, next(iter(mine.batches(100))))
    np.testing.assert_allclose(got, rep.double().numpy())


def test_hooks_are_removed_and_the_model_left_as_it_was():
    model, _ = _model()
    adapter = ClassifierAdapter(3)
    analysis.layer_outputs(model, _data(10, 3), adapter, batch_size=4)
    analysis.penultimate(model, _data(10, 3), adapter, batch_size=4)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert not model.training
    model.train()
    analysis.layer_outputs(model, _data(10, 3), adapter)
    assert model.training


def test_cka_and_embeddings_computed_at_once_on_a_cold_cache(trained, tmp_path, monkeypatch):
    """The views themselves, many threads at once over the same cached models (an original and
    an unlearned run), with no result cache: every answer equals the one computed alone."""
    pytest.importorskip("fastapi")
    from typer.testing import CliRunner

    from unlearnkit.cli import app as cli_app
    from unlearnkit.orchestration.experiment import Workspace
    from unlearnkit.ui import models, views
    from unlearnkit.ui.cache import ResultCache

    src, train_id = trained
    home = tmp_path / "home"
    shutil.copytree(src, home)
    res = CliRunner().invoke(
        cli_app,
        ["unlearn", "--home", str(home), "--from", train_id, "--method", "finetune", "--scenario", "class:3", "--json"],
    )
    assert res.exit_code == 0, res.output
    run = json.loads(res.stdout)["run_id"]
    ws = Workspace.open(home, mode="existing")
    monkeypatch.setattr(views, "_cache", lambda _ws: ResultCache(tmp_path / "no-cache", writable=False))
    models.clear_caches()
    a, b = run, f"original:{run}"
    calls = {
        "cka": lambda: views.cka_view(ws, a, b),
        "embeddings": lambda: views.embeddings_view(ws, a, b, sample=600),
        "classes": lambda: views.classes_view(ws, a, b),
    }
    alone = {k: f() for k, f in calls.items()}
    jobs = [k for _ in range(4) for k in calls]
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = [(k, pool.submit(calls[k])) for k in jobs]
        for k, fut in futures:
            assert fut.result(timeout=120) == alone[k], k
    models.clear_caches()
