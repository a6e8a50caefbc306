"""The run store: every run's record in a SQL database (SQLAlchemy 2.x).

``RunStore(path)`` opens (or creates) a SQLite file in WAL journal mode, the
embedded default; ``RunStore("postgresql+psycopg://user@host/db")`` or any other
SQLAlchemy URL runs the same code on a server.

Tables:

* ``runs``: one row per :class:`RunRecord`; scalar fields are indexed columns, the
  nested ones (task_spec, scenario, forget_ids, params, metrics, cost, environment,
  tags) JSON columns.
* ``metrics``: ``(run_id, name, value)``, a copy of each run's metrics for SQL queries
  such as ``SELECT AVG(value) FROM metrics WHERE name = 'acc_forget'``.
* ``evaluations``: one row per evaluation of a run (``evaluate RUN``, ``unlearn --evaluate``):
  ``(id, run_id, created_at, inputs_fingerprint, inputs, metrics)``, append-only. ``inputs``
  names every split the metrics were computed on (forget and holdout ids, fingerprints of
  retain and test), the reference and the seed; an evaluation on other inputs is added
  beside the earlier ones, never in their place.

Non-finite numbers: JSON has no NaN or infinity, and PostgreSQL rejects them. In the
JSON columns a non-finite float is stored as ``{"__float__": "nan"}`` (or ``"inf"``,
``"-inf"``) and decoded back to ``float("nan")`` etc. on reading; in the ``metrics``
table its ``value`` is SQL ``NULL`` (as is any non-numeric metric).
"""

from __future__ import annotations

import builtins
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError

from ..errors import StoreError
from .records import EvaluationRecord, RunRecord

_meta = MetaData()

runs = Table(
    "runs",
    _meta,
    Column("id", String(64), primary_key=True),
    Column("created_at", String(40), nullable=False, index=True),
    Column("added_ns", BigInteger, nullable=False),  # insertion order, breaks created_at ties
    Column("kind", String(32), nullable=False, index=True),
    Column("task_key", String(128), nullable=False, index=True),
    Column("method", String(128), nullable=False, index=True),
    Column("seed", BigInteger, nullable=False, index=True),
    Column("status", String(32), nullable=False, index=True),
    Column("error", Text),
    Column("artifact", String(64), index=True),
    Column("parent", String(64), index=True),
    Column("forget_fingerprint", String(64), index=True),
    *(
        Column(name, JSON)
        for name in ("task_spec", "scenario", "forget_ids", "params", "metrics", "cost", "environment", "tags")
    ),
)

metrics_table = Table(
    "metrics",
    _meta,
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(128), primary_key=True, index=True),
    Column("value", Float),
)

# evaluations of a run, append-only (see the module docstring)
evaluations_table = Table(
    "evaluations",
    _meta,
    Column("id", String(64), primary_key=True),
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("created_at", String(40), nullable=False),
    Column("added_ns", BigInteger, nullable=False),
    Column("inputs_fingerprint", String(64), nullable=False, index=True),
    Column("inputs", JSON),
    Column("metrics", JSON),
)

_JSON_FIELDS = ("task_spec", "scenario", "forget_ids", "params", "metrics", "cost", "environment", "tags")
_SCALAR_FIELDS = (
    "id",
    "created_at",
    "kind",
    "task_key",
    "method",
    "seed",
    "status",
    "error",
    "artifact",
    "parent",
    "forget_fingerprint",
)


