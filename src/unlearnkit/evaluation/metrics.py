"""The metric catalogue: every metric of every modality, registered in one place.

A metric is a function ``EvalInputs -> {output key: float}`` registered with
:func:`register_metric`; it never calls a model (except the few causal-LM metrics that
declare ``needs=("models",)``, e.g. the relearning attack). Each metric declares the task
modalities it applies to and lives in its modality's package
(``unlearnkit/modalities/<name>/metrics.py``); the cost metrics every modality shares
live in :mod:`.cost`. :func:`compute_metrics` runs every
applicable metric: one that needs the reference (or a cost) is skipped, not failed,
when it is missing.

The catalogue is the one place that knows about an output key. Per key a metric declares:

* a *goal*: ``"higher"`` or ``"lower"`` is better, or ``"reference"`` (closest to the
  retrained reference model's own value is best);
* a *help* text (what it is) and optionally what its ideal value looks like (default:
  said by the goal);
* whether it is a *headline* (a column of the default summaries), and a
  ``headline_group`` when several keys are alternatives for one column (the first
  present in catalogue order is shown, e.g. one membership-attack AUC);
* its *unit* for display (``"ratio"``, ``"seconds"``, ``"count"``; default a plain
  number with 3 decimals).

A metric's ``order`` places its keys in the catalogue order (then declaration order
within the metric); reports, the CLI summary and the UI list keys in that order.
A metric also names the *shared quantities* it reads (``shares``): values computed once
per evaluated model and its splits and read by several metrics (like OpenUnlearning's
``pre_compute``), registered with :func:`register_shared` and read with
:meth:`EvalInputs.shared`.

Keys that other code computes (the shadow-model privacy report, a modality's
training-time metrics) are declared with :func:`register_outputs`, so the catalogue
describes every number a run record can hold; :func:`compute_metrics` never runs them.

To add a metric: write a function of :class:`EvalInputs` returning a dict of floats,
decorate it with :func:`register_metric` (name, outputs with goals, citation, what it
needs, help per key, headline keys), and give it a docstring whose first paragraph
describes it; the catalogue tests then check it is listed and described.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..engines.loop import LoopStats
from ..errors import ConfigError

GOALS = ("higher", "lower", "reference")
#: display units of an output key (:func:`metric_unit`); "" = a plain number, 3 decimals
UNITS = ("", "ratio", "seconds", "count")
#: how each goal reads in a plot axis or a table header
GOAL_TEXT = {"higher": "higher is better", "lower": "lower is better", "reference": "closer to the reference is better"}
#: what "ideal" says for a key whose metric gives no ideal of its own
IDEAL_TEXT = {"higher": "high", "lower": "low", "reference": "the reference's value"}
#: the ``order`` of a metric that declares none (after every built-in one)
DEFAULT_ORDER = 1000.0
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
            the LM scores per set (see ``unlearnkit.modalities.causal_lm``).
        models: ``{"model": nn.Module, "reference": nn.Module | None, "task": Task}`` for the
            few metrics that must run a model again (relearning attack, sampling); metrics
            that need it declare ``needs=("models",)`` and are skipped without it.
        forget_size: how many examples the forget set holds, in the unit the loop counts
            (rows of the task: examples, question-answer pairs, edges or nodes), for cost
            in forget-set passes.
    """

    model: dict[str, Any]
    reference: dict[str, Any] | None = None
    cost: LoopStats | None = None
    reference_cost: LoopStats | None = None
    seed: int = 0
    scenario: dict | None = None
    modality: str = "classifier"
    models: dict | None = None
    forget_size: int | None = None
    _memo: dict = field(default_factory=dict, repr=False, compare=False)

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """A quantity several metrics share (e.g. the TOFU values of one model), computed
        once per inputs: the first call runs ``compute()``, later calls return its value."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def shared(self, name: str, of: str = "model") -> Any:
        """The registered shared quantity ``name`` (:func:`register_shared`) of the evaluated
        model's splits (``of="model"``) or the reference's (``of="reference"``), computed
        once per inputs and model."""
        if name not in SHARED:
            raise ConfigError(
                f"no shared quantity {name!r} is registered; registered: {', '.join(sorted(SHARED)) or '(none)'}"
            )
        if of not in ("model", "reference"):
            raise ValueError(f"of must be 'model' or 'reference', not {of!r}")
        table = self.model if of == "model" else self.reference
        if table is None:
            raise ConfigError(f"shared quantity {name!r} of the reference asked for, but there is none")
        key = name if of == "model" else f"{name}@{of}"  # the model's: the same key as memo(name, ...)
        return self.memo(key, lambda: SHARED[name].fn(table, self))


@dataclass(frozen=True)
class SharedSpec:
    """A quantity several metrics read, computed once per model: ``fn(table, inputs)``
    where ``table`` is the model's (or the reference's) split -> scores."""

    name: str
    fn: Callable[[dict[str, Any], EvalInputs], Any]
    description: str


SHARED: dict[str, SharedSpec] = {}


def register_shared(name: str):
    """Decorator registering ``fn(table, inputs)`` as the shared quantity ``name``
    (description: the first paragraph of its docstring). Metrics declare it in
    ``register_metric(..., shares=(name,))`` and read it with ``inputs.shared(name)``."""

    def deco(fn):
        doc = " ".join((fn.__doc__ or "").strip().split("\n\n")[0].split())
        SHARED[name] = SharedSpec(name, fn, doc)
        return fn

    return deco


_SEQ = itertools.count()  # registration order (ties of ``order``); also versions the query cache


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric (or, with ``fn=None``, outputs other code computes).

    ``outputs`` maps each output key to its goal (see :data:`GOALS`); ``needs`` names
    the :class:`EvalInputs` fields that must be given, ``splits`` the splits that must
    be present (in ``model``, and in ``reference`` when it is needed), ``modalities`` the
    task modalities (``EvalInputs.modality``) it applies to. ``help``: key -> what it is;
    ``ideal``: key -> what its ideal value looks like (where the goal alone does not say);
    ``headline``: the keys shown in default summaries, ``headline_group``: a label
    shared by metrics whose headline keys are alternatives for one column; ``units``:
    key -> display unit (:data:`UNITS`); ``order``: position in the catalogue order;
    ``shares``: the shared quantities (:data:`SHARED`) it reads; ``computed_by``: for
    declared outputs, what computes them.
    """

    name: str
    fn: Callable[[EvalInputs], dict[str, float]] | None
    outputs: dict[str, str]
    description: str
    citation: str
    needs: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ("classifier",)
    help: dict[str, str] = field(default_factory=dict)
    ideal: dict[str, str] = field(default_factory=dict)
    headline: tuple[str, ...] = ()
    headline_group: str | None = None
    units: dict[str, str] = field(default_factory=dict)
    order: float = DEFAULT_ORDER
    shares: tuple[str, ...] = ()
    computed_by: str | None = None
    seq: int = field(default_factory=lambda: next(_SEQ), compare=False)

    @property
    def needs_reference(self) -> bool:
        return "reference" in self.needs

    def higher_is_better(self, key: str) -> bool | None:
        """True/False for a higher/lower-is-better output; None when closest-to-reference."""
        return {"higher": True, "lower": False}.get(self.outputs[key])

    def help_for(self, key: str) -> str:
        """What output ``key`` is (the metric's description when it gives no text of its own)."""
        return self.help.get(key) or self.description

    def ideal_for(self, key: str) -> str:
        """What the ideal value of output ``key`` looks like."""
        return self.ideal.get(key) or IDEAL_TEXT[self.outputs[key]]

    def applicable(self, inputs: EvalInputs) -> bool:
        if self.fn is None or inputs.modality not in self.modalities:
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
#: outputs computed outside :func:`compute_metrics` (privacy report, training-time metrics)
DECLARED: dict[str, MetricSpec] = {}


