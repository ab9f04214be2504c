"""Failures as ``PluginError``s: an HTTP status, a response, an exchange that got no answer.

The classification table is in the package docstring (``switchboard.sdk.providers``).
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
import httpx

from switchboard.sdk._errors import (
    ConfigError,
    InvalidInput,
    OutcomeUnknown,
    PermanentError,
    PluginError,
    RetryableError,
    Unauthenticated,
)
from switchboard.sdk.providers._detail import MAX_DETAIL, exception_text, shorten

#: Retry-After values above this (one day) are taken as this.
_MAX_RETRY_AFTER: Final = 86_400.0
_RETRYABLE_STATUSES: Final = frozenset({408, 425, 429})
#: Failures once the request is (partly) on its way: the provider may act on it.
#: Every other transport failure (refused connection, connect or pool timeout,
#: proxy refusal, TLS handshake) happens before the provider saw the request.
_MAYBE_SENT: Final = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)
#: aiohttp's failures before the request left: no connection was made (refused,
#: DNS, TLS handshake, proxy) or none was free in time. The transport maps every
#: other connection failure, a server hanging up mid-answer included, to
#: ``httpx.ConnectTimeout``, so the original error decides.
_AIOHTTP_NOT_SENT: Final = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


def error_for_status(
    status: int,
    *,
    provider: str,
    detail: str = "",
    retry_after: float | None = None,
    client_error: type[PluginError] = InvalidInput,
) -> PluginError:
    """The ``PluginError`` for HTTP ``status`` (the package docstring has the table).

    ``detail`` is the provider's own explanation, quoted in the message;
    ``retry_after`` is kept on retryable errors; ``client_error`` is raised for
    400 and 422 (``InvalidInput`` by default; ``PermanentError`` for providers
    whose 400 means "refused" rather than "malformed").
    """
    explained = f": {detail}" if detail else ""
    message = f"{provider} answered HTTP {status}{explained}"
    if status in (400, 422):
        return client_error(message)
    if status in (401, 403):
        return Unauthenticated(f"{message}; check the plugin's credentials")
    if status in (404, 405) or 300 <= status < 400:
        return ConfigError(f"{message}; check the plugin's URL settings")
    if status in _RETRYABLE_STATUSES or status >= 500:
        return RetryableError(message, retry_after=retry_after)
    if 400 <= status < 500:
        return PermanentError(message)
    return RetryableError(f"{provider} answered with unexpected HTTP status {status}{explained}")


def error_for_response(
    response: httpx.Response,
    *,
    provider: str,
    detail: str | None = None,
    client_error: type[PluginError] = InvalidInput,
) -> PluginError:
    """``error_for_status`` for a response: its status, Retry-After and error text.

    ``detail`` defaults to ``response_detail(response)``.
    """
    return error_for_status(
        response.status_code,
        provider=provider,
        detail=response_detail(response) if detail is None else detail,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        client_error=client_error,
    )


def raise_for_status(
    response: httpx.Response,
    *,
    provider: str,
    detail: str | None = None,
    client_error: type[PluginError] = InvalidInput,
) -> None:
    """Return if ``response`` is 2xx, else raise ``error_for_response(response, ...)``."""
    if not response.is_success:
        raise error_for_response(
            response, provider=provider, detail=detail, client_error=client_error
        )


def error_for_transport(
    error: httpx.TransportError | httpx.InvalidURL, *, provider: str
) -> PluginError:
    """The ``PluginError`` for an exchange that ended without an answer.

    ``RetryableError`` when nothing reached the provider (refused connection,
    connect timeout, no free connection, proxy refusal), ``OutcomeUnknown``
    when the request left and no answer came back (read or write timeout,
    connection broken or closed mid-exchange), ``ConfigError`` for an unusable
    URL. The message names the phase, never the URL.
    """
    if isinstance(error, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return ConfigError(f"{provider} URL is not usable: {exception_text(error)}")
    cause = error.__cause__
    if isinstance(cause, aiohttp.ClientError):
        return _error_for_aiohttp(cause, provider=provider)
    if isinstance(error, _MAYBE_SENT):
        return _maybe_sent(
            provider,
            f"did not answer in time ({_timeout_phase(error)})"
            if isinstance(error, httpx.TimeoutException)
            else _broke(error),
        )
    if isinstance(error, httpx.TimeoutException):
        return _unreachable_in_time(provider, _timeout_phase(error))
    return _unreachable(provider, error)


def _error_for_aiohttp(cause: aiohttp.ClientError, *, provider: str) -> PluginError:
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        return _unreachable_in_time(provider, "connecting")
    if isinstance(cause, _AIOHTTP_NOT_SENT):
        return _unreachable(provider, cause, kind="ConnectError")
    return _maybe_sent(
        provider,
        "did not answer in time (waiting for the response)"
        if isinstance(cause, aiohttp.SocketTimeoutError)
        else _broke(cause),
    )


def _maybe_sent(provider: str, what: str) -> OutcomeUnknown:
    return OutcomeUnknown(f"{provider} {what}; the message may or may not have been accepted")


def _broke(error: Exception) -> str:
    return (
        f"broke the connection before answering ({type(error).__name__}: {exception_text(error)})"
    )


def _unreachable_in_time(provider: str, phase: str) -> RetryableError:
    return RetryableError(f"Could not reach {provider} in time ({phase})")


def _unreachable(provider: str, error: Exception, *, kind: str = "") -> RetryableError:
    return RetryableError(
        f"Could not reach {provider}: {kind or type(error).__name__}: {exception_text(error)}"
    )


def _timeout_phase(error: httpx.TimeoutException) -> str:
    return {
        httpx.ConnectTimeout: "connecting",
        httpx.ReadTimeout: "waiting for the response",
        httpx.WriteTimeout: "sending the request",
        httpx.PoolTimeout: "waiting for a free connection",
    }.get(type(error), "timeout")


def response_detail(response: httpx.Response) -> str:
    """The provider's explanation in an error response, on one line, at most 300 characters.

    JSON bodies are searched for the usual fields (``message``, ``error``,
    ``error_description``, ``description``, ``detail``, ``errors[0].message``,
    ``error.message``); any other body is used as text. Empty if there is none.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    text = _explanation(body) if body is not None else response.text
    return shorten(" ".join(str(text or "").split()))


def response_json(response: httpx.Response, *, provider: str) -> Any:
    """The decoded JSON body; ``RetryableError`` if it isn't JSON.

    A body that isn't JSON rarely comes from the provider itself (a proxy,
    a captive portal, an outage page), so another provider should be tried.
    """
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("Content-Type", "no content type")
        raise RetryableError(
            f"{provider} answered HTTP {response.status_code} with a body that is not JSON ({kind})"
        ) from None


def _explanation(body: Any) -> str:
    if isinstance(body, str):
        return body
    if not isinstance(body, Mapping):
        return json.dumps(body)[:MAX_DETAIL]
    for key in ("message", "error_description", "description", "detail", "error"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, Mapping):
            nested = _explanation(value)
            if nested:
                return nested
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        return "; ".join(_explanation(item) for item in errors[:3])
    return json.dumps(body)[:MAX_DETAIL]


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds (``"120"``) or an HTTP-date.

    A date in the past gives ``0.0``; values above one day are capped at one
    day; a missing or unparsable value gives ``None``.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)
