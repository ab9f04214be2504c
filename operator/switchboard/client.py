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
    ├── NotFound            404: no plugin for that channel, no such integration
    ├── Overloaded          429: the router is at capacity; retry after `retry_after`
    └── DeliveryFailed      502, 503, 504 and connection failures: see `attempts`
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"


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
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.fields = fields or []
        self.attempts = attempts or []
        self.retry_after = retry_after


class InvalidRequest(SwitchboardError):
    pass


class NotAuthenticated(SwitchboardError):
    pass


class Forbidden(SwitchboardError):
    pass


class NotFound(SwitchboardError):
    pass


class Overloaded(SwitchboardError):
    pass


class DeliveryFailed(SwitchboardError):
    pass


@dataclass(frozen=True)
class Attempt:
    plugin: str
    endpoint: str
    outcome: str
    duration_ms: float
    message: str = ""
    retry_after_seconds: float | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attempt:
        return cls(
            data["plugin"],
            data["endpoint"],
            data["outcome"],
            data["durationMs"],
            data.get("message", ""),
            data.get("retryAfterSeconds"),
        )


@dataclass(frozen=True)
class SendResult:
    """A delivered message: the plugin that sent it and every attempt on the way."""

    plugin: str
    endpoint: str
    provider_message_id: str
    namespace: str
    replayed: bool = False
    details: dict[str, str] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)


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
    429: Overloaded,
}


def _raise_for(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code == 200:
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
) -> dict[str, Any]:
    body: dict[str, Any] = {"channel": channel_type, "recipient": recipient, "content": content}
    optional = {
        "subject": subject,
        "contentType": content_type,
        "metadata": metadata,
        "idempotencyKey": idempotency_key,
        "namespace": namespace,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


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
        plugin=data["plugin"],
        endpoint=data["endpoint"],
        provider_message_id=data["providerMessageId"],
        namespace=data["namespace"],
        replayed=data["replayed"],
        details=data.get("details", {}),
        attempts=[Attempt.from_json(a) for a in data.get("attempts", [])],
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
        try:
            response = await self._http.request(method, path, **kwargs)
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
        )
        return _sent(await self._request("POST", "/v1/messages", json=body))

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

    async def system_status(self, namespace: str | None = None) -> dict[str, Any]:
        return await self._request(
            "GET", "/v1/plugins", params=_status_params(namespace or self.namespace)
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
        try:
            response = self._http.request(method, path, **kwargs)
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
        )
        return _sent(self._request("POST", "/v1/messages", json=body))

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

    def system_status(self, namespace: str | None = None) -> dict[str, Any]:
        return self._request(
            "GET", "/v1/plugins", params=_status_params(namespace or self.namespace)
        )


async def send_message(
    channel_type: str,
    recipient: str,
    content: str,
    *,
    subject: str | None = None,
    metadata: dict[str, str] | None = None,
    idempotency_key: str | None = None,
) -> SendResult:
    """Send one message on a channel; the router picks the provider."""
    async with AsyncSwitchboard() as client:
        return await client.send_message(
            channel_type,
            recipient,
            content,
            subject=subject,
            metadata=metadata,
            idempotency_key=idempotency_key,
        )


async def invoke(
    integration: str, operation: str, params: dict[str, Any] | None = None
) -> InvokeResult:
    """Run one operation of a vendor integration: `invoke("voltha", "provision_olt", {...})`."""
    async with AsyncSwitchboard() as client:
        return await client.invoke(integration, operation, params)


async def system_status() -> dict[str, Any]:
    """The plugins of the caller's namespace: per channel and integration, health and counts."""
    async with AsyncSwitchboard() as client:
        return await client.system_status()
