"""IMU: gradient ascent on the forget set only, each example weighted by its influence."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..engines.ensemble import LoopPlan
from ..engines.loop import LoopStats
from ..errors import ConfigError
from .base import LoopParams, Method, hp, register
from .curvature import head_parameters, per_example_grads

#: the attention projections whose gradients the official TOFU code (``synthetic/IMU.py``) uses
ATTENTION_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]


@dataclass
class IMUParams(LoopParams):
    epochs: float = hp(5.0, "passes over the selected forget examples (class removal on digits needs ~15)")
    lr: float = hp(1e-3, "learning rate (only the output layer, or on a causal LM the lm_modules, are updated)")
    damping: float = hp(0.01, "added to the diagonal Fisher before inverting it (the official 0.01)")
    top_fraction: float = hp(
        1.0, "keep this fraction of the negatively influential forget examples, the most influential first"
    )
    clip_quantile: float = hp(0.93, "clip the weights at this quantile of their values (the official 0.93)")
    l1: float = hp(0.0, "weight of an L1 penalty on the updated parameters (the official code's alpha)")
    influence_on: str = hp(
        "head",
        "which parameters IMU reads and updates: 'head' (the output layer of a classifier) or "
        "'attention' (the lm_modules of the last lm_layers decoder layers; the causal-LM default)",
    )
    lm_layers: int = hp(3, "causal LMs: how many of the last decoder layers hold the influence parameters")
    lm_modules: list = hp(
        ATTENTION_MODULES, "causal LMs: names of the projections in those layers whose weights IMU reads and updates"
    )

    def __post_init__(self) -> None:
        if self.damping <= 0 or not 0 < self.top_fraction <= 1 or not 0 < self.clip_quantile <= 1 or self.l1 < 0:
            raise ConfigError("imu: damping must be > 0, top_fraction and clip_quantile in (0, 1], l1 >= 0")
        if self.influence_on not in ("head", "attention"):
            raise ConfigError(f"imu: influence_on must be 'head' or 'attention', not {self.influence_on!r}")
        if self.lm_layers < 1:
            raise ConfigError("imu: lm_layers must be >= 1")
        if not self.lm_modules or not all(isinstance(m, str) and m for m in self.lm_modules):
            raise ConfigError("imu: lm_modules must be a non-empty list of module names (e.g. q_proj)")


def weights_from_gradients(
    G: torch.Tensor, damping: float, top_fraction: float, clip_quantile: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """IMU's selection and weights from the per-example gradients ``G`` ``(n, d)`` of the forget
    examples' losses: positions in the forget set and their weights (see :func:`influence_weights`)."""
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
    return weights_from_gradients(torch.cat(grads), damping, top_fraction, clip_quantile)


def lm_influence_parameters(model: nn.Module, layers: int, modules) -> dict[str, nn.Parameter]:
    """The parameters IMU reads and updates on a causal LM: the weights of the ``modules``
    projections (the attention's ``q/k/v/o_proj`` by default) in the last ``layers`` decoder
    layers; with task-level LoRA (a peft model) the trainable adapters inside them."""
    from .rmu import decoder_layers

    prefix, blocks = decoder_layers(model)
    starts = tuple(f"{prefix}.{i}." for i in range(max(0, len(blocks) - layers), len(blocks)))
    inside = [(n, q) for n, q in model.named_parameters() if n.startswith(starts)]
    names = tuple(modules)
    if hasattr(model, "peft_config"):
        chosen = {n: q for n, q in inside if q.requires_grad and any(f".{m}." in n for m in names)}
    else:
        chosen = {n: q for n, q in inside if any(n.endswith(f".{m}.weight") for m in names)}
    if not chosen:
        raise ConfigError(
            f"imu: the last {layers} decoder layer(s) have no {', '.join(names)} weight"
            + (" with a LoRA adapter" if hasattr(model, "peft_config") else "")
            + "; set lm_modules to projections the model has"
        )
    return chosen


