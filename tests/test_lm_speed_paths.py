"""The fast paths of the causal-LM loop and evaluation give the numbers of the plain ones:
answer-position-only logits, the cached frozen reference of NPO, teacher-forced scores from
the answer rows, and greedy decoding that drops finished rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")

from unlearnkit.modalities.causal_lm.adapter import IGNORE, CausalLMAdapter  # noqa: E402
from unlearnkit.modalities.causal_lm.tiny_lm import build_causal_lm, tiny_llama_config  # noqa: E402


def _batch(b: int = 6, t: int = 14, vocab: int = 97, seed: int = 0) -> dict:
    """Right-padded rows: a question of 3-5 tokens, an answer to the row's end."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(8, t + 1, (b,), generator=g)
    am = (torch.arange(t)[None] < lengths[:, None]).long()
    ids = torch.randint(2, vocab, (b, t), generator=g) * am
    lab = ids.clone()
    q = torch.randint(3, 6, (b,), generator=g)
    for i in range(b):
        lab[i, : q[i]] = IGNORE
        lab[i, lengths[i] :] = IGNORE
    return {"input_ids": ids, "attention_mask": am, "labels": lab, "index": torch.arange(b)}


@pytest.fixture(scope="module")
def model():
    cfg = tiny_llama_config(97, hidden=32, layers=1, heads=2, intermediate=64, max_position=64)
    return build_causal_lm(cfg, seed=0)


class _FullLogitsOnly(torch.nn.Module):
    """A causal LM that does not take ``logits_to_keep`` (the adapter must fall back)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask=None):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask)


def test_answer_only_logits_give_the_full_logits_values_and_gradients(model):
    ad, b = CausalLMAdapter(None), _batch()
    logits = ad.logits(model, b)
    lp_full, m_full = ad.token_log_probs(model, b, logits=logits)
    lp, m = ad.token_log_probs(model, b)
    assert torch.equal(m, m_full) and torch.allclose(lp, lp_full, atol=1e-6)
    # by hand: log-softmax of the previous position's logits at every answer token
    by_hand = torch.log_softmax(logits[:, :-1], -1).gather(-1, b["labels"][:, 1:].clamp_min(0)[..., None])[..., 0]
    assert torch.allclose(lp[:, 1:], by_hand * m[:, 1:], atol=1e-5)
    ll = ad.sequence_log_likelihood(model, b)
    assert torch.allclose(ll, ad.log_likelihood(logits, b["labels"]), atol=1e-5)
    assert torch.allclose(ad.per_example_loss(model, b), ad.per_example_loss(model, b, logits=logits), atol=1e-6)
    params = [p for p in model.parameters()]
    g_fast = torch.autograd.grad(ll.sum(), params)
    g_full = torch.autograd.grad(ad.log_likelihood(ad.logits(model, b), b["labels"]).sum(), params)
    assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(g_fast, g_full))
    # a model without logits_to_keep: the same numbers through the full logits
    assert ad.answer_logits(_FullLogitsOnly(model), b) is None
    assert torch.allclose(ad.sequence_log_likelihood(_FullLogitsOnly(model), b), ll, atol=1e-5)


def test_frozen_log_likelihood_computes_each_row_once(model):
    ad = CausalLMAdapter(None)
    b = _batch(b=8)
    cache = ad.frozen_log_likelihood(model, 8)
    first = {k: (v[:5] if torch.is_tensor(v) else v) for k, v in b.items()}
    v1, n1 = cache(first)
    v2, n2 = cache(b)  # rows 0-4 reused, 5-7 computed as one sub-batch
    v3, n3 = cache(b)
    assert (n1, n2, n3) == (5, 3, 0)
    with torch.no_grad():
        direct = ad.log_likelihood(ad.logits(model, b), b["labels"])
    assert torch.allclose(v2, direct, atol=1e-5) and torch.equal(v2, v3) and torch.equal(v1, v2[:5])


def test_npo_counts_each_reference_row_once_on_a_causal_lm(lm_task):
    from unlearnkit.methods import get_method

    n_forget = len(lm_task.forget)
    res = get_method("npo", epochs=3.0, batch_size=n_forget, retain_weight=0.0).unlearn(lm_task)
    drawn = res.cost.examples_backward  # forget rows drawn (no retain stream without a retain term)
    assert drawn == 3 * n_forget
    assert res.cost.examples_forward == drawn + n_forget  # the frozen reference: each forget row once


def test_teacher_forced_scores_match_the_full_logits(lm_task):
    from unlearnkit.modalities.causal_lm import formulas as lmm
    from unlearnkit.modalities.causal_lm.scores import MIN_K, _teacher_forced, _tokenizer, drop_final_eos

    model, ad, data = lm_task.original, lm_task.adapter, lm_task.forget
    tok = _tokenizer(ad)
    got = _teacher_forced(model, data, ad, tok, batch_size=4)
    b = next(data.batches(len(data)))
    with torch.no_grad():
        logits = ad.logits(model, b).float()
    lab = b["labels"]
    full = torch.log_softmax(logits[:, :-1], -1)
    lp = F.pad(full.gather(-1, lab[:, 1:].clamp_min(0)[..., None])[..., 0], (1, 0)) * (lab != IGNORE)
    mask, tgt = (lab != IGNORE).numpy(), lab.clamp_min(0).numpy()
    p = full.exp()
    mu = (p * full).sum(-1)
    sigma = ((p * full * full).sum(-1) - mu * mu).clamp_min(0).sqrt()
    pred = F.pad(logits[:, :-1].argmax(-1), (1, 0), value=-1).numpy()
    body = drop_final_eos(mask, tgt, tok.eos_token_id)
    lp_n = lp.double().numpy()
    assert np.allclose(got["sum_logprob"], (lp_n * mask).sum(1), atol=1e-4)
    assert np.allclose(got["mean_logprob"], lmm.loss_score(lp_n, mask), atol=1e-5)
    assert np.array_equal(got["token_acc"], lmm.exact_memorization(pred, tgt, body))
    assert np.array_equal(got["extraction"], lmm.extraction_strength(pred, tgt, body))
    pp = lmm.min_k_plus_plus_score(
        lp_n, F.pad(mu, (1, 0)).double().numpy(), F.pad(sigma, (1, 0)).double().numpy(), body, k=MIN_K
    )
    assert np.allclose(got["mia_min_k_pp"], pp, atol=1e-3)


def test_greedy_decoding_of_a_batch_equals_decoding_each_prompt_alone(model):
    from unlearnkit.modalities.causal_lm.scores import decode_batch

    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(2, 97, (int(n),), generator=g) for n in torch.randint(2, 7, (7,), generator=g)]
    # eos = the token the model most often predicts first, so rows finish at different steps
    firsts = [decode_batch(model, [p], 0, -1, 1, "cpu")[0][0] for p in prompts]
    eos = max(set(firsts), key=firsts.count)
    batched = decode_batch(model, prompts, 0, eos, 12, "cpu")
    alone = [decode_batch(model, [p], 0, eos, 12, "cpu")[0] for p in prompts]
    assert batched == alone
    assert len({len(r) for r in batched}) > 1  # rows did finish at different steps
