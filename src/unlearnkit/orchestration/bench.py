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

A language-model grid names its task (a ``unlearnkit train --task`` value; the modality
that answers it builds the task) and the forget splits as scenarios::

    task: profiles             # any `train --task` value: classifier (default), profiles, bible, qa
    options: {people: 100, qa_per_person: 10, lm_size: {hidden: 128, layers: 2}}
    scenarios: [forget01, forget05, forget10]
    methods: [gradient_ascent, {name: npo, params: {beta: 0.1}}]

``options`` are the task's build options, named as ``unlearnkit train`` names them
(``epochs``, ``lr``, ``label``, ``people``, ``lm_size``, ...). The older ``lm:`` mapping
(``n_people``, ``qa_per_person``, ``model``) and ``dataset_kwargs`` still work.

Everything is checked before any training (method names, hyperparameter types,
scenarios, workers). Jobs are split by seed (each job runs every scenario of one seed, so
each original is trained once); with fewer seeds than workers, by (seed, scenario).
Workers return records; the parent process writes them to the store.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from ..data.scenarios import scenario_from_dict
from ..errors import ConfigError
from ..methods import METHODS, get_method
from ..modalities import Modality, modality_for_task_kind
from .records import RunRecord

#: the older ``lm:`` keys (make_lm_task's names) and the build options they are now
_LM_KEYS = {"n_people": "people", "qa_per_person": "qa_per_person", "model": "lm_size"}


@dataclass
class Grid:
    dataset: str = "digits"
    model: str = "mlp"
    seeds: list[int] = field(default_factory=lambda: [0])
    scenarios: list[Any] = field(default_factory=lambda: ["random:0.1"])
    methods: list[Any] = field(default_factory=lambda: ["finetune"])
    workers: int = 1
    dataset_kwargs: dict = field(default_factory=dict)
    task: str = "classifier"
    options: dict = field(default_factory=dict)
    lm: dict = field(default_factory=dict)

    @property
    def modality(self) -> Modality:
        """The modality that builds this grid's task (``task`` is a ``train --task`` value)."""
        return modality_for_task_kind(str(self.task))

    def task_options(self) -> dict:
        """The task's build options (what :meth:`Modality.build_task` takes)."""
        unknown = sorted(set(self.lm) - set(_LM_KEYS))
        if unknown:
            raise ConfigError(
                f"grid: unknown lm keys {unknown}; lm takes {', '.join(sorted(_LM_KEYS))} "
                "(or give `options:` named as `unlearnkit train` names them)"
            )
        return {
            "dataset": self.dataset,
            "model": self.model,
            **dict(self.dataset_kwargs),
            **{_LM_KEYS[k]: v for k, v in self.lm.items()},
            **dict(self.options),
        }

    def scenario_dicts(self) -> list[dict | None]:
        """The scenarios as plain dicts, as the grid's modality reads a request's scenario."""
        out: list[dict | None] = []
        for s in self.scenarios:
            if isinstance(s, str):
                sc = self.modality.request_scenario(scenario=s)
                out.append(sc.to_dict() if hasattr(sc, "to_dict") else sc)
            elif isinstance(s, dict):
                from_dict = getattr(self.modality.part("task"), "scenario_from_dict", scenario_from_dict)
                out.append(dict(s) if s.get("kind") == "lm" else from_dict(s).to_dict())
            else:
                raise ConfigError(f"grid: a scenario is a string or a mapping, not {s!r}")
        return out

    def method_specs(self) -> list[tuple[str, dict]]:
        out = []
        for m in self.methods:
            name, params = (m, {}) if isinstance(m, str) else (m.get("name"), m.get("params", {}) or {})
            if name not in METHODS:
                raise ConfigError(f"grid: unknown method {name!r}; choose from {', '.join(sorted(METHODS))}")
            if not isinstance(params, dict):
                raise ConfigError(f"grid: params of method {name!r} must be a mapping, not {params!r}")
            get_method(name, **params)  # hyperparameter names and types, before any training
            out.append((name, dict(params)))
        return out


def load_grid(path: str | Path) -> Grid:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"no such grid file: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read grid file {path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the grid must be a mapping")
    unknown = set(data) - set(Grid.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"{path}: unknown grid keys {sorted(unknown)}")
    grid = Grid(**data)
    for key in ("dataset_kwargs", "options", "lm"):
        if not isinstance(getattr(grid, key), dict):
            raise ConfigError(f"{path}: {key} must be a mapping")
    if (
        not isinstance(grid.seeds, list)
        or not grid.seeds
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in grid.seeds)
    ):
        raise ConfigError(f"{path}: seeds must be a non-empty list of integers")
    if not isinstance(grid.workers, int) or isinstance(grid.workers, bool) or grid.workers < 1:
        raise ConfigError(f"{path}: workers must be an integer >= 1")
    grid.task_options()
    grid.scenario_dicts()
    grid.method_specs()
    return grid


def _job(grid: Grid, seed: int, scenarios: list[dict | None], home: str, threads: int) -> list[dict]:
    import torch

    from .experiment import Workspace, compare

    torch.set_num_threads(threads)
    ws = Workspace.open(home)
    modality = grid.modality
    base = modality.build_task(str(grid.task), grid.task_options(), seed=seed, cache=ws.cache)
    recs = []
    for sc in scenarios:
        task = modality.task_from_spec(base.spec, sc, cache=ws.cache)
        cmp = compare(task, grid.method_specs(), seed=seed, workspace=ws, store_records=False)
        recs.extend(r.to_dict() for r in cmp.records)
    return recs


def run_grid(
    grid: Grid, home: str | Path, workers: int | None = None, on_done: Callable[[int, int], None] | None = None
) -> list[RunRecord]:
    """Run every (scenario, seed) of ``grid``; returns the records (not yet stored)."""
    from .experiment import Workspace

    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"--workers must be an integer >= 1, not {workers!r}")
    workers = workers or grid.workers
    scen = grid.scenario_dicts()
    grid.method_specs()
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
