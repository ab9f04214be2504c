"""The operator's only door to the API server.

Reads return plain dicts; writes are server-side apply with the operator's
field manager, skipped when the live object already says what we would
write (see `drift`), so a resync or a relist costs reads only. Every write is
counted in `writes`, which `/metrics` and the benchmark report.

Secret values never leave this module: `secret_summary` returns the key
names and a checksum of the data, nothing else.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client as k8s
from kubernetes import dynamic
from kubernetes.client.exceptions import ApiException

from switchboard.api import constants
from switchboard.controller import drift
from switchboard.kubeclient import api_client


@dataclass(frozen=True)
class SecretSummary:
    keys: frozenset[str]
    checksum: str


class Kube:
    """A synchronous Kubernetes client for the reconciler (run in worker threads)."""

    def __init__(self, api_client: k8s.ApiClient, field_manager: str) -> None:
        self.api_client = api_client
        self.field_manager = field_manager
        self.dynamic = dynamic.DynamicClient(api_client)  # type: ignore[no-untyped-call]
        self.core = k8s.CoreV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)
        self.writes: Counter[str] = Counter()
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls, field_manager: str, kubeconfig: str | None = None) -> Kube:
        """A client as `switchboard.kubeclient.api_client` finds the API server."""
        return cls(api_client(kubeconfig), field_manager)

    def _count(self, verb: str, kind: str) -> None:
        with self._lock:
            self.writes[f"{verb} {kind}"] += 1

    # -- generic objects --

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        resource = self.dynamic.resources.get(api_version=api_version, kind=kind)
        try:
            obj = resource.get(name=name, namespace=namespace)
        except dynamic.exceptions.NotFoundError:
            return None
        return dict(obj.to_dict())

    def apply(self, desired: dict[str, Any]) -> dict[str, Any]:
        """Make the live object say `desired`; write only when it does not already."""
        meta = desired["metadata"]
        live = self.get(desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"])
        if live is not None and drift.in_sync(desired, live):
            return live
        resource = self.dynamic.resources.get(
            api_version=desired["apiVersion"], kind=desired["kind"]
        )
        applied = resource.server_side_apply(
            body=desired,
            name=meta["name"],
            namespace=meta["namespace"],
            field_manager=self.field_manager,
            force_conflicts=True,
        )
        self._count("apply", desired["kind"])
        return dict(applied.to_dict())

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        resource = self.dynamic.resources.get(api_version=api_version, kind=kind)
        try:
            resource.delete(name=name, namespace=namespace)
        except dynamic.exceptions.NotFoundError:
            return False
        self._count("delete", kind)
        return True

    def list_objects(
        self, api_version: str, kind: str, namespace: str, label_selector: str = ""
    ) -> list[dict[str, Any]]:
        resource = self.dynamic.resources.get(api_version=api_version, kind=kind)
        items = resource.get(namespace=namespace, label_selector=label_selector).items
        return [dict(item.to_dict()) for item in items]

    # -- plugin resources --

    def get_plugin(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = cast(
                dict[str, Any],
                self.custom.get_namespaced_custom_object(
                    constants.GROUP, constants.VERSION, namespace, plural, name
                ),
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return obj

    def list_plugins(self, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        """Resources of one kind in `namespace`, or in every namespace when None."""
        if namespace is None:
            listing = self.custom.list_cluster_custom_object(
                constants.GROUP, constants.VERSION, plural
            )
        else:
            listing = self.custom.list_namespaced_custom_object(
                constants.GROUP, constants.VERSION, namespace, plural
            )
        return list(listing.get("items", []))  # type: ignore[attr-defined]

    def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            constants.GROUP, constants.VERSION, namespace, plural, name, {"status": status}
        )
        self._count("patch-status", plural)

    # -- secrets and events --

    def secret_summary(self, namespace: str, name: str) -> SecretSummary | None:
        """Key names and a checksum of a Secret's data; never the values."""
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        data = {k: str(v) for k, v in (secret.data or {}).items()}
        digest = hashlib.sha256()
        for key in sorted(data):
            digest.update(key.encode() + b"\0" + data[key].encode() + b"\0")
        return SecretSummary(frozenset(data), digest.hexdigest()[:16])

    def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """One Secret value, for the licence check (a licence is not a credential)."""
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        raw = (secret.data or {}).get(key)
        return None if raw is None else base64.b64decode(str(raw)).decode(errors="replace")

    def post_event(
        self, involved: dict[str, Any], type_: str, reason: str, message: str, component: str
    ) -> None:
        meta = involved["metadata"]
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved["apiVersion"],
                "kind": involved["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": component,
            "firstTimestamp": _timestamp(),
            "lastTimestamp": _timestamp(),
            "count": 1,
        }
        self.core.create_namespaced_event(meta["namespace"], event)  # type: ignore[arg-type]
        self._count("create", "Event")


def _timestamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
