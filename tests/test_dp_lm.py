"""DP-SGD originals for causal language models and DP2Unlearning (fine-tune on retain)."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("opacus")
pytest.importorskip("transformers")

from unlearnkit.data.scenarios import RandomForget  # noqa: E402
from unlearnkit.engines.dp import train_dp_original  # noqa: E402
from unlearnkit.engines.loop import TrainConfig  # noqa: E402
from unlearnkit.errors import ConfigError  # noqa: E402
from unlearnkit.methods import get_method  # noqa: E402
from unlearnkit.methods.dp2unlearning import DP2Unlearning  # noqa: E402
from unlearnkit.modalities.causal_lm.task import lm_task_from_spec  # noqa: E402
from unlearnkit.modalities.classifier.task import make_task  # noqa: E402
from unlearnkit.orchestration.artifacts import ModelCache  # noqa: E402
from unlearnkit.testing import (  # noqa: E402
    check_changes_model,
    check_cost_accounting,
    check_deterministic,
    check_divergence,
    check_step_budget,
    same_state,
    state_of,
    tiny_lm_task,
)

# a few DP-SGD steps on the tiny profiles task (160 rows, batches of 16: sampling rate 0.1)
RECIPE = TrainConfig(epochs=4, batch_size=16, lr=1e-2, optimizer="adamw", schedule="cosine", grad_clip=1.0)
DP = {"epsilon": 8.0, "delta": 1e-5, "max_grad_norm": 1.0}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return ModelCache(tmp_path_factory.mktemp("dp-lm-cache"))


@pytest.fixture(scope="module")
def plain_lm():
    """The same tiny task without DP and without training (only its spec and data are read)."""
    return tiny_lm_task(recipe=TrainConfig(epochs=0))


@pytest.fixture(scope="module")
def dp_task(cache):
    return tiny_lm_task(recipe=RECIPE, dp=DP, cache=cache)


def test_opacus_per_sample_gradients_of_the_tiny_llama_are_one_row_backward_passes(dp_task):
    """Every layer (embedding, linear, RMSNorm through Opacus' functorch fallback) gets per-row
    gradients equal to a backward pass of that row alone (the full-logits path DP-SGD uses)."""
    from opacus import GradSampleModule

    adapter = dp_task.adapter
    model = dp_task.model_factory(0).train()
    batch = next(dp_task.train.batches(4))
    gsm = GradSampleModule(model, batch_first=True, loss_reduction="mean")
    adapter.per_example_loss(gsm, batch, logits=adapter.logits(gsm, batch)).mean().backward()
    per_row = {n.removeprefix("_module."): p.grad_sample.clone() for n, p in gsm.named_parameters()}
    gsm._close()
    assert {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"} <= set(per_row)
    for i in (0, 3):
        single = dp_task.model_factory(0).train()
        row = {k: v[i : i + 1] for k, v in batch.items()}
        adapter.per_example_loss(single, row).mean().backward()
        for name, p in single.named_parameters():
            scale = p.grad.abs().max().item()
            assert scale > 0, name
            assert torch.allclose(per_row[name][i], p.grad, atol=1e-6 * max(1.0, scale)), name


def test_dp_original_spends_its_epsilon_and_changes_the_cache_key(dp_task, plain_lm):
    d = dp_task.spec["dp"]
    assert d["accountant"] == "rdp" and d["noise_multiplier"] > 0.5
    assert 0.95 * DP["epsilon"] <= d["epsilon_spent"] <= DP["epsilon"] + 1e-9
    assert d["steps"] == dp_task.original_cost.steps == 4 * math.ceil(len(dp_task.train) / 16)
    assert dp_task.original_cost.examples_backward > 0
    plain = plain_lm
    assert "dp" not in plain.spec and plain.key != dp_task.key
    assert {k: v for k, v in dp_task.spec.items() if k not in ("dp", "recipe")} == {
        k: v for k, v in plain.spec.items() if k != "recipe"
    }


def test_dp_training_is_deterministic_and_rebuilds_from_the_spec(dp_task, cache):
    again = train_dp_original(
        dp_task.model_factory(dp_task.seed), dp_task.train, dp_task.adapter, RECIPE, dp_task.seed, **_dp_args()
    )[0]
    assert same_state(state_of(again), state_of(dp_task.original))
    rebuilt = lm_task_from_spec(dp_task.spec, cache=cache, device="cpu")  # the cached DP original
    assert rebuilt.key == dp_task.key and rebuilt.spec["dp"] == dp_task.spec["dp"]
    assert same_state(state_of(rebuilt.original), state_of(dp_task.original))


def _dp_args() -> dict:
    return {"target_epsilon": DP["epsilon"], "delta": DP["delta"], "max_grad_norm": DP["max_grad_norm"]}


def test_dp_sgd_refuses_to_run_data_parallel(dp_task, monkeypatch):
    from unlearnkit.engines import distributed

    monkeypatch.setattr(distributed, "active", lambda: distributed.DataParallel(0, 2))
    with pytest.raises(ConfigError, match="one process"):
        train_dp_original(dp_task.model_factory(0), dp_task.train, dp_task.adapter, RECIPE, 0, **_dp_args())


@pytest.mark.parametrize(
    "check", [check_changes_model, check_deterministic, check_step_budget, check_divergence, check_cost_accounting]
)
def test_contract_checks_on_a_dp_original(dp_task, check):
    check(DP2Unlearning, dp_task)


def test_dp2unlearning_fine_tunes_on_retain_for_half_the_retrain_budget(dp_task):
    result = get_method("dp2unlearning").unlearn(dp_task, seed=0)
    retain_batches = math.ceil(len(dp_task.retain) / RECIPE.batch_size)
    assert result.cost.steps == math.ceil(0.5 * RECIPE.epochs * retain_batches)
    # the reference trains RECIPE.epochs over the retain rows: twice the examples
    assert result.cost.examples_backward * 2 == RECIPE.epochs * len(dp_task.retain)
    assert result.extra["epsilon"] == dp_task.spec["dp"]["epsilon_spent"] and result.extra["delta"] == DP["delta"]
    # fine-tuning on retain lowers the retain loss of the DP original (it learned little under noise)
    before = _mean_loss(dp_task.original, dp_task, dp_task.retain)
    after = _mean_loss(result.model, dp_task, dp_task.retain)
    assert after < before - 0.1
    full = get_method("dp2unlearning", budget=1.0, lr=5e-3).unlearn(dp_task, seed=0)
    assert full.cost.steps == RECIPE.epochs * retain_batches and full.params["lr"] == 5e-3


@torch.no_grad()
def _mean_loss(model, task, data) -> float:
    b = next(data.batches(len(data)))
    return float(task.adapter.per_example_loss(model.eval(), b).mean())


def test_dp2unlearning_refuses_a_non_private_original_before_any_step(plain_lm, monkeypatch):
    import unlearnkit.methods.dp2unlearning as module

    monkeypatch.setattr(module, "run_loop", lambda *a, **k: pytest.fail("trained before checking the original"))
    with pytest.raises(ConfigError, match="needs an original trained with DP-SGD"):
        get_method("dp2unlearning").unlearn(plain_lm, seed=0)
    with pytest.raises(ConfigError, match="budget"):
        get_method("dp2unlearning", budget=1.5)
    iris = make_task("iris", "mlp", RandomForget(0.1), seed=0, device="cpu", recipe=TrainConfig(epochs=0))
    with pytest.raises(ConfigError, match="causal_lm"):
        get_method("dp2unlearning").unlearn(iris, seed=0)


TINY_CLI = ["--task", "profiles", "--people", "10", "--qa-per-person", "3", "--epochs", "1", "--batch-size", "16"]
TINY_CLI += ["--lm-size", "hidden=32,layers=1,heads=2,intermediate=64"]


def test_train_cli_dp_epsilon_records_a_dp_original(tmp_path, monkeypatch, capsys):
    from cli_support import cli, cli_json
    from unlearnkit.orchestration.experiment import Workspace

    doc = cli_json(capsys, monkeypatch, "train", *TINY_CLI, "--dp-epsilon", "8", "--json", home=tmp_path)
    spec = Workspace.open(tmp_path).store.get(doc["run_id"]).task_spec
    assert spec["dp"]["epsilon"] == 8.0 and 0 < spec["dp"]["epsilon_spent"] <= 8.0 + 1e-9
    assert spec["dp"]["delta"] == 1e-5 and spec["dp"]["max_grad_norm"] == 1.0
    for bad, says in (
        (["--dp-epsilon", "0"], "--dp-epsilon must be > 0"),
        (["--dp-epsilon", "8", "--dp-delta", "1.5"], "--dp-delta must be in (0, 1)"),
        (["--dp-epsilon", "8", "--dp-clip", "nan"], "--dp-clip must be a finite number"),
        (["--dp-epsilon", "8", "--distributed"], "DP-SGD training runs in one process"),
    ):
        code, out, err = cli(capsys, monkeypatch, "train", *TINY_CLI, *bad, home=tmp_path / "bad")
        assert code == 2 and out == "" and err.startswith("error: "), bad
        assert says in err and len(err.strip().splitlines()) == 1, err
    code, _, err = cli(capsys, monkeypatch, "train", "--dataset", "iris", "--dp-epsilon", "8", home=tmp_path / "c")
    assert code == 2 and "language-model tasks" in err
    assert not (tmp_path / "bad").exists() and not (tmp_path / "c").exists()  # nothing written
