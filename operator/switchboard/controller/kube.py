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
import json
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from switchboard.api import constants
from switchboard.controller import drift
from switchboard.kubeclient import api_client

#: Plural (URL) name of every kind the operator reads or writes. A fixed table,
#: not API discovery: the kinds are known, and the Kubernetes client's typed APIs
#: and discovery cost tens of MB of memory for the operator's few calls.
PLURALS = {
    "ConfigMap": "configmaps",
    "Deployment": "deployments",
    "EndpointSlice": "endpointslices",
    "Event": "events",
    "NetworkPolicy": "networkpolicies",
    "Pod": "pods",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "Secret": "secrets",
    "Service": "services",
    "ServiceAccount": "serviceaccounts",
}

_JSON = "application/json"
_APPLY = "application/apply-patch+yaml"  # JSON is YAML: the body is sent as JSON
_MERGE_PATCH = "application/merge-patch+json"
#: A list's items as metadata only (PartialObjectMetadataList), where the server can.
_METADATA_LIST = f"{_JSON};as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,{_JSON}"
#: Items per page when the operator lists resources only to name them.
PAGE_SIZE = 100


def resource_path(
    api_version: str, plural: str, namespace: str | None = None, name: str | None = None
) -> str:
    """The URL path of a namespaced resource (or of its collection)."""
    path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespace is not None:
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    return f"{path}/{name}" if name is not None else path


def bearer_token(api: k8s.ApiClient) -> str | None:
    """The `Authorization` header value (`Bearer ...`) of the client's credentials, if any.

    Through `auth_settings()`, which every client version fills from wherever its
    config loader put the token, and which refreshes expiring tokens first."""
    setting = api.configuration.auth_settings().get("BearerToken") or {}
    value = setting.get("value")
    return str(value) if value else None


def request(
    api: k8s.ApiClient,
    method: str,
    path: str,
    *,
    query: Iterable[tuple[str, str]] = (),
    body: Any = None,
    content_type: str = _JSON,
    accept: str = _JSON,
) -> Any:
    """One API call with the client's connection and credentials; the JSON reply as
    plain data. Raises `ApiException` (`.status` 404, 409, ...) for a reply that is not 2xx.

    The client's generated API classes and models are not used: they cost the
    operator tens of MB of memory for a handful of calls."""
    config = api.configuration
    query = list(query)
    url = config.host + path + (f"?{urlencode(query)}" if query else "")
    headers = {**api.default_headers, "Accept": accept}
    if (token := bearer_token(api)) is not None:
        headers["Authorization"] = token
    payload = None
    if body is not None:
        headers["Content-Type"] = content_type
        payload = json.dumps(body)
    response = api.rest_client.pool_manager.request(method, url, body=payload, headers=headers)
    data: bytes = response.data
    if not 200 <= response.status <= 299:
        error = ApiException(status=response.status, reason=response.reason)
        error.body = data.decode(errors="replace")
        error.headers = response.headers
        raise error
    return json.loads(data) if data else None


@dataclass(frozen=True)
class SecretSummary:
    keys: frozenset[str]
    checksum: str


class Kube:
    """A synchronous Kubernetes client for the reconciler (run in worker threads)."""

    def __init__(self, api_client: k8s.ApiClient, field_manager: str) -> None:
        self.api_client = api_client
        self.field_manager = field_manager
        self.writes: Counter[str] = Counter()
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls, field_manager: str, kubeconfig: str | None = None) -> Kube:
        """A client as `switchboard.kubeclient.api_client` finds the API server."""
        return cls(api_client(kubeconfig), field_manager)

    def _count(self, verb: str, kind: str) -> None:
        with self._lock:
            self.writes[f"{verb} {kind}"] += 1

    def _call(self, method: str, path: str, **options: Any) -> Any:
        return request(self.api_client, method, path, **options)

    def _read(self, path: str) -> dict[str, Any] | None:
        """The object at `path`, or None when there is none."""
        try:
            obj: dict[str, Any] = self._call("GET", path)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return obj

    # -- generic objects --

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read(resource_path(api_version, PLURALS[kind], namespace, name))

    def apply(self, desired: dict[str, Any]) -> dict[str, Any]:
        """Make the live object say `desired`; write only when it does not already."""
        meta = desired["metadata"]
        live = self.get(desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"])
        if live is not None and drift.in_sync(desired, live):
            return live
        applied: dict[str, Any] = self._call(
            "PATCH",
            resource_path(
                desired["apiVersion"], PLURALS[desired["kind"]], meta["namespace"], meta["name"]
            ),
            query=[("fieldManager", self.field_manager), ("force", "true")],
            body=desired,
            content_type=_APPLY,
        )
        self._count("apply", desired["kind"])
        return applied

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        try:
            self._call("DELETE", resource_path(api_version, PLURALS[kind], namespace, name))
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        self._count("delete", kind)
        return True

    def list_objects(
        self, api_version: str, kind: str, namespace: str, label_selector: str = ""
    ) -> list[dict[str, Any]]:
        query = [("labelSelector", label_selector)] if label_selector else []
        listing = self._call(
            "GET", resource_path(api_version, PLURALS[kind], namespace), query=query
        )
        return list(listing.get("items") or [])

    # -- plugin resources --

    def get_plugin(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read(resource_path(constants.API_VERSION, plural, namespace, name))

    def list_plugins(self, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        """Resources of one kind in `namespace`, or in every namespace when None."""
        listing = self._call("GET", resource_path(constants.API_VERSION, plural, namespace))
        return list(listing.get("items") or [])

    def plugin_names(self, plural: str, namespace: str | None) -> list[tuple[str, str]]:
        """(namespace, name) of every resource of one kind, in `namespace` or in all.

        Listed in pages and as metadata only: the periodic resync needs names,
        and a full list of every resource at once would be a burst of memory."""
        names: list[tuple[str, str]] = []
        token = ""
        while True:
            query = [("limit", str(PAGE_SIZE))] + ([("continue", token)] if token else [])
            listing = self._call(
                "GET",
                resource_path(constants.API_VERSION, plural, namespace),
                query=query,
                accept=_METADATA_LIST,
            )
            for item in listing.get("items") or []:
                names.append((item["metadata"]["namespace"], item["metadata"]["name"]))
            token = (listing.get("metadata") or {}).get("continue") or ""
            if not token:
                return names

    def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        self._call(
            "PATCH",
            resource_path(constants.API_VERSION, plural, namespace, name) + "/status",
            body={"status": status},
            content_type=_MERGE_PATCH,
        )
        self._count("patch-status", plural)

    # -- secrets and events --

    def _secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's data (base64 values), or None when there is no such Secret."""
        secret = self.get("v1", "Secret", namespace, name)
        return None if secret is None else dict(secret.get("data") or {})

    def secret_summary(self, namespace: str, name: str) -> SecretSummary | None:
        """Key names and a checksum of a Secret's data; never the values."""
        data = self._secret_data(namespace, name)
        if data is None:
            return None
        digest = hashlib.sha256()
        for key in sorted(data):
            digest.update(key.encode() + b"\0" + str(data[key]).encode() + b"\0")
        return SecretSummary(frozenset(data), digest.hexdigest()[:16])

    def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """One Secret value, for the licence check (a licence is not a credential)."""
        raw = (self._secret_data(namespace, name) or {}).get(key)
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
        self._call("POST", resource_path("v1", "events", meta["namespace"]), body=event)
        self._count("create", "Event")


def _timestamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
