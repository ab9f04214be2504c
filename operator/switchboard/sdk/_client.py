"""Calling a plugin: the one client the router, local mode and plugin tests share.

Each method is one RPC with a deadline. The current trace context is injected
into the request metadata, and a failed call raises the typed ``PluginError``
subclass the plugin raised (``errors_from_rpc_error``), so callers branch on
exception types, never on gRPC status codes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import propagate

from switchboard.plugin.v1 import plugin_pb2, plugin_pb2_grpc
from switchboard.sdk._errors import OutcomeUnknown, errors_from_rpc_error
from switchboard.sdk._messages import (
    Attachment,
    DeliveryState,
    Receipt,
    ReceiptReply,
    SendResult,
    Template,
)

_Response = TypeVar("_Response")


_DELIVERY_STATE_OF = {
    plugin_pb2.DELIVERY_STATE_SENT: DeliveryState.SENT,
    plugin_pb2.DELIVERY_STATE_DELIVERED: DeliveryState.DELIVERED,
    plugin_pb2.DELIVERY_STATE_FAILED: DeliveryState.FAILED,
}


class _Default:
    """The client's own `timeout`, as opposed to an explicit one (None: no deadline)."""


_DEFAULT = _Default()


class PluginClient:
    """An asyncio client for one plugin endpoint (``host:port``).

    ``timeout`` is the deadline of every call, in seconds (``None``: no deadline);
    the plugin sees it as the call's gRPC deadline. ``send`` and ``invoke`` take
    a ``timeout`` of their own for one call. Use as
    ``async with PluginClient(address) as client: ...`` or call ``close()``.
    """

    def __init__(self, target: str, *, timeout: float | None = 10.0) -> None:
        self.target = target
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(target)
        self._stub = plugin_pb2_grpc.PluginServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def describe(self) -> plugin_pb2.DescribeResponse:
        """What the plugin is: identity, kind, capabilities, config schema, operations."""
        return await self._call(self._stub.Describe, plugin_pb2.DescribeRequest())

    async def send(
        self,
        recipient: str,
        content: str,
        *,
        subject: str = "",
        content_type: str = "",
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str = "",
        tenant: str = "",
        attachments: tuple[Attachment, ...] = (),
        template: Template | None = None,
        cc: tuple[str, ...] = (),
        bcc: tuple[str, ...] = (),
        receipt_url: str = "",
        timeout: float | _Default | None = _DEFAULT,
    ) -> SendResult:
        """Deliver one message through a communication plugin."""
        request = plugin_pb2.SendRequest(
            recipient=recipient,
            content=content,
            subject=subject,
            content_type=content_type,
            metadata=dict(metadata or {}),
            idempotency_key=idempotency_key,
            tenant=tenant,
            attachments=[_attachment_proto(attachment) for attachment in attachments],
            template=_template_proto(template) if template is not None else None,
            cc=cc,
            bcc=bcc,
            receipt_url=receipt_url,
        )
        response = await self._call(self._stub.Send, request, timeout)
        return SendResult(
            response.provider_message_id,
            dict(response.details),
            tuple(response.part_message_ids),
        )

    async def handle_receipt(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        timeout: float | _Default | None = _DEFAULT,
    ) -> ReceiptReply:
        """Hand a provider's delivery callback to the plugin; the receipts it verified."""
        request = plugin_pb2.HandleReceiptRequest(
            method=method, url=url, headers=dict(headers), body=body
        )
        response = await self._call(self._stub.HandleReceipt, request, timeout)
        return ReceiptReply(
            tuple(
                Receipt(item.provider_message_id, _DELIVERY_STATE_OF[item.state], item.error)
                for item in response.receipts
                if item.state in _DELIVERY_STATE_OF
            ),
            response.reply_body,
            response.reply_content_type or "text/plain",
        )

    async def invoke(
        self,
        operation: str,
        params: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str = "",
        tenant: str = "",
        timeout: float | _Default | None = _DEFAULT,
    ) -> Any:
        """Run ``operation`` with ``params``; return its decoded JSON result."""
        request = plugin_pb2.InvokeRequest(
            operation=operation,
            params_json=json.dumps(dict(params or {})),
            idempotency_key=idempotency_key,
            tenant=tenant,
        )
        response = await self._call(self._stub.Invoke, request, timeout)
        return json.loads(response.result_json) if response.result_json else None

    async def check_credentials(self) -> plugin_pb2.CheckCredentialsResponse:
        """Whether the plugin's provider accepts its credentials (``ok``, ``message``)."""
        return await self._call(self._stub.CheckCredentials, plugin_pb2.CheckCredentialsRequest())

    async def health(self, service: str = "") -> str:
        """The ``grpc.health.v1`` status name: ``SERVING``, ``NOT_SERVING``, ..."""
        response = await self._health.Check(
            health_pb2.HealthCheckRequest(service=service),
            timeout=self.timeout,
        )
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    async def _call(
        self,
        method: Callable[..., Awaitable[_Response]],
        request: object,
        timeout: float | _Default | None = _DEFAULT,
    ) -> _Response:
        metadata: dict[str, str] = {}
        propagate.inject(metadata)
        try:
            response = await method(
                request,
                timeout=self.timeout if isinstance(timeout, _Default) else timeout,
                metadata=tuple(metadata.items()),
            )
        except grpc.aio.AioRpcError as error:
            raise errors_from_rpc_error(error) from error
        if response is None:
            # grpc hands back None when the answer's bytes do not parse: the plugin
            # did something, but what cannot be known.
            raise OutcomeUnknown(f"{self.target} answered with bytes that are not a valid reply")
        return response


def _attachment_proto(attachment: Attachment) -> plugin_pb2.Attachment:
    wire = plugin_pb2.Attachment(filename=attachment.filename, content_type=attachment.content_type)
    if attachment.url:
        wire.url = attachment.url
    else:
        wire.data = attachment.data
    return wire


def _template_proto(template: Template) -> plugin_pb2.Template:
    return plugin_pb2.Template(
        id=template.id,
        variables_json=json.dumps(dict(template.variables)),
        language=template.language,
    )
