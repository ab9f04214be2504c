"""Audit events that several writers may see: one row per key.

Every router replica (and every restart) watches the same resources and
sees the same gate change; the key, the same for all of them, keeps one row.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("audit") as table:
        table.add_column(sa.Column("key", sa.String(255)))
    op.create_index("audit_key", "audit", ["key"], unique=True)
