"""A federated causal-LM task: the generated profiles (TOFU-style) dealt out to clients *by
person*, each client training only LoRA adapters on a frozen base model, the server
aggregating only the adapter tensors with the same Flower strategies, as Oblivionis
(federated LLM learning and unlearning, 2025) does with LoRA on TOFU.

* **Base model** (frozen): a tiny Llama trained *once, centrally* from scratch, with the
  causal-LM task's own recipe (:func:`unlearnkit.modalities.causal_lm.task.default_lm_recipe`),
  on the profiles' *public* rows (the ``other`` people and the world facts, which no client
  holds). Oblivionis starts from a pretrained LLM (Llama-2-7B, ...); nothing here is
  pretrained, so the base knows only the public rows and every client person's facts come
  from the adapters. It is stored with the federation's rounds
  (:attr:`~.history.FederatedHistory.frozen`), never trained again.
* **Clients** hold whole people: the training people's rows (direct, alias and multi-hop
  questions) dealt round-robin after a seeded shuffle (:func:`~.partition.partition_clients`,
  scheme ``subject``); label skew (``dirichlet``) has no meaning without classes and is refused.
* **What travels**: each client's LoRA tensors (peft, Hu et al. 2022: ``W + (alpha/r) B A``
  on every linear projection of the Llama blocks by default); bytes counted are theirs.
  Every client starts from the same seeded LoRA initialisation (``A`` random, ``B = 0``).
* **Global model**: the aggregated adapters merged into the base (``merge_and_unload``), a
  plain Llama of the base's architecture (what is stored as a run's artifact and scored).
* **Metrics** (:meth:`FederatedLMTask.evaluate_global`): the causal-LM modality's own code,
  unchanged: TOFU forget quality and model utility, ROUGE and answer probability on the
  forgotten people (:mod:`unlearnkit.modalities.causal_lm.metrics`), the LOSS / Min-K%
  membership attacks (``lm_mia``) of the forgotten client's rows against never-trained
  holdout people, with gaps to federated retraining, and the cost ratios of
  :func:`.metrics.cost_ratios`.

Unlearning is :mod:`.unlearning`'s, unchanged (``retrain``, ``exact``, ``local`` with the
project's LM methods inside the client); FedEraser runs too (its calibration is defined on
any arrays), but is not what the issue asks for here.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ...data.dataset import ExampleSet
from ...data.scenarios import Split
from ...engines.loop import LoopStats, TrainConfig
from ...errors import ConfigError
from ...utils import derive_seed, resolve_device, stable_hash
from ..causal_lm.adapter import CausalLMAdapter, with_lora
from ..causal_lm.task import LMTask, default_lm_recipe
from .history import FederatedCost, FederatedHistory, State
from .partition import parse_scheme, partition_clients
from .runtime import RUNTIMES, ClientSetup, Phase, ServerProgram, check_strategy
from .task import FederatedForget, FederatedTask, LocalSplits, join_rounds, resolve_forget

#: the tiny Llama of the tests and the CLI's default (``model`` overrides any key)
DEFAULT_LM_MODEL = {"hidden": 32, "layers": 1, "heads": 2, "intermediate": 64}
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: LoRA on every linear projection (the facts of a person live mostly in the MLPs; q/v only
#: learned them less than half as well on the tiny Llama, measured while writing this module)
DEFAULT_LORA = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ALL_LINEAR}
#: the profiles' rows the base model is trained on: no client holds them
PUBLIC_KINDS = ("retain", "world")


def default_client_recipe() -> TrainConfig:
    """Each client's local LoRA training per round: AdamW, lr 1e-2 (adapters train at a
    larger rate than full weights), batches of 16, gradient clipping at 1, no schedule
    (each round's local training is a new run of the loop)."""
    return TrainConfig(epochs=1.0, batch_size=16, lr=1e-2, optimizer="adamw", weight_decay=0.0, grad_clip=1.0)


@dataclass
class FederatedLMAdapter(CausalLMAdapter):
    """The causal-LM adapter naming the federated modality; clients use a plain one."""

    modality: str = "federated"

    def local(self) -> CausalLMAdapter:
        return CausalLMAdapter(self.tokenizer, self.device)


@dataclass
class LMClientTask(LocalSplits, LMTask):
    """One client's local task for an LM method run inside it (:func:`make_lm_client_task`)."""

    local_forget: ExampleSet | None = None
    local_retain: ExampleSet | None = None


def make_lm_client_task(data: ExampleSet, forget_ids, model: nn.Module, adapter) -> LMClientTask:
    """The client's causal-LM task: forget = the forgotten rows, retain = the rest of its own
    rows (empty when the whole client leaves); the original is the model it received (base +
    the global adapters, only the adapters trainable), so a method's optimiser, which skips
    frozen parameters, updates the adapters alone (``lora`` stays None: the model is wrapped)."""
    forget = data.select(list(forget_ids), name="forget")
    retain = data.without(list(forget_ids), name="retain")
    local = CausalLMAdapter(adapter.tokenizer, adapter.device)
    return LMClientTask(
        None, local, lambda s: model, TrainConfig(), model, spec={"modality": "causal_lm"},
        local_forget=forget, local_retain=retain,
    )  # fmt: skip


# --------------------------------------------------------------------------- adapters' arrays
def adapter_state(model: nn.Module) -> State:
    """The arrays that travel: the tensors of ``model``'s trainable (LoRA) parameters."""
    live = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items() if k in live}


