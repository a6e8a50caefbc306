"""The metric catalogue: every metric of every modality, registered in one place.

A metric is a function ``EvalInputs -> {output key: float}`` registered with
:func:`register_metric`; it never calls a model (except the few causal-LM metrics that
declare ``needs=("models",)``, e.g. the relearning attack). Each metric declares the task
modalities it applies to and lives in its modality's package
(``unlearnkit/modalities/<name>/metrics.py``); the cost metrics every modality shares
live in :mod:`.cost`. :func:`compute_metrics` runs every
applicable metric: one that needs the reference (or a cost) is skipped, not failed,
when it is missing.

Each output key has a *goal*: ``"higher"`` or ``"lower"`` is better, or
``"reference"`` (closest to the retrained reference model's own value is best).

To add a metric: write a function of :class:`EvalInputs` returning a dict of floats,
decorate it with :func:`register_metric` (name, outputs with goals, citation, what it
needs), and give it a docstring whose first paragraph describes it; the registry
test then checks it is listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..engines.loop import LoopStats
from ..errors import ConfigError

GOALS = ("higher", "lower", "reference")
NAN = float("nan")


@dataclass
class EvalInputs:
    """Everything a metric may read.

    Attributes:
        model: split name (forget, retain, test, holdout) -> scores of the evaluated model.
        reference: the same for the retrained reference model, if there is one.
        cost: what producing the evaluated model cost.
        reference_cost: what producing the reference cost (retraining).
        seed: seeds every randomised metric (cross-validation folds, subsampling).
        scenario: the task's scenario dict (``Split.scenario``, e.g. ``{"kind": "bias",
            "label": 3, ...}``), for metrics that belong to one scenario (bias, confusion).
        modality: the task's modality (``"classifier"`` or ``"causal_lm"``); a metric runs
            only on the modalities it declares. For ``"causal_lm"`` the score tables hold
            :class:`~unlearnkit.evaluation.lm_eval.LMScores` per set (see ``lm_eval``).
        models: ``{"model": nn.Module, "reference": nn.Module | None, "task": Task}`` for the
            few metrics that must run a model again (relearning attack, sampling); metrics
            that need it declare ``needs=("models",)`` and are skipped without it.
    """

    model: dict[str, Any]
    reference: dict[str, Any] | None = None
    cost: LoopStats | None = None
    reference_cost: LoopStats | None = None
    seed: int = 0
    scenario: dict | None = None
    modality: str = "classifier"
    models: dict | None = None
    _memo: dict = field(default_factory=dict, repr=False, compare=False)

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """A quantity several metrics share (e.g. the TOFU values of one model), computed
        once per inputs: the first call runs ``compute()``, later calls return its value."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric.

    ``outputs`` maps each output key to its goal (see :data:`GOALS`); ``needs`` names
    the :class:`EvalInputs` fields that must be given, ``splits`` the splits that must
    be present (in ``model``, and in ``reference`` when it is needed), ``modalities`` the
    task modalities (``EvalInputs.modality``) it applies to.
    """

    name: str
    fn: Callable[[EvalInputs], dict[str, float]]
    outputs: dict[str, str]
    description: str
    citation: str
    needs: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ("classifier",)

    @property
    def needs_reference(self) -> bool:
        return "reference" in self.needs

    def higher_is_better(self, key: str) -> bool | None:
        """True/False for a higher/lower-is-better output; None when closest-to-reference."""
        return {"higher": True, "lower": False}.get(self.outputs[key])

    def applicable(self, inputs: EvalInputs) -> bool:
        if inputs.modality not in self.modalities:
            return False
        if any(getattr(inputs, f) is None for f in self.needs):
            return False
        tables = [inputs.model] + ([inputs.reference] if self.needs_reference else [])
        return all(s in t for t in tables for s in self.splits)


class _Catalogue(dict):
    """The metric registry. Reading it first registers the metrics of every registered
    modality (``<package>.metrics``, imported once), so listing or computing never misses
    a modality's metrics, and importing this module imports no modality."""

    _loading = False
    _loaded: set[str] = set()

    def _load(self) -> None:
        if _Catalogue._loading:
            return
        from ..modalities import list_modalities

        _Catalogue._loading = True
        try:
            from . import cost  # noqa: F401  (metrics every modality has)

            for m in list_modalities():
                if m.name not in _Catalogue._loaded:
                    m.load_metrics()
                    _Catalogue._loaded.add(m.name)
        finally:
            _Catalogue._loading = False

    def __getitem__(self, key):
        self._load()
        return super().__getitem__(key)

    def __contains__(self, key) -> bool:
        self._load()
        return super().__contains__(key)

    def __iter__(self):
        self._load()
        return super().__iter__()

    def __len__(self) -> int:
        self._load()
        return super().__len__()

    def keys(self):
        self._load()
        return super().keys()

    def values(self):
        self._load()
        return super().values()

    def items(self):
        self._load()
        return super().items()

    def get(self, key, default=None):
        self._load()
        return super().get(key, default)


METRICS: dict[str, MetricSpec] = _Catalogue()


def register_metric(name: str, outputs: dict[str, str], citation: str,
                    needs: tuple[str, ...] = (), splits: tuple[str, ...] = (),
                    modalities: tuple[str, ...] = ("classifier",)):
    """Decorator registering ``fn(EvalInputs) -> dict[str, float]`` under ``name``.

    The description is the first paragraph of the function's docstring. ``modalities``:
    the task modalities the metric applies to (default classifiers only).
    """
    bad = {k: g for k, g in outputs.items() if g not in GOALS}
    if bad:
        raise ConfigError(f"metric {name!r}: goals must be one of {GOALS}, got {bad}")

    def deco(fn: Callable[[EvalInputs], dict[str, float]]):
        doc = (fn.__doc__ or "").strip().split("\n\n")[0]
        dict.__setitem__(METRICS, name, MetricSpec(name, fn, dict(outputs), " ".join(doc.split()), citation,
                                   tuple(needs), tuple(splits), tuple(modalities)))
        return fn

    return deco


def compute_metrics(inputs: EvalInputs, names: list[str] | None = None) -> dict[str, float]:
    """Run the named metrics (default: all) that ``inputs`` allows; merge their outputs.

    A metric whose needs (reference, cost, splits) are missing is skipped silently;
    an unknown name raises :class:`ConfigError`.
    """
    unknown = sorted(set(names or ()) - set(METRICS))
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; run `unlearnkit metrics` to list them")
    out: dict[str, float] = {}
    for name in names if names is not None else list(METRICS):
        spec = METRICS[name]
        if spec.applicable(inputs):
            out.update({k: float(v) for k, v in spec.fn(inputs).items()})
    return out


def list_metrics() -> list[dict]:
    """What ``unlearnkit metrics`` prints: one dict per registered metric."""
    return [{"name": s.name, "outputs": list(s.outputs), "goals": dict(s.outputs),
             "description": s.description, "citation": s.citation, "needs": list(s.needs),
             "modalities": list(s.modalities)}
            for s in METRICS.values()]


def metric_goal(key: str) -> str | None:
    """The goal of an output key across the registry (None if no metric produces it)."""
    for spec in METRICS.values():
        if key in spec.outputs:
            return spec.outputs[key]
    return None
