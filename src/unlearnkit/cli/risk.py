"""``unlearnkit risk``: the Conformal Unlearning Risk of stored unlearning runs, the
risk-controlled set at a budget and level, FROC's score, and the risk landscape plot
(:mod:`unlearnkit.evaluation.risk`; docs/risk.md).

:func:`run_losses` (stored runs -> per-example losses) is public for other surfaces (e.g. a
sweep that checks its trials against a risk budget).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import ConfigError
from . import app
from .common import HomeOpt, JsonOpt, StoreOpt, clean, fmt, out, table, workspace


def select_runs(ws, run_ids: list[str], from_run: str | None) -> list:
    """The stored records to assess: ``run_ids`` (ids or unique prefixes), or every ok unlearn
    run whose original is ``from_run``; checked to be unlearn runs with a stored model, of one
    task, one original and one forget set."""
    if run_ids and from_run:
        raise ConfigError("give run ids or --from, not both")
    if from_run:
        origin = ws.store.get(from_run)
        if origin.kind != "train":
            raise ConfigError(f"--from needs a train run (the original); run {origin.id} is a {origin.kind} run")
        recs = [r for r in ws.store.list(kind="unlearn", status="ok") if r.parent == origin.id]
        if not recs:
            raise ConfigError(f"no unlearning runs of original {origin.id} in the workspace")
        recs.reverse()  # oldest first: the order they were made in
    elif run_ids:
        recs = []
        for rid in run_ids:
            rec = ws.store.get(rid)
            if rec.id not in {r.id for r in recs}:
                recs.append(rec)
    else:
        raise ConfigError("give the unlearning runs to assess (run ids) or --from TRAIN_RUN")
    for r in recs:
        if r.kind != "unlearn":
            raise ConfigError(f"run {r.id} is a {r.kind} run; risk control compares unlearning runs")
        if r.status != "ok" or not r.artifact:
            raise ConfigError(f"run {r.id} has no stored model to score (status {r.status})")
    first = recs[0]
    if from_run and len({r.forget_fingerprint for r in recs}) > 1:
        from ..orchestration.report import scenario_label

        groups: dict[str, list] = {}
        for r in recs:
            groups.setdefault(r.forget_fingerprint, []).append(r)
        listed = "; ".join(
            f"{scenario_label(g[0].scenario)}: {len(g)} run{'s' if len(g) > 1 else ''} ({', '.join(x.id for x in g[:3])}"
            + (", ..." if len(g) > 3 else "")
            + ")"
            for g in groups.values()
        )
        raise ConfigError(
            f"the unlearning runs of original {first.parent} forget {len(groups)} different sets ({listed}); "
            "pass the run ids of one"
        )
    for r in recs[1:]:
        if r.task_key != first.task_key or r.parent != first.parent:
            raise ConfigError(
                f"runs {first.id} and {r.id} are of different tasks or originals; assess one task at a time"
            )
        if r.forget_fingerprint != first.forget_fingerprint:
            raise ConfigError(f"runs {first.id} and {r.id} forget different examples; assess one forget set at a time")
    forgets = {len(r.forget_ids or []) for r in recs}
    if forgets == {0}:
        raise ConfigError(f"run {first.id} records no forget set")
    return recs


def run_losses(
    ws, recs: list, fpr: float, progress: bool = False, calibrate_on: str = "reference", with_original: bool = False
):
    """Per-example losses of stored unlearning runs of one task (:func:`select_runs`):
    ``({run id: ConfigLosses}, reference summary)``. Each model is scored once per split
    (``score_model``); the reference is the cached retrain of the first run's seed (trained
    and cached where the cache lacks it). ``calibrate_on``: whose holdout losses are the
    forget loss's null (:func:`unlearnkit.evaluation.risk.losses_from_scores`).
    ``with_original``: the original (no unlearning) is a configuration too, keyed by its
    train run's id, first."""
    if calibrate_on not in ("reference", "model"):
        raise ConfigError(f"calibrate_on must be reference or model, not {calibrate_on!r}")
    from ..evaluation.risk import losses_from_scores, summary_of_scores
    from ..orchestration.experiment import get_reference, load_run_model, rebuild_task, score_model

    task = rebuild_task(ws, recs[0], progress=progress)
    n_holdout = len(task.holdout)
    if (n_holdout + 1) * fpr < 1.0:
        raise ConfigError(
            f"the holdout has {n_holdout} examples: too few to test at --fpr {fpr} "
            f"(needs {math.ceil(1 / fpr) - 1}); raise --fpr"
        )
    ref, _, _ = get_reference(task, recs[0].seed, ws.cache, progress)
    ref_scores = score_model(ref, task)
    null = ref_scores if calibrate_on == "reference" else None
    configs = {}
    if with_original:
        configs[recs[0].parent] = losses_from_scores(score_model(task.original, task), fpr, reference_scores=null)
    for rec in recs:
        model = load_run_model(ws, rec, task)
        configs[rec.id] = losses_from_scores(score_model(model, task), fpr, reference_scores=null)
    return configs, summary_of_scores(ref_scores)


