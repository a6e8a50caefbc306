"""A hyperparameter sweep of the classifier methods against U-LiRA, on a seed the leaderboard does not report.

The leaderboard runs every method at its defaults; none of them meets issue 3's goal on the
MLP (accuracy gaps <= 0.01 to the retrained reference on forget, retain and test, U-LiRA AUC
within 0.05 of 0.5, at most 10% of retrain's wall time). This sweep runs each (method,
hyperparameters) of a grid once per leaderboard scenario on a *tuning* seed (default 100,
never one of the leaderboard's): the accuracy gaps and cost ratios come from
:func:`unlearnkit.orchestration.experiment.compare` as on the leaderboard, and the U-LiRA AUC
from ``n`` shadow models of each kind exactly as
:func:`unlearnkit.evaluation.shadow.privacy_report` computes it (shadow unlearns of the
cached shadow originals vs the cached shadow retrains, same seeds); the competition and
comparator scores are left to the leaderboard.

Selection per (method, scenario), :func:`select_best`: among the configurations with every
accuracy gap <= 0.01 and cost_ratio_time <= 0.10, the one with the smallest |AUC - 0.5|;
when none qualifies, the one with the smallest distance to the goal
``max(gaps) / 0.01 + |AUC - 0.5| / 0.05`` (cost left out of that fallback). The
leaderboard's ``--tuned`` runs the selected configuration on its own seeds, so its tuned
rows are held-out numbers.

    python benchmarks/classifier_tuning.py [--seed 100] [--shadows 8] [--workers 2]
        [--methods graddiff,ssd] [--scenarios random:0.1] [--grid JSON]

Writes benchmarks/results/classifier_tuning.{md,json} (every configuration's numbers and the
selection).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from classifier_leaderboard import SCENARIOS
from sweep import configs

#: hyperparameters swept per method (the others keep their defaults). The ranges were set on
#: the tuning seed from a wider first sweep (which also had l1_sparse and finetune: U-LiRA AUC
#: >= 0.70 everywhere, dropped): around the defaults, towards settings that keep the accuracies
#: while moving the model further from the original, at a cost near 10% of retrain's
GRID = {
    "graddiff": {
        "epochs": [3, 5, 8, 12],
        "lr": [5e-4, 1e-3, 2e-3],
        "alpha": [0.8, 0.9, 0.95, 0.97, 0.99],
        "retain_loss": ["nll", "kl"],
    },
    "npo": {"epochs": [5, 10], "lr": [1e-3, 2e-3], "beta": [1.0, 2.0, 4.0], "retain_weight": [3.0, 10.0]},
    "simnpo": {
        "epochs": [5, 10],
        "lr": [1e-3, 2e-3],
        "beta": [2.5, 5.0],
        "retain_weight": [3.0, 10.0],
        "gamma": [0.0, 1.0],
    },
    "eu_k": {"k": [1, 2, 3], "epochs": [1, 2, 3, 4], "lr": [1e-3, 2e-3, 3e-3, 5e-3, 1e-2]},
    "influence": {
        "scale": [0.5, 0.75, 1.0, 1.5, 2.0, 3.0],
        "damping": [1e-3, 1e-2, 1e-1],
        "cg_iters": [5, 10, 20],
        "hessian_samples": [128, 512],
    },
    "scrub_r": {"epochs": [2, 3], "lr": [1e-3, 3e-3], "msteps": [1, 2], "alpha": [1e-3, 0.1, 0.5]},
    "ssd": {"alpha": [3.0, 10.0, 30.0, 100.0], "lam": [0.3, 1.0]},
    "fisher": {"alpha": [3e-8, 1e-7, 3e-7, 1e-6]},
}
GAP_KEYS = ("gap_acc_forget", "gap_acc_retain", "gap_acc_test")
KEEP = ("acc_forget", "acc_retain", "acc_test", *GAP_KEYS, "cost_ratio_time", "cost_ratio_examples")


def _num(r: dict, k: str) -> float:
    v = r.get(k)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else math.nan


def max_gap(r: dict) -> float:
    gaps = [_num(r, k) for k in GAP_KEYS]
    return math.nan if any(math.isnan(g) for g in gaps) else max(gaps)


def feasible(r: dict) -> bool:
    """Every accuracy gap <= 0.01 and cost_ratio_time <= 0.10 (the goal less its privacy part)."""
    return max_gap(r) <= 0.01 and _num(r, "cost_ratio_time") <= 0.10


def goal(r: dict) -> bool:
    """Issue 3's goal for one configuration: feasible, and U-LiRA AUC within 0.05 of 0.5."""
    return feasible(r) and abs(_num(r, "ulira_auc") - 0.5) <= 0.05


def distance(r: dict) -> float:
    """max(gaps) / 0.01 + |AUC - 0.5| / 0.05: how far from the goal's accuracy and privacy bars."""
    d = max_gap(r) / 0.01 + abs(_num(r, "ulira_auc") - 0.5) / 0.05
    return d if math.isfinite(d) else math.inf


