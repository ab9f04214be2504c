"""Router benchmark: what the router adds over calling a plugin directly.

Runs, side by side in one process tree on this machine:

- a plugin process (the flaky-sms test plugin, delivering to a file),
- the router as its own process (`switchboard router --backend static`),
- a bare pass-through gRPC proxy (`bench.passthrough`): the floor any Python
  gRPC router pays for its two hops before doing any routing,
- this load generator, speaking gRPC to all three (plugin `Send` directly,
  the router's `SendMessage`, the proxy), 1 KiB payloads.

It reports p50/p99 latency of each path at concurrency 1 and what the router
and the proxy add, throughput at a fixed concurrency and the routed/direct
ratio, CPU seconds per 1,000 requests (= vCPU per 1,000 requests/s) and RSS
of the router and of the proxy, and a failover run: kill -9 of the
priority-1 plugin under a fixed request rate, counting client-visible errors
and the time until traffic reaches priority 2.

    .venv/bin/python -m bench.router [--requests 2000] [--seconds 5] [--concurrency 32]

Every loop is bounded in count and in time; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import passthrough  # noqa: E402
from switchboard.plugin.v1 import plugin_pb2, plugin_pb2_grpc  # noqa: E402
from switchboard.router.discovery import StaticDiscovery  # noqa: E402
from switchboard.router.table import PluginRoute  # noqa: E402
from switchboard.router.v1 import router_pb2, router_pb2_grpc  # noqa: E402
from tests.router.conftest import FLAKY_SMS  # noqa: E402
from tests.sdk.harness import PluginProcess, write_config  # noqa: E402

API_KEY = "bench-key"
PAYLOAD = "x" * 1024
AUTH = (("authorization", f"Bearer {API_KEY}"),)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Setup:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.plugins: dict[str, PluginProcess] = {}
        self.router: subprocess.Popen[bytes] | None = None
        self.passthrough: subprocess.Popen[bytes] | None = None
        self.routes_file = workdir / "routes.json"

    def start_plugin(self, name: str) -> str:
        state = self.workdir / name
        state.mkdir(exist_ok=True)
        config = write_config(
            self.workdir / f"{name}.json", {"provider": name, "state_dir": str(state)}
        )
        process = PluginProcess(FLAKY_SMS, {"SWITCHBOARD_PLUGIN_CONFIG": str(config)})
        self.plugins[name] = process
        return process.wait_serving()

    def publish(self, routes: list[PluginRoute]) -> None:
        StaticDiscovery.write(self.routes_file, routes)

    def start_router(self, http_port: int, grpc_port: int) -> None:
        keys = self.workdir / "keys.yaml"
        keys.write_text(json.dumps({"keys": [{"name": "bench", "key": API_KEY}]}))
        self.router = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("switchboard")),
                "router",
                "--backend=static",
                f"--routes={self.routes_file}",
                f"--api-keys={keys}",
                f"--http-port={http_port}",
                f"--grpc-port={grpc_port}",
            ],
            env={**os.environ, "SWITCHBOARD_ROUTER_HOST": "127.0.0.1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start_passthrough(self, port: int, plugin: str) -> None:
        self.passthrough = subprocess.Popen(
            [sys.executable, "-m", "bench.passthrough", f"127.0.0.1:{port}", plugin],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        for process in self.plugins.values():
            process.kill()
        for child in (self.router, self.passthrough):
            if child is not None:
                child.terminate()
                child.wait(10)


async def timed(call: Any) -> float:
    started = time.perf_counter()
    await call
    return (time.perf_counter() - started) * 1000


async def latency(send: Any, requests: int) -> list[float]:
    return [await timed(send(i)) for i in range(requests)]


async def throughput(send: Any, seconds: float, concurrency: int) -> tuple[int, float]:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await send(done)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, time.perf_counter() - started


async def main(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    setup = Setup(workdir)
    results: dict[str, Any] = {}
    try:
        primary = setup.start_plugin("primary")
        setup.publish(
            [PluginRoute("CommunicationPlugin", "default", "primary", "sms", endpoints=(primary,))]
        )
        grpc_port, passthrough_port = 19090, 19091
        setup.start_router(18080, grpc_port)
        setup.start_passthrough(passthrough_port, primary)
        assert setup.router is not None
        assert setup.passthrough is not None
        direct_channel = grpc.aio.insecure_channel(primary)
        routed_channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
        passthrough_channel = grpc.aio.insecure_channel(f"127.0.0.1:{passthrough_port}")
        direct = plugin_pb2_grpc.PluginServiceStub(direct_channel)
        routed = router_pb2_grpc.RouterStub(routed_channel)
        forwarded = passthrough_channel.unary_unary(
            f"/{passthrough.SERVICE}/{passthrough.METHOD}",
            request_serializer=plugin_pb2.SendRequest.SerializeToString,
            response_deserializer=plugin_pb2.SendResponse.FromString,
        )
        plugin_request = plugin_pb2.SendRequest(
            recipient="+15551234567", content=PAYLOAD, tenant="default"
        )

        def direct_send(i: int) -> Any:
            return direct.Send(plugin_request, timeout=10)

        def passthrough_send(i: int) -> Any:
            return forwarded(plugin_request, timeout=10)

        def routed_send(i: int) -> Any:
            return routed.SendMessage(
                router_pb2.SendMessageRequest(
                    channel="sms", recipient="+15551234567", content=PAYLOAD
                ),
                metadata=AUTH,
                timeout=10,
            )

        for send in (routed_send, passthrough_send):
            for _ in range(100):  # the server is up (and the router has read its routes)
                try:
                    await send(0)
                    break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.1)
        for send in (direct_send, passthrough_send, routed_send):
            await latency(send, 200)  # warm up every path
        d = await latency(direct_send, args.requests)
        f = await latency(passthrough_send, args.requests)
        r = await latency(routed_send, args.requests)

        def added(path: list[float]) -> dict[str, float]:
            return {
                "p50": round(statistics.median(path) - statistics.median(d), 3),
                "p99": round(percentile(path, 0.99) - percentile(d, 0.99), 3),
            }

        results["latency_ms"] = {
            "direct_p50": round(statistics.median(d), 3),
            "direct_p99": round(percentile(d, 0.99), 3),
            "routed_p50": round(statistics.median(r), 3),
            "routed_p99": round(percentile(r, 0.99), 3),
            "added_p50": added(r)["p50"],
            "added_p99": added(r)["p99"],
            "passthrough_added": added(f),
        }
        direct_done, direct_secs = await throughput(direct_send, args.seconds, args.concurrency)
        measured = {}
        for name, send, pid in (
            ("passthrough", passthrough_send, setup.passthrough.pid),
            ("router", routed_send, setup.router.pid),
        ):
            cpu_before = cpu_seconds(pid)
            done, secs = await throughput(send, args.seconds, args.concurrency)
            cpu_used = cpu_seconds(pid) - cpu_before
            measured[name] = {
                "rps": round(done / secs, 1),
                "cpu_seconds_per_1000_requests": round(cpu_used / done * 1000, 3),
                "rss_mb": round(rss_mb(pid), 1),
            }
        direct_rps = direct_done / direct_secs
        results["throughput"] = {
            "concurrency": args.concurrency,
            "direct_rps": round(direct_rps, 1),
            "routed_rps": measured["router"]["rps"],
            "routed_over_direct": round(measured["router"]["rps"] / direct_rps, 3),
            "passthrough_rps": measured["passthrough"]["rps"],
        }
        results["router"] = {
            key: measured["router"][key] for key in ("cpu_seconds_per_1000_requests", "rss_mb")
        }
        results["passthrough"] = {
            key: measured["passthrough"][key] for key in ("cpu_seconds_per_1000_requests", "rss_mb")
        }
        await passthrough_channel.close()
        await direct_channel.close()

        # Failover: priority 1 killed with -9 under a steady request rate.
        secondary = setup.start_plugin("secondary")
        setup.publish(
            [
                PluginRoute(
                    "CommunicationPlugin",
                    "default",
                    "primary",
                    "sms",
                    priority=1,
                    endpoints=(primary,),
                ),
                PluginRoute(
                    "CommunicationPlugin",
                    "default",
                    "secondary",
                    "sms",
                    priority=2,
                    endpoints=(secondary,),
                ),
            ]
        )
        await asyncio.sleep(1)  # the router re-reads its routes file
        errors = 0
        first_secondary: float | None = None
        killed_at = 0.0
        rate, duration = args.failover_rate, args.failover_seconds
        interval = 1 / rate

        async def one(i: int) -> None:
            nonlocal errors, first_secondary
            try:
                reply = await routed_send(i)
            except grpc.aio.AioRpcError:
                errors += 1
                return
            if reply.plugin.endswith("/secondary") and killed_at and first_secondary is None:
                first_secondary = time.perf_counter()

        tasks = []
        started = time.perf_counter()
        for i in range(int(rate * duration)):
            if i == int(rate * duration / 3):
                os.kill(setup.plugins["primary"].pid, signal.SIGKILL)
                killed_at = time.perf_counter()
            tasks.append(asyncio.create_task(one(i)))
            await asyncio.sleep(max(0.0, started + (i + 1) * interval - time.perf_counter()))
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        results["failover"] = {
            "rate_rps": rate,
            "requests": len(tasks),
            "client_errors": errors,
            "ms_until_priority_2": round((first_secondary - killed_at) * 1000, 1)
            if first_secondary
            else None,
        }
        await routed_channel.close()
    finally:
        setup.stop()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--failover-rate", type=float, default=200.0)
    parser.add_argument("--failover-seconds", type=float, default=6.0)
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
