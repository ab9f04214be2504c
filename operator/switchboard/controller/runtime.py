"""The operator's running state: the reconciler and the queue in front of it.

Triggers come from many watches (the resource, its children, its pods and
endpoints, Secrets, dependencies). The queue runs at most one reconcile per
resource at a time and folds triggers that arrive meanwhile into one more
run, so a burst of events costs one or two reconciles, not one each.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from kubernetes.client.exceptions import ApiException

from switchboard.controller.reconciler import Key, ReconcileError, Reconciler

log = logging.getLogger("switchboard.operator")

#: Seconds before a reconcile that failed is tried again.
RETRY_DELAY = 5.0


class OperatorRuntime:
    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler
        self._active: set[Key] = set()
        self._again: set[Key] = set()
        #: (namespace, Secret name) → resources that mount or read it.
        self.secret_users: dict[tuple[str, str], set[Key]] = defaultdict(set)
        #: (namespace, VendorIntegration name) → integrations that depend on it.
        self.dependents: dict[tuple[str, str], set[Key]] = defaultdict(set)
        #: Key → (secrets, dependencies) it referenced last, to undo them on change.
        self._references: dict[Key, tuple[set[str], set[str]]] = {}

    async def request(self, key: Key) -> None:
        """Reconcile `key` now, or once more after the reconcile in progress."""
        if key in self._active:
            self._again.add(key)
            return
        self._active.add(key)
        try:
            while True:
                self._again.discard(key)
                try:
                    await asyncio.to_thread(self.reconciler.reconcile, key)
                except (ApiException, ReconcileError) as error:
                    log.warning(
                        "Reconcile of %s failed, retrying in %ss: %s", key, RETRY_DELAY, error
                    )
                    asyncio.get_running_loop().call_later(
                        RETRY_DELAY, lambda: asyncio.ensure_future(self.request(key))
                    )
                    return
                if key not in self._again:
                    return
        finally:
            self._active.discard(key)

    async def resync_forever(self, interval: float) -> None:
        """Level-based safety net: reconcile every known resource every `interval` seconds,
        so whatever a missed event left behind heals without anyone touching it."""
        while True:
            await asyncio.sleep(interval)
            keys = await asyncio.to_thread(self.reconciler.all_keys)
            for key in keys:
                await self.request(key)

    def remember_references(
        self, key: Key, secrets: set[str], depends_on: set[str], deleted: bool = False
    ) -> None:
        """Keep the reverse indexes current for one resource (cost: its own references)."""
        old_secrets, old_depends_on = self._references.pop(key, (set(), set()))
        for secret in old_secrets:
            self.secret_users[(key.namespace, secret)].discard(key)
        for dependency in old_depends_on:
            self.dependents[(key.namespace, dependency)].discard(key)
        if deleted:
            return
        self._references[key] = (set(secrets), set(depends_on))
        for secret in secrets:
            self.secret_users[(key.namespace, secret)].add(key)
        for dependency in depends_on:
            self.dependents[(key.namespace, dependency)].add(key)
