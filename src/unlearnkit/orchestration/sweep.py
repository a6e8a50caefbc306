"""Multi-objective hyperparameter sweeps of one method on one task, with Optuna, on Ray.

A sweep searches a method's registered hyperparameters (``unlearnkit methods`` lists them)
within the user's ranges for configurations that trade three objectives off:

* **forgetting**: the gap to the reference (the retrained model) on the forget-side metric
  of the task's modality, ``|m(unlearned) - m(reference)|`` for a metric whose goal is the
  reference's value (a classifier's ``acc_forget``, a graph's ``df_auc`` or
  ``node_acc_forget``), or the metric itself, maximised, where it already compares with
  the reference (a language model's ``forget_quality``, TOFU's KS test);
* **utility**: the modality's utility metric (``acc_test``, ``model_utility``, ``dt_auc``,
  ``node_acc_test``), maximised;
* **cost**: the cost ratio to retraining (``cost_ratio_time``, or ``cost_ratio_examples``
  with ``cost: examples``; :mod:`unlearnkit.evaluation.cost`), minimised.

Each objective's metric is the first of its candidates that the reference's run has (or
the key given), and its direction is the metric catalogue's goal.

The Optuna study lives in the parent process (ask/tell): the parent asks for a
configuration, a job runs it (:func:`.bench.run_job`, the bench's one way to run a method
on a task and record it) here or as a Ray task (:mod:`.jobs`, the same rules as
``bench``), and the parent stores the run and tells the study its objective values. The
study is kept in an Optuna RDB storage (SQLite ``<workspace>/sweeps.db`` by default),
named from everything that defines the sweep, so running the same sweep again resumes
it. Every trial is a run in the store (tagged ``sweep: {study, trial}``), failed ones
(a diverged method) included; the original and the reference are stored once per study.

Search space, as ``--param`` text or in a YAML file::

    lr: 1e-4:1e-1:log          # float range, log scale
    epochs: 1:5:int            # integer range (1:16:int:log on a log scale)
    alpha: 0.5:0.99            # float range
    retain_loss: [nll, kl]     # a choice (--param retain_loss=nll,kl)
    batch_size: 32             # fixed
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from ..errors import ConfigError, UnlearnkitError
from ..methods import METHODS, get_method
from ..utils import stable_hash
from .bench import Grid, check_backend, default_threads, run_job
from .jobs import check_workers, executor
from .records import RunRecord

#: each objective's candidate metrics, first present in the reference's run wins
FORGETTING_METRICS = (
    "acc_forget",
    "forget_quality",
    "df_auc",
    "node_acc_forget",
    "fed_acc_forget",
    "jaccard10_forgotten",
)
UTILITY_METRICS = ("acc_test", "model_utility", "dt_auc", "node_acc_test", "fed_acc_test", "ndcg10_retained")
COST_METRICS = {"time": "cost_ratio_time", "examples": "cost_ratio_examples"}
SAMPLERS = ("tpe", "nsga2", "random")
OBJECTIVES = ("forgetting", "utility", "cost")


# ---------------------------------------------------------------- the search space


@dataclass(frozen=True)
class Dimension:
    """One hyperparameter's range: ``float`` or ``int`` between ``low`` and ``high`` (on a
    log scale with ``log``), or one of ``choices``."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)

    def values(self) -> list:
        """The values the method must accept: the bounds, or every choice."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]

    def to_dict(self) -> dict:
        if self.kind == "choice":
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "type": self.kind, "log": self.log}

    def text(self) -> str:
        if self.kind == "choice":
            return ",".join(map(str, self.choices))
        return f"{self.low}:{self.high}" + (":int" if self.kind == "int" else "") + (":log" if self.log else "")


def _scalar(text: str) -> Any:
    """int, float (``1e-3`` included: YAML 1.1 reads it as a string), else YAML's reading,
    as ``--param`` values of ``unlearnkit unlearn`` are read (the CLI's parser sits above
    this layer)."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _number(name: str, text: Any, integer: bool) -> float | int:
    v = _scalar(text) if isinstance(text, str) else text
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"--param {name}: {text!r} is not a finite number")
    if integer:
        if float(v) != int(v):
            raise ConfigError(f"--param {name}: an integer range needs integer bounds, not {text!r}")
        return int(v)
    return float(v)


