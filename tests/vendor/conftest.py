"""Fixtures for the vendor plugin tests: a real PostgreSQL server and a stand-in router."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.vendor.kafka import FETCH_HINT, KafkaBroker, find_libs
from tests.vendor.postgres import INSTALL_HINT, PostgresServer, find_bindir
from tests.vendor.voltha_core import VolthaCore, VolthaServer

#: The VOLTHA stand-in's credentials and fiber plant: ONUs cabled to each PON of the OLT.
USERNAME, PASSWORD = "voltha-admin", "pw-3f9a7c1e"
OLT_ADDRESS = "10.90.0.11:9191"
PLANT = {OLT_ADDRESS: {0: ["BBSM000a0001", "BBSM000a0002"], 1: ["ALPHe3d1cfde"]}}


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session, started on first use."""
    bindir = find_bindir()
    if bindir is None:
        pytest.fail(f"PostgreSQL server binaries not found; install them: {INSTALL_HINT}")
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaBroker]:
    """One Kafka broker (KRaft, loopback) for the session, started on first use."""
    libs = find_libs()
    if libs is None:
        pytest.fail(f"Kafka's jars or Java not found; fetch them first: {FETCH_HINT}")
    broker = KafkaBroker(libs)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@dataclass
class Database:
    """A database of its own for one test."""

    server: PostgresServer
    name: str
    url: str


@pytest.fixture
def database(postgres: PostgresServer) -> Iterator[Database]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(name)
    try:
        yield Database(postgres, name, url)
    finally:
        postgres.accept_connections(name)
        postgres.drop_database(name)


@dataclass
class RouterStandIn:
    """``POST /v1/messages`` as the router answers it, deduplicating by idempotency key.

    ``script`` holds status codes to answer the next requests with (then 202).
    ``requests`` is every request received; ``delivered`` the messages a real
    router would have sent (one per idempotency key).
    """

    url: str = ""
    script: list[int] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    delivered: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, headers: dict[str, str], body: dict[str, Any]) -> int:
        with self.lock:
            self.requests.append({"headers": headers, "body": body})
            status = self.script.pop(0) if self.script else 202
            key = body.get("idempotencyKey")
            if status < 300 and not any(m["idempotencyKey"] == key for m in self.delivered):
                self.delivered.append(body)
            return status


@pytest.fixture
def router() -> Iterator[RouterStandIn]:
    stand_in = RouterStandIn()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            status = (
                stand_in.answer(dict(self.headers.items()), body)
                if self.path == "/v1/messages"
                else 404
            )
            payload = json.dumps({"status": "accepted" if status < 300 else "error"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
async def core() -> AsyncIterator[VolthaCore]:
    core = VolthaCore(username=USERNAME, password=PASSWORD, plant=PLANT, step=0.05)
    yield core
    await core.close()


@pytest.fixture
async def voltha_server(core: VolthaCore) -> AsyncIterator[VolthaServer]:
    server = VolthaServer(core)
    await server.start()
    yield server
    await server.stop()
