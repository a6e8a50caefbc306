"""Per-example privacy (U-LiRA, competition score, comparator score) of graph runs: shadow
retrains on the retain graph, shadow originals on the training graph, shadow unlearns, the
edge statistic s(u, v) and the node statistic log p_y - log(1 - p_y), and
`unlearnkit evaluate RUN --privacy N` keeping U-LiRA per forget edge beside the evaluation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("torch_geometric")

from cli_support import cli as _uk  # noqa: E402
from unlearnkit.engines.loop import TrainConfig  # noqa: E402
from unlearnkit.errors import ConfigError  # noqa: E402
from unlearnkit.evaluation import shadow  # noqa: E402
from unlearnkit.evaluation.shadow import PRIVACY_OUTPUTS, privacy_evaluation, privacy_report  # noqa: E402
from unlearnkit.modalities import get_modality  # noqa: E402
from unlearnkit.modalities.classifier.scores import Scores  # noqa: E402
from unlearnkit.modalities.graph import privacy as gp  # noqa: E402
from unlearnkit.modalities.graph.scores import score_set  # noqa: E402
from unlearnkit.modalities.graph.task import make_graph_task, tiny_graph_task  # noqa: E402
from unlearnkit.orchestration.artifacts import ModelCache  # noqa: E402

FAST = TrainConfig(epochs=40, batch_size=4096, lr=1e-2, weight_decay=0.0)


@pytest.fixture(scope="module")
def tiny():
    """Karate club, link prediction, 10% of the training edges deleted (6 edges)."""
    return tiny_graph_task(recipe=FAST)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return ModelCache(tmp_path_factory.mktemp("graph-privacy-cache"))


def _without_time(r: dict) -> dict:
    return {k: v for k, v in r.items() if k != "privacy_wall_time_s"}


def test_privacy_report_on_karate_is_finite_in_range_and_repeats_exactly(tiny):
    assert get_modality("graph").supports("shadow_privacy")
    a, per = privacy_evaluation(tiny, "finetune", {"epochs": 5.0}, n_shadow=4, seed=0)
    b, per_b = privacy_evaluation(tiny, "finetune", {"epochs": 5.0}, n_shadow=4, seed=0)  # nothing cached
    assert _without_time(a) == _without_time(b) and per == per_b
    assert set(PRIVACY_OUTPUTS) <= set(a) and all(math.isfinite(v) for v in a.values())
    for k in ("ulira_auc", "ulira_tpr_at_1fpr", "ulira_tpr_at_01fpr", "ulira_acc", "competition_F"):
        assert 0.0 <= a[k] <= 1.0, k
    assert 0.0 <= a["comparator_privacy"] <= 1.0 and a["competition_score"] >= 0 and a["n_shadow"] == 4
    # 4 retrains + 4 originals + 8 fine-tunes: more than 8 retrains' worth of examples
    assert a["privacy_cost_retrains"] > 8
    forget_edges = [i for i in tiny.forget.example_ids if i.startswith("edge:")]
    assert per["ids"] == forget_edges and len(per["ulira_auc"]) == len(forget_edges) == 6
    assert all(0 <= v <= 1 for v in per["ulira_acc"] + per["ulira_auc"])
    c = privacy_report(tiny, "finetune", {"epochs": 5.0}, n_shadow=4, seed=1)
    assert _without_time(c) != _without_time(a)


def test_retrain_is_closer_to_chance_than_keeping_the_original(tiny, cache):
    """Retraining is the reference (U-LiRA near chance); fine-tuning for 0 epochs returns the
    original, whose forget edges stay detectable (karate, 6 edges x 8 targets: a coarse gap)."""
    exact = privacy_report(tiny, "retrain", n_shadow=4, seed=0, cache=cache)
    none = privacy_report(tiny, "finetune", {"epochs": 0.0}, n_shadow=4, seed=0, cache=cache)
    assert abs(exact["ulira_auc"] - 0.5) < 0.15
    assert none["ulira_auc"] > exact["ulira_auc"] + 0.1
    assert none["competition_F"] == 0.0 < exact["competition_F"]  # N copies of one model are 'peaky'


def test_edge_statistic_is_the_positive_pair_score_on_the_retain_graph(tiny):
    out = gp.shadow_outputs(tiny.original, tiny)
    sc = score_set(tiny.original, tiny.forget, tiny.adapter, tiny.scoring_view)
    phi = Scores(out["example_ids"], out["labels"], out["logits"]).scaled_confidence
    np.testing.assert_allclose(phi, sc.logits[:, 0], rtol=1e-6, atol=1e-6)  # phi = s(u, v)
    from unlearnkit.modalities.graph.metrics import link_auc

    test = score_set(tiny.original, tiny.test, tiny.adapter, tiny.scoring_view)
    assert out["utility_test"] == pytest.approx(link_auc(test.pos_score, test.neg_score)[0])  # DT AUC
    assert 0.5 < out["utility_retain"] <= 1


def test_shadow_retrains_never_see_the_forget_edges_and_originals_do(tiny):
    deleted = {(int(u), int(v)) for u, v in zip(tiny.forget.u, tiny.forget.v)}
    eref = tiny.forget.eref[tiny.forget.eref >= 0]
    seen: dict[str, list] = {"graph": [], "rows": []}
    loss = tiny.adapter.per_example_loss

    def spy(model, batch, *a, **k):
        seen["graph"].append(bool(batch["graph"].edge_keep[eref].any()))
        seen["rows"].append(set(zip(batch["u"].tolist(), batch["v"].tolist())))
        return loss(model, batch, *a, **k)

    tiny.adapter.per_example_loss = spy
    try:
        retrains = shadow.shadow_retrains(tiny, 4, seed=0)
        n_retrain_steps = len(seen["graph"])
        shadow.shadow_originals(tiny, 4, seed=0)
    finally:
        del tiny.adapter.per_example_loss
    assert n_retrain_steps == 4 * FAST.epochs and len(seen["graph"]) == 8 * FAST.epochs
    assert not any(seen["graph"][:n_retrain_steps])  # never in message passing
    assert not any(deleted & r for r in seen["rows"][:n_retrain_steps])  # never a positive example
    assert all(seen["graph"][n_retrain_steps:]) and all(deleted <= r for r in seen["rows"][n_retrain_steps:])
    assert retrains.confidence.shape == (4, 6) and len(set(retrains.seeds)) == 4
    assert np.all(retrains.acc_test > 0.5)  # the test edges' AUC of each shadow retrain


def test_node_statistic_counts_a_node_once_and_edge_only_forget_sets_are_refused(monkeypatch):
    t = make_graph_task("sbm:60", "node", "gcn", "nodes:2", seed=0, recipe=TrainConfig(epochs=5, batch_size=4096))
    f = t.forget
    kinds = f.describe_kinds()
    assert kinds["node"] == kinds["features"] == 2 and kinds["edge"] > 0  # two nodes, their rows and edges
    pos = gp.statistic_rows(f)
    assert sorted(f.example_ids[pos]) == sorted(i for i in f.example_ids if i.startswith("node:") and "/" not in i)
    out = gp.shadow_outputs(t.original, t)
    sc = score_set(t.original, f, t.adapter, t.scoring_view)
    p = np.exp(sc.logits[pos] - sc.logits[pos].max(1, keepdims=True))
    p = p / p.sum(1, keepdims=True)
    py = p[np.arange(2), sc.labels[pos]]
    phi = Scores(out["example_ids"], out["labels"], out["logits"]).scaled_confidence
    np.testing.assert_allclose(phi, np.log(py) - np.log1p(-py), rtol=1e-5, atol=1e-5)
    assert out["utility_test"] == pytest.approx(score_set(t.original, t.test, t.adapter, t.scoring_view).accuracy())

    edges_only = t.with_forget([i for i in t.train.example_ids if i.startswith("edge:")][:3])
    monkeypatch.setattr(gp, "train_shadows", lambda *a, **k: pytest.fail("trained before refusing"))
    with pytest.raises(ConfigError, match="only edges"):
        privacy_report(edges_only, "finetune", n_shadow=4)


def test_evaluate_privacy_on_a_graph_run_keeps_ulira_per_edge(tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    code, out, err = _uk(
        capsys,
        monkeypatch,
        "train",
        "--task",
        "graph-link",
        "--dataset",
        "karate",
        "--epochs",
        "40",
        "--json",
        home=home,
    )
    assert code == 0, err
    run = json.loads(out)["run_id"]
    code, out, err = _uk(
        capsys,
        monkeypatch,
        "unlearn",
        "--from",
        run,
        "--method",
        "finetune",
        "-p",
        "epochs=5",
        "--scenario",
        "edges-in:0.05",
        "--json",
        home=home,
    )
    assert code == 0, err
    un = json.loads(out)
    code, out, err = _uk(capsys, monkeypatch, "evaluate", un["run_id"], "--privacy", "4", "--json", home=home)
    assert code == 0, err
    ev = json.loads(out)
    assert 0 <= ev["metrics"]["ulira_auc"] <= 1 and ev["metrics"]["n_shadow"] == 4
    from unlearnkit.orchestration.experiment import Workspace
    from unlearnkit.requests import read_privacy_examples

    doc = read_privacy_examples(Workspace.open(home), ev["evaluation_id"])
    rec = Workspace.open(home).store.get(un["run_id"])
    assert doc is not None and doc["run_id"] == un["run_id"] and doc["n_shadow"] == 4
    assert sorted(doc["ids"]) == sorted(rec.forget_ids) and len(doc["ulira_acc"]) == len(rec.forget_ids)
