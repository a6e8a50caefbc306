"""CE-U: cross-entropy towards the model's own prediction with the true token masked out."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engines.ensemble import LoopPlan
from ..errors import ConfigError
from .base import LoopParams, Method, hp, register
from .losses import ce_u_loss, prediction_positions


@dataclass
class CEUParams(LoopParams):
    epochs: float = hp(3.0, "passes over the forget set")
    lr: float = hp(3e-4, "learning rate")
    batch_size: int = hp(64, "batch size of each stream")
    ignore_first: int = hp(1, "causal LM: leave the first this many answer tokens out of the loss (the paper's trick)")
    retain_weight: float = hp(
        1.0, "weight of a retain cross-entropy term (0: the paper's forget-only CE-U, the causal-LM default)"
    )

    def __post_init__(self) -> None:
        if self.ignore_first < 0 or self.retain_weight < 0:
            raise ConfigError("ce_u: ignore_first and retain_weight must be >= 0")


def drop_first_answer_tokens(labels: torch.Tensor, n: int, ignore_index: int = -100) -> torch.Tensor:
    """``labels (B, T)`` with each row's first ``n`` answer labels set to ``ignore_index``."""
    if n <= 0 or labels.ndim != 2:
        return labels
    answer = labels != ignore_index
    return labels.masked_fill(answer & (answer.cumsum(1) <= n), ignore_index)


@register
class CEU(Method):
    """CE-U, Cross Entropy Unlearning (Yang 2025, arXiv 2503.01224), checked against the
    authors' implementation in OpenUnlearning (``trainer/unlearn/ceu.py``). At every scored
    position (answer token of a causal LM, or the example of a classifier) with logits ``z``
    and true token ``y``:

    ``q = softmax( stopgrad(z) with z_y := -inf )``,   ``L = E_{D_f} H( q, softmax(z) )``

    the cross-entropy to the model's own current prediction renormalised over the other
    tokens (:func:`~unlearnkit.methods.losses.ce_u_loss`). Its logit gradient
    ``softmax(z) - q`` lowers ``z_y`` by ``p_y`` and stays bounded at any confidence, where
    gradient ascent's ``1/p_y`` explodes as ``p_y`` falls. On a causal LM the first
    ``ignore_first`` answer tokens are left out (the paper's footnote trick; OpenUnlearning's
    ``ignore_first_n_answer_tokens = 1``). Departures: an optional retain cross-entropy term
    (off on causal LMs, as in the paper); Adam at ``lr = 1e-3``, batches of 8 and 10 epochs
    were chosen on the tiny profiles LM task (``modalities/causal_lm/defaults.py``; the paper fine-tunes
    Llama-2-7B on TOFU). On classifiers the defaults are ``lr = 3e-4``, batches of 64, 3
    epochs and the retain term on, chosen on digits (seed 0) as the setting that never
    collapses: retain-accuracy gap to the reference 0.057 on random 10%, but a removed class
    keeps 0.80 accuracy; at ``lr = 1e-3`` the class goes but random forgetting collapses the
    model (retain gap 0.47 to 0.55). No single setting suits both on classifiers.
    """

    name = "ce_u"
    modalities = ("classifier", "causal_lm")
    summary = "cross-entropy to the model's own prediction with the true token's logit set to -inf"
    Params = CEUParams
    citation = "Yang 2025, CE-U: Cross Entropy Unlearning (arXiv 2503.01224)"

    def loop_plan(self, model, task, seed) -> LoopPlan:
        p = self.params
        adapter = task.adapter

        def forget_loss(ctx, batch):
            labels = drop_first_answer_tokens(batch["y"], p.ignore_first)
            logits, targets, _ = prediction_positions(adapter.logits(ctx.model, batch), labels)
            if len(targets) == 0:  # every answer shorter than ignore_first: nothing to score
                loss = logits.sum() * 0.0
            else:
                loss = ce_u_loss(logits, targets)
            return loss

        return self.forget_loop_plan(model, task, forget_loss, seed)
