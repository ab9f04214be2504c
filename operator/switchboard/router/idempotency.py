"""Idempotency keys: a retried request never sends twice within the window.

The first request with a key does the work; a concurrent duplicate waits for
it and gets the same answer; a later duplicate gets the stored answer without
a send. Only successes are remembered: a request that failed may be retried
with the same key. The store is bounded (oldest keys forgotten first) and
per router replica; a client that retries against another replica relies on
the key also being passed to the plugin, which hands it to providers that
deduplicate.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class IdempotencyStore(Generic[T]):
    def __init__(
        self, window_seconds: float, max_keys: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window_seconds
        self.max_keys = max_keys
        self.clock = clock
        self._done: OrderedDict[tuple[str, str], tuple[float, T]] = OrderedDict()
        self._running: dict[tuple[str, str], asyncio.Future[T]] = {}

    def __len__(self) -> int:
        return len(self._done)

    async def run(self, tenant: str, key: str, work: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """The result of `work` for this key, and whether it was replayed."""
        slot = (tenant, key)
        self._expire()
        if slot in self._done:
            return self._done[slot][1], True
        running = self._running.get(slot)
        if running is not None:
            return await asyncio.shield(running), True
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._running[slot] = future
        try:
            result = await work()
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: waiters re-raise it themselves
            raise
        else:
            future.set_result(result)
            self._done[slot] = (self.clock(), result)
            while len(self._done) > self.max_keys:
                self._done.popitem(last=False)
            return result, False
        finally:
            del self._running[slot]

    def forget(self, tenant: str, key: str) -> None:
        self._done.pop((tenant, key), None)

    def _expire(self) -> None:
        horizon = self.clock() - self.window
        while self._done:
            slot, (stamp, _) = next(iter(self._done.items()))
            if stamp >= horizon:
                break
            del self._done[slot]
