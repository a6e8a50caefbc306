"""The report's figures, drawn on bare :class:`matplotlib.figure.Figure` objects (Agg
canvas, no pyplot, so no window ever opens and no global figure state is kept).

Axis labels say each metric's goal as the metric catalogue declares it; the privacy
plot's default attack is the catalogue's headline membership AUC.
"""

from __future__ import annotations

import functools
import io
import math
from fnmatch import fnmatch
from typing import Any, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ...errors import ConfigError
from ...evaluation.metrics import pick_headline
from .formatting import _fmt1, goal_label
from .summary import NAN, _present, _sections, display_name

_PALETTE = ["#1f77b4", "#ff7f0e", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
_ORIGINAL_COLOR, _REFERENCE_COLOR = "#7f7f7f", "#2ca02c"


def _colors(rows: Sequence[dict]) -> dict[str, str]:
    names = sorted({display_name(w) for w in rows if w["role"] == "unlearn"})
    colors = {n: _PALETTE[i % len(_PALETTE)] for i, n in enumerate(names)}
    for w in rows:
        if w["role"] == "original":
            colors[display_name(w)] = _ORIGINAL_COLOR
        elif w["role"] == "reference":
            colors[display_name(w)] = _REFERENCE_COLOR
    return colors


def _axes_grid(n: int, width: float = 4.8, height: float = 3.9):
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def _plot_sections(rows: Sequence[dict], needed: Sequence[str]) -> dict[str, list[dict]]:
    ok = [w for w in rows if w["status"] == "ok"]
    secs = {
        t: ws
        for t, ws in _sections(ok).items()
        if any(all(math.isfinite(w["mean"].get(m, NAN)) for m in needed) for w in ws)
    }
    if not secs:
        raise ConfigError(f"nothing to plot: no run has {' and '.join(needed)}; compute those metrics or pick others")
    return secs


def _err(w: dict, m: str) -> float:
    s = w["std"].get(m, NAN)
    return s if math.isfinite(s) else 0.0


def _markers(rows: Sequence[dict]) -> dict[str, str]:
    """A marker per method, cycling once the palette's colours are used up."""
    names = sorted({display_name(w) for w in rows if w["role"] == "unlearn"})
    return {n: "o^DvPXph<>"[(i // len(_PALETTE)) % 10] for i, n in enumerate(names)}


def plot_tradeoff(rows: Sequence[dict], x: str = "gap_acc_forget", y: str = "acc_test") -> Figure:
    """Forgetting vs utility: per scenario, ``x`` (default ``gap_acc_forget``, lower is
    better) against ``y`` (default ``acc_test``, higher is better), mean ± std over seeds.
    The reference is a green star, the original a grey square; methods are named in
    the legend below the panels (colours are the same in every panel)."""
    secs = _plot_sections(rows, [x, y])
    colors, markers = _colors(rows), _markers(rows)
    fig, axes = _axes_grid(len(secs))
    handles: dict[str, Any] = {}
    for ax, (title, ws) in zip(axes, secs.items()):
        for w in ws:
            mx, my = w["mean"].get(x, NAN), w["mean"].get(y, NAN)
            if not (math.isfinite(mx) and math.isfinite(my)):
                continue
            name = display_name(w)
            marker, size = {"reference": ("*", 15), "original": ("s", 8)}.get(w["role"], (markers.get(name, "o"), 8))
            handles[name] = ax.errorbar(
                mx,
                my,
                xerr=_err(w, x),
                yerr=_err(w, y),
                fmt=marker,
                ms=size,
                color=colors[name],
                capsize=3,
                zorder=3,
                alpha=0.8,
            )
        ax.set_title(title, fontsize=11)
        ax.set_xlabel(f"{x}{goal_label(x)}")
        ax.set_ylabel(f"{y}{goal_label(y)}")
        ax.grid(alpha=0.3)
        ax.margins(x=0.1, y=0.1)
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="outside lower center",
        ncols=_legend_cols(fig, len(handles)),
        fontsize=9,
        frameon=False,
    )
    return fig


def plot_lm_tradeoff(rows: Sequence[dict]) -> Figure:
    """Language models, after TOFU's figure: forget quality (KS-test p-value against the
    reference, log scale, higher is better) against model utility, per forget split."""
    from matplotlib.ticker import LogLocator, NullFormatter

    floor = 1e-12  # p-values below this (or underflowing to 0) are drawn at it
    clipped = [
        dict(w, mean={**w["mean"], "forget_quality": max(w["mean"]["forget_quality"], floor)})
        if math.isfinite(w["mean"].get("forget_quality", NAN))
        else w
        for w in rows
    ]
    fig = plot_tradeoff(clipped, "forget_quality", "model_utility")
    for ax in fig.axes:
        if ax.has_data():
            ax.set_xscale("log")
            ax.set_xlim(floor / 3, 3)
            ax.xaxis.set_major_locator(LogLocator(base=10, numticks=8))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.axvline(0.05, color="#999999", lw=0.8, ls="--", zorder=1)
    return fig


def _legend_cols(fig: Figure, n: int) -> int:
    """Legend columns that fit the figure's width (about 1.8 inches per entry)."""
    return max(1, min(n, 6, int(fig.get_figwidth() // 1.8)))


def _bars(ax, names, means, stds, colors, log: bool = False):
    lo = [min(s, m * 0.9) if log else s for m, s in zip(means, stds)]
    ax.bar(
        range(len(names)),
        means,
        yerr=[lo, stds],
        capsize=3,
        color=[colors[n] for n in names],
        edgecolor="black",
        linewidth=0.5,
        zorder=2,
    )
    ax.set_xticks(
        range(len(names)),
        names,
        rotation=30 if len(names) > 3 else 0,
        ha="right" if len(names) > 3 else "center",
        fontsize=8,
    )
    ax.grid(axis="y", alpha=0.3, zorder=0)


def plot_cost(rows: Sequence[dict], metric: str = "cost_ratio_time") -> Figure:
    """Cost: per scenario, a bar of ``metric`` (default ``cost_ratio_time``) per method on a
    log scale, with the reference (retrain = 1x) as a dashed line and each bar's value."""
    secs = _plot_sections(rows, [metric])
    colors = _colors(rows)
    fig, axes = _axes_grid(len(secs))
    for ax, (title, ws) in zip(axes, secs.items()):
        ws = [w for w in ws if math.isfinite(w["mean"].get(metric, NAN)) and w["mean"][metric] > 0]
        names = [display_name(w) for w in ws]
        means = [w["mean"][metric] for w in ws]
        _bars(ax, names, means, [_err(w, metric) for w in ws], colors, log=True)
        ax.set_yscale("log")
        ax.axhline(1.0, color=_REFERENCE_COLOR, ls="--", lw=1.2, zorder=1)
        for i, (v, w) in enumerate(zip(means, ws)):
            ax.annotate(
                _fmt1(metric, v),
                (i, v + _err(w, metric)),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_ylim(min(means + [1.0]) / 3, max(means + [1.0]) * 3)
        ax.set_title(title, fontsize=11)
        ax.set_ylabel(f"{metric}  (log; lower is cheaper)")
    return fig


def _privacy_default(rows: Sequence[dict]) -> list[str]:
    """The headline membership AUC present in ``rows`` (else the first ``mia_*_auc`` present)."""
    present = {m for w in rows for m, v in w["mean"].items() if math.isfinite(v)}
    picked = [m for m in pick_headline(present) if fnmatch(m, "mia_*_auc")]
    return (picked or _present(rows, "mia_*_auc"))[:1]


def plot_privacy(rows: Sequence[dict], metrics: Sequence[str] | None = None) -> Figure:
    """Privacy: per scenario, MIA AUC per method as bars (grouped when several ``metrics``;
    default: the catalogue's headline membership AUC present), with chance (0.5) dashed and
    the reference's value dotted."""
    metrics = list(metrics or _privacy_default(rows))
    if not metrics:
        raise ConfigError("nothing to plot: no run has an mia_*_auc metric; compute one first")
    secs = _plot_sections(rows, metrics[:1])
    fig, axes = _axes_grid(len(secs))
    width = 0.8 / len(metrics)
    for ax, (title, ws) in zip(axes, secs.items()):
        names = [display_name(w) for w in ws]
        for j, m in enumerate(metrics):
            color = _PALETTE[j % len(_PALETTE)]
            xs = [i - 0.4 + width * (j + 0.5) for i in range(len(ws))]
            ax.bar(
                xs,
                [w["mean"].get(m, NAN) for w in ws],
                width,
                yerr=[_err(w, m) for w in ws],
                capsize=2,
                color=color,
                edgecolor="black",
                linewidth=0.5,
                label=m,
                zorder=2,
            )
            ref = [w["mean"].get(m, NAN) for w in ws if w["role"] == "reference"]
            if ref and math.isfinite(ref[0]):
                ax.axhline(ref[0], color=color, ls=":", lw=1.6, zorder=1)
        ax.axhline(0.5, color="black", ls="--", lw=1, zorder=1)
        ax.set_xticks(
            range(len(ws)),
            names,
            rotation=30 if len(ws) > 3 else 0,
            ha="right" if len(ws) > 3 else "center",
            fontsize=8,
        )
        ax.set_ylim(0, 1.08)
        ax.grid(axis="y", alpha=0.3, zorder=0)
        ax.set_title(title, fontsize=11)
        ax.set_ylabel("MIA AUC  (ideal: the reference's)")
    handles = [Patch(facecolor=_PALETTE[j % len(_PALETTE)], edgecolor="black", label=m) for j, m in enumerate(metrics)]
    handles += [
        Line2D([], [], color="black", ls="--", label="chance (0.5)"),
        Line2D([], [], color="grey", ls=":", lw=1.6, label="reference's value (attack's colour)"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9, frameon=False)
    return fig


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (no metadata beyond the image)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


#: key -> (title, function, metric patterns it needs, caption)
PLOTS = {
    "tradeoff": (
        "Forgetting vs utility",
        plot_tradeoff,
        ["gap_acc_forget", "acc_test"],
        "Each point is a method (mean ± std over seeds). Ideal: left (no gap to the "
        "reference on the forget set) and high (test accuracy kept); the reference "
        "(green star) sits at gap 0.",
    ),
    "lm_tradeoff": (
        "Forget quality vs model utility",
        plot_lm_tradeoff,
        ["forget_quality", "model_utility"],
        "Language models, as in TOFU: each point is a method (mean ± std over seeds). Ideal: "
        "right (forget quality, a KS-test p-value against the retrained reference; the dashed "
        "line is p = 0.05) and high (model utility kept); the reference sits at p = 1.",
    ),
    "cost": (
        "Cost",
        plot_cost,
        ["cost_ratio_time"],
        "Wall time relative to retraining (log scale). Below the dashed 1x line is "
        "cheaper than retraining from scratch.",
    ),
    "privacy": (
        "Privacy (membership inference)",
        plot_privacy,
        ["mia_*_auc"],
        "Attack AUC on forget vs holdout. Ideal: the reference's value (dotted); "
        "0.5 (dashed) means the attack cannot tell forget data from unseen data.",
    ),
}


#: the plot kinds a modality's figures may name (``REPORT_PLOTS`` in its ``metrics`` module)
PLOT_KINDS = {"tradeoff": plot_tradeoff, "cost": plot_cost, "privacy": plot_privacy}


def modality_plots(modalities: Sequence[str] | None) -> dict:
    """The figures the reported runs' modalities declare over their own metric keys, as
    entries like :data:`PLOTS`'s: ``REPORT_PLOTS`` in ``<package>.metrics``, ``key ->
    {title, kind (a key of PLOT_KINDS), args (the plot function's metric arguments),
    caption}``. The report draws each where all its metrics are present, as it does the
    built-in ones; this package keeps no metric name of a modality's."""
    from ...modalities import get_modality

    out: dict = {}
    for name in modalities or ():
        try:
            declared = getattr(get_modality(name).part("metrics"), "REPORT_PLOTS", {})
        except (ConfigError, ModuleNotFoundError):
            continue
        for key, p in declared.items():
            if p["kind"] not in PLOT_KINDS:
                raise ConfigError(
                    f"modality {name!r}: plot {key!r} has kind {p['kind']!r}, not one of {list(PLOT_KINDS)}"
                )
            args = dict(p.get("args") or {})
            needed = [m for v in args.values() for m in (v if isinstance(v, (list, tuple)) else [v])]
            out[key] = (p["title"], functools.partial(PLOT_KINDS[p["kind"]], **args), needed, p["caption"])
    return out
