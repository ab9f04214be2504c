"""The ledger on a real database: every accepted message, its attempts, receipts and history.

One class, ``Ledger``, over SQLAlchemy Core's asyncio engine, the same code
on SQLite (local mode: a file, nothing to install) and PostgreSQL (in
Kubernetes, shared by every router replica). ``Ledger.open`` runs the
Alembic migrations before anything else, so a router never serves with an
outdated schema; two replicas starting together take turns (an advisory lock
on PostgreSQL, an immediate transaction on SQLite).

SQLite runs in the event loop's own thread, synchronously: a write to a
local file in WAL mode takes microseconds, less than handing it to a thread
and back (a driver thread per statement cost tens of milliseconds under
load). PostgreSQL uses its asyncio driver. Concurrent writes are grouped
into one transaction (`_write`): a burst of accepted messages costs one
commit, not one each.

Who may work on a message is decided in the database: a router sending a
message holds a lease on its row (``lease_owner``, ``lease_until``), and a
write that finishes a round names its owner, so a router whose lease ran
out (it stalled, or died and came back) can never overwrite what another
did since. Asynchronous messages are claimed with ``FOR UPDATE SKIP LOCKED``
on PostgreSQL (SQLite serialises writers anyway), so two workers never take
the same message.

Errors (the exception tree)::

    LedgerError
    ├── LedgerUnavailable       the database cannot be reached; nothing was recorded
    ├── LedgerMigrationError    the schema could not be brought up to date
    └── IdempotencyConflict     the key was used before for a different message
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import (
    Connection,
    Engine,
    String,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from switchboard.ledger.schema import (
    attempts,
    audit,
    events,
    messages,
    provider_ids,
    receipts,
)
from switchboard.ledger.states import FINAL, State, can_move

MIGRATIONS: Final = Path(__file__).parent / "migrations"
#: Built once: an insert with its values given as parameters compiles once and is cached.
_INSERT_MESSAGE: Final = insert(messages)
_INSERT_EVENT: Final = insert(events)
_INSERT_ATTEMPT: Final = insert(attempts)
#: pg_advisory_xact_lock key that serialises migrations ("ledger" in ASCII).
_MIGRATION_LOCK: Final = 0x6C6564676572
#: A ledger that lives as long as the process (tests, a router without a database).
MEMORY: Final = "sqlite:///:memory:"
#: The engines the ledger speaks, by URL scheme.
#: `sqlite+aiosqlite:` is accepted too (it was the documented form), and run the same way.
SUPPORTED_URLS: Final = ("sqlite:///", "sqlite+aiosqlite:///", "postgresql+psycopg://")


class _Inline:
    """A synchronous connection (SQLite) behind the ledger's asynchronous interface."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return self.connection.execute(statement, parameters)

    async def run_sync(self, work: Callable[[Connection], Any]) -> Any:
        return work(self.connection)


Conn = AsyncConnection | _Inline
_T = TypeVar("_T")


class _Batch:
    """The connection of one group-commit transaction, with inserts deferred to its end.

    Rows appended with ``later`` (attempts, events, provider ids) are written
    just before the commit, one multi-row statement per kind for the whole
    batch: a delivery's round then costs its own update and a share of three
    inserts, not four statements of its own. Nothing in a batch reads what a
    job deferred.
    """

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self._later: dict[Any, list[Mapping[str, Any]]] = {}

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return await self.conn.execute(statement, parameters)

    def later(self, statement: Any, rows: Iterable[Mapping[str, Any]]) -> None:
        """Insert ``rows`` with ``statement`` (a module-level insert) before the commit."""
        self._later.setdefault(statement, []).extend(rows)

    async def flush(self) -> None:
        for statement, rows in self._later.items():
            if rows:
                await self.conn.execute(statement, rows)
        self._later.clear()


