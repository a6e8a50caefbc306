"""Risk control (evaluation/risk.py, `unlearnkit risk`): the p-values and bounds, the
Learn-then-Test guarantee checked by many resamples, the per-example losses, FROC's risk
model, and the command on a tiny digits workspace."""

from __future__ import annotations

import math

import numpy as np
import pytest

import unlearnkit.cli.risk  # noqa: F401  (registers `risk` on the app until cli/__init__ imports it)
from cli_support import cli, cli_json
from unlearnkit.errors import ConfigError
from unlearnkit.evaluation import risk as R

pytestmark = pytest.mark.timeout(300)


# --------------------------------------------------------------------------- p-values and bounds


def test_hoeffding_bentkus_p_value_is_the_formula():
    from scipy.stats import binom

    n, r_hat, b = 200, 0.06, 0.1
    h1 = r_hat * math.log(r_hat / b) + (1 - r_hat) * math.log((1 - r_hat) / (1 - b))
    expected = min(math.exp(-n * h1), math.e * binom.cdf(math.ceil(n * r_hat), n, b))
    assert R.hoeffding_bentkus_p_value(r_hat, n, b) == pytest.approx(expected, rel=1e-12)
    # an empirical risk at or above the budget is never evidence against H: R > budget
    assert R.hoeffding_bentkus_p_value(0.1, n, 0.1) == 1.0
    assert R.hoeffding_bentkus_p_value(0.3, n, 0.1) == 1.0
    assert R.binomial_p_value(0.06, n, 0.1) == pytest.approx(binom.cdf(12, n, 0.1))


def test_upper_confidence_bound_inverts_the_p_value():
    losses = np.r_[np.ones(30), np.zeros(270)]  # R̂ = 0.1
    for p_value, pf in (("hb", R.hoeffding_bentkus_p_value), ("binomial", R.binomial_p_value)):
        ucb = R.upper_confidence_bound(losses, 0.05, p_value)
        assert ucb > 0.1
        assert pf(0.1, 300, ucb + 1e-6) <= 0.05 < pf(0.1, 300, ucb - 1e-6)
    # the exact binomial bound of 0/1 losses is the tighter one; both shrink with n
    assert R.upper_confidence_bound(losses, 0.05, "binomial") < R.upper_confidence_bound(losses, 0.05, "hb")
    assert R.upper_confidence_bound(np.tile(losses, 10), 0.05) < R.upper_confidence_bound(losses, 0.05)


def _naive_set(losses: dict, budget: float) -> list[str]:
    return [k for k, v in losses.items() if v.mean() <= budget]


@pytest.mark.parametrize(("p_value", "correction"), [("hb", "bonferroni"), ("binomial", "fixed_sequence")])
def test_risk_controlled_set_holds_its_guarantee_over_many_resamples(p_value, correction):
    """Configurations with known true risks; 2000 fresh calibration sets of 300 examples. The
    family-wise error (some selected configuration's true risk > budget) must stay within
    alpha plus three Monte-Carlo standard errors; picking by empirical risk alone (no bound)
    breaks it on the same draws, so the check can fail; and a configuration well under budget
    is selected almost always (the set is not vacuous)."""
    budget, alpha, n, trials = 0.1, 0.1, 300, 2000
    # fixed-sequence order: from the safest configuration to the riskiest (chosen before the data)
    true = {"a": 0.02, "b": 0.05, "c": 0.09, "d": 0.105, "e": 0.11, "f": 0.13, "g": 0.3}
    rng = np.random.default_rng(7)
    bad, naive_bad, picked_a = 0, 0, 0
    for _ in range(trials):
        losses = {k: (rng.random(n) < p).astype(float) for k, p in true.items()}
        rc = R.risk_controlled_set(losses, budget, alpha, correction=correction, p_value=p_value, bounds=False)
        bad += any(true[k] > budget for k in rc.feasible)
        naive_bad += any(true[k] > budget for k in _naive_set(losses, budget))
        picked_a += "a" in rc.feasible
    margin = 3 * math.sqrt(alpha * (1 - alpha) / trials)
    assert bad / trials <= alpha + margin
    assert naive_bad / trials > alpha + margin  # the same check catches an uncontrolled rule
    assert picked_a / trials >= 0.95


