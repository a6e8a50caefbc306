"""SISA: Sharded, Isolated, Sliced, Aggregated training (exact unlearning), Bourtoule et
al. 2021, "Machine Unlearning" (IEEE S&P).

A thin method over the sharded-training engine :mod:`unlearnkit.engines.sharded`, which
holds the training, the checkpoints, the deletion requests and the formulas and
departures (see its docstring).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

from ..engines.sharded import AGGREGATIONS, ASSIGNMENTS, SisaEnsemble, SisaState, train_sisa
from ..errors import ConfigError
from .base import Method, UnlearnResult, hp, register


@dataclass
class SisaParams:
    num_shards: int = hp(5, "S: number of disjoint shards, one constituent model each")
    num_slices: int = hp(3, "R: incremental slices per shard, checkpointed after each")
    aggregation: str = hp("mean_prob", "mean_prob (average probabilities) or vote (majority, as the paper)")
    assign: str = hp("example", "example (hash of the id, as the paper) or subject (a person's examples share a slice)")

    def __post_init__(self) -> None:
        if int(self.num_shards) != self.num_shards or self.num_shards < 1:
            raise ConfigError(f"sisa: num_shards must be an integer >= 1, not {self.num_shards!r}")
        if int(self.num_slices) != self.num_slices or self.num_slices < 1:
            raise ConfigError(f"sisa: num_slices must be an integer >= 1, not {self.num_slices!r}")
        self.num_shards, self.num_slices = int(self.num_shards), int(self.num_slices)
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(f"sisa: aggregation must be one of {', '.join(AGGREGATIONS)}, not {self.aggregation!r}")
        if self.assign not in ASSIGNMENTS:
            raise ConfigError(f"sisa: assign must be one of {', '.join(ASSIGNMENTS)}, not {self.assign!r}")


@register
class Sisa(Method):
    """SISA exact unlearning (Bourtoule et al. 2021): retrain only the affected shards,
    from the checkpoint before the earliest slice holding a deleted example.

    The unlearned model is a :class:`SisaEnsemble`, not a modified copy of
    ``task.original``: SISA changes how the model is trained. ``unlearn`` first runs
    SISA training on ``task.train`` (the preparation, done once before any request in
    a deployment; cached on this instance per task and seed), then answers the request
    ``task.forget`` on a copy. ``cost`` is the request's retraining only; the
    preparation's cost is in ``extra["preparation_cost"]``. Compared with the monolithic
    original and reference, the ensemble's accuracy cost of sharding shows. Training
    follows ``task.recipe`` (per-shard epochs = the recipe's epochs); see the module
    docstring for the formulas and departures.

    Where the task's original *is* a SISA ensemble saved with its checkpoints
    (``task.resume``: a sharded model line's deployed version), nothing is prepared: the
    request restores the affected shards from those checkpoints, with the deletions an
    approximate method answered before (the state's ``pending``) removed exactly too.
    """

    contract_exempt = {
        "step_budget": "a request's budget is the affected shards' remaining slices; SISA has no "
        "step cap by design (capping would break exactness)",
        "divergence": "SISA retrains with the task's recipe (plain cross-entropy), no lr of its own",
    }
    name = "sisa"
    Params = SisaParams
    summary = "SISA sharded, sliced retraining with checkpoints (exact)"
    citation = "Bourtoule et al. 2021, Machine Unlearning (IEEE S&P), SISA training"
    exact = True
    _cache_size = 2

    def __init__(self, **params):
        super().__init__(**params)
        self._prepared: dict[tuple, SisaEnsemble] = {}

    def prepare(self, task, seed: int = 0, progress: bool = False) -> SisaEnsemble:
        """SISA training on ``task.train`` (cached per task, training data and seed)."""
        labels = hashlib.sha256(task.train.labels.numpy().tobytes()).hexdigest()[:16]
        key = (task.key, task.train.fingerprint, labels, seed)
        if key not in self._prepared:
            p = self.params
            while len(self._prepared) >= self._cache_size:
                self._prepared.pop(next(iter(self._prepared)))
            self._prepared[key] = train_sisa(
                task.train,
                task.model_factory,
                task.adapter,
                task.recipe,
                p.num_shards,
                p.num_slices,
                seed,
                p.aggregation,
                task.device,
                progress=progress,
                assign=p.assign,
            )
        return self._prepared[key]

    def _resumed(self, task) -> SisaEnsemble:
        """The deployed ensemble with the state it was saved with; its shape must be this
        method's (a line's SISA parameters are fixed when it is registered)."""
        state = task.resume
        if not isinstance(state, SisaState) or not isinstance(task.original, SisaEnsemble):
            raise ConfigError("sisa: the task's saved training state is not a SISA ensemble's")
        p = self.params
        shape = (task.original.num_shards, len(state.members[0]), task.original.aggregation, state.assign)
        if shape != (p.num_shards, p.num_slices, p.aggregation, p.assign):
            raise ConfigError(
                f"sisa: the model was trained with {shape[0]} shards, {shape[1]} slices, {shape[2]} "
                f"aggregation and {shape[3]} assignment, not {p.num_shards}, {p.num_slices}, {p.aggregation} "
                f"and {p.assign}"
            )
        ens = SisaEnsemble(list(task.original.shards), task.original.aggregation)
        ens.load_state_dict(task.original.state_dict())
        ens.state = state
        return ens

    def model_template(self, task) -> SisaEnsemble:
        """An untrained ensemble of this shape, to load a saved SISA ``state_dict`` into."""
        return SisaEnsemble(
            [task.model_factory(0).to(task.device) for _ in range(self.params.num_shards)], self.params.aggregation
        )

    def unlearn(self, task, seed: int = 0, progress: bool = False) -> UnlearnResult:
        self._prepare(task)  # refuses a task of a modality it does not serve
        if task.resume is not None:
            prepared = self._resumed(task)
        else:
            prepared = self.prepare(task, seed, progress)
        ens = prepared.clone()
        req = ens.forget(task.split.forget_ids, progress)
        extra = {
            "preparation_cost": prepared.state.preparation_cost.to_dict(),
            "resumed": task.resume is not None,
            "affected_shards": req.affected_shards,
            "retrained_slices": req.retrained_slices,
            "total_slices": self.params.num_shards * self.params.num_slices,
            "shard_sizes": [sum(map(len, m)) for m in ens.state.members],
        }
        return UnlearnResult(ens, req.cost, self.name, dataclasses.asdict(self.params), seed, extra)
