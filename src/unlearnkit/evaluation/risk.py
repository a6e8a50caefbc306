"""Risk control for unlearning configurations: FROC's risk model, the Conformal Unlearning
Risk (CUR) and risk-controlled configuration sets (plain functions over arrays).

Sources
-------
* **FROC** — Goh, Zheng, Liu, Hormi, Lam, "FROC: A Unified Framework with Risk-Optimized
  Control for Machine Unlearning in LLMs", arXiv:2512.13337 (2025). Only the abstract and a
  secondary summary of the method section could be read here (not the full text), so the
  continuous risk model below follows that summary's formulas and the CUR is built with the
  published Learn-then-Test procedure the abstract's "conformal risk analysis" points to; the
  departures are listed at the end.
* **Learn then Test (LTT)** — Angelopoulos, Bates, Candès, Jordan, Lei, "Learn then Test:
  Calibrating Predictive Algorithms to Achieve Risk Control", arXiv:2110.01052 (2021):
  a configuration ``λ`` is declared valid when the null ``H_λ: R(λ) > B`` is rejected by a
  valid p-value, with family-wise error control over all configurations (Bonferroni, or
  fixed-sequence testing in an order fixed before the calibration data are seen); then
  ``P(some selected λ has R(λ) > B) <= α``. Several risks per configuration: ``p_λ =
  max_k p_{λ,k}`` (LTT, multiple risks).
* **Hoeffding–Bentkus p-value** — Bates, Angelopoulos, Lei, Malik, Jordan, "Distribution-free,
  risk-controlling prediction sets" (RCPS), JACM 2021, Prop. 3; LTT eq. (9). For losses in
  ``[0, 1]`` with empirical risk ``R̂`` over ``n`` i.i.d. calibration examples::

      p_HB(B) = min( exp(-n h1(min(R̂, B), B)),  e · P(Binomial(n, B) <= ceil(n R̂)) )
      h1(a, b) = a log(a / b) + (1 - a) log((1 - a) / (1 - b))

  For 0/1 losses the exact binomial tail ``P(Binomial(n, B) <= n R̂)`` is valid as well
  (``p_value="binomial"``, Clopper–Pearson), and is tighter.
* **Conformal p-values** — Bates, Candès, Lei, Romano, Sesia, "Testing for outliers with
  conformal p-values", Ann. Statist. 2023: the per-example forget loss below.

Losses (per example, per configuration ``λ``)
---------------------------------------------
* forget side (:func:`forget_influence_losses`): a forgotten example ``x`` still influences
  the model's predictions when its loss under ``θ_λ`` is lower than never-trained data's::

      p_λ(x) = (1 + #{h in holdout : ℓ_0(h) <= ℓ_λ(x)}) / (|holdout| + 1)
      L_f(x; λ) = 1{ p_λ(x) <= β }

  ``p_λ(x)`` is the conformal p-value of "x is a non-member, like the holdout". The null
  losses ``ℓ_0`` are the holdout's under the retrained reference (``calibrate_on=
  "reference"``: "is x fitted better than retraining fits never-seen data?"; this also sees
  a forgotten class) or under the unlearned model itself (``"model"``: a loss-threshold
  membership attack on the unlearned model alone; a random forget set only). A model that
  forgot ``x`` as retraining does (x exchangeable with the holdout) has ``P(L_f = 1) <= β``
  (``fpr``, default 0.05), so the reference's own risk sits at about ``β`` and a budget ``B``
  must be above it. The risk ``R_f(λ) = E[L_f]`` over forget examples is the probability that
  a forgotten example is still recognised as a member at false-positive rate ``β`` (a
  threshold attack's TPR at FPR ``β``), conditional on the holdout (and the reference).
* retain side (:func:`utility_losses`): ``L_u(x; λ) = 1{ argmax θ_λ(x) != y }`` on retain
  examples; ``R_u(λ)`` is the retain error.

CUR and the risk-controlled set
-------------------------------
``CUR_δ(λ)`` is the upper confidence bound obtained by inverting the p-value:
``CUR_δ(λ) = inf{ r : p(r) <= δ }``, so ``P(R_f(λ) > CUR_δ(λ)) <= δ`` for each ``λ``.
:func:`conformal_unlearning_risk` reports it at ``δ = α`` (one configuration at a time);
:func:`risk_controlled_set` selects every ``λ`` whose null is rejected under the family-wise
correction, i.e. (Bonferroni) ``CUR_{α/m}(λ) <= B`` — reported as ``cur_family``.

FROC's continuous risk model (:func:`froc_scores`)
--------------------------------------------------
Per configuration, from the mean forget/retain loss and accuracy (max/min over the
configurations compared)::

    s(λ) = log Loss_F(λ) + max_λ' Acc_F(λ') - Acc_F(λ)          (forgetting shift)
    r(λ) = log Loss_R(λ) - log min_λ' Loss_R(λ') + max_λ' Acc_R(λ') - Acc_R(λ)
    Δ_f(λ) = softplus(a - s(λ)),   Δ_u(λ) = softplus(r(λ)),   softplus(z) = log(1 + e^z)
    e_R(λ) = w_f Δ_f(λ) + w_u Δ_u(λ)

Lower ``e_R`` is better; ``a`` is the forgetting target.

Departures
----------
* The paper's full text was not available; the formulas of ``s``, ``r``, ``Δ`` and ``e_R``
  come from a summary of its method section. Its default target ``a`` and weights are not
  known here: ``a`` defaults to ``s`` of the retrained reference (computed with the same
  ``max_λ' Acc_F``), i.e. "forget as much as retraining does", and ``w_f = w_u = 1/2``.
  ``log`` of a mean loss is taken of ``max(loss, 1e-12)``.
* The paper's CUR is a conformal bound on "the probability that forgotten samples continue
  to influence predictions"; its exact loss is not known here, so the loss is the
  conformal-p-value membership test above, and the bound is LTT's Hoeffding–Bentkus (or exact
  binomial) upper confidence bound rather than whatever calibration the paper uses.
* Classifier-like score tables only (per-example ``loss`` and ``logits``/``labels``:
  classifiers and graphs); language-model score tables are refused with an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import ConfigError

P_VALUES = ("hb", "binomial")
CORRECTIONS = ("bonferroni", "fixed_sequence")
DEFAULT_FPR = 0.05
_LOG_FLOOR = 1e-12


# --------------------------------------------------------------------------- p-values and bounds


def _check_level(name: str, v: float) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in (0, 1), not {v!r}") from None
    if not (math.isfinite(v) and 0.0 < v < 1.0):
        raise ConfigError(f"{name} must be in (0, 1), not {v}")
    return v


def _losses(name: str, x, p_value: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        raise ConfigError(f"configuration {name}: no calibration losses")
    if not np.isfinite(a).all() or a.min() < 0.0 or a.max() > 1.0:
        raise ConfigError(f"configuration {name}: losses must be finite and in [0, 1]")
    if p_value == "binomial" and not np.isin(a, (0.0, 1.0)).all():
        raise ConfigError(f"configuration {name}: p_value='binomial' needs 0/1 losses; use 'hb' for bounded ones")
    return a


def _h1(a, b):
    from scipy.special import rel_entr

    return rel_entr(a, b) + rel_entr(1.0 - a, 1.0 - b)


def _hb(risk_hat, n, budget):
    """Vectorised Hoeffding–Bentkus p-value (arrays broadcast)."""
    from scipy.stats import binom

    r, n, b = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (risk_hat, n, budget)))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        hoeffding = np.exp(-n * _h1(np.minimum(r, b), b))
    k = np.ceil(n * r - 1e-9)  # n R̂ is an integer up to rounding for 0/1 losses
    bentkus = np.e * binom.cdf(k, n, b)
    p = np.minimum(1.0, np.minimum(hoeffding, bentkus))
    return np.where(b >= 1.0, 1.0, p)


def _binomial(risk_hat, n, budget):
    """Vectorised exact binomial p-value of 0/1 losses."""
    from scipy.stats import binom

    r, n, b = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (risk_hat, n, budget)))
    return np.where(b >= 1.0, 1.0, binom.cdf(np.round(n * r), n, b))


def hoeffding_bentkus_p_value(risk_hat: float, n: int, budget: float) -> float:
    """RCPS Prop. 3 / LTT eq. (9): a valid p-value of ``H: R > budget`` for ``n`` i.i.d. losses
    in ``[0, 1]`` with mean ``risk_hat`` (see the module docstring for the formula)."""
    return float(_hb(risk_hat, n, budget))


def binomial_p_value(risk_hat: float, n: int, budget: float) -> float:
    """Exact p-value of ``H: R > budget`` for ``n`` i.i.d. 0/1 losses: ``P(Bin(n, B) <= n R̂)``."""
    return float(_binomial(risk_hat, n, budget))


_P_FUNCS = {"hb": _hb, "binomial": _binomial}


def _p_func(p_value: str):
    if p_value not in _P_FUNCS:
        raise ConfigError(f"p_value must be one of {', '.join(P_VALUES)}, not {p_value!r}")
    return _P_FUNCS[p_value]


def _bounds(risk_hat, n, delta: float, p_value: str) -> np.ndarray:
    """Vectorised ``inf{ r : p(r) <= delta }`` by bisection (to 2^-40)."""
    p = _p_func(p_value)
    r = np.asarray(risk_hat, dtype=np.float64)
    n = np.broadcast_to(np.asarray(n, dtype=np.float64), r.shape)
    done = (r >= 1.0) | (p(r, n, r) <= delta)
    lo, hi = r.copy(), np.ones_like(r)  # p(lo) > delta, p(hi) = 0 <= delta where not done
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        rejected = p(r, n, mid) <= delta
        hi = np.where(rejected, mid, hi)
        lo = np.where(rejected, lo, mid)
    return np.where(done, r, hi)


def upper_confidence_bound(losses, delta: float, p_value: str = "hb") -> float:
    """``inf{ r : p(r) <= delta }``: ``P(R > bound) <= delta`` for i.i.d. losses in [0, 1]
    (the p-value is non-increasing in ``r``; found by bisection to 2^-40)."""
    delta = _check_level("delta", delta)
    a = _losses("", losses, p_value)
    return float(_bounds(np.array([a.mean()]), a.size, delta, p_value)[0])


def _named(losses_per_config) -> dict[str, np.ndarray]:
    if isinstance(losses_per_config, Mapping):
        items = list(losses_per_config.items())
    elif isinstance(losses_per_config, Sequence) and not isinstance(losses_per_config, (str, bytes)):
        items = [(str(i), v) for i, v in enumerate(losses_per_config)]
    else:
        raise ConfigError("losses per configuration must be a mapping name -> losses or a list of arrays")
    if not items:
        raise ConfigError("no configurations to assess")
    return {str(k): v for k, v in items}


def conformal_unlearning_risk(losses_per_config, alpha: float, p_value: str = "hb") -> dict[str, float]:
    """CUR per configuration: the ``1 - alpha`` upper confidence bound of its forget risk
    from its calibration losses (``{name: losses}`` or a list), one configuration at a time
    (no multiplicity correction; :func:`risk_controlled_set` has the family-wise one)."""
    alpha = _check_level("alpha", alpha)
    named = {k: _losses(k, v, p_value) for k, v in _named(losses_per_config).items()}
    r_hat = np.array([v.mean() for v in named.values()])
    n = np.array([v.size for v in named.values()])
    return dict(zip(named, map(float, _bounds(r_hat, n, alpha, p_value))))


@dataclass
class RiskControl:
    """The outcome of :func:`risk_controlled_set`; every dict is keyed by configuration name."""

    names: list[str]
    budget: float
    alpha: float
    correction: str
    p_value: str
    n: dict[str, int]
    risk: dict[str, float]  # empirical forget risk on the calibration losses
    cur: dict[str, float]  # CUR at level alpha (pointwise)
    cur_family: dict[str, float]  # the bound the set is decided on (alpha/m for Bonferroni)
    p_values: dict[str, float]  # max over the controlled risks
    feasible: list[str]
    utility_budget: float | None = None
    utility_risk: dict[str, float] = field(default_factory=dict)
    utility_cur_family: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def risk_controlled_set(
    losses_per_config,
    budget: float,
    alpha: float,
    *,
    utility_losses_per_config=None,
    utility_budget: float | None = None,
    correction: str = "bonferroni",
    p_value: str = "hb",
    bounds: bool = True,
) -> RiskControl:
    """LTT's risk-controlled configuration set: every configuration whose forget risk (and,
    where ``utility_budget`` is given, retain risk) is certified within budget, with
    ``P(some selected configuration has R_f > budget or R_u > utility_budget) <= alpha``.

    ``correction="bonferroni"`` tests every configuration at ``alpha / m``;
    ``"fixed_sequence"`` tests them in the order given (which must not depend on the
    calibration losses, e.g. increasing unlearning strength) at ``alpha`` each and stops at
    the first that is not rejected. ``bounds=False`` skips the reported upper bounds
    (``cur``, ``cur_family``; the set does not need them) for callers that resample many times.
    """
    budget = _check_level("budget", budget)
    alpha = _check_level("alpha", alpha)
    if correction not in CORRECTIONS:
        raise ConfigError(f"correction must be one of {', '.join(CORRECTIONS)}, not {correction!r}")
    pf = _p_func(p_value)
    forget = {k: _losses(k, v, p_value) for k, v in _named(losses_per_config).items()}
    utility: dict[str, np.ndarray] = {}
    if utility_budget is not None:
        utility_budget = _check_level("utility budget", utility_budget)
        if utility_losses_per_config is None:
            raise ConfigError("a utility budget needs utility losses per configuration")
        utility = {k: _losses(k, v, p_value) for k, v in _named(utility_losses_per_config).items()}
        if set(utility) != set(forget):
            raise ConfigError("forget and utility losses must name the same configurations")
    names = list(forget)
    m = len(names)
    level = alpha / m if correction == "bonferroni" else alpha
    f_hat = np.array([forget[k].mean() for k in names])
    f_n = np.array([forget[k].size for k in names])
    p_arr = pf(f_hat, f_n, budget)
    if utility:
        u_hat = np.array([utility[k].mean() for k in names])
        u_n = np.array([utility[k].size for k in names])
        p_arr = np.maximum(p_arr, pf(u_hat, u_n, utility_budget))
    p_values = {k: float(v) for k, v in zip(names, p_arr)}
    if correction == "bonferroni":
        feasible = [k for k in names if p_values[k] <= level]
    else:
        feasible = []
        for k in names:
            if p_values[k] > level:
                break
            feasible.append(k)
    return RiskControl(
        names=names,
        budget=budget,
        alpha=alpha,
        correction=correction,
        p_value=p_value,
        n={k: int(v) for k, v in zip(names, f_n)},
        risk={k: float(v) for k, v in zip(names, f_hat)},
        cur=dict(zip(names, map(float, _bounds(f_hat, f_n, alpha, p_value)))) if bounds else {},
        cur_family=dict(zip(names, map(float, _bounds(f_hat, f_n, level, p_value)))) if bounds else {},
        p_values=p_values,
        feasible=feasible,
        utility_budget=utility_budget,
        utility_risk=dict(zip(names, map(float, u_hat))) if utility else {},
        utility_cur_family=dict(zip(names, map(float, _bounds(u_hat, u_n, level, p_value))))
        if utility and bounds
        else {},
    )


# --------------------------------------------------------------------------- per-example losses


def forget_influence_losses(forget_loss, holdout_loss, fpr: float = DEFAULT_FPR) -> np.ndarray:
    """``L_f(x) = 1{p(x) <= fpr}`` per forget example, with ``p(x)`` the conformal p-value of
    its loss among the holdout's losses under the same model (module docstring)."""
    fpr = _check_level("fpr", fpr)
    f = np.asarray(forget_loss, dtype=np.float64).ravel()
    h = np.sort(np.asarray(holdout_loss, dtype=np.float64).ravel())
    if not (np.isfinite(f).all() and np.isfinite(h).all()):
        raise ConfigError("per-example losses must be finite")
    if (h.size + 1) * fpr < 1.0:
        raise ConfigError(
            f"a holdout of {h.size} examples cannot test at false-positive rate {fpr}: "
            f"it needs at least {math.ceil(1 / fpr) - 1}"
        )
    below = np.searchsorted(h, f, side="right")  # #{h <= ℓ(x)}
    p = (1.0 + below) / (h.size + 1.0)
    return (p <= fpr).astype(np.float64)


