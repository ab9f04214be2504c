"""The work queue in front of the reconciler: one asyncio task per worker.

Triggers come from many watches (the resource, its children, its pods and
endpoints, dependencies) and from the periodic resync. A trigger only queues
the resource's key and returns, so the watch event that caused it is
released at once. A fixed number of worker tasks take keys from the queue; a
key is queued at most once, runs at most once at a time, and triggers that
arrive while it runs fold into one more run. A burst of events costs one or
two reconciles per resource, and memory in proportion to the number of
workers, not to the number of events.

A reconcile that fails (an exception) or asks to be retried (a child that
could not be applied, a Secret that does not exist yet) runs again after an
exponential back-off, per key: 1 s, 2 s, 4 s ... up to `MAX_BACKOFF`. The
first success resets it.

Decision: not kopf's own retries and back-off. kopf retries a handler that
raises, and keeps its retry state in annotations on the resource (a write per
attempt), or, with our `forgetful_memories`, not at all. Our handlers only
queue keys; the reconcile runs here, level-based, and its errors go to the
resource's status instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from switchboard.api.backoff import backoff_seconds

log = logging.getLogger("switchboard.operator")

#: Reconciles that run at once. They wait on the API server, not on the CPU.
WORKERS = 8
#: First retry delay, and the most a retry waits, in seconds.
BASE_BACKOFF = 1.0
MAX_BACKOFF = 300.0


@dataclass(frozen=True)
class Outcome:
    """What a reconcile asks of the queue."""

    retry: bool = False
    """Run again after a back-off (something was not there or could not be applied)."""


OK = Outcome()
RETRY = Outcome(retry=True)


@dataclass(frozen=True, slots=True)
class Key:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


Reconcile = Callable[[Key], Awaitable[Outcome]]
#: Told about a failed reconcile: the key, the error and the seconds until the retry.
FailureReporter = Callable[[Key, BaseException, float], Awaitable[None]]


class WorkQueue:
    def __init__(
        self,
        reconcile: Reconcile,
        on_failure: FailureReporter | None = None,
        workers: int = WORKERS,
        base_backoff: float = BASE_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self.reconcile = reconcile
        self.on_failure = on_failure
        self.workers = workers
        self.base_backoff, self.max_backoff = base_backoff, max_backoff
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        #: Queued keys → when they were queued (monotonic), for the queue's age.
        self._queued: dict[Key, float] = {}
        self._active: set[Key] = set()
        self._again: set[Key] = set()
        self._failures: dict[Key, int] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # -- what the watches and the resync call --

    def request(self, key: Key) -> None:
        """Reconcile `key` soon, or once more after the reconcile in progress."""
        if key in self._active:
            self._again.add(key)
        elif key not in self._queued:
            self._queued[key] = time.monotonic()
            self._queue.put_nowait(key)

    def forget(self, key: Key) -> None:
        """The resource is gone: no retry for it."""
        self._failures.pop(key, None)
        if (timer := self._timers.pop(key, None)) is not None:
            timer.cancel()

    def depth(self) -> int:
        return len(self._queued)

    def oldest_seconds(self) -> float:
        return time.monotonic() - min(self._queued.values()) if self._queued else 0.0

    # -- the workers --

    def start(self) -> None:
        """Start the workers (in the running event loop)."""
        self._tasks = [
            asyncio.create_task(self._work(), name=f"reconcile-{index}")
            for index in range(self.workers)
        ]

    async def stop(self) -> None:
        """Stop the workers (a reconcile in progress is cancelled) and every timer."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def _retry_later(self, key: Key) -> float:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = backoff_seconds(failures, base=self.base_backoff, cap=self.max_backoff)
        if (old := self._timers.pop(key, None)) is not None:
            old.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(delay, self._due, key)
        return delay

    def _due(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.request(key)

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.pop(key, None)
            self._active.add(key)
            try:
                outcome = await self.reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # A bug must not lose the resource: it is retried like an API error.
                self._again.discard(key)
                delay = self._retry_later(key)
                log.warning(
                    "Reconcile failed; retrying",
                    extra={"resource": str(key), "retry_in_seconds": delay, "error": str(error)},
                )
                if self.on_failure is not None:
                    await self._report(key, error, delay)
            else:
                if outcome.retry:
                    self._again.discard(key)
                    self._retry_later(key)
                else:
                    self._failures.pop(key, None)
            finally:
                self._active.discard(key)
            if key in self._again:
                self._again.discard(key)
                self.request(key)

    async def _report(self, key: Key, error: BaseException, delay: float) -> None:
        assert self.on_failure is not None
        try:
            await self.on_failure(key, error, delay)
        except Exception as report_error:  # the API may be what failed
            log.warning(
                "Could not record a failed reconcile",
                extra={"resource": str(key), "error": str(report_error)},
            )
