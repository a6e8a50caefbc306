"""Common contract of every method that serves causal language models, through the public
suite :mod:`unlearnkit.testing` on its tiny memorised profiles task (``lm_task`` in
conftest is the same object): the run checks of ``test_methods_contract.py`` with the
forget set's answer NLL in place of accuracy. A method opts out of a check only through
``contract_exempt``, with the reason."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from unlearnkit.methods import METHODS  # noqa: E402
from unlearnkit.testing import RUN_CHECKS, forget_loss, parametrize_with_checks, state_of  # noqa: E402

_state = state_of
NAMES = sorted(n for n, cls in METHODS.items() if "causal_lm" in cls.modalities)
forget_nll = forget_loss


@pytest.fixture(scope="module")
def original_state(lm_task):
    return _state(lm_task.original)


def test_the_language_model_track_has_methods():
    assert {"retrain", "gradient_ascent", "graddiff", "npo", "simnpo"} <= set(NAMES)


# changes_model, deterministic, step_budget, moves_forget (forget answer NLL from < 0.1 to
# more than 1 nat above: the reference, which never saw the answers, has several nats),
# divergence, cost_accounting; the class checks run in test_methods_contract.py
@parametrize_with_checks(NAMES, modalities=["causal_lm"], checks=RUN_CHECKS)
def test_contract(method, check, lm_task):
    check(method)


def test_the_contract_task_has_memorised_the_forget_answers(lm_task):
    assert forget_nll(lm_task.original, lm_task) < 0.1


def test_task_level_lora_trains_adapters_and_returns_a_plain_model(lm_task, original_state):
    """``task.lora`` makes every weight-changing method train LoRA adapters (peft), merged
    back afterwards: the result has the original's keys and only the adapted projections
    (and nothing else) changed."""
    pytest.importorskip("peft")
    import copy

    task = copy.copy(lm_task)
    task.lora = {"r": 4, "target_modules": ["q_proj", "v_proj"]}
    result = METHODS["gradient_ascent"](max_steps=5).unlearn(task, seed=0)
    state = _state(result.model)
    assert state.keys() == original_state.keys()
    changed = {k for k in state if not torch.equal(state[k], original_state[k])}
    assert changed and all(("q_proj" in k or "v_proj" in k) for k in changed)
    assert forget_nll(result.model, lm_task) > forget_nll(lm_task.original, lm_task)
