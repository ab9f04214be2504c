"""An analytics alert rule fires once, through the real router, to a webhook plugin.

Everything is real and on loopback: PostgreSQL, the analytics-events plugin,
the router (static backend, API keys), the generic-webhook plugin, and an
HTTP receiver standing in for the on-call system.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from switchboard.router.app import Router
from switchboard.router.auth import ApiKey, ApiKeyAuthority
from switchboard.router.discovery import StaticDiscovery
from switchboard.router.settings import RouterSettings
from switchboard.router.table import PluginRoute
from switchboard.sdk import serve_plugin
from tests.sdk.harness import eventually
from tests.vendor.conftest import Database
from tests.vendor.test_analytics_events import (
    analytics,
    secrets_dir,
    security_events,
)

WEBHOOK_PLUGIN = Path(__file__).resolve().parents[2] / "plugin-images" / "generic-webhook"
TOKEN = "analytics-to-router-7f2c"


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"id": f"page-{len(received)}"})

    app = web.Application()
    app.add_routes([web.post("/page", hook)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/page", received
    await runner.cleanup()


async def test_alert_fires_once_through_the_router_to_a_webhook(
    database: Database, receiver: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, received = receiver
    discovery = StaticDiscovery()
    router = Router(
        RouterSettings(backend="static", host="127.0.0.1", http_port=0, grpc_port=-1),
        discovery,
        ApiKeyAuthority([ApiKey("analytics", TOKEN)]),
    )
    await router.start()
    try:
        async with serve_plugin(WEBHOOK_PLUGIN, config={"url": url}) as webhook:
            discovery.publish(
                [
                    PluginRoute(
                        "CommunicationPlugin",
                        "default",
                        "oncall",
                        "webhook",
                        endpoints=(webhook.address,),
                    )
                ]
            )
            config = {
                "database_url": database.url,
                "batch_size": 100,
                "flush_interval": 0.1,
                "router_url": f"http://127.0.0.1:{router.http_port}",
                "alert_evaluation_interval": 0.1,
                "alert_rules": [
                    {
                        "name": "security-burst",
                        "category": "security",
                        "threshold": 3,
                        "window_seconds": 3600,
                        "channel": "webhook",
                        "recipient": "soc",
                        "subject": "Security events burst",
                    }
                ],
            }
            secrets = secrets_dir(tmp_path / "secrets", ROUTER_TOKEN=TOKEN)
            now = datetime.now(UTC)
            async with analytics(config, secrets) as plugin:
                await plugin.track(*security_events(4, now))
                await eventually(lambda: len(received) == 1, within=15, what="the page")
                await plugin.track(*security_events(6, now))
                await asyncio.sleep(1.0)  # more evaluations of the same window
            assert len(received) == 1
            [page] = received
            assert page["recipient"] == "soc"
            assert "security events" in page["content"]
            status = router.service.status_of("default")
            assert status["channels"]["webhook"][0]["sent"] == 1
    finally:
        await router.stop(grace=0)
