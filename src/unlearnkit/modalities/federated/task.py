"""Federated tasks: a classifier's training set dealt out to clients by subject, a global
model trained by a Flower strategy over rounds, every round stored, and a forget request
(a whole client, or subjects / examples inside one client).

:func:`make_federated_task` builds one; the reference (retraining without the forgotten data,
federated, from the same initial model and with the same seeds) is
:func:`unlearnkit.modalities.federated.unlearning.unlearn_federated` with ``"retrain"``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ...data.dataset import ExampleSet
from ...data.loaders import load_dataset
from ...data.scenarios import Split, matched_holdout, partition
from ...engines.loop import LoopStats, TrainConfig
from ...errors import ConfigError, ForgetSetError
from ...task import Task
from ...utils import derive_seed, resolve_device, seed_everything
from ..classifier.adapter import ClassifierAdapter
from ..classifier.models import build_model
from ..classifier.task import ClassifierTask
from .history import FederatedCost, FederatedHistory
from .partition import ClientPartition, partition_clients
from .runtime import RUNTIMES, ClientSetup, Phase, ServerProgram, check_strategy, state_of


@dataclass
class FederatedAdapter(ClassifierAdapter):
    """The classifier adapter, naming the federated modality (the global model is a
    classifier; clients' local tasks use a plain :class:`ClassifierAdapter`)."""

    modality: str = "federated"

    def local(self) -> ClassifierAdapter:
        return ClassifierAdapter(self.num_classes, self.device)


@dataclass
class FederatedForget:
    """What to forget: ``client`` (a whole client leaves; ``clients`` for several at once),
    ``subjects`` (every example of those subjects, all held by one client) or ``ids``
    (examples inside one client)."""

    client: str | None = None
    subjects: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    clients: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.client and self.clients:
            raise ConfigError("name the leaving clients once: client or clients")
        self.clients = tuple(dict.fromkeys(map(str, self.clients or ((self.client,) if self.client else ()))))
        self.client = self.clients[0] if self.clients else None
        given = [x for x in (self.clients, self.subjects, self.ids) if x]
        if len(given) != 1:
            raise ConfigError("name exactly one of a client, subjects or example ids to forget")
        self.subjects, self.ids = tuple(map(str, self.subjects)), tuple(map(str, self.ids))

    @property
    def level(self) -> str:
        return "client" if self.clients else "subject" if self.subjects else "examples"

    def to_dict(self) -> dict:
        return {
            "kind": self.level,
            "client": self.client,
            "clients": list(self.clients),
            "subjects": list(self.subjects),
            "ids": list(self.ids),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "FederatedForget":
        if d.get("kind") == "client":
            return cls(clients=tuple(d.get("clients") or (d["client"],)))
        return cls(
            None, tuple(d.get("subjects") or ()), tuple(d.get("ids") or ()) if d.get("kind") == "examples" else ()
        )


class LocalSplits:
    """The splits of a client's local task (``local_forget`` / ``local_retain`` fields of the
    dataclass it is mixed into): forget, the rest of the client's data, and as the training
    set the rest, or the forget examples where the whole client leaves."""

    @property
    def forget(self) -> ExampleSet:
        return self.local_forget

    @property
    def retain(self) -> ExampleSet:
        return self.local_retain

    @property
    def train(self) -> ExampleSet:
        return self.local_forget if not len(self.local_retain) else self.local_retain


@dataclass
class ClientTask(LocalSplits, ClassifierTask):
    """One client's local task for an unlearning method run inside the client: its forget
    examples and the rest of its own data (empty when the whole client leaves). The original
    is the global model the client received."""

    local_forget: ExampleSet | None = None
    local_retain: ExampleSet | None = None


def make_client_task(data: ExampleSet, forget_ids: Sequence[str], model: nn.Module, adapter) -> ClientTask:
    """The :class:`ClientTask` a client builds from its examples and the forget ids."""
    forget = data.select(forget_ids, name="forget")
    retain = data.without(forget_ids, name="retain")
    local = ClassifierAdapter(int(adapter.num_classes), adapter.device)
    return ClientTask(
        None,
        local,
        lambda s: model,
        TrainConfig(),
        model,
        local_forget=forget,
        local_retain=retain,
    )


@dataclass
class FederatedTask(Task):
    """A federated task. Besides :class:`~unlearnkit.task.Task`'s fields (``original`` is the
    final global model; ``split.train`` every client's examples together; ``split.test`` the
    server's test set; ``split.holdout`` never-trained examples drawn class for class like the
    forget set):

    Attributes:
        partition: which subjects each client holds.
        client_data: each client's examples.
        strategy: the Flower strategy's name (:data:`~.runtime.STRATEGIES`).
        rounds: training rounds of the original.
        local_epochs: passes over its data each client makes per round.
        joins: the round each client first takes part in (1 = from the start).
        history: every stored round of the original training.
        federated_cost: rounds, client compute and bytes of the original training.
        forget_request: what this task forgets.
        runtime: ``"local"`` (:class:`~.runtime.LocalGrid`) or ``"flower"`` (Ray simulation).
    """

    partition: ClientPartition | None = None
    client_data: dict[str, ExampleSet] = field(default_factory=dict)
    strategy: str = "fedavg"
    rounds: int = 10
    local_epochs: float = 1.0
    joins: dict[str, int] = field(default_factory=dict)
    history: FederatedHistory = field(default_factory=FederatedHistory)
    federated_cost: FederatedCost = field(default_factory=FederatedCost)
    forget_request: FederatedForget | None = None
    pool: ExampleSet | None = None
    runtime: str = "local"
    strategy_kwargs: dict = field(default_factory=dict)
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def target_clients(self) -> tuple[str, ...]:
        """The clients holding the data to forget (one, except when several leave at once)."""
        r = self.forget_request
        if r.clients:
            return r.clients
        ids = set(self.split.forget_ids.tolist())
        return tuple(c for c, d in self.client_data.items() if ids & set(d.example_ids.tolist()))

    @property
    def target_client(self) -> str:
        """The (first) client holding the data to forget."""
        return self.target_clients[0]

    def client_setup(self, unlearners: dict | None = None) -> ClientSetup:
        return ClientSetup(
            self.client_data,
            self.model_factory,
            self.adapter.local(),
            self.recipe,
            self.seed,
            dict(unlearners or {}),
            make_client_task,
        )

    def initial_state(self) -> dict:
        return state_of(self.model_factory(self.seed))

    def global_model(self, state: dict) -> nn.Module:
        """The global model whose aggregated arrays are ``state`` (eval mode, on the task's
        device); a LoRA federation (:mod:`.lm`) merges its adapters into the frozen base."""
        from .runtime import load_state

        return load_state(self.model_factory(self.seed), state).to(self.device).eval()

    def run_program(self, program: ServerProgram, unlearners: dict | None = None) -> tuple[FederatedHistory, float]:
        t0 = time.perf_counter()
        history = RUNTIMES[self.runtime](self.client_setup(unlearners), program)
        return history, time.perf_counter() - t0

    def with_forget_request(self, request: FederatedForget) -> "FederatedTask":
        """The same original and stored rounds with another forget request (checked first)."""
        forget_ids, scenario = resolve_forget(self, request)
        rng = np.random.default_rng(derive_seed(self.seed, "holdout", len(forget_ids)))
        holdout = matched_holdout(self.pool, self.split.train.select(forget_ids), rng)
        split = Split(self.split.train, self.split.test, forget_ids, holdout, scenario)
        # the spec names the federation, not the request: a train run's spec would otherwise
        # carry the default request (the last client) and reports would file the original
        # under it; a request is its record's scenario
        spec = {k: v for k, v in self.spec.items() if k != "scenario"}
        return dataclasses.replace(self, split=split, forget_request=request, spec=spec, memo={})


def resolve_forget(task: FederatedTask, request: FederatedForget) -> tuple[list[str], dict]:
    """The example ids ``request`` names, checked: a known client, not every client; subjects
    some client holds, all in one client; ids inside one client."""
    clients = task.client_data
    if request.clients:
        for c in request.clients:
            if c not in clients:
                raise ConfigError(f"unknown client {c!r}; the federation has {', '.join(clients)}")
        rest = [c for c in clients if c not in request.clients]
        if not rest:
            raise ForgetSetError("deleting every client would leave no data to train on")
        if min(task.joins[c] for c in rest) > 1:
            raise ForgetSetError(
                f"without {', '.join(request.clients)} no client takes part from round 1: "
                "the reference could not be trained"
            )
        ids = [str(i) for c in request.clients for i in clients[c].example_ids.tolist()]
        scenario = {"kind": "client", "client": request.client, "clients": list(request.clients), "count": len(ids)}
        return ids, scenario
    if request.subjects:
        owners = {}
        for s in request.subjects:
            owner = task.partition.client_of_subject(s)
            if owner is None:
                raise ConfigError(f"no client holds subject {s!r}")
            owners[s] = owner
        if len(set(owners.values())) > 1:
            raise ConfigError(
                "the subjects are held by several clients ("
                + ", ".join(sorted(set(owners.values())))
                + "); forget one client's subjects at a time"
            )
        client = next(iter(owners.values()))
        data = clients[client]
        ids = data.example_ids[np.isin(data.subject_ids.astype(str), list(request.subjects))].tolist()
        if len(ids) >= len(data):
            raise ForgetSetError(f"those subjects are all of {client}'s data: forget the client instead")
        return [str(i) for i in ids], {
            "kind": "subject",
            "client": client,
            "subjects": sorted(request.subjects),
            "count": len(ids),
        }
    holders = {c for c, d in clients.items() for i in request.ids if i in d._index}
    unknown = [i for i in request.ids if not any(i in d._index for d in clients.values())]
    if unknown:
        raise ConfigError(f"no client holds example {unknown[0]!r} ({len(unknown)} unknown ids)")
    if len(holders) > 1:
        raise ConfigError("the examples are held by several clients; forget one client's examples at a time")
    client = next(iter(holders))
    if len(set(request.ids)) >= len(clients[client]):
        raise ForgetSetError(f"those examples are all of {client}'s data: forget the client instead")
    return list(dict.fromkeys(request.ids)), {"kind": "examples", "client": client, "count": len(set(request.ids))}


def join_rounds(joins: dict[str, int] | None, clients, rounds: int) -> dict[str, int]:
    """Every client's first round (1 unless ``joins`` names it), checked: known clients,
    rounds within the federation's, and a client from round 1."""
    out = {c: 1 for c in clients} | dict(joins or {})
    unknown = sorted(set(out) - set(clients))
    if unknown:
        raise ConfigError(f"unknown client {unknown[0]!r} in joins; the federation has {', '.join(clients)}")
    if any(not 1 <= int(j) <= rounds for j in out.values()):
        raise ConfigError(f"a client's join round must be between 1 and {rounds}")
    if min(out.values()) > 1:
        raise ConfigError("at least one client must take part from round 1")
    return out


def default_recipe() -> TrainConfig:
    """Each client's local training per round: Adam, batches of 32 (the optimiser's state
    starts afresh each round, as each round's local training is a new run of the loop)."""
    return TrainConfig(epochs=1.0, batch_size=32, lr=1e-3, optimizer="adam", weight_decay=5e-4)


def make_federated_task(
    dataset: str | ExampleSet = "digits",
    n_clients: int = 5,
    partition_scheme: str = "subject",
    strategy: str = "fedavg",
    rounds: int = 10,
    local_epochs: float = 1.0,
    forget: FederatedForget | None = None,
    joins: dict[str, int] | None = None,
    seed: int = 0,
    model: str = "mlp",
    model_kwargs: dict | None = None,
    recipe: TrainConfig | None = None,
    strategy_kwargs: dict | None = None,
    runtime: str = "local",
    device: str | torch.device | None = None,
    test_fraction: float = 0.2,
    pool_fraction: float = 0.15,
    stored: FederatedHistory | None = None,
) -> FederatedTask:
    """Deal ``dataset``'s training subjects out to ``n_clients`` clients, train the global
    model for ``rounds`` rounds with ``strategy`` (Flower's), store every round, and set the
    forget request (default: the last client leaves).

    ``joins``: the round a client first takes part in (default 1 for all); a client that
    joins late lets exact retraining resume from the checkpoint before it.
    ``stored``: the rounds of this federation's training, kept earlier
    (:func:`~.history.history_from_tensors`): nothing is trained, the original is their
    final global model. Everything is checked before anything is trained.
    """
    check_strategy(strategy)
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    if rounds < 1 or not local_epochs > 0:
        raise ConfigError("rounds must be >= 1 and local_epochs > 0")
    device = resolve_device(device)
    data = load_dataset(dataset) if isinstance(dataset, str) else dataset
    part = partition(data, seed, test_fraction, pool_fraction)
    clients = partition_clients(part.train, n_clients, partition_scheme, seed)
    client_data = {c: clients.data_of(c, part.train) for c in clients.client_ids}
    joins = join_rounds(joins, client_data, rounds)
    recipe = recipe or default_recipe()
    recipe = dataclasses.replace(recipe, epochs=float(local_epochs))
    model_kwargs = dict(model_kwargs or {})
    k = int(data.num_classes)
    adapter = FederatedAdapter(k, device)

    def factory(s: int) -> nn.Module:
        seed_everything(derive_seed(s, "init") % (2**31))
        return build_model(model, data.input_shape, k, **model_kwargs)

    spec = {
        "modality": "federated",
        "dataset": data.name,
        "source": dataset if isinstance(dataset, str) else None,
        "data_fingerprint": data.fingerprint,
        "n_clients": n_clients,
        "partition": partition_scheme,
        "strategy": strategy,
        "strategy_kwargs": dict(strategy_kwargs or {}),
        "rounds": rounds,
        "local_epochs": float(local_epochs),
        "joins": joins,
        "model": model,
        "model_kwargs": model_kwargs,
        "recipe": recipe.to_dict(),
        "seed": seed,
        "test_fraction": test_fraction,
        "pool_fraction": pool_fraction,
    }
    placeholder = Split(part.train, part.test, part.train.example_ids[:1], part.pool.take([0]), {})
    task = FederatedTask(
        placeholder,
        adapter,
        factory,
        recipe,
        None,
        LoopStats(),
        seed,
        spec,
        partition=clients,
        client_data=client_data,
        strategy=strategy,
        rounds=rounds,
        local_epochs=float(local_epochs),
        joins=joins,
        pool=part.pool,
        runtime=runtime,
        strategy_kwargs=dict(strategy_kwargs or {}),
    )
    request = forget or FederatedForget(client=clients.client_ids[-1])
    task = task.with_forget_request(request)  # checked before training
    if stored is not None:
        if len(stored.rounds) != rounds or stored.final_state is None:
            raise ConfigError(f"the stored history has {len(stored.rounds)} rounds, the federation {rounds}")
        history, wall = stored, 0.0
    else:
        program = ServerProgram(
            strategy, task.initial_state(), [Phase(rounds)], joins, local_epochs, task.strategy_kwargs
        )
        history, wall = task.run_program(program)
    task.history = history
    task.federated_cost = FederatedCost.of_rounds(history.rounds, wall)
    c = task.federated_cost
    task.original_cost = LoopStats(c.steps, c.examples_forward, c.examples_backward, wall)
    from .runtime import load_state

    task.original = load_state(factory(seed), history.final_state).to(device).eval()
    return task


def task_from_spec(
    spec: dict, scenario=None, cache=None, progress: bool = False, device=None, stored: FederatedHistory | None = None
) -> FederatedTask:
    """Rebuild a federated task from its spec: from its ``stored`` rounds, or by training the
    federation again (its rounds are deterministic under the spec's seed on the local
    runtime)."""
    if spec.get("local_task") == "lm":  # the profiles LM federated by person, LoRA clients (.lm)
        from .lm import task_from_spec as lm_task_from_spec

        return lm_task_from_spec(spec, scenario, cache, progress, device, stored)
    if spec.get("source") is None:
        raise ConfigError("this federated task was built from in-memory data; rebuild it in Python")
    request = scenario if isinstance(scenario, FederatedForget) else None
    if request is None:
        d = scenario if isinstance(scenario, dict) else spec.get("scenario") or {}
        request = FederatedForget.from_dict(d) if d else None
    return make_federated_task(
        spec["source"],
        spec["n_clients"],
        spec["partition"],
        spec["strategy"],
        spec["rounds"],
        spec["local_epochs"],
        request,
        spec.get("joins"),
        spec["seed"],
        spec["model"],
        spec.get("model_kwargs"),
        TrainConfig(**spec["recipe"]),
        spec.get("strategy_kwargs"),
        device=device,
        test_fraction=spec["test_fraction"],
        pool_fraction=spec["pool_fraction"],
        stored=stored,
    )


def request_scenario(ids=None, subjects=None, scenario=None) -> FederatedForget:
    """A deletion request's scenario: ``client:ID`` (``--scenario``), subjects or example ids."""
    given = [x for x in (ids, subjects, scenario) if x]
    if len(given) != 1:
        raise ConfigError("give exactly one of --forget-ids, --forget-subjects or --scenario client:ID")
    if ids:
        return FederatedForget(ids=tuple(ids))
    if subjects:
        return FederatedForget(subjects=tuple(subjects))
    kind, _, value = str(scenario).partition(":")
    if kind != "client" or not value:
        raise ConfigError(f"a federated scenario is client:ID[,ID...], not {scenario!r}")
    return FederatedForget(clients=tuple(c.strip() for c in value.split(",") if c.strip()))


def check_options(kind: str, options: dict) -> None:
    """Refuse build options :func:`build_task` cannot take (a bench grid's, checked before any
    work): an unknown ``local_task``; an LM federation's recipe options or label skew."""
    o = {k: v for k, v in options.items() if v is not None}
    local = str(o.get("local_task", "classifier"))
    if local not in ("classifier", "lm"):
        raise ConfigError(f"local_task must be classifier or lm, not {local!r}")
    if local == "lm":
        unknown = sorted(set(o) & {"lr", "batch_size"})
        if unknown:
            raise ConfigError(f"an LM federation takes no {', '.join(unknown)} option (its clients' recipe is fixed)")
        if str(o.get("partition", "subject")) != "subject":
            raise ConfigError("an LM federation deals people out (partition subject); label skew needs classes")


def build_task(kind: str, options: dict, seed: int = 0, cache=None, progress: bool = False) -> FederatedTask:
    """The task ``unlearnkit train --task federated`` (and a ``task: federated`` bench grid)
    builds; ``options`` may hold ``dataset``, ``model``, ``clients``, ``partition``,
    ``strategy``, ``rounds``, ``local_epochs``, ``lr``, ``batch_size``, ``runtime`` (None =
    default), and ``local_task``: ``classifier`` (default) or ``lm``, the profiles LM
    federated by person (:func:`.lm.make_federated_lm_task`; then ``people``, ``lora_rank``
    and ``joins`` too; ``dataset`` and ``model``, which every bench grid carries, do not
    apply: its people are generated and its model is the tiny Llama)."""
    check_options(kind, options)
    o = {k: v for k, v in options.items() if v is not None}
    local = str(o.pop("local_task", "classifier"))
    if local == "lm":
        from .lm import make_federated_lm_task

        return make_federated_lm_task(
            int(o.get("people", 12)),
            int(o.get("clients", 3)),
            str(o.get("strategy", "fedavg")),
            int(o.get("rounds", 3)),
            float(o.get("local_epochs", 1.0)),
            joins=dict(o.get("joins") or {}),
            seed=seed,
            lora={"r": int(o.get("lora_rank", 8))},
            runtime=str(o.get("runtime", "local")),
            cache=cache,
        )
    recipe = dataclasses.replace(default_recipe(), **{k: o[k] for k in ("lr", "batch_size") if k in o})
    return make_federated_task(
        str(o.get("dataset", "digits")),
        int(o.get("clients", 5)),
        str(o.get("partition", "subject")),
        str(o.get("strategy", "fedavg")),
        int(o.get("rounds", 10)),
        float(o.get("local_epochs", 1.0)),
        joins=dict(o.get("joins") or {}) or None,
        seed=seed,
        model=str(o.get("model", "mlp")),
        recipe=recipe,
        runtime=str(o.get("runtime", "local")),
    )


def train_metrics(task: FederatedTask) -> dict[str, float]:
    """The global model's accuracy on every client's data and on the server's test set, and
    what training it cost in rounds and bytes."""
    from ..classifier.scores import compute_scores

    out = {}
    for name, data in (("acc_train", task.train), ("acc_test", task.test)):
        sc = compute_scores(task.original, data, task.adapter)
        out[name] = float(np.mean(sc.pred == sc.labels))
    out["fed_acc_test"] = out["acc_test"]  # the federated reports' column for the same number
    out["rounds"] = float(task.federated_cost.rounds)
    out["bytes_exchanged"] = float(task.federated_cost.bytes_exchanged)
    return out


def task_label(spec: dict) -> str:
    return f"{spec.get('dataset', 'data')} · {spec.get('n_clients')} clients · {spec.get('strategy')}"


def describe_clients(task: FederatedTask) -> list[dict]:
    """Per client: examples, subjects, join round, label histogram (what the partition did)."""
    k = int(task.adapter.num_classes)
    return [
        {
            "client": c,
            "examples": len(d),
            "subjects": len(task.partition.clients[c]),
            "joins": task.joins[c],
            "labels": np.bincount(d.labels.numpy(), minlength=k).tolist(),
        }
        for c, d in task.client_data.items()
    ]


def dumps_ids(ids: Sequence[str]) -> str:
    return json.dumps([str(i) for i in ids])


# --------------------------------------------------------------------------- the generic surfaces' hooks
# what `unlearnkit unlearn / evaluate / bench / report` (through `unlearnkit.requests`: the CLI,
# the Python API and the service alike) ask of this modality where the generic flow cannot
# serve it (the original is a federation's stored rounds, the methods are this package's
# functions); the work is in :mod:`.flow`, imported on first use; the service's own hooks are
# in :mod:`.service`
def answer_request(workspace, request, get_method, progress: bool = False) -> dict:
    """A deletion request on a federated train run (:func:`.flow.answer_request`)."""
    from .flow import answer_request as answer

    return answer(workspace, request, get_method, progress)


def evaluate_run(workspace, record, seed: int | None = None, progress: bool = False) -> dict:
    """Every federated metric of a recorded unlearned run (:func:`.flow.evaluate_run`)."""
    from .flow import evaluate_run as evaluate

    return evaluate(workspace, record, seed, progress)


def reference_record(workspace, record, seed: int | None = None, progress: bool = False) -> dict:
    """The record fields of federated retraining for a recorded unlearned run's task, the
    exact answer to its request (:func:`.flow.reference_record`; a line's exact path)."""
    from .flow import reference_record as record_of

    return record_of(workspace, record, seed, progress)


def record_tags(task: FederatedTask, artifacts) -> dict:
    """What a train run of ``task`` keeps beside its model: every stored round as one artifact
    (``federated_history``), so unlearning reads them back instead of training the
    federation again. ``artifacts``: the workspace's artifact store."""
    from .history import history_tensors

    tensors, meta = history_tensors(task.history)
    return {"federated_history": artifacts.save(tensors, meta)}


def check_methods(specs, get_method) -> None:
    """A bench grid's methods, checked before any training (:func:`.flow.check_methods`)."""
    from .flow import check_methods as check

    check(specs, get_method)


def bench_job(base, scenarios, specs, seed: int, workspace, get_method) -> list[dict]:
    """One bench job on a trained federation (:func:`.flow.bench_job`)."""
    from .flow import bench_job as job

    return job(base, scenarios, specs, seed, workspace, get_method)


def scenario_from_dict(d: dict) -> FederatedForget:
    """A grid's scenario mapping (``{kind: client, client: client-04}``, ``{kind: subject,
    subjects: [...]}``) as a forget request."""
    if not isinstance(d, dict) or d.get("kind") not in ("client", "subject", "examples"):
        raise ConfigError(f"a federated scenario is a mapping of kind client, subject or examples, not {d!r}")
    return FederatedForget.from_dict(d)


def scenario_label(scenario: dict | None) -> str | None:
    """A short label of a federated scenario for reports (``client client-04``, ``subject
    subject-017 (client-01)``), the same over seeds where the client is the same."""
    s = scenario or {}
    kind = s.get("kind")
    if kind == "client":
        clients = s.get("clients") or [s.get("client")]
        return ("client " if len(clients) == 1 else "clients ") + ", ".join(map(str, clients))
    if kind == "subject":
        subs = s.get("subjects") or []
        shown = subs[0] if len(subs) == 1 else f"{len(subs)} subjects"
        return f"subject {shown} ({s.get('client')})" if len(subs) == 1 else f"{shown} ({s.get('client')})"
    if kind == "examples":
        return f"{s.get('count')} examples ({s.get('client')})"
    return None
