"""Alembic's entry point: migrate the connection the ledger hands over (never a URL)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    # SQLite alters tables by copying them: Alembic's batch mode does it.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
