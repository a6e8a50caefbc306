"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unlearnkit.engines.loop import LoopStats
from unlearnkit.errors import ConfigError, DataError, UnlearnkitError
from unlearnkit.evaluation import METRICS, EvalInputs, Scores, compute_metrics, list_metrics, mia
from unlearnkit.modalities.classifier import metrics as M


def scores(logits, labels, prefix: str = "x") -> Scores:
    logits = np.asarray(logits, dtype=np.float32)
    return Scores(np.array([f"{prefix}{i}" for i in range(len(labels))]), np.asarray(labels), logits)


def confident(labels, right, k: int = 3, margin: float = 8.0, prefix: str = "x") -> Scores:
    """Logits that give the true label (right=True) or the next label a clear margin."""
    labels = np.asarray(labels)
    z = np.zeros((len(labels), k), np.float32)
    target = np.where(right, labels, (labels + 1) % k)
    z[np.arange(len(labels)), target] = margin
    return scores(z, labels, prefix)


# ----------------------------------------------------------------------------- accuracy


def test_accuracy_from_hand_written_logits():
    # predictions: 0, 1, 1, 2 ; labels: 0, 1, 0, 0  -> 2/4 correct
    forget = scores([[2, 1, 0], [0, 3, 1], [0, 1, 0.5], [0, 0, 5]], [0, 1, 0, 0], "f")
    retain = scores([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [0, 1, 2], "r")  # 3/3
    test = scores([[1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0]], [0, 1, 1, 1], "t")  # 1/4
    out = compute_metrics(EvalInputs(dict(forget=forget, retain=retain, test=test)), ["accuracy"])
    assert out == {"acc_forget": 0.5, "acc_retain": 1.0, "acc_test": 0.25}


def test_accuracy_gap_is_absolute_difference_to_reference():
    f = scores([[2, 1, 0], [0, 3, 1], [0, 1, 0.5], [0, 0, 5]], [0, 1, 0, 0], "f")  # 0.5
    f_ref = scores([[0, 2, 0]] * 4, [0, 1, 0, 0], "f")  # 0.25
    r = scores([[1, 0, 0], [0, 1, 0]], [0, 1], "r")  # 1.0
    r_ref = scores([[1, 0, 0], [1, 0, 0]], [0, 1], "r")  # 0.5
    t = scores([[1, 0, 0]], [0], "t")
    out = compute_metrics(
        EvalInputs(dict(forget=f, retain=r, test=t), dict(forget=f_ref, retain=r_ref, test=t)), ["accuracy_gap"]
    )
    assert out == pytest.approx({"gap_acc_forget": 0.25, "gap_acc_retain": 0.5, "gap_acc_test": 0.0})


# --------------------------------------------------------------------------- JS divergence


def test_js_divergence_hand_values():
    p = np.array([[0.2, 0.8], [1.0, 0.0]])
    assert M.js_divergence(p, p) == pytest.approx([0.0, 0.0], abs=1e-12)
    assert M.js_divergence(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))[0] == pytest.approx(math.log(2))
    # [1,0] vs [0.5,0.5]: M = [.75,.25]; JS = .5 ln(1/.75) + .5(.5 ln(.5/.75) + .5 ln(.5/.25))
    want = 0.5 * math.log(4 / 3) + 0.5 * (0.5 * math.log(2 / 3) + 0.5 * math.log(2))
    assert M.js_divergence(np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]]))[0] == pytest.approx(want)


def test_js_metric_zero_for_same_model_and_ln2_for_opposite_certain_outputs():
    big = 60.0  # softmax saturates to exactly [1, 0] in float64
    a = scores([[big, 0], [0, big]], [0, 1], "f")
    b = scores([[0, big], [big, 0]], [0, 1], "f")
    t = scores([[1, 2], [3, 0]], [0, 0], "t")
    out = compute_metrics(EvalInputs(dict(forget=a, test=t), dict(forget=b, test=t)), ["js_divergence"])
    assert out["js_test"] == pytest.approx(0.0, abs=1e-12)
    assert out["js_forget"] == pytest.approx(math.log(2), abs=1e-9)


