"""Run store (SQLite), content-addressed artifacts and the model cache."""

from __future__ import annotations

import math
import sqlite3

import pytest
import torch
from torch import nn

from unlearnkit.errors import CheckpointError, StoreError
from unlearnkit.orchestration.artifacts import ArtifactStore, ModelCache, load_file, save_file
from unlearnkit.orchestration.records import RunRecord
from unlearnkit.orchestration.store import RunStore


def _record(**kw) -> RunRecord:
    base = dict(
        kind="unlearn",
        task_key="task-a",
        method="finetune",
        seed=7,
        task_spec={"dataset": "digits", "recipe": {"lr": 1e-3, "epochs": 2}},
        scenario={"kind": "random", "fraction": 0.1},
        forget_fingerprint="f" * 16,
        forget_ids=["digits-00001", "digits-00002"],
        params={"lr": 0.01, "steps": 5},
        metrics={"acc_forget": 0.5, "mia_auc": float("nan"), "ratio": float("inf"), "neg": float("-inf")},
        cost={"wall_time_s": 1.25, "steps": 10},
        environment={"torch": "2.x"},
        artifact="a" * 64,
        parent="p" * 12,
        status="ok",
        error=None,
        tags={"note": "x", "k": [1, 2]},
    )
    base.update(kw)
    return RunRecord(**base)


