"""Graph deletion scenarios: a class of edges (edge-class:<a>, edge-class:<a>-<b>) and
GNNDelete's "in" / "out" settings (edges-in:, edges-out:: training edges inside / outside the
2-hop enclosing subgraph of the test set), checked by hand on small graphs and against
networkx distances; their round trip through to_dict / from_dict, task_from_spec, bench
grids and the CLI; bad input."""

from __future__ import annotations

import json

import networkx as nx
import pytest
import torch

pytest.importorskip("torch_geometric")

from cli_support import cli as _uk  # noqa: E402
from unlearnkit.data.graphs import Graph, load_graph  # noqa: E402
from unlearnkit.engines.loop import TrainConfig  # noqa: E402
from unlearnkit.errors import ConfigError, ForgetSetError  # noqa: E402
from unlearnkit.modalities import get_modality  # noqa: E402
from unlearnkit.modalities.graph.adapter import EDGE  # noqa: E402
from unlearnkit.modalities.graph.task import GraphForget, _sets, in_test_region, make_graph_task  # noqa: E402
from unlearnkit.orchestration.bench import Grid  # noqa: E402

TINY = TrainConfig(epochs=2, batch_size=4096)


def _ids(ids) -> set[str]:
    return {str(i) for i in ids}


def _resolve(g: Graph, task: str, scenario: str, seed: int = 0, test_fraction: float = 0.2) -> list[str]:
    train, test = _sets(g, task, test_fraction, seed)
    return GraphForget.parse(scenario).resolve(train, seed, test)


# ----------------------------------------------------------------------------- edge-class
def _labelled() -> Graph:
    """7 nodes of classes 0 0 1 1 2 2 3 and 8 edges: 0-1 (0,0), 2-3 (1,1), 0-2 and 1-3 (0,1),
    4-5 (2,2), 3-4 (1,2), 0-5 (0,2), 4-6 (2,3)."""
    edges = [(0, 1), (2, 3), (0, 2), (1, 3), (4, 5), (3, 4), (0, 5), (4, 6)]
    return Graph(torch.eye(7), torch.tensor(edges), y=torch.tensor([0, 0, 1, 1, 2, 2, 3]), name="labelled")


EDGE_CLASSES = [
    ("edge-class:0", {"edge:0-1"}),
    ("edge-class:1", {"edge:2-3"}),
    ("edge-class:0-1", {"edge:0-2", "edge:1-3"}),
    ("edge-class:1-0", {"edge:0-2", "edge:1-3"}),
    ("edge-class:1-2", {"edge:3-4"}),
    ("edge-class:2-0", {"edge:0-5"}),
    ("edge-class:3-2", {"edge:4-6"}),
    ("edge-class:2-2", {"edge:4-5"}),
]


@pytest.mark.parametrize("scenario, expected", EDGE_CLASSES)
def test_edge_class_selects_the_edges_between_the_classes(scenario, expected):
    assert _ids(_resolve(_labelled(), "node", scenario)) == expected  # node task: every edge is a training row


def test_edge_class_on_a_link_task_leaves_the_held_out_test_edges():
    train, test = _sets(_labelled(), "link", 0.25, 0)
    held_out = _ids(test.example_ids)
    assert len(held_out) == 2
    found = 0
    for scenario, expected in EDGE_CLASSES:
        want = expected - held_out
        if want:
            assert _ids(GraphForget.parse(scenario).resolve(train, 0, test)) == want
            found += 1
        else:
            with pytest.raises(ConfigError, match="no training edge"):
                GraphForget.parse(scenario).resolve(train, 0, test)
    assert 0 < found < len(EDGE_CLASSES)  # both branches ran


