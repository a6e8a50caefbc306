"""The report files: Markdown (plots linked as PNGs beside it), a self-contained HTML
page (inline CSS, plots as base64 PNGs, no script) and JSON (the summary rows).

Every description of a metric ("how to read this") comes from the metric catalogue
(:func:`~unlearnkit.evaluation.metrics.metric_help` and ``metric_ideal``), for the
modalities of the reported runs.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from ...evaluation.metrics import metric_help, metric_ideal
from ...utils import atomic_write, stable_hash
from ..records import RunRecord, now_iso
from .formatting import _grid, _md_cell, markdown_table
from .plots import PLOTS, figure_png, modality_plots
from .summary import (
    _as_records,
    _check_metrics,
    _present,
    default_metrics,
    display_name,
    modalities_of,
    order_metrics,
    record_scenario_label,
    summarise,
)


def legend_rows(metrics: Iterable[str], modalities: Sequence[str] | None = None) -> list[list[str]]:
    """``[metric, what it is, ideal]`` per metric, from the catalogue. Where the report's
    modalities describe a key differently (e.g. ``forget_quality``), each is given,
    prefixed by its modality."""
    out = []
    for m in metrics:
        per = {}
        for mod in modalities or [None]:
            if help_text := metric_help(m, mod):
                per.setdefault((help_text, metric_ideal(m, mod)), mod)
        if not per and (help_text := metric_help(m)):
            per[(help_text, metric_ideal(m))] = None
        if not per:
            out.append([m, "(not in the metric catalogue)", "see the code that computed it"])
        elif len(per) == 1:
            out.append([m, *next(iter(per))])
        else:
            out.append(
                [
                    m,
                    "; ".join(f"{mod}: {h}" for (h, _), mod in per.items()),
                    "; ".join(f"{mod}: {i}" for (_, i), mod in per.items()),
                ]
            )
    return out


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _provenance(recs: list[RunRecord]) -> dict:
    specs: dict[str, dict] = {}
    for r in recs:
        spec = {k: v for k, v in (r.task_spec or {}).items() if k != "scenario"}
        specs.setdefault(stable_hash(spec), spec)
    runs = [
        {
            "id": r.id,
            "kind": r.kind,
            "method": r.method,
            "seed": r.seed,
            "scenario": record_scenario_label(r),
            "status": r.status,
            "created_at": r.created_at,
            "artifact": r.artifact or "",
        }
        for r in recs
    ]
    return {
        "task_specs": list(specs.values()),
        "seeds": sorted({r.seed for r in recs}),
        "environment": recs[0].environment or {},
        "runs": runs,
    }


_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1d2330;
max-width:1320px;margin:0 auto;padding:28px 32px 60px;background:#fff}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:36px 0 10px;border-bottom:2px solid #e4e7ee;
padding-bottom:4px}h3{font-size:16px;margin:22px 0 8px}
.meta{color:#5b6475;font-size:13px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13.5px}
th,td{padding:5px 8px;border-bottom:1px solid #e4e7ee;text-align:right;white-space:nowrap}
th{background:#f4f6fa;font-weight:600}th:first-child,td:first-child{text-align:left}
.sd{color:#7a8294;font-size:11.5px}
tr.original td{color:#5b6475;font-style:italic}tr.reference td{background:#eef8ef;font-weight:600}
.scroll{overflow-x:auto}
.failed{color:#a3261b;font-size:13.5px;margin:4px 0}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
pre{background:#f4f6fa;padding:10px 12px;border-radius:6px;overflow-x:auto}
figure{margin:10px 0 24px}figure img{max-width:100%;height:auto;border:1px solid #e4e7ee;border-radius:6px}
figcaption{color:#5b6475;font-size:13px;margin-top:4px}
details{margin:8px 0}summary{cursor:pointer;color:#2b5cab}
.legend td,.legend th{text-align:left;white-space:normal}
"""


def _td(x: Any) -> str:
    """An escaped cell; the ``± std`` part of a value in small grey type."""
    s = html.escape(str(x))
    return s.replace(" ± ", ' <span class="sd">± ', 1) + "</span>" if " ± " in s else s


def _html_table(header: list[str], body: list[list[str]], classes: list[str] | None = None, cls: str = "") -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    classes = classes or [""] * len(body)
    trs = "".join(
        f'<tr class="{html.escape(c)}">' + "".join(f"<td>{_td(x)}</td>" for x in r) + "</tr>"
        for r, c in zip(body, classes)
    )
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table></div>'


