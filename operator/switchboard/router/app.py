"""The router process: discovery, endpoint pool, dispatcher, HTTP and gRPC servers.

`Router` wires the parts; `switchboard router` runs one until SIGTERM, and
local mode and the tests run one in process.

Hostile or slow clients must not take the router from everyone else. A
request is authenticated from its headers before anything else; its body is
read only then, within `body_timeout_seconds` (408 after) and
`max_body_bytes` (413), and decoded with a nesting limit (400). A connection
that does not finish its headers within `header_timeout_seconds` is closed.
Only dispatch holds one of the `max_concurrency` in-flight slots; past the
limit a request is refused at once (429 / RESOURCE_EXHAUSTED), never queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web
from opentelemetry import context as trace_context
from opentelemetry import propagate, trace
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from switchboard.api.conditions import GateVerdict
from switchboard.ledger import MEMORY, Ledger, LedgerError
from switchboard.router.audit import Auditor
from switchboard.router.auth import ApiKeyAuthority, Authority, Caller
from switchboard.router.delivery import Delivery
from switchboard.router.discovery import Discovery, StaticDiscovery
from switchboard.router.dispatch import Dispatcher
from switchboard.router.endpoints import EndpointPool
from switchboard.router.metrics import RouterMetrics
from switchboard.router.openapi import openapi_document
from switchboard.router.service import ApiError, RouterService, decode_json, event_json
from switchboard.router.settings import Backend, RouterSettings
from switchboard.router.table import RoutingTable
from switchboard.router.v1 import router_pb2, router_pb2_grpc

log = logging.getLogger("switchboard.router")

_GRPC_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    # An idempotency key reused for another message, a replay of a message that
    # was not failed: the request cannot apply to the message as it stands.
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    502: grpc.StatusCode.FAILED_PRECONDITION,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


class Router:
    def __init__(
        self,
        settings: RouterSettings,
        discovery: Discovery,
        authority: Authority,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.settings, self.discovery, self.authority = settings, discovery, authority
        self.metrics = RouterMetrics()
        self.pool = EndpointPool(settings)
        tracer = trace.get_tracer("switchboard.router", tracer_provider=tracer_provider)
        self.dispatcher = Dispatcher(
            settings,
            self.pool,
            lambda: self.discovery.table,
            self.metrics,
            tracer=tracer,
            on_problem=discovery.report_problem,
        )
        self.service = RouterService(
            self.dispatcher,
            authority,
            lambda: self.discovery.table,
            self.pool,
            self.metrics,
            tracer,
            settings.max_concurrency,
        )
        self.ledger: Ledger | None = None
        self.delivery: Delivery | None = None
        self.http_port = 0
        self.grpc_port = 0
        self._runner: web.AppRunner | None = None
        self._grpc: grpc.aio.Server | None = None
        self._sync_task: asyncio.Task[None] | None = None
        discovery.subscribe(self._table_changed)

    # -- lifecycle --

    def _audit_gate(self, resource: dict[str, Any], verdict: GateVerdict) -> None:
        """A gate verdict the operator wrote (in a cluster the operator has no database)."""
        meta = resource["metadata"]
        self.service.auditor.record(
            meta["namespace"],
            "switchboard-operator",
            "gate",
            f"{resource['kind']}/{meta['name']}",
            verdict.outcome,
            detail=verdict.detail,
            at=verdict.since or None,
            key=verdict.key(meta.get("uid", "")),
        )

    def _table_changed(self, table: RoutingTable) -> None:
        addresses = {e for route in table.routes for e in route.endpoints}
        for gone in self.dispatcher.problems.keys() - {route.id for route in table.routes}:
            del self.dispatcher.problems[gone]  # a deleted plugin has nothing left to fix
        if self._sync_task is not None and not self._sync_task.done():
            self._sync_task.cancel()
        self._sync_task = asyncio.ensure_future(self.pool.sync(addresses))

    async def start(self) -> None:
        """Open the ledger (migrating it), start discovery, the workers and both servers.

        Raises ``LedgerError`` when the ledger cannot be opened: a router that
        cannot record messages does not start.
        """
        url = self.settings.ledger_url or MEMORY
        if self.settings.ledger_url is None:
            log.warning(
                "No ledger database is set (ledger_url): messages are recorded in memory "
                "only and are lost when the router stops"
            )
        self.ledger = await Ledger.open(
            url,
            store_content=self.settings.ledger_store_content,
            sqlite_synchronous=self.settings.ledger_sqlite_synchronous,
        )
        self.delivery = Delivery(
            self.ledger,
            self.dispatcher,
            lambda: self.discovery.table,
            self.settings,
            self.metrics,
        )
        self.service.delivery = self.delivery
        self.service.auditor = Auditor(self.ledger)
        await self.service.auditor.start()
        self.discovery.on_gate = self._audit_gate
        await self.discovery.start()
        app = web.Application(
            client_max_size=self.settings.max_body_bytes,
            middlewares=[_continue_trace, self._errors],
        )
        app.add_routes(
            [
                web.post("/v1/messages", self._send),
                web.get("/v1/messages", self._list_messages),
                web.get("/v1/messages/events", self._events),
                web.get("/v1/messages/{id}", self._get_message),
                web.post("/v1/messages/{id}/replay", self._replay),
                web.route("*", "/v1/receipts/{namespace}/{plugin}", self._receipt),
                web.get("/v1/audit", self._audit),
                web.post("/v1/integrations/{name}/operations/{operation}", self._invoke),
                web.get("/v1/plugins", self._status),
                web.get("/healthz", self._healthz),
                web.get("/readyz", self._readyz),
                web.get("/metrics", self._metrics),
                web.get("/openapi.json", self._openapi),
            ]
        )
        # aiohttp closes a connection whose request has not arrived when its
        # keep-alive timer fires, which it starts as the connection opens: the
        # header deadline.
        self._runner = web.AppRunner(
            app, access_log=None, keepalive_timeout=self.settings.header_timeout_seconds
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.http_port)
        await site.start()
        self.http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        if self.settings.grpc_port >= 0:
            self._grpc = grpc.aio.server()
            router_pb2_grpc.add_RouterServicer_to_server(_GrpcRouter(self), self._grpc)
            self.grpc_port = self._grpc.add_insecure_port(
                f"{self.settings.host}:{self.settings.grpc_port}"
            )
            await self._grpc.start()
        await self.delivery.start()
        log.info(
            "Router listening",
            extra={
                "http_port": self.http_port,
                "grpc_port": self.grpc_port if self._grpc is not None else None,
            },
        )

    async def stop(self, grace: float = 5.0) -> None:
        if self._grpc is not None:
            await self._grpc.stop(grace)
        if self._runner is not None:
            await self._runner.cleanup()
        if self.delivery is not None:
            await self.delivery.stop()
        await self.service.auditor.stop()
        await self.discovery.stop()
        await self.pool.close()
        if self.ledger is not None:
            await self.ledger.close()

    # -- HTTP --

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as error:
            headers = {}
            if error.retry_after is not None:
                headers["Retry-After"] = str(max(1, round(error.retry_after)))
            return web.json_response(error.body(), status=error.status, headers=headers)
        except web.HTTPRequestEntityTooLarge:
            too_large = ApiError(
                413,
                "TOO_LARGE",
                f"The request body exceeds {self.settings.max_body_bytes} bytes.",
            )
            return web.json_response(too_large.body(), status=413)

    async def _caller_and_body(self, request: web.Request) -> tuple[Caller, Any]:
        """Who is calling (from the headers alone), then their body, read within its deadline."""
        caller = await self.service.caller(request.headers.get("Authorization"))
        if request.content_type != "application/json":
            raise ApiError(
                415, "UNSUPPORTED_MEDIA_TYPE", "Send the body as Content-Type: application/json."
            )
        try:
            async with asyncio.timeout(self.settings.body_timeout_seconds):
                raw = await request.read()
        except TimeoutError:
            self.service.metrics.refused.labels("slow_body").inc()
            raise ApiError(
                408,
                "REQUEST_TIMEOUT",
                f"The body did not arrive within {self.settings.body_timeout_seconds:g}s.",
            ) from None
        return caller, decode_json(raw, self.settings.max_json_depth)

    async def _send(self, request: web.Request) -> web.Response:
        caller, data = await self._caller_and_body(request)
        return web.json_response(await self.service.send_message(caller, data))

    async def _invoke(self, request: web.Request) -> web.Response:
        caller, data = await self._caller_and_body(request)
        answer = await self.service.invoke(
            caller, request.match_info["name"], request.match_info["operation"], data
        )
        return web.json_response(answer)

    async def _list_messages(self, request: web.Request) -> web.Response:
        caller = await self.service.caller(request.headers.get("Authorization"))
        return web.json_response(await self.service.list_messages(caller, request.query))

    async def _audit(self, request: web.Request) -> web.Response:
        caller = await self.service.caller(request.headers.get("Authorization"))
        return web.json_response(await self.service.audit_trail(caller, request.query))

    async def _get_message(self, request: web.Request) -> web.Response:
        caller = await self.service.caller(request.headers.get("Authorization"))
        answer = await self.service.get_message(
            caller, request.match_info["id"], request.query.get("namespace")
        )
        return web.json_response(answer)

    async def _replay(self, request: web.Request) -> web.Response:
        caller = await self.service.caller(request.headers.get("Authorization"))
        answer = await self.service.replay_message(
            caller, request.match_info["id"], request.query.get("namespace")
        )
        return web.json_response(answer)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: every state change of the tenant's messages, as it happens.

        Resumes after `Last-Event-ID` (or `?after=SEQ`); without either it starts now.
        """
        caller = await self.service.caller(request.headers.get("Authorization"))
        after_text = request.headers.get("Last-Event-ID") or request.query.get("after")
        if after_text is not None and not after_text.isdigit():
            raise ApiError(400, "INVALID_REQUEST", "after: a sequence number from an event's id")
        tenant, after = await self.service.events_since(
            caller, request.query.get("namespace"), int(after_text) if after_text else None
        )
        assert self.ledger is not None
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        quiet_since = time.monotonic()
        try:
            while True:
                try:
                    found = await self.ledger.events_after(after, tenants={tenant})
                except LedgerError:
                    found = []
                for event in found:
                    after = event.seq
                    data = json.dumps(event_json(event))
                    await response.write(
                        f"id: {event.seq}\nevent: state\ndata: {data}\n\n".encode()
                    )
                if found:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > 15:
                    await response.write(b": keep-alive\n\n")
                    quiet_since = time.monotonic()
                await asyncio.sleep(0.25)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response

    async def _receipt(self, request: web.Request) -> web.Response:
        """A provider's delivery callback; the plugin checks its signature (no bearer token)."""
        try:
            async with asyncio.timeout(self.settings.body_timeout_seconds):
                body = await request.read()
        except TimeoutError:
            raise ApiError(408, "REQUEST_TIMEOUT", "The body did not arrive in time.") from None
        public = self.settings.public_url
        url = f"{public.rstrip('/')}{request.path_qs}" if public else str(request.url)
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        status, text, content_type = await self.service.receipt(
            request.match_info["namespace"],
            request.match_info["plugin"],
            request.method,
            url,
            headers,
            body,
        )
        return web.Response(status=status, text=text, content_type=content_type.split(";")[0])

    async def _status(self, request: web.Request) -> web.Response:
        caller = await self.service.caller(request.headers.get("Authorization"))
        answer = await self.service.system_status(caller, request.query.get("namespace"))
        return web.json_response(answer)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        ready = self.discovery.ready.is_set()
        return web.json_response(
            {"status": "ready" if ready else "discovering"}, status=200 if ready else 503
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document())