def load_adapters(model: nn.Module, state: State) -> nn.Module:
    """Load the adapter arrays ``state`` into a LoRA-wrapped ``model`` (every adapter tensor
    must be given, nothing else)."""
    live = {n for n, p in model.named_parameters() if p.requires_grad}
    if set(state) != live:
        raise ConfigError(f"adapter arrays do not match the model's LoRA tensors ({len(state)} vs {len(live)})")
    missing = model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=False)
    if missing.unexpected_keys:
        raise ConfigError(f"unexpected adapter keys {missing.unexpected_keys[:3]}")
    return model


# --------------------------------------------------------------------------- the task
@dataclass
class FederatedLMTask(FederatedTask):
    """A :class:`~.task.FederatedTask` whose clients hold people of the profiles LM task and
    train LoRA adapters on a frozen base. ``model_factory`` builds the base's architecture
    (what a global model's artifact loads into); besides :class:`FederatedTask`'s fields:

    Attributes:
        view: the causal-LM task of the current request (its forget rows, probes, holdout
            people and utility sets), what the LM metrics score.
        base_state: the frozen base model's weights.
        lora: the LoRA settings (:func:`~unlearnkit.modalities.causal_lm.adapter.with_lora`).
        base_cost: what training the base once, centrally, cost (not part of any ratio).
        data_args: the generator's arguments, to build a request's view again.
    """

    view: LMTask | None = None
    base_state: State = field(default_factory=dict)
    lora: dict = field(default_factory=dict)
    base_cost: LoopStats = field(default_factory=LoopStats)
    data_args: dict = field(default_factory=dict)
    _base: nn.Module | None = field(default=None, repr=False, compare=False)

    # -- the models
    def base_model(self) -> nn.Module:
        if self._base is None:
            m = self.model_factory(self.seed)
            m.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self.base_state.items()})
            for p in m.parameters():
                p.requires_grad_(False)
            self._base = m.eval()
        return self._base

    def client_model(self, seed: int) -> nn.Module:
        """The frozen base wrapped with fresh LoRA adapters (seeded: every client and every
        run starts from the same initial adapters)."""
        m = copy.deepcopy(self.base_model())
        torch.manual_seed(derive_seed(seed, "lora-init") % (2**31))
        return with_lora(m, **self.lora)

    def initial_state(self) -> dict:
        return adapter_state(self.client_model(self.seed))

    def global_model(self, state: dict) -> nn.Module:
        """The aggregated adapters ``state`` merged into the base: a plain Llama."""
        m = load_adapters(self.client_model(self.seed), state)
        return m.merge_and_unload().to(self.device).eval()

    def client_setup(self, unlearners: dict | None = None) -> ClientSetup:
        return ClientSetup(
            self.client_data, self.client_model, self.adapter.local(), self.recipe, self.seed,
            dict(unlearners or {}), make_lm_client_task, adapter_state, load_adapters,
        )  # fmt: skip

    # -- requests
    def with_forget_request(self, request: FederatedForget) -> "FederatedLMTask":
        """The same federation and stored rounds with another request (a client, people
        inside one client, or rows inside one client), checked first; its LM view (forget
        rows, probes about the forgotten people, the retain sample without them) is built
        from the same generated data and tokenizer."""
        forget_ids, scenario = resolve_forget(self, request)
        view = build_view(self.data_args, {"ids": forget_ids}, self.view.adapter.tokenizer, self.view.model_factory)
        split = Split(self.split.train, view.holdout, forget_ids, view.holdout, scenario)
        spec = {k: v for k, v in self.spec.items() if k != "scenario"}
        return dataclasses.replace(self, split=split, forget_request=request, spec=spec, memo={}, view=view)

    def line_view(self, forget_ids, excluded) -> LMTask:
        """The LM view of a request on a model line (:func:`.flow.with_line_history`): the
        forget rows ``forget_ids``, and the rows deleted before (``excluded``) out of its
        retain sample (``retain_eval`` and its answer variants, aligned by id), so model
        utility is measured on people the line still holds; holdout people as always."""
        view = build_view(
            self.data_args, {"ids": list(forget_ids)}, self.view.adapter.tokenizer, self.view.model_factory
        )
        gone = {str(i) for i in excluded}
        sets = {}
        for name, es in view.eval_sets.items():
            drop = [str(i) for i in es.example_ids.tolist() if str(i) in gone] if name.startswith("retain_eval") else []
            sets[name] = es.without(drop, name=es.name) if drop else es
        return dataclasses.replace(view, eval_sets=sets)

    # -- metrics
    def evaluate_global(self, model: nn.Module, cost: FederatedCost, reference, seed: int = 0) -> dict[str, float]:
        """Every number of global model ``model`` against federated retraining ``reference``
        (a :class:`~.unlearning.FederatedResult`): the causal-LM metrics (TOFU forget
        quality, model utility, ROUGE / probability on the forgotten rows, LOSS and Min-K%
        membership AUCs of the forgotten rows vs holdout people), gaps to the reference's
        values, and cost ratios (:func:`.metrics.evaluate_lm_federated`)."""
        from .metrics import evaluate_lm_federated

        return evaluate_lm_federated(self, model, cost, reference, seed)


