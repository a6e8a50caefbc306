"""SISA: Sharded, Isolated, Sliced, Aggregated training (exact unlearning).

Bourtoule et al. 2021, "Machine Unlearning" (IEEE S&P), Section IV:

* **Sharded / isolated**: the training set ``D`` is split into ``S`` disjoint shards
  ``D_1..D_S``; one constituent model per shard is trained on its shard only.
* **Sliced**: each shard is split into ``R`` disjoint slices ``D_{s,1..R}``. The model
  of shard ``s`` is trained incrementally: step ``k`` trains on ``D_{s,1} ∪ .. ∪ D_{s,k}``
  for ``e' = 2e / (R + 1)`` epochs (paper, Section V-B, so that the examples processed
  per shard equal ``e`` epochs over the shard: ``sum_k e' k/R = e``), starting from
  the parameters after step ``k-1``, and the parameters are checkpointed after every step.
* **Unlearning**: to delete ``d`` in slice ``r`` of shard ``s``, restore the checkpoint
  taken before slice ``r`` was first used and redo steps ``r..R`` of shard ``s``
  without ``d``. Other shards are untouched. The result is exactly the model SISA
  training would produce on ``D \\ {d}`` (with the same randomness).
* **Aggregated**: the paper's label-only aggregation is a majority vote of the
  constituents' predicted labels.

Here (departures and choices, stated):

* Assignment of an example to a shard and a slice is a hash of ``(seed, example_id)``
  (:func:`sisa_assignment`), not of its row, so deleting an example moves no other
  one. Shard sizes are therefore only approximately equal (the paper splits uniformly).
* Each (shard, slice) step is one call of :func:`~unlearnkit.loop.run_loop` with a
  fresh optimiser, seeded by ``derive_seed(seed, "sisa-train", shard, slice)``, on the
  step's examples in canonical (sorted-id) order. The state carried between slices is
  the parameters (and buffers) alone, which is what makes restore-and-retrain exact;
  the official code keeps the optimiser state across slices during training but loses
  it when it resumes from a checkpoint, so its retraining is not bitwise exact.
  The recipe's ``max_steps`` (if any) caps every (shard, slice) step; a ``cosine``
  schedule restarts at each slice.
* Aggregation ``"mean_prob"`` (the default) returns ``log(mean_s softmax(f_s(x)))``,
  the averaged-probability aggregation the paper mentions as an alternative; the
  ensemble is then a logits-producing classifier whose softmax is the averaged
  prediction. ``"vote"`` follows the paper: the argmax is the majority vote, ties broken
  by the mean probability (scores ``votes + 0.5 * mean_prob``, normalised, so losses stay
  finite).
* A shard whose examples were all deleted no longer takes part in aggregation.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import time
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from ..data.dataset import ExampleSet
from ..data.scenarios import validate_forget_ids
from ..errors import ConfigError
from ..engines.loop import LoopStats, TrainConfig, cross_entropy_objective, run_loop
from ..utils import atomic_path, derive_seed
from .base import Method, UnlearnResult, hp, register

AGGREGATIONS = ("mean_prob", "vote")


def sisa_assignment(example_ids: Iterable[str], num_shards: int, num_slices: int,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shard and slice of each example: ``h = derive_seed(seed, "sisa-assign", id)``,
    ``shard = h mod S``, ``slice = (h div S) mod R``. A pure function of (seed, id)."""
    h = [derive_seed(seed, "sisa-assign", str(i)) for i in example_ids]
    shard = np.asarray([x % num_shards for x in h], dtype=np.int64)
    slc = np.asarray([(x // num_shards) % num_slices for x in h], dtype=np.int64)
    return shard, slc


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


@dataclass
class SisaState:
    """What retraining needs: remaining data, slice membership, checkpoints, recipe.

    ``members[s][k]`` are the sorted ids of slice ``k`` of shard ``s``;
    ``checkpoints[s][k]`` is shard ``s``'s state before slice ``k`` (``k = 0``: its
    initialisation, ``k = R``: the trained constituent). Checkpoint dicts are never
    modified in place, only replaced, so clones can share them.
    """

    data: ExampleSet
    members: list[list[list[str]]]
    checkpoints: list[list[dict[str, torch.Tensor]]]
    adapter: object
    slice_cfg: TrainConfig
    seed: int
    device: torch.device
    checkpoint_dir: Path | None = None
    preparation_cost: LoopStats = field(default_factory=LoopStats)


@dataclass
class SisaRequest:
    """What one deletion request did."""

    cost: LoopStats
    affected_shards: list[int]
    retrained_slices: int

    def to_dict(self) -> dict:
        return {"cost": self.cost.to_dict(), "affected_shards": self.affected_shards,
                "retrained_slices": self.retrained_slices}


class SisaEnsemble(nn.Module):
    """The SISA constituents and their aggregation, a drop-in logits classifier.

    Build and train one with :func:`train_sisa`; delete examples with :meth:`forget`
    (any number of requests, one after the other). ``state_dict()`` holds the
    constituents' parameters and the ``active`` mask only, so a saved ensemble loads
    into ``SisaEnsemble([factory(0) for _ in range(S)], aggregation)``.
    """

    def __init__(self, models: Sequence[nn.Module], aggregation: str = "mean_prob"):
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ConfigError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, "
                              f"not {aggregation!r}")
        if not models:
            raise ConfigError("a SISA ensemble needs at least one shard model")
        self.shards = nn.ModuleList(models)
        self.aggregation = aggregation
        self.register_buffer("active", torch.ones(len(models), dtype=torch.bool))
        self.state: SisaState | None = None

    @property
    def num_shards(self) -> int:
        return len(self.shards)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logps = torch.stack([F.log_softmax(m(x), -1)
                             for m, on in zip(self.shards, self.active.tolist()) if on])
        if self.aggregation == "mean_prob":
            return torch.logsumexp(logps, 0) - math.log(len(logps))
        k = logps.shape[-1]
        votes = F.one_hot(logps.argmax(-1), k).sum(0).to(logps.dtype)
        score = votes + 0.5 * logps.exp().mean(0)
        return torch.log(score / score.sum(-1, keepdim=True))

    # ------------------------------------------------------------------ training
    def _train_from(self, s: int, r: int, progress: bool = False) -> LoopStats:
        """Restore shard ``s`` to its checkpoint before slice ``r`` and train slices ``r..R-1``."""
        st = self._need_state()
        model = self.shards[s]
        model.load_state_dict(st.checkpoints[s][r])
        stats = LoopStats()
        for k in range(r, len(st.members[s])):
            ids = sorted(chain.from_iterable(st.members[s][: k + 1]))
            if ids:  # an empty prefix (all its examples deleted) trains nothing
                data = st.data.select(ids, name=f"sisa-shard{s}-slice{k}")
                stats += run_loop(model, cross_entropy_objective(st.adapter), {"train": data},
                                  st.slice_cfg, derive_seed(st.seed, "sisa-train", s, k),
                                  device=st.device, progress=progress,
                                  desc=f"sisa shard {s} slice {k}")
            st.checkpoints[s][k + 1] = _snapshot(model)
            self._save(s, k + 1)
        model.eval()
        return stats

    def _save(self, s: int, k: int) -> None:
        st = self._need_state()
        if st.checkpoint_dir is None:
            return
        from safetensors.torch import save_file

        with atomic_path(st.checkpoint_dir / f"shard{s:03d}-slice{k:03d}.safetensors") as tmp:
            save_file(st.checkpoints[s][k], str(tmp))

    def _need_state(self) -> SisaState:
        if self.state is None:
            raise ConfigError("this SISA ensemble has no training state (data, checkpoints); "
                              "build it with train_sisa() to be able to forget")
        return self.state

    def forget(self, ids: Iterable[str], progress: bool = False) -> SisaRequest:
        """Delete ``ids`` from the remaining training data (SISA unlearning, in place).

        For each shard holding a deleted example, restore the checkpoint before the
        earliest slice holding one and retrain that slice and the later ones without
        the deleted examples. Raises UnknownIdsError for ids not (or no longer) in the
        training data and ForgetSetError for an empty request or one deleting everything.
        """
        st = self._need_state()
        ids = [str(i) for i in ids]
        validate_forget_ids(st.data, ids)
        gone = set(ids)
        t0 = time.perf_counter()
        cost, affected, retrained = LoopStats(), [], 0
        for s, slices in enumerate(st.members):
            hit = [k for k, m in enumerate(slices) if gone.intersection(m)]
            if not hit:
                continue
            st.members[s] = [[i for i in m if i not in gone] for m in slices]
            cost += self._train_from(s, hit[0], progress)
            affected.append(s)
            retrained += len(slices) - hit[0]
            self.active[s] = any(st.members[s])
        st.data = st.data.without(ids, name=st.data.name)
        cost.wall_time_s = time.perf_counter() - t0
        self.eval()
        return SisaRequest(cost, affected, retrained)

    def clone(self, checkpoint_dir: str | Path | None = None) -> "SisaEnsemble":
        """An independent copy (forgetting on it leaves this one as it is); data and
        checkpoints, which are only ever replaced, are shared rather than copied. The
        copy writes its checkpoints to ``checkpoint_dir`` (default: nowhere)."""
        memo: dict[int, object] = {}
        if self.state is not None:
            memo[id(self.state.data)] = self.state.data
            memo[id(self.state.adapter)] = self.state.adapter
            for row in self.state.checkpoints:
                for sd in row:
                    memo[id(sd)] = sd
        twin = copy.deepcopy(self, memo)
        if twin.state is not None:
            twin.state.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        return twin


def train_sisa(
    data: ExampleSet,
    model_factory: Callable[[int], nn.Module],
    adapter,
    recipe: TrainConfig,
    num_shards: int = 5,
    num_slices: int = 3,
    seed: int = 0,
    aggregation: str = "mean_prob",
    device: str | torch.device = "cpu",
    checkpoint_dir: str | Path | None = None,
    progress: bool = False,
) -> SisaEnsemble:
    """SISA training on ``data``: ``num_shards`` constituents, each trained over
    ``num_slices`` incremental slices for ``recipe.epochs * 2 / (R + 1)`` epochs each.

    ``model_factory(derive_seed(seed, "sisa-init", s) % 2**31)`` builds shard ``s``.
    Checkpoints are kept in memory and, with ``checkpoint_dir``, written there as
    ``shard{s}-slice{k}.safetensors`` (state before slice ``k``). The cost is in
    ``ensemble.state.preparation_cost``.
    """
    if int(num_shards) != num_shards or num_shards < 1:
        raise ConfigError(f"num_shards must be an integer >= 1, not {num_shards!r}")
    if int(num_slices) != num_slices or num_slices < 1:
        raise ConfigError(f"num_slices must be an integer >= 1, not {num_slices!r}")
    if num_shards > len(data):
        raise ConfigError(f"{num_shards} shards for {len(data)} training examples: "
                          "use at most as many shards as examples")
    shard, slc = sisa_assignment(data.example_ids, num_shards, num_slices, seed)
    sizes = np.bincount(shard, minlength=num_shards)
    if (sizes == 0).any():
        raise ConfigError(f"shard(s) {np.flatnonzero(sizes == 0).tolist()} received no examples "
                          f"out of {len(data)}: use fewer shards")
    ids = data.example_ids
    members = [[sorted(ids[(shard == s) & (slc == k)].tolist()) for k in range(num_slices)]
               for s in range(num_shards)]
    device = torch.device(device)
    models = [model_factory(derive_seed(seed, "sisa-init", s) % (2**31)).to(device)
              for s in range(num_shards)]
    ens = SisaEnsemble(models, aggregation)
    slice_cfg = dataclasses.replace(recipe, epochs=recipe.epochs * 2.0 / (num_slices + 1))
    ens.state = SisaState(
        data, members, [[_snapshot(m)] + [{}] * num_slices for m in models], adapter, slice_cfg,
        seed, device, Path(checkpoint_dir) if checkpoint_dir is not None else None)
    cost = LoopStats()
    for s in range(num_shards):
        ens._save(s, 0)
        cost += ens._train_from(s, 0, progress)
    ens.state.preparation_cost = cost
    return ens.eval()


def sisa_forget(ensemble: SisaEnsemble, ids: Iterable[str], progress: bool = False) -> SisaRequest:
    """Apply one deletion request to a trained ensemble in place (see :meth:`SisaEnsemble.forget`)."""
    return ensemble.forget(ids, progress)


@dataclass
class SisaParams:
    num_shards: int = hp(5, "S: number of disjoint shards, one constituent model each")
    num_slices: int = hp(3, "R: incremental slices per shard, checkpointed after each")
    aggregation: str = hp("mean_prob", "mean_prob (average probabilities) or vote (majority, as the paper)")

    def __post_init__(self) -> None:
        if int(self.num_shards) != self.num_shards or self.num_shards < 1:
            raise ConfigError(f"sisa: num_shards must be an integer >= 1, not {self.num_shards!r}")
        if int(self.num_slices) != self.num_slices or self.num_slices < 1:
            raise ConfigError(f"sisa: num_slices must be an integer >= 1, not {self.num_slices!r}")
        self.num_shards, self.num_slices = int(self.num_shards), int(self.num_slices)
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(f"sisa: aggregation must be one of {', '.join(AGGREGATIONS)}, "
                              f"not {self.aggregation!r}")


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
            self._prepared[key] = train_sisa(task.train, task.model_factory, task.adapter, task.recipe,
                                             p.num_shards, p.num_slices, seed, p.aggregation,
                                             task.device, progress=progress)
        return self._prepared[key]

    def model_template(self, task) -> SisaEnsemble:
        """An untrained ensemble of this shape, to load a saved SISA ``state_dict`` into."""
        return SisaEnsemble([task.model_factory(0).to(task.device) for _ in range(self.params.num_shards)],
                            self.params.aggregation)

    def unlearn(self, task, seed: int = 0, progress: bool = False) -> UnlearnResult:
        prepared = self.prepare(task, seed, progress)
        ens = prepared.clone()
        req = ens.forget(task.split.forget_ids, progress)
        extra = {"preparation_cost": prepared.state.preparation_cost.to_dict(),
                 "affected_shards": req.affected_shards, "retrained_slices": req.retrained_slices,
                 "total_slices": self.params.num_shards * self.params.num_slices,
                 "shard_sizes": [sum(map(len, m)) for m in ens.state.members]}
        return UnlearnResult(ens, req.cost, self.name, dataclasses.asdict(self.params), seed, extra)
