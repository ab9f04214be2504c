"""Where analytics events live: one storage interface, PostgreSQL and SQLite behind it.

``EventStore`` is everything the plugin asks of a database: apply the schema
migrations, insert a batch of events (a resent ``event_id`` is stored once),
answer the report queries, keep dashboards and remember which alert windows
have fired. The queries are written once, in SQL both databases speak; a
``_Dialect`` supplies what differs (placeholders, how times and JSON
properties are expressed):

    EventStore (abstract: _fetch, _execute, _insert_many, _migrate)
    ├── PostgresEventStore   psycopg 3 (async) with a psycopg_pool connection pool
    └── SqliteEventStore     stdlib sqlite3 on one dedicated thread (local mode)

Failures the caller should retry (the database is down, restarting, a
connection was terminated, a lock timed out) raise ``StorageUnavailable``; a
value the database cannot store raises ``EventRejected``; any other database
error propagates as it is.

Migrations are versioned and owned by the plugin: ``schema_migrations`` records
which ran; ``open`` applies the missing ones in order inside one transaction
(on PostgreSQL under an advisory lock, so replicas starting together don't
race) and refuses a database whose schema is newer than the plugin.
"""

# The queries are assembled from constant SQL fragments chosen in this module;
# every value travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import abc
import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final, TypeVar

import psycopg
import psycopg_pool
from psycopg.types.json import Jsonb

_T = TypeVar("_T")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: pg_advisory_xact_lock key serialising migrations ("analytic" in ASCII).
_MIGRATION_LOCK: Final = 0x616E616C79746963


class StorageUnavailable(Exception):
    """The database cannot be reached or refused the work for now; retry later."""


class EventRejected(Exception):
    """The database refused the data itself (a value it cannot store); retrying won't help."""


class SchemaTooNew(Exception):
    """The database was migrated by a newer plugin version than this one."""


@dataclass(frozen=True)
class StoredEvent:
    """One accepted event, as it is written."""

    event_id: str
    event_type: str
    category: str
    user_id: str | None
    session_id: str | None
    occurred_at: datetime
    received_at: datetime
    properties: Mapping[str, Any]
    #: Monetary value in ten-thousandths of ``currency`` (exact sums), if any.
    amount_e4: int | None = None
    currency: str | None = None


@dataclass(frozen=True)
class FunnelStep:
    event_type: str
    #: Top-level properties that must equal these values (compared as text).
    where: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertClaim:
    """The record of one alert rule firing in one window."""

    status: str
    """``pending`` (not delivered yet), ``sent`` or ``rejected``."""
    event_count: int


@dataclass(frozen=True)
class _Migration:
    version: int
    name: str
    postgresql: tuple[str, ...]
    sqlite: tuple[str, ...]


MIGRATIONS: Final = (
    _Migration(
        1,
        "events",
        postgresql=(
            """CREATE TABLE events (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                event_id TEXT NOT NULL UNIQUE,
                event_type TEXT NOT NULL,
                category TEXT NOT NULL,
                user_id TEXT,
                session_id TEXT,
                occurred_at TIMESTAMPTZ NOT NULL,
                received_at TIMESTAMPTZ NOT NULL,
                properties JSONB NOT NULL,
                amount_e4 BIGINT,
                currency TEXT
            )""",
            "CREATE INDEX events_occurred_at ON events (occurred_at)",
            "CREATE INDEX events_type_occurred_at ON events (event_type, occurred_at)",
            "CREATE INDEX events_category_occurred_at ON events (category, occurred_at)",
        ),
        sqlite=(
            """CREATE TABLE events (
                id INTEGER PRIMARY KEY,
                event_id TEXT NOT NULL UNIQUE,
                event_type TEXT NOT NULL,
                category TEXT NOT NULL,
                user_id TEXT,
                session_id TEXT,
                occurred_at INTEGER NOT NULL,
                received_at INTEGER NOT NULL,
                properties TEXT NOT NULL,
                amount_e4 INTEGER,
                currency TEXT
            )""",
            "CREATE INDEX events_occurred_at ON events (occurred_at)",
            "CREATE INDEX events_type_occurred_at ON events (event_type, occurred_at)",
            "CREATE INDEX events_category_occurred_at ON events (category, occurred_at)",
        ),
    ),
    _Migration(
        2,
        "dashboards",
        postgresql=(
            """CREATE TABLE dashboards (
                name TEXT PRIMARY KEY,
                definition JSONB NOT NULL,
                created_at TIMESTAMPTZ NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL
            )""",
        ),
        sqlite=(
            """CREATE TABLE dashboards (
                name TEXT PRIMARY KEY,
                definition TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL
            )""",
        ),
    ),
    _Migration(
        3,
        "alert firings",
        postgresql=(
            """CREATE TABLE alert_firings (
                rule TEXT NOT NULL,
                window_start TIMESTAMPTZ NOT NULL,
                event_count BIGINT NOT NULL,
                status TEXT NOT NULL,
                fired_at TIMESTAMPTZ NOT NULL,
                notified_at TIMESTAMPTZ,
                last_error TEXT,
                PRIMARY KEY (rule, window_start)
            )""",
        ),
        sqlite=(
            """CREATE TABLE alert_firings (
                rule TEXT NOT NULL,
                window_start INTEGER NOT NULL,
                event_count INTEGER NOT NULL,
                status TEXT NOT NULL,
                fired_at INTEGER NOT NULL,
                notified_at INTEGER,
                last_error TEXT,
                PRIMARY KEY (rule, window_start)
            )""",
        ),
    ),
)
LATEST_VERSION: Final = MIGRATIONS[-1].version


