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
from collections.abc import Awaitable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from opentelemetry import trace
from pydantic import (
    AfterValidator,
    Base64Bytes,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from switchboard.api import constants
from switchboard.api.models import CHANNEL_TYPE, DNS_LABEL
from switchboard.ledger import (
    EventRecord,
    IdempotencyConflict,
    LedgerError,
    LedgerUnavailable,
    ListFilter,
    MessageRecord,
    State,
)
from switchboard.router.audit import Auditor
from switchboard.router.auth import AuthError, Authority, Caller
from switchboard.router.delivery import Delivery, Outcome, ReplayRefused
from switchboard.router.dispatch import (
    OUTCOMES,
    Attempt,
    Dispatcher,
    DispatchError,
    Outgoing,
    Routed,
)
from switchboard.router.endpoints import EndpointPool
from switchboard.router.metrics import RouterMetrics
from switchboard.router.table import PluginRoute, RoutingTable
from switchboard.sdk import Attachment, PluginError, Template, Unauthenticated


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


_T = TypeVar("_T")


class _Body(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )


class AttachmentBody(_Body):
    """A file sent with a message: `data` (base64) or `url`, never both."""

    filename: str = Field(min_length=1, max_length=255)
    """The file name the recipient sees."""
    content_type: str = Field(pattern=r"^[\w.+-]+/[\w.+-]+$", max_length=127)
    """Its MIME type, e.g. `application/pdf`."""
    data: Base64Bytes | None = None
    """The file, base64-encoded."""
    url: str | None = Field(default=None, pattern=r"^https?://", max_length=2048)
    """A URL the provider fetches the file from (MMS, WhatsApp media)."""

    @model_validator(mode="after")
    def _one_source(self) -> AttachmentBody:
        if (self.data is None) == (self.url is None):
            raise ValueError("give the file's data (base64) or its url, not both")
        return self

    def attachment(self) -> Attachment:
        return Attachment(
            self.filename, self.content_type, data=self.data or b"", url=self.url or ""
        )


class TemplateBody(_Body):
    """A template kept at the provider."""

    id: str = Field(min_length=1, max_length=255)
    """The provider's template id: SendGrid `d-...`, Twilio Content `HX...`, a WhatsApp name."""
    variables: dict[str, Any] = Field(default_factory=dict)
    """Values for the template's placeholders."""
    language: str = Field(default="", max_length=35)
    """The template's language, where the provider needs one (WhatsApp: `en_US`)."""

    def template(self) -> Template:
        return Template(self.id, self.variables, self.language)


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
    """Unique per tenant: a retry with the same key reaches the same message (on any
    replica, after restarts) and never sends it twice; the same key with another
    message is refused with 409."""
    namespace: str | None = Field(default=None, pattern=DNS_LABEL, max_length=63)
    """Tenant; default: the caller's own namespace."""
    wait: bool = True
    """true: answer when a provider accepted the message (or every plugin failed).
    false: answer 202 as soon as the message is durably recorded, with its id; the
    router sends it in the background, retrying until the channel's maxDeliveryTime."""
    attachments: list[AttachmentBody] = Field(default_factory=list, max_length=10)
    """Files sent with the message; only plugins that declare `attachments` (bytes)
    or `media_urls` (URLs) are tried."""
    template: TemplateBody | None = None
    """A template kept at the provider; only plugins that declare `templates` are tried."""
    cc: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        default_factory=list, max_length=50
    )
    """Copies (email); only plugins that declare `cc` are tried."""
    bcc: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        default_factory=list, max_length=50
    )
    """Blind copies (email); only plugins that declare `cc` are tried."""

    def outgoing(self) -> Outgoing:
        return Outgoing(
            self.recipient,
            self.content,
            self.subject,
            self.content_type,
            self.metadata,
            attachments=tuple(a.attachment() for a in self.attachments),
            template=self.template.template() if self.template else None,
            cc=tuple(self.cc),
            bcc=tuple(self.bcc),
        )


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
        message_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields, self.attempts, self.retry_after = fields or [], attempts or [], retry_after
        self.message_id = message_id

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.message_id:
            error["messageId"] = self.message_id
        if self.fields:
            error["fields"] = self.fields
        if self.attempts:
            error["attempts"] = [attempt_json(a) for a in self.attempts]
        if self.retry_after is not None:
            error["retryAfterSeconds"] = round(self.retry_after, 3)
        return {"error": error}


