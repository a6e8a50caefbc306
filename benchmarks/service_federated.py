"""Federated model lines in the deletion-request service: what a request costs from submission
to certificate, and the gate's numbers (the calibration of ``modalities/federated/defaults.py``).

One federation is trained with ``unlearnkit federated train`` (digits, 5 clients holding whole
subjects, FedAvg, 10 rounds, the local runtime; ``client-04`` joins at round 6, so exact
retraining of its data resumes from the stored round 6). Two lines are registered on copies of
the workspace (each retrains its own references), and requests arrive one at a time, each
answered through the workflow's own steps before the next:

* the default policy (``exact``, federated retraining as the escalation): a person of the late
  client-04, a person of client-01, client-02 leaving (a request naming all its subjects),
  5 examples of client-03; each later request carries the line's history;
* ``gradient_ascent`` run inside the client (one unlearning round, one recovery round) with the
  default checks: three people of client-00;
* ``federaser`` (``delta_t`` 2) with the default checks: two people of client-01;
* the default policy with batches of four: four people of four clients submitted together,
  answered as one batch (one exact retraining for the four requests).

Per request: seconds from submission to certificate and per step, the method that answered
(escalated or not), the round exact resumed from and its rounds ratio to retraining, the gate's
accuracy gaps, the canary flip rates (excess: the candidate against the reference; reference:
the deletion's own effect, against the previous exact model), whether it was held (released
here).

    python benchmarks/service_federated.py [--clients 5] [--rounds 10] [--join client-04:6]
        [--out benchmarks/results/service_federated.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from typer.testing import CliRunner

import unlearnkit.cli.federated  # noqa: F401  (registers the command group)
from unlearnkit.cli import app
from unlearnkit.service.core import Service

sys.path.insert(0, str(Path(__file__).parent))
from service_driver import Queue, failed_checks, timed_answer  # noqa: E402

GATE = ("fed_gap_acc_test", "fed_gap_acc_retain", "fed_gap_acc_forget", "fed_mia_loss_auc", "fed_acc_test")
ONE = {"batch": {"max_size": 1, "window_seconds": 0}}
PARTS = (
    ("default_policy", "default (exact)"),
    ("default_policy_batched", "default, batches of 4"),
    ("gradient_ascent_in_client", "GA in client"),
    ("federaser", "FedEraser"),
)


def _answer(svc: Service, q: Queue, line: str, body: dict | list[dict]) -> dict:
    """Submit ``body`` (a list: several requests, one batch) and answer its batch (holds
    released): one row of the results."""
    a = timed_answer(svc, q, line, body)
    assert a.certificates_verify
    s = a.steps
    v = s["verify"]
    cand = s.get("escalate") or s["unlearn"]
    run = svc.workspace.store.get(s["unlearn"]["run_id"]) if "run_id" in s["unlearn"] else None
    extra = (run.tags or {}).get("federated_extra", {}) if run else {}
    row = {
        "requests": len(a.subs),
        "examples": len(s["resolve"]["forget_ids"]),
        "deleted_before": len(s["resolve"]["excluded_ids"]),
        "scenario": (run.scenario or {}).get("kind") if run else None,
        "seconds": round(a.seconds, 2),
        "end": a.end,
        "answered_by": cand["method"],
        "escalated": "escalate" in s,
        "held_and_released": a.released,
        "failed_checks": failed_checks(v),
        "resumed_from_round": extra.get("resumed_from_round"),
        "unlearn_rounds": (s["unlearn"].get("cost") or {}).get("rounds"),
        "gate": {k: v["metrics"].get(k) for k in GATE},
        "canary": {c["measure"]: c["value"] for c in v["canary"] + v["deletion_effect"]},
        "seconds_per_step": a.seconds_per_step,
    }
    if "error" in s["unlearn"]:
        row["error"] = s["unlearn"]["error"]
    return row


def _subjects(task, client: str) -> list[str]:
    return sorted({str(s) for s in task.client_data[client].subject_ids})


def _line(trained: Path, run: str, name: str, policy: dict | None, batch: dict = ONE) -> tuple[Service, Queue]:
    home = trained.parent / name
    shutil.copytree(trained, home)
    q = Queue()
    svc = Service(home, None, batch, enqueue=q)
    svc.register_line(name, run, policy=policy)
    return svc, q


def default_line(trained: Path, run: str, late: str) -> list[dict]:
    svc, q = _line(trained, run, "default", None)
    task = svc._task(run)
    examples = sorted(map(str, task.client_data["client-03"].example_ids))[:5]
    series = [
        (f"a person of {late} (joined late)", {"subjects": _subjects(task, late)[:1]}),
        ("a person of client-01", {"subjects": _subjects(task, "client-01")[:1]}),
        ("client-02 leaves (all its subjects)", {"subjects": _subjects(task, "client-02")}),
        ("5 examples of client-03", {"example_ids": examples}),
    ]
    return [{"request": what, **_answer(svc, q, "default", body)} for what, body in series]


def in_client_line(trained: Path, run: str) -> list[dict]:
    policy = {"method": {"name": "gradient_ascent", "params": {"recovery_rounds": 1}}}
    svc, q = _line(trained, run, "ga", policy)
    people = _subjects(svc._task(run), "client-00")[:3]
    return [
        {"request": f"a person of client-00 ({k + 1})", **_answer(svc, q, "ga", {"subjects": [p]})}
        for k, p in enumerate(people)
    ]


def federaser_line(trained: Path, run: str) -> list[dict]:
    svc, q = _line(trained, run, "fe", {"method": {"name": "federaser", "params": {"delta_t": 2}}})
    people = _subjects(svc._task(run), "client-01")[:2]
    return [
        {"request": f"a person of client-01 ({k + 1})", **_answer(svc, q, "fe", {"subjects": [p]})}
        for k, p in enumerate(people)
    ]


def batched_line(trained: Path, run: str) -> list[dict]:
    svc, q = _line(trained, run, "batched", None, {"batch": {"max_size": 4, "window_seconds": 0}})
    task = svc._task(run)
    bodies = [{"subjects": _subjects(task, c)[1:2]} for c in ("client-00", "client-01", "client-02", "client-03")]
    return [{"request": "4 people of 4 clients, one batch", **_answer(svc, q, "batched", bodies)}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--join", default="client-04:6")
    ap.add_argument("--out", default="benchmarks/results/service_federated.json")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        t0 = time.perf_counter()
        cmd = ["federated", "train", "--home", str(home), "--json", "--clients", str(args.clients)]
        cmd += ["--rounds", str(args.rounds), "--join", args.join]
        res = CliRunner().invoke(app, cmd)
        if res.exit_code != 0:
            raise SystemExit(f"training failed: {res.output}")
        trained = json.loads(res.stdout)
        result = {
            "federation": {
                "dataset": "digits",
                "clients": args.clients,
                "rounds": args.rounds,
                "join": args.join,
                "strategy": "fedavg",
                "runtime": "local",
                "fed_acc_test": trained.get("metrics", {}).get("fed_acc_test"),
            },
            "train_seconds": round(time.perf_counter() - t0, 1),
            "default_policy": default_line(home, trained["run_id"], args.join.split(":")[0]),
            "gradient_ascent_in_client": in_client_line(home, trained["run_id"]),
            "federaser": federaser_line(home, trained["run_id"]),
            "default_policy_batched": batched_line(home, trained["run_id"]),
        }
    result["total_seconds"] = round(time.perf_counter() - t_all, 1)
    result["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "load": os.getloadavg()}
    result["command"] = "python benchmarks/service_federated.py " + " ".join(
        f"--{k} {v}" for k, v in (("clients", args.clients), ("rounds", args.rounds), ("join", args.join))
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(markdown(result))
    for part, _ in PARTS:
        for r in result[part]:
            print(part, {k: v for k, v in r.items() if k != "seconds_per_step"})
    print(f"total {result['total_seconds']} s; written {out} and {out.with_suffix('.md')}")


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def markdown(result: dict) -> str:
    fed = result["federation"]
    lines = [
        "# Federated model lines in the deletion-request service",
        "",
        f"`{result['command']}` ({result['total_seconds']} s in all; training {result['train_seconds']} s; "
        f"load {', '.join(f'{x:.1f}' for x in result['machine']['load'])} on {result['machine']['cpus']} CPUs).",
        "",
        f"Federation: {fed['dataset']}, {fed['clients']} clients by subject, {fed['strategy']}, {fed['rounds']} rounds, "
        f"{fed['join']} joins late, {fed['runtime']} runtime; global test accuracy {_f(fed['fed_acc_test'])}.",
        "One request a batch, submit to certificate through the workflow's own steps; holds released.",
        "",
        "| line | request | requests | examples | seconds | answered by | resumed from round | unlearn rounds "
        "| gap acc test | gap acc forget | excess flip | reference flip | held | failed checks |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for part, label in PARTS:
        for r in result[part]:
            lines.append(
                f"| {label} | {r['request']} | {r['requests']} | {r['examples']} | {r['seconds']:.2f} | {r['answered_by']}"
                f"{' (escalated)' if r['escalated'] else ''} | {_f(r['resumed_from_round'])} | {_f(r['unlearn_rounds'])} "
                f"| {_f(r['gate']['fed_gap_acc_test'])} | {_f(r['gate']['fed_gap_acc_forget'])} "
                f"| {_f(r['canary'].get('excess_flip_rate'))} | {_f(r['canary'].get('reference_flip_rate'))} "
                f"| {r['held_and_released']} | {', '.join(r['failed_checks']) or '-'} |"
            )
    lines += ["", "Seconds per step (verify: evaluation against federated retraining, cached per forget set):", ""]
    for part, label in PARTS:
        for r in result[part]:
            lines.append(
                f"* {label}, {r['request']}: " + ", ".join(f"{k} {v:.2f}" for k, v in r["seconds_per_step"].items())
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
