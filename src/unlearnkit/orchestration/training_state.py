"""State stored beside a model artifact that the artifact alone does not give: what shape of
model to load it into, and what an exact method needs to continue its training in another
process. Two kinds of *manifest*, plain JSON kept on the model version it deploys
(``model_versions.training_state``), in the history of every later request's task spec
(``base_state``, so ``rebuild_task`` loads the same shape), and for SISA also in the run's
tags (``training_state``):

* ``model``: a model that is not ``task.model_factory``'s shape, built by methods that wrap
  the original (GNNDelete's deletion operators around the GNN, GNNDeleteModel);
  ``methods`` lists them in order, each building its model around the previous one's
  (``Method.model_template`` with ``task.base_template`` the previous template)::

    {"kind": "model", "methods": [{"name": "gnndelete", "params": {...}}, ...]}

  A deployed model line's later request loads the version into this shape
  (:func:`template`); there is nothing to resume (:func:`restore` gives None).

* ``sisa``: a SISA ensemble's checkpoints (a sharded model line's versions,
  :mod:`unlearnkit.engines.sharded`)::

    {"kind": "sisa", "num_shards": S, "num_slices": R, "aggregation": "mean_prob",
     "assign": "example" | "subject", "seed": 0,
     "checkpoints": [[artifact hash, ...R + 1 per shard], ...S],
     "pending": {id: assignment key, for ids deleted approximately, still in the checkpoints},
     "stale": [shards whose deployed parameters are not their last checkpoint]}

Each checkpoint is an artifact of its own, addressed by content, so versions that share a
shard's checkpoints store them once.
"""

from __future__ import annotations

import functools
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

KINDS = ("sisa", "model")


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
    if manifest["kind"] == "model":
        steps = manifest.get("methods")
        if (
            not isinstance(steps, list)
            or not steps
            or any(not isinstance(m, dict) or not isinstance(m.get("name"), str) for m in steps)
            or any(not isinstance(m.get("params", {}), dict) for m in steps)
        ):
            raise ConfigError("a model training state needs methods: [{name, params}, ...], at least one")
        return manifest
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
    if manifest["kind"] != "sisa":
        raise ConfigError("only a SISA training state has examples pending in checkpoints")
    keys = dict(zip((str(i) for i in forgotten.example_ids), assignment_keys(forgotten, manifest["assign"])))
    return {
        **manifest,
        "pending": dict(sorted({**(manifest.get("pending") or {}), **keys}.items())),
        "stale": list(range(manifest["num_shards"])),
    }


def template(manifest: dict, task: "Task") -> Callable[[], nn.Module]:
    """``() -> an untrained model of the manifest's shape`` (to load the version into)."""
    check_manifest(manifest)
    if manifest["kind"] == "model":
        return _method_template(manifest["methods"], task)

    def make() -> nn.Module:
        models = [task.model_factory(0).to(task.device) for _ in range(manifest["num_shards"])]
        return SisaEnsemble(models, manifest["aggregation"])

    return make


def restore(manifest: dict, task: "Task", artifacts: "ArtifactStore", model: nn.Module) -> SisaState | None:
    """The training state of ``model`` (loaded from the version's artifact) for ``task``,
    whose training set is the data that remains; every checkpoint is hash verified. None
    for a ``model`` manifest (its shape is all it records: nothing to resume)."""
    check_manifest(manifest)
    if manifest["kind"] == "model":
        return None
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


def _method_template(steps: list[dict], task: "Task") -> Callable[[], nn.Module]:
    """``() -> model``: each method's ``model_template`` in turn, with ``task.base_template``
    the previous one's (the first's: ``model_factory``'s shape, or the task's own template)."""
    import dataclasses

    from ..methods import get_method

    make = task.base_template
    for step in steps:
        method = get_method(step["name"], **(step.get("params") or {}))
        make = functools.partial(method.model_template, dataclasses.replace(task, base_template=make))
    return make


def after_method(manifest: dict | None, method: str, params: dict, task: "Task") -> dict | None:
    """The ``model`` manifest of what ``method`` (with ``params``) returns when it starts from
    a model of ``manifest``'s shape (None: ``task.model_factory``'s), or None where that is
    ``model_factory``'s shape again (same parameter and buffer names and shapes: the plain
    load path restores it). A method keeping its original's shape (``Method.model_template``
    not overridden: fine-tuning, gradient ascent, ...) keeps the manifest as it is without
    building a model."""
    from ..methods import get_method
    from ..methods.base import Method

    if manifest is not None:
        check_manifest(manifest)
        if manifest["kind"] != "model":
            raise ConfigError("after_method describes plain models and method-built shapes, not SISA ensembles")
    m = get_method(method, **(params or {}))
    if type(m).model_template is Method.model_template:
        return manifest
    steps = [*(manifest or {}).get("methods", []), {"name": method, "params": dict(params or {})}]
    built = _method_template(steps, task)()
    plain = task.model_factory(task.seed)
    if _shape(built) == _shape(plain):
        return None
    return {"kind": "model", "methods": steps}


def _shape(model: nn.Module) -> tuple[type, dict]:
    return type(model), {k: tuple(v.shape) for k, v in model.state_dict().items()}


__all__ = ["after_approximate", "after_method", "check_manifest", "export_training_state", "restore", "template"]
