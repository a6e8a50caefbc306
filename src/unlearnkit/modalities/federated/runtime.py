"""The federation's programs: one Flower ``ClientApp`` and one server program, run either by
Flower's simulation runtime (Ray, one process per virtual client) or, for tests and
benchmarks, by :class:`LocalGrid`, which hands the same messages to the same ``ClientApp``
in this process.

* The **client** (:func:`make_client_app`) answers ``query`` (its client id) and ``train``:
  it loads the global arrays, then runs the project's one loop
  (:func:`unlearnkit.engines.loop.run_loop`) on its own examples for ``local-epochs``
  passes (cross-entropy, plus FedProx's ``(mu/2) ||w - w_global||^2`` when the strategy
  sends ``proximal-mu``), or, when the round names it as ``unlearn-client``, the unlearning
  method the server names runs on its local task (the method's own objective inside the
  client, the way Oblivionis runs unlearning on the client holding the request). Its reply
  carries its weights and its cost (examples forward/backward, steps).
* The **server** (:class:`ServerProgram`) runs phases of rounds with one of Flower's
  strategies (:data:`STRATEGIES`: ``configure_train`` / ``aggregate_train`` of
  ``flwr.serverapp.strategy``, unchanged), keeping every round in a
  :class:`~.history.FederatedHistory`: the global model before it, the strategy's state,
  each client's update and the bytes both ways. A ``federaser`` phase runs FedEraser's
  calibration rounds instead (:func:`federaser_step`).

Determinism: each client's loop is seeded by ``(seed, client, round)`` and replies are
aggregated in client-id order, so a round's result does not depend on which client answered
first; the local runtime is bit-for-bit reproducible, which exact retraining from a
checkpoint relies on.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ...errors import ConfigError

try:
    from flwr.serverapp import Grid
except ImportError:  # one line at the CLI instead of a traceback
    raise ConfigError("federated tasks need Flower: pip install 'unlearnkit[federated]' (flwr[simulation])") from None

from ...data.dataset import ExampleSet
from ...engines.loop import LoopStats, TrainConfig, run_loop
from ...errors import UnlearnkitError
from ...utils import derive_seed
from .history import ClientRound, FederatedHistory, RoundRecord, State, nbytes

#: the strategy names and the ``flwr.serverapp.strategy`` classes with the settings used here
STRATEGY_DEFAULTS: dict[str, tuple[str, dict[str, Any]]] = {
    "fedavg": ("FedAvg", {}),
    "fedavgm": ("FedAvgM", {"server_learning_rate": 1.0, "server_momentum": 0.5}),
    "fedprox": ("FedProx", {"proximal_mu": 0.01}),
    "fedadagrad": ("FedAdagrad", {"eta": 0.01, "eta_l": 0.01, "tau": 1e-3}),
    "fedadam": ("FedAdam", {"eta": 0.01, "eta_l": 0.01, "beta_1": 0.9, "beta_2": 0.99, "tau": 1e-3}),
    "fedyogi": ("FedYogi", {"eta": 0.01, "eta_l": 0.01, "beta_1": 0.9, "beta_2": 0.99, "tau": 1e-3}),
}
STRATEGIES = tuple(STRATEGY_DEFAULTS)


class FederatedError(UnlearnkitError):
    """A client failed, or the federation cannot run the plan it was given."""


def check_strategy(name: str) -> str:
    if name not in STRATEGY_DEFAULTS:
        raise ConfigError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return name


def make_strategy(name: str, n_clients: int, **overrides):
    """Flower's implementation of strategy ``name`` (no federated evaluation; every
    participant trains each round)."""
    from flwr.serverapp import strategy as flwr_strategy

    cls_name, defaults = STRATEGY_DEFAULTS[check_strategy(name)]
    kwargs = {**defaults, **overrides}
    return getattr(flwr_strategy, cls_name)(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=n_clients,
        min_available_nodes=n_clients,
        **kwargs,
    )


# --------------------------------------------------------------------------- arrays
def state_of(model: nn.Module) -> State:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def load_state(model: nn.Module, state: State) -> nn.Module:
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    return model


def to_record(state: State):
    from flwr.app import ArrayRecord

    return ArrayRecord({k: torch.from_numpy(np.array(v)) for k, v in state.items()})


def from_record(record) -> State:
    return {k: v.numpy().copy() for k, v in record.to_torch_state_dict().items()}


def subtract(a: State, b: State) -> State:
    return {k: a[k] - b[k] for k in a}


# --------------------------------------------------------------------------- client
@dataclass
class ClientSetup:
    """What every client process needs: its own examples (here a dict from client id to its
    examples; on a real deployment each client would load only its own), the model's
    architecture, the adapter, the local training recipe, and the unlearning methods the
    server may name (instances of :class:`unlearnkit.methods.Method`, given by the caller:
    a modality does not import the methods layer)."""

    data: dict[str, ExampleSet]
    model_factory: Callable[[int], nn.Module]
    adapter: Any
    local: TrainConfig
    seed: int = 0
    unlearners: dict[str, Any] = field(default_factory=dict)
    local_task: Callable[..., Any] | None = None  # (data, forget_ids, model, adapter) -> Task
    #: what travels: the arrays of a client's model that the server aggregates (default every
    #: tensor of its state dict; a LoRA federation sends only the adapters, :mod:`.lm`)
    get_state: Callable[[nn.Module], State] = field(default=None)  # type: ignore[assignment]
    set_state: Callable[[nn.Module, State], nn.Module] = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.get_state = self.get_state or state_of
        self.set_state = self.set_state or load_state

    @property
    def client_ids(self) -> list[str]:
        return list(self.data)


def _config(msg) -> dict:
    return dict(msg.content["config"]) if "config" in msg.content else {}


def _ids(cfg: dict, key: str) -> list[str]:
    return [str(i) for i in json.loads(cfg.get(key, "[]") or "[]")]


def local_train(
    model: nn.Module, data: ExampleSet, adapter, cfg: TrainConfig, seed: int, proximal_mu: float = 0.0
) -> LoopStats:
    """A client's local training: the one loop on its examples, with FedProx's proximal term
    ``(mu/2) ||w - w_global||^2`` (Li et al. 2020, eq. 2) when ``proximal_mu > 0``, over the
    parameters that train (all of a classifier's; a LoRA client's adapters: frozen base
    weights add zero)."""
    anchor = [p.detach().clone() for p in model.parameters() if p.requires_grad] if proximal_mu > 0 else None

    def objective(ctx):
        loss = adapter.per_example_loss(ctx.model, ctx.batch("train")).mean()
        if anchor is not None:
            live = [p for p in ctx.model.parameters() if p.requires_grad]
            prox = sum(((p - a) ** 2).sum() for p, a in zip(live, anchor))
            loss = loss + 0.5 * proximal_mu * prox
        return loss

    return run_loop(model, objective, {"train": data}, cfg, seed, device=adapter.device, adapter=adapter, desc="client")


def client_step(setup: ClientSetup, client: str, arrays: State, cfg: dict) -> tuple[State, dict]:
    """What a client does for one ``train`` message: local training or, where the round names
    this client, its local unlearning; returns its new weights and its metrics."""
    if client not in setup.data:
        raise FederatedError(f"client {client!r} has no data in this federation")
    data = setup.data[client]
    excluded = _ids(cfg, "exclude-ids")
    if excluded:
        data = data.without([i for i in excluded if i in set(data.example_ids.tolist())], name=client)
    n = int(cfg.get("global-round", 0))
    seed = derive_seed(setup.seed, "client", client, n, str(cfg.get("phase", "train"))) % (2**31)
    model = setup.set_state(setup.model_factory(setup.seed), arrays).to(setup.adapter.device)
    role = "train"
    if cfg.get("unlearn-client") == client:
        role = "unlearn"
        forget_ids = _ids(cfg, "forget-ids")
        name = str(cfg["unlearner"])
        if name not in setup.unlearners or setup.local_task is None:
            raise FederatedError(f"client {client!r} has no unlearning method {name!r}")
        full = setup.data[client]
        task = setup.local_task(full, forget_ids, model, setup.adapter)
        result = setup.unlearners[name].unlearn(task, seed=seed)
        model, stats = result.model, result.cost
        n_examples = len(full)
    else:
        local = setup.local
        if "local-epochs" in cfg:
            local = TrainConfig(**{**local.to_dict(), "epochs": float(cfg["local-epochs"])})
        stats = local_train(model, data, setup.adapter, local, seed, float(cfg.get("proximal-mu", 0.0)))
        n_examples = len(data)
    metrics = {
        "num-examples": n_examples,
        "examples-forward": stats.examples_forward,
        "examples-backward": stats.examples_backward,
        "steps": stats.steps,
    }
    return setup.get_state(model), {"metrics": metrics, "role": role}


def make_client_app(setup: ClientSetup):
    """The Flower ``ClientApp`` of the federation (the same object runs in the simulation's
    workers, in :class:`LocalGrid`, and on a real SuperNode). A node learns which client it
    is from its node config: ``client-id``, or ``partition-id`` as an index into
    ``setup.client_ids`` (what ``flwr``'s simulation sets)."""
    from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp()

    def who(context) -> str:
        nc = context.node_config
        if "client-id" in nc:
            return str(nc["client-id"])
        return setup.client_ids[int(nc["partition-id"])]

    @app.query()
    def query(msg, context):
        return Message(RecordDict({"config": ConfigRecord({"client-id": who(context)})}), reply_to=msg)

    @app.train()
    def train(msg, context):
        torch.set_num_threads(1)
        client = who(context)
        state, out = client_step(setup, client, from_record(msg.content["arrays"]), _config(msg))
        content = RecordDict(
            {
                "arrays": ArrayRecord({k: torch.from_numpy(v) for k, v in state.items()}),
                "metrics": MetricRecord(out["metrics"]),
                "config": ConfigRecord({"client-id": client, "role": out["role"]}),
            }
        )
        return Message(content, reply_to=msg)

    return app


# --------------------------------------------------------------------------- grids
class LocalGrid(Grid):
    """A Flower ``Grid`` in this process: every message goes straight to the ``ClientApp``
    with its node's context (``client-id`` in the node config). What the simulation adds,
    Ray workers and a SuperLink, is left out; the messages, strategies and client code are
    the same."""

    def __init__(self, client_app, client_ids: Sequence[str]):
        from flwr.app import Context, RecordDict
        from flwr.supercore.task_identity import TaskIdentity

        for attr in ("run_id", "node_id", "task_id"):  # what Message() reads in a server process
            if getattr(TaskIdentity, f"_{attr}") is None:
                setattr(TaskIdentity, attr, 0)
        self.client_app = client_app
        self._contexts = {
            i + 1: Context(run_id=0, node_id=i + 1, node_config={"client-id": c}, state=RecordDict(), run_config={})
            for i, c in enumerate(client_ids)
        }
        self._run = None

    def set_run(self, run) -> None:
        self._run = run

    @property
    def run(self):
        return self._run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):
        from flwr.app import Message

        return Message(content=content, message_type=message_type, dst_node_id=dst_node_id, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._contexts)

    def push_messages(self, messages):
        raise NotImplementedError("LocalGrid answers send_and_receive only")

    def pull_messages(self, message_ids):
        raise NotImplementedError("LocalGrid answers send_and_receive only")

    def send_and_receive(self, messages, *, timeout=None):
        return [self.client_app(m, self._contexts[m.metadata.dst_node_id]) for m in messages]


