"""Building blocks for plugins that deliver through a provider's API.

The plugins in ``plugin-images/`` use these so that every provider fails the
same way and every phone number, email address and header is checked the same
way. A plugin that talks HTTP looks like this::

    from switchboard.sdk import providers

    async def initialize(self) -> None:
        self.http = providers.http_client(base_url=..., timeout=self.config.get("timeout_seconds"))

    async def send_message(self, message: Message) -> SendResult:
        to = providers.normalize_phone_number(message.recipient, default_region="US")
        response = await providers.send_request(self.http, "POST", "/messages", provider="Acme",
                                                json={"to": to, "text": message.content})
        providers.raise_for_status(response, provider="Acme")
        return SendResult(providers.response_json(response, provider="Acme")["id"])

How an HTTP failure is classified (``error_for_status``, ``error_for_transport``),
for every provider unless its plugin documents an exception::

    failure                                  raised                  the router
    request cannot be built (header not      InvalidInput            gives up: nothing was
    ASCII or with a line break, bad URL)                             sent, the message is wrong
    400, 422                                 InvalidInput*           gives up
    401, 403                                 Unauthenticated         flags the credentials
    404, 405, 3xx                            ConfigError             fails over, reports the
                                                                     plugin's URL as broken
    408, 425, 429, 5xx                       RetryableError          fails over, honouring the
                                                                     provider's Retry-After
    any other 4xx                            PermanentError          gives up
    connection refused, connect timeout,     RetryableError          fails over: nothing
    no free connection, TLS handshake                                reached the provider
    read or write timeout, connection        OutcomeUnknown          the channel's delivery
    broken or closed before the answer                               policy decides on a resend

    * or the ``client_error`` class the plugin passes (``PermanentError``)

Messages carry the provider's own words (``"Twilio answered HTTP 400: The 'To'
number ... (code 21211)"``) and never a URL, a credential or the message body.
A failure after the request left is OutcomeUnknown, not RETRYABLE: the provider
may have accepted the message before it went quiet, and sending it through
another plugin may deliver it twice; the channel's delivery policy decides
(at-least-once resends and flags a possible duplicate, at-most-once stops).

Delivery receipts (``MessagingPlugin.handle_receipt``): a plugin checks its
provider's callback with its own secret before it believes a word of it:
``hmac_digest``/``hmac_hex`` and ``signatures_match`` (constant time) for HMAC schemes,
``check_timestamp`` where the signature covers a timestamp (a replay after
``DEFAULT_RECEIPT_TOLERANCE_SECONDS`` is refused), ``load_ecdsa_public_key``
and ``ecdsa_signature_valid`` for public-key schemes, ``verify_webhook`` for
Switchboard's own scheme (``sign_webhook``). Each failure is ``Unauthenticated``
and its message never holds a secret or the signature.

Phone numbers need ``phonenumbers``, email addresses ``email-validator`` and
ECDSA keys ``cryptography`` (the ``plugins`` extra, or the plugin image's
``requirements.txt``); each is imported on first use so that a plugin which
needs none of them doesn't install them.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import functools
import hmac
import json
import re
import ssl
import time
import urllib.request
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any, Final

import aiohttp
import httpx
import httpx_aiohttp
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from switchboard import __version__
from switchboard.sdk._errors import (
    ConfigError,
    InvalidInput,
    OutcomeUnknown,
    PermanentError,
    PluginError,
    RetryableError,
    Unauthenticated,
)
from switchboard.sdk._messages import Message, SendResult, required_capabilities

__all__ = [
    "DEFAULT_RECEIPT_TOLERANCE_SECONDS",
    "DEFAULT_TIMEOUT_SECONDS",
    "RESERVED_EMAIL_HEADERS",
    "USER_AGENT",
    "EmailAddress",
    "EmailBodies",
    "check_timestamp",
    "ecdsa_signature_valid",
    "email_bodies",
    "error_for_response",
    "error_for_status",
    "error_for_transport",
    "generated_message_id",
    "hmac_digest",
    "hmac_hex",
    "html_to_text",
    "http_client",
    "load_ecdsa_public_key",
    "metadata_headers",
    "metadata_json",
    "normalize_phone_number",
    "parse_email_address",
    "parse_email_addresses",
    "parse_retry_after",
    "raise_for_status",
    "require_capabilities",
    "response_detail",
    "response_json",
    "result_of_parts",
    "send_request",
    "sign_webhook",
    "signatures_match",
    "validate_region",
    "verify_webhook",
]

#: Seconds a provider may take to answer one request (each of connect, write,
#: read); the connect phase is capped at 5 s because a slow TCP handshake means
#: the provider is unreachable, and failing over early is the point.
DEFAULT_TIMEOUT_SECONDS: Final = 10.0
_CONNECT_TIMEOUT_CAP: Final = 5.0
#: Requests one client runs at once (connections it opens).
_MAX_CONNECTIONS: Final = 512
#: Sent with every request, so a provider's support can tell what called them.
USER_AGENT: Final = f"switchboard-plugin/{__version__}"
#: A provider's error text is cut to this many characters in error messages.
_MAX_DETAIL: Final = 300
#: Retry-After values above this (one day) are taken as this.
_MAX_RETRY_AFTER: Final = 86_400.0
_RETRYABLE_STATUSES: Final = frozenset({408, 425, 429})
#: How far (seconds, either way) the timestamp a signed callback carries may be
#: from now: a replay of a recorded callback later than this is refused.
DEFAULT_RECEIPT_TOLERANCE_SECONDS: Final = 300.0


def http_client(
    *,
    base_url: str = "",
    timeout: float | None = None,
    headers: Mapping[str, str] | None = None,
    auth: httpx.Auth | tuple[str, str] | None = None,
    verify: bool | ssl.SSLContext = True,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for one provider: bounded timeouts, no redirects.

    ``timeout`` (seconds, default ``DEFAULT_TIMEOUT_SECONDS``) bounds each
    phase of a request; connecting gets at most 5 s. Redirects are not
    followed: a provider API that redirects is misconfigured, and following
    one would resend credentials elsewhere. ``verify`` is ``True`` (system
    CAs), ``False`` or an ``ssl.SSLContext`` (e.g. trusting a private CA).
    ``transport`` replaces the network (tests may pass an
    ``httpx.MockTransport``). Close the client in the plugin's ``cleanup``.

    The requests travel on aiohttp's connection pool (httpx-aiohttp's
    transport under httpx's API): httpx's own pool slows down sharply with
    hundreds of requests in flight (encode/httpx#3215; 37 to 45 requests per
    second against a provider answering in 200 ms, where aiohttp's does 860 to
    960 on the same machine, docs/performance.md). Up to 512 requests run at
    once: several routers' delivery workers share one plugin process. Proxy
    variables (``HTTPS_PROXY``, ``NO_PROXY``) are honoured as httpx would.
    Requests are traced when tracing is on (``switchboard.telemetry``).
    """
    seconds = DEFAULT_TIMEOUT_SECONDS if timeout is None else float(timeout)
    if transport is None:
        transport = httpx_aiohttp.AiohttpTransport(
            client=functools.partial(_aiohttp_session, httpx.create_ssl_context(verify=verify)),
        )
    client = httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(seconds, connect=min(seconds, _CONNECT_TIMEOUT_CAP)),
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        auth=auth,
        follow_redirects=False,
        transport=transport,
    )
    # The global httpx instrumentation wraps httpx's own transport class only.
    HTTPXClientInstrumentor.instrument_client(client)
    return client


