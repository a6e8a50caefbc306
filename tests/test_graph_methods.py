"""GNNDelete and D2DGN, beyond the public contract (``test_graph_methods_contract.py`` runs
that on them): GNNDelete's operators start as the identity and change only the influenced
nodes; both methods' losses on a hand-made 4-node graph equal a hand computation (and the
first step of a run records that loss); a stored GNNDelete run loads back into its own
shape and evaluating it reproduces its numbers; on karate link prediction GNNDelete moves
the deleted edges' scores to those of random pairs and DF AUC towards 0.5."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("torch_geometric")

from cli_support import cli_json as uk  # noqa: E402
from unlearnkit.data.graphs import Graph, k_hop_masks  # noqa: E402
from unlearnkit.engines.loop import TrainConfig  # noqa: E402
from unlearnkit.errors import ConfigError  # noqa: E402
from unlearnkit.methods import METHODS  # noqa: E402
from unlearnkit.methods.d2dgn import d2dgn_part_loss  # noqa: E402
from unlearnkit.methods.gnndelete import (  # noqa: E402
    GNNDeleteModel,
    deletion_spec,
    gnndelete_layer_loss,
)
from unlearnkit.modalities.graph.adapter import EDGE  # noqa: E402
from unlearnkit.modalities.graph.metrics import df_auc  # noqa: E402
from unlearnkit.modalities.graph.scores import score_model  # noqa: E402
from unlearnkit.modalities.graph.task import GraphForget, make_graph_task  # noqa: E402
from unlearnkit.testing import tiny_graph_task  # noqa: E402
from unlearnkit.utils import derive_seed  # noqa: E402

FAST = TrainConfig(epochs=40, batch_size=4096, lr=1e-2)


@pytest.fixture(scope="module")
def karate():
    return tiny_graph_task(0)


@pytest.fixture(scope="module")
def four():
    """A 4-cycle with one chord (0-2): one edge held out for testing, one training edge
    deleted, a 2-layer GCN of width 2 on identity features."""
    g = Graph(torch.eye(4), torch.tensor([[0, 1], [1, 2], [2, 3], [0, 3], [0, 2]]), name="four-chord")
    return make_graph_task(
        g, "link", "gcn", GraphForget("edges", 1), seed=0, recipe=FAST, model_kwargs={"hidden": 2}, device="cpu"
    )


def layer_outputs(model, view):
    with torch.no_grad():
        return [h.clone() for h in model.layer_outputs(*view.on("cpu"))[1:]]


def sigmoid(s):
    return 1.0 / (1.0 + np.exp(-s))


def bfs_within(edges: set[tuple[int, int]], seeds: set[int], hops: int) -> set[int]:
    reach = set(seeds)
    for _ in range(hops):
        reach |= {b for a, b in edges if a in reach} | {a for a, b in edges if b in reach}
    return reach


# ------------------------------------------------------------------------------ GNNDelete
def test_operators_start_as_the_identity(karate):
    model, spec = METHODS["gnndelete"]().build(karate, seed=0)
    assert all(torch.equal(w.detach(), torch.eye(w.shape[0])) for w in model.deletion)
    view = karate.scoring_view
    for h, h0 in zip(layer_outputs(model, view), layer_outputs(karate.original, view)):
        assert torch.equal(h, h0)  # the unlearned model before training is the original
    assert not any(p.requires_grad for p in model.base.parameters())


def test_only_the_influenced_nodes_change(karate):
    task = karate.with_forget(["edge:24-25"])  # one deleted edge: S^1 has 5 nodes, S^2 11 of 34
    result = METHODS["gnndelete"]().unlearn(task, seed=0)
    model = result.model
    assert isinstance(model, GNNDeleteModel)
    spec = deletion_spec(task, 2, 0)
    assert np.array_equal(model.influenced.numpy(), spec.influenced)
    edges = {tuple(e) for e in task.train.view.edge_index.t().tolist()}
    seeds = {int(x) for x in spec.deleted_edges.ravel()}
    assert seeds == {24, 25}
    for layer in range(2):  # S^l: within l + 1 hops of the deleted edge's ends in the training graph
        assert set(np.flatnonzero(spec.influenced[layer]).tolist()) == bfs_within(edges, seeds, layer + 1)
    assert spec.influenced[1].sum() < task.graph.num_nodes
    view = task.scoring_view
    for layer, (h, h0) in enumerate(zip(layer_outputs(model, view), layer_outputs(task.original, view))):
        outside = torch.from_numpy(~spec.influenced[layer])
        assert torch.equal(h[outside], h0[outside]), f"layer {layer}: a node outside S^l changed"
        assert not torch.equal(h[~outside], h0[~outside])
    assert not any(torch.equal(w.detach(), torch.eye(w.shape[0])) for w in model.deletion)
    assert torch.equal(model.base.convs[0].lin.weight, task.original.convs[0].lin.weight)  # frozen


def test_gnndelete_loss_matches_a_hand_computation(four):
    task = four
    ((u, v),) = [tuple(int(x) for x in i[5:].split("-")) for i in task.split.forget_ids]
    spec = deletion_spec(task, 2, seed=0)
    train_edges = {tuple(e) for e in task.graph.edges[torch.from_numpy(task.train.edge_keep)].tolist()}
    assert [tuple(e) for e in spec.deleted_edges.tolist()] == [(u, v)]
    assert set(np.flatnonzero(spec.seeds)) == {u, v}
    for layer in range(2):
        assert set(np.flatnonzero(spec.influenced[layer])) == bfs_within(train_edges, {u, v}, layer + 1)
    p, q = spec.dec_random
    assert p != q and (min(p, q), max(p, q)) not in {tuple(e) for e in task.graph.edges.tolist()}
    assert list(spec.dec_nodes) == [u, v]

    h = torch.tensor([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0], [-2.0, 1.5]])
    t = torch.tensor([[0.0, 1.0], [2.0, 2.0], [1.0, -1.0], [0.5, 0.5]])
    lam = 0.3
    hn, tn = h.numpy(), t.numpy()
    for layer in range(2):
        dec = np.mean(np.concatenate([hn[u] - tn[p], hn[v] - tn[q]]) ** 2)  # [h_u; h_v] vs [h^o_p; h^o_q]
        ni_nodes = [w for w in range(4) if spec.influenced[layer][w] and w not in (u, v)]
        ni = np.mean((hn[ni_nodes] - tn[ni_nodes]) ** 2) if ni_nodes else 0.0
        total, d, n = gnndelete_layer_loss(h, t, spec, layer, lam)
        assert float(d) == pytest.approx(dec, rel=1e-6) and float(n) == pytest.approx(ni, rel=1e-6, abs=1e-12)
        assert float(total) == pytest.approx(lam * dec + (1 - lam) * ni, rel=1e-6)

    # the run's first step: the operators are the identity, so NI = 0 and L = lam * sum_l DEC^l
    result = METHODS["gnndelete"](max_steps=1, lam=lam).unlearn(task, seed=0)
    outs = [o.numpy() for o in layer_outputs(task.original, task.scoring_view)]
    hand = sum(lam * np.mean(np.concatenate([o[u] - o[p], o[v] - o[q]]) ** 2) for o in outs)
    assert result.cost.steps == 1 and result.cost.losses[0] == pytest.approx(hand, rel=1e-5)


def test_k_hop_masks_on_a_path():
    ei = np.array([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    masks = k_hop_masks(ei, np.array([True, False, False, False]), 3)
    assert masks.tolist() == [[True, True, False, False], [True, True, True, False], [True] * 4]


def test_gnndelete_refuses_a_model_without_layers(karate):
    import dataclasses

    class Opaque(torch.nn.Module):
        def forward(self, x, edge_index):
            return x

    with pytest.raises(ConfigError, match="built-in graph models"):
        METHODS["gnndelete"]().unlearn(dataclasses.replace(karate, original=Opaque()), seed=0)


def test_gnndelete_on_karate_moves_deleted_edges_to_random_pairs(karate):
    task = karate
    spec = deletion_spec(task, 2, 0)
    k = len(spec.deleted_edges)
    model = METHODS["gnndelete"]().unlearn(task, seed=0).model

    def measures(m):
        s = score_model(m, task)
        with torch.no_grad():
            z = m(*task.scoring_view.on("cpu"))
        rand = (z[spec.dec_random[:k]] * z[spec.dec_random[k:]]).sum(-1).numpy()
        df = df_auc(s["forget"].pos_score, s["retain"].pos_score, seed=0)[0]
        return df, sigmoid(s["forget"].pos_score).mean(), sigmoid(rand).mean()

    df0, del0, rand0 = measures(task.original)
    df1, del1, rand1 = measures(model)
    # DEC: the deleted edges' mean probability moves to the random pairs' (0.63 -> 0.58 vs 0.56 -> 0.57)
    assert abs(del1 - rand1) < 0.5 * abs(del0 - rand0) and del1 < del0
    # DF AUC moves towards 0.5 (0.80 -> 0.66; the retrained reference's is 0.88 on this task)
    assert abs(df1 - 0.5) < abs(df0 - 0.5) - 0.05


def test_gnndelete_on_node_classification():
    task = make_graph_task("sbm:60", "node", "gcn", "nodes:2", seed=0, recipe=FAST, device="cpu")
    result = METHODS["gnndelete"](epochs=20).unlearn(task, seed=0)
    spec = deletion_spec(task, 2, 0)
    gone = {int(i[5:]) for i in task.split.forget_ids if i.startswith("node:") and "/" not in i}
    assert gone <= set(np.flatnonzero(spec.seeds))  # deleted nodes seed S^l with their edges' ends
    with torch.no_grad():
        a, b = result.model(*task.scoring_view.on("cpu")), task.original(*task.scoring_view.on("cpu"))
    outside = torch.from_numpy(~spec.influenced[1])
    assert torch.equal(a[outside], b[outside]) and not torch.equal(a, b)
    assert result.extra["deleted_edges"] == len(spec.deleted_edges) > 0


def test_a_stored_gnndelete_run_loads_back_and_evaluates_the_same(tmp_path, capsys, monkeypatch):
    from unlearnkit.orchestration.experiment import Workspace, load_run_model, rebuild_task

    home = tmp_path / "home"
    run = uk(
        capsys,
        monkeypatch,
        "train",
        "--task",
        "graph-link",
        "--dataset",
        "karate",
        "--epochs",
        "60",
        "--json",
        home=home,
    )
    ids = tmp_path / "edges.txt"
    ids.write_text("edge:0-3\nedge:0-5\n")
    args = ("unlearn", "--from", run["run_id"], "--method", "gnndelete", "--forget-ids", str(ids), "--evaluate")
    u = uk(capsys, monkeypatch, *args, "--json", home=home)
    again = uk(capsys, monkeypatch, "evaluate", u["run_id"], "--json", home=home)
    for key in ("dt_auc", "dt_aup", "df_auc", "df_aup", "mi_ratio", "gap_df_auc"):
        assert again["metrics"][key] == pytest.approx(u["metrics"][key], abs=1e-9), key

    ws = Workspace.open(home, mode="r")
    rec = ws.store.get(u["run_id"])
    task = rebuild_task(ws, rec)
    model = load_run_model(ws, rec, task)
    assert isinstance(model, GNNDeleteModel)
    spec = deletion_spec(task, 2, 0)
    assert np.array_equal(model.influenced.numpy(), spec.influenced)  # the masks came with the weights
    fresh = METHODS["gnndelete"]().unlearn(task, seed=rec.seed).model
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))


# ------------------------------------------------------------------------------ D2DGN
class Fixed(torch.nn.Module):
    """A 'GNN' whose layer outputs are fixed tensors."""

    def __init__(self, *outs):
        super().__init__()
        self.outs = [torch.as_tensor(o, dtype=torch.float32) for o in outs]

    def layer_outputs(self, x, edge_index):
        return [x, *self.outs]

    def forward(self, x, edge_index):
        return self.outs[-1]


def test_d2dgn_part_loss_matches_a_hand_computation(four):
    task = four
    adapter = task.adapter
    batch = next(task.retain.batches(len(task.retain)))
    s1, s2 = (
        np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [-1.0, 0.5]]),
        np.array([[0.5, 1.0], [1.0, -1.0], [0.0, 2.0], [2.0, 0.0]]),
    )
    t1, t2 = (
        np.array([[0.0, 1.0], [1.0, 1.0], [0.5, 0.0], [1.0, 2.0]]),
        np.array([[1.0, 0.0], [0.5, 0.5], [-1.0, 1.0], [0.0, 1.0]]),
    )
    T, beta = 2.0, 0.7
    stu, tea = Fixed(s1, s2), Fixed(t1, t2)
    x = task.scoring_view.x
    loss, kl, feat = d2dgn_part_loss(
        stu.layer_outputs(x, None)[1:], tea.layer_outputs(x, None)[1:], batch, adapter, T, beta
    )

    def bern_kl(t, s):  # KL(Bern(sigma(t)) || Bern(sigma(s)))
        pt, ps = sigmoid(t), sigmoid(s)
        return pt * np.log(pt / ps) + (1 - pt) * np.log((1 - pt) / (1 - ps))

    kls, embs = [], {0: [], 1: []}
    for i in range(len(task.retain)):
        kind, a, b, n = (int(batch[k][i]) for k in ("kind", "u", "v", "neg"))
        for layer, (hs, ht) in enumerate(((s1, t1), (s2, t2))):
            es, et = (hs[a] * hs[b], ht[a] * ht[b]) if kind == EDGE else (hs[a], ht[a])
            embs[layer].append((es - et) ** 2)
        if kind == EDGE:  # the edge and its negative pair, at temperature T
            kls.append(bern_kl(t2[a] @ t2[b] / T, s2[a] @ s2[b] / T) + bern_kl(t2[a] @ t2[n] / T, s2[a] @ s2[n] / T))
    hand_kl = T * T * np.mean(kls)
    hand_feat = sum(np.mean(embs[layer]) for layer in (0, 1))
    assert float(kl) == pytest.approx(hand_kl, rel=1e-5)
    assert float(feat) == pytest.approx(hand_feat, rel=1e-5)
    assert float(loss) == pytest.approx(hand_kl + beta * hand_feat, rel=1e-5)

    # the run's first step: the student is the original (the preserver), so Loss_r = 0 and
    # Loss = (1 - alpha) * Loss_f against the destroyer, a fresh model from the run's seed
    alpha = 0.25
    result = METHODS["d2dgn"](max_steps=1, alpha=alpha, temperature=T, feature_weight=beta).unlearn(task, seed=0)
    destroyer = task.model_factory(derive_seed(0, "d2dgn", "destroyer") % (2**31))
    fb = next(task.forget.batches(len(task.forget)))
    view = fb["graph"]
    with torch.no_grad():
        part = d2dgn_part_loss(
            layer_outputs(task.original, view), layer_outputs(destroyer, view), fb, adapter, T, beta
        )[0]
    assert result.cost.losses[0] == pytest.approx((1 - alpha) * float(part), rel=1e-5)


def test_d2dgn_fresh_student_and_bad_input(karate):
    a = METHODS["d2dgn"](student="fresh", max_steps=2).unlearn(karate, seed=0)
    b = METHODS["d2dgn"](max_steps=2).unlearn(karate, seed=0)
    assert not torch.equal(a.model.convs[0].lin.weight, b.model.convs[0].lin.weight)
    assert a.cost.examples_forward > a.cost.examples_backward  # both teachers' passes are counted
    for bad in ({"student": "teacher"}, {"alpha": 2.0}, {"temperature": 0.0}):
        with pytest.raises(ConfigError, match="d2dgn"):
            METHODS["d2dgn"](**bad)