class SubsetGrid(Grid):
    """A view of a grid offering only some of its nodes (the round's participants), so a
    strategy samples from them alone."""

    def __init__(self, grid, node_ids):
        self._grid, self._nodes = grid, list(node_ids)

    def set_run(self, run):
        self._grid.set_run(run)

    @property
    def run(self):
        return self._grid.run

    def create_message(self, *a, **k):
        return self._grid.create_message(*a, **k)

    def get_node_ids(self):
        return list(self._nodes)

    def push_messages(self, messages):
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids):
        return self._grid.pull_messages(message_ids)

    def send_and_receive(self, messages, *, timeout=None):
        return self._grid.send_and_receive(messages, timeout=timeout)


# --------------------------------------------------------------------------- server
@dataclass
class Phase:
    """Rounds ``start .. start + rounds - 1`` of the federation.

    ``kind="train"``: the strategy's rounds with every client that has joined (``joins``)
    and is not in ``exclude``; ``config`` goes to every client (the unlearning round names
    its ``unlearn-client``). ``kind="federaser"``: FedEraser's calibration rounds over the
    stored rounds ``calibrate`` (see :func:`federaser_step`)."""

    rounds: int
    start: int = 1
    exclude: frozenset[str] = frozenset()
    config: dict = field(default_factory=dict)
    kind: str = "train"
    calibrate: tuple[int, ...] = ()
    calibration_epochs: float = 0.5
    include_only: frozenset[str] | None = None


