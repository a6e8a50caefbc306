"""Common contract of every registered unlearning method, through the public suite
:mod:`unlearnkit.testing` (its docstring lists the checks).

Each classifier method is run with its default hyperparameters on the suite's tiny
class-forgetting task (digits, small MLP, short recipe) and must: change the model and
leave the original untouched; be deterministic under a seed; respect a step budget; move
forget-set accuracy toward the reference's (below the original's); reject unknown
hyperparameters, tasks of modalities it does not serve and diverging settings with
unlearnkit's errors; account its cost. Every method (whatever it serves) is documented and
declares valid exemptions. A method may opt out of a check only through its
``contract_exempt`` class attribute, with the reason. The language-model run checks are in
``test_lm_methods_contract.py``.
"""

from __future__ import annotations

import copy

import pytest

from unlearnkit.errors import ConfigError
from unlearnkit.methods import METHODS
from unlearnkit.methods.losses import saliency_mask
from unlearnkit.methods.salun import forget_gradients
from unlearnkit.modalities import list_modalities
from unlearnkit.testing import (
    CHECKS,
    CLASS_CHECKS,
    RUN_CHECKS,
    check_method,
    forget_accuracy,
    parametrize_with_checks,
    same_state,
    state_of,
    tiny_task,
)

_state, _same = state_of, same_state  # older helpers' names
NAMES = sorted(n for n, cls in METHODS.items() if "classifier" in cls.modalities)


@pytest.fixture(scope="module")
def task():
    return tiny_task("classifier")


@pytest.fixture(scope="module")
def runs(task):
    """The suite's two default runs with seed 0 (shared with the checks)."""
    from unlearnkit.testing import _runs

    return lambda name: _runs(METHODS[name], task)


# every method's class checks (documented, exemptions, rejects_modality, unknown_hparam) and
# the run checks of every classifier method on the tiny classifier task
@parametrize_with_checks(sorted(METHODS), modalities=["classifier"])
def test_contract(method, check):
    check(method)


def test_the_suite_runs_every_check_the_contract_had():
    assert {
        "changes_model",
        "deterministic",
        "step_budget",
        "moves_forget",
        "unknown_hparam",
        "divergence",
        "cost_accounting",
        "documented",
        "exemptions",
    } <= set(CHECKS)
    assert set(CHECKS) == set(CLASS_CHECKS) | set(RUN_CHECKS)


def test_every_method_serves_a_known_modality():
    known = {m.name for m in list_modalities()}
    for name, cls in METHODS.items():
        assert cls.modalities and set(cls.modalities) <= known, name
    assert {"classifier", "causal_lm"} <= known


def test_a_classifier_only_method_rejects_a_language_model_task(lm_task):
    with pytest.raises(ConfigError, match="classifier"):
        METHODS["random_labels"]().unlearn(lm_task)


def test_check_method_reports_exemptions_and_failures():
    results = {
        r.check: r for r in check_method("retrain", checks=["step_budget", "unknown_hparam"], modality="classifier")
    }
    assert results["retrain-classifier-step_budget"].status == "exempt"
    assert results["retrain-unknown_hparam"].status == "passed"

    class Lazy(METHODS["finetune"]):  # returns the original unchanged
        """Does nothing."""

        name = "lazy"

        def _unlearn(self, model, task, seed, progress):
            from unlearnkit.engines.loop import LoopStats

            return LoopStats()

    with pytest.raises(AssertionError, match="lazy-classifier-changes_model"):
        check_method(Lazy, checks=["changes_model"], modality="classifier")


# --------------------------------------------------------------------------- method-specific
def test_salun_updates_only_salient_weights_and_counts_the_saliency_pass(task):
    masks = saliency_mask(forget_gradients(copy.deepcopy(task.original), task), keep=0.5)
    result = METHODS["salun"](max_steps=5).unlearn(task, seed=0)
    before = dict(task.original.named_parameters())
    moved = 0
    for name, p in result.model.named_parameters():
        changed = p.detach() != before[name].detach()
        assert not (changed & ~masks[name]).any(), f"{name}: a weight outside the mask changed"
        moved += int(changed.sum())
    assert moved > 0
    # five steps of 64 examples, plus one forward+backward pass over the forget set
    assert result.cost.examples_backward == 5 * 64 + len(task.forget)


@pytest.mark.parametrize("name", ["scrub", "npo"])
def test_frozen_teacher_forward_passes_are_counted(name, runs):
    cost = runs(name)[0].cost
    assert cost.examples_forward > cost.examples_backward


def test_the_contract_task_has_learned_the_forget_class(task):
    assert forget_accuracy(task.original, task) > 0.9