def _aiohttp_session(ssl_context: ssl.SSLContext) -> aiohttp.ClientSession:
    """The transport's session: created on the first request, inside the event loop.

    It reads the proxy variables only when the environment names a proxy:
    with ``trust_env`` aiohttp looks them (and a netrc file) up again for every
    request, in a thread, a quarter of a plugin's CPU per message when
    measured (bench/ledger.py, py-spy)."""
    connector = aiohttp.TCPConnector(limit=_MAX_CONNECTIONS, ssl=ssl_context)
    return aiohttp.ClientSession(connector=connector, trust_env=bool(urllib.request.getproxies()))


async def send_request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    provider: str,
    json: Any = None,
    data: Mapping[str, Any] | None = None,
    content: bytes | None = None,
    files: Any = None,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """Send one request; a failure to get an answer becomes a typed ``PluginError``.

    Returns the response whatever its status (check it with
    ``raise_for_status``). A request that cannot be built from the message (a
    header value that is not ASCII or holds a line break, an invalid URL,
    a JSON body with NaN) raises ``InvalidInput`` before anything is sent. A
    failure before the request reached the provider (refused connection,
    connect timeout) raises ``RetryableError``; one after it left (read or
    write timeout, broken connection) ``OutcomeUnknown``; an unusable URL (bad
    scheme, no host) ``ConfigError`` (``error_for_transport``). ``data``
    values may be lists (repeated form fields); ``files`` makes the body
    ``multipart/form-data`` as httpx takes it. No message contains the URL,
    which may hold a token, or a header's value.
    """
    if (problem := _unsendable_header(headers or {})) is not None:
        raise InvalidInput(f"The request to {provider} cannot be sent: {problem}")
    try:
        request = client.build_request(
            method,
            url,
            json=json,
            data=data,
            content=content,
            files=files,
            params=params,
            headers=headers,
        )
    except (ValueError, httpx.InvalidURL) as error:
        # Nothing left yet, and what failed is this message's data (a URL holding
        # its recipient, a body from its metadata), not the provider: RETRYABLE
        # would try every plugin and count against this one's health for it.
        raise InvalidInput(
            f"The request to {provider} cannot be built: "
            f"{type(error).__name__}: {_exception_text(error)}"
        ) from None
    try:
        return await client.send(request)
    except (httpx.TransportError, httpx.InvalidURL) as error:
        raise error_for_transport(error, provider=provider) from None