def _spec(
    name: str,
    fn,
    outputs: Mapping[str, str],
    description: str,
    citation: str,
    needs: Sequence[str],
    splits: Sequence[str],
    modalities: Sequence[str],
    help: str | Mapping[str, str | tuple[str, str]] | None,
    headline: bool | Sequence[str],
    headline_group: str | None,
    units: Mapping[str, str] | None,
    order: float | None,
    shares: Sequence[str],
    computed_by: str | None,
) -> MetricSpec:
    outputs = dict(outputs)
    bad = {k: g for k, g in outputs.items() if g not in GOALS}
    if bad:
        raise ConfigError(f"metric {name!r}: goals must be one of {GOALS}, got {bad}")
    helps: dict[str, str] = {}
    ideals: dict[str, str] = {}
    if isinstance(help, str):
        helps = {k: help for k in outputs}
    else:
        for k, h in (help or {}).items():
            if isinstance(h, tuple):
                helps[k], ideals[k] = h
            else:
                helps[k] = h
    heads = tuple(outputs) if headline is True else tuple(headline or ())
    units = dict(units or {})
    for what, keys in (("help", helps), ("headline", heads), ("units", units)):
        extra = [k for k in keys if k not in outputs]
        if extra:
            raise ConfigError(f"metric {name!r}: {what} names key(s) {extra} that are not among its outputs")
    wrong = {k: u for k, u in units.items() if u not in UNITS}
    if wrong:
        raise ConfigError(f"metric {name!r}: units must be one of {UNITS}, got {wrong}")
    return MetricSpec(
        name,
        fn,
        outputs,
        description,
        citation,
        tuple(needs),
        tuple(splits),
        tuple(modalities),
        helps,
        ideals,
        heads,
        headline_group,
        units,
        DEFAULT_ORDER if order is None else float(order),
        tuple(shares),
        computed_by,
    )