class _Dialect:
    """What the two databases spell differently. Queries are written with ``?``."""

    name: ClassVar[str]

    def sql(self, text: str) -> str:
        return text

    def time(self, moment: datetime) -> Any:
        return moment

    def from_time(self, value: Any) -> datetime:
        assert isinstance(value, datetime)
        return value.astimezone(UTC)

    def json(self, value: Mapping[str, Any]) -> Any:
        return Jsonb(dict(value))

    def from_json(self, value: Any) -> Any:
        return value

    def property_text(self, column: str) -> str:
        """SQL for a top-level property of JSON ``column`` as text; takes one key parameter."""
        return f"({column} ->> ?)"

    def property_key(self, key: str) -> str:
        return key

    def array_elements(self, alias: str) -> str:
        """A join yielding each element of the array ``properties[?]`` (twice the key).

        Rows whose property is missing or not an array yield no element.
        """
        return (
            "CROSS JOIN LATERAL jsonb_array_elements(CASE jsonb_typeof(events.properties -> ?) "
            f"WHEN 'array' THEN events.properties -> ? ELSE '[]'::jsonb END) AS {alias}(elem)"
        )

    def element_text(self, alias: str) -> str:
        return f"({alias}.elem ->> ?)"


class _Postgres(_Dialect):
    name = "postgresql"

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")


class _Sqlite(_Dialect):
    name = "sqlite"

    def time(self, moment: datetime) -> Any:
        return (moment - _EPOCH) // timedelta(microseconds=1)

    def from_time(self, value: Any) -> datetime:
        return _EPOCH + timedelta(microseconds=int(value))

    def json(self, value: Mapping[str, Any]) -> Any:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    def from_json(self, value: Any) -> Any:
        return json.loads(value)

    def property_text(self, column: str) -> str:
        return f"json_extract({column}, ?)"

    def property_key(self, key: str) -> str:
        return f"$.{key}"

    def array_elements(self, alias: str) -> str:
        return (
            "JOIN json_each(CASE json_type(events.properties, ?) "
            f"WHEN 'array' THEN json_extract(events.properties, ?) ELSE '[]' END) AS {alias}"
        )

    def element_text(self, alias: str) -> str:
        return f"json_extract({alias}.value, ?)"


