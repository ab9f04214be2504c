"""The analytics-events plugin on a real PostgreSQL server (and on SQLite), through the SDK runtime.

The plugin runs in-process (``serve_plugin``) or as a child process
(``switchboard plugin serve``) and is called over gRPC as the router calls it;
rows are counted in the database itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from switchboard.sdk import (
    ConfigError,
    InvalidInput,
    PermanentError,
    PluginClient,
    PluginServer,
    RetryableError,
    serve_plugin,
)
from tests.sdk.harness import PluginProcess, eventually, write_config
from tests.vendor.conftest import Database, RouterStandIn

ANALYTICS_PLUGIN = Path(__file__).resolve().parents[2] / "plugin-images" / "analytics-events"
sys.path.insert(0, str(ANALYTICS_PLUGIN))

from analytics_events_plugin import buffer  # noqa: E402  (a source root)
from analytics_events_plugin.events import StoredEvent  # noqa: E402
from analytics_events_plugin.migrations import LATEST_VERSION  # noqa: E402
from analytics_events_plugin.notify import (  # noqa: E402
    Notification,
    NotificationFailed,
    NotificationRejected,
    RouterNotifier,
)
from analytics_events_plugin.store import StorageUnavailable, open_store  # noqa: E402

ROUTER_TOKEN = "router-token-5b1d9e"


@dataclass
class Analytics:
    server: PluginServer
    client: PluginClient

    async def invoke(self, operation: str, params: dict[str, Any] | None = None) -> Any:
        return await self.client.invoke(operation, params or {})

    async def track(self, *events: dict[str, Any]) -> Any:
        return await self.invoke("track_events_batch", {"events": list(events)})


@asynccontextmanager
async def analytics(
    config: dict[str, Any], secrets: Path | None = None
) -> AsyncIterator[Analytics]:
    async with (
        serve_plugin(
            ANALYTICS_PLUGIN, config=config, secrets_dir=secrets, secrets_poll_interval=None
        ) as server,
        PluginClient(server.address, timeout=15) as client,
    ):
        yield Analytics(server, client)


async def stored(url: str, sql: str = "SELECT COUNT(*) FROM events") -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        cursor = await connection.execute(sql)  # type: ignore[arg-type]
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])


def page_views(count: int, user: str = "u1", **extra: Any) -> list[dict[str, Any]]:
    return [
        {"event": "page_view", "user_id": user, "properties": {"url": f"/p/{i}"}, **extra}
        for i in range(count)
    ]


def secrets_dir(directory: Path, **values: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for key, value in values.items():
        (directory / key).write_text(value)
    return directory


# --- buffering and flushing ----------------------------------------------------------


async def test_a_full_batch_is_written_at_once(database: Database) -> None:
    config = {"database_url": database.url, "batch_size": 10, "flush_interval": 600}
    async with analytics(config) as plugin:
        accepted = await plugin.track(*page_views(9))
        assert accepted["accepted"] == 9
        await asyncio.sleep(0.3)
        assert await stored(database.url) == 0

        await plugin.invoke("track_event", page_views(1)[0])

        async def written() -> bool:
            return await stored(database.url) == 10

        await eventually(written, within=10, what="a full batch written")


async def test_a_partial_batch_is_written_after_flush_interval(database: Database) -> None:
    config = {"database_url": database.url, "batch_size": 1000, "flush_interval": 0.5}
    async with analytics(config) as plugin:
        started = time.monotonic()
        await plugin.track(*page_views(3))

        async def written() -> bool:
            return await stored(database.url) == 3

        await eventually(written, within=10, what="buffered events written on time")
        assert time.monotonic() - started < 5


async def test_sigterm_writes_every_buffered_event(database: Database, tmp_path: Path) -> None:
    config = {"database_url": database.url, "batch_size": 1000, "flush_interval": 600}
    child = PluginProcess(
        ANALYTICS_PLUGIN,
        {
            "SWITCHBOARD_PLUGIN_CONFIG": str(write_config(tmp_path / "config.json", config)),
            "SWITCHBOARD_PLUGIN_SECRETS_DIR": str(secrets_dir(tmp_path / "secrets")),
        },
    )
    try:
        address = await child.async_wait_serving()
        async with PluginClient(address) as client:
            await client.invoke("track_events_batch", {"events": page_views(50)})
            for event in page_views(5, user="u2"):
                await client.invoke("track_event", event)
        assert await stored(database.url) == 0

        child.terminate()

        assert await child.async_wait_exit() == 0
        assert await stored(database.url) == 55
        flushed = await child.async_wait_for_record("Flushed buffered events before stopping")
        assert flushed["events"] == 55
    finally:
        child.kill()


class UnavailableStore:
    """A database that is away for the first ``failures`` writes."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.written: list[StoredEvent] = []

    async def insert_events(self, events: list[StoredEvent]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise StorageUnavailable("connection refused")
        self.written.extend(events)


def event_buffer(store: UnavailableStore, health: list[bool]) -> buffer.EventBuffer:
    async def report_health(healthy: bool) -> None:
        health.append(healthy)

    settings = buffer.BufferSettings(
        batch_size=10,
        flush_interval=0.4,
        max_buffered_events=1,
        backpressure_timeout=1,
        database_timeout=1,
    )
    return buffer.EventBuffer(store, settings, logging.getLogger("test"), report_health)  # type: ignore[arg-type]


def an_event() -> StoredEvent:
    now = datetime.now(UTC)
    return StoredEvent("e1", "page_view", "page", "u1", None, now, now, {})


async def test_a_failed_write_waits_doubling_jittered_delays_up_to_the_flush_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jitter_ranges: list[tuple[float, float]] = []

    def no_wait(low: float, high: float) -> float:
        jitter_ranges.append((low, high))
        return 0.0

    monkeypatch.setattr(random, "uniform", no_wait)
    store, health = UnavailableStore(failures=5), list[bool]()
    events = event_buffer(store, health)
    await events.add([an_event()])

    await events.drain(everything=True)

    assert [event.event_id for event in store.written] == ["e1"]
    assert jitter_ranges == [(0.0, 0.05), (0.0, 0.1), (0.0, 0.2), (0.0, 0.4), (0.0, 0.4)]
    # NOT_SERVING while the full buffer could not be written, SERVING once it was.
    assert health == [False] * 5 + [True]


async def test_a_stopping_buffer_gives_up_on_an_absent_database() -> None:
    store = UnavailableStore(failures=1_000_000)
    events = event_buffer(store, [])
    await events.add([an_event()])
    await events.stop(give_up_after=0.3)

    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        await events.drain(everything=True)

    assert time.monotonic() - started < 2
    assert len(events) == 1  # kept: the plugin's deactivate says what was not written


async def test_events_survive_terminated_database_connections(database: Database) -> None:
    config = {
        "database_url": database.url,
        "batch_size": 10,
        "flush_interval": 0.2,
        "database_timeout": 2,
    }
    async with analytics(config) as plugin:
        await plugin.track(*page_views(10))

        async def first_batch() -> bool:
            return await stored(database.url) == 10

        await eventually(first_batch, within=10)

        assert database.server.terminate_connections(database.name) >= 1
        await plugin.track(*page_views(15, user="u2"))

        async def all_written() -> bool:
            return await stored(database.url) == 25

        await eventually(all_written, within=15, what="events written on new connections")


async def test_a_restarted_database_loses_no_event(database: Database) -> None:
    config = {
        "database_url": database.url,
        "batch_size": 5,
        "flush_interval": 0.2,
        "database_timeout": 1,
    }
    async with analytics(config) as plugin:
        await plugin.track(*page_views(5))

        async def first() -> bool:
            return await stored(database.url) == 5

        await eventually(first, within=10)
        database.server.stop()
        try:
            await plugin.track(*page_views(12, user="u2"))
            await asyncio.sleep(0.5)
        finally:
            database.server.start()

        async def everything() -> bool:
            return await stored(database.url) == 17

        await eventually(everything, within=20, what="buffered events written after restart")


async def test_a_full_buffer_pushes_back_and_memory_stays_bounded(database: Database) -> None:
    config = {
        "database_url": database.url,
        "batch_size": 10,
        "flush_interval": 0.1,
        "max_buffered_events": 20,
        "backpressure_timeout": 0.3,
        "database_timeout": 0.5,
    }
    async with analytics(config) as plugin:
        database.server.refuse_connections(database.name)
        await plugin.track(*page_views(20))

        started = time.monotonic()
        with pytest.raises(RetryableError, match="buffer is full") as raised:
            await plugin.track(*page_views(1, user="late"))
        assert 0.25 <= time.monotonic() - started < 3
        assert raised.value.retry_after is not None
        with pytest.raises(InvalidInput, match="more than the plugin buffers"):
            await plugin.track(*page_views(21))
        assert len(plugin.server.plugin.buffer) <= 20  # type: ignore[attr-defined]

        async def not_serving() -> bool:
            return await plugin.client.health() == "NOT_SERVING"

        await eventually(not_serving, within=10, what="NOT_SERVING while nothing can be stored")

        database.server.accept_connections(database.name)

        async def drained() -> bool:
            return await stored(database.url) == 20

        await eventually(drained, within=15, what="the buffer written once the database is back")

        async def serving() -> bool:
            return await plugin.client.health() == "SERVING"

        await eventually(serving, within=10)
        assert (await plugin.track(*page_views(1, user="later")))["accepted"] == 1


async def test_a_resent_event_id_is_stored_once(database: Database) -> None:
    config = {"database_url": database.url, "batch_size": 1, "flush_interval": 600}
    async with analytics(config) as plugin:
        event = {**page_views(1)[0], "event_id": "evt-42"}
        await plugin.track(event)
        await plugin.track(event, {**event, "event_id": "evt-43"})
        report = await plugin.invoke("generate_report", {"report_type": "counts"})
        assert report["total"] == 2
        assert await stored(database.url) == 2


# --- validation ------------------------------------------------------------------------


async def test_bad_events_are_refused_naming_the_index_and_field(database: Database) -> None:
    config = {
        "database_url": database.url,
        "batch_size": 1,
        "flush_interval": 0.1,
        "event_schemas": {
            "signup": {
                "type": "object",
                "properties": {"plan": {"enum": ["free", "pro"]}},
                "required": ["plan"],
            }
        },
    }
    async with analytics(config) as plugin:
        events = [
            {"event": "page_view", "properties": {"url": "/ok"}},
            {"event": "page_view", "properties": {"title": "no url"}},
            {"event": "signup", "properties": {"plan": "gold"}},
            {
                "event": "transaction",
                "properties": {"transaction_id": "t1", "amount": -5, "currency": "EUR"},
            },
            {"event": "login_failed", "category": "gossip"},
            {"event": "page_view", "properties": {"url": "/x"}, "timestamp": "yesterday"},
            {"event": "note", "properties": {"tags": ["ok", "nul\x00here"]}},
        ]
        with pytest.raises(InvalidInput) as raised:
            await plugin.track(*events)

        message = raised.value.message
        assert "params.events[1].properties: 'url' is a required property" in message
        assert "params.events[2].properties.plan: 'gold' is not one of ['free', 'pro']" in message
        assert "params.events[3].properties.amount: -5 is less than the minimum of 0" in message
        assert "params.events[4].category: 'gossip' is not one of" in message
        assert "params.events[5].timestamp: 'yesterday' is not an RFC 3339 date-time" in message
        assert "params.events[6].properties.tags[1]: contains a NUL character" in message
        assert "events[0]" not in message

        with pytest.raises(InvalidInput, match=r"params\.events\[1\]: Additional properties"):
            await plugin.track(events[0], {"event": "page_view", "colour": "red"})
        with pytest.raises(InvalidInput, match=r"params\.properties\.url: 7 is not of type"):
            await plugin.invoke("track_event", {"event": "page_view", "properties": {"url": 7}})
        with pytest.raises(InvalidInput, match=r"has no time zone"):
            await plugin.invoke(
                "track_event",
                {"event": "custom", "timestamp": "2026-03-01T10:00:00"},
            )
        await asyncio.sleep(0.3)
        assert await stored(database.url) == 0  # all or nothing


async def test_undeclared_event_types_can_be_refused(tmp_path: Path) -> None:
    config = {
        "database_url": f"sqlite:///{tmp_path / 'events.sqlite3'}",
        "allow_undeclared_events": False,
    }
    async with analytics(config) as plugin:
        with pytest.raises(InvalidInput, match=r"params\.event: 'mystery' has no schema"):
            await plugin.invoke("track_event", {"event": "mystery"})


async def test_bad_configs_are_refused(tmp_path: Path) -> None:
    base = {"database_url": f"sqlite:///{tmp_path / 'events.sqlite3'}"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"database_url": "mysql://x"}, "config.database_url: use postgresql://"),
        ({"batch_size": 50, "max_buffered_events": 10}, "config.max_buffered_events: 10 is less"),
        (
            {"event_schemas": {"signup": {"type": "objekt"}}},
            "config.event_schemas.signup.type: not a valid JSON Schema",
        ),
        (
            {
                "alert_rules": [
                    {
                        "name": "r",
                        "threshold": 1,
                        "window_seconds": 60,
                        "channel": "email",
                        "recipient": "a@example.com",
                    }
                ]
            },
            "config.router_url: needed",
        ),
    ]
    for extra, message in cases:
        with pytest.raises(ConfigError) as raised:
            async with analytics({**base, **extra}):
                pass
        assert message in raised.value.message