def _rows(scores):
    """(loss, correct) of a classifier-like score table, on its supervised rows."""
    loss = getattr(scores, "loss", None)
    labels = getattr(scores, "labels", None)
    logits = getattr(scores, "logits", None)
    if loss is None or labels is None or logits is None:
        raise ConfigError(
            f"{type(scores).__name__} score tables have no per-example loss and predictions; "
            "risk control reads classifier-like scores (classifier and graph tasks)"
        )
    labels = np.asarray(labels)
    keep = labels >= 0
    loss = np.asarray(loss, dtype=np.float64)[keep]
    correct = np.asarray(logits).argmax(axis=1)[keep] == labels[keep]
    return loss, correct, np.asarray(scores.example_ids)[keep].astype(str)


def utility_losses(scores) -> np.ndarray:
    """``L_u(x) = 1{argmax θ(x) != y}`` per example of a classifier-like score table."""
    _, correct, _ = _rows(scores)
    return (~correct).astype(np.float64)


@dataclass
class ConfigLosses:
    """One configuration's per-example losses and the aggregates FROC's model reads."""

    forget_ids: np.ndarray
    forget: np.ndarray  # L_f per forget example
    retain_ids: np.ndarray
    retain: np.ndarray  # L_u per retain example
    forget_loss: float  # mean cross-entropy on the forget set
    forget_acc: float
    retain_loss: float
    retain_acc: float


