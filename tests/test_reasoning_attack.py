"""The reasoning generator, the relaxed-indicator attack and an end-to-end run on a tiny task."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from unlearnkit.data.profiles import load_profiles_jsonl
from unlearnkit.data.reasoning import (
    facts_of,
    final_answer,
    generate_reasoning,
    parse_trace,
    step_values,
    trace_matches_question,
)
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.evaluation.reasoning_attack import (
    AttackConfig,
    ReasoningSetup,
    project_capped_simplex,
    random_deletions,
    relaxed_indicator,
    run_attack,
    shifted_objective,
)
from unlearnkit.service.reasoning_gate import exact_answer_gate, gate_verdict, service_policy


# --------------------------------------------------------------------------- the generator
def test_generator_is_deterministic_and_well_formed(tmp_path):
    a = generate_reasoning(n_train=60, n_holdout=15, n_functions=3, n_values=6, seed=3)
    b = generate_reasoning(n_train=60, n_holdout=15, n_functions=3, n_values=6, seed=3)
    c = generate_reasoning(n_train=60, n_holdout=15, n_functions=3, n_values=6, seed=4)
    assert a.train == b.train and a.holdout == b.holdout and a.functions == b.functions
    assert [r["answer"] for r in a.train] != [r["answer"] for r in c.train]
    rows = a.train + a.holdout
    assert len({r["question"] for r in rows}) == len(rows)  # holdout questions are never trained
    assert len({r["example_id"] for r in rows}) == len(rows)
    for r in rows:
        parsed = parse_trace(r["answer"])
        assert parsed is not None and trace_matches_question(r["question"], r["answer"])
        # every step is a fact of the world and the answer is the chain's value
        values = step_values(r["start"], r["functions"], a.functions)
        assert [s[3] for s in parsed["steps"]] == values[1:] and parsed["answer"] == values[-1]
        assert (r["subject_id"] or "").startswith("contributor/") == r["example_id"].startswith("reasoning/train/")
        for wrong in r["perturbed_answers"]:  # plausible but wrong: well formed, another result
            assert parse_trace(wrong) is not None and wrong != r["answer"]
    # sub-steps are shared: every fact a holdout question needs is taught by some training trace
    counts = a.fact_counts()
    assert sum(counts.values()) == sum(len(set(facts_of(r["answer"]))) for r in a.train)
    assert max(counts.values()) > 1
    fact = facts_of(a.holdout[0]["answer"])[0]
    assert all(fact in facts_of(r["answer"]) for r in a.train if r["example_id"] in a.examples_with_fact(fact))
    # the folder is the causal-LM QA layout
    ds = load_profiles_jsonl(a.save(tmp_path / "r"))
    assert [r["answer"] for r in ds.split("retain")] == [r["answer"] for r in a.train]
    assert len(ds.split("holdout")) == 15


def test_trace_parser_rejects_implausible_traces():
    good = "b=f(3)=7; c=g(7)=2. Answer: 2"
    assert parse_trace(good)["answer"] == 2 and final_answer(good) == 2
    assert parse_trace("b=f(3)=7; c=g(6)=2. Answer: 2") is None  # the chain is broken
    assert parse_trace("b=f(3)=7; c=g(7)=2. Answer: 5") is None  # the answer is not the last result
    assert parse_trace("c=f(3)=7; b=g(7)=2. Answer: 2") is None  # variables out of order
    assert parse_trace("b=f(3)=7 c=g(7)=2 Answer 2") is None
    assert trace_matches_question("a=3, b=f(a), c=g(b). c?", good)
    assert not trace_matches_question("a=3, b=g(a), c=g(b). c?", good)
    assert final_answer("no answer here") is None


def test_generator_rejects_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="n_values"):
        generate_reasoning(n_values=11)
    with pytest.raises(ConfigError, match="distinct questions"):
        generate_reasoning(n_train=100, n_holdout=10, n_functions=2, n_values=3, max_steps=2)
    with pytest.raises(ConfigError, match="min_steps"):
        generate_reasoning(min_steps=3, max_steps=2)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "other.txt").write_text("not ours")
    with pytest.raises(DataError, match="not a reasoning dataset"):
        generate_reasoning(n_train=10, n_holdout=5).save(tmp_path / "x")
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["other.txt"]  # nothing half-written


# --------------------------------------------------------------------------- the relaxed indicator
def test_capped_simplex_projection():
    v = torch.tensor([3.0, -1.0, 0.5, 0.2, 0.9])
    w = project_capped_simplex(v, 2)
    assert abs(float(w.sum()) - 2) < 1e-4 and float(w.min()) >= 0 and float(w.max()) <= 1
    assert float(w[0]) == 1.0 and float(w[1]) == 0.0  # the largest is capped, the smallest dropped
    with pytest.raises(ConfigError):
        project_capped_simplex(v, 6)


def _train(model: nn.Module, xs: torch.Tensor, ys: torch.Tensor, steps: int = 200) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xs), ys).backward()
        opt.step()


def test_relaxed_indicator_ranks_the_planted_example_first():
    """A linear classifier on one-hot features: the target shares its feature only with the
    planted example (label 1) and with nothing else; the unrelated examples sit on other features.
    Pushing the target towards label 0 should single out the planted example."""
    torch.manual_seed(0)
    n_feat = 6
    xs = torch.eye(n_feat)[[0, 1, 2, 3, 4, 5, 1, 2]] + 0.05 * torch.randn(8, n_feat)
    ys = torch.tensor([1, 0, 1, 0, 1, 0, 0, 1])
    model = nn.Linear(n_feat, 2)
    _train(model, xs, ys)
    target = torch.eye(n_feat)[[0]]
    grads = []
    for i in range(len(xs)):
        model.zero_grad()
        nn.functional.cross_entropy(model(xs[i : i + 1]), ys[i : i + 1]).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).clone())
    grads = torch.stack(grads)
    obj = shifted_objective(model, lambda m: nn.functional.cross_entropy(m(target), torch.tensor([0])))
    before = [p.detach().clone() for p in model.parameters()]
    res = relaxed_indicator(grads, obj, budget=1, influence_scale=20.0, steps=20, lr=0.3)
    assert res.chosen == [0]
    # the unrelated examples align only through the shared bias: well below the planted one
    assert int(res.alignment.argmax()) == 0 and float(res.alignment[0]) > 1.5 * float(res.alignment[1:].abs().max())
    assert res.objective[-1] < res.objective[0]  # the relaxed objective went down
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the model is untouched
    # a budget of 2 keeps the planted one and the optimised weights put most mass on it
    res2 = relaxed_indicator(grads, obj, budget=2, influence_scale=20.0, steps=20, lr=0.3)
    assert 0 in res2.chosen and float(res2.weights[0]) == float(res2.weights.max())
    with pytest.raises(ConfigError, match="budget"):
        relaxed_indicator(grads, obj, budget=9, influence_scale=1.0)


def test_attack_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="budget"):
        AttackConfig(budget=0)
    with pytest.raises(ConfigError):
        AttackConfig(lr=0)
    with pytest.raises(ConfigError, match="k must"):
        random_deletions(["a", "b"], 3, seed=0)
    assert random_deletions(list("abcdef"), 3, seed=1) == random_deletions(list("abcdef"), 3, seed=1)


# --------------------------------------------------------------------------- end to end
def test_end_to_end_on_a_tiny_task(tmp_path):
    from unlearnkit.modalities.causal_lm.task import default_lm_recipe

    data = generate_reasoning(n_train=32, n_holdout=8, n_functions=3, n_values=5, seed=0)
    folder = data.save(tmp_path / "r")
    recipe = replace(default_lm_recipe(), epochs=2, batch_size=16)
    sizes = {"hidden": 32, "layers": 1, "heads": 2, "intermediate": 64}
    setup = ReasoningSetup(folder, data, sizes, recipe, seed=0, retain_eval_size=8)
    cfg = AttackConfig(budget=4, steps=3, max_new_tokens=24)
    gate = exact_answer_gate(checks=False)
    out = run_attack(setup, n_targets=2, cfg=cfg, n_random=1, black_box=False, gate=gate, require_correct=False)

    train_ids = {r["example_id"] for r in data.train}
    wb = out["white_box"]
    assert len(wb["deletion_ids"]) == 4 and set(wb["deletion_ids"]) <= train_ids
    assert len(out["random"]) == 1 and len(out["random"][0]["deletion_ids"]) == 4
    for t in wb["plan"]["targets"]:  # the attacker's traces change the final answer
        assert t["wrong_trace"] != t["trace"] and t["wrong_answer"] != t["answer"]
        assert t["trace"] == next(r["answer"] for r in data.holdout if r["example_id"] == t["example_id"])
    for part in (wb, out["random"][0]):
        judged = part["targets"]
        assert len(judged) == 2
        assert part["success"] == sum(j["wrong"] for j in judged) / 2
        assert part["plausible_success"] <= part["success"]
        assert all(j["wrong"] == (j["answer"] != j["correct_answer"]) for j in judged)
        g = part["gate"]
        assert g["refused"] is False and g["n_forget"] == 4 and not g["checks_run"]
        assert g["caught"] == (g["refused"] or g["held"])
        assert g["canary"]["excess_loss_shift"] == 0.0  # the exact answer is its own reference
        assert g["canary"]["reference_loss_shift"] > 0.0  # retraining without data moved the canary
    assert 0.0 <= out["original"]["other_accuracy"] <= 1.0

    # the gate refuses a request over the policy's size limit, before any retraining
    task = setup.task(sorted(train_ids)[:12])
    pol = service_policy(task)
    assert pol.max_fraction_per_request * len(task.train) < 12
    v = gate_verdict(
        task, task.original, task.original, pol, [str(i) for i in task.split.test.example_ids[:4]], checks=False
    )
    assert v["refused"] and v["caught"] and not v["held"] and v["canary"]["reference_loss_shift"] == 0.0