def _range(name: str, low: Any, high: Any, kind: str, log: bool) -> Dimension:
    lo, hi = _number(name, low, kind == "int"), _number(name, high, kind == "int")
    if not lo < hi:
        raise ConfigError(f"--param {name}: the low bound {lo} must be below the high bound {hi}")
    if log and lo <= 0:
        raise ConfigError(f"--param {name}: a log range needs a low bound > 0, not {lo}")
    return Dimension(name, kind, lo, hi, log)


def parse_dimension(name: str, spec: Any) -> Dimension | tuple[str, Any]:
    """A :class:`Dimension` from ``LOW:HIGH[:int][:log]``, ``A,B,C``, a list of choices or a
    ``{low, high, type, log}`` / ``{choices}`` mapping; ``("fixed", value)`` for one value."""
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - {"low", "high", "type", "log", "choices"})
        if unknown:
            raise ConfigError(f"--param {name}: unknown keys {unknown}; a range takes low, high, type, log or choices")
        if "choices" in spec:
            return parse_dimension(name, list(spec["choices"] or []))
        if "low" not in spec or "high" not in spec:
            raise ConfigError(f"--param {name}: a range needs low and high")
        kind = spec.get("type", "float")
        if kind not in ("float", "int"):
            raise ConfigError(f"--param {name}: type must be float or int, not {kind!r}")
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise ConfigError(f"--param {name}: log must be true or false, not {log!r}")
        return _range(name, spec["low"], spec["high"], kind, log)
    if isinstance(spec, (list, tuple)):
        choices = tuple(spec)
        if len(choices) < 2:
            raise ConfigError(f"--param {name}: a choice needs two values or more, not {list(choices)!r}")
        if len(set(map(repr, choices))) < len(choices):
            raise ConfigError(f"--param {name}: the choices {list(choices)!r} repeat a value")
        return Dimension(name, "choice", choices=choices)
    if not isinstance(spec, str):
        return ("fixed", spec)
    text = spec.strip()
    if ":" in text:
        parts = [p.strip() for p in text.split(":")]
        flags = parts[2:]
        bad = [f for f in flags if f not in ("int", "log", "float")]
        if len(parts) < 2 or bad or len(flags) != len(set(flags)) or not parts[0] or not parts[1]:
            raise ConfigError(
                f"--param {name}={spec}: a range is LOW:HIGH with optional :int and :log (e.g. 1e-4:1e-1:log)"
            )
        return _range(name, parts[0], parts[1], "int" if "int" in flags else "float", "log" in flags)
    if "," in text:
        return parse_dimension(name, [_scalar(p.strip()) for p in text.split(",")])
    return ("fixed", _scalar(text))


def parse_space(items: Sequence[str] | dict) -> tuple[dict[str, Dimension], dict[str, Any]]:
    """``(ranges, fixed values)`` from ``NAME=SPEC`` texts (``--param``) or a mapping."""
    if isinstance(items, dict):
        pairs = list(items.items())
    else:
        pairs = []
        for it in items:
            k, sep, v = str(it).partition("=")
            if not sep or not k.strip():
                raise ConfigError(f"--param expects NAME=RANGE (e.g. lr=1e-4:1e-1:log), got {it!r}")
            pairs.append((k.strip(), v.strip()))
    space: dict[str, Dimension] = {}
    fixed: dict[str, Any] = {}
    for k, v in pairs:
        if not isinstance(k, str) or not k:
            raise ConfigError(f"a hyperparameter name is a string, not {k!r}")
        if k in space or k in fixed:
            raise ConfigError(f"--param {k} is given twice")
        d = parse_dimension(k, v)
        if isinstance(d, Dimension):
            space[k] = d
        else:
            fixed[k] = d[1]
    return space, fixed


