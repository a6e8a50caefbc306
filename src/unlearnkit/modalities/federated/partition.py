"""Clients of a federation: non-IID partitions of a classifier's training set.

Every client holds whole subjects (``ExampleSet.subject_ids``; the bundled digits assign
each example to one of 100 writer-like synthetic subjects by a fixed seeded draw), so a
subject's deletion touches exactly one client. Two ways to deal subjects out:

* ``"subject"``: subjects shuffled (seeded) and dealt round-robin, so clients differ by
  who their writers are and hold nearly the same number of subjects;
* ``"dirichlet:ALPHA"``: label skew in the manner of Hsu et al. 2019 ("Measuring the
  effects of non-identical data distribution for federated visual classification"), kept
  at subject granularity. Each client ``k`` draws class proportions
  ``pi_k ~ Dir(ALPHA * 1_C)``; subjects, in a seeded order, go to a client drawn with
  probability ``softmax_k(mean_{x in s} log pi_k[y_x])`` among clients that still have room
  (a client holds at most ``ceil(1.5 S / K)`` subjects, so none is left empty). Departure:
  Hsu et al. split each class's *examples* by ``q_c ~ Dir(alpha)``; keeping subjects whole
  limits the skew to what the subjects' own label mixes allow, so
  :func:`label_skew` measures what a partition achieved rather than promising it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...data.dataset import ExampleSet
from ...errors import ConfigError
from ...utils import derive_seed


@dataclass(frozen=True)
class ClientPartition:
    """Which subjects each client holds (client ids in order)."""

    clients: dict[str, tuple[str, ...]]
    scheme: str

    @property
    def client_ids(self) -> list[str]:
        return list(self.clients)

    def client_of_subject(self, subject: str) -> str | None:
        for c, subjects in self.clients.items():
            if subject in subjects:
                return c
        return None

    def data_of(self, client: str, train: ExampleSet) -> ExampleSet:
        """The examples of ``train`` that ``client`` holds."""
        if client not in self.clients:
            raise ConfigError(f"unknown client {client!r}; the federation has {', '.join(self.clients)}")
        keep = np.isin(train.subject_ids.astype(str), np.asarray(self.clients[client], dtype=object).astype(str))
        return train.take(np.flatnonzero(keep), name=client)

    def to_dict(self) -> dict:
        return {"scheme": self.scheme, "clients": {c: list(s) for c, s in self.clients.items()}}


def client_name(i: int) -> str:
    return f"client-{i:02d}"


def parse_scheme(scheme: str) -> tuple[str, float | None]:
    """``"subject"`` or ``"dirichlet:ALPHA"`` (ALPHA > 0)."""
    if scheme == "subject":
        return "subject", None
    kind, _, value = scheme.partition(":")
    if kind == "dirichlet":
        try:
            alpha = float(value)
        except ValueError:
            alpha = float("nan")
        if not alpha > 0 or not math.isfinite(alpha):
            raise ConfigError(f"partition dirichlet needs a positive alpha, e.g. dirichlet:0.5, not {scheme!r}")
        return "dirichlet", alpha
    raise ConfigError(f"partition must be subject or dirichlet:ALPHA, not {scheme!r}")


def partition_clients(train: ExampleSet, n_clients: int, scheme: str = "subject", seed: int = 0) -> ClientPartition:
    """Deal the subjects of ``train`` out to ``n_clients`` clients (see the module docstring)."""
    kind, alpha = parse_scheme(scheme)
    if train.subject_ids is None:
        raise ConfigError("a federated task needs subject ids on its data (whole subjects go to one client)")
    subjects = np.unique(train.subject_ids.astype(str))
    if not 2 <= n_clients <= len(subjects):
        raise ConfigError(f"clients must be between 2 and the number of subjects ({len(subjects)}), not {n_clients}")
    rng = np.random.default_rng(derive_seed(seed, "federated-partition", scheme, n_clients) % (2**63))
    order = rng.permutation(len(subjects))
    owner = np.empty(len(subjects), dtype=np.int64)
    if kind == "subject":
        owner[order] = np.arange(len(subjects)) % n_clients
    else:
        k = int(train.num_classes)
        pi = rng.dirichlet(np.full(k, alpha), size=n_clients)
        log_pi = np.log(pi + 1e-12)
        labels, sid = train.labels.numpy(), train.subject_ids.astype(str)
        capacity = math.ceil(1.5 * len(subjects) / n_clients)
        held = np.zeros(n_clients, dtype=np.int64)
        # the first K subjects seed one client each, so no client is left without data
        for i, s in enumerate(order):
            fit = log_pi[:, labels[sid == subjects[s]]].mean(axis=1)
            if i < n_clients:
                choice = i
            else:
                fit = np.where(held < capacity, fit, -np.inf)
                p = np.exp(fit - fit.max())
                choice = int(rng.choice(n_clients, p=p / p.sum()))
            owner[s] = choice
            held[choice] += 1
    clients = {client_name(i): tuple(subjects[owner == i].tolist()) for i in range(n_clients)}
    return ClientPartition(clients, scheme)


def label_skew(partition: ClientPartition, train: ExampleSet) -> float:
    """Mean over clients of the total-variation distance between the client's label
    distribution and the whole training set's (0 = IID labels, 1 = disjoint)."""
    k = int(train.num_classes)
    overall = np.bincount(train.labels.numpy(), minlength=k) / len(train)
    tv = []
    for c in partition.clients:
        y = partition.data_of(c, train).labels.numpy()
        tv.append(0.5 * np.abs(np.bincount(y, minlength=k) / max(1, len(y)) - overall).sum())
    return float(np.mean(tv))
