"""The main job on embedded defaults: ``unlearnkit demo`` / ``make demo``.

A small CNN is trained on scikit-learn's handwritten digits; deletion requests
arrive for several data subjects and for one whole class; every demo method answers
them; the original, the retrained reference and each method are compared on utility,
forgetting, privacy and cost; a self-contained HTML report is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from ..data.scenarios import ClassForget, Scenario, SubjectForget
from ..modalities.classifier.task import make_task
from .experiment import Workspace, compare
from .records import RunRecord
from .report import scenario_label, write_report

DEMO_METHODS = (
    "finetune",
    "gradient_ascent",
    "graddiff",
    "random_labels",
    "scrub",
    "npo",
    "salun",
    "bad_teacher",
    "l1_sparse",
    "ssd",
    "simnpo",
    "sisa",
)


def demo_scenarios() -> list[Scenario]:
    return [SubjectForget(count=5), ClassForget(label=3)]


def run_demo(
    out_dir: str | Path = "demo-output",
    home: str | Path | None = None,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
    model: str = "cnn",
    dataset: str = "digits",
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Run the demo; returns ``{"report": {...paths}, "models": [...]}``."""
    methods = [m for m in (methods or DEMO_METHODS) if m != "retrain"]
    workspace = Workspace.open(home or Path(out_dir) / "home")
    records: list[RunRecord] = []
    for scenario in demo_scenarios():
        for seed in seeds:
            task = make_task(dataset, model, scenario, seed=seed, cache=workspace.cache, progress=progress)
            label = scenario_label(task.split.scenario)
            log(
                f"[{label}, seed {seed}] forget {len(task.forget)} of {len(task.train)} training "
                f"examples; holdout {len(task.holdout)}; running {len(methods)} methods"
            )
            cmp = compare(task, methods, seed=seed, workspace=workspace, progress=progress)
            records.extend(cmp.records)
    paths = write_report(records, out_dir, title=f"unlearnkit demo: {dataset} / {model}")
    return _summary(records, paths, workspace)


def _summary(records: list[RunRecord], paths: dict, workspace: Workspace) -> dict:
    """What a demo returns: the report's paths and one entry per model."""
    models = [
        {
            "model": r.method,
            "role": {"train": "original", "reference": "reference"}.get(r.kind, "method"),
            "scenario": scenario_label(r.scenario),
            "seed": r.seed,
            "run_id": r.id,
            "status": r.status,
            "error": r.error,
            "metrics": r.metrics,
        }
        for r in records
    ]
    return {"report": {k: str(v) for k, v in paths.items()}, "workspace": str(workspace.root), "models": models}


LM_DEMO_METHODS = (
    "gradient_ascent",
    "graddiff",
    "npo",
    "simnpo",
    "idk_dpo",
    "wga",
    "undial",
    "ce_u",
    "dto",
    "rmu",
    "bounded_lora",
    "icul",
)
#: a profiles task that trains in about a minute on 2 CPU cores
LM_DEMO_TASK = {
    "n_people": 20,
    "qa_per_person": 6,
    "n_other": 5,
    "model": {"hidden": 96, "layers": 2, "heads": 4, "intermediate": 192},
}


def run_lm_demo(
    out_dir: str | Path = "demo-lm-output",
    home: str | Path | None = None,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
    forget: str = "forget10",
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """The language-model demo: a tiny Llama memorises generated profiles of fictitious
    people; a deletion request asks it to forget ``forget`` (10% of the people); every LM
    method answers it and is compared with the retrained reference on forget quality,
    model utility, memorisation, membership inference, probes and cost."""
    from ..methods import METHODS
    from ..modalities.causal_lm.task import make_lm_task

    methods = [m for m in (methods or LM_DEMO_METHODS) if m != "retrain" and m in METHODS]
    workspace = Workspace.open(home or Path(out_dir) / "home")
    records: list[RunRecord] = []
    for seed in seeds:
        task = make_lm_task(
            "profiles", forget=forget, seed=seed, cache=workspace.cache, progress=progress, **LM_DEMO_TASK
        )
        log(
            f"[{forget}, seed {seed}] forget {len(task.forget)} of {len(task.train)} QA rows "
            f"({len(set(task.forget.subject_ids))} people); holdout {len(task.holdout)}; "
            f"running {len(methods)} methods"
        )
        records.extend(compare(task, methods, seed=seed, workspace=workspace, progress=progress).records)
    paths = write_report(records, out_dir, title="unlearnkit demo: fictitious profiles / tiny Llama")
    return _summary(records, paths, workspace)
