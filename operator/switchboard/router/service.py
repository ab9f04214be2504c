"""The router's API, independent of transport: HTTP/JSON and gRPC both call this.

A request is authenticated, validated, authorised for its tenant (the
namespace), dispatched, and answered with a JSON-ready dict. Anything that
stops it raises `ApiError`, whose `status` is the HTTP status and whose
`body()` is the error document both transports return. Malformed input is
always a 4xx naming the field, never a 5xx.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from typing import Annotated, Any

from opentelemetry import trace
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from switchboard.api import constants
from switchboard.api.models import CHANNEL_TYPE, DNS_LABEL
from switchboard.router.auth import AuthError, Authority, Caller
from switchboard.router.dispatch import Attempt, Dispatcher, DispatchError, Outgoing, Routed
from switchboard.router.endpoints import EndpointPool
from switchboard.router.metrics import RouterMetrics
from switchboard.router.table import PluginRoute, RoutingTable


def _idempotency_key(value: str) -> str:
    if not re.fullmatch(constants.IDEMPOTENCY_KEY_PATTERN, value):
        raise ValueError(
            "must be 1-255 printable ASCII characters without spaces, quotes or backslashes"
        )
    return value


def _metadata_key(value: str) -> str:
    if not re.fullmatch(constants.METADATA_KEY_PATTERN, value):
        raise ValueError(
            f"key {value[:40]!r} must start with a letter or digit and hold only "
            "letters, digits, '.', '_' and '-' (at most 128)"
        )
    return value


def _metadata_value(value: str) -> str:
    if re.search(constants.METADATA_VALUE_FORBIDDEN, value):
        raise ValueError("must not hold control characters other than tab and newline")
    return value


# The patterns are checked by the validators (for messages that say what to
# fix) and published in the OpenAPI document.
IdempotencyKey = Annotated[
    str,
    AfterValidator(_idempotency_key),
    Field(json_schema_extra={"pattern": constants.IDEMPOTENCY_KEY_PATTERN}),
]
Metadata = dict[
    Annotated[
        str,
        AfterValidator(_metadata_key),
        Field(json_schema_extra={"pattern": constants.METADATA_KEY_PATTERN}),
    ],
    Annotated[str, Field(max_length=8192), AfterValidator(_metadata_value)],
]


class _Body(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )


class SendMessageBody(_Body):
    """POST /v1/messages: one message to deliver on a channel."""

    channel: str = Field(pattern=CHANNEL_TYPE, max_length=63)
    """Channel type, e.g. `sms` or `email`; the router picks the plugin."""
    recipient: str = Field(min_length=1, max_length=1024)
    """Phone number, e-mail address, chat id... as the channel expects it."""
    content: str = Field(max_length=128 * 1024)
    """The message body."""
    subject: str = Field(default="", max_length=998)
    """Subject line, for channels that have one."""
    content_type: str = Field(default="", max_length=127)
    """MIME type of `content`; empty means text/plain."""
    metadata: Metadata = Field(default_factory=dict, max_length=64)
    """Channel-specific extras passed to the plugin."""
    idempotency_key: IdempotencyKey | None = None
    """Retrying with the same key never sends twice within the router's window."""
    namespace: str | None = Field(default=None, pattern=DNS_LABEL, max_length=63)
    """Tenant; default: the caller's own namespace."""


class InvokeBody(_Body):
    """POST /v1/integrations/{name}/operations/{operation}: one vendor operation."""

    params: dict[str, Any] = Field(default_factory=dict)
    """Parameters, checked against the operation's JSON Schema by the plugin."""
    idempotency_key: IdempotencyKey | None = None
    """Retrying with the same key never runs the operation twice within the window."""
    namespace: str | None = Field(default=None, pattern=DNS_LABEL, max_length=63)
    """Tenant; default: the caller's own namespace."""


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: list[dict[str, str]] | None = None,
        attempts: list[Attempt] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields, self.attempts, self.retry_after = fields or [], attempts or [], retry_after

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            error["fields"] = self.fields
        if self.attempts:
            error["attempts"] = [attempt_json(a) for a in self.attempts]
        if self.retry_after is not None:
            error["retryAfterSeconds"] = round(self.retry_after, 3)
        return {"error": error}


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    data = {
        "plugin": attempt.plugin,
        "endpoint": attempt.endpoint,
        "outcome": attempt.outcome,
        "durationMs": attempt.duration_ms,
    }
    if attempt.message:
        data["message"] = attempt.message
    if attempt.retry_after_seconds is not None:
        data["retryAfterSeconds"] = attempt.retry_after_seconds
    return data


def _field_errors(error: ValidationError) -> list[dict[str, str]]:
    out = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"]) or "body"
        out.append({"field": path, "message": item["msg"]})
    return out


