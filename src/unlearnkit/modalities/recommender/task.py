"""Recommender tasks: implicit feedback, a recommender trained with BPR on it, and what to
delete (users' whole histories, a fraction of the interactions, an item, ids, subjects).

Split (seeded by the task's seed): leave-one-out, as He et al. (NCF, WWW 2017) evaluate: per
user with at least two interactions, the latest (by timestamp; the generator orders each
history at random) is held out as that user's test interaction; with ``test_fraction`` a
fraction of each such user's interactions instead (LightGCN's protocol holds out 20%). The
training set is every other interaction; the test set is never trained on.

The holdout (never-trained examples like the forget set, which membership inference
compares with) is the test interactions of the users the forget set touches, or the whole
test set when they have none.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from ...data.interactions import Interactions, load_interactions
from ...data.scenarios import Split
from ...engines.loop import LoopStats, TrainConfig, run_loop
from ...errors import ConfigError, ForgetSetError, UnknownIdsError
from ...task import ModelCache, Task
from ...utils import derive_seed, resolve_device, seed_everything
from .adapter import InteractionGraph, InteractionSet, RecAdapter
from .models import ARCHS, build_rec_model

TASK_KINDS = ("recsys",)
#: users compared with each forgotten user for the unlearning-bias metric
NEIGHBOURS = 10


def default_recipe(model: str = "bpr") -> TrainConfig:
    """Adam, batch 1024, 40 epochs, lr 1e-2 (5e-3 for the two-tower model, whose MLPs
    overfit faster): measured to converge on the synthetic 300 x 200 data (NDCG@10 of the
    test interactions flat over the last 10 epochs)."""
    lr = 5e-3 if model == "two-tower" else 1e-2
    return TrainConfig(epochs=40, batch_size=1024, lr=lr, optimizer="adam", weight_decay=0.0)


# --------------------------------------------------------------------------- scenarios
@dataclass
class RecForget:
    """What to delete from a recommender task.

    ``kind``:

    * ``users`` (``amount``: an int is a number of users, a float in (0, 1) a fraction of the
      users; drawn with the seed): every training interaction of those users;
    * ``interactions`` (``amount``: a fraction in (0, 1] of the training interactions, or an
      int count; drawn with the seed): some of many users' interactions;
    * ``item`` (``item``: the item's id as the data name it): every training interaction
      with that item;
    * ``ids`` (example ids ``user:<u>/item:<i>``) or ``subjects`` (user ids: their whole
      training history)."""

    kind: str = "users"
    amount: float | None = None
    item: str | None = None
    ids: list[str] | None = None
    subjects: list[str] | None = None
    KINDS: ClassVar[tuple[str, ...]] = ("users", "interactions", "item", "ids", "subjects")
    FIELDS: ClassVar[tuple[str, ...]] = ("kind", "amount", "item", "ids", "subjects")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ConfigError(f"unknown recommender scenario {self.kind!r}; choose one of {', '.join(self.KINDS)}")
        if self.kind in ("users", "interactions"):
            a = (1 if self.kind == "users" else 0.1) if self.amount is None else self.amount
            if isinstance(a, bool) or not isinstance(a, (int, float)) or not (a > 0 and np.isfinite(a)):
                raise ConfigError(f"{self.kind}:<amount> needs a fraction in (0, 1] or a whole count, not {a!r}")
            if isinstance(a, float) and a > 1:
                if a != int(a):
                    raise ConfigError(f"{self.kind}:<amount> needs a fraction in (0, 1] or a whole count, not {a}")
                a = int(a)
            self.amount = a
        if self.kind == "item" and not self.item:
            raise ConfigError("item:<id> needs an item id")

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"kind": self.kind}
        for k in self.FIELDS[1:]:
            v = getattr(self, k)
            if v is not None:
                d[k] = list(v) if isinstance(v, list) else v
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RecForget":
        return cls(**{k: d[k] for k in cls.FIELDS if k in d})

    @classmethod
    def parse(cls, text: str) -> "RecForget":
        """``users:3`` (three users), ``users:0.05`` (5% of the users), ``interactions:0.1``
        (10% of the training interactions), ``interactions:50``, ``item:<id>``."""
        kind, _, arg = str(text).partition(":")
        kind, arg = kind.strip(), arg.strip()
        if kind == "item":
            return cls("item", item=arg)
        if kind in ("users", "interactions"):
            try:
                amount = None if not arg else int(arg) if arg.isdigit() else float(arg)
            except ValueError:
                raise ConfigError(f"{kind}:<amount> needs a number, not {arg!r}") from None
            return cls(kind, amount=amount)
        raise ConfigError(
            f"unknown recommender scenario {text!r}; use users:<count|fraction>, interactions:<fraction|count> "
            "or item:<id>"
        )

    def resolve(self, train: InteractionSet, data: Interactions, seed: int) -> list[str]:
        """The forget ids, checked against the training interactions."""
        rng = np.random.default_rng(derive_seed(seed, "rec-forget", self.kind))
        present = np.unique(train.user)
        if self.kind == "users":
            a = self.amount
            n = int(a) if isinstance(a, int) else max(1, int(round(a * len(present))))
            if n >= len(present):
                raise ForgetSetError(
                    f"asked to delete {n} users but the training data has {len(present)}: nothing would remain"
                )
            users = np.sort(rng.choice(present, size=n, replace=False))
            pos = np.flatnonzero(np.isin(train.user, users))
        elif self.kind == "interactions":
            a = self.amount
            n = int(a) if isinstance(a, int) else max(1, int(round(a * len(train))))
            if n >= len(train):
                raise ForgetSetError(f"asked to delete {n} interactions but the training set has {len(train)}")
            pos = np.sort(rng.choice(len(train), size=n, replace=False))
        elif self.kind == "item":
            known = {str(i): k for k, i in enumerate(data.item_ids)}
            if self.item not in known:
                raise UnknownIdsError(f"item {self.item!r} is not in the data {data.name!r}")
            pos = np.flatnonzero(train.item == known[self.item])
            if not len(pos):
                raise ForgetSetError(
                    f"nobody interacted with item {self.item!r} in the training set: nothing to delete"
                )
        elif self.kind == "subjects":
            return train.ids_of_subjects(self.subjects or []).tolist()
        else:
            ids = [str(i) for i in self.ids or []]
            check_ids(train, ids)
            return ids
        return train.example_ids[pos].tolist()


def check_ids(train: InteractionSet, ids: Sequence[str]) -> None:
    """Unknown ids as one error saying what each is (a test interaction, not an interaction id)."""
    missing = [i for i in ids if not train.has(i)]
    if not missing:
        return
    why = []
    for i in missing[:5]:
        if not (i.startswith("user:") and "/item:" in i):
            why.append(f"{i} (ids are user:<u>/item:<i>)")
        else:
            why.append(f"{i} (not a training interaction)")
    more = " ..." if len(missing) > 5 else ""
    raise UnknownIdsError(f"{len(missing)} id(s) not among the training interactions: {', '.join(why)}{more}")


def scenario_from_dict(d: dict) -> RecForget:
    if not isinstance(d, dict) or not isinstance(d.get("kind"), str):
        raise ConfigError(f"a recommender scenario mapping needs a kind (users, interactions, item), not {d!r}")
    return RecForget.from_dict(d)


# --------------------------------------------------------------------------- task
@dataclass
class RecTask(Task):
    """A recommender task. Besides :class:`~unlearnkit.task.Task`'s fields:

    Attributes:
        data: the whole interaction table (users, items, communities where generated).
        model_name: ``bpr``, ``lightgcn`` or ``two-tower``.

    ``task.forget`` is the forget rows on the retain graph (what a model sees once they are
    deleted); ``train_from_scratch(data)`` trains on ``data``'s rows with ``data``'s graph.
    """

    data: Interactions | None = None
    model_name: str = "bpr"
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def forget(self) -> InteractionSet:
        key = ("forget", self.split.forget_fingerprint, id(self.split))
        if key not in self.memo:
            self.memo[key] = self.split.forget.on_structure_of(self.split.retain, name="forget")
        return self.memo[key]

    @property
    def n_users(self) -> int:
        return self.data.n_users

    @property
    def n_items(self) -> int:
        return self.data.n_items

    def train_from_scratch(
        self, data: InteractionSet, seed: int, progress: bool = False, desc: str = "retrain"
    ) -> tuple[nn.Module, LoopStats]:
        model = self.model_factory(seed).to(self.device)
        return model, fit_rec_model(model, data, self.adapter, self.recipe, seed, self.device, progress, desc)

    def holdout_for(self, forget: InteractionSet, rng: np.random.Generator) -> InteractionSet:
        return holdout_like(self.split.test, forget)

    def with_forget(self, forget_ids: Sequence[str], scenario: dict | None = None) -> "RecTask":
        ids = [str(i) for i in forget_ids]
        check_ids(self.split.train, ids)
        out = super().with_forget(ids, scenario)
        return replace(out, memo={})

    def without_examples(self, ids: Sequence[str]) -> "RecTask":
        return replace(self, memo={})

    # ------------------------------------------------------------- user groups
    def user_groups(self) -> dict[str, np.ndarray]:
        """The users the metrics compare (positions):

        * ``forgotten``: users every one of whose training interactions is in the forget set;
        * ``affected``: users with at least one forget interaction;
        * ``retained``: users with a test interaction who keep training interactions;
        * ``neighbours``: the forgotten users' behaviourally similar users among the retained
          ones: per forgotten user the ``NEIGHBOURS`` retained users whose training histories
          overlap theirs most (Jaccard of the item sets, before the deletion), within the
          user's latent community where the data record one (generated data);
        * ``random``: as many retained users drawn at random (seeded) from the others.
        """
        key = ("groups", self.split.forget_fingerprint, id(self.split))
        if key in self.memo:
            return self.memo[key]
        tr, f = self.split.train, self.split.forget
        n = self.n_users
        total = np.bincount(tr.user, minlength=n)
        gone = np.bincount(f.user, minlength=n)
        forgotten = np.flatnonzero((total > 0) & (gone == total))
        affected = np.flatnonzero(gone > 0)
        has_test = np.bincount(self.split.test.user, minlength=n) > 0
        retained_mask = has_test & (total > gone)
        retained = np.flatnonzero(retained_mask)
        neighbours = np.zeros(0, np.int64)
        if len(forgotten):
            cand = retained_mask.copy()
            cand[forgotten] = False
            near = np.zeros(n, bool)
            seen = np.zeros((n, self.n_items), np.float32)  # the training histories, before deletion
            seen[tr.user, tr.item] = 1.0
            inter = seen[forgotten] @ seen.T
            union = seen[forgotten].sum(1, keepdims=True) + seen.sum(1)[None, :] - inter
            sim = inter / np.maximum(union, 1.0)
            for row, u in zip(sim, forgotten):
                ok = cand if self.data.community is None else cand & (self.data.community == self.data.community[u])
                row = np.where(ok, row, -np.inf)
                k = min(NEIGHBOURS, int(ok.sum()))
                near[np.argsort(-row, kind="stable")[:k]] = True
            neighbours = np.flatnonzero(near)
        others = np.setdiff1d(retained, np.union1d(neighbours, forgotten))
        rng = np.random.default_rng(derive_seed(self.seed, "random-users", self.split.forget_fingerprint))
        random_users = np.sort(rng.choice(others, size=min(len(neighbours), len(others)), replace=False))
        out = dict(
            forgotten=forgotten, affected=affected, retained=retained, neighbours=neighbours, random=random_users
        )
        self.memo[key] = out
        return out


def holdout_like(test: InteractionSet, forget: InteractionSet) -> InteractionSet:
    """The test interactions of the users ``forget`` touches (never trained on, the same
    users), or the whole test set when they have none."""
    pos = np.flatnonzero(np.isin(test.user, np.unique(forget.user)))
    return test.take(pos, name="holdout") if len(pos) else test


def draw_negatives(
    user: torch.Tensor, n_items: int, positives: np.ndarray, gen: torch.Generator, tries: int = 10
) -> torch.Tensor:
    """Per row a uniform item that is not one of the user's ``positives`` (sorted
    ``user * n_items + item`` keys); redrawn up to ``tries`` times (a user who saw nearly
    every item keeps the last draw)."""
    neg = torch.randint(0, n_items, (len(user),), generator=gen)
    u = user.cpu().numpy()
    for _ in range(tries):
        keys = u * n_items + neg.numpy()
        pos = np.searchsorted(positives, keys).clip(max=len(positives) - 1)
        bad = positives[pos] == keys
        if not bad.any():
            break
        neg[torch.from_numpy(bad)] = torch.randint(0, n_items, (int(bad.sum()),), generator=gen)
    return neg


def fit_rec_model(
    model: nn.Module,
    data: InteractionSet,
    adapter: RecAdapter,
    recipe: TrainConfig,
    seed: int,
    device,
    progress: bool = False,
    desc: str = "train",
) -> LoopStats:
    """Train ``model`` in place on ``data``'s interactions with the BPR loss (Rendle et al.
    2009): each step a batch of interactions, each with a fresh negative item (seeded from
    ``seed``) the user did not interact with in ``data``; the model runs on ``data``'s graph.
    How originals, references and RecEraser's shards are trained."""
    gen = torch.Generator().manual_seed(derive_seed(seed, "negatives") % (2**63))
    positives = data.structure.keys()

    def objective(ctx):
        batch = ctx.batch("train")
        batch["neg"] = draw_negatives(batch["user"], data.n_items, positives, gen).to(ctx.device)
        return adapter.per_example_loss(ctx.model, batch).mean()

    return run_loop(
        model,
        objective,
        {"train": data},
        recipe,
        seed=seed,
        device=device,
        progress=progress,
        desc=desc,
        adapter=adapter,
    )