def check_space(method: str, space: dict[str, Dimension], fixed: dict, modality: str) -> None:
    """Every name a hyperparameter of ``method``, every bound and choice of its declared
    type, the method one that serves ``modality`` (no compute)."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose from {', '.join(sorted(METHODS))}")
    cls = METHODS[method]
    if modality not in cls.modalities:
        raise ConfigError(
            f"method {method!r} works on {' and '.join(cls.modalities)} tasks, not {modality}; "
            "`unlearnkit methods` lists what each method serves"
        )
    if not space:
        raise ConfigError(
            f"nothing to search: give a range of one of {method}'s hyperparameters, e.g. --param lr=1e-4:1e-1:log"
        )
    get_method(method, **fixed)  # names and types of the fixed values
    names = {f.name for f in dataclasses.fields(cls.Params)}
    unknown = sorted(set(space) - names)
    if unknown:
        get_method(method, **{name: 0 for name in unknown})  # the method's own message
    hints = typing.get_type_hints(cls.Params)
    for name, dim in space.items():
        if dim.kind == "float" and not _accepts_float(hints.get(name)):
            raise ConfigError(
                f"--param {name}={dim.text()}: {method}'s {name} takes integers; give an integer range (LOW:HIGH:int)"
            )
        for v in dim.values():
            get_method(method, **{**fixed, name: v})


def _accepts_float(tp: Any) -> bool:
    if tp is None or tp is Any or tp is float:
        return True
    args = typing.get_args(tp)
    return any(_accepts_float(a) for a in args) if args else False


# ---------------------------------------------------------------- objectives


@dataclass(frozen=True)
class Objective:
    """One objective: ``metric`` of a trial's run, as its catalogue ``goal`` reads it."""

    name: str
    metric: str
    goal: str

    @property
    def direction(self) -> str:
        return "maximize" if self.goal == "higher" else "minimize"

    @property
    def label(self) -> str:
        return f"|{self.metric} - reference|" if self.goal == "reference" else self.metric

    def value(self, metrics: dict, reference: dict) -> float:
        v = metrics.get(self.metric)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return math.nan
        if self.goal == "reference":
            r = reference.get(self.metric)
            return abs(float(v) - float(r)) if isinstance(r, (int, float)) else math.nan
        return float(v)

    def to_dict(self) -> dict:
        return {"name": self.name, "metric": self.metric, "goal": self.goal, "direction": self.direction}


def _goal(metric: str, modality: str) -> str:
    from ..evaluation.metrics import metric_goal

    goal = metric_goal(metric, modality)
    if goal not in ("higher", "lower", "reference"):
        raise ConfigError(f"unknown metric {metric!r} of {modality} tasks; `unlearnkit metrics` lists them")
    return goal


def check_objectives(modality: str, forgetting: str | None, utility: str | None, cost: str) -> None:
    """The metric names the user chose are metrics of ``modality`` (before compute)."""
    if cost not in COST_METRICS:
        raise ConfigError(f"--cost must be one of {', '.join(COST_METRICS)}, not {cost!r}")
    for key in (forgetting, utility):
        if key is not None:
            _goal(key, modality)


