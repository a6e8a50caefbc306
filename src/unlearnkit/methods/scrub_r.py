"""SCRUB+R: SCRUB, rewound to the checkpoint whose forget error matches the holdout error."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..data.dataset import ExampleSet
from ..engines.ensemble import LoopPlan
from ..engines.loop import LoopStats
from ..errors import ConfigError
from .base import UnlearnResult, hp, register
from .scrub import Scrub, ScrubParams, frozen_copy, scrub_objective, scrub_schedule


@dataclass
class ScrubRParams(ScrubParams):
    checkpoint_every: int | None = hp(
        None, "also keep a checkpoint every this many steps (default: one per SCRUB epoch)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ConfigError("scrub_r: checkpoint_every must be >= 1")


def error_rate(model: nn.Module, data: ExampleSet, adapter, batch_size: int = 512) -> float:
    """Fraction of ``data`` that ``model`` misclassifies (eval mode, no gradients)."""
    was_training = model.training
    model.eval()
    wrong = 0
    with torch.no_grad():
        for batch in data.batches(batch_size):
            wrong += int((adapter.logits(model, batch).argmax(1).cpu() != batch["y"]).sum())
    model.train(was_training)
    return wrong / max(1, len(data))


@register
class ScrubR(Scrub):
    """SCRUB+R, SCRUB with rewinding (Kurmanji et al. 2023, NeurIPS, "Towards Unbounded Machine
    Unlearning", the SCRUB+R variant).

    Runs :class:`~unlearnkit.methods.scrub.Scrub` unchanged (same objective and max/min
    schedule, imported from ``scrub.py``) keeping a checkpoint at the end of every SCRUB
    epoch (and every ``checkpoint_every`` steps if set; the final state always). With
    ``e_f(w)`` the forget-set error of checkpoint ``w`` and ``e_v`` the error of the final
    SCRUB model on a validation set drawn like the forget set, it returns

    ``w* = argmin_{w in checkpoints} | e_f(w) - e_v |``

    so that the forget error is "just high enough" — that of data never trained on — and
    not an outlier a membership attack can spot (ties go to the earliest checkpoint).
    The validation set is ``task.holdout`` (never-trained examples drawn like the forget
    set). The evaluation passes (forget set per checkpoint, holdout once) are counted as
    forward passes; ``result.extra`` holds the chosen step, ``e_v`` and every ``|e_f - e_v|``.
    """

    name = "scrub_r"
    summary = "SCRUB, rewound to the checkpoint whose forget error matches the holdout error"
    Params = ScrubRParams
    citation = "Kurmanji et al. 2023 (NeurIPS), Towards Unbounded Machine Unlearning (SCRUB+R, rewinding)"

    def unlearn(self, task, seed: int = 0, progress: bool = False) -> UnlearnResult:
        """SCRUB+R's result; ``extra`` says which step was chosen and why."""
        result = super().unlearn(task, seed, progress)
        result.extra.update(self._rewind)
        return result

    def loop_plans(self, model, task, seed):
        """SCRUB's plan keeping the checkpoints, then the rewinding (evaluation passes returned
        as extra cost): :meth:`unlearn_many` trains every model's SCRUB as one ensemble and
        rewinds each model by its own forget error."""
        p = self.params
        cfg = p.train_config()
        fb, rb = math.ceil(len(task.forget) / cfg.batch_size), math.ceil(len(task.retain) / cfg.batch_size)
        phases = scrub_schedule(p.epochs, p.msteps, fb, rb)
        ends, at = set(), 0
        for e in range(int(math.ceil(p.epochs))):
            at += (fb if e < p.msteps else 0) + rb
            ends.add(min(at, len(phases)))
        teacher = frozen_copy(model)
        plan = LoopPlan(
            model,
            scrub_objective(task.adapter, teacher, phases, p),
            {"forget": task.forget, "retain": task.retain},
            cfg,
            seed,
            steps=len(phases),
            frozen=[teacher],
            desc=self.name,
            checkpoints=[
                s
                for s in range(1, len(phases) + 1)
                if s in ends or (p.checkpoint_every and s % p.checkpoint_every == 0)
            ],
        )
        stats = yield plan
        checkpoints = dict(plan.states)
        checkpoints[stats.steps] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        target = error_rate(model, task.holdout, task.adapter)
        gaps = {}
        for step in sorted(checkpoints):
            model.load_state_dict(checkpoints[step])
            gaps[step] = abs(error_rate(model, task.forget, task.adapter) - target)
        best = min(gaps, key=lambda s: (gaps[s], s))
        model.load_state_dict(checkpoints[best])
        self._rewind = {
            "rewind_step": best,
            "holdout_error": target,
            "forget_error_gaps": {str(k): v for k, v in gaps.items()},
        }
        return LoopStats(examples_forward=len(task.holdout) + len(checkpoints) * len(task.forget))
