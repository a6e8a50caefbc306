"""The reasoning-model unlearning attack on a small generated task (issue 13).

For each seed: generate a reasoning world (:func:`unlearnkit.data.reasoning.generate_reasoning`),
train the tiny Llama on it (the causal-LM modality's task on the saved QA folder), pick target
questions the original answers correctly (never trained), plan the white-box attack (the
victim's gradients) and the black-box one (a surrogate trained by the attacker), retrain
without each deletion set and without random sets of the same size, and run the deletion-
request service's gate parts on every retrained model
(:mod:`unlearnkit.evaluation.reasoning_attack`, :mod:`unlearnkit.service.reasoning_gate`).

    python benchmarks/reasoning_attack.py [--seeds 0,1] [--targets 3] [--budget 20] [--random 2]
        [--train 150] [--epochs 60] [--no-black-box] [--no-checks] [--out benchmarks/results]
    python benchmarks/reasoning_attack.py --ablate-eta 1,30,300 [--seeds 0,1] ...

Writes ``<out>/reasoning_attack.{md,json}`` with the command that wrote them. ``--ablate-eta``
instead plans the white-box attack with the influence scale ``η`` multiplied by each factor
(no retraining) and reports the relaxed objective and how much of each corrupted fact's
training support the rounded set removes: ``<out>/reasoning_attack_eta.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--targets", type=int, default=3)
    ap.add_argument("--budget", type=int, default=20)
    ap.add_argument("--random", type=int, default=2)
    ap.add_argument("--train", type=int, default=150)
    ap.add_argument("--holdout", type=int, default=40)
    ap.add_argument("--functions", type=int, default=4)
    ap.add_argument("--values", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--steps", type=int, default=40, help="relaxed-indicator steps")
    ap.add_argument("--no-black-box", action="store_true")
    ap.add_argument("--no-checks", action="store_true", help="skip the gate's metric checks (canary and limits only)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ablate-eta", default=None, help="comma-separated factors on η: plan only, no retraining")
    ap.add_argument("--any-targets", action="store_true", help="targets need not be answered correctly (smoke runs)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from unlearnkit.data.reasoning import generate_reasoning
    from unlearnkit.evaluation.reasoning_attack import AttackConfig, ReasoningSetup, run_attack
    from unlearnkit.modalities.causal_lm.task import default_lm_recipe
    from unlearnkit.service.reasoning_gate import exact_answer_gate

    recipe = replace(default_lm_recipe(), epochs=args.epochs, lr=args.lr)
    sizes = {"hidden": args.hidden, "layers": 2, "heads": 4, "intermediate": 2 * args.hidden}
    cfg = AttackConfig(budget=args.budget, steps=args.steps)
    if args.ablate_eta:
        return ablate_eta(args, argv, recipe, sizes, cfg)
    runs = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            data = generate_reasoning(
                n_train=args.train,
                n_holdout=args.holdout,
                n_functions=args.functions,
                n_values=args.values,
                seed=seed,
            )
            folder = data.save(Path(tmp) / f"reasoning-{seed}")
            setup = ReasoningSetup(folder, data, sizes, recipe, seed=seed)
            t = time.perf_counter()
            run = run_attack(
                setup,
                n_targets=args.targets,
                cfg=cfg,
                n_random=args.random,
                black_box=not args.no_black_box,
                gate=exact_answer_gate(checks=not args.no_checks),
                target_seed=seed,
                require_correct=not args.any_targets,
                progress=lambda s, seed=seed: print(f"[seed {seed}] {s} ({time.perf_counter() - t0:.0f}s)", flush=True),
            )
            run["fact_counts_of_targets"] = {
                tg["example_id"]: {f: data.fact_counts().get(f, 0) for f in _facts(tg["trace"])}
                for tg in run["white_box"]["plan"]["targets"]
            }
            for kind in ("white_box", "black_box"):
                if kind in run:
                    run[kind]["deleted_support"] = _support(data, run[kind])
            run["wall_s"] = time.perf_counter() - t
            runs.append(run)
    doc = {
        "command": "python benchmarks/reasoning_attack.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": vars(args),
        "attack": cfg.__dict__,
        "runs": runs,
        "summary": summarise(runs),
        "wall_s": time.perf_counter() - t0,
        "torch": torch.__version__,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reasoning_attack.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    (out / "reasoning_attack.md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


def ablate_eta(args, argv, recipe, sizes, cfg) -> int:
    """Plan the white-box attack under several influence scales; no retraining."""
    import random
    from dataclasses import replace as dc_replace

    from unlearnkit.data.reasoning import generate_reasoning
    from unlearnkit.evaluation.reasoning_attack import (
        ReasoningSetup,
        greedy_traces,
        influence_scale_of,
        plan_attack,
    )

    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            data = generate_reasoning(
                n_train=args.train, n_holdout=args.holdout, n_functions=args.functions, n_values=args.values, seed=seed
            )
            setup = ReasoningSetup(data.save(Path(tmp) / f"r{seed}"), data, sizes, recipe, seed=seed)
            task = setup.task()
            original = task.original.eval()
            traces = greedy_traces(original, task, [r["question"] for r in data.holdout], cfg.max_new_tokens)
            right = [r for r, g in zip(data.holdout, traces) if g == r["answer"]]
            # the same targets as the main run (run_attack draws them with the seed the same way)
            targets = sorted(random.Random(seed).sample(right, args.targets), key=lambda r: r["example_id"])
            eta = influence_scale_of(task.recipe)
            for factor in [float(f) for f in args.ablate_eta.split(",")]:
                plan = plan_attack(original, task, targets, dc_replace(cfg, influence_scale=eta * factor))
                part = {"plan": plan.to_dict(), "deletion_ids": plan.deletion_ids}
                rows.append(
                    {
                        "seed": seed,
                        "factor": factor,
                        "eta": eta * factor,
                        "objective_start": plan.indicator.objective[0],
                        "objective_end": plan.indicator.objective[-1],
                        "objective_rounded": plan.indicator.predicted,
                        "support": _support(data, part),
                    }
                )
    doc = {
        "command": "python benchmarks/reasoning_attack.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": vars(args),
        "rows": rows,
        "wall_s": time.perf_counter() - t0,
    }
    lines = [
        "# Reasoning attack: the influence scale η (plans only, no retraining)",
        "",
        f"`{doc['command']}` (wall {doc['wall_s']:.0f} s)",
        "",
        "| seed | η factor | η | relaxed objective start | end | rounded set | corrupted fact: deleted / support |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sup = "; ".join(f"{v['fact']}: {v['deleted']} / {v['support']}" for v in r["support"].values())
        lines.append(
            f"| {r['seed']} | {r['factor']:g} | {r['eta']:.4g} | {r['objective_start']:.3f} | "
            f"{r['objective_end']:.3f} | {r['objective_rounded']:.3f} | {sup} |"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reasoning_attack_eta.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    (out / "reasoning_attack_eta.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _facts(trace: str) -> list[str]:
    from unlearnkit.data.reasoning import facts_of

    return facts_of(trace)


def _support(data, part: dict) -> dict:
    """Per target: of the training examples stating the corrupted step's correct fact, how many
    the deletion set removed (the lever the attack is meant to find)."""
    out = {}
    gone = set(part["deletion_ids"])
    for t in part["plan"]["targets"]:
        facts = _facts(t["trace"])
        if not facts or t["step"] >= len(facts):
            continue
        have = data.examples_with_fact(facts[t["step"]])
        out[t["example_id"]] = {"fact": facts[t["step"]], "support": len(have), "deleted": len(gone & set(have))}
    return out


def summarise(runs: list[dict]) -> dict:
    def pool(kind: str, key: str) -> list[float]:
        vals = []
        for r in runs:
            parts = r.get(kind) if kind != "random" else r["random"]
            for p in parts if isinstance(parts, list) else ([parts] if parts else []):
                vals.append(p[key])
        return vals

    def gate(kind: str, key: str) -> list[bool]:
        vals = []
        for r in runs:
            parts = r["random"] if kind == "random" else ([r[kind]] if kind in r else [])
            vals += [bool(p["gate"][key]) for p in parts]
        return vals

    s = {}
    for kind in ("white_box", "black_box", "random"):
        if not pool(kind, "success"):
            continue
        s[kind] = {
            "runs": len(pool(kind, "success")),
            "success": float(np.mean(pool(kind, "success"))),
            "plausible_success": float(np.mean(pool(kind, "plausible_success"))),
            "targeted_success": float(np.mean(pool(kind, "targeted_success"))),
            "plausible": float(np.mean(pool(kind, "plausible"))),
            "other_accuracy": float(np.mean(pool(kind, "other_accuracy"))),
            "caught": float(np.mean(gate(kind, "caught"))),
            "held": float(np.mean(gate(kind, "held"))),
            "refused": float(np.mean(gate(kind, "refused"))),
            "reference_loss_shift": float(
                np.mean([p["gate"]["canary"].get("reference_loss_shift", float("nan")) for p in _parts(runs, kind)])
            ),
        }
    s["original_other_accuracy"] = float(np.mean([r["original"]["other_accuracy"] for r in runs]))
    return s


def _parts(runs: list[dict], kind: str) -> list[dict]:
    out = []
    for r in runs:
        out += r["random"] if kind == "random" else ([r[kind]] if kind in r else [])
    return out


def markdown(doc: dict) -> str:
    s = doc["summary"]
    lines = [
        "# Reasoning-model unlearning attack (toy scale)",
        "",
        f"`{doc['command']}` (wall {doc['wall_s']:.0f} s, torch {doc['torch']}, one CPU thread)",
        "",
        "Success = share of target questions whose greedy final answer is wrong after exact",
        "unlearning (retraining without the deletion set); plausible = the trace is well formed and",
        "applies the question's functions in order; targeted = the answer is the attacker's chosen",
        "wrong one; other accuracy = final-answer accuracy on the other never-trained questions;",
        "caught = the service gate refuses (size limit) or holds (canary deletion effect) the request.",
        "",
        "| deletion set | retrains | success | plausible & wrong | targeted | traces plausible | other accuracy | caught | held | refused | canary reference loss shift |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = {
        "white_box": "attack, white-box",
        "black_box": "attack, black-box (surrogate)",
        "random": "random, same size",
    }
    for kind, label in names.items():
        if kind in s:
            v = s[kind]
            lines.append(
                f"| {label} | {v['runs']} | {v['success']:.2f} | {v['plausible_success']:.2f} | "
                f"{v['targeted_success']:.2f} | {v['plausible']:.2f} | {v['other_accuracy']:.2f} | {v['caught']:.2f} | "
                f"{v['held']:.2f} | {v['refused']:.2f} | {v['reference_loss_shift']:.3f} |"
            )
    lines += [
        "",
        f"Original: other accuracy {s['original_other_accuracy']:.2f}; success 0 by the choice of targets.",
        "",
    ]
    for r in doc["runs"]:
        lines.append(
            f"## seed {r['seed']} ({r['wall_s']:.0f} s; {r['n_train']} training examples, budget {r['budget']})"
        )
        lines.append("")
        lines.append(f"Original holdout accuracy {r['original']['holdout_accuracy']:.2f}.")
        lines.append("")
        lines.append(
            "| deletion set | target | generated trace | wrong | plausible | corrupted fact: support / deleted |"
        )
        lines.append("|---|---|---|---|---|---|")
        for kind in ("white_box", "black_box"):
            if kind not in r:
                continue
            sup = r[kind].get("deleted_support", {})
            for j in r[kind]["targets"]:
                f = sup.get(j["example_id"], {})
                lines.append(
                    f"| {names[kind]} | {j['example_id']} | `{j['generated']}` | {j['wrong']} | {j['plausible']} | "
                    f"{f.get('fact', '-')}: {f.get('support', '-')} / {f.get('deleted', '-')} |"
                )
        for i, p in enumerate(r["random"]):
            for j in p["targets"]:
                lines.append(
                    f"| random {i} | {j['example_id']} | `{j['generated']}` | {j['wrong']} | {j['plausible']} | - |"
                )
        lines.append("")
        gates = [(k, r[k]["gate"]) for k in ("white_box", "black_box") if k in r]
        gates += [(f"random {i}", p["gate"]) for i, p in enumerate(r["random"])]
        for k, g in gates:
            lines.append(
                f"- gate, {k}: refused {g['refused']}, held {g['held']}, canary {json.dumps(g['canary'])}, "
                f"checks failed {g['checks_failed'] or 'none'}" + ("" if g["checks_run"] else " (checks not run)")
            )
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
