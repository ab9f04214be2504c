"""The bounded in-memory buffer between accepted events and the database.

Accepted events wait here and are written in batches of ``batch_size``: at
once when a batch is full, and whatever is buffered every ``flush_interval``
seconds. A failed write is retried with the SDK's ``Backoff`` and full jitter
until it succeeds or, when stopping, until ``give_up_at``; the
events stay buffered meanwhile, so none is lost to a database blip. When the
buffer is full a call waits up to ``backpressure_timeout`` for room, then
fails RETRYABLE. A batch the database refuses for one bad value is written
event by event and only that event is dropped.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from switchboard.sdk import Backoff, InvalidInput, RetryableError

from .events import StoredEvent
from .store import EventRejected, EventStore, StorageUnavailable

#: Seconds the first retry of a failed write waits at most (doubling after each failure).
FIRST_RETRY_SECONDS: Final = 0.05


@dataclass(frozen=True)
class BufferSettings:
    batch_size: int
    flush_interval: float
    max_buffered_events: int
    backpressure_timeout: float
    database_timeout: float


class EventBuffer:
    """Holds accepted events until they are written; see the module docstring."""

    def __init__(
        self,
        store: EventStore,
        settings: BufferSettings,
        logger: logging.Logger,
        report_health: Callable[[bool], Awaitable[None]],
    ) -> None:
        self.store = store
        self.settings = settings
        self._logger = logger
        self._report_health = report_health
        self._events: collections.deque[StoredEvent] = collections.deque()
        self._changed = asyncio.Condition()
        self._write_lock = asyncio.Lock()
        self._storing_failed = False
        self.stopping = False
        #: Loop time after which a failing write gives up (set when stopping).
        self.give_up_at: float | None = None

    def __len__(self) -> int:
        return len(self._events)

    async def add(self, events: Sequence[StoredEvent]) -> None:
        """Buffer ``events`` (all or none), waiting for room at most ``backpressure_timeout``."""
        capacity = self.settings.max_buffered_events
        if len(events) > capacity:
            raise InvalidInput(
                f"params.events: {len(events)} events are more than the plugin buffers "
                f"({capacity}); send smaller batches"
            )
        if self.stopping:
            raise RetryableError("The plugin is stopping; send the events again", retry_after=1)
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: len(self._events) + len(events) <= capacity),
                    timeout=self.settings.backpressure_timeout,
                )
            except TimeoutError:
                raise RetryableError(
                    f"The event buffer is full ({len(self._events)} of {capacity} events) "
                    "because the database is not keeping up; try again shortly",
                    retry_after=max(1.0, self.settings.flush_interval / 2),
                ) from None
            self._events.extend(events)
            if len(self._events) >= self.settings.batch_size:
                self._changed.notify_all()

    async def flush_periodically(self) -> None:
        """Write full batches as they fill, and everything every ``flush_interval``."""
        loop = asyncio.get_running_loop()
        settings = self.settings
        next_flush = loop.time() + settings.flush_interval
        while not self.stopping:
            async with self._changed:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(
                            lambda: len(self._events) >= settings.batch_size or self.stopping
                        ),
                        timeout=max(0.0, next_flush - loop.time()),
                    )
                    timed_out = False
                except TimeoutError:
                    timed_out = True
            if self.stopping:
                return
            try:
                await self.drain(everything=timed_out)
            except StorageUnavailable:
                continue  # only when stopping: the plugin's deactivate takes over
            if timed_out:
                next_flush = loop.time() + settings.flush_interval

    async def stop(self, give_up_after: float) -> None:
        """No more events; writes from now on give up after ``give_up_after`` seconds."""
        self.stopping = True
        self.give_up_at = asyncio.get_running_loop().time() + give_up_after
        async with self._changed:
            self._changed.notify_all()

    async def drain(self, *, everything: bool) -> None:
        """Write buffered events in batches: all present now, or only full batches."""
        async with self._write_lock:
            remaining = len(self._events)
            batch_size = self.settings.batch_size
            while self._events and (
                remaining > 0 if everything else len(self._events) >= batch_size
            ):
                batch = list(itertools.islice(self._events, batch_size))
                await self._write(batch)
                for _ in batch:
                    self._events.popleft()
                remaining -= len(batch)
                async with self._changed:
                    self._changed.notify_all()

    async def flush_for_read(self) -> None:
        """Write everything before a report reads, or RETRYABLE if the database is away."""
        try:
            await asyncio.wait_for(
                self.drain(everything=True), timeout=max(1.0, 2 * self.settings.database_timeout)
            )
        except (TimeoutError, StorageUnavailable):
            raise RetryableError(
                "The database is unavailable; events are kept and the report can be asked again",
                retry_after=1.0,
            ) from None

    async def forget_person(self, ids: set[str]) -> int:
        """Drop the buffered events of the person named by ``ids``; return how many.

        Holds the write lock, so no batch with them is being written meanwhile.
        """
        async with self._write_lock:
            kept = [event for event in self._events if not (event.people & ids)]
            dropped = len(self._events) - len(kept)
            self._events = collections.deque(kept)
        async with self._changed:
            self._changed.notify_all()
        return dropped

    async def _write(self, batch: Sequence[StoredEvent]) -> None:
        """Store ``batch``, retrying while the database is unavailable (see the module
        docstring); ``StorageUnavailable`` once stopping and past ``give_up_at``."""
        backoff = Backoff(FIRST_RETRY_SECONDS, self._longest_retry_wait())
        while True:
            try:
                await self._insert(batch)
                break
            except StorageUnavailable as error:
                if self._should_give_up():
                    raise
                await self._note_failed_write(error)
            # Full jitter: replicas that lost the database together don't retry in step.
            await asyncio.sleep(random.uniform(0.0, backoff.next()))  # noqa: S311 - spreading, not security
        if self._storing_failed:
            self._storing_failed = False
            self._logger.info("Stored events again", extra={"buffered": len(self._events)})
            await self._report_health(True)

    async def _insert(self, batch: Sequence[StoredEvent]) -> None:
        try:
            await self.store.insert_events(batch)
        except EventRejected:
            # One value the database cannot store must not block the rest:
            # write the batch event by event and drop only what it refuses.
            await self._write_one_by_one(batch)

    def _longest_retry_wait(self) -> float:
        """The longest wait between two tries: the flush interval, kept within 0.2 to 5 s."""
        return max(0.2, min(5.0, self.settings.flush_interval))

    async def _write_one_by_one(self, batch: Sequence[StoredEvent]) -> None:
        for event in batch:
            try:
                await self.store.insert_events([event])
            except EventRejected as error:
                self._logger.error(
                    "Dropped an event the database refused",
                    extra={
                        "event_id": event.event_id,
                        "event_type": event.event_type,
                        "error": str(error),
                    },
                )

    def _should_give_up(self) -> bool:
        give_up_at = self.give_up_at
        return give_up_at is not None and asyncio.get_running_loop().time() >= give_up_at

    async def _note_failed_write(self, error: StorageUnavailable) -> None:
        if not self._storing_failed:
            self._storing_failed = True
            self._logger.warning(
                "Could not store events; retrying",
                extra={"buffered": len(self._events), "error": str(error)},
            )
        # Say NOT_SERVING only once the buffer can't absorb much more: until then
        # the plugin still accepts events and loses none.
        if len(self._events) >= 0.9 * self.settings.max_buffered_events:
            await self._report_health(False)
