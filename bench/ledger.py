"""Ledger benchmark: what recording every message costs, side by side with a router without it.

Runs in one process tree on this machine, all traffic on 127.0.0.1:

- plugin processes (the flaky-sms test plugin; the generic-webhook plugin
  posting to a fake provider that answers in 200 ms),
- the router *without* a ledger: this repository at the commit before the
  ledger landed (``--baseline``, default 9bb55d0^), unpacked with ``git
  archive`` and run as its own process,
- the router *with* the ledger, on a SQLite file and on a PostgreSQL server
  this script starts (the test suite's throwaway server),
- this load generator, speaking the router's gRPC API.

It reports: the latency a synchronous send gains (p50/p99, sequential sends);
asynchronous messages durably accepted per second (workers off, so the
figure is the ledger's write rate); messages delivered per second through one
plugin process against the 200 ms provider; and two kill -9 runs of a slow
priority-1 provider under load (AtMostOnce and AtLeastOnce), counting
messages the provider got twice, messages lost, and how many were flagged.

    .venv/bin/python -m bench.ledger [--requests 1000] [--seconds 5]

Every loop is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import httpx
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from switchboard.plugin.v1 import plugin_pb2, plugin_pb2_grpc  # noqa: E402
from switchboard.router.discovery import StaticDiscovery  # noqa: E402
from switchboard.router.table import PluginRoute  # noqa: E402
from switchboard.router.v1 import router_pb2, router_pb2_grpc  # noqa: E402
from switchboard.sdk.providers import http_client  # noqa: E402
from tests.router.conftest import FLAKY_SMS  # noqa: E402
from tests.sdk.harness import PluginProcess, write_config  # noqa: E402
from tests.vendor.postgres import PostgresServer, find_bindir  # noqa: E402

API_KEY = "bench-key"
AUTH = (("authorization", f"Bearer {API_KEY}"),)
WEBHOOK = REPO / "plugin-images" / "generic-webhook"
BASELINE_ROUTE_FIELDS = {
    "kind",
    "namespace",
    "name",
    "route_key",
    "priority",
    "weight",
    "enabled",
    "timeout_seconds",
    "permissions",
    "endpoints",
    "not_ready",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def unpack_baseline(commit: str, into: Path) -> Path:
    """The source tree of ``commit`` (its `operator/` folder), for the router without a ledger."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, "operator"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "operator"


class Router:
    """`switchboard router` as a process (gRPC only matters here)."""

    def __init__(
        self, workdir: Path, name: str, routes: list[PluginRoute], env: dict[str, str]
    ) -> None:
        self.grpc_port = free_port()
        routes_file = workdir / f"{name}-routes.json"
        StaticDiscovery.write(routes_file, routes)
        if "PYTHONPATH" in env:  # the baseline reads only the fields it had
            data = json.loads(routes_file.read_text())
            for item in data["routes"]:
                for field in set(item) - BASELINE_ROUTE_FIELDS:
                    del item[field]
            routes_file.write_text(json.dumps(data))
        keys = workdir / "keys.yaml"
        keys.write_text(json.dumps({"keys": [{"name": "bench", "key": API_KEY}]}))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "switchboard", "router"],
            env={
                **os.environ,
                "SWITCHBOARD_ROUTER_BACKEND": "static",
                "SWITCHBOARD_ROUTER_HOST": "127.0.0.1",
                "SWITCHBOARD_ROUTER_HTTP_PORT": str(free_port()),
                "SWITCHBOARD_ROUTER_GRPC_PORT": str(self.grpc_port),
                "SWITCHBOARD_ROUTER_API_KEYS_FILE": str(keys),
                "SWITCHBOARD_ROUTER_STATIC_FILE": str(routes_file),
                **env,
            },
            stdout=subprocess.DEVNULL,
            stderr=(workdir / f"{name}.log").open("wb"),
        )
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        self.stub = router_pb2_grpc.RouterStub(self.channel)

    async def send(self, index: int, *, asynchronous: bool = False, key: str = "") -> Any:
        return await self.stub.SendMessage(
            router_pb2.SendMessageRequest(
                channel="sms",
                recipient="+15551234567",
                content=f"message {index}",
                asynchronous=asynchronous,
                idempotency_key=key,
            ),
            metadata=AUTH,
            timeout=30,
        )

    async def ready(self) -> None:
        for _ in range(300):
            try:
                await self.send(-1)
                return
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)
        raise RuntimeError("the router did not answer")

    async def stop(self) -> None:
        await self.channel.close()
        self.process.terminate()
        self.process.wait(15)


