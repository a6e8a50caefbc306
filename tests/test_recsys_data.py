"""Interaction data: the seeded generator (communities, long tail) and the offline loaders of
MovieLens (u.data, ratings.dat, ratings.csv) and Netflix-style files, written into tmp_path."""

from __future__ import annotations

import numpy as np
import pytest

from unlearnkit.data.interactions import load_interactions, synthetic_interactions
from unlearnkit.errors import ConfigError, DataError


def test_generator_is_seeded_and_has_communities_and_a_long_tail():
    a = synthetic_interactions(n_users=200, n_items=150, seed=3)
    b = synthetic_interactions(n_users=200, n_items=150, seed=3)
    c = synthetic_interactions(n_users=200, n_items=150, seed=4)
    assert np.array_equal(a.user, b.user) and np.array_equal(a.item, b.item)
    assert not (len(a) == len(c) and np.array_equal(a.item, c.item))
    assert a.community is not None and len(a.community) == a.n_users
    # distinct pairs, ids stable and unique, subject = user id
    assert len(set(a.example_ids)) == len(a)
    assert a.example_ids[0] == f"user:{a.user_ids[a.user[0]]}/item:{a.item_ids[a.item[0]]}"
    assert a.subject_ids[0] == a.user_ids[a.user[0]]
    # long tail: the top 10% of items hold far more than 10% of the interactions
    pop = np.sort(a.item_popularity())[::-1]
    assert pop[: len(pop) // 10].sum() / pop.sum() > 0.25
    # communities: two users of one community share more items than two of different ones
    sets = [set(a.item[a.user == u]) for u in range(a.n_users)]

    def jaccard(u, v):
        return len(sets[u] & sets[v]) / len(sets[u] | sets[v])

    rng = np.random.default_rng(0)
    pairs = rng.integers(0, a.n_users, (3000, 2))
    same = [jaccard(u, v) for u, v in pairs if u != v and a.community[u] == a.community[v]]
    other = [jaccard(u, v) for u, v in pairs if a.community[u] != a.community[v]]
    assert np.mean(same) > 1.5 * np.mean(other)  # measured 0.25 vs 0.14


def test_movielens_three_formats_and_threshold(tmp_path):
    (tmp_path / "u.data").write_text("1\t10\t5\t881250949\n1\t11\t2\t881250950\n2\t10\t4\t881250951\n")
    (tmp_path / "ratings.dat").write_text("1::10::5::978300760\n2::12::3::978302109\n")
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,10,4.5,964982703\n3,7,1.0,964981247\n")
    u = load_interactions(tmp_path / "u.data")
    assert len(u) == 3 and u.n_users == 2 and u.n_items == 2
    assert list(u.example_ids) == ["user:1/item:10", "user:1/item:11", "user:2/item:10"]
    assert list(load_interactions(tmp_path / "u.data", threshold=4).example_ids) == [
        "user:1/item:10",
        "user:2/item:10",
    ]
    d = load_interactions(tmp_path / "ratings.dat")
    assert list(d.example_ids) == ["user:1/item:10", "user:2/item:12"] and d.rating.tolist() == [5.0, 3.0]
    c = load_interactions(tmp_path / "ratings.csv", threshold=3.5)
    assert list(c.example_ids) == ["user:1/item:10"]
    # a folder: the first MovieLens file it holds
    assert len(load_interactions(tmp_path)) == 3


def test_netflix_style(tmp_path):
    f = tmp_path / "combined_data_1.txt"
    f.write_text("1:\n1488844,3,2005-09-06\n822109,5,2005-05-13\n2:\n1488844,4,2005-10-01\n")
    n = load_interactions(f)
    assert list(n.example_ids) == ["user:1488844/item:1", "user:822109/item:1", "user:1488844/item:2"]
    assert n.timestamp[0] == np.datetime64("2005-09-06", "D").astype(np.int64)
    assert len(load_interactions(f, threshold=4)) == 2
    assert len(load_interactions(tmp_path)) == 3


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("u.data", "1\t10\t5\n", "u.data line 1: expected user<TAB>item"),
        ("ratings.dat", "1::10::x::9\n", "ratings.dat line 1"),
        ("ratings.csv", "user,item,rating\n1,2,3\n", "expected the header"),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,2\n", "ratings.csv line 2"),
        ("nf.txt", "1:\n5,3\n", "nf.txt line 2: expected user,rating,date"),
        ("nf2.txt", "1:\n5,3,notadate\n", "YYYY-MM-DD"),
        ("u.data", "", "no ratings"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path, name, text, match):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(DataError, match=match) as e:
        load_interactions(p)
    assert "\n" not in str(e.value)


def test_bad_sources():
    with pytest.raises(DataError, match="no such file"):
        load_interactions("/nonexistent/u.data")
    with pytest.raises(ConfigError, match="synthetic:<users>:<items>"):
        load_interactions("synthetic:abc")


def test_threshold_that_drops_everything(tmp_path):
    p = tmp_path / "u.data"
    p.write_text("1\t2\t3\t4\n")
    with pytest.raises(DataError, match="no rating reaches the threshold 5"):
        load_interactions(p, threshold=5)
