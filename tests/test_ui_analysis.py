"""The comparator's computations (unlearnkit.ui.analysis) on tiny data, and the attack parity
fixture the page's Vitest suite reads (ui/test/fixtures/attack.json)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from unlearnkit.data.dataset import ExampleSet
from unlearnkit.evaluation.comparator import attack_scores, comparator_privacy, confidence_feature, entropy_feature
from unlearnkit.modalities.classifier.adapter import ClassifierAdapter
from unlearnkit.modalities.classifier.models import MLP, SmallCNN
from unlearnkit.modalities.classifier.scores import Scores, compute_scores
from unlearnkit.ui import analysis

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "ui" / "test" / "fixtures" / "attack.json"


def _scores(n: int, k: int = 5, seed: int = 0, sharp: float = 3.0) -> Scores:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), labels] += sharp * rng.random(n)
    return Scores(np.array([f"e{i}" for i in range(n)]), labels, logits.astype(np.float32))


def _random_orthogonal(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


# --------------------------------------------------------------------------- CKA
def test_cka_of_a_model_with_itself_is_one_on_every_layer():
    torch.manual_seed(0)
    model = MLP(12, 4, hidden=(16, 8)).eval()
    data = ExampleSet.from_tensors(torch.randn(64, 12), torch.randint(0, 4, (64,)))
    reps = analysis.layer_outputs(model, data, ClassifierAdapter(4))
    layers = analysis.layer_names(model)
    assert layers == ["net.1", "net.3", "net.5"]
    assert set(reps) == set(layers) and reps["net.1"].shape == (64, 16)
    # the last Linear's output is the logits
    with torch.no_grad():
        np.testing.assert_allclose(reps["net.5"], model(data.inputs).double().numpy(), rtol=1e-5, atol=1e-6)
    assert analysis.cka_by_layer(reps, reps, layers) == pytest.approx([1.0, 1.0, 1.0], abs=1e-12)


def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling_not_to_any_linear_map():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 6))
    y = x @ rng.normal(size=(6, 4)) + 0.5 * rng.normal(size=(50, 4))
    base = analysis.linear_cka(x, y)
    assert 0.0 < base < 1.0
    q = _random_orthogonal(6, 2)
    assert analysis.linear_cka(x @ q, y) == pytest.approx(base, abs=1e-10)
    assert analysis.linear_cka(3.7 * x, 0.2 * y) == pytest.approx(base, abs=1e-10)
    assert analysis.linear_cka(x + 5.0, y - 2.0) == pytest.approx(base, abs=1e-10)  # centring
    assert analysis.linear_cka(x @ q * 2.5, x) == pytest.approx(1.0, abs=1e-10)
    # an anisotropic scaling of the features changes it (CKA is not invariant to every map)
    stretch = np.diag([10.0, 1, 1, 1, 1, 0.1])
    assert abs(analysis.linear_cka(x @ stretch, y) - base) > 1e-3


def test_cka_through_the_gram_matrices_equals_the_feature_form():
    """A representation wider than n takes the n x n Gram path: the same number."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(20, 8)), rng.normal(size=(20, 5))
    narrow = analysis.linear_cka(x, y)
    wide = analysis.linear_cka(np.hstack([x, np.zeros((20, 30))]), y)  # zero columns change nothing
    assert wide == pytest.approx(narrow, abs=1e-12)
    # the definition, written out (Kornblith et al. 2019)
    xc, yc = x - x.mean(0), y - y.mean(0)
    want = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert narrow == pytest.approx(want, abs=1e-12)
    assert math.isnan(analysis.linear_cka(np.ones((10, 3)), y[:10]))


