"""Summary rows: runs grouped by (task, scenario, role, method, hyperparameter variant),
every metric aggregated over the runs of a group (one per seed), and the labels the
groups are named by.

* ``mean`` over the finite values (NaN and missing values are left out);
* ``std``: the sample standard deviation (ddof=1) over the finite values, NaN with
  fewer than two of them;
* a metric with no finite value is NaN and renders as ``–``.

Failed runs are never averaged: each is its own row with ``status="failed"`` and its
error. Which metrics come first and which are the headline columns is the metric
catalogue's knowledge (:mod:`unlearnkit.evaluation.metrics`); a task's label is its
modality's (:meth:`~unlearnkit.modalities.Modality.task_label`).
"""

from __future__ import annotations

import json
import math
import statistics
from fnmatch import fnmatch
from typing import Any, Iterable, Sequence

from ...errors import ConfigError
from ...evaluation import metrics as catalogue
from ...modalities import modality_of_spec
from ..records import RunRecord

NAN = float("nan")
ROLE = {"train": "original", "reference": "reference", "unlearn": "unlearn"}
_ROLE_RANK = {"original": 0, "reference": 1, "unlearn": 2}


# --------------------------------------------------------------------------- labels
def scenario_label(scenario: dict | None) -> str:
    """A short human label for a scenario dict: ``class 3``, ``random 10%``, ``5 subjects``.

    Runs are grouped by this label, so a subject list drawn at random per seed (its length
    equals ``count``) is named by its count and its seeds are averaged together; explicit
    lists of up to 3 subjects are named by their ids.
    """
    s = dict(scenario or {})
    kind = str(s.pop("kind", "") or "")
    if not kind:
        return "unspecified"

    def pct(x: Any) -> str:
        return f"{float(x) * 100:.3g}%"

    if kind == "random" and "fraction" in s:
        return f"random {pct(s['fraction'])}"
    if kind == "mislabelled" and "fraction" in s:
        return f"mislabelled {pct(s['fraction'])}"
    if kind == "class" and "label" in s:
        return f"class {s['label']}"
    if kind == "subclass" and "group" in s:
        return f"subclass {s['group']}"
    if kind == "subjects":
        subs = s.get("subjects") or []
        if subs and len(subs) == s.get("count"):  # drawn at random (per seed): name the count
            return f"{len(subs)} subject" + ("" if len(subs) == 1 else "s")
        if subs:
            return (
                f"subject {subs[0]}"
                if len(subs) == 1
                else (f"subjects {', '.join(map(str, subs))}" if len(subs) <= 3 else f"{len(subs)} subjects")
            )
        n = s.get("count", "?")
        return f"{n} subject" + ("" if n == 1 else "s")
    if kind == "lm":  # a language-model task: a split name, or subjects / ids
        f = s.get("forget")
        if isinstance(f, str):
            return f
        if isinstance(f, dict) and f.get("subjects"):
            n = len(f["subjects"])
            return f"person {f['subjects'][0]}" if n == 1 else f"{n} people"
        n = s.get("count", "?")
        return f"{n} rows"
    if kind == "ids":
        n = len(s["ids"]) if s.get("ids") else s.get("count", "?")
        return f"{n} example" + ("" if n == 1 else "s")
    args = ", ".join(f"{k}={v}" for k, v in s.items() if not isinstance(v, (list, dict)))
    label = f"{kind} {args}".strip()
    return label if len(label) <= 48 else label[:47] + "…"


def record_scenario_label(record: RunRecord) -> str:
    """The label of a run's scenario: its modality's (``<package>.task.scenario_label``,
    where the modality names its scenarios itself, e.g. a federated client), else
    :func:`scenario_label`."""
    scenario = _scenario(record)
    try:
        own = getattr(modality_of_spec(record.task_spec).part("task"), "scenario_label", None)
    except (ConfigError, ModuleNotFoundError):
        own = None
    label = own(scenario) if own is not None else None
    return label or scenario_label(scenario)


def task_label(task_spec: dict | None) -> str:
    """The task's label as its modality gives it (``dataset · model`` for classifiers,
    ``source · architecture`` for language models); a spec of a modality that is not
    registered here is named by its dataset and model."""
    spec = task_spec or {}
    try:
        modality = modality_of_spec(spec)
    except ConfigError:
        parts = [str(spec[k]) for k in ("dataset", "model") if spec.get(k) not in (None, "")]
        return " · ".join(parts) or str(spec.get("modality") or "task")
    return modality.task_label(spec)


def modalities_of(records: Iterable[RunRecord]) -> list[str]:
    """The registered modalities of the records' tasks (sorted; unregistered ones left out)."""
    names = set()
    for r in records:
        try:
            names.add(modality_of_spec(r.task_spec).name)
        except ConfigError:
            pass
    return sorted(names)


def display_name(row: dict) -> str:
    """The method label a table or plot shows for a summary row."""
    name = row["method"] + (f" [{row['variant']}]" if row.get("variant") else "")
    if row["role"] == "reference":
        return f"{name} (reference)"
    if row["role"] == "original" and row["method"] != "original":
        return f"{name} (original)"
    return name


def section_title(row: dict, several_tasks: bool) -> str:
    return f"{row['task']} — {row['scenario']}" if several_tasks else row["scenario"]


# --------------------------------------------------------------------------- summarise
def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return NAN


def order_metrics(names: Iterable[str]) -> list[str]:
    """Metric names in the catalogue's order (accuracy, gaps, privacy, divergence, cost);
    names no metric declares come last, by name."""
    return catalogue.order_metrics(names)


