"""The HTTP client of provider plugins: httpx's API on aiohttp's connection pool,
bounded timeouts, and a request checked before it is sent."""

from __future__ import annotations

import functools
import re
import ssl
import urllib.request
from collections.abc import Mapping
from typing import Any, Final

import aiohttp
import httpx
import httpx_aiohttp
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from switchboard import __version__
from switchboard.sdk._errors import InvalidInput
from switchboard.sdk.providers._detail import exception_text
from switchboard.sdk.providers.errors import error_for_transport

#: Seconds a provider may take to answer one request (each of connect, write,
#: read); the connect phase is capped at 5 s because a slow TCP handshake means
#: the provider is unreachable, and failing over early is the point.
DEFAULT_TIMEOUT_SECONDS: Final = 10.0
_CONNECT_TIMEOUT_CAP: Final = 5.0
#: Requests one client runs at once (connections it opens).
_MAX_CONNECTIONS: Final = 512
#: Sent with every request, so a provider's support can tell what called them.
USER_AGENT: Final = f"switchboard-plugin/{__version__}"


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
            f"{type(error).__name__}: {exception_text(error)}"
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
