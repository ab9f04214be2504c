"""Event loops that a test runs itself, ended without leaving a connection half-closed.

A TLS connection closes in steps (our close_notify out, the peer's in, then the
socket), each needing the event loop. A client library may close a connection
without waiting for those steps: aiohttp does so for a connection it drops from
its pool (aio-libs/aiohttp#1925). `asyncio.run` closes its loop as soon as the
coroutine returns, so such a connection is left to the garbage collector, whose
ResourceWarning about the unclosed socket then fails whichever later test happens
to be running. These helpers let the loop run until every socket it watches is
closed (bounded: a socket that never closes is then the garbage collector's, and
its warning names a real leak)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: How long a loop may take to finish closing its connections.
SETTLE_SECONDS = 5.0
POLL_SECONDS = 0.02


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, then let the connections it closed finish closing."""
    with asyncio.Runner() as runner:
        try:
            return runner.run(main)
        finally:
            runner.run(connections_closed())


async def connections_closed(limit: float = SETTLE_SECONDS) -> None:
    """Wait until the running loop watches no socket but its own wake-up pipe."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0)  # callbacks already scheduled (a transport's last close step)
    # Polled: asyncio tells nobody when a transport has finished closing.
    for _ in range(int(limit / POLL_SECONDS)):
        if _watched_sockets(loop) == 0:
            break
        await asyncio.sleep(POLL_SECONDS)
    await asyncio.sleep(0)


def _watched_sockets(loop: asyncio.AbstractEventLoop) -> int:
    # A selector loop watches its wake-up pipe, and each socket a transport has not
    # finished with; asyncio offers no public count of its transports.
    selector = getattr(loop, "_selector", None)
    return 0 if selector is None else max(len(selector.get_map()) - 1, 0)