#: Control characters a header may not hold (RFC 9110 section 5.5; a tab may).
_HEADER_CONTROL_CHARACTER: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _unsendable_header(headers: Mapping[str, str]) -> str | None:
    """What makes one of ``headers`` unsendable, naming the header but not its value
    (a token, say); None when all can be sent.

    httpx encodes header values as ASCII and the transport refuses line breaks
    (header injection) only once a connection is open, so both are caught here.
    """
    for name, value in headers.items():
        if not (name.isascii() and value.isascii()):
            return f"header {name!r}: HTTP headers hold ASCII characters only"
        if _HEADER_CONTROL_CHARACTER.search(name + value):
            return f"header {name!r}: a line break or control character is not allowed"
    return None


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
        return ConfigError(f"{provider} URL is not usable: {_exception_text(error)}")
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
        f"broke the connection before answering ({type(error).__name__}: {_exception_text(error)})"
    )


def _unreachable_in_time(provider: str, phase: str) -> RetryableError:
    return RetryableError(f"Could not reach {provider} in time ({phase})")


def _unreachable(provider: str, error: Exception, *, kind: str = "") -> RetryableError:
    return RetryableError(
        f"Could not reach {provider}: {kind or type(error).__name__}: {_exception_text(error)}"
    )


def error_for_status(
    status: int,
    *,
    provider: str,
    detail: str = "",
    retry_after: float | None = None,
    client_error: type[PluginError] = InvalidInput,
) -> PluginError:
    """The ``PluginError`` for HTTP ``status`` (see the module docstring for the table).

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
    return _shorten(" ".join(str(text or "").split()))


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


def require_capabilities(
    message: Message, capabilities: Collection[str] | None, *, provider: str
) -> None:
    """``RetryableError`` if ``message`` has a part the plugin does not declare a capability for.

    The router sends a message only to plugins whose capabilities cover its
    attachments, template and copies; a plugin that gets one anyway (an older
    router) must not drop the part silently, and another plugin may carry it,
    so the router should move on. Call it first in ``send_message`` with the
    class's ``capabilities``.
    """
    missing = sorted(
        required_capabilities(message.attachments, message.template, message.cc, message.bcc)
        - set(capabilities or ())
    )
    if missing:
        raise RetryableError(
            f"This {provider} plugin does not declare {', '.join(missing)}: the message "
            "needs a plugin that does"
        )


def result_of_parts(
    parts: Sequence[str | PluginError],
    *,
    total: int | None = None,
    details: Mapping[str, str] | None = None,
) -> SendResult:
    """The outcome of a message the provider takes in parts, each accepted or refused on its own.

    A long SMS answered per part, a long chat text sent as several messages, one
    message per attachment: ``parts`` holds, in order, each part's provider id
    or the ``PluginError`` it failed with; ``total`` (default ``len(parts)``)
    counts the parts that were to be sent, so parts never tried count as not
    delivered.

    * No part accepted: the first part's error is raised; nothing reached the
      recipient, so the message may go elsewhere as a whole.
    * Some part accepted: a success, because sending the message again would
      repeat what the recipient already has. The result's id is the first
      accepted part's; details hold ``parts`` (``"2/3"``), ``partial: "true"``,
      ``message_ids`` and ``failed``: each failed part with its error class and
      the provider's words (``"part 3: RETRYABLE: ... status 1: Throttled"``).
    * Every part accepted: details ``parts`` (``"3/3"``) and ``message_ids``.

    The other accepted parts' ids are the result's ``part_ids``, so that a
    delivery receipt about any part finds the message. ``details`` are added
    to the result's details.
    """
    count = len(parts) if total is None else total
    accepted = [part for part in parts if isinstance(part, str)]
    refused = [(index, part) for index, part in enumerate(parts, 1) if not isinstance(part, str)]
    if not accepted:
        if refused:
            raise refused[0][1]
        raise ValueError("result_of_parts needs at least one part")
    summary = {
        **(details or {}),
        "parts": f"{len(accepted)}/{count}",
        "message_ids": ",".join(accepted),
    }
    if len(accepted) < count:
        failed = [f"part {index}: {error.error_class}: {error.message}" for index, error in refused]
        if len(parts) < count:
            untried = (
                f"{len(parts) + 1}" if len(parts) + 1 == count else f"{len(parts) + 1}-{count}"
            )
            failed.append(f"part {untried}: not sent")
        summary |= {"partial": "true", "failed": "; ".join(failed)}
    return SendResult(accepted[0], details=summary, part_ids=tuple(accepted[1:]))


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


def validate_region(region: str, *, field: str = "config.default_region") -> str:
    """``region`` upper-cased if it is a region ``phonenumbers`` knows (``US``, ``GB``, ...).

    Raises ``ConfigError`` naming ``field`` otherwise. Call it from ``validate_config``.
    """
    import phonenumbers  # only plugins that handle phone numbers need it

    upper = region.strip().upper()
    if upper not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(
            f"{field}: {region!r} is not an ISO 3166-1 alpha-2 region code such as 'US' or 'GB'"
        )
    return upper


def normalize_phone_number(
    number: str,
    *,
    default_region: str | None = None,
    strict: bool = False,
    field: str = "recipient",
) -> str:
    """``number`` in E.164 (``+14155552671``), or ``InvalidInput`` naming it.

    Spaces, dashes, dots and parentheses are allowed. A number without a
    leading ``+`` is read as a national number of ``default_region`` (e.g.
    ``"(415) 555-2671"`` with ``"US"``); without a region it is rejected.
    By default a number passes when its length is possible for its country;
    ``strict=True`` also requires it to be in an assigned range
    (``phonenumbers.is_valid_number``), which rejects made-up numbers such as
    +1 555 123 4567 but lags behind newly assigned ranges.
    """
    import phonenumbers  # only plugins that handle phone numbers need it

    text = number.strip()
    where = f" for region {default_region}" if default_region and not text.startswith("+") else ""
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as error:
        if error.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise InvalidInput(
                f"{field}: {number!r} has no valid country code; write it as "
                "+<country code><number> (or configure default_region)"
            ) from None
        reason = re.sub(r"^\(\d+\)\s*", "", _one_line(str(error))).rstrip(".")
        raise InvalidInput(f"{field}: {number!r} is not a phone number: {reason}") from None
    why = _impossible_number_reason(parsed)
    if why is None and strict and not phonenumbers.is_valid_number(parsed):
        region = phonenumbers.region_code_for_country_code(parsed.country_code or 0)
        why = f"no number range assigned in {region} starts like this (an unknown area code)"
    if why is not None:
        raise InvalidInput(f"{field}: {number!r} is not a valid phone number{where}: {why}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _impossible_number_reason(parsed: Any) -> str | None:
    """Why a parsed number cannot exist (too short, too long...), or None if its length fits."""
    import phonenumbers

    reason = phonenumbers.is_possible_number_with_reason(parsed)
    result = phonenumbers.ValidationResult
    country = f"+{parsed.country_code}"
    return {
        result.IS_POSSIBLE: None,
        result.IS_POSSIBLE_LOCAL_ONLY: None,
        result.TOO_SHORT: f"too short for a {country} number",
        result.TOO_LONG: f"too long for a {country} number",
        result.INVALID_LENGTH: f"no {country} number has this many digits",
        result.INVALID_COUNTRY_CODE: f"{country} is not a country code",
    }.get(reason, "not a possible number")


@dataclass(frozen=True, slots=True)
class EmailAddress:
    """One mailbox: the normalized address and an optional display name."""

    address: str
    name: str = ""

    def formatted(self) -> str:
        """``"Name <address>"`` quoted as RFC 5322 needs, or the bare address."""
        return email.utils.formataddr((self.name, self.address)) if self.name else self.address


def parse_email_addresses(
    value: str,
    *,
    field: str = "recipient",
    error: type[PluginError] = InvalidInput,
) -> list[EmailAddress]:
    """The mailboxes in ``value``, a comma-separated list of ``addr`` or ``Name <addr>``.

    Each address is checked for syntax only with ``email-validator`` (no DNS
    lookups: ``check_deliverability=False``) and normalized (the domain
    lower-cased and IDNA-decoded). Raises ``error`` (``InvalidInput`` by
    default; pass ``ConfigError`` for configured addresses) naming ``field``
    and the offending address.
    """
    import email_validator  # only email plugins need it

    if "\r" in value or "\n" in value:
        raise error(f"{field}: line breaks are not allowed in an address")
    if not value.strip(" \t,"):
        raise error(f"{field}: no email address given")
    pairs = email.utils.getaddresses([value])
    # The parser answers ("", "") for what it can't read at all.
    if not pairs or any(not address for _, address in pairs):
        raise error(
            f"{field}: {value.strip()!r} is not an email address "
            "(or a comma-separated list of them)"
        )
    mailboxes: list[EmailAddress] = []
    for name, address in pairs:
        try:
            checked = email_validator.validate_email(address, check_deliverability=False)
        except email_validator.EmailNotValidError as invalid:
            raise error(
                f"{field}: {address or name!r} is not an email address: {invalid}"
            ) from None
        mailboxes.append(EmailAddress(checked.normalized, name.strip()))
    return mailboxes


def parse_email_address(
    value: str,
    *,
    field: str,
    error: type[PluginError] = InvalidInput,
) -> EmailAddress:
    """Exactly one mailbox (``addr`` or ``Name <addr>``), as ``parse_email_addresses`` checks it.

    For senders and Reply-To; raises ``error`` naming ``field`` for a list.
    """
    addresses = parse_email_addresses(value, field=field, error=error)
    if len(addresses) != 1:
        raise error(f"{field}: give one address, not {len(addresses)}")
    return addresses[0]


@dataclass(frozen=True, slots=True)
class EmailBodies:
    """The plain-text body every email gets, and the HTML alternative when there is one."""

    text: str
    html: str | None = None


def email_bodies(message: Message) -> EmailBodies:
    """The text and HTML bodies of an email ``message``.

    * ``content_type`` ``text/html``: ``content`` is the HTML; the text part
      is ``metadata["text"]`` or, failing that, ``html_to_text(content)``.
    * anything else: ``content`` is the text; ``metadata["html"]``, when
      present, is the HTML alternative.

    So every HTML email is ``multipart/alternative`` with a readable text part.
    """
    if message.content_type.split(";")[0].strip().lower() == "text/html":
        text = message.metadata.get("text") or html_to_text(message.content)
        return EmailBodies(text=text, html=message.content)
    return EmailBodies(text=message.content, html=message.metadata.get("html") or None)


def html_to_text(html: str) -> str:
    """A readable plain-text rendering of ``html``: block elements on their own lines,
    links as ``text (href)``, scripts and styles dropped, entities decoded."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return parser.text()


