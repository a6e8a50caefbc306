"""Parity with the anchors: each LM quantity recomputed here, independently, the way TOFU
(locuslab/tofu) or OpenUnlearning (locuslab/open-unlearning) computes it, on hand-made inputs
(or on the tiny task's own logits), and compared with unlearnkit's.

* ROUGE-L recall with the Porter stemmer (``rouge_scorer.RougeScorer(["rougeL"],
  use_stemmer=True).score(gt, gen)["rougeL"].recall``);
* exact memorisation, extraction strength, Min-K% and Min-K%++ without the final eos token
  (OpenUnlearning's ``tokenwise_logprobs`` / ``tokenwise_vocab_logprobs``: ``[:-1]``, "to ignore
  eos prediction"); the answer probability and LOSS keep it (``evaluate_probability``);
* ``prob_other`` / ``prob_world`` and their truth ratios against the answer itself, with
  perturbed answers of the answer's form (TOFU's ``base_answer_key: answer`` on Real Authors
  and World Facts);
* greedy generation up to 200 new tokens, stopping at eos;
* TOFU on disk: the ``*_perturbed`` files give the forget rows their variants, ``real_authors*``
  / ``world_facts*`` become ``other`` / ``world``, and the 20-questions-per-author layout is
  checked.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from unlearnkit.errors import DataError
from unlearnkit.evaluation import EvalInputs, compute_metrics
from unlearnkit.modalities.causal_lm import formulas as lmm
from unlearnkit.modalities.causal_lm import metrics as M
from unlearnkit.modalities.causal_lm import scores as S


# --------------------------------------------------------------------------- ROUGE-L
def _anchor_rouge_l_recall(gen: str, gt: str) -> float:
    """rouge_score's tokenizer (lower-case, non-[a-z0-9] -> space, Porter stem of tokens longer
    than 3 characters) and ROUGE-L recall LCS / |gt|, written out."""
    from nltk.stem import porter

    stem = porter.PorterStemmer()

    def toks(s: str) -> list[str]:
        out = re.sub(r"[^a-z0-9]+", " ", s.lower()).split()
        return [stem.stem(t) if len(t) > 3 else t for t in out]

    a, b = toks(gen), toks(gt)
    if not a or not b:
        return 0.0
    dp = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            dp[i + 1][j + 1] = dp[i][j] + 1 if x == y else max(dp[i][j + 1], dp[i + 1][j])
    return dp[-1][-1] / len(b)


@pytest.mark.parametrize(
    "gen, gt",
    [
        ("run dog", "running dogs"),
        ("running dogs", "run dog"),
        ("She studied at the university", "She was studying at universities"),
        ("The cats played happily.", "cat play happy"),
        ("Paris", "The answer is Paris."),
        ("", "the cat"),
        ("a b c d", "b d a c"),
    ],
)
def test_rouge_l_recall_matches_rouge_score_with_the_stemmer(gen, gt):
    from rouge_score import rouge_scorer

    anchor = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(gt, gen)["rougeL"].recall
    assert lmm.rouge_l_recall(gen, gt) == pytest.approx(anchor, abs=1e-12)
    assert lmm.rouge_l_recall(gen, gt) == pytest.approx(_anchor_rouge_l_recall(gen, gt), abs=1e-12)


def test_rouge_l_recall_stems_inflected_words():
    assert lmm.rouge_l_recall("running dogs", "run dog") == 1.0
    assert lmm.rouge_l_recall("run dog", "running dogs") == 1.0
    assert lmm.rouge_l_recall("The writers studied", "writer study") == 1.0


# --------------------------------------------------------------------------- final eos
def _anchor_token_stats(lp_full: np.ndarray, labels: np.ndarray, k: float = S.MIN_K) -> dict:
    """OpenUnlearning on one example: ``lp_full`` (T, V) log-softmax where row t predicts token
    t; ``labels`` (T,) with -100 off the answer. EM, ES (its loop), Min-K%, Min-K%++ over the
    labelled positions without the last one; LOSS over all of them."""
    idx = np.flatnonzero(labels != -100)
    body = idx[:-1]  # "-1 to ignore eos prediction"
    preds, lab = lp_full[body].argmax(-1), labels[body]
    em = float((preds == lab).mean())
    n = len(lab)
    for kk in range(n):
        if np.array_equal(preds[kk:], lab[kk:]):
            break
    es = 1 - kk / n
    tok_lp = lp_full[body, lab]
    mink = float(np.sort(tok_lp)[: max(1, int(n * k))].mean())
    p = np.exp(lp_full[body])
    mu = (p * lp_full[body]).sum(-1)
    sigma = np.sqrt(np.maximum((p * lp_full[body] ** 2).sum(-1) - mu**2, 1e-6))
    z = (tok_lp - mu) / sigma
    minkpp = float(np.sort(z)[: max(1, int(n * k))].mean())
    loss = float(lp_full[idx, labels[idx]].mean())
    return {"em": em, "es": es, "min_k": mink, "min_k_pp": minkpp, "loss": loss, "all_but_eos_right": kk == 0}


def test_drop_final_eos_by_hand():
    mask = np.array([[0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 1, 0, 0, 0]], dtype=bool)
    tgt = np.array([[5, 6, 7, 2, 0], [5, 5, 6, 7, 9], [5, 2, 0, 0, 0]])  # eos = 2
    got = S.drop_final_eos(mask, tgt, eos_id=2)
    assert got.tolist() == [
        [False, True, True, False, False],  # eos dropped
        [False, False, True, True, True],  # last token is not eos: kept
        [False, True, False, False, False],
    ]  # only token: kept (a row needs one)
    assert mask[0, 3]  # the input is not modified


def test_memorisation_and_min_k_leave_out_the_final_eos_as_open_unlearning(lm_task):
    """LMScores of the tiny task against OpenUnlearning's per-example formulas on the same logits."""
    from unlearnkit.methods import get_method

    model = get_method("gradient_ascent", epochs=4).unlearn(lm_task, seed=0).model  # imperfect recall
    data = lm_task.forget
    sc = S.score_lm_set(model, data, lm_task.adapter, generate=False)
    model.eval()
    batch = next(iter(data.batches(len(data))))
    with torch.no_grad():
        logits = lm_task.adapter.logits(model, batch).float()
    lp = torch.log_softmax(logits, -1).double().numpy()
    labels = batch["labels"].numpy()
    seen_partial = False
    for i in range(len(data)):
        shifted = np.full_like(labels[i], -100)
        shifted[:-1] = labels[i][1:]  # row t of lp predicts token t + 1
        a = _anchor_token_stats(lp[i], shifted)
        assert sc.token_acc[i] == pytest.approx(a["em"], abs=1e-9)
        assert sc.mia_min_k[i] == pytest.approx(a["min_k"], abs=1e-6)
        assert sc.mia_min_k_pp[i] == pytest.approx(a["min_k_pp"], abs=1e-5)
        assert sc.mean_logprob[i] == pytest.approx(a["loss"], abs=1e-6)  # LOSS / probability keep the eos
        if a["em"] < 1.0 and not a["all_but_eos_right"]:
            # ES: OpenUnlearning's loop, except where even the last token is wrong (paper: 0, OU: 1/n)
            last_wrong = np.flatnonzero(shifted != -100)[:-1][-1]
            if lp[i][last_wrong].argmax() == shifted[last_wrong]:
                assert sc.extraction[i] == pytest.approx(a["es"], abs=1e-9)
                seen_partial = True
        else:
            assert sc.extraction[i] == pytest.approx(a["es"], abs=1e-9)
    assert seen_partial or sc.token_acc.mean() == 1.0