def resolve_objectives(
    reference_metrics: dict,
    modality: str,
    forgetting: str | None = None,
    utility: str | None = None,
    cost: str = "time",
) -> list[Objective]:
    """The three objectives for a task whose reference run has ``reference_metrics``."""

    def pick(what: str, chosen: str | None, candidates: Sequence[str]) -> str:
        have = {k for k, v in reference_metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        if chosen is not None:
            if chosen not in have:
                raise ConfigError(
                    f"--{what} {chosen}: the task's reference has no value of it; it has {', '.join(sorted(have))}"
                )
            return chosen
        for key in candidates:
            if key in have:
                return key
        # a modality none of the candidates names: its own headline metrics, in catalogue order
        from ..evaluation.metrics import headline_metrics

        for key in headline_metrics(modality):
            if key in have and key not in taken and ("forget" in key) == (what == "forgetting"):
                if what == "forgetting" or metric_goal(key, modality) == "higher":
                    return key
        raise ConfigError(f"no {what} metric among {', '.join(candidates)} on this task; name one with --{what}")

    from ..evaluation.metrics import metric_goal

    check_objectives(modality, forgetting, utility, cost)
    taken: set[str] = set()
    f = pick("forgetting", forgetting, FORGETTING_METRICS)
    taken.add(f)
    u = pick("utility", utility, UTILITY_METRICS)
    c = pick("cost", COST_METRICS[cost], (COST_METRICS[cost],))
    return [
        Objective("forgetting", f, _goal(f, modality)),
        Objective("utility", u, _goal(u, modality)),
        Objective("cost", c, _goal(c, modality)),
    ]


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """Whether objective values ``a`` are at least as good as ``b`` everywhere and better once."""
    sign = [1.0 if d == "minimize" else -1.0 for d in directions]
    x = [s * v for s, v in zip(sign, a)]
    y = [s * v for s, v in zip(sign, b)]
    return all(p <= q for p, q in zip(x, y)) and any(p < q for p, q in zip(x, y))


# ---------------------------------------------------------------- the sweep


@dataclass
class Sweep:
    """A sweep of ``method`` on one task (the bench grid's task keys) and one seed."""

    method: str
    params: dict = field(default_factory=dict)
    task: str = "classifier"
    dataset: str = "digits"
    model: str = "mlp"
    options: dict = field(default_factory=dict)
    scenario: Any = "random:0.1"
    seed: int = 0
    trials: int = 10
    parallel: int = 1
    sampler: str = "tpe"
    sampler_seed: int | None = None
    forgetting: str | None = None
    utility: str | None = None
    cost: str = "time"

    def grid(self) -> Grid:
        return Grid(
            dataset=self.dataset,
            model=self.model,
            seeds=[self.seed],
            scenarios=[self.scenario],
            methods=[self.method],
            task=self.task,
            options=dict(self.options),
        )

    def space(self) -> tuple[dict[str, Dimension], dict[str, Any]]:
        return parse_space(self.params)

    def check(self) -> tuple[Grid, dict[str, Dimension], dict[str, Any]]:
        """Everything that can be checked without compute; ``(grid, ranges, fixed)``."""
        if not isinstance(self.method, str) or not self.method:
            raise ConfigError("a sweep needs a method (e.g. `unlearnkit sweep graddiff ...`)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, not {self.seed!r}")
        check_workers(self.trials, "--trials")
        check_workers(self.parallel, "--parallel")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"--sampler must be one of {', '.join(SAMPLERS)}, not {self.sampler!r}")
        if self.sampler_seed is not None and (
            isinstance(self.sampler_seed, bool) or not isinstance(self.sampler_seed, int)
        ):
            raise ConfigError(f"--sampler-seed must be an integer, not {self.sampler_seed!r}")
        if not isinstance(self.options, dict):
            raise ConfigError("options must be a mapping")
        grid = self.grid()
        try:
            modality = grid.modality
        except UnlearnkitError as e:
            raise ConfigError(f"task {self.task!r}: {e}") from None
        grid.task_options()
        grid.scenario_dicts()
        space, fixed = self.space()
        check_space(self.method, space, fixed, modality.name)
        check_objectives(modality.name, self.forgetting, self.utility, self.cost)
        return grid, space, fixed

    def study_name(self) -> str:
        """A name from everything that defines the sweep's trials (not how many run now)."""
        grid = self.grid()
        space, fixed = self.space()
        key = {
            "method": self.method,
            "task": self.task,
            "options": grid.task_options(),
            "scenario": grid.scenario_dicts(),
            "seed": self.seed,
            "space": {k: d.to_dict() for k, d in sorted(space.items())},
            "fixed": fixed,
            "sampler": self.sampler,
            "sampler_seed": self.sampler_seed,
            "objectives": [self.forgetting, self.utility, self.cost],
        }
        return f"sweep-{self.method}-{stable_hash(key)[:10]}"


def load_sweep(path: str | Path, **overrides: Any) -> Sweep:
    """A :class:`Sweep` from a YAML file (its keys are :class:`Sweep`'s fields), with the
    command line's ``overrides`` (those that are not None)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"no such sweep file: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read sweep file {path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a sweep file is a mapping")
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(Sweep)})
    if unknown:
        raise ConfigError(f"{path}: unknown sweep keys {unknown}")
    if not isinstance(data.get("params", {}), dict):
        raise ConfigError(f"{path}: params is a mapping of hyperparameter ranges")
    params = dict(data.get("params") or {})
    extra = overrides.pop("params", None) or {}
    params.update(extra)
    data.update({k: v for k, v in overrides.items() if v is not None})
    data["params"] = params
    data.setdefault("method", "")
    return Sweep(**data)


@dataclass
class SweepResult:
    """A sweep's study after this call: every trial, the Pareto front, the runs stored now."""

    study: str
    storage: str
    method: str
    objectives: list[Objective]
    trials: list[dict]
    pareto: list[int]
    runs: list[str]
    base: dict[str, str]
    reference: dict[str, float]

    def front(self) -> list[dict]:
        by = {t["number"]: t for t in self.trials}
        return [by[n] for n in self.pareto]

    def to_dict(self) -> dict:
        return {
            "study": self.study,
            "storage": self.storage,
            "method": self.method,
            "objectives": [o.to_dict() for o in self.objectives],
            "trials": self.trials,
            "pareto": self.front(),
            "runs": self.runs,
            "base": self.base,
        }


