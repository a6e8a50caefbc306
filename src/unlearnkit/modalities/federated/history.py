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