def lm_influence_weights(
    model, task, params: dict[str, nn.Parameter], damping: float, top_fraction: float, clip_quantile: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`influence_weights` on a causal LM: ``g_i`` is the gradient of forget row ``i``'s
    mean answer-token NLL with respect to ``params`` (one backward pass per row, as the official
    code), the rest is the same selection and weighting."""
    was = model.training
    model.eval()
    grads = []
    try:
        for batch in task.forget.batches(1):
            loss = task.adapter.per_example_loss(model, task.adapter.to_device(batch)).sum()
            g = torch.autograd.grad(loss, list(params.values()))
            grads.append(torch.cat([t.reshape(-1) for t in g])[None].float())
    finally:
        model.train(was)
    return weights_from_gradients(torch.cat(grads), damping, top_fraction, clip_quantile)


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

    **Causal language models** (the paper's TOFU experiments; the official LLM code is
    ``synthetic/IMU.py``, an OpenUnlearning trainer): the same three steps with an example
    a question-answer row, its loss ``L_i`` the mean answer-token NLL, and the influence
    parameters the attention projections ``q/k/v/o_proj`` of the last decoder layers (the
    code's layers 19-21; here the last ``lm_layers = 3``, all of the tiny test model's one):
    ``g_i = d L_i / d theta_attn``, ``I_i = -g_i^T F^{-1} g_bar``, ``w_i = sqrt(|I_i|)`` for
    ``I_i < 0`` clipped at the 93% quantile, and ascent
    ``-sum_i w_i L_i / sum_i w_i`` on those projections only
    (:func:`lm_influence_weights`). Departures on LMs: the influence is computed once, over the
    whole forget set at the original's weights, as the classification and sequence-model code
    does (the TOFU trainer recomputes it on each batch at the current weights, costing two
    per-row backward passes per example and step); the NLL scores each answer token from the
    position before it (the trainer's per-token cross-entropy compares unshifted logits and
    labels); its ``0.02 * L1`` of the attention weights is taken under ``no_grad`` there, so
    it changes no gradient, and ``l1`` defaults to 0 here; its hook meant to zero the other
    parameters' gradients is replaced by updating the chosen parameters only (its
    ``last_params`` is undefined inside the hook). With ``task.lora`` the LoRA adapters in those
    projections are read and trained. ``lr``, ``epochs`` and batch size on causal LMs are this
    project's (``modalities/causal_lm/defaults.py``: Adam at 2e-3, batches of 8, 10 epochs),
    measured on the tiny profiles task (seed 0: forget answer NLL 0.003 -> 2.39, retain 0.002 ->
    0.24; at 3e-3 the retain-free ascent takes the retain NLL to 1.45, at 1e-3 the forget NLL
    reaches only 0.51). They do not carry over: on the leaderboard's 2-layer 128-wide Llama
    (10 people, forget10, seed 0) the same defaults collapse the model (forget and retain answer
    NLL 13.2 and 13.1, from 0.03), as do 1e-3 and 5e-4; 2e-4 gives 1.01 and 0.12. Retain-free
    ascent has no brake but the step budget: set ``lr`` / ``max_steps`` for the model at hand.
    """

    name = "imu"
    modalities = ("classifier", "causal_lm")
    summary = (
        "Retain-free gradient ascent on the output layer (on causal LMs the last layers' attention), "
        "each forget example weighted by its influence"
    )
    Params = IMUParams
    citation = "Fan, Wu, Zhou, Liang and Phung 2025 (arXiv:2508.01620), IMU: Influence-guided Machine Unlearning"

    def loop_plan(self, model, task, seed) -> LoopPlan:
        p = self.params
        adapter = task.adapter
        if p.influence_on == "head" and getattr(task, "num_classes", None) is None:
            raise ConfigError(
                "imu: influence_on='head' needs a classifier's output layer; use 'attention' on this task"
            )
        # the modality's defaults choose (causal_lm/defaults.py sets 'attention'): no name test here
        if p.influence_on == "attention":
            head = lm_influence_parameters(model, p.lm_layers, p.lm_modules)
            positions, weights = lm_influence_weights(model, task, head, p.damping, p.top_fraction, p.clip_quantile)
        else:
            positions, weights = influence_weights(model, task, p.damping, p.top_fraction, p.clip_quantile)
            head = head_parameters(model, task.num_classes)
        data = task.forget.take(positions.numpy(), "imu-forget")
        held = _Weights(weights.to(task.device))  # a module, so the vectorised path stacks each model's weights
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
