"""The operator's running state: the reconciler and the work queue in front of it.

Triggers come from many watches (the resource, its children, its pods and
endpoints, Secrets, dependencies). A trigger only queues the resource's key
and returns, so the watch event that caused it is released at once. A fixed
number of workers take keys from the queue, each running one reconcile at a
time in its own thread; a key is queued at most once, runs at most once at a
time, and triggers that arrive while it runs fold into one more run. A burst
of events costs one or two reconciles per resource, and memory in proportion
to the number of workers, not to the number of events.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from kubernetes.client.exceptions import ApiException

from switchboard.controller.reconciler import Key, ReconcileError, Reconciler

log = logging.getLogger("switchboard.operator")

#: Seconds before a reconcile that failed is tried again.
RETRY_DELAY = 5.0
#: Reconciles that run at once. They wait on the API server, not on the CPU;
#: more than this gains no throughput and costs a thread (and its memory) each.
WORKERS = 8


class OperatorRuntime:
    def __init__(self, reconciler: Reconciler, workers: int = WORKERS) -> None:
        self.reconciler = reconciler
        self.workers = workers
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._active: set[Key] = set()
        self._again: set[Key] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._executor: ThreadPoolExecutor | None = None
        #: (namespace, Secret name) → resources that mount or read it.
        self.secret_users: dict[tuple[str, str], set[Key]] = defaultdict(set)
        #: (namespace, VendorIntegration name) → integrations that depend on it.
        self.dependents: dict[tuple[str, str], set[Key]] = defaultdict(set)
        #: Key → (secrets, dependencies) it referenced last, to undo them on change.
        self._references: dict[Key, tuple[set[str], set[str]]] = {}

    def request(self, key: Key) -> None:
        """Reconcile `key` soon, or once more after the reconcile in progress."""
        if key in self._active:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def start(self) -> None:
        """Start the workers (in the running event loop)."""
        self._executor = ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="reconcile"
        )
        self._tasks = [
            asyncio.create_task(self._work(self._executor), name=f"reconcile-{index}")
            for index in range(self.workers)
        ]

    async def stop(self) -> None:
        """Stop the workers; wait for the reconciles that are running to finish."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    async def _work(self, executor: ThreadPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._active.add(key)
            try:
                await loop.run_in_executor(executor, self.reconciler.reconcile, key)
            except (ApiException, ReconcileError) as error:
                log.warning("Reconcile of %s failed, retrying in %ss: %s", key, RETRY_DELAY, error)
                self._again.discard(key)
                loop.call_later(RETRY_DELAY, self.request, key)
            except Exception:
                # A bug must not lose the resource: it is tried again like an API error.
                log.exception("Reconcile of %s failed, retrying in %ss", key, RETRY_DELAY)
                self._again.discard(key)
                loop.call_later(RETRY_DELAY, self.request, key)
            finally:
                self._active.discard(key)
            if key in self._again:
                self._again.discard(key)
                self.request(key)

    async def resync_forever(self, interval: float) -> None:
        """Level-based safety net: reconcile every known resource every `interval` seconds,
        so whatever a missed event left behind heals without anyone touching it."""
        while True:
            await asyncio.sleep(interval)
            for key in await asyncio.to_thread(self.reconciler.all_keys):
                self.request(key)

    def remember_references(
        self, key: Key, secrets: set[str], depends_on: set[str], deleted: bool = False
    ) -> None:
        """Keep the reverse indexes current for one resource (cost: its own references)."""
        old_secrets, old_depends_on = self._references.pop(key, (set(), set()))
        for secret in old_secrets:
            _discard(self.secret_users, (key.namespace, secret), key)
        for dependency in old_depends_on:
            _discard(self.dependents, (key.namespace, dependency), key)
        if deleted or not (secrets or depends_on):
            return
        self._references[key] = (set(secrets), set(depends_on))
        for secret in secrets:
            self.secret_users[(key.namespace, secret)].add(key)
        for dependency in depends_on:
            self.dependents[(key.namespace, dependency)].add(key)


def _discard(index: dict[tuple[str, str], set[Key]], name: tuple[str, str], key: Key) -> None:
    users = index.get(name)
    if users is not None:
        users.discard(key)
        if not users:
            del index[name]
