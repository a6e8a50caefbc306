"""Benchmark grids: methods x scenarios x seeds from a YAML file, in parallel processes.

Grid file::

    dataset: digits            # built-in name or file path
    model: mlp
    seeds: [0, 1, 2]
    scenarios: ["random:0.1", "class:3", {kind: subjects, count: 5}]
    methods:
      - finetune
      - {name: scrub, params: {epochs: 3}}
    workers: 2                 # processes (default: 1)

A language-model grid names its task and the forget splits as scenarios::

    task: profiles             # profiles, bible or a QA folder (default: classifier)
    lm: {n_people: 100, qa_per_person: 10, model: {hidden: 128, layers: 2}}
    scenarios: [forget01, forget05, forget10]
    methods: [gradient_ascent, {name: npo, params: {beta: 0.1}}]

Jobs are split by seed (each job runs every scenario of one seed, so each original is
trained once); with fewer seeds than workers, by (seed, scenario). Workers return
records; the parent process writes them to the store.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from ..data.scenarios import Scenario, parse_scenario, scenario_from_dict
from ..errors import ConfigError
from ..methods import METHODS
from .records import RunRecord


@dataclass
class Grid:
    dataset: str = "digits"
    model: str = "mlp"
    seeds: list[int] = field(default_factory=lambda: [0])
    scenarios: list[Any] = field(default_factory=lambda: ["random:0.1"])
    methods: list[Any] = field(default_factory=lambda: ["finetune"])
    workers: int = 1
    dataset_kwargs: dict = field(default_factory=dict)
    model_kwargs: dict = field(default_factory=dict)
    task: str = "classifier"
    lm: dict = field(default_factory=dict)

    @property
    def is_lm(self) -> bool:
        return self.task != "classifier"

    def scenario_objects(self) -> list[Scenario]:
        if self.is_lm:
            raise ConfigError("a language-model grid has forget splits, not scenario objects")
        return [parse_scenario(s) if isinstance(s, str) else scenario_from_dict(s) for s in self.scenarios]

    def scenario_dicts(self) -> list[dict]:
        """Scenarios as plain dicts (language-model grids: ``{"kind": "lm", "forget": split}``)."""
        if self.is_lm:
            return [{"kind": "lm", "forget": s} for s in self.scenarios]
        return [s.to_dict() for s in self.scenario_objects()]

    def method_specs(self) -> list[tuple[str, dict]]:
        out = []
        for m in self.methods:
            name, params = (m, {}) if isinstance(m, str) else (m.get("name"), m.get("params", {}) or {})
            if name not in METHODS:
                raise ConfigError(f"grid: unknown method {name!r}; choose from {', '.join(sorted(METHODS))}")
            out.append((name, dict(params)))
        return out


def load_grid(path: str | Path) -> Grid:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"no such grid file: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the grid must be a mapping")
    unknown = set(data) - set(Grid.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"{path}: unknown grid keys {sorted(unknown)}")
    grid = Grid(**data)
    if grid.is_lm:
        from ..modalities.causal_lm.task import make_lm_task
        import inspect

        bad = set(grid.lm) - set(inspect.signature(make_lm_task).parameters) | ({"forget", "source", "seed"} & set(grid.lm))
        if bad:
            raise ConfigError(f"{path}: unknown or misplaced lm keys {sorted(bad)}")
        if not all(isinstance(s, str) for s in grid.scenarios):
            raise ConfigError(f"{path}: a language-model grid lists forget split names as scenarios")
    else:
        grid.scenario_objects()
    grid.method_specs()
    if grid.workers < 1:
        raise ConfigError("grid: workers must be >= 1")
    return grid


def _job(grid: Grid, seed: int, scenarios: list[dict], home: str, threads: int) -> list[dict]:
    import torch

    from ..modalities.classifier.task import make_task
    from .experiment import Workspace, compare

    torch.set_num_threads(threads)
    ws = Workspace.open(home)
    recs = []
    for sc in scenarios:
        if grid.is_lm:
            from ..modalities.causal_lm.task import make_lm_task

            source = grid.dataset if grid.task == "qa" else grid.task
            task = make_lm_task(source, forget=sc["forget"], seed=seed, cache=ws.cache, **grid.lm)
        else:
            task = make_task(grid.dataset, grid.model, scenario_from_dict(sc), seed=seed, cache=ws.cache,
                             model_kwargs=grid.model_kwargs, dataset_kwargs=grid.dataset_kwargs)
        cmp = compare(task, grid.method_specs(), seed=seed, workspace=ws, store_records=False)
        recs.extend(r.to_dict() for r in cmp.records)
    return recs


def run_grid(grid: Grid, home: str | Path, workers: int | None = None,
             on_done: Callable[[int, int], None] | None = None) -> list[RunRecord]:
    """Run every (scenario, seed) of ``grid``; returns the records (not yet stored)."""
    from .experiment import Workspace

    workers = workers or grid.workers
    scen = grid.scenario_dicts()
    if len(grid.seeds) >= workers:
        jobs = [(seed, scen) for seed in grid.seeds]
    else:
        jobs = [(seed, [s]) for seed in grid.seeds for s in scen]
    threads = max(1, (os.cpu_count() or 1) // workers)
    Workspace.open(home)  # fail early if the workspace cannot be written
    records: list[RunRecord] = []
    if workers == 1:
        for i, (seed, sc) in enumerate(jobs):
            records += [RunRecord.from_dict(d) for d in _job(grid, seed, sc, str(home), threads)]
            if on_done:
                on_done(i + 1, len(jobs))
        return records
    with ProcessPoolExecutor(max_workers=workers) as ex:
        futs = [ex.submit(_job, grid, seed, sc, str(home), threads) for seed, sc in jobs]
        for i, f in enumerate(as_completed(futs)):
            records += [RunRecord.from_dict(d) for d in f.result()]
            if on_done:
                on_done(i + 1, len(jobs))
    return records
