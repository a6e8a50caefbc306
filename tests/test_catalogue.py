"""The metric catalogue is the one place that knows a metric: every output key has a goal,
help text and unit; headline columns and the order come from it; reports read only it."""

from __future__ import annotations

import numpy as np
import pytest

from unlearnkit.errors import ConfigError
from unlearnkit.evaluation import metrics as C
from unlearnkit.evaluation.metrics import (
    DECLARED,
    GOALS,
    METRICS,
    SHARED,
    UNITS,
    EvalInputs,
    compute_metrics,
    headline_columns,
    headline_metrics,
    list_metrics,
    metric_goal,
    metric_help,
    metric_ideal,
    metric_unit,
    order_metrics,
    output_order,
    pick_headline,
    register_metric,
    register_outputs,
    register_shared,
)
from unlearnkit.modalities import list_modalities
from unlearnkit.orchestration.records import RunRecord
from unlearnkit.orchestration.report import default_metrics, format_value, summarise, task_label, write_report

MODALITIES = ("classifier", "causal_lm")


def all_specs():
    return list(METRICS.values()) + list(DECLARED.values())


@pytest.fixture
def scratch():
    """Registrations made in a test are removed afterwards."""
    metrics, declared, shared = dict(METRICS.items()), dict(DECLARED), dict(SHARED)
    yield
    for name in [n for n in METRICS if n not in metrics]:
        del METRICS[name]
    for name, spec in metrics.items():
        dict.__setitem__(METRICS, name, spec)
    DECLARED.clear()
    DECLARED.update(declared)
    SHARED.clear()
    SHARED.update(shared)


# --------------------------------------------------------------------------- every key described
def test_every_output_key_has_a_goal_help_ideal_and_unit():
    assert {m.name for m in list_modalities()} >= set(MODALITIES)
    for spec in all_specs():
        assert spec.outputs, spec.name
        for key, goal in spec.outputs.items():
            assert goal in GOALS, (spec.name, key)
            assert spec.help_for(key).strip(), (spec.name, key)
            assert spec.ideal_for(key).strip(), (spec.name, key)
            assert spec.units.get(key, "") in UNITS, (spec.name, key)
            for mod in spec.modalities:
                assert metric_goal(key, mod) in GOALS and metric_help(key, mod) and metric_ideal(key, mod)


def test_a_key_means_one_goal_and_one_unit_everywhere():
    goals: dict[str, set] = {}
    units: dict[str, set] = {}
    for spec in all_specs():
        for key, goal in spec.outputs.items():
            goals.setdefault(key, set()).add(goal)
            units.setdefault(key, set()).add(spec.units.get(key, ""))
    assert {k: g for k, g in goals.items() if len(g) > 1} == {}
    assert {k: u for k, u in units.items() if len(u) > 1} == {}


def test_declared_shared_quantities_exist():
    """A declared share is a registered shared quantity or a memo key its module uses."""
    import inspect

    for spec in all_specs():
        assert spec.headline_group is None or spec.headline, spec.name
        for name in spec.shares:
            src = inspect.getsource(inspect.getmodule(spec.fn))
            assert name in SHARED or f'memo("{name}"' in src, (spec.name, name)


def test_privacy_report_keys_are_in_the_catalogue_with_the_same_goals():
    from unlearnkit.evaluation.shadow import PRIVACY_OUTPUTS

    assert {k: metric_goal(k, "classifier") for k in PRIVACY_OUTPUTS} == PRIVACY_OUTPUTS
    assert metric_unit("privacy_wall_time_s") == "seconds"


# --------------------------------------------------------------------------- headline and order
@pytest.mark.parametrize("modality", MODALITIES)
def test_headline_metrics_are_ordered_keys_of_that_modality(modality):
    heads = headline_metrics(modality)
    order = output_order(modality)
    assert heads and len(heads) == len(set(heads))
    assert set(heads) <= set(order)  # only keys some metric of it outputs
    assert heads == [k for k in order if k in heads]  # in catalogue order
    assert "cost_ratio_time" in heads and heads[-1] == "cost_ratio_time"
    cols = headline_columns(modality)
    assert [k for c in cols for k in c] == heads and all(cols)


