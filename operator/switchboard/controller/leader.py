"""Leader election on a coordination.k8s.io Lease, so two replicas are safe.

Only the holder of the Lease reconciles. A standby polls until the Lease
expires (its holder died or lost the network) and takes over. A leader that
cannot renew in time stops reconciling at once and exits non-zero, so the
kubelet restarts it as a standby: two operators never write at the same time
for longer than one renewal period.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Callable
from typing import Any, cast

from lightkube import ApiError, AsyncClient
from lightkube.resources.coordination_v1 import Lease

log = logging.getLogger("switchboard.operator")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _micro_time(value: datetime.datetime) -> str:
    """A Lease's MicroTime: RFC 3339 in UTC with microseconds."""
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: Any) -> datetime.datetime | None:
    if value is None or isinstance(value, datetime.datetime):
        return value
    return datetime.datetime.fromisoformat(str(value))


class LeaseElector:
    def __init__(
        self,
        client: AsyncClient,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: int = 15,
    ) -> None:
        self.client = client
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_seconds = lease_seconds

    @property
    def _lease(self) -> str:
        """The Lease as its log records name it, ``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    async def try_acquire(self) -> bool:
        """Take or renew the Lease if it is ours or has expired; True when we hold it."""
        now = _now()
        try:
            lease: dict[str, Any] = (
                await self.client.get(Lease, self.name, namespace=self.namespace)
            ).to_dict()
        except ApiError as error:
            if error.status.code != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, now, transitions=0),
            }
            try:
                await self.client.create(cast(Lease, Lease.from_dict(body)))
            except ApiError as conflict:
                if conflict.status.code == 409:
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        acquire_time = _parse_time(spec.get("acquireTime"))
        renewed = _parse_time(spec.get("renewTime")) or acquire_time
        expired = (
            renewed is None
            or renewed
            + datetime.timedelta(seconds=spec.get("leaseDurationSeconds") or self.lease_seconds)
            < now
        )
        if holder != self.identity and not expired:
            return False
        acquired = acquire_time if holder == self.identity else now
        transitions = (spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        lease["spec"] = self._spec(acquired or now, now, transitions)
        try:
            # The resourceVersion in `lease` makes this a compare-and-swap.
            await self.client.replace(cast(Lease, Lease.from_dict(lease)))
        except ApiError as conflict:
            if conflict.status.code == 409:
                return False
            raise
        return True

    def _spec(
        self, acquired: datetime.datetime, renewed: datetime.datetime, transitions: int
    ) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_seconds,
            "acquireTime": _micro_time(acquired),
            "renewTime": _micro_time(renewed),
            "leaseTransitions": transitions,
        }

    async def _pause(self, stop: asyncio.Event) -> bool:
        """Wait a third of the lease, or until `stop`; True when stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self.lease_seconds / 3)
        return stop.is_set()

    async def wait_for_leadership(self, stop: asyncio.Event) -> bool:
        """Wait until we hold the Lease (True) or `stop` is set (False)."""
        while not stop.is_set():
            try:
                if await self.try_acquire():
                    log.info("Acquired the leadership lease", extra={"lease": self._lease})
                    return True
            except ApiError as error:
                log.warning(
                    "Could not read the leadership lease",
                    extra={"lease": self._lease, "error": error.status.message},
                )
            if await self._pause(stop):
                break
        return False

    async def keep_renewing(self, stop: asyncio.Event, on_lost: Callable[[], None]) -> None:
        """Renew every third of the lease; call `on_lost` when a renewal fails."""
        while not await self._pause(stop):
            try:
                held = await self.try_acquire()
            except (ApiError, OSError) as error:
                log.error(
                    "Renewing the leadership lease failed",
                    extra={"lease": self._lease, "error": str(error)},
                )
                held = False
            if not held:
                log.error("Lost the leadership lease; stopping", extra={"lease": self._lease})
                on_lost()
                return
