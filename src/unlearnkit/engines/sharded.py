"""Sharded training engine: SISA (Sharded, Isolated, Sliced, Aggregated) training and its
checkpoints, and exact unlearning by restore-and-retrain of the affected shards.

The method over it is :class:`unlearnkit.methods.sisa.Sisa`.

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
  ``assign="subject"`` hashes the example's subject id instead (an example without one:
  its own id), so that all of a person's examples share one slice of one shard and
  deleting a person retrains one shard from one slice (the paper's Section VI points at
  placing data by the expected distribution of requests; requests by person are the
  service's).
* Each (shard, slice) step is one call of :func:`~unlearnkit.engines.loop.run_loop` with a
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
* Resuming (a deployed model line, one request after another, each in a new process):
  :func:`sisa_checkpoints` gives every checkpoint to store and :func:`resume_sisa` rebuilds
  the state from them, the remaining data and two sets that keep restore-and-retrain
  exact after an *approximate* method changed the deployed ensemble: ``pending``, ids
  deleted since (no longer in the data) but still inside checkpoints, which the next
  :meth:`SisaEnsemble.forget` removes with its own ids; and ``stale``, shards whose live
  parameters are no longer their last checkpoint, which it restores to it (the
  checkpoint is the exact constituent for the data it saw) when no deleted id makes it
  retrain.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import ExampleSet
from ..data.scenarios import validate_forget_ids
from ..errors import ConfigError
from ..utils import atomic_path, derive_seed
from .loop import LoopStats, TrainConfig, cross_entropy_objective, run_loop

AGGREGATIONS = ("mean_prob", "vote")
ASSIGNMENTS = ("example", "subject")


def sisa_assignment(
    example_ids: Iterable[str], num_shards: int, num_slices: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shard and slice of each example: ``h = derive_seed(seed, "sisa-assign", id)``,
    ``shard = h mod S``, ``slice = (h div S) mod R``. A pure function of (seed, id)."""
    h = [derive_seed(seed, "sisa-assign", str(i)) for i in example_ids]
    shard = np.asarray([x % num_shards for x in h], dtype=np.int64)
    slc = np.asarray([(x // num_shards) % num_slices for x in h], dtype=np.int64)
    return shard, slc


def assignment_keys(data: ExampleSet, assign: str = "example") -> list[str]:
    """What :func:`sisa_assignment` hashes for each example of ``data``: its id, or (``assign
    = "subject"``) its subject id where it has one."""
    if assign not in ASSIGNMENTS:
        raise ConfigError(f"assign must be one of {', '.join(ASSIGNMENTS)}, not {assign!r}")
    ids = [str(i) for i in data.example_ids]
    if assign == "example" or data.subject_ids is None:
        return ids
    return [str(s) if s is not None and str(s) else i for i, s in zip(ids, data.subject_ids)]


def _members(ids: Sequence[str], keys: Sequence[str], num_shards: int, num_slices: int, seed: int):
    shard, slc = sisa_assignment(keys, num_shards, num_slices, seed)
    arr = np.asarray(list(ids), dtype=object)
    return [[sorted(arr[(shard == s) & (slc == k)].tolist()) for k in range(num_slices)] for s in range(num_shards)]


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


@dataclass
class SisaState:
    """What retraining needs: remaining data, slice membership, checkpoints, recipe.

    ``members[s][k]`` are the sorted ids of slice ``k`` of shard ``s``;
    ``checkpoints[s][k]`` is shard ``s``'s state before slice ``k`` (``k = 0``: its
    initialisation, ``k = R``: the trained constituent). Checkpoint dicts are never
    modified in place, only replaced, so clones can share them. ``pending`` and ``stale``
    (see the module docstring) are empty unless the state was resumed after an
    approximate method changed the ensemble.
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
    pending: dict[str, str] = field(default_factory=dict)  # id -> its assignment key
    stale: set[int] = field(default_factory=set)
    assign: str = "example"


@dataclass
class SisaRequest:
    """What one deletion request did."""

    cost: LoopStats
    affected_shards: list[int]
    retrained_slices: int

    def to_dict(self) -> dict:
        return {
            "cost": self.cost.to_dict(),
            "affected_shards": self.affected_shards,
            "retrained_slices": self.retrained_slices,
        }


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
            raise ConfigError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, not {aggregation!r}")
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
        logps = torch.stack([F.log_softmax(m(x), -1) for m, on in zip(self.shards, self.active.tolist()) if on])
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
                stats += run_loop(
                    model,
                    cross_entropy_objective(st.adapter),
                    {"train": data},
                    st.slice_cfg,
                    derive_seed(st.seed, "sisa-train", s, k),
                    device=st.device,
                    progress=progress,
                    desc=f"sisa shard {s} slice {k}",
                )
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
            raise ConfigError(
                "this SISA ensemble has no training state (data, checkpoints); "
                "build it with train_sisa() to be able to forget"
            )
        return self.state

    def forget(self, ids: Iterable[str], progress: bool = False) -> SisaRequest:
        """Delete ``ids`` from the remaining training data (SISA unlearning, in place).

        For each shard holding a deleted example (``ids`` and the state's ``pending``),
        restore the checkpoint before the earliest slice holding one and retrain that slice
        and the later ones without the deleted examples; a ``stale`` shard holding none
        gets its last checkpoint back. Raises UnknownIdsError for ids not (or no longer) in
        the training data and ForgetSetError for an empty request or one deleting everything.
        """
        st = self._need_state()
        ids = [str(i) for i in ids]
        validate_forget_ids(st.data, ids)
        gone = set(ids) | set(st.pending)
        t0 = time.perf_counter()
        cost, affected, retrained = LoopStats(), [], 0
        for s, slices in enumerate(st.members):
            hit = [k for k, m in enumerate(slices) if gone.intersection(m)]
            if not hit:
                if s in st.stale:
                    self.shards[s].load_state_dict(st.checkpoints[s][len(slices)])
                continue
            st.members[s] = [[i for i in m if i not in gone] for m in slices]
            cost += self._train_from(s, hit[0], progress)
            affected.append(s)
            retrained += len(slices) - hit[0]
            self.active[s] = any(st.members[s])
        st.data = st.data.without(ids, name=st.data.name)
        st.pending, st.stale = {}, set()
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
    assign: str = "example",
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
        raise ConfigError(
            f"{num_shards} shards for {len(data)} training examples: use at most as many shards as examples"
        )
    shard, slc = sisa_assignment(assignment_keys(data, assign), num_shards, num_slices, seed)
    sizes = np.bincount(shard, minlength=num_shards)
    if (sizes == 0).any():
        raise ConfigError(
            f"shard(s) {np.flatnonzero(sizes == 0).tolist()} received no examples out of {len(data)}: use fewer shards"
        )
    members = _members(data.example_ids, assignment_keys(data, assign), num_shards, num_slices, seed)
    device = torch.device(device)
    models = [model_factory(derive_seed(seed, "sisa-init", s) % (2**31)).to(device) for s in range(num_shards)]
    ens = SisaEnsemble(models, aggregation)
    slice_cfg = dataclasses.replace(recipe, epochs=recipe.epochs * 2.0 / (num_slices + 1))
    ens.state = SisaState(
        data,
        members,
        [[_snapshot(m)] + [{}] * num_slices for m in models],
        adapter,
        slice_cfg,
        seed,
        device,
        Path(checkpoint_dir) if checkpoint_dir is not None else None,
        assign=assign,
    )
    cost = LoopStats()
    for s in range(num_shards):
        ens._save(s, 0)
        cost += ens._train_from(s, 0, progress)
    ens.state.preparation_cost = cost
    return ens.eval()


def sisa_checkpoints(ensemble: SisaEnsemble) -> list[list[dict[str, torch.Tensor]]]:
    """Every checkpoint of a trained ensemble: ``[shard][k]``, the state before slice ``k``
    (``k = R``: the trained constituent), to store beside the ensemble for :func:`resume_sisa`."""
    return ensemble._need_state().checkpoints


def resume_sisa(
    ensemble: SisaEnsemble,
    data: ExampleSet,
    checkpoints: Sequence[Sequence[dict[str, torch.Tensor]]],
    adapter,
    recipe: TrainConfig,
    seed: int,
    device: str | torch.device = "cpu",
    pending: dict[str, str] | None = None,
    stale: Iterable[int] = (),
    assign: str = "example",
) -> SisaEnsemble:
    """Give a loaded ensemble (its constituents as deployed) the state SISA training left:
    ``data`` is the remaining training data, ``checkpoints`` those :func:`sisa_checkpoints`
    gave, ``seed``, ``recipe`` and ``assign`` the training's; ``pending`` (id -> assignment
    key) and ``stale`` as the module docstring says. Slice membership is recomputed from the
    keys (a pure function of the seed), ``pending`` ids included, since the checkpoints
    still hold them."""
    num_shards = ensemble.num_shards
    if len(checkpoints) != num_shards or len({len(row) for row in checkpoints}) != 1:
        raise ConfigError(f"SISA checkpoints must be one row of R + 1 states per shard ({num_shards} shards)")
    num_slices = len(checkpoints[0]) - 1
    if num_slices < 1:
        raise ConfigError("SISA checkpoints need at least two states per shard (before and after a slice)")
    pending = {str(i): str(k) for i, k in (pending or {}).items()}
    present = {str(i) for i in data.example_ids}
    if set(pending) & present:
        raise ConfigError(f"{len(set(pending) & present)} pending SISA deletion(s) are still in the training data")
    stale = {int(s) for s in stale}
    if not stale <= set(range(num_shards)):
        raise ConfigError(f"stale SISA shards {sorted(stale)} out of range for {num_shards} shards")
    ids = [str(i) for i in data.example_ids] + list(pending)
    keys = assignment_keys(data, assign) + list(pending.values())
    members = _members(ids, keys, num_shards, num_slices, seed)
    slice_cfg = dataclasses.replace(recipe, epochs=recipe.epochs * 2.0 / (num_slices + 1))
    ensemble.state = SisaState(
        data,
        members,
        [list(row) for row in checkpoints],
        adapter,
        slice_cfg,
        seed,
        torch.device(device),
        pending=pending,
        stale=stale,
        assign=assign,
    )
    return ensemble.eval()  # its parameters and ``active`` mask stay as loaded (as deployed)


def sisa_forget(ensemble: SisaEnsemble, ids: Iterable[str], progress: bool = False) -> SisaRequest:
    """Apply one deletion request to a trained ensemble in place (see :meth:`SisaEnsemble.forget`)."""
    return ensemble.forget(ids, progress)


__all__ = [
    "AGGREGATIONS",
    "ASSIGNMENTS",
    "SisaEnsemble",
    "assignment_keys",
    "SisaRequest",
    "SisaState",
    "resume_sisa",
    "sisa_assignment",
    "sisa_checkpoints",
    "sisa_forget",
    "train_sisa",
]