def start_flaky(workdir: Path, name: str) -> tuple[PluginProcess, Path, str]:
    state = workdir / name
    state.mkdir(exist_ok=True)
    config = write_config(workdir / f"{name}.json", {"provider": name, "state_dir": str(state)})
    process = PluginProcess(FLAKY_SMS, {"SWITCHBOARD_PLUGIN_CONFIG": str(config)})
    return process, state, process.wait_serving()


def control(state: Path, mode: str, **extra: Any) -> None:
    (state / "control.tmp").write_text(json.dumps({"mode": mode, **extra}))
    os.replace(state / "control.tmp", state / "control.json")


def route(name: str, address: str, **extra: Any) -> PluginRoute:
    return PluginRoute("CommunicationPlugin", "default", name, "sms", endpoints=(address,), **extra)


async def latency(router: Router, requests: int) -> list[float]:
    times = []
    for index in range(requests):
        started = time.perf_counter()
        await router.send(index)
        times.append((time.perf_counter() - started) * 1000)
    return times


async def rate(router: Router, seconds: float, concurrency: int, **send: Any) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await router.send(done, **send)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


async def rate_and_cpu(
    router: Router, seconds: float, concurrency: int, **send: Any
) -> tuple[float, float]:
    """``rate``, and the router's CPU milliseconds per message meanwhile: what one
    message costs it, so what a core of its own would carry (1000 / cost)."""
    started = time.perf_counter()
    before = cpu_seconds(router.process.pid)
    per_second = await rate(router, seconds, concurrency, **send)
    used = cpu_seconds(router.process.pid) - before
    messages = per_second * (time.perf_counter() - started)
    return round(per_second, 1), round(1000 * used / max(messages, 1), 3)


async def submit_all(router: Router, total: int, concurrency: int) -> None:
    """Send ``total`` asynchronous messages, ``concurrency`` at a time."""
    pending = list(range(total))

    async def submit() -> None:
        while pending:
            await router.send(pending.pop(), asynchronous=True)

    await asyncio.gather(*(submit() for _ in range(concurrency)))


async def bounded_rate(total: int, concurrency: int, call: Any) -> float:
    """Calls per second of ``await call(index)`` for ``total`` calls, ``concurrency`` at a time."""
    pending = list(range(total))

    async def worker() -> None:
        while pending:
            await call(pending.pop())

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), 120)
    return total / (time.perf_counter() - started)


async def accepting_router(
    workdir: Path, name: str, routes: list[PluginRoute], url: str, routers: list[Router]
) -> Router:
    """A router on the ledger at ``url`` with its delivery workers off: it only accepts."""
    router = Router(
        workdir,
        name,
        routes,
        {"SWITCHBOARD_ROUTER_LEDGER_URL": url, "SWITCHBOARD_ROUTER_DELIVERY_WORKERS": "0"},
    )
    routers.append(router)
    await router.ready()
    return router


