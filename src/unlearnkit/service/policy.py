"""The policy of a model line: which method answers its requests, how they are batched,
what the verification gate demands before promotion, and what happens when it fails.

A policy is plain data (YAML or JSON on disk, a dict over HTTP), merged in three layers:
the modality's default (``Modality.service_policy``), the service's policy file
(``unlearnkit serve --policy FILE``) and the line's own (given when it is registered).
Every field::

    method:    {name: finetune, params: {}}      # a registered method and its hyperparameters
    seed: 0                                      # seeds the method and the reference
    batch:     {max_size: 16, window_seconds: 5} # requests answered together; the window is
                                                 # the most a request waits for others
    gate:
      checks:                                    # every check must pass to promote
        - {metric: gap_acc_test, max: 0.03}      # a catalogue metric and one bound: max, min,
        - {metric: model_utility, min_ratio_to_reference: 0.95}  # or a bound relative to the
                                                 # reference's own value (max_gap_to_reference too)
        - {metric: dt_auc, min_ratio_to_reference: 0.95, when: {task: link}}
                                                 # when: only on lines whose training task's
                                                 # spec has these values (kept or dropped when
                                                 # the line is registered)
      canary: {size: 100, max_reference_flip_rate: 0.05, max_excess_flip_rate: 0.03}
      privacy_shadows: 0                         # >= 4: U-LiRA with that many shadow models of
                                                 # each kind (checks may then bound ulira_auc ...)
    on_failure: retrain                          # retrain (the exact path) or reject
    limits: {max_fraction_per_request: 0.25}     # a larger request is refused as damaging
    sharding: null                               # or {shards: 5, slices: 3, aggregation:
                                                 # mean_prob, by: subject}: a sharded line

A *sharded* line (``sharding`` given; classifiers) deploys a SISA ensemble (Bourtoule et al.
2021) trained when the line is registered, its checkpoints stored with every version. Its
method is ``sisa`` (exact: only the shards holding deleted examples retrain, from their
checkpoints) or an approximate one applied to the whole ensemble; a failed gate escalates
to ``sisa``, which also removes exactly what approximate answers removed before (see
:mod:`unlearnkit.engines.sharded`). ``retrain`` would replace the ensemble by one model and
is refused there. The gate compares with the retrained monolithic reference, as everywhere:
a policy for a sharded line allows for the accuracy the sharding itself costs.

The canary keys are ``max_reference_<measure>`` (how much the deletion itself, retrained
with and without the data, changes never-trained examples; above it the batch is *held*
for a person) and ``max_excess_<measure>`` (how much the method's model changes them beyond
what the reference does; above it the gate fails), for the measures ``flip_rate`` (share
of canary examples whose predicted class changes; classifiers) and ``loss_shift`` (mean
absolute change of per-example loss; every modality).

A modality that answers with methods of its own (a federation: ``exact``, ``federaser``, a
classifier method run inside a client) checks a policy's method with its ``policy_method``
hook (:func:`modality_hook`) instead of the method registry.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

BOUNDS = ("max", "min", "max_gap_to_reference", "min_ratio_to_reference")
CANARY_MEASURES = ("flip_rate", "loss_shift")
ON_FAILURE = ("retrain", "reject")

BASE_POLICY: dict = {
    "method": {"name": "finetune", "params": {}},
    "seed": 0,
    "batch": {"max_size": 16, "window_seconds": 5.0},
    "gate": {"checks": [], "canary": {"size": 100}, "privacy_shadows": 0},
    "on_failure": "retrain",
    "limits": {"max_fraction_per_request": 0.25},
    "sharding": None,
}


def modality_hook(modality: str, name: str):
    """The service hook ``name`` of modality ``modality``, where it has one: in its ``service``
    module (the recommender's, the federation's) if it has that module, else in its ``task``
    module (the graph's); None otherwise."""
    from ..modalities import get_modality

    m = get_modality(modality)
    try:
        hook = getattr(m.part("service"), name, None)
    except ModuleNotFoundError as e:
        if e.name != f"{m.package}.service":  # the module exists and an import inside it failed
            raise
        hook = None
    return hook if hook is not None else getattr(m.part("task"), name, None)


def merge(base: dict, override: dict | None) -> dict:
    """``override`` laid over ``base``: nested dicts merge, everything else (lists of
    checks included) replaces."""
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@dataclass(frozen=True)
class Check:
    metric: str
    bound: str
    value: float
    when: tuple[tuple[str, Any], ...] = ()  # task-spec fields a line must have for the check to apply

    def applies(self, spec: dict | None) -> bool:
        """Whether a line trained on a task of ``spec`` runs this check (every ``when`` field
        of the spec has the given value; a check without ``when`` applies to every line)."""
        return all((spec or {}).get(k) == v for k, v in self.when)

    def evaluate(self, metrics: dict, reference: dict) -> dict:
        """``{metric, bound, threshold, value, passed}``; a metric not computed fails."""
        v = metrics.get(self.metric)
        out = {"metric": self.metric, "bound": self.bound, "threshold": self.value, "value": v}
        ok = isinstance(v, (int, float)) and math.isfinite(float(v))
        if ok and self.bound in ("max_gap_to_reference", "min_ratio_to_reference"):
            r = reference.get(self.metric)
            if not isinstance(r, (int, float)) or not math.isfinite(float(r)):
                return {**out, "passed": False, "why": "the reference's value was not computed"}
            out["reference"] = float(r)
            if self.bound == "max_gap_to_reference":
                return {**out, "passed": abs(float(v) - float(r)) <= self.value}
            return {**out, "passed": float(r) > 0 and float(v) / float(r) >= self.value}
        if not ok:
            return {**out, "passed": False, "why": "not computed"}
        return {**out, "passed": float(v) <= self.value if self.bound == "max" else float(v) >= self.value}


@dataclass
class Policy:
    method: str
    params: dict
    seed: int
    max_batch: int
    window_seconds: float
    checks: list[Check]
    canary_size: int
    canary_limits: dict[str, float]
    privacy_shadows: int
    on_failure: str
    max_fraction_per_request: float
    raw: dict = field(default_factory=dict)
    sharding: dict | None = None  # {shards, slices, aggregation} on a sharded line

    @property
    def sisa_params(self) -> dict:
        """The ``sisa`` method's parameters of a sharded line."""
        sh = self.sharding or {}
        return {
            "num_shards": sh["shards"],
            "num_slices": sh["slices"],
            "aggregation": sh["aggregation"],
            "assign": sh["by"],
        }

    @property
    def needs_reference_metrics(self) -> bool:
        return bool(self.reference_metric_keys)

    @property
    def reference_metric_keys(self) -> list[str]:
        """The metrics whose reference value a check reads (``*_to_reference`` bounds)."""
        return list(dict.fromkeys(c.metric for c in self.checks if c.bound.endswith("_reference")))

    def to_dict(self) -> dict:
        return copy.deepcopy(self.raw)


def _number(v: Any, where: str, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise ConfigError(f"policy: {where} must be a finite number, not {v!r}")
    v = float(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ConfigError(f"policy: {where} must be in [{lo}, {hi}], not {v}")
    return v


def _integer(v: Any, where: str, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(f"policy: {where} must be an integer >= {lo}, not {v!r}")
    return v


def parse_policy(raw: dict, modality: str | None = None) -> Policy:
    """Validate a merged policy (every error a one-line :class:`ConfigError`)."""
    from ..evaluation.metrics import DECLARED, METRICS
    from ..methods import get_method

    if not isinstance(raw, dict):
        raise ConfigError("policy must be a mapping")
    unknown = set(raw) - set(BASE_POLICY)
    if unknown:
        raise ConfigError(f"policy: unknown field(s) {', '.join(sorted(unknown))}; fields: {', '.join(BASE_POLICY)}")
    m = raw.get("method") or {}
    if not isinstance(m, dict) or not isinstance(m.get("name"), str):
        raise ConfigError("policy: method must be {name: <method>, params: {...}}")
    params = m.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError("policy: method.params must be a mapping")
    own = modality_hook(modality, "policy_method") if modality else None
    if own is not None:  # a modality answering with its own methods (a federation's exact, federaser, ...)
        try:
            params = own(m["name"], params, get_method)
        except ConfigError as e:
            raise ConfigError(f"policy: {e}") from None
    else:
        method = get_method(m["name"], **params)  # unknown method or bad hyperparameters: ConfigError
        serves = tuple(getattr(method, "modalities", ()) or ())
        if modality and serves and modality not in serves:
            raise ConfigError(f"policy: method {m['name']!r} does not serve {modality} tasks")
    sharding = _sharding(raw.get("sharding"), modality)
    if m["name"] == "sisa":
        if sharding is None:
            raise ConfigError("policy: method sisa answers sharded lines only; give sharding: {shards: S, slices: R}")
        want = {
            "num_shards": sharding["shards"],
            "num_slices": sharding["slices"],
            "aggregation": sharding["aggregation"],
            "assign": sharding["by"],
        }
        if params and {**want, **params} != want:
            raise ConfigError("policy: sisa's params must be the line's sharding (leave them out)")
        params = want
    elif sharding is not None and m["name"] == "retrain":
        raise ConfigError(
            "policy: a sharded line's exact path is sisa; retrain would replace the ensemble by one model"
        )
    b = raw.get("batch") or {}
    if not isinstance(b, dict):
        raise ConfigError("policy: batch must be a mapping")
    g = raw.get("gate") or {}
    if not isinstance(g, dict):
        raise ConfigError("policy: gate must be a mapping")
    known = set()
    for spec in [*METRICS.values(), *DECLARED.values()]:  # computed metrics, then declared ones (U-LiRA)
        known.update(spec.outputs)
    checks = []
    for i, c in enumerate(g.get("checks") or []):
        if not isinstance(c, dict) or not isinstance(c.get("metric"), str):
            raise ConfigError(f"policy: gate.checks[{i}] must be {{metric: NAME, max|min|...: VALUE}}")
        bounds = [k for k in c if k not in ("metric", "when")]
        if len(bounds) != 1 or bounds[0] not in BOUNDS:
            raise ConfigError(f"policy: gate.checks[{i}] needs exactly one of {', '.join(BOUNDS)}")
        if c["metric"] not in known:
            raise ConfigError(
                f"policy: gate.checks[{i}]: {c['metric']!r} is not a catalogue metric (`unlearnkit metrics`)"
            )
        when = c.get("when") or {}
        if not isinstance(when, dict) or any(
            not isinstance(k, str) or not isinstance(v, (str, int, float, bool)) for k, v in when.items()
        ):
            raise ConfigError(f"policy: gate.checks[{i}].when must map task-spec fields to values ({{task: link}})")
        bound = _number(c[bounds[0]], f"gate.checks[{i}].{bounds[0]}")
        checks.append(Check(c["metric"], bounds[0], bound, tuple(sorted(when.items()))))
    unknown_gate = set(g) - {"checks", "canary", "privacy_shadows"}
    if unknown_gate:
        raise ConfigError(f"policy: unknown gate field(s) {', '.join(sorted(unknown_gate))}")
    canary = g.get("canary") or {}
    if not isinstance(canary, dict):
        raise ConfigError("policy: gate.canary must be a mapping")
    limits = {}
    for k, v in canary.items():
        if k == "size":
            continue
        name = k.split("_", 2)
        if (
            len(name) != 3
            or name[0] != "max"
            or name[1] not in ("reference", "excess")
            or name[2] not in CANARY_MEASURES
        ):
            raise ConfigError(
                f"policy: gate.canary.{k} is unknown; use size, max_reference_<m> or max_excess_<m> for "
                f"m in {', '.join(CANARY_MEASURES)}"
            )
        limits[k] = _number(v, f"gate.canary.{k}", 0.0)
    on_failure = raw.get("on_failure", "retrain")
    if on_failure not in ON_FAILURE:
        raise ConfigError(f"policy: on_failure must be {' or '.join(ON_FAILURE)}, not {on_failure!r}")
    lim = raw.get("limits") or {}
    if not isinstance(lim, dict):
        raise ConfigError("policy: limits must be a mapping")
    return Policy(
        method=m["name"],
        params=dict(params),
        seed=_integer(raw.get("seed", 0), "seed", 0),
        max_batch=_integer(b.get("max_size", 16), "batch.max_size", 1),
        window_seconds=_number(b.get("window_seconds", 5.0), "batch.window_seconds", 0.0, 86400.0),
        checks=checks,
        canary_size=_integer(canary.get("size", 100), "gate.canary.size", 0),
        canary_limits=limits,
        privacy_shadows=_integer(g.get("privacy_shadows", 0), "gate.privacy_shadows", 0),
        on_failure=on_failure,
        max_fraction_per_request=_number(
            lim.get("max_fraction_per_request", 0.25), "limits.max_fraction_per_request", 0.0, 1.0
        ),
        raw=copy.deepcopy(raw),
        sharding=sharding,
    )


def _sharding(sh: Any, modality: str | None) -> dict | None:
    from ..engines.sharded import AGGREGATIONS, ASSIGNMENTS
    from ..methods import get_method

    if sh is None:
        return None
    if not isinstance(sh, dict):
        raise ConfigError("policy: sharding must be null or {shards: S, slices: R, aggregation: mean_prob|vote}")
    unknown = set(sh) - {"shards", "slices", "aggregation", "by"}
    if unknown:
        raise ConfigError(f"policy: unknown sharding field(s) {', '.join(sorted(unknown))}")
    out = {
        "shards": _integer(sh.get("shards", 5), "sharding.shards", 1),
        "slices": _integer(sh.get("slices", 3), "sharding.slices", 1),
        "aggregation": sh.get("aggregation", "mean_prob"),
        "by": sh.get("by", "subject"),
    }
    if out["by"] not in ASSIGNMENTS:
        raise ConfigError(f"policy: sharding.by must be one of {', '.join(ASSIGNMENTS)}")
    if out["aggregation"] not in AGGREGATIONS:
        raise ConfigError(f"policy: sharding.aggregation must be one of {', '.join(AGGREGATIONS)}")
    serves = tuple(get_method("sisa").modalities or ())
    if modality and serves and modality not in serves:
        raise ConfigError(f"policy: sharded lines are SISA ensembles, which serve {', '.join(serves)} tasks only")
    return out


def load_policy_file(path: str | Path | None) -> dict:
    """The mapping in a YAML or JSON policy file (``{}`` for None)."""
    if path is None:
        return {}
    import yaml

    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read policy file {p}: {e.strerror or e}") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        mark = getattr(e, "problem_mark", None)
        why = f"{getattr(e, 'problem', None) or e}" + (
            f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        )
        kind = "JSON" if p.suffix == ".json" else "YAML"
        raise ConfigError(f"policy file {p} is not valid {kind}: {' '.join(why.split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"policy file {p} must hold a mapping")
    return data


def line_policy(modality, service_policy: dict | None, line_policy: dict | None, spec: dict | None = None) -> Policy:
    """The policy of a line of ``modality`` (a :class:`~unlearnkit.modalities.Modality`).
    With ``spec`` (the line's training task spec), the checks whose ``when`` the task does
    not match are dropped: the line's policy lists exactly the checks its gate runs (a
    graph line's link-prediction checks on a link task, its node checks on a node task); a
    modality with a ``service_policy_for(spec)`` hook gives its default for that task (a
    federation of language models has other metrics than one of classifiers)."""
    default = modality.service_policy
    own = modality_hook(modality.name, "service_policy_for") if spec else None
    if own is not None:  # a modality whose default depends on the line's task (a federation's local task)
        default = own(spec)
    raw = merge(merge(merge(BASE_POLICY, default), service_policy), line_policy)
    pol = parse_policy(raw, modality.name)
    if spec is not None and any(not c.applies(spec) for c in pol.checks):
        gate = dict(raw.get("gate") or {})
        gate["checks"] = [c for c, parsed in zip(gate.get("checks") or [], pol.checks) if parsed.applies(spec)]
        raw = dict(raw, gate=gate)
        pol = parse_policy(raw, modality.name)
    if 0 < pol.privacy_shadows < 4:
        raise ConfigError("policy: gate.privacy_shadows must be 0 or >= 4 (U-LiRA holds one shadow out per side)")
    if pol.privacy_shadows and pol.sharding:
        raise ConfigError("policy: gate.privacy_shadows is not available on sharded lines (shadow SISA ensembles)")
    if pol.privacy_shadows and not modality.supports("shadow_privacy"):
        raise ConfigError(f"policy: gate.privacy_shadows needs shadow-model privacy, which {modality.name} lacks")
    return pol
