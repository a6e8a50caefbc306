"""Method base class and registry.

A method (unlearner) takes a :class:`~unlearnkit.task.Task` and returns an
:class:`UnlearnResult`: a new model and what producing it cost. Hyperparameters
are a dataclass (``Params``) given to the constructor, scikit-learn style; each
field's ``metadata["help"]`` is what ``unlearnkit methods`` prints.

To add a method: write a module in this package with a subclass of
:class:`Method` decorated with :func:`register`; the package imports every module in
it, and the common contract tests run it.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generator, Sequence

from torch import nn

from ..engines.ensemble import LoopPlan, run_plan, run_plans
from ..engines.loop import LoopStats, TrainConfig
from ..errors import ConfigError
from ..modalities import get_modality

METHODS: dict[str, type["Method"]] = {}


def hp(default: Any, help: str) -> Any:
    """A hyperparameter field with its help text."""
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class LoopParams:
    """Hyperparameters every loop-based method has."""

    epochs: float = hp(5.0, "passes over the method's primary stream")
    max_steps: int | None = hp(None, "hard cap on optimiser steps (the step budget)")
    lr: float = hp(1e-3, "learning rate")
    batch_size: int = hp(64, "batch size of each stream")
    optimizer: str = hp("adam", "sgd, adam or adamw")
    grad_clip: float | None = hp(5.0, "clip the gradient norm to this value")

    def train_config(self, **overrides) -> TrainConfig:
        d = dict(
            epochs=self.epochs,
            max_steps=self.max_steps,
            lr=self.lr,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            grad_clip=self.grad_clip,
        )
        d.update(overrides)
        return TrainConfig(**d)


@dataclass
class UnlearnResult:
    """An unlearned model and the cost of producing it."""

    model: nn.Module
    cost: LoopStats
    method: str
    params: dict
    seed: int
    extra: dict = field(default_factory=dict)


class Method:
    """Base class. Subclasses set ``name``, ``Params`` and implement ``_unlearn``.

    ``_unlearn(model, task, seed, progress)`` receives a deep copy of the original,
    changes it and returns its :class:`LoopStats`. The original is never touched;
    if the method raises (divergence included), no result is produced.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type] = LoopParams
    summary: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    exact: ClassVar[bool] = False
    needs_retain: ClassVar[bool] = False
    #: the modalities this method can serve (``task.modality``); a method that reads class
    #: labels or class logits stays ``("classifier",)``
    modalities: ClassVar[tuple[str, ...]] = ("classifier",)
    #: common contract checks (tests/test_methods_contract.py) that cannot apply to this
    #: method, mapped to the reason, e.g. ``{"step_budget": "retrain's budget is its recipe"}``;
    #: ``"check:causal_lm"`` exempts it on one modality only
    contract_exempt: ClassVar[dict[str, str]] = {}
    #: whether the task may wrap the model this method trains (``Task.trainable_model``:
    #: LoRA adapters through peft on a causal-LM task with ``lora`` set, merged back
    #: afterwards). False for methods that change no weights (ICUL) or bring their own
    #: adapters (bounded_lora).
    uses_lora: ClassVar[bool] = True
    #: how :meth:`unlearn_many` runs many models: ``None`` vectorised where possible, ``False``
    #: one by one (the loop path), ``True`` vectorised or a ConfigError; set it on an instance
    vectorize: bool | None = None

    def __init__(self, **params: Any):
        names = {f.name for f in dataclasses.fields(self.Params)}
        unknown = sorted(set(params) - names)
        if unknown:
            raise ConfigError(
                f"method {self.name!r} has no hyperparameter {', '.join(unknown)}; "
                f"it takes {', '.join(sorted(names)) or 'none'}"
            )
        self._explicit = dict(params)
        self.params = self._make_params(params)

    def _make_params(self, params: dict) -> Any:
        """``Params(**params)`` after checking each value against its field's declared type
        (``epochs=abc``, ``lr=[1, 2]``, ``lr=nan`` and ``epochs=inf`` are refused)."""
        import math
        import types
        import typing

        try:
            hints = typing.get_type_hints(self.Params)
        except Exception:  # an unresolvable annotation: leave the checks to Params itself
            hints = {}

        def fits(value: Any, tp: Any) -> bool:
            if tp is Any or isinstance(tp, typing.TypeVar):
                return True
            origin = typing.get_origin(tp)
            if origin in (typing.Union, types.UnionType):
                return any(fits(value, a) for a in typing.get_args(tp))
            if origin is typing.Literal:
                return value in typing.get_args(tp)
            if tp is type(None):
                return value is None
            base = origin or tp
            if base is float:
                return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if base is int:
                return isinstance(value, int) and not isinstance(value, bool)
            if base is bool:
                return isinstance(value, bool)
            if base is str:
                return isinstance(value, str)
            if base in (list, tuple, set, frozenset):
                args = [a for a in typing.get_args(tp) if a is not Ellipsis]
                return isinstance(value, (list, tuple)) and all(
                    any(fits(v, a) for a in args) or not args for v in value
                )
            if base is dict:
                return isinstance(value, dict)
            return True  # a type we do not check here

        def shown(tp: Any) -> str:
            return str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "")

        for k, v in params.items():
            tp = hints.get(k)
            if tp is None or fits(v, tp):
                continue
            what = "a finite number" if isinstance(v, float) and not math.isfinite(v) else f"of type {shown(tp)}"
            raise ConfigError(f"method {self.name!r}: hyperparameter {k}={v!r} must be {what}")
        try:
            return self.Params(**params)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"method {self.name!r}: {e}") from None

    def params_for(self, modality: str) -> Any:
        """The hyperparameters this instance runs with on a task of ``modality``: the
        modality's defaults for this method (``modalities/<name>/defaults.py``), then the
        explicit values."""
        defaults = get_modality(modality).method_defaults.get(self.name, {})
        return self._make_params({**defaults, **self._explicit})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})"

    def _prepare(self, task) -> None:
        """Check that the method serves ``task`` and settle its parameters for the modality."""
        modality = task.modality
        if modality not in self.modalities:
            raise ConfigError(
                f"method {self.name!r} works on {' and '.join(self.modalities)} tasks, "
                f"not {modality}; `unlearnkit methods` lists what each method serves"
            )
        if self.needs_retain and len(task.retain) == 0:
            raise ConfigError(f"method {self.name!r} needs a non-empty retain set")
        self.params = self.params_for(modality)

    def unlearn(self, task, seed: int = 0, progress: bool = False) -> UnlearnResult:
        self._prepare(task)
        model = task.trainable_model(copy.deepcopy(task.original).to(task.device), self)
        t0 = time.perf_counter()
        cost = self._unlearn(model, task, seed, progress)
        model = task.finished_model(model, self)  # a plain model of the original's architecture
        cost.wall_time_s = time.perf_counter() - t0
        model.eval()
        return UnlearnResult(model, cost, self.name, dataclasses.asdict(self.params), seed)

    def _unlearn(self, model: nn.Module, task, seed: int, progress: bool) -> LoopStats:
        """The method's update of ``model`` (a copy of the original): by default its
        :meth:`loop_plans` run one after the other (:func:`~unlearnkit.ensemble.run_plan`)."""
        if not self._planned():
            raise NotImplementedError(f"{type(self).__name__} implements neither _unlearn nor loop_plan")
        plans = self.loop_plans(model, task, seed)
        total, stats = LoopStats(), None
        try:
            while True:
                plan = plans.send(stats)
                stats = run_plan(plan, task.device, task.adapter, progress)
                total = total + stats
        except StopIteration as done:
            return total + (done.value or LoopStats())

    def loop_plan(self, model: nn.Module, task, seed: int) -> LoopPlan:
        """The method's update of ``model`` as one :class:`~unlearnkit.ensemble.LoopPlan`
        (objective, streams, recipe, frozen teachers and references, masks): a method that
        gives one gets :meth:`_unlearn` (the plan's ``run_loop``) and a vectorised
        :meth:`unlearn_many` (every model's plan as one ensemble,
        :func:`~unlearnkit.ensemble.run_plans`) for free. The objective must read every
        module other than ``model`` through ``plan.frozen`` and every per-model tensor
        through a module there, so that the ensemble can stack them."""
        raise NotImplementedError

    def loop_plans(self, model: nn.Module, task, seed: int) -> Generator[LoopPlan, LoopStats, LoopStats | None]:
        """A method whose update is several loops in a row (UNSIR's noise, impair, repair) or
        needs a step after its loop (SCRUB+R's rewinding) yields one plan per loop; each
        ``yield`` receives the cost of the plan it yielded, once it has run, and the generator
        may return an extra cost (evaluation passes). Default: :meth:`loop_plan` alone."""
        yield self.loop_plan(model, task, seed)
        return None

    def _planned(self) -> bool:
        return type(self).loop_plan is not Method.loop_plan or type(self).loop_plans is not Method.loop_plans

    def unlearn_many(
        self, task, originals: Sequence[nn.Module], seeds: Sequence[int], progress: bool = False
    ) -> tuple[list[nn.Module], LoopStats]:
        """Unlearn the task's forget set from each of ``originals`` (models of the task's
        architecture, e.g. shadow originals), run ``i`` seeded with ``seeds[i]``: the models
        :meth:`unlearn` would return for ``task`` with that original, and their summed cost.

        Methods with a :meth:`loop_plan` (or :meth:`loop_plans`) run every model's plans as one vectorised ensemble
        (:func:`~unlearnkit.ensemble.run_plans`; where it cannot vectorise, one by one);
        methods whose update is plain weighted training override it with
        :meth:`_train_many` (:func:`unlearnkit.ensemble.train_many`); the rest run one
        :meth:`unlearn` per model. ``self.vectorize`` (``None``: where possible; ``False``:
        one by one, the loop path; ``True``: vectorise or raise) chooses."""
        if len(originals) != len(seeds):
            raise ConfigError(f"give one seed per model ({len(seeds)} seeds for {len(originals)} models)")
        if self._planned():
            self._prepare(task)
            many = self._plan_many(task, originals, seeds, progress)
            if many is not None:
                return many
        return self._one_by_one(task, originals, seeds, progress)

    def _vectorisable(self, task, n: int) -> bool:
        """Whether :meth:`unlearn_many` may vectorise ``n`` models on ``task``: ``vectorize``
        is not False, two or more models, a modality with the ``ensembles`` capability and
        a task that does not wrap the trained model."""
        if self.vectorize is False:
            return False
        ok = n >= 2 and task.modality_info.supports("ensembles") and not task.wraps_model(self)
        if not ok and self.vectorize:
            raise ConfigError(f"method {self.name!r} cannot vectorise {n} models on this task; set vectorize=None")
        return ok

    def _plan_many(self, task, originals, seeds, progress) -> tuple[list[nn.Module], LoopStats] | None:
        """Every model's :meth:`loop_plans` advanced together: the models' ``k``-th plans run as
        one ensemble (:func:`~unlearnkit.ensemble.run_plans`), then each generator goes on."""
        if not self._vectorisable(task, len(originals)):
            return None
        t0 = time.perf_counter()
        models = [task.trainable_model(copy.deepcopy(o).to(task.device), self) for o in originals]
        gens = [self.loop_plans(m, task, s) for m, s in zip(models, seeds)]
        per = [LoopStats() for _ in gens]  # each model's cost, summed in model order below
        sent: list[LoopStats | None] = [None] * len(gens)
        active = list(range(len(gens)))
        while active:  # the models' k-th plans run together
            plans, still = [], []
            for i in active:
                try:
                    plans.append(gens[i].send(sent[i]))
                    still.append(i)
                except StopIteration as done:
                    per[i] = per[i] + (done.value or LoopStats())
            stats = run_plans(plans, task.device, task.adapter, vectorize=self.vectorize, progress=progress)
            for i, st in zip(still, stats):
                sent[i] = st
                per[i] = per[i] + st
            active = still
        cost = LoopStats()
        for c in per:
            cost = cost + c
        cost.wall_time_s = time.perf_counter() - t0
        return [task.finished_model(m, self).eval() for m in models], cost

    def _one_by_one(self, task, originals, seeds, progress) -> tuple[list[nn.Module], LoopStats]:
        models, cost = [], LoopStats()
        for original, s in zip(originals, seeds):
            result = self.unlearn(dataclasses.replace(task, original=original), seed=s, progress=progress)
            models.append(result.model)
            cost = cost + result.cost
        return models, cost

    def _train_many(
        self,
        task,
        originals: Sequence[nn.Module],
        seeds: Sequence[int],
        progress: bool,
        stream: str,
        weight: float = 1.0,
        extra: dict[str, float] | None = None,
    ) -> tuple[list[nn.Module], LoopStats] | None:
        """:meth:`unlearn_many` for a method whose update is ``run_loop`` on the weighted
        objective ``weight * mean loss on task.<stream> + sum_s w_s * mean loss on task.<s>``
        (``extra = {s: w_s}``): every model at once through
        :func:`unlearnkit.ensemble.train_many` (vectorised where the architecture allows),
        each with its own seed's data order. ``None`` where that does not apply (a modality
        without the ``ensembles`` capability, a task that wraps the trained model, fewer than
        two models): the caller then goes one by one."""
        if not self._vectorisable(task, len(originals)):
            return None
        from ..engines.ensemble import train_many

        if len(originals) != len(seeds):
            raise ConfigError(f"give one seed per model ({len(seeds)} seeds for {len(originals)} models)")
        sets = {"forget": task.forget, "retain": task.retain}
        return train_many(
            None,
            sets[stream],
            task.adapter,
            self.params.train_config(),
            list(seeds),
            device=task.device,
            progress=progress,
            init=list(originals),
            stream=stream,
            weight=weight,
            extra_streams={k: (sets[k], w) for k, w in (extra or {}).items()},
            vectorize=self.vectorize,
        )

    def run_forget_loop(
        self, model: nn.Module, task, forget_loss, seed: int, progress: bool, **loop_kwargs
    ) -> LoopStats:
        """The loop most forget-set methods share: each step ``forget_loss(ctx, batch)`` on a
        forget batch, plus ``params.retain_weight`` times the mean retain loss (label or answer
        NLL, the "RT" / GradDiff regulariser of NPO, SimNPO, WGA, ...) when that weight is
        positive; ``epochs`` counts passes over the forget set."""
        plan = self.forget_loop_plan(model, task, forget_loss, seed, **loop_kwargs)
        return run_plan(plan, task.device, task.adapter, progress)

    def forget_loop_plan(
        self, model: nn.Module, task, forget_loss, seed: int, frozen: Sequence[nn.Module] = (), **loop_kwargs
    ) -> LoopPlan:
        """:meth:`run_forget_loop` as a :class:`~unlearnkit.ensemble.LoopPlan` (``frozen``: the
        modules ``forget_loss`` reads besides ``ctx.model``, e.g. NPO's reference)."""
        p, adapter = self.params, task.adapter
        weight = float(getattr(p, "retain_weight", 0.0) or 0.0)

        def objective(ctx):
            loss = forget_loss(ctx, ctx.batch("forget"))
            if weight:
                loss = loss + weight * adapter.per_example_loss(ctx.model, ctx.batch("retain")).mean()
            return loss

        streams = {"forget": task.forget} | ({"retain": task.retain} if weight else {})
        return LoopPlan(
            model,
            objective,
            streams,
            p.train_config(),
            seed,
            primary="forget",
            frozen=tuple(frozen),
            desc=self.name,
            **loop_kwargs,
        )

    def model_template(self, task) -> nn.Module:
        """An untrained model of the shape this method returns (to load a saved artifact into):
        the original's shape (``task.base_template`` where the original is not
        ``model_factory``'s, e.g. a sharded line's SISA ensemble)."""
        if task.base_template is not None:
            return task.base_template()
        return task.model_factory(task.seed).to(task.device)

    @classmethod
    def describe(cls) -> dict:
        doc = (cls.__doc__ or "").strip()
        return {
            "name": cls.name,
            "summary": cls.summary or doc.splitlines()[0] if doc else cls.summary,
            "citation": cls.citation,
            "exact": cls.exact,
            "modalities": list(cls.modalities),
            "defaults": {m: d[cls.name] for m in cls.modalities if cls.name in (d := get_modality(m).method_defaults)},
            "doc": doc,
            "params": [
                {"name": f.name, "default": _default(f), "type": str(f.type), "help": f.metadata.get("help", "")}
                for f in dataclasses.fields(cls.Params)
            ],
        }


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def register(cls: type[Method]) -> type[Method]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(f"method name {cls.name!r} registered twice")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str, **params: Any) -> Method:
    """Instantiate a registered method by name with hyperparameters."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    return METHODS[name](**params)


def list_methods() -> list[dict]:
    return [METHODS[n].describe() for n in sorted(METHODS)]
