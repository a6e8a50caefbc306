"""RMU, bounded (sine) LoRA and in-context unlearning on the tiny memorised profiles task."""

from __future__ import annotations

import copy
import math

import pytest
import torch

pytest.importorskip("transformers")

from unlearnkit.errors import ConfigError, ModelDataMismatchError  # noqa: E402
from unlearnkit.methods import METHODS  # noqa: E402
from unlearnkit.methods.bounded_lora import BoundedLoRALinear  # noqa: E402
from unlearnkit.methods.icul import InContextModel  # noqa: E402
from unlearnkit.methods.rmu import control_vector, layer_hidden_states, token_mask  # noqa: E402
from unlearnkit.orchestration.artifacts import load_file, save_file  # noqa: E402


def _state(model):
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def nll(model, data, task) -> float:
    model.eval()
    return float(torch.cat([task.adapter.per_example_loss(model, b) for b in data.batches(64)]).mean())


@pytest.fixture(scope="module")
def original_state(lm_task):
    return _state(lm_task.original)


@pytest.fixture(scope="module")
def base_nll(lm_task):
    return nll(lm_task.original, lm_task.forget, lm_task), nll(lm_task.original, lm_task.retain, lm_task)


# --------------------------------------------------------------------------- RMU
@pytest.fixture(scope="module")
def rmu_run(lm_task):
    return METHODS["rmu"]().unlearn(lm_task, seed=0)


@torch.no_grad()
def _distance_to_target(model, task, target):
    b = next(task.forget.batches(len(task.forget)))
    h = layer_hidden_states(model, b, 0)
    m = token_mask(b, "answer")
    return float((h - target).norm(dim=-1)[m].mean()), float(h.norm(dim=-1)[m].mean())


def test_rmu_steers_forget_activations_and_raises_forget_nll(lm_task, rmu_run, base_nll, original_state):
    p = rmu_run.params
    target = control_vector(0, lm_task.original.config.hidden_size, p["steering_coeff"])
    d0, n0 = _distance_to_target(lm_task.original, lm_task, target)
    d1, n1 = _distance_to_target(rmu_run.model, lm_task, target)
    assert d1 < 0.75 * d0 and n1 > 2 * n0, (d0, d1, n0, n1)  # toward c*u, the norm inflated
    forget0, retain0 = base_nll
    assert nll(rmu_run.model, lm_task.forget, lm_task) > forget0 + 2.0
    assert nll(rmu_run.model, lm_task.retain, lm_task) < 0.5  # the retain term holds the rest
    # only the MLP of the chosen layers (the 1-layer model: layer 0) moved; the rest is bitwise equal
    after = _state(rmu_run.model)
    assert after.keys() == original_state.keys()
    changed = {k for k in after if not torch.equal(after[k], original_state[k])}
    assert changed and all(k.startswith("model.layers.0.mlp.") for k in changed)
    assert _state(lm_task.original).keys() == original_state.keys()
    assert all(torch.equal(v, original_state[k]) for k, v in _state(lm_task.original).items())
    assert rmu_run.cost.examples_forward > rmu_run.cost.examples_backward > 0  # frozen passes counted


