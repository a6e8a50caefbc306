"""The service's tables (SQLAlchemy 2 Core) and its database engine.

One database holds the service's tables and DBOS's system tables, so that a request and
the workflow that answers it are written in one transaction
(``DBOSClient.enqueue_in_transaction``): ``sqlite:///<home>/service.db`` by default (WAL,
a 30 s busy timeout, every transaction ``BEGIN IMMEDIATE`` so that read-then-write
transactions such as an audit append are serialised), or a PostgreSQL URL
(``postgresql+psycopg://...``), where DBOS keeps its tables in the ``dbos`` schema and an
audit append takes a transaction-scoped advisory lock.

Tables (migrated by Alembic, ``service/migrations``; ``alembic_version`` is kept as
``unlearnkit_alembic_version`` beside DBOS's own ``dbos_migrations``):

* ``model_lines``: a deployed model line (a ``train`` run registered under a name), its
  current version (the registry's compare-and-swap target), policy and canary ids.
* ``model_versions``: every version of a line, ``(line_id, version)``; version 0 is the
  train run's model; each promotion adds one.
* ``deletion_requests``: one per request: pseudonymised subjects, requested and resolved
  example ids, state, batch, reason.
* ``batches``: requests answered together; the outputs of each finished step (resolve,
  unlearn, verify, promote, certify) so a repeated step returns what it did.
* ``tombstones``: every example id ever asked to be deleted from a line, never removed:
  every later task, reference and retrain of the line leaves them out.
* ``certificates``: the signed certificate of each answered request.
* ``audit_log`` / ``audit_checkpoints``: the hash chain of every state change and its
  signed checkpoints (:mod:`unlearnkit.service.audit`).
* ``api_keys`` (hashed), ``idempotency_keys`` (the first answer to each key).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from ..errors import StoreError

metadata = MetaData()
#: Alembic's version table, named apart from DBOS's ``dbos_migrations`` in the same database
VERSION_TABLE = "unlearnkit_alembic_version"

model_lines = Table(
    "model_lines",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("train_run", String(64), nullable=False),
    Column("modality", String(32), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("current_version", Integer, nullable=False),
    Column("policy", JSON, nullable=False),
    Column("canary_ids", JSON, nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("line_id", String(40), ForeignKey("model_lines.id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("artifact", String(64), nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("parent_version", Integer),
    Column("batch_id", String(40)),
    Column("created_at", String(40), nullable=False),
    Column("status", String(16), nullable=False),  # deployed | superseded | rolled_back
    Column("note", Text),
    Column("training_state", JSON),  # a sharded line's SISA checkpoints (migration 0002)
)

deletion_requests = Table(
    "deletion_requests",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("seq", BigInteger, nullable=False, unique=True),  # submission order: keyset pagination
    Column("line_id", String(40), ForeignKey("model_lines.id"), nullable=False, index=True),
    Column("state", String(16), nullable=False, index=True),
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
    Column("subjects", JSON, nullable=False),  # pseudonyms only, never raw subject ids
    Column("example_ids", JSON, nullable=False),  # ids named in the request
    Column("resolved_ids", JSON, nullable=False),  # what it deletes (subjects resolved, hierarchy expanded)
    Column("n_resolved", Integer, nullable=False),
    Column("batch_id", String(40), index=True),
    Column("version", Integer),  # the version that answered it
    Column("reason", Text),
    Column("key_id", String(40)),
)

batches = Table(
    "batches",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("line_id", String(40), ForeignKey("model_lines.id"), nullable=False, index=True),
    Column("state", String(16), nullable=False, index=True),  # open|closed|...|promoted|rejected|held
    Column("opened_at", String(40), nullable=False),
    Column("closed_at", String(40)),
    Column("finished_at", String(40)),
    Column("request_ids", JSON, nullable=False),
    Column("steps", JSON, nullable=False),  # step name -> its recorded output
    Column("reason", Text),
)
Index("batches_line_state", batches.c.line_id, batches.c.state)

tombstones = Table(
    "tombstones",
    metadata,
    Column("line_id", String(40), ForeignKey("model_lines.id"), primary_key=True),
    Column("example_id", String(256), primary_key=True),
    Column("request_id", String(40), nullable=False),
    Column("created_at", String(40), nullable=False),
)

certificates = Table(
    "certificates",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("request_id", String(40), ForeignKey("deletion_requests.id"), nullable=False, index=True),
    Column("batch_id", String(40), nullable=False, index=True),
    Column("created_at", String(40), nullable=False),
    Column("document", JSON, nullable=False),
    Column("revoked_at", String(40)),  # a rollback re-opened the request; a new certificate follows
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", String(40), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("entity", String(32), nullable=False),
    Column("entity_id", String(64), nullable=False, index=True),
    Column("payload", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False),
    Column("at", String(40), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("signature", String(128), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("secret_hash", LargeBinary(32), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("rate_per_minute", Integer, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("revoked_at", String(40)),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key_id", String(40), primary_key=True),
    Column("key", String(256), primary_key=True),
    Column("body_hash", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # in_flight | done
    Column("status_code", Integer),
    Column("response", JSON),
    Column("created_at", String(40), nullable=False),
)


def make_engine(url: str, immediate: bool = True) -> Engine:
    """The service's engine for ``url``: SQLite with WAL, a busy timeout and ``BEGIN
    IMMEDIATE`` transactions (``immediate=False``: plain deferred ones, for an engine that
    only reads, so readers never wait for a writer); any other SQLAlchemy URL as given
    (``pool_pre_ping``)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"not a database URL: {url!r}") from None
    if parsed.get_backend_name() == "sqlite":
        try:
            engine = create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})
        except (ArgumentError, NoSuchModuleError) as e:
            raise StoreError(f"cannot open {url!r}: {e}") from None

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (pysqlite's own is deferred)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    try:
        return create_engine(parsed, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError) as e:
        raise StoreError(f"cannot open {url!r}: {e}") from None


def migrate(engine: Engine) -> None:
    """Bring the service's tables to the newest Alembic revision (idempotent)."""
    from pathlib import Path

    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
