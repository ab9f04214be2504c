"""A real `switchboard router` process on a ledger of either engine, with its gRPC port open.

`RouterProcess` (router_process.py) runs the router on a SQLite file with
gRPC off; the ledger tests over gRPC and /metrics need both engines and
gRPC, so this wraps it: same process, same readiness check, other settings.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.router.conftest import API_KEY
from tests.router.router_process import RouterProcess, _free_port

ENGINES = ["sqlite", "postgresql"]


@pytest.fixture(name="engine_url", params=ENGINES)
def engine_url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty ledger database: a SQLite file, or a database on the suite's PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    server = request.getfixturevalue("ledger_postgres")
    name = f"router_{uuid.uuid4().hex[:10]}"
    url = server.create_database(name).replace("postgresql://", "postgresql+psycopg://", 1)
    yield url
    server.accept_connections(name)
    server.drop_database(name)


class LedgerRouter(RouterProcess):
    """`switchboard router` with the static backend, a ledger at ``ledger_url`` and gRPC on."""

    def __init__(self, tmp_path: Path, routes: list[Any], ledger_url: str, **settings: str) -> None:
        super().__init__(tmp_path, routes, API_KEY)
        self.grpc_port = _free_port()
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.env.update(
            {
                "SWITCHBOARD_ROUTER_GRPC_PORT": str(self.grpc_port),
                "SWITCHBOARD_ROUTER_LEDGER_URL": ledger_url,
                # An endpoint that failed comes back within a second, and a message's
                # back-off never exceeds one: a provider that recovers is used at once.
                "SWITCHBOARD_ROUTER_EJECTION_BASE_SECONDS": "0.5",
                "SWITCHBOARD_ROUTER_EJECTION_MAX_SECONDS": "1",
                "SWITCHBOARD_ROUTER_RETRY_MAX_SECONDS": "1",
            }
        )
        self.env.update({f"SWITCHBOARD_ROUTER_{k.upper()}": v for k, v in settings.items()})


@pytest.fixture(name="ledger_router")
def ledger_router_fixture(tmp_path: Path) -> Iterator[Callable[..., LedgerRouter]]:
    started: list[LedgerRouter] = []

    def make(routes: list[Any], ledger_url: str, **settings: str) -> LedgerRouter:
        process = LedgerRouter(tmp_path, routes, ledger_url, **settings)
        started.append(process)
        process.start()
        return process

    yield make
    for process in started:
        process.stop()
