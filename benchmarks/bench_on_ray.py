"""What running a bench grid on Ray costs: one small grid, in this process and on Ray, in one run.

The same grid (default: digits, MLP, finetune / graddiff / scrub, seeds 0 and 1, random 10%)
runs four times, each in a fresh workspace (so each trains its own originals and
references):

* ``in-process (1 thread)``: ``workers=1``, the jobs one after another in this process (no
  Ray), torch at one thread: the baseline every ratio is against;
* ``ray (cold)``: ``workers=2`` as ``unlearnkit bench`` runs it, starting a local Ray
  instance of 2 CPUs and stopping it afterwards (its start-up is in the time), one torch
  thread per job (the default on 2 CPUs);
* ``ray (warm)``: the same on a Ray instance started before the clock (what a long-lived
  cluster sees);
* ``in-process (2 threads)``: as the first row with torch at every CPU (the default of
  ``workers=1`` where ``OMP_NUM_THREADS`` is not set): on a loaded machine a job's OpenMP
  threads wait for each other.

The untimed metrics of every run are compared record by record with the first row's.
The load average is printed beside the times: on a shared machine the parallel speed-up is
bounded by the CPUs other processes leave free.

    python benchmarks/bench_on_ray.py [--dataset digits] [--model mlp]
        [--methods finetune,graddiff,scrub] [--seeds 0,1] [--out benchmarks/results]

Writes ``bench_on_ray.{md,json}`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from unlearnkit.orchestration.bench import Grid, default_threads, run_grid
from unlearnkit.orchestration.jobs import ray_session

TIMED = {"wall_time_s", "cost_ratio_time"}


def _key(r) -> tuple:
    return (r.kind, r.method, r.seed, json.dumps(r.scenario, sort_keys=True))


def _mismatches(a: list, b: list) -> int:
    x, y = {_key(r): r for r in a}, {_key(r): r for r in b}
    if set(x) != set(y):
        return max(len(x), len(y))
    bad = 0
    for k, r in x.items():
        for m, v in r.metrics.items():
            if m in TIMED:
                continue
            w = y[k].metrics.get(m)
            if not (v == w or (isinstance(v, float) and isinstance(w, float) and math.isnan(v) and math.isnan(w))):
                bad += 1
    return bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--methods", default="finetune,graddiff,scrub")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--scenario", default="random:0.1")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    grid = Grid(
        dataset=args.dataset,
        model=args.model,
        seeds=[int(s) for s in args.seeds.split(",")],
        scenarios=[args.scenario],
        methods=args.methods.split(","),
    )
    import ray

    root = Path(tempfile.mkdtemp(prefix="bench-on-ray-"))
    rows, records = [], {}
    try:

        def timed(name: str, workers: int, threads: int | None = None) -> None:
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            home = root / "".join(c if c.isalnum() else "-" for c in name)
            recs = run_grid(grid, home, workers=workers, threads=threads)
            wall = time.perf_counter() - t0
            records[name] = recs
            rows.append(
                {
                    "mode": name,
                    "workers": workers,
                    "threads_per_job": threads or default_threads(workers),
                    "wall_s": wall,
                    "load_before": load,
                    "load_after": os.getloadavg()[0],
                    "runs": len(recs),
                }
            )
            print(f"{name:<24} {wall:7.1f} s  ({len(recs)} runs, load {load:.1f})", flush=True)

        timed("in-process (1 thread)", 1, threads=1)
        timed("ray (cold)", 2, threads=1)
        t0 = time.perf_counter()
        with ray_session(2, temp_dir=None):
            start = time.perf_counter() - t0
            timed("ray (warm)", 2, threads=1)
        print(f"a local Ray instance of 2 CPUs started in {start:.1f} s", flush=True)
        timed("in-process (2 threads)", 1, threads=os.cpu_count())
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    base = rows[0]["wall_s"]  # in process at one thread: what a job costs without Ray
    for r in rows:
        r["ratio_to_first"] = r["wall_s"] / base
    first = rows[0]["mode"]
    mism = {name: _mismatches(records[first], recs) for name, recs in records.items() if name != first}
    doc = {
        "command": "python benchmarks/bench_on_ray.py "
        + f"--dataset {args.dataset} --model {args.model} --methods {args.methods} --seeds {args.seeds}",
        "grid": {
            "dataset": grid.dataset,
            "model": grid.model,
            "methods": grid.methods,
            "seeds": grid.seeds,
            "scenarios": grid.scenarios,
        },
        "rows": rows,
        "ray_start_s": start,
        "untimed_metric_mismatches_vs_first_row": mism,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "ray": ray.__version__},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_on_ray.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        "# A bench grid in process vs on Ray",
        "",
        f"`{doc['command']}` ({os.cpu_count()} CPUs, Ray {ray.__version__}; one run, each mode in a fresh "
        "workspace: originals and references trained in every mode).",
        "",
        "| mode | workers | torch threads per job | wall time (s) | vs in process at 1 thread | load before / after |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['workers']} | {r['threads_per_job']} | {r['wall_s']:.1f} | "
            f"{r['ratio_to_first']:.2f}x | {r['load_before']:.1f} / {r['load_after']:.1f} |"
        )
    lines += [
        "",
        f"A local Ray instance of 2 CPUs started in {start:.1f} s (inside `ray (cold)`'s time, outside "
        "`ray (warm)`'s). Untimed metrics differing from the first row's, per mode: "
        + ", ".join(f"{k} {v}" for k, v in mism.items())
        + ".",
        "",
    ]
    (out / "bench_on_ray.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
