"""A small hyperparameter sweep of the causal-LM methods on the profiles task (forget10).

The leaderboard runs every method at its defaults, which were set on the 9-row test task;
on forget10 of 100 people (160 forget rows) most of them overshoot. This sweep runs each
(method, hyperparameters) of a small grid once, scores forget quality, model utility and
cost (the goal's three numbers; the probes and FADE are left to the leaderboard), and writes
benchmarks/results/llm_tuning.{md,json}; the leaderboard's ``--tuned`` takes the best
configuration per method from that JSON. The sweep selects on the same task and seed the
leaderboard reports: its numbers are tuned, not held-out, and the leaderboard says so.

    python benchmarks/llm_tuning.py [--people 100] [--qa 10] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from llm_leaderboard import task_args
from sweep import configs

GRID = {
    "npo": {"epochs": [3, 5], "lr": [1e-3, 3e-3], "retain_weight": [1.0, 3.0]},
    "simnpo": {"epochs": [3, 5], "lr": [1e-3, 3e-3], "retain_weight": [1.0, 3.0]},
    "graddiff": {"epochs": [2, 4], "lr": [1e-3, 3e-3], "alpha": [0.9, 0.97]},
    "wga": {"epochs": [3, 5], "lr": [1e-3, 2e-3], "retain_weight": [1.0, 3.0]},
    "dto": {"epochs": [5, 10], "retain_weight": [1.0, 3.0]},
}


def goal(r: dict) -> bool:
    """Issue 4's goal for one configuration: FQ >= 0.05, utility >= 0.95 x original, cost <= 0.10x."""
    return (
        r["forget_quality"] >= 0.05
        and r["model_utility"] >= 0.95 * r["original_utility"]
        and r["cost_ratio_time"] <= 0.10
    )


def select_best(rows: list[dict]) -> dict[str, dict]:
    """Per method: a configuration meeting the goal first, then one with FQ >= 0.05, then utility."""
    best: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: (goal(r), r["forget_quality"] >= 0.05, r["model_utility"]), reverse=True):
        best.setdefault(r["method"], r)
    return best


def run(cfgs: list[tuple[str, dict]], home: str, threads: int, people: int, qa: int) -> list[dict]:
    import torch

    from unlearnkit.methods import get_method
    from unlearnkit.modalities.causal_lm.task import make_lm_task
    from unlearnkit.orchestration.experiment import Workspace, evaluate_model, get_reference, score_model

    torch.set_num_threads(threads)
    ws = Workspace.open(home)
    task = make_lm_task("profiles", forget="forget10", seed=0, cache=ws.cache, **task_args(people, qa))
    ref, ref_cost, _ = get_reference(task, 0, ws.cache)
    ref_scores = score_model(ref, task)
    names = ["tofu_forget_quality", "tofu_model_utility", "cost", "cost_ratio"]
    orig = evaluate_model(task.original, task, ref_scores, task.original_cost, ref_cost, 0, metrics=names).metrics
    out = []
    for m, params in cfgs:
        r = get_method(m, **params).unlearn(task, seed=0)
        ev = evaluate_model(r.model, task, ref_scores, r.cost, ref_cost, 0, metrics=names).metrics
        out.append(
            {
                "method": m,
                "params": params,
                "original_utility": orig["model_utility"],
                **{k: ev.get(k) for k in ("forget_quality", "model_utility", "cost_ratio_time")},
            }
        )
    return out


def main() -> None:
    import tempfile

    from unlearnkit.modalities.causal_lm.task import make_lm_task
    from unlearnkit.orchestration.experiment import Workspace, get_reference

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=100)
    ap.add_argument("--qa", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--home", default=None, help="workspace to cache the original and reference in")
    ap.add_argument("--grid", default=None, help="a JSON grid {method: {param: [values]}} instead of GRID")
    ap.add_argument("--name", default="llm_tuning", help="output file stem")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    home = args.home or tempfile.mkdtemp(prefix="llm-tuning-")
    t0 = time.perf_counter()
    ws = Workspace.open(home)
    task = make_lm_task(
        "profiles", forget="forget10", seed=0, cache=ws.cache, progress=True, **task_args(args.people, args.qa)
    )
    get_reference(task, 0, ws.cache, progress=True)
    grids = json.loads(args.grid) if args.grid else GRID
    cfgs = configs(grids)
    chunks = [cfgs[i :: args.workers] for i in range(args.workers)]
    threads = max(1, (os.cpu_count() or 1) // args.workers)
    rows: list[dict] = []
    with ProcessPoolExecutor(args.workers) as ex:
        for f in as_completed([ex.submit(run, c, home, threads, args.people, args.qa) for c in chunks]):
            rows += f.result()
    elapsed = time.perf_counter() - t0

    best = select_best(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = f"python benchmarks/llm_tuning.py --people {args.people} --qa {args.qa} --workers {args.workers}" + (
        f" --grid '{args.grid}' --name {args.name}" if args.grid else ""
    )
    (out / f"{args.name}.json").write_text(
        json.dumps({"command": cmd, "elapsed_s": elapsed, "grid": grids, "rows": rows, "best": best}, indent=1)
    )
    lines = [
        "# LM hyperparameter sweep (forget10, seed 0)\n",
        f"Regenerate: `{cmd}` ({elapsed / 60:.1f} min)\n",
        "Selected per method: the goal first (FQ >= 0.05, utility >= 0.95 x original, cost <= 0.10x), "
        "then FQ >= 0.05, then utility. Tuned on the leaderboard's own task and seed.\n",
        "| method | params | forget_quality | model_utility | cost_ratio_time | goal |",
        "|:--|:--|--:|--:|--:|:--|",
    ]
    for r in sorted(rows, key=lambda r: (r["method"], -r["model_utility"])):
        lines.append(
            f"| {r['method']} | {json.dumps(r['params'])} | {r['forget_quality']:.3g} | "
            f"{r['model_utility']:.3f} | {r['cost_ratio_time']:.3f}x | {'yes' if goal(r) else ''} |"
        )
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
