"""Model definitions for the classifier modality: MLP, a small CNN, ResNet-18.

All map an input batch to logits. ``build_model(arch, input_shape, num_classes)``
builds one by name; ``MODELS`` lists the names.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError

MODELS: dict[str, Callable[..., nn.Module]] = {}


def _model(name: str):
    def deco(fn):
        MODELS[name] = fn
        return fn

    return deco


class MLP(nn.Module):
    """Flatten, then ``hidden`` ReLU layers, then a linear head."""

    def __init__(self, input_dim: int, num_classes: int, hidden: tuple[int, ...] = (256, 128), dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        d = input_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            d = h
        layers.append(nn.Linear(d, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """Two 3x3 conv blocks (``width``, ``2*width`` channels) with pooling, then a linear head.

    About 100k parameters with ``width=32`` on 8x8 digits.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * width, 128), nn.ReLU(), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 (He et al. 2016) in the CIFAR form: 3x3 stem, no max-pool, for 32x32 inputs.

    ``width`` is the first stage's channels (64 in the paper); narrower widths keep it
    trainable on CPUs.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages, cin = [], width
        for i, n in enumerate((2, 2, 2, 2)):
            cout = width * (2**i)
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(cin, cout, stride=2 if (j == 0 and i > 0) else 1))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


@_model("linear")
def _linear(input_shape, num_classes, **kw):
    return MLP(math.prod(input_shape), num_classes, hidden=())


@_model("mlp")
def _mlp(input_shape, num_classes, hidden=(256, 128), dropout=0.0):
    return MLP(math.prod(input_shape), num_classes, tuple(hidden), dropout)


@_model("cnn")
def _cnn(input_shape, num_classes, width=32):
    if len(input_shape) != 3:
        raise ConfigError(f"cnn needs image inputs (C, H, W); got shape {tuple(input_shape)}")
    return SmallCNN(input_shape[0], num_classes, width)


@_model("resnet18")
def _resnet18(input_shape, num_classes, width=64):
    if len(input_shape) != 3:
        raise ConfigError(f"resnet18 needs image inputs (C, H, W); got shape {tuple(input_shape)}")
    return ResNet18(input_shape[0], num_classes, width)


def build_model(arch: str, input_shape: tuple[int, ...], num_classes: int, **kwargs) -> nn.Module:
    """Build a model by name (``linear``, ``mlp``, ``cnn``, ``resnet18``)."""
    if arch not in MODELS:
        raise ConfigError(f"unknown model {arch!r}; choose one of {sorted(MODELS)}")
    try:
        return MODELS[arch](tuple(input_shape), num_classes, **kwargs)
    except TypeError as e:
        raise ConfigError(f"model {arch!r}: {e}") from None
