"""The comparator's result cache: one JSON file per computed view, next to the artifacts.

``<home>/ui-cache/<key>.json`` with ``key = sha256(canonical JSON of {version, view,
artifacts, task, params})``: the artifact hashes of every model the view reads, the task key
(and whatever else identifies the data, e.g. the forget and holdout fingerprints, in
``params``), and the view's own parameters. A model's weights are named by their content
hash, so a cached result never outlives what it was computed from; ``VERSION`` changes when
a view's output changes shape. Files are written atomically (a reader never sees half a
file); a read-only workspace is served without writing anything; an unreadable or corrupt
file is a miss.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..utils import atomic_write

#: bump when a cached view's JSON changes (old files are then never read again)
VERSION = 1
FOLDER = "ui-cache"


def finite_json(obj: Any) -> Any:
    """``obj`` as JSON: NaN / infinities become None, numpy scalars and arrays plain
    numbers and lists (JSON has no NaN)."""
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, dict):
        return {str(k): finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [finite_json(v) for v in obj]
    return obj


def cache_key(view: str, artifacts: list[str | None], task_key: str, params: dict | None = None) -> str:
    """The SHA-256 (hex) naming the cached result of ``view`` on these models, task and params."""
    doc = {"version": VERSION, "view": view, "artifacts": list(artifacts), "task": task_key, "params": params or {}}
    text = json.dumps(finite_json(doc), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class ResultCache:
    """JSON results of the comparator's views under ``root`` (``<home>/ui-cache``).

    ``writable=False`` (a read-only workspace) reads what is there and writes nothing.
    ``hits`` and ``misses`` count lookups (tests, logs)."""

    def __init__(self, root: str | Path, writable: bool = True):
        self.root = Path(root)
        self.writable = writable
        self.hits = 0
        self.misses = 0

    @classmethod
    def of(cls, workspace) -> "ResultCache":
        """The cache of ``workspace`` (:class:`~unlearnkit.orchestration.experiment.Workspace`)."""
        return cls(Path(workspace.root) / FOLDER, writable=not getattr(workspace, "read_only", False))

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> Any | None:
        """The stored result under ``key``, or None (missing, unreadable or corrupt)."""
        try:
            doc = json.loads(self.path(key).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("key") != key or "value" not in doc:
            return None
        return doc["value"]

    def put(self, key: str, value: Any) -> bool:
        """Store ``value`` (strict JSON: NaN/inf become null) under ``key``; False when nothing
        was written (read-only workspace, or the folder cannot be written)."""
        if not self.writable:
            return False
        text = json.dumps({"key": key, "value": finite_json(value)}, allow_nan=False, separators=(",", ":"))
        try:
            with atomic_write(self.path(key), "w") as fh:
                fh.write(text)
        except OSError:
            return False  # a cache that cannot be written is only slower
        return True

    def get_or_compute(
        self,
        view: str,
        artifacts: list[str | None],
        task_key: str,
        params: dict | None,
        compute: Callable[[], Any],
    ) -> Any:
        """The cached result of ``view`` for these inputs, computing and storing it on a miss."""
        key = cache_key(view, artifacts, task_key, params)
        found = self.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        value = finite_json(compute())
        self.put(key, value)
        return value
