"""Reports: summary rows (means/stds by hand), Markdown cells, self-contained HTML, JSON."""

from __future__ import annotations

import base64
import json
import math
import re

import pytest
from matplotlib.figure import Figure

from unlearnkit.errors import ConfigError
from unlearnkit.orchestration import report
from unlearnkit.orchestration.records import RunRecord
from unlearnkit.orchestration.report import (
    figure_png,
    format_value,
    markdown_table,
    plot_cost,
    plot_privacy,
    plot_tradeoff,
    scenario_label,
    summarise,
    write_report,
)

CLASS3 = {"kind": "class", "label": 3}
RANDOM = {"kind": "random", "fraction": 0.1}
SPEC = {"dataset": "digits", "model": "mlp", "seed": 0}
EVIL = "<script>alert(1)</script>"


def rec(kind, method, seed, scenario, status="ok", error=None, **metrics):
    return RunRecord(
        kind=kind,
        task_key="t",
        method=method,
        seed=seed,
        task_spec=SPEC,
        scenario=scenario,
        metrics=metrics,
        status=status,
        error=error,
        environment={"python": "3.11", "torch": "2.x"},
        id=f"{method[:6]}{seed}{scenario['kind']}",
    )


def records() -> list[RunRecord]:
    """2 scenarios x (original, reference, finetune, scrub) x 2 seeds; one failed scrub run."""
    out = []
    for scen, shift in ((CLASS3, 0.0), (RANDOM, 0.1)):
        for seed, d in ((0, -0.05), (1, 0.05)):
            out += [
                rec(
                    "unlearn",
                    "scrub",
                    seed,
                    scen,
                    acc_test=0.7 + shift + d,
                    gap_acc_forget=0.2,
                    mia_loss_auc=0.6,
                    cost_ratio_time=0.1,
                ),
                rec(
                    "unlearn",
                    "finetune",
                    seed,
                    scen,
                    acc_test=0.85 + shift + d,
                    gap_acc_forget=0.1 + d,
                    mia_loss_auc=0.55 + d,
                    cost_ratio_time=0.04,
                    forget_quality=float("nan"),
                ),
                rec(
                    "reference",
                    "retrain",
                    seed,
                    scen,
                    acc_test=0.9 + shift,
                    gap_acc_forget=0.0,
                    mia_loss_auc=0.5,
                    cost_ratio_time=1.0,
                ),
                rec("train", "original", seed, scen, acc_test=0.92 + shift, gap_acc_forget=0.9, mia_loss_auc=0.8),
            ]
    out.append(rec("unlearn", "scrub", 2, CLASS3, status="failed", error="DivergenceError: loss is nan at step 7"))
    return out


def test_scenario_label():
    assert scenario_label(CLASS3) == "class 3"
    assert scenario_label(RANDOM) == "random 10%"
    assert scenario_label({"kind": "subjects", "subjects": None, "count": 5}) == "5 subjects"
    assert scenario_label({"kind": "subjects", "subjects": ["p1", "p2"], "count": 5}) == "subjects p1, p2"
    assert scenario_label({"kind": "subjects", "subjects": ["p3", "p4"], "count": 2}) == "2 subjects"
    assert scenario_label({"kind": "ids", "ids": ["a", "b", "c"]}) == "3 examples"
    assert scenario_label({"kind": "mislabelled", "fraction": 0.05}) == "mislabelled 5%"
    assert scenario_label({"kind": "client", "client": 4}) == "client client=4"
    assert scenario_label({}) == "unspecified"


def test_summarise_means_stds_and_order():
    rows = summarise(records())
    keys = [(w["scenario"], w["method"], w["status"]) for w in rows]
    assert keys == [
        ("class 3", "original", "ok"),
        ("class 3", "retrain", "ok"),
        ("class 3", "finetune", "ok"),
        ("class 3", "scrub", "ok"),
        ("class 3", "scrub", "failed"),
        ("random 10%", "original", "ok"),
        ("random 10%", "retrain", "ok"),
        ("random 10%", "finetune", "ok"),
        ("random 10%", "scrub", "ok"),
    ]
    by = {(w["scenario"], w["method"], w["status"]): w for w in rows}
    ft = by["random 10%", "finetune", "ok"]
    assert ft["role"] == "unlearn" and ft["n_seeds"] == 2 and ft["seeds"] == [0, 1]
    assert ft["mean"]["acc_test"] == pytest.approx(0.95)  # (0.90 + 1.00) / 2
    assert ft["std"]["acc_test"] == pytest.approx(math.sqrt(0.005))  # sample std of ±0.05
    assert ft["mean"]["gap_acc_forget"] == pytest.approx(0.1)
    assert math.isnan(ft["mean"]["forget_quality"])  # only NaN values -> NaN
    ref = by["class 3", "retrain", "ok"]
    assert ref["role"] == "reference" and ref["std"]["acc_test"] == pytest.approx(0.0)
    assert by["class 3", "original", "ok"]["role"] == "original"
    assert math.isnan(by["class 3", "original", "ok"]["mean"]["cost_ratio_time"])  # missing
    # the failed run is not averaged in: scrub's ok row has its two seeds only
    assert by["class 3", "scrub", "ok"]["n_seeds"] == 2
    failed = by["class 3", "scrub", "failed"]
    assert failed["seeds"] == [2] and "loss is nan" in failed["error"] and failed["mean"] == {}