def test_edge_class_errors_are_one_line_config_errors():
    g = _labelled()
    for scenario, words in (
        ("edge-class:7", "has no class 7"),
        ("edge-class:0-9", "has no class 9"),
        ("edge-class:0-3", "no training edge"),
        ("edge-class:3", "both end nodes of class 3"),
    ):
        with pytest.raises(ConfigError, match=words) as e:
            _resolve(g, "node", scenario)
        assert "\n" not in str(e.value)
    unlabelled = Graph(torch.eye(4), torch.tensor([(0, 1), (1, 2), (2, 3), (0, 3), (0, 2)]), name="plain")
    with pytest.raises(ConfigError, match="no node labels"):
        _resolve(unlabelled, "link", "edge-class:0")
    for text in ("edge-class:", "edge-class:a", "edge-class:1-", "edge-class:-1", "edge-class:1-2-3"):
        with pytest.raises(ConfigError):
            GraphForget.parse(text)


# ----------------------------------------------------------------------------- edges-in / edges-out
def _path(n: int = 12) -> Graph:
    return Graph(torch.eye(n), torch.tensor([(i, i + 1) for i in range(n - 1)]), y=torch.arange(n) % 2, name="path")


def _path_edges(pairs) -> set[str]:
    return {f"edge:{a}-{b}" for a, b in pairs}


@pytest.mark.parametrize("seed", [0, 3])
def test_in_and_out_on_a_path_by_hand(seed):
    """A path 0-1-...-11. Link task with one test edge (k, k+1): the nodes within 2 hops of k
    or k+1 over the training edges are k-2..k+3, so the edges inside are (k-2,k-1), (k-1,k),
    (k+1,k+2), (k+2,k+3) (those that exist); node task with one test node t: t-2..t+2."""
    g = _path()
    train, test = _sets(g, "link", 1 / 11, seed)
    (tid,) = test.example_ids
    k = int(tid[5:].split("-")[0])
    inside = _path_edges((a, a + 1) for a in (k - 2, k - 1, k + 1, k + 2) if 0 <= a and a + 1 <= 11)
    every = _ids(train.example_ids[train.kind == EDGE])
    assert _ids(GraphForget("edges-in", len(inside)).resolve(train, seed, test)) == inside
    assert _ids(GraphForget("edges-out", len(every - inside)).resolve(train, seed, test)) == every - inside
    with pytest.raises(ForgetSetError, match=f"only {len(inside)} of the 10 training edges"):
        GraphForget("edges-in", len(inside) + 1).resolve(train, seed, test)

    train, test = _sets(g, "node", 1 / 12, seed)
    (t,) = test.u
    inside = _path_edges((a, a + 1) for a in range(t - 2, t + 2) if 0 <= a and a + 1 <= 11)
    assert _ids(GraphForget("edges-in", len(inside)).resolve(train, seed, test)) == inside
    assert (
        _ids(GraphForget("edges-out", 11 - len(inside)).resolve(train, seed, test))
        == _path_edges((a, a + 1) for a in range(11)) - inside
    )


@pytest.mark.parametrize("name, task, fraction", [("lesmis", "node", 0.05), ("davis", "link", 0.01)])
def test_in_and_out_agree_with_networkx_distances(name, task, fraction):
    g = load_graph(name)
    train, test = _sets(g, task, fraction, 0)
    edges = g.edges.numpy()
    nxg = nx.Graph()
    nxg.add_nodes_from(range(g.num_nodes))
    nxg.add_edges_from(map(tuple, edges[train.edge_keep]))  # the training graph: test edges left out
    sources = set(test.u.tolist()) | (set(test.v.tolist()) if task == "link" else set())
    near = nx.multi_source_dijkstra_path_length(nxg, sources, cutoff=2)
    e = train.kind == EDGE
    truth = {i for i, a, b in zip(train.example_ids[e], train.u[e], train.v[e]) if a in near and b in near}
    assert _ids(train.example_ids[in_test_region(train, test)]) == truth
    n_in, n_out = len(truth), int(e.sum()) - len(truth)
    assert n_in > 10 and n_out > 10
    got_in = _ids(GraphForget("edges-in", 10).resolve(train, 0, test))
    got_out = _ids(GraphForget("edges-out", 10).resolve(train, 0, test))
    assert len(got_in) == len(got_out) == 10 and got_in <= truth and not got_out & truth
    # a fraction is of all training edges, as edges: (GNNDelete's df_size), drawn inside the region
    assert len(GraphForget("edges-in", 0.02).resolve(train, 0, test)) == round(0.02 * e.sum())
    # seeded: the same seed draws the same edges, another seed others
    assert _ids(GraphForget("edges-in", 10).resolve(train, 0, test)) == got_in
    assert _ids(GraphForget("edges-in", 10).resolve(train, 1, test)) != got_in


