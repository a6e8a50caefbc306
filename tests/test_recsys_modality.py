"""The recommender modality: registry entry, adapter, scenarios (users, interactions, an item,
ids, subjects) and their errors, the three models, and the metrics on a retrain."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearnkit.engines.loop import TrainConfig
from unlearnkit.errors import ConfigError, ForgetSetError, UnknownIdsError
from unlearnkit.modalities import get_modality, modality_for_task_kind
from unlearnkit.modalities.recommender.metrics import target_users
from unlearnkit.modalities.recommender.scores import ranking_metrics, score_model
from unlearnkit.modalities.recommender.task import RecForget, make_rec_task, request_scenario
from unlearnkit.orchestration.experiment import evaluate_model

FAST = TrainConfig(epochs=10, batch_size=512, lr=1e-2)


@pytest.fixture(scope="module")
def task():
    recipe = TrainConfig(epochs=40, batch_size=512, lr=1e-2)
    return make_rec_task("synthetic:100:60", "bpr", "users:4", recipe=recipe, model_kwargs={"dim": 8})


def test_registered():
    m = get_modality("recommender")
    assert modality_for_task_kind("recsys") is m
    assert m.method_defaults["npo"]["beta"] == 0.5


def test_split_and_ids(task):
    tr, te = task.train, task.test
    # leave-one-out: one held-out interaction per user with at least two, never in training
    assert np.bincount(te.user).max() == 1
    assert not set(tr.example_ids) & set(te.example_ids)
    assert set(tr.example_ids) | set(te.example_ids) == set(task.data.example_ids)
    # a row's fixed negative is an item its user never interacted with
    seen = set(zip(task.data.user.tolist(), task.data.item.tolist()))
    assert not any((u, j) in seen for u, j in zip(tr.user.tolist(), tr.neg.tolist()))
    # the forget set is four users' whole histories, subjects = users; scored on the retain graph
    users = set(task.forget.subject_ids)
    assert len(users) == 4
    assert set(task.forget.example_ids) == set(tr.ids_of_subjects(sorted(users)))
    assert len(task.forget.structure) == len(task.retain) < len(tr)
    # the holdout: never-trained interactions of the same users
    assert set(task.holdout.subject_ids) <= users and not set(task.holdout.example_ids) & set(tr.example_ids)


def test_adapter_bpr_loss(task):
    b = task.adapter.to_device(next(task.forget.batches(8)))
    logits = task.adapter.logits(task.original, b)
    loss = task.adapter.per_example_loss(task.original, b)
    assert logits.shape == (8, 2) and loss.shape == (8,)
    assert torch.allclose(loss, torch.nn.functional.softplus(-(logits[:, 0] - logits[:, 1])), atol=1e-6)
    kl = task.adapter.per_example_kl(logits, logits, b)
    assert torch.allclose(kl, torch.zeros(8), atol=1e-6)


def test_scenarios(task):
    inter = task.with_forget(RecForget("interactions", 0.1).resolve(task.train, task.data, 0))
    assert len(inter.forget) == round(0.1 * len(task.train))
    item = task.data.item_ids[int(np.bincount(task.train.item).argmax())]
    t_item = task.with_forget(RecForget.parse(f"item:{item}").resolve(task.train, task.data, 0))
    assert set(t_item.forget.item.tolist()) == {int(np.bincount(task.train.item).argmax())}
    assert request_scenario(subjects=["u3"]).kind == "subjects"
    assert RecForget.parse("users:0.05").amount == 0.05 and RecForget.parse("interactions:20").amount == 20


@pytest.mark.parametrize(
    "scenario, error, match",
    [
        ("users:100", ForgetSetError, "nothing would remain"),
        ("users:abc", ConfigError, "needs a number"),
        ("item:no-such-item", UnknownIdsError, "not in the data"),
        ("interactions:1.0", ForgetSetError, "asked to delete"),
        ("edges:0.1", ConfigError, "unknown recommender scenario"),
    ],
)
def test_bad_scenarios(task, scenario, error, match):
    with pytest.raises(error, match=match) as e:
        RecForget.parse(scenario).resolve(task.train, task.data, 0)
    assert "\n" not in str(e.value)


def test_unknown_user_and_unseen_item(task):
    with pytest.raises(UnknownIdsError, match="subject id"):
        RecForget("subjects", subjects=["nobody"]).resolve(task.train, task.data, 0)
    with pytest.raises(UnknownIdsError, match="not a training interaction"):
        task.with_forget(["user:u0/item:i9999"])


def test_an_item_nobody_saw_in_training():
    """Item i1's only interaction is user a's latest, held out for testing: nobody trained on it."""
    from unlearnkit.data.interactions import Interactions

    data = Interactions(
        user=[0, 0, 0, 1, 1, 2, 2],
        item=[0, 2, 1, 0, 2, 0, 2],
        user_ids=["a", "b", "c"],
        item_ids=["i0", "i1", "i2"],
        timestamp=[1, 2, 9, 1, 2, 1, 2],
        name="hand",
    )
    t = make_rec_task(data, "bpr", "users:1", recipe=FAST, model_kwargs={"dim": 4})
    assert "user:a/item:i1" in set(t.test.example_ids)
    with pytest.raises(ForgetSetError, match="nobody interacted with item 'i1'"):
        RecForget.parse("item:i1").resolve(t.train, t.data, 0)
    with pytest.raises(UnknownIdsError, match="not a training interaction"):
        t.with_forget(["user:a/item:i1"])  # a held-out test interaction is not a training one


def test_lightgcn_scores_on_the_retain_graph():
    """A deleted user's interactions leave LightGCN's message passing: scored on the retain
    graph, the original's embedding of that user is its ego embedding alone, / (layers + 1)."""
    t = make_rec_task("synthetic:60:40", "lightgcn", "users:1", recipe=FAST, model_kwargs={"dim": 8, "layers": 2})
    u = int(t.forget.user[0])
    ue_train, _ = t.adapter.embeddings(t.original, t.train.structure)
    ue_retain, _ = t.adapter.embeddings(t.original, t.retain.structure)
    ego = t.original.gcn.embedding.weight[u]
    assert torch.allclose(ue_retain[u], ego / 3, atol=1e-6)
    assert not torch.allclose(ue_train[u], ego / 3, atol=1e-3)
    sc = score_model(t.original, t)["forget"]
    ie = t.adapter.embeddings(t.original, t.retain.structure)[1]
    assert np.allclose(sc.pos, (ue_retain[u] * ie[torch.from_numpy(t.forget.item)]).sum(-1).detach().numpy(), atol=1e-5)


