"""The profiles LM federated by person (modalities/federated/lm.py): LoRA clients on a frozen
base, only adapters travel, exact retraining from checkpoints equals retraining bit for bit,
the project's LM methods inside a client, the causal-LM metrics, the CLI and bad input."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("peft")

from unlearnkit.errors import ConfigError, ForgetSetError  # noqa: E402
from unlearnkit.modalities.causal_lm.task import default_lm_recipe  # noqa: E402
from unlearnkit.modalities.federated.history import history_from_tensors, history_tensors, nbytes  # noqa: E402
from unlearnkit.modalities.federated.lm import make_federated_lm_task, task_from_spec  # noqa: E402
from unlearnkit.modalities.federated.metrics import evaluate_federated  # noqa: E402
from unlearnkit.modalities.federated.task import FederatedForget  # noqa: E402
from unlearnkit.modalities.federated.unlearning import retrain, unlearn_federated  # noqa: E402

BASE = dataclasses.replace(default_lm_recipe(), epochs=5.0)


@pytest.fixture(scope="module")
def task():
    # 12 people, 3 clients, 3 rounds of FedAvg; client-02 joins at round 2 (so exact
    # retraining resumes from a checkpoint), the default request: client-02 leaves
    return make_federated_lm_task(12, 3, "fedavg", 3, joins={"client-02": 2}, base_recipe=BASE)


def _equal(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_clients_hold_whole_people_and_only_adapters_travel(task):
    people = {c: set(d.subject_ids.astype(str)) for c, d in task.client_data.items()}
    assert all(len(p) == 4 for p in people.values())
    assert not set.intersection(*people.values())
    assert set.union(*people.values()) == {f"p{i:04d}" for i in range(12)}
    first = task.history.round(1)
    assert first.participants == ["client-00", "client-01"]  # client-02 joins at round 2
    keys = set(first.global_before)
    assert keys and all(".lora_A." in k or ".lora_B." in k for k in keys)
    adapters = nbytes(first.global_before)
    full = sum(v.numel() * v.element_size() for v in task.original.state_dict().values())
    assert adapters < full / 4
    for r in task.history.rounds:
        for cr in r.clients.values():
            assert cr.bytes_down == cr.bytes_up == adapters
    # the base stays frozen: weights no adapter touches are the base's, and it is stored
    emb = "model.embed_tokens.weight"
    assert np.array_equal(task.original.state_dict()[emb].numpy(), task.base_state[emb])
    assert task.history.frozen is task.base_state
    # the adapters learned something: the global model differs from the base on a targeted weight
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not np.array_equal(task.original.state_dict()[q].numpy(), task.base_state[q])


def test_exact_resumes_from_the_checkpoint_and_equals_retraining(task):
    ref = retrain(task)
    ex = unlearn_federated(task, "exact")
    assert ex.extra["resumed_from_round"] == 2
    assert _equal(ex.history.final_state, ref.history.final_state)
    assert ex.cost.rounds == 2 < ref.cost.rounds == 3
    assert "client-02" not in ref.history.round(3).clients
    m = evaluate_federated(task, ex.model, ex.cost, ref)
    assert m["forget_quality"] == pytest.approx(1.0) and m["fed_gap_model_utility"] == 0.0
    assert m["ratio_rounds"] == pytest.approx(2 / 3)
    assert m["ratio_bytes"] < 1.0
    for k in ("model_utility", "mia_loss_auc", "mia_min_k_auc", "rouge_forget", "mia_loss_auc_reference"):
        assert np.isfinite(m[k])


def test_person_deletion_exact_and_a_method_inside_the_client(task):
    from unlearnkit.methods import get_method

    person = task.partition.clients["client-02"][0]
    pt = task.with_forget_request(FederatedForget(subjects=(person,)))
    assert pt.target_client == "client-02" and pt.view.forget.subject_ids.astype(str).tolist() == [person] * len(
        pt.forget
    )
    ref, ex = retrain(pt), unlearn_federated(pt, "exact")
    assert _equal(ex.history.final_state, ref.history.final_state)
    # client-02 keeps its other people through retraining
    assert ref.history.round(3).clients["client-02"].num_examples == len(task.client_data["client-02"]) - len(pt.forget)
    ga = unlearn_federated(pt, "local", unlearner=get_method("gradient_ascent"), unlearn_rounds=1, recovery_rounds=1)
    roles = [{c: cr.role for c, cr in r.clients.items()} for r in ga.history.rounds]
    assert roles[0]["client-02"] == "unlearn" and roles[1]["client-02"] == "train"
    assert not _equal(ga.history.final_state, task.history.final_state)
    m = evaluate_federated(pt, ga.model, ga.cost, ref)
    assert m["ratio_rounds"] == pytest.approx(2 / 3) and 0.0 <= m["forget_quality"] <= 1.0
    assert m["fed_gap_model_utility"] >= 0.0


def test_methods_needing_retain_data_refuse_a_leaving_client(task):
    from unlearnkit.methods import get_method

    with pytest.raises(ConfigError, match="retain"):
        unlearn_federated(task, "local", unlearner=get_method("npo"))
    # a method that does not serve causal LMs is refused before any round
    classifier_only = SimpleNamespace(name="cls", modalities=("classifier",), unlearn=None)
    with pytest.raises(ConfigError, match="does not serve"):
        unlearn_federated(task, "local", unlearner=classifier_only)


def test_bad_requests(task):
    with pytest.raises(ConfigError, match="unknown client"):
        task.with_forget_request(FederatedForget(client="client-09"))
    with pytest.raises(ForgetSetError, match="every client"):
        task.with_forget_request(FederatedForget(clients=("client-00", "client-01", "client-02")))
    with pytest.raises(ConfigError, match="no client holds subject"):
        task.with_forget_request(FederatedForget(subjects=("h0000",)))  # a holdout person: never trained
    with pytest.raises(ConfigError, match="label skew"):
        make_federated_lm_task(12, 3, partition_scheme="dirichlet:0.5")


def test_stored_rounds_rebuild_the_federation_without_training(task):
    tensors, meta = history_tensors(task.history)
    stored = history_from_tensors(tensors, meta)
    again = task_from_spec(task.spec, {"kind": "client", "client": "client-01"}, stored=stored)
    assert _equal(again.base_state, task.base_state)
    assert _equal(again.history.final_state, task.history.final_state)
    assert again.federated_cost.wall_time_s == 0.0 and again.target_client == "client-01"
    json.dumps(again.spec)


def test_server_optimiser_strategies_aggregate_adapters():
    for strategy in ("fedprox", "fedadam"):
        t = make_federated_lm_task(12, 3, strategy, 2, base_recipe=BASE)
        final = t.history.final_state
        assert all(v.dtype == np.float32 for v in final.values())
        assert not _equal(final, t.history.round(1).global_before)


def test_cli_train_unlearn_and_bad_input(capsys, monkeypatch, tmp_path):
    import unlearnkit.cli.federated  # noqa: F401  (registers the command group)
    from cli_support import cli, cli_json

    home = tmp_path / "home"
    doc = cli_json(
        capsys,
        monkeypatch,
        "federated",
        "train",
        "--task",
        "lm",
        "--clients",
        "3",
        "--rounds",
        "2",
        "--json",
        home=home,
    )
    run = doc["run_id"]
    assert doc["clients"][0]["subjects"] == 4 and doc["metrics"]["rounds"] == 2

    def runs():
        return cli_json(capsys, monkeypatch, "runs", "list", "--json", home=home)

    before = runs()
    for bad, msg in (
        (["--client", "client-07"], "unknown client"),
        (["--client", "client-00,client-01,client-02"], "every client"),
        (["--subjects", "p9999"], "no client holds subject"),
    ):
        code, out, err = cli(capsys, monkeypatch, "federated", "unlearn", run, "--method", "exact", *bad, home=home)
        assert code == 2 and msg in err and err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert runs() == before
    code, out, err = cli(
        capsys, monkeypatch, "federated", "train", "--task", "lm", "--people", "5", home=tmp_path / "h2"
    )
    assert code == 2 and err.startswith("error: --people") and not (tmp_path / "h2").exists()
    # the generic command serves the LM federation through the modality's hooks
    args = ["unlearn", "--from", run, "--method", "exact", "--scenario", "client:client-02", "--evaluate", "--json"]
    doc = cli_json(capsys, monkeypatch, *args, home=home)
    assert len(runs()) > len(before)


def test_a_method_serving_only_language_models_runs_inside_an_lm_client_not_a_classifier_one():
    """The request flow resolves in-client methods against the federation's local task: RMU
    (causal LMs only) is a method of an LM federation's clients and unknown on a classifier's."""
    from unlearnkit.methods import get_method
    from unlearnkit.modalities.federated.flow import resolve_method
    from unlearnkit.modalities.federated.unlearning import local_modality

    name, kwargs = resolve_method("rmu", {"recovery_rounds": 2}, get_method, local_modality({"local_task": "lm"}))
    assert name == "local" and kwargs["unlearner"].name == "rmu" and kwargs["recovery_rounds"] == 2
    with pytest.raises(ConfigError, match="serving classifier"):
        resolve_method("rmu", {}, get_method, local_modality({}))


def test_bench_grid_of_an_lm_federation(tmp_path, capsys, monkeypatch):
    """A `task: federated` grid with `local_task: lm` benches the LM federation: the original,
    federated retraining and each method, stored, with the LM metrics; an option an LM
    federation cannot take is refused with one line before anything is trained."""
    from cli_support import cli, cli_json

    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "task: federated\noptions: {local_task: lm, people: 12, clients: 3, rounds: 2}\nseeds: [0]\n"
        'scenarios: ["client:client-02"]\nmethods: [exact, gradient_ascent]\n'
    )
    home = tmp_path / "ws"
    cli_json(capsys, monkeypatch, "bench", str(grid), "--out", str(tmp_path / "rep"), "--json", home=home)
    runs = cli_json(capsys, monkeypatch, "runs", "list", "--json", home=home)
    rows = {r["method"]: r for r in (runs if isinstance(runs, list) else runs.get("runs", []))}
    assert {"original", "federated:retrain", "federated:exact"} <= set(rows), sorted(rows)
    assert any(m.startswith("federated:") and "gradient_ascent" in m for m in rows), sorted(rows)
    assert rows["federated:exact"]["metrics"]["forget_quality"] == 1.0  # exact is retraining here
    bad = tmp_path / "bad.yaml"
    bad.write_text(grid.read_text().replace("people: 12", "people: 12, partition: 'dirichlet:0.1'"))
    code, _, err = cli(capsys, monkeypatch, "bench", str(bad), "--out", str(tmp_path / "rep2"), home=tmp_path / "ws2")
    assert code == 2 and err.strip().startswith("error:") and "partition" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ws2" / "runs.db").exists()
