"""The application's side: send messages and invoke integrations through the router.

    from switchboard import send_message
    result = await send_message("sms", "+15551234567", "Your code is 123456")

The router's URL and the caller's token come from `SWITCHBOARD_URL` and
`SWITCHBOARD_TOKEN` (a ServiceAccount token in Kubernetes, an API key in local
mode). `AsyncSwitchboard` and `Switchboard` (blocking) take them explicitly.

Errors (each carries `status`, `code`, `message`, `fields`, `attempts`):

    SwitchboardError
    ├── InvalidRequest      400, 413, 415, 422: fix the request; retrying will not help
    ├── NotAuthenticated    401: no token, or one the router does not accept
    ├── Forbidden           403: RBAC does not allow this in that namespace
    ├── NotFound            404: no plugin for that channel, no such integration or message
    ├── Conflict            409: the idempotency key names another message (`message_id`),
    │                       or the message cannot be replayed
    ├── Overloaded          429: the router is at capacity; retry after `retry_after`
    └── DeliveryFailed      502, 503, 504 and connection failures: see `attempts`; the
                            message, if the router recorded it, is `message_id`

Every accepted message has an id in the router's ledger: `send_message`
returns it, `get_message(id)` says what happened to it, `wait_for_message`
waits for its final state; `send_message(..., wait=False)` returns as soon as
the message is recorded and the router sends it in the background.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx
from opentelemetry import propagate, trace

from switchboard.sdk._messages import Attachment, Template

DEFAULT_URL = "http://127.0.0.1:8080"
_tracer = trace.get_tracer("switchboard.client")
_MESSAGE_PATH = re.compile(r"^/v1/messages/(?!events$)[^/]+")


class SwitchboardError(Exception):
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
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.fields = fields or []
        self.attempts = attempts or []
        self.retry_after = retry_after
        #: The message's id in the router's ledger, when it recorded one.
        self.message_id = message_id


class InvalidRequest(SwitchboardError):
    pass


class NotAuthenticated(SwitchboardError):
    pass


class Forbidden(SwitchboardError):
    pass


class NotFound(SwitchboardError):
    pass


class Conflict(SwitchboardError):
    pass


class Overloaded(SwitchboardError):
    pass


class DeliveryFailed(SwitchboardError):
    pass


@dataclass(frozen=True)
class Attempt:
    """One attempt on a plugin (the router's `Attempt`; from the ledger, `RecordedAttempt`
    adds `round`, `provider_message_id` and `at`)."""

    plugin: str
    endpoint: str
    outcome: str
    duration_ms: float
    message: str = ""
    retry_after_seconds: float | None = None
    round: int | None = None
    provider_message_id: str | None = None
    at: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attempt:
        return cls(
            data["plugin"],
            data["endpoint"],
            data["outcome"],
            data["durationMs"],
            data.get("message", ""),
            data.get("retryAfterSeconds"),
            data.get("round"),
            data.get("providerMessageId"),
            data.get("at"),
        )


@dataclass(frozen=True)
class SendResult:
    """A message the router took: its id, where it stands, who sent it, every attempt.

    ``state`` is ``sent`` (a provider accepted it) or, for ``wait=False``,
    ``accepted`` (recorded; the router sends it in the background).
    """

    plugin: str
    endpoint: str
    provider_message_id: str
    namespace: str
    replayed: bool = False
    details: dict[str, str] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    id: str = ""
    state: str = "sent"
    #: An earlier attempt may also have reached a provider (the message may arrive twice).
    possible_duplicate: bool = False


#: States a message does not leave by itself.
FINAL_STATES = frozenset({"delivered", "failed", "unknown", "expired"})


@dataclass(frozen=True)
class MessageStatus:
    """What the router's ledger knows about one message."""

    id: str
    namespace: str
    channel: str
    state: str
    recipient: str | None = None
    possible_duplicate: bool = False
    plugin: str | None = None
    provider_message_id: str | None = None
    error_code: str = ""
    error_message: str = ""
    created_at: str = ""
    updated_at: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MessageStatus:
        error = data.get("error") or {}
        return cls(
            id=data["id"],
            namespace=data["namespace"],
            channel=data["channel"],
            state=data["state"],
            recipient=data.get("recipient"),
            possible_duplicate=data.get("possibleDuplicate", False),
            plugin=data.get("plugin"),
            provider_message_id=data.get("providerMessageId"),
            error_code=error.get("code", ""),
            error_message=error.get("message", ""),
            created_at=data.get("createdAt") or "",
            updated_at=data.get("updatedAt") or "",
            attempts=[Attempt.from_json(a) for a in data.get("attempts", [])],
            history=data.get("history", []),
        )