class _GroupWriter:
    """Runs concurrent write jobs together, several in one transaction (group commit).

    A job is ``async (batch) -> result`` (``_Batch``) and must leave no partial effect
    when it raises: a batch whose job raises is rolled back and each of its
    jobs is run again in a transaction of its own, so one job's error reaches
    only its caller. ``lanes`` batches run at once (connections in use).
    """

    def __init__(
        self,
        connect: Callable[..., contextlib.AbstractAsyncContextManager[Conn]],
        lanes: int,
        batch: int = 200,
    ) -> None:
        self._connect, self._batch = connect, batch
        self._queue: list[tuple[Callable[[_Batch], Awaitable[Any]], asyncio.Future[Any]]] = []
        self._lanes = asyncio.Semaphore(lanes)
        self._flushers: set[asyncio.Task[None]] = set()

    async def run(self, job: Callable[[_Batch], Awaitable[_T]]) -> _T:
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._queue.append((job, future))
        if not self._lanes.locked():
            task = asyncio.create_task(self._flush())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        return await future

    async def stop(self) -> None:
        if self._flushers:
            await asyncio.wait(self._flushers)

    async def _flush(self) -> None:
        async with self._lanes:
            while self._queue:
                batch, self._queue = self._queue[: self._batch], self._queue[self._batch :]
                try:
                    async with self._connect(write=True) as conn:
                        together = _Batch(conn)
                        results = [await job(together) for job, _ in batch]
                        await together.flush()
                except BaseException as error:
                    if len(batch) == 1:
                        _settle(batch[0][1], error=error)
                    else:
                        await self._one_by_one(batch)
                    if isinstance(error, asyncio.CancelledError):
                        raise
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    _settle(future, result=result)

    async def _one_by_one(
        self, batch: list[tuple[Callable[[_Batch], Awaitable[Any]], asyncio.Future[Any]]]
    ) -> None:
        for job, future in batch:
            try:
                async with self._connect(write=True) as conn:
                    alone = _Batch(conn)
                    result = await job(alone)
                    await alone.flush()
            except Exception as error:
                _settle(future, error=error)
            else:
                _settle(future, result=result)