def summary_of_scores(scores: Mapping) -> dict[str, float]:
    """Mean loss and accuracy on the forget and retain splits of a score dict."""
    out = {}
    for split in ("forget", "retain"):
        if split not in scores:
            raise ConfigError(f"the scores have no {split} split")
        loss, correct, _ = _rows(scores[split])
        out[f"{split}_loss"] = float(loss.mean()) if loss.size else float("nan")
        out[f"{split}_acc"] = float(correct.mean()) if correct.size else float("nan")
    return out


def losses_from_scores(
    scores: Mapping, fpr: float = DEFAULT_FPR, reference_scores: Mapping | None = None
) -> ConfigLosses:
    """:class:`ConfigLosses` of one model from the score dict ``score_model`` (or
    ``Evaluation.scores``) gives: splits ``forget``, ``retain`` and ``holdout``. The forget
    loss's null distribution is the holdout's losses under the retrained reference where
    ``reference_scores`` are given (``calibrate_on="reference"``, the default of the CLI),
    else under the model itself (``"model"``)."""
    for split in ("forget", "retain", "holdout"):
        if split not in scores:
            raise ConfigError(f"the scores have no {split} split (risk control needs forget, retain and holdout)")
    if reference_scores is not None and "holdout" not in reference_scores:
        raise ConfigError("the reference scores have no holdout split")
    f_loss, f_correct, f_ids = _rows(scores["forget"])
    h_loss, _, _ = _rows((reference_scores or scores)["holdout"])
    r_loss, r_correct, r_ids = _rows(scores["retain"])
    if f_loss.size == 0 or r_loss.size == 0:
        raise ConfigError("the forget and retain splits must not be empty")
    return ConfigLosses(
        forget_ids=f_ids,
        forget=forget_influence_losses(f_loss, h_loss, fpr),
        retain_ids=r_ids,
        retain=(~r_correct).astype(np.float64),
        forget_loss=float(f_loss.mean()),
        forget_acc=float(f_correct.mean()),
        retain_loss=float(r_loss.mean()),
        retain_acc=float(r_correct.mean()),
    )