@dataclass(frozen=True)
class MessageEvent:
    """One state change of a message, from the router's live stream (``message_events``)."""

    seq: int
    """Position in the stream: resume after it with ``message_events(after=seq)``."""
    id: str
    namespace: str
    channel: str
    state: str
    at: str
    detail: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MessageEvent:
        return cls(
            int(data["seq"]),
            data["id"],
            data["namespace"],
            data["channel"],
            data["state"],
            data.get("at") or "",
            data.get("detail", ""),
        )


def parse_sse(lines: Iterable[str]) -> Iterator[tuple[str, str, str]]:
    """Server-sent events as (id, event, data) from the stream's text lines."""
    event_id, event, data = "", "", list[str]()
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield event_id, event or "message", "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue  # a comment: the keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            event_id = value
        elif name == "event":
            event = value
        elif name == "data":
            data.append(value)


class SystemStatus(dict[str, Any]):
    """The router's status document; its keys also answer in snake_case
    (``status["total_plugins"]`` is ``status["totalPlugins"]``), as the seeds' code reads it."""

    def __missing__(self, key: str) -> Any:
        head, *rest = key.split("_")
        camel = head + "".join(part.title() for part in rest)
        if rest and camel in self:
            return self[camel]
        raise KeyError(key)


@dataclass(frozen=True)
class InvokeResult:
    """What an integration's operation returned."""

    result: Any
    plugin: str
    endpoint: str
    namespace: str
    replayed: bool = False
    attempts: list[Attempt] = field(default_factory=list)


_ERRORS: dict[int, type[SwitchboardError]] = {
    400: InvalidRequest,
    413: InvalidRequest,
    415: InvalidRequest,
    422: InvalidRequest,
    401: NotAuthenticated,
    403: Forbidden,
    404: NotFound,
    408: InvalidRequest,
    409: Conflict,
    429: Overloaded,
}


