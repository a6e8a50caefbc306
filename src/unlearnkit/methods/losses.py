"""Unlearning losses (and parameter masks) as plain functions over per-example quantities.

They take per-example losses, log-likelihoods or logits, never a model, so every
modality reuses them: for a classifier ``log_lik`` is ``log p(y|x)``; for a causal
language model it is the summed (or mean) token log-probability of the answer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gradient_ascent_loss(per_example_loss: torch.Tensor) -> torch.Tensor:
    """Gradient ascent on the forget set: minimise ``-mean(loss)`` (Golatkar et al. 2020; Jang et al. 2023)."""
    return -per_example_loss.mean()


def gradient_difference_loss(forget_loss: torch.Tensor, retain_loss: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """NegGrad+ / GradDiff: ``alpha * mean(retain) - (1 - alpha) * mean(forget)``
    when ``alpha`` in [0, 1] (Kurmanji et al. 2023, NegGrad+); Liu et al. 2022's
    GradDiff is ``alpha = 0.5`` up to scale."""
    return alpha * retain_loss.mean() - (1.0 - alpha) * forget_loss.mean()


def npo_loss(log_lik: torch.Tensor, ref_log_lik: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """Negative Preference Optimization (Zhang et al. 2024, eq. 3):

    ``L = (2 / beta) * mean( log(1 + (pi_theta / pi_ref)^beta) )``
    ``  = (2 / beta) * mean( softplus(beta * (log pi_theta - log pi_ref)) )``.
    """
    return (2.0 / beta) * F.softplus(beta * (log_lik - ref_log_lik)).mean()


def kl_to_teacher(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``KL(teacher || student)`` per batch on softened outputs, as SCRUB's ``d(x; w^u)``
    (Kurmanji et al. 2023, eq. 1), scaled by ``T^2`` (Hinton et al. 2015)."""
    t = temperature
    return F.kl_div(
        F.log_softmax(student_logits / t, -1),
        F.log_softmax(teacher_logits / t, -1),
        log_target=True,
        reduction="batchmean",
    ) * (t * t)


