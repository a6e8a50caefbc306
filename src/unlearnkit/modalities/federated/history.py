"""What a federated run keeps: each round's global model, each client's update and cost,
the strategy's state, and the bytes exchanged (what FedEraser and exact retraining from
checkpoints read back)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

State = dict[str, np.ndarray]


def nbytes(state: State) -> int:
    return int(sum(a.nbytes for a in state.values()))


@dataclass
class ClientRound:
    """One client's contribution to one round: ``update = local model - global model``."""

    update: State
    num_examples: int
    examples_forward: int
    examples_backward: int
    steps: int
    bytes_down: int
    bytes_up: int
    role: str = "train"  # "train", "unlearn" (the target's local unlearning) or "calibrate"


@dataclass
class RoundRecord:
    """Round ``number`` (1-based, counted over the federation's whole life): the global
    model it started from, the strategy's state before it, and every client's part."""

    number: int
    global_before: State
    strategy_state: dict | None
    clients: dict[str, ClientRound] = field(default_factory=dict)
    global_after: State | None = None
    phase: str = "train"

    @property
    def participants(self) -> list[str]:
        return sorted(self.clients)


@dataclass
class FederatedCost:
    """Cost of a federated computation, each part counted where it happens."""

    rounds: int = 0
    examples_forward: int = 0
    examples_backward: int = 0
    steps: int = 0
    bytes_down: int = 0
    bytes_up: int = 0
    wall_time_s: float = 0.0

    @property
    def client_examples(self) -> int:
        """Examples through forward and backward passes on every client together."""
        return self.examples_forward + self.examples_backward

    @property
    def bytes_exchanged(self) -> int:
        return self.bytes_down + self.bytes_up

    def __add__(self, other: "FederatedCost") -> "FederatedCost":
        return FederatedCost(
            *(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__)  # type: ignore[arg-type]
        )

    def to_dict(self) -> dict:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d["client_examples"] = self.client_examples
        d["bytes_exchanged"] = self.bytes_exchanged
        return d

    @classmethod
    def of_rounds(cls, rounds: list[RoundRecord], wall_time_s: float = 0.0) -> "FederatedCost":
        c = cls(rounds=len(rounds), wall_time_s=wall_time_s)
        for r in rounds:
            for cr in r.clients.values():
                c.examples_forward += cr.examples_forward
                c.examples_backward += cr.examples_backward
                c.steps += cr.steps
                c.bytes_down += cr.bytes_down
                c.bytes_up += cr.bytes_up
        return c


@dataclass
class FederatedHistory:
    """Every round of a federated run, in order (rounds of later phases continue the count)."""

    rounds: list[RoundRecord] = field(default_factory=list)
    strategy_state: dict | None = None  # the strategy's state after the last round
    #: the frozen weights every client's model is built on, where only some arrays travel
    #: (a LoRA federation's base model, :mod:`.lm`); None when the whole model travels
    frozen: State | None = None

    def first_round_of(self, client: str) -> int | None:
        """The first round ``client`` contributed to (None if it never did)."""
        for r in self.rounds:
            if client in r.clients:
                return r.number
        return None

    def round(self, number: int) -> RoundRecord:
        return self.rounds[number - 1]

    @property
    def final_state(self) -> State | None:
        return self.rounds[-1].global_after if self.rounds else None


# --------------------------------------------------------------------------- on disk
def _encode_strategy(prefix: str, state: dict, tensors: dict) -> dict:
    """A strategy's state as named tensors and JSON: scalars, dicts and lists of arrays,
    ArrayRecords (FedAvgM's ``current_arrays``); callables (metric aggregators) are the
    strategy's own code, not state, and are left out."""
    import torch

    meta: dict[str, dict] = {}
    for attr, v in state.items():
        if isinstance(v, np.generic):
            v = v.item()
        if v is None or isinstance(v, (bool, int, float, str)):
            meta[attr] = {"kind": "value", "value": v}
        elif isinstance(v, dict) and all(isinstance(a, np.ndarray) for a in v.values()):
            for k, a in v.items():
                tensors[f"{prefix}/{attr}/{k}"] = torch.from_numpy(np.ascontiguousarray(a))
            meta[attr] = {"kind": "dict", "keys": list(v)}
        elif isinstance(v, list) and all(isinstance(a, np.ndarray) for a in v):
            for i, a in enumerate(v):
                tensors[f"{prefix}/{attr}/{i}"] = torch.from_numpy(np.ascontiguousarray(a))
            meta[attr] = {"kind": "list", "count": len(v)}
        elif hasattr(v, "to_torch_state_dict"):
            sd = v.to_torch_state_dict()
            for k, a in sd.items():
                tensors[f"{prefix}/{attr}/{k}"] = a.detach().clone().contiguous()
            meta[attr] = {"kind": "arrayrecord", "keys": list(sd)}
    return meta


