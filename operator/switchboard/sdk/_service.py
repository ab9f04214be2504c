"""``PluginService`` over gRPC: from a request to a plugin method and back, failures typed.

Every call runs the same way (``_handle``): extract the caller's trace context
from the metadata, open a server span, pin the current plugin instance (a
``Generation``) for the whole call so a secret rotation never swaps it
mid-call, run the plugin code, and turn whatever it raised into a status code
plus the ``switchboard-error-bin`` trailer. Input is validated here, before any
plugin code runs: an empty recipient or params that break an operation's JSON
Schema never reach the author's method.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final, TypeVar

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from switchboard.api import constants
from switchboard.plugin.v1 import plugin_pb2, plugin_pb2_grpc
from switchboard.sdk._config import schema_violations
from switchboard.sdk._errors import (
    InvalidInput,
    PermanentError,
    PluginError,
    RetryableError,
    Unauthenticated,
    error_trailer,
    exception_for,
)
from switchboard.sdk._loader import LoadedPlugin
from switchboard.sdk._logging import Redactor
from switchboard.sdk._messages import (
    Attachment,
    DeliveryState,
    Message,
    Receipt,
    ReceiptReply,
    ReceiptRequest,
    SendResult,
    Template,
)
from switchboard.sdk._plugin import MessagingPlugin, Plugin

SERVICE_NAME: Final = plugin_pb2.DESCRIPTOR.services_by_name["PluginService"].full_name
_DELIVERY_STATES: Final = {
    DeliveryState.SENT: plugin_pb2.DELIVERY_STATE_SENT,
    DeliveryState.DELIVERED: plugin_pb2.DELIVERY_STATE_DELIVERED,
    DeliveryState.FAILED: plugin_pb2.DELIVERY_STATE_FAILED,
}

_Result = TypeVar("_Result")
_Context = grpc.aio.ServicerContext[Any, Any]


class Generation:
    """One plugin instance and the calls running on it.

    A new generation is built when secrets rotate; the previous one is retired
    once ``wait_idle`` returns.
    """

    def __init__(self, plugin: Plugin) -> None:
        self.plugin = plugin
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @contextmanager
    def track_call(self) -> Iterator[Plugin]:
        self._in_flight += 1
        self._idle.clear()
        try:
            yield self.plugin
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


class PluginServicer(plugin_pb2_grpc.PluginServiceServicer):
    """Serves one loaded plugin; the runtime assigns ``generation`` once it is active."""

    def __init__(
        self,
        loaded: LoadedPlugin,
        redactor: Redactor,
        tracer: trace.Tracer,
        logger: logging.Logger,
    ) -> None:
        self.generation: Generation | None = None
        self._loaded = loaded
        self._description = loaded.describe()
        self._operations = loaded.plugin_class.declared_operations()
        self._redactor = redactor
        self._tracer = tracer
        self._logger = logger

    async def Describe(
        self, request: plugin_pb2.DescribeRequest, context: _Context
    ) -> plugin_pb2.DescribeResponse:
        return await self._handle("Describe", context, self._describe, needs_plugin=False)

    async def Send(
        self, request: plugin_pb2.SendRequest, context: _Context
    ) -> plugin_pb2.SendResponse:
        return await self._handle("Send", context, lambda plugin: self._send(plugin, request))

    async def Invoke(
        self, request: plugin_pb2.InvokeRequest, context: _Context
    ) -> plugin_pb2.InvokeResponse:
        return await self._handle("Invoke", context, lambda plugin: self._invoke(plugin, request))

    async def CheckCredentials(
        self, request: plugin_pb2.CheckCredentialsRequest, context: _Context
    ) -> plugin_pb2.CheckCredentialsResponse:
        return await self._handle("CheckCredentials", context, self._check_credentials)

    async def _describe(self, _: Plugin | None) -> plugin_pb2.DescribeResponse:
        return self._description

    async def _send(
        self, plugin: Plugin, request: plugin_pb2.SendRequest
    ) -> plugin_pb2.SendResponse:
        if not isinstance(plugin, MessagingPlugin):
            raise PermanentError(
                f"{self._description.plugin_id} is a {self._description.integration_type} "
                "integration and sends no messages; call Invoke"
            )
        if not request.recipient.strip():
            raise InvalidInput("recipient: must not be empty")
        _check_caller_strings(request)
        message = Message(
            recipient=request.recipient,
            content=request.content,
            subject=request.subject,
            content_type=request.content_type or "text/plain",
            metadata=dict(request.metadata),
            idempotency_key=request.idempotency_key,
            tenant=request.tenant,
            attachments=tuple(
                _attachment(wire, f"attachments[{index}]")
                for index, wire in enumerate(request.attachments)
            ),
            template=_template(request.template) if request.HasField("template") else None,
            cc=_addresses(request.cc, "cc"),
            bcc=_addresses(request.bcc, "bcc"),
            receipt_url=request.receipt_url,
        )
        result = await plugin.send_message(message)
        if not isinstance(result, SendResult):
            raise TypeError(f"send_message returned {type(result).__name__}, not SendResult")
        return plugin_pb2.SendResponse(
            provider_message_id=result.provider_message_id,
            details=dict(result.details),
            part_message_ids=list(result.part_ids),
        )

    async def HandleReceipt(
        self, request: plugin_pb2.HandleReceiptRequest, context: _Context
    ) -> plugin_pb2.HandleReceiptResponse:
        return await self._handle(
            "HandleReceipt", context, lambda plugin: self._handle_receipt(plugin, request)
        )

    async def _handle_receipt(
        self, plugin: Plugin, request: plugin_pb2.HandleReceiptRequest
    ) -> plugin_pb2.HandleReceiptResponse:
        if not isinstance(plugin, MessagingPlugin):
            raise PermanentError(f"{self._description.plugin_id} takes no delivery receipts")
        answer = await plugin.handle_receipt(
            ReceiptRequest(
                method=request.method,
                url=request.url,
                headers={key.lower(): value for key, value in request.headers.items()},
                body=request.body,
            )
        )
        reply = answer if isinstance(answer, ReceiptReply) else ReceiptReply(tuple(answer))
        return plugin_pb2.HandleReceiptResponse(
            receipts=[
                plugin_pb2.Receipt(
                    provider_message_id=receipt.provider_message_id,
                    state=_DELIVERY_STATES[DeliveryState(receipt.state)],
                    error=receipt.error,
                )
                for receipt in reply.receipts
                if isinstance(receipt, Receipt)
            ],
            reply_body=reply.body,
            reply_content_type=reply.content_type if reply.body else "",
        )

    async def _invoke(
        self, plugin: Plugin, request: plugin_pb2.InvokeRequest
    ) -> plugin_pb2.InvokeResponse:
        spec = self._operations.get(request.operation)
        if spec is None:
            offered = ", ".join(sorted(self._operations)) or "none"
            raise InvalidInput(
                f"operation: {request.operation!r} is not an operation of "
                f"{self._description.plugin_id} (offered: {offered})"
            )
        params = _parse_params(request.params_json)
        violation = schema_violations(params, spec.params_schema, root="params")
        if violation is not None:
            raise InvalidInput(violation)
        result = await getattr(plugin, spec.method_name)(params)
        return plugin_pb2.InvokeResponse(result_json=json.dumps(result))

    async def _check_credentials(self, plugin: Plugin) -> plugin_pb2.CheckCredentialsResponse:
        try:
            message = await plugin.check_credentials()
        except Unauthenticated as rejected:
            return plugin_pb2.CheckCredentialsResponse(
                ok=False, message=self._redactor.redact(rejected.message)
            )
        return plugin_pb2.CheckCredentialsResponse(ok=True, message=self._redactor.redact(message))

    async def _handle(
        self,
        rpc: str,
        context: _Context,
        work: Callable[[Plugin], Awaitable[_Result]],
        *,
        needs_plugin: bool = True,
    ) -> _Result:
        metadata = context.invocation_metadata() or ()
        carrier = {key: value for key, value in metadata if isinstance(value, str)}
        started = time.monotonic()
        with self._tracer.start_as_current_span(
            f"{SERVICE_NAME}/{rpc}",
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": SERVICE_NAME, "rpc.method": rpc},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                if needs_plugin:
                    generation = self._current_generation()
                    with generation.track_call() as plugin:
                        result = await work(plugin)
                else:
                    result = await work(None)  # type: ignore[arg-type]  # Describe needs no instance
            except PluginError as error:
                failure = error
            except Exception as error:
                # RETRYABLE, not PERMANENT: a bug in this provider's plugin
                # should make the router try the next provider.
                self._logger.exception(
                    "Plugin code raised an unexpected exception", extra={"rpc": rpc}
                )
                failure = RetryableError(f"{rpc} failed: {type(error).__name__}: {error}")
            else:
                self._logger.info(
                    "Handled a call", extra={"rpc": rpc, "duration_ms": _since(started)}
                )
                return result
            wire = exception_for(
                failure.error_class, self._redactor.redact(failure.message), failure.retry_after
            )
            span.set_status(Status(StatusCode.ERROR, wire.message))
            span.set_attribute("switchboard.error_class", str(wire.error_class))
            self._logger.warning(
                "Failed a call",
                extra={
                    "rpc": rpc,
                    "error_class": str(wire.error_class),
                    "error": wire.message,
                    "duration_ms": _since(started),
                },
            )
            await context.abort(
                wire.status_code, wire.message, trailing_metadata=error_trailer(wire)
            )

    def _current_generation(self) -> Generation:
        if self.generation is None:
            raise RetryableError("The plugin is still starting; try again shortly", retry_after=1.0)
        return self.generation


def _parse_params(params_json: str) -> dict[str, Any]:
    if not params_json.strip():
        return {}
    try:
        params = json.loads(params_json)
    except json.JSONDecodeError as error:
        raise InvalidInput(f"params_json: not valid JSON ({error.msg} at {error.pos})") from None
    if not isinstance(params, Mapping):
        raise InvalidInput(f"params_json: must be a JSON object, not {type(params).__name__}")
    return dict(params)


def _since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _attachment(wire: plugin_pb2.Attachment, field: str) -> Attachment:
    """An attachment as the plugin sees it; ``InvalidInput`` naming ``field`` if incomplete."""
    if not wire.filename.strip():
        raise InvalidInput(f"{field}.filename: must not be empty")
    if "/" not in wire.content_type:
        raise InvalidInput(f"{field}.content_type: {wire.content_type!r} is not a MIME type")
    source = wire.WhichOneof("source")
    if source == "url":
        if not wire.url.startswith(("https://", "http://")):
            raise InvalidInput(f"{field}.url: must be an http(s) URL")
        return Attachment(wire.filename, wire.content_type, url=wire.url)
    if source != "data" or not wire.data:
        raise InvalidInput(f"{field}: needs its data or a url")
    return Attachment(wire.filename, wire.content_type, data=wire.data)


def _template(wire: plugin_pb2.Template) -> Template:
    if not wire.id.strip():
        raise InvalidInput("template.id: must not be empty")
    try:
        variables = json.loads(wire.variables_json or "{}")
    except ValueError:
        raise InvalidInput("template.variables: not JSON") from None
    if not isinstance(variables, dict):
        raise InvalidInput("template.variables: must be a JSON object")
    return Template(wire.id, variables, wire.language)


def _addresses(values: Iterable[str], field: str) -> tuple[str, ...]:
    addresses = tuple(value.strip() for value in values)
    if not all(addresses):
        raise InvalidInput(f"{field}: an address is empty")
    return addresses


def _check_caller_strings(request: plugin_pb2.SendRequest) -> None:
    """Refuse what a plugin would put into a provider request's headers unescaped.

    An idempotency key or metadata with control characters is the caller's
    mistake (INVALID_INPUT), not a provider outage: left to the plugin it
    would fail while building the request, and look like one.
    """
    key = request.idempotency_key
    if key and not re.fullmatch(constants.IDEMPOTENCY_KEY_PATTERN, key):
        raise InvalidInput(
            "idempotency_key: must be 1-255 printable ASCII characters "
            "without spaces, quotes or backslashes"
        )
    for name, value in request.metadata.items():
        if not re.fullmatch(constants.METADATA_KEY_PATTERN, name):
            raise InvalidInput(f"metadata: the key {name[:40]!r} is not a metadata key")
        if re.search(constants.METADATA_VALUE_FORBIDDEN, value):
            raise InvalidInput(f"metadata.{name}: must not hold control characters")
