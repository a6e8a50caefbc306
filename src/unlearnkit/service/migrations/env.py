"""Alembic environment of the service's tables: run through :func:`unlearnkit.service.db.migrate`,
which passes the connection (``config.attributes["connection"]``)."""

from alembic import context

from unlearnkit.service.db import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