class _GrpcRouter(router_pb2_grpc.RouterServicer):
    """The gRPC face of `RouterService`."""

    def __init__(self, router: Router) -> None:
        self.router = router

    async def _run(self, context: grpc.aio.ServicerContext[Any, Any], call: Any) -> Any:
        # The caller's trace continues here (W3C traceparent in the metadata).
        token = trace_context.attach(propagate.extract(dict(context.invocation_metadata() or ())))
        try:
            caller = await self.router.service.caller(_authorization(context))
            return await call(caller)
        except ApiError as error:
            context.set_trailing_metadata((("switchboard-error-json", json.dumps(error.body())),))
            await context.abort(
                _GRPC_CODES.get(error.status, grpc.StatusCode.UNKNOWN), error.message
            )
        finally:
            trace_context.detach(token)

    async def SendMessage(  # gRPC method name
        self, request: router_pb2.SendMessageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> router_pb2.SendMessageResponse:
        data = {
            "channel": request.channel,
            "recipient": request.recipient,
            "content": request.content,
            "subject": request.subject,
            "contentType": request.content_type,
            "metadata": dict(request.metadata),
            "idempotencyKey": request.idempotency_key or None,
            "namespace": request.namespace or None,
            "wait": not request.asynchronous,
        }
        max_depth = self.router.settings.max_json_depth

        async def send(caller: Caller) -> Any:
            extras = decode_json(request.extras_json or "{}", max_depth)
            if not isinstance(extras, dict):
                raise ApiError(400, "INVALID_REQUEST", "extras_json: must be a JSON object")
            return await self.router.service.send_message(caller, {**data, **extras})

        return _sent(await self._run(context, send))

    async def GetMessage(  # gRPC method name
        self, request: router_pb2.GetMessageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> router_pb2.MessageJson:
        answer = await self._run(
            context,
            lambda caller: self.router.service.get_message(
                caller, request.id, request.namespace or None
            ),
        )
        return router_pb2.MessageJson(json=json.dumps(answer))

    async def ListMessages(  # gRPC method name
        self, request: router_pb2.ListMessagesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> router_pb2.MessageJson:
        query = {
            key: value
            for key, value in {
                "namespace": request.namespace,
                "state": request.state,
                "channel": request.channel,
                "recipient": request.recipient,
                "since": request.since,
                "until": request.until,
                "limit": str(request.limit) if request.limit else "",
            }.items()
            if value
        }
        answer = await self._run(
            context, lambda caller: self.router.service.list_messages(caller, query)
        )
        return router_pb2.MessageJson(json=json.dumps(answer))

    async def ReplayMessage(  # gRPC method name
        self, request: router_pb2.GetMessageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> router_pb2.SendMessageResponse:
        answer = await self._run(
            context,
            lambda caller: self.router.service.replay_message(
                caller, request.id, request.namespace or None
            ),
        )
        return _sent(answer)

    async def WatchMessages(  # gRPC method name
        self,
        request: router_pb2.WatchMessagesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[router_pb2.MessageJson]:
        tenant, after = await self._run(
            context,
            lambda caller: self.router.service.events_since(
                caller, request.namespace or None, int(request.after) or None
            ),
        )
        ledger = self.router.ledger
        assert ledger is not None
        while True:
            try:
                found = await ledger.events_after(after, tenants={tenant})
            except LedgerError:
                found = []
            for event in found:
                after = event.seq
                yield router_pb2.MessageJson(json=json.dumps(event_json(event)))
            await asyncio.sleep(0.25)

    async def Invoke(  # gRPC method name
        self, request: router_pb2.InvokeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> router_pb2.InvokeResponse:
        max_depth = self.router.settings.max_json_depth

        async def invoke(caller: Caller) -> Any:
            data = {
                "params": decode_json(request.params_json or "{}", max_depth),
                "idempotencyKey": request.idempotency_key or None,
                "namespace": request.namespace or None,
            }
            return await self.router.service.invoke(
                caller, request.integration, request.operation, data
            )

        answer = await self._run(context, invoke)
        return router_pb2.InvokeResponse(
            plugin=answer["plugin"],
            endpoint=answer["endpoint"],
            result_json=json.dumps(answer["result"]),
            replayed=answer["replayed"],
            attempts=[_attempt(a) for a in answer["attempts"]],
        )

    async def GetSystemStatus(  # gRPC method name
        self,
        request: router_pb2.GetSystemStatusRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> router_pb2.GetSystemStatusResponse:
        answer = await self._run(
            context,
            lambda caller: self.router.service.system_status(caller, request.namespace or None),
        )
        return router_pb2.GetSystemStatusResponse(status_json=json.dumps(answer))


@web.middleware
async def _continue_trace(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The caller's trace continues in the router's spans (W3C traceparent)."""
    token = trace_context.attach(propagate.extract(request.headers))
    try:
        return await handler(request)
    finally:
        trace_context.detach(token)


def _authorization(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return str(value)
    return None


def _sent(answer: dict[str, Any]) -> router_pb2.SendMessageResponse:
    return router_pb2.SendMessageResponse(
        plugin=answer.get("plugin", ""),
        endpoint=answer.get("endpoint", ""),
        provider_message_id=answer.get("providerMessageId", ""),
        details=answer.get("details", {}),
        replayed=answer["replayed"],
        attempts=[_attempt(a) for a in answer.get("attempts", [])],
        id=answer["id"],
        state=answer["state"],
        possible_duplicate=answer["possibleDuplicate"],
    )


def _attempt(data: dict[str, Any]) -> router_pb2.Attempt:
    return router_pb2.Attempt(
        plugin=data["plugin"],
        endpoint=data["endpoint"],
        outcome=data["outcome"],
        duration_ms=data["durationMs"],
        message=data.get("message", ""),
        retry_after_seconds=data.get("retryAfterSeconds"),
    )


def build_router(settings: RouterSettings, kubeconfig: str | None = None) -> Router:
    """A router for `settings.backend`: Kubernetes discovery and RBAC, or static and API keys."""
    if settings.backend is Backend.KUBERNETES:
        from switchboard.kubeclient import api_client
        from switchboard.router.kubernetes import KubernetesAuthority, KubernetesDiscovery

        api = api_client(kubeconfig)
        return Router(
            settings,
            KubernetesDiscovery(api, settings.watch_namespace),
            KubernetesAuthority(api, settings.auth_cache_seconds),
        )
    if settings.api_keys_file is None:
        raise SystemExit(
            "The static backend needs --api-keys FILE (or SWITCHBOARD_ROUTER_API_KEYS_FILE)."
        )
    try:
        authority = ApiKeyAuthority.from_file(settings.api_keys_file)
    except (OSError, ValueError) as error:
        raise SystemExit(f"The API keys file is not usable: {error}") from None
    if settings.static_file is not None and not settings.static_file.parent.is_dir():
        # The file is watched through its folder (it is replaced, not rewritten).
        raise SystemExit(
            f"The routes file's folder {settings.static_file.parent} does not exist: "
            "create it, or point SWITCHBOARD_ROUTER_STATIC_FILE at a file in a folder that does"
        )
    return Router(settings, StaticDiscovery(settings.static_file), authority)


@contextlib.asynccontextmanager
async def running(router: Router) -> AsyncIterator[Router]:
    await router.start()
    try:
        yield router
    finally:
        await router.stop()


async def serve(settings: RouterSettings, kubeconfig: str | None = None) -> None:
    """Run a router until SIGTERM or SIGINT."""
    router = build_router(settings, kubeconfig)
    try:
        await router.start()
    except LedgerError as error:
        await router.stop()
        raise SystemExit(f"The router did not start: {error}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await router.stop()