# --------------------------------------------------------------------------- like with like
def _lm(ids, mean_lp):
    n = len(ids)
    mean_lp = np.asarray(mean_lp, dtype=float)
    z = np.zeros(n)
    return S.LMScores(
        np.asarray(ids, dtype=object),
        mean_lp,
        mean_lp * 2,
        np.full(n, 2),
        z,
        z,
        z,
        z,
        z,
        z,
        np.asarray(["a"] * n, dtype=object),
        None,
        np.ones(n),
    )


def test_other_and_world_compare_the_answer_with_perturbed_answers_of_its_form():
    ids = ["w0", "w1"]
    ans, p0, p1 = [-0.1, -0.5], [-2.0, -0.4], [-3.0, -1.0]
    table = {
        "forget": _lm(["f"], [-1.0]),
        "world": _lm(ids, ans),
        "world@pert0": _lm(ids, p0),
        "world@pert1": _lm(["w1", "w0"], [p1[1], p1[0]]),
        "world@para": _lm(ids, [-9.0, -9.0]),
    }  # a paraphrase is not the base on world: ignored
    out = compute_metrics(EvalInputs(table, modality="causal_lm"), ["tofu"])
    # TOFU: prob = p_ans / (p_ans + sum_k p_pert_k); R = exp(mean_k lp_pert - lp_ans); mean(max(0, 1 - R))
    prob = [math.exp(ans[i]) / (math.exp(ans[i]) + math.exp(p0[i]) + math.exp(p1[i])) for i in range(2)]
    r = [math.exp((p0[i] + p1[i]) / 2 - ans[i]) for i in range(2)]
    assert out["prob_world"] == pytest.approx(np.mean(prob), abs=1e-12)
    assert out["truth_ratio_world"] == pytest.approx(np.mean([max(0.0, 1 - x) for x in r]), abs=1e-12)
    assert M.truth_ratios(table, "world") == pytest.approx(r)


