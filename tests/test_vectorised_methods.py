"""Every loop-based classifier method's unlearn_many as one vectorised ensemble (LoopPlan,
run_plans) against one unlearn per model.

Tolerance: parameters within 1e-4 and per-step losses within 1e-4 after a dozen Adam steps.
The ensemble computes the same objective on the same data in the same order, but its forward
and backward passes are batched over the models (``vmap``) and its optimiser is torch's fused
kernel, so sums run in another order: float32 rounding (about 1e-7 relative per operation),
which Adam can amplify to at most about ``lr`` per step for a weight whose gradient is near 0
(the rule engines/ensemble.py states for plain training). Measured with these settings: parameters
at most 4.8e-6 apart (UNSIR: its noise is learned at lr 0.1), 3e-7 for every other method; losses
at most 5e-7.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

import unlearnkit.engines.ensemble as ens
from unlearnkit.engines.ensemble import LoopPlan, run_plans, train_many
from unlearnkit.engines.loop import TrainConfig
from unlearnkit.errors import ConfigError, DivergenceError
from unlearnkit.methods import METHODS, Method, get_method
from unlearnkit.testing import tiny_classifier_task

#: classifier methods without a training loop of their own (exact, closed-form or Newton steps)
NO_LOOP = {"retrain", "sisa", "certified_removal", "fisher", "influence", "ssd"}
#: plain weighted training: unlearn_many through train_many (tests/test_ensemble.py)
TRAIN_MANY = {"finetune", "gradient_ascent"}
#: hyperparameters that keep each run to a dozen steps and make the clipping bite
SMALL = {"max_steps": 12, "grad_clip": 0.5}
EXTRA = {
    "graddiff": {"retain_loss": "kl"},  # the nll form runs through train_many (tests/test_ensemble.py)
    "unsir": {"noise_steps": 4},  # leaves 8 of the 12 steps to impair and repair
}


def _planned() -> list[str]:
    return sorted(
        n
        for n, c in METHODS.items()
        if "classifier" in c.modalities
        and (c.loop_plan is not Method.loop_plan or c.loop_plans is not Method.loop_plans)
    )


def max_param_diff(a, b) -> float:
    return max((p - q).abs().max().item() for ma, mb in zip(a, b) for p, q in zip(ma.parameters(), mb.parameters()))


@pytest.fixture(scope="module")
def shadow():
    """The tiny digits task and 3 shadow originals (2 epochs from other seeds)."""
    task = tiny_classifier_task()
    cfg = TrainConfig(epochs=2, batch_size=64, lr=1e-3)
    originals, _ = train_many(task.model_factory, task.train, task.adapter, cfg, [10, 11, 12])
    return task, originals


def test_every_loop_based_classifier_method_is_vectorised():
    classifier = {n for n, c in METHODS.items() if "classifier" in c.modalities}
    assert set(_planned()) == classifier - NO_LOOP - TRAIN_MANY
    assert {"scrub", "scrub_r", "salun", "npo", "unsir", "bad_teacher", "imu"} <= set(_planned())
    for name in TRAIN_MANY:
        assert METHODS[name].unlearn_many is not Method.unlearn_many


@pytest.mark.parametrize("name", _planned())
def test_unlearn_many_equals_one_unlearn_per_model(shadow, name):
    task, originals = shadow
    before = [copy.deepcopy(m) for m in originals]
    method = get_method(name, **SMALL, **EXTRA.get(name, {}))
    method.vectorize = True  # vectorise or raise
    seeds = [5, 6, 7]
    many, cost = method.unlearn_many(task, originals, seeds)
    method.vectorize = None
    ones = [method.unlearn(dataclasses.replace(task, original=o), seed=s) for o, s in zip(originals, seeds)]
    assert max_param_diff(many, [r.model for r in ones]) < 1e-4
    assert max_param_diff(many, originals) > 1e-4  # they did train
    assert max_param_diff(originals, before) == 0.0  # the given models stay untouched
    assert all(not m.training for m in many)
    assert all(p.requires_grad for m in many for p in m.parameters())  # flags restored (cf_k, imu)
    assert cost.steps == sum(r.cost.steps for r in ones)
    assert cost.examples_forward == sum(r.cost.examples_forward for r in ones)
    assert cost.examples_backward == sum(r.cost.examples_backward for r in ones)
    assert cost.losses == pytest.approx([v for r in ones for v in r.cost.losses], abs=1e-4)


def test_the_loop_path_is_the_unlearn_path_exactly(shadow):
    task, originals = shadow
    method = get_method("scrub", **SMALL)
    method.vectorize = False
    many, _ = method.unlearn_many(task, originals[:2], [1, 2])
    ones = [method.unlearn(dataclasses.replace(task, original=o), seed=s) for o, s in zip(originals, [1, 2])]
    assert max_param_diff(many, [r.model for r in ones]) == 0.0


class _ItemProbe(Method):
    """Not registered: an objective with data-dependent control flow (a Python branch on a loss)."""

    name = "item_probe"
    scale = 1.0

    def loop_plan(self, model, task, seed):
        p, adapter = self.params, task.adapter

        def objective(ctx):
            loss = adapter.per_example_loss(ctx.model, ctx.batch("retain")).mean()
            return loss if float(loss) > -1 else -loss  # .item() under vmap fails

        return LoopPlan(model, objective, {"retain": task.retain}, p.train_config(max_steps=3), seed)


class _Blowup(Method):
    """Not registered: ascent scaled past the divergence threshold in one model only."""

    name = "blowup"

    def loop_plan(self, model, task, seed):
        p, adapter = self.params, task.adapter
        frozen = _Scale(1e9 if seed == 8 else 1.0)

        def objective(ctx):
            return -frozen.s * adapter.per_example_loss(ctx.model, ctx.batch("forget")).mean()

        return LoopPlan(model, objective, {"forget": task.forget}, p.train_config(max_steps=3), seed, frozen=[frozen])


class _Scale(torch.nn.Module):
    def __init__(self, s: float):
        super().__init__()
        self.register_buffer("s", torch.tensor(s))


def test_an_objective_vmap_cannot_run_falls_back_to_the_loop_or_is_refused(shadow):
    task, originals = shadow
    method = _ItemProbe()
    many, cost = method.unlearn_many(task, originals[:2], [1, 2])
    one = method.unlearn(dataclasses.replace(task, original=originals[0]), seed=1)
    assert max_param_diff(many[:1], [one.model]) == 0.0 and cost.steps == 6
    method.vectorize = True
    with pytest.raises(ConfigError, match="vmap cannot run the objective"):
        method.unlearn_many(task, originals[:2], [1, 2])


def test_divergence_guard_is_per_model_and_names_it(shadow):
    task, originals = shadow
    with pytest.raises(DivergenceError, match="model 8: loss became"):
        _Blowup().unlearn_many(task, originals, [7, 8, 9])


def test_plans_of_different_sizes_run_as_separate_groups(shadow):
    """IMU-like: models whose streams differ in size are vectorised in groups of equal sizes."""
    task, originals = shadow
    cfg = TrainConfig(max_steps=4, batch_size=16, lr=1e-3)
    sets = [task.forget, task.forget.take(range(40)), task.forget]

    def plan(m, d, s):
        def objective(ctx):
            return task.adapter.per_example_loss(ctx.model, ctx.batch("forget")).mean()

        return LoopPlan(m, objective, {"forget": d}, cfg, s)

    models = [copy.deepcopy(o) for o in originals]
    loops = [copy.deepcopy(o) for o in originals]
    vec = run_plans([plan(m, d, s) for m, d, s in zip(models, sets, [1, 2, 3])], vectorize=None)
    ref = run_plans([plan(m, d, s) for m, d, s in zip(loops, sets, [1, 2, 3])], vectorize=False)
    assert max_param_diff(models, loops) < 1e-5
    assert [x for v in vec for x in v.losses] == pytest.approx([x for r in ref for x in r.losses], abs=1e-5)
    with pytest.raises(ConfigError, match="one plan"):  # the 40-example plan is a group of one
        run_plans([plan(copy.deepcopy(o), d, s) for o, d, s in zip(originals, sets, [1, 2, 3])], vectorize=True)


def test_convolutional_models_stay_in_the_loop_on_a_cpu_unless_forced(shadow, monkeypatch):
    """vmap runs a batch of convolutions as a grouped convolution, slower than the loop on a CPU."""
    task, _ = shadow

    def conv(seed):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(72, 10))

    cfg = TrainConfig(max_steps=3, batch_size=16, lr=1e-3)

    def plans(models):
        def objective(ctx):
            return task.adapter.per_example_loss(ctx.model, ctx.batch("forget")).mean()

        return [LoopPlan(m, objective, {"forget": task.forget}, cfg, s) for m, s in zip(models, [1, 2])]

    auto, forced, loop = ([conv(0), conv(1)] for _ in range(3))
    seen = []
    real = ens._run_plans_vectorized

    def spy(p, *a):
        seen.append(len(p))
        return real(p, *a)

    monkeypatch.setattr(ens, "_run_plans_vectorized", spy)
    run_plans(plans(auto), "cpu", task.adapter)
    assert seen == []
    run_plans(plans(forced), "cpu", task.adapter, vectorize=True)
    assert seen == [2]
    run_plans(plans(loop), "cpu", task.adapter, vectorize=False)
    assert max_param_diff(auto, loop) == 0.0 and max_param_diff(forced, loop) < 1e-5
