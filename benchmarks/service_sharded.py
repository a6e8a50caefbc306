"""Sharded model lines against monolithic ones: what a deletion costs when the deployed model
is a SISA ensemble whose checkpoints the service stores, measured in one run.

One digits MLP is trained (``unlearnkit train``). Two lines are registered on copies of its
workspace: *sharded* (``sharding: {shards: S, slices: R}``, ``method: sisa``) and
*monolithic* (``method: retrain``, so both answer every request exactly). ``--requests``
one-subject deletion requests arrive one at a time (each answered before the next is
submitted) on each line, through the workflow's own control flow (``answer_batch`` +
``call_step``, as the tests drive it) in this process, alternating which line goes first.

Reported per request and in total: the exact answer's cost as the run store records it
(wall seconds, timed after one warm-up step, and examples through forward/backward: the
``sisa`` run's restore-and-retrain of the affected shards on the sharded line, the
``retrain`` run's full retraining on the monolithic one), the retrained slices out of S x R,
and each line's test accuracy against the monolithic reference (what sharding costs in
accuracy); the ratios monolithic / sharded of seconds and of examples; registration costs
(the ensemble's SISA training against the original's training, which the train run
recorded). Both lines use the same gate, which every exact answer passes. Seconds are
reported in total and for the median request (a sum moves with one stalled process);
examples are deterministic.

    python benchmarks/service_sharded.py [--requests 6] [--shards 5] [--slices 3] \\
        [--out benchmarks/results/service_sharded.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from typer.testing import CliRunner

from unlearnkit.cli import app
from unlearnkit.service.core import Service
from unlearnkit.service.workflows import answer_batch, call_step

GATE = {"checks": [{"metric": "acc_test", "min": 0.5}], "canary": {"size": 100}}


class _Queue:
    def __init__(self):
        self.batches: list[str] = []

    def __call__(self, conn, batch_id, line_id, delay):
        self.batches.append(batch_id)


def _answer(svc: Service, q: _Queue) -> str:
    batch = q.batches.pop(0)
    state = answer_batch(batch, lambda name, b, *a: call_step(svc, name, b, *a), lambda: None)
    assert state == "promoted", state
    return batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=6)
    ap.add_argument("--shards", type=int, default=5)
    ap.add_argument("--slices", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/service_sharded.json"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="uk-sharded-"))
    try:
        res = CliRunner().invoke(app, ["train", "--home", str(tmp / "template"), "--json"])
        assert res.exit_code == 0, res.output
        run = json.loads(res.stdout)["run_id"]
        sides = {
            "sharded": {
                "method": {"name": "sisa"},
                "sharding": {"shards": args.shards, "slices": args.slices},
                "gate": GATE,
            },
            "monolithic": {"method": {"name": "retrain"}, "gate": GATE},
        }
        services: dict[str, tuple[Service, _Queue]] = {}
        registration: dict[str, dict] = {}
        for name, policy in sides.items():
            shutil.copytree(tmp / "template", tmp / name)
            q = _Queue()
            svc = Service(tmp / name, None, {"batch": {"max_size": 1, "window_seconds": 0}}, enqueue=q)
            t0 = time.perf_counter()
            line = svc.register_line("d", run, policy)
            registration[name] = {"seconds": time.perf_counter() - t0, "note": svc.versions("d")[0].get("note")}
            assert line["current_version"] == 0
            services[name] = (svc, q)
        train_cost = services["monolithic"][0].workspace.store.get(run).cost
        registration["original_training"] = train_cost

        rows: list[dict] = []
        for i in range(args.requests):
            subject = f"subject-{i + 1:03d}"
            order = list(sides) if i % 2 == 0 else list(reversed(sides))
            row: dict = {"request": i + 1, "first": order[0]}
            for name in order:
                svc, q = services[name]
                svc.submit("d", subjects=[subject])
                batch = _answer(svc, q)
                steps = svc._steps(batch)[0]["steps"]
                cand = steps.get("escalate") or steps["unlearn"]
                rec = svc.workspace.store.get(cand["run_id"])
                metrics = (steps.get("verify_escalate") or steps["verify"])["metrics"]
                row[name] = {
                    "method": rec.method,
                    "seconds": rec.cost["wall_time_s"],
                    "examples": rec.cost["examples_forward"] + rec.cost["examples_backward"],
                    "retrained_slices": (rec.tags or {}).get("retrained_slices"),
                    "acc_test": metrics.get("acc_test"),
                    "gap_acc_test": metrics.get("gap_acc_test"),
                    "escalated": "escalate" in steps,
                }
            rows.append(row)
            s, m = row["sharded"], row["monolithic"]
            print(
                f"request {i + 1}: sharded {s['seconds']:.2f} s, {s['examples']} ex "
                f"({s['retrained_slices']}/{args.shards * args.slices} slices, acc {s['acc_test']:.3f}) | "
                f"monolithic {m['seconds']:.2f} s, {m['examples']} ex (acc {m['acc_test']:.3f}) | "
                f"ratio {m['seconds'] / s['seconds']:.1f}x s, {m['examples'] / s['examples']:.1f}x ex",
                flush=True,
            )
        total = {
            name: {
                "seconds": sum(r[name]["seconds"] for r in rows),
                "median_seconds": statistics.median(r[name]["seconds"] for r in rows),
                "examples": sum(r[name]["examples"] for r in rows),
                "median_acc_test": statistics.median(r[name]["acc_test"] for r in rows),
            }
            for name in sides
        }
        ratios = {
            # the median request: one stalled process (another job on the machine) moves a sum
            "median_seconds_monolithic_over_sharded": total["monolithic"]["median_seconds"]
            / total["sharded"]["median_seconds"],
            "seconds_monolithic_over_sharded": total["monolithic"]["seconds"] / total["sharded"]["seconds"],
            "examples_monolithic_over_sharded": total["monolithic"]["examples"] / total["sharded"]["examples"],
        }
        print(
            f"total: sharded {total['sharded']['seconds']:.2f} s / {total['sharded']['examples']} examples, "
            f"monolithic {total['monolithic']['seconds']:.2f} s / {total['monolithic']['examples']} examples: "
            f"{ratios['seconds_monolithic_over_sharded']:.2f}x seconds "
            f"({ratios['median_seconds_monolithic_over_sharded']:.2f}x the median request's), "
            f"{ratios['examples_monolithic_over_sharded']:.2f}x examples; median test accuracy "
            f"{total['sharded']['median_acc_test']:.3f} (sharded) vs {total['monolithic']['median_acc_test']:.3f}"
        )
        for svc, _ in services.values():
            svc.workspace.store.close()
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        out = {
            "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": commit,
            "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
            "settings": vars(args) | {"out": str(args.out)},
            "registration": registration,
            "requests": rows,
            "total": total,
            "ratios": ratios,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
        print(f"wrote {args.out}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