#: Headers an email plugin sets itself; ``metadata_headers`` refuses them.
RESERVED_EMAIL_HEADERS: Final = frozenset(
    {
        "bcc",
        "cc",
        "content-disposition",
        "content-transfer-encoding",
        "content-type",
        "date",
        "dkim-signature",
        "from",
        "message-id",
        "mime-version",
        "received",
        "reply-to",
        "return-path",
        "sender",
        "subject",
        "to",
    }
)
#: RFC 5322 field names: printable US-ASCII except the colon.
_HEADER_NAME: Final = re.compile(r"^[!-9;-~]+$")


def metadata_headers(
    metadata: Mapping[str, str],
    *,
    prefix: str = "header.",
    reserved: frozenset[str] = RESERVED_EMAIL_HEADERS,
) -> dict[str, str]:
    """Custom headers from metadata keys starting with ``prefix`` (``header.X-Tag`` → ``X-Tag``).

    Raises ``InvalidInput`` naming the metadata key when the name isn't a
    valid header name, is one the plugin sets itself (``reserved``,
    case-insensitive: From, To, Subject, Message-ID, Content-Type, ...), or the
    value holds a line break (header injection).
    """
    headers: dict[str, str] = {}
    for key, value in metadata.items():
        if not key.startswith(prefix):
            continue
        name = key.removeprefix(prefix)
        if not _HEADER_NAME.match(name):
            raise InvalidInput(f"metadata.{key}: {name!r} is not a valid header name")
        if name.lower() in reserved:
            raise InvalidInput(
                f"metadata.{key}: {name} is set by the plugin and cannot be overridden"
            )
        if "\r" in value or "\n" in value:
            raise InvalidInput(f"metadata.{key}: line breaks are not allowed in a header value")
        headers[name] = value
    return headers