def _settle(
    future: asyncio.Future[Any], *, result: Any = None, error: BaseException | None = None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class LedgerError(Exception):
    """Base of the ledger's errors."""


class LedgerUnavailable(LedgerError):
    """The database cannot be reached or refused the write; nothing was recorded."""


class LedgerMigrationError(LedgerError):
    """The database schema could not be migrated to this version's."""


class IdempotencyConflict(LedgerError):
    """The idempotency key names another message (a different payload) in this tenant."""

    def __init__(self, key: str, existing_id: str) -> None:
        super().__init__(
            f"Idempotency key {key!r} was used for a different message ({existing_id}); "
            "use a new key for a new message"
        )
        self.key, self.existing_id = key, existing_id


@dataclass(frozen=True)
class NewMessage:
    """What the router accepted, before any provider is called."""

    tenant: str
    channel: str
    recipient: str
    #: The message as the plugin will get it (JSON-ready).
    payload: Mapping[str, Any]
    idempotency_key: str | None
    policy: str
    asynchronous: bool
    #: When an asynchronous message expires (epoch seconds); None for a synchronous one.
    deliver_by: float | None = None


@dataclass(frozen=True)
class AttemptRecord:
    plugin: str
    endpoint: str
    outcome: str
    duration_ms: float
    message: str = ""
    provider_message_id: str = ""
    round: int = 0
    finished_at: float = 0.0


@dataclass(frozen=True)
class MessageRecord:
    id: str
    tenant: str
    channel: str
    recipient: str | None
    idempotency_key: str | None
    state: State
    possible_duplicate: bool
    policy: str
    asynchronous: bool
    plugin: str | None
    provider_message_id: str | None
    error_code: str | None
    error: str | None
    created_at: float
    updated_at: float
    deliver_by: float | None
    next_attempt_at: float | None
    rounds: int
    payload: Mapping[str, Any] | None
    attempts: tuple[AttemptRecord, ...] = ()
    #: Set by ``claim_due``: the message was found mid-send with an expired lease
    #: (its router died or stalled), so its last attempt may have reached the provider.
    recovered: bool = False


@dataclass(frozen=True)
class EventRecord:
    seq: int
    message_id: str
    tenant: str
    channel: str
    state: State
    detail: str | None
    at: float


@dataclass(frozen=True)
class AuditEvent:
    """One line of the audit trail: who did what, where, with what outcome."""

    tenant: str
    actor: str
    action: str
    target: str
    outcome: str
    message_id: str | None = None
    detail: str | None = None
    at: float = 0.0
    seq: int = 0
    key: str | None = None
    """Set where several writers see the same event: the ledger keeps one row per key."""


@dataclass(frozen=True)
class Finish:
    """How a round of attempts ended, for ``finish_round``."""

    state: State
    attempts: Sequence[AttemptRecord] = ()
    plugin: str | None = None
    provider_message_id: str | None = None
    #: Every id the provider gave (a multi-part SMS has one per part), for receipts.
    provider_ids: Sequence[str] = ()
    error_code: str | None = None
    error: str | None = None
    possible_duplicate: bool = False
    #: For a message going back to ``accepted``: when it is due again.
    next_attempt_at: float | None = None
    #: Keep the content (a receipt may still ask for a fallback send).
    keep_payload: bool = False
    detail: str | None = None


@dataclass(frozen=True)
class ListFilter:
    tenant: str
    state: State | None = None
    channel: str | None = None
    recipient: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 100


def payload_hash(payload: Mapping[str, Any]) -> str:
    """The fingerprint compared when an idempotency key comes back."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_url(url: str) -> str:
    """``url`` if the ledger can use it, else a ValueError that says which forms it takes."""
    if not url.startswith(SUPPORTED_URLS):
        raise ValueError(
            "the ledger URL must start with sqlite:/// (a file) or postgresql+psycopg:// (a server)"
        )
    return url


class Ledger:
    """The durable record of messages; see the module docstring."""

    def __init__(
        self,
        engine: AsyncEngine | Engine,
        *,
        store_content: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.store_content = store_content
        self.clock = clock
        self.is_postgres = engine.dialect.name == "postgresql"
        self._writes = _GroupWriter(self._connect, lanes=4 if self.is_postgres else 1)
        # A provider that reuses an id keeps pointing at the first message.
        self._insert_provider_id = (postgresql_insert if self.is_postgres else sqlite_insert)(
            provider_ids
        ).on_conflict_do_nothing()
        # Another replica (or this router before a restart) may have written it.
        self._insert_audit = (postgresql_insert if self.is_postgres else sqlite_insert)(
            audit
        ).on_conflict_do_nothing()
        self._unkeyed: list[
            tuple[dict[str, Any], list[State], float, asyncio.Future[MessageRecord]]
        ] = []

    # -- lifecycle --

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        store_content: bool = False,
        sqlite_synchronous: str = "NORMAL",
        clock: Callable[[], float] = time.time,
    ) -> Ledger:
        """Connect to ``url``, migrate the schema, and return the ledger.

        Raises ``LedgerUnavailable`` when the database cannot be reached and
        ``LedgerMigrationError`` when the schema cannot be migrated.
        """
        check_url(url)
        engine: AsyncEngine | Engine
        if url.startswith("sqlite"):
            # One connection, used in the loop's thread (see the module docstring).
            engine = create_engine(
                url.replace("sqlite+aiosqlite:", "sqlite:", 1),
                poolclass=StaticPool,
                connect_args={"check_same_thread": False},
            )
            _serialise_sqlite(engine, sqlite_synchronous)
        else:
            engine = create_async_engine(url, pool_size=10, max_overflow=10, pool_recycle=1800)
        ledger = cls(engine, store_content=store_content, clock=clock)
        try:
            await ledger.migrate()
        except BaseException:
            await ledger.close()
            raise
        return ledger

    async def migrate(self) -> None:
        try:
            async with self._connect(write=True, translate=False) as conn:
                if self.is_postgres:
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                    )
                await conn.run_sync(_upgrade)
        except (DBAPIError, OSError) as error:
            if _is_connection_error(error):
                raise LedgerUnavailable(
                    f"Cannot reach the ledger database: {_one_line(error)}"
                ) from None
            raise LedgerMigrationError(
                f"Could not migrate the ledger: {_one_line(error)}"
            ) from None
        except SQLAlchemyError as error:
            raise LedgerMigrationError(
                f"Could not migrate the ledger: {_one_line(error)}"
            ) from None
        except CommandError as error:
            # Typically a revision this version does not know: a newer router migrated it.
            raise LedgerMigrationError(
                f"Could not migrate the ledger: {error}; was it migrated by a newer Switchboard?"
            ) from None

    async def close(self) -> None:
        await self._writes.stop()
        if isinstance(self.engine, Engine):
            self.engine.dispose()
        else:
            await self.engine.dispose()

    async def ping(self) -> None:
        """Raise ``LedgerUnavailable`` unless the database answers."""
        async with self._connect() as conn:
            await conn.execute(select(1))

    # -- accepting --

    async def accept(
        self, new: NewMessage, *, owner: str | None = None, lease_seconds: float = 60.0
    ) -> tuple[MessageRecord, bool]:
        """Record ``new`` (claimed at once by ``owner`` for a synchronous send).

        Returns the record and whether it is new. An idempotency key already
        used for the same payload returns the existing record (``False``);
        for another payload it raises ``IdempotencyConflict``.
        """
        digest = payload_hash(new.payload)
        now = self.clock()
        row = {
            "id": uuid.uuid4().hex,
            "tenant": new.tenant,
            "channel": new.channel,
            "recipient": new.recipient,
            "idempotency_key": new.idempotency_key,
            "payload_hash": digest,
            "payload": dict(new.payload),
            "state": State.SENDING if owner else State.ACCEPTED,
            "possible_duplicate": False,
            "policy": new.policy,
            "asynchronous": new.asynchronous,
            "created_at": now,
            "updated_at": now,
            "deliver_by": new.deliver_by,
            "next_attempt_at": None if owner else now,
            "rounds": 1 if owner else 0,
            "lease_owner": owner,
            "lease_until": now + lease_seconds if owner else None,
        }
        key = new.idempotency_key
        states = [State.ACCEPTED, State.SENDING] if owner else [State.ACCEPTED]
        if key is None:
            return await self._insert_unkeyed(row, states, now), True

        async def job(conn: _Batch) -> tuple[str, Any]:
            if key is not None:
                existing = await self._by_key(conn, new.tenant, key)
                if existing is not None:
                    if existing.payload_hash != digest:
                        return "conflict", existing.id
                    return "existing", await self._record(conn, existing.id)
            await conn.execute(_INSERT_MESSAGE, [row])
            self._events(conn, [(row, state, None) for state in states], now)
            return "created", _record(row)

        for _ in range(2):  # a racing replica may insert the same key in between
            try:
                kind, found = await self._writes.run(job)
            except IntegrityError:
                continue
            if kind == "conflict":
                assert key is not None
                raise IdempotencyConflict(key, found)
            return found, kind == "created"
        raise LedgerUnavailable("Could not record the message: its idempotency key kept clashing")

    async def _insert_unkeyed(
        self, row: dict[str, Any], states: list[State], now: float
    ) -> MessageRecord:
        """Insert a message without an idempotency key, together with every other
        one waiting to be written: one multi-row insert per batch, not one each."""
        future: asyncio.Future[MessageRecord] = asyncio.get_running_loop().create_future()
        self._unkeyed.append((row, states, now, future))
        if len(self._unkeyed) == 1:
            asyncio.get_running_loop().create_task(self._flush_unkeyed())
        return await future

    async def _flush_unkeyed(self) -> None:
        taken: list[tuple[dict[str, Any], list[State], float, asyncio.Future[MessageRecord]]] = []

        async def job(conn: _Batch) -> None:
            if not taken:  # when the transaction starts: whatever queued meanwhile joins it
                taken.extend(self._unkeyed)
                self._unkeyed.clear()
            if not taken:
                return
            await conn.execute(_INSERT_MESSAGE, [row for row, _, _, _ in taken])
            for at in sorted({now for _, _, now, _ in taken}):
                changes = [
                    (row, state, None)
                    for row, states, now, _ in taken
                    if now == at
                    for state in states
                ]
                self._events(conn, changes, at)

        try:
            await self._writes.run(job)
        except BaseException as error:  # every caller hears of it; nobody awaits this task
            if not taken:  # failed before the job ran (no connection): fail the queue too
                taken.extend(self._unkeyed)
                self._unkeyed.clear()
            for _, _, _, future in taken:
                _settle(future, error=error)
            if isinstance(error, asyncio.CancelledError):
                raise
            return
        for row, _, _, future in taken:
            _settle(future, result=_record(row))

    async def reclaim(
        self, message_id: str, owner: str, lease_seconds: float, *, possible_duplicate: bool = False
    ) -> MessageRecord | None:
        """Take a message for another round (a retry with its key, a replay, a fallback).

        Only a message nobody holds: no lease, or a lease that ran out. None if
        another router holds it or its state does not allow sending again.
        """
        now = self.clock()

        async def job(conn: _Batch) -> MessageRecord | None:
            current = await self._record(conn, message_id)
            if current is None or not can_move(current.state, State.SENDING):
                return None
            result = await conn.execute(
                update(messages)
                .where(
                    messages.c.id == message_id,
                    messages.c.state == current.state,
                    or_(messages.c.lease_until.is_(None), messages.c.lease_until < now),
                )
                .values(
                    state=State.SENDING,
                    lease_owner=owner,
                    lease_until=now + lease_seconds,
                    rounds=messages.c.rounds + 1,
                    possible_duplicate=messages.c.possible_duplicate | possible_duplicate,
                    updated_at=now,
                    error_code=None,
                    error=None,
                )
            )
            if result.rowcount != 1:
                return None
            self._events(conn, [(_row_of(current), State.SENDING, "sent again")], now)
            return await self._record(conn, message_id)

        return await self._writes.run(job)

    async def finish_round(
        self, message_id: str, owner: str, finish: Finish
    ) -> MessageRecord | None:
        """Record a round's attempts and where the message stands, if ``owner`` still holds
        it: the message as it is now, or None when another router took it over."""
        now = self.clock()

        clear_payload = finish.state is not State.ACCEPTED and not (
            finish.keep_payload or self.store_content
        )
        parameters = {
            "b_id": message_id,
            "b_owner": owner,
            "state": finish.state,
            "updated_at": now,
            "next_attempt_at": finish.next_attempt_at,
            "error_code": finish.error_code,
            "error": finish.error,
            "b_duplicate": finish.possible_duplicate,
            "plugin": finish.plugin,
            "provider_message_id": finish.provider_message_id,
        }

        async def job(conn: _Batch) -> MessageRecord | None:
            result = await conn.execute(_finish_statement(clear_payload), parameters)
            found = result.first()
            if found is None:
                return None
            record = _record(found._mapping)
            round_ = record.rounds
            if finish.attempts:
                conn.later(
                    _INSERT_ATTEMPT,
                    [
                        {
                            "message_id": message_id,
                            "round": round_,
                            "plugin": a.plugin,
                            "endpoint": a.endpoint,
                            "outcome": a.outcome,
                            "duration_ms": a.duration_ms,
                            "message": a.message or None,
                            "provider_message_id": a.provider_message_id or None,
                            "finished_at": a.finished_at or now,
                        }
                        for a in finish.attempts
                    ],
                )
            if finish.plugin and finish.provider_ids:
                self._remember_provider_ids(conn, finish.plugin, finish.provider_ids, message_id)
            self._events(
                conn, [(_row_of(record), finish.state, finish.detail or finish.error)], now
            )
            return record

        return await self._writes.run(job)

    # -- asynchronous work --

    async def claim_due(self, owner: str, limit: int, lease_seconds: float) -> list[MessageRecord]:
        """Claim up to ``limit`` messages that are due: accepted and ready, or left
        mid-send by a router whose lease ran out (``recovered``)."""
        now = self.clock()
        due = or_(
            and_(messages.c.state == State.ACCEPTED, messages.c.next_attempt_at <= now),
            and_(messages.c.state == State.SENDING, messages.c.lease_until < now),
        )
        query = (
            select(messages.c.id, messages.c.state)
            .where(due)
            .order_by(messages.c.next_attempt_at)
            .limit(limit)
        )
        if self.is_postgres:
            query = query.with_for_update(skip_locked=True)

        async def job(conn: _Batch) -> list[MessageRecord]:
            before = dict((await conn.execute(query)).all())
            if not before:
                return []
            rows = await conn.execute(
                update(messages)
                .where(messages.c.id.in_(list(before)), due)
                .values(
                    state=State.SENDING,
                    lease_owner=owner,
                    lease_until=now + lease_seconds,
                    rounds=messages.c.rounds + 1,
                    updated_at=now,
                )
                .returning(*messages.c)
            )
            claimed = [_record(row._mapping) for row in rows]
            self._events(
                conn,
                [
                    (_row_of(record), State.SENDING, None)
                    for record in claimed
                    if before[record.id] == State.ACCEPTED
                ],
                now,
            )
            # Found mid-send: the router that held it stopped before it finished.
            return [
                replace(record, recovered=before[record.id] == State.SENDING) for record in claimed
            ]

        return await self._writes.run(job)

    async def next_due(self) -> float | None:
        """When the next accepted message is due (epoch seconds), if any."""
        async with self._connect() as conn:
            result = await conn.execute(
                select(func.min(messages.c.next_attempt_at)).where(
                    messages.c.state == State.ACCEPTED
                )
            )
            value = result.scalar()
            return float(value) if value is not None else None

    # -- receipts --

    async def apply_receipt(
        self, plugin: str, provider_message_id: str, state: State, error: str | None = None
    ) -> tuple[str, MessageRecord | None]:
        """Move the message a provider id belongs to; returns (outcome, record).

        Outcomes: ``applied``; ``unknown_message`` (no message has that id: recorded,
        ignored); ``stale`` (the message has moved past it, e.g. a "sent" receipt after
        "delivered").
        """
        now = self.clock()

        async def job(conn: _Batch) -> tuple[str, MessageRecord | None]:
            message_id = (
                await conn.execute(
                    select(provider_ids.c.message_id).where(
                        provider_ids.c.plugin == plugin,
                        provider_ids.c.provider_message_id == provider_message_id,
                    )
                )
            ).scalar()
            record = await self._record(conn, message_id) if message_id else None
            if record is None:
                outcome = "unknown_message"
            elif record.state == state or not can_move(record.state, state):
                outcome = "stale"
            else:
                outcome = "applied"
                values: dict[str, Any] = {"state": state, "updated_at": now}
                if state == State.FAILED:
                    values.update(error_code="DELIVERY_FAILED", error=error)
                await conn.execute(
                    update(messages).where(messages.c.id == record.id).values(values)
                )
                self._events(conn, [(_row_of(record), state, error or "receipt")], now)
            await conn.execute(
                insert(receipts).values(
                    plugin=plugin,
                    provider_message_id=provider_message_id,
                    message_id=message_id,
                    state=state,
                    outcome=outcome,
                    error=error,
                    received_at=now,
                )
            )
            if record is not None and outcome == "applied":
                record = await self._record(conn, record.id)
            return outcome, record

        return await self._writes.run(job)

    # -- reading --

    async def get(self, message_id: str) -> MessageRecord | None:
        async with self._connect() as conn:
            return await self._record(conn, message_id, with_attempts=True)

    async def history(self, message_id: str) -> list[EventRecord]:
        async with self._connect() as conn:
            rows = await conn.execute(
                select(events).where(events.c.message_id == message_id).order_by(events.c.seq)
            )
            return [_event_record(row._mapping) for row in rows]

    async def list_messages(self, query: ListFilter) -> list[MessageRecord]:
        conditions = [messages.c.tenant == query.tenant]
        if query.state is not None:
            conditions.append(messages.c.state == query.state)
        if query.channel is not None:
            conditions.append(messages.c.channel == query.channel)
        if query.recipient is not None:
            conditions.append(messages.c.recipient == query.recipient)
        if query.since is not None:
            conditions.append(messages.c.created_at >= query.since)
        if query.until is not None:
            conditions.append(messages.c.created_at < query.until)
        async with self._connect() as conn:
            rows = await conn.execute(
                select(messages)
                .where(*conditions)
                .order_by(messages.c.created_at.desc())
                .limit(query.limit)
            )
            return [_record(row._mapping) for row in rows]

    async def events_after(
        self, seq: int, tenants: Iterable[str] | None = None, limit: int = 500
    ) -> list[EventRecord]:
        """State changes after ``seq``, oldest first (the live stream)."""
        conditions = [events.c.seq > seq]
        if tenants is not None:
            conditions.append(events.c.tenant.in_(list(tenants)))
        async with self._connect() as conn:
            rows = await conn.execute(
                select(events).where(*conditions).order_by(events.c.seq).limit(limit)
            )
            return [_event_record(row._mapping) for row in rows]

    async def last_seq(self) -> int:
        async with self._connect() as conn:
            return int((await conn.execute(select(func.max(events.c.seq)))).scalar() or 0)

    async def state_counts(self) -> dict[State, int]:
        async with self._connect() as conn:
            rows = await conn.execute(
                select(messages.c.state, func.count()).group_by(messages.c.state)
            )
            return {State(state): int(count) for state, count in rows}

    async def oldest_unfinished(self) -> float | None:
        """``created_at`` of the oldest message a router still owes work."""
        async with self._connect() as conn:
            value = (
                await conn.execute(
                    select(func.min(messages.c.created_at)).where(
                        messages.c.state.in_([State.ACCEPTED, State.SENDING])
                    )
                )
            ).scalar()
            return float(value) if value is not None else None

    async def record_audit(self, events: Sequence[AuditEvent]) -> None:
        """Append audit events, in one transaction."""
        if not events:
            return

        async def job(conn: _Batch) -> None:
            await conn.execute(
                self._insert_audit,
                [
                    {
                        "at": event.at or self.clock(),
                        "tenant": event.tenant,
                        "actor": event.actor[:255],
                        "action": event.action,
                        "target": event.target[:255],
                        "outcome": event.outcome[:64],
                        "message_id": event.message_id,
                        "detail": (event.detail or None) and event.detail[:1000],
                        "key": event.key,
                    }
                    for event in events
                ],
            )

        await self._writes.run(job)

    async def audit_trail(
        self, tenant: str, *, since: float | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        """The tenant's audit events, newest first."""
        conditions = [audit.c.tenant == tenant]
        if since is not None:
            conditions.append(audit.c.at >= since)
        async with self._connect() as conn:
            rows = await conn.execute(
                select(audit).where(*conditions).order_by(audit.c.seq.desc()).limit(limit)
            )
            return [
                AuditEvent(
                    tenant=row.tenant,
                    actor=row.actor,
                    action=row.action,
                    target=row.target,
                    outcome=row.outcome,
                    message_id=row.message_id,
                    detail=row.detail,
                    at=row.at,
                    seq=int(row.seq),
                )
                for row in rows
            ]

    async def purge(self, finished_before: float) -> int:
        """Delete messages that reached a final state, and audit events, older than
        ``finished_before``; how many messages went."""

        async def job(conn: _Batch) -> int:
            await conn.execute(delete(audit).where(audit.c.at < finished_before))
            old = select(messages.c.id).where(
                messages.c.state.in_(list(FINAL)), messages.c.updated_at < finished_before
            )
            ids = [row[0] for row in await conn.execute(old)]
            if not ids:
                return 0
            for table in (attempts, provider_ids):
                await conn.execute(delete(table).where(table.c.message_id.in_(ids)))
            await conn.execute(delete(events).where(events.c.message_id.in_(ids)))
            await conn.execute(delete(messages).where(messages.c.id.in_(ids)))
            return len(ids)

        return await self._writes.run(job)

    # -- internals --

    @contextlib.asynccontextmanager
    async def _connect(
        self, write: bool = False, *, translate: bool = True
    ) -> AsyncIterator[AsyncConnection | _Inline]:
        """A connection (in a transaction when ``write``); a lost database is
        ``LedgerUnavailable`` unless ``translate`` is off."""
        try:
            if isinstance(self.engine, Engine):
                with self.engine.begin() if write else self.engine.connect() as sync:
                    yield _Inline(sync)
            else:
                async with self.engine.begin() if write else self.engine.connect() as conn:
                    yield conn
        except (IntegrityError, LedgerError):
            raise
        except (DBAPIError, OSError, TimeoutError) as error:
            if not translate:
                raise
            raise LedgerUnavailable(
                f"The ledger database is unavailable: {_one_line(error)}"
            ) from error

    async def _by_key(self, conn: Conn | _Batch, tenant: str, key: str) -> Any:
        result = await conn.execute(
            select(messages.c.id, messages.c.payload_hash).where(
                messages.c.tenant == tenant, messages.c.idempotency_key == key
            )
        )
        return result.first()

    async def _record(
        self, conn: Conn | _Batch, message_id: str, *, with_attempts: bool = False
    ) -> MessageRecord | None:
        row = (await conn.execute(select(messages).where(messages.c.id == message_id))).first()
        if row is None:
            return None
        found: tuple[AttemptRecord, ...] = ()
        if with_attempts:
            rows = await conn.execute(
                select(attempts).where(attempts.c.message_id == message_id).order_by(attempts.c.id)
            )
            found = tuple(
                AttemptRecord(
                    plugin=a.plugin,
                    endpoint=a.endpoint,
                    outcome=a.outcome,
                    duration_ms=a.duration_ms,
                    message=a.message or "",
                    provider_message_id=a.provider_message_id or "",
                    round=a.round,
                    finished_at=a.finished_at,
                )
                for a in rows
            )
        return _record(row._mapping, found)

    def _remember_provider_ids(
        self, conn: _Batch, plugin: str, ids: Iterable[str], message_id: str
    ) -> None:
        conn.later(
            self._insert_provider_id,
            (
                {"plugin": plugin, "provider_message_id": provider_id, "message_id": message_id}
                for provider_id in dict.fromkeys(i for i in ids if i)
            ),
        )

    @staticmethod
    def _events(
        conn: _Batch,
        changes: Sequence[tuple[Mapping[str, Any], State, str | None]],
        at: float,
    ) -> None:
        """Append state changes (message row, new state, detail), written with the batch."""
        conn.later(
            _INSERT_EVENT,
            (
                {
                    "message_id": row["id"],
                    "tenant": row["tenant"],
                    "channel": row["channel"],
                    "state": state,
                    "detail": (detail or None) and detail[:1000],
                    "at": at,
                }
                for row, state, detail in changes
            ),
        )


@functools.cache
def _finish_statement(clear_payload: bool) -> Any:
    """The update that ends a round, built once per shape so it compiles once."""
    values: dict[str, Any] = {
        name: bindparam(name)
        for name in ("state", "updated_at", "next_attempt_at", "error_code", "error")
    }
    values.update(
        lease_owner=None,
        lease_until=None,
        possible_duplicate=or_(messages.c.possible_duplicate, bindparam("b_duplicate")),
        plugin=func.coalesce(bindparam("plugin", type_=String), messages.c.plugin),
        provider_message_id=func.coalesce(
            bindparam("provider_message_id", type_=String), messages.c.provider_message_id
        ),
    )
    if clear_payload:
        values["payload"] = null()
    return (
        update(messages)
        .where(messages.c.id == bindparam("b_id"), messages.c.lease_owner == bindparam("b_owner"))
        .values(values)
        .returning(*messages.c)
    )


def migrations(connection: Connection | None = None) -> Config:
    """Alembic's configuration of the ledger's migrations, run on ``connection`` if given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    """Migrate to head; a migration the database refuses is ``LedgerMigrationError``.

    Only a lost connection stays a ``DBAPIError`` (``LedgerUnavailable``): SQLite
    reports a schema conflict ("table ... already exists") as an
    ``OperationalError``, the class a refused connection has too.
    """
    config = migrations(connection)
    current = MigrationContext.configure(connection).get_current_revision()
    head = ScriptDirectory.from_config(config).get_current_head()
    try:
        command.upgrade(config, "head")
    except DBAPIError as error:
        if error.connection_invalidated:
            raise
        raise LedgerMigrationError(
            f"Could not migrate the ledger from revision {current or 'none'} to {head}: "
            f"{_one_line(error)}. Fix what the database refused (a table or column "
            "changed by hand? missing privileges?), then start again"
        ) from None


def _serialise_sqlite(engine: Engine, synchronous: str) -> None:
    """SQLite for several writers (router tasks, a second process): WAL, a busy timeout,
    and write transactions that take the lock when they begin, never half-way."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy issues BEGIN itself
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            f"PRAGMA synchronous={synchronous}",
            # Another process holding the lock (a second router on one file)
            # blocks this one at most this long.
            "PRAGMA busy_timeout=5000",
            "PRAGMA foreign_keys=ON",
        ):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _is_connection_error(error: BaseException) -> bool:
    """Whether ``error`` says the database could not be reached (not that SQL failed)."""
    return isinstance(error, OSError | OperationalError | InterfaceError)