def test_layer_outputs_of_a_cnn_cover_its_conv_and_linear_layers():
    torch.manual_seed(0)
    model = SmallCNN(1, 3, width=4).eval()
    data = ExampleSet.from_tensors(torch.randn(10, 1, 8, 8), torch.randint(0, 3, (10,)))
    reps = analysis.layer_outputs(model, data, ClassifierAdapter(3), batch_size=4)
    assert list(reps) == ["features.0", "features.2", "features.5", "head.1", "head.3"]
    assert reps["features.0"].shape == (10, 4 * 8 * 8) and reps["head.3"].shape == (10, 3)
    pen = analysis.penultimate(model, data, ClassifierAdapter(3))
    assert pen.shape == (10, 128) and analysis.penultimate_name(model) == "head.3"


# --------------------------------------------------------------------------- Procrustes and projections
def test_procrustes_aligns_a_rotated_scaled_shifted_point_set_to_disparity_zero():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(40, 2))
    theta = 1.1
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    reflect = np.diag([1.0, -1.0])
    b = 0.3 * a @ rot @ reflect + np.array([4.0, -2.0])
    aligned, disparity = analysis.procrustes_align(a, b)
    assert disparity == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(aligned, a, atol=1e-10)


def test_procrustes_disparity_is_scipys_and_a_is_left_in_place():
    from scipy.spatial import procrustes

    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(30, 2)), rng.normal(size=(30, 2))
    aligned, disparity = analysis.procrustes_align(a, b)
    assert disparity == pytest.approx(procrustes(a, b)[2], abs=1e-12)
    assert 0.0 < disparity < 1.0
    # the aligned b is no farther from a than b itself (after centring) and keeps a's centre
    assert np.linalg.norm(aligned - a) <= np.linalg.norm((b - b.mean(0)) - (a - a.mean(0)))
    np.testing.assert_allclose(aligned.mean(0), a.mean(0), atol=1e-12)


def test_pca_projection_and_umap_without_the_package():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(25, 7))
    p = analysis.project(x, "pca", seed=0)
    assert p.shape == (25, 2)
    np.testing.assert_allclose(p, analysis.project(x, "pca", seed=0))
    assert analysis.project(x[:, :1], "pca").shape == (25, 2)  # one feature: padded
    with pytest.raises(analysis.ConfigError, match="projection"):
        analysis.project(x, "tsne")


def test_umap_says_what_to_install_when_umap_learn_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)  # import umap -> ImportError
    with pytest.raises(analysis.MissingDependency, match=r"pip install 'unlearnkit\[ui\]'"):
        analysis.umap_2d(np.zeros((10, 3)))


def test_sample_indices_are_seeded_bounded_and_shared_over_splits():
    sizes = {"forget": 30, "retain": 500, "test": 200}
    s = analysis.sample_indices(sizes, 300, seed=7)
    assert {k: len(v) for k, v in s.items()} == {"forget": 30, "retain": 135, "test": 135}
    assert all(np.all(np.diff(v) > 0) and (v < sizes[k]).all() for k, v in s.items())
    again = analysis.sample_indices(sizes, 300, seed=7)
    assert all(np.array_equal(s[k], again[k]) for k in s)
    assert not np.array_equal(analysis.sample_indices(sizes, 300, seed=8)["retain"], s["retain"])
    everything = analysis.sample_indices(sizes, 10_000, seed=7)
    assert {k: len(v) for k, v in everything.items()} == sizes
    with pytest.raises(analysis.ConfigError):
        analysis.sample_indices(sizes, 0, seed=7)


# --------------------------------------------------------------------------- classes
def test_prediction_matrix_counts_every_example_once():
    sc = _scores(200, k=5, seed=8)
    m = analysis.prediction_matrix(sc, 5)
    assert m.shape == (5, 5) and m.sum() == 200
    np.testing.assert_array_equal(m.sum(1), np.bincount(sc.labels, minlength=5))
    np.testing.assert_array_equal(m.sum(0), np.bincount(sc.pred, minlength=5))
    assert np.trace(m) == int(sc.correct.sum())


