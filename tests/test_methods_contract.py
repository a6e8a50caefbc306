"""Common contract of every registered unlearning method, run over ``METHODS``.

Each method is run with its default hyperparameters on one tiny class-forgetting task
(digits, small MLP, short recipe) and must: change the model and leave the original
untouched; be deterministic under a seed; respect a step budget; move forget-set accuracy
toward the reference's (below the original's); reject unknown hyperparameters and
diverging settings with unlearnkit's errors; account its cost. A method may opt out of a
check only through its ``contract_exempt`` class attribute, with the reason.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from unlearnkit.data.scenarios import ClassForget
from unlearnkit.errors import ConfigError, DivergenceError
from unlearnkit.engines.loop import TrainConfig
from unlearnkit.methods import METHODS
from unlearnkit.methods.losses import saliency_mask
from unlearnkit.methods.salun import forget_gradients
from unlearnkit.modalities.classifier.task import make_task

CHECKS = {"changes_model", "deterministic", "step_budget", "moves_forget", "unknown_hparam",
          "divergence", "cost_accounting"}
NAMES = sorted(n for n, cls in METHODS.items() if "classifier" in cls.modalities)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _forget_acc(model: torch.nn.Module, task) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(task.forget.inputs).argmax(1) == task.forget.labels).float().mean())


def _applies(name: str, check: str) -> None:
    exempt = METHODS[name].contract_exempt
    reason = exempt.get(check) or exempt.get(f"{check}:classifier")
    if reason:
        pytest.skip(f"{name} is exempt from {check}: {reason}")



@pytest.fixture(scope="module")
def task():
    return make_task("digits", "mlp", ClassForget(3), seed=0, device="cpu",
                     recipe=TrainConfig(epochs=10, batch_size=64, lr=1e-3))


@pytest.fixture(scope="module")
def original_state(task):
    return _state(task.original)


@pytest.fixture(scope="module")
def runs(task):
    """Two default runs per method with seed 0, each from a fresh instance, made once."""
    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = tuple(METHODS[name]().unlearn(task, seed=0) for _ in range(2))
        return cache[name]

    return get


def test_every_method_serves_a_known_modality():
    for name, cls in METHODS.items():
        assert cls.modalities and set(cls.modalities) <= {"classifier", "causal_lm"}, name


def test_a_classifier_only_method_rejects_a_language_model_task(lm_task):
    with pytest.raises(ConfigError, match="classifier"):
        METHODS["random_labels"]().unlearn(lm_task)


def test_exemptions_name_real_checks_and_give_reasons():
    for name, cls in METHODS.items():
        for check, reason in cls.contract_exempt.items():
            base, _, modality = check.partition(":")
            assert base in CHECKS, f"{name}: unknown contract check {check!r}"
            assert modality in ("", *cls.modalities), f"{name}: {check!r} names a modality it does not serve"
            assert isinstance(reason, str) and reason.strip(), f"{name}: exemption {check!r} needs a reason"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_documented(name):
    cls = METHODS[name]
    assert cls.citation and (cls.__doc__ or "").strip(), f"{name} needs a citation and a docstring"
    for f in dataclasses.fields(cls.Params):
        assert f.metadata.get("help"), f"{name}: hyperparameter {f.name} has no help text"


@pytest.mark.parametrize("name", NAMES)
def test_changes_model_and_leaves_original_untouched(name, task, runs, original_state):
    _applies(name, "changes_model")
    result = runs(name)[0]
    assert result.method == name
    assert not _same(_state(result.model), original_state), f"{name} returned the original unchanged"
    assert _same(_state(task.original), original_state), f"{name} modified task.original"


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_seed(name, runs):
    _applies(name, "deterministic")
    a, b = runs(name)
    assert _same(_state(a.model), _state(b.model)), f"{name}: two runs with seed 0 differ"


@pytest.mark.parametrize("name", NAMES)
def test_respects_step_budget(name, task, original_state):
    _applies(name, "step_budget")
    result = METHODS[name](max_steps=3).unlearn(task, seed=0)
    assert 0 < result.cost.steps <= 3
    assert _same(_state(task.original), original_state)


@pytest.mark.parametrize("name", NAMES)
def test_moves_forget_accuracy_toward_reference(name, task, runs):
    _applies(name, "moves_forget")
    original = _forget_acc(task.original, task)
    assert original > 0.9  # the class is learned; the reference's forget accuracy is 0
    assert _forget_acc(runs(name)[0].model, task) < original - 0.1


@pytest.mark.parametrize("name", NAMES)
def test_rejects_unknown_hyperparameter(name):
    _applies(name, "unknown_hparam")
    with pytest.raises(ConfigError, match="no_such_hparam"):
        METHODS[name](no_such_hparam=1)


@pytest.mark.parametrize("name", NAMES)
def test_divergence_raises_and_leaves_original_untouched(name, task, original_state):
    _applies(name, "divergence")
    method = METHODS[name](lr=1e30, grad_clip=None)
    with pytest.raises(DivergenceError):
        method.unlearn(task, seed=0)
    assert _same(_state(task.original), original_state)


@pytest.mark.parametrize("name", NAMES)
def test_cost_accounting(name, runs):
    _applies(name, "cost_accounting")
    cost = runs(name)[0].cost
    assert cost.examples_forward >= cost.examples_backward > 0
    assert cost.steps > 0 and cost.wall_time_s > 0


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
