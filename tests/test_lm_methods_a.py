"""Language-model unlearning methods (idk_dpo, wga, undial, ce_u, dto), their losses checked by
hand on tiny tensors, replace_answers, the adapters' per_example_kl, GradDiff's KL retain term
and SimNPO's length normalisation on a causal LM."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")

from unlearnkit.data.profiles import generate_profiles  # noqa: E402
from unlearnkit.errors import ConfigError, DataError  # noqa: E402
from unlearnkit.methods import get_method  # noqa: E402
from unlearnkit.methods.ce_u import drop_first_answer_tokens  # noqa: E402
from unlearnkit.methods.dto import background_surprisal, target_token_mask  # noqa: E402
from unlearnkit.methods.idk_dpo import IDK_ANSWERS, idk_answers  # noqa: E402
from unlearnkit.methods.losses import (  # noqa: E402
    ce_u_loss,
    ce_u_target,
    dpo_loss,
    kl_to_teacher,
    prediction_positions,
    simnpo_loss,
    undial_loss,
    wga_loss,
)
from unlearnkit.modalities.causal_lm.adapter import (  # noqa: E402
    IGNORE,
    CausalLMAdapter,
    TokenExampleSet,
    encode_qa,
    replace_answers,
)
from unlearnkit.modalities.classifier.adapter import ClassifierAdapter  # noqa: E402

NEW = ("idk_dpo", "wga", "undial", "ce_u", "dto")


def nll(task, model, data) -> float:
    with torch.no_grad():
        return float(torch.cat([task.adapter.per_example_loss(model, b) for b in data.batches(64)]).mean())


# --------------------------------------------------------------------------- losses by hand
def test_dpo_loss_is_2_log2_over_beta_at_init_and_falls_with_the_margin():
    lw, ll = torch.tensor([-3.0, -5.0]), torch.tensor([-1.0, -2.0])
    for beta in (0.02, 0.1, 1.0):
        assert dpo_loss(lw, lw, ll, ll, beta).item() == pytest.approx(2 / beta * math.log(2))
    # preferred up by 1 nat and dispreferred down by 1: margin 2 -> -(2/beta) log sigmoid(2 beta)
    got = dpo_loss(lw + 1, lw, ll - 1, ll, beta=0.5).item()
    assert got == pytest.approx(-4 * math.log(1 / (1 + math.exp(-1.0))))
    assert got < 4 * math.log(2)


def test_wga_weights_each_token_by_its_detached_probability_to_the_power_beta():
    p = torch.tensor([0.5, 0.25, 0.9])
    lp = p.log().requires_grad_()
    loss = wga_loss(lp, beta=2.0)
    assert loss.item() == pytest.approx(float((p**2 * p.log()).mean()))
    loss.backward()  # the weights are constants: d/d log p_t = p_t^beta / N
    assert torch.allclose(lp.grad, p**2 / 3)
    assert wga_loss(p.log(), beta=0.0).item() == pytest.approx(float(p.log().mean()))  # plain ascent


def test_undial_is_plain_distillation_at_gamma_zero_and_lowers_only_the_target():
    z = torch.randn(4, 7, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 3, 6, 2])
    assert undial_loss(z, z, y, gamma=0.0).item() == pytest.approx(0.0, abs=1e-6)
    student = z.clone()
    student[:, 1] += 1.0
    plain = F.kl_div(F.log_softmax(student, -1), F.log_softmax(z, -1), log_target=True, reduction="batchmean")
    assert undial_loss(student, z, y, gamma=0.0).item() == pytest.approx(plain.item(), rel=1e-5)
    # gamma > 0: the teacher is softmax(z - gamma e_y); its minimiser is that distribution
    adj = z.clone()
    adj[torch.arange(4), y] -= 5.0
    assert undial_loss(adj, z, y, gamma=5.0).item() == pytest.approx(0.0, abs=1e-6)
    assert undial_loss(z, z, y, gamma=5.0).item() > 0.1


def test_ce_u_target_puts_no_mass_on_the_true_token_and_gradient_is_p_minus_q():
    z = torch.randn(3, 6, generator=torch.Generator().manual_seed(1), requires_grad=True)
    y = torch.tensor([2, 0, 5])
    q = ce_u_target(z, y)
    assert torch.all(q[torch.arange(3), y] == 0) and torch.allclose(q.sum(-1), torch.ones(3))
    p = torch.softmax(z.detach(), -1)
    others = p.clone()
    others[torch.arange(3), y] = 0
    assert torch.allclose(q, others / others.sum(-1, keepdim=True))  # the model's own prediction, renormalised
    ce_u_loss(z, y).backward()
    assert torch.allclose(z.grad, (p - q) / 3, atol=1e-6)


def test_prediction_positions_shift_causal_lm_labels_and_pass_classifiers_through():
    logits = torch.arange(2 * 4 * 3, dtype=torch.float).reshape(2, 4, 3)
    labels = torch.tensor([[IGNORE, IGNORE, 1, 2], [IGNORE, 0, IGNORE, IGNORE]])
    flat, tgt, rows = prediction_positions(logits, labels)
    assert tgt.tolist() == [1, 2, 0] and rows.tolist() == [0, 0, 1]
    assert torch.equal(flat, torch.stack([logits[0, 1], logits[0, 2], logits[1, 0]]))
    c = torch.randn(5, 3)
    f2, t2, r2 = prediction_positions(c, torch.tensor([0, 1, 2, 0, 1]))
    assert f2 is c and t2.tolist() == [0, 1, 2, 0, 1] and r2.tolist() == list(range(5))


def test_drop_first_answer_tokens():
    lab = torch.tensor([[IGNORE, 5, 6, 7], [IGNORE, IGNORE, 8, IGNORE]])
    assert drop_first_answer_tokens(lab, 1).tolist() == [[IGNORE, IGNORE, 6, 7], [IGNORE] * 4]
    assert drop_first_answer_tokens(lab, 0) is lab


# --------------------------------------------------------------------------- adapters
def test_classifier_per_example_kl_matches_kl_to_teacher():
    s, t = torch.randn(6, 4), torch.randn(6, 4)
    kl = ClassifierAdapter(4).per_example_kl(s, t, {})
    assert kl.shape == (6,) and kl.min() >= 0
    assert kl.mean().item() == pytest.approx(kl_to_teacher(s, t).item(), rel=1e-5)
    assert ClassifierAdapter(4).per_example_kl(t, t, {}).abs().max() < 1e-6


def test_causal_lm_per_example_kl_averages_answer_tokens_only():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 5, 7, generator=g), torch.randn(2, 5, 7, generator=g)
    labels = torch.tensor([[IGNORE, IGNORE, 3, 4, IGNORE], [IGNORE, 1, 2, 3, 4]])
    kl = CausalLMAdapter().per_example_kl(s, t, {"labels": labels})
    tok = (F.softmax(t, -1) * (F.log_softmax(t, -1) - F.log_softmax(s, -1))).sum(-1)  # (B, T)
    assert kl[0].item() == pytest.approx(tok[0, 1:3].mean().item(), rel=1e-5)  # predictions of tokens 2, 3
    assert kl[1].item() == pytest.approx(tok[1, 0:4].mean().item(), rel=1e-5)
    t2 = t.clone()
    t2[0, 0] += 10  # a question position: not scored
    assert torch.allclose(CausalLMAdapter().per_example_kl(s, t2, {"labels": labels}), kl)


def test_replace_answers_round_trips_with_encode_qa(lm_task):
    tok = lm_task.adapter.tokenizer
    d = generate_profiles(n_people=10, seed=0, qa_per_person=3, n_other=2)
    rows = [r for r in d.training_rows() if r["kind"] == "direct"][:8]
    data = encode_qa(rows, tok, max_length=4096)
    same = replace_answers(data, [r["answer"] for r in rows], tok)
    assert torch.equal(same.inputs, data.inputs) and torch.equal(same.labels, data.labels)
    assert torch.equal(same.attention_mask, data.attention_mask)
    new = [IDK_ANSWERS[i] for i in range(len(rows))]
    swapped = replace_answers(data, new, tok)
    expect = encode_qa([dict(r, answer=a) for r, a in zip(rows, new)], tok, max_length=4096)
    assert torch.equal(swapped.inputs, expect.inputs) and torch.equal(swapped.labels, expect.labels)
    assert list(swapped.example_ids) == list(data.example_ids)
    assert list(swapped.subject_ids) == list(data.subject_ids)
    with pytest.raises(DataError, match="empty"):
        replace_answers(data, ["  "] + new[1:], tok)
    with pytest.raises(DataError, match="one per example"):
        replace_answers(data, new[:3], tok)
    with pytest.raises(DataError, match=str(data.example_ids[0])):
        replace_answers(data, ["word " * 200] + new[1:], tok, max_length=64)


# --------------------------------------------------------------------------- methods on the tiny LM
@pytest.mark.parametrize("name", NEW)
def test_method_forgets_the_answers_and_keeps_the_retained_ones(lm_task, name):
    before_f = nll(lm_task, lm_task.original, lm_task.forget)
    before_r = nll(lm_task, lm_task.original, lm_task.eval_sets["retain_eval"])
    assert before_f < 0.05 and before_r < 0.05  # memorised
    # CE-U's language-model default has no retain term (retain_weight 0, chosen on the
    # 100-person task); on this tiny task that costs 0.89 retain NLL, so it runs with one here
    params = {"retain_weight": 1.0} if name == "ce_u" else {}
    res = get_method(name, **params).unlearn(lm_task, seed=0)
    f = nll(lm_task, res.model, lm_task.forget)
    r = nll(lm_task, res.model, lm_task.eval_sets["retain_eval"])
    assert 0 < res.cost.steps <= 40 and res.cost.examples_forward >= res.cost.examples_backward > 0
    assert f > 2.5, f"{name}: forget NLL {before_f:.3f} -> {f:.3f}"
    assert r < 0.5 and r < f / 5, f"{name}: retain NLL {before_r:.3f} -> {r:.3f} (forget {f:.3f})"


@pytest.mark.parametrize(
    "name,bad",
    [
        ("idk_dpo", {"beta": 0}),
        ("idk_dpo", {"retain_weight": -1}),
        ("wga", {"beta": -1}),
        ("undial", {"gamma": -1}),
        ("ce_u", {"ignore_first": -1}),
        ("dto", {"target_ratio": 0}),
        ("dto", {"target_ratio": 1.5}),
        ("dto", {"beta": 0}),
        ("graddiff", {"retain_loss": "mse"}),
        ("wga", {"gamma": 1}),
    ],
)
def test_bad_hyperparameters_raise_config_error(name, bad):
    with pytest.raises(ConfigError):
        get_method(name, **bad)


def test_dpo_and_npo_start_at_2_log2_over_beta_on_the_lm(lm_task):
    for name, beta in (("idk_dpo", 0.05), ("npo", 0.5)):
        res = get_method(name, beta=beta, retain_weight=0.0, max_steps=1).unlearn(lm_task, seed=0)
        assert res.cost.losses[0] == pytest.approx(2 / beta * math.log(2), rel=1e-5)


def test_idk_answers_are_seeded_and_runs_are_deterministic(lm_task):
    assert len(set(IDK_ANSWERS)) >= 20
    assert idk_answers(9, 0) == idk_answers(9, 0) and set(idk_answers(50, 1)) <= set(IDK_ANSWERS)
    a, b = (get_method("idk_dpo", max_steps=2).unlearn(lm_task, seed=3).model for _ in range(2))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_dto_selects_the_tokens_the_background_cannot_predict():
    # background answers: "1 2 3" repeated; forget answer "1 2 9 3": 9 never follows 2 there
    def ex(rows):
        ids = torch.tensor([[0] + r for r in rows])
        lab = ids.clone()
        lab[:, 0] = IGNORE
        return TokenExampleSet(ids, lab, np.array([f"e{i}" for i in range(len(rows))]))

    bg, fg = ex([[1, 2, 3]] * 5), ex([[1, 2, 9, 3]])
    s = background_surprisal(fg, bg, vocab_size=10)
    assert s[0, 0] == 0 and s[0, 3] > s[0, 1] and s[0, 3] > s[0, 2]
    m = target_token_mask(s, fg.labels, 0.25)
    assert m[0].tolist() == [False, False, False, True, False]  # ceil(0.25 * 4) = 1 token: the 9
    assert target_token_mask(s, fg.labels, 1.0)[0].tolist() == [False, True, True, True, True]


def test_graddiff_kl_retain_term(lm_task):
    assert get_method("graddiff").params.retain_loss == "nll"
    kw = dict(alpha=0.5, lr=2e-3, batch_size=16, max_steps=3)
    nll_run = get_method("graddiff", **kw).unlearn(lm_task, seed=0)
    same = get_method("graddiff", retain_loss="nll", **kw).unlearn(lm_task, seed=0)
    assert all(torch.equal(x, y) for x, y in zip(nll_run.model.state_dict().values(), same.model.state_dict().values()))
    kl_run = get_method("graddiff", retain_loss="kl", **kw).unlearn(lm_task, seed=0)
    # KL to the original is 0 at the start: the first loss is the forget term alone
    first = next(lm_task.forget.batches(16))  # all 9 forget rows; the loss is a mean
    forget0 = lm_task.adapter.per_example_loss(lm_task.original, first).mean().item()
    assert kl_run.cost.losses[0] == pytest.approx(-0.5 * forget0, rel=1e-4)
    assert nll_run.cost.losses[0] != pytest.approx(kl_run.cost.losses[0], rel=1e-4)
    # the teacher's pass over each retain batch is counted
    assert kl_run.cost.examples_forward == nll_run.cost.examples_forward + 3 * 16
    long = get_method("graddiff", retain_loss="kl", alpha=0.5, lr=2e-3, batch_size=8, epochs=10)
    model = long.unlearn(lm_task, seed=0).model
    f, r = nll(lm_task, model, lm_task.forget), nll(lm_task, model, lm_task.eval_sets["retain_eval"])
    assert f > 2.5 and r < f / 5


def test_simnpo_normalises_by_answer_length_on_the_lm(lm_task):
    beta, gamma = 2.5, 0.0
    res = get_method("simnpo", beta=beta, gamma=gamma, retain_weight=0.0, max_steps=1).unlearn(lm_task, seed=0)
    b = next(lm_task.forget.batches(64))
    ad = lm_task.adapter
    with torch.no_grad():
        ll = ad.log_likelihood(ad.logits(lm_task.original, b), b["y"])
    length = ad.answer_length(b["y"])
    assert res.cost.losses[0] == pytest.approx(simnpo_loss(ll, beta, gamma, length).item(), rel=1e-5)
    assert res.cost.losses[0] != pytest.approx(simnpo_loss(ll, beta, gamma, 1).item(), rel=1e-3)


def test_original_is_untouched(lm_task):
    before = copy.deepcopy(lm_task.original.state_dict())
    get_method("undial", max_steps=2).unlearn(lm_task, seed=0)
    assert all(torch.equal(before[k], v) for k, v in lm_task.original.state_dict().items())
