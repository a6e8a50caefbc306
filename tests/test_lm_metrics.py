"""Hand-computed checks of the model-free language-model unlearning metrics."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.modalities.causal_lm import formulas as lm

L = math.log


# ----------------------------------------------------------------------------- ROUGE-L
@pytest.mark.parametrize(
    "pred, ref, expected",
    [
        ("the cat sat", "the cat sat on the mat", 0.5),
        ("the cat sat on the mat", "the cat sat", 1.0),
        ("The CAT, sat!", "the cat sat", 1.0),  # case and punctuation ignored
        ("a b c d", "b d a c", 0.5),  # LCS = 2 ("b d" / "a c" / "b c")
        ("dog", "the cat", 0.0),
        ("", "the cat", 0.0),  # rouge_score gives 0 on empty side
        ("the cat", "?!", 0.0),
        ("running dogs", "run dog", 1.0),  # Porter stemmer, as TOFU (use_stemmer=True)
        ("the writers studied", "writer study", 1.0),
    ],
)
def test_rouge_l_recall(pred, ref, expected):
    assert lm.rouge_l_recall(pred, ref) == pytest.approx(expected)


def test_rouge_tokens_match_rouge_score_default_tokenizer():
    assert lm.rouge_tokens("Don't STOP--now: café 42") == ["don", "t", "stop", "now", "caf", "42"]
    with pytest.raises(DataError):
        lm.rouge_l_recall(["the"], "the")


# ----------------------------------------------------------------------------- TOFU
def test_answer_probability_is_geometric_mean_over_masked_tokens():
    lp = np.array([[L(0.5), L(0.5), L(1e-9)], [L(0.2), L(0.8), 0.0]])
    mask = np.array([[1, 1, 0], [1, 1, 0]])
    np.testing.assert_allclose(lm.answer_probability(lp, mask), [0.5, 0.4])
    # 1-D input is one example; no mask = every token
    np.testing.assert_allclose(lm.answer_probability([L(0.2), L(0.8)]), [0.4])


def test_option_probability():
    out = lm.option_probability([L(0.5), L(0.2)], [[L(0.25), L(0.25)], [L(0.4), L(0.2)]])
    np.testing.assert_allclose(out, [0.5, 0.25])


def test_truth_ratio_uses_log_space_mean_of_perturbations():
    r = lm.truth_ratio([L(0.5), L(0.5)], [[L(0.25), L(0.25)], [L(0.1), L(0.4)]])
    # row 2: geometric mean sqrt(0.1 * 0.4) = 0.2 (arithmetic would give 0.25) -> 0.4
    np.testing.assert_allclose(r, [0.5, 0.4])
    with pytest.raises(DataError):
        lm.truth_ratio([L(0.5)], [[L(0.2)], [L(0.3)]])


def test_truth_ratio_score_forget_and_retain():
    r = [0.5, 2.0]
    assert lm.truth_ratio_score(r, "forget") == pytest.approx(0.5)
    assert lm.truth_ratio_score(r, "retain") == pytest.approx(0.25)
    with pytest.raises(ConfigError):
        lm.truth_ratio_score(r, "holdout")
    with pytest.raises(DataError):
        lm.truth_ratio_score([0.0, 1.0])


def test_forget_quality_ks():
    p, d = lm.forget_quality([0.5, 1.0, 2.0], [0.5, 1.0, 2.0])
    assert (p, d) == pytest.approx((1.0, 0.0))
    p, d = lm.forget_quality([1, 2, 3], [10, 11, 12])
    assert d == pytest.approx(1.0)
    assert p == pytest.approx(0.1)  # exact two-sided: 2 / C(6, 3)
    # invariant under R -> 1/R (TOFU / OpenUnlearning test 1/R)
    u, r = np.array([0.3, 0.9, 1.4, 2.0]), np.array([0.5, 0.6, 3.0])
    assert lm.forget_quality(u, r) == pytest.approx(lm.forget_quality(1 / u, 1 / r))
    with pytest.raises(DataError):
        lm.forget_quality([], [1.0])


def test_model_utility_harmonic_mean():
    vals = dict.fromkeys(lm.MODEL_UTILITY_KEYS, 1.0)
    vals["world_facts_truth_ratio"] = 0.5
    assert lm.model_utility(vals) == pytest.approx(9 / 10)  # 9 / (8 * 1 + 2)
    assert lm.model_utility(dict.fromkeys(lm.MODEL_UTILITY_KEYS, 0.5)) == pytest.approx(0.5)
    assert lm.model_utility({**vals, "retain_rouge": 0.0}) == 0.0
    with pytest.raises(DataError):
        lm.model_utility({k: v for k, v in vals.items() if k != "retain_prob"})
    with pytest.raises(DataError):
        lm.model_utility({**vals, "forget_rouge": 0.3})
    with pytest.raises(DataError):
        lm.model_utility({**vals, "retain_prob": -0.1})


# ----------------------------------------------------------------------------- memorisation
def test_exact_memorization():
    tgt = [[1, 2, 0, 4], [5, 6, 7, 8]]
    pred = [[1, 2, 3, 4], [0, 0, 7, 8]]
    np.testing.assert_allclose(lm.exact_memorization(pred, tgt), [0.75, 0.5])
    np.testing.assert_allclose(lm.exact_memorization(pred, tgt, [[1, 1, 0, 1], [1, 1, 1, 1]]), [1.0, 0.5])


def test_extraction_strength():
    tgt = [[1, 2, 3, 4]] * 4
    pred = [[1, 2, 3, 4], [9, 2, 3, 4], [1, 9, 3, 4], [1, 2, 3, 9]]
    # tail of correct predictions: 4, 3, 2, 0 tokens -> ES = tail / |y|
    np.testing.assert_allclose(lm.extraction_strength(pred, tgt), [1.0, 0.75, 0.5, 0.0])
    # masked positions are not part of the target: wrong token in padding is ignored
    es = lm.extraction_strength([[9, 2, 3, 0]], [[1, 2, 3, 7]], mask=[[1, 1, 1, 0]])
    np.testing.assert_allclose(es, [2 / 3])
    with pytest.raises(DataError):
        lm.extraction_strength([[1, 2]], [[1, 2, 3]])


# ----------------------------------------------------------------------------- MIA scores
def test_loss_score_is_mean_masked_logprob():
    lp = [[-1.0, -3.0, -100.0]]
    np.testing.assert_allclose(lm.loss_score(lp, [[1, 1, 0]]), [-2.0])


def test_zlib_score():
    assert len(zlib.compress(b"a")) == 9  # 2-byte header, 3 deflate bytes, 4-byte adler32
    out = lm.zlib_score([[-1.0, -3.0]], None, ["a"])
    np.testing.assert_allclose(out, [-2.0 / 9])
    with pytest.raises(DataError):
        lm.zlib_score([[-1.0], [-2.0]], None, ["only one"])


def test_min_k_score():
    lp = [[-1.0, -2.0, -3.0, -4.0, -5.0]]
    np.testing.assert_allclose(lm.min_k_score(lp, k=0.4), [-4.5])
    np.testing.assert_allclose(lm.min_k_score(lp, k=0.2), [-5.0])
    np.testing.assert_allclose(lm.min_k_score(lp, k=0.1), [-5.0])  # at least one token
    np.testing.assert_allclose(lm.min_k_score(lp, [[1, 1, 1, 1, 0]], k=0.5), [-3.5])
    with pytest.raises(ConfigError):
        lm.min_k_score(lp, k=0.0)


def test_vocab_stats():
    with np.errstate(divide="ignore"):
        full = np.log([[0.25] * 4, [0.5, 0.25, 0.25, 0.0]])  # log 0 = -inf is allowed
    mu, sigma = lm.vocab_stats(full)
    ln2 = L(2)
    np.testing.assert_allclose(mu, [-2 * ln2, -1.5 * ln2])
    # E[lp^2] = (0.5 * 1 + 0.5 * 4) ln2^2 = 2.5 ln2^2; var = 2.5 - 2.25 -> sigma = 0.5 ln2
    np.testing.assert_allclose(sigma, [0.0, 0.5 * ln2], atol=1e-7)
    mu3, _ = lm.vocab_stats(np.log([[[0.25] * 4]]))
    assert mu3.shape == (1, 1)
    with pytest.raises(DataError):
        lm.vocab_stats([[2.0, 1.0, 0.5]])  # raw logits


def test_min_k_plus_plus_score():
    lp, mu, sigma = [[-1.0, -2.0]], [[0.0, -1.0]], [[1.0, 0.5]]
    # z = [(-1 - 0) / 1, (-2 + 1) / 0.5] = [-1, -2]
    np.testing.assert_allclose(lm.min_k_plus_plus_score(lp, mu, sigma, k=0.5), [-2.0])
    np.testing.assert_allclose(lm.min_k_plus_plus_score(lp, mu, sigma, k=1.0), [-1.5])
    with pytest.raises(DataError):
        lm.min_k_plus_plus_score(lp, [[0.0]], sigma)


def test_mia_auc_and_privleak():
    assert lm.mia_auc([3.0, 4.0], [1.0, 2.0]) == pytest.approx(1.0)
    assert lm.mia_auc([1.0, 2.0], [3.0, 4.0]) == pytest.approx(0.0)
    assert lm.mia_auc([1.0, 3.0], [2.0, 4.0]) == pytest.approx(0.25)
    with pytest.raises(DataError):
        lm.mia_auc([], [1.0])
    assert lm.privleak(0.75, 0.5) == pytest.approx(50.0)
    assert lm.privleak(0.25, 0.5) == pytest.approx(-50.0)
    assert lm.privleak(0.5, 0.5) == 0.0
    with pytest.raises(DataError):
        lm.privleak(0.5, 0.0)
    with pytest.raises(DataError):
        lm.privleak(1.2, 0.5)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "lp, mask",
    [
        ([[]], None),  # empty
        ([[-1.0, float("nan")]], None),  # NaN
        ([[-1.0, -2.0]], [[1, 1, 1]]),  # shape mismatch
        ([[-1.0, -2.0], [-1.0, -2.0]], [[1, 0], [0, 0]]),  # example without target tokens
        (np.zeros((2, 2, 2)), None),  # 3-D
    ],
)
def test_bad_token_arrays_raise_data_error(lp, mask):
    with pytest.raises(DataError):
        lm.answer_probability(lp, mask)
