"""The federated modality under Flower's simulation runtime (Ray): the same ClientApp and
server program as the in-process grid, and the same global model bit for bit (one tiny
federation: 3 clients, 2 rounds; Ray's start-up is most of this test's time)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ray")

from unlearnkit.modalities.federated.task import make_federated_task  # noqa: E402


def test_the_ray_simulation_gives_the_local_runtimes_model():
    ray_task = make_federated_task(n_clients=3, rounds=2, runtime="flower")
    local_task = make_federated_task(n_clients=3, rounds=2, runtime="local")
    a, b = ray_task.history, local_task.history
    assert [r.participants for r in a.rounds] == [r.participants for r in b.rounds]
    for k in b.final_state:
        assert np.array_equal(a.final_state[k], b.final_state[k])
    for ra, rb in zip(a.rounds, b.rounds):
        for c in rb.clients:
            assert ra.clients[c].bytes_up == rb.clients[c].bytes_up > 0
            assert ra.clients[c].examples_backward == rb.clients[c].examples_backward
