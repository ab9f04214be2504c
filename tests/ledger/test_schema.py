"""The migrations build exactly the schema the code declares, on both engines.

The ledger queries the tables of `switchboard.ledger.schema`; the database
has what the Alembic migrations made. Alembic's own comparison finds every
table, column, type, nullability and index that differs.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from switchboard.ledger.schema import metadata
from tests.ledger.schema_versions import migrate


def test_the_migrations_make_the_declared_schema(ledger_url: str) -> None:
    migrate(ledger_url, "head")
    engine = sa.create_engine(ledger_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert differences == []