def test_class_accuracy_matches_scores():
    sc = _scores(150, k=6, seed=9)
    sc.labels[sc.labels == 5] = 4  # class 5 has no example: NaN
    acc = analysis.class_accuracy(sc, 6)
    assert math.isnan(acc[5])
    counts = np.bincount(sc.labels, minlength=6)
    for c in range(5):
        assert acc[c] == pytest.approx(float(np.mean(sc.pred[sc.labels == c] == c)))
    assert float(np.nansum(acc * counts) / counts.sum()) == pytest.approx(sc.accuracy())


# --------------------------------------------------------------------------- attack features and instances
def test_attack_features_are_the_comparator_features_and_the_loss():
    sc = _scores(80, k=10, seed=10)
    f = analysis.attack_features(sc)
    assert list(f) == list(analysis.ATTACK_FEATURES)
    np.testing.assert_array_equal(f["entropy"], entropy_feature(sc.logits, 2.0))
    np.testing.assert_array_equal(f["confidence"], confidence_feature(sc.logits, 1.0))
    np.testing.assert_array_equal(f["loss"], sc.loss)


def test_instance_inputs_are_images_or_feature_rows():
    img = ExampleSet.from_tensors(torch.rand(3, 1, 8, 8) * 16, torch.tensor([0, 1, 2]))
    one = analysis.instance_input(img, 1)
    assert one["kind"] == "image" and (one["height"], one["width"], one["channels"]) == (8, 8, 1)
    assert len(one["pixels"]) == 64 and 0.0 <= min(one["pixels"]) and max(one["pixels"]) <= 1.0
    rows = ExampleSet.from_tensors(torch.tensor([[1.5, -2.0]]), torch.tensor([0]))
    rows.meta["features"] = ["age", "dose"]
    assert analysis.instance_input(rows, 0) == {"kind": "row", "features": [["age", 1.5], ["dose", -2.0]]}
    rows.meta.pop("features")
    assert analysis.instance_input(rows, 0)["features"][0][0] == "x0"


def test_nan_to_none_gives_strict_json():
    out = analysis.nan_to_none({"a": np.array([1.0, np.nan, np.inf]), "b": np.float32(2.5), "c": np.int64(3)})
    assert out == {"a": [1.0, None, None], "b": 2.5, "c": 3}
    json.dumps(out, allow_nan=False)


def test_the_scores_of_a_real_model_feed_the_views():
    torch.manual_seed(0)
    model = MLP(4, 3, hidden=(8,)).eval()
    data = ExampleSet.from_tensors(torch.randn(30, 4), torch.randint(0, 3, (30,)))
    sc = compute_scores(model, data, ClassifierAdapter(3))
    assert analysis.prediction_matrix(sc, 3).sum() == 30
    assert np.isfinite(analysis.attack_features(sc)["entropy"]).all()