def test_headline_of_each_modality():
    cls = headline_metrics("classifier")
    assert cls[:4] == ["acc_forget", "acc_retain", "acc_test", "gap_acc_forget"]
    assert {"mia_lr_auc", "forget_quality", "js_forget"} <= set(cls)
    assert not {"model_utility", "privleak"} & set(cls)
    # one membership AUC column: the learned attack where it has a value, else the loss attack
    assert pick_headline({"mia_lr_auc", "mia_loss_auc", "acc_test"}, "classifier") == ["acc_test", "mia_lr_auc"]
    assert pick_headline({"mia_loss_auc", "acc_test"}, "classifier") == ["acc_test", "mia_loss_auc"]
    assert "forget_quality" in headline_metrics("causal_lm")


def test_output_order_and_order_metrics():
    order = output_order()
    assert (
        order.index("acc_forget")
        < order.index("gap_acc_forget")
        < order.index("mia_lr_auc")
        < order.index("js_forget")
        < order.index("cost_ratio_time")
        < order.index("wall_time_s")
    )
    assert order_metrics(["zz_unknown", "wall_time_s", "acc_test", "aa_unknown", "acc_test"]) == [
        "acc_test",
        "wall_time_s",
        "aa_unknown",
        "zz_unknown",
    ]


def test_list_metrics_carries_the_new_fields():
    listed = {m["name"]: m for m in list_metrics()}
    assert set(listed) == set(METRICS)
    acc = listed["accuracy"]
    assert acc["help"]["acc_test"] == metric_help("acc_test") and "ideal" in acc
    assert acc["headline"] == ["acc_forget", "acc_retain", "acc_test"] and acc["units"]["acc_test"] == ""
    assert listed["cost_ratio"]["units"]["cost_ratio_time"] == "ratio"
    assert {"headline_group", "order", "shares", "computed_by"} <= set(acc)
    every = {m["name"]: m for m in list_metrics(declared=True)}
    assert every["privacy_report"]["computed_by"] and "privacy_report" not in listed


# --------------------------------------------------------------------------- registering
def test_old_register_metric_calls_still_work_with_defaults(scratch):
    @register_metric("zz_old_style", {"zz_old": "lower"}, "a citation", (), (), ("classifier",))
    def zz_old_style(inputs):
        """An old-style metric with no help of its own.

        More text."""
        return {"zz_old": 1.0}

    spec = METRICS["zz_old_style"]
    assert spec.headline == () and spec.units == {} and spec.order == C.DEFAULT_ORDER
    assert metric_help("zz_old") == "An old-style metric with no help of its own."
    assert metric_ideal("zz_old") == "low" and metric_goal("zz_old") == "lower"
    assert output_order()[-1] == "zz_old"


def test_register_metric_refuses_keys_it_does_not_output(scratch):
    for kw in ({"help": {"nope": "x"}}, {"headline": ["nope"]}, {"units": {"zz": "furlongs"}}):
        with pytest.raises(ConfigError):
            register_metric("zz_bad", {"zz": "higher"}, "c", **kw)(lambda i: {"zz": 1.0})
    with pytest.raises(ConfigError, match="goals"):
        register_metric("zz_bad", {"zz": "best"}, "c")


def test_shared_quantity_is_computed_once_per_model(scratch):
    calls = []

    @register_shared("zz_sum")
    def zz_sum(table, inputs):
        """Sum of the forget losses."""
        calls.append(1)
        return float(np.sum(table["forget"]))

    for name in ("zz_a", "zz_b"):
        register_metric(name, {name: "higher"}, "c", shares=("zz_sum",))(
            lambda inputs, name=name: {name: inputs.shared("zz_sum")}
        )
    inputs = EvalInputs({"forget": np.array([1.0, 2.0])}, {"forget": np.array([5.0])})
    out = compute_metrics(inputs, ["zz_a", "zz_b"])
    assert out == {"zz_a": 3.0, "zz_b": 3.0} and len(calls) == 1
    assert inputs.shared("zz_sum", of="reference") == 5.0 and len(calls) == 2
    with pytest.raises(ConfigError, match="no shared quantity"):
        inputs.shared("zz_missing")


