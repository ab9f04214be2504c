"""kill -9 of the router itself under asynchronous load, then a restart: nothing accepted is lost.

The router runs as a real `switchboard router` process with a SQLite ledger
file; the providers are flaky-sms processes that accept a message and then
take a while to answer, so the kill lands while calls are in flight.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from switchboard.client import AsyncSwitchboard
from switchboard.router.discovery import StaticDiscovery
from tests.router.conftest import API_KEY, TENANT


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RouterProcess:
    """`switchboard router` with the static backend, started and killed by the test."""

    def __init__(self, tmp_path: Path, routes: list[Any]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        keys = tmp_path / "keys.yaml"
        keys.write_text(yaml.safe_dump({"keys": [{"name": "tests", "key": API_KEY}]}))
        routes_file = tmp_path / "routes.json"
        StaticDiscovery.write(routes_file, routes)
        self.env = {
            **os.environ,
            "SWITCHBOARD_ROUTER_BACKEND": "static",
            "SWITCHBOARD_ROUTER_HOST": "127.0.0.1",
            "SWITCHBOARD_ROUTER_HTTP_PORT": str(self.port),
            "SWITCHBOARD_ROUTER_GRPC_PORT": "-1",
            "SWITCHBOARD_ROUTER_API_KEYS_FILE": str(keys),
            "SWITCHBOARD_ROUTER_STATIC_FILE": str(routes_file),
            "SWITCHBOARD_ROUTER_LEDGER_URL": f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}",
            "SWITCHBOARD_ROUTER_DEADLINE_SECONDS": "5",
            "SWITCHBOARD_ROUTER_LEASE_MARGIN_SECONDS": "1",
            "SWITCHBOARD_ROUTER_RETRY_BASE_SECONDS": "0.2",
        }
        self.log = tmp_path / "router.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "switchboard", "router"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the router did not start:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def router_process(tmp_path: Path) -> Iterator[Any]:
    started: list[RouterProcess] = []

    def make(routes: list[Any]) -> RouterProcess:
        process = RouterProcess(tmp_path, routes)
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()


@pytest.mark.parametrize("policy", ["AtLeastOnce", "AtMostOnce"])
async def test_kill_9_of_the_router_under_asynchronous_load_loses_nothing(
    start_provider: Any, router_process: Any, policy: str
) -> None:
    provider = start_provider("only")
    provider.set("accept_then_slow", delay=0.3)
    router = router_process([provider.route(delivery=policy)])
    router.start()
    total = 200
    async with AsyncSwitchboard(router.url, API_KEY, namespace=TENANT) as client:
        ids = {
            f"k{i}": (
                await client.send_message(
                    "sms", "+15551234567", f"m{i}", wait=False, idempotency_key=f"k{i}"
                )
            ).id
            for i in range(total)
        }
        # Let the workers get going, then pull the plug mid-send.
        for _ in range(600):
            if len(provider.deliveries()) >= 20:
                break
            await asyncio.sleep(0.05)
        router.kill()
        accepted_before_restart = len(ids)
        router.start()
        finals = {}
        deadline = time.monotonic() + 120
        while len(finals) < total and time.monotonic() < deadline:
            for key, message_id in ids.items():
                if key not in finals:
                    status = await client.get_message(message_id)
                    if status.state in ("sent", "delivered", "failed", "unknown", "expired"):
                        finals[key] = status
            await asyncio.sleep(0.2)

    assert accepted_before_restart == total
    assert len(finals) == total, "some accepted messages never finished"
    delivered = Counter(d["idempotency_key"] for d in provider.deliveries())
    twice = {key for key, count in delivered.items() if count > 1}
    if policy == "AtMostOnce":
        assert twice == set(), "a message reached the provider twice"
        in_doubt = {key for key, status in finals.items() if status.state == "unknown"}
        assert in_doubt, "the messages in flight at the kill are unknown, not resent"
        assert {s.state for s in finals.values()} == {"sent", "unknown"}
        assert set(delivered) | in_doubt == set(ids)  # every one sent or said to be in doubt
    else:
        assert {s.state for s in finals.values()} == {"sent"}
        assert set(delivered) == set(ids), "lost"
        assert twice, "the messages in flight at the kill were sent again"
        assert all(finals[key].possible_duplicate for key in twice)
