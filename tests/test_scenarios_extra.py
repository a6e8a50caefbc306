"""SCRUB-paper scenarios: remove a planted bias, resolve a two-class confusion; their metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearnkit.data.loaders import load_dataset
from unlearnkit.data.scenarios import (
    MARK_SUFFIX,
    BiasForget,
    ConfusionForget,
    RandomForget,
    parse_scenario,
    partition,
    scenario_from_dict,
)
from unlearnkit.engines.loop import TrainConfig
from unlearnkit.errors import ConfigError, ForgetSetError
from unlearnkit.evaluation import EvalInputs, Scores, compute_metrics
from unlearnkit.modalities.classifier.task import make_task
from unlearnkit.orchestration.experiment import evaluate_model


@pytest.fixture(scope="module")
def part():
    return partition(load_dataset("digits"), seed=0)


def _base(ids) -> set[str]:
    return {str(i).removesuffix(MARK_SUFFIX) for i in ids}


def _patch_on(x: torch.Tensor) -> np.ndarray:
    """Digits marker: the top-left 2x2 patch all at the data's maximum (1.0)."""
    return (x[:, 0, :2, :2].flatten(1) == 1.0).all(1).numpy()


# ----------------------------------------------------------------------------- bias
def test_bias_marker_is_on_exactly_the_forget_examples(part):
    sc = BiasForget(label=3, fraction=0.5)
    split = sc.build(part, seed=0)
    train = split.train
    marked = _patch_on(train.inputs)
    in_forget = np.isin(train.example_ids, split.forget_ids)
    assert (marked == in_forget).all()
    n3 = int((part.train.labels == 3).sum())
    assert len(split.forget) == round(0.5 * n3) and (split.forget.labels == 3).all()
    assert all(str(i).endswith(MARK_SUFFIX) for i in split.forget_ids)
    assert not any(str(i).endswith(MARK_SUFFIX) for i in split.retain.example_ids)
    # the rest of the training data is untouched
    clean = part.train.select(split.retain.example_ids)
    assert torch.equal(clean.inputs, split.retain.inputs) and torch.equal(clean.labels, split.retain.labels)
    # holdout: marked pool examples of the class, never trained on
    assert _patch_on(split.holdout.inputs).all() and (split.holdout.labels == 3).all()
    assert not _base(split.holdout.example_ids) & _base(train.example_ids)
    # biased test: half the other classes' examples carry the marker, named by the suffix
    t = split.test
    tm = np.char.endswith(t.example_ids.astype(str), MARK_SUFFIX)
    assert (tm == _patch_on(t.inputs)).all() and (t.labels.numpy()[tm] != 3).all()
    assert tm.sum() == round(0.5 * int((part.test.labels != 3).sum()))
    assert torch.equal(t.inputs[~tm], part.test.inputs[~tm]) and torch.equal(t.labels, part.test.labels)
    assert scenario_from_dict(split.scenario) == sc
    assert split.scenario == {"kind": "bias", "label": 3, "fraction": 0.5, "test_fraction": 0.5, "feature": 0}


def test_bias_marker_on_tabular_data_is_an_out_of_range_constant():
    part = partition(load_dataset("breast_cancer"), seed=0)
    split = BiasForget(label=1, fraction=0.3, feature=2).build(part, seed=0)
    col = split.train.inputs[:, 2]
    value = float(col.max())
    assert value > float(part.train.inputs[:, 2].max())
    assert ((col == value).numpy() == np.isin(split.train.example_ids, split.forget_ids)).all()


def test_bias_scenario_changes_the_task_key_and_gets_the_bias_metric():
    kw = dict(seed=0, device="cpu", recipe=TrainConfig(epochs=3))
    biased = make_task("digits", "linear", BiasForget(3), **kw)
    plain = make_task("digits", "linear", RandomForget(0.1), **kw)
    assert biased.key != plain.key  # marked inputs never share a cached original with clean ones
    metrics = evaluate_model(biased.original, biased).metrics
    assert 0 <= metrics["bias_spurious_rate"] <= 1 and 0 <= metrics["bias_acc_marked"] <= 1
    assert "confusion_ic_test" not in metrics
    assert "bias_spurious_rate" not in evaluate_model(plain.original, plain).metrics


