"""Recommender model lines in the deletion-request service: the gate's numbers per method
(the calibration of ``modalities/recommender/defaults.py``) and what a request costs.

One original (BPR-MF by default, ``--model lightgcn``) is trained on synthetic 300 x 200
(``unlearnkit train --task recsys``). For each method (``--methods``) a fresh line is registered with a gate that passes every
candidate (so each request starts from the previous answer, as it would in production) and
two series of five requests arrive one at a time, each answered before the next: five people
(subjects: a user id, their whole training history) and five requests of five interactions
(five users' one interaction each). Per request it records the gate's metrics (NDCG@10 of
retained users as a ratio to the reference's and its relative gap, the forget interactions'
BPR loss and the reference's, Jaccard@10 of the forgotten users' top 10 with the reference's,
the loss-threshold MIA AUC and the reference's, unlearning bias, the canary loss shifts), seconds from submission to certificate and per workflow step. Every
line runs on its own copy of the trained workspace, so each retrains its own references.

Then a line with the modality's default policy (``SERVICE_POLICY``) answers two people and one
interaction request: seconds per request and step, which checks failed, whether it escalated.
``--methods ''`` runs that part only.

    python benchmarks/service_recsys.py [--methods cragru,finetune,graddiff,npo] [--model bpr]
        [--out benchmarks/results/service_recsys.json]
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

import numpy as np
from typer.testing import CliRunner

from unlearnkit.cli import app
from unlearnkit.service.core import Service

sys.path.insert(0, str(Path(__file__).parent))
from service_driver import Queue, failed_checks, timed_answer  # noqa: E402

#: what the calibration reads from each verify step's metrics
METRICS = ("gap_ndcg10_retained", "jaccard10_forgotten", "mia_auc_interactions", "unlearning_bias", "bpr_loss_forget")
#: every candidate passes (each request starts from the previous one's answer); the reference's
#: NDCG@10 comes with the one ratio check
OPEN_GATE = {
    "gate": {
        "checks": [
            {"metric": "ndcg10_retained", "min_ratio_to_reference": 0.0},
            {"metric": "bpr_loss_forget", "max_gap_to_reference": 1e9},
            {"metric": "mia_auc_interactions", "max_gap_to_reference": 1e9},
        ],
        "canary": {"max_reference_loss_shift": 1e9, "max_excess_loss_shift": 1e9},
    }
}


def _series(svc: Service, run: str) -> dict[str, list[dict]]:
    """Five people and five requests of five interactions (distinct users throughout)."""
    train = svc._task(run).split.train
    users = sorted(set(map(str, train.subject_ids)), key=lambda u: int(u) if u.isdigit() else u)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(users))
    people = [users[k] for k in order[:5]]
    ids = np.asarray([str(i) for i in train.example_ids])
    subj = np.asarray([str(s) for s in train.subject_ids])
    inter = []
    for r in range(5):
        chosen = [users[k] for k in order[5 + 5 * r : 10 + 5 * r]]
        inter.append({"example_ids": [str(rng.choice(ids[subj == u])) for u in chosen]})
    return {"person": [{"subjects": [p]} for p in people], "5 interactions": inter}


def _fresh(trained: Path, name: str) -> Path:
    """A copy of the trained workspace (its own cache: every line retrains its own
    references, so request times compare)."""
    home = trained.parent / name
    shutil.copytree(trained, home)
    return home


def calibrate(trained: Path, run: str, method: str) -> dict:
    out = {}
    for kind, bodies in _series(Service(_fresh(trained, f"{method}-series"), None, {}, enqueue=Queue()), run).items():
        q = Queue()
        home = _fresh(trained, f"{method}-{kind.replace(' ', '')}")
        svc = Service(home, None, {"batch": {"max_size": 1, "window_seconds": 0}}, enqueue=q)
        name = f"{method}-{kind.replace(' ', '')}"
        svc.register_line(name, run, policy=dict(OPEN_GATE, method={"name": method, "params": {}}))
        rows = []
        for body in bodies:
            a = timed_answer(svc, q, name, body)
            assert a.certificates_verify
            steps = a.steps
            v = steps["verify"]
            if "error" in steps["unlearn"]:
                rows.append({"error": steps["unlearn"]["error"]})
                continue
            ratio, loss, mia = v["checks"][:3]
            row = {k: v["metrics"].get(k) for k in METRICS}
            row["ndcg10_ratio_to_reference"] = ratio["value"] / ratio["reference"] if ratio.get("reference") else None
            row["reference_bpr_loss_forget"] = loss.get("reference")
            row["reference_mia_auc_interactions"] = mia.get("reference")
            for c in v["canary"] + v["deletion_effect"]:
                row[c["measure"]] = c["value"]
            row.update(seconds=round(a.seconds, 2), end=a.end, examples=len(steps["resolve"]["forget_ids"]))
            row["seconds_per_step"] = a.seconds_per_step
            rows.append(row)
        out[kind] = rows
    return out


def default_line(trained: Path, run: str) -> list[dict]:
    q = Queue()
    svc = Service(_fresh(trained, "default"), None, {"batch": {"max_size": 1, "window_seconds": 0}}, enqueue=q)
    svc.register_line("default", run)
    series = _series(svc, run)
    rows = []
    for what, body in (
        ("a person", series["person"][0]),
        ("a person", series["person"][1]),
        ("5 interactions", series["5 interactions"][0]),
    ):
        a = timed_answer(svc, q, "default", body)
        assert a.certificates_verify
        steps = a.steps
        rows.append(
            {
                "request": what,
                "seconds": round(a.seconds, 2),
                "end": a.end,
                "escalated": "escalate" in steps,
                "held_and_released": a.released,
                "failed_checks": failed_checks(steps["verify"]),
                "method": (steps.get("escalate") or steps["unlearn"])["method"],
                "seconds_per_step": a.seconds_per_step,
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="cragru,finetune,graddiff,npo")
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--model", default="bpr", help="bpr, lightgcn or two-tower")
    ap.add_argument("--out", default="benchmarks/results/service_recsys.json")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        t0 = time.perf_counter()
        res = CliRunner().invoke(
            app,
            [
                "train",
                "--home",
                str(home),
                "--task",
                "recsys",
                "--dataset",
                args.dataset,
                "--model",
                args.model,
                "--json",
            ],
        )
        if res.exit_code != 0:
            raise SystemExit(f"training failed: {res.output}")
        run = json.loads(res.stdout)["run_id"]
        train_s = time.perf_counter() - t0
        result = {
            "dataset": args.dataset,
            "model": args.model,
            "train_seconds": round(train_s, 1),
            "calibration": {m: calibrate(home, run, m) for m in args.methods.split(",") if m},
            "default_policy": default_line(home, run),
        }
    result["total_seconds"] = round(time.perf_counter() - t_all, 1)
    result["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "load": os.getloadavg()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    for m, kinds in result["calibration"].items():
        for kind, rows in kinds.items():
            for r in rows:
                print(m, kind, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()})
    for r in result["default_policy"]:
        print("default", r)
    print(f"total {result['total_seconds']} s; written {args.out}")


if __name__ == "__main__":
    main()
