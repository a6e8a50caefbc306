"""The federated modality on the in-process runtime (LocalGrid: Flower's ClientApp, messages
and strategies, no Ray): partitions, stored rounds, exact retraining from checkpoints,
FedEraser's calibration, methods inside the client, metrics, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import unlearnkit.modalities.federated  # noqa: F401  (registers the modality)
from unlearnkit.data.loaders import load_dataset
from unlearnkit.data.scenarios import partition
from unlearnkit.errors import ConfigError, ForgetSetError
from unlearnkit.methods import get_method
from unlearnkit.modalities import get_modality
from unlearnkit.modalities.federated import unlearning as U
from unlearnkit.modalities.federated.metrics import evaluate_federated
from unlearnkit.modalities.federated.partition import label_skew, partition_clients
from unlearnkit.modalities.federated.runtime import STRATEGIES, federaser_step, load_state
from unlearnkit.modalities.federated.task import FederatedForget, build_task, make_federated_task

ROUNDS = 5


@pytest.fixture(scope="module")
def task():
    # client-03 joins at round 3, so exact retraining can resume from a checkpoint
    return make_federated_task(n_clients=4, rounds=ROUNDS, joins={"client-03": 3}, forget=FederatedForget("client-03"))


def _equal(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def _acc(model, data, adapter) -> float:
    from unlearnkit.modalities.classifier.scores import compute_scores

    s = compute_scores(model, data, adapter)
    return float(np.mean(s.pred == s.labels))


def test_clients_hold_whole_subjects_and_dirichlet_skews_labels():
    train = partition(load_dataset("digits"), 0, 0.2, 0.15).train
    p = partition_clients(train, 5, "subject", seed=0)
    owners = {}
    for c, subjects in p.clients.items():
        for s in subjects:
            assert s not in owners, "a subject dealt to two clients"
            owners[s] = c
    assert set(owners) == set(train.subject_ids.astype(str))
    sizes = sum(len(p.data_of(c, train)) for c in p.client_ids)
    assert sizes == len(train)
    skewed = partition_clients(train, 5, "dirichlet:0.1", seed=0)
    assert label_skew(skewed, train) > label_skew(p, train) + 0.03  # measured 0.15 vs 0.07
    assert all(len(s) for s in skewed.clients.values())
    with pytest.raises(ConfigError, match="dirichlet"):
        partition_clients(train, 5, "dirichlet:-1")
    with pytest.raises(ConfigError, match="partition must be"):
        partition_clients(train, 5, "random")


def test_every_round_is_stored_with_updates_and_bytes(task):
    h = task.history
    assert [r.number for r in h.rounds] == list(range(1, ROUNDS + 1))
    assert h.first_round_of("client-03") == 3
    assert h.round(2).participants == ["client-00", "client-01", "client-02"]
    assert h.round(3).participants == ["client-00", "client-01", "client-02", "client-03"]
    model_bytes = sum(p.numel() * 4 for p in task.original.state_dict().values())
    for r, nxt in zip(h.rounds, h.rounds[1:]):
        assert all(np.array_equal(r.global_after[k], nxt.global_before[k]) for k in r.global_after)
    r = h.round(4)
    for c, cr in r.clients.items():
        assert cr.bytes_down == cr.bytes_up == model_bytes
        assert cr.examples_backward == len(task.client_data[c])  # one local epoch
    # FedAvg: the new global model is the example-weighted mean of the client models
    w = np.array([r.clients[c].num_examples for c in r.participants], dtype=np.float64)
    for k in r.global_before:
        mean = sum(wi * r.clients[c].update[k] for wi, c in zip(w / w.sum(), r.participants)) + r.global_before[k]
        assert np.allclose(r.global_after[k], mean, atol=1e-6)
    assert task.federated_cost.bytes_exchanged == 2 * model_bytes * (3 * 2 + 4 * 3)
    assert _equal(task.original, load_state(task.model_factory(0), h.final_state))


def test_exact_resumes_from_the_checkpoint_and_equals_retraining(task):
    ref = U.retrain(task)
    ex = U.exact(task)
    assert ex.extra["resumed_from_round"] == 3
    assert _equal(ex.model, ref.model)  # bit for bit
    assert ref.cost.rounds == ROUNDS and ex.cost.rounds == ROUNDS - 2
    assert ex.cost.client_examples < ref.cost.client_examples
    assert not _equal(ref.model, task.original)
    # the reference never contacted the forgotten client
    assert all("client-03" not in r.clients for r in ref.history.rounds)


def test_exact_with_the_client_from_round_one_is_retraining(task):
    t = task.with_forget_request(FederatedForget("client-01"))
    ex, ref = U.exact(t), U.retrain(t)
    assert ex.extra["equals_retrain"] and ex.cost.rounds == ref.cost.rounds == ROUNDS
    assert _equal(ex.model, ref.model)


def test_federaser_step_takes_the_old_length_and_the_new_direction():
    base = {"w": np.zeros(2, np.float32)}
    old = {"a": {"w": np.array([3.0, 4.0], np.float32)}, "b": {"w": np.array([0.0, 1.0], np.float32)}}
    new = {"a": {"w": np.array([0.0, 2.0], np.float32)}, "b": {"w": np.array([-10.0, 0.0], np.float32)}}
    out = federaser_step(base, old, new, {"a": 3, "b": 1})
    # a: length 5 along (0, 1); b: length 1 along (-1, 0); weights 3/4 and 1/4
    assert np.allclose(out["w"], [-0.25, 3.75])


def test_federaser_replays_every_delta_t_th_round(task):
    fe = U.federaser(task, delta_t=2)
    assert fe.cost.rounds == 2  # stored rounds 3 and 5 (client-03 first contributed at 3)
    assert [r.number for r in fe.history.rounds] == [3, 5]
    for r in fe.history.rounds:
        assert r.participants == ["client-00", "client-01", "client-02"]
        assert all(cr.role == "calibrate" for cr in r.clients.values())
        # half a local epoch of calibration training
        assert all(cr.examples_backward <= len(task.client_data[c]) // 2 + 32 for c, cr in r.clients.items())
    assert not _equal(fe.model, task.original)
    with pytest.raises(ConfigError, match="delta_t"):
        U.federaser(task, delta_t=0)


def test_methods_run_inside_the_target_client(task):
    t = task.with_forget_request(FederatedForget(subjects=(task.partition.clients["client-01"][0],)))
    assert t.target_client == "client-01" and t.forget_request.level == "subject"
    method = get_method("gradient_ascent", epochs=5, lr=1e-2)
    res = U.local(t, method, unlearn_rounds=1, recovery_rounds=1)
    first, recovery = res.history.rounds
    assert first.clients["client-01"].role == "unlearn"
    assert {c.role for n, c in first.clients.items() if n != "client-01"} == {"train"}
    # the target's own update ascends the loss on the forgotten examples
    before = load_state(t.model_factory(0), first.global_before)
    after = load_state(
        t.model_factory(0),
        {k: first.global_before[k] + first.clients["client-01"].update[k] for k in first.global_before},
    )

    @torch.no_grad()
    def loss(m):
        return float(t.adapter.per_example_loss(m, next(t.forget.batches(len(t.forget)))).mean())

    assert loss(after) > loss(before) + 0.5
    # the recovery round drops the forgotten examples from the client's data
    n_client = len(t.client_data["client-01"])
    assert recovery.clients["client-01"].examples_backward == n_client - len(t.forget)
    assert res.cost.rounds == 2
    with pytest.raises(ConfigError, match="retain data"):
        U.local(task, get_method("npo"))  # a leaving client keeps no retain data


def test_metrics_and_cost_ratios(task):
    ref = U.retrain(task)
    ex = U.exact(task)
    m = evaluate_federated(task, ex.model, ex.cost, ref)
    assert m["fed_gap_acc_test"] == m["fed_gap_acc_forget"] == 0.0
    assert m["ratio_rounds"] == pytest.approx((ROUNDS - 2) / ROUNDS)
    assert 0 < m["ratio_client_examples"] < 1 and 0 < m["ratio_bytes"] < 1
    # client compute in forget-set passes: one forward and backward pass over the forgotten examples is 1
    assert m["forget_passes"] == pytest.approx(ex.cost.client_examples / (2 * len(task.forget)))
    assert m["forget_passes"] > 1  # exact resumes training: far more than one pass
    assert 0 <= m["fed_mia_loss_auc"] <= 1
    o = evaluate_federated(task, task.original, task.federated_cost, ref)
    assert o["ratio_rounds"] == 1.0
    assert o["fed_acc_retain"] == pytest.approx(_acc(task.original, task.retain, task.adapter))
    assert get_modality("federated").score_model(task.original, task)["forget"].labels.shape == (len(task.forget),)


def test_every_strategy_trains(task):
    accs = {}
    for s in STRATEGIES:
        t = make_federated_task(n_clients=3, rounds=3, strategy=s, local_epochs=1)
        accs[s] = _acc(t.original, t.test, t.adapter)
    untrained = _acc(task.model_factory(0), task.test, task.adapter)
    assert all(a > untrained + 0.3 for a in accs.values()), accs


def test_bad_input_is_refused_before_anything_is_trained(task):
    with pytest.raises(ConfigError, match="unknown strategy"):
        make_federated_task(strategy="fedsgd")
    with pytest.raises(ConfigError, match="unknown client"):
        task.with_forget_request(FederatedForget("client-99"))
    with pytest.raises(ConfigError, match="no client holds subject"):
        task.with_forget_request(FederatedForget(subjects=("subject-999",)))
    two = [task.partition.clients["client-00"][0], task.partition.clients["client-01"][0]]
    with pytest.raises(ConfigError, match="several clients"):
        task.with_forget_request(FederatedForget(subjects=tuple(two)))
    with pytest.raises(ForgetSetError, match="forget the client instead"):
        task.with_forget_request(FederatedForget(subjects=task.partition.clients["client-02"]))
    with pytest.raises(ForgetSetError, match="no client takes part from round 1"):
        make_federated_task(n_clients=2, rounds=2, joins={"client-00": 2}, forget=FederatedForget("client-01"))
    with pytest.raises(ForgetSetError, match="deleting every client"):
        task.with_forget_request(FederatedForget(clients=tuple(task.client_data)))
    with pytest.raises(ConfigError, match="exactly one"):
        FederatedForget()
    with pytest.raises(ConfigError, match="one client at a time"):
        U.local(
            task.with_forget_request(FederatedForget(clients=("client-01", "client-03"))), get_method("gradient_ascent")
        )
    with pytest.raises(ConfigError, match="unknown federated method"):
        U.unlearn_federated(task, "sisa")
    with pytest.raises(ConfigError, match="clients must be between"):
        build_task("federated", {"clients": 1})


@pytest.mark.parametrize("strategy", ["fedavgm", "fedadam"])
def test_stored_rounds_read_back_give_the_same_exact_retraining(strategy):
    from unlearnkit.modalities.federated.history import history_from_tensors, history_tensors
    from unlearnkit.modalities.federated.task import task_from_spec

    t = make_federated_task(n_clients=3, rounds=3, strategy=strategy, joins={"client-02": 2})
    tensors, meta = history_tensors(t.history)
    stored = history_from_tensors(tensors, json.loads(json.dumps(meta)))  # metadata as an artifact keeps it
    again = task_from_spec(t.spec, FederatedForget("client-02"), stored=stored)
    assert _equal(again.original, t.original)
    assert again.federated_cost.bytes_exchanged == t.federated_cost.bytes_exchanged
    # the strategy's state (FedAvgM's momentum, FedAdam's moments) comes back: resuming from
    # the stored checkpoint is still bit for bit retraining
    assert _equal(U.exact(again).model, U.retrain(t.with_forget_request(FederatedForget("client-02"))).model)


def test_several_clients_leave_at_once(task):
    t = task.with_forget_request(FederatedForget(clients=("client-03", "client-02")))
    assert t.forget_request.level == "client" and len(t.forget) == len(t.client_data["client-02"]) + len(
        t.client_data["client-03"]
    )
    ex, ref = U.exact(t), U.retrain(t)
    assert ex.extra["equals_retrain"]  # client-02 took part from round 1
    assert _equal(ex.model, ref.model)
    assert all(r.participants == ["client-00", "client-01"] for r in ref.history.rounds)
    fe = U.federaser(t, delta_t=2)
    assert all(r.participants == ["client-00", "client-01"] for r in fe.history.rounds)
