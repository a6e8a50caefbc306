"""The loop, models, adapter, task, reference cache and the Python API on a user's own model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import unlearnkit as uk
from unlearnkit.engines.loop import Checkpoint, EarlyStopping, TrainConfig, cross_entropy_objective, run_loop
from unlearnkit.errors import ConfigError, DivergenceError, ModelDataMismatchError
from unlearnkit.modalities.classifier.adapter import ClassifierAdapter
from unlearnkit.modalities.classifier.models import build_model
from unlearnkit.orchestration.artifacts import ModelCache
from unlearnkit.orchestration.experiment import get_reference


def blobs(n=240, d=6, k=3, seed=0, name="blobs"):
    g = np.random.default_rng(seed)
    y = g.integers(0, k, n)
    x = g.normal(size=(n, d)).astype(np.float32) + 3.0 * np.eye(k, d, dtype=np.float32)[y]
    return uk.ExampleSet.from_tensors(
        x, y, [f"{name}-{i}" for i in range(n)], [f"p{i % 20}" for i in range(n)], num_classes=k, name=name
    )


def params_of(m):
    return torch.cat([p.detach().flatten() for p in m.parameters()])


def train(data, seed, cfg, callbacks=()):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    stats = run_loop(m, cross_entropy_objective(ClassifierAdapter(3)), {"train": data}, cfg, seed, callbacks=callbacks)
    return m, stats


def test_loop_is_deterministic_and_counts_cost():
    d = blobs()
    cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-2)
    a, sa = train(d, 1, cfg)
    b, sb = train(d, 1, cfg)
    c, _ = train(d, 2, cfg)
    assert torch.equal(params_of(a), params_of(b))
    assert not torch.equal(params_of(a), params_of(c))  # the seed drives the data order
    assert sa.steps == 2 * 8 and sa.examples_forward == sa.examples_backward == 2 * 240
    assert sa.losses[-1] < sa.losses[0]


def test_loop_step_budget_callbacks_and_checkpoints():
    d = blobs()
    _, s = train(d, 0, TrainConfig(epochs=5, max_steps=7, batch_size=32))
    assert s.steps == 7
    ck = Checkpoint(every=3)
    _, s = train(d, 0, TrainConfig(epochs=1, batch_size=32), callbacks=[ck])
    assert sorted(ck.states) == [3, 6]
    stop = EarlyStopping(lambda m: 1.0, every=1, patience=2)  # never improves after the first check
    _, s = train(d, 0, TrainConfig(epochs=5, batch_size=32), callbacks=[stop])
    assert s.stopped_early and s.steps == 3


def test_loop_divergence_guard():
    d = blobs()
    m = nn.Sequential(nn.Linear(6, 3))
    ad = ClassifierAdapter(3)

    def ascent(ctx):
        return -ad.per_example_loss(ctx.model, ctx.batch("train")).mean()

    with pytest.raises(DivergenceError):
        run_loop(m, ascent, {"train": d}, TrainConfig(epochs=50, lr=1e8, grad_clip=None, optimizer="sgd"), 0)


def test_train_config_rejects_bad_values():
    with pytest.raises(ConfigError):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ConfigError):
        TrainConfig(lr=0)


@pytest.mark.parametrize(
    "arch,shape", [("linear", (6,)), ("mlp", (1, 8, 8)), ("cnn", (1, 8, 8)), ("resnet18", (3, 32, 32))]
)
def test_models_output_logits(arch, shape):
    kw = {"width": 8} if arch == "resnet18" else {}
    m = build_model(arch, shape, 7, **kw).eval()
    assert m(torch.zeros(2, *shape)).shape == (2, 7)


def test_model_errors():
    with pytest.raises(ConfigError):
        build_model("vgg", (3, 32, 32), 10)
    with pytest.raises(ConfigError):
        build_model("cnn", (6,), 10)


def test_adapter_rejects_model_with_wrong_output_size():
    d = blobs()
    with pytest.raises(ModelDataMismatchError, match="3 classes"):
        ClassifierAdapter(3).check_model(nn.Linear(6, 5), d)
    with pytest.raises(ModelDataMismatchError, match="cannot take inputs"):
        ClassifierAdapter(3).check_model(nn.Linear(4, 3), d)


def test_user_model_through_the_api():
    """Task.from_model: any nn.Module and tensors with ids; unlearn and evaluate in a few lines."""
    data = blobs(300)
    train_set = data.take(np.arange(240), "train")
    test_set = data.take(np.arange(240, 300), "test")
    cfg = TrainConfig(epochs=10, batch_size=32, lr=1e-2)
    model, _ = train(train_set, 0, cfg)
    forget = train_set.ids_of_subjects(["p1", "p2"])
    task = uk.Task.from_model(model, train_set, forget, test_set, recipe=cfg)
    before = params_of(task.original).clone()
    res = uk.unlearn(task, "finetune", seed=0, epochs=1)
    ev = uk.evaluate(res.model, task, cost=res.cost)
    assert torch.equal(params_of(task.original), before)
    assert 0 <= ev.metrics["acc_forget"] <= 1 and ev.metrics["cost_ratio_time"] > 0
    assert len(task.holdout) == len(task.forget) or len(task.holdout) <= len(test_set)
    with pytest.raises(uk.UnlearnkitError):
        uk.Task.from_model(nn.Linear(6, 2), train_set, forget, test_set, num_classes=3)
    with pytest.raises(uk.UnlearnkitError):
        uk.Task.from_model(model, train_set, [], test_set)


def test_reference_is_cached(tmp_path):
    cache = ModelCache(tmp_path)
    task = uk.make_task(
        blobs(300), "mlp", uk.RandomForget(0.1), seed=0, recipe=TrainConfig(epochs=3, batch_size=32), cache=cache
    )
    ref1, cost1, hit1 = get_reference(task, 0, cache)
    ref2, cost2, hit2 = get_reference(task, 0, cache)
    assert not hit1 and hit2
    assert torch.equal(params_of(ref1), params_of(ref2)) and cost1.steps == cost2.steps
    other = task.with_forget(task.train.example_ids[:5].tolist())
    assert not get_reference(other, 0, cache)[2]  # another forget set: another reference
    # the reference equals retrain under the same seed
    r = uk.unlearn(task, "retrain", seed=0)
    assert torch.equal(params_of(r.model), params_of(ref1))