# --------------------------------------------------------------------------- FROC's risk model


def softplus(z):
    return np.logaddexp(0.0, z)


def froc_scores(
    summaries: Mapping[str, Mapping[str, float]],
    target: float | None = None,
    reference: Mapping[str, float] | None = None,
    w_f: float = 0.5,
    w_u: float = 0.5,
) -> dict[str, dict[str, float]]:
    """FROC's continuous risk model per configuration (module docstring): ``s``, ``r``,
    ``delta_f``, ``delta_u`` and ``e_R`` from each configuration's ``forget_loss``,
    ``forget_acc``, ``retain_loss``, ``retain_acc``. ``target`` is FROC's forgetting target
    ``a``; without it, ``s`` of ``reference`` (the retrained model's aggregates)."""
    if not summaries:
        raise ConfigError("no configurations to score")
    for name, w in (("w_f", w_f), ("w_u", w_u)):
        if not (math.isfinite(w) and w >= 0):
            raise ConfigError(f"{name} must be a finite number >= 0, not {w}")
    max_acc_f = max(v["forget_acc"] for v in summaries.values())
    max_acc_r = max(v["retain_acc"] for v in summaries.values())
    min_log_loss_r = min(math.log(max(v["retain_loss"], _LOG_FLOOR)) for v in summaries.values())

    def shift(v):
        return math.log(max(v["forget_loss"], _LOG_FLOOR)) + max_acc_f - v["forget_acc"]

    if target is None:
        if reference is None:
            raise ConfigError("FROC's score needs a forgetting target or the reference's aggregates")
        target = shift(reference)
    if not math.isfinite(target):
        raise ConfigError(f"the forgetting target must be finite, not {target}")
    out = {}
    for k, v in summaries.items():
        s = shift(v)
        r = math.log(max(v["retain_loss"], _LOG_FLOOR)) - min_log_loss_r + max_acc_r - v["retain_acc"]
        d_f, d_u = float(softplus(target - s)), float(softplus(r))
        out[k] = {"s": s, "r": r, "delta_f": d_f, "delta_u": d_u, "e_R": w_f * d_f + w_u * d_u, "target": target}
    return out