def decode_json(raw: bytes | str, max_depth: int) -> Any:
    """A request body as JSON, or a 400 that says what is wrong with it."""
    try:
        data = json.loads(raw)
    except RecursionError:
        data = None  # nested past the interpreter's limit: refused below as too deep
        depth = max_depth + 1
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, "INVALID_REQUEST", f"The body is not valid JSON: {error}") from None
    else:
        depth = json_depth(data)
    if depth > max_depth:
        raise ApiError(
            400,
            "INVALID_REQUEST",
            f"The body nests objects and arrays deeper than {max_depth} levels.",
        )
    return data


def json_depth(data: Any) -> int:
    """How deep objects and arrays nest in ``data`` (a scalar: 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse(model: type[_Body], data: Any) -> Any:
    if not isinstance(data, dict):
        raise ApiError(400, "INVALID_REQUEST", "The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        fields = _field_errors(error)
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        raise ApiError(400, "INVALID_REQUEST", summary, fields=fields) from error


class RouterService:
    """The API's operations for an authenticated caller.

    Transports authenticate first (``caller``), from the headers alone, and
    only then read and decode the body: an anonymous or slow client holds no
    shared resource. The only shared resource, a slot among
    ``max_concurrency`` requests in flight, is taken around dispatch alone
    (``admitted``); past the limit a request is refused at once with 429.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        authority: Authority,
        table: Any,
        pool: EndpointPool,
        metrics: RouterMetrics,
        tracer: trace.Tracer | None = None,
        max_concurrency: int = 512,
    ) -> None:
        self.dispatcher, self.authority = dispatcher, authority
        self.tracer = tracer or trace.get_tracer("switchboard.router")
        self._table = table
        self.pool, self.metrics = pool, metrics
        self.max_concurrency = max_concurrency
        self.in_flight = 0

    @contextlib.contextmanager
    def admitted(self) -> Iterator[None]:
        """Hold one of the in-flight slots, or refuse with 429 when none is free."""
        if self.in_flight >= self.max_concurrency:
            self.metrics.refused.labels("overload").inc()
            raise ApiError(
                429,
                "OVERLOADED",
                f"The router is handling {self.in_flight} requests, its limit; retry shortly.",
                retry_after=1.0,
            )
        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            yield
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()

    @property
    def table(self) -> RoutingTable:
        table: RoutingTable = self._table()
        return table

    # -- identity --

    async def caller(self, authorization: str | None) -> Caller:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self.metrics.refused.labels("unauthenticated").inc()
            raise ApiError(401, "UNAUTHENTICATED", "Send `Authorization: Bearer <token>`.")
        try:
            return await self.authority.authenticate(token.strip())
        except AuthError as error:
            self.metrics.refused.labels("unauthenticated").inc()
            raise ApiError(error.status, "UNAUTHENTICATED", error.message) from error

    @staticmethod
    def tenant(caller: Caller, requested: str | None) -> str:
        tenant = requested or caller.home_namespace
        if not tenant:
            raise ApiError(
                400,
                "INVALID_REQUEST",
                "namespace: the caller has no namespace of its own; name one.",
                fields=[{"field": "namespace", "message": "required for this caller"}],
            )
        return tenant

    async def require(
        self, caller: Caller, tenant: str, verb: str, resource: str, name: str = ""
    ) -> None:
        if not await self.authority.allowed(caller, tenant, verb, resource, name):
            self.metrics.refused.labels("forbidden").inc()
            what = f"{resource}/{name}" if name else resource
            raise ApiError(
                403,
                "FORBIDDEN",
                f"{caller.name} may not {verb} {what}.{constants.GROUP} in namespace {tenant!r}.",
            )

    # -- operations --

    async def send_message(self, caller: Caller, data: Any) -> dict[str, Any]:
        body: SendMessageBody = parse(SendMessageBody, data)
        tenant = self.tenant(caller, body.namespace)
        await self.require(caller, tenant, "send", constants.COMMUNICATION_PLUGINS)
        message = Outgoing(
            body.recipient, body.content, body.subject, body.content_type, body.metadata
        )
        started = time.monotonic()
        try:
            with (
                self.admitted(),
                self.tracer.start_as_current_span(
                    "switchboard.send",
                    kind=trace.SpanKind.SERVER,
                    attributes={"switchboard.channel": body.channel, "switchboard.tenant": tenant},
                ),
            ):
                routed = await self.dispatcher.send(
                    tenant, body.channel, message, body.idempotency_key or ""
                )
        except DispatchError as error:
            self.metrics.requests.labels("send", body.channel, error.code).inc()
            raise _from_dispatch(error) from error
        self.metrics.requests.labels("send", body.channel, "sent").inc()
        self.metrics.latency.labels("send", body.channel).observe(time.monotonic() - started)
        return {
            "status": "sent",
            "namespace": tenant,
            "plugin": routed.plugin,
            "endpoint": routed.endpoint,
            "providerMessageId": routed.provider_message_id,
            "details": routed.details,
            "replayed": routed.replayed,
            "attempts": [attempt_json(a) for a in routed.attempts],
        }

    async def invoke(
        self, caller: Caller, integration: str, operation: str, data: Any
    ) -> dict[str, Any]:
        body: InvokeBody = parse(InvokeBody, data)
        tenant = self.tenant(caller, body.namespace)
        await self.require(caller, tenant, "invoke", constants.VENDOR_INTEGRATIONS, integration)
        route = self.table.integration(tenant, integration)
        for permission in route.permissions if route else ():
            await self.require(caller, tenant, "use", "permissions", permission)
        started = time.monotonic()
        try:
            with (
                self.admitted(),
                self.tracer.start_as_current_span(
                    "switchboard.invoke",
                    kind=trace.SpanKind.SERVER,
                    attributes={
                        "switchboard.integration": integration,
                        "switchboard.operation": operation,
                        "switchboard.tenant": tenant,
                    },
                ),
            ):
                routed = await self.dispatcher.invoke(
                    tenant, integration, operation, body.params, body.idempotency_key or ""
                )
        except DispatchError as error:
            self.metrics.requests.labels("invoke", integration, error.code).inc()
            raise _from_dispatch(error) from error
        self.metrics.requests.labels("invoke", integration, "ok").inc()
        self.metrics.latency.labels("invoke", integration).observe(time.monotonic() - started)
        return _invoked(tenant, routed)

    async def system_status(self, caller: Caller, namespace: str | None) -> dict[str, Any]:
        tenant = self.tenant(caller, namespace)
        await self.require(caller, tenant, "list", constants.COMMUNICATION_PLUGINS)
        return self.status_of(tenant)

    def status_of(self, tenant: str) -> dict[str, Any]:
        channels: dict[str, list[dict[str, Any]]] = {}
        integrations: dict[str, dict[str, Any]] = {}
        for route in self.table.routes:
            if route.namespace != tenant:
                continue
            entry = self._route_status(route)
            if route.kind == constants.COMMUNICATION_PLUGIN:
                channels.setdefault(route.route_key, []).append(entry)
            else:
                integrations[route.name] = entry
        for plugins in channels.values():
            plugins.sort(key=lambda p: (p["priority"], p["name"]))
        serving = sum(
            1
            for p in (*[x for v in channels.values() for x in v], *integrations.values())
            if p["healthy"]
        )
        return {
            "namespace": tenant,
            "totalPlugins": sum(len(v) for v in channels.values()) + len(integrations),
            "healthyPlugins": serving,
            "channels": channels,
            "integrations": integrations,
        }

    def _route_status(self, route: PluginRoute) -> dict[str, Any]:
        states = [self.pool.states.get(e) for e in route.endpoints]
        ejected = [e for e in route.endpoints if self.pool.ejected(e)]
        draining = [s.address for s in states if s is not None and not s.serving]
        eligible = [e for e in route.endpoints if self.pool.eligible(e)]
        sent = sum(s.sent for s in states if s)
        failed = sum(s.failed for s in states if s)
        recent = [o for s in states if s for o in s.recent]
        entry: dict[str, Any] = {
            "name": route.name,
            "kind": route.kind,
            "enabled": route.enabled,
            "priority": route.priority,
            "weight": route.weight,
            "healthy": route.enabled and bool(eligible),
            "endpoints": {
                "ready": list(route.endpoints),
                "notReady": list(route.not_ready),
                "ejected": ejected,
                "notServing": draining,
            },
            "heldForSeconds": round(self.pool.held(route.id), 3),
            "recentErrorRate": round(recent.count(False) / len(recent), 4) if recent else 0.0,
            "sent": sent,
            "failed": failed,
        }
        if route.kind == constants.VENDOR_INTEGRATION:
            entry["vendor"] = route.route_key
            entry["permissions"] = list(route.permissions)
            del entry["priority"], entry["weight"]
        return entry


def _invoked(tenant: str, routed: Routed) -> dict[str, Any]:
    return {
        "status": "ok",
        "namespace": tenant,
        "plugin": routed.plugin,
        "endpoint": routed.endpoint,
        "result": routed.result,
        "replayed": routed.replayed,
        "attempts": [attempt_json(a) for a in routed.attempts],
    }


def _from_dispatch(error: DispatchError) -> ApiError:
    return ApiError(
        error.status,
        error.code,
        error.message,
        attempts=error.attempts,
        retry_after=error.retry_after,
    )
