"""Number formatting and Markdown tables.

The same format in Markdown, HTML and the plots' labels, by the unit the metric
catalogue declares for each key (:func:`~unlearnkit.evaluation.metrics.metric_unit`):

* plain numbers (accuracies, accuracy gaps, AUCs, advantages, p-values, divergences):
  3 decimals in their own units (an accuracy of 91.2% shows as ``0.912``);
* ``ratio`` (cost ratios): ``0.04x`` (2 decimals; 1 decimal from 1x up; one
  significant digit below 0.01x);
* ``seconds`` (``wall_time_s``): 2 decimals; ``count`` (``steps``, example counts): integers;
* ``mean ± std`` with two or more seeds, the mean alone with one.
"""

from __future__ import annotations

import html
import math
from typing import Sequence

from ...evaluation.metrics import GOAL_TEXT, metric_goal, metric_unit
from .summary import NAN, _num, _sections, display_name


def _ratio_decimals(v: float) -> int:
    return 1 if v >= 0.995 else 2 if v >= 0.01 or v <= 0 else -math.floor(math.log10(v))


def _fmt1(metric: str, v: float, like: float | None = None) -> str:
    """One number in ``metric``'s format; ``like``: the mean whose decimals a std takes."""
    unit = metric_unit(metric)
    if unit == "ratio":
        s = f"{v:.{_ratio_decimals(v if like is None else like)}f}"
        return s if like is not None else s + "x"
    if unit == "seconds":
        return f"{v:.2f}"
    if unit == "count":
        return f"{v:,.0f}"
    return f"{v:.3f}"


def goal_label(metric: str) -> str:
    """``"  (lower is better)"`` etc. from the metric catalogue ("" for an unknown key)."""
    goal = metric_goal(metric)
    return f"  ({GOAL_TEXT[goal]})" if goal else ""


def format_value(metric: str, mean: float, std: float = NAN) -> str:
    """``mean ± std`` in the metric's format (module docstring); ``–`` for NaN/missing."""
    mean, std = _num(mean), _num(std)
    if not math.isfinite(mean):
        return "–"
    s = _fmt1(metric, mean)
    return f"{s} ± {_fmt1(metric, std, like=mean)}" if math.isfinite(std) else s


def _grid(rows: Sequence[dict], metrics: Sequence[str], transpose: bool):
    """Per section: (title, header, body cells, roles of body rows, failed rows)."""
    out = []
    for title, ws in _sections(rows).items():
        ok = [w for w in ws if w["status"] == "ok"]
        failed = [w for w in ws if w["status"] == "failed"]
        cell = lambda w, m: format_value(m, w["mean"].get(m, NAN), w["std"].get(m, NAN))  # noqa: E731
        if transpose:
            header = ["metric"] + [display_name(w) for w in ok]
            body = [[m] + [cell(w, m) for w in ok] for m in metrics]
            body.append(["seeds"] + [str(w["n_seeds"]) for w in ok])
            roles = ["metric"] * len(body)
        else:
            header = ["method", "seeds"] + list(metrics)
            body = [[display_name(w), str(w["n_seeds"])] + [cell(w, m) for m in metrics] for w in ok]
            roles = [w["role"] for w in ok]
        out.append((title, header, body, roles, failed))
    return out


def _md_cell(s: str) -> str:
    return html.escape(str(s), quote=False).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[dict], metrics: Sequence[str], transpose: bool = False, heading: str = "###") -> str:
    """A Markdown table per scenario (``heading`` + scenario title, then the table).

    Rows are methods and columns metrics (``transpose=True``: the other way round,
    for long metric lists). Failed runs are listed under the table with their error.
    """
    parts = []
    for title, header, body, _, failed in _grid(rows, metrics, transpose):
        lines = [f"{heading} {_md_cell(title)}", ""]
        lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
        lines.append("|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|")
        lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in body]
        for w in failed:
            lines.append(
                f"\n- **failed**: {_md_cell(display_name(w))}, seed {w['seeds'][0]} "
                f"(run {_md_cell(w['run_ids'][0])}): {_md_cell(w['error'])}"
            )
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"