def build_view(data_args: dict, forget: dict, tokenizer=None, factory=None) -> LMTask:
    """The causal-LM task over the generated profiles with forget set ``forget``
    (``{"ids": [...]}``), untrained (``original`` is None: federated models are scored on it).
    ``tokenizer``: the federation's (fitted on text that does not depend on the request)."""
    from ..causal_lm import task as lm

    a = data_args
    rows = lm._profile_rows(
        "profiles", forget, a["n_people"], a["qa_per_person"], a["n_other"], a["data_seed"], a["retain_eval_size"]
    )
    tok = tokenizer if tokenizer is not None else lm._tokenizer(rows, "bpe", a["vocab_size"], None)
    sets, max_len = lm._encode_all(rows, tok, None)
    train, holdout = sets.pop("train"), sets.pop("holdout")
    if factory is None:
        factory = lm._model_factory({**lm.DEFAULT_MODEL, **a["model"]}, None, len(tok), max_len, tok)
    split = Split(train, holdout, rows["forget_ids"], holdout, {"kind": "lm", "forget": forget})
    return LMTask(split, CausalLMAdapter(tok, a.get("device", "cpu")), factory, default_lm_recipe(), None,
                  spec={"modality": "causal_lm"}, eval_sets=sets)  # fmt: skip


def _train_base(view: LMTask, seed: int, recipe: TrainConfig, data_args: dict, cache=None) -> tuple[State, LoopStats]:
    """The frozen base: the tiny Llama trained once, centrally, on the public rows (the
    ``other`` people and world facts; training people's ids start with ``p``)."""
    train = view.train
    public = train.take(np.flatnonzero([not str(s).startswith("p") for s in train.subject_ids]), name="public")
    key = f"federated-lm-base-{stable_hash([public.fingerprint, recipe.to_dict(), seed, data_args])}"
    model = view.model_factory(seed)
    info = cache.get(key, model) if cache is not None else None
    if info is None:
        task = dataclasses.replace(view, recipe=recipe)
        model, cost = task.train_from_scratch(public, seed, desc="base")
        if cache is not None:
            cache.put(key, model, {"cost": cost.to_dict()})
    else:
        cost = LoopStats(**info["cost"])
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}, cost