def _one_line(error: BaseException) -> str:
    text_ = str(getattr(error, "orig", None) or error)
    return " ".join(text_.split())[:300]


def _record(row: Any, found: tuple[AttemptRecord, ...] = ()) -> MessageRecord:
    return MessageRecord(
        id=row["id"],
        tenant=row["tenant"],
        channel=row["channel"],
        recipient=row.get("recipient"),
        idempotency_key=row.get("idempotency_key"),
        state=State(row["state"]),
        possible_duplicate=bool(row.get("possible_duplicate")),
        policy=row["policy"],
        asynchronous=bool(row["asynchronous"]),
        plugin=row.get("plugin"),
        provider_message_id=row.get("provider_message_id"),
        error_code=row.get("error_code"),
        error=row.get("error"),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        deliver_by=row.get("deliver_by"),
        next_attempt_at=row.get("next_attempt_at"),
        rounds=int(row.get("rounds") or 0),
        payload=row.get("payload"),
        attempts=found,
    )


def _row_of(record: MessageRecord) -> dict[str, Any]:
    return {"id": record.id, "tenant": record.tenant, "channel": record.channel}


def _event_record(row: Any) -> EventRecord:
    return EventRecord(
        seq=int(row["seq"]),
        message_id=row["message_id"],
        tenant=row["tenant"],
        channel=row["channel"],
        state=State(row["state"]),
        detail=row["detail"],
        at=row["at"],
    )


__all__ = [
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
]
