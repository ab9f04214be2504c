"""The ledger on SQLite and on PostgreSQL: the same answers from both engines.

Every test runs twice (``ledger_url``): against a SQLite file and against a
PostgreSQL server the suite started.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from switchboard.ledger import (
    AttemptRecord,
    Finish,
    IdempotencyConflict,
    Ledger,
    LedgerMigrationError,
    LedgerUnavailable,
    ListFilter,
    NewMessage,
    State,
    can_move,
)


def new_message(
    key: str | None = None, content: str = "Your code is 123456", **extra: Any
) -> NewMessage:
    fields: dict[str, Any] = {
        "tenant": "default",
        "channel": "sms",
        "recipient": "+15551234567",
        "payload": {"recipient": "+15551234567", "content": content},
        "idempotency_key": key,
        "policy": "AtLeastOnce",
        "asynchronous": False,
    }
    fields.update(extra)
    return NewMessage(**fields)


async def test_a_synchronous_message_is_recorded_before_sending_and_keeps_its_attempts(
    ledger: Ledger,
) -> None:
    record, created = await ledger.accept(new_message(), owner="router-a")
    assert created and record.state is State.SENDING

    finished = await ledger.finish_round(
        record.id,
        "router-a",
        Finish(
            State.SENT,
            attempts=[
                AttemptRecord("default/twilio", "10.0.0.1:50051", "retryable", 12.5, "503"),
                AttemptRecord("default/vonage", "10.0.0.2:50051", "success", 30.0, "", "V-1"),
            ],
            plugin="default/vonage",
            provider_message_id="V-1",
            provider_ids=["V-1", "V-2"],
        ),
    )
    stored = await ledger.get(record.id)

    assert finished
    assert stored is not None and stored.state is State.SENT
    assert (stored.plugin, stored.provider_message_id) == ("default/vonage", "V-1")
    assert [(a.plugin, a.outcome) for a in stored.attempts] == [
        ("default/twilio", "retryable"),
        ("default/vonage", "success"),
    ]
    assert stored.payload is None  # content is not kept by default
    assert [e.state for e in await ledger.history(record.id)] == [
        State.ACCEPTED,
        State.SENDING,
        State.SENT,
    ]


async def test_the_same_key_and_payload_is_the_same_message_and_another_payload_is_a_conflict(
    ledger: Ledger,
) -> None:
    first, created = await ledger.accept(new_message("order-42"))
    again, created_again = await ledger.accept(new_message("order-42"))
    other_tenant, created_other = await ledger.accept(new_message("order-42", tenant="team-b"))

    assert created and not created_again and created_other
    assert again.id == first.id and other_tenant.id != first.id
    with pytest.raises(IdempotencyConflict, match=r"order-42.*different message") as conflict:
        await ledger.accept(new_message("order-42", content="Another text"))
    assert conflict.value.existing_id == first.id


async def test_two_routers_racing_on_one_key_record_one_message(ledger: Ledger) -> None:
    results = await asyncio.gather(*(ledger.accept(new_message("race")) for _ in range(8)))

    assert len({record.id for record, _ in results}) == 1
    assert sum(created for _, created in results) == 1


async def test_workers_claim_disjoint_messages_and_a_stale_owner_cannot_finish(
    ledger: Ledger,
) -> None:
    ids = {
        (await ledger.accept(new_message(asynchronous=True, deliver_by=ledger.clock() + 60)))[0].id
        for _ in range(30)
    }

    claims = await asyncio.gather(
        *(ledger.claim_due(f"worker-{n}", limit=10, lease_seconds=30) for n in range(4))
    )
    claimed = [record.id for batch in claims for record in batch]

    assert sorted(claimed) == sorted(ids)  # every one, each exactly once
    assert all(record.state is State.SENDING for batch in claims for record in batch)
    some = claims[0][0] if claims[0] else next(batch[0] for batch in claims if batch)
    owner = next(f"worker-{n}" for n, batch in enumerate(claims) if some in batch)
    assert not await ledger.finish_round(some.id, "someone-else", Finish(State.SENT))
    assert await ledger.finish_round(some.id, owner, Finish(State.SENT))


async def test_a_message_left_mid_send_is_recovered_when_its_lease_runs_out(ledger: Ledger) -> None:
    now = [1_000_000.0]
    ledger.clock = lambda: now[0]
    record, _ = await ledger.accept(new_message(), owner="dead-router", lease_seconds=30)

    assert await ledger.claim_due("survivor", limit=10, lease_seconds=30) == []
    now[0] += 31
    recovered = await ledger.claim_due("survivor", limit=10, lease_seconds=30)

    assert [r.id for r in recovered] == [record.id]
    assert recovered[0].recovered and recovered[0].payload is not None
    assert not await ledger.finish_round(record.id, "dead-router", Finish(State.SENT))


async def test_a_retry_goes_back_to_accepted_until_it_is_due(ledger: Ledger) -> None:
    now = [2_000_000.0]
    ledger.clock = lambda: now[0]
    record, _ = await ledger.accept(new_message(asynchronous=True, deliver_by=now[0] + 3600))
    (claimed,) = await ledger.claim_due("w", limit=5, lease_seconds=30)
    await ledger.finish_round(
        claimed.id,
        "w",
        Finish(
            State.ACCEPTED,
            attempts=[AttemptRecord("default/a", "x:1", "retryable", 1.0)],
            next_attempt_at=now[0] + 10,
        ),
    )

    assert await ledger.claim_due("w", limit=5, lease_seconds=30) == []
    assert await ledger.next_due() == now[0] + 10
    now[0] += 10
    (again,) = await ledger.claim_due("w", limit=5, lease_seconds=30)
    assert again.id == record.id and again.rounds == 2 and again.payload is not None


async def test_receipts_move_the_message_and_unknown_ids_are_recorded_and_ignored(
    ledger: Ledger,
) -> None:
    record, _ = await ledger.accept(new_message(), owner="r")
    await ledger.finish_round(
        record.id,
        "r",
        Finish(
            State.SENT, plugin="default/twilio", provider_message_id="SM1", provider_ids=["SM1"]
        ),
    )

    delivered = await ledger.apply_receipt("default/twilio", "SM1", State.DELIVERED)
    late_sent = await ledger.apply_receipt("default/twilio", "SM1", State.SENT)
    unknown = await ledger.apply_receipt("default/twilio", "SM-nobody", State.FAILED, "30003")
    other_plugin = await ledger.apply_receipt("default/vonage", "SM1", State.FAILED)

    assert delivered[0] == "applied" and delivered[1] is not None
    assert delivered[1].state is State.DELIVERED
    assert late_sent[0] == "stale"
    assert unknown == ("unknown_message", None)
    assert other_plugin == ("unknown_message", None)
    stored = await ledger.get(record.id)
    assert stored is not None and stored.state is State.DELIVERED


async def test_listing_filters_by_state_channel_recipient_and_time(ledger: Ledger) -> None:
    now = [3_000_000.0]
    ledger.clock = lambda: now[0]
    sms, _ = await ledger.accept(new_message())
    now[0] += 5
    email, _ = await ledger.accept(
        new_message(channel="email", recipient="ann@example.org"), owner="r"
    )

    assert [m.id for m in await ledger.list_messages(ListFilter("default"))] == [email.id, sms.id]
    by_state = await ledger.list_messages(ListFilter("default", state=State.SENDING))
    by_channel = await ledger.list_messages(ListFilter("default", channel="sms"))
    by_recipient = await ledger.list_messages(ListFilter("default", recipient="ann@example.org"))
    since = await ledger.list_messages(ListFilter("default", since=now[0]))
    assert [m.id for m in by_state] == [email.id]
    assert [m.id for m in by_channel] == [sms.id]
    assert [m.id for m in by_recipient] == [email.id]
    assert [m.id for m in since] == [email.id]
    assert await ledger.list_messages(ListFilter("team-b")) == []


async def test_the_event_stream_resumes_after_a_sequence_number(ledger: Ledger) -> None:
    start = await ledger.last_seq()
    record, _ = await ledger.accept(new_message(), owner="r")
    await ledger.finish_round(record.id, "r", Finish(State.SENT))

    seen = await ledger.events_after(start, tenants={"default"})
    later = await ledger.events_after(seen[1].seq)

    assert [e.state for e in seen] == [State.ACCEPTED, State.SENDING, State.SENT]
    assert [e.state for e in later] == [State.SENT]
    assert await ledger.events_after(start, tenants={"team-b"}) == []


async def test_finished_messages_are_purged_after_retention_and_unfinished_never(
    ledger: Ledger,
) -> None:
    now = [4_000_000.0]
    ledger.clock = lambda: now[0]
    done, _ = await ledger.accept(new_message(), owner="r")
    await ledger.finish_round(done.id, "r", Finish(State.FAILED, error="blocked"))
    waiting, _ = await ledger.accept(new_message(asynchronous=True))

    assert await ledger.purge(finished_before=now[0] + 1) == 1
    assert await ledger.get(done.id) is None
    assert await ledger.get(waiting.id) is not None
    assert await ledger.oldest_unfinished() == now[0]


async def test_opening_twice_migrates_once_and_a_newer_schema_is_refused(ledger_url: str) -> None:
    first = await Ledger.open(ledger_url)
    second = await Ledger.open(ledger_url)  # already at head: nothing to do
    bump = sa.text("UPDATE alembic_version SET version_num = '9999'")
    if isinstance(first.engine, sa.Engine):  # SQLite runs synchronously
        with first.engine.begin() as sync:
            sync.execute(bump)
    else:
        async with first.engine.begin() as conn:
            await conn.execute(bump)
    await first.close()
    await second.close()

    with pytest.raises(LedgerMigrationError, match="9999"):
        await Ledger.open(ledger_url)


async def test_an_unreachable_database_is_said_so(ledger_postgres: Any) -> None:
    closed = f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/postgres"
    with pytest.raises(LedgerUnavailable, match="Cannot reach the ledger database"):
        await Ledger.open(closed)
    with pytest.raises(ValueError, match="sqlite:///"):
        await Ledger.open("mysql://nowhere/db")


async def test_an_outage_refuses_writes_and_the_ledger_recovers_by_itself(
    ledger_postgres: Any,
) -> None:
    name = "ledger_outage"
    url = ledger_postgres.create_database(name).replace("postgresql://", "postgresql+psycopg://", 1)
    ledger = await Ledger.open(url)
    try:
        ledger_postgres.refuse_connections(name)
        for _ in range(3):  # a cut connection first, then refused new ones
            refused = await asyncio.gather(
                *(ledger.accept(new_message()) for _ in range(5)), return_exceptions=True
            )
            assert all(isinstance(error, LedgerUnavailable) for error in refused), refused
        ledger_postgres.accept_connections(name)
        record, created = await ledger.accept(new_message())
        assert created and record.state is State.ACCEPTED
    finally:
        await ledger.close()
        ledger_postgres.accept_connections(name)
        ledger_postgres.drop_database(name)


def test_a_final_state_is_left_only_by_a_replay_or_a_late_receipt() -> None:
    assert can_move(State.ACCEPTED, State.SENDING)
    assert not can_move(State.ACCEPTED, State.SENT)
    assert can_move(State.SENT, State.DELIVERED)
    assert can_move(State.DELIVERED, State.FAILED)  # a bounce after delivery
    assert not can_move(State.DELIVERED, State.SENT)
    assert can_move(State.EXPIRED, State.SENDING)  # replay of a dead letter
    assert not can_move(State.EXPIRED, State.DELIVERED)


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