def make_federated_lm_task(
    n_people: int = 12,
    n_clients: int = 3,
    strategy: str = "fedavg",
    rounds: int = 3,
    local_epochs: float = 1.0,
    forget: FederatedForget | None = None,
    joins: dict[str, int] | None = None,
    seed: int = 0,
    model: dict | None = None,
    lora: dict | None = None,
    recipe: TrainConfig | None = None,
    base_recipe: TrainConfig | None = None,
    strategy_kwargs: dict | None = None,
    runtime: str = "local",
    qa_per_person: int = 10,
    n_other: int = 4,
    data_seed: int = 0,
    vocab_size: int = 1024,
    retain_eval_size: int = 200,
    partition_scheme: str = "subject",
    device: str | torch.device | None = None,
    stored: FederatedHistory | None = None,
    cache=None,
) -> FederatedLMTask:
    """The profiles LM task federated by person (see the module docstring): generate
    ``n_people`` training people (:func:`~unlearnkit.data.profiles.generate_profiles`), train
    the base once on the public rows (or take it from ``stored``), deal the people to
    ``n_clients`` clients, train the global adapters for ``rounds`` rounds with ``strategy``
    (every round stored), and set the forget request (default: the last client leaves).

    ``model``: tiny Llama sizes (default :data:`DEFAULT_LM_MODEL`); ``lora``: LoRA settings
    (default :data:`DEFAULT_LORA`); ``recipe``: a client's local training
    (:func:`default_client_recipe`); ``base_recipe``: the base's (the LM task's default).
    ``stored``: this federation's rounds kept earlier (with the base): nothing is trained.
    Everything is checked before anything is trained."""
    check_strategy(strategy)
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    if rounds < 1 or not local_epochs > 0:
        raise ConfigError("rounds must be >= 1 and local_epochs > 0")
    if parse_scheme(partition_scheme)[0] != "subject":
        raise ConfigError("an LM federation deals people out (partition 'subject'); label skew needs classes")
    from ..causal_lm.task import DEFAULT_MODEL

    sizes = {**DEFAULT_LM_MODEL, **(model or {})}
    unknown = set(sizes) - set(DEFAULT_MODEL)
    if unknown:
        raise ConfigError(f"unknown model size key(s) {sorted(unknown)}; use {', '.join(DEFAULT_MODEL)}")
    lora = {**DEFAULT_LORA, **(lora or {})}
    lora["target_modules"] = list(lora["target_modules"])
    if int(lora["r"]) < 1:
        raise ConfigError("LoRA rank r must be >= 1")
    device = resolve_device(device)
    data_args = {
        "n_people": int(n_people), "qa_per_person": int(qa_per_person), "n_other": int(n_other),
        "data_seed": int(data_seed), "retain_eval_size": int(retain_eval_size), "vocab_size": int(vocab_size),
        "model": sizes,
    }  # fmt: skip
    view = build_view({**data_args, "device": str(device)}, "forget10")
    tr = view.train
    people_rows = np.flatnonzero([str(s).startswith("p") for s in tr.subject_ids])
    clients_train = tr.take(people_rows, name="clients")
    part = partition_clients(clients_train, n_clients, partition_scheme, seed)
    client_data = {c: part.data_of(c, clients_train) for c in part.client_ids}
    joins = join_rounds(joins, client_data, rounds)
    recipe = dataclasses.replace(recipe or default_client_recipe(), epochs=float(local_epochs))
    base_recipe = base_recipe or default_lm_recipe()
    spec = {
        "modality": "federated",
        "local_task": "lm",
        "dataset": "profiles",
        "source": "profiles",
        **{k: v for k, v in data_args.items() if k != "model"},
        "lm_model": sizes,
        "client_lora": lora,
        "n_clients": n_clients,
        "partition": partition_scheme,
        "strategy": strategy,
        "strategy_kwargs": dict(strategy_kwargs or {}),
        "rounds": rounds,
        "local_epochs": float(local_epochs),
        "joins": joins,
        "recipe": recipe.to_dict(),
        "base_recipe": base_recipe.to_dict(),
        "seed": seed,
        "tokenizer_vocab": stable_hash(sorted(view.adapter.tokenizer.get_vocab().items())),
        "train_fingerprint": tr.fingerprint,
    }
    adapter = FederatedLMAdapter(view.adapter.tokenizer, device)
    placeholder = Split(clients_train, view.holdout, clients_train.example_ids[:1], view.holdout, {})
    task = FederatedLMTask(
        placeholder, adapter, view.model_factory, recipe, None, LoopStats(), seed, spec,
        partition=part, client_data=client_data, strategy=strategy, rounds=rounds,
        local_epochs=float(local_epochs), joins=joins, runtime=runtime,
        strategy_kwargs=dict(strategy_kwargs or {}), view=view, lora=lora, data_args=data_args,
    )  # fmt: skip
    request = forget or FederatedForget(client=part.client_ids[-1])
    task = task.with_forget_request(request)  # checked before training
    if stored is not None:
        if len(stored.rounds) != rounds or stored.final_state is None or not stored.frozen:
            raise ConfigError(
                f"the stored history has {len(stored.rounds)} rounds (and a base?), the federation {rounds}"
            )
        task.base_state, task.base_cost = stored.frozen, LoopStats()
        history, wall = stored, 0.0
    else:
        task.base_state, task.base_cost = _train_base(task.view, seed, base_recipe, data_args, cache)
        program = ServerProgram(
            strategy, task.initial_state(), [Phase(rounds)], joins, local_epochs, task.strategy_kwargs
        )
        history, wall = task.run_program(program)
        history.frozen = task.base_state
    task.history = history
    task.federated_cost = FederatedCost.of_rounds(history.rounds, wall)
    c = task.federated_cost
    task.original_cost = LoopStats(c.steps, c.examples_forward, c.examples_backward, wall)
    task.original = task.global_model(history.final_state)
    return task


