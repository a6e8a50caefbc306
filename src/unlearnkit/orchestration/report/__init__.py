"""Comparison reports: Markdown, a self-contained HTML page and JSON, with plots.

Input is a list of :class:`~unlearnkit.orchestration.records.RunRecord` (originals
``kind="train"``, references ``kind="reference"`` = retrain on the retain set, and
``kind="unlearn"`` runs).

* :mod:`.summary`: :func:`summarise` groups them by (task, scenario, role, method,
  hyperparameter variant) and aggregates every metric over seeds (mean and sample std
  of the finite values); failed runs are never averaged; scenario and task labels.
* :mod:`.formatting`: number formats (the same in Markdown, HTML and plot labels) and
  Markdown tables.
* :mod:`.plots`: the figures (bare matplotlib figures, Agg canvas, no pyplot).
* :mod:`.html`: :func:`write_report` and the Markdown / HTML renderers.

What a metric is, its goal, its unit, its place in the order and whether it is a
headline column all come from the metric catalogue (:mod:`unlearnkit.evaluation.metrics`);
this package keeps no list of metric names of its own.
"""

from .formatting import format_value, goal_label, markdown_table
from .html import legend_rows, render_html, render_markdown, write_report
from .plots import (
    PLOT_KINDS,
    PLOTS,
    figure_png,
    modality_plots,
    plot_cost,
    plot_lm_tradeoff,
    plot_privacy,
    plot_tradeoff,
)
from .summary import (
    ROLE,
    default_metrics,
    display_name,
    modalities_of,
    order_metrics,
    record_scenario_label,
    scenario_label,
    section_title,
    summarise,
    task_label,
)

__all__ = [
    "PLOTS",
    "PLOT_KINDS",
    "ROLE",
    "default_metrics",
    "display_name",
    "figure_png",
    "format_value",
    "goal_label",
    "legend_rows",
    "markdown_table",
    "modalities_of",
    "modality_plots",
    "order_metrics",
    "record_scenario_label",
    "plot_cost",
    "plot_lm_tradeoff",
    "plot_privacy",
    "plot_tradeoff",
    "render_html",
    "render_markdown",
    "scenario_label",
    "section_title",
    "summarise",
    "task_label",
    "write_report",
]
