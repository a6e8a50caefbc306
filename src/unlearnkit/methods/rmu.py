"""RMU: Representation Misdirection for Unlearning (Li et al. 2024, the WMDP paper)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..engines.loop import LoopStats, run_loop
from ..errors import ConfigError
from ..utils import derive_seed
from .base import LoopParams, Method, hp, register

UPDATE_MODES = ("down_proj", "mlp", "all")
TOKEN_MODES = ("all", "answer")
#: the MLP output projection's weight in common Hugging Face architectures (Llama/Mistral/Qwen,
#: GPT-2, OPT, GPT-NeoX, GPT-J)
_DOWN_PROJ = ("down_proj.weight", "mlp.c_proj.weight", "fc2.weight", "dense_4h_to_h.weight", "fc_out.weight")


@dataclass
class RMUParams(LoopParams):
    epochs: float = hp(30.0, "passes over the forget set (each step also draws a retain batch)")
    lr: float = hp(1e-2, "learning rate")
    batch_size: int = hp(8, "batch size of each stream")
    layer: int | None = hp(
        None,
        "decoder layer l whose output is misdirected (0-based); "
        "None: 7 (the paper's, for 7B models) or the last layer if fewer",
    )
    update_layers: int = hp(3, "how many layers ending at l are updated (the paper: 3, l-2..l)")
    update: str = hp(
        "mlp",
        "which parameters of those layers are updated: mlp (the paper), "
        "down_proj (the official code: the MLP output projection only) or all",
    )
    steering_coeff: float = hp(20.0, "c: the forget activations are steered to c * u, |u| = 1")
    alpha: float = hp(30.0, "weight of the retain loss (activations kept at the frozen model's)")
    tokens: str = hp(
        "answer",
        "which tokens the losses average over: answer (answer tokens only, "
        "as OpenUnlearning) or all (every non-padding token, the paper's formula)",
    )

    def __post_init__(self) -> None:
        if self.layer is not None and self.layer < 0:
            raise ConfigError(f"rmu: layer must be >= 0 (a decoder layer index), not {self.layer}")
        if self.update_layers < 1:
            raise ConfigError("rmu: update_layers must be >= 1")
        if self.update not in UPDATE_MODES:
            raise ConfigError(f"rmu: update must be one of {', '.join(UPDATE_MODES)}, not {self.update!r}")
        if self.tokens not in TOKEN_MODES:
            raise ConfigError(f"rmu: tokens must be one of {', '.join(TOKEN_MODES)}, not {self.tokens!r}")
        if self.steering_coeff <= 0 or self.alpha < 0:
            raise ConfigError("rmu: steering_coeff must be > 0 and alpha >= 0")


def _base_model(model: nn.Module) -> nn.Module:
    """The Hugging Face model under a peft wrapper (the model itself otherwise)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """``(qualified name, ModuleList)`` of the decoder blocks of a Hugging Face causal LM
    (``model.layers`` for Llama-style models, ``transformer.h`` for GPT-2...), through a
    peft wrapper: the ``ModuleList`` whose length is ``config.num_hidden_layers``."""
    n = getattr(getattr(_base_model(model), "config", None), "num_hidden_layers", None)
    found = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.ModuleList) and len(m) > 0 and (n is None or len(m) == n)
    ]
    if not found:
        raise ConfigError(
            "rmu needs a Hugging Face causal LM with a list of decoder layers "
            "(config.num_hidden_layers); this model has none"
        )
    preferred = [f for f in found if f[0].rsplit(".", 1)[-1] in ("layers", "h", "blocks", "layer")]
    return (preferred or found)[0]


class _Stop(Exception):
    """Raised by the capture hook: nothing after the captured layer needs computing."""


