"""``unlearnkit federated``: train a federation, unlearn a client or subjects / examples
inside one client, evaluate an unlearned global model.

* ``federated train``: clients hold whole subjects of a classifier dataset; one of Flower's
  strategies trains the global model over rounds (every round stored); the original is
  recorded in the store like any ``train`` run. ``--task lm``: the generated profiles
  causal-LM task dealt out by person, each client training LoRA adapters on a frozen tiny
  Llama trained once centrally on the public rows; only the adapters travel
  (:mod:`unlearnkit.modalities.federated.lm`).
* ``federated unlearn RUN``: the recorded run's stored rounds (one artifact: every round's
  global model, client updates and strategy state, named in the run's tags) are read back,
  checked to end in the recorded original, and a federated method runs: ``retrain``, ``exact``, ``federaser``, or any registered
  classifier method (``gradient_ascent``, ``graddiff``, ``npo``, ``simnpo``, ...) inside the
  target client, aggregated by the strategy, with recovery rounds. Metrics are computed
  against federated retraining without the data and recorded with the run.
* ``federated evaluate RUN``: those metrics again for a recorded unlearned run (printed).

``unlearn`` and ``evaluate`` are aliases of the generic ``unlearnkit unlearn --from RUN
--evaluate`` and ``unlearnkit evaluate RUN`` (canonical), which reach the same flow through
the modality's task module (:mod:`unlearnkit.modalities.federated.flow`).

Every argument is checked before anything is trained or written; bad input is one line
``error: ...`` and exit status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import ConfigError
from . import app
from .common import HomeOpt, JsonOpt, SeedOpt, StoreOpt, clean, fmt, out, parse_params, read_lines, workspace

federated_app = typer.Typer(no_args_is_help=True, help="Federated training and unlearning (Flower strategies).")
app.add_typer(federated_app, name="federated")

HEADLINE = ("fed_acc_forget", "fed_acc_retain", "fed_acc_test", "fed_gap_acc_test", "fed_mia_loss_auc")
#: what a client's local task is (``--task``)
LOCAL_TASKS = {"classifier": "a dataset's subjects per client", "lm": "profiles people per client, LoRA adapters"}
#: an LM federation's (``--task lm``) headline numbers
LM_HEADLINE = ("forget_quality", "model_utility", "fed_gap_model_utility", "rouge_forget", "mia_loss_auc")


def _joins(items: list[str]) -> dict[str, int]:
    joins = {}
    for it in items or []:
        client, sep, n = it.rpartition(":")
        if not sep or not client or not n.isdigit():
            raise ConfigError(f"--join expects CLIENT:ROUND, e.g. client-04:6, not {it!r}")
        joins[client] = int(n)
    return joins


@federated_app.command("train")
def train(
    clients: int = typer.Option(5, "--clients", help="Clients (each holds whole subjects)."),
    strategy: str = typer.Option(
        "fedavg", "--strategy", help="fedavg, fedavgm, fedprox, fedadagrad, fedadam, fedyogi."
    ),
    rounds: int = typer.Option(10, "--rounds", help="Training rounds."),
    local_epochs: float = typer.Option(1.0, "--local-epochs", help="Passes over its data each client makes a round."),
    partition: str = typer.Option("subject", "--partition", help="subject or dirichlet:ALPHA (label skew)."),
    join: List[str] = typer.Option([], "--join", help="CLIENT:ROUND, the round a client first takes part in."),
    dataset: str = typer.Option("digits", "--dataset", help="A built-in classifier dataset with subject ids."),
    model: str = typer.Option("mlp", "--model", help="linear, mlp, cnn (classifier models)."),
    runtime: str = typer.Option("local", "--runtime", help="local (in-process grid) or flower (Ray simulation)."),
    task_kind: str = typer.Option(
        "classifier", "--task", help="classifier (a dataset's subjects) or lm (profiles people, LoRA clients)."
    ),
    people: int = typer.Option(12, "--people", help="--task lm: training people of the generated profiles."),
    lora_rank: int = typer.Option(8, "--lora-rank", help="--task lm: LoRA rank of the clients' adapters."),
    seed: int = SeedOpt,
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Train a federation and record its global model (the original)."""
    from ..modalities.federated.partition import parse_scheme
    from ..modalities.federated.runtime import RUNTIMES, check_strategy
    from ..modalities.federated.task import describe_clients, make_federated_task, record_tags, train_metrics
    from ..orchestration.experiment import train_record

    check_strategy(strategy)
    parse_scheme(partition)
    if runtime not in RUNTIMES:
        raise ConfigError(f"--runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    if rounds < 1 or not local_epochs > 0:
        raise ConfigError("--rounds must be >= 1 and --local-epochs > 0")
    joins = _joins(join)
    if task_kind not in LOCAL_TASKS:
        raise ConfigError(f"--task must be one of {', '.join(LOCAL_TASKS)}, not {task_kind!r}")
    if task_kind == "lm":
        if not 10 <= people <= 600:
            raise ConfigError(f"--people must be between 10 and 600, not {people}")
        if lora_rank < 1:
            raise ConfigError(f"--lora-rank must be >= 1, not {lora_rank}")
        if parse_scheme(partition)[0] != "subject":
            raise ConfigError("--task lm deals people out (--partition subject); label skew needs classes")
        if not 2 <= clients <= people:
            raise ConfigError(f"--clients must be between 2 and --people ({people}), not {clients}")
        from ..modalities.federated.partition import client_name

        bad = sorted(set(joins) - {client_name(i) for i in range(clients)})
        if bad:
            raise ConfigError(f"unknown client {bad[0]!r} in --join")
        if any(not 1 <= j <= rounds for j in joins.values()) or (len(joins) == clients and min(joins.values()) > 1):
            raise ConfigError(f"--join rounds must be between 1 and {rounds}, with a client from round 1")
    ws = workspace(home, store)  # created, and checked writable, before any training
    if task_kind == "lm":
        from ..modalities.federated import lm

        task = lm.make_federated_lm_task(
            people, clients, strategy, rounds, local_epochs, joins=joins, seed=seed, lora={"r": lora_rank},
            runtime=runtime, cache=getattr(ws, "cache", None),
        )  # fmt: skip
        metrics, describe = lm.train_metrics(task), lm.describe_clients
    else:
        task = make_federated_task(
            dataset,
            clients,
            partition,
            strategy,
            rounds,
            local_epochs,
            joins=joins,
            seed=seed,
            model=model,
            runtime=runtime,
        )
        metrics, describe = train_metrics(task), describe_clients
    rec = train_record(task, metrics, ws.artifacts.save(task.original))
    rec.cost = task.federated_cost.to_dict()
    # every round (global models, client updates, strategy states) as one artifact
    rec.tags = {**rec.tags, **record_tags(task, ws.artifacts)}
    ws.store.add(rec)
    doc = {
        "run_id": rec.id,
        "artifact": rec.artifact,
        "metrics": metrics,
        "cost": task.federated_cost.to_dict(),
        "clients": describe(task),
    }
    shown = ", ".join(f"{k} {fmt(v)}" for k, v in metrics.items())
    out(clean(doc), as_json, f"trained {clients} clients, {strategy}, {rounds} rounds: {shown}\nrun id: {rec.id}")


def _request_fields(client, subjects, forget_ids) -> dict:
    """``--client`` / ``--subjects`` / ``--forget-ids`` as a deletion request's scenario,
    subjects or ids (what the generic ``unlearn`` takes as ``--scenario client:ID``,
    ``--forget-subjects``, ``--forget-ids``)."""
    given = [x for x in (client, subjects, forget_ids) if x]
    if len(given) != 1:
        raise ConfigError("give exactly one of --client, --subjects or --forget-ids")
    if client:
        return {"scenario": f"client:{client}"}
    if subjects:
        return {"subjects": [s.strip() for s in subjects.split(",") if s.strip()]}
    return {"ids": read_lines(forget_ids)}


def _federated_record(ws, run_id: str):
    from ..modalities.federated import MODALITY

    rec = ws.store.get(run_id)
    if (rec.task_spec or {}).get("modality") != MODALITY.name:
        raise ConfigError(f"run {rec.id} is not a federated run; use `unlearnkit unlearn` / `evaluate`")
    return rec


@federated_app.command("unlearn")
def unlearn(
    run_id: str = typer.Argument(..., help="Run id (or unique prefix) of a `federated train` run."),
    method: str = typer.Option(
        "federaser", "--method", help="retrain, exact, federaser, or a classifier method run inside the client."
    ),
    client: Optional[str] = typer.Option(None, "--client", help="The client that leaves (comma-separated: several)."),
    subjects: Optional[str] = typer.Option(None, "--subjects", help="Comma-separated subject ids inside one client."),
    forget_ids: Optional[Path] = typer.Option(None, "--forget-ids", help="File of example ids inside one client."),
    param: List[str] = typer.Option(
        [], "--param", help="NAME=VALUE: the method's hyperparameters, unlearn_rounds, recovery_rounds, delta_t."
    ),
    seed: int = SeedOpt,
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Forget a client, or subjects / examples inside one client, from a recorded federation
    (an alias of ``unlearnkit unlearn --from RUN --evaluate``, which is canonical)."""
    from ..methods import get_method
    from ..modalities.federated.task import answer_request
    from ..requests import DeletionRequest, check_writable
    from .unlearn import record_own_answer

    fields = _request_fields(client, subjects, forget_ids)
    request = DeletionRequest(run_id, method, parse_params(param), seed=seed, evaluate=True, **fields)
    ws = workspace(home, store, mode="existing")
    _federated_record(ws, run_id)
    check_writable(ws)
    answer = answer_request(ws, request, get_method, progress=not as_json)
    rec, _ = record_own_answer(ws, answer)
    metrics = rec.metrics
    doc = {
        "run_id": rec.id,
        "method": rec.method,
        "scenario": rec.scenario,
        "metrics": metrics,
        "extra": answer["extra"],
    }
    targets = rec.scenario.get("clients") or [rec.scenario.get("client")]
    text = f"{rec.method} on {rec.scenario['kind']} {', '.join(map(str, targets))} (run {rec.id}):\n" + "\n".join(
        f"  {k:<26} {fmt(metrics[k])}"
        for k in (*HEADLINE, *LM_HEADLINE, "ratio_rounds", "ratio_client_examples", "ratio_bytes", "forget_passes")
        if k in metrics
    )
    out(clean(doc), as_json, text)


@federated_app.command("evaluate")
def evaluate(
    run_id: str = typer.Argument(..., help="Run id (or unique prefix) of a `federated unlearn` run."),
    seed: int = SeedOpt,
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Every federated metric of a recorded unlearned global model, against federated
    retraining without the data (printed; the run keeps the metrics it was recorded with).
    ``unlearnkit evaluate RUN`` computes the same and stores them as an evaluation."""
    from ..modalities.federated.task import evaluate_run

    ws = workspace(home, store, mode="r")
    rec = _federated_record(ws, run_id)
    metrics = evaluate_run(ws, rec, seed)["metrics"]
    text = f"{rec.method} (run {rec.id}):\n" + "\n".join(f"  {k:<26} {fmt(v)}" for k, v in sorted(metrics.items()))
    out(clean({"run_id": rec.id, "method": rec.method, "metrics": metrics}), as_json, text)