def _first_paragraph(doc: str | None) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def register_metric(
    name: str,
    outputs: dict[str, str],
    citation: str,
    needs: tuple[str, ...] = (),
    splits: tuple[str, ...] = (),
    modalities: tuple[str, ...] = ("classifier",),
    *,
    help: str | Mapping[str, str | tuple[str, str]] | None = None,
    headline: bool | Sequence[str] = False,
    headline_group: str | None = None,
    units: Mapping[str, str] | None = None,
    order: float | None = None,
    shares: Sequence[str] = (),
):
    """Decorator registering ``fn(EvalInputs) -> dict[str, float]`` under ``name``.

    The description is the first paragraph of the function's docstring. ``modalities``:
    the task modalities the metric applies to (default classifiers only). The keyword
    arguments describe its outputs for reports and listings (all optional):

    * ``help``: key -> what it is, or ``(what it is, what ideal looks like)``; a single
      string for every key; keys left out are described by the metric's description;
    * ``headline``: ``True`` (every output) or the output keys shown in default summaries;
      ``headline_group``: a label shared with other metrics whose headline keys are
      alternatives for one column (the first present, in catalogue order, is shown);
    * ``units``: key -> ``"ratio"``, ``"seconds"`` or ``"count"`` (default: 3 decimals);
    * ``order``: where its keys go in the catalogue order (default: after the built-ins);
    * ``shares``: the shared quantities it reads: names registered with
      :func:`register_shared` (read with ``inputs.shared(name)``) or keys it passes to
      ``inputs.memo``.
    """

    spec = _spec(
        name,
        None,
        outputs,
        "",
        citation,
        needs,
        splits,
        modalities,
        help,
        headline,
        headline_group,
        units,
        order,
        shares,
        None,
    )  # checked now, registered with its function

    def deco(fn: Callable[[EvalInputs], dict[str, float]]):
        dict.__setitem__(METRICS, name, replace(spec, fn=fn, description=_first_paragraph(fn.__doc__)))
        return fn

    return deco


