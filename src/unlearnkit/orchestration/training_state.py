"""Training state stored beside a model artifact, so that an exact method can continue the
model's training in another process: today a SISA ensemble's checkpoints (a sharded model
line's versions, :mod:`unlearnkit.engines.sharded`).

A *manifest* is plain JSON, kept in the run's tags (``training_state``) and on the model
version it deploys::

    {"kind": "sisa", "num_shards": S, "num_slices": R, "aggregation": "mean_prob",
     "assign": "example" | "subject", "seed": 0,
     "checkpoints": [[artifact hash, ...R + 1 per shard], ...S],
     "pending": {id: assignment key, for ids deleted approximately, still in the checkpoints},
     "stale": [shards whose deployed parameters are not their last checkpoint]}

Each checkpoint is an artifact of its own, addressed by content, so versions that share a
shard's checkpoints store them once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from torch import nn

from ..data.dataset import ExampleSet
from ..engines.sharded import (
    AGGREGATIONS,
    ASSIGNMENTS,
    SisaEnsemble,
    SisaState,
    assignment_keys,
    resume_sisa,
    sisa_checkpoints,
)
from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from ..task import Task
    from .artifacts import ArtifactStore

KINDS = ("sisa",)


def export_training_state(model: nn.Module, artifacts: "ArtifactStore") -> dict | None:
    """The manifest of ``model``'s training state, its checkpoints written to ``artifacts``;
    None for a model that carries none (every model but a SISA ensemble with its state)."""
    if not isinstance(model, SisaEnsemble) or model.state is None:
        return None
    st = model.state
    checkpoints = [[artifacts.save(ck) for ck in row] for row in sisa_checkpoints(model)]
    return {
        "kind": "sisa",
        "num_shards": model.num_shards,
        "num_slices": len(checkpoints[0]) - 1,
        "aggregation": model.aggregation,
        "assign": st.assign,
        "seed": int(st.seed),
        "checkpoints": checkpoints,
        "pending": dict(sorted(st.pending.items())),
        "stale": sorted(st.stale),
    }


def check_manifest(manifest: dict) -> dict:
    """``manifest`` if well formed, else a one-line :class:`ConfigError`."""
    if not isinstance(manifest, dict) or manifest.get("kind") not in KINDS:
        raise ConfigError(f"a training state must be a mapping of kind {', '.join(KINDS)}")
    s, r = manifest.get("num_shards"), manifest.get("num_slices")
    rows = manifest.get("checkpoints")
    if not (isinstance(s, int) and isinstance(r, int) and s >= 1 and r >= 1):
        raise ConfigError("a SISA training state needs integer num_shards and num_slices >= 1")
    if manifest.get("assign") not in ASSIGNMENTS or not isinstance(manifest.get("pending", {}), dict):
        raise ConfigError(f"a SISA training state's assign must be one of {', '.join(ASSIGNMENTS)}")
    if manifest.get("aggregation") not in AGGREGATIONS:
        raise ConfigError(f"a SISA training state's aggregation must be one of {', '.join(AGGREGATIONS)}")
    if not isinstance(rows, list) or len(rows) != s or any(not isinstance(x, list) or len(x) != r + 1 for x in rows):
        raise ConfigError(f"a SISA training state needs {r + 1} checkpoints for each of its {s} shards")
    return manifest


def after_approximate(manifest: dict, forgotten: ExampleSet) -> dict:
    """The state of an ensemble an approximate method changed to forget the examples of
    ``forgotten``: the checkpoints are those of its base; the examples become pending and
    every shard stale."""
    check_manifest(manifest)
    keys = dict(zip((str(i) for i in forgotten.example_ids), assignment_keys(forgotten, manifest["assign"])))
    return {
        **manifest,
        "pending": dict(sorted({**(manifest.get("pending") or {}), **keys}.items())),
        "stale": list(range(manifest["num_shards"])),
    }


def template(manifest: dict, task: "Task") -> Callable[[], nn.Module]:
    """``() -> an untrained model of the manifest's shape`` (to load the version into)."""
    check_manifest(manifest)

    def make() -> nn.Module:
        models = [task.model_factory(0).to(task.device) for _ in range(manifest["num_shards"])]
        return SisaEnsemble(models, manifest["aggregation"])

    return make


def restore(manifest: dict, task: "Task", artifacts: "ArtifactStore", model: nn.Module) -> SisaState:
    """The training state of ``model`` (loaded from the version's artifact) for ``task``,
    whose training set is the data that remains; every checkpoint is hash verified."""
    check_manifest(manifest)
    if not isinstance(model, SisaEnsemble):
        raise ConfigError("a SISA training state belongs to a SISA ensemble")
    checkpoints = [[artifacts.load_state_dict(h) for h in row] for row in manifest["checkpoints"]]
    resume_sisa(
        model,
        task.split.train,
        checkpoints,
        task.adapter,
        task.recipe,
        manifest["seed"],
        task.device,
        pending=manifest.get("pending") or {},
        stale=manifest.get("stale") or (),
        assign=manifest["assign"],
    )
    state, model.state = model.state, None  # the task carries it; the deployed model stays plain
    return state


__all__ = ["after_approximate", "check_manifest", "export_training_state", "restore", "template"]
