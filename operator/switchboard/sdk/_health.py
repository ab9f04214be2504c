"""The standard ``grpc.health.v1.Health`` service: the one health signal of a plugin.

The kubelet's gRPC probes call ``Check``; the router may ``Watch``. Both the
overall service ``""`` and ``switchboard.plugin.v1.PluginService`` report
NOT_SERVING until the plugin's ``activate`` has returned, SERVING while it
takes calls, and NOT_SERVING again from the moment shutdown begins.

One more service, ``switchboard.plugin.v1.Liveness``, answers whether the
process itself is alive: SERVING from the moment it listens until shutdown,
whatever ``activate`` or ``report_health`` say. The kubelet's liveness probe
asks it, so a plugin whose provider is down (NOT_SERVING, drained by the
router, unready) is not restarted for it.

Unlike grpcio-health-checking's reference servicer, ``Watch`` streams end once
shutdown has been announced: an open watch would otherwise count as an
in-flight call and hold every graceful stop for its full grace period.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard.api.constants import LIVENESS_SERVICE

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthService(health_pb2_grpc.HealthServicer):  # type: ignore[misc]  # generated, untyped
    """Health of a fixed set of services that are all serving, or all not."""

    def __init__(self, services: Iterable[str]) -> None:
        self._services = frozenset(services) | {""}
        self._serving = False
        self._shutting_down = False
        self._version = 0
        self._changed = asyncio.Condition()

    @property
    def serving(self) -> bool:
        return self._serving

    async def set_serving(self, serving: bool) -> None:
        """Report SERVING or NOT_SERVING for every service (ignored once shutting down)."""
        if not self._shutting_down:
            await self._update(serving=serving)

    async def shut_down(self) -> None:
        """Report NOT_SERVING for good and end every ``Watch`` stream."""
        self._shutting_down = True
        await self._update(serving=False)

    async def _update(self, *, serving: bool) -> None:
        async with self._changed:
            self._serving = serving
            self._version += 1
            self._changed.notify_all()

    def _status(self, service: str) -> Any:
        if service == LIVENESS_SERVICE:
            return NOT_SERVING if self._shutting_down else SERVING
        if service not in self._services:
            return SERVICE_UNKNOWN
        return SERVING if self._serving else NOT_SERVING

    async def Check(self, request: Any, context: Any) -> Any:
        status = self._status(request.service)
        if status == SERVICE_UNKNOWN:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: Any, context: Any) -> AsyncIterator[Any]:
        seen_version = -1
        while True:
            async with self._changed:
                while self._version == seen_version:
                    await self._changed.wait()
                seen_version = self._version
                status = self._status(request.service)
                shutting_down = self._shutting_down
            yield health_pb2.HealthCheckResponse(status=status)
            if shutting_down:
                return
