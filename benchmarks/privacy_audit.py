"""Wall time of a per-example privacy audit (``privacy_report(task, method, n_shadow=16)``) for
every loop-based classifier method, in units of one retrain, before (the loop path: every
shadow original unlearned one by one) and after (``Method.unlearn_many`` as one vectorised
ensemble), measured in this one run.

Task: ``make_task("digits", "mlp")`` (random 10% forget set, the MLP (256, 128) trained with the
task's recipe: 30 epochs, batch 64, Adam 1e-3). What ``privacy_report`` trains, counted here:

* 16 shadow retrains and 16 shadow originals (method-independent, trained once per run
  through ``train_many`` into an in-memory cache; their wall times are measured once);
* 16 shadow unlearns (each shadow original unlearned by the method) and 16 repeats (the
  method run 16 times from the task's one original: the competition score's runs), both
  through ``Method.unlearn_many``; plus scoring every model on forget, retain and test.

Columns, each a wall time divided by one retrain's (``get_method("retrain").unlearn(task)``,
the median of three measured in this run): ``audit`` = shadow retrains + shadow originals +
``privacy_report`` with those cached (all of it, parts timed and summed); ``method`` = the
cached ``privacy_report`` alone (what a second method's audit costs); ``unlearn`` = the
two ``unlearn_many`` calls; ``issue`` = shadow retrains + the unlearning of the 16 shadow
originals (the count of issue 12: "16 shadow retrains plus 16 shadow originals unlearned").
``examples`` = examples through forward + backward passes of the two ``unlearn_many`` calls
(the same on both paths). ``vectorised``: how the ensemble ran (``plans`` = LoopPlan
groups, ``train_many`` = plain weighted training, ``loop`` = one by one; ``plans 23/32`` = 23
of 32 model runs in vectorised groups, the rest one by one: IMU's models keep different
numbers of forget examples).

    OMP_NUM_THREADS=1 python benchmarks/privacy_audit.py [--methods scrub,npo] [--n-shadow 16] [--device cuda]

``--device`` puts the task (data, models, every ensemble) on that device; the ratios are then
in retrains on that device (``benchmarks/device_check.sh`` runs it on a GPU).
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

import unlearnkit.engines.ensemble as ens
from unlearnkit.evaluation.shadow import privacy_report, shadow_originals, shadow_retrains
from unlearnkit.methods import METHODS, Method, get_method
from unlearnkit.modalities.classifier.task import make_task


class MemoryCache:
    """The ModelCache protocol in memory (state dicts), so cached shadows cost no disk time."""

    def __init__(self):
        self.d: dict[str, tuple[dict, dict]] = {}

    def get(self, key, model):
        if key not in self.d:
            return None
        state, info = self.d[key]
        model.load_state_dict(state)
        return info

    def put(self, key, model, info):
        self.d[key] = ({k: v.detach().clone() for k, v in model.state_dict().items()}, copy.deepcopy(info))


def loop_based_classifier_methods() -> list[str]:
    """Classifier methods whose update runs the training loop (exact and closed-form ones left out)."""
    out = []
    for name, cls in sorted(METHODS.items()):
        own = [c for c in cls.__mro__ if c.__module__.startswith("unlearnkit.methods.") and c is not Method]
        body = "".join(inspect.getsource(c) for c in own)
        if (
            "classifier" in cls.modalities
            and not cls.exact
            and any(w in body for w in ("run_loop(", "LoopPlan(", "forget_loop_plan(", "_train_many(", "last_k_plan("))
        ):
            out.append(name)
    return out


class Spy:
    """Counts how unlearn_many's model runs went: vectorised LoopPlan groups, train_many, or
    plans run one by one (a multi-loop method such as UNSIR counts one run per model and loop)."""

    def __init__(self):
        self.plans = self.looped = self.train_many = 0
        self._p, self._r, self._t = ens._run_plans_vectorized, ens.run_plan, ens._train_vectorized

    def __enter__(self):
        def plans(p, *a, **k):
            r = self._p(p, *a, **k)
            self.plans += len(p) if r[0] is not None else 0
            return r

        def one(*a, **k):
            self.looped += 1
            return self._r(*a, **k)

        def tm(models, *a, **k):
            self.train_many += len(models)
            return self._t(models, *a, **k)

        ens._run_plans_vectorized, ens.run_plan, ens._train_vectorized = plans, one, tm
        return self

    def __exit__(self, *exc):
        ens._run_plans_vectorized, ens.run_plan, ens._train_vectorized = self._p, self._r, self._t


def _sync(device) -> None:
    """Waits for queued kernels, so a timer read after it covers the work (CUDA runs asynchronously)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def retrain_time(task) -> float:
    _sync(task.device)
    t0 = time.perf_counter()
    get_method("retrain").unlearn(task)
    _sync(task.device)
    return time.perf_counter() - t0


