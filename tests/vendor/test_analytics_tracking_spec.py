"""The analytics-events plugin as analytics libraries speak to it, on PostgreSQL and SQLite alike.

Every scenario runs the same calls against the plugin twice, once on a real
PostgreSQL server and once on SQLite, and every answer must be identical.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from switchboard.sdk import InvalidInput, PermanentError
from tests.sdk.harness import eventually
from tests.vendor.conftest import Database, RouterStandIn
from tests.vendor.test_analytics_events import (
    RANGE,
    ROUTER_TOKEN,
    analytics,
    at,
    known_events,
    on_both_engines,
    same_on_both,
    secrets_dir,
    security_events,
)


def stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def report(report_type: str, **parameters: Any) -> dict[str, Any]:
    return {"report_type": report_type, "parameters": {**RANGE, **parameters}}


async def track_on_both(plugins: dict[str, Any], operation: str, params: dict[str, Any]) -> Any:
    """Send a call to both engines (answers name generated ids, so they differ)."""
    answers = [await plugin.invoke(operation, params) for plugin in plugins.values()]
    assert answers[0].keys() == answers[1].keys()
    return answers[0]


# --- every report, both engines --------------------------------------------------------


async def test_every_report_gives_identical_answers_on_both_engines(
    database: Database, tmp_path: Path
) -> None:
    async with on_both_engines(database, tmp_path) as plugins:
        for plugin in plugins.values():
            await plugin.track(*known_events())

        counts = await same_on_both(plugins, "generate_report", report("counts"))
        assert counts["total"] == 14
        by_goal = await same_on_both(
            plugins,
            "generate_report",
            report("counts", event_type="conversion", breakdown="goal"),
        )
        assert by_goal["breakdown"] == {
            "property": "goal",
            "values": [
                {"value": "signup", "count": 3, "users": 3},
                {"value": "newsletter", "count": 1, "users": 1},
            ],
        }
        by_amount = await same_on_both(
            plugins,
            "generate_report",
            report("counts", event_type="transaction", breakdown="amount"),
        )
        # Ties are ordered by value (numbers as numbers).
        assert [v["value"] for v in by_amount["breakdown"]["values"]] == [5.01, 19.99, 100]
        series = await same_on_both(
            plugins,
            "generate_report",
            report("timeseries", interval="6h", event_type="page_view", breakdown="url"),
        )
        assert [(b["start"], b["count"]) for b in series["buckets"]] == [
            (at("00:00"), 0),
            (at("06:00"), 4),
            (at("12:00"), 1),
            (at("18:00"), 0),
        ]
        assert series["buckets"][1]["breakdown"] == [
            {"value": "/pricing", "count": 3, "users": 3},
            {"value": "/home", "count": 1, "users": 1},
        ]
        for definition in (
            report(
                "funnel",
                steps=["page_view", {"event": "conversion", "where": {"goal": "signup"}}],
            ),
            report("revenue", event_types=["transaction", "conversion"]),
            report("top", event_type="transaction", property="items[].product_id"),
            report("top", event_type="page_view", property="url", limit=1),
            report("summary"),
            report("timeseries", interval="1d"),
        ):
            await same_on_both(plugins, "generate_report", definition)


async def test_a_time_series_with_too_many_buckets_is_refused(tmp_path: Path) -> None:
    config = {"database_url": f"sqlite:///{tmp_path / 'events.sqlite3'}"}
    async with analytics(config) as plugin:
        with pytest.raises(InvalidInput, match=r"params\.parameters\.interval: 1m makes 1440"):
            await plugin.invoke("generate_report", report("timeseries", interval="1m"))


# --- the tracking spec -------------------------------------------------------------------


async def test_the_tracking_spec_calls_are_stored_and_reported(
    database: Database, tmp_path: Path
) -> None:
    async with on_both_engines(database, tmp_path) as plugins:
        anonymous = "anon-7f3a"
        await track_on_both(
            plugins,
            "page",
            {
                "anonymousId": anonymous,
                "name": "Pricing",
                "context": {"page": {"url": "https://shop.example/pricing", "title": "Pricing"}},
                "timestamp": at("09:00"),
                "messageId": "m-1",
            },
        )
        await track_on_both(
            plugins,
            "identify",
            {
                "userId": "user-42",
                "anonymousId": anonymous,
                "traits": {"email": "ada@example.com", "plan": "pro"},
                "timestamp": at("09:05"),
                "messageId": "m-2",
            },
        )
        await track_on_both(
            plugins,
            "track",
            {
                "userId": "user-42",
                "event": "Order Completed",
                "properties": {
                    "order_id": "o-1",
                    "revenue": 42.5,
                    "currency": "EUR",
                    "products": [{"product_id": "p-9", "price": 42.5}],
                },
                "timestamp": at("09:10"),
                "messageId": "m-3",
            },
        )
        await track_on_both(
            plugins,
            "group",
            {"userId": "user-42", "groupId": "acme", "traits": {"seats": 12}, "messageId": "m-4"},
        )
        # Resent by the library: stored once.
        await track_on_both(
            plugins,
            "track",
            {
                "userId": "user-42",
                "event": "Order Completed",
                "properties": {"revenue": 42.5, "currency": "EUR"},
                "timestamp": at("09:10"),
                "messageId": "m-3",
            },
        )

        counts = await same_on_both(plugins, "generate_report", report("counts"))
        assert counts["by_type"] == {"Order Completed": 1, "identify": 1, "page_view": 1}
        # The anonymous page view and the order are one person (identify named both ids).
        funnel = await same_on_both(
            plugins, "generate_report", report("funnel", steps=["page_view", "Order Completed"])
        )
        assert [step["users"] for step in funnel["steps"]] == [1, 1]
        revenue = await same_on_both(
            plugins, "generate_report", report("revenue", event_types=["Order Completed"])
        )
        assert revenue["currencies"] == [
            {"currency": "EUR", "total": 42.5, "total_exact": "42.5000", "events": 1, "users": 1}
        ]
        products = await same_on_both(
            plugins,
            "generate_report",
            report("top", event_type="Order Completed", property="products[].product_id"),
        )
        assert products["items"] == [{"value": "p-9", "count": 1, "users": 1}]
        pages = await same_on_both(
            plugins, "generate_report", report("top", event_type="page_view", property="url")
        )
        assert pages["items"][0]["value"] == "https://shop.example/pricing"
        profile = await same_on_both(plugins, "get_user_profile", {"user_id": "user-42"})
        assert profile["traits"] == {"email": "ada@example.com", "plan": "pro"}
        assert profile["ids"] == [anonymous, "user-42"]
        assert profile["events"] == 4  # page (anonymous), identify, track, group


async def test_alias_joins_an_anonymous_visitor_to_the_user(
    database: Database, tmp_path: Path
) -> None:
    async with on_both_engines(database, tmp_path) as plugins:
        await track_on_both(
            plugins,
            "batch",
            {
                "batch": [
                    {
                        "type": "page",
                        "anonymousId": "visitor-1",
                        "properties": {"url": "/landing"},
                        "timestamp": at("08:00"),
                    },
                    {
                        "type": "track",
                        "userId": "u-1",
                        "event": "Signed Up",
                        "timestamp": at("08:30"),
                    },
                    {
                        "type": "alias",
                        "previousId": "visitor-1",
                        "userId": "u-1",
                        "timestamp": at("08:45"),
                    },
                ],
                "context": {"library": {"name": "analytics.js", "version": "2.11.1"}},
            },
        )
        funnel = await same_on_both(
            plugins, "generate_report", report("funnel", steps=["page_view", "Signed Up"])
        )
        assert [step["users"] for step in funnel["steps"]] == [1, 1]
        people = await same_on_both(plugins, "generate_report", report("counts"))
        assert {row["event_type"]: row["users"] for row in people["rows"]} == {
            "Signed Up": 1,
            "alias": 1,
            "page_view": 1,
        }


async def test_timestamps_are_sane(database: Database, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    async with on_both_engines(database, tmp_path) as plugins:
        postgresql = plugins["postgresql"]
        with pytest.raises(InvalidInput, match=r"params\.timestamp: .* in the future"):
            await postgresql.invoke(
                "track",
                {"userId": "u", "event": "Clicked", "timestamp": stamp(now + timedelta(days=2))},
            )
        # The device's clock is a day ahead: sentAt says so, and the skew is taken out.
        ahead = now + timedelta(days=1)
        corrected = await track_on_both(
            plugins,
            "track",
            {
                "userId": "u",
                "event": "Clicked",
                "timestamp": stamp(ahead - timedelta(minutes=5)),
                "sentAt": stamp(ahead),
                "messageId": "skewed",
            },
        )
        assert "flagged" not in corrected
        late = await track_on_both(
            plugins,
            "batch",
            {
                "batch": [
                    {
                        "type": "track",
                        "userId": "u",
                        "event": "Old",
                        "messageId": "old",
                        "timestamp": stamp(now - timedelta(days=90)),
                    },
                    {"type": "track", "userId": "u", "event": "New", "messageId": "new"},
                ]
            },
        )
        assert late["accepted"] == 2
        [flag] = late["flagged"]
        assert (flag["index"], flag["event_id"]) == (0, "old")
        assert flag["reason"].startswith("late: happened at ")
        recent = await plugins["sqlite"].invoke("generate_report", {"report_type": "counts"})
        assert recent["by_type"] == {"Clicked": 1, "New": 1}
        with pytest.raises(InvalidInput, match=r"params\.batch\[1\]: give userId or anonymousId"):
            await postgresql.invoke(
                "batch",
                {
                    "batch": [
                        {"type": "track", "userId": "u", "event": "A"},
                        {"type": "track", "event": "B"},
                    ]
                },
            )


# --- privacy requests ---------------------------------------------------------------------


async def test_deleting_a_persons_data_removes_it_on_both_engines(
    database: Database, tmp_path: Path
) -> None:
    async with on_both_engines(database, tmp_path) as plugins:
        for plugin in plugins.values():
            await plugin.track(*known_events())
        await track_on_both(
            plugins,
            "identify",
            {"userId": "u1", "anonymousId": "anon-u1", "traits": {"email": "u1@example.com"}},
        )
        await track_on_both(
            plugins,
            "page",
            {"anonymousId": "anon-u1", "properties": {"url": "/before-login"}},
        )
        before = await same_on_both(plugins, "generate_report", report("counts"))

        deleted = await same_on_both(plugins, "delete_user_data", {"user_id": "u1"})

        # Five from known_events (one outside the range), the identify and the anonymous page.
        assert deleted["deleted"]["events"] + deleted["deleted"]["buffered_events"] == 7
        assert deleted["deleted"]["profiles"] == 1
        after = await same_on_both(plugins, "generate_report", report("counts"))
        assert after["total"] == before["total"] - 4  # u1's four events in the range
        profile = await same_on_both(plugins, "get_user_profile", {"user_id": "u1"})
        assert (profile["traits"], profile["events"], profile["ids"]) == ({}, 0, ["u1"])
        other = await same_on_both(plugins, "get_user_profile", {"user_id": "u2"})
        assert other["events"] == 3


# --- dashboards and alert rules ------------------------------------------------------------


async def test_dashboards_are_listed_and_deleted(database: Database, tmp_path: Path) -> None:
    async with on_both_engines(database, tmp_path) as plugins:
        for name in ("sales", "ops"):
            await track_on_both(
                plugins,
                "create_dashboard",
                {"name": name, "title": name.title(), "widgets": [report("counts")]},
            )
        for plugin in plugins.values():
            listed = await plugin.invoke("list_dashboards")
            assert [(d["name"], d["title"], d["widgets"]) for d in listed["dashboards"]] == [
                ("ops", "Ops", 1),
                ("sales", "Sales", 1),
            ]
        assert (await same_on_both(plugins, "delete_dashboard", {"name": "ops"}))["deleted"]
        again = await same_on_both(plugins, "delete_dashboard", {"name": "ops"})
        assert again["deleted"] is False
        for plugin in plugins.values():
            left = await plugin.invoke("list_dashboards")
            assert [d["name"] for d in left["dashboards"]] == ["sales"]


def _config_rule() -> dict[str, Any]:
    return {
        "name": "from-config",
        "category": "marketing",
        "threshold": 100,
        "window_seconds": 60,
        "channel": "email",
        "recipient": "marketing@example.com",
    }


async def test_alert_rules_are_managed_through_operations(
    database: Database, router: RouterStandIn, tmp_path: Path
) -> None:
    config = {
        "database_url": database.url,
        "batch_size": 100,
        "flush_interval": 0.1,
        "router_url": router.url,
        "alert_evaluation_interval": 0.1,
        "alert_rules": [_config_rule()],
    }
    secrets = secrets_dir(tmp_path / "secrets", ROUTER_TOKEN=ROUTER_TOKEN)
    rule = {
        "name": "security-burst",
        "category": "security",
        "threshold": 3,
        "window_seconds": 3600,
        "channel": "email",
        "recipient": "soc@example.com",
        "subject": "Security events burst",
    }
    async with analytics(config, secrets) as plugin:
        created = await plugin.invoke("create_alert_rule", rule)
        assert created["rule"]["source"] == "operation"
        assert (await plugin.invoke("create_alert_rule", rule))["saved"] is True  # same again
        with pytest.raises(PermanentError, match="exists with another definition"):
            await plugin.invoke("create_alert_rule", {**rule, "threshold": 4})
        with pytest.raises(PermanentError, match="defined in the config"):
            await plugin.invoke("delete_alert_rule", {"name": "from-config"})
        listed = await plugin.invoke("list_alert_rules")
        assert [(r["name"], r["source"]) for r in listed["rules"]] == [
            ("from-config", "config"),
            ("security-burst", "operation"),
        ]

        await plugin.track(*security_events(4, datetime.now(UTC)))
        await eventually(lambda: len(router.delivered) == 1, within=10, what="one notification")
        assert router.delivered[0]["subject"] == "Security events burst"

        assert (await plugin.invoke("delete_alert_rule", {"name": "security-burst"}))["deleted"]
        later = await plugin.invoke("list_alert_rules")
        assert [r["name"] for r in later["rules"]] == ["from-config"]


async def test_alert_rules_need_the_router_to_be_configured(tmp_path: Path) -> None:
    config = {"database_url": f"sqlite:///{tmp_path / 'events.sqlite3'}"}
    async with analytics(config) as plugin:
        with pytest.raises(PermanentError, match=r"need config\.router_url and the secret"):
            await plugin.invoke("create_alert_rule", {**_config_rule(), "name": "x"})