def test_js_aligns_rows_by_example_id():
    a = scores([[5, 0], [0, 5], [1, 1]], [0, 1, 0], "f")
    perm = [2, 0, 1]
    b = Scores(a.example_ids[perm], a.labels[perm], a.logits[perm])
    out = compute_metrics(EvalInputs(dict(forget=a, test=a), dict(forget=b, test=b)), ["js_divergence"])
    assert out["js_forget"] == pytest.approx(0.0, abs=1e-12)


def test_mismatched_example_ids_raise_clear_error():
    a = scores([[1, 0], [0, 1]], [0, 1], "f")
    b = scores([[1, 0], [0, 1]], [0, 1], "g")
    with pytest.raises(DataError, match="different example ids") as e:
        compute_metrics(EvalInputs(dict(forget=a, test=a), dict(forget=b, test=a)), ["js_divergence"])
    assert isinstance(e.value, UnlearnkitError)


# ------------------------------------------------------------------------ threshold MIA


def test_threshold_attack_perfect_separation_and_identical():
    members, nonmembers = np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 3.0, 4.0])  # losses
    auc, adv = mia.threshold_attack(-members, -nonmembers)
    assert (auc, adv) == (1.0, 1.0)
    same = np.array([0.5, 0.7, 0.9, 1.1])
    auc, adv = mia.threshold_attack(same, same.copy())
    assert auc == 0.5 and adv == pytest.approx(0.0)


def test_advantage_hand_value():
    # members 3, 1 ; non-members 2, 0: best rule "score > 2.5" -> TPR .5, FPR 0; "> 0.5" -> 1, .5
    auc, adv = mia.threshold_attack(np.array([3.0, 1.0]), np.array([2.0, 0.0]))
    assert auc == pytest.approx(0.75)  # 3 of 4 member/non-member pairs ranked right
    assert adv == pytest.approx(0.5)


def test_mia_metric_directions_on_forget_vs_holdout():
    # forget: confidently right (low loss, high confidence, low entropy); holdout: unsure
    f = confident([0, 1, 2, 0, 1, 2], [True] * 6, margin=9.0, prefix="f")
    h = scores(np.full((6, 3), 0.3) + np.eye(3)[[0, 1, 2, 0, 1, 2]] * 0.1, [0, 1, 2, 0, 1, 2], "h")
    out = compute_metrics(EvalInputs(dict(forget=f, holdout=h)), ["mia_threshold", "mia_lr"])
    for k in ("loss", "confidence", "entropy", "lr"):
        assert out[f"mia_{k}_auc"] == pytest.approx(1.0), k
        assert out[f"mia_{k}_advantage"] == pytest.approx(1.0), k


def test_lr_attack_chance_level_on_identical_distributions_and_seeded():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    auc, adv = mia.logistic_attack(x[:200], x[200:], seed=1)
    assert abs(auc - 0.5) < 0.1
    assert (auc, adv) == mia.logistic_attack(x[:200], x[200:], seed=1)


def test_lr_attack_tiny_sets_give_nan_without_crash():
    assert all(math.isnan(v) for v in mia.logistic_attack(np.ones((1, 3)), np.zeros((5, 3))))
    assert all(math.isnan(v) for v in mia.logistic_attack(np.ones((0, 3)), np.zeros((5, 3))))
    auc, _ = mia.logistic_attack(np.ones((2, 3)), np.zeros((2, 3)))  # k = 2 folds works
    assert auc == 1.0
    assert all(math.isnan(v) for v in mia.threshold_attack(np.array([]), np.array([1.0])))


# ---------------------------------------------------------------------------- MIA-efficacy