async def queued_delivery_rate(
    workdir: Path,
    hook_route: list[PluginRoute],
    url: str,
    delivered: Callable[[], int],
    args: argparse.Namespace,
    routers: list[Router],
    plugin: PluginProcess,
) -> dict[str, float]:
    """Messages per second a router delivers from a queue filled beforehand, and the
    CPU milliseconds each message cost the router and the plugin meanwhile.

    The queue is filled by a router with its workers off; a second router on
    the same ledger only delivers it. ``delivered()`` counts what reached the
    provider; the clock runs from the first delivery to the last (the
    delivering router's start, a second or more of imports and migrations on
    this machine, is not delivery).
    """
    name = hook_route[0].name
    filler = await accepting_router(workdir, f"fill-{name}", hook_route, url, routers)
    await submit_all(filler, args.deliveries, args.concurrency)
    await filler.stop()
    routers.remove(filler)
    before = delivered()
    router = Router(
        workdir,
        f"deliver-{name}",
        hook_route,
        {
            "SWITCHBOARD_ROUTER_LEDGER_URL": url,
            "SWITCHBOARD_ROUTER_DELIVERY_WORKERS": str(args.workers),
        },
    )
    routers.append(router)
    pids = {"router": router.process.pid, "plugin": plugin.process.pid}
    first: tuple[float, int, dict[str, float]] | None = None
    for _ in range(6000):  # at most two minutes
        count = delivered() - before
        if count and first is None:
            first = (time.perf_counter(), count, {k: cpu_seconds(p) for k, p in pids.items()})
        if count >= args.deliveries:
            break
        await asyncio.sleep(0.02)
    finished = time.perf_counter()
    used = {k: cpu_seconds(p) for k, p in pids.items()}
    await router.stop()
    routers.remove(router)
    if first is None:
        return {"rate": 0.0}
    started, already, cpu = first
    messages = max(delivered() - before - already, 1)
    return {
        "rate": round(messages / (finished - started), 1),
        **{f"{k}_cpu_ms": round(1000 * (used[k] - cpu[k]) / messages, 3) for k in pids},
    }


async def delivery_floors(
    plugin_address: str, hook: str, total: int, concurrency: int
) -> dict[str, float]:
    """What bounds delivery below the router: the plugin itself, and its HTTP client.

    ``plugin_direct``: the generic-webhook plugin's own Send, called straight
    over gRPC (no router, no ledger). ``sdk_client``: the SDK's provider
    client (``http_client``: httpx's API on aiohttp's pool) posting to the
    same provider from this process; ``httpx_own_pool``: a plain
    ``httpx.AsyncClient`` with the same limits (what the SDK used before);
    ``aiohttp_client``: aiohttp's client alone, for scale.
    """
    floors: dict[str, float] = {}
    async with grpc.aio.insecure_channel(plugin_address) as channel:
        stub = plugin_pb2_grpc.PluginServiceStub(channel)

        async def send(index: int) -> None:
            request = plugin_pb2.SendRequest(recipient="bench", content=f"direct {index}")
            await stub.Send(request, timeout=60)

        floors["plugin_direct"] = await bounded_rate(total, concurrency, send)
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=128)
    # httpx's own pool does some 40 a second here: fewer requests keep it bounded.
    for name, client, requests in (
        ("sdk_client", http_client(timeout=60), total),
        ("httpx_own_pool", httpx.AsyncClient(timeout=60, limits=limits), min(total, 1000)),
    ):
        async with client:

            async def post_httpx(index: int, client: httpx.AsyncClient = client) -> None:
                (await client.post(hook, json={"n": index})).raise_for_status()

            floors[name] = await bounded_rate(requests, concurrency, post_httpx)
    connector = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post_aiohttp(index: int) -> None:
            async with session.post(hook, json={"n": index}) as response:
                response.raise_for_status()
                await response.read()

        floors["aiohttp_client"] = await bounded_rate(total, concurrency, post_aiohttp)
    return {name: round(value, 1) for name, value in floors.items()}