# --- reports -----------------------------------------------------------------------------

DAY = "2026-03-01"
RANGE = {"start": f"{DAY}T00:00:00Z", "end": "2026-03-02T00:00:00Z"}


def at(clock: str, day: str = DAY) -> str:
    return f"{day}T{clock}:00Z"


def known_events() -> list[dict[str, Any]]:
    def view(user: str, url: str, clock: str, day: str = DAY) -> dict[str, Any]:
        return {
            "event": "page_view",
            "user_id": user,
            "timestamp": at(clock, day),
            "properties": {"url": url},
        }

    def conversion(user: str, goal: str, clock: str) -> dict[str, Any]:
        return {
            "event": "conversion",
            "user_id": user,
            "timestamp": at(clock),
            "properties": {"goal": goal},
        }

    def transaction(
        user: str, tx: str, amount: float, currency: str, products: list[str], clock: str
    ) -> dict[str, Any]:
        return {
            "event": "transaction",
            "user_id": user,
            "timestamp": at(clock),
            "properties": {
                "transaction_id": tx,
                "amount": amount,
                "currency": currency,
                "items": [{"product_id": product, "quantity": 1} for product in products],
            },
        }

    return [
        view("u1", "/home", "10:00"),
        view("u1", "/pricing", "10:05"),
        conversion("u1", "signup", "10:10"),
        transaction("u1", "t1", 19.99, "EUR", ["p1", "p2"], "10:20"),
        view("u2", "/pricing", "11:00"),
        conversion("u2", "signup", "11:05"),
        transaction("u2", "t2", 5.01, "EUR", ["p1"], "11:10"),
        view("u3", "/home", "12:00"),
        conversion("u3", "newsletter", "12:05"),
        conversion("u4", "signup", "09:00"),  # before u4's page view: not in the funnel
        view("u4", "/pricing", "09:30"),
        transaction("u5", "t3", 100, "USD", ["p3"], "13:00"),
        {
            "event": "login_failed",
            "category": "security",
            "user_id": "u9",
            "timestamp": at("14:00"),
        },
        {
            "event": "login_failed",
            "category": "security",
            "user_id": "u9",
            "timestamp": at("14:01"),
        },
        view("u1", "/home", "23:59", day="2026-02-28"),  # outside the range
    ]


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        database: Database = request.getfixturevalue("database")
        return database.url
    return f"sqlite:///{tmp_path / 'events.sqlite3'}"