def _raise_for(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code in (200, 202):
        return dict(body)
    error = body.get("error", {}) if isinstance(body, dict) else {}
    retry_after = error.get("retryAfterSeconds")
    if retry_after is None and "Retry-After" in response.headers:
        retry_after = float(response.headers["Retry-After"])
    cls = _ERRORS.get(response.status_code, DeliveryFailed)
    raise cls(
        response.status_code,
        error.get("code", "HTTP_ERROR"),
        error.get("message", response.text[:500]),
        fields=error.get("fields"),
        attempts=[Attempt.from_json(a) for a in error.get("attempts", [])],
        retry_after=retry_after,
        message_id=error.get("messageId"),
    )


def _message_body(
    channel_type: str,
    recipient: str,
    content: str,
    subject: str | None,
    content_type: str | None,
    metadata: dict[str, str] | None,
    idempotency_key: str | None,
    namespace: str | None,
    *,
    wait: bool = True,
    attachments: Sequence[Attachment] = (),
    template: Template | None = None,
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
) -> dict[str, Any]:
    body: dict[str, Any] = {"channel": channel_type, "recipient": recipient, "content": content}
    optional = {
        "subject": subject,
        "contentType": content_type,
        "metadata": metadata,
        "idempotencyKey": idempotency_key,
        "namespace": namespace,
        "wait": None if wait else False,
        "attachments": [_attachment_json(a) for a in attachments] or None,
        "template": (
            {
                "id": template.id,
                "variables": dict(template.variables),
                "language": template.language,
            }
            if template is not None
            else None
        ),
        "cc": list(cc) or None,
        "bcc": list(bcc) or None,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


def _attachment_json(attachment: Attachment) -> dict[str, str]:
    source = (
        {"url": attachment.url}
        if attachment.url
        else {"data": base64.b64encode(attachment.data).decode("ascii")}
    )
    return {"filename": attachment.filename, "contentType": attachment.content_type, **source}


def _list_params(namespace: str | None, filters: dict[str, Any]) -> dict[str, str]:
    params = {k: str(v) for k, v in filters.items() if v is not None}
    if namespace:
        params["namespace"] = namespace
    return params


def _invoke_request(
    integration: str,
    operation: str,
    params: dict[str, Any] | None,
    idempotency_key: str | None,
    namespace: str | None,
) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {"params": params or {}}
    if idempotency_key:
        body["idempotencyKey"] = idempotency_key
    if namespace:
        body["namespace"] = namespace
    return f"/v1/integrations/{integration}/operations/{operation}", body


def _status_params(namespace: str | None) -> dict[str, str]:
    return {"namespace": namespace} if namespace else {}


def _sent(data: dict[str, Any]) -> SendResult:
    return SendResult(
        plugin=data.get("plugin", ""),
        endpoint=data.get("endpoint", ""),
        provider_message_id=data.get("providerMessageId", ""),
        namespace=data["namespace"],
        replayed=data["replayed"],
        details=data.get("details", {}),
        attempts=[Attempt.from_json(a) for a in data.get("attempts", [])],
        id=data.get("id", ""),
        state=data.get("state", "sent"),
        possible_duplicate=data.get("possibleDuplicate", False),
    )


def _invoked(data: dict[str, Any]) -> InvokeResult:
    return InvokeResult(
        result=data.get("result"),
        plugin=data["plugin"],
        endpoint=data["endpoint"],
        namespace=data["namespace"],
        replayed=data["replayed"],
        attempts=[Attempt.from_json(a) for a in data.get("attempts", [])],
    )


def _settings(url: str | None, token: str | None) -> tuple[str, dict[str, str]]:
    url = url or os.environ.get("SWITCHBOARD_URL") or DEFAULT_URL
    token = token or os.environ.get("SWITCHBOARD_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return url.rstrip("/"), headers


@contextlib.contextmanager
def _client_span(method: str, path: str) -> Iterator[dict[str, str]]:
    """A client span around one call to the router, and the headers that carry it on.

    The router continues the trace from `traceparent`; with no tracer
    provider configured the caller's own current span (if any) is passed on.
    """
    name = f"{method} {_MESSAGE_PATH.sub('/v1/messages/{id}', path)}"
    with _tracer.start_as_current_span(name, kind=trace.SpanKind.CLIENT):
        headers: dict[str, str] = {}
        propagate.inject(headers)
        yield headers


def _connection_failed(error: httpx.TransportError, url: str) -> DeliveryFailed:
    return DeliveryFailed(0, "ROUTER_UNREACHABLE", f"Could not reach the router at {url}: {error}")


class AsyncSwitchboard:
    """An asyncio client of one router."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        namespace: str | None = None,
        timeout: float = 40.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url, headers = _settings(url, token)
        self.namespace = namespace
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        with _client_span(method, path) as headers:
            try:
                response = await self._http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as error:
                raise _connection_failed(error, self.url) from error
            return _raise_for(response)

    async def send_message(
        self,
        channel_type: str,
        recipient: str,
        content: str,
        *,
        subject: str | None = None,
        metadata: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        content_type: str | None = None,
        namespace: str | None = None,
        wait: bool = True,
        attachments: Sequence[Attachment] = (),
        template: Template | None = None,
        cc: Sequence[str] = (),
        bcc: Sequence[str] = (),
    ) -> SendResult:
        body = _message_body(
            channel_type,
            recipient,
            content,
            subject,
            content_type,
            metadata,
            idempotency_key,
            namespace or self.namespace,
            wait=wait,
            attachments=attachments,
            template=template,
            cc=cc,
            bcc=bcc,
        )
        return _sent(await self._request("POST", "/v1/messages", json=body))

    async def get_message(self, message_id: str, *, namespace: str | None = None) -> MessageStatus:
        """What happened to one message: its state, attempts and history."""
        data = await self._request(
            "GET", f"/v1/messages/{message_id}", params=_status_params(namespace or self.namespace)
        )
        return MessageStatus.from_json(data)

    async def list_messages(
        self, *, namespace: str | None = None, **filters: Any
    ) -> list[MessageStatus]:
        """Messages, newest first; filters: state, channel, recipient, since, until, limit."""
        data = await self._request(
            "GET", "/v1/messages", params=_list_params(namespace or self.namespace, filters)
        )
        return [MessageStatus.from_json(m) for m in data["messages"]]

    async def replay_message(self, message_id: str, *, namespace: str | None = None) -> SendResult:
        """Send a failed, unknown or expired message again (a new round of the same message)."""
        data = await self._request(
            "POST",
            f"/v1/messages/{message_id}/replay",
            params=_status_params(namespace or self.namespace),
        )
        return _sent(data)

    async def wait_for_message(
        self,
        message_id: str,
        *,
        states: Iterable[str] = FINAL_STATES,
        timeout: float = 60.0,
        namespace: str | None = None,
    ) -> MessageStatus:
        """Poll until the message reaches one of ``states`` (default: a final one).

        Raises ``TimeoutError`` when it has not after ``timeout`` seconds.
        """
        wanted = set(states)
        deadline = time.monotonic() + timeout
        while True:
            status = await self.get_message(message_id, namespace=namespace)
            if status.state in wanted:
                return status
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Message {message_id} is still {status.state}")
            await asyncio.sleep(0.2)

    async def invoke(
        self,
        integration: str,
        operation: str,
        params: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        namespace: str | None = None,
    ) -> InvokeResult:
        path, body = _invoke_request(
            integration, operation, params, idempotency_key, namespace or self.namespace
        )
        return _invoked(await self._request("POST", path, json=body))

    async def system_status(self, namespace: str | None = None) -> SystemStatus:
        return SystemStatus(
            await self._request(
                "GET", "/v1/plugins", params=_status_params(namespace or self.namespace)
            )
        )


class Switchboard:
    """A blocking client of one router, for code without an event loop."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        namespace: str | None = None,
        timeout: float = 40.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url, headers = _settings(url, token)
        self.namespace = namespace
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        with _client_span(method, path) as headers:
            try:
                response = self._http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as error:
                raise _connection_failed(error, self.url) from error
            return _raise_for(response)

    def send_message(
        self,
        channel_type: str,
        recipient: str,
        content: str,
        *,
        subject: str | None = None,
        metadata: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        content_type: str | None = None,
        namespace: str | None = None,
        wait: bool = True,
        attachments: Sequence[Attachment] = (),
        template: Template | None = None,
        cc: Sequence[str] = (),
        bcc: Sequence[str] = (),
    ) -> SendResult:
        body = _message_body(
            channel_type,
            recipient,
            content,
            subject,
            content_type,
            metadata,
            idempotency_key,
            namespace or self.namespace,
            wait=wait,
            attachments=attachments,
            template=template,
            cc=cc,
            bcc=bcc,
        )
        return _sent(self._request("POST", "/v1/messages", json=body))

    def get_message(self, message_id: str, *, namespace: str | None = None) -> MessageStatus:
        """What happened to one message: its state, attempts and history."""
        data = self._request(
            "GET", f"/v1/messages/{message_id}", params=_status_params(namespace or self.namespace)
        )
        return MessageStatus.from_json(data)

    def list_messages(self, *, namespace: str | None = None, **filters: Any) -> list[MessageStatus]:
        """Messages, newest first; filters: state, channel, recipient, since, until, limit."""
        data = self._request(
            "GET", "/v1/messages", params=_list_params(namespace or self.namespace, filters)
        )
        return [MessageStatus.from_json(m) for m in data["messages"]]

    def audit_trail(
        self, *, namespace: str | None = None, since: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Who sent, invoked, replayed or was refused what, newest first (`GET /v1/audit`)."""
        data = self._request(
            "GET",
            "/v1/audit",
            params=_list_params(namespace or self.namespace, {"since": since, "limit": limit}),
        )
        return list(data["events"])

    def replay_message(self, message_id: str, *, namespace: str | None = None) -> SendResult:
        """Send a failed, unknown or expired message again (a new round of the same message)."""
        return _sent(
            self._request(
                "POST",
                f"/v1/messages/{message_id}/replay",
                params=_status_params(namespace or self.namespace),
            )
        )

    def wait_for_message(
        self,
        message_id: str,
        *,
        states: Iterable[str] = FINAL_STATES,
        timeout: float = 60.0,
        namespace: str | None = None,
    ) -> MessageStatus:
        """Poll until the message reaches one of ``states`` (default: a final one)."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        while True:
            status = self.get_message(message_id, namespace=namespace)
            if status.state in wanted:
                return status
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Message {message_id} is still {status.state}")
            time.sleep(0.2)

    def message_events(
        self, *, after: int | None = None, namespace: str | None = None
    ) -> Iterator[MessageEvent]:
        """State changes of the tenant's messages as they happen (``GET /v1/messages/events``).

        Starts now, or after event ``after`` (a ``MessageEvent.seq``); runs until
        the connection ends. Reconnect with ``after=`` the last ``seq`` seen.
        """
        headers = {"Last-Event-ID": str(after)} if after is not None else {}
        params = _status_params(namespace or self.namespace)
        with _client_span("GET", "/v1/messages/events") as trace_headers:
            try:
                with self._http.stream(
                    "GET",
                    "/v1/messages/events",
                    params=params,
                    headers={**headers, **trace_headers},
                    timeout=httpx.Timeout(self._http.timeout.connect, read=None),
                ) as response:
                    if response.status_code != 200:
                        response.read()
                        _raise_for(response)
                    for _id, event, data in parse_sse(response.iter_lines()):
                        if event == "state":
                            yield MessageEvent.from_json(json.loads(data))
            except httpx.TransportError as error:
                raise _connection_failed(error, self.url) from error

    def invoke(
        self,
        integration: str,
        operation: str,
        params: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        namespace: str | None = None,
    ) -> InvokeResult:
        path, body = _invoke_request(
            integration, operation, params, idempotency_key, namespace or self.namespace
        )
        return _invoked(self._request("POST", path, json=body))

    def system_status(self, namespace: str | None = None) -> SystemStatus:
        return SystemStatus(
            self._request("GET", "/v1/plugins", params=_status_params(namespace or self.namespace))
        )


async def send_message(
    channel_type: str,
    recipient: str,
    content: str,
    *,
    subject: str | None = None,
    metadata: dict[str, str] | None = None,
    idempotency_key: str | None = None,
    wait: bool = True,
) -> SendResult:
    """Send one message on a channel; the router picks the provider.

    ``wait=False`` returns as soon as the router recorded the message (its
    ``id``, state ``accepted``); the router sends it in the background.
    """
    async with AsyncSwitchboard() as client:
        return await client.send_message(
            channel_type,
            recipient,
            content,
            subject=subject,
            metadata=metadata,
            idempotency_key=idempotency_key,
            wait=wait,
        )


async def get_message(message_id: str) -> MessageStatus:
    """What happened to one message (``send_message(...).id``): state, attempts, history."""
    async with AsyncSwitchboard() as client:
        return await client.get_message(message_id)


async def invoke(
    integration: str, operation: str, params: dict[str, Any] | None = None
) -> InvokeResult:
    """Run one operation of a vendor integration: `invoke("voltha", "provision_olt", {...})`."""
    async with AsyncSwitchboard() as client:
        return await client.invoke(integration, operation, params)


async def system_status() -> SystemStatus:
    """The plugins of the caller's namespace: per channel and integration, health and counts."""
    async with AsyncSwitchboard() as client:
        return await client.system_status()
