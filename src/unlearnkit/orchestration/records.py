"""RunRecord: what the store keeps about one run, and what reports and the CLI read."""

from __future__ import annotations

import datetime as _dt
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunRecord:
    """One method applied to one task with one seed and one set of hyperparameters.

    ``kind`` is ``train`` (an original), ``reference`` (retrain on retain) or
    ``unlearn``. ``artifact`` is the content hash of the model's safetensors file.
    """

    kind: str
    task_key: str
    method: str
    seed: int
    task_spec: dict = field(default_factory=dict)
    scenario: dict = field(default_factory=dict)
    forget_fingerprint: str | None = None
    forget_ids: list[str] | None = None
    params: dict = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    artifact: str | None = None
    parent: str | None = None
    status: str = "ok"
    error: str | None = None
    tags: dict = field(default_factory=dict)
    id: str = field(default_factory=new_run_id)
    created_at: str = field(default_factory=now_iso)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunRecord":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class EvaluationRecord:
    """One evaluation of a stored run: its metrics and exactly what they were computed on.

    ``inputs`` names every split (forget and holdout ids, sizes and fingerprints of retain,
    test and holdout), the reference (its cache key and artifact) and the seed;
    ``inputs_fingerprint`` is a hash of ``inputs``. Evaluations are append-only: evaluating
    a run again on the same inputs gives the same metrics, on other inputs a new record.
    """

    run_id: str
    inputs_fingerprint: str
    inputs: dict = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    id: str = field(default_factory=new_run_id)
    created_at: str = field(default_factory=now_iso)

    def to_dict(self) -> dict:
        return asdict(self)
