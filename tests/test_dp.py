"""DP-SGD originals (DP2Unlearning-style "unlearning-ready" training) through Opacus."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("opacus")

from unlearnkit.data.scenarios import RandomForget  # noqa: E402
from unlearnkit.engines.dp import DPConfig, check_dp_model, dp_plan, train_dp_original  # noqa: E402
from unlearnkit.engines.loop import TrainConfig  # noqa: E402
from unlearnkit.errors import ConfigError  # noqa: E402
from unlearnkit.methods import get_method  # noqa: E402
from unlearnkit.modalities.classifier.adapter import ClassifierAdapter  # noqa: E402
from unlearnkit.modalities.classifier.models import build_model  # noqa: E402
from unlearnkit.modalities.classifier.task import make_task  # noqa: E402
from unlearnkit.orchestration.experiment import task_from_spec  # noqa: E402

RECIPE = TrainConfig(epochs=2, batch_size=64, lr=3e-3)
DP = {"epsilon": 4.0, "delta": 1e-5, "max_grad_norm": 1.0}
KW = dict(seed=0, device="cpu", recipe=RECIPE, model_kwargs={"hidden": [32]})


@pytest.fixture(scope="module")
def task():
    return make_task("digits", "mlp", RandomForget(0.1), dp=DP, **KW)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _acc(model, data) -> float:
    with torch.no_grad():
        return float((model(data.inputs).argmax(1) == data.labels).float().mean())


def test_dp_original_reports_epsilon_close_to_target_and_keys_differ(task):
    d = task.spec["dp"]
    assert math.isfinite(d["epsilon_spent"]) and 0.95 * 4.0 <= d["epsilon_spent"] <= 4.0 + 1e-9
    assert d["noise_multiplier"] > 0 and d["steps"] == task.original_cost.steps > 0
    plain = make_task("digits", "mlp", RandomForget(0.1), **KW)
    assert "dp" not in plain.spec and plain.key != task.key  # cached originals cannot mix
    assert not _same(_state(plain.original), _state(task.original))


def test_dp_training_is_deterministic_under_seed_and_rebuilds_from_spec(task):
    again = make_task("digits", "mlp", RandomForget(0.1), dp=DP, **KW)
    assert _same(_state(again.original), _state(task.original))
    other = make_task("digits", "mlp", RandomForget(0.1), dp=DP, **{**KW, "seed": 1})
    assert not _same(_state(other.original), _state(task.original))
    rebuilt = task_from_spec(task.spec, device="cpu")  # the stored spec carries the DP settings
    assert rebuilt.key == task.key and _same(_state(rebuilt.original), _state(task.original))


def test_train_dp_original_returns_the_planned_epsilon_and_counts_cost(task):
    data = task.retain
    cfg = TrainConfig(epochs=1, batch_size=128, lr=1e-2, max_steps=5)
    model = build_model("mlp", data.input_shape, 10, hidden=(16,))
    model, stats, eps = train_dp_original(model, data, ClassifierAdapter(10), cfg, seed=0, target_epsilon=2.0)
    plan = dp_plan(len(data), cfg, DPConfig(epsilon=2.0))
    assert stats.steps == plan["steps"] == 5 and eps == pytest.approx(plan["epsilon_spent"])
    assert stats.examples_forward == stats.examples_backward > 0 and stats.wall_time_s > 0
    assert not any(hasattr(p, "grad_sample") or hasattr(p, "summed_grad") for p in model.parameters())


def test_finetune_on_retain_unlearns_the_dp_original(task):
    before = _state(task.original)
    result = get_method("finetune", epochs=2).unlearn(task, seed=0)
    assert not _same(_state(result.model), before) and _same(_state(task.original), before)
    assert _acc(result.model, task.retain) > _acc(task.original, task.retain)  # DP noise is trained away


def test_bad_dp_settings_raise_config_errors():
    with pytest.raises(ConfigError, match="unknown key"):
        DPConfig.from_dict({"eps": 1.0})
    with pytest.raises(ConfigError, match="epsilon"):
        DPConfig.from_dict({"epsilon": -1})
    with pytest.raises(ConfigError, match="BatchNorm"):
        check_dp_model(build_model("resnet18", (3, 8, 8), 10, width=4))
