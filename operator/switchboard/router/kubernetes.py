"""The Kubernetes backend: routes from the API server's watches, callers from its reviews.

`KubernetesDiscovery` watches CommunicationPlugins, VendorIntegrations and
the plugins' EndpointSlices (found by the labels the operator puts on every
plugin Service, which the EndpointSlice controller copies onto its slices).
`KubernetesAuthority` asks the API server who a token belongs to
(TokenReview) and whether RBAC lets them (SubjectAccessReview); see
`switchboard.router.auth` for the verbs. When a provider refuses a plugin's
own credentials or settings, the discovery posts a Warning Event on the
plugin's resource (`kubectl describe` shows it). Only a router with
`backend=kubernetes` imports this module and the Kubernetes client with it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache
from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from switchboard.api import constants
from switchboard.api.conditions import GateVerdict, gate_verdict
from switchboard.api.events import event_about
from switchboard.router.auth import SERVICE_ACCOUNT_PREFIX, AuthError, Caller
from switchboard.router.discovery import Discovery, routes_from
from switchboard.router.dispatch import Problem
from switchboard.router.table import PluginRoute

log = logging.getLogger("switchboard.router")

#: Seconds a watch request stays open before it is renewed.
WATCH_SECONDS = 60
#: Token reviews and access decisions kept (each for the cache's seconds).
DECISION_CACHE_ENTRIES = 10_000
#: The component named on the Events the router posts.
COMPONENT = "switchboard-router"


def problem_message(problem: Problem) -> str:
    """An Event's words for a plugin whose provider refused its own settings."""
    what = "credentials" if problem.reason == "ProviderRejectedCredentials" else "configuration"
    return (
        f"The provider refused this plugin's {what}: {problem.message} "
        f"({problem.failures} failed attempt(s) since it last delivered; "
        "the router sent those messages to the next plugin)"
    )


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
        self._reports: set[asyncio.Task[None]] = set()
        #: The last gate verdict handed to the audit trail, by resource uid.
        self._verdicts: dict[str, GateVerdict] = {}

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

    def report_problem(self, route: PluginRoute, problem: Problem) -> None:
        with self._lock:
            resource = self._resources.get((route.kind, route.namespace, route.name))
        if resource is None or self._loop is None:
            return  # deleted meanwhile: nobody to tell
        event = event_about(
            {"apiVersion": constants.API_VERSION, **resource},
            "Warning",
            problem.reason,
            problem_message(problem),
            COMPONENT,
        )
        task = self._loop.create_task(self._post_event(route.namespace, event))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    async def _post_event(self, namespace: str, event: dict[str, Any]) -> None:
        core = k8s.CoreV1Api(self.api_client)
        body: Any = event  # the client sends a plain dict body as it is (no model round trip)
        try:
            await asyncio.to_thread(core.create_namespaced_event, namespace, body)
        except ApiException as error:
            log.warning(
                "Could not post an Event about a plugin",
                extra={"namespace": namespace, "reason": event["reason"], "error": error.reason},
            )

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
                    log.warning(
                        "Watching the API server failed",
                        extra={"resources": stream, "error": str(error.reason)},
                    )
                    self._stop.wait(1)
            except Exception as error:  # a watch must survive anything
                log.warning(
                    "Watching the API server failed",
                    extra={"resources": stream, "error": str(error)},
                )
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
            self._gate_seen(item)

    def _gate_seen(self, resource: dict[str, Any]) -> None:
        """Hand a new gate verdict of the resource to the audit trail (on the watch
        thread, under the lock). A restarted router, or another replica, hands the
        same verdict again: the ledger keeps one row per verdict (its key)."""
        verdict = gate_verdict(resource)
        uid = resource["metadata"].get("uid", "")
        if verdict is None or self._verdicts.get(uid) == verdict:
            return
        self._verdicts[uid] = verdict
        if self.on_gate is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self.on_gate, resource, verdict)

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
            self._verdicts.pop(meta.get("uid", ""), None)
        else:
            self._resources[key3] = obj
            self._gate_seen(obj)

    def _changed(self) -> None:
        with self._lock:
            if len(self._synced) < 3:
                return
            routes = routes_from(list(self._resources.values()), list(self._slices.values()))
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.publish, routes)


class KubernetesAuthority:
    """TokenReview and SubjectAccessReview against the API server."""

    def __init__(self, api_client: k8s.ApiClient, cache_seconds: float) -> None:
        self.authn = k8s.AuthenticationV1Api(api_client)
        self.authz = k8s.AuthorizationV1Api(api_client)
        # Bounded: a burst of distinct tokens evicts the least recently used
        # answers, never grows the router without limit.
        self.cache: TTLCache[tuple[Any, ...], Any] = TTLCache(
            maxsize=DECISION_CACHE_ENTRIES, ttl=cache_seconds
        )

    async def authenticate(self, token: str) -> Caller:
        cached = self.cache.get(("token", token))
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        review = k8s.V1TokenReview(spec=k8s.V1TokenReviewSpec(token=token))
        result = await asyncio.to_thread(self.authn.create_token_review, review)
        status = result.status
        if not status or not status.authenticated or not status.user:
            raise AuthError(401, "The bearer token was not accepted by the cluster.")
        user = status.user
        name = user.username or ""
        home = None
        if name.startswith(SERVICE_ACCOUNT_PREFIX):
            home = name[len(SERVICE_ACCOUNT_PREFIX) :].split(":", 1)[0]
        caller = Caller(
            name=name,
            groups=tuple(user.groups or ()),
            uid=user.uid or "",
            extra=tuple((k, tuple(v)) for k, v in sorted((user.extra or {}).items())),
            home_namespace=home,
        )
        self.cache["token", token] = caller
        return caller

    async def allowed(
        self, caller: Caller, namespace: str, verb: str, resource: str, name: str = ""
    ) -> bool:
        key = ("sar", caller, namespace, verb, resource, name)
        cached = self.cache.get(key)
        if cached is not None:
            return bool(cached)
        review = k8s.V1SubjectAccessReview(
            spec=k8s.V1SubjectAccessReviewSpec(
                user=caller.name,
                groups=list(caller.groups),
                uid=caller.uid or None,
                extra={k: list(v) for k, v in caller.extra} or None,
                resource_attributes=k8s.V1ResourceAttributes(
                    namespace=namespace,
                    verb=verb,
                    group=constants.GROUP,
                    resource=resource,
                    name=name or None,
                ),
            )
        )
        result = await asyncio.to_thread(self.authz.create_subject_access_review, review)
        verdict = bool(result.status and result.status.allowed)
        self.cache[key] = verdict
        return verdict
