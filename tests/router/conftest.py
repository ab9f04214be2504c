"""Router tests: real plugin processes over real gRPC, a real router in process."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from switchboard.client import AsyncSwitchboard
from switchboard.router.app import Router
from switchboard.router.auth import ApiKey, ApiKeyAuthority
from switchboard.router.discovery import StaticDiscovery
from switchboard.router.settings import RouterSettings
from switchboard.router.table import PluginRoute
from tests.router.router_process import RouterProcess
from tests.sdk.harness import PluginProcess, write_config

FLAKY_SMS = Path(__file__).parent / "plugins" / "flaky_sms"
API_KEY = "test-key-0f3a"
RECEIPT_SECRET = "receipts-7d2c"
TENANT = "default"


@dataclass
class Provider:
    """One flaky-sms plugin process: where it listens and what it delivered."""

    name: str
    state: Path
    process: PluginProcess
    address: str = ""

    def set(self, mode: str, **extra: Any) -> None:
        staging = self.state / "control.tmp"
        staging.write_text(json.dumps({"mode": mode, **extra}))
        os.replace(staging, self.state / "control.json")

    def deliveries(self) -> list[dict[str, Any]]:
        sink = self.state / "deliveries.jsonl"
        if not sink.exists():
            return []
        return [json.loads(line) for line in sink.read_text().splitlines() if line]

    def route(self, **spec: Any) -> PluginRoute:
        return PluginRoute(
            kind=spec.pop("kind", "CommunicationPlugin"),
            namespace=spec.pop("namespace", TENANT),
            name=self.name,
            route_key=spec.pop("route_key", "sms"),
            endpoints=(self.address,),
            **spec,
        )


@pytest.fixture
def start_provider(tmp_path: Path) -> Iterator[Callable[[str], Provider]]:
    started: list[Provider] = []

    def start(name: str) -> Provider:
        state = tmp_path / name
        state.mkdir()
        config = write_config(
            tmp_path / f"{name}.json",
            {"provider": name, "state_dir": str(state), "receipt_secret": RECEIPT_SECRET},
        )
        process = PluginProcess(FLAKY_SMS, {"SWITCHBOARD_PLUGIN_CONFIG": str(config)})
        provider = Provider(name, state, process)
        started.append(provider)
        return provider

    def start_all(*names: str) -> Any:
        providers = [start(name) for name in names]
        for provider in providers:  # they boot in parallel
            provider.address = provider.process.wait_serving()
        return providers if len(providers) > 1 else providers[0]

    yield start_all
    for provider in started:
        provider.process.kill()
        provider.process.wait_exit()


@dataclass
class RunningRouter:
    router: Router
    discovery: StaticDiscovery
    url: str
    grpc_target: str
    clients: list[AsyncSwitchboard] = field(default_factory=list)
    stopped: bool = False

    def publish(self, *routes: PluginRoute) -> None:
        self.discovery.publish(routes)

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            for client in self.clients:
                await client.aclose()
            await self.router.stop(grace=0)

    def client(self, token: str = API_KEY, namespace: str | None = TENANT) -> AsyncSwitchboard:
        client = AsyncSwitchboard(self.url, token, namespace=namespace)
        self.clients.append(client)
        return client


@pytest.fixture
async def start_router() -> AsyncIterator[Callable[..., Any]]:
    running: list[RunningRouter] = []

    async def start(keys: list[ApiKey] | None = None, **overrides: Any) -> RunningRouter:
        defaults: dict[str, Any] = {
            "backend": "static",
            "host": "127.0.0.1",
            "http_port": 0,
            "grpc_port": 0,
            "ejection_base_seconds": 0.5,
        }
        settings = RouterSettings(**{**defaults, **overrides})
        discovery = StaticDiscovery()
        authority = ApiKeyAuthority(keys or [ApiKey("tests", API_KEY)])
        router = Router(settings, discovery, authority)
        await router.start()
        started = RunningRouter(
            router,
            discovery,
            f"http://127.0.0.1:{router.http_port}",
            f"127.0.0.1:{router.grpc_port}",
        )
        running.append(started)
        return started

    yield start
    for item in running:
        await item.stop()


def slower(route: PluginRoute, seconds: float) -> PluginRoute:
    return replace(route, timeout_seconds=seconds)


@pytest.fixture
def router_process(tmp_path: Path) -> Iterator[Any]:
    started: list[RouterProcess] = []

    def make(routes: list[Any]) -> RouterProcess:
        process = RouterProcess(tmp_path, routes, API_KEY)
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()