def metadata_json(metadata: Mapping[str, str], key: str) -> Any:
    """The JSON value in ``metadata[key]``; ``None`` when the key is absent or empty.

    Metadata values are strings on the wire, so structured extras (Slack
    blocks, an Adaptive Card, template components) travel as JSON text.
    Raises ``InvalidInput`` naming ``metadata.<key>`` when it isn't JSON.
    """
    raw = metadata.get(key)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise InvalidInput(
            f"metadata.{key}: not valid JSON ({error.msg} at position {error.pos})"
        ) from None


def sign_webhook(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}." + body`` keyed with ``secret``.

    The scheme of the generic-webhook plugin (docs/plugins/generic-webhook.md);
    a receiver recomputes it over the raw body it received and compares with
    ``hmac.compare_digest``.
    """
    return hmac_hex(secret, f"{timestamp}.".encode() + body)


def verify_webhook(
    secret: str | bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance_seconds: float = DEFAULT_RECEIPT_TOLERANCE_SECONDS,
    provider: str = "The caller",
    now: float | None = None,
) -> None:
    """Raise ``Unauthenticated`` unless ``signature`` is ``sign_webhook(secret, timestamp, body)``
    (bare hex or ``sha256=<hex>``) and ``timestamp`` is fresh (``check_timestamp``).

    The receiving side of the generic-webhook scheme: a receipt posted back to
    Switchboard is signed the way Switchboard signs what it posts.
    """
    check_timestamp(timestamp, tolerance_seconds=tolerance_seconds, provider=provider, now=now)
    expected = sign_webhook(secret, timestamp.strip(), body)
    if not signatures_match(expected, signature.strip().removeprefix("sha256=")):
        raise Unauthenticated(
            f"{provider}'s signature does not match the signing secret: the callback was "
            "signed with another secret or altered on the way"
        )


def hmac_digest(key: str | bytes, data: bytes, algorithm: str = "sha256") -> bytes:
    """The HMAC of ``data`` keyed with ``key`` (a ``str`` is UTF-8 encoded), as bytes.

    ``algorithm`` is a ``hashlib`` name: ``"sha256"`` (default), ``"sha1"``,
    ``"sha512"``, ``"md5"``. Providers that send it base64-encoded (Twilio)
    encode these bytes; ``hmac_hex`` is the hex form.
    """
    secret = key.encode() if isinstance(key, str) else key
    return hmac.new(secret, data, algorithm).digest()


def hmac_hex(key: str | bytes, data: bytes, algorithm: str = "sha256") -> str:
    """Lower-case hex HMAC of ``data`` keyed with ``key`` (``hmac_digest`` in hex)."""
    return hmac_digest(key, data, algorithm).hex()


def signatures_match(expected: str, received: str) -> bool:
    """Whether two signatures are equal, compared in constant time (``hmac.compare_digest``).

    Compare what the callback carries with what was computed from the plugin's
    own secret; an early exit on the first differing character would tell a
    forger how much of a guess was right.
    """
    return hmac.compare_digest(expected.encode(), received.encode())


def check_timestamp(
    value: str | int | None,
    *,
    tolerance_seconds: float = DEFAULT_RECEIPT_TOLERANCE_SECONDS,
    provider: str = "The caller",
    now: float | None = None,
) -> int:
    """The Unix time in ``value``, if it is at most ``tolerance_seconds`` from now.

    For signed callbacks whose signature covers a timestamp: an old callback
    replayed by someone who recorded it (or one stamped far ahead) is refused
    with ``Unauthenticated``, as is a missing or non-numeric timestamp.
    """
    try:
        stamp = int(str(value).strip()) if value is not None else None
    except ValueError:
        stamp = None
    if stamp is None:
        raise Unauthenticated(f"{provider}'s callback has no usable signature timestamp")
    age = (time.time() if now is None else now) - stamp
    if abs(age) > tolerance_seconds:
        when = f"{int(age)} s old" if age > 0 else f"{int(-age)} s in the future"
        raise Unauthenticated(
            f"{provider}'s callback is signed with a timestamp {when}; at most "
            f"{tolerance_seconds:g} s is accepted (a replayed or delayed callback)"
        )
    return stamp


def load_ecdsa_public_key(text: str, *, field: str) -> Any:
    """The elliptic-curve public key in ``text``, or ``ConfigError`` naming ``field``.

    ``text`` is a PEM ``PUBLIC KEY`` block or its base64 body alone (a DER
    SubjectPublicKeyInfo, as SendGrid shows its Event Webhook verification
    key). Needs ``cryptography`` (imported on first use).
    """
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import (
        load_der_public_key,
        load_pem_public_key,
    )

    stripped = text.strip()
    try:
        if stripped.startswith("-----BEGIN"):
            key = load_pem_public_key(stripped.encode())
        else:
            key = load_der_public_key(base64.b64decode("".join(stripped.split()), validate=True))
    except (ValueError, TypeError, binascii.Error):
        raise ConfigError(f"{field}: not a PEM or base64 DER public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError(f"{field}: not an elliptic-curve (ECDSA) public key")
    return key


def ecdsa_signature_valid(public_key: Any, data: bytes, signature: str) -> bool:
    """Whether ``signature`` (base64 of a DER ECDSA signature) signs SHA-256 of ``data``.

    ``public_key`` comes from ``load_ecdsa_public_key``. A signature that is
    not base64 or not DER is simply not valid.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        public_key.verify(
            base64.b64decode(signature.strip(), validate=True),
            data,
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def generated_message_id(prefix: str) -> str:
    """A unique id for providers that return none: ``f"{prefix}-{uuid4 hex}"``."""
    return f"{prefix}-{uuid.uuid4().hex}"


def _explanation(body: Any) -> str:
    if isinstance(body, str):
        return body
    if not isinstance(body, Mapping):
        return json.dumps(body)[:_MAX_DETAIL]
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
    return json.dumps(body)[:_MAX_DETAIL]


def _timeout_phase(error: httpx.TimeoutException) -> str:
    return {
        httpx.ConnectTimeout: "connecting",
        httpx.ReadTimeout: "waiting for the response",
        httpx.WriteTimeout: "sending the request",
        httpx.PoolTimeout: "waiting for a free connection",
    }.get(type(error), "timeout")


def _exception_text(error: Exception) -> str:
    return _shorten(_one_line(str(error))) or "no details"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


class _TextExtractor(HTMLParser):
    _BLOCKS: Final = frozenset(
        {"address", "blockquote", "div", "dl", "dt", "dd", "fieldset", "figure", "footer",
         "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav",
         "ol", "p", "pre", "section", "table", "tr", "ul"}
    )  # fmt: skip
    _HIDDEN: Final = frozenset({"head", "script", "style", "template", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._parts: list[str] = []
        self._hidden_depth = 0
        #: The href of each open <a> and where its text starts in ``_parts``.
        self._links: list[tuple[str | None, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden_depth += 1
        elif tag == "br":
            self._parts.append("\n")
        elif tag in self._BLOCKS:
            self._parts.append("\n\n" if tag in {"p", "table", "ul", "ol"} else "\n")
            if tag == "li":
                self._parts.append("- ")
        elif tag == "a":
            self._links.append((dict(attrs).get("href"), len(self._parts)))
        elif tag in {"td", "th"}:
            self._parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden_depth = max(0, self._hidden_depth - 1)
        elif tag in self._BLOCKS and tag != "li":
            self._parts.append("\n")
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            label = "".join(self._parts[start:]).strip()
            if href and href != label and not href.startswith(("#", "javascript:")):
                self._parts.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if not self._hidden_depth:
            self._parts.append(re.sub(r"\s+", " ", data))

    def text(self) -> str:
        lines = [line.strip() for line in "".join(self._parts).split("\n")]
        collapsed = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
        return collapsed.strip()
