"""Data-parallel loop (engines/distributed.py): two gloo CPU processes give the one-process
result (parameters within float reduction order, the same cost counts)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from unlearnkit.data.scenarios import RandomForget
from unlearnkit.engines import distributed
from unlearnkit.engines.loop import TrainConfig, cross_entropy_objective, run_loop
from unlearnkit.errors import ConfigError
from unlearnkit.methods import get_method
from unlearnkit.modalities.classifier.task import make_task

#: float32 sums in another order (two share means weighted and added by all_reduce) differ from
#: the one-process mean in the last bits, and Adam's first steps from a fresh init amplify that:
#: measured 3e-8 (graddiff), 1e-7 (finetune), 2e-7 (train) and 3.3e-6 (the stopped run, 5 Adam
#: steps from init) as the largest parameter difference
ATOL = 2e-5

# 96 training rows in batches of 25 (25, 25, 25, 21): shares of 12 and 13 rows, 10 and 11,
# so the one-stream weighting by share is exercised; retain 86 / forget 10 split evenly
TRAIN = TrainConfig(epochs=2, batch_size=25, lr=1e-2)


def _task(original_state=None):
    task = make_task("iris", "mlp", RandomForget(0.1), seed=0, device="cpu", recipe=TrainConfig(epochs=0))
    if original_state is not None:
        task.original.load_state_dict(original_state)
    return task


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _counts(stats) -> tuple[int, int, int]:
    return stats.steps, stats.examples_forward, stats.examples_backward


def _runs(original_state) -> dict:
    """Train a model from scratch, unlearn with a one-stream method (finetune) and a two-stream
    one with a frozen reference whose passes are counted (graddiff, KL retain), and train with a
    callback that stops on rank 0 only (every rank must stop with it)."""
    task = _task(original_state)
    model = task.model_factory(0)
    start = _state(model)
    stats = run_loop(model, cross_entropy_objective(task.adapter), {"train": task.train}, TRAIN, seed=0)
    ft = get_method("finetune", epochs=2, batch_size=32, lr=1e-2).unlearn(task, seed=0)
    # SGD here: the KL to a frozen copy of the model has a zero gradient at the first step, and
    # Adam divides by the gradient's own size, turning rounding noise (1e-10 on one path, 0 on
    # the other) into steps of the full learning rate on such weights; SGD keeps it at 1e-10
    gd = get_method("graddiff", max_steps=8, batch_size=16, retain_loss="kl", optimizer="sgd", lr=0.05)
    gd = gd.unlearn(task, seed=0)
    rank0 = not dist.is_initialized() or dist.get_rank() == 0
    stopped_model = task.model_factory(1)
    stopped = run_loop(
        stopped_model,
        cross_entropy_objective(task.adapter),
        {"train": task.train},
        TRAIN,
        seed=1,
        callbacks=[lambda ctx, loss: rank0 and ctx.step == 4],
    )
    return {
        "train": (start, _state(model), _counts(stats), stats.losses),
        "finetune": (original_state, _state(ft.model), _counts(ft.cost), ft.cost.losses),
        "graddiff": (original_state, _state(gd.model), _counts(gd.cost), gd.cost.losses),
        "stopped": (None, _state(stopped_model), _counts(stopped), stopped.losses),
        "rank": dist.get_rank() if dist.is_initialized() else None,
    }


@pytest.fixture(scope="module")
def both():
    original = _state(_task().model_factory(7))  # any fixed weights: both runs start from them
    one = _runs(original)
    two = distributed.launch(_runs, 2, args=(original,), timeout_s=60)
    return one, two


@pytest.mark.parametrize("run", ["train", "finetune", "graddiff", "stopped"])
def test_two_processes_match_one_process(both, run):
    one, two = both
    start, state1, counts1, losses1 = one[run]
    if start is not None:  # the runs moved the weights: the comparison is not of untouched models
        assert max((state1[k] - start[k]).abs().max().item() for k in start) > 100 * ATOL
    if run == "stopped":
        assert counts1[0] == 5
    for rank, result in enumerate(two):
        assert result["rank"] == rank
        _, state2, counts2, losses2 = result[run]
        assert counts2 == counts1  # steps; forward and backward examples summed over the ranks
        assert state2.keys() == state1.keys()
        for k in state1:
            diff = (state2[k] - state1[k]).abs().max().item()
            assert diff <= ATOL, f"{run}: {k} differs by {diff}"
        assert losses2 == pytest.approx(losses1, abs=1e-5)  # the global batch's loss, on every rank
    # the ranks hold the same model: the averaged gradient is the same everywhere
    for k in state1:
        assert torch.equal(two[0][run][1][k], two[1][run][1][k])


def test_shards_are_disjoint_and_cover_the_batch():
    for n in (2, 5, 25, 64):
        for world in (2, 3):
            if n < world:
                continue
            bounds = [distributed.shard_bounds(n, r, world) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            sizes = [e - s for s, e in bounds]
            assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    batch = {"x": torch.arange(10).reshape(5, 2), "index": torch.arange(5), "meta": "kept"}
    part = distributed.shard_batch(batch, 5, distributed.DataParallel(1, 2))
    assert part["index"].tolist() == [2, 3, 4] and part["x"].shape == (3, 2) and part["meta"] == "kept"


def test_streams_too_small_for_the_ranks_are_refused_before_training():
    dp = distributed.DataParallel(0, 4)
    distributed.check_streams({"retain": 64, "forget": 8}, 32, dp)  # 32, 32 and 8: fine
    with pytest.raises(ConfigError, match="'forget' stream has batches of 3"):
        distributed.check_streams({"retain": 64, "forget": 3}, 32, dp)
    with pytest.raises(ConfigError, match="batches of 1"):
        distributed.check_streams({"train": 65}, 32, dp)  # the short last batch of one


def test_data_parallel_needs_a_process_group():
    assert distributed.active() is None and distributed.is_main()
    with pytest.raises(ConfigError, match="process group"):
        with distributed.data_parallel():
            pass


def _cli(home: str, argv: list[str]) -> tuple[int, str]:
    """``unlearnkit ARGV --home HOME`` in this process: ``(exit status, stdout)``."""
    import contextlib
    import io
    import sys

    from unlearnkit.cli import main

    buf, code = io.StringIO(), 0
    sys.argv = ["unlearnkit", *argv, "--home", home]
    with contextlib.redirect_stdout(buf):
        try:
            main()
        except SystemExit as e:
            code = e.code or 0
    return code, buf.getvalue()


TRAIN_CLI = ["train", "--task", "classifier", "--dataset", "iris", "--epochs", "3", "--batch-size", "16", "--json"]


def test_train_cli_under_two_processes_records_one_run(tmp_path):
    import json

    from unlearnkit.orchestration.experiment import Workspace

    code, one = _cli(str(tmp_path / "one"), TRAIN_CLI)
    assert code == 0
    (code0, out0), (code1, out1) = distributed.launch(
        _cli, 2, args=(str(tmp_path / "two"), [*TRAIN_CLI, "--distributed"]), timeout_s=60
    )
    assert (code0, code1) == (0, 0) and out1 == ""  # rank 1 trains in step and prints nothing
    single, parallel = json.loads(one), json.loads(out0)
    assert parallel["n_train"] == single["n_train"] and parallel["metrics"] == pytest.approx(single["metrics"])
    assert [r.id for r in Workspace.open(tmp_path / "two").store.list()] == [parallel["run_id"]]


def test_train_cli_distributed_without_a_launcher_is_one_error_line(tmp_path, monkeypatch, capsys):
    from cli_support import cli

    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    code, out, err = cli(capsys, monkeypatch, *TRAIN_CLI, "--distributed", home=tmp_path)
    assert code == 2 and out == "" and err.startswith("error: no process group") and len(err.splitlines()) == 1
