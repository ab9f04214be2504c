"""Putting a test database at a given migration, as an older Switchboard left it."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from switchboard.ledger.store import migrations

#: A table someone added to a 0001 ledger by hand, in the way of migration 0002's own.
FOREIGN_AUDIT_TABLE = sa.text("CREATE TABLE audit (note TEXT)")


def head() -> str | None:
    """The newest migration this code knows."""
    return ScriptDirectory.from_config(migrations()).get_current_head()


def migrate(url: str, revision: str, then: Callable[[sa.Connection], object] | None = None) -> None:
    """Migrate the database at ``url`` to ``revision``; ``then`` runs in the same
    transaction (the rows an older router wrote, or what someone did by hand)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(migrations(conn), revision)
            if then is not None:
                then(conn)
    finally:
        engine.dispose()