def test_the_profiles_task_builds_like_with_like_variants(lm_task):
    ev = lm_task.eval_sets
    assert {"forget@para", "retain_eval@para", "other@pert0", "world@pert0"} <= set(ev)
    assert not {"other@para", "world@para"} & set(ev)  # their truth ratio divides by the answer
    from unlearnkit.data.profiles import generate_profiles

    d = generate_profiles(n_people=10, qa_per_person=3, n_other=2)
    w = next(r for r in d.rows if r["kind"] == "world")
    assert w["answer"] == "Paris" and w["perturbed_answers"] == ["Lyon", "Marseille", "Nice"]
    # the first rows are birth places: "<name> was born in <city>." with a wrong city, in the
    # answer's form for the other people and in the paraphrase's for the training people
    for kind, base in (("retain", "answer"), ("direct", "paraphrased_answer")):
        r = next(r for r in d.rows if r["kind"] == kind)
        prefix = r[base].split(r["value"])[0]
        assert prefix and all(p.startswith(prefix) and r["value"] not in p for p in r["perturbed_answers"]), kind


def test_tofu_values_are_computed_once_per_inputs(monkeypatch):
    calls = []
    real = M.tofu_values
    monkeypatch.setattr(M, "tofu_values", lambda t: calls.append(1) or real(t))
    table = {"forget": _lm(["f"], [-1.0]), "retain": _lm(["r"], [-0.5])}
    compute_metrics(EvalInputs(table, modality="causal_lm"), ["tofu", "tofu_model_utility"])
    assert len(calls) == 1


def test_headline_values_that_cannot_be_computed_are_nan_and_say_why():
    table = {"forget": _lm(["f"], [-1.0]), "retain": _lm(["r"], [-0.5])}
    inputs = EvalInputs(table, table, modality="causal_lm")
    out = compute_metrics(inputs, ["tofu", "tofu_forget_quality", "tofu_model_utility"])
    for k in ("truth_ratio_forget", "forget_quality", "model_utility", "truth_ratio_retain"):
        assert k in out and math.isnan(out[k]), k
    why = M.not_computed(inputs)
    assert "paraphrased" in why["forget_quality"] and "_perturbed" in why["truth_ratio_forget"]
    assert "other, world" in why["model_utility"]


# --------------------------------------------------------------------------- generation
class _Babbler(torch.nn.Module):
    """A causal LM stand-in that always predicts ``token`` (never eos unless asked)."""

    def __init__(self, vocab: int, token: int):
        super().__init__()
        self.vocab, self.token = vocab, token
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=True):
        from types import SimpleNamespace

        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., self.token] = 1.0
        return SimpleNamespace(logits=logits, past_key_values=None)


def test_generation_runs_up_to_200_new_tokens_and_stops_at_eos():
    assert S.GEN_MAX_NEW_TOKENS == 200
    prompts = [torch.tensor([3, 4]), torch.tensor([5])]
    never = S.decode_batch(_Babbler(10, 7), prompts, pad_id=0, eos_id=2, max_new_tokens=200, device="cpu")
    assert [len(r) for r in never] == [200, 200]  # no eos: the whole budget, as TOFU / OpenUnlearning
    eos = S.decode_batch(_Babbler(10, 2), prompts, pad_id=0, eos_id=2, max_new_tokens=200, device="cpu")
    assert eos == [[2], [2]]  # stops at eos (kept), whatever the budget


