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

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("switchboard.operator")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class LeaseElector:
    def __init__(
        self,
        api_client: k8s.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: int = 15,
    ) -> None:
        self.api = k8s.CoordinationV1Api(api_client)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_seconds = lease_seconds

    def try_acquire(self) -> bool:
        """Take or renew the Lease if it is ours or has expired; True when we hold it."""
        now = _now()
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            body = k8s.V1Lease(
                metadata=k8s.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=self._spec(now, now, transitions=0),
            )
            try:
                self.api.create_namespaced_lease(self.namespace, body)
            except ApiException as conflict:
                if conflict.status == 409:
                    return False
                raise
            return True
        spec = lease.spec or k8s.V1LeaseSpec()
        holder = spec.holder_identity
        renewed = spec.renew_time or spec.acquire_time
        expired = (
            renewed is None
            or renewed
            + datetime.timedelta(seconds=spec.lease_duration_seconds or self.lease_seconds)
            < now
        )
        if holder != self.identity and not expired:
            return False
        acquired = spec.acquire_time if holder == self.identity else now
        transitions = (spec.lease_transitions or 0) + (0 if holder == self.identity else 1)
        lease.spec = self._spec(acquired or now, now, transitions)
        try:
            # The resourceVersion in `lease` makes this a compare-and-swap.
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as conflict:
            if conflict.status == 409:
                return False
            raise
        return True

    def _spec(
        self, acquired: datetime.datetime, renewed: datetime.datetime, transitions: int
    ) -> k8s.V1LeaseSpec:
        return k8s.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=self.lease_seconds,
            acquire_time=acquired,
            renew_time=renewed,
            lease_transitions=transitions,
        )

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
