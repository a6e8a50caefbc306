"""The comparator's language-model views (``unlearnkit.ui.lm``) on a tiny Llama trained on
generated profiles (the LM command-line tests' model) and one NPO run evaluated against its
retrained reference: the overview reads what the runs stored, the probes read or compute the
project's own metrics, the question browser gives greedy answers and per-token
log-probabilities that agree with the evaluation's scoring and with a forward pass done here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from service_support import train_home
from test_lm_cli import TINY  # the tiny Llama the LM command-line tests train
from unlearnkit.cli import app
from unlearnkit.orchestration.experiment import Workspace
from unlearnkit.ui import lm
from unlearnkit.ui.models import UIError, clear_caches, resolve_model, resolve_pair

pytest.importorskip("transformers")
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def lm_home(tmp_path_factory):
    """``(home, train run id, NPO run id)``: a tiny Llama and one evaluated NPO run."""
    h, run = train_home(tmp_path_factory.mktemp("uilm") / "home", *TINY)
    res = CliRunner().invoke(
        app, ["unlearn", "--home", str(h), "--from", run, "--method", "npo", "--evaluate", "--json"]
    )
    assert res.exit_code == 0, res.output
    clear_caches()
    return h, run, json.loads(res.stdout)["run_id"]


def _finite_or_none(obj) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_finite_or_none(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite_or_none(v) for v in obj)
    return True


def test_overview_lists_the_runs_with_their_stored_metrics(lm_home, trained):
    h, train, npo = lm_home
    ws = Workspace.open(h, mode="r")
    o = lm.overview(ws)
    json.dumps(o, allow_nan=False)
    assert _finite_or_none(o)
    runs = {r["id"]: r for r in o["runs"]}
    assert set(runs) == {train, npo}
    stored = ws.store.get(npo).metrics
    r = runs[npo]
    assert r["method"] == "npo" and r["kind"] == "unlearn" and r["seed"] == 0 and r["is_reference"] is False
    assert r["forget_quality"] == pytest.approx(stored["forget_quality"]) and 0 < r["forget_quality"] <= 1
    assert r["model_utility"] == pytest.approx(stored["model_utility"]) and 0 < r["model_utility"] <= 1
    assert r["task_label"] == "profiles · llama 1x64" and r["scenario_label"] == "forget10"
    assert {"privleak", "paraphrase_rouge", "relearn_rouge"} <= set(r["metrics"])
    assert runs[train]["forget_quality"] is None and runs[train]["kind"] == "train"
    (g,) = o["groups"]
    assert g["runs"] == [npo] and o["reference"] == g["reference"]
    assert g["reference"]["forget_quality"] == 1.0 and g["reference"]["model_utility"] is None
    assert "retrain" in g["reference"]["why"]
    assert [c["key"] for c in o["columns"]][:2] == ["forget_quality", "model_utility"]
    assert {c["key"]: c["goal"] for c in o["columns"]}["forget_quality"] == "max"

    # a workspace of classifiers has no LM runs, and its pairs are no LM pairs
    digits, digits_run = trained
    dws = Workspace.open(digits, mode="r")
    with pytest.raises(UIError) as e:
        lm.overview(dws)
    assert e.value.status == 404 and e.value.kind == "no-lm-runs"
    with pytest.raises(UIError) as e:
        lm.questions(dws, digits_run, None, "forget")
    assert e.value.status == 422 and e.value.kind == "wrong-view"


def test_question_browser_matches_the_evaluation_and_a_forward_pass(lm_home):
    from unlearnkit.modalities.causal_lm.scores import score_lm_set

    h, _, npo = lm_home
    ws = Workspace.open(h, mode="existing")
    qs = lm.questions(ws, npo, None, "forget")
    ma, mb = resolve_pair(ws, npo)
    task = ma.task
    assert mb.id == f"reference:{npo}" and qs["n"] == len(task.forget) == 9
    assert [q["id"] for q in qs["questions"]] == list(map(str, task.forget.example_ids))
    assert all(q["question"].endswith("?") and q["answer"] for q in qs["questions"])
    retain = lm.questions(ws, npo, None, "retain")
    assert retain["n"] == len(task.eval_sets["retain_eval"])

    index = 3
    d = lm.question(ws, npo, None, "forget", index)
    json.dumps(d, allow_nan=False)
    assert d["question"] == qs["questions"][index]["question"] and d["answer"] == qs["questions"][index]["answer"]
    ref = resolve_model(ws, f"reference:{npo}").model
    scored = {}
    for side, model in (("a", ma.model), ("b", mb.model), ("reference", ref)):
        got = d[side]
        n = len(got["tokens"])
        assert n == len(got["logprobs"]) == len(got["token_ids"]) > 1 and got["tokens"][-1] == "<eos>"
        assert all(lp <= 0 for lp in got["logprobs"])
        # the evaluation's own scoring of the whole forget set: same mean log-prob, same greedy answer
        sc = scored[side] = score_lm_set(model, task.forget, task.adapter, generate=True)
        assert np.mean(got["logprobs"]) == pytest.approx(sc.mean_logprob[index], abs=1e-4)
        assert got["greedy"] == sc.generations[index]
    assert len(d["diff_a"]) == len(d["a"]["tokens"]) == len(d["diff_b"])
    assert d["diff_b"] == pytest.approx([0.0] * len(d["diff_b"]))  # b is the reference itself

    # one token by hand: log p(token t | prefix) from the raw logits of each model
    t = 2
    row = task.forget.take([index])
    ids = row.inputs[0][row.attention_mask[0].bool()]
    start = int(torch.nonzero(row.labels[0] != -100)[0])
    assert ids[start + t].item() == d["a"]["token_ids"][t]

    def logprob(model) -> float:
        with torch.no_grad():
            logits = model(input_ids=ids[None]).logits[0].float()
        return torch.log_softmax(logits[start + t - 1], -1)[ids[start + t]].item()

    assert d["a"]["logprobs"][t] == pytest.approx(logprob(ma.model), abs=1e-4)
    assert d["diff_a"][t] == pytest.approx(logprob(ma.model) - logprob(ref), abs=1e-4)
    assert d["diff_a"][t] != pytest.approx(0.0, abs=1e-3)  # NPO moved the forget answer

    # the result is cached next to the artifacts and served from there the second time
    assert any((h / "ui-cache").glob("*.json"))
    assert lm.question(ws, npo, None, "forget", index) == d

    with pytest.raises(UIError) as e:
        lm.question(ws, npo, None, "forget", 9)
    assert e.value.status == 404 and e.value.kind == "unknown-question"
    with pytest.raises(UIError) as e:
        lm.questions(ws, npo, None, "holdout")
    assert e.value.status == 422


def test_probes_read_what_is_stored_and_compute_the_rest(lm_home, monkeypatch):
    from unlearnkit.modalities.causal_lm.scores import score_lm_set

    h, _, npo = lm_home
    ws = Workspace.open(h, mode="existing")
    p = lm.probes(ws, npo, None)
    json.dumps(p, allow_nan=False)
    rows = {r["name"]: r for r in p["probes"]}
    assert {r["probe"] for r in p["probes"]} == {"paraphrase", "alias", "multihop", "relearn"} and not p["missing"]
    stored = ws.store.get(npo).metrics
    for key, r in rows.items():
        assert r["goal"] == "reference" and r["help"]
        assert r["source"]["a"] == "stored" and r["a"] == pytest.approx(stored[key])
        assert r["reference"] is not None and r["b"] == r["reference"]  # b is the reference
        assert r["gap_a"] == pytest.approx(r["a"] - r["reference"])
    for m in ("rouge", "exact", "prob", "gain_rouge"):  # the attack on the reference, as the run stored it
        assert rows[f"relearn_{m}"]["reference"] == pytest.approx(stored[f"relearn_ref_{m}"])
    # the reference's paraphrase probe is computed with the project's scoring
    ma, _ = resolve_pair(ws, npo)
    ref = resolve_model(ws, f"reference:{npo}").model
    para = score_lm_set(ref, ma.task.eval_sets["forget_paraphrase"], ma.task.adapter, generate=True)
    assert rows["paraphrase_rouge"]["source"]["reference"] == "computed"
    assert rows["paraphrase_rouge"]["reference"] == pytest.approx(float(np.nanmean(para.rouge)))
    assert rows["paraphrase_prob"]["reference"] == pytest.approx(float(np.mean(para.prob)))

    # the original stored no probes: the cheap ones are computed, the relearning attack only
    # below the size limit, else null with the reason
    monkeypatch.setattr(lm, "RELEARN_MAX_PARAMS", 1000)
    o = {r["name"]: r for r in lm.probes(ws, f"original:{npo}", npo)["probes"]}
    assert o["alias_rouge"]["source"]["a"] == "computed" and o["alias_rouge"]["a"] > o["alias_rouge"]["b"]
    assert o["relearn_rouge"]["a"] is None and "parameters" in o["relearn_rouge"]["why"]["a"]
    assert o["relearn_rouge"]["b"] == pytest.approx(stored["relearn_rouge"])
    monkeypatch.setattr(lm, "RELEARN_MAX_PARAMS", 20_000_000)
    o = {r["name"]: r for r in lm.probes(ws, f"original:{npo}", npo)["probes"]}
    assert o["relearn_rouge"]["source"]["a"] == "computed" and 0 <= o["relearn_rouge"]["a"] <= 1
