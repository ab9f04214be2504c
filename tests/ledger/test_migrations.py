"""A ledger written by the first release (revision 0001) is upgraded in place, keeping its data.

Alembic builds the 0001 schema, plain SQL writes what a 0001 router would
have left (a sent message with its attempts, provider id and history, and an
asynchronous one still waiting for a retry), then the ledger is opened the
way the router opens it on start, which migrates it to head. Each test runs
on a SQLite file and on the suite's PostgreSQL server (``ledger_url``).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa

from switchboard.ledger import (
    AttemptRecord,
    AuditEvent,
    Ledger,
    LedgerError,
    LedgerMigrationError,
    ListFilter,
    NewMessage,
    State,
    payload_hash,
)
from switchboard.router.settings import RouterSettings
from tests.ledger.schema_versions import FOREIGN_AUDIT_TABLE, head, migrate

SENT_ID = "5e0d1f0c9a8b4c7d8e6f5a4b3c2d1e0f"
WAITING_ID = "7a6b5c4d3e2f41a0b9c8d7e6f5a4b3c2"
SENT_PAYLOAD = {"recipient": "+15551234567", "content": "Your code is 123456"}
WAITING_PAYLOAD = {"recipient": "ann@example.org", "content": "Your parcel is here"}
T0 = 1_700_000_000.25


def _message(**row: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "tenant": "default",
        "idempotency_key": None,
        "payload": None,
        "possible_duplicate": False,
        "policy": "AtLeastOnce",
        "asynchronous": False,
        "plugin": None,
        "provider_message_id": None,
        "error_code": None,
        "error": None,
        "deliver_by": None,
        "next_attempt_at": None,
        "lease_owner": None,
        "lease_until": None,
    }
    return {**defaults, **row}


ROWS: dict[str, list[dict[str, Any]]] = {
    "messages": [
        _message(
            id=SENT_ID,
            channel="sms",
            recipient="+15551234567",
            idempotency_key="order-7",
            payload_hash=payload_hash(SENT_PAYLOAD),
            state="sent",
            plugin="default/vonage",
            provider_message_id="V-1",
            created_at=T0,
            updated_at=T0 + 0.5,
            rounds=1,
        ),
        _message(
            id=WAITING_ID,
            channel="email",
            recipient="ann@example.org",
            payload_hash=payload_hash(WAITING_PAYLOAD),
            payload=WAITING_PAYLOAD,
            state="accepted",
            asynchronous=True,
            error_code="UNAVAILABLE",
            error="every plugin is unavailable",
            created_at=T0 + 10,
            updated_at=T0 + 11,
            deliver_by=time.time() + 3600,
            next_attempt_at=T0 + 12,
            rounds=1,
        ),
    ],
    "attempts": [
        {
            "message_id": SENT_ID,
            "round": 1,
            "plugin": "default/twilio",
            "endpoint": "10.0.0.1:50051",
            "outcome": "retryable",
            "duration_ms": 12.5,
            "message": "503 from the provider",
            "provider_message_id": None,
            "finished_at": T0 + 0.2,
        },
        {
            "message_id": SENT_ID,
            "round": 1,
            "plugin": "default/vonage",
            "endpoint": "10.0.0.2:50051",
            "outcome": "success",
            "duration_ms": 30.0,
            "message": None,
            "provider_message_id": "V-1",
            "finished_at": T0 + 0.5,
        },
        {
            "message_id": WAITING_ID,
            "round": 1,
            "plugin": "default/sendgrid",
            "endpoint": "10.0.0.3:50051",
            "outcome": "unavailable",
            "duration_ms": 5.0,
            "message": "connection refused",
            "provider_message_id": None,
            "finished_at": T0 + 11,
        },
    ],
    "provider_ids": [
        {"plugin": "default/vonage", "provider_message_id": "V-1", "message_id": SENT_ID}
    ],
    "events": [
        {"message_id": SENT_ID, "channel": "sms", "state": "accepted", "detail": None, "at": T0},
        {"message_id": SENT_ID, "channel": "sms", "state": "sending", "detail": None, "at": T0},
        {"message_id": SENT_ID, "channel": "sms", "state": "sent", "detail": None, "at": T0 + 0.5},
        {"message_id": WAITING_ID, "channel": "email", "state": "accepted", "at": T0 + 10},
        {"message_id": WAITING_ID, "channel": "email", "state": "sending", "at": T0 + 10},
        {"message_id": WAITING_ID, "channel": "email", "state": "accepted", "at": T0 + 11},
    ],
}


def _write_a_0001_ledger(url: str) -> None:
    """Migrate an empty database to 0001 with Alembic and fill it with plain SQL."""

    def fill(conn: sa.Connection) -> None:
        for table, rows in ROWS.items():
            for row in rows:
                if table == "events":
                    row = {"tenant": "default", "detail": None, **row}
                columns = ", ".join(row)
                values = ", ".join(f":{name}" for name in row)
                statement = sa.text(f"INSERT INTO {table} ({columns}) VALUES ({values})")  # noqa: S608 - names are ours
                if "payload" in row:
                    statement = statement.bindparams(sa.bindparam("payload", type_=sa.JSON))
                conn.execute(statement, row)

    migrate(url, "0001", fill)
    assert _version(url)[0] == "0001"


def _version(url: str) -> tuple[str | None, list[str]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        return version, sorted(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


async def _open_as_the_router_does(url: str) -> Ledger:
    settings = RouterSettings(ledger_url=url)
    return await Ledger.open(
        url,
        store_content=settings.ledger_store_content,
        sqlite_synchronous=settings.ledger_sqlite_synchronous,
    )


async def test_a_0001_ledger_with_messages_is_upgraded_to_head_and_reads_the_same(
    ledger_url: str,
) -> None:
    _write_a_0001_ledger(ledger_url)

    ledger = await _open_as_the_router_does(ledger_url)
    try:
        sent = await ledger.get(SENT_ID)
        waiting = await ledger.get(WAITING_ID)
        sent_history = await ledger.history(SENT_ID)
        listed = await ledger.list_messages(ListFilter("default"))
        on_email = await ledger.list_messages(ListFilter("default", state=State.ACCEPTED))
        counts = await ledger.state_counts()
        oldest = await ledger.oldest_unfinished()
        again, created = await ledger.accept(
            NewMessage(
                tenant="default",
                channel="sms",
                recipient="+15551234567",
                payload=SENT_PAYLOAD,
                idempotency_key="order-7",
                policy="AtLeastOnce",
                asynchronous=False,
            )
        )
        receipt = await ledger.apply_receipt("default/vonage", "V-1", State.DELIVERED)
        claimed = await ledger.claim_due("router-after-upgrade", limit=10, lease_seconds=30)
        await ledger.record_audit(
            [AuditEvent("default", "tests", "replay", "sms", "ok", message_id=SENT_ID)]
        )
        audit = await ledger.audit_trail("default", since=None, limit=10)
    finally:
        await ledger.close()
    version, tables = _version(ledger_url)

    assert version == head() != "0001"
    assert {"audit", "messages", "attempts", "events", "provider_ids", "receipts"} <= set(tables)
    assert sent is not None and waiting is not None
    assert (
        sent.tenant,
        sent.channel,
        sent.recipient,
        sent.idempotency_key,
        sent.state,
        sent.possible_duplicate,
        sent.policy,
        sent.asynchronous,
        sent.plugin,
        sent.provider_message_id,
        sent.error_code,
        sent.created_at,
        sent.updated_at,
        sent.deliver_by,
        sent.rounds,
        sent.payload,
    ) == (
        "default",
        "sms",
        "+15551234567",
        "order-7",
        State.SENT,
        False,
        "AtLeastOnce",
        False,
        "default/vonage",
        "V-1",
        None,
        T0,
        T0 + 0.5,
        None,
        1,
        None,
    )
    assert sent.attempts == (
        AttemptRecord(
            "default/twilio",
            "10.0.0.1:50051",
            "retryable",
            12.5,
            "503 from the provider",
            "",
            round=1,
            finished_at=T0 + 0.2,
        ),
        AttemptRecord("default/vonage", "10.0.0.2:50051", "success", 30.0, "", "V-1", 1, T0 + 0.5),
    )
    assert [(e.state, e.at) for e in sent_history] == [
        (State.ACCEPTED, T0),
        (State.SENDING, T0),
        (State.SENT, T0 + 0.5),
    ]
    assert (waiting.state, waiting.asynchronous, waiting.payload) == (
        State.ACCEPTED,
        True,
        WAITING_PAYLOAD,
    )
    assert (waiting.error_code, waiting.next_attempt_at) == ("UNAVAILABLE", T0 + 12)
    assert [m.id for m in listed] == [WAITING_ID, SENT_ID]
    assert [m.id for m in on_email] == [WAITING_ID]
    assert counts == {State.SENT: 1, State.ACCEPTED: 1}
    assert oldest == T0 + 10
    # A retry with the old key reaches the old message; the old provider id takes receipts.
    assert (again.id, created) == (SENT_ID, False)
    assert receipt[0] == "applied"
    assert receipt[1] is not None and receipt[1].state is State.DELIVERED
    # The message a 0001 router left waiting is sent by the upgraded one, content and all.
    assert [(m.id, m.payload) for m in claimed] == [(WAITING_ID, WAITING_PAYLOAD)]
    assert [(a.action, a.message_id) for a in audit] == [("replay", SENT_ID)]


async def test_a_migration_the_database_refuses_is_a_migration_error_not_an_outage(
    ledger_url: str,
) -> None:
    """SQLite reports "table ... already exists" as an OperationalError, like a lost database."""
    migrate(ledger_url, "0001", lambda conn: conn.execute(FOREIGN_AUDIT_TABLE))

    with pytest.raises(LedgerError) as refused:
        await _open_as_the_router_does(ledger_url)
    version, _ = _version(ledger_url)

    assert isinstance(refused.value, LedgerMigrationError), repr(refused.value)
    assert f"from revision 0001 to {head()}" in str(refused.value)
    assert "audit" in str(refused.value) and "then start again" in str(refused.value)
    assert version == "0001", "the refused migration was left half-applied"