def audit(task, name: str, vectorize: bool | None, n: int, cache) -> dict:
    m = get_method(name)
    m.vectorize = vectorize
    calls = []
    inner = m.unlearn_many

    def timed(*a, **k):
        _sync(task.device)
        t0 = time.perf_counter()
        out = inner(*a, **k)
        _sync(task.device)
        calls.append((time.perf_counter() - t0, out[1]))
        return out

    m.unlearn_many = timed
    with Spy() as spy:
        t0 = time.perf_counter()
        rep = privacy_report(task, m, n_shadow=n, cache=cache)
        wall = time.perf_counter() - t0
    how = "loop"
    if spy.train_many:
        how = "train_many"
    elif spy.plans:
        how = "plans" if not spy.looped else f"plans {spy.plans}/{spy.plans + spy.looped}"
    return {
        "method_s": wall,
        "unlearn_s": sum(c[0] for c in calls),
        "unlearn_originals_s": calls[0][0],
        "examples": sum(c[1].examples_forward + c[1].examples_backward for c in calls),
        "vectorised": how,
        "ulira_auc": rep["ulira_auc"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="", help="comma-separated (default: every loop-based classifier method)")
    ap.add_argument("--n-shadow", type=int, default=16)
    ap.add_argument("--device", default="cpu", help="torch device of the task and every model (default: cpu)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    try:
        device = torch.device(args.device)
    except RuntimeError:
        device = None
    why = (
        f"--device {args.device!r} is not a torch device (cpu, cuda, cuda:1, ...)"
        if device is None
        else "--device cuda: torch sees no CUDA device here"
        if device.type == "cuda" and not torch.cuda.is_available()
        else None
    )
    if why:
        print(f"error: {why}", file=sys.stderr)
        raise SystemExit(2)
    names = [s for s in args.methods.split(",") if s] or loop_based_classifier_methods()
    n = args.n_shadow
    load0 = os.getloadavg()
    started = time.time()
    task = make_task(dataset="digits", model="mlp", seed=0, device=str(device))
    retrain_time(task)  # warm-up
    retrains = [retrain_time(task)]
    cache = MemoryCache()
    t0 = time.perf_counter()
    shadow_retrains(task, n, cache=cache)
    _sync(device)
    sr = time.perf_counter() - t0
    t0 = time.perf_counter()
    shadow_originals(task, n, cache=cache)
    _sync(device)
    so = time.perf_counter() - t0
    rows = []
    for i, name in enumerate(names):
        if i == len(names) // 2:
            retrains.append(retrain_time(task))
        for path, vec in (("loop", False), ("vectorised", None)):
            r = audit(task, name, vec, n, cache)
            rows.append({"method": name, "path": path, **r})
            print(name, path, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
    retrains.append(retrain_time(task))
    rt = statistics.median(retrains)
    for r in rows:
        r["audit_retrains"] = (sr + so + r["method_s"]) / rt
        r["method_retrains"] = r["method_s"] / rt
        r["unlearn_retrains"] = r["unlearn_s"] / rt
        r["issue_retrains"] = (sr + r["unlearn_originals_s"]) / rt
    load1 = os.getloadavg()
    meta = {
        "command": f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')} python benchmarks/privacy_audit.py"
        + (f" --methods {args.methods}" if args.methods else "")
        + (f" --n-shadow {n}" if n != 16 else "")
        + (f" --device {args.device}" if device.type != "cpu" else ""),
        "torch": torch.__version__,
        "device": str(device) if device.type != "cuda" else f"{device} ({torch.cuda.get_device_name(device)})",
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "loadavg_start": load0,
        "loadavg_end": load1,
        "elapsed_s": time.time() - started,
        "n_shadow": n,
        "retrain_s": retrains,
        "retrain_median_s": rt,
        "shadow_retrains_s": sr,
        "shadow_originals_s": so,
        "shadow_retrains_retrains": sr / rt,
        "shadow_originals_retrains": so / rt,
    }
    head = "| method | path | audit | method | unlearn | issue | examples | vectorised |\n|---|---|---|---|---|---|---|---|"
    lines = [
        f"| {r['method']} | {r['path']} | {r['audit_retrains']:.2f} | {r['method_retrains']:.2f} | "
        f"{r['unlearn_retrains']:.2f} | {r['issue_retrains']:.2f} | {r['examples']} | {r['vectorised']} |"
        for r in rows
    ]
    table = "\n".join([head, *lines])
    print(table)
    print(
        f"one retrain {rt:.3f} s (median of {', '.join(f'{v:.3f}' for v in retrains)}); {n} shadow retrains "
        f"{sr / rt:.2f}, {n} shadow originals {so / rt:.2f} retrains; load average {load0[0]:.1f} -> {load1[0]:.1f} "
        f"on {os.cpu_count()} CPUs"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "privacy_audit.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    md = [
        "# Per-example privacy audit: wall time in retrains",
        "",
        f"Regenerate: `{meta['command']}` (the columns are explained in the script's docstring).",
        "",
        f"One retrain: {rt:.3f} s (median of {', '.join(f'{v:.3f}' for v in retrains)} s, measured in this run). "
        f"{n} shadow retrains: {sr:.2f} s = {sr / rt:.2f} retrains; {n} shadow originals: {so:.2f} s = "
        f"{so / rt:.2f} retrains (both `train_many`, shared by every method and path). Device {meta['device']}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs, load average {load0[0]:.1f} at the start and "
        f"{load1[0]:.1f} at the end (other processes shared the machine), {meta['elapsed_s']:.0f} s in all.",
        "",
        table,
        "",
    ]
    (out / "privacy_audit.md").write_text("\n".join(md))


if __name__ == "__main__":
    main()
