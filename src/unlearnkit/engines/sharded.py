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


def sisa_assignment(
    example_ids: Iterable[str], num_shards: int, num_slices: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
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
        raise ConfigError(
            f"{num_shards} shards for {len(data)} training examples: use at most as many shards as examples"
        )
    shard, slc = sisa_assignment(data.example_ids, num_shards, num_slices, seed)
    sizes = np.bincount(shard, minlength=num_shards)
    if (sizes == 0).any():
        raise ConfigError(
            f"shard(s) {np.flatnonzero(sizes == 0).tolist()} received no examples out of {len(data)}: use fewer shards"
        )
    ids = data.example_ids
    members = [[sorted(ids[(shard == s) & (slc == k)].tolist()) for k in range(num_slices)] for s in range(num_shards)]
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
    )
    cost = LoopStats()
    for s in range(num_shards):
        ens._save(s, 0)
        cost += ens._train_from(s, 0, progress)
    ens.state.preparation_cost = cost
    return ens.eval()


def sisa_forget(ensemble: SisaEnsemble, ids: Iterable[str], progress: bool = False) -> SisaRequest:
    """Apply one deletion request to a trained ensemble in place (see :meth:`SisaEnsemble.forget`)."""
    return ensemble.forget(ids, progress)


__all__ = ["AGGREGATIONS", "SisaEnsemble", "SisaRequest", "SisaState", "sisa_assignment", "sisa_forget", "train_sisa"]