def test_ranking_metrics_by_hand():
    class T:  # a test split of two users: user 0 holds out item 3, user 1 items 1 and 2
        user = np.array([0, 1, 1])
        item = np.array([3, 1, 2])

    topk = np.array([[3, 0, 1, 2, 4] * 4, [0, 2, 4, 1, 3] * 4])
    hr, ndcg, recall = ranking_metrics(topk, T, 2, 5)
    assert hr[5].tolist() == [1.0, 1.0]
    assert ndcg[5][0] == pytest.approx(1.0)
    ideal = 1 + 1 / np.log2(3)
    assert ndcg[5][1] == pytest.approx((1 / np.log2(3) + 1 / np.log2(5)) / ideal)
    assert recall[5][1] == 1.0


@pytest.mark.parametrize("model", ["bpr", "lightgcn", "two-tower"])
def test_models_train_and_rank(model):
    t = make_rec_task("synthetic:80:50", model, "users:2", recipe=FAST, model_kwargs={"dim": 8})
    sc = score_model(t.original, t)
    r = sc["test"].ranking
    retained = r.groups["retained"]
    # better than chance: a random ranking of ~48 candidates puts the held-out item in the top 10 ~21% of the time
    assert np.nanmean(r.hr[10][retained]) > 0.3
    # training items are never recommended back
    tr = t.split.retain
    seen = set(zip(tr.user.tolist(), tr.item.tolist()))
    assert not any((u, int(i)) in seen for u in range(t.n_users) for i in r.topk[u] if i >= 0)
    # -1 only where a user has fewer unseen items than the list is long
    unseen = t.n_items - np.bincount(tr.user, minlength=t.n_users)
    assert np.array_equal((r.topk >= 0).sum(1), np.minimum(unseen, r.topk.shape[1]))


def test_metrics_on_the_reference_and_original(task):
    ref, ref_cost = task.train_from_scratch(task.retain, 0)
    rs = score_model(ref, task)
    same = evaluate_model(ref, task, rs, cost=ref_cost, reference_cost=ref_cost).metrics
    assert same["gap_ndcg10_retained"] == 0 and same["jaccard10_forgotten"] == 1 and same["unlearning_bias"] == 0
    assert same["cost_ratio_time"] == 1
    orig = evaluate_model(task.original, task, rs, cost=task.original_cost, reference_cost=ref_cost).metrics
    # the original still fits the deleted users' interactions; the reference does not
    assert orig["bpr_loss_forget"] < 0.5 * same["bpr_loss_forget"]
    assert orig["jaccard10_forgotten"] < 0.5
    groups = rs["test"].ranking.groups
    assert len(target_users(rs["test"].ranking)) == 4
    assert not set(groups["neighbours"]) & set(groups["forgotten"])
    assert len(groups["random"]) == min(len(groups["neighbours"]), len(groups["retained"]) - len(groups["neighbours"]))
    # neighbours share the forgotten users' communities (generated data)
    comm = task.data.community
    assert set(comm[groups["neighbours"]]) <= set(comm[groups["forgotten"]])


def test_build_task_options(tmp_path):
    """``unlearnkit train`` options reach the task: a rating threshold and a per-user test fraction."""
    from unlearnkit.modalities.recommender.task import build_task

    rows = [(u, i, 1 + (u * 7 + i) % 5) for u in range(1, 21) for i in range(1, 16) if (u + i) % 3]
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r},{u * 100 + i}\n" for u, i, r in rows))
    t = build_task("recsys", {"dataset": str(path), "epochs": 1, "threshold": 3, "test_fraction": 0.25})
    kept = sum(r >= 3 for *_, r in rows)
    assert len(t.train) + len(t.test) == kept and t.spec["threshold"] == 3
    per_user = np.bincount(t.test.user)
    total = np.bincount(t.data.user)
    assert all(p == min(t_ - 1, max(1, round(0.25 * t_))) for p, t_ in zip(per_user, total) if t_ >= 2)
