"""The graph modality: data sources, the example set and its retain graph, the adapter's
per-example losses against a hand computation, the tasks and their deletion kinds, the
reference's training data, and GNNDelete's metrics on constructed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("torch_geometric")

from unlearnkit.data.graphs import Graph, digits_knn, load_graph, load_pyg_folder, sbm_graph  # noqa: E402
from unlearnkit.engines.loop import TrainConfig  # noqa: E402
from unlearnkit.errors import ConfigError, DataError, ForgetSetError, UnknownIdsError  # noqa: E402
from unlearnkit.evaluation.metrics import EvalInputs, compute_metrics, list_metrics  # noqa: E402
from unlearnkit.modalities import Adapter, get_modality, modality_for_task_kind  # noqa: E402
from unlearnkit.modalities.graph.adapter import EDGE, FEAT, NODE, GraphAdapter  # noqa: E402
from unlearnkit.modalities.graph.metrics import df_auc, link_auc, mi_ratio  # noqa: E402
from unlearnkit.modalities.graph.models import build_graph_model  # noqa: E402
from unlearnkit.modalities.graph.scores import GraphScores, score_model  # noqa: E402
from unlearnkit.modalities.graph.task import GraphForget, _sets, make_graph_task, request_scenario  # noqa: E402

FAST = TrainConfig(epochs=30, batch_size=4096, lr=1e-2)


def pairs(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in edge_index.t().tolist()}


@pytest.fixture(scope="module")
def node_task():
    return make_graph_task("sbm:60", "node", "gcn", "nodes:3", seed=0, recipe=FAST, device="cpu")


# ------------------------------------------------------------------------------ data
def test_sources_load_offline_and_are_seeded():
    k = load_graph("karate")
    assert (k.num_nodes, k.num_edges, k.num_classes, k.has_features) == (34, 78, 4, False)
    for name, n in (("lesmis", 77), ("florentine", 15), ("davis", 32), ("karate-nx", 34)):
        g = load_graph(name)
        assert g.num_nodes == n and g.num_edges > 0 and g.y is not None
    d = digits_knn(10)
    assert d.num_nodes == 1797 and d.x.shape == (1797, 64) and d.num_classes == 10 and d.has_features
    deg = torch.bincount(d.edges.reshape(-1), minlength=1797)
    assert int(deg.min()) >= 10  # each image joined to its 10 nearest (undirected: at least 10)
    a, b = sbm_graph(200, blocks=4, seed=3), sbm_graph(200, blocks=4, seed=3)
    assert torch.equal(a.edges, b.edges) and torch.equal(a.x, b.x)
    assert not torch.equal(a.edges, sbm_graph(200, blocks=4, seed=4).edges)
    inside = (a.y[a.edges[:, 0]] == a.y[a.edges[:, 1]]).float().mean()
    assert inside > 0.6  # assortative blocks
    assert load_graph("sbm:500").num_nodes == 500


def test_pyg_folders_are_never_downloaded(tmp_path):
    with pytest.raises(DataError, match="never downloads"):
        load_pyg_folder(tmp_path / "Cora")
    (tmp_path / "Cora").mkdir()
    with pytest.raises(DataError, match="no raw/ or processed/"):
        load_pyg_folder(tmp_path / "Cora")
    (tmp_path / "ogbn-arxiv").mkdir()
    with pytest.raises(DataError, match="processed"):
        load_pyg_folder(tmp_path / "ogbn-arxiv")
    # a Data saved as a .pt file loads
    g = load_graph("florentine")
    torch.save(g.to_pyg(), tmp_path / "g.pt")
    back = load_pyg_folder(tmp_path / "g.pt")
    assert back.num_nodes == g.num_nodes and torch.equal(back.edges, g.edges)


# ------------------------------------------------------------------------------ the retain graph
def test_deleting_edges_removes_exactly_them_from_the_retain_graph():
    task = make_graph_task("karate", "node", "gcn", GraphForget("ids", ids=["edge:0-1", "edge:32-33"]), recipe=FAST)
    assert sorted(task.split.forget_ids) == ["edge:0-1", "edge:32-33"]
    full, kept = pairs(task.train.view.edge_index), pairs(task.retain.view.edge_index)
    assert full - kept == {(0, 1), (32, 33)} and kept < full
    assert task.retain.view.edge_index.shape[1] == 2 * (78 - 2)  # both directions of the rest
    assert not {"edge:0-1", "edge:32-33"} & set(task.retain.example_ids)
    assert len(task.retain) == len(task.train) - 2
    # the forget rows are scored on the retain graph
    assert pairs(task.forget.view.edge_index) == kept


def test_deleting_a_node_takes_its_edges_and_keeps_the_rest(node_task):
    t = node_task
    forgot = set(t.split.forget_ids)
    nodes = [i for i in forgot if i.startswith("node:") and "/" not in i]
    assert len(nodes) == 3
    gone = {int(i[5:]) for i in nodes}
    g = t.graph
    incident = {g.edge_id(e) for e in range(g.num_edges) if set(g.edges[e].tolist()) & gone}
    assert incident <= forgot and {f"{n}/x" for n in nodes} <= forgot  # edges and feature rows listed
    assert forgot == set(nodes) | incident | {f"{n}/x" for n in nodes}
    kept = pairs(t.retain.view.edge_index)
    assert not any(a in gone or b in gone for a, b in kept)
    assert len(kept) == g.num_edges - len(incident)
    assert set(np.flatnonzero(t.retain.x_zero)) == gone  # the nodes' features go with them
    view = t.scoring_view  # scored alone (no edge left) from their own features
    assert not view.x_zero.any() and pairs(view.edge_index) == kept
    assert t.forget.view is view


def test_feature_deletion_zeroes_features_and_keeps_the_node():
    t = make_graph_task("sbm:60", "node", "gcn", "features:4", recipe=FAST)
    rows = list(t.split.forget_ids)
    assert len(rows) == 4 and all(r.endswith("/x") for r in rows)
    nodes = [int(r[5:-2]) for r in rows]
    assert t.retain.x_zero[nodes].all() and t.retain.x_zero.sum() == 4
    assert torch.all(t.retain.view.x[nodes] == 0) and torch.equal(
        t.retain.view.x[~torch.from_numpy(t.retain.x_zero)], t.graph.x[~torch.from_numpy(t.retain.x_zero)]
    )
    assert all(f"node:{n}" in set(t.retain.example_ids) for n in nodes)  # the node and its label stay
    assert t.retain.view.num_edges == t.graph.num_edges


def test_class_and_subject_deletion(node_task):
    t = make_graph_task("sbm:60", "node", "gcn", "class:1", recipe=FAST)
    sup = t.train.supervised()
    want = set(sup.example_ids[sup.labels.numpy() == 1])
    got = {i for i in t.split.forget_ids if i.startswith("node:") and "/" not in i}
    assert got == want
    who = int(node_task.retain.supervised().u[0])  # a training node still in the retain set
    subj = node_task.train.ids_of_subjects([f"user-{who}"])
    g = node_task.graph
    incident = {g.edge_id(e) for e in range(g.num_edges) if who in g.edges[e].tolist()}
    assert set(subj) == {f"node:{who}", f"node:{who}/x"} | incident
    with pytest.raises(UnknownIdsError):
        node_task.train.ids_of_subjects(["nobody"])


def test_bad_deletions_are_refused_with_what_is_wrong():
    with pytest.raises(UnknownIdsError, match="no such node"):
        make_graph_task("karate", "node", scenario=GraphForget("ids", ids=["edge:0-99"]), recipe=FAST)
    with pytest.raises(UnknownIdsError, match="not an edge of the graph"):
        make_graph_task("karate", "node", scenario=GraphForget("ids", ids=["edge:0-9"]), recipe=FAST)
    with pytest.raises(ForgetSetError, match="every edge"):
        make_graph_task("karate", "node", scenario="edges:1.0", recipe=FAST)
    with pytest.raises(ForgetSetError, match="no node features"):
        make_graph_task("karate", "node", scenario="features:0.1", recipe=FAST)
    with pytest.raises(ConfigError, match="no node labels"):
        make_graph_task(Graph(torch.eye(4), torch.tensor([[0, 1], [1, 2]])), "node", recipe=FAST)
    with pytest.raises(ConfigError, match="exactly one"):
        request_scenario()
    assert request_scenario(scenario="edges:0.1").to_dict() == {"kind": "edges", "amount": 0.1}


# ------------------------------------------------------------------------------ the adapter
class FixedEmbedding(nn.Module):
    """A 'GNN' whose node outputs are a fixed parameter (ignores the graph)."""

    def __init__(self, z):
        super().__init__()
        self.z = nn.Parameter(torch.as_tensor(z, dtype=torch.float32))

    def forward(self, x, edge_index):
        return self.z


def test_per_edge_losses_match_a_hand_computation():
    g = Graph(torch.eye(4), torch.tensor([[0, 1], [1, 2], [2, 3], [0, 3]]), name="four")  # a 4-cycle
    train, test = _sets(g, "link", 0.2, seed=0)
    z = torch.tensor([[1.0, 0.0], [0.5, 1.0], [-1.0, 0.5], [0.0, -2.0]])
    adapter = GraphAdapter("link", 2)
    batch = next(train.batches(len(train)))
    loss = adapter.per_example_loss(FixedEmbedding(z), batch).detach()
    for i in range(len(train)):
        if train.kind[i] != EDGE:
            assert loss[i] == 0  # nodes are not supervised by link prediction
            continue
        u, v, n = int(train.u[i]), int(train.v[i]), int(train.neg[i])
        assert n != u and (min(u, n), max(u, n)) not in pairs(g.edges.t())
        s_pos, s_neg = float(z[u] @ z[v]), float(z[u] @ z[n])
        hand = np.log1p(np.exp(-s_pos)) + np.log1p(np.exp(s_neg))  # -log sig(s+) - log(1 - sig(s-))
        assert float(loss[i]) == pytest.approx(hand, rel=1e-6)
    assert (train.kind == EDGE).sum() == 3 and len(test) == 1  # one edge of four held out


def test_gcn_runs_on_the_retain_graph_as_the_formula_says():
    g = Graph(
        torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]]),
        torch.tensor([[0, 1], [1, 2], [2, 3]]),
        torch.tensor([0, 1, 0, 1]),
        name="path",
    )
    train, _ = _sets(g, "node", 0.25, seed=0)
    retain = train.without(["edge:1-2"])
    model = build_graph_model("gcn", 2, 2, layers=1)
    with torch.no_grad():
        model.convs[0].lin.weight.copy_(torch.eye(2))
        model.convs[0].bias.zero_()
    out = GraphAdapter("node", 2).node_outputs(model, next(retain.batches(len(retain))))
    a = torch.zeros(4, 4)
    for u, v in [(0, 1), (2, 3)]:  # the retain graph: 1-2 deleted
        a[u, v] = a[v, u] = 1
    a_hat = a + torch.eye(4)
    d = a_hat.sum(1).rsqrt()
    assert torch.allclose(out, d[:, None] * a_hat * d[None, :] @ g.x, atol=1e-6)  # D^-1/2 (A+I) D^-1/2 X W


def test_adapter_protocol_and_node_losses(node_task):
    a = node_task.adapter
    assert isinstance(a, Adapter) and a.modality == "graph"
    b = a.to_device(next(node_task.retain.batches(64)))
    logits = a.logits(node_task.original, b)
    loss = a.per_example_loss(node_task.original, b)
    sup = b["y"] >= 0
    node = (b["kind"] == NODE) & sup
    assert torch.allclose(loss[node], F.cross_entropy(logits[node], b["y"][node], reduction="none"))
    assert torch.all(loss[b["kind"] == EDGE] == 0) and torch.all(a.log_likelihood(logits, b["y"]) == -loss)
    assert torch.all(a.per_example_kl(logits, logits, b).abs() < 1e-6)
    assert a.representations(node_task.original, b).shape == (len(b["index"]), 32)
    assert (node_task.train.kind == FEAT).sum() == (node_task.train.kind == NODE).sum()


# ------------------------------------------------------------------------------ tasks and the reference
def test_the_reference_never_sees_the_deleted_edges():
    task = make_graph_task("karate", "link", "gcn", "edges:0.1", recipe=FAST)
    deleted = {tuple(sorted(int(x) for x in i[5:].split("-"))) for i in task.split.forget_ids}
    seen_edges: set = set()
    trained_rows: set = set()
    factory = task.model_factory

    class Spy(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, edge_index):
            seen_edges.update(pairs(edge_index))
            return self.inner(x, edge_index)

    task.model_factory = lambda s: Spy(factory(s))
    loss = task.adapter.per_example_loss

    def spy_loss(model, batch, *a, **k):
        trained_rows.update(zip(batch["u"].tolist(), batch["v"].tolist()))
        return loss(model, batch, *a, **k)

    task.adapter.per_example_loss = spy_loss
    try:
        ref, cost = task.train_from_scratch(task.retain, 0)
    finally:
        del task.adapter.per_example_loss
        task.model_factory = factory
    assert cost.steps == 30 and seen_edges and trained_rows
    assert not deleted & seen_edges  # never in message passing
    assert not deleted & {tuple(sorted(p)) for p in trained_rows}  # never a positive example
    test_edges = {tuple(sorted(int(x) for x in i[5:].split("-"))) for i in task.test.example_ids}
    assert not test_edges & seen_edges


def test_tasks_are_seeded_and_rebuild_from_their_spec():
    a = make_graph_task("karate", "link", "sage", "edges:0.1", seed=1, recipe=FAST)
    b = get_modality("graph").task_from_spec(a.spec)
    assert list(a.split.forget_ids) == list(b.split.forget_ids) and a.key == b.key
    assert all(torch.equal(p, q) for p, q in zip(a.original.state_dict().values(), b.original.state_dict().values()))
    c = make_graph_task("karate", "link", "sage", "edges:0.1", seed=2, recipe=FAST)
    assert list(c.split.forget_ids) != list(a.split.forget_ids)
    assert modality_for_task_kind("graph").name == "graph" and modality_for_task_kind("graph-link").name == "graph"
    for arch in ("gat", "gin"):
        t = make_graph_task("florentine", "node", arch, "nodes:1", recipe=TrainConfig(epochs=3, batch_size=4096))
        assert t.original(t.graph.x, t.train.view.edge_index).shape == (15, t.graph.num_classes)


# ------------------------------------------------------------------------------ metrics
def test_link_metrics_on_constructed_scores():
    assert link_auc([3.0, 2.0], [1.0, 0.0]) == (1.0, 1.0)
    auc, aup = link_auc([1.0, 3.0], [2.0, 0.0])
    assert auc == 0.75 and aup == pytest.approx((1 + 2 / 3) / 2)
    # DF: deleted edges are label 0; with no more retained than deleted edges, all are used
    assert df_auc([0.0, 0.1], [1.0, 2.0]) == (1.0, 1.0)
    assert df_auc([5.0], [1.0, 2.0, 3.0], seed=0)[0] == 0.0  # the deleted edge outscores every kept one
    assert mi_ratio(np.array([0.2, 0.3]), np.array([0.4, 0.6])) == pytest.approx(0.5)


def test_link_auc_is_scikit_learns_auroc_and_average_precision_with_ties():
    """link_auc computes what roc_auc_score and average_precision_score do (ties included),
    in NumPy; DF AUC's seeded draws are rng.choice's."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    for _ in range(50):
        pos = rng.integers(0, 4, size=int(rng.integers(1, 20))).astype(float)
        neg = rng.integers(0, 4, size=int(rng.integers(1, 20))).astype(float)
        y, s = np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg]
        auc, ap = link_auc(pos, neg)
        assert auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert ap == pytest.approx(average_precision_score(y, s), abs=1e-12)
    deleted, retained = rng.normal(size=30), rng.normal(size=200) + 0.5
    draw = np.random.default_rng(3)
    by_hand = [link_auc(draw.choice(retained, 30, replace=False), deleted) for _ in range(5)]
    assert df_auc(deleted, retained, seed=3, rounds=5) == pytest.approx(tuple(np.mean(by_hand, axis=0)), abs=1e-12)


