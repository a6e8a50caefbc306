"""The service's tests on both back ends: the ``db_url`` fixture and a fresh PostgreSQL
database per test.

``db_url`` is parametrised over ``sqlite`` (None: the service's default file
``<home>/service.db``) and ``postgresql`` (a database created for the test on the server
that ``UNLEARNKIT_TEST_PG_URL`` names, ``postgresql+psycopg://user:password@host:port/db``,
and dropped after it). Without that variable the PostgreSQL cases are skipped, unless
``CI`` or ``UNLEARNKIT_REQUIRE_PG`` is set: then they fail, so CI never passes with
PostgreSQL silently left out (``.ci/run`` sets both the URL and ``UNLEARNKIT_REQUIRE_PG``;
``.ci/postgres.sh`` starts a local server for development too).

A service on PostgreSQL keeps its run store there as well, so a trained workspace's runs
(``<home>/runs.db``) are copied into the new database first: :func:`share_runs`.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

PG_ENV = "UNLEARNKIT_TEST_PG_URL"
REQUIRE_ENV = ("CI", "UNLEARNKIT_REQUIRE_PG")
BACKENDS = ["sqlite", "postgresql"]


def pg_required() -> bool:
    """PostgreSQL may not be skipped here (CI)."""
    return any(os.environ.get(v, "").strip().lower() not in ("", "0", "false", "no") for v in REQUIRE_ENV)


def server_url() -> str | None:
    """The test server's URL (``UNLEARNKIT_TEST_PG_URL``); skips the test without it, or
    fails it where PostgreSQL is required."""
    url = os.environ.get(PG_ENV, "").strip()
    if url:
        return url
    reason = f"{PG_ENV} is not set (a postgresql+psycopg:// URL of a server where the role may CREATE DATABASE)"
    if pg_required():
        pytest.fail(
            f"PostgreSQL is required here ({' or '.join(REQUIRE_ENV)} is set) but {reason}; see .ci/postgres.sh"
        )
    pytest.skip(f"PostgreSQL tests skipped: {reason}; `bash .ci/postgres.sh` starts one")


def _admin_engine(url):
    """An engine on the server's own database of ``url``, outside transactions (CREATE DATABASE)."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    return create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


@contextmanager
def fresh_database(url: str | None = None, prefix: str = "ukt") -> Iterator[str]:
    """A new, empty database on the server of ``url`` (default ``UNLEARNKIT_TEST_PG_URL``)
    for the duration of the block: yields its URL; ``DROP DATABASE ... WITH (FORCE)``
    afterwards (connections still open to it are ended)."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    base = make_url(url or server_url())
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"  # lower case: no quoting surprises
    admin = _admin_engine(base)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except SQLAlchemyError as e:
        admin.dispose()
        pytest.fail(f"cannot create a test database on {base.render_as_string(hide_password=True)}: {e}")
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request) -> Iterator[str | None]:
    """The service's database URL on each back end: None (SQLite in the home) or a fresh
    PostgreSQL database of this test."""
    if request.param == "sqlite":
        yield None
        return
    with fresh_database() as url:
        yield url


def share_runs(home: Path, url: str | None) -> None:
    """Copy every run of ``home``'s own store (``runs.db``) into the store at ``url`` (a
    service on ``url`` keeps its runs there); nothing for None (the home's store)."""
    if url is None:
        return
    from unlearnkit.orchestration.store import RunStore

    src, dst = RunStore(Path(home) / "runs.db", mode="r"), RunStore(url)
    try:
        for rec in reversed(src.list()):  # oldest first
            if dst.find(rec.id) is None:
                dst.add(rec)
    finally:
        src.close()
        dst.close()
