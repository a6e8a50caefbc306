"""Every registered method on digits: random 10% and one-class scenarios, 3 seeds.

Prints the comparison table (mean ± std over seeds) with each method's cost as a
ratio of retrain's wall time and of retrain's examples through forward+backward,
both measured in this same run (the reference is retrained here, not loaded from a
cache: the benchmark uses a fresh workspace). Writes Markdown and JSON copies under
benchmarks/results/.

    python benchmarks/classifier_methods.py [--model cnn] [--seeds 0,1,2] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from unlearnkit.methods import METHODS
from unlearnkit.orchestration.bench import Grid, run_grid
from unlearnkit.orchestration.report import markdown_table, summarise

COLUMNS = [
    "acc_forget",
    "acc_retain",
    "acc_test",
    "gap_acc_forget",
    "gap_acc_retain",
    "gap_acc_test",
    "mia_lr_auc",
    "mia_efficacy",
    "forget_quality",
    "js_forget",
    "cost_ratio_time",
    "cost_ratio_examples",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--workers", type=int, default=1, help="processes; keep 1 for wall-time ratios free of contention")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    methods = [m for m in sorted(METHODS) if m != "retrain"]
    grid = Grid(
        dataset="digits",
        model=args.model,
        seeds=[int(s) for s in args.seeds.split(",")],
        scenarios=["random:0.1", "class:3"],
        methods=methods,
        workers=args.workers,
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as home:
        records = run_grid(grid, home, on_done=lambda i, n: print(f"job {i}/{n} done", flush=True))
    elapsed = time.perf_counter() - t0
    rows = summarise(records, COLUMNS)
    md = markdown_table(rows, COLUMNS)
    header = (
        f"# Classifier methods on digits ({args.model})\n\n"
        f"Seeds {args.seeds}; scenarios random 10% and class 3; {len(records)} runs in "
        f"{elapsed:.0f} s. Regenerate: `python benchmarks/classifier_methods.py --model {args.model} "
        f"--seeds {args.seeds}`.\n\ncost_ratio_* = method cost / retrain cost, measured in the same run.\n\n"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "classifier_methods.md").write_text(header + md + "\n")
    (out / "classifier_methods.json").write_text(
        json.dumps({"grid": grid.__dict__, "elapsed_s": elapsed, "rows": rows}, indent=1, default=str)
    )
    print(header + md)


if __name__ == "__main__":
    main()
