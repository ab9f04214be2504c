"""Typed plugin failures: what authors raise, what travels on the wire, what the router reads.

One exception tree serves both ends of a call. A plugin raises
``RetryableError("rate limited", retry_after=30)``; the SDK turns it into a gRPC
status plus a serialized ``PluginError`` proto in the trailing metadata key
``switchboard-error-bin``; the router hands the ``grpc.RpcError`` to
``errors_from_rpc_error`` and gets ``RetryableError`` back, retry-after intact::

    PluginError                 error class        gRPC status code
    ├── InvalidInput            INVALID_INPUT      INVALID_ARGUMENT
    ├── PermanentError          PERMANENT          FAILED_PRECONDITION
    ├── RetryableError          RETRYABLE          UNAVAILABLE
    ├── Unauthenticated         UNAUTHENTICATED    UNAUTHENTICATED
    ├── ConfigError             CONFIGURATION      UNAVAILABLE
    └── OutcomeUnknown          UNKNOWN_OUTCOME    DEADLINE_EXCEEDED

``ConfigError`` means "this plugin's configuration or provider account is
wrong". Raised while the plugin starts (``validate_config``, ``initialize``),
it stops the process with exit code 2 and the message in the termination log.
Raised during a call (a sender the account does not own, a webhook whose
channel was deleted) it is CONFIGURATION: the request is fine and another
provider may deliver it, so the router moves to the next plugin and reports
the plugin's configuration as broken (its status view; a Warning Event on the
resource in Kubernetes). Any other exception escaping plugin code
is RETRYABLE for the same reason: a bug in one provider's plugin must not stop
the router from trying the next one.

``OutcomeUnknown`` means "the provider may have accepted the message": the
request was sent and no answer came (a timeout after the bytes left, a
connection that broke mid-answer), or the provider itself says delivery may
still happen. Another plugin sending it again may deliver it twice, so the
channel's delivery policy decides (at-least-once resends and flags a possible
duplicate, at-most-once stops). Old routers read it as RETRYABLE.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any, ClassVar, Final

import grpc

from switchboard.plugin.v1 import ERROR_METADATA_KEY, plugin_pb2


class ErrorClass(StrEnum):
    """How a caller should react to a failed plugin call."""

    INVALID_INPUT = "INVALID_INPUT"
    """The request is wrong; no plugin will accept it. Never retried."""
    PERMANENT = "PERMANENT"
    """The provider refused for good. Never retried."""
    RETRYABLE = "RETRYABLE"
    """Try again later or elsewhere; the router fails over."""
    UNAUTHENTICATED = "UNAUTHENTICATED"
    """The provider rejected the plugin's credentials."""
    CONFIGURATION = "CONFIGURATION"
    """The plugin's configuration or account is wrong; the next plugin may deliver."""
    UNKNOWN_OUTCOME = "UNKNOWN_OUTCOME"
    """The provider may have accepted the request; resending may duplicate it."""


