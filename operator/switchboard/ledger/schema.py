"""The ledger's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Times are seconds since the epoch (floats): one representation that sorts
and compares the same on both engines. This module describes the tables as
the newest migration leaves them; ``migrations/versions`` hold how they got
there (never edit a migration that has shipped: add one).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()
#: An auto-incrementing key: BIGINT on PostgreSQL, SQLite's INTEGER PRIMARY KEY.
ROW_ID = BigInteger().with_variant(Integer(), "sqlite")

messages = Table(
    "messages",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant", String(63), nullable=False),
    Column("channel", String(63), nullable=False),
    Column("recipient", Text),
    Column("idempotency_key", String(255)),
    Column("payload_hash", String(64), nullable=False),
    #: The message itself while it may still be sent; cleared afterwards unless
    #: the router stores content.
    Column("payload", JSON),
    Column("state", String(16), nullable=False),
    Column("possible_duplicate", Boolean, nullable=False, default=False),
    Column("policy", String(16), nullable=False),
    Column("asynchronous", Boolean, nullable=False),
    Column("plugin", String(127)),
    Column("provider_message_id", String(255)),
    Column("error_code", String(64)),
    Column("error", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("deliver_by", Float),
    Column("next_attempt_at", Float),
    Column("rounds", Integer, nullable=False, default=0),
    Column("lease_owner", String(64)),
    Column("lease_until", Float),
    UniqueConstraint("tenant", "idempotency_key", name="messages_tenant_idempotency_key"),
)
Index("messages_due", messages.c.state, messages.c.next_attempt_at)
Index("messages_listing", messages.c.tenant, messages.c.created_at)

attempts = Table(
    "attempts",
    metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("message_id", String(32), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("round", Integer, nullable=False),
    Column("plugin", String(127), nullable=False),
    Column("endpoint", String(255), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("message", Text),
    Column("provider_message_id", String(255)),
    Column("finished_at", Float, nullable=False),
)
Index("attempts_message", attempts.c.message_id)

#: Which message a provider's id belongs to, for receipts (a multi-part SMS has several).
provider_ids = Table(
    "provider_ids",
    metadata,
    Column("plugin", String(127), primary_key=True),
    Column("provider_message_id", String(255), primary_key=True),
    Column("message_id", String(32), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
)

receipts = Table(
    "receipts",
    metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("plugin", String(127), nullable=False),
    Column("provider_message_id", String(255), nullable=False),
    Column("message_id", String(32)),
    Column("state", String(16), nullable=False),
    #: `applied`, `unknown_message` (recorded and ignored) or `stale`.
    Column("outcome", String(32), nullable=False),
    Column("error", Text),
    Column("received_at", Float, nullable=False),
)

#: Every state change, in order: the history of a message and the live stream.
events = Table(
    "events",
    metadata,
    Column("seq", ROW_ID, primary_key=True, autoincrement=True),
    Column("message_id", String(32), nullable=False),
    Column("tenant", String(63), nullable=False),
    Column("channel", String(63), nullable=False),
    Column("state", String(16), nullable=False),
    Column("detail", Text),
    Column("at", Float, nullable=False),
)
Index("events_message", events.c.message_id)

#: The audit trail: every send, invoke, denied call and gate change (no content, no secret).
audit = Table(
    "audit",
    metadata,
    Column("seq", ROW_ID, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("tenant", String(63), nullable=False),
    Column("actor", String(255), nullable=False),
    #: `send`, `invoke`, `denied`, `replay`, `gate`.
    Column("action", String(32), nullable=False),
    #: The channel, `integration/operation`, or the resource.
    Column("target", String(255), nullable=False),
    #: The message state or error code, `ok`, `unauthenticated`, `forbidden`, a gate's reason.
    Column("outcome", String(64), nullable=False),
    Column("message_id", String(32)),
    Column("detail", Text),
    #: Set where several writers see the same event (a gate change): one row per key.
    Column("key", String(255)),
)
Index("audit_listing", audit.c.tenant, audit.c.at)
Index("audit_key", audit.c.key, unique=True)