def register_outputs(
    name: str,
    outputs: dict[str, str],
    description: str,
    citation: str,
    *,
    computed_by: str,
    modalities: Sequence[str] = ("classifier",),
    help: str | Mapping[str, str | tuple[str, str]] | None = None,
    headline: bool | Sequence[str] = False,
    headline_group: str | None = None,
    units: Mapping[str, str] | None = None,
    order: float | None = None,
) -> MetricSpec:
    """Declare output keys that ``computed_by`` computes outside :func:`compute_metrics`
    (e.g. the shadow-model privacy report), with the same descriptions as a metric's, so
    reports and listings know every key a run record can hold."""
    spec = _spec(
        name,
        None,
        outputs,
        description,
        citation,
        (),
        (),
        modalities,
        help,
        headline,
        headline_group,
        units,
        order,
        (),
        computed_by,
    )
    DECLARED[name] = spec
    return spec


def compute_metrics(inputs: EvalInputs, names: list[str] | None = None) -> dict[str, float]:
    """Run the named metrics (default: all) that ``inputs`` allows; merge their outputs.

    A metric whose needs (reference, cost, splits) are missing is skipped silently;
    an unknown name raises :class:`ConfigError`. Shared quantities (``inputs.shared``)
    are computed once for all of them.
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


def _describe(s: MetricSpec) -> dict:
    return {
        "name": s.name,
        "outputs": list(s.outputs),
        "goals": dict(s.outputs),
        "description": s.description,
        "citation": s.citation,
        "needs": list(s.needs),
        "modalities": list(s.modalities),
        "help": {k: s.help_for(k) for k in s.outputs},
        "ideal": {k: s.ideal_for(k) for k in s.outputs},
        "headline": list(s.headline),
        "headline_group": s.headline_group,
        "units": {k: s.units.get(k, "") for k in s.outputs},
        "order": s.order,
        "shares": list(s.shares),
        "computed_by": s.computed_by,
    }


def list_metrics(declared: bool = False) -> list[dict]:
    """What ``unlearnkit metrics`` prints: one dict per registered metric (``declared``:
    also the outputs computed elsewhere, see :func:`register_outputs`), in catalogue order.

    Each dict: ``name``, ``outputs`` (keys), ``goals``, ``description``, ``citation``,
    ``needs``, ``modalities``, ``help`` and ``ideal`` (key -> text), ``headline`` (keys),
    ``headline_group``, ``units``, ``order``, ``shares``, ``computed_by``.
    """
    return [_describe(s) for s in _specs(None, declared=declared)]


# --------------------------------------------------------------------------- queries
def _modalities(modality: str | Iterable[str] | None) -> set[str] | None:
    if modality is None:
        return None
    return {modality} if isinstance(modality, str) else set(modality)


_CACHE: dict = {}


def _all_specs() -> tuple[list[MetricSpec], dict[str, list[MetricSpec]]]:
    """Every spec (metrics and declared outputs) in catalogue order, and key -> the specs
    that output it; recomputed whenever a metric is registered or replaced."""
    specs = list(METRICS.values()) + list(DECLARED.values())  # reading METRICS loads the modalities
    version = tuple(s.seq for s in specs)
    if _CACHE.get("version") != version:
        ordered = sorted(specs, key=lambda s: (s.order, s.seq))
        by_key: dict[str, list[MetricSpec]] = {}
        for s in ordered:
            for k in s.outputs:
                by_key.setdefault(k, []).append(s)
        _CACHE.clear()
        _CACHE.update(version=version, ordered=ordered, by_key=by_key)
    return _CACHE["ordered"], _CACHE["by_key"]


def _specs(modality: str | Iterable[str] | None = None, declared: bool = True) -> list[MetricSpec]:
    """Every spec (metrics, then declared outputs) serving ``modality`` (one name, several,
    or None: all), in catalogue order."""
    mods = _modalities(modality)
    return [s for s in _all_specs()[0] if (declared or s.fn is not None) and (mods is None or mods & set(s.modalities))]


def _spec_of(key: str, modality: str | Iterable[str] | None = None) -> MetricSpec | None:
    mods = _modalities(modality)
    for s in _all_specs()[1].get(key, ()):
        if mods is None or mods & set(s.modalities):
            return s
    return None


def output_order(modality: str | Iterable[str] | None = None) -> list[str]:
    """Every output key of the metrics serving ``modality`` (None: all), in catalogue order."""
    return list(dict.fromkeys(k for s in _specs(modality) for k in s.outputs))


def order_metrics(names: Iterable[str], modality: str | Iterable[str] | None = None) -> list[str]:
    """``names`` (deduplicated) in catalogue order; keys no metric outputs come last, by name."""
    rank = {k: i for i, k in enumerate(output_order(modality))}
    return sorted(set(names), key=lambda k: (rank.get(k, len(rank)), k))


def headline_columns(modality: str | Iterable[str] | None = None) -> list[tuple[str, ...]]:
    """The columns of a default summary: per column the candidate keys, in catalogue order
    (one key, or the alternatives of a ``headline_group``: show the first present)."""
    cols: list[list[str]] = []
    groups: dict[str, list[str]] = {}
    for s in _specs(modality):
        for k in s.headline:
            if s.headline_group is None:
                if [k] not in cols:
                    cols.append([k])
            elif s.headline_group in groups:
                if k not in groups[s.headline_group]:
                    groups[s.headline_group].append(k)
            else:
                groups[s.headline_group] = [k]
                cols.append(groups[s.headline_group])
    return [tuple(c) for c in cols]


def headline_metrics(modality: str | Iterable[str] | None = None) -> list[str]:
    """The headline output keys of ``modality`` (None: all modalities), in catalogue order
    (alternatives of one column included; :func:`pick_headline` chooses among them)."""
    return [k for col in headline_columns(modality) for k in col]


def pick_headline(available: Iterable[str], modality: str | Iterable[str] | None = None) -> list[str]:
    """The headline keys to show given the keys that have values: per column the first
    candidate in ``available``; columns with none are left out."""
    have = set(available)
    return [next(k for k in col if k in have) for col in headline_columns(modality) if any(k in have for k in col)]


def metric_goal(key: str, modality: str | Iterable[str] | None = None) -> str | None:
    """The goal of an output key across the registry (None if no metric produces it)."""
    s = _spec_of(key, modality)
    return s.outputs[key] if s else None


def metric_help(key: str, modality: str | Iterable[str] | None = None) -> str:
    """What output ``key`` is ("" if no metric produces it)."""
    s = _spec_of(key, modality)
    return s.help_for(key) if s else ""


def metric_ideal(key: str, modality: str | Iterable[str] | None = None) -> str:
    """What the ideal value of output ``key`` looks like ("" if no metric produces it)."""
    s = _spec_of(key, modality)
    return s.ideal_for(key) if s else ""


def metric_unit(key: str) -> str:
    """The display unit of output ``key`` (:data:`UNITS`; "" for a plain number or an unknown key)."""
    s = _spec_of(key)
    return s.units.get(key, "") if s else ""


def metrics_for(keys: Iterable[str], modality: str | Iterable[str] | None = None) -> list[str] | None:
    """The names of the catalogue metrics that compute output ``keys`` (for
    :func:`compute_metrics`' ``names``, so an evaluation computes only what it reads), or
    None when a key is not computed by a registered metric (declared outputs, unknown keys):
    then only the whole set is sure to hold it."""
    names: list[str] = []
    for key in keys:
        s = _spec_of(key, modality)
        if s is None or s.fn is None:
            return None
        if s.name not in names:
            names.append(s.name)
    return names


def metric_modalities(key: str) -> list[str]:
    """The modalities with a metric that outputs ``key`` (sorted)."""
    return sorted({m for s in _specs() if key in s.outputs for m in s.modalities})
