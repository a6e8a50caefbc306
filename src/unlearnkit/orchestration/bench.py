"""Benchmark grids: methods x scenarios x seeds from a YAML file, run here or on Ray.

Grid file::

    dataset: digits            # built-in name or file path
    model: mlp
    seeds: [0, 1, 2]
    scenarios: ["random:0.1", "class:3", {kind: subjects, count: 5}]
    methods:
      - finetune
      - {name: scrub, params: {epochs: 3}}
    workers: 2                 # Ray workers (default: 1, in this process without Ray)

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
scenarios, workers, the Ray address, whether Ray is installed). Jobs are split by seed
(each job runs every scenario of one seed, so each original is trained once); with fewer
seeds than workers, by (seed, scenario). With ``workers: 1`` and no address the jobs run
in this process; otherwise as Ray tasks (:mod:`.jobs`: a local Ray instance with
``workers`` CPUs, or the cluster at ``address``, whose workers must see the workspace
folder at the same path). Jobs return records; the parent process writes them to the
store. :func:`run_job` is the one way a job runs methods on a task and records them; the
sweeps (:mod:`.sweep`) run their trials through it too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from ..data.scenarios import scenario_from_dict
from ..errors import ConfigError
from ..methods import METHODS, get_method
from ..modalities import Modality, modality_for_task_kind
from .jobs import check_address, check_workers, executor, require_ray, uses_ray
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
        # a modality whose unlearning is its own flow (federated: exact resumption, FedEraser
        # beside the registered methods) checks the grid's methods itself
        own = getattr(self.modality.part("task"), "check_methods", None)
        out = []
        for m in self.methods:
            name, params = (m, {}) if isinstance(m, str) else (m.get("name"), m.get("params", {}) or {})
            if own is None and name not in METHODS:
                raise ConfigError(f"grid: unknown method {name!r}; choose from {', '.join(sorted(METHODS))}")
            if not isinstance(params, dict):
                raise ConfigError(f"grid: params of method {name!r} must be a mapping, not {params!r}")
            if own is None:
                get_method(name, **params)  # hyperparameter names and types, before any training
            out.append((name, dict(params)))
        if own is not None:
            own(out, get_method)
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
    options = grid.task_options()
    check = getattr(grid.modality.part("task"), "check_options", None)  # a modality's own checks
    if check is not None:  # of its build options, before the workspace is touched
        check(str(grid.task), options)
    grid.scenario_dicts()
    grid.method_specs()
    return grid


def run_job(
    grid: Grid,
    seed: int,
    scenarios: list[dict | None],
    home: str,
    threads: int,
    methods: list[tuple[str, dict]] | None = None,
) -> list[dict]:
    """Build ``grid``'s task for ``seed`` and, per scenario, run ``methods`` (default: the
    grid's) with :func:`~.experiment.compare`; the records as dicts, none stored.

    Runs in a Ray worker or in this process: it reads and writes the workspace's model cache
    and artifacts under ``home``, never its store (the parent writes the records).
    """
    import torch

    from .artifacts import ArtifactStore, ModelCache
    from .experiment import Workspace, compare

    torch.set_num_threads(threads)
    root = Path(home)
    ws = Workspace(root, None, ArtifactStore(root / "artifacts"), ModelCache(root / "cache"))  # type: ignore[arg-type]
    modality = grid.modality
    base = modality.build_task(str(grid.task), grid.task_options(), seed=seed, cache=ws.cache)
    specs = grid.method_specs() if methods is None else methods
    own = getattr(modality.part("task"), "bench_job", None)
    if own is not None:  # the modality's own flow per scenario (original, reference, methods)
        from .records import RunRecord

        return [RunRecord.from_dict(d).to_dict() for d in own(base, scenarios, specs, seed, ws, get_method)]
    recs = []
    for sc in scenarios:
        task = modality.task_from_spec(base.spec, sc, cache=ws.cache)
        cmp = compare(task, specs, seed=seed, workspace=ws, store_records=False)
        recs.extend(r.to_dict() for r in cmp.records)
    return recs


def default_threads(workers: int) -> int:
    """Torch threads per job: this machine's CPUs shared among the workers, at most
    ``OMP_NUM_THREADS`` where the user set it (on a loaded machine a job's threads wait for
    each other: benchmarks/results/bench_on_ray.md measured 2 threads 20x slower than 1)."""
    share = max(1, (os.cpu_count() or 1) // workers)
    limit = os.environ.get("OMP_NUM_THREADS", "").strip()
    return min(share, int(limit)) if limit.isdigit() and int(limit) >= 1 else share


def check_backend(workers: int, address: str | None) -> str | None:
    """The checked address; Ray importable where the jobs need it (before any work)."""
    address = check_address(address)
    if uses_ray(workers, address):
        require_ray(f"a grid of {workers} workers" if address is None else f"--address {address}")
    return address


def run_grid(
    grid: Grid,
    home: str | Path,
    workers: int | None = None,
    on_done: Callable[[int, int], None] | None = None,
    address: str | None = None,
    threads: int | None = None,
    ray_temp_dir: str | None = None,
) -> list[RunRecord]:
    """Run every (scenario, seed) of ``grid``; returns the records (not yet stored).

    ``workers`` (default: the grid's) jobs at a time: one runs them here, more run them as
    Ray tasks on a local instance, or on the cluster at ``address``. ``threads``: torch
    threads per job (default: the CPUs shared among the workers). ``on_done(i, n)`` after
    each finished job.
    """
    from .experiment import Workspace

    if workers is not None:
        check_workers(workers)
    workers = workers or grid.workers
    if threads is not None:
        check_workers(threads, "threads")
    address = check_backend(workers, address)
    scen = grid.scenario_dicts()
    grid.method_specs()
    if len(grid.seeds) >= workers:
        jobs = [(seed, scen) for seed in grid.seeds]
    else:
        jobs = [(seed, [s]) for seed in grid.seeds for s in scen]
    threads = threads or default_threads(workers)
    Workspace.open(home)  # fail early if the workspace cannot be written
    records: list[RunRecord] = []
    with executor(workers, address, ray_temp_dir) as ex:
        for seed, sc in jobs:
            ex.submit(run_job, grid, seed, sc, str(home), threads)
        for i in range(len(jobs)):
            _, recs = ex.next_done()
            records += [RunRecord.from_dict(d) for d in recs]
            if on_done:
                on_done(i + 1, len(jobs))
    return records