@asynccontextmanager
async def on_both_engines(
    database: Database, tmp_path: Path, **config: Any
) -> AsyncIterator[dict[str, Analytics]]:
    """The plugin twice, same config, one on PostgreSQL and one on SQLite."""
    base = {"batch_size": 1000, "flush_interval": 600, **config}
    async with (
        analytics({**base, "database_url": database.url}) as postgresql,
        analytics({**base, "database_url": f"sqlite:///{tmp_path / 'both.sqlite3'}"}) as sqlite,
    ):
        yield {"postgresql": postgresql, "sqlite": sqlite}


async def same_on_both(
    plugins: dict[str, Analytics], operation: str, params: dict[str, Any]
) -> Any:
    """Ask both engines; their answers must be identical. Returns the answer."""
    answers = {engine: await plugin.invoke(operation, params) for engine, plugin in plugins.items()}
    assert answers["postgresql"] == answers["sqlite"], f"{operation} {params}"
    return answers["postgresql"]


async def test_funnel_filters_compare_values_as_json_on_both_engines(
    database: Database, tmp_path: Path
) -> None:
    def visit_then(user: str, properties: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "event": "page_view",
                "user_id": user,
                "timestamp": at("10:00"),
                "properties": {"url": "/"},
            },
            {
                "event": "signup",
                "user_id": user,
                "timestamp": at("10:01"),
                "properties": properties,
            },
        ]

    events = [
        *visit_then("u1", {"value": 10}),
        *visit_then("u2", {"seats": "5"}),
        *visit_then("u3", {"seats": 5, "value": 10.5}),
        *visit_then("u4", {"trial": True}),
    ]

    async def second_step(where: dict[str, Any]) -> int:
        funnel = await same_on_both(
            plugins,
            "generate_report",
            {
                "report_type": "funnel",
                "parameters": {
                    **RANGE,
                    "steps": ["page_view", {"event": "signup", "where": where}],
                },
            },
        )
        return int(funnel["steps"][1]["users"])

    async with on_both_engines(database, tmp_path) as plugins:
        for plugin in plugins.values():
            await plugin.track(*events)

        assert await second_step({"value": 10}) == 1
        assert await second_step({"value": 10.5}) == 1
        assert await second_step({"seats": 5}) == 1
        assert await second_step({"seats": "5"}) == 1
        assert await second_step({"trial": True}) == 1
        assert await second_step({"trial": "true"}) == 0
        assert await second_step({"value": "10"}) == 0


