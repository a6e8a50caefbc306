"""The common contract of unlearning methods, as a public suite (like scikit-learn's
``check_estimator`` and ``parametrize_with_checks``).

Every method, built in or yours, should pass the same checks on a tiny task of every
modality it declares (``Method.modalities``):

==================== =====================================================================
check                what it asks
==================== =====================================================================
documented           a citation, a docstring, help text for every hyperparameter
exemptions           ``contract_exempt`` names real checks and served modalities, with reasons
rejects_modality     a task of a modality the method does not serve is refused (ConfigError)
unknown_hparam       an unknown hyperparameter is refused with a ConfigError naming it
changes_model        the result differs from the original; ``task.original`` is untouched
deterministic        two runs from fresh instances with seed 0 give the same weights
step_budget          ``max_steps=3`` gives 1 to 3 optimiser steps; the original is untouched
moves_forget         the forget set's score moves toward the reference's (accuracy down on
                     classifiers, answer NLL up on language models)
divergence           ``lr=1e30, grad_clip=None`` raises DivergenceError; original untouched
cost_accounting      forward >= backward > 0 examples, steps > 0, wall time > 0
==================== =====================================================================

The first four are checks of the method class; the others run it on a task (once per
declared modality). A check that cannot apply to a method is declared in its
``contract_exempt`` (``{"step_budget": "why"}``, or ``"step_budget:causal_lm"`` for one
modality): the declared known failures, skipped and reported as ``exempt``.

Test your own method in a script::

    from unlearnkit.testing import check_method
    check_method(MyMethod)                # raises AssertionError listing what failed

or in your pytest suite, one test per (method, check)::

    from unlearnkit.testing import parametrize_with_checks

    @parametrize_with_checks([MyMethod])
    def test_contract(method, check):
        check(method)

The tiny tasks (a digits MLP that has learned one class; a one-layer Llama that has
memorised ten people's profiles; a GCN that has fitted the karate club's edges) are built
once per process and shared (:func:`tiny_task`). A new modality gives the suite its tiny task with
:func:`register_contract_task` (see ``docs/adding-a-modality.md``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import torch
from torch import nn

from .errors import ConfigError, DivergenceError

if TYPE_CHECKING:  # pragma: no cover
    from .methods.base import Method, UnlearnResult
    from .task import Task

#: check name -> what it asks (every key a method may name in ``contract_exempt``)
CHECKS: dict[str, str] = {
    "documented": "a citation, a docstring and help text for every hyperparameter",
    "exemptions": "contract_exempt names real checks and served modalities, each with a reason",
    "rejects_modality": "a task of a modality the method does not serve is refused with a ConfigError",
    "unknown_hparam": "an unknown hyperparameter is refused with a ConfigError naming it",
    "changes_model": "the result differs from the original, and task.original is left untouched",
    "deterministic": "two runs from fresh instances with seed 0 give the same weights",
    "step_budget": "max_steps=3 gives between 1 and 3 optimiser steps; the original is untouched",
    "moves_forget": "the forget set's score moves toward the reference's (below the original's)",
    "divergence": "lr=1e30, grad_clip=None raises DivergenceError and leaves the original untouched",
    "cost_accounting": "examples forward >= backward > 0, steps > 0, wall time > 0",
}
#: checks of the method class alone (no task)
CLASS_CHECKS = ("documented", "exemptions", "rejects_modality", "unknown_hparam")
#: checks that run the method on a task, once per modality it declares
RUN_CHECKS = ("changes_model", "deterministic", "step_budget", "moves_forget", "divergence", "cost_accounting")


# ----------------------------------------------------------------------------- tiny tasks
@dataclass
class ContractTask:
    """What the suite needs of a modality: a tiny trained task and how to tell that the
    forget set moved toward the reference.

    Attributes:
        modality: the modality's registered name.
        build: ``() -> Task``, a tiny task whose original has learned its forget set (a few
            seconds on one CPU thread); called once per process.
        forget_score: ``(model, task) -> float`` on the forget set.
        direction: ``-1`` when unlearning lowers the score (accuracy), ``+1`` when it raises
            it (loss).
        learned: the original's score must be beyond this (above for ``direction=-1``,
            below for ``+1``): the forget set is learned, so there is something to forget.
        margin: how far past the original's score an unlearned model must move.
        score_name: the score's name, for messages.
    """

    modality: str
    build: Callable[[], "Task"]
    forget_score: Callable[[nn.Module, "Task"], float]
    direction: int
    learned: float
    margin: float
    score_name: str = "forget score"


_CONTRACT_TASKS: dict[str, ContractTask] = {}
_TASKS: dict[str, "Task"] = {}
_RUNS: dict[tuple, tuple] = {}


def register_contract_task(contract: ContractTask) -> ContractTask:
    """Give the suite the tiny task of a modality (replaces an earlier one of that name)."""
    if contract.direction not in (-1, 1):
        raise ValueError(f"direction must be -1 or +1, not {contract.direction!r}")
    _CONTRACT_TASKS[contract.modality] = contract
    _TASKS.pop(contract.modality, None)
    return contract


def contract_task(modality: str) -> ContractTask:
    """The registered :class:`ContractTask` of ``modality``."""
    try:
        return _CONTRACT_TASKS[modality]
    except KeyError:
        raise ConfigError(
            f"the contract suite has no tiny task for modality {modality!r}; give it one "
            "with unlearnkit.testing.register_contract_task"
        ) from None


def tiny_task(modality: str) -> "Task":
    """The shared tiny task of ``modality`` (built on first use, then cached; do not modify it)."""
    if modality not in _TASKS:
        _TASKS[modality] = contract_task(modality).build()
    return _TASKS[modality]


def clear_cache() -> None:
    """Forget the cached tiny tasks and runs."""
    _TASKS.clear()
    _RUNS.clear()


def tiny_classifier_task(seed: int = 0, **kw) -> "Task":
    """Digits (8x8 images, 10 classes) with class 3 to forget, a small MLP trained 10
    epochs: it learns the class (forget accuracy near 1), the reference's is 0."""
    from .data.scenarios import ClassForget
    from .engines.loop import TrainConfig
    from .modalities.classifier.task import make_task

    args = dict(
        dataset="digits",
        model="mlp",
        scenario=ClassForget(3),
        seed=seed,
        device="cpu",
        recipe=TrainConfig(epochs=10, batch_size=64, lr=1e-3),
    )
    args.update(kw)
    return make_task(**args)


