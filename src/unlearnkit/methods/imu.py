"""IMU: gradient ascent on the forget set only, each example weighted by its influence."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engines.ensemble import LoopPlan
from ..engines.loop import LoopStats
from ..errors import ConfigError
from .base import LoopParams, Method, hp, register
from .curvature import head_parameters, per_example_grads


@dataclass
class IMUParams(LoopParams):
    epochs: float = hp(5.0, "passes over the selected forget examples (class removal on digits needs ~15)")
    lr: float = hp(1e-3, "learning rate (only the output layer is updated)")
    damping: float = hp(0.01, "added to the diagonal Fisher before inverting it (the official 0.01)")
    top_fraction: float = hp(
        1.0, "keep this fraction of the negatively influential forget examples, the most influential first"
    )
    clip_quantile: float = hp(0.93, "clip the weights at this quantile of their values (the official 0.93)")
    l1: float = hp(0.0, "weight of an L1 penalty on the output layer (the official code's alpha)")

    def __post_init__(self) -> None:
        if self.damping <= 0 or not 0 < self.top_fraction <= 1 or not 0 < self.clip_quantile <= 1 or self.l1 < 0:
            raise ConfigError("imu: damping must be > 0, top_fraction and clip_quantile in (0, 1], l1 >= 0")


def influence_weights(
    model, task, damping: float, top_fraction: float, clip_quantile: float, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """IMU's selection and weights: positions in the forget set and their weights.

    With ``g_i`` the gradient of forget example ``i``'s loss with respect to the output layer,
    ``F = mean_i g_i^2 + damping`` (diagonal empirical Fisher of the forget set) and
    ``g_bar = mean_i g_i``, the influence is ``I_i = -g_i^T F^{-1} g_bar``. Examples with
    ``I_i < 0`` are kept (the ``top_fraction`` with the largest ``|I_i|``), weighted by
    ``w_i = sqrt(|I_i|)`` clipped at its ``clip_quantile`` quantile.
    """
    head = head_parameters(model, task.num_classes)
    grads = []
    for batch in task.forget.batches(batch_size):
        g = per_example_grads(model, task.adapter, batch, params=head)
        grads.append(torch.cat([t.reshape(task.adapter.batch_size(batch), -1) for t in g.values()], 1))
    G = torch.cat(grads)
    fisher = (G**2).mean(0) + damping
    infl = -(G / fisher) @ G.mean(0)
    keep = torch.nonzero(infl < 0).flatten()
    if len(keep) == 0:  # g_bar = 0: nothing points the forgetting way; fall back to uniform ascent
        return torch.arange(len(G)), torch.ones(len(G))
    keep = keep[torch.argsort(infl[keep].abs(), descending=True)]
    keep = keep[: max(1, int(len(keep) * top_fraction))]
    w = infl[keep].abs().sqrt()
    w = w.clamp(max=torch.quantile(w, clip_quantile).item())
    order = torch.argsort(keep)
    return keep[order].cpu(), w[order].cpu()


@register
class IMU(Method):
    """IMU: Influence-guided Machine Unlearning (Fan, Wu, Zhou, Liang and Phung 2025,
    arXiv:2508.01620), retain-free: gradient ascent on the forget set only, each example's
    ascent weighted by its influence.

    1. Classifier-level influence (the paper's approximation of ``-grad^T H^{-1} grad`` by
       the output layer and a diagonal Fisher): ``I_i = -g_i^T F^{-1} g_bar`` with ``g_i`` the
       output-layer gradient of forget example ``i``, ``F = mean_i g_i^2 + 0.01`` and
       ``g_bar`` the mean forget gradient (:func:`influence_weights`).
    2. Keep the examples with ``I_i < 0`` (those whose removal supports forgetting), weight
       them by ``w_i = sqrt(|I_i|)`` clipped at the 93% quantile.
    3. Ascent on the output layer only: minimise
       ``-sum_{i in batch} w_i CE(f(x_i), y_i) / sum_{i in batch} w_i (+ l1 * ||theta_head||_1)``.

    Implemented as the official code (github.com/goodluckisallyouneed/IMU,
    ``Classification/unlearn/IMU.py``). Departures: the output layer is the model's last
    layer with parameters (the code selects parameters named ``fc``); ``top_fraction``
    defaults to 1 (all negatively influential examples; the code's ``top_data`` flag
    studies subsets); Adam with defaults set on the digits task. The influence pass
    (``|D_f|`` forward and backward) is counted in the cost. The step budget bounds the
    ascent; the divergence guard stops it. In :meth:`unlearn_many` models that keep the same
    number of forget examples are vectorised together (their batches have one size); each
    model's weights are a buffer of a frozen module, stacked like a teacher.
    """

    name = "imu"
    summary = "Retain-free output-layer gradient ascent, each forget example weighted by its influence"
    Params = IMUParams
    citation = "Fan, Wu, Zhou, Liang and Phung 2025 (arXiv:2508.01620), IMU: Influence-guided Machine Unlearning"

    def loop_plan(self, model, task, seed) -> LoopPlan:
        p = self.params
        adapter = task.adapter
        positions, weights = influence_weights(model, task, p.damping, p.top_fraction, p.clip_quantile)
        data = task.forget.take(positions.numpy(), "imu-forget")
        held = _Weights(weights.to(task.device))  # a module, so the vectorised path stacks each model's weights
        head = head_parameters(model, task.num_classes)
        frozen = [w for name, w in model.named_parameters() if name not in head and w.requires_grad]

        def objective(ctx):
            batch = ctx.batch("forget")
            w = held.w[batch["index"].to(held.w.device)]
            loss = -(w * adapter.per_example_loss(ctx.model, batch)).sum() / w.sum()
            if p.l1:
                loss = loss + p.l1 * sum(t.abs().sum() for t in head.values())
            return loss

        def restore() -> None:
            for w in frozen:
                w.requires_grad_(True)

        for w in frozen:
            w.requires_grad_(False)
        n = len(task.forget)
        return LoopPlan(
            model,
            objective,
            {"forget": data},
            p.train_config(),
            seed,
            params=list(head.values()),
            frozen=[held],
            desc=self.name,
            cost=LoopStats(examples_forward=n, examples_backward=n),
            after=restore,
        )


class _Weights(torch.nn.Module):
    """IMU's per-example weights as a buffer (the objective reads them through this module)."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.register_buffer("w", w)
