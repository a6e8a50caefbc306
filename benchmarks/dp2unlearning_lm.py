"""DP2Unlearning on the generated profiles task: DP-SGD originals at a few epsilons, each
unlearned by fine-tuning on the retain rows for half of retrain's epochs, against retraining.

One run, one seed, one CPU thread: the non-private original and its reference (retrain on the
retain rows, the original's recipe); for each epsilon a DP-SGD original (Opacus, RDP
accountant, per-row clipping C = 1, delta = 1e-5) and ``dp2unlearning`` on it; as contrasts,
``finetune`` on the non-private original with the same budget (what the DP training buys) and
the DP original itself before unlearning, and retraining from scratch for half the epochs (the same
budget with no original at all). Every model is evaluated by
:func:`unlearnkit.orchestration.experiment.compare` against the same retrained reference: TOFU's
forget quality (KS test of forget truth ratios) and model utility, forget / retain ROUGE,
MUSE's privleak; cost as a ratio of retrain's wall time and examples in the same run, and
what training each original cost.

    python benchmarks/dp2unlearning_lm.py [--people 40] [--qa 5] [--epsilons 1,10,100]

Writes benchmarks/results/dp2unlearning_lm.{md,json}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

COLUMNS = [
    "forget_quality",
    "model_utility",
    "prob_forget",
    "rouge_forget",
    "rouge_retain",
    "privleak",
    "cost_ratio_time",
    "cost_ratio_examples",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=40, help="training people of the generated profiles")
    ap.add_argument("--qa", type=int, default=5, help="direct questions per person")
    ap.add_argument("--epochs", type=float, default=40.0, help="the recipe's epochs (original, retrain)")
    ap.add_argument("--epsilons", default="1,10,100", help="the paper ranges over 1 to 100")
    ap.add_argument("--forget", default="forget10")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "dp2unlearning_lm"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from dataclasses import replace

    from unlearnkit.modalities.causal_lm.task import default_lm_recipe, make_lm_task
    from unlearnkit.orchestration.experiment import Workspace, compare, get_reference

    t_start, cpu_start = time.perf_counter(), time.process_time()
    recipe = replace(default_lm_recipe(), epochs=args.epochs)
    kw = dict(
        forget=args.forget,
        seed=args.seed,
        n_people=args.people,
        qa_per_person=args.qa,
        n_other=5,
        model={"hidden": 128, "layers": 2, "heads": 4, "intermediate": 256},
        recipe=recipe,
        device="cpu",
    )
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="dp2u-") as home:
        ws = Workspace.open(home)
        plain = make_lm_task("profiles", cache=ws.cache, **kw)
        _log(f"non-private original: {len(plain.train)} rows, {plain.original_cost.steps} steps", t_start)
        ref_model, ref_cost, _ = get_reference(plain, args.seed, ws.cache)
        half = {"epochs": 0.5 * recipe.epochs, "lr": recipe.lr, "batch_size": recipe.batch_size}
        half |= {"optimizer": recipe.optimizer, "grad_clip": recipe.grad_clip}
        base = compare(plain, [("finetune", half)], seed=args.seed, workspace=ws, store_records=False).records
        rows += [_row(r, "non-private", None, plain) for r in base]
        # the fair baseline of the same budget without DP training: retrain from scratch for half the
        # epochs (the task's spec, hence its reference, is the full recipe's; only the method's recipe halves)
        halved = dataclasses.replace(plain, recipe=replace(recipe, epochs=0.5 * recipe.epochs))
        short = compare(halved, ["retrain"], seed=args.seed, workspace=ws, store_records=False).records
        rows += [_row(r, "non-private", None, plain, "retrain, half the epochs") for r in short if r.kind == "unlearn"]
        _log("half-budget retrain evaluated", t_start)
        for eps in [float(e) for e in args.epsilons.split(",")]:
            dp = {"epsilon": eps, "delta": 1e-5, "max_grad_norm": 1.0}
            task = make_lm_task("profiles", cache=ws.cache, dp=dp, **kw)
            _log(f"DP original eps={eps:g}: sigma {task.spec['dp']['noise_multiplier']:.3f}", t_start)
            # the reference does not depend on how the original was trained: the same retrain
            ws.cache.put(f"reference-{task.reference_key(args.seed)}", ref_model, {"cost": ref_cost.to_dict()})
            recs = compare(task, ["dp2unlearning"], seed=args.seed, workspace=ws, store_records=False).records
            rows += [_row(r, f"DP eps={eps:g}", task.spec["dp"], task) for r in recs if r.kind != "reference"]
            _log(f"eps={eps:g} evaluated", t_start)
    elapsed, cpu = time.perf_counter() - t_start, time.process_time() - cpu_start
    meta = {
        "command": "python benchmarks/dp2unlearning_lm.py " + " ".join(sys.argv[1:]),
        "task": {k: v for k, v in kw.items() if k != "recipe"} | {"recipe": recipe.to_dict()},
        "n_train": len(plain.train),
        "n_forget": len(plain.forget),
        "n_retain": len(plain.retain),
        "reference_cost": ref_cost.to_dict(),
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread",
        "load_average": os.getloadavg(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=float))
    out.with_suffix(".md").write_text(_markdown(meta, rows))
    print(out.with_suffix(".md").read_text())


def _log(text: str, t0: float) -> None:
    print(f"[{time.perf_counter() - t0:7.1f} s, cpu {time.process_time():7.1f} s] {text}", flush=True)


def _row(rec, line: str, dp: dict | None, task, label: str | None = None) -> dict:
    m = rec.metrics
    role = label or {"train": "original", "reference": "retrain (reference)"}.get(rec.kind, rec.method)
    return {
        "line": line,
        "model": role,
        "epsilon": None if dp is None else dp["epsilon_spent"],
        "noise_multiplier": None if dp is None else dp["noise_multiplier"],
        "train_cost": task.original_cost.to_dict() if rec.kind == "train" else None,
        "status": rec.status,
        "error": rec.error,
        **{c: m.get(c, math.nan) for c in COLUMNS},
    }


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "nan"
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _markdown(meta: dict, rows: list[dict]) -> str:
    ref = meta["reference_cost"]
    lines = [
        "# DP2Unlearning on the profiles task (tiny Llama)",
        "",
        f"{meta['task']['n_people']} people, {meta['task']['qa_per_person']} direct questions each "
        f"({meta['n_train']} training rows; {meta['task']['forget']}: {meta['n_forget']} forget rows, "
        f"{meta['n_retain']} retain rows); a 2-layer, 128-wide Llama trained from scratch with the LM recipe "
        f"({meta['task']['recipe']['epochs']:g} epochs, AdamW, cosine); seed {meta['task']['seed']}; "
        f"one run, {meta['elapsed_s'] / 60:.1f} min wall, {meta['cpu_s'] / 60:.1f} min CPU on {meta['machine']} (load average "
        f"{', '.join(f'{x:.1f}' for x in meta['load_average'])} at the end, shared machine).",
        "",
        f"Regenerate: `{meta['command']}`",
        "",
        "Rows: the non-private original, the reference (retrain on the retain rows, "
        f"{ref['steps']} steps, {ref['wall_time_s']:.1f} s), `finetune` of the non-private original with "
        "DP2Unlearning's budget (half the retrain's epochs: the contrast that shows what DP training buys), "
        "`retrain` for half the epochs from scratch (the same budget without any original); "
        "per epsilon the DP-SGD original (RDP accountant, delta 1e-5, per-row clipping C = 1, the recipe's "
        "optimiser inside DP-SGD) and `dp2unlearning` on it. Every model is compared with the same reference. "
        "Columns: TOFU forget quality (KS-test p-value of forget truth ratios vs the reference; 0.05 the usual "
        "bar), model utility (harmonic mean over retain, other people and world facts), forget-answer "
        "probability and ROUGE-L, retain ROUGE-L, MUSE privleak (0 ideal), cost as a ratio of the retrain's "
        "wall time and examples (for an original: what training it cost against the retrain).",
        "",
        "| line | model | epsilon | sigma | " + " | ".join(COLUMNS) + " |",
        "|:---|:---|---:|---:|" + "---:|" * len(COLUMNS),
    ]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['line']} | {r['model']} | failed: {r['error']} |")
            continue
        cells = [_fmt(r["epsilon"]), _fmt(r["noise_multiplier"])] + [_fmt(r[c]) for c in COLUMNS]
        lines.append(f"| {r['line']} | {r['model']} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
