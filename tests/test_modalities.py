"""The modality registry, the adapter protocol and per-modality method defaults."""

import pytest
import torch

from unlearnkit.engines.loop import TrainConfig, run_loop
from unlearnkit.errors import ConfigError
from unlearnkit.methods import get_method
from unlearnkit.modalities import Adapter, get_modality, list_modalities, modality_for_task_kind, modality_of_spec
from unlearnkit.modalities.classifier.task import make_task


@pytest.fixture(scope="module")
def iris_task():
    return make_task("iris", "mlp", seed=0, recipe=TrainConfig(epochs=2, batch_size=32))


def test_registry_lookups():
    names = [m.name for m in list_modalities()]
    assert {"classifier", "causal_lm"} <= set(names)
    assert modality_for_task_kind("profiles").name == "causal_lm"
    assert modality_for_task_kind("classifier").name == "classifier"
    assert modality_of_spec({}).name == "classifier"  # records from before specs named it
    assert get_modality("causal_lm").supports("lora") and not get_modality("classifier").supports("lora")
    with pytest.raises(ConfigError, match="unknown modality"):
        get_modality("nope")
    with pytest.raises(ConfigError, match="--task must be one of"):
        modality_for_task_kind("no-such-kind")


def test_task_records_and_answers_its_modality(iris_task):
    assert iris_task.spec["modality"] == "classifier"
    assert iris_task.modality_info is get_modality("classifier")
    again = get_modality("classifier").task_from_spec(iris_task.spec)
    assert again.key == iris_task.key


def test_classifier_adapter_implements_the_protocol(iris_task):
    a = iris_task.adapter
    assert isinstance(a, Adapter)
    batch = next(iris_task.train.batches(7))
    assert a.batch_size(batch) == 7
    reps = a.representations(iris_task.original, batch)
    assert reps.shape[0] == 7 and reps.ndim == 2
    with pytest.raises(Exception, match="no module"):
        a.representations(iris_task.original, batch, layer="missing")


def test_lm_adapter_implements_the_protocol(lm_task):
    a = lm_task.adapter
    assert isinstance(a, Adapter)
    batch = a.to_device(next(lm_task.train.batches(5)))
    assert a.batch_size(batch) == 5
    reps = a.representations(lm_task.original, batch)
    assert reps.shape == (5, lm_task.original.config.hidden_size)


def test_method_defaults_follow_the_modality(iris_task, lm_task):
    m = get_method("wga")
    lm_defaults = get_modality("causal_lm").method_defaults["wga"]
    assert m.params_for("causal_lm").lr == lm_defaults["lr"]
    assert m.params_for("classifier").lr == type(m).Params().lr != lm_defaults["lr"]
    assert get_method("wga", lr=0.5).params_for("causal_lm").lr == 0.5  # explicit values win
    assert "causal_lm" in get_method("npo").describe()["defaults"]


def test_loop_counts_examples_through_the_adapter(iris_task):
    """A batch without per-example labels (as a graph's) is counted by the adapter."""

    class Counting:
        modality = "classifier"
        device = "cpu"

        def batch_size(self, batch):
            return 3  # whatever the tensors say

    model = torch.nn.Linear(4, 3)

    def objective(ctx):
        b = ctx.batch("train")
        return model(b["x"]).sum() * 0.0

    stats = run_loop(
        model, objective, {"train": iris_task.train}, TrainConfig(max_steps=2, batch_size=8), seed=0, adapter=Counting()
    )
    assert stats.steps == 2 and stats.examples_backward == 6