def select_best(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """``{scenario: {method: row}}``: per (method, scenario), among the feasible configurations
    (gaps <= 0.01, cost <= 0.10) the smallest |AUC - 0.5|; if none, the smallest :func:`distance`."""
    best: dict[str, dict[str, dict]] = {}
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r.get("status") == "ok" and math.isfinite(_num(r, "ulira_auc")):
            groups.setdefault((r["scenario"], r["method"]), []).append(r)
    for (sc, m), rs in sorted(groups.items()):
        ok = [r for r in rs if feasible(r)]
        pick = min(ok, key=lambda r: abs(r["ulira_auc"] - 0.5)) if ok else min(rs, key=distance)
        best.setdefault(sc, {})[m] = {**pick, "selected_by": "feasible, min |AUC-0.5|" if ok else "min distance"}
    return best


def warm(seed: int, scenario: str, shadows: int, home: str, threads: int) -> float:
    """Train (into the workspace cache) the task's original and its shadow retrains and originals."""
    import torch

    from unlearnkit.data import parse_scenario
    from unlearnkit.evaluation.shadow import shadow_originals, shadow_retrains
    from unlearnkit.modalities.classifier.task import make_task
    from unlearnkit.orchestration.experiment import Workspace

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    ws = Workspace.open(home)
    task = make_task("digits", "mlp", parse_scenario(scenario), seed=seed, cache=ws.cache)
    shadow_retrains(task, shadows, seed, ws.cache)
    shadow_originals(task, shadows, seed, ws.cache)
    return time.perf_counter() - t0


def run(seed: int, scenario: str, cfgs: list[tuple[str, dict]], shadows: int, home: str, threads: int) -> list[dict]:
    """Each configuration once on the task (compare) and its U-LiRA AUC from the shadows."""
    import torch

    from unlearnkit.data import parse_scenario
    from unlearnkit.errors import UnlearnkitError
    from unlearnkit.evaluation.shadow import shadow_originals, shadow_retrains, shadow_unlearns
    from unlearnkit.evaluation.ulira import ulira
    from unlearnkit.methods import get_method
    from unlearnkit.modalities.classifier.task import make_task
    from unlearnkit.orchestration.experiment import Workspace, compare
    from unlearnkit.utils import derive_seed

    torch.set_num_threads(threads)
    ws = Workspace.open(home)
    task = make_task("digits", "mlp", parse_scenario(scenario), seed=seed, cache=ws.cache)
    retrains = shadow_retrains(task, shadows, seed, ws.cache)
    originals, _ = shadow_originals(task, shadows, seed, ws.cache)
    t0 = time.perf_counter()
    recs = compare(task, cfgs, seed=seed, workspace=None).records[2:]  # after original, reference
    t_compare = (time.perf_counter() - t0) / max(1, len(cfgs))
    out = []
    for rec, (m, params) in zip(recs, cfgs):
        row = {
            "scenario": scenario,
            "method": m,
            "params": params,
            "status": rec.status,
            **{k: rec.metrics.get(k) for k in KEEP},
        }
        if rec.status == "ok":
            t1 = time.perf_counter()
            try:  # as privacy_report: same shadow seeds, same unlearn seeds
                un = shadow_unlearns(task, get_method(m, **params), originals, derive_seed(seed, "shadow-unlearns"))
                u = ulira(un.confidence, retrains.confidence)
                row.update(ulira_auc=float(u["auc"]), ulira_tpr_at_1fpr=float(u["tpr_at_1fpr"]))
            except UnlearnkitError as e:
                row.update(status="failed", error=f"shadow unlearn: {e}")
            row["wall_s"] = t_compare + time.perf_counter() - t1
        else:
            row["error"] = rec.error
        out.append(row)
    return out


def _fmt(v, spec: str = ".3f") -> str:
    return format(v, spec) if isinstance(v, (int, float)) and math.isfinite(v) else "–"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=100, help="tuning seed (not one the leaderboard reports)")
    ap.add_argument("--shadows", type=int, default=8, help="shadow models of each kind for U-LiRA")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--methods", default=None, help="comma-separated subset of the grid's methods")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated leaderboard scenarios")
    ap.add_argument("--grid", default=None, help="a JSON grid {method: {param: [values]}} instead of GRID")
    ap.add_argument("--chunk", type=int, default=24, help="configurations per job")
    ap.add_argument("--name", default="classifier_tuning", help="output file stem")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    if args.seed in (0, 1, 2):
        print(f"warning: seed {args.seed} is one the leaderboard reports; tuned rows will not be held-out")
    grids = json.loads(args.grid) if args.grid else GRID
    if args.methods:
        grids = {m: grids[m] for m in args.methods.split(",")}
    scenarios = [s for s in args.scenarios.split(",") if s]
    cfgs = configs(grids)
    threads = max(1, (os.cpu_count() or 1) // args.workers)
    t0 = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as home, ProcessPoolExecutor(args.workers) as ex:
        for f in as_completed([ex.submit(warm, args.seed, sc, args.shadows, home, threads) for sc in scenarios]):
            f.result()
        print(f"[{time.perf_counter() - t0:6.0f}s] originals and shadows trained", flush=True)
        # interleave methods in each job so that jobs cost about the same
        order = [c for grp in itertools.zip_longest(*[[c for c in cfgs if c[0] == m] for m in grids]) for c in grp if c]
        jobs = [
            (sc, order[i::n])
            for sc in scenarios
            for n in [max(1, math.ceil(len(order) / args.chunk))]
            for i in range(n)
        ]
        futs = {ex.submit(run, args.seed, sc, c, args.shadows, home, threads): sc for sc, c in jobs}
        for i, f in enumerate(as_completed(futs)):
            rows += f.result()
            print(f"[{time.perf_counter() - t0:6.0f}s] job {i + 1}/{len(futs)} done ({futs[f]})", flush=True)
    elapsed = time.perf_counter() - t0
    rows.sort(key=lambda r: (scenarios.index(r["scenario"]), r["method"], json.dumps(r["params"], sort_keys=True)))
    best = select_best(rows)
    hits = [f"{sc}: {m} {json.dumps(r['params'])}" for sc, bm in best.items() for m, r in bm.items() if goal(r)]

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = (
        f"python benchmarks/classifier_tuning.py --seed {args.seed} --shadows {args.shadows} "
        f"--workers {args.workers}"
        + (f" --methods {args.methods}" if args.methods else "")
        + (f" --scenarios {args.scenarios}" if args.scenarios != ",".join(SCENARIOS) else "")
        + (f" --grid '{args.grid}'" if args.grid else "")
        + (f" --name {args.name}" if args.name != "classifier_tuning" else "")
    )
    (out / f"{args.name}.json").write_text(
        json.dumps(
            {
                "command": cmd,
                "seed": args.seed,
                "shadows": args.shadows,
                "scenarios": scenarios,
                "elapsed_s": elapsed,
                "grid": grids,
                "goal_met_by": hits,
                "best": best,
                "rows": rows,
            },
            indent=1,
            allow_nan=True,
        )
    )
    walls = [r["wall_s"] for r in rows if "wall_s" in r]
    cols = (
        "| method | params | gap_forget | gap_retain | gap_test | ulira_auc | cost_ratio_time | cost_ratio_examples |"
    )
    rule = "|:--|:--|--:|--:|--:|--:|--:|--:|"

    def line(r: dict, label: str) -> str:
        return (
            f"| {label} | {json.dumps(r['params'])} | "
            + " | ".join(_fmt(r.get(k)) for k in GAP_KEYS)
            + f" | {_fmt(r.get('ulira_auc'))} | {_fmt(r.get('cost_ratio_time'))}x | "
            f"{_fmt(r.get('cost_ratio_examples'))}x |"
        )

    lines = [
        f"# Classifier hyperparameter sweep against U-LiRA (digits, MLP, tuning seed {args.seed})\n",
        f"Regenerate: `{cmd}` ({len(rows)} runs, {elapsed / 60:.1f} min on {os.cpu_count()} cores with "
        f"{args.workers} workers; {_fmt(sum(walls) / max(1, len(walls)), '.2f')} s per configuration in a "
        f"worker, U-LiRA from {args.shadows} shadow models of each kind)\n",
        "Every configuration runs once per scenario on the tuning seed, which the leaderboard does not "
        "report (its `--tuned` rows are therefore held-out numbers). Selected per (method, scenario): "
        "among the configurations with every accuracy gap <= 0.01 and cost_ratio_time <= 0.10, the "
        "smallest |U-LiRA AUC - 0.5|; if none, the smallest max(gap)/0.01 + |AUC - 0.5|/0.05 "
        "(cost ignored). Goal (issue 3: gaps <= 0.01, |AUC - 0.5| <= 0.05, cost <= 0.10) met on this "
        "seed by: " + ("; ".join(hits) if hits else "none") + "\n",
    ]
    for sc in scenarios:
        lines += [f"\n## {sc}: selected\n", cols + " selected by |", rule + ":--|"]
        lines += [line(r, m) + f" {r['selected_by']} |" for m, r in best.get(sc, {}).items()]
    for sc in scenarios:
        lines += [f"\n## {sc}: every configuration\n", cols, rule]
        lines += [line(r, r["method"]) for r in rows if r["scenario"] == sc and r["status"] == "ok"]
        lines += [
            f"| {r['method']} | {json.dumps(r['params'])} | failed: {r.get('error', '')} |||||| "
            for r in rows
            if r["scenario"] == sc and r["status"] != "ok"
        ]
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[: 3 + sum(len(b) + 3 for b in best.values())]))


if __name__ == "__main__":
    main()
