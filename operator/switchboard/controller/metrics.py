"""What the operator shows on `/metrics`, and its `/healthz` and `/readyz`.

Served by a small aiohttp app (aiohttp is already loaded: kopf runs on it) on
`SWITCHBOARD_METRICS_PORT`. Every replica serves it, standbys included, so
the kubelet's probes work before a replica leads.

- switchboard_operator_reconciles_total{kind, result}: result `ok`, `retry` (a
  child or a Secret is not there yet) or `error`;
- switchboard_operator_reconcile_seconds{kind}: how long a reconcile takes;
- switchboard_operator_queue_depth, switchboard_operator_queue_oldest_seconds:
  keys waiting for a worker, and how long the oldest has waited;
- switchboard_operator_api_writes_total{verb, kind}: apply, repair, delete,
  patch-status, create;
- switchboard_operator_resources{kind, condition, status}: resources whose
  condition has this status (one gauge per condition);
- switchboard_operator_leader: 1 while this replica reconciles.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, Histogram, exposition
from prometheus_client import Counter as PromCounter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from switchboard.api.models import PluginStatus


class ConditionCollector(Collector):
    """One gauge per condition: how many resources hold it at each status."""

    def __init__(self) -> None:
        self._by_resource: dict[tuple[str, str, str], dict[str, str]] = {}

    def observe(self, key: tuple[str, str, str], status: PluginStatus | None) -> None:
        """Remember the conditions of one resource (kind, namespace, name); None: gone."""
        if status is None:
            self._by_resource.pop(key, None)
        else:
            self._by_resource[key] = {c.type: c.status for c in status.conditions}

    def counts(self) -> Counter[tuple[str, str, str]]:
        counts: Counter[tuple[str, str, str]] = Counter()
        for (kind, _namespace, _name), conditions in self._by_resource.items():
            for condition, status in conditions.items():
                counts[(kind, condition, status)] += 1
        return counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "switchboard_operator_resources",
            "Resources whose condition has this status.",
            labels=["kind", "condition", "status"],
        )
        for labels, count in sorted(self.counts().items()):
            family.add_metric(list(labels), count)
        yield family


class OperatorMetrics:
    """The operator's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.reconciles = PromCounter(
            "switchboard_operator_reconciles",
            "Reconciles by kind and result (ok, retry, error).",
            ["kind", "result"],
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            "switchboard_operator_reconcile_seconds",
            "Time one reconcile takes.",
            ["kind"],
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.api_writes = PromCounter(
            "switchboard_operator_api_writes",
            "Writes to the API server by verb and kind.",
            ["verb", "kind"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "switchboard_operator_queue_depth", "Keys waiting for a worker.", registry=self.registry
        )
        self.queue_oldest = Gauge(
            "switchboard_operator_queue_oldest_seconds",
            "How long the oldest waiting key has waited.",
            registry=self.registry,
        )
        self.leader = Gauge(
            "switchboard_operator_leader",
            "1 while this replica holds the lease and reconciles.",
            registry=self.registry,
        )
        self.conditions = ConditionCollector()
        self.registry.register(self.conditions)

    def count_write(self, verb: str, kind: str) -> None:
        self.api_writes.labels(verb, kind).inc()

    def watch_queue(self, depth: Callable[[], int], oldest: Callable[[], float]) -> None:
        self.queue_depth.set_function(depth)
        self.queue_oldest.set_function(oldest)

    def render(self) -> bytes:
        return exposition.generate_latest(self.registry)


class Health:
    """Liveness: the event loop answers and the resync loop is not stuck.
    Readiness: the replica has started (a standby is ready: it waits its turn)."""

    def __init__(self, stuck_after: float) -> None:
        self.stuck_after = stuck_after
        self.started = False
        self.leading = False
        self._last_beat = time.monotonic()

    def beat(self) -> None:
        """The resync loop calls this on each round."""
        self._last_beat = time.monotonic()

    def alive(self) -> bool:
        """A standby is alive while it answers; a leader while its resync turns."""
        return not self.leading or time.monotonic() - self._last_beat < self.stuck_after


def app(metrics: OperatorMetrics, health: Health) -> web.Application:
    async def metrics_view(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    async def healthz(_: web.Request) -> web.Response:
        ok = health.alive()
        return web.Response(status=200 if ok else 503, text="ok" if ok else "resync stuck")

    async def readyz(_: web.Request) -> web.Response:
        ok = health.started
        return web.Response(status=200 if ok else 503, text="ok" if ok else "starting")

    application = web.Application()
    application.router.add_get("/metrics", metrics_view)
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/readyz", readyz)
    return application


async def serve(
    metrics: OperatorMetrics, health: Health, host: str, port: int
) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (to clean up) and the bound port."""
    runner = web.AppRunner(app(metrics, health), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server: Any = site._server  # the bound port, when `port` is 0
    bound = server.sockets[0].getsockname()[1] if server and server.sockets else port
    return runner, int(bound)
