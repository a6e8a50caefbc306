"""The public contract suite (:mod:`unlearnkit.testing`) on the graph modality: every method
that declares ``graph`` runs on the tiny graph task (karate club, link prediction, 10% of
the training edges deleted, 2-layer GCN): it changes the model and leaves the original
untouched, is deterministic, respects the step budget, raises the forget-edge loss toward
the reference's, diverges loudly at lr=1e30 and accounts its cost."""

from __future__ import annotations

import pytest

pytest.importorskip("torch_geometric")

from unlearnkit.methods import METHODS  # noqa: E402
from unlearnkit.testing import parametrize_with_checks  # noqa: E402

GRAPH_METHODS = sorted(n for n, cls in METHODS.items() if "graph" in cls.modalities)


def test_the_shared_methods_serve_graphs():
    assert {"retrain", "finetune", "gradient_ascent", "graddiff", "npo"} <= set(GRAPH_METHODS)


def test_the_graph_baselines_are_checked():
    assert {"gif", "graph_eraser"} <= set(GRAPH_METHODS)


@parametrize_with_checks(
    GRAPH_METHODS,
    modalities=["graph"],
    checks=[
        "changes_model",
        "deterministic",
        "step_budget",
        "moves_forget",
        "divergence",
        "cost_accounting",
    ],
)
def test_graph_contract(method, check):
    check(method)