def _sets(data: Interactions, seed: int, test_fraction: float | None) -> tuple[InteractionSet, InteractionSet]:
    """Leave-one-out (or a ``test_fraction`` per user) split, each row with a fixed seeded
    negative item the user never interacted with."""
    rng = np.random.default_rng(derive_seed(seed, "rec-split", data.name))
    n = len(data)
    ts = data.timestamp if data.timestamp is not None else rng.permutation(n)
    order = np.lexsort((rng.random(n), ts, data.user))  # per user, oldest first (ties at random)
    bounds = np.searchsorted(data.user[order], np.arange(data.n_users + 1))
    is_test = np.zeros(n, bool)
    for u in range(data.n_users):
        rows = order[bounds[u] : bounds[u + 1]]
        if len(rows) < 2:
            continue
        k = 1 if test_fraction is None else int(min(len(rows) - 1, max(1, round(test_fraction * len(rows)))))
        is_test[rows[-k:]] = True
    positives = np.sort(data.user * data.n_items + data.item)
    neg = draw_negatives(
        torch.from_numpy(data.user),
        data.n_items,
        positives,
        torch.Generator().manual_seed(derive_seed(seed, "fixed-negatives") % (2**63)),
    ).numpy()
    ids, subj = data.example_ids, data.subject_ids

    def make(mask: np.ndarray, name: str, structure: InteractionGraph | None) -> InteractionSet:
        p = np.flatnonzero(mask)
        return InteractionSet(
            torch.from_numpy(np.stack([data.user[p], data.item[p]], 1).astype(np.float32)),
            torch.ones(len(p), dtype=torch.long),
            ids[p],
            subj[p],
            num_classes=2,
            name=name,
            user=data.user[p],
            item=data.item[p],
            neg=neg[p],
            n_users=data.n_users,
            n_items=data.n_items,
            structure=structure,
        )

    train = make(~is_test, f"{data.name}/train", None)
    if not is_test.any():
        raise ConfigError(f"{data.name}: no user has two interactions; nothing to hold out for testing")
    test = make(is_test, f"{data.name}/test", train.structure)
    return train, test


