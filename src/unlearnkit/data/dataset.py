"""ExampleSet: labelled examples with stable example ids and optional subject ids.

Every selection of data in unlearnkit is a set of example ids; an ExampleSet is the
in-memory table those ids point into. Inputs are held as one tensor (small and
medium data, the sizes unlearning is evaluated on); a torch ``Dataset`` is turned
into one with :meth:`ExampleSet.from_torch_dataset`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from ..errors import DataError, UnknownIdsError
from ..utils import fingerprint_ids


def _as_str_array(values: Iterable) -> np.ndarray:
    return np.asarray([str(v) for v in values], dtype=object)


def subject_mask(all_subjects: np.ndarray, subjects: Iterable[str], name: str) -> np.ndarray:
    """Which of ``all_subjects`` are one of ``subjects`` or under one of them (a subject id
    may be a path, ``institution/patient/study``: a subject names itself and everything
    below it, never a sibling with a longer name); unknown subjects raise
    :class:`UnknownIdsError` naming ``name``."""
    subjects = [str(s).rstrip("/") for s in subjects]
    all_subjects = np.asarray(all_subjects).astype(str)
    mask = np.zeros(len(all_subjects), dtype=bool)
    missing = []
    for s in subjects:
        hit = (all_subjects == s) | np.char.startswith(all_subjects, s + "/") if s else np.zeros_like(mask)
        if not hit.any():
            missing.append(s)
        mask |= hit
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise UnknownIdsError(f"{len(missing)} subject id(s) not in {name!r}: {shown}")
    return mask


@dataclass
class ExampleSet:
    """A table of examples.

    Attributes:
        inputs: tensor of shape ``(N, ...)`` (float features or images).
        labels: ``(N,)`` int64 class labels.
        example_ids: ``(N,)`` unique string ids, stable across runs.
        subject_ids: optional ``(N,)`` string ids of the person each example is about.
        groups: optional ``(N,)`` int fine labels (sub-classes) when ``labels`` are coarse.
        num_classes: number of classes of ``labels``.
        name: a short name used in reports and cache keys.
        meta: free-form provenance (source file, generator arguments, ...).
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    example_ids: np.ndarray
    subject_ids: np.ndarray | None = None
    groups: np.ndarray | None = None
    num_classes: int | None = None
    name: str = "data"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.inputs = torch.as_tensor(self.inputs)
        if not torch.is_floating_point(self.inputs):
            self.inputs = self.inputs.float()
        self.labels = torch.as_tensor(self.labels).long().reshape(-1)
        self.example_ids = _as_str_array(self.example_ids)
        n = len(self.labels)
        if len(self.inputs) != n or len(self.example_ids) != n:
            raise DataError(
                f"inputs ({len(self.inputs)}), labels ({n}) and example_ids "
                f"({len(self.example_ids)}) must have the same length"
            )
        if len(set(self.example_ids.tolist())) != n:
            raise DataError("example_ids must be unique")
        if self.subject_ids is not None:
            self.subject_ids = _as_str_array(self.subject_ids)
            if len(self.subject_ids) != n:
                raise DataError("subject_ids must have one entry per example")
        if self.groups is not None:
            self.groups = np.asarray(self.groups)
            if len(self.groups) != n:
                raise DataError("groups must have one entry per example")
        if n and int(self.labels.min()) < 0:
            raise DataError("labels must be non-negative class indices")
        if self.num_classes is None:
            self.num_classes = int(self.labels.max()) + 1 if n else 0
        self._index = {eid: i for i, eid in enumerate(self.example_ids.tolist())}

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_tensors(
        cls,
        inputs,
        labels,
        example_ids: Sequence | None = None,
        subject_ids: Sequence | None = None,
        num_classes: int | None = None,
        name: str = "data",
        **kw,
    ) -> "ExampleSet":
        """Build from arrays or tensors; ids default to ``"<name>-<row>"``."""
        n = len(labels)
        if example_ids is None:
            example_ids = [f"{name}-{i:06d}" for i in range(n)]
        return cls(
            torch.as_tensor(np.asarray(inputs)) if not isinstance(inputs, torch.Tensor) else inputs,
            torch.as_tensor(np.asarray(labels)) if not isinstance(labels, torch.Tensor) else labels,
            np.asarray(example_ids),
            None if subject_ids is None else np.asarray(subject_ids),
            num_classes=num_classes,
            name=name,
            **kw,
        )

    @classmethod
    def from_torch_dataset(
        cls,
        dataset: torch.utils.data.Dataset,
        example_ids: Sequence | None = None,
        subject_ids: Sequence | None = None,
        num_classes: int | None = None,
        name: str = "data",
    ) -> "ExampleSet":
        """Materialise a map-style torch Dataset yielding ``(input, label)`` pairs."""
        xs, ys = [], []
        for i in range(len(dataset)):  # type: ignore[arg-type]
            item = dataset[i]
            if not isinstance(item, (tuple, list)) or len(item) < 2:
                raise DataError("the dataset must yield (input, label) pairs")
            xs.append(torch.as_tensor(item[0]))
            ys.append(int(item[1]))
        if not xs:
            raise DataError("the dataset is empty")
        return cls.from_tensors(torch.stack(xs).float(), torch.tensor(ys), example_ids, subject_ids, num_classes, name)

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.inputs.shape[1:])

    @property
    def fingerprint(self) -> str:
        return fingerprint_ids(self.example_ids)

    def has(self, example_id: str) -> bool:
        return example_id in self._index

    def positions(self, ids: Iterable[str]) -> np.ndarray:
        """Row positions of ``ids``; raises UnknownIdsError listing the first unknown ones."""
        ids = [str(i) for i in ids]
        missing = [i for i in ids if i not in self._index]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise UnknownIdsError(f"{len(missing)} example id(s) not in {self.name!r}: {shown}")
        return np.asarray([self._index[i] for i in ids], dtype=np.int64)

    def ids_of_subjects(self, subjects: Iterable[str]) -> np.ndarray:
        """All example ids whose subject is in ``subjects`` or under one of them; unknown
        subjects raise.

        Subject ids may be paths (``institution/patient/study``, as in MedForget): a subject
        names itself and everything below it, so deleting ``hospital-a/patient-7`` deletes
        every study of that patient (``hospital-a/patient-7/...``), never
        ``hospital-a/patient-70``."""
        if self.subject_ids is None:
            raise UnknownIdsError(f"{self.name!r} has no subject ids; select by example id instead")
        return self.example_ids[subject_mask(self.subject_ids, subjects, self.name)]

    def take(self, positions: np.ndarray | Sequence[int], name: str | None = None) -> "ExampleSet":
        pos = torch.as_tensor(np.asarray(positions, dtype=np.int64))
        p = pos.numpy()
        return ExampleSet(
            self.inputs[pos],
            self.labels[pos],
            self.example_ids[p],
            None if self.subject_ids is None else self.subject_ids[p],
            None if self.groups is None else self.groups[p],
            num_classes=self.num_classes,
            name=name or self.name,
            meta=dict(self.meta),
        )

    def select(self, ids: Iterable[str], name: str | None = None) -> "ExampleSet":
        """The examples with these ids, in the given order."""
        return self.take(self.positions(ids), name)

    def without(self, ids: Iterable[str], name: str | None = None) -> "ExampleSet":
        """All examples except these ids (which must exist), order kept."""
        drop = set(self.positions(ids).tolist())
        keep = [i for i in range(len(self)) if i not in drop]
        return self.take(keep, name)

    def with_labels(self, labels: torch.Tensor, name: str | None = None) -> "ExampleSet":
        """A copy with other labels (random-label and relabelling methods, mislabel scenarios)."""
        return ExampleSet(
            self.inputs,
            labels,
            self.example_ids,
            self.subject_ids,
            self.groups,
            num_classes=self.num_classes,
            name=name or self.name,
            meta=dict(self.meta),
        )

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[dict]:
        """One pass over the data as batch dicts ``{"x", "y", "index"}``."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield {"x": self.inputs[idx], "y": self.labels[idx], "index": idx}

    @staticmethod
    def concat(sets: Sequence["ExampleSet"], name: str) -> "ExampleSet":
        if not sets:
            raise DataError("nothing to concatenate")
        subj = None
        if all(s.subject_ids is not None for s in sets):
            subj = np.concatenate([s.subject_ids for s in sets])
        groups = None
        if all(s.groups is not None for s in sets):
            groups = np.concatenate([s.groups for s in sets])
        return ExampleSet(
            torch.cat([s.inputs for s in sets]),
            torch.cat([s.labels for s in sets]),
            np.concatenate([s.example_ids for s in sets]),
            subj,
            groups,
            num_classes=max(int(s.num_classes or 0) for s in sets),
            name=name,
        )
