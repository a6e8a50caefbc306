"""The language-model track through the CLI, as a user runs it: train a tiny Llama on
generated profiles, answer a deletion request, evaluate, report; bad input gives one
``error:`` line, exit status 2 and nothing stored."""

from __future__ import annotations

import json

import pytest

from test_cli import js, stored_runs, uk

pytest.importorskip("transformers")
pytestmark = pytest.mark.timeout(600)

TINY = [
    "--task",
    "profiles",
    "--people",
    "10",
    "--qa-per-person",
    "3",
    "--epochs",
    "60",
    "--lr",
    "0.01",
    "--batch-size",
    "16",
    "--lm-size",
    "hidden=64,layers=1,heads=2,intermediate=128",
]


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("lmhome")
    return home, js(uk("train", *TINY, "--json", home=home))


def test_train_unlearn_evaluate_report(lm_run, tmp_path):
    home, doc = lm_run
    assert doc["task"] == "profiles" and doc["metrics"]["exact_match_train"] > 0.9
    assert doc["n_forget"] == 9 and doc["n_holdout"] == 9  # one person of 10; one holdout person
    u = js(uk("unlearn", "--from", doc["run_id"], "--method", "npo", "--evaluate", "--json", home=home))
    m = u["metrics"]
    # the original's forget quality is ~1e-5 on this task (tests/test_lm_eval.py); NPO moves it
    # up by orders of magnitude (0.0063 with 9 vs 9 truth ratios: one KS step below 0.05)
    assert m["forget_quality"] > 1e-3 and m["rouge_forget"] < 0.6 and 0 < m["cost_ratio_time"] < 1
    assert {"model_utility", "privleak", "paraphrase_rouge", "relearn_rouge", "fade_sym_kl"} <= set(m)
    assert not any(k.startswith("acc_") for k in m)  # no classifier metric on a language model
    # the same request through LoRA adapters, by subject id, then evaluated again from the store
    (tmp_path / "who.txt").write_text("p0000\n")
    r = js(
        uk(
            "unlearn",
            "--from",
            doc["run_id"],
            "--method",
            "graddiff",
            "--lora",
            "4",
            "--forget-subjects",
            str(tmp_path / "who.txt"),
            "--json",
            home=home,
        )
    )
    e = js(uk("evaluate", r["run_id"], "--export-scores", str(tmp_path / "s.csv"), "--json", home=home))
    assert e["metrics"]["forget_quality"] >= 0 and (tmp_path / "s.csv").read_text().count("\n") > 50
    runs = js(uk("runs", "list", "--json", home=home))
    assert [x["tags"].get("lora") for x in runs if x["method"] == "graddiff"] == [{"r": 4}]
    rep = js(uk("report", "--out", str(tmp_path / "rep"), "--json", home=home))
    assert (tmp_path / "rep" / "lm_tradeoff.png").is_file() and rep


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "random_labels"], "classifier"),  # a classifier-only method on a language model
        (["--method", "npo", "--scenario", "forget99"], "forget"),
        (["--method", "npo", "-p", "beta=-1"], "beta"),
    ],
)
def test_bad_unlearn_requests_fail_cleanly(lm_run, args, message):
    home, doc = lm_run
    before = stored_runs(home)
    p = uk("unlearn", "--from", doc["run_id"], *args, home=home, check=False)
    assert p.returncode == 2 and p.stderr.startswith("error:") and message in p.stderr
    assert stored_runs(home) == before  # nothing stored


def test_bad_qa_folder_and_options(tmp_path):
    folder = tmp_path / "qa"
    folder.mkdir()
    rows = [{"question": f"Q{i}?", "answer": f"A{i}.", "subject_id": f"s{i % 3}"} for i in range(6)]
    rows[2]["answer"] = ""
    for split in ("forget10", "retain", "holdout"):
        (folder / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    p = uk("train", "--task", "qa", "--dataset", str(folder), home=tmp_path / "h", check=False)
    assert p.returncode == 2 and "empty" in p.stderr
    p = uk("train", "--task", "poems", home=tmp_path / "h", check=False)
    assert p.returncode == 2 and "--task" in p.stderr
    p = uk("train", *TINY[:2], "--lm-size", "hidden=big", home=tmp_path / "h", check=False)
    assert p.returncode == 2 and "--lm-size" in p.stderr