async def test_reports_give_the_known_figures(database_url: str) -> None:
    config = {"database_url": database_url, "batch_size": 100, "flush_interval": 600}
    async with analytics(config) as plugin:
        await plugin.track(*known_events())

        counts = await plugin.invoke(
            "generate_report", {"report_type": "counts", "parameters": RANGE}
        )
        assert counts["total"] == 14
        assert counts["by_type"] == {
            "conversion": 4,
            "login_failed": 2,
            "page_view": 5,
            "transaction": 3,
        }
        assert counts["by_category"] == {"business": 12, "security": 2}
        security = await plugin.invoke(
            "generate_report",
            {"report_type": "counts", "parameters": {**RANGE, "category": "security"}},
        )
        assert security["rows"] == [
            {"event_type": "login_failed", "category": "security", "count": 2, "users": 1}
        ]

        funnel = await plugin.invoke(
            "generate_report",
            {
                "report_type": "funnel",
                "parameters": {
                    **RANGE,
                    "steps": [
                        "page_view",
                        {"event": "conversion", "where": {"goal": "signup"}},
                        "transaction",
                    ],
                },
            },
        )
        assert [step["users"] for step in funnel["steps"]] == [4, 2, 2]
        assert [step["conversion_from_previous"] for step in funnel["steps"]] == [1.0, 0.5, 1.0]
        assert funnel["steps"][2]["conversion_from_first"] == 0.5

        revenue = await plugin.invoke(
            "generate_report", {"report_type": "revenue", "parameters": RANGE}
        )
        assert revenue["currencies"] == [
            {"currency": "EUR", "total": 25.0, "total_exact": "25.0000", "events": 2, "users": 2},
            {"currency": "USD", "total": 100.0, "total_exact": "100.0000", "events": 1, "users": 1},
        ]

        pages = await plugin.invoke(
            "generate_report",
            {
                "report_type": "top",
                "parameters": {**RANGE, "event_type": "page_view", "property": "url"},
            },
        )
        assert pages["items"] == [
            {"value": "/pricing", "count": 3, "users": 3},
            {"value": "/home", "count": 2, "users": 2},
        ]
        products = await plugin.invoke(
            "generate_report",
            {
                "report_type": "top",
                "parameters": {
                    **RANGE,
                    "event_type": "transaction",
                    "property": "items[].product_id",
                    "limit": 2,
                },
            },
        )
        assert products["items"] == [
            {"value": "p1", "count": 2, "users": 2},
            {"value": "p2", "count": 1, "users": 1},
        ]

        summary = await plugin.invoke(
            "generate_report", {"report_type": "summary", "parameters": RANGE}
        )
        assert summary["total"] == 14
        assert [c["currency"] for c in summary["currencies"]] == ["EUR", "USD"]
        recent = await plugin.invoke("generate_report", {"report_type": "counts"})
        assert recent["total"] == 0  # the default range is the last 24 hours