def _as_records(records: Iterable[RunRecord | dict]) -> list[RunRecord]:
    recs = [r if isinstance(r, RunRecord) else RunRecord.from_dict(r) for r in records]
    if not recs:
        raise ConfigError("no runs to report: pass at least one RunRecord (e.g. from the store)")
    return recs


def _scenario(r: RunRecord) -> dict:
    return r.scenario or (r.task_spec or {}).get("scenario") or {}


def _variants(recs: list[RunRecord]) -> list[str]:
    """Per record, ``k=v`` of the hyperparameters that differ among ``recs`` ('' if none)."""
    ps = [r.params or {} for r in recs]
    keys = sorted({k for p in ps for k in p})
    diff = [k for k in keys if len({json.dumps(p.get(k), sort_keys=True, default=str) for p in ps}) > 1]
    return [", ".join(f"{k}={p.get(k)}" for k in diff) for p in ps]


def _check_metrics(recs: list[RunRecord], metrics: Sequence[str] | None) -> list[str]:
    """``metrics`` (all present ones when None); ConfigError on names no run has."""
    present = {k for r in recs for k in (r.metrics or {})}
    if metrics is None:
        return order_metrics(present)
    unknown = [m for m in metrics if m not in present]
    if unknown:
        raise ConfigError(
            f"metric(s) {', '.join(unknown)} appear in no run: choose from "
            f"{', '.join(order_metrics(present)) or '(none)'}"
        )
    return list(metrics)


def summarise(records: Iterable[RunRecord | dict], metrics: list[str] | None = None) -> list[dict]:
    """One row per (task, scenario, role, method, variant), metrics aggregated over seeds.

    Each row: ``task``, ``scenario`` (labels), ``role`` (original / reference /
    unlearn), ``method``, ``variant`` (differing hyperparameters, '' if none),
    ``status``, ``n_seeds``, ``seeds``, ``run_ids``, ``mean`` and ``std`` (metric ->
    float; see the module docstring) and ``error``. Scenarios keep the order in
    which they first appear; within one, the original comes first, then the
    reference, then the methods by name. A failed run is its own row
    (``status="failed"``, its ``error``, empty ``mean``/``std``) after its method's row.
    """
    recs = _as_records(records)
    metrics = _check_metrics(recs, metrics)
    groups: dict[tuple, list[RunRecord]] = {}
    for r in recs:
        key = (task_label(r.task_spec), record_scenario_label(r), ROLE.get(r.kind, r.kind), r.method)
        groups.setdefault(key, []).append(r)
    sections: dict[tuple, list[dict]] = {}
    for (task, scen, role, method), members in groups.items():
        by_variant: dict[str, list[RunRecord]] = {}
        for r, v in zip(members, _variants(members)):
            by_variant.setdefault(v, []).append(r)
        rows = sections.setdefault((task, scen), [])
        for variant, rs in by_variant.items():
            base = {"task": task, "scenario": scen, "role": role, "method": method, "variant": variant}
            ok = sorted((r for r in rs if r.status != "failed"), key=lambda r: r.seed)
            if ok:
                mean, std = {}, {}
                for m in metrics:
                    vals = [v for v in (_num((r.metrics or {}).get(m)) for r in ok) if math.isfinite(v)]
                    mean[m] = statistics.fmean(vals) if vals else NAN
                    std[m] = statistics.stdev(vals) if len(vals) > 1 else NAN
                rows.append(
                    {
                        **base,
                        "status": "ok",
                        "n_seeds": len({r.seed for r in ok}),
                        "seeds": sorted({r.seed for r in ok}),
                        "run_ids": [r.id for r in ok],
                        "mean": mean,
                        "std": std,
                        "error": None,
                    }
                )
            for r in sorted((r for r in rs if r.status == "failed"), key=lambda r: r.seed):
                rows.append(
                    {
                        **base,
                        "status": "failed",
                        "n_seeds": 0,
                        "seeds": [r.seed],
                        "run_ids": [r.id],
                        "mean": {},
                        "std": {},
                        "error": r.error or "failed (no error message recorded)",
                    }
                )
    out: list[dict] = []
    for rows in sections.values():
        out.extend(
            sorted(
                rows,
                key=lambda w: (
                    _ROLE_RANK.get(w["role"], 3),
                    w["method"],
                    w["variant"],
                    w["status"] != "ok",
                    w["seeds"],
                ),
            )
        )
    return out


def _sections(rows: Sequence[dict]) -> dict[str, list[dict]]:
    several = len({w["task"] for w in rows}) > 1
    out: dict[str, list[dict]] = {}
    for w in rows:
        out.setdefault(section_title(w, several), []).append(w)
    return out


def _present(rows: Sequence[dict], pattern: str) -> list[str]:
    """Metric names matching ``pattern`` with a finite mean in some ok row (catalogue order)."""
    names = {m for w in rows for m, v in w["mean"].items() if fnmatch(m, pattern) and math.isfinite(v)}
    return order_metrics(names)


def default_metrics(rows: Sequence[dict], modality: str | Iterable[str] | None = None) -> list[str]:
    """The headline metrics of the catalogue (:func:`~unlearnkit.evaluation.metrics.pick_headline`:
    one per headline column, the first alternative with a value) that have a value in ``rows``."""
    present = {m for w in rows for m, v in w["mean"].items() if math.isfinite(v)}
    return catalogue.pick_headline(present, modality)
