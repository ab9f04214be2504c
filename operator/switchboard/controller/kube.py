"""The operator's only door to the API server, on lightkube's async client.

Reads return plain dicts (the builders, drift and status work on dicts);
writes are server-side apply with the operator's field manager, skipped when
the live object already says what we would write (see `drift`), so a resync
or a relist costs reads only. Every write is counted in `writes` and in the
operator's metrics.

Secrets are only ever read one by one, by the name a resource gives: never
listed, never watched. Their values never leave this module:
`secret_summary` returns the key names and a checksum of the data.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import ssl
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp
import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.codecs import resource_registry
from lightkube.config.kubeconfig import SingleConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Event
from lightkube.types import PatchType

from switchboard.api import constants
from switchboard.api.events import event_about
from switchboard.api.models import RESOURCE_MODELS
from switchboard.controller import drift

__all__ = ["ApiError", "Kube", "SecretSummary", "api_message"]

log = logging.getLogger("switchboard.operator")

#: The API server's answer to a write it cannot accept as sent (e.g. a list
#: entry someone else added clashes with ours: "duplicate port name").
UNPROCESSABLE = 422

#: The two kinds of plugin resource, as lightkube resources (with their status).
PLUGIN_RESOURCES = {
    model.kind_name: create_namespaced_resource(
        constants.GROUP, constants.VERSION, model.kind_name, model.plural
    )
    for model in RESOURCE_MODELS
}


def api_message(error: ApiError) -> str:
    """What the API server said, for a condition or an Event."""
    status = error.status
    return f"{status.code} {status.reason}: {status.message}"


def _resource(api_version: str, kind: str) -> Any:
    return resource_registry.load(api_version, kind)


def _as_dict(obj: Any) -> dict[str, Any]:
    data: dict[str, Any] = obj.to_dict()
    return data


def _tls_context(config: SingleConfig) -> ssl.SSLContext | None:
    """The TLS settings of a kubeconfig (CA, client certificate) as an SSLContext."""
    cluster, user = config.cluster, config.user
    if not cluster.server.startswith("https://"):
        return None
    context = ssl.create_default_context(
        cafile=str(config.abs_file(cluster.certificate_auth)) if cluster.certificate_auth else None,
        cadata=base64.b64decode(cluster.certificate_auth_data).decode()
        if cluster.certificate_auth_data
        else None,
    )
    if cluster.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if user is not None and (user.client_cert or user.client_cert_data):
        if user.client_cert and user.client_key:
            context.load_cert_chain(
                str(config.abs_file(user.client_cert)), str(config.abs_file(user.client_key))
            )
        elif user.client_cert_data and user.client_key_data:
            # ssl loads a chain from files only: write them where only we can
            # read them, and remove them once loaded.
            with tempfile.TemporaryDirectory(prefix="switchboard-tls-") as private:
                cert, key = Path(private, "client.crt"), Path(private, "client.key")
                for path, data in ((cert, user.client_cert_data), (key, user.client_key_data)):
                    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(descriptor, "wb") as handle:
                        handle.write(base64.b64decode(data))
                context.load_cert_chain(str(cert), str(key))
    return context


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """lightkube's requests, sent through aiohttp (which kopf has loaded already).

    Measured against the test control plane, eight requests at a time: 0.75 ms
    of CPU per request through aiohttp, 1.7 ms through httpx2's own transport;
    on a small node the operator's throughput is bounded by that CPU. The
    operator reads whole responses only (kopf watches, lightkube does not), so
    responses are not streamed. Not httpx-aiohttp's transport, which the plugins'
    clients use: importing it loads httpx beside lightkube's httpx2, 8 MB more
    operator RSS with 1,000 resources (99.5 against 91.2 MB, bench/operator.py)."""

    def __init__(self, tls: ssl.SSLContext | None, connections: int = 16) -> None:
        self._tls = tls
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    ssl=self._tls if self._tls is not None else False,
                    limit=self._connections,
                ),
                auto_decompress=False,
            )
        timeouts = request.extensions.get("timeout") or {}
        limit = max((t for t in timeouts.values() if t), default=30.0)
        async with self._session.request(
            request.method,
            str(request.url),
            headers=[(k.decode(), v.decode()) for k, v in request.headers.raw],
            data=await request.aread() or None,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=limit),
        ) as response:
            content = await response.read()
            return httpx2.Response(
                response.status,
                headers=[(k, v) for k, v in response.raw_headers],
                content=content,
            )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass(frozen=True)
class SecretSummary:
    keys: frozenset[str]
    checksum: str


def summarise_secret(data: Mapping[str, str]) -> SecretSummary:
    """Key names and a checksum of a Secret's data (base64 values); never the values."""
    digest = hashlib.sha256()
    for key in sorted(data):
        digest.update(key.encode() + b"\0" + str(data[key]).encode() + b"\0")
    return SecretSummary(frozenset(data), digest.hexdigest()[:16])


#: Called with (verb, kind) after every write: the operator's metrics.
WriteObserver = Callable[[str, str], None]


