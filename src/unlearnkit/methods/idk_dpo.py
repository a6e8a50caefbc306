"""DPO towards "I don't know" answers on the forget set, against the frozen original."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from ..engines.loop import LoopStats
from ..errors import ConfigError
from ..utils import derive_seed
from .base import LoopParams, Method, hp, register
from .losses import dpo_loss

#: refusals that stand in for the true answer (our own wording, in the spirit of TOFU's idk list)
IDK_ANSWERS = (
    "I don't know.",
    "I'm not sure about that.",
    "I have no idea.",
    "I can't answer that.",
    "That is something I don't know.",
    "I don't have that information.",
    "I'm afraid I can't say.",
    "I couldn't tell you.",
    "I am not able to answer that question.",
    "Sorry, I don't know the answer.",
    "I have no information about that.",
    "That's beyond what I know.",
    "I don't remember.",
    "I'm unable to help with that one.",
    "Nothing I know answers that.",
    "I can't recall any details about that.",
    "I really couldn't say.",
    "I'm not aware of that.",
    "No idea, sorry.",
    "I do not have an answer to that.",
)


@dataclass
class IdkDPOParams(LoopParams):
    epochs: float = hp(20.0, "passes over the forget set")
    lr: float = hp(2e-3, "learning rate")
    batch_size: int = hp(8, "batch size of each stream")
    beta: float = hp(0.02, "DPO inverse temperature on summed answer log-likelihoods (the loss is scaled by 2/beta)")
    retain_weight: float = hp(1.0, "weight of the retain answer NLL (0: DPO alone)")

    def __post_init__(self) -> None:
        if self.beta <= 0 or self.retain_weight < 0:
            raise ConfigError("idk_dpo: beta must be > 0 and retain_weight >= 0")


def idk_answers(n: int, seed: int) -> list[str]:
    """One refusal of :data:`IDK_ANSWERS` per forget example, drawn with ``seed``."""
    rng = np.random.default_rng(derive_seed(seed, "idk_dpo"))
    return [IDK_ANSWERS[i] for i in rng.integers(0, len(IDK_ANSWERS), n)]


def _rows(data, index: torch.Tensor) -> dict:
    """The batch of ``data`` at positions ``index`` (trimmed like the loop's batches)."""
    return next(data.take(index.cpu().numpy()).batches(len(index)))


@register
class IdkDPO(Method):
    """DPO with "I don't know" as the preferred answer (Rafailov et al. 2023, "Direct
    Preference Optimization", NeurIPS; used for unlearning in TOFU, Maini et al. 2024, and
    OpenUnlearning's ``DPO`` trainer with the idk alternate answers):

    ``L = -(2/beta) E_{D_f} log sigmoid( beta * [ log pi(a_idk|x)/pi_orig(a_idk|x)
                                                 - log pi(a|x)/pi_orig(a|x) ] )
          + retain_weight * E_{D_r} NLL``

    where ``a`` is the true (dispreferred) answer, ``a_idk`` a refusal drawn (seeded) per
    forget example from :data:`IDK_ANSWERS`, ``pi_orig`` the frozen original and the
    log-likelihoods are summed over the answer tokens
    (:func:`~unlearnkit.methods.losses.dpo_loss`; the ``2/beta`` scale is OpenUnlearning's).
    The refusals are encoded after the same question with
    :func:`~unlearnkit.modalities.causal_lm.replace_answers`. Departures: our own 20
    refusal phrasings (TOFU ships its idk list), each example keeps one refusal for the
    whole run (OpenUnlearning redraws per batch); ``beta = 0.02``, Adam at ``lr = 2e-3``,
    batches of 8 and 20 epochs were chosen on the tiny profiles LM task (TOFU's runs use
    ``beta = 0.1`` on Llama-2; here ``beta >= 0.05`` lets the loss saturate by raising the
    refusal alone, leaving the true answer's NLL below 1). The original's forward passes are counted in the cost, and
    the refusal batch as one more forward and backward pass.
    """

    name = "idk_dpo"
    modalities = ("causal_lm",)
    summary = "DPO preferring an 'I don't know' answer over the true one, plus a retain NLL"
    Params = IdkDPOParams
    citation = (
        "Rafailov et al. 2023 (NeurIPS), Direct Preference Optimization; Maini et al. 2024, "
        "TOFU: A Task of Fictitious Unlearning for LLMs (idk preference baseline)"
    )
    needs_retain = True

    def _unlearn(self, model, task, seed, progress) -> LoopStats:
        from ..modalities.causal_lm.adapter import replace_answers

        p = self.params
        adapter = task.adapter
        context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        idk = replace_answers(task.forget, idk_answers(len(task.forget), seed), adapter.tokenizer, max_length=context)
        ref = copy.deepcopy(model).eval().requires_grad_(False)

        def log_lik(m, batch):
            return adapter.log_likelihood(adapter.logits(m, batch), batch["labels"])

        def forget_loss(ctx, lose):
            win = adapter.to_device(_rows(idk, lose["index"]))
            n = ctx.batch_size(lose)
            ctx.stats.examples_forward += n  # the refusal batch goes through forward and backward
            ctx.stats.examples_backward += n
            with torch.no_grad():
                win_ref, lose_ref = log_lik(ref, win), log_lik(ref, lose)
            ctx.count_forward(2 * n)
            loss = dpo_loss(log_lik(ctx.model, win), win_ref, log_lik(ctx.model, lose), lose_ref, p.beta)
            return loss

        return self.run_forget_loop(model, task, forget_loss, seed, progress)