# --------------------------------------------------------------------------- JSON codec
def _encode(v: Any) -> Any:
    """Make ``v`` strict-JSON-safe: non-finite floats → tagged dicts, numpy → Python."""
    if isinstance(v, float):
        return v if math.isfinite(v) else {"__float__": repr(v)}  # 'nan', 'inf', '-inf'
    if isinstance(v, dict):
        return {str(k): _encode(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_encode(x) for x in v]
    if hasattr(v, "tolist") and callable(v.tolist):  # numpy scalars/arrays, torch tensors
        return _encode(v.tolist())
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    raise StoreError(
        f"cannot store a value of type {type(v).__name__} in a run record; "
        "use JSON-serialisable values (numbers, strings, lists, dicts)"
    )


def _decode(v: Any) -> Any:
    if isinstance(v, dict):
        if len(v) == 1 and v.get("__float__") in ("nan", "inf", "-inf"):
            return float(v["__float__"])
        return {k: _decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_decode(x) for x in v]
    return v


def _metric_value(v: Any) -> float | None:
    """The ``metrics`` table value: a finite float, else NULL."""
    if isinstance(v, (str, bytes)):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _on_sqlite_connect(dbapi_conn, _record) -> None:
    import sqlite3
    import time

    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    # Switching to WAL needs a moment with no other connection; a process opening the
    # same new file at once can get "locked" here without the busy handler: retry.
    for attempt in range(50):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == 49:
                raise
            time.sleep(0.05 * (1 + attempt % 5))
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _on_sqlite_connect_ro(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _readonly_sqlite_url(path: Path):
    """A read-only SQLite URL for ``path``; ``immutable`` where the folder is not writable
    (SQLite cannot then create the WAL index a plain read-only open needs)."""
    from urllib.parse import quote

    p = quote(str(path.resolve()))
    wal = path.with_name(path.name + "-wal")
    # a write-ahead log holds committed runs not yet in the file: read it (mode=ro); with no
    # log in a folder SQLite may not write to, the file is complete and immutable to us
    flag = "mode=ro" if wal.exists() or os.access(path.parent, os.W_OK) else "immutable=1"
    return make_url(f"sqlite:///file:{p}?{flag}&uri=true")


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


def _check_location(text: str, shown: str) -> None:
    """Refuse what is neither a database URL (``scheme://...``) nor a plain path: a URL with
    a mistyped separator (``postgresql:/host/db``) or a path with colons (``::::``) would
    otherwise silently become a new empty SQLite file."""
    if not text.strip():
        raise StoreError("empty run store location; give a path or a database URL")
    if "://" in text:
        if not _SCHEME.match(text) or text.index("://") != text.index(":"):
            raise StoreError(
                f"malformed run store URL {shown!r}; expected scheme://..., "
                "e.g. postgresql+psycopg://user@host/db or sqlite:///path/runs.db"
            )
        return
    if re.fullmatch(r"[A-Za-z]:[\\/].*", text) and os.name == "nt":
        return  # a Windows drive path
    if ":" in text:
        if _SCHEME.match(text):
            raise StoreError(
                f"malformed run store URL {shown!r}; a database URL is scheme://..., "
                "e.g. postgresql+psycopg://user@host/db"
            )
        raise StoreError(
            f"malformed run store location {shown!r}; give a path without ':' or a database URL scheme://..."
        )


def _create_tables(engine) -> None:
    """Create missing tables; another process creating them at the same moment is fine."""
    import time

    for attempt in range(20):
        try:
            _meta.create_all(engine)
            return
        except SQLAlchemyError as e:
            if not ("already exists" in str(e) or "locked" in str(e)) or attempt == 19:
                raise
            time.sleep(0.05 * (1 + attempt % 5))


# --------------------------------------------------------------------------- store
class RunStore:
    """Runs in a SQL database. Accepts a filesystem path (SQLite) or a SQLAlchemy URL.

    ``mode="rw"`` (default) creates the SQLite file and the tables where missing;
    ``mode="r"`` opens an existing store for reading only: it never creates a file or a
    table, and works on a store the user may only read (an auditor's copy).
    """

    def __init__(self, url_or_path: str | os.PathLike, mode: str = "rw"):
        if mode not in ("r", "rw"):
            raise ValueError(f"mode must be 'r' or 'rw', not {mode!r}")
        self.mode = mode
        text = os.fspath(url_or_path)
        self.location = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", text)  # until parsed
        _check_location(text, self.location)
        self.sqlite_path: Path | None = None
        try:
            if "://" in text:
                url = make_url(text)
                self.location = url.render_as_string(hide_password=True)
                if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
                    self.sqlite_path = Path(url.database).expanduser()
            else:
                path = Path(text).expanduser()
                self.location = str(path)
                self.sqlite_path = path
                url = make_url(f"sqlite:///{path}")
            if self.sqlite_path is not None:
                if mode == "r":
                    if not self.sqlite_path.is_file():
                        raise StoreError(
                            f"no run store at {self.location}; check the path, or train a "
                            "model first (reading never creates a store)"
                        )
                    url = _readonly_sqlite_url(self.sqlite_path)
                else:
                    self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            kwargs: dict = {"json_serializer": lambda o: json.dumps(o, allow_nan=False)}
            if url.get_backend_name() == "sqlite":
                kwargs["connect_args"] = {"timeout": 30}
            self.engine = create_engine(url, **kwargs)
            if url.get_backend_name() == "sqlite":
                event.listen(self.engine, "connect", _on_sqlite_connect if mode == "rw" else _on_sqlite_connect_ro)
            if mode == "rw":
                _create_tables(self.engine)
            else:
                with self.engine.connect() as conn:
                    conn.execute(select(runs.c.id).limit(1)).all()
        except (ArgumentError, ValueError) as e:
            raise StoreError(
                f"cannot open run store {self.location!r}: not a valid path or database URL ({_one_line(e)})"
            ) from None
        except (NoSuchModuleError, ImportError) as e:
            raise StoreError(
                f"cannot open run store {self.location!r}: database driver missing "
                f"({_one_line(e)}); install it, e.g. pip install 'unlearnkit[postgres]'"
            ) from None
        except (OSError, SQLAlchemyError) as e:
            hint = "check it is a run store you may read" if mode == "r" else "check the path exists and is writable"
            raise StoreError(f"cannot open run store at {self.location}: {_one_line(e)}; {hint}") from None

    def check_writable(self) -> None:
        """Raise StoreError unless runs can be added (call before any long computation)."""
        if self.mode != "rw":
            raise StoreError(f"run store at {self.location} is open for reading only")
        if self.sqlite_path is not None:
            folder = self.sqlite_path.parent
            for what, path in (("file", self.sqlite_path), ("folder", folder)):
                if path.exists() and not os.access(path, os.W_OK):
                    raise StoreError(
                        f"run store at {self.location} is read-only (its {what} {path} is not "
                        "writable); nothing was computed"
                    )
            return
        try:  # a server: a write that is rolled back
            with self.engine.connect() as conn:
                trans = conn.begin()
                conn.execute(delete(metrics_table).where(metrics_table.c.run_id == "__unlearnkit_probe__"))
                trans.rollback()
        except SQLAlchemyError as e:
            raise StoreError(
                f"run store at {self.location} cannot be written: {_one_line(e)}; nothing was computed"
            ) from None

    # ------------------------------------------------------------------ plumbing
    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunStore({self.location!r})"

    def _fail(self, action: str, e: Exception) -> StoreError:
        return StoreError(f"run store at {self.location}: cannot {action}: {_one_line(e)}")

    # ------------------------------------------------------------------ writing
    def add(self, record: RunRecord) -> str:
        """Insert ``record`` (and its metrics rows) in one transaction; return its id."""
        row = {k: getattr(record, k) for k in _SCALAR_FIELDS}
        row.update({k: _encode(getattr(record, k)) for k in _JSON_FIELDS})
        row["seed"] = int(record.seed)
        row["added_ns"] = time.time_ns()
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(runs).values(**row))
                self._write_metrics(conn, record.id, record.metrics)
        except IntegrityError:
            raise StoreError(
                f"run store at {self.location}: a run with id {record.id!r} exists already; give the record a new id"
            ) from None
        except SQLAlchemyError as e:
            raise self._fail(f"add run {record.id}", e) from None
        return record.id

    @staticmethod
    def _write_metrics(conn, run_id: str, metrics: dict) -> None:
        if not metrics:
            return
        conn.execute(
            delete(metrics_table).where(metrics_table.c.run_id == run_id, metrics_table.c.name.in_(list(metrics)))
        )
        conn.execute(
            insert(metrics_table),
            [{"run_id": run_id, "name": str(k), "value": _metric_value(v)} for k, v in metrics.items()],
        )

    def update_metrics(self, id: str, metrics: dict[str, float]) -> RunRecord:
        """Merge ``metrics`` into the run's metrics (new values win); return the updated record."""
        try:
            with self.engine.begin() as conn:
                run_id = self._resolve(conn, id)
                current = conn.execute(select(runs.c.metrics).where(runs.c.id == run_id)).scalar_one()
                merged = {**_decode(current or {}), **metrics}
                conn.execute(update(runs).where(runs.c.id == run_id).values(metrics=_encode(merged)))
                self._write_metrics(conn, run_id, metrics)
        except SQLAlchemyError as e:
            raise self._fail(f"update metrics of run {id}", e) from None
        return self.get(run_id)

    # ------------------------------------------------------------------ reading
    def _resolve(self, conn, id_or_prefix: str) -> str:
        key = str(id_or_prefix).strip()
        if not key:
            raise StoreError("no run id given; pass a run id or a unique prefix of one")
        if conn.execute(select(runs.c.id).where(runs.c.id == key)).first():
            return key
        found = (
            conn.execute(
                select(runs.c.id).where(runs.c.id.startswith(key, autoescape=True)).order_by(runs.c.id).limit(6)
            )
            .scalars()
            .all()
        )
        if not found:
            raise StoreError(f"no run {key!r} in {self.location}; list runs to see their ids")
        if len(found) > 1:
            raise StoreError(
                f"run id prefix {key!r} is ambiguous ({', '.join(found[:5])}"
                f"{' ...' if len(found) > 5 else ''}); give more characters"
            )
        return found[0]

    @staticmethod
    def _record(row) -> RunRecord:
        m = row._mapping
        d = {k: m[k] for k in _SCALAR_FIELDS}
        d.update({k: _decode(m[k]) for k in _JSON_FIELDS})
        for k in ("task_spec", "scenario", "params", "metrics", "cost", "environment", "tags"):
            d[k] = d[k] if d[k] is not None else {}
        return RunRecord.from_dict(d)

    def get(self, id_or_prefix: str) -> RunRecord:
        """The run with this id or unique id prefix (StoreError when none or ambiguous)."""
        try:
            with self.engine.connect() as conn:
                run_id = self._resolve(conn, id_or_prefix)
                return self._record(conn.execute(select(runs).where(runs.c.id == run_id)).one())
        except SQLAlchemyError as e:
            raise self._fail(f"read run {id_or_prefix}", e) from None

    def find(self, run_id: str) -> RunRecord | None:
        """The run with exactly this id, or None (no prefix matching)."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(select(runs).where(runs.c.id == run_id)).first()
        except SQLAlchemyError as e:
            raise self._fail(f"read run {run_id}", e) from None
        return self._record(row) if row is not None else None

    def list(
        self,
        kind: str | None = None,
        method: str | None = None,
        task_key: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[RunRecord]:
        """Runs matching every given filter, newest first."""
        q = select(runs)
        for col, value in (("kind", kind), ("method", method), ("task_key", task_key), ("status", status)):
            if value is not None:
                q = q.where(runs.c[col] == value)
        q = q.order_by(runs.c.created_at.desc(), runs.c.added_ns.desc())
        if limit is not None:
            q = q.limit(int(limit))
        try:
            with self.engine.connect() as conn:
                return [self._record(r) for r in conn.execute(q)]
        except SQLAlchemyError as e:
            raise self._fail("list runs", e) from None

    # ------------------------------------------------------------------ evaluations
    def add_evaluation(self, evaluation: EvaluationRecord) -> str:
        """Append ``evaluation`` of its run (the run's own metrics are left as they are)."""
        row = {
            "id": evaluation.id,
            "run_id": evaluation.run_id,
            "created_at": evaluation.created_at,
            "added_ns": time.time_ns(),
            "inputs_fingerprint": evaluation.inputs_fingerprint,
            "inputs": _encode(evaluation.inputs),
            "metrics": _encode(evaluation.metrics),
        }
        try:
            with self.engine.begin() as conn:
                row["run_id"] = self._resolve(conn, evaluation.run_id)
                conn.execute(insert(evaluations_table).values(**row))
        except IntegrityError:
            raise StoreError(
                f"run store at {self.location}: an evaluation with id {evaluation.id!r} exists already"
            ) from None
        except SQLAlchemyError as e:
            raise self._fail(f"add an evaluation of run {evaluation.run_id}", e) from None
        return evaluation.id

    def evaluations(self, run_id: str) -> builtins.list[EvaluationRecord]:
        """Every evaluation of the run (id or unique prefix), oldest first."""
        t = evaluations_table
        try:
            with self.engine.connect() as conn:
                rid = self._resolve(conn, run_id)
                rows = conn.execute(select(t).where(t.c.run_id == rid).order_by(t.c.created_at, t.c.added_ns)).all()
        except SQLAlchemyError as e:
            if "no such table" in str(e) or "does not exist" in str(e):
                return []  # a store written before evaluations were kept, opened read-only
            raise self._fail(f"read the evaluations of run {run_id}", e) from None
        return [
            EvaluationRecord(
                run_id=r.run_id,
                inputs_fingerprint=r.inputs_fingerprint,
                inputs=_decode(r.inputs or {}),
                metrics=_decode(r.metrics or {}),
                id=r.id,
                created_at=r.created_at,
            )
            for r in rows
        ]


def _one_line(e: BaseException) -> str:
    """First line of an exception's message, without SQLAlchemy's background links."""
    text = str(getattr(e, "orig", None) or e).strip().splitlines()
    return text[0] if text else type(e).__name__
