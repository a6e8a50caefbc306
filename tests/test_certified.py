"""Certified removal (Guo et al. 2020): the Newton update matches retraining to the optimum.

Stated tolerance (digits, 10 classes one-vs-rest, lambda = 1e-2, 12 of 1156 training
examples removed; breast cancer, binary, lambda = 1e-3, 4 removed): the updated model's
predicted probabilities differ from those of the model retrained to the optimum on the
retain set by less than 1e-3 on every test and forget example, and its parameters by
less than 1e-3 relative; the measured gradient residual is below the paper's bound.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from unlearnkit.data.scenarios import RandomForget
from unlearnkit.engines.loop import TrainConfig
from unlearnkit.errors import ConfigError
from unlearnkit.methods import get_method
from unlearnkit.methods.certified import linear_layer, train_linear_optimum
from unlearnkit.modalities.classifier.models import build_model
from unlearnkit.modalities.classifier.task import make_task

LAM = 1e-2
TOL = 1e-3
SHORT = TrainConfig(epochs=1)  # make_task's own (Adam) training of the original: replaced or rejected


def _optimum_task(dataset: str, lam: float, sigma: float = 0.0):
    """A linear task whose original is the L-BFGS minimiser (make_task's Adam run kept short)."""
    task = make_task(dataset, "linear", RandomForget(0.01), seed=0, device="cpu", recipe=SHORT)
    original, cost = train_linear_optimum(task, lam, sigma=sigma, seed=0)
    return dataclasses.replace(task, original=original, original_cost=cost)


@pytest.fixture(scope="module")
def task():
    return _optimum_task("digits", LAM)


def _probs(model, task) -> torch.Tensor:
    x = torch.cat([task.test.inputs, task.forget.inputs])
    with torch.no_grad():
        return model(x).softmax(1)


def _flat(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _check_matches_retrain(task, lam: float, sigma: float = 0.0):
    result = get_method("certified_removal", lam=lam, sigma=sigma).unlearn(task, seed=0)
    retrained, _ = train_linear_optimum(task.retain, lam, sigma=sigma, seed=0)
    gap_u = float((_probs(result.model, task) - _probs(retrained, task)).abs().max())
    gap_o = float((_probs(task.original, task) - _probs(retrained, task)).abs().max())
    rel = float((_flat(result.model) - _flat(retrained)).norm() / _flat(retrained).norm())
    assert gap_u < TOL and rel < TOL
    assert gap_o > 10 * gap_u  # the original is far from the retrained model; the update is not
    ex = result.extra
    assert ex["gradient_residual_norm"] <= ex["gradient_residual_bound"]
    assert ex["gradient_residual_norm"] < 0.05 * ex["removal_gradient_norm"]
    return result


def test_newton_update_matches_retraining_to_optimum_multiclass(task):
    before = _flat(task.original).clone()
    result = _check_matches_retrain(task, LAM)
    assert torch.equal(_flat(task.original), before)  # the original is untouched
    assert result.extra["original_gradient_norm"] / len(task.train) < 1e-6
    assert math.isinf(result.extra["certified_epsilon"])  # no noise, no epsilon
    assert result.cost.steps == 1 and result.cost.examples_forward == 2 * len(task.retain) + len(task.forget)
    again = get_method("certified_removal", lam=LAM).unlearn(task, seed=0)
    assert torch.equal(_flat(again.model), _flat(result.model))


def test_newton_update_matches_retraining_binary():
    _check_matches_retrain(_optimum_task("breast_cancer", 1e-3), 1e-3)


def test_objective_perturbation_gives_epsilon_and_still_matches_the_perturbed_retrain():
    task = _optimum_task("digits", LAM, sigma=1.0)
    with pytest.raises(ConfigError, match="minimiser"):  # sigma=0 would wrongly assume no noise
        get_method("certified_removal", lam=LAM).unlearn(task)
    result = _check_matches_retrain(task, LAM, sigma=1.0)
    ex = result.extra
    c = math.sqrt(2 * math.log(1.5 / 1e-5))
    assert math.isfinite(ex["certified_epsilon"])
    assert ex["certified_epsilon"] == pytest.approx(c * ex["gradient_residual_bound"] / 1.0)


def test_rejects_nonlinear_models_and_originals_not_at_the_optimum(task):
    mlp = build_model("mlp", task.train.input_shape, 10, hidden=(8,))
    with pytest.raises(ConfigError, match="linear model"):
        get_method("certified_removal").unlearn(dataclasses.replace(task, original=mlp))
    with pytest.raises(ConfigError, match="linear model"):
        linear_layer(mlp)
    adam = make_task("digits", "linear", RandomForget(0.01), seed=0, device="cpu", recipe=SHORT)
    with pytest.raises(ConfigError, match="train_linear_optimum"):
        get_method("certified_removal", lam=LAM).unlearn(adam)
    with pytest.raises(ConfigError, match="lam"):
        get_method("certified_removal", lam=0.0).unlearn(task)


def test_objective_noise_recipe_makes_removal_indistinguishable_per_example():
    """Guo et al.'s point, measured: without objective perturbation, L-BFGS retraining is
    deterministic and U-LiRA separates the Newton-updated models from retrains perfectly;
    with ``TrainConfig.objective_noise`` every model (original, shadows) draws its own b,
    the residual drowns in it and the per-example attack is at chance."""
    from unlearnkit.evaluation.shadow import privacy_report
    from unlearnkit.modalities.classifier.task import default_recipe

    aucs = {}
    for sigma in (0.0, 1.0):
        task = make_task(
            "digits",
            "linear",
            RandomForget(0.05),
            seed=0,
            device="cpu",
            recipe=default_recipe("linear", "linear_optimum", objective_noise=sigma),
        )
        result = get_method("certified_removal").unlearn(task, seed=0)  # sigma read from the recipe
        assert math.isfinite(result.extra["certified_epsilon"]) == (sigma > 0)
        aucs[sigma] = privacy_report(task, "certified_removal", n_shadow=8, seed=0)["ulira_auc"]
    assert aucs[0.0] > 0.95
    assert abs(aucs[1.0] - 0.5) < 0.1


def test_objective_noise_needs_the_linear_optimum_trainer():
    from unlearnkit.modalities.classifier.task import default_recipe

    with pytest.raises(ConfigError, match="linear_optimum"):
        TrainConfig(objective_noise=1.0)
    with pytest.raises(ConfigError, match="linear_optimum"):
        default_recipe("mlp", objective_noise=1.0)
    with pytest.raises(ConfigError, match=">= 0"):
        TrainConfig(weight_decay=1e-3, trainer="linear_optimum", objective_noise=-1.0)


def test_more_newton_steps_remove_a_whole_class_that_one_step_cannot():
    """Removing one class at once is far outside one Newton step's quadratic region; a few
    more steps on the retain objective (Zou et al. 2025) shrink the residual to nothing."""
    from unlearnkit.data.scenarios import ClassForget
    from unlearnkit.modalities.classifier.task import default_recipe

    task = make_task(
        "digits",
        "linear",
        ClassForget(3),
        seed=0,
        device="cpu",
        recipe=default_recipe("linear", "linear_optimum", objective_noise=1.0),
    )
    retrained, _ = train_linear_optimum(task.retain, 1e-3, sigma=1.0, seed=0)
    one = get_method("certified_removal").unlearn(task, seed=0)
    many = get_method("certified_removal", newton_steps=8).unlearn(task, seed=0)
    gap = {
        k: float((_probs(r.model, task) - _probs(retrained, task)).abs().max())
        for k, r in (("one", one), ("many", many))
    }
    assert gap["many"] < 1e-4 < 0.05 < gap["one"]
    assert many.extra["gradient_residual_norm"] < 1e-6 * one.extra["gradient_residual_norm"]
    assert many.extra["certified_epsilon"] < 1e-3 < 1e3 < one.extra["certified_epsilon"]
    assert 1 < many.cost.steps == many.extra["newton_steps_taken"] <= 8  # stops once converged
    with pytest.raises(ConfigError, match="newton_steps"):
        get_method("certified_removal", newton_steps=0).unlearn(task)
