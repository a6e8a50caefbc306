"""Method-specific behaviour of boundary_shrink, unsir, cf_k, eu_k, simnpo and scrub_r, and
SimNPO's loss against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from unlearnkit.data.scenarios import ClassForget, RandomForget
from unlearnkit.engines.loop import TrainConfig
from unlearnkit.errors import ConfigError
from unlearnkit.methods import METHODS, get_method
from unlearnkit.methods.boundary_shrink import nearest_wrong_labels
from unlearnkit.methods.cf_k import last_k_layers
from unlearnkit.methods.losses import simnpo_loss
from unlearnkit.methods.scrub_r import error_rate
from unlearnkit.methods.unsir import learn_noise
from unlearnkit.modalities.classifier.task import make_task
from unlearnkit.task import Task

SIX = ["boundary_shrink", "unsir", "cf_k", "eu_k", "simnpo", "scrub_r"]
RECIPE = TrainConfig(epochs=10, batch_size=64, lr=1e-3)


@pytest.fixture(scope="module")
def task():
    return make_task("digits", "mlp", ClassForget(3), seed=0, device="cpu", recipe=RECIPE)


@pytest.fixture(scope="module")
def random_task():
    return make_task("digits", "mlp", RandomForget(0.1), seed=0, device="cpu", recipe=RECIPE)


def _acc(model: nn.Module, data) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(data.inputs).argmax(1) == data.labels).float().mean())


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# --------------------------------------------------------------------------- SimNPO loss
def test_simnpo_loss_values():
    # -(2/beta) log sigmoid(-(beta/|y|) log p - gamma)
    # p = 1/2, beta = 1: -2 log sigmoid(log 2) = -2 log(2/3)
    assert simnpo_loss(t(math.log(0.5)), beta=1.0).item() == pytest.approx(2 * math.log(1.5))
    # |y| = 2 tokens each of p = 1/2, beta = 2: -log sigmoid(2 log 2) = -log(4/5)
    assert simnpo_loss(t(2 * math.log(0.5)), beta=2.0, length=2).item() == pytest.approx(math.log(1.25))
    # margin: p = 1, gamma = log 3: -2 log sigmoid(-log 3) = 2 log 4
    assert simnpo_loss(t(0.0), beta=1.0, gamma=math.log(3)).item() == pytest.approx(2 * math.log(4))
    # batch mean with per-example lengths: (2 log 1.5 + 2 log 1.5) / 2
    loss = simnpo_loss(t(math.log(0.5), 3 * math.log(0.5)), beta=1.0, length=t(1.0, 3.0))
    assert loss.item() == pytest.approx(2 * math.log(1.5))


def test_simnpo_loss_matches_the_official_parametrisation_and_its_gradient():
    log_lik, beta, gamma = t(-0.3, -2.0, -5.0), 2.5, 0.4
    # official code: -(2/beta) logsigmoid(beta * (nll/|y| - gamma')) with gamma' = gamma / beta
    official = -(2 / beta) * torch.nn.functional.logsigmoid(beta * (-log_lik - gamma / beta)).mean()
    assert simnpo_loss(log_lik, beta, gamma).item() == pytest.approx(official.item())
    # d/d log p = (2/n) sigmoid(gamma + beta log p): ascent whose weight vanishes as p falls
    x = t(0.0, math.log(0.25)).requires_grad_()
    simnpo_loss(x, beta=1.0).backward()
    assert x.grad.tolist() == pytest.approx([2 * 0.5 / 2, 2 * 0.2 / 2])
    with pytest.raises(ValueError):
        simnpo_loss(x, beta=0.0)


# --------------------------------------------------------------------------- all six
@pytest.mark.parametrize("name", SIX)
def test_defaults_forget_a_class_and_keep_the_rest(name, task):
    result = get_method(name).unlearn(task, seed=0)
    assert _acc(result.model, task.forget) <= 0.05  # the reference's is 0
    assert _acc(result.model, task.retain) >= 0.95


# --------------------------------------------------------------------------- boundary shrink
def test_boundary_shrink_moves_forget_examples_into_their_nearest_wrong_class(task):
    labels = nearest_wrong_labels(task.original, task, eps=0.1)
    assert (labels != task.forget.labels).all()
    # where the FGSM step crosses the boundary, the neighbour is the original's prediction at x'
    x = task.forget.inputs.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(task.original(x), task.forget.labels, reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    with torch.no_grad():
        pred = task.original(x + 0.1 * g.sign()).argmax(1)
    crossed = pred != task.forget.labels
    assert crossed.any() and torch.equal(labels[crossed], pred[crossed])

    result = get_method("boundary_shrink").unlearn(task, seed=0)
    with torch.no_grad():
        now = result.model(task.forget.inputs).argmax(1)
    assert float((now == labels).float().mean()) > 0.8
    # the neighbour search (forward+backward, then forward over the forget set) is in the cost
    n = len(task.forget)
    short = get_method("boundary_shrink", max_steps=1).unlearn(task, seed=0)
    assert short.cost.examples_backward == n + 64 and short.cost.examples_forward == 2 * n + 64


# --------------------------------------------------------------------------- UNSIR
def test_unsir_noise_maximises_the_forget_label_loss_and_its_norm_is_penalised(task):
    model, labels = task.original, torch.full((16,), 3)
    params = METHODS["unsir"].Params
    start, _ = learn_noise(model, task, labels, params(), seed=0, steps=0)
    noise, stats = learn_noise(model, task, labels, params(), seed=0, steps=40)
    with torch.no_grad():
        ce = lambda x: float(nn.functional.cross_entropy(model(x), labels))
        assert ce(noise) > ce(start) + 5.0
    norm = lambda x: float(x.pow(2).flatten(1).sum(1).mean())
    free, _ = learn_noise(model, task, labels, params(noise_lambda=0.0), seed=0, steps=40)
    tight, _ = learn_noise(model, task, labels, params(noise_lambda=10.0), seed=0, steps=40)
    assert norm(tight) < norm(start) < norm(free)
    assert all(p.requires_grad for p in model.parameters())  # the model is not left frozen
    assert stats.steps == 40 and stats.examples_forward == stats.examples_backward == 40 * 16


def test_unsir_spends_its_step_budget_on_noise_then_impair(task):
    result = get_method("unsir", max_steps=43).unlearn(task, seed=0)
    assert result.cost.steps == 43  # 40 noise steps, then 3 impair steps, no repair
    assert not _same(result.model, task.original)
    assert result.cost.examples_backward == 40 * 64 + 3 * 64


# --------------------------------------------------------------------------- CF-k / EU-k
def _bn_task() -> Task:
    base = make_task("digits", "mlp", ClassForget(3), seed=0, device="cpu", recipe=RECIPE)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
    return Task.from_model(
        model, base.train, base.split.forget_ids, base.test, base.holdout, recipe=RECIPE, num_classes=10
    )


def test_last_k_layers_are_modules_with_parameters_in_registration_order():
    task = _bn_task()
    layers = last_k_layers(task.original, 3)
    assert [type(m) for m in layers] == [nn.Linear, nn.BatchNorm1d, nn.Linear]
    with pytest.raises(ConfigError, match="k must be between 1 and 3"):
        last_k_layers(task.original, 4)


@pytest.mark.parametrize("name", ["cf_k", "eu_k"])
def test_k_methods_change_only_the_last_k_layers_and_freeze_batchnorm_statistics(name):
    task = _bn_task()
    result = get_method(name, k=1, max_steps=5).unlearn(task, seed=0)
    before, after = task.original.state_dict(), result.model.state_dict()
    for key in before:  # Linear 1, BatchNorm (weights and running statistics) untouched
        assert torch.equal(before[key], after[key]) == (not key.startswith("4.")), key
    assert all(p.requires_grad for p in result.model.parameters())


def test_cf_k_with_k2_trains_the_head_and_the_layer_below(task):
    result = get_method("cf_k", k=2, max_steps=3).unlearn(task, seed=0)
    b, a = task.original.state_dict(), result.model.state_dict()
    changed = {k.split(".")[1] for k in b if not torch.equal(a[k], b[k])}
    assert changed == {"3", "5"}  # the MLP's second and third Linear (net.3, net.5)


def test_eu_k_reinitialises_the_head_under_the_seed(task):
    a = get_method("eu_k", max_steps=0).unlearn(task, seed=0).model
    b = get_method("eu_k", max_steps=0).unlearn(task, seed=0).model
    c = get_method("eu_k", max_steps=0).unlearn(task, seed=1).model
    head = "net.5.weight"
    assert torch.equal(a.state_dict()[head], b.state_dict()[head])
    assert not torch.equal(a.state_dict()[head], c.state_dict()[head])
    assert not torch.equal(a.state_dict()[head], task.original.state_dict()[head])
    assert torch.equal(a.state_dict()["net.1.weight"], task.original.state_dict()["net.1.weight"])


def test_eu_k_rejects_a_layer_it_cannot_reinitialise():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(10))

        def forward(self, x):
            return x * self.w

    base = make_task("digits", "mlp", ClassForget(3), seed=0, device="cpu", recipe=RECIPE)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), Scale())
    task = Task.from_model(model, base.train, base.split.forget_ids, base.test, base.holdout, num_classes=10)
    with pytest.raises(ConfigError, match="reset_parameters"):
        get_method("eu_k", k=1).unlearn(task)


# --------------------------------------------------------------------------- SimNPO method
def test_simnpo_runs_no_reference_model(task):
    cost = get_method("simnpo").unlearn(task, seed=0).cost
    assert cost.examples_forward == cost.examples_backward  # NPO also runs its reference


# --------------------------------------------------------------------------- SCRUB+R
@pytest.mark.parametrize("scenario", ["class", "random"])
def test_scrub_r_rewinds_to_the_scrub_checkpoint_closest_to_the_holdout_error(scenario, task, random_task):
    task = task if scenario == "class" else random_task
    result = get_method("scrub_r", checkpoint_every=5).unlearn(task, seed=0)
    step, gaps = result.extra["rewind_step"], result.extra["forget_error_gaps"]
    assert gaps[str(step)] == min(gaps.values())
    forget_error = error_rate(result.model, task.forget, task.adapter)
    assert abs(forget_error - result.extra["holdout_error"]) == pytest.approx(gaps[str(step)])
    # the checkpoint is SCRUB's own state at that step, and the target is final SCRUB's holdout error
    assert _same(result.model, get_method("scrub", max_steps=step).unlearn(task, seed=0).model)
    final = get_method("scrub").unlearn(task, seed=0)
    assert error_rate(final.model, task.holdout, task.adapter) == result.extra["holdout_error"]
    # evaluation passes are counted: holdout once, forget set per checkpoint
    extra = len(task.holdout) + len(gaps) * len(task.forget)
    assert result.cost.examples_forward == final.cost.examples_forward + extra