def test_declared_outputs_are_described_but_never_computed(scratch):
    register_outputs(
        "zz_external",
        {"zz_ext": "higher"},
        "Computed by some other tool.",
        "c",
        computed_by="a test",
        units={"zz_ext": "count"},
    )
    assert metric_goal("zz_ext") == "higher" and metric_help("zz_ext") == "Computed by some other tool."
    assert format_value("zz_ext", 1234.0) == "1,234"
    assert "zz_ext" not in compute_metrics(EvalInputs({"forget": np.zeros(1)}, modality="zz_none"))


# --------------------------------------------------------------------------- reports read the catalogue
SPEC = {"dataset": "digits", "model": "mlp", "seed": 0}


def _records(**extra):
    out = []
    for kind, method, acc in (("reference", "retrain", 0.9), ("unlearn", "finetune", 0.8)):
        for seed in (0, 1):
            out.append(
                RunRecord(
                    kind=kind,
                    task_key="t",
                    method=method,
                    seed=seed,
                    task_spec=SPEC,
                    scenario={"kind": "class", "label": 3},
                    metrics={"acc_test": acc, "zz_new_score": 0.25 + seed, **extra},
                    id=f"{method}{seed}",
                )
            )
    return out


def test_a_new_headline_metric_appears_in_the_report(scratch, tmp_path):
    rows = summarise(_records())
    assert default_metrics(rows) == ["acc_test"]  # not yet in the catalogue: not a headline

    @register_metric(
        "zz_new",
        {"zz_new_score": "lower"},
        "a citation",
        headline=True,
        order=10.5,
        help={"zz_new_score": ("a brand-new score of the forget set", "exactly 0.25")},
        units={"zz_new_score": "ratio"},
    )
    def zz_new(inputs):
        """A new metric."""
        return {"zz_new_score": 0.0}

    assert "zz_new_score" in headline_metrics("classifier")
    assert default_metrics(rows) == ["acc_test", "zz_new_score"]
    paths = write_report(_records(), tmp_path)
    md = paths["markdown"].read_text(encoding="utf-8")
    results = md.split("## Results")[1].split("## Plots")[0]
    assert "| method | seeds | acc_test | zz_new_score |" in results
    assert "0.75x ± 0.71" in results  # the catalogue's unit: a ratio
    assert "| zz_new_score | a brand-new score of the forget set | exactly 0.25 |" in md
    page = paths["html"].read_text(encoding="utf-8")
    assert "a brand-new score of the forget set" in page and "<th>zz_new_score</th>" in page


def test_report_legend_and_order_follow_the_catalogue(scratch, tmp_path):
    register_metric("zz_first", {"zz_new_score": "higher"}, "c", order=1, help="the first score of all")(
        lambda i: {"zz_new_score": 0.0}
    )
    paths = write_report(_records(steps=10.0), tmp_path)
    md = paths["markdown"].read_text(encoding="utf-8")
    legend = md.split("## How to read this")[1].split("## Results")[0]
    assert legend.index("zz_new_score") < legend.index("acc_test") < legend.index("| steps |")
    assert "| zz_new_score | the first score of all | high |" in legend
    assert "| steps | optimiser steps | low |" in legend


def test_task_labels_come_from_the_modality():
    assert task_label(SPEC) == "digits · mlp"
    lm = {"modality": "causal_lm", "source": "/data/tofu", "model": {"layers": 2, "hidden": 32}}
    assert task_label(lm) == "tofu · llama 2x32"
    assert task_label({"modality": "no_such_modality", "dataset": "x"}) == "x"


def test_legend_names_the_modality_where_a_key_means_different_things():
    from unlearnkit.orchestration.report import legend_rows

    [(key, what, ideal)] = legend_rows(["forget_quality"], ["classifier", "causal_lm"])
    assert key == "forget_quality" and what.startswith("classifier: ") and "; causal_lm: " in what
    assert legend_rows(["acc_test"], ["classifier", "causal_lm"]) == [
        ["acc_test", metric_help("acc_test"), metric_ideal("acc_test")]
    ]
    assert legend_rows(["zz_nobody"])[0][1] == "(not in the metric catalogue)"