# ----------------------------------------------------------------------------- confusion
def test_confusion_swaps_labels_exactly_on_the_forget_set(part):
    split = ConfusionForget(a=3, b=8, fraction=0.4).build(part, seed=0)
    before, after = part.train.labels.numpy(), split.train.labels.numpy()
    changed = before != after
    assert (changed == np.isin(split.train.example_ids, split.forget_ids)).all()
    assert set(before[changed].tolist()) == {3, 8}
    assert (after[changed] == np.where(before[changed] == 3, 8, 3)).all()
    for c in (3, 8):
        assert (before[changed] == c).sum() == round(0.4 * (before == c).sum())
    assert torch.equal(split.train.inputs, part.train.inputs)
    # holdout: pool examples of 3 and 8 with swapped labels, like the forget set
    pool = part.pool.select(split.holdout.example_ids)
    assert (split.holdout.labels == torch.where(pool.labels == 3, 8, 3)).all()
    for c in (3, 8):  # capped by what the pool holds
        want = min(int((split.forget.labels == c).sum()), int((part.pool.labels == (11 - c)).sum()))
        assert int((split.holdout.labels == c).sum()) == want > 0
    assert not set(split.holdout.example_ids) & set(split.train.example_ids)
    assert split.test is part.test


def test_parse_and_validate():
    assert parse_scenario("bias:3") == BiasForget(label=3)
    assert parse_scenario("bias:2,0.25") == BiasForget(label=2, fraction=0.25)
    assert parse_scenario("confusion:3,8") == ConfusionForget(3, 8)
    assert parse_scenario("confusion:1,7,0.3") == ConfusionForget(1, 7, 0.3)
    assert scenario_from_dict({"kind": "confusion", "a": 1, "b": 2}) == ConfusionForget(1, 2)
    for bad in ("confusion:3", "bias:x", "confusion:3,8,0.1,2"):
        with pytest.raises(ConfigError, match="bad scenario argument"):
            parse_scenario(bad)
    part = partition(load_dataset("iris"), seed=0)
    with pytest.raises(ConfigError, match="two different classes"):
        ConfusionForget(1, 1).build(part)
    with pytest.raises(ForgetSetError, match="no training example"):
        BiasForget(label=7).build(part)
    with pytest.raises(ConfigError, match="fraction"):
        BiasForget(label=0, fraction=0).build(part)


# ----------------------------------------------------------------------------- metrics
def _scores(ids, labels, preds, k=4) -> Scores:
    z = np.zeros((len(labels), k), np.float32)
    z[np.arange(len(labels)), preds] = 5.0
    return Scores(np.asarray(ids, dtype=object), np.asarray(labels), z)


def test_bias_metric_on_hand_made_scores():
    m = "+marked"
    ids = ["a", "b" + m, "c" + m, "d" + m, "e" + m, "f" + m]
    labels = [0, 0, 1, 3, 2, 2]  # "e": class 2 = the biased class, does not count
    preds = [2, 2, 1, 2, 2, 0]
    scen = {"kind": "bias", "label": 2}
    out = compute_metrics(EvalInputs({"test": _scores(ids, labels, preds)}, scenario=scen), ["bias"])
    # counted: b (0->2), c (1->1), d (3->2); f is class 2 itself
    assert out == {"bias_spurious_rate": pytest.approx(2 / 3), "bias_acc_marked": pytest.approx(1 / 3)}
    none = _scores(["a"], [0], [0])
    out = compute_metrics(EvalInputs({"test": none}, scenario=scen), ["bias"])
    assert np.isnan(out["bias_spurious_rate"])


def test_confusion_metric_on_hand_made_scores():
    test = _scores(list("abcdefg"), [1, 1, 1, 3, 3, 0, 2], [3, 1, 0, 1, 3, 3, 2])
    forget = _scores(list("xyz"), [3, 1, 3], [3, 3, 1])  # trained with swapped labels
    inputs = EvalInputs({"test": test, "forget": forget}, scenario={"kind": "confusion", "a": 1, "b": 3})
    out = compute_metrics(inputs, ["confusion"])
    # test pair examples: a(1->3) b(1->1) c(1->0) d(3->1) e(3->3): 2 predicted as the other, 3 wrong
    assert out["confusion_ic_test"] == pytest.approx(2 / 5)
    assert out["confusion_err_test"] == pytest.approx(3 / 5)
    assert out["confusion_ic_forget"] == pytest.approx(1 / 3)


def test_scenario_metrics_skip_other_scenarios_and_missing_scenario():
    s = _scores(["a"], [0], [0])
    both = ["bias", "confusion"]
    assert compute_metrics(EvalInputs({"test": s, "forget": s}), both) == {}
    assert compute_metrics(EvalInputs({"test": s, "forget": s}, scenario={"kind": "random"}), both) == {}