def random_label_targets(
    labels: torch.Tensor, num_classes: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A label different from the true one, uniformly among the others (Golatkar et al. 2020;
    Fan et al. 2024, eq. 6 relabelling)."""
    shift = torch.randint(1, num_classes, labels.shape, generator=generator, device="cpu")
    return (labels.cpu() + shift) % num_classes


def saliency_mask(grads: dict[str, torch.Tensor], keep: float) -> dict[str, torch.Tensor]:
    """Weight saliency mask (Fan et al. 2024, SalUn, eq. 5):
    ``m = 1(|g| >= gamma)`` with ``g`` the gradient of the forgetting loss at the original
    weights and ``gamma`` the global threshold that keeps the ``keep`` fraction of entries
    with the largest ``|g|`` (SalUn's 50% "sparsity"). Ties at the threshold are all kept,
    but an entry with zero gradient is never salient unless ``keep == 1`` (all entries).

    Returns a boolean mask per parameter name, the same shapes as ``grads``.
    """
    if not 0.0 < keep <= 1.0:
        raise ValueError("keep must be in (0, 1]")
    if keep == 1.0:
        return {name: torch.ones_like(g, dtype=torch.bool) for name, g in grads.items()}
    flat = torch.cat([g.detach().abs().reshape(-1).float().cpu() for g in grads.values()])
    n_keep = max(1, int(round(keep * flat.numel())))
    threshold = torch.kthvalue(flat, flat.numel() - n_keep + 1).values.item()
    return {name: (g.detach().abs() >= threshold) & (g.detach() != 0) for name, g in grads.items()}


def simnpo_loss(
    log_lik: torch.Tensor, beta: float = 2.5, gamma: float = 0.0, length: torch.Tensor | float = 1
) -> torch.Tensor:
    """SimNPO (Fan et al. 2024, "Simplicity Prevails: Rethinking Negative Preference
    Optimization for LLM Unlearning"), NPO without a reference model:

    ``L = -(2 / beta) * mean( log sigmoid( -(beta / |y|) * log pi(y|x) - gamma ) )``

    ``log_lik`` is the summed ``log pi(y|x)`` per example and ``length`` its ``|y|`` (tokens
    of the answer; 1 for a class label), a number or a per-example tensor. The official
    code (github.com/OPTML-Group/Unlearn-Simple) writes the margin inside the scaling,
    ``log sigmoid(beta * (-log pi / |y| - gamma'))``: its ``gamma'`` is this ``gamma / beta``.
    Its gradient is ascent on ``log pi / |y|`` weighted by ``2 sigmoid(gamma + beta * log pi / |y|)``,
    which vanishes as the example's likelihood falls.
    """
    if beta <= 0:
        raise ValueError("beta must be > 0")
    return -(2.0 / beta) * F.logsigmoid(-(beta / length) * log_lik - gamma).mean()


# --------------------------------------------------------------------------- token-level losses
def prediction_positions(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The scored predictions of a batch as flat ``(N, V)`` logits, ``(N,)`` targets and
    ``(N,)`` row indices, so token-level losses serve both modalities.

    A classifier batch (``logits (B, C)``, ``labels (B,)``) gives one position per example.
    A causal-LM batch (``logits (B, T, V)``, ``labels (B, T)`` with ``ignore_index`` off the
    answer) gives the next-token predictions of the answer tokens: ``logits[:, t-1]``
    scored against ``labels[:, t]`` wherever ``labels[:, t] != ignore_index``.
    """
    if logits.ndim == 2:
        y = labels.to(logits.device)
        return logits, y, torch.arange(len(y), device=logits.device)
    lab = labels.to(logits.device)[:, 1:]
    keep = lab != ignore_index
    rows = torch.arange(lab.shape[0], device=logits.device)[:, None].expand_as(lab)[keep]
    return logits[:, :-1][keep], lab[keep], rows


def dpo_loss(
    win_log_lik: torch.Tensor,
    win_ref_log_lik: torch.Tensor,
    lose_log_lik: torch.Tensor,
    lose_ref_log_lik: torch.Tensor,
    beta: float = 0.1,
) -> torch.Tensor:
    """Direct Preference Optimization (Rafailov et al. 2023, eq. 7), scaled by ``2/beta``
    as in NPO and OpenUnlearning's ``compute_dpo_loss``:

    ``L = -(2/beta) * mean( log sigmoid( beta * [ (log pi(y_w|x) - log pi_ref(y_w|x))
                                                  - (log pi(y_l|x) - log pi_ref(y_l|x)) ] ) )``

    with ``y_w`` the preferred and ``y_l`` the dispreferred answer (sequence log-likelihoods).
    At ``pi = pi_ref`` it equals ``(2/beta) log 2``; dropping the ``y_w`` terms gives NPO.
    """
    if beta <= 0:
        raise ValueError("beta must be > 0")
    margin = (win_log_lik - win_ref_log_lik) - (lose_log_lik - lose_ref_log_lik)
    return -(2.0 / beta) * F.logsigmoid(beta * margin).mean()


def wga_loss(log_probs: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Weighted Gradient Ascent (Wang et al. 2025, "Rethinking LLM Unlearning Objectives:
    A Gradient Perspective and Go Beyond", ICLR; WGA):

    ``L = mean_t( w_t * log p(y_t | x, y_<t) ),   w_t = stopgrad( p(y_t | x, y_<t) )^beta``

    over the scored tokens (flat ``log_probs``; for a classifier one class per example).
    Minimising it is gradient ascent on each token's NLL weighted by the token's own
    (detached) probability to the power ``beta``, so tokens already forgotten stop
    contributing; ``beta = 0`` is plain gradient ascent. The mean is over all tokens of
    the batch, as in the official code (github.com/tmlr-group/G-effect).
    """
    if beta < 0:
        raise ValueError("beta must be >= 0")
    w = log_probs.detach().exp() ** beta
    return (w * log_probs).mean()


def undial_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, gamma: float = 10.0
) -> torch.Tensor:
    """UNDIAL (Dong et al. 2025, "UNDIAL: Self-Distillation with Adjusted Logits for Robust
    Unlearning in Large Language Models", NAACL): distil from the frozen original with the
    target token's logit lowered by ``gamma``:

    ``q = softmax( z_teacher - gamma * onehot(y) )``,   ``L = mean_positions KL( q || softmax(z_student) )``

    over flat ``(N, V)`` positions. The paper (and OpenUnlearning) minimise the cross-entropy
    ``H(q, p_student)``, which differs from this KL by ``H(q)``, a constant of the teacher:
    the same gradient, but a loss that is 0 when the student matches the adjusted teacher
    (so ``gamma = 0`` at the original's weights gives 0).
    """
    with torch.no_grad():
        adj = teacher_logits.float().clone()
        adj.scatter_(-1, targets[:, None], adj.gather(-1, targets[:, None]) - gamma)
        log_q = torch.log_softmax(adj, -1)
    return (
        F.kl_div(torch.log_softmax(student_logits.float(), -1), log_q, log_target=True, reduction="none").sum(-1).mean()
    )


def ce_u_target(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """CE-U's target distribution: the softmax of the (detached) logits with the true
    token's logit set to ``-inf``, i.e. the model's own prediction renormalised over the
    other tokens; flat ``(N, V)`` logits and ``(N,)`` targets."""
    z = logits.detach().float().clone()
    z.scatter_(-1, targets[:, None], float("-inf"))
    return torch.softmax(z, -1)


def ce_u_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross Entropy Unlearning (Yang 2025, "CE-U: Cross Entropy Unlearning", arXiv 2503.01224):

    ``L = mean_positions H( q, softmax(z) ) = -mean sum_v q_v log softmax(z)_v``,
    ``q = softmax( stopgrad(z) with z_y := -inf )``

    Its gradient on the logits is ``softmax(z) - q``: the true token's logit is pushed down
    by ``p_y`` and the others up in proportion, bounded whatever the confidence (gradient
    ascent's ``1/p_y`` factor is gone).
    """
    q = ce_u_target(logits, targets)
    return -(q * torch.log_softmax(logits.float(), -1)).sum(-1).mean()