async def test_report_parameters_are_checked(tmp_path: Path) -> None:
    config = {"database_url": f"sqlite:///{tmp_path / 'events.sqlite3'}"}
    async with analytics(config) as plugin:
        with pytest.raises(
            InvalidInput, match=r"params\.parameters\.steps: \['page_view'\] is too short"
        ):
            await plugin.invoke(
                "generate_report", {"report_type": "funnel", "parameters": {"steps": ["page_view"]}}
            )
        with pytest.raises(InvalidInput, match=r"params\.report_type: 'pie' is not one of"):
            await plugin.invoke("generate_report", {"report_type": "pie"})
        with pytest.raises(InvalidInput, match=r"params\.parameters: start .* is not before end"):
            await plugin.invoke(
                "generate_report",
                {"report_type": "counts", "parameters": {"start": at("10:00"), "end": at("09:00")}},
            )
        with pytest.raises(
            InvalidInput, match=r"params\.parameters\.property: 'items\[\]' does not match"
        ):
            await plugin.invoke(
                "generate_report",
                {"report_type": "top", "parameters": {"event_type": "x", "property": "items[]"}},
            )


# --- dashboards ---------------------------------------------------------------------------


async def test_dashboards_are_saved_and_return_their_data(database: Database) -> None:
    config = {"database_url": database.url, "batch_size": 100, "flush_interval": 600}
    dashboard = {
        "name": "sales",
        "title": "Sales",
        "widgets": [
            {"title": "Revenue", "report_type": "revenue", "parameters": RANGE},
            {
                "title": "Top pages",
                "report_type": "top",
                "parameters": {**RANGE, "event_type": "page_view", "property": "url", "limit": 1},
            },
        ],
    }
    async with analytics(config) as plugin:
        await plugin.track(*known_events())
        assert (await plugin.invoke("create_dashboard", dashboard))["saved"] is True
        assert (await plugin.invoke("create_dashboard", dashboard))["saved"] is True  # same again

        result = await plugin.invoke("get_dashboard", {"name": "sales"})

        assert result["title"] == "Sales"
        revenue, pages = result["widgets"]
        assert [c["total_exact"] for c in revenue["data"]["currencies"]] == ["25.0000", "100.0000"]
        assert pages["data"]["items"] == [{"value": "/pricing", "count": 3, "users": 3}]
        narrowed = await plugin.invoke(
            "get_dashboard",
            {"name": "sales", "start": at("11:00"), "end": at("12:00")},
        )
        assert [c["total_exact"] for c in narrowed["widgets"][0]["data"]["currencies"]] == [
            "5.0100"
        ]

        changed = {**dashboard, "title": "Other"}
        with pytest.raises(PermanentError, match="exists with another definition"):
            await plugin.invoke("create_dashboard", changed)
        await plugin.invoke("create_dashboard", {**changed, "replace": True})
        assert (await plugin.invoke("get_dashboard", {"name": "sales"}))["title"] == "Other"
        with pytest.raises(PermanentError, match="no dashboard named 'nope'"):
            await plugin.invoke("get_dashboard", {"name": "nope"})