async def slow_provider(delay: float) -> tuple[web.AppRunner, str, list[int]]:
    """A provider answering every POST after ``delay`` seconds; counts what it got."""
    received: list[int] = []

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(delay)
        received.append(1)
        return web.json_response({"id": f"p-{len(received)}"})

    app = web.Application()
    app.router.add_post("/hook", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    return runner, f"http://127.0.0.1:{port}/hook", received


async def main(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-bench-ledger-"))
    bindir = find_bindir()
    assert bindir is not None, "PostgreSQL is needed: apt-get install -y postgresql"
    postgres = PostgresServer(bindir)
    postgres.start()
    pg_url = postgres.create_database("bench").replace("postgresql://", "postgresql+psycopg://")
    baseline_source = unpack_baseline(args.baseline, workdir / "baseline")
    plugins: list[PluginProcess] = []
    routers: list[Router] = []
    results: dict[str, Any] = {"baseline_commit": args.baseline}
    try:
        flaky, _, address = start_flaky(workdir, "only")
        plugins.append(flaky)
        routes = [route("only", address)]
        ledgers = {
            "sqlite": f"sqlite:///{workdir / 'ledger.db'}",
            "postgresql": pg_url,
        }
        baseline = Router(workdir, "baseline", routes, {"PYTHONPATH": str(baseline_source)})
        with_ledger = {
            engine: Router(workdir, engine, routes, {"SWITCHBOARD_ROUTER_LEDGER_URL": url})
            for engine, url in ledgers.items()
        }
        routers += [baseline, *with_ledger.values()]
        for router in routers:
            await router.ready()
            await latency(router, 100)  # warm up

        # Synchronous sends, one at a time: what the ledger adds.
        base = await latency(baseline, args.requests)
        measured = {"baseline": base}
        for engine, router in with_ledger.items():
            measured[engine] = await latency(router, args.requests)
        results["sync_latency_ms"] = {
            name: {
                "p50": round(statistics.median(times), 3),
                "p99": round(percentile(times, 0.99), 3),
                **(
                    {
                        "added_p50": round(statistics.median(times) - statistics.median(base), 3),
                        "added_p99": round(percentile(times, 0.99) - percentile(base, 0.99), 3),
                    }
                    if name != "baseline"
                    else {}
                ),
            }
            for name, times in measured.items()
        }
        for router in routers:
            await router.stop()
        routers.clear()

        # The floor: the router before the ledger, synchronous sends to a plugin that
        # answers at once. An asynchronous accept cannot be cheaper than the front door.
        floor = Router(workdir, "floor", routes, {"PYTHONPATH": str(baseline_source)})
        routers.append(floor)
        await floor.ready()
        results["front_door_floor_rps"], results["front_door_floor_cpu_ms"] = await rate_and_cpu(
            floor, args.seconds, args.concurrency
        )
        await floor.stop()
        routers.remove(floor)

        # Asynchronous sends durably accepted per second (workers off: the write rate).
        accepted = {}
        for engine, url in ledgers.items():
            router = await accepting_router(workdir, f"accept-{engine}", routes, url, routers)
            accepted[engine], accepted[f"{engine}_router_cpu_ms"] = await rate_and_cpu(
                router, args.seconds, args.concurrency, asynchronous=True
            )
            await router.stop()
            routers.remove(router)
        results["async_accepted_per_second"] = {**accepted, "concurrency": args.concurrency}

        # Delivered per second through one plugin process, provider answering in 200 ms.
        runner, hook, received = await slow_provider(0.2)
        config = write_config(workdir / "webhook.json", {"url": hook, "timeout_seconds": 30})
        webhook = PluginProcess(WEBHOOK, {"SWITCHBOARD_PLUGIN_CONFIG": str(config)})
        plugins.append(webhook)
        webhook_address = webhook.wait_serving()
        databases = iter(range(1000))

        def fresh(engine: str) -> str:
            name = f"deliver{next(databases)}"
            if engine == "sqlite":
                return f"sqlite:///{workdir / name}.db"
            return postgres.create_database(name).replace("postgresql://", "postgresql+psycopg://")

        async def delivery_rate(
            engine: str, plugin: PluginRoute, delivered: Callable[[], int], process: PluginProcess
        ) -> dict[str, float]:
            return await queued_delivery_rate(
                workdir, [plugin], fresh(engine), delivered, args, routers, process
            )

        delivered = {
            engine: await delivery_rate(
                engine, route("hook", webhook_address), lambda: len(received), webhook
            )
            for engine in ("sqlite", "postgresql")
        }
        # The router's own ceiling: the same queue delivered to a plugin that answers at once.
        instant, instant_state, instant_address = start_flaky(workdir, "instant")
        plugins.append(instant)
        instant_sink = instant_state / "deliveries.jsonl"

        def instant_count() -> int:
            if not instant_sink.exists():
                return 0
            with instant_sink.open("rb") as lines:
                return sum(1 for _ in lines)

        ceiling = {
            engine: await delivery_rate(
                engine, route("instant", instant_address), instant_count, instant
            )
            for engine in ("sqlite", "postgresql")
        }
        results["delivered_per_second_200ms_provider"] = {
            **delivered,
            "workers": args.workers,
            "messages": args.deliveries,
            "router_ceiling_instant_plugin": ceiling,
            "floors": await delivery_floors(webhook_address, hook, args.deliveries, args.workers),
        }
        await runner.cleanup()

        # kill -9 of a slow priority-1 provider under load, per delivery policy.
        results["kill_9"] = {}
        for policy in ("AtMostOnce", "AtLeastOnce"):
            results["kill_9"][policy] = await kill_run(workdir, policy, ledgers["sqlite"], plugins)
    finally:
        for router in routers:
            router.process.kill()
        for plugin in plugins:
            plugin.kill()
        postgres.destroy()
    return results


async def kill_run(
    workdir: Path, policy: str, ledger_url: str, plugins: list[PluginProcess]
) -> dict[str, Any]:
    primary, primary_state, primary_address = start_flaky(workdir, f"primary-{policy}")
    secondary, secondary_state, secondary_address = start_flaky(workdir, f"secondary-{policy}")
    plugins += [primary, secondary]
    control(primary_state, "accept_then_slow", delay=0.2)
    router = Router(
        workdir,
        f"kill-{policy}",
        [
            route(f"primary-{policy}", primary_address, priority=1, delivery=policy),
            route(f"secondary-{policy}", secondary_address, priority=2, delivery=policy),
        ],
        {"SWITCHBOARD_ROUTER_LEDGER_URL": ledger_url.replace("ledger.db", f"{policy}.db")},
    )
    await router.ready()
    total, concurrency = 400, 40
    queue = list(range(total))
    unknown: set[str] = set()
    flagged = failed = 0

    async def worker() -> None:
        nonlocal flagged, failed
        while queue:
            index = queue.pop(0)
            if index == total // 4:
                os.kill(primary.pid, signal.SIGKILL)
            key = f"{policy}-{index}"
            try:
                reply = await router.send(index, key=key)
                flagged += reply.possible_duplicate
            except grpc.aio.AioRpcError as error:
                if "UNKNOWN_OUTCOME" in str(error.trailing_metadata()):
                    unknown.add(key)
                else:
                    failed += 1

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), 120)
    await router.stop()
    got = Counter(
        json.loads(line)["idempotency_key"]
        for state in (primary_state, secondary_state)
        if (state / "deliveries.jsonl").exists()
        for line in (state / "deliveries.jsonl").read_text().splitlines()
    )
    sent = {f"{policy}-{index}" for index in range(total)}
    return {
        "messages": total,
        "reached_provider_twice": sum(1 for key in sent if got[key] > 1),
        # Neither at the provider nor reported in doubt.
        "lost": len(sent - set(got) - unknown),
        "unknown_outcome": len(unknown),
        "flagged_possible_duplicate": flagged,
        "other_failures": failed,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", default="9bb55d0^")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=256)
    parser.add_argument("--deliveries", type=int, default=3000)
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
