"""RecEraser and CRAGRU on small recommender tasks: what each promises beyond the contract
(RecEraser: balanced partitions, only the affected shards retrained and each exactly as a
fresh shard on its remaining rows; CRAGRU: the deleted interactions never reach a profile,
untouched users keep the base model's scores, the three strategies' quotas)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearnkit.engines.loop import TrainConfig
from unlearnkit.methods import METHODS
from unlearnkit.methods.cragru import category_quotas
from unlearnkit.modalities.recommender.scores import score_model
from unlearnkit.modalities.recommender.task import make_rec_task
from unlearnkit.testing import same_state, state_of

RECIPE = TrainConfig(epochs=20, batch_size=512, lr=1e-2)


@pytest.fixture(scope="module")
def task():
    return make_rec_task("synthetic:100:60", "bpr", "users:1", recipe=RECIPE, model_kwargs={"dim": 8})


@pytest.mark.parametrize("partition", ["ubp", "ibp", "inbp", "random"])
def test_receraser_partitions_are_balanced(task, partition):
    m = METHODS["receraser"](num_shards=4, partition=partition)
    shard_of = m.partition(task)
    assert shard_of.shape == (len(task.train),) and set(shard_of.tolist()) <= set(range(4))
    tr = task.train
    if partition in ("inbp", "random"):  # interactions balanced: at most ceil(n/k) each
        assert np.bincount(shard_of, minlength=4).max() <= int(np.ceil(len(tr) / 4))
    else:  # users (items) balanced, and each user's (item's) interactions in one shard
        key = tr.user if partition == "ubp" else tr.item
        per = {k: set(shard_of[key == k].tolist()) for k in np.unique(key)}
        assert all(len(s) == 1 for s in per.values())
        counts = np.bincount([s.pop() for s in per.values()], minlength=4)
        assert counts.max() <= int(np.ceil(len(per) / 4))


def test_receraser_retrains_only_the_affected_shard_exactly(task):
    m = METHODS["receraser"](num_shards=4, partition="ubp", agg_epochs=2)
    result = m.unlearn(task, seed=0)
    state = m.prepare(task, seed=0)
    hit = result.extra["affected_shards"]
    assert hit == sorted(set(state.shard_of[task.train.positions(task.split.forget_ids)].tolist()))
    assert len(hit) == 1  # one user's history lives in one UBP shard
    for s in range(4):
        same = same_state(state_of(result.model.shards[s]), state_of(state.model.shards[s]))
        assert same == (s not in hit)
    # the retrained shard is exactly a fresh shard trained on its remaining rows
    s = hit[0]
    rows = m._shard_set(task.split.retain, task.split.train, state.shard_of, s)
    fresh, _ = m._train_shard(task, rows, s, 0, False)
    assert same_state(state_of(fresh), state_of(result.model.shards[s]))
    assert not set(rows.example_ids) & set(task.split.forget_ids)
    # the request costs less than the preparation (one shard of four, the aggregation)
    assert result.cost.examples_backward < 0.6 * result.extra["preparation_cost"]["examples_backward"]
    # the stored shape can be rebuilt from the task and loads the result
    template = m.model_template(task)
    template.load_state_dict(result.model.state_dict())
    a, b = score_model(template, task), score_model(result.model, task)
    assert np.allclose(a["forget"].pos, b["forget"].pos, atol=1e-5)


def test_category_quotas():
    counts = np.array([6, 3, 1, 0])
    assert category_quotas(counts, 20, "preference").tolist() == [6, 3, 1, 0]  # short history: everything
    pref = category_quotas(counts, 5, "preference")
    div = category_quotas(counts, 5, "diversity")
    att = category_quotas(counts, 5, "attention", np.array([0.1, 0.1, 10.0, 5.0]))
    for q in (pref, div, att):
        assert q.sum() == 5 and (q <= counts).all() and q[3] == 0
    assert pref[0] > pref[1] >= pref[2]  # in proportion to the user's mix
    assert div.tolist() == [2, 2, 1, 0]  # equal, capped by what exists
    assert att[2] == 1 and att[0] + att[1] == 4  # the attended category is full first, the rest share


@pytest.mark.parametrize("strategy", ["preference", "diversity", "attention"])
def test_cragru_isolates_the_deleted_data(strategy):
    t = make_rec_task("synthetic:100:60", "bpr", "interactions:0.1", recipe=RECIPE, model_kwargs={"dim": 8})
    result = METHODS["cragru"](strategy=strategy, history_limit=5).unlearn(t, seed=0)
    ue0, ie0 = t.adapter.embeddings(t.original, t.split.train.structure)
    ue, ie = result.model()
    d = ue0.shape[1]
    affected = np.unique(t.forget.user)
    untouched = np.setdiff1d(np.arange(t.n_users), affected)
    # untouched users keep the base model's scores exactly; nothing trains
    s0 = (ue0 @ ie0.T).detach()
    s = ue @ ie.T
    assert torch.allclose(s[untouched], s0[untouched], atol=1e-5)
    assert result.cost.steps == 0 and result.cost.examples_backward == 0
    # an affected user's scores: candidates (never a retained item) above every other item
    u = int(affected[0])
    row = s[u]
    kept = t.split.retain.item[t.split.retain.user == u]
    cand = row > row.median() + 0.5 * (row.max() - row.median())
    assert not cand[torch.as_tensor(kept)].any()
    assert ue[u, :d].abs().sum() == 0  # the base user embedding (trained on the deleted data) is gone
    # the deleted interactions themselves score like any non-candidate: their loss rises
    before = score_model(t.original, t)["forget"].loss.mean()
    after = score_model(result.model, t)["forget"].loss.mean()
    assert after > before + 0.1  # measured 0.40 -> 0.59 (preference)


def test_cragru_profile_never_reads_the_deleted_interactions():
    """Changing only the deleted interactions' items changes nothing CRAGRU produces
    (with profile candidates): its output depends on the retained data and the base model."""
    t = make_rec_task("synthetic:100:60", "bpr", "users:2", recipe=RECIPE, model_kwargs={"dim": 8})
    a = METHODS["cragru"]().unlearn(t, seed=0).model()
    b = METHODS["cragru"]().unlearn(t, seed=0).model()
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    forgotten = np.unique(t.forget.user)
    # a forgotten user has no retained history: their scores are the popularity candidates only
    u = int(forgotten[0])
    row = (a[0] @ a[1].T)[u]
    top = torch.topk(row, 10).indices.numpy()
    pop = np.bincount(t.split.retain.item, minlength=t.n_items)
    assert pop[top].min() >= np.sort(pop)[::-1][49]  # among the 50 most popular retained items


def test_cragru_lm_generator_end_to_end():
    """The tiny causal LM generator: trained once on the profiles (its cost recorded as
    preparation), it scores the candidates of every affected user; untouched users keep the
    base model's scores and the deleted users' interactions lose their fit."""
    t = make_rec_task("synthetic:60:40", "bpr", "users:2", recipe=RECIPE, model_kwargs={"dim": 8})
    m = METHODS["cragru"](generator="lm", lm_epochs=3)
    result = m.unlearn(t, seed=0)
    assert result.extra["preparation_cost"]["steps"] == 3  # 60 profiles, batch 64: one step an epoch
    lm, _ = m.profile_lm(t, 0)
    from unlearnkit.methods.cragru import lm_scores

    g = lm_scores(lm, np.array([0, 1, 2]), t.n_items, "cpu")
    assert g.shape == (t.n_items,) and np.isclose(np.exp(g).sum(), 1.0, atol=1e-4)
    ue0, ie0 = t.adapter.embeddings(t.original, t.split.train.structure)
    ue, ie = result.model()
    untouched = np.setdiff1d(np.arange(t.n_users), np.unique(t.forget.user))
    assert torch.allclose((ue @ ie.T)[untouched], (ue0 @ ie0.T).detach()[untouched], atol=1e-5)
    before = score_model(t.original, t)["forget"].loss.mean()
    assert score_model(result.model, t)["forget"].loss.mean() > before + 0.2