# --------------------------------------------------------------------------- the page's parity fixture
def _fixture() -> dict:
    """Seeded features of two models on a forget set (members) and a holdout (non-members), and
    what unlearnkit.evaluation.comparator computes from them."""
    k, n_forget, n_holdout = 10, 40, 60
    rng = np.random.default_rng(20260101)

    def scores(n: int, sharp: float) -> Scores:
        labels = rng.integers(0, k, n)
        logits = rng.normal(size=(n, k))
        logits[np.arange(n), labels] += sharp * rng.random(n)
        return Scores(np.array([f"x{i:03d}" for i in range(n)]), labels, logits)

    sc = {
        "a": {"forget": scores(n_forget, 9.0), "holdout": scores(n_holdout, 5.0)},  # still remembers
        "b": {"forget": scores(n_forget, 5.0), "holdout": scores(n_holdout, 5.0)},  # like a retrain
    }
    feats = {m: {s: analysis.attack_features(v) for s, v in d.items()} for m, d in sc.items()}
    ranges = {f: list(r) for f, r in analysis.FEATURE_RANGE.items()}
    cases, sweeps = [], {}
    for m in ("a", "b"):
        sweeps[m] = {}
        for f in analysis.ATTACK_FEATURES:
            lo, hi = ranges[f]
            forget = np.clip(feats[m]["forget"][f], lo, hi)
            holdout = np.clip(feats[m]["holdout"][f], lo, hi)
            picks = [lo, lo + 0.25 * (hi - lo), float(np.median(np.r_[forget, holdout])), lo + 0.75 * (hi - lo), hi]
            for direction, (pos, neg, pos_name, neg_name) in {
                "above": (forget, holdout, "forget", "holdout"),
                "below": (holdout, forget, "holdout", "forget"),
            }.items():
                cases.append(
                    {
                        "model": m,
                        "feature": f,
                        "direction": direction,
                        "pos": pos_name,
                        "neg": neg_name,
                        "thresholds": picks,
                        "attack_score": attack_scores(pos, neg, np.array(picks)).tolist(),
                    }
                )
            grid = np.linspace(lo, hi, analysis.BINS)
            above, below = attack_scores(forget, holdout, grid), attack_scores(holdout, forget, grid)
            i, j = int(np.argmax(above)), int(np.argmax(below))
            best = (
                ("above", float(above[i]), float(grid[i]))
                if above[i] >= below[j]
                else ("below", float(below[j]), float(grid[j]))
            )
            sweeps[m][f] = {"max_attack_score": best[1], "direction": best[0], "threshold": best[2]}
        sweeps[m]["privacy_entropy_confidence"] = min(
            max(1.0 - max(sweeps[m][f]["max_attack_score"] for f in ("entropy", "confidence")), 0.0), 1.0
        )
    comp = comparator_privacy(sc["a"]["forget"], sc["b"]["forget"])
    return {
        "about": (
            "Written by tests/test_ui_analysis.py from unlearnkit.evaluation.comparator; do not edit. "
            "features: raw (unclipped) per-example features; cases: attack_scores(pos, neg, thresholds) "
            "with pos/neg clipped to ranges[feature] ('above' = forget as positives, 'below' = holdout); "
            "sweeps: the best of both directions over linspace(range, bins); privacy_entropy_confidence = "
            "1 - max over entropy and confidence of max_attack_score (membership: forget vs holdout); "
            "comparator_privacy: comparator_privacy(a's forget, b's forget), a as the unlearned model "
            "and b as the reference (entropy and confidence only)."
        ),
        "delta": 1e-5,
        "bins": analysis.BINS,
        "ranges": ranges,
        "temperatures": dict(analysis.FEATURE_TEMPERATURE),
        "features": {
            s: {
                "ids": [str(i) for i in sc["a"][s].example_ids],
                **{m: {f: feats[m][s][f].tolist() for f in feats[m][s]} for m in ("a", "b")},
            }
            for s in ("forget", "holdout")
        },
        "cases": cases,
        "sweeps": sweeps,
        "comparator_privacy": {
            "privacy": comp["privacy"],
            "entropy": comp["entropy"],
            "confidence": comp["confidence"],
            "attack": comp["attack"],
            "threshold": comp["threshold"],
        },
    }


def test_attack_parity_fixture_for_the_page():
    """Writes ui/test/fixtures/attack.json (the page's Vitest suite checks its threshold maths
    against it) and checks what it holds against the Python."""
    doc = _fixture()
    text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    assert json.loads(text) == _fixture()  # deterministic
    if not FIXTURE.is_file() or FIXTURE.read_text() != text:
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        FIXTURE.write_text(text)
    # the model that still remembers its forget set is attacked more easily than the "retrain"
    assert doc["sweeps"]["a"]["confidence"]["max_attack_score"] > doc["sweeps"]["b"]["confidence"]["max_attack_score"]
    assert 0.0 <= doc["comparator_privacy"]["privacy"] < 1.0
    assert len(doc["features"]["forget"]["a"]["entropy"]) == 40 and len(doc["features"]["holdout"]["ids"]) == 60
    # an attack at the lowest threshold of the range calls everyone a member: no advantage
    first = next(c for c in doc["cases"] if c["direction"] == "above")
    assert first["attack_score"][0] == pytest.approx(0.0)
