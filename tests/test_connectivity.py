"""Mode connectivity: straight line, trained Bezier curve, metrics along a path, `connect` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import unlearnkit as uk
from unlearnkit.engines.loop import TrainConfig
from unlearnkit.errors import ConfigError
from unlearnkit.evaluation.connectivity import (
    barrier,
    evaluate_path,
    fit_bezier,
    interpolate_linear,
)
from unlearnkit.modalities.classifier.adapter import ClassifierAdapter
from unlearnkit.modalities.classifier.scores import score_splits


def bn_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    m.train()
    with torch.no_grad():  # give the running statistics values that differ between models
        for _ in range(3):
            m(torch.randn(32, 4) * (seed + 1) + seed)
    return m.eval()


def same_state(m: nn.Module, ref: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, ref[k]) for k, v in m.state_dict().items())


def test_linear_interpolation_is_exact_at_ends_and_midpoint():
    a, b = bn_net(0), bn_net(1)
    sa = {k: v.clone() for k, v in a.state_dict().items()}
    sb = {k: v.clone() for k, v in b.state_dict().items()}
    assert same_state(interpolate_linear(a, b, 0.0), sa)
    assert same_state(interpolate_linear(a, b, 1.0), sb)
    mid = interpolate_linear(a, b, 0.5).state_dict()
    for k, v in sa.items():  # parameters and running statistics alike
        expect = (v + sb[k]) / 2 if v.is_floating_point() else v
        assert torch.equal(mid[k], expect), k
    assert same_state(a, sa) and same_state(b, sb)  # inputs untouched
    with pytest.raises(ConfigError):
        interpolate_linear(a, nn.Sequential(nn.Linear(4, 3)), 0.5)


def test_batchnorm_statistics_are_recomputed_on_data():
    a, b = bn_net(0), bn_net(1)
    x = torch.randn(300, 4) * 2 + 1  # 2 batches of 256 + 44: the mean is weighted by batch size
    data = uk.ExampleSet.from_tensors(x, torch.zeros(300, dtype=torch.long), num_classes=3)
    m = interpolate_linear(a, b, 0.3, bn_data=data)
    with torch.no_grad():
        h = m[0](x)  # BatchNorm input of the interpolated network
    assert torch.allclose(m[1].running_mean, h.mean(0), atol=1e-5)
    assert not m.training
    # without data the statistics stay interpolated, weights are the same either way
    m2 = interpolate_linear(a, b, 0.3)
    assert torch.equal(m2[0].weight, m[0].weight)
    assert torch.allclose(m2[1].running_mean, 0.7 * a[1].running_mean + 0.3 * b[1].running_mean)


@pytest.fixture(scope="module")
def two_modes():
    """Two MLPs trained independently (different seeds) on the same digits task."""
    task = uk.make_task("digits", "mlp", uk.RandomForget(0.1), seed=0, recipe=TrainConfig(epochs=10))
    other, _ = task.train_from_scratch(task.train, seed=1)
    return task, task.original, other


CURVE_CFG = TrainConfig(epochs=4, lr=1e-3)


def test_bezier_curve_ends_and_trained_control_point(two_modes):
    task, a, b = two_modes
    sa = {k: v.clone() for k, v in a.state_dict().items()}
    curve = fit_bezier(a, b, task.retain, task.adapter, CURVE_CFG, seed=0)
    assert same_state(a, sa)  # the endpoints are not trained
    assert same_state(curve.model_at(0.0), a.state_dict())
    assert same_state(curve.model_at(1.0), b.state_dict())
    assert [id(p) for p in curve.parameters()] == [id(p) for p in curve.theta]  # theta alone is trained
    assert curve.fit_stats.steps == int(np.ceil(len(task.retain) / CURVE_CFG.batch_size)) * 4
    assert curve.fit_stats.examples_backward == 4 * len(task.retain)
    # there is a barrier on the straight line; the trained curve's midpoint lies far below it
    ts = [0.0, 0.5, 1.0]
    lin = evaluate_path(lambda t: interpolate_linear(a, b, t), task, ts)
    bez = evaluate_path(curve, task, ts)
    ends = max(lin[0]["loss_retain"], lin[2]["loss_retain"])
    assert lin[1]["loss_retain"] > 3 * ends
    assert bez[1]["loss_retain"] < 0.5 * lin[1]["loss_retain"]
    assert barrier(bez) < 0.5 * barrier(lin)
    assert bez[1]["acc_test"] > lin[1]["acc_test"] + 0.1
    # the curve is evaluated without copying the network: gradients reach theta
    x = task.retain.inputs[:8]
    curve(0.5, x).sum().backward()
    assert all(th.grad is not None for th in curve.theta)


def test_bezier_fit_is_deterministic_under_seed(two_modes):
    task, a, b = two_modes
    cfg = TrainConfig(epochs=1, max_steps=10, lr=1e-3)
    thetas = [
        torch.cat([p.detach().flatten() for p in fit_bezier(a, b, task.retain, task.adapter, cfg, seed=s).theta])
        for s in (3, 3, 4)
    ]
    assert torch.equal(thetas[0], thetas[1])
    assert not torch.equal(thetas[0], thetas[2])
    mid = torch.cat([((pa + pb) / 2).flatten() for pa, pb in zip(a.parameters(), b.parameters())])
    assert not torch.equal(thetas[0], mid)  # the control point moved from its initial midpoint


def test_bezier_curve_with_batchnorm_recomputes_statistics():
    a, b = bn_net(0), bn_net(1)
    x = torch.randn(200, 4)
    data = uk.ExampleSet.from_tensors(x, (x[:, 0] > 0).long(), num_classes=3)
    curve = fit_bezier(a, b, data, ClassifierAdapter(3), TrainConfig(epochs=1, batch_size=50), seed=0)
    assert torch.equal(curve.abuf_0, a[1].running_mean)  # the endpoints' statistics are kept
    m = curve.model_at(0.5, bn_data=data)
    with torch.no_grad():
        assert torch.allclose(m[1].running_mean, m[0](x).mean(0), atol=1e-5)


def test_evaluate_path_returns_metrics_per_t(two_modes):
    task, a, b = two_modes
    ref_scores = score_splits(b, task)
    ts = np.linspace(0, 1, 4)
    pts = evaluate_path(lambda t: interpolate_linear(a, b, t), task, ts, reference_scores=ref_scores)
    assert [p["t"] for p in pts] == pytest.approx(list(ts))
    keys = {
        "acc_forget",
        "acc_retain",
        "acc_test",
        "loss_forget",
        "loss_retain",
        "loss_test",
        "mia_lr_auc",
        "js_forget",
        "js_test",
    }
    assert all(keys <= set(p) for p in pts)
    sa = score_splits(a, task)
    assert pts[0]["acc_forget"] == sa["forget"].accuracy()
    assert pts[0]["loss_test"] == pytest.approx(sa["test"].loss.mean())
    assert pts[-1]["js_forget"] == pytest.approx(0.0, abs=1e-9)  # b is its own reference
    assert pts[0]["js_forget"] > 0.01
    assert "js_forget" not in evaluate_path(lambda t: a, task, [0.0])[0]  # no reference: no JS
    with pytest.raises(ConfigError):
        evaluate_path(lambda t: a, task, [])


def test_barrier_is_the_rise_above_the_chord():
    pts = [{"t": t, "loss_retain": v} for t, v in [(0, 1.0), (0.5, 4.0), (1, 3.0)]]
    assert barrier(pts) == pytest.approx(2.0)  # 4 - (1 + 3) / 2
    assert barrier([{"t": 0, "x": 1.0}, {"t": 1, "x": 0.0}], "x") == 0.0


# ---------------------------------------------------------------------------- CLI


def uk_cli(*args: str, home) -> subprocess.CompletedProcess:
    """The CLI as a user runs it: ``python -m unlearnkit ...`` in a subprocess."""
    cmd = [sys.executable, "-m", "unlearnkit", *args, "--home", str(home)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    if p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """The console-script entry point, in this process (cheaper than a subprocess)."""
    from unlearnkit.cli import main

    monkeypatch.setattr(sys, "argv", ["unlearnkit", *args])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code or 0
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.mark.timeout(600)
def test_connect_cli_writes_plot_and_values(tmp_path, monkeypatch, capsys):
    home, out = tmp_path / "home", tmp_path / "out"
    run = json.loads(uk_cli("train", "--epochs", "3", "--json", home=home).stdout)["run_id"]
    un = json.loads(
        uk_cli(
            "unlearn",
            "--from",
            run,
            "--scenario",
            "class:3",
            "--method",
            "finetune",
            "-p",
            "epochs=1",
            "--json",
            home=home,
        ).stdout
    )["run_id"]
    text = uk_cli(
        "connect", un, "--to", "reference", "--points", "3", "--steps", "30", "--out", str(out), home=home
    ).stdout
    png, values = out / f"connect-{un}-reference.png", out / f"connect-{un}-reference.json"
    assert f"plot: {png}" in text and f"values: {values}" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads(values.read_text())
    assert doc["plot"] == str(png) and doc["model_b"] == "reference"
    assert set(doc["curves"]) == {"linear", "bezier"} and doc["bezier_fit"]["steps"] == 30
    for pts in doc["curves"].values():
        assert [p["t"] for p in pts] == [0.0, 0.5, 1.0]
        assert {"acc_forget", "acc_retain", "acc_test", "loss_retain", "mia_lr_auc", "js_forget"} <= set(pts[0])
        assert pts[-1]["js_forget"] == pytest.approx(0.0, abs=1e-9)  # t = 1 is the reference itself
    lin, bez = doc["curves"]["linear"], doc["curves"]["bezier"]
    assert lin[0]["acc_forget"] == bez[0]["acc_forget"] and lin[-1]["loss_test"] == bez[-1]["loss_test"]
    assert set(doc["barrier"]["bezier"]) == {"loss_forget", "loss_retain", "loss_test"}
    # `original` names RUN_A's original; --json prints the document that was written
    code, stdout, _ = run_main(
        monkeypatch,
        capsys,
        "connect",
        un,
        "original",
        "--curve",
        "linear",
        "--points",
        "2",
        "--out",
        str(out),
        "--json",
        "--home",
        str(home),
    )
    orig = json.loads(stdout)
    assert code == 0 and orig == json.loads((out / f"connect-{un}-original.json").read_text())
    assert list(orig["curves"]) == ["linear"] and orig["curves"]["linear"][-1]["acc_forget"] > 0.8
    # a run on another task, or muddled flags: one error line, exit status 2
    code, stdout, _ = run_main(
        monkeypatch, capsys, "train", "--epochs", "1", "--seed", "1", "--json", "--home", str(home)
    )
    other = json.loads(stdout)["run_id"]
    for bad in (
        [un, other],
        [un, "reference", "--to", "original"],
        [un],
        [un, "--to", "reference", "--curve", "spline"],
    ):
        code, _, err = run_main(monkeypatch, capsys, "connect", *bad, "--home", str(home))
        assert code == 2 and err.startswith("error:") and err.count("\n") == 1, (bad, err)
    assert "different tasks" in run_main(monkeypatch, capsys, "connect", un, other, "--home", str(home))[2]