def _decode_strategy(prefix: str, meta: dict, tensors: dict) -> dict:
    out: dict = {}
    for attr, m in meta.items():
        if m["kind"] == "value":
            out[attr] = m["value"]
        elif m["kind"] == "dict":
            out[attr] = {k: tensors[f"{prefix}/{attr}/{k}"].numpy().copy() for k in m["keys"]}
        elif m["kind"] == "list":
            out[attr] = [tensors[f"{prefix}/{attr}/{i}"].numpy().copy() for i in range(m["count"])]
        else:
            from flwr.app import ArrayRecord

            out[attr] = ArrayRecord({k: tensors[f"{prefix}/{attr}/{k}"].clone() for k in m["keys"]})
    return out


def _put(tensors: dict, prefix: str, state: State) -> list[str]:
    import torch

    for k, a in state.items():
        tensors[f"{prefix}/{k}"] = torch.from_numpy(np.ascontiguousarray(a))
    return list(state)


def history_tensors(history: FederatedHistory) -> tuple[dict, dict]:
    """Every stored round as named tensors and JSON metadata (what an artifact holds:
    ``ArtifactStore.save(tensors, metadata)``); :func:`history_from_tensors` reads it back."""
    tensors: dict = {}
    rounds = []
    for r in history.rounds:
        p = f"r{r.number:05d}"
        entry = {"number": r.number, "phase": r.phase, "keys": _put(tensors, f"{p}/before", r.global_before)}
        entry["after"] = r.global_after is not None and bool(_put(tensors, f"{p}/after", r.global_after or {}))
        entry["strategy"] = (
            None if r.strategy_state is None else _encode_strategy(f"{p}/strategy", r.strategy_state, tensors)
        )
        entry["clients"] = {}
        for c, cr in r.clients.items():
            _put(tensors, f"{p}/client/{c}", cr.update)
            entry["clients"][c] = {f: getattr(cr, f) for f in ClientRound.__dataclass_fields__ if f != "update"}
        rounds.append(entry)
    final = (
        None if history.strategy_state is None else _encode_strategy("final/strategy", history.strategy_state, tensors)
    )
    meta = {"kind": "federated_history", "rounds": rounds, "strategy_state": final}
    if history.frozen is not None:
        meta["frozen"] = _put(tensors, "frozen", history.frozen)
    return tensors, meta


def history_from_tensors(tensors: dict, meta: dict) -> FederatedHistory:
    """The :class:`FederatedHistory` :func:`history_tensors` wrote."""
    if meta.get("kind") != "federated_history":
        raise ValueError("not a federated history artifact")

    def state(prefix: str, keys: list[str]) -> State:
        return {k: tensors[f"{prefix}/{k}"].numpy().copy() for k in keys}

    out = FederatedHistory()
    for e in meta["rounds"]:
        p = f"r{e['number']:05d}"
        keys = e["keys"]
        r = RoundRecord(
            e["number"],
            state(f"{p}/before", keys),
            None if e["strategy"] is None else _decode_strategy(f"{p}/strategy", e["strategy"], tensors),
            phase=e["phase"],
        )
        r.global_after = state(f"{p}/after", keys) if e["after"] else None
        for c, fields in e["clients"].items():
            r.clients[c] = ClientRound(state(f"{p}/client/{c}", keys), **fields)
        out.rounds.append(r)
    if meta.get("strategy_state") is not None:
        out.strategy_state = _decode_strategy("final/strategy", meta["strategy_state"], tensors)
    if meta.get("frozen") is not None:
        out.frozen = state("frozen", meta["frozen"])
    return out