def _check_retain(retain: InteractionSet) -> None:
    if len(retain) == 0 or len(np.unique(retain.user)) == 0:
        raise ForgetSetError("the deletion removes every training interaction; nothing would remain")


def interactions_fingerprint(data: Interactions) -> str:
    h = hashlib.sha256()
    for a in (data.user, data.item):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update("|".join(data.user_ids.tolist()).encode())
    h.update("|".join(data.item_ids.tolist()).encode())
    return h.hexdigest()[:16]


def make_rec_task(
    dataset: str | Interactions = "synthetic",
    model: str = "bpr",
    scenario: RecForget | str | dict | None = None,
    seed: int = 0,
    recipe: TrainConfig | None = None,
    model_kwargs: dict | None = None,
    threshold: float | None = None,
    test_fraction: float | None = None,
    device: str | torch.device | None = None,
    cache: ModelCache | None = None,
    progress: bool = False,
) -> RecTask:
    """Load interactions, split them, choose what to delete, and train (or load from
    ``cache``) the original recommender.

    Args:
        dataset: ``synthetic`` / ``synthetic:<users>:<items>``, a MovieLens or Netflix-style
            file or folder (:func:`unlearnkit.data.interactions.load_interactions`), or an
            :class:`Interactions` table.
        model: ``bpr``, ``lightgcn`` or ``two-tower``; ``model_kwargs``: ``dim`` (32),
            ``layers`` (lightgcn, 2), ``hidden`` (two-tower, 64).
        scenario: a :class:`RecForget`, its dict, or a string (``users:3``, ``users:0.05``,
            ``interactions:0.1``, ``item:<id>``); default ``users:1``.
        threshold: ratings below it are not interactions (files with ratings).
        test_fraction: per user the held-out share; None: leave-one-out.
    """
    if model not in ARCHS:
        raise ConfigError(f"unknown recommender {model!r}; choose one of {', '.join(ARCHS)}")
    if test_fraction is not None and not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must be in (0, 1), not {test_fraction}")
    device = resolve_device(device)
    source = dataset if isinstance(dataset, str) else None
    data = load_interactions(dataset, threshold=threshold, seed=seed) if isinstance(dataset, str) else dataset
    if isinstance(scenario, str):
        scenario = RecForget.parse(scenario)
    elif isinstance(scenario, dict):
        scenario = RecForget.from_dict(scenario)
    scenario = scenario or RecForget("users", 1)
    train, test = _sets(data, seed, test_fraction)
    forget_ids = scenario.resolve(train, data, seed)
    forget = train.select(forget_ids)
    split = Split(train, test, forget_ids, holdout_like(test, forget), dict(scenario.to_dict(), count=len(forget_ids)))
    _check_retain(split.retain)
    recipe = recipe or default_recipe(model)
    model_kwargs = dict(model_kwargs or {})
    build_rec_model(model, 1, 1, **model_kwargs) if model != "lightgcn" else None  # option check before training
    adapter = RecAdapter(data.n_users, data.n_items, device)

    def factory(s: int) -> nn.Module:
        seed_everything(derive_seed(s, "init") % (2**31))
        return build_rec_model(model, data.n_users, data.n_items, **model_kwargs)

    spec = {
        "modality": "recommender",
        "dataset": data.name,
        "source": source,
        "data_fingerprint": interactions_fingerprint(data),
        "model": model,
        "model_kwargs": model_kwargs,
        "recipe": recipe.to_dict(),
        "seed": seed,
        "threshold": threshold,
        "test_fraction": test_fraction,
        "scenario": split.scenario,
    }
    t = RecTask(
        split, adapter, factory, recipe, factory(seed).to(device), LoopStats(), seed, spec, data=data, model_name=model
    )
    adapter.check_model(t.original, train)
    t.load_or_train_original(cache, progress)
    return t