#: the tiny Llama of the language-model contract task
TINY_LM = {"hidden": 64, "layers": 1, "heads": 2, "intermediate": 128}


def tiny_lm_task(seed: int = 0, **kw) -> "Task":
    """A causal-LM profiles task small enough for tests: 10 people with 3 direct
    questions each, a 1-layer 64-wide Llama that memorises them in a few seconds
    (forget10 = 1 person). Needs ``transformers``."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise ConfigError("the causal_lm contract task needs transformers (pip install unlearnkit[lm])") from None
    from .engines.loop import TrainConfig
    from .modalities.causal_lm.task import make_lm_task

    args = dict(
        n_people=10,
        qa_per_person=3,
        n_other=2,
        model=TINY_LM,
        vocab_size=400,
        recipe=TrainConfig(epochs=60, batch_size=16, lr=1e-2, optimizer="adamw", schedule="cosine", grad_clip=1.0),
        device="cpu",
        seed=seed,
    )
    args.update(kw)
    return make_lm_task(**args)


def tiny_graph_task(seed: int = 0, **kw) -> "Task":
    """Zachary's karate club as a link-prediction task with 10% of its training edges to
    delete and a 2-layer GCN that fits its edges (the forget-edge loss well below the
    reference's). Needs ``torch-geometric``."""
    try:
        import torch_geometric  # noqa: F401
    except ImportError:
        raise ConfigError("the graph contract task needs torch-geometric (pip install unlearnkit[graph])") from None
    from .modalities.graph.task import tiny_graph_task as build

    return build(seed, **kw)


@torch.no_grad()
def forget_accuracy(model: nn.Module, task) -> float:
    """Accuracy of ``model`` on the task's forget set."""
    model.eval()
    b = task.adapter.to_device(next(task.forget.batches(len(task.forget))))
    return float((task.adapter.logits(model, b).argmax(-1) == b["y"]).float().mean())


@torch.no_grad()
def forget_loss(model: nn.Module, task) -> float:
    """Mean per-example training loss of ``model`` on the forget set (answer NLL on LMs)."""
    model.eval()
    b = task.adapter.to_device(next(task.forget.batches(len(task.forget))))
    return float(task.adapter.per_example_loss(model, b).mean())


register_contract_task(
    ContractTask(
        "classifier",
        tiny_classifier_task,
        forget_accuracy,
        direction=-1,
        learned=0.9,
        margin=0.1,
        score_name="forget accuracy",
    )
)
register_contract_task(
    ContractTask(
        "causal_lm", tiny_lm_task, forget_loss, direction=+1, learned=0.1, margin=1.0, score_name="forget answer NLL"
    )
)

register_contract_task(
    ContractTask(
        "graph", tiny_graph_task, forget_loss, direction=+1, learned=1.4, margin=0.3, score_name="forget edge loss"
    )
)


# ----------------------------------------------------------------------------- helpers
def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``model``'s state dict."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def same_state(a: dict, b: dict) -> bool:
    """Whether two state dicts hold exactly the same tensors."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _method_class(method) -> type["Method"]:
    from .methods.base import METHODS, Method

    if isinstance(method, str):
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(sorted(METHODS))}")
        return METHODS[method]
    if isinstance(method, Method):
        return type(method)
    if isinstance(method, type) and issubclass(method, Method):
        return method
    raise TypeError(f"expected a method name or a Method subclass, not {method!r}")


def exemption(cls: type["Method"], check: str, modality: str | None = None) -> str | None:
    """The reason ``cls`` declares for not passing ``check`` (on ``modality``), or None."""
    exempt = getattr(cls, "contract_exempt", {}) or {}
    return exempt.get(check) or (exempt.get(f"{check}:{modality}") if modality else None)


def _runs(cls: type["Method"], task) -> tuple["UnlearnResult", "UnlearnResult"]:
    """Two default runs with seed 0, each from a fresh instance, made once per (method, task)."""
    key = (cls, id(task))
    hit = _RUNS.get(key)
    if hit is None or hit[0] is not task:
        hit = (task, tuple(cls().unlearn(task, seed=0) for _ in range(2)))
        _RUNS[key] = hit
    return hit[1]


# ----------------------------------------------------------------------------- the checks
def check_documented(cls: type["Method"]) -> None:
    assert cls.citation and (cls.__doc__ or "").strip(), f"{cls.name} needs a citation and a docstring"
    for f in dataclasses.fields(cls.Params):
        assert f.metadata.get("help"), f"{cls.name}: hyperparameter {f.name} has no help text"


def check_exemptions(cls: type["Method"]) -> None:
    from .modalities import get_modality

    assert cls.modalities, f"{cls.name} declares no modality"
    for m in cls.modalities:
        get_modality(m)  # ConfigError for an unregistered one
    for check, reason in cls.contract_exempt.items():
        base, _, modality = check.partition(":")
        assert base in CHECKS, f"{cls.name}: unknown contract check {check!r}"
        assert modality in ("", *cls.modalities), f"{cls.name}: {check!r} names a modality it does not serve"
        assert isinstance(reason, str) and reason.strip(), f"{cls.name}: exemption {check!r} needs a reason"


class _ForeignTask:
    """A stand-in task of another modality: a method must refuse it before reading anything
    else (``Method.unlearn`` does, in ``_prepare``)."""

    def __init__(self, modality: str):
        self.modality = modality

    def __getattr__(self, name: str):
        raise AssertionError(f"read task.{name} of a {self.modality} task before refusing the modality")


def check_rejects_modality(cls: type["Method"]) -> None:
    """A task of every registered modality the method does not serve is refused with a
    ConfigError naming a modality it serves (before the method reads anything else)."""
    import re

    from .modalities import list_modalities

    for other in sorted(m.name for m in list_modalities() if m.name not in cls.modalities):
        try:
            cls().unlearn(_ForeignTask(other), seed=0)
        except ConfigError as e:
            assert re.search("|".join(map(re.escape, cls.modalities)), str(e)), (
                f"{cls.name}: refusing a {other} task, the error should say what it serves: {e}"
            )
        else:
            raise AssertionError(f"{cls.name} serves {', '.join(cls.modalities)} but accepted a {other} task")


def check_unknown_hparam(cls: type["Method"]) -> None:
    try:
        cls(no_such_hparam=1)
    except ConfigError as e:
        assert "no_such_hparam" in str(e), f"{cls.name}: the error should name the hyperparameter: {e}"
    else:
        raise AssertionError(f"{cls.name} accepted an unknown hyperparameter")


def check_changes_model(cls: type["Method"], task) -> None:
    before = state_of(task.original)
    result = _runs(cls, task)[0]
    assert result.method == cls.name, f"{cls.name}: result.method is {result.method!r}"
    assert not same_state(state_of(result.model), before), f"{cls.name} returned the original unchanged"
    assert same_state(state_of(task.original), before), f"{cls.name} modified task.original"


def check_deterministic(cls: type["Method"], task) -> None:
    a, b = _runs(cls, task)
    assert same_state(state_of(a.model), state_of(b.model)), f"{cls.name}: two runs with seed 0 differ"


def _instance(cls: type["Method"], check: str, **params) -> "Method":
    try:
        return cls(**params)
    except ConfigError as e:
        raise AssertionError(
            f"{cls.name}: the {check} check sets {params} ({e}); give the method these "
            f"hyperparameters or declare {check!r} in contract_exempt with the reason"
        ) from None


def check_step_budget(cls: type["Method"], task) -> None:
    before = state_of(task.original)
    result = _instance(cls, "step_budget", max_steps=3).unlearn(task, seed=0)
    assert 0 < result.cost.steps <= 3, f"{cls.name}: max_steps=3 took {result.cost.steps} steps"
    assert same_state(state_of(task.original), before), f"{cls.name} modified task.original"


def check_moves_forget(cls: type["Method"], task) -> None:
    c = contract_task(task.modality)
    original = c.forget_score(task.original, task)
    assert c.direction * (original - c.learned) < 0, (
        f"the task's original has not learned its forget set ({c.score_name} {original:.3f}, "
        f"needs to be {'above' if c.direction < 0 else 'below'} {c.learned}): no use as a contract task"
    )
    after = c.forget_score(_runs(cls, task)[0].model, task)
    assert c.direction * (after - original) > c.margin, (
        f"{cls.name}: {c.score_name} moved from {original:.3f} to {after:.3f}; the contract asks for "
        f"{'a drop' if c.direction < 0 else 'a rise'} of more than {c.margin}"
    )


def check_divergence(cls: type["Method"], task) -> None:
    before = state_of(task.original)
    method = _instance(cls, "divergence", lr=1e30, grad_clip=None)
    try:
        method.unlearn(task, seed=0)
    except DivergenceError:
        pass
    else:
        raise AssertionError(f"{cls.name}: lr=1e30 did not raise DivergenceError")
    assert same_state(state_of(task.original), before), f"{cls.name} modified task.original"


def check_cost_accounting(cls: type["Method"], task) -> None:
    cost = _runs(cls, task)[0].cost
    assert cost.examples_forward >= cost.examples_backward > 0, (
        f"{cls.name}: examples forward {cost.examples_forward}, backward {cost.examples_backward}"
    )
    assert cost.steps > 0 and cost.wall_time_s > 0, f"{cls.name}: steps {cost.steps}, wall time {cost.wall_time_s}"


_CHECK_FUNCTIONS: dict[str, Callable] = {name: globals()[f"check_{name}"] for name in CHECKS}


@dataclass
class Check:
    """One check of one method, callable with the method (``check(method)``).

    ``modality`` is None for the class checks; ``task`` None means the modality's tiny task.
    """

    name: str
    method: str
    modality: str | None = None
    task: "Task | None" = None

    @property
    def id(self) -> str:
        return "-".join(p for p in (self.method, self.modality, self.name) if p)

    def __repr__(self) -> str:
        return self.id

    def __call__(self, method=None) -> None:
        cls = _method_class(method) if method is not None else _method_class(self.method)
        fn = _CHECK_FUNCTIONS[self.name]
        if self.modality is None:
            return fn(cls)
        return fn(cls, self.task if self.task is not None else tiny_task(self.modality))


def method_checks(
    method, modalities: Sequence[str] | None = None, checks: Iterable[str] | None = None, task: "Task | None" = None
) -> list[tuple[Check, str | None]]:
    """Every :class:`Check` of ``method`` with its exemption reason (None where it applies):
    the class checks, then the run checks on each declared modality (only ``modalities``
    where given, only ``task``'s where a task is given)."""
    cls = _method_class(method)
    wanted = list(CHECKS) if checks is None else list(checks)
    unknown = set(wanted) - set(CHECKS)
    if unknown:
        raise ConfigError(f"unknown contract check(s) {sorted(unknown)}; choose from {', '.join(CHECKS)}")
    if task is not None:
        if task.modality not in cls.modalities:
            raise ConfigError(f"method {cls.name!r} does not serve {task.modality} tasks")
        served = [task.modality]
    else:
        served = [m for m in cls.modalities if modalities is None or m in modalities]
    out = [(Check(c, cls.name), exemption(cls, c)) for c in CLASS_CHECKS if c in wanted]
    for m in served:
        out += [(Check(c, cls.name, m, task), exemption(cls, c, m)) for c in RUN_CHECKS if c in wanted]
    return out


@dataclass
class CheckResult:
    check: str
    status: str  # "passed", "failed" or "exempt"
    detail: str = ""


def check_method(
    method,
    task: "Task | None" = None,
    modality: str | Sequence[str] | None = None,
    checks: Iterable[str] | None = None,
    raise_on_failure: bool = True,
) -> list[CheckResult]:
    """Run the common contract on ``method`` (a registered name, a :class:`Method` subclass
    or an instance: its class is checked with its default hyperparameters).

    Args:
        task: run the run checks on this task (of a modality the method serves) instead of
            the tiny task of every modality it declares.
        modality: only these modalities' run checks (default: every one it declares).
        checks: only these checks (names of :data:`CHECKS`).
        raise_on_failure: raise one AssertionError listing every failed check (default);
            otherwise only return the results.

    Returns one :class:`CheckResult` per check: ``passed``, ``failed`` (with the message) or
    ``exempt`` (declared in ``contract_exempt``; not run, the reason as detail).
    """
    mods = [modality] if isinstance(modality, str) else modality
    results = []
    for check, reason in method_checks(method, mods, checks, task):
        if reason:
            results.append(CheckResult(check.id, "exempt", reason))
            continue
        try:
            check()
        except Exception as e:  # noqa: BLE001 - every failure is reported, whatever its type
            results.append(CheckResult(check.id, "failed", f"{type(e).__name__}: {e}"))
        else:
            results.append(CheckResult(check.id, "passed"))
    failed = [r for r in results if r.status == "failed"]
    if failed and raise_on_failure:
        raise AssertionError(
            f"{len(failed)} contract check(s) failed:\n" + "\n".join(f"  {r.check}: {r.detail}" for r in failed)
        )
    return results


def parametrize_with_checks(
    methods, modalities: Sequence[str] | None = None, checks: Iterable[str] | None = None, exempt: str = "skip"
):
    """A ``pytest.mark.parametrize("method, check", ...)`` over every check of every method
    (names or classes), with ids such as ``npo-causal_lm-deterministic``::

        @parametrize_with_checks(["npo", MyMethod])
        def test_contract(method, check):
            check(method)

    ``modalities`` and ``checks`` narrow it as in :func:`method_checks`. A check declared in
    ``contract_exempt`` is marked ``skip`` (default) or ``xfail`` (``exempt="xfail"``, which
    runs it and expects it to fail), with the reason."""
    import pytest

    if exempt not in ("skip", "xfail"):
        raise ValueError(f"exempt must be 'skip' or 'xfail', not {exempt!r}")
    params = []
    for method in methods:
        cls = _method_class(method)
        for check, reason in method_checks(cls, modalities, checks):
            marks = ()
            if reason:
                text = f"{cls.name} is exempt from {check.name}: {reason}"
                marks = (
                    pytest.mark.skip(reason=text) if exempt == "skip" else pytest.mark.xfail(reason=text, strict=False),
                )
            params.append(pytest.param(cls, check, id=check.id, marks=marks))
    return pytest.mark.parametrize("method, check", params)


__all__ = [
    "CHECKS",
    "CLASS_CHECKS",
    "RUN_CHECKS",
    "Check",
    "CheckResult",
    "ContractTask",
    "TINY_LM",
    "check_method",
    "clear_cache",
    "contract_task",
    "exemption",
    "forget_accuracy",
    "forget_loss",
    "method_checks",
    "parametrize_with_checks",
    "register_contract_task",
    "same_state",
    "state_of",
    "tiny_classifier_task",
    "tiny_graph_task",
    "tiny_lm_task",
    "tiny_task",
]
