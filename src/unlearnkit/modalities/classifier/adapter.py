"""The classifier adapter: any ``nn.Module`` that maps an input batch to logits.

An adapter is what methods and metrics talk to instead of the model's own API. For a
classifier it gives per-example cross-entropy losses and output logits for batches
of an :class:`~unlearnkit.data.ExampleSet`. Other modalities (causal LMs, graphs)
provide the same calls, so a method's loss written against them works unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...data.dataset import ExampleSet
from ...errors import ModelDataMismatchError


@dataclass
class ClassifierAdapter:
    """Per-example losses and logits for classification models.

    Args:
        num_classes: the number of classes the labels use; the model must output
            exactly this many logits.
        device: where batches are moved before the forward pass.
    """

    num_classes: int
    device: torch.device | str = "cpu"
    modality: str = "classifier"

    def to_device(self, batch: dict) -> dict:
        return {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}

    def batch_size(self, batch: dict) -> int:
        """Examples in the batch (rows of ``x``)."""
        return int(batch["x"].shape[0])

    def representations(self, model: nn.Module, batch: dict, layer: str | None = None) -> torch.Tensor:
        """Features of each example, shape ``(B, D)``: the input of the module named ``layer``
        (``dict(model.named_modules())``), by default of the last ``nn.Linear`` (the
        penultimate representation), flattened per example."""
        modules = dict(model.named_modules())
        if layer is None:
            linear = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
            if not linear:
                raise ModelDataMismatchError("the model has no nn.Linear layer; name the layer to read")
            layer = linear[-1]
        if layer not in modules:
            raise ModelDataMismatchError(f"the model has no module {layer!r}")
        seen: list[torch.Tensor] = []
        handle = modules[layer].register_forward_hook(lambda _m, inp, _out: seen.append(inp[0]))
        try:
            self.logits(model, batch)
        finally:
            handle.remove()
        return seen[-1].reshape(seen[-1].shape[0], -1)

    def logits(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """Raw outputs, shape ``(B, num_classes)``."""
        return model(batch["x"].to(self.device))

    def per_example_loss(
        self, model: nn.Module, batch: dict, labels: torch.Tensor | None = None, logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Cross-entropy per example, shape ``(B,)``; ``labels`` override ``batch["y"]``."""
        if logits is None:
            logits = self.logits(model, batch)
        y = (batch["y"] if labels is None else labels).to(logits.device)
        return F.cross_entropy(logits, y, reduction="none")

    def log_likelihood(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """log p(y | x) per example: the sequence-level quantity NPO-style losses use."""
        return -F.cross_entropy(logits, labels.to(logits.device), reduction="none")

    def per_example_kl(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """``KL(teacher || student)`` over the classes per example, shape ``(B,)`` (its mean is
        ``methods.losses.kl_to_teacher`` at temperature 1); ``batch`` is unused here."""
        return F.kl_div(
            F.log_softmax(student_logits.float(), -1),
            F.log_softmax(teacher_logits.float(), -1),
            log_target=True,
            reduction="none",
        ).sum(-1)

    def check_model(self, model: nn.Module, data: ExampleSet) -> None:
        """Raise ModelDataMismatchError if the model's output does not fit ``data``."""
        if data.num_classes and data.num_classes > self.num_classes:
            raise ModelDataMismatchError(
                f"the data has {data.num_classes} classes but the adapter expects {self.num_classes}"
            )
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model(data.inputs[:2].to(self.device))
        except RuntimeError as e:
            raise ModelDataMismatchError(
                f"the model cannot take inputs of shape {tuple(data.inputs.shape[1:])}: {str(e).splitlines()[0]}"
            ) from None
        finally:
            model.train(was_training)
        if out.ndim != 2 or out.shape[1] != self.num_classes:
            raise ModelDataMismatchError(
                f"the model outputs shape {tuple(out.shape[1:])} per example but the labels have "
                f"{self.num_classes} classes: give it a {self.num_classes}-way output layer"
            )