# --- alert rules --------------------------------------------------------------------------


def alert_config(database_url: str, router: RouterStandIn, **extra: Any) -> dict[str, Any]:
    return {
        "database_url": database_url,
        "batch_size": 100,
        "flush_interval": 0.1,
        "router_url": router.url,
        "alert_evaluation_interval": 0.1,
        "alert_rules": [
            {
                "name": "security-burst",
                "category": "security",
                "threshold": 3,
                "window_seconds": 3600,
                "channel": "email",
                "recipient": "soc@example.com",
                "subject": "Security events burst",
            }
        ],
        **extra,
    }


def security_events(count: int, moment: datetime) -> list[dict[str, Any]]:
    stamp = moment.isoformat().replace("+00:00", "Z")
    return [
        {"event": "login_failed", "category": "security", "user_id": f"u{i}", "timestamp": stamp}
        for i in range(count)
    ]


def window_key(moment: datetime) -> str:
    start = moment.replace(minute=0, second=0, microsecond=0)
    return "alert:security-burst:" + start.isoformat().replace("+00:00", "Z")


async def test_an_alert_rule_notifies_once_per_window(
    database: Database, router: RouterStandIn, tmp_path: Path
) -> None:
    secrets = secrets_dir(tmp_path / "secrets", ROUTER_TOKEN=ROUTER_TOKEN)
    now = datetime.now(UTC)
    async with analytics(alert_config(database.url, router), secrets) as plugin:
        await plugin.track(*security_events(3, now))
        await asyncio.sleep(0.6)
        assert router.requests == []  # 3 is not more than the threshold

        await plugin.track(*security_events(2, now))

        await eventually(lambda: len(router.delivered) == 1, within=10, what="one notification")
        await plugin.track(*security_events(5, now))
        await asyncio.sleep(0.8)  # several more evaluations of the same window

        assert len(router.requests) == 1
        [message] = router.delivered
        assert message["idempotencyKey"] == window_key(now)
        assert (message["channel"], message["recipient"]) == ("email", "soc@example.com")
        assert message["subject"] == "Security events burst"
        assert "5 security events" in message["content"]
        assert router.requests[0]["headers"]["Authorization"] == f"Bearer {ROUTER_TOKEN}"
        status = await plugin.invoke("list_alert_rules")
        [firing] = status["firings"]
        assert (firing["rule"], firing["status"], firing["event_count"]) == (
            "security-burst",
            "sent",
            5,
        )


async def test_a_failed_notification_is_retried_with_the_same_key(
    database: Database, router: RouterStandIn, tmp_path: Path
) -> None:
    router.script = [503, 503]
    secrets = secrets_dir(tmp_path / "secrets", ROUTER_TOKEN=ROUTER_TOKEN)
    now = datetime.now(UTC)
    async with analytics(alert_config(database.url, router), secrets) as plugin:
        await plugin.track(*security_events(4, now))

        await eventually(lambda: len(router.delivered) == 1, within=10, what="delivered")
        await asyncio.sleep(0.5)

        assert len(router.requests) == 3
        assert {r["body"]["idempotencyKey"] for r in router.requests} == {window_key(now)}
        assert len(router.delivered) == 1


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[Notification] = []

    async def send(self, notification: Notification) -> None:
        self.sent.append(notification)

    async def close(self) -> None:
        pass


