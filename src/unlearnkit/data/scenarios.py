"""Scenarios: how a forget set (and its matching holdout) is chosen.

A dataset is first partitioned once, by seed, into ``train`` (what the original
model is trained on), ``test`` (utility) and a ``pool`` of examples never trained
on. A scenario then picks the forget set from ``train`` and draws the *holdout*
from ``pool`` "like the forget set" (same class mix, same sub-class, same label
corruption), so that membership-inference attacks compare forget examples with
non-members of the same kind.

Every scenario is seeded, and every split is recorded by its ids and by a
fingerprint (SHA-256 of the sorted ids).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from ..errors import ConfigError, ForgetSetError
from ..utils import derive_seed, fingerprint_ids
from .dataset import ExampleSet


# --------------------------------------------------------------------------- partition
@dataclass
class Partition:
    train: ExampleSet
    test: ExampleSet
    pool: ExampleSet


def partition(data: ExampleSet, seed: int = 0, test_fraction: float = 0.2, pool_fraction: float = 0.15) -> Partition:
    """Split ``data`` into train / test / holdout pool, stratified by label."""
    if not (0 < test_fraction < 1 and 0 <= pool_fraction < 1 and test_fraction + pool_fraction < 1):
        raise ConfigError("test_fraction and pool_fraction must be in (0, 1) and sum below 1")
    rng = np.random.default_rng(derive_seed(seed, "partition", data.name))
    labels = data.labels.numpy()
    train_pos, test_pos, pool_pos = [], [], []
    for c in np.unique(labels):
        pos = np.flatnonzero(labels == c)
        rng.shuffle(pos)
        n_test = int(round(len(pos) * test_fraction))
        n_pool = int(round(len(pos) * pool_fraction))
        test_pos.extend(pos[:n_test])
        pool_pos.extend(pos[n_test : n_test + n_pool])
        train_pos.extend(pos[n_test + n_pool :])
    return Partition(
        data.take(np.sort(train_pos), name=f"{data.name}/train"),
        data.take(np.sort(test_pos), name=f"{data.name}/test"),
        data.take(np.sort(pool_pos), name=f"{data.name}/pool"),
    )


# --------------------------------------------------------------------------- split
@dataclass
class Split:
    """The data of one task: the training set, the forget ids, test and holdout."""

    train: ExampleSet
    test: ExampleSet
    forget_ids: np.ndarray
    holdout: ExampleSet
    scenario: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.forget_ids = np.asarray([str(i) for i in self.forget_ids], dtype=object)
        validate_forget_ids(self.train, self.forget_ids)
        if len(self.holdout) == 0:
            raise ForgetSetError(
                "no never-trained example is like the forget set, so there is no "
                "holdout for privacy attacks; enlarge the holdout pool"
            )
        self.forget = self.train.select(self.forget_ids, name="forget")
        self.retain = self.train.without(self.forget_ids, name="retain")

    @property
    def forget_fingerprint(self) -> str:
        return fingerprint_ids(self.forget_ids)

    def describe(self) -> dict:
        return {
            "scenario": self.scenario,
            "n_train": len(self.train),
            "n_forget": len(self.forget),
            "n_retain": len(self.retain),
            "n_test": len(self.test),
            "n_holdout": len(self.holdout),
            "train_fingerprint": self.train.fingerprint,
            "forget_fingerprint": self.forget_fingerprint,
            "holdout_fingerprint": self.holdout.fingerprint,
            "test_fingerprint": self.test.fingerprint,
        }


def validate_forget_ids(train: ExampleSet, forget_ids: Sequence[str]) -> None:
    """Raise on an empty forget set, unknown ids, or a forget set equal to ``train``."""
    if len(forget_ids) == 0:
        raise ForgetSetError("the forget set is empty: select at least one training example")
    if len(set(map(str, forget_ids))) != len(forget_ids):
        raise ForgetSetError("the forget set lists the same example id more than once")
    train.positions(forget_ids)  # raises UnknownIdsError
    if len(forget_ids) >= len(train):
        raise ForgetSetError(
            "the forget set covers the whole training set: nothing would remain; "
            "retrain from scratch on new data instead"
        )


def matched_holdout(pool: ExampleSet, like: ExampleSet, rng: np.random.Generator, key: str = "labels") -> ExampleSet:
    """Draw from ``pool`` as many examples of each class (or group) as ``like`` has."""
    src = pool.labels.numpy() if key == "labels" else pool.groups
    tgt = like.labels.numpy() if key == "labels" else like.groups
    chosen: list[int] = []
    for c, count in zip(*np.unique(tgt, return_counts=True)):
        cand = np.flatnonzero(src == c)
        rng.shuffle(cand)
        chosen.extend(cand[:count].tolist())
    if not chosen:
        raise ForgetSetError("the holdout pool has no examples like the forget set")
    return pool.take(np.sort(chosen), name="holdout")


# --------------------------------------------------------------------------- scenarios
SCENARIOS: dict[str, type["Scenario"]] = {}


def _register(cls):
    SCENARIOS[cls.kind] = cls
    return cls


@dataclass
class Scenario:
    """Base class: ``build(partition, seed) -> Split``."""

    kind: ClassVar[str] = "base"

    def build(self, part: Partition, seed: int = 0) -> Split:
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    def _rng(self, seed: int) -> np.random.Generator:
        return np.random.default_rng(derive_seed(seed, "scenario", self.to_dict()))


@_register
@dataclass
class RandomForget(Scenario):
    """A uniformly random ``fraction`` of the training examples."""

    kind: ClassVar[str] = "random"
    fraction: float = 0.1

    def build(self, part: Partition, seed: int = 0) -> Split:
        if not 0 < self.fraction < 1:
            raise ConfigError("random scenario: fraction must be in (0, 1)")
        rng = self._rng(seed)
        n = max(1, int(round(self.fraction * len(part.train))))
        pos = np.sort(rng.choice(len(part.train), size=n, replace=False))
        forget = part.train.take(pos)
        return Split(part.train, part.test, forget.example_ids, matched_holdout(part.pool, forget, rng), self.to_dict())


@_register
@dataclass
class ClassForget(Scenario):
    """Every training example of one class (the holdout is the pool's examples of it)."""

    kind: ClassVar[str] = "class"
    label: int = 0

    def build(self, part: Partition, seed: int = 0) -> Split:
        mask = part.train.labels.numpy() == self.label
        if not mask.any():
            raise ForgetSetError(f"class scenario: no training example has label {self.label}")
        forget_ids = part.train.example_ids[mask]
        holdout = part.pool.take(np.flatnonzero(part.pool.labels.numpy() == self.label), "holdout")
        return Split(part.train, part.test, forget_ids, holdout, self.to_dict())


@_register
@dataclass
class SubclassForget(Scenario):
    """Every example of one fine label (``groups``) inside its coarse class."""

    kind: ClassVar[str] = "subclass"
    group: int = 0

    def build(self, part: Partition, seed: int = 0) -> Split:
        if part.train.groups is None:
            raise ConfigError("subclass scenario needs a dataset with sub-class groups (e.g. 'digits-coarse')")
        mask = part.train.groups == self.group
        if not mask.any():
            raise ForgetSetError(f"subclass scenario: no training example is in group {self.group}")
        holdout = part.pool.take(np.flatnonzero(part.pool.groups == self.group), "holdout")
        return Split(part.train, part.test, part.train.example_ids[mask], holdout, self.to_dict())


@_register
@dataclass
class SubjectForget(Scenario):
    """All examples of some data subjects: the ids in ``subjects``, or ``count`` drawn at random."""

    kind: ClassVar[str] = "subjects"
    subjects: list[str] | None = None
    count: int = 5

    def build(self, part: Partition, seed: int = 0) -> Split:
        rng = self._rng(seed)
        if part.train.subject_ids is None:
            raise ConfigError("subjects scenario needs a dataset with subject ids")
        if self.subjects:
            subjects = [str(s) for s in self.subjects]
        else:
            all_subjects = np.unique(part.train.subject_ids)
            if self.count < 1 or self.count >= len(all_subjects):
                raise ConfigError(f"subjects scenario: count must be in [1, {len(all_subjects) - 1}]")
            subjects = sorted(rng.choice(all_subjects, size=self.count, replace=False).tolist())
        forget_ids = part.train.ids_of_subjects(subjects)
        forget = part.train.select(forget_ids)
        d = self.to_dict()
        d["subjects"] = subjects
        return Split(part.train, part.test, forget_ids, matched_holdout(part.pool, forget, rng), d)


@_register
@dataclass
class IdsForget(Scenario):
    """An explicit list of example ids (a deletion request resolved to ids)."""

    kind: ClassVar[str] = "ids"
    ids: list[str] = field(default_factory=list)

    def build(self, part: Partition, seed: int = 0) -> Split:
        validate_forget_ids(part.train, self.ids)
        forget = part.train.select(self.ids)
        return Split(
            part.train, part.test, self.ids, matched_holdout(part.pool, forget, self._rng(seed)), self.to_dict()
        )


@_register
@dataclass
class MislabelledForget(Scenario):
    """A ``fraction`` of training examples get a wrong label; the forget set is them.

    The original model is trained on the corrupted labels (resolve-confusion use
    case); the holdout is pool examples corrupted the same way, never trained on.
    """

    kind: ClassVar[str] = "mislabelled"
    fraction: float = 0.1

    def _corrupt(self, data: ExampleSet, pos: np.ndarray, rng) -> ExampleSet:
        labels = data.labels.clone()
        k = int(data.num_classes)
        shift = torch.as_tensor(rng.integers(1, k, size=len(pos)))
        labels[torch.as_tensor(pos)] = (labels[torch.as_tensor(pos)] + shift) % k
        return data.with_labels(labels)

    def build(self, part: Partition, seed: int = 0) -> Split:
        if not 0 < self.fraction < 1:
            raise ConfigError("mislabelled scenario: fraction must be in (0, 1)")
        rng = self._rng(seed)
        n = max(1, int(round(self.fraction * len(part.train))))
        pos = np.sort(rng.choice(len(part.train), size=n, replace=False))
        train = self._corrupt(part.train, pos, rng)
        m = min(n, len(part.pool))
        hpos = np.sort(rng.choice(len(part.pool), size=m, replace=False))
        holdout = self._corrupt(part.pool, hpos, rng).take(hpos, "holdout")
        return Split(train, part.test, train.example_ids[pos], holdout, self.to_dict())


#: Suffix of the example id of every example that carries the planted marker (BiasForget):
#: marked train, holdout and test examples are named ``<id>+marked`` so that metrics can
#: find them from scores alone, and so that a marked training set has another fingerprint
#: (and another cached original) than the clean one.
MARK_SUFFIX = "+marked"


def marker_fn(reference: ExampleSet, feature: int = 0):
    """The planted spurious feature, as ``inputs -> marked inputs`` (a copy).

    Images (``(C, H, W)`` or ``(H, W)`` per example): the top-left ``s x s`` patch,
    ``s = max(1, min(H, W) // 4)``, set to the largest value in ``reference`` (a bright
    corner square; on digits no clean image has it). Flat features: feature ``feature``
    set to ``max + (max - min)`` of that feature in ``reference`` (a constant no clean
    example reaches).
    """
    x = reference.inputs
    if x.ndim >= 3:
        size = max(1, min(x.shape[-2:]) // 4)
        hi = float(x.max())

        def mark(v: torch.Tensor) -> torch.Tensor:
            v = v.clone()
            v[..., :size, :size] = hi
            return v
    else:
        if not 0 <= feature < x.shape[1]:
            raise ConfigError(f"bias scenario: feature must be in [0, {x.shape[1] - 1}]")
        col = x[:, feature]
        value = float(col.max() + (col.max() - col.min()))

        def mark(v: torch.Tensor) -> torch.Tensor:
            v = v.clone()
            v[:, feature] = value
            return v

    return mark


def _with_marks(data: ExampleSet, pos: np.ndarray, mark, name: str | None = None) -> ExampleSet:
    """A copy of ``data`` whose examples at ``pos`` carry the marker and ids ending in MARK_SUFFIX."""
    inputs = data.inputs.clone()
    idx = torch.as_tensor(np.asarray(pos, dtype=np.int64))
    if len(idx):
        inputs[idx] = mark(inputs[idx])
    ids = data.example_ids.copy()
    ids[pos] = [f"{i}{MARK_SUFFIX}" for i in ids[pos]]
    return ExampleSet(
        inputs,
        data.labels,
        ids,
        data.subject_ids,
        data.groups,
        num_classes=data.num_classes,
        name=name or data.name,
        meta=dict(data.meta),
    )


def _share(fraction: float, total: int) -> int:
    """``round(fraction * total)``, at least 1 when ``total > 0``."""
    return max(1, int(round(fraction * total))) if total else 0


def _pick(rng: np.random.Generator, candidates: np.ndarray, n: int) -> np.ndarray:
    """``min(n, len(candidates))`` of ``candidates`` drawn without replacement, sorted."""
    n = min(int(n), len(candidates))
    return np.sort(rng.choice(candidates, size=n, replace=False)).astype(np.int64)


@_register
@dataclass
class BiasForget(Scenario):
    """Remove a planted bias: a spurious marker on part of one class; the forget set is those examples.

    A ``fraction`` of the training examples of class ``label`` carry a marker (a bright
    corner patch on images, an out-of-range constant on feature ``feature`` of tabular
    data, see :func:`marker_fn`), so the original learns "marker => ``label``". The
    forget set is the marked training examples; the holdout is as many marked pool
    examples of ``label``. In the test set a ``test_fraction`` of the examples of the
    *other* classes carry the marker too: the "biased test" on which the ``bias`` metric
    measures how often the marker drags predictions to ``label``.

    Kurmanji et al. 2023 (SCRUB, NeurIPS) name removing biases (RB) as an application,
    where the desired forget error is maximal, and evaluate it by forget error on
    class/sub-class forget sets. We plant the bias explicitly (as shortcut-learning
    studies do) so that its effect can be measured off the forget set. Marked examples
    are named ``<id>+marked`` (:data:`MARK_SUFFIX`) in every split. The marked test
    examples stay in the test split, so ``acc_test`` includes them (a biased model
    loses accuracy there: that is the bias's cost).
    """

    kind: ClassVar[str] = "bias"
    label: int = 0
    fraction: float = 0.5
    test_fraction: float = 0.5
    feature: int = 0

    def build(self, part: Partition, seed: int = 0) -> Split:
        if not (0 < self.fraction <= 1 and 0 <= self.test_fraction <= 1):
            raise ConfigError("bias scenario: fraction must be in (0, 1] and test_fraction in [0, 1]")
        rng = self._rng(seed)
        mark = marker_fn(part.train, self.feature)
        y_train, y_pool, y_test = (d.labels.numpy() for d in (part.train, part.pool, part.test))
        cand = np.flatnonzero(y_train == self.label)
        if len(cand) == 0:
            raise ForgetSetError(f"bias scenario: no training example has label {self.label}")
        pos = _pick(rng, cand, _share(self.fraction, len(cand)))
        train = _with_marks(part.train, pos, mark)
        hpos = _pick(rng, np.flatnonzero(y_pool == self.label), len(pos))
        holdout = _with_marks(part.pool, hpos, mark).take(hpos, "holdout")
        others = np.flatnonzero(y_test != self.label)
        tpos = _pick(rng, others, int(round(self.test_fraction * len(others))))
        test = _with_marks(part.test, tpos, mark)
        return Split(train, test, train.example_ids[pos], holdout, self.to_dict())


@_register
@dataclass
class ConfusionForget(Scenario):
    """Resolve confusion: a ``fraction`` of the training examples of classes ``a`` and ``b``
    have their labels swapped (a -> b, b -> a); the forget set is those mislabelled examples.

    Goel et al. 2022 ("Towards Adversarial Evaluation of Machine Unlearning" /
    "Evaluating Inexact Unlearning Requires Revisiting Forgetting"), the interclass
    confusion (IC) test, used by Kurmanji et al. 2023 (SCRUB) for resolving confusion
    (RC). The holdout is pool examples of ``a`` and ``b`` swapped the same way (as many of
    each swapped label as the forget set has), never trained on. The ``confusion`` metric
    measures what is left of the confusion. The default ``fraction`` makes it plain on
    digits (MLP, seed 0: interclass confusion on test 0.26 for the original, 0.04 for the
    reference); at 0.5 the two labels carry no information about a vs b.
    """

    kind: ClassVar[str] = "confusion"
    a: int = 3
    b: int = 8
    fraction: float = 0.4

    def _swap(self, data: ExampleSet, pos: np.ndarray) -> ExampleSet:
        labels = data.labels.clone()
        idx = torch.as_tensor(np.asarray(pos, dtype=np.int64))
        old = labels[idx]
        labels[idx] = torch.where(old == self.a, torch.tensor(self.b), torch.tensor(self.a))
        return data.with_labels(labels)

    def build(self, part: Partition, seed: int = 0) -> Split:
        k = int(part.train.num_classes)
        if self.a == self.b or not (0 <= self.a < k and 0 <= self.b < k):
            raise ConfigError(f"confusion scenario: a and b must be two different classes in [0, {k - 1}]")
        if not 0 < self.fraction <= 1:
            raise ConfigError("confusion scenario: fraction must be in (0, 1]")
        rng = self._rng(seed)
        y, yp = part.train.labels.numpy(), part.pool.labels.numpy()
        pos = np.sort(
            np.concatenate(
                [
                    _pick(rng, cand, _share(self.fraction, len(cand)))
                    for c in (self.a, self.b)
                    for cand in [np.flatnonzero(y == c)]
                ]
            )
        )
        if len(pos) == 0:
            raise ForgetSetError(f"confusion scenario: no training example has label {self.a} or {self.b}")
        train = self._swap(part.train, pos)
        counts = {c: int((y[pos] == c).sum()) for c in (self.a, self.b)}
        # as many pool examples of each class as were swapped
        hpos = np.sort(np.concatenate([_pick(rng, np.flatnonzero(yp == c), counts[c]) for c in (self.a, self.b)]))
        holdout = self._swap(part.pool, hpos).take(hpos, "holdout")
        return Split(train, part.test, train.example_ids[pos], holdout, self.to_dict())


def scenario_from_dict(d: dict[str, Any]) -> Scenario:
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in SCENARIOS:
        raise ConfigError(f"unknown scenario {kind!r}; choose one of {sorted(SCENARIOS)}")
    try:
        return SCENARIOS[kind](**d)
    except TypeError as e:
        raise ConfigError(f"scenario {kind!r}: {e}") from None


def parse_scenario(text: str) -> Scenario:
    """Parse the CLI form: ``random:0.1``, ``class:3``, ``subclass:3``, ``subjects:5``,
    ``subjects:subject-001,subject-002``, ``mislabelled:0.1``, ``bias:3`` / ``bias:3,0.5``,
    ``confusion:3,8`` / ``confusion:3,8,0.25``."""
    kind, _, arg = text.partition(":")
    kind = kind.strip()
    try:
        if kind == "random":
            return RandomForget(float(arg or 0.1))
        if kind == "class":
            return ClassForget(int(arg or 0))
        if kind == "subclass":
            return SubclassForget(int(arg or 0))
        if kind == "subjects":
            if arg and not arg.isdigit():
                return SubjectForget(subjects=arg.split(","))
            return SubjectForget(count=int(arg or 5))
        if kind == "mislabelled":
            return MislabelledForget(float(arg or 0.1))
        if kind == "bias":
            parts = [p for p in arg.split(",") if p.strip()]
            if len(parts) > 2:
                raise ValueError
            return BiasForget(int(parts[0]) if parts else 0, *(float(p) for p in parts[1:]))
        if kind == "confusion":
            parts = [p for p in arg.split(",") if p.strip()]
            if len(parts) not in (0, 2, 3):
                raise ValueError
            if not parts:
                return ConfusionForget()
            return ConfusionForget(int(parts[0]), int(parts[1]), *(float(p) for p in parts[2:]))
    except ValueError:
        raise ConfigError(f"bad scenario argument in {text!r}") from None
    raise ConfigError(
        f"unknown scenario {text!r}; use random:FRACTION, class:LABEL, subclass:GROUP, "
        "subjects:COUNT|ID,ID, mislabelled:FRACTION, bias:LABEL[,FRACTION] or confusion:A,B[,FRACTION]"
    )