def test_out_region_too_small_is_an_error_and_node_tasks_use_test_nodes():
    g = load_graph("karate")  # 20% test edges: their 2-hop region is the whole club
    with pytest.raises(ForgetSetError, match="outside the 2-hop enclosing subgraph of the test edges") as e:
        _resolve(g, "link", "edges-out:1")
    assert "only 0 of the 62" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ForgetSetError, match="of the test nodes"):
        _resolve(g, "node", "edges-out:1")
    with pytest.raises(ConfigError, match="test set"):
        GraphForget("edges-in", 1).resolve(_sets(g, "link", 0.2, 0)[0], 0)
    for text in ("edges-in:x", "edges-out:-1", "edges-in:1.5", "edges-out:0"):
        with pytest.raises(ConfigError):
            GraphForget.parse(text)


# ----------------------------------------------------------------------------- round trips
def test_scenarios_round_trip_through_dicts_specs_and_bench_grids():
    for text, d in (
        ("edge-class:1-0", {"kind": "edge-class", "label": 0, "label_b": 1}),
        ("edge-class:2-2", {"kind": "edge-class", "label": 2}),
        ("edges-in:0.05", {"kind": "edges-in", "amount": 0.05}),
        ("edges-out:3", {"kind": "edges-out", "amount": 3}),
    ):
        sc = get_modality("graph").request_scenario(scenario=text)
        assert sc.to_dict() == d and GraphForget.from_dict(dict(d, count=9)).to_dict() == d
    t = make_graph_task("florentine", "link", "gcn", "edges-out:3", seed=0, recipe=TINY, test_fraction=0.05)
    assert t.spec["scenario"] == {"kind": "edges-out", "amount": 3, "count": 3}
    again = get_modality("graph").task_from_spec(t.spec)
    assert list(again.split.forget_ids) == list(t.split.forget_ids)
    assert not t.retain.edge_keep[t.forget.eref].any()  # the deleted edges carry no messages
    grid = Grid(task="graph", dataset="florentine", model="gcn", scenarios=["edge-class:1-0", "edges-in:0.1"])
    dicts = grid.scenario_dicts()
    assert dicts == [{"kind": "edge-class", "label": 0, "label_b": 1}, {"kind": "edges-in", "amount": 0.1}]
    base = make_graph_task("florentine", "node", "gcn", seed=0, recipe=TINY)
    for d in dicts:  # as a bench job builds each scenario's task from the base spec
        u = get_modality("graph").task_from_spec(base.spec, d)
        direct = make_graph_task("florentine", "node", "gcn", d, seed=0, recipe=TINY)
        assert list(u.split.forget_ids) == list(direct.split.forget_ids) and len(u.split.forget_ids)


