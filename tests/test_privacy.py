"""Per-example privacy evaluation: U-LiRA, the competition score, the comparator score,
shadow models and the privacy report."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unlearnkit.engines.ensemble import train_many
from unlearnkit.engines.loop import LoopStats, TrainConfig
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.evaluation import shadow
from unlearnkit.evaluation.comparator import attack_scores, comparator_privacy, confidence_feature
from unlearnkit.evaluation.competition import (
    EPSILON_CAP,
    bucket_points,
    competition_score,
    example_epsilon,
    example_epsilons,
    forget_score,
)
from unlearnkit.evaluation.shadow import (
    PRIVACY_OUTPUTS,
    privacy_report,
    shadow_originals,
    shadow_retrains,
)
from unlearnkit.evaluation.ulira import ulira
from unlearnkit.modalities.classifier.scores import Scores
from unlearnkit.modalities.classifier.task import make_task
from unlearnkit.orchestration.artifacts import ModelCache


# ----------------------------------------------------------------------------- U-LiRA
def _gauss(rng, n_models, means, std=1.0):
    return means[None, :] + std * rng.standard_normal((n_models, len(means)))


def test_ulira_identical_distributions_is_chance():
    rng = np.random.default_rng(0)
    means = rng.normal(0, 3, 300)  # every example has its own mean: a per-example attack's setting
    r = ulira(_gauss(rng, 16, means), _gauss(rng, 16, means))
    assert abs(r["auc"] - 0.5) < 0.03
    assert abs(r["acc"] - 0.5) < 0.03
    assert r["tpr_at_1fpr"] < 0.05 and r["tpr_at_01fpr"] < 0.01


def test_ulira_separable_distributions_are_found():
    rng = np.random.default_rng(1)
    means = rng.normal(0, 3, 100)
    r = ulira(_gauss(rng, 16, means + 10), _gauss(rng, 16, means))
    assert r["auc"] > 0.999
    assert r["tpr_at_1fpr"] > 0.99 and r["tpr_at_01fpr"] > 0.9
    assert np.all(r["per_example_acc"] > 0.9)


def test_ulira_is_per_example():
    """A shift of 3 std on half the examples: those, and only those, are attacked. A
    population threshold could not tell, since the per-example means spread much wider."""
    rng = np.random.default_rng(2)
    means = rng.normal(0, 10, 200)
    shift = np.r_[np.full(100, 3.0), np.zeros(100)]
    r = ulira(_gauss(rng, 16, means + shift), _gauss(rng, 16, means))
    assert r["per_example_auc"][:100].mean() > 0.9
    assert abs(r["per_example_auc"][100:].mean() - 0.5) < 0.05
    assert r["per_example_acc"].shape == (200,) and r["llr_in"].shape == (16, 200)


def test_ulira_leave_one_pair_out_is_unbiased_with_few_models():
    """With 4 models a side, plain leave-one-out biases the AUC (the target's side is fitted
    on one model fewer); leaving a pair out keeps it at chance on average."""
    rng = np.random.default_rng(3)
    aucs = [ulira(_gauss(rng, 4, m), _gauss(rng, 4, m))["auc"] for m in (rng.normal(0, 3, 100) for _ in range(20))]
    assert abs(np.mean(aucs) - 0.5) < 0.02


def test_ulira_rejects_bad_input():
    x = np.zeros((4, 5))
    with pytest.raises(ConfigError):
        ulira(x[:2], x)
    with pytest.raises(ConfigError):
        ulira(x, np.zeros((4, 6)))
    with pytest.raises(DataError):
        ulira(np.full((4, 5), np.nan), x)


# ----------------------------------------------------------------------------- competition
def test_competition_identical_distributions_give_zero_epsilon_and_full_score():
    rng = np.random.default_rng(0)
    conf = rng.normal(0, 1, (16, 30))
    assert np.all(example_epsilons(conf, conf) == 0)
    assert forget_score(conf, conf) == 1.0
    r = competition_score(conf, conf, 0.9, 1.0, [0.8, 0.8], [0.8, 0.8])
    assert r["F"] == 1.0 and r["score"] == pytest.approx(0.9)


def test_competition_separable_distributions_give_capped_epsilon_and_zero_score():
    rng = np.random.default_rng(0)
    retrained = rng.normal(0, 1, (16, 30))
    unlearned = retrained + 100.0
    assert np.all(example_epsilons(unlearned, retrained) == EPSILON_CAP)
    assert forget_score(unlearned, retrained) == 0.0


def test_competition_peaky_unlearned_distribution_gets_the_cap():
    """Unlearned models that all output the same value: the official 'peaky' rule."""
    retrained = np.random.default_rng(0).normal(0, 1, (8, 5))
    unlearned = np.tile(retrained.mean(0), (8, 1))
    assert np.all(example_epsilons(unlearned, retrained) == EPSILON_CAP)


def test_competition_epsilon_by_hand():
    """pos = 1..4, neg = 0..3: the best rules (t = 2 or 3, or an interval) have FPR, FNR =
    1/2, 1/4 or 1/4, 1/2, so eps = log((1 - delta - 1/2) / (1/4)) = log(2 - 4 delta)."""
    eps = example_epsilon([1, 2, 3, 4], [0, 1, 2, 3])
    assert eps == pytest.approx(math.log(2 - 4e-5), abs=1e-12)
    # the positive side is the one with the larger median, whichever argument holds it
    assert example_epsilons(np.array([[1.0], [2], [3], [4]]), np.array([[0.0], [1], [2], [3]]))[0] == pytest.approx(eps)
    assert example_epsilons(np.array([[0.0], [1], [2], [3]]), np.array([[1.0], [2], [3], [4]]))[0] == pytest.approx(eps)


def test_competition_buckets_by_hand():
    # 16 models: epsilons certifiable up to ceil(log 15) = 3, six buckets of width 0.5
    eps = np.array([0.0, 0.49, 0.5, 1.2, 2.9, 3.0, 50.0])
    assert bucket_points(eps, 16).tolist() == [1, 1, 0.5, 0.25, 1 / 32, 0, 0]
    # 4 models: up to ceil(log 3) = 2, four buckets
    assert bucket_points(np.array([1.9, 2.0]), 4).tolist() == [1 / 8, 0]


def test_competition_rejects_bad_input():
    with pytest.raises(ConfigError):
        forget_score(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ConfigError):
        forget_score(np.zeros((4, 3)), np.zeros((4, 2)))


# ----------------------------------------------------------------------------- comparator
def _scores(logits) -> Scores:
    logits = np.asarray(logits, np.float32)
    return Scores(
        np.array([f"e{i}" for i in range(len(logits))], dtype=object), np.zeros(len(logits), dtype=np.int64), logits
    )


def test_comparator_identical_models_are_private():
    logits = np.random.default_rng(0).normal(0, 2, (50, 10))
    r = comparator_privacy(_scores(logits), _scores(logits))
    assert r["privacy"] == 1.0 and r["entropy"] == 1.0 and r["confidence"] == 1.0


def test_comparator_separable_models_are_not_private():
    rng = np.random.default_rng(0)
    confident = np.zeros((40, 10))
    confident[:, 0] = 12.0 + rng.random(40)  # p_max ~ 1: confidence clipped at 10, entropy ~ 0
    unsure = rng.normal(0, 0.01, (40, 10))  # p ~ uniform: confidence ~ -2.2, entropy ~ log 10
    r = comparator_privacy(_scores(confident), _scores(unsure))
    assert r["privacy"] == 0.0 and r["entropy"] == 0.0 and r["confidence"] == 0.0


def test_comparator_attack_score_by_hand():
    """pos = 1..4, neg = 0..3 at t = 2: TPR 3/4, FPR 1/2, FNR 1/4; eps = min(log((1/2 - d)/(1/4)),
    log((3/4 - d)/(1/2))) = log(1.5 - 2d); attack = 1 - 2^-eps."""
    a = attack_scores(np.array([1.0, 2, 3, 4]), np.array([0.0, 1, 2, 3]), np.array([2.0]))
    assert a[0] == pytest.approx(1 - 2 ** (-math.log(1.5 - 2e-5)), abs=1e-12)


def test_comparator_confidence_feature_is_the_top_class_logit_gap():
    # two classes: log p_max - log(1 - p_max) = |z_0 - z_1|
    z = np.array([[3.0, 0.0], [0.0, 5.0], [-1.0, 1.0]])
    assert confidence_feature(z) == pytest.approx([3.0, 5.0, 2.0])


def test_comparator_rejects_empty_scores():
    with pytest.raises(DataError):
        comparator_privacy(_scores(np.zeros((0, 10))), _scores(np.zeros((3, 10))))


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def tiny():
    return make_task(
        "digits",
        "mlp",
        seed=0,
        device="cpu",
        model_kwargs={"hidden": (32,)},
        recipe=TrainConfig(epochs=8, batch_size=64, lr=2e-3),
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return ModelCache(tmp_path_factory.mktemp("privacy-cache"))


def _without_time(r: dict) -> dict:
    return {k: v for k, v in r.items() if k != "privacy_wall_time_s"}


def test_privacy_report_values_in_range_and_deterministic(tiny, cache):
    a = privacy_report(tiny, "finetune", {"epochs": 1.0}, n_shadow=4, seed=0)
    b = privacy_report(tiny, "finetune", {"epochs": 1.0}, n_shadow=4, seed=0, cache=cache)  # fills
    c = privacy_report(tiny, "finetune", {"epochs": 1.0}, n_shadow=4, seed=0, cache=cache)  # reads
    assert _without_time(a) == _without_time(b) == _without_time(c)
    assert set(PRIVACY_OUTPUTS) <= set(a)
    assert all(math.isfinite(v) for v in a.values())
    for k in (
        "ulira_auc",
        "ulira_tpr_at_1fpr",
        "ulira_tpr_at_01fpr",
        "ulira_acc",
        "competition_F",
        "comparator_privacy",
    ):
        assert 0.0 <= a[k] <= 1.0, k
    assert a["competition_score"] >= 0 and a["privacy_wall_time_s"] > 0
    # 4 retrains + 4 originals + 8 short fine-tunes: more than 8 retrains' worth of examples
    assert a["privacy_cost_retrains"] > 8 and a["n_shadow"] == 4
    d = privacy_report(tiny, "finetune", {"epochs": 1.0}, n_shadow=4, seed=1, cache=cache)
    assert _without_time(d) != _without_time(a)


def test_shadow_models_are_cached_and_shared(tiny, cache, monkeypatch):
    first = shadow_retrains(tiny, 4, seed=0, cache=cache)
    originals, cost = shadow_originals(tiny, 4, seed=0, cache=cache)
    assert first.confidence.shape == (4, len(tiny.forget)) and np.all(first.acc_test > 0.5)

    def no_training(*a, **k):
        raise AssertionError("a cached shadow model was trained again")

    monkeypatch.setattr(shadow, "train_many", no_training)
    again = shadow_retrains(tiny, 4, seed=0, cache=cache)
    assert np.array_equal(first.confidence, again.confidence)
    assert again.cost.examples_forward == first.cost.examples_forward > 0  # the recorded cost
    reread, _ = shadow_originals(tiny, 4, seed=0, cache=cache)
    assert all(torch.equal(a.net[-1].weight, b.net[-1].weight) for a, b in zip(originals, reread))
    # another method reuses them too: retrains and originals come from the cache
    privacy_report(tiny, "finetune", {"epochs": 0.5}, n_shadow=4, seed=0, cache=cache)
    # a larger N keeps the first models (seeds depend on the index, not on N): 2 are trained
    trained = []

    def counting(f, d, a, c, seeds, **k):
        trained.append(len(seeds))
        return train_many(f, d, a, c, seeds, **k)

    monkeypatch.setattr(shadow, "train_many", counting)
    assert shadow_retrains(tiny, 6, seed=0, cache=cache).seeds[:4] == first.seeds
    assert trained == [2]


def test_dp_task_shadow_originals_are_trained_with_dp(monkeypatch):
    pytest.importorskip("opacus")
    import unlearnkit.engines.dp as dp

    task = make_task(
        "digits",
        "mlp",
        seed=0,
        device="cpu",
        model_kwargs={"hidden": (16,)},
        recipe=TrainConfig(epochs=1, batch_size=64, lr=3e-3),
        dp={"epsilon": 4.0, "delta": 1e-5, "max_grad_norm": 1.0},
    )
    calls = []

    def fake_dp(model, data, adapter, cfg, seed, eps, delta, clip, device, progress):
        calls.append((len(data), eps, delta, clip))
        return model, LoopStats(steps=1, examples_forward=len(data), examples_backward=len(data)), eps

    monkeypatch.setattr(dp, "train_dp_original", fake_dp)
    monkeypatch.setattr(shadow, "train_many", lambda *a, **k: pytest.fail("trained without DP"))
    models, cost = shadow_originals(task, 4, seed=0)
    assert len(models) == 4 and calls == [(len(task.train), 4.0, 1e-5, 1.0)] * 4
    assert cost.steps == 4


def test_retrain_is_private_and_no_unlearning_is_not(tiny, cache):
    """Retraining *is* the reference: U-LiRA is at chance. Doing nothing (fine-tune for 0
    epochs returns the original) leaves the forget set detectable."""
    exact = privacy_report(tiny, "retrain", n_shadow=6, seed=0, cache=cache)
    none = privacy_report(tiny, "finetune", {"epochs": 0.0}, n_shadow=6, seed=0, cache=cache)
    assert abs(exact["ulira_auc"] - 0.5) < 0.1
    assert none["ulira_auc"] > exact["ulira_auc"] + 0.05
    # N copies of the same model are 'peaky': the competition gives them no points
    assert none["competition_F"] == 0.0 < exact["competition_F"]


def test_privacy_report_rejects_bad_input(tiny):
    with pytest.raises(ConfigError):
        privacy_report(tiny, "finetune", n_shadow=3)
    with pytest.raises(ConfigError):
        privacy_report(tiny, "no-such-method", n_shadow=4)


# ----------------------------------------------------------------------------- stored with the evaluation
def test_evaluate_privacy_keeps_ulira_per_example_beside_the_evaluation(home):
    """`evaluate --privacy N` keeps U-LiRA's per-example result (one value per forget example,
    in a file keyed by the evaluation id, not among the metrics); evaluating again gives the
    same numbers; a read-only workspace computes them and writes nothing."""
    import json

    from unlearnkit.orchestration.experiment import Workspace
    from unlearnkit.requests import (
        DeletionRequest,
        answer_request,
        evaluate_run,
        privacy_examples_path,
        read_privacy_examples,
    )

    h, train = home
    ws = Workspace.open(h)
    run = answer_request(
        ws, DeletionRequest(train, "finetune", {"epochs": 0.5}, ids=None, seed=0, scenario="random:0.05")
    )
    forget = [str(i) for i in ws.store.get(run.run_id).forget_ids]

    first = evaluate_run(ws, run.run_id, privacy=4)
    per = first.privacy_examples
    assert sorted(per["ids"]) == sorted(forget) and len(per["ids"]) == len(forget)
    assert len(per["ulira_acc"]) == len(per["ulira_auc"]) == len(forget)
    assert all(0.0 <= v <= 1.0 for v in per["ulira_acc"] + per["ulira_auc"])
    assert per["n_shadow"] == 4 and per["method"] == "finetune"
    # the per-example mean is the aggregate; nothing per example became a metric
    assert np.mean(per["ulira_acc"]) == pytest.approx(first.metrics["ulira_acc"], abs=1e-12)
    assert not any(k.startswith("ulira_per_example") for k in first.metrics)
    assert all(isinstance(v, float) for v in ws.store.evaluations(run.run_id)[-1].metrics.values())

    path = privacy_examples_path(ws, first.evaluation.id)
    assert first.privacy_file == path and path.parent == h / "privacy"
    stored = read_privacy_examples(ws, first.evaluation.id)
    assert stored["evaluation_id"] == first.evaluation.id and stored["run_id"] == run.run_id
    assert {k: stored[k] for k in ("ids", "ulira_acc", "ulira_auc")} == {
        k: per[k] for k in ("ids", "ulira_acc", "ulira_auc")
    }
    assert json.loads(path.read_text())["ids"] == per["ids"]

    again = evaluate_run(ws, run.run_id, privacy=4)  # a new evaluation, the same numbers
    assert again.evaluation.id != first.evaluation.id and again.same_inputs_as == first.evaluation.id
    second = read_privacy_examples(ws, again.evaluation.id)
    assert {k: second[k] for k in ("ids", "ulira_acc", "ulira_auc")} == {
        k: stored[k] for k in ("ids", "ulira_acc", "ulira_auc")
    }
    assert read_privacy_examples(ws, "no-such-evaluation") is None

    before = sorted(p.name for p in (h / "privacy").iterdir())
    ro = evaluate_run(Workspace.open(h, mode="r"), run.run_id, privacy=4)
    assert ro.stored is False and ro.privacy_file is None and ro.privacy_examples["ulira_acc"] == per["ulira_acc"]
    assert sorted(p.name for p in (h / "privacy").iterdir()) == before