#: The HTTP status of a request that ended with an error code (the dispatcher's,
#: or a message's recorded one); any other code is 503.
HTTP_STATUS_OF_CODE = {
    "INVALID_INPUT": 422,
    "NO_CAPABLE_PLUGIN": 422,
    "NO_PLUGIN": 404,
    "PERMANENT": 502,
    "UNAUTHENTICATED": 502,
    "UNKNOWN_OUTCOME": 502,
    "DEADLINE_EXCEEDED": 504,
    "EXPIRED": 504,
}


def http_status(code: str) -> int:
    return HTTP_STATUS_OF_CODE.get(code, 503)


class AttemptView(_Body):
    """One attempt on a plugin, as every answer reports it (HTTP, gRPC, OpenAPI)."""

    plugin: str
    """namespace/name of the plugin resource."""
    endpoint: str
    """host:port of the plugin pod."""
    outcome: Literal[OUTCOMES]  # type: ignore[valid-type]
    """How the attempt ended."""
    duration_ms: float
    """How long it took, in milliseconds."""
    message: str | None = None
    """The plugin's or the router's words, when it failed."""
    retry_after_seconds: float | None = None
    """When the plugin asked to be left alone this long."""


class RecordedAttemptView(AttemptView):
    """An attempt as the ledger keeps it (``GET /v1/messages/{id}``): the same
    fields as every answer's, plus where it stands in the message's history."""

    round: int
    """Which round of sending it belonged to (a retry or a replay starts a new one)."""
    provider_message_id: str | None = None
    """The provider's id of the message, when this attempt delivered it."""
    at: str | None = None
    """When it ended (RFC 3339)."""


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    view = AttemptView(
        plugin=attempt.plugin,
        endpoint=attempt.endpoint,
        outcome=attempt.outcome,
        duration_ms=attempt.duration_ms,
        message=attempt.message or None,
        retry_after_seconds=attempt.retry_after_seconds,
    )
    return view.model_dump(by_alias=True, exclude_none=True)


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
        delivery: Delivery | None = None,
        auditor: Auditor | None = None,
    ) -> None:
        self.dispatcher, self.authority = dispatcher, authority
        self.delivery = delivery
        self.auditor = auditor or Auditor(None)
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
            self.auditor.record("", "anonymous", "denied", "authenticate", "no_token")
            raise ApiError(401, "UNAUTHENTICATED", "Send `Authorization: Bearer <token>`.")
        try:
            return await self.authority.authenticate(token.strip())
        except AuthError as error:
            self.metrics.refused.labels("unauthenticated").inc()
            self.auditor.record("", "anonymous", "denied", "authenticate", "unknown_token")
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
            self.auditor.record(tenant, caller.name, "denied", f"{verb} {what}", "forbidden")
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
        assert self.delivery is not None, "a router sends through its ledger"
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
                outcome = await self.delivery.send(
                    tenant,
                    body.channel,
                    body.outgoing(),
                    body.idempotency_key,
                    wait=body.wait,
                )
        except LedgerError as error:
            self.metrics.requests.labels("send", body.channel, _ledger_code(error)).inc()
            self.auditor.record(tenant, caller.name, "send", body.channel, _ledger_code(error))
            raise _from_ledger(error) from error
        answer = sent_answer(outcome, body.wait)
        result = answer["state"] if answer["status"] != "error" else answer["error"]["code"]
        self.metrics.requests.labels("send", body.channel, result).inc()
        self.auditor.record(
            tenant, caller.name, "send", body.channel, result, message_id=outcome.record.id
        )
        self.metrics.latency.labels("send", body.channel).observe(time.monotonic() - started)
        if answer["status"] == "error":
            raise ApiError(
                answer["httpStatus"],
                answer["error"]["code"],
                answer["error"]["message"],
                attempts=outcome.error.attempts if outcome.error else [],
                retry_after=outcome.error.retry_after if outcome.error else None,
                message_id=outcome.record.id,
            )
        return answer

    # -- the ledger --

    async def get_message(
        self, caller: Caller, message_id: str, namespace: str | None
    ) -> dict[str, Any]:
        tenant = self.tenant(caller, namespace)
        await self.require(caller, tenant, "list", constants.COMMUNICATION_PLUGINS)
        record = await self._record(tenant, message_id)
        assert self.delivery is not None
        history = await _ledger(self.delivery.ledger.history(record.id))
        return message_json(record, history=[event_json(e) for e in history])

    async def list_messages(self, caller: Caller, query: Mapping[str, str]) -> dict[str, Any]:
        tenant = self.tenant(caller, query.get("namespace"))
        await self.require(caller, tenant, "list", constants.COMMUNICATION_PLUGINS)
        assert self.delivery is not None
        found = await _ledger(self.delivery.ledger.list_messages(_list_filter(tenant, query)))
        return {"namespace": tenant, "messages": [message_json(r) for r in found]}

    async def replay_message(
        self, caller: Caller, message_id: str, namespace: str | None
    ) -> dict[str, Any]:
        tenant = self.tenant(caller, namespace)
        await self.require(caller, tenant, "send", constants.COMMUNICATION_PLUGINS)
        record = await self._record(tenant, message_id)
        assert self.delivery is not None
        try:
            with self.admitted():
                outcome = await self.delivery.replay(record)
        except ReplayRefused as refused:
            raise ApiError(409, "NOT_REPLAYABLE", str(refused), message_id=record.id) from None
        except LedgerError as error:
            raise _from_ledger(error) from error
        answer = sent_answer(outcome, wait=True)
        result = answer["state"] if answer["status"] != "error" else answer["error"]["code"]
        self.auditor.record(
            tenant, caller.name, "replay", record.channel, result, message_id=record.id
        )
        if answer["status"] == "error":
            raise ApiError(
                answer["httpStatus"],
                answer["error"]["code"],
                answer["error"]["message"],
                attempts=outcome.error.attempts if outcome.error else [],
                message_id=record.id,
            )
        return answer

    async def audit_trail(self, caller: Caller, query: Mapping[str, str]) -> dict[str, Any]:
        """The tenant's audit events, newest first (needs `list` on `auditevents`)."""
        tenant = self.tenant(caller, query.get("namespace"))
        await self.require(caller, tenant, "list", "auditevents")
        assert self.delivery is not None
        limit = query.get("limit", "100")
        if not limit.isdigit() or not 1 <= int(limit) <= 1000:
            raise ApiError(400, "INVALID_REQUEST", "limit: a number from 1 to 1000")
        found = await _ledger(
            self.delivery.ledger.audit_trail(
                tenant, since=_timestamp(query, "since"), limit=int(limit)
            )
        )
        return {
            "namespace": tenant,
            "events": [
                {
                    "at": _iso(event.at),
                    "actor": event.actor,
                    "action": event.action,
                    "target": event.target,
                    "outcome": event.outcome,
                    **({"messageId": event.message_id} if event.message_id else {}),
                    **({"detail": event.detail} if event.detail else {}),
                }
                for event in found
            ],
        }

    async def events_since(
        self, caller: Caller, namespace: str | None, after: int | None
    ) -> tuple[str, int]:
        """Authorise a live stream of ``namespace``'s state changes; (tenant, first seq)."""
        tenant = self.tenant(caller, namespace)
        await self.require(caller, tenant, "list", constants.COMMUNICATION_PLUGINS)
        assert self.delivery is not None
        if after is None:
            after = await _ledger(self.delivery.ledger.last_seq())
        return tenant, after

    async def receipt(
        self,
        tenant: str,
        plugin: str,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[int, str, str]:
        """A provider's delivery callback: (HTTP status, body, content type) to answer it with.

        Unauthenticated by bearer token: the plugin verifies the provider's
        signature, and nothing changes unless it does.
        """
        assert self.delivery is not None
        try:
            reply, applied = await self.delivery.receipt(tenant, plugin, method, url, headers, body)
        except Unauthenticated as rejected:
            self.metrics.receipts.labels("rejected").inc()
            raise ApiError(401, "RECEIPT_REJECTED", rejected.message) from None
        except PluginError as failed:
            self.metrics.receipts.labels("failed").inc()
            raise ApiError(
                422 if failed.error_class.value in ("INVALID_INPUT", "PERMANENT") else 503,
                "RECEIPT_NOT_HANDLED",
                failed.message,
            ) from None
        except DispatchError as error:
            raise _from_dispatch(error) from error
        except LedgerError as error:
            raise _from_ledger(error) from error
        if reply.body:
            return 200, reply.body, reply.content_type
        return 200, json.dumps({"receipts": len(applied)}), "application/json"

    async def _record(self, tenant: str, message_id: str) -> MessageRecord:
        assert self.delivery is not None
        record = await _ledger(self.delivery.ledger.get(message_id))
        if record is None or record.tenant != tenant:
            raise ApiError(404, "NOT_FOUND", f"No message {message_id!r} in namespace {tenant!r}.")
        return record

    async def invoke(
        self, caller: Caller, integration: str, operation: str, data: Any
    ) -> dict[str, Any]:
        body: InvokeBody = parse(InvokeBody, data)
        tenant = self.tenant(caller, body.namespace)
        await self.require(caller, tenant, "invoke", constants.VENDOR_INTEGRATIONS, integration)
        route = self.table.integration(tenant, integration)
        needed = [*route.permissions, route.operation_permission(operation)] if route else []
        for permission in dict.fromkeys(p for p in needed if p):
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
            self.auditor.record(
                tenant, caller.name, "invoke", f"{integration}/{operation}", error.code
            )
            raise _from_dispatch(error) from error
        self.metrics.requests.labels("invoke", integration, "ok").inc()
        self.auditor.record(tenant, caller.name, "invoke", f"{integration}/{operation}", "ok")
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
        problem = self.dispatcher.problems.get(route.id)
        if problem is not None:
            entry["problem"] = {
                "reason": problem.reason,
                "message": problem.message,
                "failures": problem.failures,
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
        http_status(error.code),
        error.code,
        error.message,
        attempts=error.attempts,
        retry_after=error.retry_after,
    )


def sent_answer(outcome: Outcome, wait: bool) -> dict[str, Any]:
    """The API's answer for a message after ``Delivery.send``, as JSON-ready data.

    ``status`` is ``sent`` (a provider took it), ``accepted`` (recorded, being
    sent in the background) or ``error`` (with the HTTP status to answer).
    """
    record, routed = outcome.record, outcome.routed
    common: dict[str, Any] = {
        "id": record.id,
        "namespace": record.tenant,
        "state": record.state.value,
        "replayed": outcome.replayed,
        "possibleDuplicate": record.possible_duplicate,
    }
    if record.state in (State.SENT, State.DELIVERED):
        return {
            "status": "sent",
            **common,
            "plugin": routed.plugin if routed else record.plugin or "",
            "endpoint": routed.endpoint if routed else "",
            "providerMessageId": (
                routed.provider_message_id if routed else record.provider_message_id or ""
            ),
            "details": routed.details if routed else {},
            "attempts": [attempt_json(a) for a in routed.attempts] if routed else [],
        }
    if record.state in (State.ACCEPTED, State.SENDING) and (not wait or outcome.replayed):
        return {"status": "accepted", **common}
    code = record.error_code or ("UNKNOWN_OUTCOME" if record.state is State.UNKNOWN else "FAILED")
    message = record.error or f"The message is {record.state.value}."
    status = http_status(outcome.error.code if outcome.error is not None else code)
    return {
        "status": "error",
        **common,
        "httpStatus": status,
        "error": {"code": code, "message": message},
    }


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def message_json(
    record: MessageRecord, *, history: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A message as ``GET /v1/messages/{id}`` shows it (no content: see the ledger settings)."""
    data: dict[str, Any] = {
        "id": record.id,
        "namespace": record.tenant,
        "channel": record.channel,
        "recipient": record.recipient,
        "state": record.state.value,
        "possibleDuplicate": record.possible_duplicate,
        "delivery": record.policy,
        "asynchronous": record.asynchronous,
        "plugin": record.plugin,
        "providerMessageId": record.provider_message_id,
        "idempotencyKey": record.idempotency_key,
        "rounds": record.rounds,
        "createdAt": _iso(record.created_at),
        "updatedAt": _iso(record.updated_at),
        "deliverBy": _iso(record.deliver_by),
        "nextAttemptAt": _iso(record.next_attempt_at) if record.state is State.ACCEPTED else None,
        "error": (
            {"code": record.error_code or "", "message": record.error or ""}
            if record.error or record.error_code
            else None
        ),
    }
    if record.attempts:
        data["attempts"] = [
            RecordedAttemptView(
                round=a.round,
                plugin=a.plugin,
                endpoint=a.endpoint,
                outcome=a.outcome,
                duration_ms=a.duration_ms,
                message=a.message or None,
                provider_message_id=a.provider_message_id or None,
                at=_iso(a.finished_at),
            ).model_dump(by_alias=True, exclude_none=True)
            for a in record.attempts
        ]
    if history is not None:
        data["history"] = history
    return data


def event_json(event: EventRecord) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "id": event.message_id,
        "namespace": event.tenant,
        "channel": event.channel,
        "state": event.state.value,
        "at": _iso(event.at),
        **({"detail": event.detail} if event.detail else {}),
    }


def _list_filter(tenant: str, query: Mapping[str, str]) -> ListFilter:
    try:
        state = State(query["state"]) if query.get("state") else None
    except ValueError:
        raise ApiError(
            400,
            "INVALID_REQUEST",
            f"state: {query['state']!r} is not one of {', '.join(s.value for s in State)}",
        ) from None
    limit = query.get("limit", "100")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise ApiError(400, "INVALID_REQUEST", "limit: a number from 1 to 1000")
    return ListFilter(
        tenant=tenant,
        state=state,
        channel=query.get("channel") or None,
        recipient=query.get("recipient") or None,
        since=_timestamp(query, "since"),
        until=_timestamp(query, "until"),
        limit=int(limit),
    )


def _timestamp(query: Mapping[str, str], name: str) -> float | None:
    value = query.get(name)
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400, "INVALID_REQUEST", f"{name}: {value!r} is not an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


async def _ledger(work: Awaitable[_T]) -> _T:
    """Await a ledger read; an unreachable database is a 503 that says so."""
    try:
        return await work
    except LedgerError as error:
        raise _from_ledger(error) from error


def _ledger_code(error: LedgerError) -> str:
    return (
        "IDEMPOTENCY_CONFLICT" if isinstance(error, IdempotencyConflict) else "LEDGER_UNAVAILABLE"
    )


def _from_ledger(error: LedgerError) -> ApiError:
    if isinstance(error, IdempotencyConflict):
        return ApiError(409, "IDEMPOTENCY_CONFLICT", str(error), message_id=error.existing_id)
    if isinstance(error, LedgerUnavailable):
        return ApiError(
            503,
            "LEDGER_UNAVAILABLE",
            "The router cannot record messages now (its ledger database is unavailable), "
            "so it accepts none; nothing was sent. Retry shortly.",
            retry_after=5.0,
        )
    return ApiError(503, "LEDGER_ERROR", str(error), retry_after=5.0)