_WIRE: Final[dict[ErrorClass, tuple[plugin_pb2.ErrorClass.ValueType, grpc.StatusCode]]] = {
    ErrorClass.INVALID_INPUT: (
        plugin_pb2.ERROR_CLASS_INVALID_INPUT,
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    ErrorClass.PERMANENT: (plugin_pb2.ERROR_CLASS_PERMANENT, grpc.StatusCode.FAILED_PRECONDITION),
    ErrorClass.RETRYABLE: (plugin_pb2.ERROR_CLASS_RETRYABLE, grpc.StatusCode.UNAVAILABLE),
    ErrorClass.UNAUTHENTICATED: (
        plugin_pb2.ERROR_CLASS_UNAUTHENTICATED,
        grpc.StatusCode.UNAUTHENTICATED,
    ),
    ErrorClass.CONFIGURATION: (plugin_pb2.ERROR_CLASS_CONFIGURATION, grpc.StatusCode.UNAVAILABLE),
    ErrorClass.UNKNOWN_OUTCOME: (
        plugin_pb2.ERROR_CLASS_UNKNOWN_OUTCOME,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    ),
}
_FROM_PROTO: Final = {proto: error_class for error_class, (proto, _) in _WIRE.items()}

#: How a status that arrived without the error trailer is classified: a broken
#: connection, a deadline or a proxy never wrote one. Codes not listed are RETRYABLE.
_CLASS_OF_BARE_STATUS: Final = {
    grpc.StatusCode.INVALID_ARGUMENT: ErrorClass.INVALID_INPUT,
    grpc.StatusCode.OUT_OF_RANGE: ErrorClass.INVALID_INPUT,
    grpc.StatusCode.FAILED_PRECONDITION: ErrorClass.PERMANENT,
    grpc.StatusCode.NOT_FOUND: ErrorClass.PERMANENT,
    grpc.StatusCode.ALREADY_EXISTS: ErrorClass.PERMANENT,
    grpc.StatusCode.PERMISSION_DENIED: ErrorClass.PERMANENT,
    grpc.StatusCode.UNIMPLEMENTED: ErrorClass.PERMANENT,
    grpc.StatusCode.UNAUTHENTICATED: ErrorClass.UNAUTHENTICATED,
}


class PluginError(Exception):
    """A plugin call failed in a way the caller can act on; see ``error_class``."""

    error_class: ClassVar[ErrorClass] = ErrorClass.RETRYABLE

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: Seconds until a retry may succeed, when the plugin knows (RETRYABLE).
        self.retry_after = retry_after

    @property
    def status_code(self) -> grpc.StatusCode:
        """The gRPC status code this failure travels as."""
        return _WIRE[self.error_class][1]

    def to_proto(self) -> plugin_pb2.PluginError:
        """The wire form, serialized into the ``switchboard-error-bin`` trailer."""
        return plugin_pb2.PluginError(
            error_class=_WIRE[self.error_class][0],
            message=self.message,
            retry_after_seconds=self.retry_after,
        )

    def __repr__(self) -> str:
        retry = f", retry_after={self.retry_after!r}" if self.retry_after is not None else ""
        return f"{type(self).__name__}({self.message!r}{retry})"


class InvalidInput(PluginError):
    """The request is malformed (schema violation, bad recipient); do not retry."""

    error_class = ErrorClass.INVALID_INPUT


class PermanentError(PluginError):
    """The provider refused this request for good (blocked number, unknown device)."""

    error_class = ErrorClass.PERMANENT


class RetryableError(PluginError):
    """A transient failure (rate limit, outage); ``retry_after`` in seconds if known."""

    error_class = ErrorClass.RETRYABLE


class Unauthenticated(PluginError):
    """The provider rejected the plugin's credentials."""

    error_class = ErrorClass.UNAUTHENTICATED


class ConfigError(PluginError):
    """The plugin's configuration, secrets or provider account are unusable.

    At start-up this stops the plugin with exit code 2 and the message in the
    termination log; during a call it is CONFIGURATION (see the module docstring).
    """

    error_class = ErrorClass.CONFIGURATION


class OutcomeUnknown(PluginError):
    """The provider may have accepted the request although no success came back."""

    error_class = ErrorClass.UNKNOWN_OUTCOME


_EXCEPTION_OF_CLASS: Final[dict[ErrorClass, type[PluginError]]] = {
    ErrorClass.INVALID_INPUT: InvalidInput,
    ErrorClass.PERMANENT: PermanentError,
    ErrorClass.RETRYABLE: RetryableError,
    ErrorClass.UNAUTHENTICATED: Unauthenticated,
    ErrorClass.CONFIGURATION: ConfigError,
    ErrorClass.UNKNOWN_OUTCOME: OutcomeUnknown,
}


def error_trailer(error: PluginError) -> tuple[tuple[str, bytes]]:
    """Trailing metadata carrying ``error`` exactly (class, message, retry-after)."""
    return ((ERROR_METADATA_KEY, error.to_proto().SerializeToString()),)


def errors_from_rpc_error(error: grpc.RpcError) -> PluginError:
    """Classify a failed plugin call: the typed error the plugin raised, or the best guess.

    The router calls this on every ``grpc.RpcError`` / ``grpc.aio.AioRpcError``
    from a plugin. With the ``switchboard-error-bin`` trailer present the class,
    message and retry-after are exactly what the plugin raised. Without it (a
    dead connection, a deadline, a proxy) the status code decides:
    INVALID_ARGUMENT/OUT_OF_RANGE are INVALID_INPUT; FAILED_PRECONDITION,
    NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED and UNIMPLEMENTED are
    PERMANENT; UNAUTHENTICATED is UNAUTHENTICATED; everything else
    (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, ...) is
    RETRYABLE, so the router fails over.
    """
    code = _call_attribute(error, "code")
    details = _call_attribute(error, "details")
    trailer = _find_trailer(_call_attribute(error, "trailing_metadata") or ())
    if trailer is not None:
        wire = plugin_pb2.PluginError.FromString(trailer)
        error_class = _FROM_PROTO.get(wire.error_class, ErrorClass.RETRYABLE)
        retry_after = wire.retry_after_seconds if wire.HasField("retry_after_seconds") else None
        message = wire.message or str(details or "")
    else:
        status = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
        error_class = _CLASS_OF_BARE_STATUS.get(status, ErrorClass.RETRYABLE)
        retry_after = None
        message = f"{status.name}: {details}" if details else status.name
    return exception_for(error_class, message, retry_after)


def exception_for(
    error_class: ErrorClass, message: str, retry_after: float | None = None
) -> PluginError:
    """The canonical exception of ``error_class``, e.g. ``RetryableError`` for RETRYABLE."""
    return _EXCEPTION_OF_CLASS[error_class](message, retry_after=retry_after)


def _call_attribute(error: grpc.RpcError, name: str) -> Any:
    # grpc.RpcError itself has no methods; the errors gRPC raises are also
    # grpc.Call (sync) or AioRpcError (asyncio), which both provide these.
    method = getattr(error, name, None)
    return method() if callable(method) else None


def _find_trailer(metadata: Iterable[tuple[str, str | bytes]]) -> bytes | None:
    for key, value in metadata:
        if key == ERROR_METADATA_KEY and isinstance(value, bytes):
            return value
    return None