def test_mia_efficacy_one_when_forget_looks_like_test_zero_when_like_retain():
    lab = np.arange(40) % 3
    retain = confident(lab, np.ones(40, bool), margin=9.0, prefix="r")  # confidence ~1
    test = confident(lab, np.ones(40, bool), margin=0.2, prefix="t")  # confidence ~0.35
    like_test = confident(lab[:10], np.ones(10, bool), margin=0.2, prefix="f")
    like_retain = confident(lab[:10], np.ones(10, bool), margin=9.0, prefix="f")
    m = dict(retain=retain, test=test, forget=like_test)
    assert compute_metrics(EvalInputs(m), ["mia_efficacy"])["mia_efficacy"] == 1.0
    m["forget"] = like_retain
    assert compute_metrics(EvalInputs(m), ["mia_efficacy"])["mia_efficacy"] == 0.0


def test_svc_efficacy_balances_by_subsampling():
    # 200 members vs 20 non-members: without balancing an SVC would call everything a member
    rng = np.random.default_rng(0)
    members = rng.normal(1.0, 0.05, 200)
    nonmembers = rng.normal(0.0, 0.05, 20)
    assert mia.svc_efficacy(members, nonmembers, rng.normal(0.0, 0.05, 30), seed=0) == 1.0


# --------------------------------------------------------------------------- forget quality


def test_forget_quality_ks():
    rng = np.random.default_rng(0)
    lab = np.zeros(50, int)
    z = np.stack([rng.normal(size=50), np.zeros(50)], axis=1)
    f = scores(z, lab, "f")
    same = compute_metrics(EvalInputs(dict(forget=f), dict(forget=f)), ["forget_quality"])
    assert same == {"forget_quality": 1.0, "forget_ks_stat": 0.0}
    far = scores(z + np.array([6.0, 0.0]), lab, "f")  # confidence ~1 vs ~0.5
    out = compute_metrics(EvalInputs(dict(forget=f), dict(forget=far)), ["forget_quality"])
    assert out["forget_quality"] < 1e-10 and out["forget_ks_stat"] == 1.0


def test_forget_quality_degenerate_constant_samples():
    f = scores(np.zeros((5, 2)), np.zeros(5, int), "f")  # every confidence exactly 0.5
    out = compute_metrics(EvalInputs(dict(forget=f), dict(forget=f)), ["forget_quality"])
    assert out == {"forget_quality": 1.0, "forget_ks_stat": 0.0}


# -------------------------------------------------------------------------------- cost


def test_cost_and_ratios_from_loop_stats():
    c = LoopStats(steps=10, examples_forward=700, examples_backward=640, wall_time_s=2.0)
    r = LoopStats(steps=100, examples_forward=6400, examples_backward=6400, wall_time_s=8.0)
    out = compute_metrics(EvalInputs({}, cost=c, reference_cost=r), ["cost", "cost_ratio"])
    assert out == pytest.approx(
        {
            "wall_time_s": 2.0,
            "steps": 10,
            "examples_forward": 700,
            "examples_backward": 640,
            "cost_ratio_time": 0.25,
            "cost_ratio_examples": 1340 / 12800,
        }
    )
    zero = compute_metrics(EvalInputs({}, cost=c, reference_cost=LoopStats()), ["cost_ratio"])
    assert all(math.isnan(v) for v in zero.values())


def test_forget_passes_counts_forward_and_backward_against_the_forget_set():
    # 700 forward + 640 backward over a forget set of 67: (700 + 640) / (2 * 67) = 10 passes
    c = LoopStats(steps=10, examples_forward=700, examples_backward=640, wall_time_s=2.0)
    out = compute_metrics(EvalInputs({}, cost=c, forget_size=67), ["forget_passes"])
    assert out == {"forget_passes": pytest.approx(10.0)}
    # one forward and one backward pass over the forget set is the floor: exactly 1
    one = LoopStats(steps=1, examples_forward=67, examples_backward=67)
    assert compute_metrics(EvalInputs({}, cost=one, forget_size=67), ["forget_passes"])["forget_passes"] == 1.0
    # no forget size (inputs built outside a task): skipped, not invented; empty forget set: nan
    assert "forget_passes" not in compute_metrics(EvalInputs({}, cost=c), ["forget_passes"])
    assert math.isnan(compute_metrics(EvalInputs({}, cost=c, forget_size=0), ["forget_passes"])["forget_passes"])


# --------------------------------------------------------------------- registry / skipping


