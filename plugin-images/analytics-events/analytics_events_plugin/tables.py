"""The plugin's tables, as SQLAlchemy Core sees them, and the column types both engines share.

Times are ``UtcTimestamp``: TIMESTAMPTZ on PostgreSQL, microseconds since 1970
in an integer on SQLite (exact, and ordered like the times). JSON documents
are ``JSONB`` on PostgreSQL and JSON text on SQLite. Queries see aware UTC
datetimes and Python values on both.

These are the tables as the newest migration leaves them (``migrations.py``
builds them step by step).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    JSON,
    TIMESTAMP,
    BigInteger,
    Boolean,
    Column,
    Dialect,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class UtcTimestamp(TypeDecorator[datetime]):
    """An aware UTC datetime: TIMESTAMPTZ on PostgreSQL, integer microseconds on SQLite."""

    impl = BigInteger
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(TIMESTAMP(timezone=True))
        return dialect.type_descriptor(BigInteger())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return (value - _EPOCH) // timedelta(microseconds=1)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.astimezone(UTC)
        return _EPOCH + timedelta(microseconds=int(value))


def json_document() -> TypeEngine[Any]:
    """JSONB on PostgreSQL, JSON text on SQLite; None is SQL NULL."""
    return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


#: A BIGINT key that SQLite makes its rowid (only INTEGER PRIMARY KEY is one).
ROW_ID: Final = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
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
    # Version 4: the tracking spec's calls.
    Column("call", Text),
    Column("anonymous_id", Text),
    Column("context", json_document()),
    Column("late", Boolean),
    Index("events_occurred_at", "occurred_at"),
    Index("events_type_occurred_at", "event_type", "occurred_at"),
    Index("events_category_occurred_at", "category", "occurred_at"),
    Index("events_user_id", "user_id"),
    Index("events_anonymous_id", "anonymous_id"),
)

dashboards = Table(
    "dashboards",
    metadata,
    Column("name", Text, primary_key=True),
    Column("definition", json_document(), nullable=False),
    Column("created_at", UtcTimestamp, nullable=False),
    Column("updated_at", UtcTimestamp, nullable=False),
)

alert_firings = Table(
    "alert_firings",
    metadata,
    Column("rule", Text, primary_key=True),
    Column("window_start", UtcTimestamp, primary_key=True),
    Column("event_count", BigInteger, nullable=False),
    Column("status", Text, nullable=False),
    Column("fired_at", UtcTimestamp, nullable=False),
    Column("notified_at", UtcTimestamp),
    Column("last_error", Text),
)

alert_rules = Table(
    "alert_rules",
    metadata,
    Column("name", Text, primary_key=True),
    Column("definition", json_document(), nullable=False),
    Column("created_at", UtcTimestamp, nullable=False),
    Column("updated_at", UtcTimestamp, nullable=False),
)

#: ``identify`` traits by user (``user_id``, or ``anonymous_id`` before one is known).
profiles = Table(
    "profiles",
    metadata,
    Column("user_key", Text, primary_key=True),
    Column("traits", json_document(), nullable=False),
    Column("first_seen", UtcTimestamp, nullable=False),
    Column("last_seen", UtcTimestamp, nullable=False),
)

#: ``group`` traits by group.
groups = Table(
    "groups",
    metadata,
    Column("group_id", Text, primary_key=True),
    Column("traits", json_document(), nullable=False),
    Column("updated_at", UtcTimestamp, nullable=False),
)

#: ``alias`` (and any call naming both ids): this anonymous id is that user.
aliases = Table(
    "aliases",
    metadata,
    Column("previous_id", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("created_at", UtcTimestamp, nullable=False),
    Index("aliases_user_id", "user_id"),
)
