"""A plugin says its provider is down: readiness drops, liveness does not."""

from __future__ import annotations

from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard.api.constants import LIVENESS_SERVICE
from switchboard.sdk import PluginClient, serve_plugin

MANIFEST = """\
plugin_id: moody
name: Moody
version: 1.0.0
vendor: acme
integration_type: monitoring
capabilities: []
required_config: {type: object}
secrets: {required: [], optional: []}
operations: [set_health, collect_metrics, create_alert, get_alert_status]
entry_point: moody_plugin:Moody
"""

MODULE = """\
from typing import Any

from switchboard.sdk import MonitoringPlugin, operation


class Moody(MonitoringPlugin):
    @operation(schema={"type": "object", "properties": {"serving": {"type": "boolean"}}})
    async def set_health(self, params: dict[str, Any]) -> bool:
        await self.report_health(params["serving"])
        return self.healthy

    async def collect_metrics(self, params: dict[str, Any]) -> Any:
        return {}

    async def create_alert(self, params: dict[str, Any]) -> Any:
        return "alert-1"

    async def get_alert_status(self, params: dict[str, Any]) -> Any:
        return {}
"""


async def _status(address: str, service: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def test_report_health_drives_readiness_but_not_liveness(tmp_path: Path) -> None:
    (tmp_path / "manifest.yml").write_text(MANIFEST)
    (tmp_path / "moody_plugin.py").write_text(MODULE)
    async with serve_plugin(tmp_path) as server, PluginClient(server.address) as client:
        assert await _status(server.address, "") == "SERVING"
        assert await client.invoke("set_health", {"serving": False}) is False
        assert await _status(server.address, "") == "NOT_SERVING"
        assert await _status(server.address, LIVENESS_SERVICE) == "SERVING"
        # Calls still reach a plugin that reports itself unhealthy.
        assert await client.invoke("set_health", {"serving": True}) is True
        assert await _status(server.address, "") == "SERVING"
