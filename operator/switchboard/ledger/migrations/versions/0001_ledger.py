"""The ledger: messages, their attempts, provider ids, receipts and state events.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("channel", sa.String(63), nullable=False),
        sa.Column("recipient", sa.Text),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("payload_hash", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("possible_duplicate", sa.Boolean, nullable=False),
        sa.Column("policy", sa.String(16), nullable=False),
        sa.Column("asynchronous", sa.Boolean, nullable=False),
        sa.Column("plugin", sa.String(127)),
        sa.Column("provider_message_id", sa.String(255)),
        sa.Column("error_code", sa.String(64)),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("deliver_by", sa.Float),
        sa.Column("next_attempt_at", sa.Float),
        sa.Column("rounds", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until", sa.Float),
        sa.UniqueConstraint("tenant", "idempotency_key", name="messages_tenant_idempotency_key"),
    )
    op.create_index("messages_due", "messages", ["state", "next_attempt_at"])
    op.create_index("messages_listing", "messages", ["tenant", "created_at"])
    op.create_table(
        "attempts",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column(
            "message_id",
            sa.String(32),
            sa.ForeignKey("messages.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("plugin", sa.String(127), nullable=False),
        sa.Column("endpoint", sa.String(255), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("provider_message_id", sa.String(255)),
        sa.Column("finished_at", sa.Float, nullable=False),
    )
    op.create_index("attempts_message", "attempts", ["message_id"])
    op.create_table(
        "provider_ids",
        sa.Column("plugin", sa.String(127), primary_key=True),
        sa.Column("provider_message_id", sa.String(255), primary_key=True),
        sa.Column(
            "message_id",
            sa.String(32),
            sa.ForeignKey("messages.id", ondelete="CASCADE"),
            nullable=False,
        ),
    )
    op.create_table(
        "receipts",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("plugin", sa.String(127), nullable=False),
        sa.Column("provider_message_id", sa.String(255), nullable=False),
        sa.Column("message_id", sa.String(32)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("received_at", sa.Float, nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("seq", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("channel", sa.String(63), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("events_message", "events", ["message_id"])