def _html_sections(rows, metrics, transpose: bool) -> str:
    out = []
    for title, header, body, roles, failed in _grid(rows, metrics, transpose):
        out.append(f"<h3>{html.escape(title)}</h3>" + _html_table(header, body, roles))
        out += [
            f'<p class="failed"><b>failed</b>: {html.escape(display_name(w))}, seed '
            f"{html.escape(str(w['seeds'][0]))} (run <code>{html.escape(w['run_ids'][0])}</code>): "
            f"{html.escape(w['error'])}</p>"
            for w in failed
        ]
    return "\n".join(out)


def render_html(
    title: str,
    rows: list[dict],
    metrics: list[str],
    all_metrics: list[str],
    plots: dict[str, bytes],
    prov: dict,
    generated: str,
    modalities: Sequence[str] | None = None,
    plot_specs: dict | None = None,
) -> str:
    """The self-contained report page: inline CSS, PNGs as base64 data URIs, no script.
    ``plot_specs``: what names each plot (default :data:`~.plots.PLOTS`)."""
    e = html.escape
    named = PLOTS if plot_specs is None else plot_specs
    n_failed = sum(w["status"] == "failed" for w in rows)
    methods = sorted({w["method"] for w in rows if w["role"] == "unlearn"})
    legend = _html_table(["metric", "what it is", "ideal"], legend_rows(all_metrics, modalities), cls="legend")
    figs = "".join(
        f'<figure><img alt="{e(named[k][0])}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode("ascii")}"><figcaption><b>{e(named[k][0])}.</b> '
        f"{e(named[k][3])}</figcaption></figure>"
        for k, png in plots.items()
    )
    env = _html_table(["key", "value"], [[k, v] for k, v in prov["environment"].items()], cls="legend")
    specs = "".join(f"<pre>{e(json.dumps(s, indent=2, sort_keys=True, default=str))}</pre>" for s in prov["task_specs"])
    run_cols = ["id", "kind", "method", "seed", "scenario", "status", "created_at", "artifact"]
    runs = _html_table(run_cols, [[r[c] for c in run_cols] for r in prov["runs"]], cls="legend")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{e(title)}</h1>