# --------------------------------------------------------------------------- the layers above
def task_from_spec(
    spec: dict,
    scenario: RecForget | dict | None = None,
    cache: ModelCache | None = None,
    progress: bool = False,
    device: str | torch.device | None = None,
) -> RecTask:
    """Rebuild a stored recommender task (the original from ``cache`` when it holds it)."""
    if spec.get("source") is None:
        raise ConfigError("this run's interactions were built in memory; rebuild the task in Python with make_rec_task")
    return make_rec_task(
        spec["source"],
        spec["model"],
        scenario or spec["scenario"],
        seed=spec["seed"],
        recipe=TrainConfig(**spec["recipe"]),
        model_kwargs=spec.get("model_kwargs"),
        threshold=spec.get("threshold"),
        test_fraction=spec.get("test_fraction"),
        device=device,
        cache=cache,
        progress=progress,
    )


def request_scenario(
    ids: list[str] | None = None, subjects: list[str] | None = None, scenario: str | None = None
) -> RecForget:
    """A deletion request's scenario: example ids (``user:<u>/item:<i>``), user ids
    (subjects: their whole history), or a scenario string; exactly one."""
    given = [x for x in (ids, subjects, scenario) if x]
    if len(given) != 1:
        raise ConfigError("give exactly one of --forget-ids, --forget-subjects or --scenario")
    if ids:
        return RecForget("ids", ids=[str(i) for i in ids])
    if subjects:
        return RecForget("subjects", subjects=[str(s) for s in subjects])
    return RecForget.parse(str(scenario))