def test_rouge_recall_never_falls_as_a_generation_grows():
    """Why the cap matters (and why it is 200): recall can only rise with more generated text,
    so a shorter cap could only under-count; a row that ends at eos is the same under any cap."""
    ref = "The author of the book was born in Paris, France."
    words = "Oh the author was born in Paris France of the book".split()
    vals = [lmm.rouge_l_recall(" ".join(words[:k]), ref) for k in range(len(words) + 1)]
    assert all(b >= a for a, b in zip(vals, vals[1:])) and vals[-1] > vals[4]


def test_generations_on_the_task_equal_any_longer_cap_once_they_end(lm_task):
    data, tok = lm_task.forget, lm_task.adapter.tokenizer
    long = S.generate_answers(lm_task.original, data, tok, "cpu")
    spans = S._answer_spans(data)
    short = S.generate_answers(lm_task.original, data, tok, "cpu", max_new_tokens=max(e - s for s, e in spans) + 4)
    assert long == short  # the original ends every answer with eos within the old cap


# --------------------------------------------------------------------------- TOFU on disk
def _tofu_folder(tmp_path, n_authors: int = 4, forget: tuple[int, ...] = (3,), holdout: bool = True):
    """A hand-made TOFU-style folder: ``full`` (20 questions per author, in order), the
    ``forget01`` / ``retain99`` splits and their ``*_perturbed`` files, ``retain_perturbed``,
    ``real_authors_perturbed``, ``world_facts_perturbed`` and a ``holdout01`` of new authors."""

    def qa(a, j):
        return {"question": f"What is fact {j} of author {a}?", "answer": f"Fact {j} of author {a} is v{a}x{j}."}

    def pert(r, a, j):
        return dict(
            r,
            paraphrased_answer=f"Author {a} has fact {j} v{a}x{j}.",
            perturbed_answer=[f"Author {a} has fact {j} w{k}x{j}." for k in range(3)],
            paraphrased_question=f"Tell me fact {j} about author {a}.",
        )

    full = [qa(a, j) for a in range(n_authors) for j in range(20)]
    files = {
        "full": full,
        "forget01": [qa(a, j) for a in forget for j in range(20)],
        "forget01_perturbed": [pert(qa(a, j), a, j) for a in forget for j in range(20)],
        "retain99": [qa(a, j) for a in range(n_authors) if a not in forget for j in range(20)],
        "retain_perturbed": [pert(qa(0, j), 0, j) for j in range(20)],
        "real_authors_perturbed": [
            {
                "question": f"Who wrote book {i}?",
                "answer": f"Writer {i}",
                "perturbed_answer": [f"Writer {i + k}" for k in (10, 20, 30)],
            }
            for i in range(4)
        ],
        "world_facts_perturbed": [
            {
                "question": f"Capital of land {i}?",
                "answer": f"City {i}",
                "perturbed_answer": [f"City {i + k}" for k in (10, 20, 30)],
            }
            for i in range(4)
        ],
    }
    if holdout:
        files["holdout01"] = [qa(a, j) for a in (90,) for j in range(20)]
    for name, rows in files.items():
        (tmp_path / f"{name}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def test_tofu_folder_gives_forget_quality_truth_ratios_and_utility_their_inputs(tmp_path):
    from unlearnkit.data.profiles import load_tofu
    from unlearnkit.modalities.causal_lm.task import _profile_rows

    path = _tofu_folder(tmp_path)
    ds = load_tofu(path)
    # the trained full rows of the forget author carry forget01_perturbed's variants
    f = [r for r in ds.split("full") if r["subject_id"] == "tofu-author-003"]
    assert len(f) == 20 and all(r["paraphrased_answer"] and len(r["perturbed_answers"]) == 3 for r in f)
    rows = _profile_rows(str(path), "forget01", 0, 0, 0, 0, retain_eval_size=200)
    sets = rows["sets"]
    assert len(rows["forget_ids"]) == 20
    assert {
        "forget@para",
        "forget@pert0",
        "forget@pert2",
        "retain_eval@para",
        "other",
        "other@pert0",
        "world",
        "world@pert2",
        "forget_paraphrase",
    } <= set(sets)
    assert not {"other@para", "world@para"} & set(sets)
    # retain_eval is TOFU's retain_perturbed (the retain questions with variants); other / world are
    # the real-author and world-fact files, evaluated but not trained on
    assert {r["question"] for r in sets["retain_eval"]} == {f"What is fact {j} of author 0?" for j in range(20)}
    assert [r["answer"] for r in sets["world"]] == [f"City {i}" for i in range(4)]
    assert [r["answer"] for r in sets["world@pert0"]] == [f"City {i + 10}" for i in range(4)]
    assert not {r["example_id"] for r in sets["other"] + sets["world"]} & {r["example_id"] for r in sets["train"]}
    assert {r["example_id"] for r in sets["train"]} == {r["example_id"] for r in ds.split("full")}


def test_tofu_task_computes_every_headline_metric(tmp_path):
    from unlearnkit.engines.loop import TrainConfig
    from unlearnkit.modalities.causal_lm.task import make_lm_task

    task = make_lm_task(
        str(_tofu_folder(tmp_path)),
        forget="forget01",
        model={"hidden": 32, "layers": 1, "heads": 2, "intermediate": 64},
        vocab_size=300,
        device="cpu",
        recipe=TrainConfig(epochs=1, batch_size=32, lr=1e-3, optimizer="adamw"),
    )
    sc = S.score_lm_splits(task.original, task)
    inputs = EvalInputs(sc, sc, modality="causal_lm")
    out = compute_metrics(inputs, ["tofu", "tofu_forget_quality", "tofu_model_utility"])
    assert M.not_computed(inputs) == {}
    for k in (
        "forget_quality",
        "model_utility",
        "truth_ratio_forget",
        "truth_ratio_retain",
        "truth_ratio_other",
        "truth_ratio_world",
        "prob_other",
        "prob_world",
    ):
        assert np.isfinite(out[k]), k
    assert out["forget_quality"] == 1.0  # the model against itself


def test_tofu_layout_is_checked(tmp_path):
    from unlearnkit.data.profiles import load_tofu

    path = _tofu_folder(tmp_path)
    full = (path / "full.json").read_text().splitlines()
    (path / "full.json").write_text("\n".join(full[:-1]) + "\n")  # 79 questions: not 20 per author
    with pytest.raises(DataError, match=r"'full' has 79 questions.*20 questions per author") as e:
        load_tofu(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    (path / "full.json").write_text("\n".join(full) + "\n")
    fp = (path / "forget01.json").read_text().splitlines()
    (path / "forget01.json").write_text("\n".join(fp[:10]) + "\n")  # half an author
    with pytest.raises(DataError, match=r"'forget01' holds 10 of the 20 questions of author 3"):
        load_tofu(path)
    (path / "forget01.json").write_text("\n".join(fp[:19] + [json.dumps({"question": "Who?", "answer": "No one."})]))
    with pytest.raises(DataError, match=r"question 19 of split 'forget01'.*not in split 'full'"):
        load_tofu(path)
    (path / "forget01.json").write_text("\n".join(fp[:10]) + "\n")
    (path / "full.json").unlink()  # without full, by position: the sizes must be whole authors
    with pytest.raises(DataError, match=r"'forget01' has 10 questions"):
        load_tofu(path)


def test_evaluation_shows_what_it_could_not_compute(lm_task):
    """Without the forget set's answer variants the truth ratio and forget quality cannot be
    computed: the evaluation says so with why, instead of silently leaving them out."""
    import dataclasses

    from unlearnkit.orchestration.experiment import evaluate_model

    sets = {k: v for k, v in lm_task.eval_sets.items() if not k.startswith("forget@")}
    task = dataclasses.replace(lm_task, eval_sets=sets)
    ev = evaluate_model(task.original, task)
    assert "truth_ratio_forget" in ev.not_computed and "forget_quality" in ev.not_computed
    full = evaluate_model(lm_task.original, lm_task)
    assert "truth_ratio_forget" not in full.not_computed