@dataclass
class ServerProgram:
    """The server's side: phases of rounds from ``initial`` with strategy ``strategy``
    (``strategy_state`` restores a stored state, for resuming from a checkpoint)."""

    strategy: str
    initial: State
    phases: list[Phase]
    joins: dict[str, int]
    local_epochs: float
    strategy_kwargs: dict = field(default_factory=dict)
    strategy_state: dict | None = None
    stored: FederatedHistory | None = None  # what FedEraser reads

    def participants(self, n: int, phase: Phase) -> list[str]:
        out = [c for c, j in self.joins.items() if j <= n and c not in phase.exclude]
        if phase.include_only is not None:
            out = [c for c in out if c in phase.include_only]
        return sorted(out)

    def run(self, grid) -> FederatedHistory:
        nodes = self._discover(grid)
        history = FederatedHistory()
        strategy = make_strategy(self.strategy, 2, **self.strategy_kwargs)
        if self.strategy_state is not None:
            vars(strategy).update(copy.deepcopy(self.strategy_state))
        state = self.initial
        for phase in self.phases:
            if phase.kind == "federaser":
                state = self._federaser(grid, nodes, phase, state, history)
                continue
            for n in range(phase.start, phase.start + phase.rounds):
                state = self._round(grid, nodes, strategy, phase, n, state, history)
        history.strategy_state = copy.deepcopy(vars(strategy))
        return history

    def _discover(self, grid) -> dict[str, int]:
        from flwr.app import Message, RecordDict

        expected = len(self.joins)
        deadline = time.time() + 120
        while len(ids := list(grid.get_node_ids())) < expected:
            if time.time() > deadline:
                raise FederatedError(f"only {len(ids)} of {expected} clients connected")
            time.sleep(0.5)
        replies = grid.send_and_receive(
            [Message(RecordDict({}), message_type="query", dst_node_id=i) for i in ids], timeout=120
        )
        out = {}
        for r in replies:
            if r.has_error():
                raise FederatedError(f"client query failed: {r.error.reason}")
            out[str(r.content["config"]["client-id"])] = r.metadata.src_node_id
        return out

    def _send_config(self, n: int, phase: Phase) -> dict:
        return {"global-round": n, "local-epochs": float(self.local_epochs), "phase": phase.kind, **phase.config}

    def _collect(self, replies, state: State, role_bytes_down: int) -> dict[str, tuple[State, dict]]:
        out = {}
        for r in replies:
            if r.has_error():
                raise FederatedError(f"a client failed: {r.error.reason}")
            c = str(r.content["config"]["client-id"])
            out[c] = (from_record(r.content["arrays"]), dict(r.content["metrics"]), str(r.content["config"]["role"]))
        return dict(sorted(out.items()))

    def _round(self, grid, nodes, strategy, phase, n, state, history) -> State:
        from flwr.app import ConfigRecord

        who = self.participants(n, phase)
        if not who:
            raise FederatedError(f"round {n} has no participating client")
        record = RoundRecord(n, state, copy.deepcopy(vars(strategy)), phase=phase.kind)
        strategy.min_train_nodes = strategy.min_available_nodes = len(who)
        view = SubsetGrid(grid, [nodes[c] for c in who])
        messages = strategy.configure_train(n, to_record(state), ConfigRecord(self._send_config(n, phase)), view)
        replies = list(view.send_and_receive(messages, timeout=3600))
        by_client = self._collect(replies, state, nbytes(state))
        order = {nodes[c]: i for i, c in enumerate(by_client)}
        replies.sort(key=lambda r: order[r.metadata.src_node_id])  # aggregation in client order
        arrays, _ = strategy.aggregate_train(n, replies)
        if arrays is None:
            raise FederatedError(f"round {n}: the strategy aggregated nothing")
        for c, (local, m, role) in by_client.items():
            record.clients[c] = ClientRound(
                subtract(local, state),
                int(m["num-examples"]),
                int(m["examples-forward"]),
                int(m["examples-backward"]),
                int(m["steps"]),
                nbytes(state),
                nbytes(local),
                role,
            )
        # Flower's FedOpt strategies (FedAdagrad, FedAdam, FedYogi) compute in float64; the
        # global model keeps the model's dtypes (every client loads it into its float32
        # model anyway), so each round sends the same bytes whatever the strategy
        new = {k: v.astype(state[k].dtype, copy=False) for k, v in from_record(arrays).items()}
        record.global_after = new
        history.rounds.append(record)
        return new

    def _federaser(self, grid, nodes, phase, state, history) -> State:
        from flwr.app import ConfigRecord, Message, RecordDict

        if self.stored is None:
            raise FederatedError("FedEraser needs the stored rounds of the original training")
        for n in phase.calibrate:
            old = self.stored.round(n)
            who = [c for c in old.participants if c not in phase.exclude]
            if not who:  # only the forgotten client took part in that round: nothing to replay
                continue
            cfg = {**self._send_config(n, phase), "local-epochs": float(phase.calibration_epochs)}
            record = RoundRecord(n, state, None, phase="federaser")
            messages = [
                Message(
                    RecordDict({"arrays": to_record(state), "config": ConfigRecord(cfg)}),
                    message_type="train",
                    dst_node_id=nodes[c],
                )
                for c in who
            ]
            by_client = self._collect(list(grid.send_and_receive(messages, timeout=3600)), state, nbytes(state))
            cali = {}
            for c, (local, m, role) in by_client.items():
                cali[c] = subtract(local, state)
                record.clients[c] = ClientRound(
                    cali[c],
                    int(m["num-examples"]),
                    int(m["examples-forward"]),
                    int(m["examples-backward"]),
                    int(m["steps"]),
                    nbytes(state),
                    nbytes(local),
                    "calibrate",
                )
            weights = {c: old.clients[c].num_examples for c in who}
            state = federaser_step(state, {c: old.clients[c].update for c in who}, cali, weights)
            record.global_after = state
            history.rounds.append(record)
        return state


