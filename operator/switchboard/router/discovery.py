"""Where the routing table comes from: the Kubernetes API, or a static list.

The Kubernetes backend watches both kinds and the plugins' EndpointSlices
(found by the labels the operator puts on every plugin Service, which the
EndpointSlice controller copies onto its slices). An endpoint is eligible
when its resource is enabled and the endpoint is ready. The static backend
takes routes from local mode, in process or from a JSON file it watches.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from switchboard.api import constants
from switchboard.router.table import PluginRoute, RoutingTable

log = logging.getLogger("switchboard.router")

#: Seconds a watch request stays open before it is renewed.
WATCH_SECONDS = 60


class Discovery:
    """Holds the current table and tells the router when it changes."""

    def __init__(self) -> None:
        self.table = RoutingTable()
        self.ready = asyncio.Event()
        self._listeners: list[Callable[[RoutingTable], None]] = []

    def subscribe(self, listener: Callable[[RoutingTable], None]) -> None:
        self._listeners.append(listener)

    def publish(self, routes: Iterable[PluginRoute]) -> None:
        self.table = RoutingTable(tuple(routes))
        for listener in self._listeners:
            listener(self.table)
        self.ready.set()

    async def start(self) -> None:
        """Begin discovering; `ready` is set after the first full view."""

    async def stop(self) -> None:
        """Stop discovering."""


class StaticDiscovery(Discovery):
    """Routes given by local mode: directly (`publish`) or through a JSON file.

    The file holds `{"routes": [PluginRoute fields...]}` and is re-read when
    its modification time changes.
    """

    def __init__(self, path: Path | None = None, poll_seconds: float = 0.25) -> None:
        super().__init__()
        self.path, self.poll_seconds = path, poll_seconds
        self._task: asyncio.Task[None] | None = None
        self._mtime = 0.0

    @staticmethod
    def write(path: Path, routes: Iterable[PluginRoute]) -> None:
        """Replace the routes file atomically (the router never reads half a file)."""
        data = {"routes": [route.__dict__ for route in routes]}
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=2))
        temporary.replace(path)

    def _load(self) -> None:
        assert self.path is not None
        data = json.loads(self.path.read_text())
        routes = []
        for item in data.get("routes", []):
            for key in ("permissions", "endpoints", "not_ready"):
                item[key] = tuple(item.get(key, ()))
            routes.append(PluginRoute(**item))
        self.publish(routes)

    async def start(self) -> None:
        if self.path is None:
            if not self.ready.is_set():
                self.publish([])
            return
        self._task = asyncio.create_task(self._watch_file(), name="static routes")

    async def _watch_file(self) -> None:
        assert self.path is not None
        while True:
            try:
                mtime = self.path.stat().st_mtime
                if mtime != self._mtime:
                    self._mtime = mtime
                    self._load()
            except (OSError, ValueError, TypeError) as error:
                log.warning("Could not read routes from %s: %s", self.path, error)
            await asyncio.sleep(self.poll_seconds)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _address(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def routes_from(
    resources: Iterable[dict[str, Any]], slices: Iterable[dict[str, Any]]
) -> list[PluginRoute]:
    """Join plugin resources with the EndpointSlices of their Services."""
    endpoints: dict[tuple[str, str, str], tuple[set[str], set[str]]] = {}
    for item in slices:
        meta = item.get("metadata", {})
        labels = meta.get("labels") or {}
        key = (
            labels.get(constants.LABEL_KIND, ""),
            meta.get("namespace", ""),
            labels.get(constants.LABEL_PLUGIN, ""),
        )
        port = next(
            (
                p.get("port")
                for p in item.get("ports") or []
                if p.get("name") in (constants.PLUGIN_PORT_NAME, None)
            ),
            constants.PLUGIN_GRPC_PORT,
        )
        ready, not_ready = endpoints.setdefault(key, (set(), set()))
        for endpoint in item.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            # An unset `ready` means "ready" in the EndpointSlice API.
            is_ready = conditions.get("ready") is not False and not conditions.get("terminating")
            for ip in endpoint.get("addresses") or []:
                (ready if is_ready else not_ready).add(_address(ip, int(port or 0)))
    routes = []
    for resource in resources:
        meta = resource["metadata"]
        key = (constants.kind_label(resource["kind"]), meta.get("namespace", ""), meta["name"])
        ready, not_ready = endpoints.get(key, (set(), set()))
        routes.append(PluginRoute.from_resource(resource, ready, not_ready))
    return routes


class KubernetesDiscovery(Discovery):
    """Watches CommunicationPlugins, VendorIntegrations and plugin EndpointSlices."""

    def __init__(self, api_client: k8s.ApiClient, namespace: str | None = None) -> None:
        super().__init__()
        self.api_client, self.namespace = api_client, namespace
        self.custom = k8s.CustomObjectsApi(api_client)
        self.discovery_api = k8s.DiscoveryV1Api(api_client)
        self._resources: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._slices: dict[tuple[str, str], dict[str, Any]] = {}
        self._synced: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for stream in (
            constants.COMMUNICATION_PLUGINS,
            constants.VENDOR_INTEGRATIONS,
            "endpointslices",
        ):
            threading.Thread(
                target=self._run, args=(stream,), name=f"watch {stream}", daemon=True
            ).start()

    async def stop(self) -> None:
        self._stop.set()

    def _lister(self, stream: str) -> Callable[..., Any]:
        selector = f"{constants.LABEL_MANAGED_BY}={constants.MANAGED_BY}"
        namespace = self.namespace
        if stream == "endpointslices":
            if namespace:
                return lambda **kw: self.discovery_api.list_namespaced_endpoint_slice(
                    namespace, label_selector=selector, **kw
                )
            return lambda **kw: self.discovery_api.list_endpoint_slice_for_all_namespaces(
                label_selector=selector, **kw
            )
        if namespace:
            return lambda **kw: self.custom.list_namespaced_custom_object(
                constants.GROUP, constants.VERSION, namespace, stream, **kw
            )
        return lambda **kw: self.custom.list_cluster_custom_object(
            constants.GROUP, constants.VERSION, stream, **kw
        )

    def _as_dict(self, obj: Any) -> dict[str, Any]:
        if isinstance(obj, dict):
            return obj
        return dict(self.api_client.sanitize_for_serialization(obj))  # type: ignore[no-untyped-call]

    def _run(self, stream: str) -> None:
        lister = self._lister(stream)
        while not self._stop.is_set():
            try:
                listing = self._as_dict(lister())
                items = listing.get("items", [])
                kind = {
                    constants.COMMUNICATION_PLUGINS: constants.COMMUNICATION_PLUGIN,
                    constants.VENDOR_INTEGRATIONS: constants.VENDOR_INTEGRATION,
                }.get(stream)
                with self._lock:
                    self._replace(stream, items, kind)
                    self._synced.add(stream)
                self._changed()
                version = listing["metadata"]["resourceVersion"]
                watcher = watch.Watch()  # type: ignore[no-untyped-call]
                for event in watcher.stream(  # type: ignore[no-untyped-call]
                    lister, resource_version=version, timeout_seconds=WATCH_SECONDS
                ):
                    if self._stop.is_set():
                        watcher.stop()  # type: ignore[no-untyped-call]
                        return
                    obj = self._as_dict(event["object"])
                    if event["type"] == "ERROR":
                        break
                    if kind is not None:
                        obj.setdefault("kind", kind)
                    with self._lock:
                        self._apply_event(stream, event["type"], obj)
                    self._changed()
            except ApiException as error:
                if error.status != 410:  # 410 Gone: relist from scratch
                    log.warning("Watching %s failed: %s", stream, error.reason)
                    self._stop.wait(1)
            except Exception as error:  # a watch must survive anything
                log.warning("Watching %s failed: %s", stream, error)
                self._stop.wait(1)

    def _replace(self, stream: str, items: list[dict[str, Any]], kind: str | None) -> None:
        if stream == "endpointslices":
            self._slices = {(i["metadata"]["namespace"], i["metadata"]["name"]): i for i in items}
            return
        assert kind is not None
        self._resources = {k: v for k, v in self._resources.items() if k[0] != kind}
        for item in items:
            item.setdefault("kind", kind)
            meta = item["metadata"]
            self._resources[(kind, meta["namespace"], meta["name"])] = item

    def _apply_event(self, stream: str, type_: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        if stream == "endpointslices":
            key2 = (meta["namespace"], meta["name"])
            if type_ == "DELETED":
                self._slices.pop(key2, None)
            else:
                self._slices[key2] = obj
            return
        key3 = (obj["kind"], meta["namespace"], meta["name"])
        if type_ == "DELETED":
            self._resources.pop(key3, None)
        else:
            self._resources[key3] = obj

    def _changed(self) -> None:
        with self._lock:
            if len(self._synced) < 3:
                return
            routes = routes_from(list(self._resources.values()), list(self._slices.values()))
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.publish, routes)
