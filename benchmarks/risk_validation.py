"""Does the risk-controlled set keep its promise on a real task? Learn-then-Test's guarantee
(``P(some selected configuration has forget risk > B) <= alpha``) checked by many resamples
of the calibration examples of real unlearned digits models.

Task: ``make_task("digits", "mlp", scenario, seed=0)`` for each scenario (default
``random:0.3``, 351 forget examples, and ``class:3``, 119). Configurations: the original (no
unlearning), retrain, gradient ascent (2, 5, 10, 20 steps), finetune (1, 3 epochs), random
labels (5, 20 steps), SCRUB and SalUn at their defaults, each run once (seed 0). Every model
is scored once (``score_model``); the per-example forget loss is the conformal membership
test of :mod:`unlearnkit.evaluation.risk` (``fpr`` 0.05, null = the retrained reference's
holdout losses) and the pool's mean is each configuration's **true risk** (the population
is the forget pool, conditional on these models and the holdout).

Two resampling protocols, ``--resamples`` draws each, for every budget in ``--budgets``
at ``--alpha``:

* ``iid``: a calibration set of ``round(F * pool)`` examples drawn with replacement from the
  pool (i.i.d. from the population, as the theorem assumes); reported: how often some
  selected configuration's true risk exceeds the budget (the family-wise error, FWER, which
  must be <= alpha), how often the configuration FROC would choose (lowest ``e_R`` in the set)
  does, and how often the naive rule "empirical risk <= B" (no bound) selects one that does.
* ``split``: the pool split without replacement into a calibration part (fraction ``F``) and a
  test part, as ``unlearnkit risk`` does; reported: the FWER against the true risk, and how
  often some selected configuration's **test-part** risk exceeds the budget (that adds the
  test part's own sampling noise, so it is not what the guarantee bounds).

Writes ``--out``.{md,json,png}; the figure is the risk landscape of one split (seed 0) of the
first scenario at the middle budget.

    OMP_NUM_THREADS=1 python benchmarks/risk_validation.py            # 5000 resamples, ~3 min
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from unlearnkit import make_task, unlearn
from unlearnkit.data.scenarios import parse_scenario
from unlearnkit.evaluation import risk as R
from unlearnkit.orchestration.experiment import get_reference, score_model

GRID = [
    ("original", None, {}),
    ("retrain", "retrain", {}),
    *[(f"gradient_ascent(max_steps={s})", "gradient_ascent", {"max_steps": s}) for s in (2, 5, 10, 20)],
    *[(f"finetune(epochs={e})", "finetune", {"epochs": e}) for e in (1, 3)],
    *[(f"random_labels(max_steps={s})", "random_labels", {"max_steps": s}) for s in (5, 20)],
    ("scrub", "scrub", {}),
    ("salun", "salun", {}),
]


def configurations(scenario: str, fpr: float) -> tuple[dict[str, R.ConfigLosses], dict, dict]:
    t0 = time.perf_counter()
    task = make_task("digits", "mlp", scenario=parse_scenario(scenario), seed=0)
    ref, _, _ = get_reference(task, 0)
    ref_scores = score_model(ref, task)
    configs = {}
    for name, method, params in GRID:
        model = task.original if method is None else unlearn(task, method, seed=0, **params).model
        configs[name] = R.losses_from_scores(score_model(model, task), fpr, reference_scores=ref_scores)
    info = {
        "scenario": scenario,
        "n_forget": len(task.forget),
        "n_holdout": len(task.holdout),
        "n_retain": len(task.retain),
        "build_s": time.perf_counter() - t0,
    }
    return configs, R.summary_of_scores(ref_scores), info


def froc_order(configs, reference) -> dict[str, float]:
    summaries = {
        k: {"forget_loss": c.forget_loss, "forget_acc": c.forget_acc, "retain_loss": c.retain_loss,
            "retain_acc": c.retain_acc}
        for k, c in configs.items()
    }  # fmt: skip
    return {k: v["e_R"] for k, v in R.froc_scores(summaries, reference=reference).items()}


def resample(configs, e_r, budget, alpha, fraction, resamples, protocol, p_value, seed):
    names = list(configs)
    pool = np.stack([configs[k].forget for k in names])  # (configs, pool)
    true = pool.mean(axis=1)
    n_pool = pool.shape[1]
    n_cal = int(round(fraction * n_pool))
    rng = np.random.default_rng(seed)
    bad = bad_chosen = naive_bad = bad_test = 0
    picked = np.zeros(len(names))
    sizes = []
    for _ in range(resamples):
        if protocol == "iid":
            idx = rng.integers(0, n_pool, n_cal)
            cal, test = pool[:, idx], None
        else:
            perm = rng.permutation(n_pool)
            cal, test = pool[:, perm[:n_cal]], pool[:, perm[n_cal:]]
        rc = R.risk_controlled_set(dict(zip(names, cal)), budget, alpha, p_value=p_value, bounds=False)
        sel = [names.index(k) for k in rc.feasible]
        picked[sel] += 1
        sizes.append(len(sel))
        bad += any(true[i] > budget for i in sel)
        if sel:
            chosen = min(sel, key=lambda i: e_r[names[i]])
            bad_chosen += true[chosen] > budget
        naive_bad += any(true[i] > budget for i in np.flatnonzero(cal.mean(axis=1) <= budget))
        if test is not None:
            bad_test += any(test[i].mean() > budget for i in sel)
    se = math.sqrt(alpha * (1 - alpha) / resamples)
    return {
        "protocol": protocol,
        "p_value": p_value,
        "budget": budget,
        "alpha": alpha,
        "n_calibration": n_cal,
        "resamples": resamples,
        "fwer": bad / resamples,
        "fwer_within_alpha_3se": bad / resamples <= alpha + 3 * se,
        "chosen_exceeds": bad_chosen / resamples,
        "naive_fwer": naive_bad / resamples,
        "test_part_exceeds": bad_test / resamples if protocol == "split" else None,
        "mean_set_size": float(np.mean(sizes)),
        "selected_share": dict(zip(names, (picked / resamples).tolist())),
        "true_risk": dict(zip(names, true.tolist())),
        "mc_se_at_alpha": se,
    }


def coverage(configs, alpha, fraction, resamples, p_value, seed):
    """Per configuration on its own: how often CUR at level alpha (no multiplicity correction)
    falls below the true risk over iid calibration draws (must be <= alpha; near alpha where
    the bound is tight)."""
    names = list(configs)
    pool = np.stack([configs[k].forget for k in names])
    true = pool.mean(axis=1)
    n_cal = int(round(fraction * pool.shape[1]))
    rng = np.random.default_rng(seed)
    missed = np.zeros(len(names))
    for _ in range(resamples):
        idx = rng.integers(0, pool.shape[1], n_cal)
        cur = R.conformal_unlearning_risk(dict(zip(names, pool[:, idx])), alpha, p_value)
        missed += np.array([cur[k] for k in names]) < true
    return dict(zip(names, (missed / resamples).tolist()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", default="random:0.3,class:3")
    ap.add_argument("--budgets", default="0.1,0.15,0.2")
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--fpr", type=float, default=0.05)
    ap.add_argument("--calibration-fraction", type=float, default=0.5)
    ap.add_argument("--resamples", type=int, default=5000)
    ap.add_argument("--out", default="benchmarks/results/risk_validation")
    a = ap.parse_args()
    budgets = [float(b) for b in a.budgets.split(",")]
    t0 = time.perf_counter()
    doc = {"command": "OMP_NUM_THREADS=1 python benchmarks/risk_validation.py " + _args_text(a), "scenarios": []}
    plot_done = False
    for s_i, scenario in enumerate(a.scenarios.split(",")):
        configs, reference, info = configurations(scenario, a.fpr)
        e_r = froc_order(configs, reference)
        first = configs["original"]
        info["retain_error"] = {k: float(c.retain.mean()) for k, c in configs.items()}
        info["forget_acc"] = {k: c.forget_acc for k, c in configs.items()}
        info["froc_e_R"] = e_r
        rows = []
        for b_i, budget in enumerate(budgets):
            for protocol in ("iid", "split"):
                for p_value in ("hb", "binomial"):
                    seed = 1000 * s_i + 10 * b_i + (protocol == "split") * 2 + (p_value == "binomial")
                    rows.append(
                        resample(configs, e_r, budget, a.alpha, a.calibration_fraction, a.resamples, protocol,
                                 p_value, seed)
                    )  # fmt: skip
            if not plot_done and b_i == len(budgets) // 2:
                assessment = R.assess(configs, budget, a.alpha, a.calibration_fraction, 0, reference=reference)
                fig = R.plot_risk_landscape(assessment)
                fig.savefig(f"{a.out}.png", dpi=110)
                info["landscape"] = {"budget": budget, "feasible": assessment.control.feasible,
                                     "chosen": assessment.chosen, "cur_family": assessment.control.cur_family}  # fmt: skip
                plot_done = True
        info["n_pool"] = len(first.forget)
        info["cur_miscoverage"] = {
            pv: coverage(configs, a.alpha, a.calibration_fraction, a.resamples, pv, 1000 * s_i + 500 + i)
            for i, pv in enumerate(("hb", "binomial"))
        }
        doc["scenarios"].append({**info, "rows": rows})
    doc["wall_s"] = time.perf_counter() - t0
    doc["cpu_s"] = time.process_time()
    doc["load_average_1min_at_end"] = os.getloadavg()[0]
    doc["cpus"] = os.cpu_count()
    Path(f"{a.out}.json").write_text(json.dumps(doc, indent=2))
    Path(f"{a.out}.md").write_text(markdown(doc, a))
    print(markdown(doc, a))


def _args_text(a) -> str:
    return (
        f"--scenarios {a.scenarios} --budgets {a.budgets} --alpha {a.alpha} --fpr {a.fpr} "
        f"--calibration-fraction {a.calibration_fraction} --resamples {a.resamples}"
    )


def markdown(doc: dict, a) -> str:
    lines = [
        "# Risk control on real digits models: Learn-then-Test's guarantee by resampling",
        "",
        f"Measured in one run: `{doc['command']}` ({doc['wall_s']:.0f} s wall, {doc['cpu_s']:.0f} s CPU on "
        f"one thread; load average {doc['load_average_1min_at_end']:.1f} on {doc['cpus']} CPUs at the end).",
        "",
        "FWER = share of resamples in which some configuration of the risk-controlled set has "
        f"true forget risk above the budget (must be <= alpha = {a.alpha}; 3 Monte-Carlo standard "
        "errors at alpha are "
        f"{3 * math.sqrt(a.alpha * (1 - a.alpha) / a.resamples):.4f}). chosen = the same for the one "
        "configuration FROC picks (lowest e_R in the set). naive = selecting every configuration whose "
        "calibration risk is <= budget, with no bound. test part = share of split resamples in which a "
        "selected configuration's risk on the left-out forget examples exceeds the budget (test noise "
        "included; not what the guarantee bounds).",
    ]
    for s in doc["scenarios"]:
        names = list(s["rows"][0]["true_risk"])
        lines += [
            "",
            f"## {s['scenario']}: {s['n_pool']} forget examples, {s['n_holdout']} holdout, {s['n_retain']} retain",
            "",
            "CUR miss = share of iid calibration draws in which the configuration's own CUR at alpha "
            "(no multiplicity correction) is below its true risk (must be <= alpha).",
            "",
            "| configuration | true forget risk | forget acc | retain error | FROC e_R | CUR miss (hb) | CUR miss (binomial) |",
            "|---|---|---|---|---|---|---|",
        ]
        miss = s["cur_miscoverage"]
        for k in names:
            lines.append(
                f"| {k} | {s['rows'][0]['true_risk'][k]:.3f} | {s['forget_acc'][k]:.3f} | "
                f"{s['retain_error'][k]:.3f} | {s['froc_e_R'][k]:.3f} | {miss['hb'][k]:.4f} | {miss['binomial'][k]:.4f} |"
            )
        lines += [
            "",
            "| budget | protocol | p-value | n cal | FWER | chosen | naive | test part | mean set size |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in s["rows"]:
            tp = "–" if r["test_part_exceeds"] is None else f"{r['test_part_exceeds']:.4f}"
            lines.append(
                f"| {r['budget']:g} | {r['protocol']} | {r['p_value']} | {r['n_calibration']} | {r['fwer']:.4f} | "
                f"{r['chosen_exceeds']:.4f} | {r['naive_fwer']:.4f} | {tp} | {r['mean_set_size']:.2f} |"
            )
        lines += ["", "Share of resamples selecting each configuration (iid, hb):", ""]
        hb = [r for r in s["rows"] if r["protocol"] == "iid" and r["p_value"] == "hb"]
        lines.append("| configuration | " + " | ".join(f"B={r['budget']:g}" for r in hb) + " |")
        lines.append("|---|" + "---|" * len(hb))
        for k in names:
            lines.append(f"| {k} | " + " | ".join(f"{r['selected_share'][k]:.3f}" for r in hb) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