<p class="meta">Generated {e(generated)} · {len(prov["runs"])} runs ({n_failed} failed) ·
methods: {e(", ".join(methods) or "none")} · seeds: {e(", ".join(map(str, prov["seeds"])))}</p>
<p>Every number is the mean over seeds, <code>mean ± std</code> (sample standard deviation) when
there are two or more. The <b>reference</b> (green row) is the model retrained from scratch on the
retain set: the gold standard a method should match. The <b>original</b> (grey, italic) is the model
before unlearning. Accuracies are fractions (0.912 = 91.2%); cost ratios read <code>0.04x</code> =
4% of retraining's cost; <code>–</code> means not computed. Each metric is explained
<a href="#how-to-read">below</a>.</p>
<h2>Results</h2>
{_html_sections(rows, metrics, transpose=False)}
<h2>Plots</h2>
{figs or "<p>No plottable metrics in these runs.</p>"}
<h2 id="how-to-read">How to read this</h2>
{legend}
<h2>All metrics</h2>
<details><summary>Every metric per scenario ({len(all_metrics)} metrics)</summary>
{_html_sections(rows, all_metrics, transpose=True)}
</details>
<h2>Provenance</h2>
<h3>Task</h3>{specs}
<h3>Environment (first run)</h3>{env}
<h3>Runs</h3>
<details><summary>All {len(prov["runs"])} runs</summary>{runs}</details>
</body></html>
"""


def render_markdown(
    title: str,
    rows: list[dict],
    metrics: list[str],
    all_metrics: list[str],
    plot_files: dict[str, str],
    prov: dict,
    generated: str,
    modalities: Sequence[str] | None = None,
    plot_specs: dict | None = None,
) -> str:
    """The Markdown report; plots are linked as PNG files beside it (``plot_specs``: what
    names each, default :data:`~.plots.PLOTS`)."""
    c = _md_cell
    named = PLOTS if plot_specs is None else plot_specs
    legend = ["| metric | what it is | ideal |", "|:---|:---|:---|"]
    legend += [f"| {c(m)} | {c(h)} | {c(i)} |" for m, h, i in legend_rows(all_metrics, modalities)]
    figs = [f"### {c(named[k][0])}\n\n![{c(named[k][0])}]({f})\n\n{c(named[k][3])}" for k, f in plot_files.items()]
    runs = ["| id | kind | method | seed | scenario | status | created_at |", "|" + ":---|" * 7]
    runs += [
        "| "
        + " | ".join(c(str(r[k])) for k in ("id", "kind", "method", "seed", "scenario", "status", "created_at"))
        + " |"
        for r in prov["runs"]
    ]
    env = "\n".join(f"- {c(k)}: {c(str(v))}" for k, v in prov["environment"].items()) or "- (not recorded)"
    specs = "\n\n".join(
        "```json\n" + json.dumps(s, indent=2, sort_keys=True, default=str) + "\n```" for s in prov["task_specs"]
    )
    return (
        "\n\n".join(
            [
                f"# {c(title)}",
                f"Generated {generated} · {len(prov['runs'])} runs · seeds: {', '.join(map(str, prov['seeds']))}",
                "## How to read this",
                "Values are the mean over seeds, `mean ± std` (sample std) with two or more seeds. "
                "The reference is the model retrained on the retain set (the target to match); the "
                "original is the model before unlearning. Accuracies are fractions (0.912 = 91.2%); "
                "cost ratios read `0.04x` = 4% of retraining's cost; `–` = not computed.",
                "\n".join(legend),
                "## Results",
                markdown_table(rows, metrics).rstrip(),
                "## Plots",
                "\n\n".join(figs) or "No plottable metrics in these runs.",
                "## All metrics",
                markdown_table(rows, all_metrics, transpose=True).rstrip(),
                "## Provenance",
                "### Task",
                specs,
                "### Environment (first run)",
                env,
                "### Runs",
                "\n".join(runs),
            ]
        )
        + "\n"
    )


def write_report(
    records: Iterable[RunRecord | dict],
    out_dir: str | Path,
    title: str = "unlearnkit report",
    metrics: list[str] | None = None,
) -> dict[str, Path]:
    """Write ``report.md`` (+ PNG plots beside it), a self-contained ``report.html`` and
    ``report.json`` (the summary rows; NaN as null) into ``out_dir``.

    ``metrics`` are the main tables' columns (default: the headline metrics present);
    every metric is in the "All metrics" section and the JSON. Everything is rendered
    in memory first and each file is written atomically, so a failure leaves no
    half-written file. Returns ``{"markdown", "html", "json", <plot names>...}`` -> path.
    """
    recs = _as_records(records)
    rows = summarise(recs)
    modalities = modalities_of(recs)
    metrics = _check_metrics(recs, metrics) if metrics is not None else default_metrics(rows, modalities or None)
    all_metrics = order_metrics(m for w in rows for m in w["mean"])
    plots: dict[str, bytes] = {}
    named = {**PLOTS, **modality_plots(modalities)}  # a modality's own figures over its metric keys
    for key, (_, fn, needed, _) in named.items():
        if all(_present(rows, pat) for pat in needed):
            fig = fn(rows)
            plots[key] = figure_png(fig)
            fig.clear()
    prov, generated = _provenance(recs), now_iso()
    out = Path(out_dir)
    files = {k: f"{k}.png" for k in plots}
    texts = {
        "markdown": (
            "report.md",
            render_markdown(title, rows, metrics, all_metrics, files, prov, generated, modalities, named),
        ),
        "html": (
            "report.html",
            render_html(title, rows, metrics, all_metrics, plots, prov, generated, modalities, named),
        ),
        "json": (
            "report.json",
            json.dumps(
                _jsonable(
                    {
                        "title": title,
                        "generated_at": generated,
                        "metrics": all_metrics,
                        "rows": rows,
                        "provenance": prov,
                    }
                ),
                indent=2,
                default=str,
            ),
        ),
    }
    paths: dict[str, Path] = {}
    for key, png in plots.items():
        paths[key] = out / files[key]
        with atomic_write(paths[key], "wb") as fh:
            fh.write(png)
    for key, (name, text) in texts.items():
        paths[key] = out / name
        with atomic_write(paths[key], "wb") as fh:
            fh.write(text.encode("utf-8"))
    return paths