# --------------------------------------------------------------------------- the whole assessment


def calibration_mask(n: int, fraction: float, seed: int) -> np.ndarray:
    """A seeded boolean mask choosing ``round(fraction * n)`` of ``n`` positions (at least one,
    and one left out when ``fraction < 1``) as the calibration part."""
    from ..utils import derive_seed

    if not (math.isfinite(fraction) and 0.0 < fraction <= 1.0):
        raise ConfigError(f"the calibration fraction must be in (0, 1], not {fraction}")
    k = int(round(fraction * n))
    k = min(max(k, 1), n if fraction >= 1.0 else max(n - 1, 1))
    rng = np.random.default_rng(derive_seed(seed, "risk-calibration", n))
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, k, replace=False)] = True
    return mask


@dataclass
class RiskAssessment:
    """CUR, the risk-controlled set and FROC's score of a group of configurations."""

    control: RiskControl
    froc: dict[str, dict[str, float]]
    test_risk: dict[str, float]  # forget risk on the forget examples left out of calibration
    test_utility_risk: dict[str, float]
    n_test: int
    calibration_fraction: float
    seed: int
    fpr: float
    chosen: str | None  # the feasible configuration with the lowest FROC e_R

    def to_dict(self) -> dict:
        return asdict(self)


def assess(
    configs: Mapping[str, ConfigLosses],
    budget: float,
    alpha: float,
    calibration_fraction: float = 0.5,
    seed: int = 0,
    *,
    utility_budget: float | None = None,
    fpr: float = DEFAULT_FPR,
    correction: str = "bonferroni",
    p_value: str = "hb",
    target: float | None = None,
    reference: Mapping[str, float] | None = None,
    w_f: float = 0.5,
    w_u: float = 0.5,
) -> RiskAssessment:
    """Split the (shared) forget and retain examples into a calibration part and a test
    part (seeded, the same examples for every configuration), decide the risk-controlled set
    on the calibration part, report the realised risks on the test part, and FROC's score.
    ``fpr`` is only recorded here (the losses already carry it)."""
    budget = _check_level("budget", budget)
    alpha = _check_level("alpha", alpha)
    if not configs:
        raise ConfigError("no configurations to assess")
    names = list(configs)
    first = configs[names[0]]
    for k in names[1:]:
        c = configs[k]
        if not (np.array_equal(c.forget_ids, first.forget_ids) and np.array_equal(c.retain_ids, first.retain_ids)):
            raise ConfigError(f"configuration {k} was scored on other forget or retain examples than {names[0]}")
    f_mask = calibration_mask(len(first.forget), calibration_fraction, seed)
    r_mask = calibration_mask(len(first.retain), calibration_fraction, seed + 1)
    control = risk_controlled_set(
        {k: configs[k].forget[f_mask] for k in names},
        budget,
        alpha,
        utility_losses_per_config={k: configs[k].retain[r_mask] for k in names} if utility_budget else None,
        utility_budget=utility_budget,
        correction=correction,
        p_value=p_value,
    )
    nan = float("nan")
    test_risk = {k: float(configs[k].forget[~f_mask].mean()) if (~f_mask).any() else nan for k in names}
    test_u = {k: float(configs[k].retain[~r_mask].mean()) if (~r_mask).any() else nan for k in names}
    summaries = {
        k: {
            "forget_loss": configs[k].forget_loss,
            "forget_acc": configs[k].forget_acc,
            "retain_loss": configs[k].retain_loss,
            "retain_acc": configs[k].retain_acc,
        }
        for k in names
    }
    froc = froc_scores(summaries, target=target, reference=reference, w_f=w_f, w_u=w_u)
    chosen = min(control.feasible, key=lambda k: froc[k]["e_R"]) if control.feasible else None
    return RiskAssessment(
        control, froc, test_risk, test_u, int((~f_mask).sum()), float(calibration_fraction), int(seed), fpr, chosen
    )


