"""Built-in graph neural networks: GCN, GAT, GIN and GraphSAGE from PyTorch Geometric's
layers (``gcn``, ``gat``, ``gin``, ``sage``), two layers by default.

``GNN(x, edge_index)`` maps node features to one output row per node: class logits for
node classification, an embedding for link prediction (the decoder is the inner product,
in the adapter). PyG is imported when a model is built, never at import time.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ...errors import ConfigError

ARCHS = ("gcn", "gat", "gin", "sage")


def _conv(arch: str, d_in: int, d_out: int, heads: int, last: bool):
    try:
        from torch_geometric import nn as gnn
    except ImportError:
        raise ConfigError("graph models need torch-geometric (pip install unlearnkit[graph])") from None
    if arch == "gcn":
        return gnn.GCNConv(d_in, d_out)
    if arch == "sage":
        return gnn.SAGEConv(d_in, d_out)
    if arch == "gin":
        return gnn.GINConv(nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU(), nn.Linear(d_out, d_out)))
    if arch == "gat":
        if last or d_out % heads:
            return gnn.GATConv(d_in, d_out, heads=1)
        return gnn.GATConv(d_in, d_out // heads, heads=heads)
    raise ConfigError(f"unknown graph model {arch!r}; choose one of {', '.join(ARCHS)}")


class GNN(nn.Module):
    """``layers`` message-passing layers (``in -> hidden -> ... -> out``) with ReLU between
    them (and dropout ``dropout``, 0 by default)."""

    def __init__(
        self, arch: str, d_in: int, d_out: int, hidden: int = 32, layers: int = 2, heads: int = 4, dropout: float = 0.0
    ):
        super().__init__()
        if layers < 1:
            raise ConfigError("a graph model needs at least one layer")
        if arch not in ARCHS:
            raise ConfigError(f"unknown graph model {arch!r}; choose one of {', '.join(ARCHS)}")
        dims = [d_in] + [hidden] * (layers - 1) + [d_out]
        self.arch = arch
        self.convs = nn.ModuleList(
            _conv(arch, dims[i], dims[i + 1], heads, last=i == layers - 1) for i in range(layers)
        )
        self.dropout = dropout

    def layer_outputs(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        after: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
        into: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
    ) -> list[torch.Tensor]:
        """The input of every layer and the final output: ``[x, h1, ..., out]``.

        ``after(i, h)``, where given, replaces layer ``i``'s output ``h`` before its activation
        (GNNDelete's deletion operators go there); ``into(i, h)`` replaces what enters layer
        ``i`` (e.g. ``h.detach()``, to give each layer's operator only its own layer's loss)."""
        outs = [x]
        for i, conv in enumerate(self.convs):
            x = conv(x if into is None else into(i, x), edge_index)
            if after is not None:
                x = after(i, x)
            if i < len(self.convs) - 1:
                x = torch.relu(x)
                if self.dropout:
                    x = nn.functional.dropout(x, self.dropout, self.training)
            outs.append(x)
        return outs

    def hidden(self, x: torch.Tensor, edge_index: torch.Tensor, layer: int | str | None = None) -> torch.Tensor:
        """The representation entering layer ``layer`` (default: the last layer's input)."""
        outs = self.layer_outputs(x, edge_index)
        i = len(self.convs) - 1 if layer is None else int(layer)
        return outs[i]

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.layer_outputs(x, edge_index)[-1]


def build_graph_model(arch: str, d_in: int, d_out: int, **kwargs) -> GNN:
    """A built-in GNN (``arch`` in :data:`ARCHS`; ``hidden``, ``layers``, ``heads``, ``dropout``)."""
    unknown = set(kwargs) - {"hidden", "layers", "heads", "dropout"}
    if unknown:
        raise ConfigError(f"unknown graph model option(s) {sorted(unknown)}; use hidden, layers, heads, dropout")
    return GNN(arch, d_in, d_out, **kwargs)