def build_task(kind: str, options: dict, seed: int = 0, cache: ModelCache | None = None, progress: bool = False):
    """``unlearnkit train --task recsys``: ``dataset`` ``synthetic`` (default),
    ``synthetic:<users>:<items>`` or a MovieLens / Netflix-style file or folder; ``model``
    bpr / lightgcn / two-tower; recipe overrides ``epochs``, ``lr``, ``batch_size``;
    ``threshold`` (ratings below it are no interaction) and ``test_fraction`` (per user, instead
    of leave-one-out) where given. The trained task's forget set is a placeholder (one user):
    ``unlearn`` names the real one."""
    from pathlib import Path

    if kind not in TASK_KINDS:
        raise ConfigError(f"recommender task kinds are {', '.join(TASK_KINDS)}, not {kind!r}")
    o = {k: v for k, v in options.items() if v is not None}
    dataset = str(o.get("dataset", "synthetic"))
    if dataset == "digits":  # the train command's default dataset belongs to classifiers
        dataset = "synthetic"
    p = Path(dataset)
    source = str(p.resolve()) if p.exists() else dataset
    model = str(o.get("model") or "bpr")
    recipe = replace(default_recipe(model), **{k: o[k] for k in ("epochs", "lr", "batch_size") if k in o})
    split = {k: float(o[k]) for k in ("threshold", "test_fraction") if k in o}
    return make_rec_task(source, model, seed=seed, recipe=recipe, cache=cache, progress=progress, **split)


def train_metrics(task: RecTask) -> dict[str, float]:
    """NDCG@10 and HR@10 of the original on every user's held-out interactions."""
    from .scores import rank_users

    r = rank_users(task.original, task, task.split.train.structure, exclude=task.split.train)
    return {"ndcg10_test": float(np.nanmean(r.ndcg[10])), "hr10_test": float(np.nanmean(r.hr[10]))}


def task_label(spec: dict) -> str:
    parts = [str(spec[k]) for k in ("dataset", "model") if spec.get(k) not in (None, "")]
    return " · ".join(parts) or "recommender"


# --------------------------------------------------------------------------- the contract's tiny task
def tiny_rec_task(seed: int = 0, **kw) -> RecTask:
    """Synthetic 120 users x 80 items, three users' histories to delete, BPR-MF (dim 16)
    trained 40 epochs: it fits its interactions (forget loss well below the reference's)."""
    args: dict[str, Any] = dict(
        dataset="synthetic:120:80",
        model="bpr",
        scenario=RecForget("users", 3),
        seed=seed,
        recipe=TrainConfig(epochs=40, batch_size=512, lr=1e-2),
        model_kwargs={"dim": 16},
        device="cpu",
    )
    args.update(kw)
    return make_rec_task(**args)