def labels_of(recs: list) -> dict[str, str]:
    """Short names: the method, and the hyperparameters that differ among its runs here."""
    out = {}
    for r in recs:
        same = [o for o in recs if o.method == r.method]
        keys = sorted(
            {k for o in same for k, v in (o.params or {}).items() if any((q.params or {}).get(k) != v for q in same)}
        )
        params = ",".join(f"{k}={(r.params or {}).get(k)}" for k in keys)
        out[r.id] = f"{r.method}({params})" if params else r.method
    return out


@app.command()
def risk(
    run_ids: Optional[List[str]] = typer.Argument(None, help="Unlearn run ids (or unique prefixes) of one task."),
    from_run: Optional[str] = typer.Option(
        None, "--from", help="Instead of run ids: every unlearning run of this train run (one forget set)."
    ),
    budget: float = typer.Option(..., "--budget", help="Risk budget B in (0, 1) on the forget risk."),
    alpha: float = typer.Option(0.1, "--alpha", help="Level alpha in (0, 1): P(a selected run exceeds B) <= alpha."),
    calibration_fraction: float = typer.Option(
        0.5, "--calibration-fraction", help="Share of forget (and retain) examples used to calibrate, in (0, 1)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the calibration / test split."),
    utility_budget: Optional[float] = typer.Option(
        None, "--utility-budget", help="Also control the retain error at this budget in (0, 1)."
    ),
    fpr: float = typer.Option(
        0.05, "--fpr", help="False-positive rate beta of the membership test defining the forget loss, in (0, 1)."
    ),
    calibrate_on: str = typer.Option(
        "reference", "--calibrate-on", help="Null losses of that test: the reference's holdout, or the model's own."
    ),
    correction: str = typer.Option("bonferroni", "--correction", help="bonferroni or fixed_sequence (runs' order)."),
    p_value: str = typer.Option("hb", "--p-value", help="hb (Hoeffding-Bentkus) or binomial (exact, 0/1 losses)."),
    target: Optional[float] = typer.Option(
        None, "--target", help="FROC's forgetting target a (default: the retrained reference's shift)."
    ),
    w_f: float = typer.Option(0.5, "--w-forget", help="FROC weight of forgetting deficiency (>= 0)."),
    w_u: float = typer.Option(0.5, "--w-utility", help="FROC weight of utility degradation (>= 0)."),
    with_original: bool = typer.Option(
        False, "--with-original", help="Also assess the original (no unlearning) as a configuration."
    ),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the risk landscape to this .png file."),
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Conformal Unlearning Risk per run (an upper bound at level alpha on the probability that a
    forgotten example still looks like a training member), the risk-controlled set (Learn then
    Test: every run certified within the budget, family-wise at level alpha) and FROC's
    continuous risk score; reads the store, writes nothing but --plot (and a reference it had
    to retrain, to the workspace's cache). docs/risk.md defines every number."""
    from ..evaluation.risk import CORRECTIONS, P_VALUES, assess, plot_risk_landscape
    from ..requests import check_output_path

    for name, v in (("--budget", budget), ("--alpha", alpha), ("--fpr", fpr)):
        if not (math.isfinite(v) and 0.0 < v < 1.0):
            raise ConfigError(f"{name} must be in (0, 1), not {v}")
    if utility_budget is not None and not (math.isfinite(utility_budget) and 0.0 < utility_budget < 1.0):
        raise ConfigError(f"--utility-budget must be in (0, 1), not {utility_budget}")
    if not (math.isfinite(calibration_fraction) and 0.0 < calibration_fraction < 1.0):
        raise ConfigError(f"--calibration-fraction must be in (0, 1), not {calibration_fraction}")
    if correction not in CORRECTIONS:
        raise ConfigError(f"--correction must be one of {', '.join(CORRECTIONS)}, not {correction!r}")
    if p_value not in P_VALUES:
        raise ConfigError(f"--p-value must be one of {', '.join(P_VALUES)}, not {p_value!r}")
    for name, v in (("--w-forget", w_f), ("--w-utility", w_u)):
        if not (math.isfinite(v) and v >= 0.0):
            raise ConfigError(f"{name} must be a finite number >= 0, not {v}")
    if target is not None and not math.isfinite(target):
        raise ConfigError(f"--target must be finite, not {target}")
    if calibrate_on not in ("reference", "model"):
        raise ConfigError(f"--calibrate-on must be reference or model, not {calibrate_on!r}")
    check_output_path(plot, "--plot", (".png",))

    ws = workspace(home, store, mode="existing")
    recs = select_runs(ws, list(run_ids or []), from_run)
    if with_original and not recs[0].parent:
        raise ConfigError(f"run {recs[0].id} records no original (train run) to assess beside it")
    configs, reference = run_losses(
        ws, recs, fpr, progress=not as_json, calibrate_on=calibrate_on, with_original=with_original
    )
    result = assess(
        configs,
        budget,
        alpha,
        calibration_fraction,
        seed,
        utility_budget=utility_budget,
        fpr=fpr,
        correction=correction,
        p_value=p_value,
        target=target,
        reference=reference,
        w_f=w_f,
        w_u=w_u,
    )
    labels = labels_of(recs)
    methods = {r.id: r.method for r in recs}
    if with_original:
        labels[recs[0].parent], methods[recs[0].parent] = "original", "original"
    if plot:
        from ..utils import atomic_write

        fig = plot_risk_landscape(result, {k: f"{k[:6]} {v}" for k, v in labels.items()})
        with atomic_write(plot) as fh:
            fig.savefig(fh, format="png", dpi=110)
    c = result.control
    doc = {
        "budget": c.budget,
        "alpha": c.alpha,
        "utility_budget": c.utility_budget,
        "calibration_fraction": result.calibration_fraction,
        "seed": result.seed,
        "fpr": fpr,
        "calibrate_on": calibrate_on,
        "correction": c.correction,
        "p_value": c.p_value,
        "n_calibration": c.n[c.names[0]],
        "n_test": result.n_test,
        "feasible": c.feasible,
        "chosen": result.chosen,
        "reference": reference,
        "plot": str(plot) if plot else None,
        "runs": [
            {
                "run_id": k,
                "method": methods[k],
                "label": labels[k],
                "risk": c.risk[k],
                "cur": c.cur[k],
                "cur_family": c.cur_family[k],
                "p_value": c.p_values[k],
                "feasible": k in c.feasible,
                "test_risk": result.test_risk[k],
                "retain_error": c.utility_risk.get(k),
                "retain_error_bound": c.utility_cur_family.get(k),
                "test_retain_error": result.test_utility_risk[k],
                "froc": result.froc[k],
            }
            for k in c.names
        ],
    }
    rows = [
        [
            k,
            labels[k],
            c.risk[k],
            c.cur[k],
            c.cur_family[k],
            result.test_risk[k],
            result.test_utility_risk[k],
            result.froc[k]["e_R"],
            "yes" if k in c.feasible else "no",
        ]
        for k in c.names
    ]
    level = c.alpha / len(c.names) if c.correction == "bonferroni" else c.alpha
    text = (
        f"forget risk: P(a forgotten example still looks like a member at FPR {fmt(fpr)}); "
        f"{c.n[c.names[0]]} calibration, {result.n_test} test forget examples\n"
        + table(
            rows,
            [
                "run",
                "configuration",
                "risk_cal",
                f"CUR@{c.alpha:g}",
                f"bound@{level:.3g}",
                "risk_test",
                "err_retain",
                "FROC_e_R",
                "feasible",
            ],
        )  # fmt: skip
        + f"\nrisk-controlled set (budget {c.budget:g}, alpha {c.alpha:g}, {c.correction}): "
        + (", ".join(c.feasible) if c.feasible else "empty")
        + (f"\nchosen (lowest FROC e_R in the set): {result.chosen} {labels[result.chosen]}" if result.chosen else "")
        + (f"\nplot: {plot}" if plot else "")
    )
    out(clean(doc), as_json, text)