def test_summarise_single_seed_nan_values_and_variants():
    recs = [
        rec("unlearn", "finetune", 0, CLASS3, acc_test=0.8),
        rec("unlearn", "finetune", 1, CLASS3, acc_test=float("nan")),
        rec("unlearn", "ga", 0, CLASS3, acc_test=0.5),
    ]
    recs[2].params = {"lr": 0.1}
    recs.append(rec("unlearn", "ga", 0, CLASS3, acc_test=0.6))
    recs[3].params = {"lr": 0.01}
    rows = summarise(recs, ["acc_test"])
    ft = rows[0]
    assert ft["mean"]["acc_test"] == pytest.approx(0.8) and math.isnan(ft["std"]["acc_test"])
    assert ft["n_seeds"] == 2  # both runs succeeded; one metric was NaN
    assert [(w["method"], w["variant"]) for w in rows[1:]] == [("ga", "lr=0.01"), ("ga", "lr=0.1")]
    with pytest.raises(ConfigError, match="acc_tset"):
        summarise(recs, ["acc_tset"])
    with pytest.raises(ConfigError, match="no runs"):
        summarise([])


def test_format_value():
    assert format_value("acc_test", 0.85, math.sqrt(0.005)) == "0.850 ± 0.071"
    assert format_value("acc_test", 0.85) == "0.850"
    assert format_value("cost_ratio_time", 0.0412) == "0.04x"
    assert format_value("cost_ratio_time", 0.0041) == "0.004x"
    assert format_value("cost_ratio_time", 1.0, 0.0) == "1.0x ± 0.0"
    assert format_value("steps", 1200.0) == "1,200"
    assert format_value("forget_quality", float("nan")) == "–"
    assert format_value("forget_quality", None) == "–"


def test_markdown_table_cells():
    rows = summarise(records())
    md = markdown_table(rows, ["acc_test", "forget_quality", "cost_ratio_time"])
    assert "### class 3" in md and "### random 10%" in md
    assert "| method | seeds | acc_test | forget_quality | cost_ratio_time |" in md
    assert "| finetune | 2 | 0.950 ± 0.071 | – | 0.04x ± 0.00 |" in md
    assert "| retrain (reference) | 2 | 0.900 ± 0.000 | – | 1.0x ± 0.0 |" in md
    assert "| original | 2 | 0.920 ± 0.000 | – | – |" in md
    assert "**failed**: scrub, seed 2" in md and "loss is nan at step 7" in md
    # reference row before the methods inside each scenario
    sec = md.split("### random 10%")[1]
    assert sec.index("original") < sec.index("retrain") < sec.index("finetune") < sec.index("scrub")
    t = markdown_table(rows, ["acc_test"], transpose=True)
    assert "| metric | original | retrain (reference) | finetune | scrub |" in t


def test_plots_return_figures_and_png():
    rows = summarise(records())
    for fig in (plot_tradeoff(rows), plot_cost(rows), plot_privacy(rows)):
        assert isinstance(fig, Figure)
        assert len([ax for ax in fig.axes if ax.get_visible()]) >= 2  # one panel per scenario
        assert figure_png(fig).startswith(b"\x89PNG\r\n\x1a\n")
    assert plot_cost(rows).axes[0].get_yscale() == "log"
    with pytest.raises(ConfigError, match="nothing to plot"):
        plot_tradeoff(rows, x="js_forget")


def test_write_report_self_contained_escaped(tmp_path):
    recs = records()
    recs.append(
        rec("unlearn", EVIL, 0, CLASS3, acc_test=0.5, gap_acc_forget=0.3, mia_loss_auc=0.7, cost_ratio_time=0.2)
    )
    paths = write_report(recs, tmp_path / "out", title="Report <b>x</b>")
    for key in ("markdown", "html", "json", "tradeoff", "cost", "privacy"):
        assert paths[key].is_file(), key
    assert paths["tradeoff"].read_bytes().startswith(b"\x89PNG")
    md = paths["markdown"].read_text(encoding="utf-8")
    assert "![Forgetting vs utility](tradeoff.png)" in md and "<script>" not in md

    page = paths["html"].read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "Report &lt;b&gt;x&lt;/b&gt;" in page
    refs = [r for r in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page) if not r.startswith("#")]
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs)  # no external file
    assert len(refs) == 3
    for r in refs:
        assert base64.b64decode(r.split(",", 1)[1]).startswith(b"\x89PNG")
    assert "<style>" in page and "<link" not in page
    assert "loss is nan at step 7" in page  # failed run with its error
    assert "How to read this" in page and "forget_quality" in page and "→ 0" in page
    assert "Provenance" in page and "digits" in page and "finetu0class" in page  # spec, run id

    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert [w["method"] for w in data["rows"]][:5] == ["original", "retrain", EVIL, "finetune", "scrub"]
    ft = next(w for w in data["rows"] if w["method"] == "finetune" and w["scenario"] == "class 3")
    assert ft["mean"]["acc_test"] == pytest.approx(0.85) and ft["mean"]["forget_quality"] is None
    assert data["provenance"]["environment"] == {"python": "3.11", "torch": "2.x"}


def test_write_report_nan_only_metric_and_no_plots(tmp_path):
    recs = [
        rec("unlearn", "finetune", 0, CLASS3, js_forget=float("nan")),
        rec("unlearn", "finetune", 1, CLASS3, js_forget=float("nan")),
    ]
    paths = write_report(recs, tmp_path, metrics=["js_forget"])
    assert set(paths) == {"markdown", "html", "json"}  # nothing to plot, no PNGs
    assert "| finetune | 2 | – |" in paths["markdown"].read_text(encoding="utf-8")
    with pytest.raises(ConfigError, match="acc_tset"):
        write_report(recs, tmp_path / "bad", metrics=["acc_tset"])
    assert not (tmp_path / "bad").exists()


def test_write_report_failure_leaves_nothing(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("render failed")

    monkeypatch.setattr(report.html, "render_html", boom)  # write_report lives in report.html
    with pytest.raises(RuntimeError):
        write_report(records(), tmp_path)
    assert list(tmp_path.iterdir()) == []
