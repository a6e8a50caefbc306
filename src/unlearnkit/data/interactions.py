"""Implicit-feedback interactions: who interacted with which item, from a seeded generator or
from rating files already on disk (never downloaded).

An :class:`Interactions` table holds one row per distinct (user, item) pair: user and item
positions (0-based), the external user and item ids (strings, as the source names them),
the rating and timestamp where the source has them, and, for generated data, each user's
latent community (so "behaviourally similar users" exist and can be measured).

Every interaction is one example: ``example_id = "user:<user>/item:<item>"`` (stable:
derived from the source's own ids) and ``subject_id = <user>`` (the person it is about), so
a deletion request naming a user deletes their whole history.

Sources (:func:`load_interactions`):

* ``synthetic`` (or ``synthetic:<users>:<items>``): :func:`synthetic_interactions`, latent
  communities and Zipf-like item popularity;
* MovieLens files: ``u.data`` (ML-100K: ``user<TAB>item<TAB>rating<TAB>timestamp``),
  ``ratings.dat`` (ML-1M/10M: ``user::item::rating::timestamp``), ``ratings.csv``
  (ML-latest: header ``userId,movieId,rating,timestamp``); a folder holding one of them;
* Netflix-prize-style files: a ``<movie_id>:`` line, then ``user,rating,date`` lines for that
  movie (``combined_data_*.txt``, ``mv_*.txt``); a folder of them.

``threshold``: ratings below it are dropped (a rating of at least ``threshold`` is a positive
interaction; the usual implicit-feedback conversion, e.g. ``4`` on MovieLens' 1-5 scale).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..utils import derive_seed

MOVIELENS_FILES = ("u.data", "ratings.dat", "ratings.csv")


@dataclass
class Interactions:
    """Distinct (user, item) interactions.

    Attributes:
        user, item: (n,) int64 positions into ``user_ids`` / ``item_ids``.
        user_ids, item_ids: external ids (strings), one per user / item position.
        rating: (n,) float32 ratings, or None (implicit data).
        timestamp: (n,) int64, or None.
        community: (n_users,) int64 latent community of each user (generated data), or None.
        name: short name for reports and cache keys.
        meta: provenance (source file, generator arguments, threshold).
    """

    user: np.ndarray
    item: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    rating: np.ndarray | None = None
    timestamp: np.ndarray | None = None
    community: np.ndarray | None = None
    name: str = "interactions"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.user = np.asarray(self.user, dtype=np.int64)
        self.item = np.asarray(self.item, dtype=np.int64)
        self.user_ids = np.asarray([str(u) for u in self.user_ids], dtype=object)
        self.item_ids = np.asarray([str(i) for i in self.item_ids], dtype=object)
        if len(self.user) != len(self.item):
            raise DataError("user and item arrays must have the same length")
        if not len(self.user):
            raise DataError(f"{self.name}: no interactions")

    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def example_ids(self) -> np.ndarray:
        return np.asarray(
            [f"user:{self.user_ids[u]}/item:{self.item_ids[i]}" for u, i in zip(self.user, self.item)], dtype=object
        )

    @property
    def subject_ids(self) -> np.ndarray:
        return self.user_ids[self.user]

    def item_popularity(self) -> np.ndarray:
        """Interactions per item (n_items,)."""
        return np.bincount(self.item, minlength=self.n_items)


def example_id(user: str, item: str) -> str:
    """The example id of the interaction of ``user`` with ``item`` (external ids)."""
    return f"user:{user}/item:{item}"


# --------------------------------------------------------------------------- generator
def synthetic_interactions(
    n_users: int = 300,
    n_items: int = 200,
    n_communities: int = 5,
    per_user: float = 20.0,
    zipf: float = 1.0,
    affinity: float = 8.0,
    seed: int = 0,
) -> Interactions:
    """Implicit feedback with latent user communities and long-tail item popularity.

    Each item gets a popularity weight ``w_j = (rank_j + 1) ** -zipf`` (a random permutation of
    ranks: Zipf's law, a long tail) and a home community ``c_j`` (uniform). Each user belongs
    to a community ``c_u`` (uniform) and draws ``n_u ~ 2 + Poisson(per_user - 2)`` distinct
    items without replacement with probability ``p_uj ∝ w_j * (affinity if c_j == c_u else
    1)``: users of one community share tastes (behaviourally similar users), every user also
    samples the popular head. ``community`` records ``c_u``. Seeded: the same arguments give
    the same table."""
    for name, v in (("n_users", n_users), ("n_items", n_items), ("n_communities", n_communities)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"synthetic interactions: {name} must be a positive integer, not {v!r}")
    if n_items < 3:
        raise ConfigError("synthetic interactions need at least 3 items")
    if not per_user >= 2 or not zipf >= 0 or not affinity >= 1:
        raise ConfigError("synthetic interactions: per_user >= 2, zipf >= 0 and affinity >= 1")
    rng = np.random.default_rng(derive_seed(seed, "interactions", n_users, n_items, n_communities))
    weight = (rng.permutation(n_items) + 1.0) ** -float(zipf)
    item_home = rng.integers(0, n_communities, n_items)
    community = rng.integers(0, n_communities, n_users)
    users, items = [], []
    for u in range(n_users):
        p = weight * np.where(item_home == community[u], affinity, 1.0)
        k = int(min(n_items - 1, 2 + rng.poisson(per_user - 2)))
        chosen = rng.choice(n_items, size=k, replace=False, p=p / p.sum())
        users.append(np.full(k, u))
        items.append(np.sort(chosen))
    user, item = np.concatenate(users), np.concatenate(items)
    # timestamps: a seeded order of each user's history (leave-one-out holds out the last)
    ts = rng.permutation(len(user)).astype(np.int64)
    meta = dict(
        source="synthetic",
        n_users=n_users,
        n_items=n_items,
        n_communities=n_communities,
        per_user=per_user,
        zipf=zipf,
        affinity=affinity,
        seed=seed,
    )
    return Interactions(
        user,
        item,
        [f"u{u}" for u in range(n_users)],
        [f"i{i}" for i in range(n_items)],
        timestamp=ts,
        community=community,
        name=f"synthetic-{n_users}x{n_items}",
        meta=meta,
    )


# --------------------------------------------------------------------------- files
def _from_rows(rows: list[tuple[str, str, float, int]], name: str, meta: dict, threshold: float | None) -> Interactions:
    """Distinct (user, item) pairs in first-seen order of users and items; a repeated pair
    keeps its last rating and timestamp; ratings below ``threshold`` are dropped."""
    if not rows:
        raise DataError(f"{meta.get('source', name)}: no ratings in the file")
    if threshold is not None:
        rows = [r for r in rows if r[2] >= threshold]
        if not rows:
            raise DataError(f"{meta.get('source', name)}: no rating reaches the threshold {threshold}")
    last: dict[tuple[str, str], tuple[float, int]] = {}
    for u, i, r, t in rows:
        last[(u, i)] = (r, t)
    users = {u: k for k, u in enumerate(dict.fromkeys(u for u, _ in last))}
    items = {i: k for k, i in enumerate(dict.fromkeys(i for _, i in last))}
    keys = list(last)
    return Interactions(
        np.asarray([users[u] for u, _ in keys]),
        np.asarray([items[i] for _, i in keys]),
        np.asarray(list(users), dtype=object),
        np.asarray(list(items), dtype=object),
        rating=np.asarray([last[k][0] for k in keys], dtype=np.float32),
        timestamp=np.asarray([last[k][1] for k in keys], dtype=np.int64),
        name=name,
        meta=dict(meta, threshold=threshold),
    )


def _bad(path: Path, lineno: int, line: str, want: str) -> DataError:
    shown = line.strip()[:60]
    return DataError(f"{path.name} line {lineno}: expected {want}, got {shown!r}")


def _number(text: str, path: Path, lineno: int, line: str, want: str, kind=float):
    try:
        v = kind(text)
    except ValueError:
        raise _bad(path, lineno, line, want) from None
    if kind is float and not np.isfinite(v):
        raise _bad(path, lineno, line, want)
    return v


def load_movielens(path: str | Path, threshold: float | None = None) -> Interactions:
    """A MovieLens ratings file (``u.data``, ``ratings.dat`` or ``ratings.csv``, chosen by
    name, or a folder holding one): every rating (at least ``threshold``) an interaction."""
    p = Path(path)
    if p.is_dir():
        found = [p / f for f in MOVIELENS_FILES if (p / f).is_file()]
        if not found:
            raise DataError(f"{p}: no MovieLens ratings file ({', '.join(MOVIELENS_FILES)}) in the folder")
        p = found[0]
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    want = {
        ".data": "user<TAB>item<TAB>rating<TAB>timestamp",
        ".dat": "user::item::rating::timestamp",
        ".csv": "userId,movieId,rating,timestamp",
    }
    kind = ".data" if p.name.endswith(".data") else p.suffix
    if kind not in want:
        raise DataError(f"{p.name}: not a MovieLens file (u.data, ratings.dat or ratings.csv)")
    rows = []
    try:
        with open(p, encoding="latin-1", newline="") as fh:
            if kind == ".csv":
                reader = csv.reader(fh)
                header = next(reader, None)
                if header is None or [h.strip() for h in header[:3]] != ["userId", "movieId", "rating"]:
                    raise DataError(f"{p.name}: expected the header {want['.csv']}, got {','.join(header or [])!r}")
                for lineno, parts in enumerate(reader, start=2):
                    if not parts or not "".join(parts).strip():
                        continue
                    line = ",".join(parts)
                    if len(parts) < 3:
                        raise _bad(p, lineno, line, want[kind])
                    ts = _number(parts[3], p, lineno, line, want[kind], int) if len(parts) > 3 else 0
                    rows.append((parts[0], parts[1], _number(parts[2], p, lineno, line, want[kind]), ts))
            else:
                sep = "\t" if kind == ".data" else "::"
                for lineno, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    parts = line.rstrip("\r\n").split(sep)
                    if len(parts) != 4:
                        raise _bad(p, lineno, line, want[kind])
                    rows.append(
                        (
                            parts[0].strip(),
                            parts[1].strip(),
                            _number(parts[2], p, lineno, line, want[kind]),
                            _number(parts[3], p, lineno, line, want[kind], int),
                        )
                    )
    except OSError as e:
        raise DataError(f"cannot read {p}: {e.strerror or e}") from None
    return _from_rows(rows, f"movielens-{p.stem}", {"source": str(p.resolve()), "format": "movielens"}, threshold)


def _is_netflix(p: Path) -> bool:
    try:
        with open(p, encoding="latin-1") as fh:
            first = fh.readline().strip()
    except OSError:
        return False
    return first.endswith(":") and first[:-1].strip().isdigit()


def load_netflix(path: str | Path, threshold: float | None = None) -> Interactions:
    """Netflix-prize-style ratings: a ``<movie_id>:`` line, then one ``user,rating,date`` line
    per rating of that movie; ``path`` a file or a folder of such ``.txt`` files (read in name
    order). Dates (``YYYY-MM-DD``) become day numbers."""
    p = Path(path)
    files = sorted(f for f in p.glob("*.txt") if _is_netflix(f)) if p.is_dir() else [p]
    if not files:
        raise DataError(f"{p}: no Netflix-style ratings files (.txt starting with a '<movie_id>:' line)")
    rows = []
    for f in files:
        if not f.is_file():
            raise DataError(f"{f}: no such file")
        movie = None
        try:
            with open(f, encoding="latin-1") as fh:
                for lineno, line in enumerate(fh, start=1):
                    s = line.strip()
                    if not s:
                        continue
                    if s.endswith(":"):
                        movie = s[:-1].strip()
                        if not movie.isdigit():
                            raise _bad(f, lineno, line, "'<movie_id>:'")
                        continue
                    if movie is None:
                        raise _bad(f, lineno, line, "a '<movie_id>:' line first")
                    parts = s.split(",")
                    if len(parts) != 3:
                        raise _bad(f, lineno, line, "user,rating,date")
                    rating = _number(parts[1], f, lineno, line, "user,rating,date")
                    try:
                        day = int(np.datetime64(parts[2].strip(), "D").astype(np.int64))
                    except ValueError:
                        raise _bad(f, lineno, line, "user,rating,YYYY-MM-DD") from None
                    rows.append((parts[0].strip(), movie, rating, day))
        except OSError as e:
            raise DataError(f"cannot read {f}: {e.strerror or e}") from None
    return _from_rows(rows, f"netflix-{p.stem}", {"source": str(p.resolve()), "format": "netflix"}, threshold)


def load_interactions(source: str | Path = "synthetic", threshold: float | None = None, seed: int = 0) -> Interactions:
    """Interactions from ``source``: ``synthetic`` / ``synthetic:<users>:<items>`` (seeded by
    ``seed``), a MovieLens file or folder, or a Netflix-style file or folder."""
    text = str(source)
    if threshold is not None and not np.isfinite(threshold):
        raise ConfigError(f"the rating threshold must be a finite number, not {threshold}")
    if text == "synthetic" or text.startswith("synthetic:"):
        parts = text.split(":")[1:]
        if len(parts) not in (0, 2) or not all(x.isdigit() and int(x) > 0 for x in parts):
            raise ConfigError(f"synthetic interactions are 'synthetic' or 'synthetic:<users>:<items>', not {text!r}")
        sizes = dict(n_users=int(parts[0]), n_items=int(parts[1])) if parts else {}
        return synthetic_interactions(seed=seed, **sizes)
    p = Path(text)
    if not p.exists():
        raise DataError(
            f"{text}: no such file or folder (use synthetic, a MovieLens u.data / ratings.dat / ratings.csv "
            "or a Netflix-style ratings file)"
        )
    if p.is_dir():
        if any((p / f).is_file() for f in MOVIELENS_FILES):
            return load_movielens(p, threshold)
        return load_netflix(p, threshold)
    if p.name.endswith(".data") or p.suffix in (".dat", ".csv"):
        return load_movielens(p, threshold)
    if _is_netflix(p):
        return load_netflix(p, threshold)
    raise DataError(f"{p.name}: not a ratings file this loader knows (MovieLens u.data/.dat/.csv, Netflix-style .txt)")


__all__ = [
    "Interactions",
    "example_id",
    "load_interactions",
    "load_movielens",
    "load_netflix",
    "synthetic_interactions",
]