class EventStore(abc.ABC):
    """The plugin's database. ``open`` connects and migrates; ``close`` releases it."""

    dialect: _Dialect

    @abc.abstractmethod
    async def open(self) -> list[int]:
        """Connect and apply missing migrations; return the versions applied now."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...

    @abc.abstractmethod
    async def _execute(self, sql: str, params: Sequence[Any]) -> int:
        """Run one statement; return the number of rows it changed."""

    @abc.abstractmethod
    async def _insert_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run ``sql`` once per row, all in one transaction."""

    # --- events ------------------------------------------------------------------------

    async def insert_events(self, events: Sequence[StoredEvent]) -> None:
        """Store ``events`` in one transaction; an ``event_id`` already stored is skipped."""
        sql = self.dialect.sql(
            "INSERT INTO events (event_id, event_type, category, user_id, session_id, "
            "occurred_at, received_at, properties, amount_e4, currency) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
        )
        rows = [
            (
                event.event_id,
                event.event_type,
                event.category,
                event.user_id,
                event.session_id,
                self.dialect.time(event.occurred_at),
                self.dialect.time(event.received_at),
                self.dialect.json(event.properties),
                event.amount_e4,
                event.currency,
            )
            for event in events
        ]
        await self._insert_many(sql, rows)

    async def count_events(self) -> int:
        [(count,)] = await self._fetch("SELECT COUNT(*) FROM events", ())
        return int(count)

    # --- reports -------------------------------------------------------------------------

    async def counts(
        self,
        start: datetime,
        end: datetime,
        *,
        event_type: str | None = None,
        category: str | None = None,
    ) -> list[dict[str, Any]]:
        """Events and distinct users by event type and category in ``[start, end)``."""
        where, params = self._range(start, end)
        for column, value in (("event_type", event_type), ("category", category)):
            if value is not None:
                where += f" AND {column} = ?"
                params.append(value)
        rows = await self._fetch(
            "SELECT event_type, category, COUNT(*), COUNT(DISTINCT user_id) FROM events "
            f"WHERE {where} GROUP BY event_type, category ORDER BY event_type, category",
            params,
        )
        return [
            {"event_type": t, "category": c, "count": int(n), "users": int(u)}
            for t, c, n, u in rows
        ]

    async def count_in_window(
        self,
        start: datetime,
        end: datetime,
        *,
        event_type: str | None = None,
        category: str | None = None,
    ) -> int:
        where, params = self._range(start, end)
        for column, value in (("event_type", event_type), ("category", category)):
            if value is not None:
                where += f" AND {column} = ?"
                params.append(value)
        [(count,)] = await self._fetch(f"SELECT COUNT(*) FROM events WHERE {where}", params)
        return int(count)

    async def funnel(
        self, steps: Sequence[FunnelStep], start: datetime, end: datetime
    ) -> list[int]:
        """Users reaching each step, in order: step n at or after the user's step n-1."""
        ctes: list[str] = []
        params: list[Any] = []
        for index, step in enumerate(steps):
            conditions = ["e.event_type = ?", "e.occurred_at < ?", "e.user_id IS NOT NULL"]
            step_params: list[Any] = [step.event_type, self.dialect.time(end)]
            for key, value in step.where.items():
                conditions.append(f"{self.dialect.property_text('e.properties')} = ?")
                step_params += [self.dialect.property_key(key), value]
            if index == 0:
                conditions.append("e.occurred_at >= ?")
                step_params.append(self.dialect.time(start))
                join = ""
            else:
                join = f" JOIN s{index - 1} p ON p.user_id = e.user_id AND e.occurred_at >= p.t"
            ctes.append(
                f"s{index} AS (SELECT e.user_id, MIN(e.occurred_at) AS t FROM events e{join} "
                f"WHERE {' AND '.join(conditions)} GROUP BY e.user_id)"
            )
            params += step_params
        selects = ", ".join(f"(SELECT COUNT(*) FROM s{index})" for index in range(len(steps)))
        [row] = await self._fetch(f"WITH {', '.join(ctes)} SELECT {selects}", params)
        return [int(value) for value in row]

    async def revenue(
        self, start: datetime, end: datetime, event_types: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Sums of monetary values by currency (exact, from ten-thousandths)."""
        where, params = self._range(start, end)
        placeholders = ", ".join("?" for _ in event_types)
        rows = await self._fetch(
            "SELECT currency, SUM(amount_e4), COUNT(*), COUNT(DISTINCT user_id) FROM events "
            f"WHERE {where} AND amount_e4 IS NOT NULL AND event_type IN ({placeholders}) "
            "GROUP BY currency ORDER BY currency",
            [*params, *event_types],
        )
        return [
            {
                "currency": currency,
                "total_e4": int(total),
                "events": int(count),
                "users": int(users),
            }
            for currency, total, count, users in rows
        ]

    async def top(
        self,
        event_type: str,
        property_path: str,
        start: datetime,
        end: datetime,
        limit: int,
    ) -> list[dict[str, Any]]:
        """The most frequent values of a property (``url``, or ``items[].product_id``)."""
        where, params = self._range(start, end, column="events.occurred_at")
        array_key, _, element_key = property_path.partition("[].")
        if element_key:
            value = self.dialect.element_text("item")
            source = f"events {self.dialect.array_elements('item')}"
            select_params = [self.dialect.property_key(element_key)]
            from_params = [self.dialect.property_key(array_key)] * 2
        else:
            value = self.dialect.property_text("events.properties")
            source = "events"
            select_params = [self.dialect.property_key(property_path)]
            from_params = []
        rows = await self._fetch(
            "SELECT value, COUNT(*) AS n, COUNT(DISTINCT user_id) FROM ("
            f"SELECT {value} AS value, events.user_id AS user_id FROM {source} "
            f"WHERE events.event_type = ? AND {where}"
            ") AS picked WHERE value IS NOT NULL GROUP BY value ORDER BY n DESC, value LIMIT ?",
            [*select_params, *from_params, event_type, *params, limit],
        )
        return [{"value": str(v), "count": int(n), "users": int(u)} for v, n, u in rows]

    # --- dashboards ----------------------------------------------------------------------

    async def save_dashboard(
        self, name: str, definition: Mapping[str, Any], *, replace: bool, now: datetime
    ) -> bool:
        """Store a dashboard; return False if one of that name exists and ``replace`` is off."""
        conflict = (
            "DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at"
            if replace
            else "DO NOTHING"
        )
        changed = await self._execute(
            "INSERT INTO dashboards (name, definition, created_at, updated_at) "
            f"VALUES (?, ?, ?, ?) ON CONFLICT (name) {conflict}",
            [name, self.dialect.json(definition), self.dialect.time(now), self.dialect.time(now)],
        )
        return changed > 0

    async def get_dashboard(self, name: str) -> dict[str, Any] | None:
        rows = await self._fetch(
            "SELECT definition, created_at, updated_at FROM dashboards WHERE name = ?", [name]
        )
        if not rows:
            return None
        definition, created_at, updated_at = rows[0]
        return {
            "definition": self.dialect.from_json(definition),
            "created_at": self.dialect.from_time(created_at),
            "updated_at": self.dialect.from_time(updated_at),
        }

    # --- alert firings -------------------------------------------------------------------

    async def claim_alert(
        self, rule: str, window_start: datetime, event_count: int, now: datetime
    ) -> AlertClaim:
        """Record that ``rule`` fired in the window (once); return its delivery status."""
        await self._execute(
            "INSERT INTO alert_firings (rule, window_start, event_count, status, fired_at) "
            "VALUES (?, ?, ?, 'pending', ?) ON CONFLICT (rule, window_start) DO NOTHING",
            [rule, self.dialect.time(window_start), event_count, self.dialect.time(now)],
        )
        [(status, count)] = await self._fetch(
            "SELECT status, event_count FROM alert_firings WHERE rule = ? AND window_start = ?",
            [rule, self.dialect.time(window_start)],
        )
        return AlertClaim(status=str(status), event_count=int(count))

    async def settle_alert(
        self, rule: str, window_start: datetime, *, status: str, now: datetime, error: str = ""
    ) -> None:
        await self._execute(
            "UPDATE alert_firings SET status = ?, notified_at = ?, last_error = ? "
            "WHERE rule = ? AND window_start = ?",
            [status, self.dialect.time(now), error or None, rule, self.dialect.time(window_start)],
        )

    async def alert_firings(self, rule: str | None = None) -> list[dict[str, Any]]:
        where, params = ("WHERE rule = ?", [rule]) if rule is not None else ("", [])
        rows = await self._fetch(
            "SELECT rule, window_start, event_count, status, notified_at, last_error "
            f"FROM alert_firings {where} ORDER BY window_start, rule",
            params,
        )
        return [
            {
                "rule": r,
                "window_start": self.dialect.from_time(w),
                "event_count": int(n),
                "status": s,
                "notified_at": self.dialect.from_time(t) if t is not None else None,
                "last_error": e,
            }
            for r, w, n, s, t, e in rows
        ]

    # --- helpers -------------------------------------------------------------------------

    def _range(
        self, start: datetime, end: datetime, *, column: str = "occurred_at"
    ) -> tuple[str, list[Any]]:
        return (
            f"{column} >= ? AND {column} < ?",
            [self.dialect.time(start), self.dialect.time(end)],
        )

    @staticmethod
    def _pending(applied: Iterable[int]) -> list[_Migration]:
        done = set(applied)
        newest = max(done, default=0)
        if newest > LATEST_VERSION:
            raise SchemaTooNew(
                f"the database schema is at version {newest}, newer than this plugin "
                f"knows ({LATEST_VERSION}); run a plugin version that matches it"
            )
        return [migration for migration in MIGRATIONS if migration.version not in done]


class PostgresEventStore(EventStore):
    """PostgreSQL through psycopg 3 and a small connection pool."""

    dialect = _Postgres()

    def __init__(self, url: str, *, max_connections: int = 4, timeout: float = 5.0) -> None:
        self._timeout = timeout
        self._pool = psycopg_pool.AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            open=False,
            timeout=timeout,
            # A connection the server dropped (restart, pg_terminate_backend) is
            # noticed on checkout and replaced, instead of failing the next query.
            check=psycopg_pool.AsyncConnectionPool.check_connection,
            kwargs={"autocommit": True, "connect_timeout": max(1, round(timeout))},
            name="analytics-events",
        )

    async def open(self) -> list[int]:
        try:
            await self._pool.open(wait=True, timeout=self._timeout)
            return await self._guard(self._migrate())
        except psycopg_pool.PoolTimeout as error:
            await self._pool.close()
            raise StorageUnavailable(f"PostgreSQL unreachable: {error}") from None
        except BaseException:
            await self._pool.close()
            raise

    async def _migrate(self) -> list[int]:
        async with self._pool.connection() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            cursor = await connection.execute("SELECT version FROM schema_migrations")
            pending = self._pending(version for (version,) in await cursor.fetchall())
            for migration in pending:
                for statement in migration.postgresql:
                    await connection.execute(statement)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
        return [migration.version for migration in pending]

    async def close(self) -> None:
        await self._pool.close()

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        async def fetch() -> list[tuple[Any, ...]]:
            async with self._pool.connection() as connection:
                cursor = await connection.execute(self.dialect.sql(sql), params)
                return await cursor.fetchall()

        return await self._guard(fetch())

    async def _execute(self, sql: str, params: Sequence[Any]) -> int:
        async def execute() -> int:
            async with self._pool.connection() as connection:
                cursor = await connection.execute(self.dialect.sql(sql), params)
                return cursor.rowcount

        return await self._guard(execute())

    async def _insert_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        async def insert() -> None:
            async with (
                self._pool.connection() as connection,
                connection.transaction(),
                connection.cursor() as cursor,
            ):
                await cursor.executemany(sql, rows)

        await self._guard(insert())

    @staticmethod
    async def _guard(work: Awaitable[_T]) -> _T:
        try:
            return await work
        except (
            psycopg.OperationalError,
            psycopg.InterfaceError,
            psycopg_pool.PoolTimeout,
        ) as error:
            raise StorageUnavailable(f"PostgreSQL unavailable: {_one_line(error)}") from None
        except (psycopg.DataError, psycopg.IntegrityError) as error:
            raise EventRejected(_one_line(error)) from None


class SqliteEventStore(EventStore):
    """SQLite for local mode: stdlib ``sqlite3`` on one thread of its own."""

    dialect = _Sqlite()

    def __init__(self, path: str, *, timeout: float = 5.0) -> None:
        self._path = path
        self._timeout = timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analytics-sqlite")
        self._connection: sqlite3.Connection | None = None

    async def open(self) -> list[int]:
        return await self._run(self._open)

    def _open(self) -> list[int]:
        connection = sqlite3.connect(
            self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        self._connection = connection
        if self._path != ":memory:":
            connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            versions = [
                row[0] for row in connection.execute("SELECT version FROM schema_migrations")
            ]
            pending = self._pending(versions)
            for migration in pending:
                for statement in migration.sqlite:
                    connection.execute(statement)
                connection.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, datetime.now(UTC).isoformat()),
                )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return [migration.version for migration in pending]

    async def close(self) -> None:
        def close() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        try:
            await self._run(close)
        finally:
            self._executor.shutdown(wait=True)

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return await self._run(lambda: self._db().execute(sql, list(params)).fetchall())

    async def _execute(self, sql: str, params: Sequence[Any]) -> int:
        return await self._run(lambda: self._db().execute(sql, list(params)).rowcount)

    async def _insert_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        def insert() -> None:
            connection = self._db()
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany(sql, rows)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

        await self._run(insert)

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            raise StorageUnavailable("the SQLite database is not open")
        return self._connection

    async def _run(self, work: Callable[[], _T]) -> _T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        except sqlite3.OperationalError as error:
            # "database is locked" and friends: another writer, try again later.
            raise StorageUnavailable(f"SQLite unavailable: {error}") from None
        except (sqlite3.DataError, sqlite3.IntegrityError) as error:
            raise EventRejected(str(error)) from None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def open_store(url: str, *, max_connections: int, timeout: float) -> EventStore:
    """The store for ``database_url``: ``postgresql://...`` or ``sqlite:///path``."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresEventStore(url, max_connections=max_connections, timeout=timeout)
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        path = ":memory:" if path in ("", "/", "/:memory:") else path
        return SqliteEventStore(path, timeout=timeout)
    raise ValueError(f"unsupported database URL scheme in {url.split(':', 1)[0]!r}")
