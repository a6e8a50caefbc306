"""GIF and GraphEraser, beyond the public contract (``test_graph_methods_contract.py`` runs
that on them).

GIF: on a convex task (a one-layer GCN classifying nodes, L2-regularised, trained to its
optimum) its one step lands much nearer the retrained model (the retain objective's optimum,
trained from a fresh initialisation) than the original is, for a node
deletion and for an edge deletion (which only the graph-aware term can see); the rows it
leaves out of its gradients are exactly those whose loss the deletion does not change; a
recursion with too small a scale raises DivergenceError.

GraphEraser: BEKM and BLPA give every node one shard within the capacity, BLPA keeps more
edges inside shards than a random cut; a request retrains exactly the shards whose graph
holds a deleted row and keeps the others bit for bit; node classification with vote and
LBAggr; a stored run loads back and evaluates to the same numbers."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

pytest.importorskip("torch_geometric")

from cli_support import cli_json as _uk  # noqa: E402
from unlearnkit.engines.loop import TrainConfig  # noqa: E402
from unlearnkit.errors import ConfigError, DivergenceError  # noqa: E402
from unlearnkit.methods import METHODS  # noqa: E402
from unlearnkit.methods.gif import gif_rows  # noqa: E402
from unlearnkit.methods.graph_eraser import GraphEraserModel, bekm, blpa, shard_capacity  # noqa: E402
from unlearnkit.modalities.graph.task import make_graph_task  # noqa: E402
from unlearnkit.testing import same_state, state_of, tiny_graph_task  # noqa: E402

FAST = TrainConfig(epochs=30, batch_size=4096, lr=1e-2)
MU = 1.0  # the L2 weight of the convex objective (sum units)


@pytest.fixture(scope="module")
def karate():
    return tiny_graph_task(0)


def _flat(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _optimum(task, model, data):
    """argmin over theta of sum_{supervised rows} loss + MU/2 ||theta||^2 from ``model`` (L-BFGS)."""
    m = copy.deepcopy(model).train()
    b = next(data.supervised().batches(10**9))
    opt = torch.optim.LBFGS(
        m.parameters(), lr=1, max_iter=100, tolerance_grad=1e-10, tolerance_change=1e-14, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        loss = task.adapter.per_example_loss(m, b).sum() + MU / 2 * sum((p**2).sum() for p in m.parameters())
        loss.backward()
        return loss

    opt.step(closure)
    return m.eval()


@pytest.mark.parametrize("scenario", ["nodes:3", "edges:0.1"])
def test_gif_step_lands_near_the_retrain(scenario):
    t = make_graph_task("sbm:60", "node", "gcn", scenario, seed=0, recipe=FAST, model_kwargs={"layers": 1})
    task = dataclasses.replace(t, original=_optimum(t, t.original, t.train))  # at the optimum of the full objective
    star = _optimum(task, task.model_factory(1), task.retain)  # the retrain: convex, one optimum from any start
    before = float((_flat(task.original) - _flat(star)).norm())
    scale = 20.0  # above half of H's largest eigenvalue (about 11 here); damping d*s = MU, the L2's curvature
    result = METHODS["gif"](scale=scale, damping=MU / scale).unlearn(task, seed=0)
    after = float((_flat(result.model) - _flat(star)).norm())
    assert before > 0.1
    assert after < 0.4 * before, (before, after)  # measured: 0.33 -> 0.10 (nodes), 0.38 -> 0.10 (edges)
    if scenario.startswith("edges"):  # no deleted row carries a loss: the move is the graph-aware term's alone
        assert result.extra["deleted_rows"] == 0 and result.extra["affected_rows"] > 0


def test_gif_leaves_out_exactly_the_rows_the_deletion_does_not_touch():
    task = make_graph_task("lesmis", "link", "gcn", "edges:1", seed=0, recipe=TrainConfig(epochs=5, lr=1e-2))
    rows = gif_rows(task, 2)  # a 2-layer GCN: 162 of 203 training edges read an influenced node
    train, retain = task.train, task.retain
    sup = np.flatnonzero((train.kind == 1) & (train.labels.numpy() >= 0))
    used = set(rows.deleted.tolist()) | set(rows.affected_train.tolist())
    rest = np.asarray(sorted(set(sup.tolist()) - used))
    assert len(rest) and len(rows.affected_train) == len(rows.affected_retain)
    ad = task.adapter
    with torch.no_grad():
        on_g = ad.per_example_loss(task.original, next(train.take(rest).batches(10**6)))
        on_g2 = ad.per_example_loss(task.original, next(train.take(rest).with_structure_of(retain).batches(10**6)))
        a = train.take(rows.affected_train)
        moved = ad.per_example_loss(task.original, next(a.batches(10**6))) - ad.per_example_loss(
            task.original, next(a.with_structure_of(retain).batches(10**6))
        )
    assert torch.allclose(on_g, on_g2, atol=1e-6)  # unaffected rows: the same loss before and after
    assert float(moved.abs().max()) > 1e-3  # the affected ones do move


def test_gif_too_small_a_scale_diverges_loudly(karate):
    before = state_of(karate.original)
    with pytest.raises(DivergenceError, match="scale"):
        METHODS["gif"](scale=1.0).unlearn(karate, seed=0)
    assert same_state(state_of(karate.original), before)
    with pytest.raises(ConfigError, match="solver"):
        METHODS["gif"](solver="newton")


# ------------------------------------------------------------------------------ GraphEraser
def test_balanced_partitions_stay_within_capacity():
    rng = np.random.default_rng(0)
    n, k = 103, 5
    cap = shard_capacity(n, k, 0.005)
    assert cap == int(np.ceil(n / k + 0.005 * (n - n / k)))
    emb = np.concatenate([rng.normal(0, 1, (80, 4)), rng.normal(8, 1, (23, 4))])  # one big cluster
    shard = bekm(emb, k, cap, 20, np.random.default_rng(1))
    assert shard.min() == 0 and np.bincount(shard, minlength=k).max() <= cap
    t = make_graph_task("sbm:120", "link", "gcn", "edges:0.05", seed=0, recipe=TrainConfig(epochs=1))
    edges = t.graph.edges.numpy()
    lp = blpa(edges, 120, 4, shard_capacity(120, 4, 0.005), 100, np.random.default_rng(0))
    assert np.bincount(lp, minlength=4).max() <= shard_capacity(120, 4, 0.005) and lp.min() >= 0
    rand = np.random.default_rng(0).permutation(120) % 4
    inside = lambda s: float((s[edges[:, 0]] == s[edges[:, 1]]).mean())  # noqa: E731
    assert inside(lp) > inside(rand) + 0.2, (inside(lp), inside(rand))  # label propagation keeps blocks together


def test_a_request_retrains_only_the_affected_shards(karate):
    method = METHODS["graph_eraser"](num_shards=3, partition="blpa")
    result = method.unlearn(karate, seed=0)
    state = method.prepare(karate, seed=0)
    f = karate.split.forget
    expect = sorted({int(state.shard_of[u]) for u, v in zip(f.u, f.v) if state.shard_of[u] == state.shard_of[v]})
    assert result.extra["affected_shards"] == expect and 0 < len(expect) < 3
    for s in range(3):
        same = same_state(state_of(result.model.shards[s]), state_of(state.model.shards[s]))
        assert same == (s not in expect), s
    assert max(result.extra["shard_sizes"]) <= result.extra["capacity"]
    assert sum(result.extra["weights"]) == pytest.approx(1.0)
    with torch.no_grad():  # the ensemble's scores are the weighted mean of the shards' edge logits
        x, ei = karate.scoring_view.on("cpu")
        z = result.model(x, ei)
        w = result.model.weights
        parts = [m(x, ei) for m in result.model.shards]
        s_uv = sum(float(w[i]) * float(parts[i][0] @ parts[i][1]) for i in range(3))
    assert float(z[0] @ z[1]) == pytest.approx(s_uv, rel=1e-4, abs=1e-5)
    with pytest.raises(ConfigError, match="vote"):
        METHODS["graph_eraser"](aggregation="vote").unlearn(karate, seed=0)


def test_graph_eraser_on_node_classification():
    task = make_graph_task("sbm:60", "node", "gcn", "nodes:2", seed=0, recipe=FAST)
    for agg in ("vote", "lbaggr"):
        result = METHODS["graph_eraser"](num_shards=3, aggregation=agg).unlearn(task, seed=0)
        model = result.model
        assert isinstance(model, GraphEraserModel)
        test_nodes = torch.from_numpy(task.test.u)
        assert bool(model.seen[:, test_nodes].all())  # every shard's graph holds the test nodes
        with torch.no_grad():
            out = model(*task.scoring_view.on("cpu"))
        assert torch.allclose(out.exp().sum(1), torch.ones(len(out)), atol=1e-5)  # log-posteriors
        gone = {int(i[5:]) for i in task.split.forget_ids if i.startswith("node:") and "/" not in i}
        method = METHODS["graph_eraser"](num_shards=3, aggregation=agg)
        shard_of = method.partition(task, 0)
        assert result.extra["affected_shards"] == sorted({int(shard_of[g]) for g in gone})


def test_a_stored_graph_eraser_run_loads_back_and_evaluates_the_same(tmp_path, capsys, monkeypatch):
    from unlearnkit.orchestration.experiment import Workspace, load_run_model, rebuild_task

    home = tmp_path / "home"
    run = _uk(
        capsys,
        monkeypatch,
        "train",
        "--task",
        "graph-link",
        "--dataset",
        "karate",
        "--epochs",
        "30",
        "--json",
        home=home,
    )
    ids = tmp_path / "edges.txt"
    ids.write_text("edge:0-3\nedge:0-5\n")
    args = ("unlearn", "--from", run["run_id"], "--method", "graph_eraser", "--param", "num_shards=3")
    u = _uk(capsys, monkeypatch, *args, "--forget-ids", str(ids), "--evaluate", "--json", home=home)
    again = _uk(capsys, monkeypatch, "evaluate", u["run_id"], "--json", home=home)
    for key in ("dt_auc", "df_auc", "mi_ratio", "gap_df_auc"):
        assert again["metrics"][key] == pytest.approx(u["metrics"][key], abs=1e-9), key
    ws = Workspace.open(home, mode="r")
    rec = ws.store.get(u["run_id"])
    task = rebuild_task(ws, rec)
    model = load_run_model(ws, rec, task)
    assert isinstance(model, GraphEraserModel) and len(model.shards) == 3
    assert sum(model.weights.tolist()) == pytest.approx(1.0) and bool(model.active.any())  # buffers came along


def test_graph_eraser_bad_input(karate):
    before = state_of(karate.original)
    with pytest.raises(ConfigError, match="100 shards for 34 nodes"):
        METHODS["graph_eraser"](num_shards=100).unlearn(karate, seed=0)
    for bad in ({"num_shards": 0}, {"partition": "metis"}, {"aggregation": "max"}, {"shard_size_delta": 2.0}):
        with pytest.raises(ConfigError, match="graph_eraser"):
            METHODS["graph_eraser"](**bad)
    assert same_state(state_of(karate.original), before)
