"""UNDIAL: self-distillation from the original with the target token's logit lowered."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ..engines.ensemble import LoopPlan
from ..errors import ConfigError
from .base import LoopParams, Method, hp, register
from .losses import prediction_positions, undial_loss


@dataclass
class UndialParams(LoopParams):
    epochs: float = hp(5.0, "passes over the forget set")
    lr: float = hp(1e-3, "learning rate")
    batch_size: int = hp(64, "batch size of each stream")
    gamma: float = hp(10.0, "strength: how far the target token's logit is lowered in the teacher")
    retain_weight: float = hp(
        1.0, "weight of a retain cross-entropy term (0: the paper's forget-only UNDIAL, the causal-LM default)"
    )

    def __post_init__(self) -> None:
        if self.gamma < 0 or self.retain_weight < 0:
            raise ConfigError("undial: gamma and retain_weight must be >= 0")


@register
class Undial(Method):
    """UNDIAL (Dong et al. 2025, NAACL, "UNDIAL: Self-Distillation with Adjusted Logits for
    Robust Unlearning in Large Language Models"), checked against OpenUnlearning's
    ``compute_undial_loss``. With ``z_orig`` the frozen original's logits at a forget
    position and ``y`` the true next token (class, for a classifier):

    ``q = softmax( z_orig - gamma * onehot(y) )``,   ``L = E_{D_f} KL( q || p_theta ) [+ retain_weight * E_{D_r} CE]``

    The student is distilled towards the original's own distribution with only the target
    token made unlikely, so everything else the original predicts is kept, and the target
    is fixed (it does not move with the student), which keeps the loss bounded.
    Departures: the paper minimises the cross-entropy ``H(q, p_theta)``, equal to this KL
    plus the constant ``H(q)`` (same gradient, but 0 at ``gamma = 0``; see
    :func:`~unlearnkit.methods.losses.undial_loss`); the loss averages over the answer
    tokens only (OpenUnlearning's averages over every position of the sequence, the
    question included); the optional retain term is OpenUnlearning's GradDiff-style
    extension (off on causal LMs, as in the paper; on for classifiers). ``gamma = 10``
    (the paper's range is 3 to 30), Adam at ``lr = 2e-3``, batches of 8 and 10 epochs were chosen on the tiny profiles
    LM task (``modalities/causal_lm/defaults.py``; the paper tunes LoRA on Llama-2 at ``lr = 1e-4``). On
    classifiers: ``lr = 1e-3``, batches of 64, 5 epochs and the retain term on, chosen on
    digits (seed 0): a removed class is matched to within 0.008, random 10% overshoots
    (forget-accuracy gap 0.21); settings that match random forgetting (``gamma = 3``,
    ``lr = 3e-4``) leave a removed class at 0.85 accuracy. The teacher's forward passes
    are counted in the cost.
    """

    name = "undial"
    modalities = ("classifier", "causal_lm")
    summary = "self-distil from the original with the target token's logit lowered by gamma"
    Params = UndialParams
    citation = (
        "Dong et al. 2025 (NAACL), UNDIAL: Self-Distillation with Adjusted Logits for "
        "Robust Unlearning in Large Language Models"
    )

    def loop_plan(self, model, task, seed) -> LoopPlan:
        p = self.params
        adapter = task.adapter
        teacher = copy.deepcopy(model).eval().requires_grad_(False)

        def forget_loss(ctx, batch):
            with torch.no_grad():
                t_logits, _, _ = prediction_positions(adapter.logits(teacher, batch), batch["y"])
            ctx.count_forward(ctx.batch_size(batch))
            s_logits, targets, _ = prediction_positions(adapter.logits(ctx.model, batch), batch["y"])
            loss = undial_loss(s_logits, t_logits, targets, p.gamma)
            return loss

        return self.forget_loop_plan(model, task, forget_loss, seed, frozen=[teacher])