def _scores(kind, labels, logits, task_kind, **kw):
    n = len(labels)
    return GraphScores(
        np.asarray([f"r{i}" for i in range(n)], dtype=object),
        np.asarray(kind),
        np.asarray(labels),
        np.asarray(logits, dtype=np.float32),
        task_kind,
        **kw,
    )


def test_catalogue_metrics_on_a_constructed_case():
    link = {
        "test": _scores([EDGE] * 2, [1, 1], [[2.0, -1.0], [0.5, 1.0]], "link"),  # pos 2, .5; neg -1, 1
        "forget": _scores(
            [EDGE, NODE],
            [1, -1],
            [[-3.0, 0.0], [0, 0]],
            "link",
            mi_prob=np.array([0.25]),
            mi_prob_original=np.array([0.5]),
        ),
        "retain": _scores([EDGE] * 2, [1, 1], [[1.0, 0.0], [4.0, 0.0]], "link"),
        "holdout": _scores([EDGE], [1], [[1.0, 0.0]], "link"),
    }
    m = compute_metrics(EvalInputs(link, link, modality="graph"))
    assert m["dt_auc"] == 0.75 and m["df_auc"] == 1.0 and m["mi_ratio"] == 0.5 and m["gap_dt_auc"] == 0.0
    assert not any(k.startswith("node_acc") for k in m)
    node = {
        s: _scores([NODE, NODE, EDGE], [0, 1, -1], [[2.0, 0.0], [3.0, 1.0], [0, 0]], "node")
        for s in ("forget", "retain", "test", "holdout")
    }
    ref = dict(node, test=_scores([NODE, NODE], [0, 1], [[2.0, 0.0], [0.0, 1.0]], "node"))
    m = compute_metrics(EvalInputs(node, ref, modality="graph"))
    assert m["node_acc_test"] == 0.5 and m["gap_node_acc_test"] == 0.5 and m["gap_node_acc_retain"] == 0.0
    assert "dt_auc" not in m
    cited = [d for d in list_metrics() if "graph" in d.get("modalities", [])]
    assert {"graph_link", "graph_mi_ratio", "graph_node_accuracy"} <= {d["name"] for d in cited}
    assert all("GNNDelete" in d["citation"] for d in cited if d["name"].startswith("graph_"))


def test_scores_and_the_mi_ratio_of_a_real_task():
    task = make_graph_task(
        "karate", "link", "gcn", "edges:0.1", recipe=TrainConfig(epochs=100, batch_size=4096, lr=1e-2)
    )
    s = score_model(task.original, task)
    assert set(s) == {"forget", "retain", "test", "holdout"}
    assert np.allclose(s["forget"].mi_prob, s["forget"].mi_prob_original)
    m = compute_metrics(EvalInputs(s, modality="graph"))
    assert m["mi_ratio"] == pytest.approx(1.0) and 0.5 < m["dt_auc"] <= 1
    ref, _ = task.train_from_scratch(task.retain, 0)
    r = compute_metrics(EvalInputs(score_model(ref, task), s, modality="graph"))
    assert r["mi_ratio"] < 1  # the retrained model finds the deleted edges less member-like