# --------------------------------------------------------------------------- the landscape plot


def plot_risk_landscape(assessment: RiskAssessment, labels: Mapping[str, str] | None = None):
    """The risk landscape (a bare matplotlib Figure, Agg canvas): per configuration the
    calibration risk (dot), the bound the set is decided on (bar; green = in the
    risk-controlled set) against the budget (dashed), and the test-part risk (cross); beside
    it FROC's ``Δ_f`` against ``Δ_u`` coloured by ``e_R``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    c = assessment.control
    labels = labels or {}
    names = c.names
    fig = Figure(figsize=(max(7.0, 4.0 + 0.9 * len(names)) + 4.6, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax, ax2 = fig.subplots(1, 2, width_ratios=[max(1.5, 0.25 * len(names)), 1.3])
    x = np.arange(len(names))
    colors = ["#2ca02c" if k in c.feasible else "#d62728" for k in names]
    ax.bar(x, [c.cur_family[k] for k in names], color=colors, alpha=0.45, label="bound used (CUR at α/m)")
    ax.scatter(x, [c.risk[k] for k in names], color="black", zorder=3, label="calibration risk")
    ax.scatter(x, [assessment.test_risk[k] for k in names], marker="x", color="#1f77b4", zorder=3, label="test risk")
    ax.axhline(c.budget, ls="--", color="black", lw=1, label=f"budget {c.budget:g}")
    ax.set_xticks(x, [labels.get(k, k) for k in names], rotation=30, ha="right", fontsize=8)
    top = max([c.budget, *c.cur_family.values(), *assessment.test_risk.values()])
    ax.set_ylim(0, min(1.0, 1.15 * top + 0.02))
    ax.set_ylabel("P(forgotten example still looks like a member)")
    ax.set_title(f"Conformal unlearning risk (α={c.alpha:g}, {c.correction}, {c.p_value})", fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    df = [assessment.froc[k]["delta_f"] for k in names]
    du = [assessment.froc[k]["delta_u"] for k in names]
    sc = ax2.scatter(df, du, c=[assessment.froc[k]["e_R"] for k in names], cmap="viridis", edgecolors=colors, s=60)
    for k, a, b in zip(names, df, du):
        ax2.annotate(labels.get(k, k), (a, b), fontsize=7, xytext=(3, 3), textcoords="offset points")
    fig.colorbar(sc, ax=ax2, label="FROC e_R (lower is better)")
    ax2.set_xlabel("Δ_f forgetting deficiency")
    ax2.set_ylabel("Δ_u utility degradation")
    ax2.set_title("FROC risk model", fontsize=10)
    return fig


__all__ = [
    "CORRECTIONS",
    "DEFAULT_FPR",
    "P_VALUES",
    "ConfigLosses",
    "RiskAssessment",
    "RiskControl",
    "assess",
    "binomial_p_value",
    "calibration_mask",
    "conformal_unlearning_risk",
    "forget_influence_losses",
    "froc_scores",
    "hoeffding_bentkus_p_value",
    "losses_from_scores",
    "plot_risk_landscape",
    "risk_controlled_set",
    "summary_of_scores",
    "upper_confidence_bound",
    "utility_losses",
]
