"""VOLTHA's northbound API for the real-node tests: the vendor tier's core stand-in, on the gateway.

``tests/vendor/voltha_core.py`` implements ``voltha.VolthaService`` on
VOLTHA's own proto. Here it is served on the CNI bridge's gateway address,
port 55555 (VOLTHA's, the one examples/voltha.yaml declares as egress),
inside the tier's network namespace, so the VOLTHA plugin pod reaches it as
it would reach ``voltha-voltha-api.voltha.svc``. It runs on an event loop in
a thread of its own; ``call`` runs a function on that loop to read the
core's state safely.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
from voltha_protos import voltha_pb2_grpc

from tests.support.realnode import POD_GATEWAY
from tests.vendor.voltha_core import VolthaCore

VOLTHA_PORT = 55555
T = TypeVar("T")


@dataclass
class VolthaOnGateway:
    """A VolthaCore served on POD_GATEWAY:55555 (plaintext gRPC, Basic credentials)."""

    username: str
    password: str
    plant: Mapping[str, Mapping[int, Sequence[str]]]
    core: VolthaCore | None = None
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _thread: threading.Thread | None = None
    _stop: asyncio.Event | None = None

    def start(self) -> None:
        ready = threading.Event()
        failed: list[BaseException] = []

        async def serve() -> None:
            try:
                self.core = VolthaCore(
                    username=self.username, password=self.password, plant=self.plant, step=0.2
                )
                server = grpc.aio.server()
                voltha_pb2_grpc.add_VolthaServiceServicer_to_server(self.core, server)
                server.add_insecure_port(f"{POD_GATEWAY}:{VOLTHA_PORT}")
                await server.start()
                self._stop = asyncio.Event()
            except BaseException as error:
                failed.append(error)
                ready.set()
                raise
            ready.set()
            try:
                await self._stop.wait()
            finally:
                await server.stop(grace=None)
                await self.core.close()
                # Streams the server cancelled finish on this loop before it closes.
                others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in others:
                    task.cancel()
                await asyncio.gather(*others, return_exceptions=True)

        # Started from the caller's thread, so it listens inside the same network namespace.
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(serve(),), daemon=True
        )
        self._thread.start()
        if not ready.wait(30) or failed:
            raise RuntimeError(f"the VOLTHA core did not start: {failed}")

    def call(self, read: Callable[[VolthaCore], T]) -> T:
        """`read(core)` on the core's loop; its result."""
        assert self.core is not None
        core = self.core

        async def run() -> T:
            return read(core)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._loop.close()
