"""The recommender adapter and the interaction example set.

Every training interaction (a user and an item they interacted with: implicit feedback) is
one example, ``user:<u>/item:<i>``, whose subject is the user, so forget sets, the store and
deletion requests work on ids as everywhere else.

An :class:`InteractionSet` is rows of interactions *and* the interaction graph the model
runs on when it scores them (its *structure*: which (user, item) pairs carry messages in a
graph model such as LightGCN; matrix factorisation and the two-tower model ignore it).
``without(ids)`` removes the rows and their pairs from the structure, so
``train.without(forget)`` is the retain graph the reference retrains on; ``take`` and
``select`` keep the structure.

Each row carries a fixed negative item (seeded, one the user never interacted with), so a
row's loss is a number, not a draw: the BPR loss of Rendle et al. (UAI 2009),

    loss(u, i, j) = -log sigmoid(s(u, i) - s(u, j)),   s(u, i) = <e_u, e_i>,

and its log-likelihood ``log sigmoid(s(u, i) - s(u, j))`` (what NPO compares). Training
draws fresh negatives every step (``task.fit_rec_model``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...data.dataset import ExampleSet
from ...errors import ModelDataMismatchError


class InteractionGraph:
    """The (user, item) pairs that carry messages, as a bipartite graph over ``n_users +
    n_items`` nodes (items after users), both directions; device copies cached."""

    def __init__(self, user: np.ndarray, item: np.ndarray, n_users: int, n_items: int):
        self.user = np.asarray(user, dtype=np.int64)
        self.item = np.asarray(item, dtype=np.int64)
        self.n_users, self.n_items = int(n_users), int(n_items)
        self._on: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.user)

    def edge_index(self, device="cpu") -> torch.Tensor:
        key = str(device)
        if key not in self._on:
            u = torch.from_numpy(self.user)
            i = torch.from_numpy(self.item) + self.n_users
            self._on[key] = torch.stack([torch.cat([u, i]), torch.cat([i, u])]).to(device)
        return self._on[key]

    def keys(self) -> np.ndarray:
        """``user * n_items + item`` of every pair, sorted (membership tests)."""
        return np.sort(self.user * self.n_items + self.item)

    def items_of_users(self) -> list[np.ndarray]:
        """Per user the items of their pairs."""
        order = np.argsort(self.user, kind="stable")
        bounds = np.searchsorted(self.user[order], np.arange(self.n_users + 1))
        it = self.item[order]
        return [it[bounds[u] : bounds[u + 1]] for u in range(self.n_users)]


@dataclass
class InteractionSet(ExampleSet):
    """Rows of interactions and the interaction graph they are scored on.

    Attributes (besides :class:`~unlearnkit.data.ExampleSet`'s; ``inputs`` holds ``(user,
    item)`` per row as floats, for display only; ``labels`` are 1):
        user, item: per row the user and item positions.
        neg: per row its fixed negative item (never interacted with by the user).
        n_users, n_items: sizes of the whole catalogue.
        structure: the :class:`InteractionGraph` models run on for these rows.
    """

    user: np.ndarray | None = None
    item: np.ndarray | None = None
    neg: np.ndarray | None = None
    n_users: int = 0
    n_items: int = 0
    structure: InteractionGraph | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.num_classes = 2
        self.user = np.asarray(self.user, dtype=np.int64)
        self.item = np.asarray(self.item, dtype=np.int64)
        self.neg = np.asarray(self.neg, dtype=np.int64)
        if self.structure is None:
            self.structure = InteractionGraph(self.user, self.item, self.n_users, self.n_items)

    def _copy(self, pos: np.ndarray, name: str | None, structure: InteractionGraph | None = None) -> "InteractionSet":
        p = np.asarray(pos, dtype=np.int64)
        tp = torch.as_tensor(p)
        return InteractionSet(
            self.inputs[tp],
            self.labels[tp],
            self.example_ids[p],
            None if self.subject_ids is None else self.subject_ids[p],
            None,
            num_classes=2,
            name=name or self.name,
            meta=dict(self.meta),
            user=self.user[p],
            item=self.item[p],
            neg=self.neg[p],
            n_users=self.n_users,
            n_items=self.n_items,
            structure=self.structure if structure is None else structure,
        )

    def take(self, positions, name: str | None = None) -> "InteractionSet":
        return self._copy(np.asarray(positions, dtype=np.int64), name)

    def without(self, ids: Iterable[str], name: str | None = None) -> "InteractionSet":
        """The rows except ``ids``, on the graph without their (user, item) pairs."""
        ids = list(ids)
        drop = np.zeros(len(self), bool)
        if ids:
            drop[self.positions(ids)] = True
        g = self.structure
        gone = set((self.user[drop] * self.n_items + self.item[drop]).tolist())
        keys = g.user * g.n_items + g.item
        keep = ~np.isin(keys, np.fromiter(gone, dtype=np.int64, count=len(gone)))
        structure = InteractionGraph(g.user[keep], g.item[keep], g.n_users, g.n_items)
        return self._copy(np.flatnonzero(~drop), name, structure)

    def on_structure_of(self, other: "InteractionSet", name: str | None = None) -> "InteractionSet":
        """These rows, scored on ``other``'s graph (the forget set on the retain graph)."""
        return self._copy(np.arange(len(self)), name, other.structure)

    def with_labels(self, labels: torch.Tensor, name: str | None = None) -> "InteractionSet":
        out = self._copy(np.arange(len(self)), name)
        out.labels = torch.as_tensor(labels).long().reshape(-1)
        return out

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[dict]:
        """Batch dicts ``{"index", "user", "item", "neg", "y", "graph"}`` (``graph``: the
        :class:`InteractionGraph` the model runs on)."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        user, item, neg = (torch.from_numpy(a) for a in (self.user, self.item, self.neg))
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield {
                "index": idx,
                "user": user[idx],
                "item": item[idx],
                "neg": neg[idx],
                "y": self.labels[idx],
                "graph": self.structure,
            }


@dataclass
class RecAdapter:
    """What methods and metrics call on a recommender (see the module docstring). A model
    maps the interaction graph's ``edge_index`` to ``(user embeddings (U, d), item embeddings
    (I, d))``; a score is their inner product."""

    n_users: int
    n_items: int
    device: torch.device | str = "cpu"
    modality: str = "recommender"

    def to_device(self, batch: dict) -> dict:
        return {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}

    def batch_size(self, batch: dict) -> int:
        return int(len(batch["index"]))

    def embeddings(self, model: nn.Module, graph: InteractionGraph) -> tuple[torch.Tensor, torch.Tensor]:
        """``(user embeddings, item embeddings)`` of ``model`` on ``graph``."""
        return model(graph.edge_index(self.device))

    def logits(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """Per row ``(s(u, i), s(u, neg))``, shape (B, 2)."""
        ue, ie = self.embeddings(model, batch["graph"])
        return self.readout(ue, ie, batch)

    def readout(self, ue: torch.Tensor, ie: torch.Tensor, batch: dict) -> torch.Tensor:
        """:meth:`logits` from embeddings already computed on the batch's graph."""
        dev = ue.device
        u, i, j = batch["user"].to(dev), batch["item"].to(dev), batch["neg"].to(dev)
        zu = ue[u]
        return torch.stack([(zu * ie[i]).sum(-1), (zu * ie[j]).sum(-1)], dim=1)

    def log_likelihood(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``log sigmoid(s(u, i) - s(u, neg))`` per row: BPR's log-probability that the user
        prefers the item to its negative (every row is a positive; ``labels`` are 1)."""
        return F.logsigmoid((logits[:, 0] - logits[:, 1]).float())

    def per_example_loss(
        self, model: nn.Module, batch: dict, labels: torch.Tensor | None = None, logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The BPR loss per row, ``-log sigmoid(s(u, i) - s(u, neg))``, shape (B,)."""
        if logits is None:
            logits = self.logits(model, batch)
        return -self.log_likelihood(logits, batch["y"] if labels is None else labels)

    def per_example_kl(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """``KL(teacher || student)`` of the Bernoulli preference ``sigmoid(s(u, i) - s(u, neg))``."""
        s = (student_logits[:, 0] - student_logits[:, 1]).float()
        t = (teacher_logits[:, 0] - teacher_logits[:, 1]).float()
        pt = torch.sigmoid(t)
        return pt * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - pt) * (F.logsigmoid(-t) - F.logsigmoid(-s))

    def representations(self, model: nn.Module, batch: dict, layer: str | int | None = None) -> torch.Tensor:
        """Per row ``e_u * e_i`` (the elementwise product whose sum is the score)."""
        ue, ie = self.embeddings(model, batch["graph"])
        dev = ue.device
        return ue[batch["user"].to(dev)] * ie[batch["item"].to(dev)]

    def check_model(self, model: nn.Module, data: InteractionSet) -> None:
        """Raise ModelDataMismatchError unless the model maps the graph to one embedding per
        user and per item, of one width."""
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model(data.structure.edge_index(self.device))
        except (RuntimeError, TypeError, IndexError) as e:
            raise ModelDataMismatchError(
                f"the model cannot run on the interactions: {str(e).splitlines()[0]}"
            ) from None
        finally:
            model.train(was)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ModelDataMismatchError("a recommender must return (user embeddings, item embeddings)")
        ue, ie = out
        if ue.shape[0] != self.n_users or ie.shape[0] != self.n_items or ue.shape[1] != ie.shape[1]:
            raise ModelDataMismatchError(
                f"the model gives {tuple(ue.shape)} user and {tuple(ie.shape)} item embeddings; the data has "
                f"{self.n_users} users and {self.n_items} items"
            )
