"""SISA (Bourtoule et al. 2021): exactness against SISA training from scratch without
the deleted examples, locality of retraining, determinism, aggregation, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearnkit.data.dataset import ExampleSet
from unlearnkit.data.scenarios import ClassForget, RandomForget
from unlearnkit.engines.loop import TrainConfig
from unlearnkit.engines.sharded import SisaEnsemble, sisa_assignment, sisa_forget, train_sisa
from unlearnkit.errors import ConfigError, ForgetSetError, UnknownIdsError
from unlearnkit.methods import get_method
from unlearnkit.methods.sisa import Sisa
from unlearnkit.modalities.classifier.task import make_task

S, R = 3, 3
RECIPE = TrainConfig(epochs=4, batch_size=16, lr=1e-2)


def _blobs(n: int = 300, k: int = 3, d: int = 6, seed: int = 0) -> ExampleSet:
    g = np.random.default_rng(seed)
    y = np.arange(n) % k
    centers = g.normal(0, 3, size=(k, d))
    x = (centers[y] + g.normal(0, 1, size=(n, d))).astype(np.float32)
    return ExampleSet.from_tensors(x, y, num_classes=k, name="blobs")


@pytest.fixture(scope="module")
def task():
    return make_task(
        _blobs(), "mlp", RandomForget(0.05), seed=0, recipe=RECIPE, model_kwargs={"hidden": (16,)}, device="cpu"
    )


def _train(task, data, seed=0, **kw):
    return train_sisa(data, task.model_factory, task.adapter, task.recipe, S, R, seed, **kw)


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _acc(model, data: ExampleSet) -> float:
    with torch.no_grad():
        return float((model(data.inputs).argmax(1) == data.labels).float().mean())


@pytest.fixture(scope="module")
def prepared(task):
    return _train(task, task.train)


def test_assignment_depends_only_on_seed_and_id(task):
    ids = task.train.example_ids
    shard, slc = sisa_assignment(ids, S, R, seed=0)
    sub_shard, sub_slc = sisa_assignment(ids[::-1][:50], S, R, seed=0)
    assert (sub_shard == shard[::-1][:50]).all() and (sub_slc == slc[::-1][:50]).all()
    assert set(shard) == set(range(S)) and set(slc) == set(range(R))
    other, _ = sisa_assignment(ids, S, R, seed=1)
    assert (other != shard).any()


def test_forget_in_last_slice_restores_checkpoint_and_is_exact(task, prepared):
    shard, slc = sisa_assignment(task.train.example_ids, S, R, seed=0)
    gone = task.train.example_ids[(shard == 1) & (slc == R - 1)][:3].tolist()
    ens = prepared.clone()
    before = [_params(m) for m in ens.shards]
    req = ens.forget(gone)
    assert req.affected_shards == [1] and req.retrained_slices == 1
    scratch = _train(task, task.train.without(gone))
    for s in range(S):
        assert _same(_params(ens.shards[s]), _params(scratch.shards[s])), f"shard {s} differs"
        # slice checkpoints before the deleted slice are reused, later ones match scratch
        for k in range(R + 1):
            assert _same(ens.state.checkpoints[s][k], scratch.state.checkpoints[s][k])
    assert _same(_params(ens.shards[0]), before[0]) and _same(_params(ens.shards[2]), before[2])
    assert not _same(_params(ens.shards[1]), before[1])
    # one slice of one shard retrained: far cheaper than preparing all shards
    assert 0 < req.cost.steps < prepared.state.preparation_cost.steps / (S * R) * R
    # the prepared ensemble (shared checkpoints) is untouched by the clone's request
    assert _same(_params(prepared.shards[1]), before[1])


def test_method_is_exact_against_sisa_from_scratch_on_retain(task, prepared):
    method = Sisa(num_shards=S, num_slices=R)
    res = method.unlearn(task, seed=0)
    scratch = _train(task, task.retain)
    assert isinstance(res.model, SisaEnsemble)
    for a, b in zip(res.model.shards, scratch.shards):
        assert _same(_params(a), _params(b))
    shard, _ = sisa_assignment(task.forget.example_ids, S, R, seed=0)
    assert res.extra["affected_shards"] == sorted(set(shard.tolist()))
    prep = res.extra["preparation_cost"]["steps"]
    assert prep == prepared.state.preparation_cost.steps  # same procedure as train_sisa
    assert 0 < res.cost.steps <= prep
    assert 0 < res.extra["retrained_slices"] <= S * R
    assert sum(res.extra["shard_sizes"]) == len(task.retain)
    # preparation is cached: a second request on the same task reuses it
    again = method.unlearn(task.with_forget(task.retain.example_ids[:2]), seed=0)
    assert len(method._prepared) == 1 and again.extra["preparation_cost"]["steps"] == prep


def test_sequence_of_requests_equals_scratch_without_all(task, prepared):
    ens = prepared.clone()
    a, b = task.train.example_ids[:4].tolist(), task.train.example_ids[10:13].tolist()
    sisa_forget(ens, a)
    sisa_forget(ens, b)
    scratch = _train(task, task.train.without(a + b))
    for x, y in zip(ens.shards, scratch.shards):
        assert _same(_params(x), _params(y))
    with pytest.raises(UnknownIdsError):
        ens.forget(a[:1])  # already deleted
    with pytest.raises(ForgetSetError):
        ens.forget([])


def test_deterministic_under_seed(task):
    r1 = get_method("sisa", num_shards=S, num_slices=R).unlearn(task, seed=3)
    r2 = get_method("sisa", num_shards=S, num_slices=R).unlearn(task, seed=3)
    r3 = get_method("sisa", num_shards=S, num_slices=R).unlearn(task, seed=4)
    assert _same(_params(r1.model), _params(r2.model))
    assert r1.cost.steps == r2.cost.steps
    assert not _same(_params(r1.model), _params(r3.model))


def test_forgetting_a_class_removes_it_from_the_ensemble():
    task = make_task(
        _blobs(), "mlp", ClassForget(label=0), seed=0, recipe=RECIPE, model_kwargs={"hidden": (16,)}, device="cpu"
    )
    method = Sisa(num_shards=S, num_slices=R)
    res = method.unlearn(task, seed=0)
    before = _acc(method.prepare(task, seed=0), task.forget)
    after = _acc(res.model, task.forget)
    assert before > 0.9 and after < 0.1
    assert _acc(res.model, task.test) > 0.5  # the other two classes are still predicted
    assert res.extra["affected_shards"] == list(range(S))


def test_aggregation(prepared, task):
    x = task.test.inputs[:20]
    with torch.no_grad():
        probs = torch.stack([m(x).softmax(-1) for m in prepared.shards])
        assert torch.allclose(prepared(x).softmax(-1), probs.mean(0), atol=1e-6)
        vote = prepared.clone()
        vote.aggregation = "vote"
        counts = torch.nn.functional.one_hot(probs.argmax(-1), 3).sum(0)
        out = vote(x)
    assert torch.isfinite(out).all()
    top = counts.max(-1).values
    assert (counts.gather(1, out.argmax(-1, keepdim=True)).squeeze(1) == top).all()


def test_checkpoints_written_as_safetensors(task, tmp_path):
    from safetensors.torch import load_file

    ens = train_sisa(
        task.train,
        task.model_factory,
        task.adapter,
        TrainConfig(epochs=1, batch_size=32),
        2,
        2,
        seed=0,
        checkpoint_dir=tmp_path,
    )
    assert len(list(tmp_path.glob("*.safetensors"))) == 2 * (2 + 1)
    final = load_file(str(tmp_path / "shard000-slice002.safetensors"))
    assert _same(final, _params(ens.shards[0]))
    shard, _ = sisa_assignment(task.train.example_ids, 2, 2, seed=0)
    ens.forget(task.train.example_ids[shard == 0][:2])
    assert _same(load_file(str(tmp_path / "shard000-slice002.safetensors")), _params(ens.shards[0]))


def test_bad_input(task):
    with pytest.raises(ConfigError):
        Sisa(num_shards=0)
    with pytest.raises(ConfigError):
        Sisa(num_slices=0)
    with pytest.raises(ConfigError):
        Sisa(aggregation="median")
    with pytest.raises(ConfigError):
        Sisa(num_shards=len(task.train) + 1).unlearn(task)
    tiny = task.train.take(np.arange(4))
    with pytest.raises(ConfigError):
        train_sisa(tiny, task.model_factory, task.adapter, RECIPE, num_shards=5)
    shard, _ = sisa_assignment(task.train.example_ids, 2, 1, seed=0)
    one_shard = task.train.take(np.flatnonzero(shard == 0)[:5])
    with pytest.raises(ConfigError):  # hashing leaves shard 1 empty
        train_sisa(one_shard, task.model_factory, task.adapter, RECIPE, num_shards=2)
    ens = train_sisa(task.train, task.model_factory, task.adapter, TrainConfig(epochs=0.1), 2, 1)
    with pytest.raises(UnknownIdsError):
        ens.forget(["no-such-id"])
    with pytest.raises(ConfigError):  # no training state to retrain from
        SisaEnsemble([task.model_factory(0)]).forget(["x"])


def test_saved_ensemble_loads_into_template(task, prepared):
    method = Sisa(num_shards=S, num_slices=R)
    template = method.model_template(task)
    template.load_state_dict(prepared.state_dict())
    x = task.test.inputs[:8]
    with torch.no_grad():
        assert torch.equal(template(x), prepared(x))


def test_emptied_shard_leaves_the_aggregation(task, prepared):
    shard, _ = sisa_assignment(task.train.example_ids, S, R, seed=0)
    ens = prepared.clone()
    req = ens.forget(task.train.example_ids[shard == 0])
    assert req.affected_shards == [0] and req.cost.steps == 0
    assert ens.active.tolist() == [False, True, True]
    x = task.test.inputs[:8]
    with torch.no_grad():
        probs = torch.stack([m(x).softmax(-1) for m in ens.shards[1:]]).mean(0)
        assert torch.allclose(ens(x).softmax(-1), probs, atol=1e-6)
