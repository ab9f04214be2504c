"""Versioned schema migrations, applied at start, written with Alembic's operations.

``schema_migrations`` records which versions ran (the table predates this
module, so databases migrated by earlier plugin versions carry on). ``migrate``
applies the missing ones in order inside one transaction; on PostgreSQL it
first takes an advisory lock, so replicas starting together don't race. A
database whose newest version is beyond ``LATEST_VERSION`` was migrated by a
newer plugin: ``SchemaTooNew``.

Each migration describes the tables as they were at its version (``tables.py``
holds the result of all of them); never edit one that has shipped, add one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Identity,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    insert,
    select,
    text,
)

from .tables import ROW_ID, UtcTimestamp, json_document

#: pg_advisory_xact_lock key serialising migrations ("analytic" in ASCII).
_MIGRATION_LOCK: Final = 0x616E616C79746963

schema_migrations = Table(
    "schema_migrations",
    MetaData(),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False),
    Column("applied_at", UtcTimestamp, nullable=False, server_default=func.now()),
)


class SchemaTooNew(Exception):
    """The database was migrated by a newer plugin version than this one."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Operations], None]


def _events(op: Operations) -> None:
    op.create_table(
        "events",
        Column("id", ROW_ID, Identity(always=True), primary_key=True),
        Column("event_id", Text, nullable=False, unique=True),
        Column("event_type", Text, nullable=False),
        Column("category", Text, nullable=False),
        Column("user_id", Text),
        Column("session_id", Text),
        Column("occurred_at", UtcTimestamp, nullable=False),
        Column("received_at", UtcTimestamp, nullable=False),
        Column("properties", json_document(), nullable=False),
        Column("amount_e4", BigInteger),
        Column("currency", Text),
    )
    op.create_index("events_occurred_at", "events", ["occurred_at"])
    op.create_index("events_type_occurred_at", "events", ["event_type", "occurred_at"])
    op.create_index("events_category_occurred_at", "events", ["category", "occurred_at"])


def _dashboards(op: Operations) -> None:
    op.create_table(
        "dashboards",
        Column("name", Text, primary_key=True),
        Column("definition", json_document(), nullable=False),
        Column("created_at", UtcTimestamp, nullable=False),
        Column("updated_at", UtcTimestamp, nullable=False),
    )


def _alert_firings(op: Operations) -> None:
    op.create_table(
        "alert_firings",
        Column("rule", Text, nullable=False),
        Column("window_start", UtcTimestamp, nullable=False),
        Column("event_count", BigInteger, nullable=False),
        Column("status", Text, nullable=False),
        Column("fired_at", UtcTimestamp, nullable=False),
        Column("notified_at", UtcTimestamp),
        Column("last_error", Text),
        PrimaryKeyConstraint("rule", "window_start"),
    )


def _tracking_spec(op: Operations) -> None:
    op.add_column("events", Column("call", Text))
    op.add_column("events", Column("anonymous_id", Text))
    op.add_column("events", Column("context", json_document()))
    op.add_column("events", Column("late", Boolean))
    op.create_index("events_user_id", "events", ["user_id"])
    op.create_index("events_anonymous_id", "events", ["anonymous_id"])
    op.create_table(
        "profiles",
        Column("user_key", Text, primary_key=True),
        Column("traits", json_document(), nullable=False),
        Column("first_seen", UtcTimestamp, nullable=False),
        Column("last_seen", UtcTimestamp, nullable=False),
    )
    op.create_table(
        "groups",
        Column("group_id", Text, primary_key=True),
        Column("traits", json_document(), nullable=False),
        Column("updated_at", UtcTimestamp, nullable=False),
    )
    op.create_table(
        "aliases",
        Column("previous_id", Text, primary_key=True),
        Column("user_id", Text, nullable=False),
        Column("created_at", UtcTimestamp, nullable=False),
    )
    op.create_index("aliases_user_id", "aliases", ["user_id"])
    op.create_table(
        "alert_rules",
        Column("name", Text, primary_key=True),
        Column("definition", json_document(), nullable=False),
        Column("created_at", UtcTimestamp, nullable=False),
        Column("updated_at", UtcTimestamp, nullable=False),
    )


MIGRATIONS: Final = (
    Migration(1, "events", _events),
    Migration(2, "dashboards", _dashboards),
    Migration(3, "alert firings", _alert_firings),
    Migration(
        4,
        "tracking spec: calls, anonymous ids, profiles, groups, aliases, alert rules",
        _tracking_spec,
    ),
)
LATEST_VERSION: Final = MIGRATIONS[-1].version


def pending(applied: Iterable[int]) -> list[Migration]:
    """The migrations still to apply, or ``SchemaTooNew``."""
    done = set(applied)
    newest = max(done, default=0)
    if newest > LATEST_VERSION:
        raise SchemaTooNew(
            f"the database schema is at version {newest}, newer than this plugin "
            f"knows ({LATEST_VERSION}); run a plugin version that matches it"
        )
    return [migration for migration in MIGRATIONS if migration.version not in done]


def migrate(connection: Connection) -> list[int]:
    """Apply the missing migrations on ``connection`` (inside its transaction)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    schema_migrations.create(connection, checkfirst=True)
    versions = connection.scalars(select(schema_migrations.c.version)).all()
    todo = pending(versions)
    operations = Operations(MigrationContext.configure(connection))
    for migration in todo:
        migration.apply(operations)
        connection.execute(
            insert(schema_migrations).values(
                version=migration.version,
                name=migration.name,
                applied_at=datetime.now(UTC),
            )
        )
    return [migration.version for migration in todo]