def test_rmu_down_proj_mode_and_task_lora_touch_only_their_parameters(lm_task, original_state):
    r = METHODS["rmu"](update="down_proj", max_steps=3).unlearn(lm_task, seed=0)
    after = _state(r.model)
    changed = {k for k in after if not torch.equal(after[k], original_state[k])}
    assert changed == {"model.layers.0.mlp.down_proj.weight"} and r.cost.steps == 3
    pytest.importorskip("peft")
    task = copy.copy(lm_task)
    task.lora = {"r": 4, "target_modules": ["q_proj", "v_proj"]}
    r = METHODS["rmu"](max_steps=3).unlearn(task, seed=0)  # the peft-wrapped model's adapters
    after = _state(r.model)
    assert after.keys() == original_state.keys()
    changed = {k for k in after if not torch.equal(after[k], original_state[k])}
    assert changed == {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.v_proj.weight"}


def test_rmu_rejects_bad_settings(lm_task):
    with pytest.raises(ConfigError, match=r"0\.\.0"):
        METHODS["rmu"](layer=3).unlearn(lm_task, seed=0)
    for bad in (
        {"layer": -1},
        {"update": "attn"},
        {"tokens": "question"},
        {"steering_coeff": 0},
        {"alpha": -1},
        {"update_layers": 0},
        {"no_such_hparam": 1},
    ):
        with pytest.raises(ConfigError):
            METHODS["rmu"](**bad)


# --------------------------------------------------------------------------- bounded LoRA
def _check_bounded(result, task, original_state, params) -> float:
    """Every change lies in an adapted MLP projection and within alpha / (r sqrt(in)); returns
    the largest change as a fraction of its bound."""
    after = _state(result.model)
    assert after.keys() == original_state.keys()
    assert all(after[k].shape == original_state[k].shape for k in after)
    worst = 0.0
    for k in after:
        diff = (after[k] - original_state[k]).abs()
        if not any(f"mlp.{t}." in k for t in params["target_modules"]):
            assert torch.equal(after[k], original_state[k]), f"{k} changed"
            continue
        bound = params["lora_alpha"] / params["r"] / math.sqrt(after[k].shape[1])
        assert float(diff.max()) <= bound * (1 + 1e-5) + 1e-7, k
        worst = max(worst, float(diff.max()) / bound)
    return worst


def test_bounded_lora_raises_forget_nll_and_returns_a_plain_bounded_model(lm_task, base_nll, original_state):
    r = METHODS["bounded_lora"]().unlearn(lm_task, seed=0)
    assert type(r.model) is type(lm_task.original)
    assert not any(isinstance(m, BoundedLoRALinear) for m in r.model.modules())
    assert _check_bounded(r, lm_task, original_state, r.params) > 0.5
    assert nll(r.model, lm_task.forget, lm_task) > base_nll[0] + 2.0
    assert all(torch.equal(v, original_state[k]) for k, v in _state(lm_task.original).items())
    # the weights stay within the bound however hard the ascent pushes (lr 100x, no clipping)
    r = METHODS["bounded_lora"](lr=1.0, grad_clip=None, max_steps=10).unlearn(lm_task, seed=0)
    assert _check_bounded(r, lm_task, original_state, r.params) > 0.9


def test_bounded_adapter_bound_and_merge():
    torch.manual_seed(0)
    base = torch.nn.Linear(16, 8)
    layer = BoundedLoRALinear(copy.deepcopy(base), r=4, alpha=2.0, omega=50.0)
    assert layer(torch.ones(1, 16)).sub(base(torch.ones(1, 16))).abs().max() == 0  # B = 0 at start
    with torch.no_grad():
        layer.lora_B.normal_(0, 100.0)
    assert float(layer.delta().detach().abs().max()) <= layer.bound == pytest.approx(2.0 / 4 / 4)
    x = torch.randn(3, 16)
    y = layer(x)
    merged = layer.merged()
    assert isinstance(merged, torch.nn.Linear) and torch.allclose(merged(x), y, atol=1e-5)


def test_bounded_lora_rejects_bad_settings(lm_task):
    for bad in (
        {"r": 0},
        {"omega": 0},
        {"lora_alpha": -1},
        {"retain_weight": -1},
        {"target_modules": []},
        {"no_such_hparam": 1},
    ):
        with pytest.raises(ConfigError):
            METHODS["bounded_lora"](**bad)
    with pytest.raises(ConfigError, match="target_modules"):
        METHODS["bounded_lora"](target_modules=["no_such_proj"], max_steps=1).unlearn(lm_task, seed=0)


# --------------------------------------------------------------------------- ICUL
@pytest.fixture(scope="module")
def icul_run(lm_task):
    return METHODS["icul"]().unlearn(lm_task, seed=0)


def test_icul_changes_no_weight_and_raises_forget_nll(lm_task, icul_run, base_nll, original_state):
    model = icul_run.model
    assert isinstance(model, InContextModel) and icul_run.cost.steps == 0
    assert icul_run.extra["wrong_answers"] == "perturbed" and icul_run.extra["forget_examples"] == len(lm_task.forget)
    inner = _state(model.model)
    assert all(torch.equal(inner[k], original_state[k]) for k in original_state)
    assert all(torch.equal(v, original_state[k]) for k, v in _state(lm_task.original).items())
    b = next(lm_task.forget.batches(len(lm_task.forget)))
    with torch.no_grad():
        assert (
            model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.shape
            == lm_task.original(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.shape
        )
    assert nll(model, lm_task.forget, lm_task) > base_nll[0] + 0.3  # answer probability drops
    lm_task.adapter.check_model(model, lm_task.forget)  # embeddings and config are delegated


@torch.no_grad()
def test_icul_logits_are_aligned_per_row(lm_task, icul_run):
    model, orig = icul_run.model, lm_task.original
    data = lm_task.forget
    b = next(data.batches(len(data)))  # right-padded rows of different lengths
    batched = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    for i in (0, 4):
        n = int(b["attention_mask"][i].sum())
        ids = b["input_ids"][i : i + 1, :n]
        single = model(input_ids=ids).logits[0]
        assert torch.allclose(batched[i, :n], single, atol=1e-4)  # no dependence on the batch
        ctx = model.context_for(ids[0], model.max_positions - n)
        assert 0 < len(ctx) <= model.max_positions - n
        full = orig(input_ids=torch.cat([ctx, ids[0]])[None]).logits[0, len(ctx) :]
        assert torch.allclose(single, full, atol=1e-4)  # exactly the context positions are stripped
    empty = InContextModel(orig, torch.zeros(0), torch.zeros(0), torch.zeros(0, dtype=torch.bool))
    plain = orig(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    got = empty(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    m = b["attention_mask"].bool()
    assert torch.allclose(got[m], plain[m], atol=1e-4)


@torch.no_grad()
def test_icul_round_trips_through_model_template_and_guards_the_context(lm_task, icul_run, tmp_path):
    b = next(lm_task.retain.batches(8))
    want = icul_run.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    other = METHODS["icul"]().unlearn(lm_task, seed=1)  # another seed, other retain demos, same shape
    for run in (icul_run, other):
        save_file(run.model, tmp_path / "icul.safetensors")
        loaded = load_file(tmp_path / "icul.safetensors", METHODS["icul"]().model_template(lm_task)).eval()
        assert torch.equal(loaded.context_ids, run.model.context_ids)
    assert torch.equal(
        loaded(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits,
        other.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits,
    )
    save_file(icul_run.model, tmp_path / "icul.safetensors")
    loaded = load_file(tmp_path / "icul.safetensors", METHODS["icul"]().model_template(lm_task)).eval()
    assert torch.equal(loaded(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, want)
    too_long = torch.ones(1, icul_run.model.max_positions + 1, dtype=torch.long)
    with pytest.raises(ModelDataMismatchError):
        icul_run.model(input_ids=too_long)
    prompt = b["input_ids"][:2, :6]
    out = icul_run.model.generate(prompt, max_new_tokens=4, do_sample=False)
    assert out.shape == (2, 10) and torch.equal(out[:, :6], prompt)


@torch.no_grad()
def test_icul_incremental_decoding_matches_greedy_on_the_explicit_context(lm_task, icul_run):
    """The project's KV-cache decoder (left-padded prompts, position ids, past_key_values)
    runs through the wrapper and gives the tokens greedy decoding of [context, prompt] gives."""
    from unlearnkit.modalities.causal_lm.scores import decode_batch

    model, data, tok = icul_run.model, lm_task.forget, lm_task.adapter.tokenizer
    prompts = [data.inputs[i, : int((data.labels[i] != -100).nonzero()[0])] for i in (0, 1, 5)]
    got = decode_batch(model, prompts, tok.pad_token_id, tok.eos_token_id, 12, "cpu")
    for p, g in zip(prompts, got):
        seq = torch.cat([model.context_for(p, model.max_positions - len(p) - int(model.generation_room)), p])
        want = []
        while len(want) < 12 and (not want or want[-1] != tok.eos_token_id):
            want.append(int(lm_task.original(input_ids=seq[None]).logits[0, -1].argmax()))
            seq = torch.cat([seq, torch.tensor(want[-1:])])
        assert g == want


def test_icul_idk_fallback_and_bad_settings(lm_task):
    task = copy.copy(lm_task)
    task.eval_sets = {k: v for k, v in lm_task.eval_sets.items() if not k.startswith("forget@")}
    r = METHODS["icul"](n_retain=0).unlearn(task, seed=0)
    assert r.extra["wrong_answers"] == "idk" and r.extra["retain_examples"] == 0
    idk = lm_task.adapter.tokenizer(" I don't know.", add_special_tokens=False)["input_ids"]
    seg = r.model.context_ids[: int(r.model.segment_ends[0])].tolist()
    assert seg[-len(idk) - 1 : -1] == idk and seg[-1] == lm_task.adapter.tokenizer.eos_token_id
    for bad in (
        {"n_retain": -1},
        {"answer": "random"},
        {"idk_answer": " "},
        {"generation_room": -1},
        {"no_such_hparam": 1},
        {"lr": 1e-3},
    ):
        with pytest.raises(ConfigError):
            METHODS["icul"](**bad)
