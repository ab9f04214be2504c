"""Leader election on a coordination.k8s.io Lease, so two replicas are safe.

Only the holder of the Lease reconciles. A standby polls until the Lease
expires (its holder died or lost the network) and takes over. A leader that
cannot renew in time stops reconciling at once and exits non-zero, so the
kubelet restarts it as a standby: two operators never write at the same time
for longer than one renewal period.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from switchboard.controller.kube import request, resource_path

log = logging.getLogger("switchboard.operator")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _micro_time(value: datetime.datetime) -> str:
    """A Lease's MicroTime: RFC 3339 in UTC with microseconds."""
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(value) if value else None


class LeaseElector:
    def __init__(
        self,
        api_client: k8s.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: int = 15,
    ) -> None:
        self.api_client = api_client
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_seconds = lease_seconds

    def _path(self, name: str | None = None) -> str:
        return resource_path("coordination.k8s.io/v1", "leases", self.namespace, name)

    def try_acquire(self) -> bool:
        """Take or renew the Lease if it is ours or has expired; True when we hold it."""
        now = _now()
        try:
            lease: dict[str, Any] = request(self.api_client, "GET", self._path(self.name))
        except ApiException as error:
            if error.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, now, transitions=0),
            }
            try:
                request(self.api_client, "POST", self._path(), body=body)
            except ApiException as conflict:
                if conflict.status == 409:
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
            request(self.api_client, "PUT", self._path(self.name), body=lease)
        except ApiException as conflict:
            if conflict.status == 409:
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

    def wait_for_leadership(self, stop: threading.Event) -> bool:
        """Block until we hold the Lease (True) or `stop` is set (False)."""
        while not stop.is_set():
            try:
                if self.try_acquire():
                    log.info("Acquired leadership lease %s/%s", self.namespace, self.name)
                    return True
            except ApiException as error:
                log.warning("Could not read leadership lease: %s", error.reason)
            stop.wait(self.lease_seconds / 3)
        return False

    def keep_renewing(self, stop: threading.Event, on_lost: Callable[[], None]) -> None:
        """Renew every third of the lease; call `on_lost` when a renewal fails."""
        while not stop.wait(self.lease_seconds / 3):
            try:
                held = self.try_acquire()
            except ApiException as error:
                log.error("Renewing the leadership lease failed: %s", error.reason)
                held = False
            if not held:
                log.error("Lost leadership lease %s/%s; stopping", self.namespace, self.name)
                on_lost()
                return
