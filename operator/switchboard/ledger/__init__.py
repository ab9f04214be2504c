"""The delivery ledger: the durable record of every message the router accepts.

See ``states`` for a message's life and ``store`` for the database behind it.
"""

from __future__ import annotations

from switchboard.ledger.states import FINAL, UNFINISHED, State, can_move
from switchboard.ledger.store import (
    MEMORY,
    AttemptRecord,
    AuditEvent,
    EventRecord,
    Finish,
    IdempotencyConflict,
    Ledger,
    LedgerError,
    LedgerMigrationError,
    LedgerUnavailable,
    ListFilter,
    MessageRecord,
    NewMessage,
    check_url,
    payload_hash,
)

__all__ = [
    "FINAL",
    "MEMORY",
    "UNFINISHED",
    "AttemptRecord",
    "AuditEvent",
    "EventRecord",
    "Finish",
    "IdempotencyConflict",
    "Ledger",
    "LedgerError",
    "LedgerMigrationError",
    "LedgerUnavailable",
    "ListFilter",
    "MessageRecord",
    "NewMessage",
    "State",
    "can_move",
    "check_url",
    "payload_hash",
]
