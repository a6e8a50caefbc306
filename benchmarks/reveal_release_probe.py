"""What Reveal-and-Release's reveal step finds, checked against the data it never reads.

For the forget people of a profiles task (the original as `unlearnkit train --task profiles`
trains it, loaded from ``--home``'s cache), run the reveal step
(:func:`unlearnkit.methods.reveal_release.reveal`) on the original and count how many kept
answers state one of the target person's attribute values, against the same count for
another training person's values (a person the reveal was not asked about) and for the
reveal run on invented names (who have no facts to reveal). Only this probe reads the
profiles; the method does not.

    python benchmarks/reveal_release_probe.py --home HOME --people 20 --forget forget10 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def fact_hits(rows: list[dict], person: dict) -> int:
    values = [str(v) for v in person["attributes"].values()]
    return sum(any(v in r["answer"] for v in values) for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", required=True)
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--forget", default="forget10")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--json", default=None, help="also write the results here")
    a = ap.parse_args()

    from unlearnkit.data.profiles import generate_profiles
    from unlearnkit.engines.loop import LoopStats
    from unlearnkit.methods.reveal_release import RevealReleaseParams, forget_target, reveal
    from unlearnkit.modalities.causal_lm.task import make_lm_task
    from unlearnkit.orchestration.artifacts import ModelCache

    task = make_lm_task("profiles", forget=a.forget, n_people=a.people, cache=ModelCache(Path(a.home) / "cache"))
    s = task.spec
    ds = generate_profiles(
        n_people=s["n_people"], seed=s["data_seed"], qa_per_person=s["qa_per_person"], n_other=s["n_other"]
    )
    targets = ds.subjects(a.forget)
    others = [p["person_id"] for p in ds.people if p["group"] == "train" and p["person_id"] not in targets][
        : len(targets)
    ]
    names = forget_target(task)
    p = RevealReleaseParams()
    out = []
    for seed in [int(x) for x in a.seeds.split(",")]:
        t0 = time.perf_counter()
        rows, info = reveal(task.original, task, names, p, seed, LoopStats())
        secs = time.perf_counter() - t0
        stranger, _ = reveal(task.original, task, ["Hemmet Vorlaine", "Quilla Marsden"], p, seed, LoopStats())
        by_target = [[r for r in rows if names[i] in r["question"]] for i in range(len(names))]
        rec = {
            "seed": seed,
            "targets": names,
            "kept_rows": len(rows),
            "target_fact_rows": sum(fact_hits(rs, ds.person(t)) for rs, t in zip(by_target, targets)),
            "other_person_fact_rows": sum(fact_hits(rs, ds.person(o)) for rs, o in zip(by_target, others)),
            "stranger_kept_rows": len(stranger),
            "instructions": info["instructions"],
            "rewards": [round(x, 3) for x in info["rewards"]],
            "seconds": round(secs, 1),
            "examples": [(r["question"], r["answer"], round(r["contrast"], 2)) for r in rows[:6]],
        }
        out.append(rec)
        print(json.dumps(rec))
    print(
        "mean share of kept rows stating a target fact:",
        round(float(np.mean([r["target_fact_rows"] / max(r["kept_rows"], 1) for r in out])), 3),
        "| another person's fact:",
        round(float(np.mean([r["other_person_fact_rows"] / max(r["kept_rows"], 1) for r in out])), 3),
    )
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
