"""Vectorised training and inference of many models (unlearnkit.ensemble) against the loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unlearnkit.data.dataset import ExampleSet
from unlearnkit.engines.ensemble import _chain, ensemble_logits, stack_models, train_many, vectorize_blocker
from unlearnkit.engines.loop import TrainConfig, count_steps
from unlearnkit.errors import ConfigError, DivergenceError
from unlearnkit.modalities.classifier.adapter import ClassifierAdapter
from unlearnkit.utils import seed_everything

ADAPTER = ClassifierAdapter(3)


def blobs(n: int = 40, seed: int = 0, name: str = "d") -> ExampleSet:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 6, generator=g) + 2.0 * nn.functional.one_hot(y, 6).float()
    return ExampleSet.from_tensors(x, y, name=name, num_classes=3)


def mlp(seed: int) -> nn.Module:
    seed_everything(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


class ConvNet(nn.Module):
    """Not a chain (a reshape inside forward): trained through the vmap form."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x.view(-1, 1, 6))).flatten(1))


def convnet(seed: int) -> nn.Module:
    seed_everything(seed)
    return ConvNet()


def bn_mlp(seed: int) -> nn.Module:
    seed_everything(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


class Branchy(nn.Module):
    """Data-dependent control flow: vmap cannot batch it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(x) if x.sum() > 0 else -self.fc(x)


def branchy(seed: int) -> nn.Module:
    seed_everything(seed)
    return Branchy()


def max_param_diff(a: list[nn.Module], b: list[nn.Module]) -> float:
    return max((p - q).abs().max().item() for ma, mb in zip(a, b) for p, q in zip(ma.parameters(), mb.parameters()))


@pytest.mark.parametrize(
    "cfg",
    [
        TrainConfig(epochs=3, batch_size=8, lr=1e-2, optimizer="adam", weight_decay=1e-3, grad_clip=0.5),
        TrainConfig(
            epochs=3, batch_size=8, lr=5e-2, optimizer="sgd", weight_decay=1e-3, grad_clip=0.5, schedule="cosine"
        ),
        TrainConfig(epochs=2.5, batch_size=16, lr=1e-2, optimizer="adamw", weight_decay=1e-2, grad_clip=None),
    ],
    ids=["adam-clip", "sgd-cosine", "adamw"],
)
@pytest.mark.parametrize("factory", [mlp, convnet], ids=["chain", "vmap"])
def test_vectorised_matches_loop(cfg, factory):
    base = blobs(40)
    # different sizes: 40 and 37 share a step count, 20 forms a second vectorised group;
    # short last batches (37 % 8, 20 % 16) exercise the padding weights
    sets = [base, base.take(range(3, 40)), base.take(range(20)), base]
    seeds = [0, 1, 2, 3]
    assert (_chain(factory(0)) is None) == (factory is convnet)  # both forward forms are covered
    loop, loop_cost = train_many(factory, sets, ADAPTER, cfg, seeds, vectorize=False)
    vec, vec_cost = train_many(factory, sets, ADAPTER, cfg, seeds, vectorize=True)
    # same init and data order: equal up to float32 summation order (batched matmuls,
    # fused optimiser kernel), which after a few dozen steps stays far below 1e-4
    assert max_param_diff(vec, loop) < 1e-4
    assert all(not m.training for m in vec)
    assert vec_cost.steps == loop_cost.steps == sum(count_steps(cfg, len(d)) for d in sets)
    assert vec_cost.examples_forward == loop_cost.examples_forward
    assert vec_cost.examples_backward == loop_cost.examples_backward
    assert len(vec_cost.losses) == len(loop_cost.losses)
    assert torch.allclose(torch.tensor(vec_cost.losses), torch.tensor(loop_cost.losses), atol=1e-4)
    assert vec_cost.final_loss == pytest.approx(loop_cost.final_loss, abs=1e-4)
    # vectorize=None picks the vectorised path for a plain MLP
    auto, _ = train_many(factory, sets, ADAPTER, cfg, seeds)
    assert max_param_diff(auto, vec) == 0.0


def test_each_model_sees_only_its_own_examples():
    base = blobs(30)
    # example 0 becomes an outlier with a flipped label in model 0's and model 2's sets;
    # model 1 has the original example under the same id: the pool must keep both apart
    x = base.inputs.clone()
    x[0] = 8.0
    y = base.labels.clone()
    y[0] = 1
    flipped = ExampleSet(x, y, base.example_ids, num_classes=3)
    cfg = TrainConfig(epochs=40, batch_size=16, lr=2e-2, grad_clip=None)
    vec, _ = train_many(mlp, [flipped, base, flipped], ADAPTER, cfg, [5, 5, 6], vectorize=True)
    loop, _ = train_many(mlp, [flipped, base, flipped], ADAPTER, cfg, [5, 5, 6], vectorize=False)
    assert max_param_diff(vec, loop) < 1e-4
    with torch.no_grad():
        pred = [m(x[:1]).argmax(1).item() for m in vec]
    assert pred[0] == 1 and pred[2] == 1  # members memorised the flipped outlier
    assert pred[1] != 1  # the non-member (same seed as model 0) did not
    # model 1 is the model trained alone on its own set
    alone, _ = train_many(mlp, base, ADAPTER, cfg, [5], vectorize=False)
    assert max_param_diff([vec[1]], alone) < 1e-4


def test_gradient_clipping_is_per_model():
    d = blobs(24)
    loud = ExampleSet(d.inputs * 30.0, d.labels, d.example_ids, num_classes=3)
    cfg = TrainConfig(epochs=1, batch_size=24, lr=1.0, optimizer="sgd", momentum=0.0, grad_clip=1.0)
    vec, _ = train_many(mlp, [loud, d], ADAPTER, cfg, [0, 1], vectorize=True)
    grads, deltas = [], []
    for data, seed, trained in ((loud, 0, vec[0]), (d, 1, vec[1])):
        m = mlp(seed)
        start = [p.detach().clone() for p in m.parameters()]
        ADAPTER.per_example_loss(m, {"x": data.inputs, "y": data.labels}).mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
        deltas.append(torch.cat([(q.detach() - p).flatten() for p, q in zip(start, trained.parameters())]))
    n0, n1 = grads[0].norm().item(), grads[1].norm().item()
    assert n1 < 1.0 < n0 and (n0**2 + n1**2) ** 0.5 > 1.0
    # model 0 clipped to norm 1 along its own gradient; model 1 untouched by model 0's norm
    assert torch.allclose(deltas[0], -grads[0] / (n0 + 1e-6), atol=1e-5)
    assert torch.allclose(deltas[1], -grads[1], atol=1e-6)


def test_batchnorm_falls_back_to_the_loop():
    d = blobs(32)
    cfg = TrainConfig(epochs=2, batch_size=8)
    assert "BatchNorm" in vectorize_blocker(bn_mlp(0), ADAPTER, d)
    auto, auto_cost = train_many(bn_mlp, d, ADAPTER, cfg, [0, 1])
    loop, loop_cost = train_many(bn_mlp, d, ADAPTER, cfg, [0, 1], vectorize=False)
    assert max_param_diff(auto, loop) == 0.0  # bit-identical: the loop ran
    assert all(
        torch.equal(a.state_dict()["1.running_mean"], b.state_dict()["1.running_mean"]) for a, b in zip(auto, loop)
    )
    assert auto_cost.steps == loop_cost.steps
    with pytest.raises(ConfigError, match="BatchNorm"):
        train_many(bn_mlp, d, ADAPTER, cfg, [0, 1], vectorize=True)


def test_control_flow_falls_back_and_vectorize_true_raises():
    d = blobs(16)
    cfg = TrainConfig(epochs=1, batch_size=8)
    assert vectorize_blocker(branchy(0), ADAPTER, d) is not None
    auto, _ = train_many(branchy, d, ADAPTER, cfg, [0, 1])
    loop, _ = train_many(branchy, d, ADAPTER, cfg, [0, 1], vectorize=False)
    assert max_param_diff(auto, loop) == 0.0
    with pytest.raises(ConfigError, match="vmap"):
        train_many(branchy, d, ADAPTER, cfg, [0, 1], vectorize=True)


def test_dropout_models_vectorise_with_independent_masks():
    def drop(seed):
        seed_everything(seed)
        return nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))

    d = blobs(48)
    cfg = TrainConfig(epochs=20, batch_size=16, lr=1e-2)
    vec, cost = train_many(drop, d, ADAPTER, cfg, [0, 0], vectorize=True)
    # same seed, same init and data order: only the dropout masks differ between the two
    assert max_param_diff([vec[0]], [vec[1]]) > 1e-3
    assert cost.losses[cost.steps // 2 - 1] < cost.losses[0]  # model 0 learned
    with torch.no_grad():
        assert all((m(d.inputs).argmax(1) == d.labels).float().mean() > 0.8 for m in vec)


def test_linear_optimum_recipe_trains_one_model_at_a_time():
    from unlearnkit.engines.linear import train_linear_optimum

    d = blobs(30)
    cfg = TrainConfig(weight_decay=1e-2, trainer="linear_optimum")
    lin = lambda s: nn.Sequential(nn.Flatten(), nn.Linear(6, 3))  # noqa: E731
    models, cost = train_many(lin, d, ADAPTER, cfg, [0, 1])
    want, _ = train_linear_optimum(d, lam=1e-2, seed=1, model=lin(1))
    assert max_param_diff([models[1]], [want]) < 1e-6 and cost.steps > 0
    with pytest.raises(ConfigError, match="one model at a time"):
        train_many(lin, d, ADAPTER, cfg, [0, 1], vectorize=True)


def test_divergence_and_bad_input():
    d = blobs(16)
    with pytest.raises(DivergenceError, match="model"):
        train_many(
            mlp,
            d,
            ADAPTER,
            TrainConfig(epochs=5, batch_size=8, lr=1e4, optimizer="sgd", grad_clip=None, divergence_threshold=1e3),
            [0, 1],
            vectorize=True,
        )
    with pytest.raises(ConfigError, match="one per seed"):
        train_many(mlp, [d, d], ADAPTER, TrainConfig(), [0, 1, 2])


def test_ensemble_logits_equal_per_model_forward():
    x = blobs(50).inputs
    for models, bs in (
        ([mlp(s) for s in range(5)], 16),
        ([bn_mlp(s).eval() for s in range(3)], 16),  # eval-mode BatchNorm: vectorised
        ([bn_mlp(s).train() for s in range(2)], 64),  # train mode: loop (batch statistics)
        ([branchy(s) for s in range(3)], 16),
    ):  # vmap fails on first call: loop
        with torch.no_grad():
            want = torch.stack([m(x) for m in models])
        got = ensemble_logits(models, x, batch_size=bs)
        assert got.shape == (len(models), 50, 3)
        assert torch.allclose(got, want, atol=1e-5)
    f = stack_models([mlp(0), mlp(1)])
    assert torch.allclose(f(x[:4])[1], mlp(1)(x[:4]).detach(), atol=1e-6)


@pytest.mark.parametrize(
    "name,params",
    [
        ("finetune", {}),
        ("graddiff", {"alpha": 0.7}),
        ("gradient_ascent", {"lr": 1e-3}),
    ],
)
def test_training_methods_unlearn_many_models_at_once_as_they_would_one_by_one(name, params):
    """Method.unlearn_many: fine-tuning (retain stream), NegGrad+ (-(1-alpha) forget CE +
    alpha retain CE) and gradient ascent run every shadow original as one vectorised ensemble
    (train_many from the given models), equal to one unlearn per model; the given originals
    stay untouched."""
    import copy
    import dataclasses

    from unlearnkit.data.scenarios import Split
    from unlearnkit.methods import get_method
    from unlearnkit.modalities.classifier.task import ClassifierTask as Task

    data = blobs(40)
    split = Split(
        data, blobs(12, seed=1, name="t"), data.example_ids[:6], blobs(6, seed=2, name="h"), {"kind": "ids", "count": 6}
    )
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-2)
    originals, _ = train_many(mlp, data, ADAPTER, cfg, [10, 11, 12])
    before = [copy.deepcopy(m) for m in originals]
    task = Task(split, ADAPTER, mlp, cfg, originals[0])
    method = get_method(name, **{"epochs": 2, "lr": 1e-2, "batch_size": 8, **params})
    seeds = [5, 6, 7]
    many, cost = method.unlearn_many(task, originals, seeds)
    ones = [method.unlearn(dataclasses.replace(task, original=o), seed=s) for o, s in zip(originals, seeds)]
    assert max_param_diff(many, [r.model for r in ones]) < 1e-4
    assert max_param_diff(originals, before) == 0.0
    assert max_param_diff(many, originals) > 1e-3  # they did train
    assert cost.steps == sum(r.cost.steps for r in ones)
    assert cost.examples_forward == sum(r.cost.examples_forward for r in ones)
    assert cost.losses == pytest.approx([v for r in ones for v in r.cost.losses], abs=1e-4)
    with pytest.raises(ConfigError, match="one initial model per seed"):
        train_many(None, data, ADAPTER, cfg, [1, 2], init=originals)
    with pytest.raises(ConfigError, match="reuse"):
        train_many(mlp, data, ADAPTER, cfg, [1, 2], stream="retain", extra_streams={"retain": (data, 1.0)})