def layer_hidden_states(model: nn.Module, batch: dict, layer: int) -> torch.Tensor:
    """The output of decoder layer ``layer`` (the residual stream after it), ``(B, T, d)``.

    Captured with a forward hook on the layer, as the official RMU code does, rather than
    through ``output_hidden_states``: in recent transformers the last entry of
    ``hidden_states`` is taken after the final norm, which would bound the very norm RMU
    inflates. The forward pass stops at the layer (the later layers and the head are not run).
    """
    _, layers = decoder_layers(model)
    out: list[torch.Tensor] = []

    def hook(module, args, output):
        out.append(output[0] if isinstance(output, tuple) else output)
        raise _Stop

    handle = layers[layer].register_forward_hook(hook)
    try:
        model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"), use_cache=False)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not out:
        raise ConfigError(f"rmu: decoder layer {layer} was never reached in the forward pass")
    return out[0]


def activation_distance(h: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``mean_b [ (1/L_b) sum_{t in mask_b} (1/d) ||h_bt - target_bt||^2 ]``: the paper's per-token
    squared distance averaged over each sequence's tokens, then over the batch, with the
    ``1/d`` of ``mse_loss`` that the official code (and OpenUnlearning) has."""
    sq = (h.float() - target.float()).pow(2).mean(-1)
    m = mask.to(sq.dtype)
    return ((sq * m).sum(1) / m.sum(1).clamp_min(1)).mean()


def control_vector(seed: int, hidden: int, steering_coeff: float) -> torch.Tensor:
    """``c * u``: ``u`` has entries drawn uniformly from [0, 1) (seeded), scaled to unit norm."""
    gen = torch.Generator().manual_seed(derive_seed(seed, "rmu", "u") % (2**63))
    u = torch.rand(hidden, generator=gen)
    return steering_coeff * u / u.norm()


def token_mask(batch: dict, tokens: str) -> torch.Tensor:
    if tokens == "answer":
        return batch["labels"] != -100
    am = batch.get("attention_mask")
    return torch.ones_like(batch["input_ids"], dtype=torch.bool) if am is None else am.bool()


def _select_params(model: nn.Module, prefix: str, layers: range, update: str) -> list[tuple[str, nn.Parameter]]:
    starts = tuple(f"{prefix}.{i}." for i in layers)
    inside = [(n, p) for n, p in model.named_parameters() if n.startswith(starts)]
    if hasattr(model, "peft_config"):  # task-level LoRA: train the adapters inside the chosen layers
        chosen = [(n, p) for n, p in inside if p.requires_grad]
        what = "LoRA adapter in those layers (task.lora's target_modules)"
    elif update == "down_proj":
        chosen = [(n, p) for n, p in inside if n.endswith(_DOWN_PROJ)]
        what = "MLP down projection (use update='mlp' or 'all')"
    elif update == "mlp":
        chosen = [(n, p) for n, p in inside if ".mlp." in n or ".feed_forward." in n]
        what = "MLP parameter named '.mlp.' (use update='all')"
    else:
        chosen = inside
        what = "parameter"
    if not chosen:
        raise ConfigError(f"rmu: layers {layers.start}..{layers.stop - 1} have no {what}")
    return chosen


@register
class RMU(Method):
    """RMU, Representation Misdirection for Unlearning (Li et al. 2024, "The WMDP Benchmark:
    Measuring and Reducing Malicious Use With Unlearning", ICML, sec. 5):

    ``L_forget = E_{x_f} [ (1/L_f) sum_{t in x_f} ||M_upd(t) - c u||^2 ]``
    ``L_retain = E_{x_r} [ (1/L_r) sum_{t in x_r} ||M_upd(t) - M_frozen(t)||^2 ]``
    ``L = L_forget + alpha * L_retain``

    where ``M(t)`` is the output of decoder layer ``l`` at token ``t`` (the residual
    stream), ``M_frozen`` the original, and ``u`` a random unit vector with entries drawn
    uniformly from [0, 1) then normalised, fixed for the run (seeded from the run's seed).
    Only the MLP parameters of layers ``l-2..l`` are updated (the paper); the official
    code (``param_ids=[6]``) and OpenUnlearning's ``rmu.py`` update only the MLP output
    projection of each (``update="down_proj"``). Inflating the forget activations' norm at
    an early layer scrambles what later layers compute from them, while the retain term
    pins the activations of other data to the frozen model's.

    Choices and departures: the squared distance is divided by the hidden size ``d`` (the
    official code's ``mse_loss``), which only rescales ``alpha``. Tokens: by default the
    losses average over *answer* tokens (OpenUnlearning's adaptation to QA data): the
    question template's tokens are shared with retain rows, so steering them fights the
    retain term; ``tokens="all"`` averages over every non-padding token (the paper's
    formula, whose forget data is plain text). Each step draws one forget and one retain
    batch (the paper's retain set is WikiText, here the task's retain rows); ``epochs``
    counts passes over the forget set. Defaults (``l`` = 7 or the last layer of a smaller
    model, ``c = 20``, ``alpha = 30``, Adam at 1e-2, 30 epochs of batches of 8) were chosen
    on the tiny test task; the paper uses ``l = 7``, ``c`` from 6.5 to 300, ``alpha = 1200``
    and AdamW at 5e-5 on 7B models. The layer output is captured with a forward hook (see
    :func:`layer_hidden_states`). With ``task.lora`` the LoRA adapters inside layers
    ``l-2..l`` are trained instead. The frozen model's passes on retain batches are
    counted in the cost.
    """

    name = "rmu"
    summary = "RMU: steer forget activations at layer l to c*u, pin retain activations (WMDP)"
    modalities = ("causal_lm",)
    Params = RMUParams
    citation = "Li et al. 2024 (ICML), The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning, RMU"
    needs_retain = True

    def resolve_layer(self, model: nn.Module) -> int:
        _, layers = decoder_layers(model)
        n = len(layers)
        layer = min(7, n - 1) if self.params.layer is None else self.params.layer
        if not 0 <= layer < n:
            raise ConfigError(
                f"rmu: layer {layer} does not exist; the model has {n} decoder layer(s), so choose 0..{n - 1}"
            )
        return layer

    def _unlearn(self, model, task, seed, progress) -> LoopStats:
        p = self.params
        layer = self.resolve_layer(model)
        prefix, _ = decoder_layers(model)
        chosen = _select_params(model, prefix, range(max(0, layer - p.update_layers + 1), layer + 1), p.update)
        hidden = int(_base_model(model).config.hidden_size)
        target = control_vector(seed, hidden, p.steering_coeff).to(task.device)
        frozen = copy.deepcopy(model).eval().requires_grad_(False)

        def objective(ctx):
            fb = ctx.batch("forget")
            h_f = layer_hidden_states(ctx.model, fb, layer)
            loss = activation_distance(h_f, target.expand_as(h_f), token_mask(fb, p.tokens))
            if p.alpha:
                rb = ctx.batch("retain")
                h_r = layer_hidden_states(ctx.model, rb, layer)
                with torch.no_grad():
                    h_ref = layer_hidden_states(frozen, rb, layer)
                ctx.count_forward(ctx.batch_size(rb))
                loss = loss + p.alpha * activation_distance(h_r, h_ref, token_mask(rb, p.tokens))
            return loss

        streams = {"forget": task.forget}
        if p.alpha:
            streams["retain"] = task.retain
        flags = {n: q.requires_grad for n, q in model.named_parameters()}
        keep = {n for n, _ in chosen}
        for n, q in model.named_parameters():  # frozen elsewhere: no gradient is computed there
            q.requires_grad_(n in keep)
        try:
            return run_loop(
                model,
                objective,
                streams,
                p.train_config(),
                seed,
                primary="forget",
                device=task.device,
                adapter=task.adapter,
                progress=progress,
                desc=self.name,
                params=[q for _, q in chosen],
            )
        finally:
            for n, q in model.named_parameters():
                q.requires_grad_(flags[n])
