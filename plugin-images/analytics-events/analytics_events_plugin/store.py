"""Where analytics events live: one store, written once in SQLAlchemy Core, on PostgreSQL or SQLite.

``EventStore`` is everything the plugin asks of a database: migrate, insert a
batch of events (a resent ``event_id`` is stored once; traits, groups and
aliases the batch carries are merged in the same transaction), answer the
report queries, keep dashboards and alert rules, remember which alert windows
fired, and delete one person's data. The same statements run on both engines
(``tables.py`` gives the types, ``sqljson.py`` the JSON access); only the
driver differs: psycopg 3 (async) for ``postgresql://``, aiosqlite for
``sqlite:///``.

People: a report counts a person once whatever ids they used. An event's
person is its ``user_id``, else the user its ``anonymous_id`` was aliased to
(``alias``, or any call naming both), else the ``anonymous_id``.

Failures the caller should retry (the database is down, restarting, a
connection was terminated, a lock timed out, no pooled connection in time)
raise ``StorageUnavailable``; a value the database cannot store raises
``EventRejected``; other errors propagate as they are.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    and_,
    delete,
    event,
    func,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from .events import StoredEvent, identities
from .migrations import SchemaTooNew, migrate
from .sqljson import (
    epoch_micros,
    json_array_elements,
    json_equals,
    json_kind,
    json_text,
    json_value,
    value_order,
)
from .tables import (
    alert_firings,
    alert_rules,
    aliases,
    dashboards,
    events,
    groups,
    profiles,
)

_MICROSECOND: Final = timedelta(microseconds=1)


class StorageUnavailable(Exception):
    """The database cannot be reached or refused the work for now; retry later."""


class EventRejected(Exception):
    """The database refused the data itself (a value it cannot store); retrying won't help."""


@dataclass(frozen=True)
class FunnelStep:
    event_type: str
    #: Properties (paths) that must equal these JSON values.
    where: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Filters:
    """Which events a report looks at, besides the time range."""

    event_type: str | None = None
    category: str | None = None
    event_types: Sequence[str] | None = None


@dataclass(frozen=True)
class AlertClaim:
    """The record of one alert rule firing in one window."""

    status: str
    """``pending`` (not delivered yet), ``sent`` or ``rejected``."""
    event_count: int


#: Events with the user each anonymous id was aliased to.
_EVENTS_AND_ALIASES: Final = events.outerjoin(
    aliases, aliases.c.previous_id == events.c.anonymous_id
)
#: An event's person: its user, the user its anonymous id is, or the anonymous id.
PERSON: Final = func.coalesce(events.c.user_id, aliases.c.user_id, events.c.anonymous_id)