def test_metrics_for_names_the_metrics_that_compute_given_keys():
    from unlearnkit.evaluation.metrics import metrics_for

    names = metrics_for(["gap_acc_test", "acc_test", "forget_passes"], "classifier")
    assert names is not None and "forget_passes" in names and len(names) == len(set(names))
    # computing only those metrics gives those keys, with the values the whole set gives
    inputs = _full_inputs(reference=True)
    subset, everything = compute_metrics(inputs, names), compute_metrics(inputs)
    assert {"gap_acc_test", "acc_test", "forget_passes"} <= set(subset) <= set(everything)
    assert all(subset[k] == everything[k] for k in subset)
    # a key no registered metric computes (unknown, or declared for other code): None, meaning all
    assert metrics_for(["acc_test", "no_such_key"], "classifier") is None
    assert metrics_for(["ratio_rounds"], "federated") is None


def _full_inputs(reference: bool) -> EvalInputs:
    lab = np.arange(12) % 3
    rng = np.random.default_rng(0)
    m = {s: scores(rng.normal(size=(12, 3)), lab, s[0]) for s in ("forget", "retain", "test", "holdout")}
    ref = {s: scores(rng.normal(size=(12, 3)), lab, s[0]) for s in m} if reference else None
    return EvalInputs(
        m, ref, LoopStats(1, 10, 10, 1.0), LoopStats(2, 20, 20, 2.0) if reference else None, forget_size=12
    )


def test_missing_reference_skips_reference_metrics():
    out = compute_metrics(_full_inputs(reference=False))
    needs_ref = {k for s in METRICS.values() if s.needs_reference or "reference_cost" in s.needs for k in s.outputs}
    assert needs_ref >= {"gap_acc_forget", "forget_quality", "js_forget", "cost_ratio_time"}
    assert not needs_ref & set(out)
    assert {"acc_forget", "mia_lr_auc", "mia_efficacy", "wall_time_s"} <= set(out)


def test_full_inputs_produce_every_declared_output():
    out = compute_metrics(_full_inputs(reference=True))
    # scenario metrics (bias, confusion) apply to one scenario kind each: tests/test_scenarios_extra.py
    # causal-LM metrics (modalities=("causal_lm",)) never run on classifier inputs: tests/test_lm_eval.py
    declared = {
        k for s in METRICS.values() if "scenario" not in s.needs and "classifier" in s.modalities for k in s.outputs
    }
    assert set(out) == declared
    assert out["forget_quality"] == pytest.approx(out["forget_quality"])  # finite, not nan
    assert all(isinstance(v, float) for v in out.values())


def test_list_metrics_describes_every_metric():
    listed = {m["name"]: m for m in list_metrics()}
    assert set(listed) == set(METRICS)
    assert {
        "accuracy",
        "mia_threshold",
        "mia_lr",
        "mia_efficacy",
        "forget_quality",
        "js_divergence",
        "cost",
        "cost_ratio",
    } <= set(listed)
    for m in listed.values():
        assert m["description"] and m["citation"] and m["outputs"], m["name"]
        assert set(m["goals"].values()) <= {"higher", "lower", "reference"}
    keys = {k for m in listed.values() for k in m["outputs"]}
    assert {
        "acc_forget",
        "acc_retain",
        "acc_test",
        "gap_acc_forget",
        "gap_acc_retain",
        "gap_acc_test",
        "mia_loss_auc",
        "mia_confidence_auc",
        "mia_entropy_auc",
        "mia_lr_auc",
        "mia_loss_advantage",
        "mia_confidence_advantage",
        "mia_entropy_advantage",
        "mia_lr_advantage",
        "mia_efficacy",
        "forget_quality",
        "forget_ks_stat",
        "js_forget",
        "js_test",
        "wall_time_s",
        "steps",
        "examples_forward",
        "examples_backward",
        "cost_ratio_time",
        "cost_ratio_examples",
    } <= keys


def test_unknown_metric_name_is_a_config_error():
    with pytest.raises(ConfigError, match="unlearnkit metrics"):
        compute_metrics(_full_inputs(reference=False), ["nope"])