def default_storage(root: str | Path) -> str:
    return f"sqlite:///{Path(root).resolve() / 'sweeps.db'}"


def check_storage(url: str) -> str:
    """An Optuna RDB storage URL that SQLAlchemy can parse (nothing is connected yet)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url)
    except (ArgumentError, ValueError) as e:
        raise ConfigError(f"--storage {url!r} is not a database URL ({e}); e.g. sqlite:///sweeps.db") from None
    return url


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("sweeps run on Optuna, which is not installed: pip install 'unlearnkit[sweep]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _sampler(optuna, sweep: Sweep):
    seed = sweep.seed if sweep.sampler_seed is None else sweep.sampler_seed
    if sweep.sampler == "nsga2":
        # NSGA-II samples at random until one population has finished; keep it small
        # enough that a short sweep reaches its evolutionary part
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, sweep.trials // 3)))
    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, sweep.trials // 3)))


def _trial_dict(t, objectives: list[Objective]) -> dict:
    values = t.values if t.values is not None else [None] * len(objectives)
    return {
        "number": t.number,
        "state": t.state.name.lower(),
        "params": dict(t.params) | dict(t.user_attrs.get("fixed", {})),
        "values": {o.name: v for o, v in zip(objectives, values)},
        "run_id": t.user_attrs.get("run_id"),
        "why": t.user_attrs.get("why"),
    }


def run_sweep(
    sweep: Sweep,
    workspace,
    address: str | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    on_trial: Callable[[int, int, dict], None] | None = None,
    threads: int | None = None,
    ray_temp_dir: str | None = None,
) -> SweepResult:
    """Run ``sweep.trials`` more trials of ``sweep`` (``sweep.parallel`` at a time) and store
    each as a run in ``workspace``; the study's trials and Pareto front afterwards.

    ``on_trial(i, n, trial)`` after each trial this call finished.
    """
    grid, space, fixed = sweep.check()
    address = check_backend(sweep.parallel, address)
    if threads is not None:
        check_workers(threads, "threads")
    storage = check_storage(storage or default_storage(workspace.root))
    optuna = _optuna()
    name = study_name or sweep.study_name()
    modality = grid.modality.name
    scenario = grid.scenario_dicts()[0]
    threads = threads or default_threads(sweep.parallel)
    home = str(workspace.root)
    space_doc = {k: d.to_dict() for k, d in sorted(space.items())}
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=_sampler(optuna, sweep))
    except KeyError:
        study = None
    except Exception as e:  # noqa: BLE001 - SQLAlchemy's and Optuna's errors of a bad storage
        raise ConfigError(f"cannot open the sweep storage {storage}: {str(e).splitlines()[0]}") from None
    if study is not None and study.user_attrs.get("space") not in (None, space_doc):
        raise ConfigError(
            f"study {name} in {storage} searches another space ({study.user_attrs['space']}); give another --study name"
        )
    records_by_handle: dict = {}
    new_runs: list[str] = []
    with executor(sweep.parallel, address, ray_temp_dir) as ex:
        base = dict(study.user_attrs.get("base", {})) if study is not None else {}
        reference = _stored_metrics(workspace, base.get("reference"))
        if reference is None:  # the original and the reference, trained once before any trial
            ex.submit(run_job, grid, sweep.seed, [scenario], home, threads, [])
            _, recs = ex.next_done()
            records = [RunRecord.from_dict(d) for d in recs]
            ref = next(r for r in records if r.kind == "reference")
            objectives = resolve_objectives(ref.metrics, modality, sweep.forgetting, sweep.utility, sweep.cost)
            for r in records:
                workspace.store.add(r)
            base = {r.kind: r.id for r in records}
            reference = ref.metrics
        else:
            objectives = resolve_objectives(reference, modality, sweep.forgetting, sweep.utility, sweep.cost)
        if study is None:
            study = optuna.create_study(
                study_name=name,
                storage=storage,
                sampler=_sampler(optuna, sweep),
                directions=[o.direction for o in objectives],
                load_if_exists=True,
            )
        study.set_user_attr("space", space_doc)
        study.set_user_attr("base", base)
        study.set_user_attr("objectives", [o.to_dict() for o in objectives])
        study.set_user_attr("method", sweep.method)
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            # the study lives in this process: a trial still running is one an earlier,
            # interrupted call asked for and never told
            study.tell(t.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        asked = done = 0
        while done < sweep.trials:
            while asked < sweep.trials and ex.pending() < sweep.parallel:
                trial = study.ask()
                params = {k: d.suggest(trial) for k, d in space.items()}
                trial.set_user_attr("fixed", fixed)
                handle = ex.submit(
                    run_job, grid, sweep.seed, [scenario], home, threads, [(sweep.method, {**fixed, **params})]
                )
                records_by_handle[handle] = trial
                asked += 1
            handle, recs = _next(ex, records_by_handle, study, optuna)
            trial = records_by_handle.pop(handle)
            rec = next(RunRecord.from_dict(d) for d in recs if d["kind"] == "unlearn")
            rec = dataclasses.replace(rec, tags={**(rec.tags or {}), "sweep": {"study": name, "trial": trial.number}})
            workspace.store.add(rec)
            new_runs.append(rec.id)
            trial.set_user_attr("run_id", rec.id)
            values = [o.value(rec.metrics, reference) for o in objectives]
            if rec.status != "ok":
                trial.set_user_attr("why", rec.error or rec.status)
                frozen = study.tell(trial, state=optuna.trial.TrialState.FAIL)
            elif not all(math.isfinite(v) for v in values):
                trial.set_user_attr("why", "an objective's metric is not finite")
                frozen = study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                frozen = study.tell(trial, values)
            done += 1
            if on_trial:
                on_trial(done, sweep.trials, _trial_dict(frozen, objectives))
    trials = [_trial_dict(t, objectives) for t in study.get_trials(deepcopy=False)]
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    pareto = sorted(t.number for t in study.best_trials) if complete else []
    return SweepResult(name, storage, sweep.method, objectives, trials, pareto, new_runs, base, dict(reference))


def _next(ex, pending: dict, study, optuna):
    """The next finished trial job; a job that raised fails every trial still open, then raises."""
    try:
        return ex.next_done()
    except BaseException:
        for trial in pending.values():
            study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        raise


def _stored_metrics(workspace, run_id: str | None) -> dict | None:
    if not run_id:
        return None
    rec = workspace.store.find(run_id)
    return dict(rec.metrics) if rec is not None and rec.metrics else None


# ---------------------------------------------------------------- the Pareto plot


def plot_pareto(result: SweepResult):
    """Forgetting against utility and against cost: every finished trial in grey, the Pareto
    front in colour with its trial numbers, the reference (retrain) as a green star."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .report.plots import _PALETTE, _REFERENCE_COLOR

    f, u, c = result.objectives
    done = [t for t in result.trials if t["state"] == "complete"]
    if not done:
        raise ConfigError("nothing to plot: no trial of the sweep finished")
    front = set(result.pareto)
    fig = Figure(figsize=(9.6, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    ref = {o.name: (0.0 if o.goal == "reference" else result.reference.get(o.metric)) for o in result.objectives}
    for ax, y in zip(axes, (u, c)):
        rest = [t for t in done if t["number"] not in front]
        best = sorted((t for t in done if t["number"] in front), key=lambda t: t["values"]["forgetting"])
        ax.scatter([t["values"]["forgetting"] for t in rest], [t["values"][y.name] for t in rest],
                   color="#bbbbbb", s=22, label="trial")  # fmt: skip
        # markers only: a front of three objectives is no curve in a two-objective view
        ax.scatter([t["values"]["forgetting"] for t in best], [t["values"][y.name] for t in best],
                   color=_PALETTE[0], s=36, label="Pareto front (3 objectives)", zorder=2)  # fmt: skip
        for t in best:
            ax.annotate(str(t["number"]), (t["values"]["forgetting"], t["values"][y.name]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
        if ref.get("forgetting") is not None and ref.get(y.name) is not None:
            ax.scatter([ref["forgetting"]], [ref[y.name]], marker="*", s=140, color=_REFERENCE_COLOR,
                       label="reference (retrain)", zorder=3)  # fmt: skip
        better = {"minimize": "lower is better", "maximize": "higher is better"}
        ax.set_xlabel(f"forgetting: {f.label}  ({better[f.direction]})")
        ax.set_ylabel(f"{y.name}: {y.label}  ({better[y.direction]})")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(f"{result.method}: {len(done)} trials, {len(front)} on the Pareto front ({result.study})", fontsize=10)
    return fig


def write_plot(result: SweepResult, path: str | Path) -> Path:
    from ..utils import atomic_write
    from .report.plots import figure_png

    path = Path(path)
    data = figure_png(plot_pareto(result))
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return path
