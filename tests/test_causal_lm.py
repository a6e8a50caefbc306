"""Causal-LM adapter: answer-only masking, losses, errors, training through run_loop,
method reuse (gradient ascent, NPO loss) and LoRA."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from unlearnkit.data.profiles import generate_profiles  # noqa: E402
from unlearnkit.engines.loop import TrainConfig, cross_entropy_objective, run_loop  # noqa: E402
from unlearnkit.errors import CheckpointError, DataError, ModelDataMismatchError  # noqa: E402
from unlearnkit.methods.losses import gradient_ascent_loss, npo_loss  # noqa: E402
from unlearnkit.modalities.causal_lm.adapter import IGNORE, CausalLMAdapter, TokenExampleSet, encode_qa, with_lora  # noqa: E402
from unlearnkit.modalities.causal_lm.tiny_lm import (  # noqa: E402
    build_causal_lm,
    load_causal_lm,
    load_tokenizer,
    tiny_llama_config,
    train_tokenizer,
)


def small_model(vocab: int, seed: int = 0, max_position: int = 128):
    return build_causal_lm(
        tiny_llama_config(vocab, hidden=64, layers=1, heads=2, intermediate=128, max_position=max_position), seed=seed
    )


@pytest.fixture(scope="module")
def qa():
    d = generate_profiles(n_people=10, seed=0, qa_per_person=3, n_other=1)
    rows = [r for r in d.training_rows() if r["kind"] == "direct"][:20]
    tok = train_tokenizer([r["question"] + " " + r["answer"] for r in rows], vocab_size=400)
    return rows, tok, encode_qa(rows, tok, max_length=128)


def test_answer_only_masking(qa):
    rows, tok, data = qa
    assert isinstance(data, TokenExampleSet) and len(data) == len(rows)
    for i, r in enumerate(rows):
        ids, lab, am = data.inputs[i], data.labels[i], data.attention_mask[i]
        n = int(am.sum())
        q = tok(f"Question: {r['question']}\nAnswer:", add_special_tokens=False)["input_ids"]
        assert ids[: len(q)].tolist() == q and (lab[: len(q)] == IGNORE).all()  # question masked
        assert (lab[len(q) : n] == ids[len(q) : n]).all()  # answer tokens are their own labels
        assert int(lab[n - 1]) == tok.eos_token_id
        assert tok.decode(ids[len(q) : n - 1]).strip() == r["answer"]
        assert (lab[n:] == IGNORE).all() and (ids[n:] == tok.pad_token_id).all()
    b = next(data.batches(4))
    assert set(b) >= {"input_ids", "attention_mask", "labels", "index", "y"} and b["y"] is b["labels"]
    sub = data.without([rows[0]["example_id"]])
    assert len(sub) == len(rows) - 1 and isinstance(sub, TokenExampleSet)
    assert data.select([rows[3]["example_id"]]).inputs[0].tolist() == data.inputs[3].tolist()


def test_loss_and_log_likelihood_match_hand_computation(qa):
    _, tok, data = qa
    model, ad = small_model(len(tok)), CausalLMAdapter(tok)
    b = next(data.batches(3))
    with torch.no_grad():
        loss = ad.per_example_loss(model, b)
        ll = ad.log_likelihood(ad.logits(model, b), b["y"])
        for i in range(3):
            n = int(b["attention_mask"][i].sum())
            ids = b["input_ids"][i, :n]
            lp = torch.log_softmax(model(input_ids=ids[None]).logits[0], -1)
            nll = [-lp[t - 1, ids[t]] for t in range(1, n) if b["labels"][i, t] != IGNORE]
            assert loss[i] == pytest.approx(float(sum(nll) / len(nll)), rel=1e-4)
            assert ll[i] == pytest.approx(-float(sum(nll)), rel=1e-4)
    assert torch.allclose(ll, -loss * ad.answer_length(b["labels"]), rtol=1e-5)


def test_errors(qa):
    rows, tok, data = qa
    with pytest.raises(DataError, match="empty"):
        encode_qa([dict(rows[0], answer=" ")], tok, 128)
    with pytest.raises(DataError, match=rows[1]["example_id"]):
        encode_qa(rows[:2] + [dict(rows[1], answer="long " * 200)], tok, 128)
    with pytest.raises(ModelDataMismatchError, match="tokenizer"):
        CausalLMAdapter(tok).check_model(small_model(len(tok) - 50), data)
    with pytest.raises(ModelDataMismatchError, match="context"):
        CausalLMAdapter(tok).check_model(small_model(len(tok), max_position=8), data)
    with pytest.raises(CheckpointError):
        load_causal_lm("/nonexistent/model")


def test_training_memorises_then_gradient_ascent_forgets(qa, tmp_path):
    rows, tok, data = qa
    ad = CausalLMAdapter(tok)
    model = small_model(len(tok))
    ad.check_model(model, data)
    before = ad.answer_accuracy(model, data)
    with torch.no_grad():
        l0 = float(ad.per_example_loss(model, next(data.batches(len(data)))).mean())
    stats = run_loop(
        model,
        cross_entropy_objective(ad),
        {"train": data},
        TrainConfig(batch_size=10, lr=1e-2, max_steps=150, epochs=1e9, schedule="cosine"),
        seed=0,
    )
    after = ad.answer_accuracy(model, data)
    assert stats.examples_forward == 150 * 10
    assert stats.final_loss < 0.1 * l0
    assert before["exact"].mean() == 0 and after["exact"].mean() >= 0.8
    assert after["token_acc"].mean() > 0.95
    # greedy decoding reproduces a memorised answer (what answer_accuracy's exact match stands for)
    i = int(after["exact"].argmax())
    n_q = int((data.labels[i] == IGNORE)[: int(data.attention_mask[i].sum())].sum())
    out = model.generate(
        data.inputs[i : i + 1, :n_q],
        attention_mask=data.attention_mask[i : i + 1, :n_q],
        max_new_tokens=60,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
    )
    assert tok.decode(out[0, n_q:], skip_special_tokens=True).strip() == rows[i]["answer"]

    # save / reload through local folders
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "t")
    tok2, model2 = load_tokenizer(tmp_path / "t"), load_causal_lm(tmp_path / "m")
    assert tok2(rows[0]["answer"])["input_ids"] == tok(rows[0]["answer"])["input_ids"]
    b = next(data.batches(4))
    assert torch.allclose(ad.per_example_loss(model2, b), ad.per_example_loss(model, b), atol=1e-5)

    # method reuse: gradient ascent on the adapter's per-example loss raises the forget loss
    forget = data.select([r["example_id"] for r in rows[:5]])
    fb = next(forget.batches(5))
    f0 = float(ad.per_example_loss(model, fb).mean().detach())
    ref = load_causal_lm(tmp_path / "m")
    run_loop(
        model,
        lambda ctx: gradient_ascent_loss(ad.per_example_loss(ctx.model, ctx.batch("forget"))),
        {"forget": forget},
        TrainConfig(batch_size=5, lr=1e-3, max_steps=10, epochs=1e9),
        seed=0,
    )
    assert float(ad.per_example_loss(model, fb).mean().detach()) > f0 + 1.0
    assert ad.answer_accuracy(model, forget)["exact"].mean() < 0.5
    # and NPO's loss takes the adapter's sequence log-likelihood unchanged
    with torch.no_grad():
        ll, ref_ll = (ad.log_likelihood(ad.logits(m, fb), fb["y"]) for m in (model, ref))
    assert ll.shape == (5,) and (ll < ref_ll).all()
    assert float(npo_loss(ll, ref_ll, beta=0.1)) < float(npo_loss(ref_ll, ref_ll, beta=0.1))


def test_lora_trains_only_adapters(qa):
    _, tok, data = qa
    ad = CausalLMAdapter(tok)
    model = with_lora(small_model(len(tok)), r=4, target_modules=("q_proj", "v_proj", "o_proj", "up_proj", "down_proj"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    b = next(data.batches(len(data)))
    l0 = float(ad.per_example_loss(model, b).mean())  # B = 0 at start: LoRA is a no-op
    assert l0 == pytest.approx(float(ad.per_example_loss(small_model(len(tok)), b).mean()), rel=1e-5)
    run_loop(
        model,
        cross_entropy_objective(ad),
        {"train": data},
        TrainConfig(batch_size=10, lr=1e-2, max_steps=50, epochs=1e9),
        seed=0,
    )
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert float(ad.per_example_loss(model, b).mean()) < l0 - 0.5


def test_byte_tokenizer_round_trips():
    tok = train_tokenizer(["hello world"], kind="bytes")
    assert len(tok) == 258 and tok.pad_token_id == 0 and tok.eos_token_id == 1
    text = 'Zörn wrote "The Amber Ledger".'
    assert tok.decode(tok(text)["input_ids"]) == text
