"""SatImp, PDU, IMU on language models and OBLIVIATE on the tiny memorised profiles task
(the contract suite's own, ``lm_task``): what each method's paper defines, checked on
crafted inputs, and its behaviour. The public contract suite runs every causal-LM method,
these included, in ``test_lm_methods_contract.py`` and ``test_methods_contract.py``."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from unlearnkit.errors import ConfigError  # noqa: E402
from unlearnkit.methods import METHODS  # noqa: E402
from unlearnkit.methods.satimp import satimp_loss, satimp_weights  # noqa: E402


@torch.no_grad()
def nll(model, data, task) -> float:
    model.eval()
    return float(torch.cat([task.adapter.per_example_loss(model, b) for b in data.batches(64)]).mean())


@pytest.fixture(scope="module")
def base_nll(lm_task):
    return nll(lm_task.original, lm_task.forget, lm_task), nll(lm_task.original, lm_task.retain, lm_task)


# --------------------------------------------------------------------------- SatImp
def test_satimp_weights_match_hand_computed_values():
    p = torch.tensor([0.9, 0.5, 0.1, 0.99])
    lp = p.log().requires_grad_(True)
    # w = p^5 (1 - p)^1
    want = torch.tensor([0.59049 * 0.1, 0.03125 * 0.5, 1e-5 * 0.9, 0.99**5 * 0.01])
    assert torch.allclose(satimp_weights(lp), want, rtol=1e-5)
    assert torch.allclose(satimp_weights(lp, beta1=0.0, beta2=2.0), (1 - p) ** 2, rtol=1e-5)
    loss = satimp_loss(lp)
    assert loss.item() == pytest.approx(float((want * p.log()).mean()), rel=1e-5)
    loss.backward()  # the weights are constants: d loss / d log p_t = w_t / n
    assert torch.allclose(lp.grad, want / 4, rtol=1e-5)


def test_satimp_weights_the_forget_batch_tokens_as_the_formula_says(lm_task):
    """On a fixed forget batch, the method's loss is gamma * mean_t(p^5 (1-p) log p) over the
    answer tokens, each p taken from the full logits independently."""
    from unlearnkit.methods.satimp import SatImp

    model, adapter = lm_task.original, lm_task.adapter
    batch = next(lm_task.forget.batches(4))
    with torch.no_grad():
        logits = adapter.logits(model, batch)
        lp_all = torch.log_softmax(logits[:, :-1].float(), -1)
        tgt = batch["labels"][:, 1:]
        keep = tgt != -100
        lp = lp_all.gather(-1, tgt.clamp_min(0)[..., None])[..., 0][keep]
        p = lp.exp()
        want = float((p**5 * (1 - p) * lp).mean())
        got_lp, mask = adapter.token_log_probs(model, batch)
    assert float(satimp_loss(got_lp[mask])) == pytest.approx(want, rel=1e-4, abs=1e-9)
    m = SatImp()
    assert (m.params.beta1, m.params.beta2, m.params.forget_weight, m.params.retain_weight) == (5.0, 1.0, 1.0, 0.1)


def test_satimp_raises_forget_nll_and_keeps_retain(lm_task, base_nll):
    r = METHODS["satimp"]().unlearn(lm_task, seed=0)
    forget0, retain0 = base_nll
    assert nll(r.model, lm_task.forget, lm_task) > forget0 + 2.0
    assert nll(r.model, lm_task.retain, lm_task) < 0.2


def test_satimp_rejects_bad_settings():
    for bad in ({"beta1": -1}, {"beta2": -0.5}, {"forget_weight": 0}, {"retain_weight": -1}, {"beta1": "5"}):
        with pytest.raises(ConfigError):
            METHODS["satimp"](**bad)


# --------------------------------------------------------------------------- PDU
def test_pdu_forget_loss_is_zero_exactly_for_flat_logits():
    from unlearnkit.methods.pdu import logit_margin_flattening_loss

    flat = torch.full((3, 5), 2.5)
    assert float(logit_margin_flattening_loss(flat)) == 0.0
    z = torch.tensor([[4.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])  # margins 4 - 1 = 3 and 0
    assert float(logit_margin_flattening_loss(z)) == pytest.approx((9.0 + 0.0) / 2)


def test_pdu_dual_variable_moves_as_the_constraint_requires(lm_task):
    """lambda rises by eta * (R - eps) while the retain loss R is above eps (violated), falls
    while it is below (slack, never under 0), and stays at lambda_0 during the warm-up."""
    from unlearnkit.methods.pdu import dual_ascent

    assert dual_ascent(1.0, 0.5, 0.3, 5.0) == pytest.approx(2.0)
    assert dual_ascent(1.0, 0.1, 0.3, 2.0) == pytest.approx(0.6)
    assert dual_ascent(0.2, 0.0, 0.3, 5.0) == 0.0
    steps = 4
    tight = METHODS["pdu"](retain_loss_eps=0.0, dual_warmup_epochs=0.0, max_steps=steps).unlearn(lm_task, seed=0)
    trace = [100.0] + tight.extra["dual_trace"]  # lambda_0 = 100, then after each step
    assert len(trace) == steps + 1 and all(b > a for a, b in zip(trace, trace[1:]))  # R > 0 = eps: violated
    loose = METHODS["pdu"](retain_loss_eps=5.0, dual_warmup_epochs=0.0, max_steps=steps).unlearn(lm_task, seed=0)
    trace = [100.0] + loose.extra["dual_trace"]
    assert all(b < a for a, b in zip(trace, trace[1:]))  # R << 5 = eps: slack, lambda falls
    # each fall is eta * (R - eps) with R a retain NLL in [0, eps): between -eta * eps and 0
    assert all(-5.0 * 5.0 <= b - a < 0 for a, b in zip(trace, trace[1:]))
    warm = METHODS["pdu"](retain_loss_eps=0.0, dual_warmup_epochs=1.0, max_steps=3).unlearn(lm_task, seed=0)
    per_epoch = -(-len(lm_task.forget) // warm.params["batch_size"])  # ceil: steps in one epoch
    trace = warm.extra["dual_trace"]
    assert trace[:per_epoch] == [100.0] * per_epoch and trace[per_epoch] > 100.0


def test_pdu_flattens_the_forget_answers_and_keeps_retain(lm_task, base_nll):
    r = METHODS["pdu"]().unlearn(lm_task, seed=0)
    vocab = lm_task.original.config.vocab_size
    forget = nll(r.model, lm_task.forget, lm_task)
    # near the uniform distribution's log V: the forget loss flattens, it does not push below uniform
    assert abs(forget - float(torch.log(torch.tensor(float(vocab))))) < 1.0
    assert nll(r.model, lm_task.retain, lm_task) < 0.3  # below the constraint's epsilon = 0.3
    assert r.extra["dual_trace"] and min(r.extra["dual_trace"]) >= 0


def test_pdu_rejects_bad_settings():
    for bad in (
        {"forget_weight": 0},
        {"retain_weight": -1},
        {"retain_loss_eps": -0.1},
        {"dual_step_size": -1},
        {"dual_warmup_epochs": -1},
        {"retain_loss_eps": "0.3"},
    ):
        with pytest.raises(ConfigError):
            METHODS["pdu"](**bad)


# --------------------------------------------------------------------------- IMU on causal LMs
def test_imu_weights_from_crafted_gradients_match_hand_computed_values():
    from unlearnkit.methods.imu import weights_from_gradients

    # g_bar = (0.5, 0.125), F = mean g^2 + 0.01 = (4.51, 0.5725), I_i = -g_i . (g_bar / F)
    G = torch.tensor([[2.0, 1.0], [1.0, 0.0], [-3.0, -1.0], [2.0, 0.5]])
    gbar, fisher = G.mean(0), (G**2).mean(0) + 0.01
    assert torch.allclose(gbar, torch.tensor([0.5, 0.125])) and torch.allclose(fisher, torch.tensor([4.51, 0.5725]))
    infl = -(G / fisher) @ gbar
    assert infl[2] > 0 and (infl[[0, 1, 3]] < 0).all()  # row 2 points against the mean: dropped
    pos, w = weights_from_gradients(G, damping=0.01, top_fraction=1.0, clip_quantile=1.0)
    assert pos.tolist() == [0, 1, 3]
    assert torch.allclose(w, infl[[0, 1, 3]].abs().sqrt())
    pos, _ = weights_from_gradients(G, 0.01, top_fraction=0.5, clip_quantile=1.0)
    assert pos.tolist() == [0]  # the most influential half of the three (at least one)
    _, w = weights_from_gradients(G, 0.01, 1.0, clip_quantile=0.5)
    assert float(w.max()) == pytest.approx(float(torch.quantile(infl[[0, 1, 3]].abs().sqrt(), 0.5)))


def test_imu_lm_influence_is_the_formula_on_each_rows_answer_nll(lm_task):
    """g_i recomputed independently (full logits, shifted cross-entropy over the answer) for
    the last layer's attention projections; the method's weights are sqrt(|I_i|) of those."""
    import torch.nn.functional as F

    from unlearnkit.methods.imu import lm_influence_parameters, lm_influence_weights

    model = lm_task.original
    params = lm_influence_parameters(model, 3, ["q_proj", "k_proj", "v_proj", "o_proj"])
    assert sorted(params) == sorted(f"model.layers.0.self_attn.{m}_proj.weight" for m in "qkvo")
    G = []
    for i in range(len(lm_task.forget)):
        ids, lab = lm_task.forget.inputs[i : i + 1], lm_task.forget.labels[i : i + 1]
        am = lm_task.forget.attention_mask[i : i + 1]
        logits = model(input_ids=ids, attention_mask=am).logits
        loss = F.cross_entropy(logits[0, :-1], lab[0, 1:], ignore_index=-100)
        G.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(params.values()))]))
    G = torch.stack(G)
    infl = -(G / ((G**2).mean(0) + 0.01)) @ G.mean(0)
    pos, w = lm_influence_weights(model, lm_task, params, 0.01, 1.0, 1.0)
    keep = torch.nonzero(infl < 0).flatten()
    assert pos.tolist() == keep.tolist()
    assert torch.allclose(w, infl[keep].abs().sqrt(), rtol=1e-3)


def test_imu_on_a_causal_lm_ascends_through_the_attention_projections_only(lm_task, base_nll):
    from unlearnkit.testing import state_of

    before = state_of(lm_task.original)
    r = METHODS["imu"]().unlearn(lm_task, seed=0)
    after = state_of(r.model)
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed == {f"model.layers.0.self_attn.{m}_proj.weight" for m in "qkvo"}
    assert nll(r.model, lm_task.forget, lm_task) > base_nll[0] + 2.0
    assert nll(r.model, lm_task.retain, lm_task) < 0.5
    assert r.cost.examples_forward >= r.cost.examples_backward > len(lm_task.forget)  # the influence pass counted
    assert all(q.requires_grad for q in r.model.parameters())  # flags restored


def test_imu_with_task_lora_reads_and_trains_the_adapters_in_those_projections(lm_task):
    import copy

    from unlearnkit.testing import state_of

    pytest.importorskip("peft")
    task = copy.copy(lm_task)
    task.lora = {"r": 4, "target_modules": ["q_proj", "v_proj"]}
    r = METHODS["imu"](max_steps=3).unlearn(task, seed=0)
    before, after = state_of(lm_task.original), state_of(r.model)
    assert after.keys() == before.keys()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.v_proj.weight"}


def test_imu_lm_settings_are_checked(lm_task):
    for bad in ({"lm_layers": 0}, {"lm_modules": []}, {"lm_modules": [""]}):
        with pytest.raises(ConfigError):
            METHODS["imu"](**bad)
    with pytest.raises(ConfigError, match="lm_modules"):
        METHODS["imu"](lm_modules=["no_such_proj"], max_steps=1).unlearn(lm_task, seed=0)


# --------------------------------------------------------------------------- OBLIVIATE
def test_obliviate_target_words_and_tokens_on_a_crafted_example(lm_task):
    from unlearnkit.methods.obliviate import extract_target_words, target_token_ids

    tok = lm_task.adapter.tokenizer
    forget = [" Dovius Bromridge was born in Istranth, 1990.", " Dovius works as a novelist."]
    retain = ["Question: Where was Calwyn born?\nAnswer: Calwyn Ervyk was born in Istranth.", "a novelist, 1967"]
    words = extract_target_words(forget, retain)
    assert words == ["1990", "Bromridge", "Dovius", "as", "works"]  # in no retain text; shared words are not targets

    def pieces(w):
        return set(tok(w, add_special_tokens=False)["input_ids"]) | set(
            tok(" " + w, add_special_tokens=False)["input_ids"]
        )

    ids = target_token_ids(["Dovius"], tok, [], [])
    assert ids == sorted(pieces("Dovius") - set(tok.all_special_ids))
    # min_ratio keeps the pieces over-represented in the forget answers only
    a, b = sorted(pieces("Dovius"))[:2]
    forget_ids, retain_ids = [[a, a, b]], [[b] * 10 + [a] + [0] * 89]  # a: 2/3 vs 1/100; b: 1/3 vs 10/100
    assert target_token_ids(["Dovius"], tok, forget_ids, retain_ids, min_ratio=4.0) == [a]  # b's ratio is 3.3
    assert target_token_ids(["Dovius"], tok, forget_ids, retain_ids, min_ratio=3.0) == sorted({a, b})


def test_obliviate_mask_sets_the_target_tokens_to_zero_and_renormalises():
    from unlearnkit.methods.obliviate import mask_loss, masked_distribution, vocabulary_mask

    keep = vocabulary_mask([1, 3, 99], 5)  # ids beyond the vocabulary are ignored
    assert keep.tolist() == [True, False, True, False, True]
    z = torch.tensor([[0.0, 4.0, torch.log(torch.tensor(2.0)).item(), 7.0, torch.log(torch.tensor(5.0)).item()]])
    q = masked_distribution(z, keep)
    assert torch.allclose(q, torch.tensor([[1 / 8, 0.0, 2 / 8, 0.0, 5 / 8]]))  # exp(z) on kept ids: 1, 2, 5
    z.requires_grad_(True)
    loss = mask_loss(z, keep)
    loss.backward()
    assert torch.allclose(z.grad, torch.softmax(z.detach(), -1) - q, atol=1e-6)  # targets pushed down
    assert float(mask_loss(torch.tensor([[0.0, -1e4, 1.0, -1e4, 2.0]]), keep)) == pytest.approx(0.0, abs=1e-6)


def test_obliviate_forgets_the_target_tokens_through_lora_and_returns_a_plain_model(lm_task, base_nll):
    from unlearnkit.methods.obliviate import Obliviate, vocabulary_mask, world_rows
    from unlearnkit.testing import state_of

    method = Obliviate()
    method._prepare(lm_task)
    words, ids = method.targets(lm_task)
    assert "Dovius" in words and ids
    world = world_rows(lm_task)
    assert 0 < len(world) < len(lm_task.retain) and set(world.subject_ids.tolist()) == {""}
    before = state_of(lm_task.original)
    r = METHODS["obliviate"]().unlearn(lm_task, seed=0)
    assert type(r.model) is type(lm_task.original) and state_of(r.model).keys() == before.keys()
    assert r.extra["target_words"] == words and r.extra["target_tokens"] == len(ids)
    assert nll(r.model, lm_task.forget, lm_task) > base_nll[0] + 2.0
    assert nll(r.model, lm_task.retain, lm_task) < 0.2
    # the target tokens' probability mass at the forget answers' positions has collapsed
    keep = vocabulary_mask(ids, lm_task.original.config.vocab_size)
    b = next(lm_task.forget.batches(len(lm_task.forget)))
    with torch.no_grad():
        mass = [
            float(torch.softmax(lm_task.adapter.answer_logits(m.eval(), b).float(), -1)[:, ~keep].sum(-1).mean())
            for m in (lm_task.original, r.model)
        ]
    assert mass[1] < 0.25 * mass[0], mass
    assert all(torch.equal(v, before[k]) for k, v in state_of(lm_task.original).items())


def test_obliviate_trains_the_tasks_own_lora_adapters_when_the_task_has_them(lm_task):
    import copy

    from unlearnkit.testing import state_of

    pytest.importorskip("peft")
    task = copy.copy(lm_task)
    task.lora = {"r": 4, "target_modules": ["q_proj", "v_proj"]}
    r = METHODS["obliviate"](max_steps=3).unlearn(task, seed=0)
    before, after = state_of(lm_task.original), state_of(r.model)
    assert after.keys() == before.keys()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.v_proj.weight"}


def test_obliviate_rejects_bad_settings(lm_task):
    for bad in (
        {"distill_weight": -1},
        {"world_weight": -0.1},
        {"min_ratio": -1},
        {"tokens": "question"},
        {"lora_r": 0},
        {"lora_alpha": 0},
        {"lora_dropout": 1.0},
        {"target_modules": []},
    ):
        with pytest.raises(ConfigError):
            METHODS["obliviate"](**bad)
    with pytest.raises(ConfigError, match="min_ratio"):
        METHODS["obliviate"](min_ratio=1e9, max_steps=1).unlearn(lm_task, seed=0)