def test_cli_unlearn_by_edge_class_and_evaluate_re_resolves_the_same_edges(tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    args = ("train", "--task", "graph", "--dataset", "karate", "--epochs", "20", "--json")
    code, out, err = _uk(capsys, monkeypatch, *args, home=home)
    assert code == 0, err
    run = json.loads(out)["run_id"]
    unlearn = ("unlearn", "--from", run, "--method", "finetune", "-p", "epochs=2", "--json")
    code, out, err = _uk(capsys, monkeypatch, *unlearn, "--scenario", "edge-class:1-0", home=home)
    assert code == 0, err
    un = json.loads(out)
    g = load_graph("karate")
    y = g.y.numpy()
    by_hand = {f"edge:{a}-{b}" for a, b in g.edges.numpy() if {y[a], y[b]} == {0, 1}}
    from unlearnkit.orchestration.experiment import Workspace, rebuild_task

    ws = Workspace.open(home)
    rec = ws.store.get(un["run_id"])
    assert set(rec.forget_ids) == by_hand and rec.scenario["kind"] == "edge-class"
    assert list(get_modality("graph").task_from_spec(rec.task_spec).split.forget_ids) == list(rec.forget_ids)
    assert rebuild_task(ws, rec).split.forget_fingerprint == rec.forget_fingerprint
    code, out, err = _uk(capsys, monkeypatch, "evaluate", un["run_id"], "--json", home=home)
    assert code == 0, err
    assert "node_acc_test" in json.loads(out)["metrics"]
    code, out, _ = _uk(capsys, monkeypatch, "runs", "list", "--json", home=home)
    n_runs = len(json.loads(out))
    for scenario, words in (
        ("edge-class:9", "has no class 9"),
        ("edges-out:0.05", "outside the 2-hop enclosing subgraph"),
        ("edge-class:x", "class labels"),
    ):
        code, out, err = _uk(capsys, monkeypatch, *unlearn, "--scenario", scenario, home=home)
        assert code == 2 and err.startswith("error: ") and words in err and len(err.strip().splitlines()) == 1, err
    code, out, _ = _uk(capsys, monkeypatch, "runs", "list", "--json", home=home)
    assert len(json.loads(out)) == n_runs  # nothing written


def test_sbm_mean_degree_shorthand_and_its_errors():
    sparse, dense = load_graph("sbm:400:3"), load_graph("sbm:400")
    assert 2.4 < 2 * sparse.num_edges / sparse.num_nodes < 3.6 and 8 < 2 * dense.num_edges / dense.num_nodes < 12
    assert sparse.name == "sbm400-d3" and dense.name == "sbm400"  # the default keeps its old name (cache keys)
    for bad, words in (("sbm:400:x", "needs a number"), ("sbm:400:-1", "positive"), ("sbm:400:nan", "positive")):
        with pytest.raises(ConfigError, match=words):
            load_graph(bad)


def test_cli_test_fraction_opens_the_out_region(tmp_path, capsys, monkeypatch):
    """On a dense graph the 2-hop region of a 20% test split is the whole graph; a 5% split (as
    GNNDelete's) leaves edges outside it, and --test-fraction is refused where it means nothing."""
    home = tmp_path / "home"
    train = ("train", "--task", "graph-link", "--dataset", "sbm:300:3", "--epochs", "5", "--json")
    code, out, err = _uk(capsys, monkeypatch, *train, "--test-fraction", "0.05", home=home)
    assert code == 0, err
    run = json.loads(out)["run_id"]
    unlearn = ("unlearn", "--from", run, "--method", "utu", "--scenario", "edges-out:0.02", "--json")
    code, out, err = _uk(capsys, monkeypatch, *unlearn, home=home)
    assert code == 0, err
    from unlearnkit.orchestration.experiment import Workspace

    rec = Workspace.open(home).store.get(json.loads(out)["run_id"])
    assert rec.task_spec["test_fraction"] == 0.05 and rec.scenario["kind"] == "edges-out"
    for bad, words in (
        (("--test-fraction", "1.5"), "(0, 1)"),
        (("--test-fraction", "nan"), "finite"),
        (("--task", "classifier", "--test-fraction", "0.1"), "graph and recommender tasks"),
    ):
        code, _, err = _uk(capsys, monkeypatch, "train", *train[1:-1], *bad, home=tmp_path / "bad")
        assert code == 2 and err.startswith("error: ") and words in err, err
    assert not (tmp_path / "bad" / "runs.db").exists()