async def test_each_window_fires_on_its_own(tmp_path: Path, router: RouterStandIn) -> None:
    from analytics_events_plugin import AnalyticsEventsPlugin

    recorder = _Recorder()

    class Recorded(AnalyticsEventsPlugin):
        def build_notifier(self) -> Any:
            return recorder

    config = alert_config(f"sqlite:///{tmp_path / 'events.sqlite3'}", router, batch_size=1)
    plugin = Recorded(config=config, secrets={"ROUTER_TOKEN": ROUTER_TOKEN})
    plugin.validate_config()
    await plugin.initialize()
    try:
        ten = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
        eleven = ten + timedelta(hours=1)
        await plugin.track_events_batch({"events": security_events(4, ten)})
        await plugin.track_events_batch({"events": security_events(4, eleven)})
        await plugin.buffer.drain(everything=True)

        await plugin.evaluate_alerts(ten + timedelta(minutes=5))
        await plugin.evaluate_alerts(ten + timedelta(minutes=20))
        await plugin.evaluate_alerts(eleven + timedelta(minutes=1))
        await plugin.evaluate_alerts(eleven + timedelta(minutes=50))

        assert [n.idempotency_key for n in recorder.sent] == [
            "alert:security-burst:2026-03-01T10:00:00Z",
            "alert:security-burst:2026-03-01T11:00:00Z",
        ]
    finally:
        await plugin.deactivate()
        await plugin.cleanup()


async def test_an_event_the_database_refuses_does_not_block_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from analytics_events_plugin import AnalyticsEventsPlugin
    from analytics_events_plugin.store import EventRejected, EventStore

    class RefusesOne:
        """The real store, except that it refuses any batch holding event ``bad``."""

        def __init__(self, store: EventStore) -> None:
            self.store = store

        async def insert_events(self, events: list[StoredEvent]) -> None:
            if any(event.event_id == "bad" for event in events):
                raise EventRejected("invalid byte sequence")
            await self.store.insert_events(events)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.store, name)

    config = {"database_url": f"sqlite:///{tmp_path / 'events.sqlite3'}", "flush_interval": 600}
    plugin = AnalyticsEventsPlugin(config=config)
    plugin.validate_config()
    await plugin.initialize()
    real_store = plugin.store
    plugin.buffer.store = RefusesOne(real_store)  # type: ignore[assignment]
    try:
        events = page_views(3)
        events[1]["event_id"] = "bad"
        await plugin.track_events_batch({"events": events})
        await plugin.buffer.drain(everything=True)

        assert await real_store.count_events() == 2
        assert not len(plugin.buffer)
        assert any(
            r.getMessage() == "Dropped an event the database refused" for r in caplog.records
        )
    finally:
        await plugin.deactivate()
        await plugin.cleanup()


async def test_router_notifier_posts_the_message_and_types_failures() -> None:
    seen: list[httpx.Request] = []
    answers = iter([202, 503, 400])

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(next(answers), json={})

    notifier = RouterNotifier("http://router.test/", "tok", transport=httpx.MockTransport(handler))
    notification = Notification(
        "slack", "#soc", "5 events", "Alert", "alert:r:2026-03-01T10:00:00Z"
    )
    try:
        await notifier.send(notification)
        with pytest.raises(NotificationFailed, match="503"):
            await notifier.send(notification)
        with pytest.raises(NotificationRejected, match="400"):
            await notifier.send(notification)
    finally:
        await notifier.close()

    assert str(seen[0].url) == "http://router.test/v1/messages"
    assert seen[0].headers["Authorization"] == "Bearer tok"
    assert json.loads(seen[0].content) == {
        "channel": "slack",
        "recipient": "#soc",
        "content": "5 events",
        "subject": "Alert",
        "idempotencyKey": "alert:r:2026-03-01T10:00:00Z",
    }


# --- storage ----------------------------------------------------------------------------------


async def test_migrations_are_versioned_and_applied_once(database: Database) -> None:
    config = {"database_url": database.url}
    async with analytics(config):
        pass
    async with analytics(config):
        pass
    assert await stored(database.url, "SELECT COUNT(*) FROM schema_migrations") == LATEST_VERSION
    assert (
        await stored(database.url, "SELECT MAX(version) FROM schema_migrations") == LATEST_VERSION
    )

    async with await psycopg.AsyncConnection.connect(database.url, autocommit=True) as connection:
        await connection.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (99, 'future')"
        )
    with pytest.raises(ConfigError, match="schema is at version 99, newer than this plugin"):
        async with analytics(config):
            pass


