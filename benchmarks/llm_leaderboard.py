"""The language-model leaderboard: every causal-LM method on the generated profiles task.

A tiny Llama (trained from scratch, so it knows only what it was trained on) memorises
question-answer pairs about fictitious people; for each of forget01 / forget05 / forget10
(1%, 5%, 10% of the people) every registered causal-LM method runs once from the same
original. Its metrics come from :func:`unlearnkit.orchestration.experiment.compare`
against the reference retrained on the retain rows with the original's recipe: TOFU's
forget quality (KS test of forget truth ratios vs the reference's) and model utility,
MUSE's privleak, the probes that catch shallow forgetting (paraphrased questions, aliases,
multi-hop questions; a relearning attack) and cost as a ratio of retrain's wall time in
the same run.

    python benchmarks/llm_leaderboard.py [--seeds 0] [--people 100] [--qa 10] [--workers 2]

Writes benchmarks/results/llm_leaderboard.{md,json} and llm_leaderboard.png
(forget quality vs model utility) and llm_leaderboard_cost.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

SPLITS = ["forget01", "forget05", "forget10"]
COLUMNS = [
    "forget_quality",
    "model_utility",
    "prob_forget",
    "rouge_forget",
    "truth_ratio_forget",
    "rouge_retain",
    "privleak",
    "mia_min_k_pp_auc",
    "paraphrase_rouge",
    "alias_rouge",
    "multihop_rouge",
    "relearn_rouge",
    "fade_sym_kl",
    "cost_ratio_time",
    "cost_ratio_examples",
    "forget_passes",
]
#: the seed and split benchmarks/llm_tuning.py selected the tuned configurations on
SELECTION = {"seed": 0, "split": "forget10"}


def task_args(people: int, qa: int) -> dict:
    return {
        "n_people": people,
        "qa_per_person": qa,
        "n_other": 10,
        "model": {"hidden": 128, "layers": 2, "heads": 4, "intermediate": 256},
    }


def job(
    seed: int, split: str, methods: list[tuple[str, dict, str]], home: str, threads: int, people: int, qa: int
) -> list[dict]:
    """Compare ``methods`` ((name, hyperparameters, label) each) on one split and seed."""
    import torch

    from unlearnkit.modalities.causal_lm.task import make_lm_task
    from unlearnkit.orchestration.experiment import Workspace, compare

    torch.set_num_threads(threads)
    ws = Workspace.open(home)
    task = make_lm_task("profiles", forget=split, seed=seed, cache=ws.cache, **task_args(people, qa))
    recs = compare(task, [(n, p) for n, p, _ in methods], seed=seed, workspace=None).records
    for rec, (_, _, label) in zip(recs[2:], methods):  # original, reference, then the methods in order
        rec.method = label
    return [r.to_dict() for r in recs]


def goal_check(rows: list[dict], split: str = "forget10", held_out_seeds: bool = True) -> list[str]:
    """Issue 4's goal on ``split``: forget quality p >= 0.05 with model utility >= 0.95 x the
    original's, at no more than 10% of retrain's wall time and examples (means over seeds).
    ``held_out_seeds``: the rows' seeds exclude the tuning's selection seed, so a tuned row is
    judged on data its configuration was not chosen on (the only rows the goal is judged on)."""
    orig = {r["scenario"]: r["mean"].get("model_utility", math.nan) for r in rows if r["role"] == "original"}
    hits = []
    for r in rows:
        if r["role"] != "unlearn" or r["scenario"] != split or not held_out_seeds:
            continue
        if meets_goal(r["mean"], orig.get(split, math.inf)):
            fq, mu, cost, ex = (
                r["mean"].get(k, math.nan)
                for k in ("forget_quality", "model_utility", "cost_ratio_time", "cost_ratio_examples")
            )
            hits.append(
                f"{r['method']} (forget quality {fq:.3g}, utility {mu:.3f} vs original "
                f"{orig[split]:.3f}, cost {cost:.3f}x time, {ex:.3f}x examples)"
            )
    return hits


def meets_goal(m: dict, original_utility: float) -> bool:
    """The goal of :func:`goal_check` on one run's (or one mean row's) metrics."""
    fq, mu, cost, ex = (
        m.get(k, math.nan) for k in ("forget_quality", "model_utility", "cost_ratio_time", "cost_ratio_examples")
    )
    return fq >= 0.05 and mu >= 0.95 * original_utility and cost <= 0.10 and not ex > 0.10


def seeds_meeting_goal(records, split: str) -> dict[str, tuple[int, int]]:
    """``{method: (seeds whose own run meets the goal, seeds run)}`` on ``split``: the goal per
    seed, against that seed's original (a mean over seeds can pass where single seeds fail)."""
    runs = [r for r in records if r.status == "ok" and (r.scenario or {}).get("forget") == split]
    orig = {r.seed: r.metrics.get("model_utility", math.nan) for r in runs if r.method == "original"}
    out: dict[str, list[int]] = {}
    for r in runs:
        if r.kind != "unlearn" or r.method == "retrain (reference)" or r.seed not in orig:
            continue
        k = out.setdefault(r.method, [0, 0])
        k[0] += meets_goal(r.metrics, orig[r.seed])
        k[1] += 1
    return {m: (a, n) for m, (a, n) in out.items()}