def federaser_step(
    calibrated_global: State, old_updates: dict[str, State], new_updates: dict[str, State], weights: dict[str, int]
) -> State:
    """One FedEraser calibration (Liu et al. 2021, IWQoS, "FedEraser: Enabling Efficient
    Client-Level Data Removal from Federated Learning Models", Sec. IV-B):

    ``U_hat_k = ||U_k^{t_j}|| * U_tilde_k^{t_j} / ||U_tilde_k^{t_j}||``  (per parameter tensor)
    ``M_tilde^{t_{j+1}} = M_tilde^{t_j} + sum_k (n_k / sum n) * U_hat_k``

    ``U_k^{t_j}``: client ``k``'s stored update in the original round ``t_j`` (its model minus
    that round's global model); ``U_tilde_k^{t_j}``: its calibration update, trained from the
    calibrated global model ``M_tilde^{t_j}`` for a fraction of the local epochs. The old
    update gives the step's length, the calibration update its direction; ``k`` runs over
    the remaining clients of round ``t_j``. Integer buffers (none in the built-in MLP) keep
    the calibration's values."""
    total = float(sum(weights.values()))
    out = {}
    for key, base in calibrated_global.items():
        if not np.issubdtype(base.dtype, np.floating):
            out[key] = new_updates[next(iter(new_updates))][key] + base
            continue
        step = np.zeros_like(base, dtype=np.float64)
        for c, w in weights.items():
            u_new = new_updates[c][key].astype(np.float64)
            norm_new = np.linalg.norm(u_new)
            if norm_new > 0:
                step += (w / total) * np.linalg.norm(old_updates[c][key].astype(np.float64)) * u_new / norm_new
        out[key] = (base.astype(np.float64) + step).astype(base.dtype)
    return out