def test_the_exact_test_is_tight_at_the_budget():
    """One configuration whose true risk is the budget itself: the exact binomial test
    certifies it in at most alpha of 4000 draws, and in about the share the discrete test
    allows (P(Bin(n, B) <= k*) with k* its largest rejected count), so an off-by-one in the
    p-value would show."""
    from scipy.stats import binom

    budget, alpha, n, trials = 0.1, 0.1, 300, 4000
    rng = np.random.default_rng(11)
    counts = rng.binomial(n, budget, size=trials)
    picked = np.mean([R.binomial_p_value(k / n, n, budget) <= alpha for k in counts])
    k_star = max(k for k in range(n) if binom.cdf(k, n, budget) <= alpha)
    margin = 3 * math.sqrt(alpha * (1 - alpha) / trials)
    assert picked <= alpha + margin
    assert picked == pytest.approx(binom.cdf(k_star, n, budget), abs=margin)


def test_conformal_unlearning_risk_covers_the_true_risk_pointwise():
    rng = np.random.default_rng(3)
    alpha, true, trials = 0.1, 0.2, 1500
    covered = 0
    for _ in range(trials // 50):
        batch = {str(i): (rng.random(150) < true).astype(float) for i in range(50)}
        covered += sum(v >= true for v in R.conformal_unlearning_risk(batch, alpha).values())
    assert covered / trials >= 1 - alpha - 3 * math.sqrt(alpha * (1 - alpha) / trials)


def test_fixed_sequence_stops_at_the_first_configuration_it_cannot_certify():
    ok, risky = np.zeros(400), np.r_[np.ones(200), np.zeros(200)]
    rc = R.risk_controlled_set({"x": ok, "y": risky, "z": ok}, 0.1, 0.1, correction="fixed_sequence")
    assert rc.feasible == ["x"]
    rc = R.risk_controlled_set({"x": ok, "y": risky, "z": ok}, 0.1, 0.1)
    assert rc.feasible == ["x", "z"]
    assert rc.cur_family["x"] > rc.cur["x"] > 0  # Bonferroni's bound is the wider one


def test_utility_budget_removes_configurations_that_break_utility():
    forget = {"keeps": np.zeros(300), "breaks": np.zeros(300)}
    retain = {"keeps": np.r_[np.ones(3), np.zeros(297)], "breaks": np.r_[np.ones(150), np.zeros(150)]}
    rc = R.risk_controlled_set(forget, 0.1, 0.1, utility_losses_per_config=retain, utility_budget=0.1)
    assert rc.feasible == ["keeps"]
    assert rc.utility_risk["breaks"] == 0.5 and rc.utility_cur_family["breaks"] > 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget": 1.0}, "budget must be in"),
        ({"budget": 0.0}, "budget must be in"),
        ({"alpha": 1.5}, "alpha must be in"),
        ({"alpha": float("nan")}, "alpha must be in"),
        ({"losses": {"a": np.array([0.5, 2.0])}}, "in \\[0, 1\\]"),
        ({"losses": {"a": np.array([])}}, "no calibration losses"),
        ({"losses": {"a": np.array([0.5, 0.0])}, "p_value": "binomial"}, "0/1 losses"),
        ({"losses": {}}, "no configurations"),
        ({"correction": "holm"}, "correction must be"),
        ({"p_value": "wsr"}, "p_value must be"),
    ],
)
def test_bad_input_is_one_config_error(kwargs, message):
    args = {"losses": {"a": np.zeros(10)}, "budget": 0.1, "alpha": 0.1, **kwargs}
    with pytest.raises(ConfigError, match=message):
        R.risk_controlled_set(args.pop("losses"), args.pop("budget"), args.pop("alpha"), **args)


# --------------------------------------------------------------------------- per-example losses


