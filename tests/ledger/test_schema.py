"""The migrations build exactly the schema the code declares, on both engines.

The ledger queries the tables of `switchboard.ledger.schema`; the database
has what the Alembic migrations made. Alembic's own comparison finds every
table, column, type, nullability and index that differs.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from switchboard.ledger.schema import metadata
from switchboard.ledger.store import MIGRATIONS


def test_the_migrations_make_the_declared_schema(ledger_url: str) -> None:
    engine = sa.create_engine(ledger_url)
    try:
        with engine.begin() as conn:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert differences == []