class Kube:
    """An async Kubernetes client for the reconciler."""

    def __init__(
        self,
        client: AsyncClient,
        field_manager: str,
        on_write: WriteObserver | None = None,
    ) -> None:
        self.client = client
        self.field_manager = field_manager
        self.writes: Counter[str] = Counter()
        self.on_write = on_write

    @classmethod
    def from_config(cls, config: SingleConfig, field_manager: str) -> Kube:
        client = AsyncClient(
            config,
            field_manager=field_manager,
            trust_env=False,
            transport=AiohttpTransport(_tls_context(config)),
        )
        return cls(client, field_manager)

    async def close(self) -> None:
        await self.client.close()

    def _count(self, verb: str, kind: str) -> None:
        self.writes[f"{verb} {kind}"] += 1
        if self.on_write is not None:
            self.on_write(verb, kind)

    # -- generic objects --

    async def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        """The object, or None when there is none."""
        try:
            obj = await self.client.get(_resource(api_version, kind), name, namespace=namespace)
        except ApiError as error:
            if error.status.code == 404:
                return None
            raise
        return _as_dict(obj)

    async def _server_side_apply(self, desired: dict[str, Any]) -> dict[str, Any]:
        meta = desired["metadata"]
        applied = await self.client.patch(
            _resource(desired["apiVersion"], desired["kind"]),
            meta["name"],
            desired,
            namespace=meta["namespace"],
            patch_type=PatchType.APPLY,
            field_manager=self.field_manager,
            force=True,
        )
        self._count("apply", desired["kind"])
        return _as_dict(applied)

    async def apply(self, desired: dict[str, Any]) -> dict[str, Any]:
        """Make the live object say `desired`; write only when it does not already.

        Server-side apply merges lists by key, so an entry someone else added by
        hand can clash with ours (a Service port renamed or renumbered in place:
        422 "duplicate port name") and every later apply fails. Such an object
        is repaired with a JSON merge patch, which replaces our lists whole,
        and then applied again so the operator owns its fields."""
        meta = desired["metadata"]
        live = await self.get(
            desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"]
        )
        if live is not None and drift.in_sync(desired, live):
            return live
        try:
            return await self._server_side_apply(desired)
        except ApiError as error:
            if live is None or error.status.code != UNPROCESSABLE:
                raise
            log.warning(
                "Repairing an object after a refused apply",
                extra={
                    "resource": f"{desired['kind']}/{meta['namespace']}/{meta['name']}",
                    "error": api_message(error),
                },
            )
        await self.client.patch(
            _resource(desired["apiVersion"], desired["kind"]),
            meta["name"],
            drift.owned_fields(desired),
            namespace=meta["namespace"],
            patch_type=PatchType.MERGE,
            field_manager=self.field_manager,
        )
        self._count("repair", desired["kind"])
        return await self._server_side_apply(desired)

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        try:
            await self.client.delete(_resource(api_version, kind), name, namespace=namespace)
        except ApiError as error:
            if error.status.code == 404:
                return False
            raise
        self._count("delete", kind)
        return True

    async def list_objects(
        self, api_version: str, kind: str, namespace: str, labels: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        return [
            _as_dict(obj)
            async for obj in self.client.list(
                _resource(api_version, kind), namespace=namespace, labels=dict(labels)
            )
        ]

    # -- plugin resources --

    async def get_plugin(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = await self.client.get(PLUGIN_RESOURCES[kind], name, namespace=namespace)
        except ApiError as error:
            if error.status.code == 404:
                return None
            raise
        return _as_dict(obj)

    async def list_plugins(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        """Resources of one kind in `namespace`."""
        return [
            _as_dict(obj)
            async for obj in self.client.list(PLUGIN_RESOURCES[kind], namespace=namespace)
        ]

    async def plugin_names(self, kind: str, namespace: str | None) -> list[tuple[str, str]]:
        """(namespace, name) of every resource of one kind, in `namespace` or in all.

        Listed in pages: the periodic resync needs names, and a full list of
        every resource at once would be a burst of memory."""
        names: list[tuple[str, str]] = []
        async for obj in self.client.list(
            PLUGIN_RESOURCES[kind], namespace=namespace or "*", chunk_size=100
        ):
            meta = obj.metadata
            if meta is not None and meta.namespace and meta.name:
                names.append((meta.namespace, meta.name))
        return names

    async def patch_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        await self.client.patch(
            PLUGIN_RESOURCES[kind].Status,
            name,
            {"status": status},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )
        self._count("patch-status", kind)

    # -- secrets, namespaces, events --

    async def _secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's data (base64 values), or None when there is no such Secret."""
        secret = await self.get("v1", "Secret", namespace, name)
        return None if secret is None else dict(secret.get("data") or {})

    async def secret_summary(self, namespace: str, name: str) -> SecretSummary | None:
        """Key names and a checksum of a Secret's data; never the values."""
        data = await self._secret_data(namespace, name)
        return None if data is None else summarise_secret(data)

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """One Secret value, for the licence check (a licence is not a credential)."""
        raw = (await self._secret_data(namespace, name) or {}).get(key)
        return None if raw is None else base64.b64decode(str(raw)).decode(errors="replace")

    async def namespace_labels(self, namespace: str) -> dict[str, str]:
        obj = await self.get("v1", "Namespace", None, namespace)
        return dict(((obj or {}).get("metadata") or {}).get("labels") or {})

    async def api_server_addresses(self) -> list[str]:
        """The addresses of the `kubernetes` Service's endpoints in `default`."""
        slices = await self.list_objects(
            "discovery.k8s.io/v1",
            "EndpointSlice",
            "default",
            {"kubernetes.io/service-name": "kubernetes"},
        )
        return sorted(
            {a for s in slices for e in s.get("endpoints") or [] for a in e.get("addresses") or []}
        )

    async def post_event(
        self, involved: dict[str, Any], type_: str, reason: str, message: str, component: str
    ) -> None:
        event = event_about(involved, type_, reason, message, component)
        await self.client.create(cast(Event, Event.from_dict(event)))
        self._count("create", "Event")