def test_forget_loss_is_a_valid_conformal_membership_test():
    """Forgotten as retraining forgets (forget losses drawn like the holdout's): the share
    flagged is at most beta (exactly floor(beta (m+1)) / (m+1) in expectation); remembered
    (lower losses, as training members have): most are flagged."""
    rng = np.random.default_rng(0)
    beta, m = 0.05, 99
    flagged = [
        R.forget_influence_losses(rng.exponential(size=200), rng.exponential(size=m), beta).mean() for _ in range(400)
    ]
    expected = math.floor(beta * (m + 1)) / (m + 1)
    assert np.mean(flagged) == pytest.approx(expected, abs=0.006)
    remembered = R.forget_influence_losses(rng.exponential(size=200) * 0.01, rng.exponential(size=m), beta)
    assert remembered.mean() > 0.8
    with pytest.raises(ConfigError, match="cannot test at false-positive rate"):
        R.forget_influence_losses(np.ones(3), np.ones(10), 0.05)


def test_froc_scores_are_the_softplus_formula():
    summaries = {
        "p": {"forget_loss": 2.0, "forget_acc": 0.2, "retain_loss": 0.1, "retain_acc": 0.99},
        "q": {"forget_loss": 0.5, "forget_acc": 0.8, "retain_loss": 0.2, "retain_acc": 0.97},
    }
    out = R.froc_scores(summaries, target=1.0, w_f=0.7, w_u=0.3)
    s_q = math.log(0.5) + 0.8 - 0.8
    r_q = math.log(0.2) - math.log(0.1) + 0.99 - 0.97
    e_q = 0.7 * math.log1p(math.exp(1.0 - s_q)) + 0.3 * math.log1p(math.exp(r_q))
    assert out["q"]["s"] == pytest.approx(s_q) and out["q"]["r"] == pytest.approx(r_q)
    assert out["q"]["e_R"] == pytest.approx(e_q)
    assert out["p"]["delta_f"] < out["q"]["delta_f"]  # p forgot more
    ref = {"forget_loss": 2.0, "forget_acc": 0.2, "retain_loss": 0.1, "retain_acc": 0.99}
    assert R.froc_scores(summaries, reference=ref)["p"]["target"] == pytest.approx(math.log(2.0) + 0.8 - 0.2)
    with pytest.raises(ConfigError, match="target"):
        R.froc_scores(summaries)


def _config(forget, retain, ids=None):
    ids = np.array([f"f{i}" for i in range(len(forget))]) if ids is None else ids
    return R.ConfigLosses(ids, np.asarray(forget, float), np.array([f"r{i}" for i in range(len(retain))]),
                          np.asarray(retain, float), 1.0, 0.5, 0.1, 0.99)  # fmt: skip


def test_assess_splits_the_same_examples_for_every_configuration():
    rng = np.random.default_rng(5)
    a = _config(rng.random(200) < 0.02, np.zeros(100))
    b = _config(rng.random(200) < 0.5, np.zeros(100))
    out = R.assess({"a": a, "b": b}, 0.2, 0.1, calibration_fraction=0.25, seed=3, target=0.0)
    mask = R.calibration_mask(200, 0.25, 3)
    assert mask.sum() == 50 and out.n_test == 150
    assert np.array_equal(mask, R.calibration_mask(200, 0.25, 3))  # seeded
    assert not np.array_equal(mask, R.calibration_mask(200, 0.25, 4))
    assert out.control.risk["b"] == pytest.approx(b.forget[mask].mean())
    assert out.test_risk["b"] == pytest.approx(b.forget[~mask].mean())
    assert out.control.feasible == ["a"] and out.chosen == "a"
    shuffled = _config(a.forget, a.retain, ids=a.forget_ids[::-1].copy())
    with pytest.raises(ConfigError, match="other forget or retain examples"):
        R.assess({"a": a, "c": shuffled}, 0.2, 0.1, target=0.0)


# --------------------------------------------------------------------------- the command


