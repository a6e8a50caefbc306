"""The profiles LM federated by person: Flower strategies x federated unlearning methods,
a client's departure and a person's deletion inside a client (issue 15, LM part).

Federation (``unlearnkit.modalities.federated.lm``): the generated profiles (``--people``
training people, 10 QA rows each plus alias and multi-hop rows; 4 ``other`` people and the
world facts are public), a tiny Llama (``--hidden``, ``--layers``) trained once, centrally,
on the public rows and frozen; the training people dealt out by person to 3 clients, each
training LoRA adapters (rank ``--rank`` on every linear projection) for ``--local-epochs``
passes a round (AdamW lr 1e-2, batches of 16) over ``--rounds`` rounds; only the adapters
travel and are aggregated. The last client joins at round ``rounds // 2 + 1`` (a late
joiner, so that exact retraining has a checkpoint to resume from).

Scenarios:

* ``client``: the late client leaves (every row of its people forgotten);
* ``person``: the person of ``client-00`` (a client from round 1) listed first is deleted
  inside it (that client keeps training on its other people).

Methods: ``retrain`` (the reference: federated training of the adapters from the same base,
initial adapters and seeds without the data), ``exact`` (resume from the stored round before
the data first contributed; bit for bit retrain's model, checked here on every row), and
GA and NPO at their causal-LM defaults (``modalities/causal_lm/defaults.py``) inside the
target client for one round, then ``--recovery`` rounds without the data (Oblivionis 2025's
protocol); NPO needs retain data on the client, so it runs on the person scenario only.
``original`` is the model before any unlearning, for scale.

Metrics on the global model (adapters merged into the base), through the causal_lm metrics
code: TOFU forget quality (KS p-value of the forgotten rows' truth ratios against retrain's),
model utility and its gap to retrain's, ROUGE-L on the forgotten rows, the LOSS attack AUC
(forgotten rows vs never-trained holdout people); cost ratios counted (rounds, client
examples forward + backward, adapter bytes both ways) over retrain's in the same task.
Goal (issue 15, for LMs): forget quality >= 0.05 (TOFU's threshold: indistinguishable from
retrain), model utility within 0.01 of retrain's (one point), at <= 20% of retrain's rounds.

    python benchmarks/federated_lm.py [--seeds 0,1] [--strategies fedavg,fedprox,fedadam]

Writes benchmarks/results/federated_lm.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from unlearnkit.methods import get_method  # noqa: E402
from unlearnkit.modalities.federated import unlearning as U  # noqa: E402
from unlearnkit.modalities.federated.history import FederatedCost  # noqa: E402
from unlearnkit.modalities.federated.lm import make_federated_lm_task  # noqa: E402
from unlearnkit.modalities.federated.metrics import evaluate_federated  # noqa: E402
from unlearnkit.modalities.federated.task import FederatedForget  # noqa: E402

COLUMNS = (
    "forget_quality",
    "model_utility",
    "fed_gap_model_utility",
    "rouge_forget",
    "fed_gap_rouge_forget",
    "mia_loss_auc",
    "ratio_rounds",
    "ratio_client_examples",
    "ratio_bytes",
)
FQ_MIN, MU_GAP, ROUNDS_MAX = 0.05, 0.01, 0.2


def goal(m: dict) -> bool:
    return (
        m.get("forget_quality", 0.0) >= FQ_MIN
        and m.get("fed_gap_model_utility", 1.0) <= MU_GAP
        and 0 < m.get("ratio_rounds", 1.0) <= ROUNDS_MAX
    )


def run_scenario(task, scenario: str, recovery: int, seed: int) -> list[dict]:
    ref = U.retrain(task)
    rows = []

    def add(method: str, model, cost, extra=None):
        m = evaluate_federated(task, model, cost, ref, seed=seed)
        if method == "original":
            m = {k: v for k, v in m.items() if not k.startswith("ratio_") and k != "rounds"}
        rows.append({"scenario": scenario, "method": method, "metrics": m, **(extra or {})})

    add("original", task.original, FederatedCost())
    add("retrain", ref.model, ref.cost)
    ex = U.exact(task)
    same = all(np.array_equal(ex.history.final_state[k], ref.history.final_state[k]) for k in ref.history.final_state)
    add("exact", ex.model, ex.cost, {"resumed_from_round": ex.extra["resumed_from_round"], "equals_retrain": same})
    methods = ["gradient_ascent"] + (["npo"] if task.forget_request.level != "client" else [])
    for name in methods:
        r = U.local(task, get_method(name), unlearn_rounds=1, recovery_rounds=recovery, seed=seed)
        add(name, r.model, r.cost)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--strategies", default="fedavg,fedprox,fedadam")
    ap.add_argument("--people", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--local-epochs", type=float, default=3.0)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--recovery", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "federated_lm"))
    ap.add_argument("--rewrite", help="write the tables again from this JSON's runs (no training)")
    a = ap.parse_args(argv)
    if a.rewrite:
        doc = json.loads(Path(a.rewrite).read_text())
        args = argparse.Namespace(**{**doc["args"], "out": a.out, "rewrite": None})
        write(doc["runs"], args, doc["wall_time_s"], doc["command"])
        return 0
    torch.set_num_threads(1)
    seeds = [int(s) for s in a.seeds.split(",")]
    strategies = a.strategies.split(",")
    model = {"hidden": a.hidden, "layers": a.layers, "heads": 4, "intermediate": 2 * a.hidden}
    t0 = time.time()
    records = []
    for strategy in strategies:
        for seed in seeds:
            late = "client-02"
            task = make_federated_lm_task(
                a.people, 3, strategy, a.rounds, a.local_epochs, FederatedForget(client=late),
                joins={late: a.rounds // 2 + 1}, seed=seed, model=model, lora={"r": a.rank},
            )  # fmt: skip
            person = task.partition.clients["client-00"][0]
            for scenario, request in (("client", None), ("person", FederatedForget(subjects=(person,)))):
                t = task if request is None else task.with_forget_request(request)
                for row in run_scenario(t, scenario, a.recovery, seed):
                    records.append({"strategy": strategy, "seed": seed, **row})
                    m = row["metrics"]
                    print(
                        f"[{time.time() - t0:6.0f}s] {strategy} seed {seed} {scenario:<6} {row['method']:<16} "
                        + " ".join(f"{k}={m.get(k, float('nan')):.3f}" for k in COLUMNS),
                        flush=True,
                    )
    wall = time.time() - t0
    cmd = "python benchmarks/federated_lm.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write(records, a, wall, cmd.strip())
    return 0


def write(records: list[dict], a, wall: float, cmd: str) -> None:
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["strategy"], r["scenario"], r["method"]), []).append(r)
    table = []
    for (strategy, scenario, method), rs in groups.items():
        keys = sorted({k for r in rs for k in r["metrics"]})
        mean = {k: float(np.nanmean([r["metrics"].get(k, np.nan) for r in rs])) for k in keys}
        std = {f"{k}_std": float(np.nanstd([r["metrics"].get(k, np.nan) for r in rs])) for k in keys}
        row = {"strategy": strategy, "scenario": scenario, "method": method, **mean, **std}
        if method == "exact":
            row["equals_retrain"] = all(r["equals_retrain"] for r in rs)
            row["resumed_from_round"] = rs[0]["resumed_from_round"]
        row["goal_seeds"] = sum(goal(r["metrics"]) for r in rs) if method not in ("original", "retrain") else None
        row["goal"] = bool(row["goal_seeds"]) and row["goal_seeds"] == len(rs)
        table.append(row)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"command": cmd, "wall_time_s": wall, "args": vars(a), "goal": {"forget_quality_min": FQ_MIN,
           "model_utility_gap_max": MU_GAP, "ratio_rounds_max": ROUNDS_MAX}, "rows": table, "runs": records}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(_clean(doc), indent=1, allow_nan=False))
    lines = [
        "# Federated LM (profiles people per client, LoRA adapters)",
        "",
        f"`{cmd}` ({wall:.0f} s, one CPU thread, in-process grid). Seeds: {a.seeds}. {a.people} training "
        f"people over 3 clients (client-02 joins at round {a.rounds // 2 + 1}), {a.rounds} rounds of "
        f"{a.local_epochs:g} local epochs, tiny Llama {a.layers}x{a.hidden} base (trained once on the public "
        f"rows, frozen), LoRA rank {a.rank} on every linear projection; only adapters travel. In-client "
        f"methods: 1 unlearning round + {a.recovery} recovery round(s). Mean over seeds (`_std` in the JSON). "
        f"Goal: forget_quality >= {FQ_MIN}, |model_utility - retrain's| <= {MU_GAP}, ratio_rounds <= "
        f"{ROUNDS_MAX} (`goal`: on every seed).",
        "",
        "| strategy | scenario | method | " + " | ".join(COLUMNS) + " | goal |",
        "|---|---|---|" + "---|" * (len(COLUMNS) + 1),
    ]
    for r in table:
        vals = " | ".join("" if np.isnan(r.get(k, np.nan)) else f"{r[k]:.3f}" for k in COLUMNS)
        g = "" if r["goal_seeds"] is None else ("yes" if r["goal"] else f"{r['goal_seeds']}/{len(seeds_of(a))}")
        lines.append(f"| {r['strategy']} | {r['scenario']} | {r['method']} | {vals} | {g} |")
    ex = [r for r in table if r["method"] == "exact"]
    met = [f"{r['strategy']}/{r['scenario']}/{r['method']}" for r in table if r["goal"]]
    some = [f"{r['strategy']}/{r['scenario']}/{r['method']}" for r in table if r["goal_seeds"] and not r["goal"]]
    lines += [
        "",
        f"exact equals retrain bit for bit on every row: {all(r['equals_retrain'] for r in ex)}.",
        f"Rows meeting the goal on every seed: {', '.join(met) or 'none'}; on some seeds only: "
        f"{', '.join(some) or 'none'}.",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def _clean(x):
    """NaN (a value not computed, e.g. the original's cost ratios) as null: strict JSON."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if not np.isfinite(x) else float(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def seeds_of(a) -> list[str]:
    return a.seeds.split(",")


if __name__ == "__main__":
    sys.exit(main())