def task_from_spec(
    spec: dict, scenario=None, cache=None, progress: bool = False, device=None, stored: FederatedHistory | None = None
) -> FederatedLMTask:
    """Rebuild an LM federation from its spec: from its ``stored`` rounds and base, or by
    training it again (deterministic on the local runtime under the spec's seed)."""
    request = scenario if isinstance(scenario, FederatedForget) else None
    if request is None:
        d = scenario if isinstance(scenario, dict) else spec.get("scenario") or {}
        request = FederatedForget.from_dict(d) if d else None
    return make_federated_lm_task(
        spec["n_people"], spec["n_clients"], spec["strategy"], spec["rounds"], spec["local_epochs"], request,
        spec.get("joins"), spec["seed"], spec["lm_model"], spec["client_lora"], TrainConfig(**spec["recipe"]),
        TrainConfig(**spec["base_recipe"]), spec.get("strategy_kwargs"), qa_per_person=spec["qa_per_person"],
        n_other=spec["n_other"], data_seed=spec["data_seed"], vocab_size=spec["vocab_size"],
        retain_eval_size=spec["retain_eval_size"], partition_scheme=spec["partition"], device=device,
        stored=stored, cache=cache,
    )  # fmt: skip


def train_metrics(task: FederatedLMTask) -> dict[str, float]:
    """The global model's exact match and token accuracy on every client's rows, and what
    training it cost in rounds and bytes."""
    acc = task.adapter.local().answer_accuracy(task.original, task.train)
    return {
        "exact_match_train": float(acc["exact"].mean()),
        "token_acc_train": float(acc["token_acc"].mean()),
        "rounds": float(task.federated_cost.rounds),
        "bytes_exchanged": float(task.federated_cost.bytes_exchanged),
    }


def describe_clients(task: FederatedLMTask) -> list[dict]:
    """Per client: rows, people, join round."""
    return [
        {"client": c, "examples": len(d), "subjects": len(task.partition.clients[c]), "joins": task.joins[c]}
        for c, d in task.client_data.items()
    ]
