"""Where the routing table comes from: the Kubernetes API, or a static list.

`Discovery` holds the table; `routes_from` joins plugin resources with their
EndpointSlices (an endpoint is eligible when its resource is enabled and the
endpoint is ready). The static backend takes routes from local mode, in
process or from a JSON file it watches; the Kubernetes backend, which watches
the API server, lives in `switchboard.router.kubernetes` so that a static
router never loads the Kubernetes client.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from switchboard.api import constants
from switchboard.router.table import PluginRoute, RoutingTable

if TYPE_CHECKING:
    from switchboard.api.conditions import GateVerdict
    from switchboard.router.dispatch import Problem

log = logging.getLogger("switchboard.router")


class Discovery:
    """Holds the current table and tells the router when it changes."""

    def __init__(self) -> None:
        self.table = RoutingTable()
        self.ready = asyncio.Event()
        self._listeners: list[Callable[[RoutingTable], None]] = []
        #: Told of each gate verdict a resource's status shows (the audit trail);
        #: the Kubernetes backend reads them from the operator's conditions.
        self.on_gate: Callable[[dict[str, Any], GateVerdict], None] | None = None

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

    def report_problem(self, route: PluginRoute, problem: Problem) -> None:
        """Tell the plugin's owner its provider refused the plugin's own settings.

        Nothing to do here: local mode shows it in `switchboard status`, from
        the router's status view. The Kubernetes backend posts an Event.
        """


class StaticDiscovery(Discovery):
    """Routes given by local mode: directly (`publish`) or through a JSON file.

    The file holds `{"routes": [PluginRoute fields...]}` and is re-read when
    it changes (watchfiles: inotify on Linux; its folder is watched, because
    the file is replaced, not written in place).
    """

    def __init__(self, path: Path | None = None) -> None:
        super().__init__()
        self.path = path
        self._task: asyncio.Task[None] | None = None

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
            for key in ("permissions", "endpoints", "not_ready", "capabilities"):
                item[key] = tuple(item.get(key, ()))
            item["operation_permissions"] = tuple(
                tuple(pair) for pair in item.get("operation_permissions", ())
            )
            routes.append(PluginRoute(**item))
        self.publish(routes)

    async def start(self) -> None:
        if self.path is None:
            if not self.ready.is_set():
                self.publish([])
            return
        self._task = asyncio.create_task(self._watch_file(), name="static routes")

    async def _watch_file(self) -> None:
        from watchfiles import awatch  # a static router's only watcher; Kubernetes needs none

        assert self.path is not None
        path = self.path.resolve()

        def is_routes_file(_change: Any, changed: str) -> bool:
            return Path(changed) == path

        self._reload()
        async for _changes in awatch(
            path.parent, recursive=False, debounce=50, watch_filter=is_routes_file
        ):
            self._reload()

    def _reload(self) -> None:
        try:
            self._load()
        except (OSError, ValueError, TypeError) as error:
            log.warning(
                "Could not read the routes file",
                extra={"path": str(self.path), "error": str(error)},
            )

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