def test_risk_command_on_a_digits_workspace(capsys, monkeypatch, tmp_path):
    """A digits original and three unlearning runs of class 3 (the reference's retrain, a
    finetune that barely moves the class, 40 steps of gradient ascent) and one run of another
    forget set: the command certifies retraining and refuses the finetune, writes the plot,
    and refuses bad input with one line, exit 2, before any work and with nothing written."""
    home = tmp_path / "home"

    def run(*args):
        return cli(capsys, monkeypatch, *args, home=home)

    def run_json(*args):
        return cli_json(capsys, monkeypatch, *args, home=home)

    train = run_json("train", "--dataset", "digits", "--model", "mlp", "--epochs", "5", "--json")["run_id"]
    runs = {}
    for name, method, params in (
        ("retrain", "retrain", []),
        ("finetune", "finetune", ["-p", "epochs=1"]),
        ("ascent", "gradient_ascent", ["-p", "max_steps=40"]),
    ):
        args = ("unlearn", "--from", train, "--method", method, *params, "--scenario", "class:3", "--json")
        runs[name] = run_json(*args)["run_id"]
    ids = list(runs.values())
    plot = tmp_path / "landscape.png"
    doc = run_json("risk", *ids, "--budget", "0.2", "--alpha", "0.1", "--plot", str(plot), "--json")
    by = {r["run_id"]: r for r in doc["runs"]}
    assert set(by) == set(ids) and doc["n_calibration"] + doc["n_test"] > 50
    ret, ft = by[runs["retrain"]], by[runs["finetune"]]
    # retraining forgets the class as the reference does: certified within budget
    assert ret["feasible"] and ret["risk"] <= ret["cur"] <= ret["cur_family"] <= 0.2
    # one epoch of finetuning still fits class 3 better than the reference fits unseen 3s
    assert not ft["feasible"] and ft["risk"] > 0.5 and ft["cur_family"] > 0.2
    assert set(doc["feasible"]) == {k for k, r in by.items() if r["cur_family"] <= 0.2}
    assert doc["chosen"] in doc["feasible"]
    assert min(doc["feasible"], key=lambda k: by[k]["froc"]["e_R"]) == doc["chosen"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the same seed gives the same split and numbers; the original (no unlearning) still
    # fits every forgotten 3 better than the reference fits unseen ones
    again = run_json("risk", *ids, "--budget", "0.2", "--with-original", "--json")
    assert [r["risk"] for r in again["runs"][1:]] == [r["risk"] for r in doc["runs"]]
    orig = again["runs"][0]
    assert orig["run_id"] == train and orig["label"] == "original"
    assert orig["risk"] == 1.0 and not orig["feasible"]
    code, text, _ = run("risk", "--from", train, "--budget", "0.2", "--seed", "1")
    assert code == 0 and "risk-controlled set" in text and runs["retrain"] in text

    other = run_json(
        "unlearn", "--from", train, "--method", "finetune", "-p", "epochs=1", "--scenario", "random:0.2", "--json"
    )["run_id"]
    bad_plot = tmp_path / "bad.png"
    for args, message in (
        (("--budget", "1.5"), "--budget must be in (0, 1)"),
        (("--budget", "0"), "--budget must be in (0, 1)"),
        (("--budget", "0.2", "--alpha", "1"), "--alpha must be in (0, 1)"),
        (("--budget", "0.2", "--calibration-fraction", "1"), "--calibration-fraction must be in (0, 1)"),
        (("--budget", "0.2", "--plot", str(tmp_path / "missing" / "p.png")), "does not exist"),
        (("--budget", "0.2", "--plot", str(tmp_path / "p.svg")), "must end in .png"),
    ):
        code, out, err = run("risk", *ids, *args)
        assert code == 2 and err.strip() == f"error: {err.strip()[7:]}" and message in err, (args, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and not out
    for args, message in (
        (("nosuchrun",), "nosuchrun"),
        ((train,), "is a train run"),
        ((ids[0], other), "forget different examples"),
        (("--from", ids[0]), "needs a train run"),
        (("--from", train), "forget 2 different sets (class 3: 3 runs"),  # two forget sets under one original
        ((), "give the unlearning runs"),
    ):
        code, out, err = run("risk", *args, "--budget", "0.2", "--plot", str(bad_plot))
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not bad_plot.exists()