# --------------------------------------------------------------------------- runtimes
@contextlib.contextmanager
def _quiet_flower(level: int = logging.ERROR):
    """Flower logs every round at INFO; a federation here runs hundreds of rounds."""
    logger = logging.getLogger("flwr")
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


def run_local(setup: ClientSetup, program: ServerProgram) -> FederatedHistory:
    """The program against :class:`LocalGrid` (this process)."""
    with _quiet_flower():
        return program.run(LocalGrid(make_client_app(setup), setup.client_ids))


def run_flower_simulation(setup: ClientSetup, program: ServerProgram, num_cpus: int = 2) -> FederatedHistory:
    """The program under Flower's simulation runtime (``flwr.simulation.run_simulation``, Ray):
    one virtual SuperNode per client, the ``ServerApp`` in a thread of this process."""
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    out: dict[str, Any] = {}
    server = ServerApp()

    @server.main()
    def main(grid, context):
        try:
            out["history"] = program.run(grid)
        except BaseException as e:  # handed back to the caller below
            out["error"] = e

    with _quiet_flower(logging.WARNING):
        run_simulation(
            server,
            make_client_app(setup),
            num_supernodes=len(setup.client_ids),
            backend_config={
                "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                "init_args": {"num_cpus": num_cpus, "include_dashboard": False, "log_to_driver": False},
            },
        )
    if "error" in out:
        raise out["error"]
    if "history" not in out:
        raise FederatedError("the Flower simulation ended without a result (see its log)")
    return out["history"]


RUNTIMES = {"local": run_local, "flower": run_flower_simulation}