async def test_sqlite_store_migrates_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.sqlite3'}"
    first = open_store(url, max_connections=1, timeout=5)
    assert await first.open() == list(range(1, LATEST_VERSION + 1))
    await first.close()
    again = open_store(url, max_connections=1, timeout=5)
    assert await again.open() == []
    await again.close()


async def test_sqlite_local_mode_keeps_events_across_restarts(tmp_path: Path) -> None:
    config = {"database_url": f"sqlite:///{tmp_path / 'events.sqlite3'}", "flush_interval": 600}
    async with analytics(config) as plugin:
        await plugin.track(*page_views(7))
    async with analytics(config) as plugin:
        report = await plugin.invoke("generate_report", {"report_type": "counts"})
        assert report["by_type"] == {"page_view": 7}


# The schema as plugin versions before the SQLAlchemy store shipped it (migrations 1 to 3).
_SHIPPED_SCHEMA = {
    "postgresql": [
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        "CREATE TABLE events (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
        "event_id TEXT NOT NULL UNIQUE, event_type TEXT NOT NULL, category TEXT NOT NULL, "
        "user_id TEXT, session_id TEXT, occurred_at TIMESTAMPTZ NOT NULL, "
        "received_at TIMESTAMPTZ NOT NULL, properties JSONB NOT NULL, amount_e4 BIGINT, "
        "currency TEXT)",
        "CREATE TABLE dashboards (name TEXT PRIMARY KEY, definition JSONB NOT NULL, "
        "created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL)",
        "CREATE TABLE alert_firings (rule TEXT NOT NULL, window_start TIMESTAMPTZ NOT NULL, "
        "event_count BIGINT NOT NULL, status TEXT NOT NULL, fired_at TIMESTAMPTZ NOT NULL, "
        "notified_at TIMESTAMPTZ, last_error TEXT, PRIMARY KEY (rule, window_start))",
        "INSERT INTO schema_migrations (version, name) VALUES (1, 'events'), "
        "(2, 'dashboards'), (3, 'alert firings')",
        "INSERT INTO events (event_id, event_type, category, user_id, occurred_at, received_at, "
        "properties) VALUES ('old-1', 'page_view', 'business', 'u1', "
        "'2026-03-01T10:00:00Z', '2026-03-01T10:00:01Z', '{\"url\": \"/old\"}')",
    ],
    "sqlite": [
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "applied_at TEXT NOT NULL)",
        "CREATE TABLE events (id INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, "
        "event_type TEXT NOT NULL, category TEXT NOT NULL, user_id TEXT, session_id TEXT, "
        "occurred_at INTEGER NOT NULL, received_at INTEGER NOT NULL, properties TEXT NOT NULL, "
        "amount_e4 INTEGER, currency TEXT)",
        "CREATE TABLE dashboards (name TEXT PRIMARY KEY, definition TEXT NOT NULL, "
        "created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)",
        "CREATE TABLE alert_firings (rule TEXT NOT NULL, window_start INTEGER NOT NULL, "
        "event_count INTEGER NOT NULL, status TEXT NOT NULL, fired_at INTEGER NOT NULL, "
        "notified_at INTEGER, last_error TEXT, PRIMARY KEY (rule, window_start))",
        "INSERT INTO schema_migrations VALUES (1, 'events', '2026-03-01'), "
        "(2, 'dashboards', '2026-03-01'), (3, 'alert firings', '2026-03-01')",
        # Times were microseconds since 1970: 2026-03-01T10:00:00Z.
        "INSERT INTO events (event_id, event_type, category, user_id, occurred_at, received_at, "
        "properties) VALUES ('old-1', 'page_view', 'business', 'u1', 1772359200000000, "
        '1772359201000000, \'{"url":"/old"}\')',
    ],
}


async def test_a_database_from_an_earlier_plugin_version_is_carried_forward(
    database_url: str,
) -> None:
    if database_url.startswith("postgresql"):
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as db:
            for statement in _SHIPPED_SCHEMA["postgresql"]:
                await db.execute(statement)  # type: ignore[arg-type]
    else:
        import sqlite3

        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as db:
            for statement in _SHIPPED_SCHEMA["sqlite"]:
                db.execute(statement)
    config = {"database_url": database_url, "batch_size": 100, "flush_interval": 600}
    async with analytics(config) as plugin:
        await plugin.track(*page_views(1, user="u2", timestamp=at("11:00")))
        report = await plugin.invoke(
            "generate_report",
            {
                "report_type": "top",
                "parameters": {**RANGE, "event_type": "page_view", "property": "url"},
            },
        )
        assert report["items"] == [
            {"value": "/old", "count": 1, "users": 1},
            {"value": "/p/0", "count": 1, "users": 1},
        ]
