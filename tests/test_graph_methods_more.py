"""UtU and INPO on the tiny karate link-prediction task (and a node-deletion variant): what
each computes, checked against its formula; the contract suite runs them too
(tests/test_graph_methods_contract.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch_geometric")

import torch  # noqa: E402

from unlearnkit.errors import ConfigError  # noqa: E402
from unlearnkit.methods import METHODS  # noqa: E402
from unlearnkit.methods.inpo import (  # noqa: E402
    clear_message_weights,
    influence_weights,
    message_weights,
    node_influence,
    removal_influence,
    set_message_weights,
    topological_entropy,
    weighted_npo,
)
from unlearnkit.methods.losses import npo_loss  # noqa: E402
from unlearnkit.testing import forget_loss, same_state, state_of, tiny_graph_task  # noqa: E402


@pytest.fixture(scope="module")
def task():
    return tiny_graph_task()


def test_both_are_registered_graph_methods():
    for name in ("utu", "inpo"):
        assert METHODS[name].modalities == ("graph",)
        assert METHODS[name].citation


# --------------------------------------------------------------------------- UtU
def test_utu_is_the_original_weights_on_the_retain_graph_with_no_training(task):
    before = state_of(task.original)
    r = METHODS["utu"]().unlearn(task, seed=0)
    assert same_state(state_of(r.model), before)
    assert r.model is not task.original
    assert (r.cost.steps, r.cost.examples_forward, r.cost.examples_backward) == (0, 0, 0)
    lost = task.train.edge_keep & ~task.retain.edge_keep
    assert r.extra["unlinked_edges"] == int(lost.sum()) == r.extra["deleted_edge_rows"] > 0
    # its predictions are the original's on the graph without the deleted edges
    x, ei = task.scoring_view.on(task.device)
    with torch.no_grad():
        assert torch.equal(r.model(x, ei), task.original.eval()(x, ei))
    assert forget_loss(r.model, task) == pytest.approx(forget_loss(task.original, task))


def test_utu_on_a_node_deletion_unlinks_every_edge_of_the_node(task):
    t = tiny_graph_task(scenario="nodes:1")
    node = int(t.split.forget.u[t.split.forget.kind == 0][0])
    r = METHODS["utu"]().unlearn(t, seed=0)
    ge = t.graph.edges.numpy()
    touching = (ge[:, 0] == node) | (ge[:, 1] == node)
    trained = touching & t.train.edge_keep
    assert r.extra["unlinked_edges"] == int(trained.sum()) > 0
    assert not (t.retain.edge_keep & touching).any()
    assert r.cost.steps == 0


def test_utu_takes_no_hyperparameters():
    with pytest.raises(ConfigError, match="lr"):
        METHODS["utu"](lr=0.1)


# --------------------------------------------------------------------------- INPO pieces
def test_weighted_npo_is_the_projects_npo_per_row_weighted():
    ll = torch.tensor([-0.1, -1.0, -3.0])
    ref = torch.tensor([-0.2, -0.5, -2.0])
    w = torch.tensor([0.5, 1.0, 1.5])
    want = sum(float(w[i]) * float(npo_loss(ll[i : i + 1], ref[i : i + 1], 0.5)) for i in range(3)) / 3
    assert float(weighted_npo(ll, ref, w, 0.5)) == pytest.approx(want, rel=1e-6)
    assert float(weighted_npo(ll, ref, torch.ones(3), 0.5)) == pytest.approx(float(npo_loss(ll, ref, 0.5)))


def test_influence_weights_have_mean_one_and_keep_the_order():
    w = influence_weights(np.array([1.0, 3.0, 0.0, 4.0]))
    assert w.mean() == pytest.approx(1.0)
    assert list(np.argsort(w)) == [2, 0, 1, 3]
    assert (influence_weights(np.zeros(3)) == 1).all()


def test_topological_entropy_is_the_cross_entropy_of_softmaxed_outputs():
    z_ref = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    nodes = torch.tensor([0, 1])
    p0, p1 = torch.softmax(z_ref[0], 0), torch.softmax(z_ref[1], 0)
    q0, q1 = torch.log_softmax(z[0], 0), torch.log_softmax(z[1], 0)
    want = -((p0 * q0).sum() + (p1 * q1).sum()) / 2
    assert float(topological_entropy(z, z_ref, nodes)) == pytest.approx(float(want))
    # minimised (at the entropy of the reference) when the outputs agree
    same = topological_entropy(z_ref, z_ref, nodes)
    assert float(same) < float(topological_entropy(z, z_ref, nodes))


def test_removal_influence_is_the_change_of_the_other_nodes_outputs(task):
    model = task.original
    infl = removal_influence(model, task)
    f = task.split.forget
    assert infl.shape == (len(f),) and (infl > 0).all()
    # by hand for the first deleted edge: drop it from the training graph, compare outputs
    i = int(np.flatnonzero(f.kind == 1)[0])
    view = task.train.view
    keep = view.edge_keep.copy()
    keep[f.eref[i]] = False
    e = task.graph.edges[torch.from_numpy(keep)]
    ei = torch.cat([e.t(), e.t().flip(0)], 1)
    with torch.no_grad():
        model.eval()
        d = (model(view.x, ei) - model(view.x, view.edge_index)).norm(dim=1)
    d[[f.u[i], f.v[i]]] = 0
    assert infl[i] == pytest.approx(float(d.sum()), rel=1e-5)


def test_message_weights_follow_the_formula_on_a_crafted_graph():
    # path 0-1-2-3-4; deleted rows: edge (0,1) with I=1, edge (1,2) with I=3, node 4 with I=2
    u, v = np.array([0, 1, 4]), np.array([1, 2, -1])
    a = node_influence(np.array([1.0, 3.0, 2.0]), u, v, num_nodes=6)
    # s = [1, 1+3, 3, 0, 2, 0], max 4
    np.testing.assert_allclose(a, [0.25, 1.0, 0.75, 0.0, 0.5, 0.0])
    edge_index = torch.tensor([[2, 3, 3, 4, 5], [3, 2, 4, 3, 3]])
    m = message_weights(edge_index, torch.tensor(a, dtype=torch.float32))
    want = np.exp(-np.array([0.75, 0.75, 0.5, 0.5, 0.0]))
    np.testing.assert_allclose(m.numpy(), want, rtol=1e-6)
    assert float(m[-1]) == 1.0  # no deleted row at either end: the message is untouched
    assert node_influence(np.zeros(3), u, v, 6).tolist() == [0.0] * 6


def test_message_function_scales_each_message_of_gcn_and_sage_layers():
    from torch_geometric.nn import GCNConv, SAGEConv

    torch.manual_seed(0)
    x = torch.randn(4, 3)
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])  # path 0-1-2-3
    m = torch.tensor([0.5, 1.0, 0.25, 1.0, 1.0, 0.1])
    deg = torch.bincount(edge_index[1], minlength=4).float() + 1  # the self-loop GCN adds
    gcn = GCNConv(3, 2)
    set_message_weights(gcn, edge_index, m)
    got = gcn(x, edge_index)
    clear_message_weights(gcn)
    h = gcn.lin(x)
    want = h / deg.unsqueeze(1) + gcn.bias  # the self-loop keeps weight 1
    for k, (s, t) in enumerate(edge_index.t().tolist()):
        want[t] = want[t] + m[k] * h[s] / (deg[s] * deg[t]).sqrt()
    torch.testing.assert_close(got, want)
    # cleared: plain message passing again
    assert not torch.allclose(gcn(x, edge_index), got)

    sage = SAGEConv(3, 2)  # mean over neighbours of m_st * x_s, then lin_l, plus lin_r(x_t)
    set_message_weights(sage, edge_index, m)
    got = sage(x, edge_index)
    clear_message_weights(sage)
    agg = torch.zeros(4, 3)
    for k, (s, t) in enumerate(edge_index.t().tolist()):
        agg[t] += m[k] * x[s] / (deg[t] - 1)
    torch.testing.assert_close(got, sage.lin_l(agg) + sage.lin_r(x))


def test_message_function_needs_message_passing_layers():
    with pytest.raises(ConfigError, match="message=none"):
        set_message_weights(torch.nn.Linear(2, 2), torch.zeros(2, 1, dtype=torch.long), torch.ones(1))


# --------------------------------------------------------------------------- INPO runs
def test_inpo_forgets_the_deleted_edges_and_reports_its_weights(task):
    before = forget_loss(task.original, task)
    r = METHODS["inpo"]().unlearn(task, seed=0)
    assert forget_loss(r.model, task) > before + 1.0
    assert r.extra["influence_weight_min"] < 1 < r.extra["influence_weight_max"]
    n = len(task.forget)
    assert r.cost.steps == 20
    assert r.cost.examples_forward >= r.cost.examples_backward + 3 * n  # influence and reference passes


def test_inpo_influence_changes_the_result_and_none_weights_equally(task):
    a = METHODS["inpo"](max_steps=5).unlearn(task, seed=0)
    b = METHODS["inpo"](max_steps=5, influence="none").unlearn(task, seed=0)
    assert b.extra["influence_weight_min"] == b.extra["influence_weight_max"] == 1.0
    assert not same_state(state_of(a.model), state_of(b.model))


@pytest.mark.parametrize("arch", ["gcn", "sage"])
def test_inpo_message_function_changes_the_result_and_leaves_plain_layers(arch):
    t = tiny_graph_task(model=arch)
    a = METHODS["inpo"](max_steps=5).unlearn(t, seed=0)
    b = METHODS["inpo"](max_steps=5, message="none").unlearn(t, seed=0)
    assert not same_state(state_of(a.model), state_of(b.model))
    # the attenuated messages are those at the deleted rows' end nodes, no stronger than exp(-2)
    assert np.exp(-2) - 1e-6 <= a.extra["message_weight_min"] < 1
    assert 0 < a.extra["message_edges_attenuated"] < t.scoring_view.edge_index.shape[1]
    assert "message_weight_min" not in b.extra
    # the returned model runs plain message passing (no mask left on its layers)
    assert all(getattr(m, "_edge_mask", None) is None for m in a.model.modules())


def test_inpo_te_term_keeps_the_end_nodes_closer_to_the_original(task):
    def te(model):
        x, ei = task.train.view.on(task.device)
        f = task.forget
        nodes = torch.from_numpy(np.concatenate([f.u, f.v[f.v >= 0]]))
        with torch.no_grad():
            return float(topological_entropy(model(*task.scoring_view.on(task.device)), task.original(x, ei), nodes))

    with_te = METHODS["inpo"](te_weight=5.0).unlearn(task, seed=0).model
    without = METHODS["inpo"](te_weight=0.0).unlearn(task, seed=0).model
    assert te(with_te) < te(without)


def test_inpo_serves_node_deletion_on_node_classification():
    t = tiny_graph_task(task="node", scenario="nodes:2")
    r = METHODS["inpo"](max_steps=5).unlearn(t, seed=0)
    assert r.cost.steps == 5 and np.isfinite(r.cost.final_loss)


def test_inpo_refuses_bad_hyperparameters():
    for bad in ({"beta": 0.0}, {"te_weight": -1.0}, {"influence": "nora"}, {"message": "edge_weight"}):
        with pytest.raises(ConfigError):
            METHODS["inpo"](**bad)
