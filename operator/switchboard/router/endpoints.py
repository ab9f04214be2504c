"""Endpoint health as the router sees it: outlier detection and health watches.

Two signals decide whether an endpoint gets new requests:

- *Outlier detection* (as Envoy does it): `ejection_failures` consecutive
  failed attempts eject the endpoint for `ejection_base_seconds`, doubled on
  each further ejection up to `ejection_max_seconds`; a success shortens the
  next ejection again. Only attempts that started after the last ejection
  count: requests already in flight when an endpoint is ejected fail for the
  same reason, and must not eject it again for twice as long.
- *Health watch*: a `grpc.health.v1` Watch stream per endpoint. NOT_SERVING
  (a plugin shutting down, or one whose provider is unreachable) or a broken
  stream (a plugin that died) drains the endpoint at once.

A plugin that answers RETRYABLE with a retry-after is held back as a whole
for that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard.api.backoff import Backoff, backoff_seconds
from switchboard.router.settings import RouterSettings
from switchboard.sdk import PluginClient

log = logging.getLogger("switchboard.router")

#: Outcomes remembered per endpoint for the recent error rate.
RECENT_OUTCOMES = 100


@dataclass
class EndpointState:
    address: str
    consecutive_failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0
    #: When the last ejection began; failures of attempts started earlier don't count.
    ejected_at: float = float("-inf")
    serving: bool = True
    sent: int = 0
    failed: int = 0
    recent: deque[bool] = field(default_factory=lambda: deque(maxlen=RECENT_OUTCOMES))

    @property
    def error_rate(self) -> float:
        return 0.0 if not self.recent else self.recent.count(False) / len(self.recent)


class EndpointPool:
    """Clients, health watches and outlier state for every known endpoint."""

    def __init__(
        self, settings: RouterSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.states: dict[str, EndpointState] = {}
        self._clients: dict[str, PluginClient] = {}
        self._watches: dict[str, asyncio.Task[None]] = {}
        self._held_until: dict[str, float] = {}
        self.ejections_total = 0

    # -- lifecycle --

    async def sync(self, addresses: Iterable[str]) -> None:
        """Start watching new endpoints and forget vanished ones."""
        wanted = set(addresses)
        for address in wanted - set(self.states):
            self.states[address] = EndpointState(address)
            self._clients[address] = PluginClient(address, timeout=None)
            self._watches[address] = asyncio.create_task(
                self._watch_health(address), name=f"health {address}"
            )
        for address in set(self.states) - wanted:
            await self._forget(address)

    async def close(self) -> None:
        for address in list(self.states):
            await self._forget(address)

    async def _forget(self, address: str) -> None:
        task = self._watches.pop(address, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client = self._clients.pop(address, None)
        self.states.pop(address, None)
        if client is not None:
            # Requests in flight on this client finish first: grace, not a hard close.
            asyncio.get_running_loop().call_later(
                self.settings.deadline_seconds, lambda: asyncio.ensure_future(client.close())
            )

    def client(self, address: str) -> PluginClient:
        client = self._clients.get(address)
        if client is None:  # an endpoint not synced yet (e.g. a table built just now)
            self.states.setdefault(address, EndpointState(address))
            client = self._clients[address] = PluginClient(address, timeout=None)
        return client

    # -- selection --

    def eligible(self, address: str) -> bool:
        state = self.states.get(address)
        if state is None:
            return True
        return state.serving and self.clock() >= state.ejected_until

    def ejected(self, address: str) -> bool:
        state = self.states.get(address)
        return state is not None and self.clock() < state.ejected_until

    def held(self, plugin_id: str) -> float:
        """Seconds a plugin still asked us to wait (retry-after), 0 if none."""
        return max(0.0, self._held_until.get(plugin_id, 0.0) - self.clock())

    def hold(self, plugin_id: str, seconds: float) -> None:
        self._held_until[plugin_id] = max(
            self._held_until.get(plugin_id, 0.0), self.clock() + seconds
        )

    # -- outcomes --

    def record_success(self, address: str) -> None:
        state = self.states.setdefault(address, EndpointState(address))
        state.sent += 1
        state.recent.append(True)
        state.consecutive_failures = 0
        state.ejections = max(0, state.ejections - 1)

    def record_failure(self, address: str, started: float | None = None, plugin: str = "") -> bool:
        """Count a failed attempt of ``plugin`` that began at ``started``; True when it
        ejected the endpoint."""
        state = self.states.setdefault(address, EndpointState(address))
        state.failed += 1
        state.recent.append(False)
        if started is not None and started <= state.ejected_at:
            return False  # in flight when the endpoint was ejected: already accounted for
        state.consecutive_failures += 1
        if state.consecutive_failures < self.settings.ejection_failures:
            return False
        state.consecutive_failures = 0
        state.ejections += 1
        seconds = backoff_seconds(
            state.ejections,
            base=self.settings.ejection_base_seconds,
            cap=self.settings.ejection_max_seconds,
        )
        state.ejected_at = self.clock()
        state.ejected_until = state.ejected_at + seconds
        self.ejections_total += 1
        log.warning(
            "Ejected an endpoint after repeated failures",
            extra={"plugin": plugin, "endpoint": address, "seconds": seconds},
        )
        return True

    # -- health watch --

    async def _watch_health(self, address: str) -> None:
        backoff = Backoff(0.1, 5.0)
        while True:
            channel = grpc.aio.insecure_channel(address)
            try:
                stub = health_pb2_grpc.HealthStub(channel)
                stream = stub.Watch(health_pb2.HealthCheckRequest(service=""))
                async for reply in stream:
                    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
                    self._set_serving(address, serving)
                    backoff.reset()
            except grpc.aio.AioRpcError:
                pass
            finally:
                await channel.close()
            # The stream ended: the plugin stopped or died. Drain it until it answers again.
            self._set_serving(address, False)
            await asyncio.sleep(backoff.next())

    def _set_serving(self, address: str, serving: bool) -> None:
        state = self.states.get(address)
        if state is not None and state.serving != serving:
            state.serving = serving
            log.info(
                "Endpoint health changed",
                extra={"endpoint": address, "health": "SERVING" if serving else "NOT_SERVING"},
            )