class EventStore:
    """The plugin's database. ``open`` connects and migrates; ``close`` releases it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.backend = engine.dialect.name
        self._insert = postgresql.insert if self.backend == "postgresql" else sqlite.insert

    async def open(self) -> list[int]:
        """Connect and apply missing migrations; return the versions applied now."""
        try:
            async with self._transaction() as connection:
                return await connection.run_sync(migrate)
        except SchemaTooNew:
            raise
        except BaseException:
            await self.engine.dispose()
            raise

    async def close(self) -> None:
        await self.engine.dispose()

    # --- events ------------------------------------------------------------------------

    async def insert_events(self, batch: Sequence[StoredEvent]) -> None:
        """Store ``batch`` in one transaction; an ``event_id`` already stored is skipped."""
        if not batch:
            return
        rows = [
            {
                "event_id": e.event_id,
                "event_type": e.event_type,
                "category": e.category,
                "user_id": e.user_id,
                "session_id": e.session_id,
                "occurred_at": e.occurred_at,
                "received_at": e.received_at,
                "properties": dict(e.properties),
                "amount_e4": e.amount_e4,
                "currency": e.currency,
                "call": e.call,
                "anonymous_id": e.anonymous_id,
                "context": dict(e.context) if e.context else None,
                "late": e.late,
            }
            for e in batch
        ]
        found = identities(batch)
        async with self._transaction() as connection:
            await connection.execute(
                self._insert(events).on_conflict_do_nothing(index_elements=["event_id"]), rows
            )
            for previous_id, user_id in found.aliases.items():
                stmt = self._insert(aliases).values(
                    previous_id=previous_id, user_id=user_id, created_at=batch[0].received_at
                )
                await connection.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["previous_id"], set_={"user_id": stmt.excluded.user_id}
                    )
                )
            for user_key, (traits, seen) in found.profiles.items():
                await self._merge_traits(connection, profiles, "user_key", user_key, traits, seen)
            for group_id, (traits, seen) in found.groups.items():
                await self._merge_traits(connection, groups, "group_id", group_id, traits, seen)

    async def _merge_traits(
        self,
        connection: AsyncConnection,
        table: Any,
        key_column: str,
        key: str,
        traits: Mapping[str, Any],
        seen: datetime,
    ) -> None:
        key_of = table.c[key_column]
        current = (
            await connection.execute(select(table.c.traits).where(key_of == key))
        ).scalar_one_or_none()
        merged = {**(current or {}), **traits}
        if table is profiles:
            stmt = self._insert(table).values(
                user_key=key, traits=merged, first_seen=seen, last_seen=seen
            )
            changes = {"traits": stmt.excluded.traits, "last_seen": stmt.excluded.last_seen}
        else:
            stmt = self._insert(table).values(group_id=key, traits=merged, updated_at=seen)
            changes = {"traits": stmt.excluded.traits, "updated_at": stmt.excluded.updated_at}
        await connection.execute(
            stmt.on_conflict_do_update(index_elements=[key_column], set_=changes)
        )

    async def count_events(self) -> int:
        return int(await self._scalar(select(func.count()).select_from(events)))

    async def profile(self, user_key: str) -> dict[str, Any] | None:
        row = await self._rows(
            select(profiles.c.traits, profiles.c.first_seen, profiles.c.last_seen).where(
                profiles.c.user_key == user_key
            )
        )
        if not row:
            return None
        traits, first_seen, last_seen = row[0]
        return {"traits": traits, "first_seen": first_seen, "last_seen": last_seen}

    async def ids_of_person(self, user_id: str) -> set[str]:
        """``user_id`` and every anonymous id aliased to it."""
        previous = await self._rows(
            select(aliases.c.previous_id).where(aliases.c.user_id == user_id)
        )
        return {user_id, *(row[0] for row in previous)}

    async def count_person_events(self, ids: set[str]) -> int:
        return int(
            await self._scalar(
                select(func.count())
                .select_from(events)
                .where(or_(events.c.user_id.in_(ids), events.c.anonymous_id.in_(ids)))
            )
        )

    async def delete_person(self, ids: set[str]) -> dict[str, int]:
        """Delete every event, trait and alias of the person named by ``ids``."""
        async with self._transaction() as connection:
            removed_events = await connection.execute(
                delete(events).where(or_(events.c.user_id.in_(ids), events.c.anonymous_id.in_(ids)))
            )
            removed_profiles = await connection.execute(
                delete(profiles).where(profiles.c.user_key.in_(ids))
            )
            removed_aliases = await connection.execute(
                delete(aliases).where(
                    or_(aliases.c.user_id.in_(ids), aliases.c.previous_id.in_(ids))
                )
            )
        return {
            "events": removed_events.rowcount,
            "profiles": removed_profiles.rowcount,
            "aliases": removed_aliases.rowcount,
        }

    # --- reports -------------------------------------------------------------------------

    async def counts(
        self, start: datetime, end: datetime, filters: Filters = Filters()
    ) -> list[dict[str, Any]]:
        """Events and distinct people by event type and category in ``[start, end)``."""
        rows = await self._rows(
            select(
                events.c.event_type, events.c.category, func.count(), func.count(PERSON.distinct())
            )
            .select_from(_EVENTS_AND_ALIASES)
            .where(*_conditions(start, end, filters))
            .group_by(events.c.event_type, events.c.category)
        )
        return sorted(
            (
                {"event_type": t, "category": c, "count": int(n), "users": int(u)}
                for t, c, n, u in rows
            ),
            key=lambda row: (row["event_type"], row["category"]),
        )

    async def count_in_window(self, start: datetime, end: datetime, filters: Filters) -> int:
        return int(
            await self._scalar(
                select(func.count()).select_from(events).where(*_conditions(start, end, filters))
            )
        )

    async def breakdown(
        self,
        start: datetime,
        end: datetime,
        filters: Filters,
        path: Sequence[str],
        limit: int,
        *,
        array: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """The most frequent values of a property (or of a property of an array's items)."""
        if array:
            items = json_array_elements(events.c.properties, array).alias("item")
            source: Any = _EVENTS_AND_ALIASES.join(items, true())
            document = items.c.value
        else:
            source, document = _EVENTS_AND_ALIASES, events.c.properties
        kind, text = json_kind(document, path), json_text(document, path)
        grouped = (
            select(
                kind.label("kind"),
                text.label("text"),
                func.count().label("n"),
                func.count(PERSON.distinct()).label("users"),
            )
            .select_from(source)
            .where(*_conditions(start, end, filters), text.is_not(None))
            .group_by(kind, text)
            .cte("grouped")
        )
        # Ties at the limit are resolved below, in Python, so that both engines
        # (whose text collations differ) give the same answer.
        threshold = (
            select(grouped.c.n).order_by(grouped.c.n.desc()).limit(1).offset(limit - 1)
        ).scalar_subquery()
        rows = await self._rows(
            select(grouped.c.kind, grouped.c.text, grouped.c.n, grouped.c.users).where(
                grouped.c.n >= func.coalesce(threshold, 0)
            )
        )
        values = [
            {"value": json_value(k, t), "count": int(n), "users": int(u)} for k, t, n, u in rows
        ]
        return sorted(values, key=lambda v: (-v["count"], *value_order(v["value"])))[:limit]

    async def timeseries(
        self,
        start: datetime,
        end: datetime,
        filters: Filters,
        width: timedelta,
        breakdown: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Events and people per bucket of ``width`` from ``start`` (buckets with none left out)."""
        start_us = (start - datetime(1970, 1, 1, tzinfo=start.tzinfo)) // _MICROSECOND
        bucket = (
            (epoch_micros(events.c.occurred_at) - literal(start_us, BigInteger()))
            // literal(width // _MICROSECOND, BigInteger())
        ).label("bucket")
        columns: list[Any] = [bucket, func.count(), func.count(PERSON.distinct())]
        group_by: list[Any] = [bucket]
        if breakdown:
            kind = json_kind(events.c.properties, breakdown)
            text = json_text(events.c.properties, breakdown)
            columns += [kind, text]
            group_by += [kind, text]
        rows = await self._rows(
            select(*columns)
            .select_from(_EVENTS_AND_ALIASES)
            .where(*_conditions(start, end, filters))
            .group_by(*group_by)
        )
        return [
            {
                "bucket": int(row[0]),
                "count": int(row[1]),
                "users": int(row[2]),
                **({"value": json_value(row[3], row[4])} if breakdown else {}),
            }
            for row in rows
        ]

    async def funnel(
        self, steps: Sequence[FunnelStep], start: datetime, end: datetime
    ) -> list[int]:
        """People reaching each step, in order: step n at or after the person's step n-1."""
        ctes: list[Any] = []
        for index, step in enumerate(steps):
            conditions: list[ColumnElement[bool]] = [
                events.c.event_type == step.event_type,
                events.c.occurred_at < end,
                PERSON.is_not(None),
                *(
                    json_equals(events.c.properties, key.split("."), value)
                    for key, value in step.where.items()
                ),
            ]
            source: Any = _EVENTS_AND_ALIASES
            if index == 0:
                conditions.append(events.c.occurred_at >= start)
            else:
                previous = ctes[-1]
                source = source.join(
                    previous,
                    and_(previous.c.person == PERSON, events.c.occurred_at >= previous.c.t),
                )
            ctes.append(
                select(PERSON.label("person"), func.min(events.c.occurred_at).label("t"))
                .select_from(source)
                .where(*conditions)
                .group_by(PERSON)
                .cte(f"s{index}")
            )
        [row] = await self._rows(
            select(*(select(func.count()).select_from(cte).scalar_subquery() for cte in ctes))
        )
        return [int(value) for value in row]

    async def revenue(
        self, start: datetime, end: datetime, event_types: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Sums of monetary values by currency (exact, from ten-thousandths)."""
        rows = await self._rows(
            select(
                events.c.currency,
                func.sum(events.c.amount_e4),
                func.count(),
                func.count(PERSON.distinct()),
            )
            .select_from(_EVENTS_AND_ALIASES)
            .where(
                *_conditions(start, end, Filters(event_types=event_types)),
                events.c.amount_e4.is_not(None),
            )
            .group_by(events.c.currency)
        )
        return sorted(
            (
                {"currency": c, "total_e4": int(t), "events": int(n), "users": int(u)}
                for c, t, n, u in rows
            ),
            key=lambda row: str(row["currency"]),
        )

    # --- dashboards ----------------------------------------------------------------------

    async def save_dashboard(
        self, name: str, definition: Mapping[str, Any], *, replace: bool, now: datetime
    ) -> bool:
        """Store a dashboard; False if one of that name exists and ``replace`` is off."""
        return await self._save_named(dashboards, name, definition, replace=replace, now=now)

    async def get_dashboard(self, name: str) -> dict[str, Any] | None:
        return await self._get_named(dashboards, name)

    async def list_dashboards(self) -> list[dict[str, Any]]:
        return await self._list_named(dashboards)

    async def delete_dashboard(self, name: str) -> bool:
        return await self._delete_named(dashboards, name)

    # --- alert rules made through operations ----------------------------------------------

    async def save_alert_rule(
        self, name: str, definition: Mapping[str, Any], *, replace: bool, now: datetime
    ) -> bool:
        return await self._save_named(alert_rules, name, definition, replace=replace, now=now)

    async def get_alert_rule(self, name: str) -> dict[str, Any] | None:
        return await self._get_named(alert_rules, name)

    async def list_alert_rules(self) -> list[dict[str, Any]]:
        return await self._list_named(alert_rules)

    async def delete_alert_rule(self, name: str) -> bool:
        return await self._delete_named(alert_rules, name)

    # --- alert firings -------------------------------------------------------------------

    async def claim_alert(
        self, rule: str, window_start: datetime, event_count: int, now: datetime
    ) -> AlertClaim:
        """Record that ``rule`` fired in the window (once); return its delivery status."""
        async with self._transaction() as connection:
            await connection.execute(
                self._insert(alert_firings)
                .values(
                    rule=rule,
                    window_start=window_start,
                    event_count=event_count,
                    status="pending",
                    fired_at=now,
                )
                .on_conflict_do_nothing(index_elements=["rule", "window_start"])
            )
            status, count = (
                await connection.execute(
                    select(alert_firings.c.status, alert_firings.c.event_count).where(
                        alert_firings.c.rule == rule, alert_firings.c.window_start == window_start
                    )
                )
            ).one()
        return AlertClaim(status=str(status), event_count=int(count))

    async def settle_alert(
        self, rule: str, window_start: datetime, *, status: str, now: datetime, error: str = ""
    ) -> None:
        async with self._transaction() as connection:
            await connection.execute(
                update(alert_firings)
                .where(alert_firings.c.rule == rule, alert_firings.c.window_start == window_start)
                .values(status=status, notified_at=now, last_error=error or None)
            )

    async def alert_firings(self, rule: str | None = None) -> list[dict[str, Any]]:
        query = select(
            alert_firings.c.rule,
            alert_firings.c.window_start,
            alert_firings.c.event_count,
            alert_firings.c.status,
            alert_firings.c.notified_at,
            alert_firings.c.last_error,
        )
        if rule is not None:
            query = query.where(alert_firings.c.rule == rule)
        rows = await self._rows(query)
        return sorted(
            (
                {
                    "rule": r,
                    "window_start": w,
                    "event_count": int(n),
                    "status": s,
                    "notified_at": t,
                    "last_error": e,
                }
                for r, w, n, s, t, e in rows
            ),
            key=lambda firing: (firing["window_start"], firing["rule"]),
        )

    # --- named JSON documents ------------------------------------------------------------

    async def _save_named(
        self, table: Any, name: str, definition: Mapping[str, Any], *, replace: bool, now: datetime
    ) -> bool:
        stmt = self._insert(table).values(
            name=name, definition=dict(definition), created_at=now, updated_at=now
        )
        if replace:
            stmt = stmt.on_conflict_do_update(
                index_elements=["name"],
                set_={
                    "definition": stmt.excluded.definition,
                    "updated_at": stmt.excluded.updated_at,
                },
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=["name"])
        async with self._transaction() as connection:
            return (await connection.execute(stmt)).rowcount > 0

    async def _get_named(self, table: Any, name: str) -> dict[str, Any] | None:
        rows = await self._rows(
            select(table.c.definition, table.c.created_at, table.c.updated_at).where(
                table.c.name == name
            )
        )
        if not rows:
            return None
        definition, created_at, updated_at = rows[0]
        return {"definition": definition, "created_at": created_at, "updated_at": updated_at}

    async def _list_named(self, table: Any) -> list[dict[str, Any]]:
        rows = await self._rows(
            select(table.c.name, table.c.definition, table.c.created_at, table.c.updated_at)
        )
        return sorted(
            ({"name": n, "definition": d, "created_at": c, "updated_at": u} for n, d, c, u in rows),
            key=lambda row: str(row["name"]),
        )

    async def _delete_named(self, table: Any, name: str) -> bool:
        async with self._transaction() as connection:
            return (
                await connection.execute(delete(table).where(table.c.name == name))
            ).rowcount > 0

    # --- plumbing -------------------------------------------------------------------------

    async def _rows(self, query: Select[Any]) -> list[Any]:
        async with self._connection() as connection:
            return list((await connection.execute(query)).all())

    async def _scalar(self, query: Select[Any]) -> Any:
        async with self._connection() as connection:
            return (await connection.execute(query)).scalar_one()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection]:
        async with _guarded(), self.engine.connect() as connection:
            yield connection

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        async with _guarded(), self.engine.begin() as connection:
            yield connection


def _conditions(start: datetime, end: datetime, filters: Filters) -> list[ColumnElement[bool]]:
    conditions = [events.c.occurred_at >= start, events.c.occurred_at < end]
    if filters.event_type is not None:
        conditions.append(events.c.event_type == filters.event_type)
    if filters.category is not None:
        conditions.append(events.c.category == filters.category)
    if filters.event_types is not None:
        conditions.append(events.c.event_type.in_(list(filters.event_types)))
    return conditions


@asynccontextmanager
async def _guarded() -> AsyncIterator[None]:
    """Database failures as the plugin's two kinds: try again later, or never."""
    try:
        yield
    except (sa_exc.DataError, sa_exc.IntegrityError) as error:
        raise EventRejected(_one_line(error.orig or error)) from None
    except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as error:
        cause = getattr(error, "orig", None) or error
        raise StorageUnavailable(f"database unavailable: {_one_line(cause)}") from None
    except sa_exc.DBAPIError as error:
        if error.connection_invalidated:
            raise StorageUnavailable(
                f"database unavailable: {_one_line(error.orig or error)}"
            ) from None
        raise
    except OSError as error:
        raise StorageUnavailable(f"database unavailable: {_one_line(error)}") from None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def open_store(url: str, *, max_connections: int, timeout: float) -> EventStore:
    """The store for ``database_url``: ``postgresql://...`` or ``sqlite:///path``."""
    parsed = make_url(url)
    common: dict[str, Any] = {
        "json_serializer": _compact_json,
        # Errors are logged: their parameters would carry event data.
        "hide_parameters": True,
    }
    if parsed.drivername in ("postgresql", "postgres"):
        engine = create_async_engine(
            parsed.set(drivername="postgresql+psycopg"),
            pool_size=max_connections,
            max_overflow=0,
            pool_timeout=timeout,
            # A connection the server dropped (restart, pg_terminate_backend) is
            # noticed on checkout and replaced, instead of failing the next query.
            pool_pre_ping=True,
            connect_args={"connect_timeout": max(1, round(timeout))},
            **common,
        )
        return EventStore(engine)
    if parsed.drivername == "sqlite":
        memory = parsed.database in (None, "", ":memory:")
        engine = create_async_engine(
            parsed.set(
                drivername="sqlite+aiosqlite", database=":memory:" if memory else parsed.database
            ),
            connect_args={"timeout": timeout},
            # One in-memory database is one connection.
            **({"poolclass": StaticPool} if memory else {}),
            **common,
        )
        event.listen(engine.sync_engine, "connect", partial(_sqlite_pragmas, wal=not memory))
        return EventStore(engine)
    raise ValueError(f"unsupported database URL scheme in {url.split(':', 1)[0]!r}")


def _sqlite_pragmas(dbapi_connection: Any, record: Any, *, wal: bool) -> None:
    cursor = dbapi_connection.cursor()
    if wal:
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


__all__ = [
    "AlertClaim",
    "EventRejected",
    "EventStore",
    "Filters",
    "FunnelStep",
    "StorageUnavailable",
    "open_store",
]
