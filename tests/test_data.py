"""The data layer: loaders, partitions and forget-set scenarios."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest
import torch

from unlearnkit.data import (
    ClassForget,
    ExampleSet,
    IdsForget,
    MislabelledForget,
    RandomForget,
    SubclassForget,
    SubjectForget,
    load_dataset,
    parse_scenario,
    partition,
    scenario_from_dict,
)
from unlearnkit.errors import ConfigError, DataError, ForgetSetError, UnknownIdsError
from unlearnkit.utils import fingerprint_ids


@pytest.fixture(scope="module")
def digits() -> ExampleSet:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def part(digits):
    return partition(digits, seed=0)


@pytest.fixture(scope="module")
def coarse_part():
    return partition(load_dataset("digits-coarse"), seed=0)


def _ids(s: ExampleSet) -> set[str]:
    return set(s.example_ids.tolist())


# --------------------------------------------------------------------------- loaders
def test_digits(digits):
    assert digits.inputs.shape == (1797, 1, 8, 8) and digits.inputs.dtype == torch.float32
    assert 0.0 <= float(digits.inputs.min()) and float(digits.inputs.max()) <= 1.0
    assert digits.num_classes == 10 and set(digits.labels.tolist()) == set(range(10))
    assert len(_ids(digits)) == 1797
    assert digits.subject_ids is not None and len(digits.subject_ids) == 1797
    assert 50 <= len(set(digits.subject_ids.tolist())) <= 100
    again = load_dataset("digits")  # deterministic, ids and subjects stable
    assert (again.example_ids == digits.example_ids).all()
    assert (again.subject_ids == digits.subject_ids).all()


def test_digits_coarse(digits):
    d = load_dataset("digits-coarse")
    assert d.num_classes == 5 and set(d.labels.tolist()) == set(range(5))
    assert d.groups is not None and (d.groups == digits.labels.numpy()).all()
    assert (d.labels.numpy() == d.groups // 2).all()
    assert (d.example_ids == digits.example_ids).all()


@pytest.mark.parametrize("name,n,f,k", [("breast_cancer", 569, 30, 2), ("wine", 178, 13, 3), ("iris", 150, 4, 3)])
def test_sklearn_tabular(name, n, f, k):
    d = load_dataset(name)
    assert d.inputs.shape == (n, f) and d.num_classes == k
    assert len(_ids(d)) == n and d.subject_ids is not None
    assert torch.allclose(d.inputs.mean(0), torch.zeros(f), atol=1e-4)  # standardised
    assert torch.allclose(d.inputs.std(0, unbiased=False), torch.ones(f), atol=1e-3)


def test_mnist1d():
    t0 = time.perf_counter()
    d = load_dataset("mnist1d")
    elapsed = time.perf_counter() - t0
    assert d.inputs.shape == (5000, 40) and d.num_classes == 10
    assert set(d.labels.tolist()) == set(range(10)) and len(_ids(d)) == 5000
    assert torch.isfinite(d.inputs).all()
    assert elapsed < 30, f"mnist1d generation took {elapsed:.1f}s"  # ~3 s on 2 cores


def test_npz(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 3)).astype(np.float32), np.arange(20) % 4
    ids = np.asarray([f"row{i}" for i in range(20)])
    subj = np.asarray([f"p{i % 5}" for i in range(20)])
    np.savez(tmp_path / "mine.npz", x=x, y=y, example_id=ids, subject_id=subj)
    d = load_dataset(str(tmp_path / "mine.npz"))
    assert d.name == "mine" and d.inputs.shape == (20, 3) and d.num_classes == 4
    assert torch.equal(d.inputs, torch.from_numpy(x)) and d.labels.tolist() == y.tolist()
    assert d.example_ids.tolist() == ids.tolist() and d.subject_ids.tolist() == subj.tolist()
    np.savez(tmp_path / "plain.npz", x=x, y=y)
    plain = load_dataset(str(tmp_path / "plain.npz"))
    assert len(_ids(plain)) == 20 and plain.subject_ids is None
    np.savez(tmp_path / "bad.npz", inputs=x, y=y)
    with pytest.raises(DataError, match="'x' and 'y'"):
        load_dataset(str(tmp_path / "bad.npz"))
    np.savez(tmp_path / "dup.npz", x=x, y=y, example_id=np.asarray(["same"] * 20))
    with pytest.raises(DataError, match="unique"):
        load_dataset(str(tmp_path / "dup.npz"))


def _table():
    import pandas as pd

    return pd.DataFrame(
        {
            "f1": [0.5, 1.5, 2.5, 3.5, 4.5, 5.5],
            "f2": [1, 0, 1, 0, 1, 0],
            "species": ["dog", "cat", "emu", "cat", "dog", "emu"],
            "rid": ["r1", "r2", "r3", "r4", "r5", "r6"],
            "person": ["ann", "bob", "ann", "cy", "bob", "cy"],
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_tables(tmp_path, suffix):
    df = _table()
    path = tmp_path / f"animals{suffix}"
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path, index=False)
    d = load_dataset(str(path), label="species", id_column="rid", subject_column="person")
    assert d.inputs.shape == (6, 2) and d.num_classes == 3
    assert d.meta["classes"] == ["cat", "dog", "emu"] and d.meta["features"] == ["f1", "f2"]
    assert d.labels.tolist() == [1, 0, 2, 0, 1, 2]  # classes in sorted order
    assert d.example_ids.tolist() == ["r1", "r2", "r3", "r4", "r5", "r6"]
    assert d.subject_ids.tolist() == ["ann", "bob", "ann", "cy", "bob", "cy"]
    assert torch.allclose(d.inputs.mean(0), torch.zeros(2), atol=1e-5)
    raw = load_dataset(str(path), label="species", id_column="rid", subject_column="person", standardise=False)
    assert raw.inputs[:, 0].tolist() == df["f1"].tolist()
    plain = tmp_path / f"plain{suffix}"
    numeric = df[["f1", "f2"]].assign(y=[2, 0, 1, 1, 0, 2])  # integer labels, no id column
    numeric.to_csv(plain, index=False) if suffix == ".csv" else numeric.to_parquet(plain, index=False)
    d = load_dataset(str(plain), label="y")
    assert d.labels.tolist() == [2, 0, 1, 1, 0, 2] and d.subject_ids is None
    assert d.example_ids[0] == "plain-000000" and len(_ids(d)) == 6


def test_table_errors(tmp_path):
    df = _table()
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ConfigError, match="label"):
        load_dataset(str(tmp_path / "t.csv"))
    with pytest.raises(DataError, match="no column 'kind'"):
        load_dataset(str(tmp_path / "t.csv"), label="kind")
    with pytest.raises(DataError, match="non-numeric"):
        load_dataset(str(tmp_path / "t.csv"), label="species")  # rid, person are strings
    missing = df.drop(columns=["rid", "person"])
    missing.loc[2, "species"] = None
    missing.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError, match="missing"):
        load_dataset(str(tmp_path / "m.csv"), label="species")
    with pytest.raises(DataError, match="no such file"):
        load_dataset(str(tmp_path / "absent.csv"), label="species")


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, n in (("cats", 3), ("dogs", 2)):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(n):
            arr = rng.integers(0, 256, size=(10, 12, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "imgs" / cls / f"{i}.png")
    (tmp_path / "imgs" / "cats" / "notes.txt").write_text("ignored")
    d = load_dataset(str(tmp_path / "imgs"), size=8)
    assert d.inputs.shape == (5, 3, 8, 8) and d.num_classes == 2
    assert d.labels.tolist() == [0, 0, 0, 1, 1] and d.meta["classes"] == ["cats", "dogs"]
    assert d.example_ids.tolist() == ["cats/0.png", "cats/1.png", "cats/2.png", "dogs/0.png", "dogs/1.png"]
    assert 0.0 <= float(d.inputs.min()) and float(d.inputs.max()) <= 1.0
    gray = load_dataset(str(tmp_path / "imgs"), size=4, grayscale=True)
    assert gray.inputs.shape == (5, 1, 4, 4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="sub-folder"):
        load_dataset(str(tmp_path / "empty"))


def test_unknown_sources(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        load_dataset("nope")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="unsupported"):
        load_dataset(str(tmp_path / "x.json"))


# --------------------------------------------------------------------------- partition
def test_partition(digits, part):
    tr, te, po = _ids(part.train), _ids(part.test), _ids(part.pool)
    assert len(tr) + len(te) + len(po) == len(digits)
    assert not (tr & te) and not (tr & po) and not (te & po)
    assert abs(len(te) - 0.2 * len(digits)) <= 10 and abs(len(po) - 0.15 * len(digits)) <= 10
    for c in range(10):  # stratified: every class in every part
        assert (part.test.labels == c).any() and (part.pool.labels == c).any()
    again = partition(digits, seed=0)
    assert (again.train.example_ids == part.train.example_ids).all()
    assert _ids(partition(digits, seed=1).test) != te
    no_pool = partition(digits, seed=0, pool_fraction=0.0)
    assert len(no_pool.pool) == 0
    for bad in ((0.0, 0.1), (0.5, 0.5), (1.2, 0.0)):
        with pytest.raises(ConfigError):
            partition(digits, 0, *bad)


# --------------------------------------------------------------------------- scenarios
def _check_split(split, part):
    """Invariants every scenario must keep."""
    train = _ids(split.train)
    forget, retain, hold = _ids(split.forget), _ids(split.retain), _ids(split.holdout)
    assert forget and forget < train and retain == train - forget
    assert not (hold & train) and hold <= _ids(part.pool)
    assert split.forget_fingerprint == fingerprint_ids(sorted(split.forget_ids.tolist()))
    assert split.describe()["n_forget"] == len(forget)


def test_random_scenario(part):
    s = RandomForget(0.1).build(part, seed=3)
    _check_split(s, part)
    assert len(s.forget) == round(0.1 * len(part.train))
    # holdout has the forget set's label mix (the pool has enough of every class)
    assert Counter(s.holdout.labels.tolist()) == Counter(s.forget.labels.tolist())
    again = RandomForget(0.1).build(part, seed=3)
    assert (again.forget_ids == s.forget_ids).all() and _ids(again.holdout) == _ids(s.holdout)
    other = RandomForget(0.1).build(part, seed=4)
    assert _ids(other.forget) != _ids(s.forget)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ConfigError):
            RandomForget(bad).build(part)


def test_class_scenario(part):
    s = ClassForget(3).build(part, seed=0)
    _check_split(s, part)
    assert set(s.forget.labels.tolist()) == {3} and not (s.retain.labels == 3).any()
    assert len(s.forget) == int((part.train.labels == 3).sum())
    assert set(s.holdout.labels.tolist()) == {3} and len(s.holdout) == int((part.pool.labels == 3).sum())
    with pytest.raises(ForgetSetError):
        ClassForget(42).build(part)


def test_subclass_scenario(coarse_part, part):
    s = SubclassForget(5).build(coarse_part, seed=0)
    _check_split(s, coarse_part)
    assert set(s.forget.groups.tolist()) == {5} and set(s.holdout.groups.tolist()) == {5}
    assert not (s.retain.groups == 5).any()
    assert set(s.forget.labels.tolist()) == {2}
    assert (s.retain.groups == 4).any()  # the rest of coarse class 2 stays
    with pytest.raises(ConfigError, match="sub-class"):
        SubclassForget(5).build(part)  # digits has no groups
    with pytest.raises(ForgetSetError):
        SubclassForget(77).build(coarse_part)


def test_subject_scenario(part):
    s = SubjectForget(count=3).build(part, seed=0)
    _check_split(s, part)
    subjects = s.scenario["subjects"]
    assert len(subjects) == 3 and set(s.forget.subject_ids.tolist()) == set(subjects)
    assert not set(s.retain.subject_ids.tolist()) & set(subjects)  # all their examples go
    assert Counter(s.holdout.labels.tolist()) == Counter(s.forget.labels.tolist())
    assert (SubjectForget(count=3).build(part, seed=0).forget_ids == s.forget_ids).all()
    chosen = SubjectForget(subjects=subjects[:1]).build(part)
    assert set(chosen.forget.subject_ids.tolist()) == {subjects[0]}
    with pytest.raises(UnknownIdsError, match="subject"):
        SubjectForget(subjects=["no-such-person"]).build(part)
    with pytest.raises(ConfigError):
        SubjectForget(count=0).build(part)


def test_ids_scenario(part):
    ids = part.train.example_ids[[0, 5, 9]].tolist()
    s = IdsForget(ids).build(part, seed=0)
    _check_split(s, part)
    assert s.forget_ids.tolist() == ids
    assert Counter(s.holdout.labels.tolist()) == Counter(s.forget.labels.tolist())
    with pytest.raises(UnknownIdsError, match="not-an-id"):
        IdsForget(ids + ["not-an-id"]).build(part)
    with pytest.raises(UnknownIdsError):
        IdsForget([part.test.example_ids[0]]).build(part)  # test examples were never trained on
    with pytest.raises(ForgetSetError, match="empty"):
        IdsForget([]).build(part)
    with pytest.raises(ForgetSetError, match="whole training set"):
        IdsForget(part.train.example_ids.tolist()).build(part)
    with pytest.raises(ForgetSetError, match="more than once"):
        IdsForget([ids[0], ids[0]]).build(part)


def test_mislabelled_scenario(part):
    s = MislabelledForget(0.05).build(part, seed=1)
    _check_split(s, part)
    orig = dict(zip(part.train.example_ids.tolist(), part.train.labels.tolist()))
    new = dict(zip(s.train.example_ids.tolist(), s.train.labels.tolist()))
    flipped = {i for i in orig if orig[i] != new[i]}
    assert flipped == _ids(s.forget)  # exactly the forget set is mislabelled
    assert len(s.forget) == round(0.05 * len(part.train))
    pool_orig = dict(zip(part.pool.example_ids.tolist(), part.pool.labels.tolist()))
    assert all(pool_orig[i] != int(y) for i, y in zip(s.holdout.example_ids, s.holdout.labels))
    assert len(s.holdout) == len(s.forget)
    assert (MislabelledForget(0.05).build(part, seed=1).forget_ids == s.forget_ids).all()


def test_holdout_limited_by_pool(digits):
    """With a tiny pool the holdout is as large as the pool allows, never from train."""
    small = partition(digits, seed=0, pool_fraction=0.01)
    s = RandomForget(0.3).build(small, seed=0)
    _check_split(s, small)
    have, want = Counter(s.holdout.labels.tolist()), Counter(s.forget.labels.tolist())
    pool = Counter(small.pool.labels.tolist())
    assert all(have[c] == min(want[c], pool[c]) for c in want)


# --------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    "text,expected",
    [
        ("random:0.2", RandomForget(0.2)),
        ("random", RandomForget(0.1)),
        ("class:3", ClassForget(3)),
        ("subclass:7", SubclassForget(7)),
        ("subjects:4", SubjectForget(count=4)),
        ("subjects:subject-001,subject-002", SubjectForget(subjects=["subject-001", "subject-002"])),
        ("mislabelled:0.05", MislabelledForget(0.05)),
        (" class:1", ClassForget(1)),
    ],
)
def test_parse_scenario(text, expected):
    got = parse_scenario(text)
    assert got == expected
    assert scenario_from_dict(got.to_dict()) == got


@pytest.mark.parametrize("text", ["random:abc", "class:x", "shuffle:3", "", "mislabelled:?"])
def test_parse_scenario_errors(text):
    with pytest.raises(ConfigError):
        parse_scenario(text)


def test_scenario_from_dict_errors():
    with pytest.raises(ConfigError, match="unknown scenario"):
        scenario_from_dict({"kind": "nope"})
    with pytest.raises(ConfigError, match="random"):
        scenario_from_dict({"kind": "random", "size": 3})