def _same(a, b) -> bool:
    """Equality where NaN == NaN, recursively."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / "sub" / "dir" / "runs.db")
    yield s
    s.close()


# --------------------------------------------------------------------------- run store
def test_round_trip_every_field(store, tmp_path):
    rec = _record()
    assert store.add(rec) == rec.id
    got = store.get(rec.id)
    for name in RunRecord.__dataclass_fields__:
        assert _same(getattr(got, name), getattr(rec, name)), name
    assert math.isnan(got.metrics["mia_auc"]) and got.metrics["neg"] == float("-inf")
    # a second store on the same file sees it (durable, WAL mode)
    with RunStore(tmp_path / "sub" / "dir" / "runs.db") as again:
        assert _same(again.get(rec.id).to_dict(), rec.to_dict())
    con = sqlite3.connect(tmp_path / "sub" / "dir" / "runs.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = dict(con.execute("SELECT name, value FROM metrics WHERE run_id = ?", (rec.id,)).fetchall())
    con.close()
    assert rows == {"acc_forget": 0.5, "mia_auc": None, "ratio": None, "neg": None}


def test_minimal_record_round_trip(store):
    rec = RunRecord(
        kind="train", task_key="t", method="train", seed=0, status="failed", error="DivergenceError: loss is nan"
    )
    store.add(rec)
    assert store.get(rec.id).to_dict() == rec.to_dict()


def test_duplicate_id_is_store_error(store):
    rec = _record()
    store.add(rec)
    with pytest.raises(StoreError, match="exists"):
        store.add(rec)


def test_list_filters_and_newest_first(store):
    recs = [
        _record(kind="train", method="train", created_at="2024-01-01T00:00:00+00:00"),
        _record(kind="reference", method="retrain", created_at="2024-01-02T00:00:00+00:00"),
        _record(method="finetune", created_at="2024-01-03T00:00:00+00:00", task_key="task-b"),
        _record(method="gradient_ascent", status="failed", created_at="2024-01-04T00:00:00+00:00"),
        _record(method="finetune", created_at="2024-01-04T00:00:00+00:00"),  # tie: inserted last
    ]
    for r in recs:
        store.add(r)
    ids = lambda rs: [r.id for r in rs]  # noqa: E731
    assert ids(store.list()) == [recs[4].id, recs[3].id, recs[2].id, recs[1].id, recs[0].id]
    assert ids(store.list(kind="unlearn")) == [recs[4].id, recs[3].id, recs[2].id]
    assert ids(store.list(method="finetune")) == [recs[4].id, recs[2].id]
    assert ids(store.list(method="finetune", task_key="task-b")) == [recs[2].id]
    assert ids(store.list(status="failed")) == [recs[3].id]
    assert ids(store.list(limit=2)) == [recs[4].id, recs[3].id]
    assert store.list(kind="nothing") == []


def test_prefix_lookup(store):
    a = _record(id="abc123000000")
    b = _record(id="abd999000000")
    c = _record(id="x_%_00000000")
    for r in (a, b, c):
        store.add(r)
    assert store.get("abc").id == a.id
    assert store.get("abd9").id == b.id
    assert store.get("x_%").id == c.id  # SQL wildcards are literal
    with pytest.raises(StoreError, match="ambiguous"):
        store.get("ab")
    with pytest.raises(StoreError, match="no run"):
        store.get("zzz")
    with pytest.raises(StoreError, match="no run"):
        store.get("a_c")  # '_' is not a wildcard
    with pytest.raises(StoreError):
        store.get("")


def test_update_metrics_merges(store):
    rec = _record(metrics={"a": 1.0, "b": 2.0})
    store.add(rec)
    got = store.update_metrics(rec.id[:6], {"b": 3.0, "c": float("nan")})
    assert got.metrics["a"] == 1.0 and got.metrics["b"] == 3.0 and math.isnan(got.metrics["c"])
    assert _same(store.get(rec.id).metrics, got.metrics)
    with pytest.raises(StoreError, match="no run"):
        store.update_metrics("nope", {"a": 1.0})


def test_evaluations_are_appended_beside_each_other(store, tmp_path):
    from unlearnkit.orchestration.records import EvaluationRecord

    rec = _record(metrics={"a": 1.0})
    store.add(rec)
    first = EvaluationRecord(rec.id, "fp-1", {"split": {"holdout_ids": ["h1", "h2"]}}, {"a": 1.0, "n": float("nan")})
    second = EvaluationRecord(rec.id[:5], "fp-2", {"split": {"holdout_ids": ["h3"]}}, {"a": 0.5})
    store.add_evaluation(first)
    store.add_evaluation(second)
    got = store.evaluations(rec.id)
    assert [e.id for e in got] == [first.id, second.id]
    assert got[0].run_id == got[1].run_id == rec.id  # a prefix resolves to the run
    assert got[0].inputs == first.inputs and math.isnan(got[0].metrics["n"]) and got[1].metrics == {"a": 0.5}
    assert store.get(rec.id).metrics == {"a": 1.0}  # the run's own metrics are left alone
    with pytest.raises(StoreError, match="exists"):
        store.add_evaluation(first)
    with pytest.raises(StoreError, match="no run"):
        store.add_evaluation(EvaluationRecord("nope", "fp", {}, {}))
    assert len(store.evaluations(rec.id[:4])) == 2  # prefix lookup
    other = _record()
    store.add(other)
    assert store.evaluations(other.id) == []
    # a store written before evaluations were kept: opening it for writing adds the table
    import sqlite3

    old = tmp_path / "old.db"
    with RunStore(old) as s:
        s.add(other)
    con = sqlite3.connect(old)
    con.execute("DROP TABLE evaluations")
    con.commit()
    con.close()
    with RunStore(old) as s:
        assert s.evaluations(other.id) == []
        s.add_evaluation(EvaluationRecord(other.id, "fp", {}, {"a": 1.0}))
        assert len(s.evaluations(other.id)) == 1
    import inspect

    if "mode" in inspect.signature(RunStore).parameters:  # read-only opening never creates the table
        con = sqlite3.connect(old)
        con.execute("DROP TABLE evaluations")
        con.commit()
        con.close()
        with RunStore(old, mode="r") as s:
            assert s.evaluations(other.id) == []


def test_numpy_values_are_stored_as_python(store):
    import numpy as np

    rec = _record(metrics={"a": np.float32(0.25), "n": np.int64(3)}, tags={"arr": np.arange(3)})
    store.add(rec)
    got = store.get(rec.id)
    assert got.metrics == {"a": 0.25, "n": 3} and got.tags == {"arr": [0, 1, 2]}


def test_unopenable_locations_raise_store_error(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="file.txt"):
        RunStore(blocker / "runs.db")  # a path under a regular file
    with pytest.raises(StoreError, match="file.txt"):
        RunStore(blocker)  # a file that is not a database
    with pytest.raises(StoreError, match="not a valid"):
        RunStore("nosuchdialect://host/db")
    with pytest.raises(StoreError) as e:
        RunStore("postgresql+nosuchdriver://user:secret@localhost/db")
    assert "secret" not in str(e.value) and "\n" not in str(e.value)


def test_read_only_directory_raises_store_error(tmp_path):
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: chmod does not stop writes")
        with pytest.raises(StoreError, match="ro"):
            RunStore(ro / "runs.db")
    finally:
        ro.chmod(0o700)


# --------------------------------------------------------------------------- artifacts
def _mlp(seed: int, hidden: int = 6) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, 3))


def _equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_artifact_round_trip_and_dedupe(tmp_path):
    store = ArtifactStore(tmp_path / "art")
    m = _mlp(0)
    m.train()(torch.randn(8, 4))  # non-trivial BatchNorm buffers
    h = store.save(m, {"run": "abc", "n": 1})
    assert len(h) == 64 and store.exists(h)
    assert store.path(h) == tmp_path / "art" / h[:2] / f"{h}.safetensors"
    import hashlib

    assert hashlib.sha256(store.path(h).read_bytes()).hexdigest() == h
    other = _mlp(1)
    assert not _equal(m, other)
    assert store.load(h, other) is other and _equal(m, other)
    assert store.metadata(h) == {"run": "abc", "n": 1}
    sd = store.load_state_dict(h)
    assert torch.equal(sd["0.weight"], m[0].weight.detach())
    mtime = store.path(h).stat().st_mtime_ns
    assert store.save(m, {"n": 1, "run": "abc"}) == h  # same content, same hash
    assert store.path(h).stat().st_mtime_ns == mtime
    assert len(list((tmp_path / "art").rglob("*.safetensors"))) == 1
    assert not list((tmp_path / "art").rglob("*.tmp"))
    assert store.save(_mlp(1)) != h


def test_artifact_shared_tensors(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(5, 3)
            self.out = nn.Linear(3, 5, bias=False)
            self.out.weight = self.emb.weight

    torch.manual_seed(0)
    a = Tied()
    store = ArtifactStore(tmp_path)
    h = store.save(a)
    torch.manual_seed(1)
    b = store.load(h, Tied())
    assert torch.equal(b.emb.weight, a.emb.weight) and b.out.weight is b.emb.weight


def _flip_byte(path, where: int) -> None:
    data = bytearray(path.read_bytes())
    data[where] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupt_missing_and_misfit_artifacts(tmp_path):
    store = ArtifactStore(tmp_path)
    m = _mlp(0)
    h = store.save(m)
    target = _mlp(1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    _flip_byte(store.path(h), -3)
    with pytest.raises(CheckpointError, match="corrupt"):
        store.load(h, target)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())  # untouched
    # saving the same model again repairs the corrupt file
    assert store.save(m) == h
    store.load(h, target)
    store.path(h).unlink()
    with pytest.raises(CheckpointError, match="not found"):
        store.load(h, target)
    with pytest.raises(CheckpointError, match="not an artifact hash"):
        store.load("../../etc/passwd", target)
    h = store.save(m)
    with pytest.raises(CheckpointError, match=r"does not fit.*shape mismatch.*0\.weight"):
        store.load(h, _mlp(0, hidden=7))
    with pytest.raises(CheckpointError, match="missing keys"):
        store.load(h, nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3), nn.Linear(3, 3)))


def test_save_file_load_file(tmp_path):
    m = _mlp(0)
    path = save_file(m, tmp_path / "ckpt" / "model.safetensors", {"epoch": 3})
    other = _mlp(1)
    assert _equal(load_file(path, other), m)
    # readable by plain safetensors too
    from safetensors.torch import load_file as st_load

    assert torch.equal(st_load(str(path))["3.bias"], m[3].bias.detach())
    _flip_byte(path, -2)  # inside the tensor data
    with pytest.raises(CheckpointError, match="corrupt"):
        load_file(path, other)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_file(path, other)
    with pytest.raises(CheckpointError, match="not found"):
        load_file(tmp_path / "nope.safetensors", other)
    ArtifactStore(tmp_path).save_file(m, path)  # also reachable from a store
    with pytest.raises(CheckpointError, match="does not fit"):
        load_file(path, _mlp(0, hidden=5))


# --------------------------------------------------------------------------- model cache
def test_model_cache_get_put_and_stale_entries(tmp_path):
    cache = ModelCache(tmp_path / "cache")
    m = _mlp(0)
    assert cache.get("original-abc", _mlp(1)) is None
    cache.put("original-abc", m, {"cost": {"steps": 3, "wall_time_s": 0.5}})
    target = _mlp(1)
    assert cache.get("original-abc", target) == {"cost": {"steps": 3, "wall_time_s": 0.5}}
    assert _equal(target, m)
    # keys with odd characters still work
    cache.put("ref/with spaces:1", m, {"k": 1})
    assert cache.get("ref/with spaces:1", _mlp(2)) == {"k": 1}
    # a corrupt artifact behind an entry is a miss and the entry goes away
    h = cache.artifact("original-abc")
    _flip_byte(cache.artifacts.path(h), -1)
    assert cache.get("original-abc", _mlp(1)) is None
    assert cache.artifact("original-abc") is None
    # a missing artifact, too
    cache.put("original-abc", m, {"v": 2})
    cache.artifacts.path(cache.artifact("original-abc")).unlink()
    assert cache.get("original-abc", _mlp(1)) is None
    # an architecture that does not fit, too
    cache.put("original-abc", m, {"v": 3})
    assert cache.get("original-abc", _mlp(1, hidden=9)) is None
    # an unreadable index file, too
    cache.put("original-abc", m, {"v": 4})
    cache._index("original-abc").write_text("{not json")
    assert cache.get("original-abc", _mlp(1)) is None
    assert not cache._index("original-abc").exists()


def test_make_task_uses_cache(tmp_path):
    """make_task trains once, then loads the original from the cache."""
    from unlearnkit.engines.loop import TrainConfig
    from unlearnkit.modalities.classifier.task import make_task

    cache = ModelCache(tmp_path)
    recipe = TrainConfig(epochs=1, batch_size=64)
    t1 = make_task("iris", "linear", seed=0, recipe=recipe, cache=cache, device="cpu")
    t2 = make_task("iris", "linear", seed=0, recipe=recipe, cache=cache, device="cpu")
    assert _equal(t1.original, t2.original)
    assert t2.original_cost.to_dict() == t1.original_cost.to_dict()


def test_stores_opened_concurrently_by_processes(tmp_path):
    """Parallel workers opening a new store at once must not race on creating its tables."""
    from concurrent.futures import ProcessPoolExecutor

    path = str(tmp_path / "runs.db")
    with ProcessPoolExecutor(4) as ex:
        assert all(ex.map(_open_and_add, [path] * 8))
    from unlearnkit.orchestration.store import RunStore

    assert len(RunStore(path).list()) == 8


def _open_and_add(path: str) -> bool:
    from unlearnkit.orchestration.records import RunRecord
    from unlearnkit.orchestration.store import RunStore

    RunStore(path).add(RunRecord(kind="unlearn", task_key="t", method="m", seed=0))
    return True
