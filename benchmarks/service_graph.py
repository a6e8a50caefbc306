"""Graph model lines in the deletion-request service: what a request costs, end to end.

For each graph task (``--tasks``, ``TASK:DATASET`` pairs of ``unlearnkit train --task``
values and graph names) one original is trained (``unlearnkit train``) and registered as a
line with the graph modality's default policy (``modalities/graph/defaults.py``,
``SERVICE_POLICY``: ``finetune``, the DT-AUC / node-accuracy and DF-gap gate, the canary),
one request per batch. Three requests arrive one at a time, each answered before the next is
submitted, through the workflow's own control flow in this process (``answer_batch`` +
``call_step``, as the tests drive it): three edges, a node (with its edges and feature row),
and a person (a subject id). A batch the gate holds is released (and counted).

Reported per request: seconds from submission to certificate and per workflow step, whether
the gate passed or escalated to the exact path (and which checks failed), whether the
certificate verifies against the service's public key, and the examples the answer's run
put through forward/backward beside the reference's retraining (the run store's record).

    python benchmarks/service_graph.py [--tasks graph-link:karate,graph:karate,graph-link:digits,graph:digits]
        [--out benchmarks/results/service_graph.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from typer.testing import CliRunner

from unlearnkit.cli import app
from unlearnkit.service.core import Service

sys.path.insert(0, str(Path(__file__).parent))
from service_driver import Queue, failed_checks, timed_answer  # noqa: E402


def _train(home: Path, task: str, dataset: str) -> str:
    res = CliRunner().invoke(app, ["train", "--home", str(home), "--task", task, "--dataset", dataset, "--json"])
    if res.exit_code != 0:
        raise SystemExit(f"training {task} on {dataset} failed: {res.output}")
    return json.loads(res.stdout)["run_id"]


def _requests(svc: Service, run: str) -> list[tuple[str, dict]]:
    train = svc._task(run).split.train
    ids = [str(i) for i in train.example_ids]
    edges = [i for i in ids if i.startswith("edge:")]
    nodes = [i for i in ids if i.startswith("node:") and "/" not in i]
    person = str(train.subject_ids[ids.index(nodes[min(40, len(nodes) - 1)])])
    return [
        ("3 edges", {"example_ids": edges[4:7]}),
        ("a node", {"example_ids": [nodes[min(20, len(nodes) - 2)]]}),
        ("a person", {"subjects": [person]}),
    ]


def one_task(task: str, dataset: str, root: Path) -> dict:
    home = root / f"{task}-{dataset}"
    t0 = time.perf_counter()
    run = _train(home, task, dataset)
    train_s = time.perf_counter() - t0
    q = Queue()
    svc = Service(home, None, {"batch": {"max_size": 1, "window_seconds": 0}}, enqueue=q)
    t0 = time.perf_counter()
    svc.register_line("g", run)
    register_s = time.perf_counter() - t0
    rows = []
    for what, body in _requests(svc, run):
        a = timed_answer(svc, q, "g", body, reason="benchmark run", actor="benchmark", repeats="again")
        r, s = a.subs[-1], a.steps
        cert = svc.certificate(r["id"])
        rows.append(
            {
                "request": what,
                "examples": r["examples"],
                "end": a.end,
                "seconds": round(a.seconds, 3),
                "steps_s": a.seconds_per_step,
                "gate": "escalated" if "escalate" in s else "passed",
                "failed_checks": failed_checks(s["verify"]),
                "held_and_released": bool(a.released),
                "certificate_verifies": a.certificates_verify,
                "method": (cert.get("method") or {}).get("name"),
            }
        )
    return {"task": task, "dataset": dataset, "train_s": train_s, "register_s": register_s, "requests": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="graph-link:karate,graph:karate,graph-link:digits,graph:digits")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "service_graph.json"))
    args = ap.parse_args()
    pairs = [tuple(x.split(":", 1)) for x in args.tasks.split(",")]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        results = [one_task(task, dataset, Path(root)) for task, dataset in pairs]
    cmd = f"python benchmarks/service_graph.py --tasks {args.tasks}"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    doc = {
        "command": cmd,
        "elapsed_s": time.perf_counter() - t0,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_at_end": load},
        "tasks": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    lines = [
        "# Graph lines in the deletion-request service: one request a batch\n",
        f"Regenerate: `{cmd}` ({doc['elapsed_s'] / 60:.1f} min on {os.cpu_count()} cores, load {load:.1f} at the end)\n",
        "| line | request | rows | seconds | gate | certificate verifies | steps (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for res in results:
        for r in res["requests"]:
            gate = r["gate"] + (f" ({', '.join(r['failed_checks'])})" if r["failed_checks"] else "")
            gate += ", held and released" if r["held_and_released"] else ""
            steps = ", ".join(f"{k} {v:.2f}" for k, v in r["steps_s"].items())
            lines.append(
                f"| {res['task']} {res['dataset']} | {r['request']} | {r['examples']} | {r['seconds']:.2f} | {gate} "
                f"| {r['certificate_verifies']} | {steps} |"
            )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