def probe_findings(rows: list[dict]) -> list[str]:
    """Methods whose forget-set ROUGE is near the reference's while a probe recovers far more."""
    ref = {r["scenario"]: r["mean"] for r in rows if r["role"] == "reference"}
    out = []
    for r in rows:
        if r["role"] != "unlearn" or r["scenario"] not in ref:
            continue
        m, rf = r["mean"], ref[r["scenario"]]
        if m.get("rouge_forget", math.inf) > rf.get("rouge_forget", math.nan) + 0.1:
            continue  # not forgotten on the trained wording: nothing hidden to reveal
        leaks = [
            f"{p} {m[k]:.2f} vs {rf[k]:.2f}"
            for p, k in (
                ("paraphrase", "paraphrase_rouge"),
                ("alias", "alias_rouge"),
                ("multi-hop", "multihop_rouge"),
                ("relearning", "relearn_rouge"),
            )
            if math.isfinite(m.get(k, math.nan)) and math.isfinite(rf.get(k, math.nan)) and m[k] > rf[k] + 0.1
        ]
        if leaks:
            out.append(f"{r['scenario']} {r['method']}: " + "; ".join(leaks))
    return out


def main() -> None:
    from unlearnkit.methods import METHODS
    from unlearnkit.modalities.causal_lm.task import make_lm_task
    from unlearnkit.orchestration.artifacts import ModelCache
    from unlearnkit.orchestration.records import RunRecord
    from unlearnkit.orchestration.report import figure_png, markdown_table, plot_cost, plot_lm_tradeoff, summarise

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--people", type=int, default=100, help="training people of the generated profiles")
    ap.add_argument("--qa", type=int, default=10, help="direct questions per person")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--methods", default=None, help="comma-separated (default: every causal-LM method)")
    ap.add_argument(
        "--tuned",
        default=None,
        help="also run each method's best configuration from these "
        "comma-separated llm_tuning.py JSON files (rows labelled 'METHOD (tuned)')",
    )
    ap.add_argument(
        "--home",
        default=None,
        help="workspace whose cache of originals and references to use "
        "(default: a temporary one); costs are cached with the models, so ratios stay comparable",
    )
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--name", default="llm_leaderboard", help="file stem of the results")
    ap.add_argument(
        "--records",
        default=None,
        help="JSON-lines file every finished job's records are appended to (a run that stops keeps "
        "its finished jobs); jobs already in it are not run again",
    )
    ap.add_argument(
        "--summarise",
        action="store_true",
        help="run nothing: write the tables from --records (the jobs it holds)",
    )
    args = ap.parse_args()
    if args.summarise and not args.records:
        ap.error("--summarise needs --records")
    names = (
        args.methods.split(",")
        if args.methods
        else [m for m in sorted(METHODS) if "causal_lm" in METHODS[m].modalities and m != "retrain"]
    )
    methods = [(m, {}, m) for m in names]
    if args.tuned:
        from llm_tuning import select_best

        best = select_best([r for f in args.tuned.split(",") for r in json.loads(Path(f).read_text())["rows"]])
        methods += [(m, b["params"], f"{m} (tuned)") for m, b in sorted(best.items())]
    seeds = [int(s) for s in args.seeds.split(",")]
    threads = max(1, (os.cpu_count() or 1) // args.workers)
    t0 = time.perf_counter()
    records, done = [], set()
    log = Path(args.records) if args.records else None
    if log is not None and log.exists():
        for line in log.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                done.add((d["seed"], d["split"]))
                records += [RunRecord.from_dict(r) for r in d["records"]]
    todo = [(s, sp) for s in seeds for sp in SPLITS if (s, sp) not in done]
    if args.summarise:
        todo = []
        seeds = sorted({s for s, _ in done})
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or tmp
        for s in sorted(
            {s for s, _ in todo}
        ):  # one original per seed, shared by the three splits' jobs through the cache
            make_lm_task(
                "profiles",
                forget="forget10",
                seed=s,
                cache=ModelCache(Path(home) / "cache"),
                progress=True,
                **task_args(args.people, args.qa),
            )
        print(f"[{time.perf_counter() - t0:6.0f}s] originals trained", flush=True)
        with ProcessPoolExecutor(args.workers) as ex:
            futs = {ex.submit(job, s, sp, methods, home, threads, args.people, args.qa): (s, sp) for s, sp in todo}
            for i, f in enumerate(as_completed(futs)):
                got = f.result()
                records += [RunRecord.from_dict(d) for d in got]
                if log is not None:  # appended whole, one line per job
                    s, sp = futs[f]
                    with log.open("a") as fh:
                        fh.write(json.dumps({"seed": s, "split": sp, "records": got}, default=str) + "\n")
                print(f"[{time.perf_counter() - t0:6.0f}s] job {i + 1}/{len(futs)} done {futs[f]}", flush=True)
    elapsed = time.perf_counter() - t0
    failures: dict[tuple[str, str], list[str]] = {}  # one line per method and reason, not per run
    for r in records:
        if r.status != "ok":
            failures.setdefault((r.method, str(r.error)), []).append(f"{r.scenario.get('forget')}/seed {r.seed}")
    failed = [
        f"{m} ({len(where)} run{'s' if len(where) > 1 else ''}: {', '.join(sorted(where))}): {why}"
        for (m, why), where in failures.items()
    ]
    rows = summarise(records, COLUMNS)
    held_out = SELECTION["seed"] not in seeds
    hits = {sp: goal_check(rows, sp, held_out) for sp in SPLITS}
    per_seed = {sp: seeds_meeting_goal(records, sp) for sp in SPLITS}
    leaks = probe_findings(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = (
        f"python benchmarks/llm_leaderboard.py --seeds {args.seeds} --people {args.people} --qa {args.qa} "
        f"--workers {args.workers}"
        + (f" --tuned {args.tuned}" if args.tuned else "")
        + (f" --name {args.name}" if args.name != "llm_leaderboard" else "")
        + (f" --records {args.records}" if args.records else "")
    )
    tuned = "; ".join(f"{lab}: {json.dumps(p)}" for _, p, lab in methods if p)
    if not args.tuned:
        tuned_note = ""
    elif held_out:
        tuned_note = (
            f"\n\n**Held-out protocol.** Rows `METHOD (tuned)` use the configuration `benchmarks/llm_tuning.py` "
            f"selected on {SELECTION['split']} of seed {SELECTION['seed']} (another original, other forget "
            f"people, another reference); this run reports seeds {args.seeds} only, so every row is measured "
            f"on a seed its configuration was not chosen on, and the {', '.join(x for x in SPLITS if x != SELECTION['split'])} "
            "rows also on another split. Default rows use each method's defaults, which were set on the 9-row test "
            f"task, not here. Their hyperparameters: {tuned}"
        )
    else:
        tuned_note = (
            "\n\nRows `METHOD (tuned)` use the configuration `benchmarks/llm_tuning.py` selected on "
            f"{SELECTION['split']} of seed {SELECTION['seed']}, a seed this run reports: on that split and seed "
            f"they are tuned, not held-out numbers, and the goal is not judged. Their hyperparameters: {tuned}"
        )
    spec = next(r.task_spec for r in records if r.kind == "train")
    orig = next(r for r in records if r.kind == "train")
    runtime = f"{elapsed / 60:.1f} min on {os.cpu_count()} cores with {args.workers} workers" + (
        f" (this invocation; {len(done)} job(s) read back from `{args.records}`)" if done else ""
    )
    if args.summarise:  # nothing ran: the jobs' own times are in their records
        runtime = f"tables written by `--summarise` from the {len(done)} jobs in `{args.records}`"
    goal_lines = "".join(f"\n- {sp}: " + ("; ".join(h) if h else "no method") for sp, h in hits.items())
    seed_lines = "".join(
        f"\n- {sp}: "
        + (
            ", ".join(f"{m} {a}/{n}" for m, (a, n) in sorted(counts.items(), key=lambda kv: (-kv[1][0], kv[0])) if a)
            or "no method on any seed"
        )
        + (
            f" (on every seed: {', '.join(m for m, (a, n) in sorted(counts.items()) if a == n)})"
            if any(a == n for a, n in counts.values())
            else " (none on every seed)"
        )
        for sp, counts in per_seed.items()
    )
    header = (
        f"# Language-model leaderboard: generated profiles, tiny Llama\n\n"
        f"{args.people} fictitious people with {args.qa} direct questions each (plus alias and multi-hop "
        f"questions, {spec['n_other']} other people and world facts: {orig.tags.get('split', {}).get('n_train', '?')} "
        f"training rows); a {spec['model']['layers']}-layer, {spec['model']['hidden']}-wide Llama trained from "
        f"scratch; splits {', '.join(SPLITS)}; seeds {','.join(map(str, seeds))}; {len(records)} runs; {runtime}."
        f"\n\nRegenerate: `{cmd}`{tuned_note}\n\n"
        "Columns: TOFU forget quality (KS-test p-value of forget truth ratios vs the retrained reference; "
        "higher is better, 0.05 the usual bar) and model utility (harmonic mean of probability, ROUGE-L and "
        "truth ratio on retain, other people, world facts); forget-set answer probability, ROUGE-L recall and "
        "truth ratio (ideal: the reference's); retain ROUGE; MUSE privleak (0 ideal; negative = the forget "
        "set still looks like members) and the Min-K%++ AUC behind it; probes (ROUGE-L on reworded questions, "
        "alias and multi-hop questions about the forget people, and on half the forget set after a 10-step "
        "relearning attack on the other half; ideal: the reference's); FADE-style symmetric KL to the "
        "reference on sampled answers; cost as a ratio of retrain's wall time and of its examples "
        "(forward + backward) in the same job, and in forget-set passes ((forward + backward) / (2 x forget "
        "rows); 1 is one pass).\n\n"
        "Goal (issues 4 and 13): forget quality >= 0.05 with model utility >= 0.95 x the original's, at "
        "no more than 10% of retrain's cost (wall time and examples), means over seeds; judged only on "
        "held-out rows (seeds other than the tuning's). "
        + (
            "Met by:"
            + goal_lines
            + "\n\nThe same goal seed by seed (each run against its own seed's original; methods with a "
            "seed that meets it, seeds met / seeds run):" + seed_lines
            if held_out
            else "Not judged: this run reports the tuning's own seed."
        )
        + "\n\nProbes that show knowledge only hidden (forget ROUGE within 0.1 of the reference's, a probe "
        "more than 0.1 above the reference's): "
        + ("; ".join(leaks) if leaks else "none in this run")
        + ("\n\nFailed runs: " + "; ".join(failed) if failed else "")
        + "\n\n"
    )
    (out / f"{args.name}.md").write_text(header + markdown_table(rows, COLUMNS) + "\n")
    (out / f"{args.name}.json").write_text(
        json.dumps(
            {
                "command": cmd,
                "methods": [list(m) for m in methods],
                "seeds": seeds,
                "splits": SPLITS,
                "people": args.people,
                "qa": args.qa,
                "elapsed_s": elapsed,
                "held_out": held_out,
                "selection": SELECTION,
                "goal_met_by": hits,
                "goal_seeds_met": {sp: {m: list(v) for m, v in c.items()} for sp, c in per_seed.items()},
                "probe_leaks": leaks,
                "failed": failed,
                "rows": rows,
            },
            indent=1,
            default=str,
            allow_nan=True,
        )
    )
    for name, fig in ((f"{args.name}.png", plot_lm_tradeoff(rows)), (f"{args.name}_cost.png", plot_cost(rows))):
        (out / name).write_bytes(figure_png(fig))
    print(header + markdown_table(rows, COLUMNS))


if __name__ == "__main__":
    main()
