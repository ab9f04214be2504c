"""Provider stand-ins on 127.0.0.1: a real HTTP server per test that records every request.

``HttpFake`` is an aiohttp server in the test's event loop. Each test module
gives it a handler playing one provider: it checks what the provider's
documentation requires (path, auth scheme, content type, fields) and answers
with the provider's documented bodies. ``fail_next`` queues canned answers
(429 with Retry-After, 500, ...) that take precedence over the handler, and
``Reply.delay`` holds an answer back to provoke a client timeout.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import inspect
import json
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import CIMultiDict


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        """The ``application/x-www-form-urlencoded`` body (each field once)."""
        pairs = parse_qsl(self.body.decode(), keep_blank_values=True, strict_parsing=True)
        assert len(pairs) == len(dict(pairs)), f"repeated form fields: {pairs}"
        return dict(pairs)

    def multipart(self) -> dict[str, tuple[str, Any]]:
        """The ``multipart/form-data`` body: field name -> (file name or "", value),
        the value bytes for a file and text for any other field."""
        parsed = email.message_from_bytes(
            b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + self.body,
            policy=email.policy.HTTP,
        )
        fields: dict[str, tuple[str, Any]] = {}
        for part in parsed.iter_parts():
            name = part.get_param("name", header="content-disposition")
            filename = part.get_filename() or ""
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            fields[str(name)] = (filename, payload if filename else payload.decode())
        return fields

    def form_lists(self) -> dict[str, list[str]]:
        """The form body with repeated fields (Twilio's ``MediaUrl``) as lists, in order."""
        fields: dict[str, list[str]] = {}
        for name, value in parse_qsl(self.body.decode(), keep_blank_values=True):
            fields.setdefault(name, []).append(value)
        return fields

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip()

    def basic_auth(self) -> tuple[str, str] | None:
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        if scheme != "Basic":
            return None
        user, _, password = base64.b64decode(value).decode().partition(":")
        return user, password

    def bearer(self) -> str | None:
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        return value if scheme == "Bearer" else None


@dataclass
class Reply:
    """An answer: status, body (bytes, text, or JSON for anything else), headers."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds to wait before answering.
    delay: float = 0.0

    def to_response(self) -> web.Response:
        headers = dict(self.headers)
        if isinstance(self.body, bytes):
            data = self.body
        elif isinstance(self.body, str):
            data = self.body.encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        else:
            data = json.dumps(self.body).encode()
            headers.setdefault("Content-Type", "application/json")
        return web.Response(status=self.status, body=data, headers=headers)


Handler = Callable[[Recorded], Reply | Awaitable[Reply]]


class HttpFake:
    """A provider API on ``127.0.0.1:<free port>``; use ``async with HttpFake(handler)``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Recorded] = []
        self._queued: deque[Reply] = deque()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def last(self) -> Recorded:
        assert self.requests, "the fake received no request"
        return self.requests[-1]

    def fail_next(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order, instead of the handler."""
        self._queued.extend(replies)

    async def __aenter__(self) -> HttpFake:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        recorded = Recorded(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=CIMultiDict(request.headers),
            body=await request.read(),
        )
        self.requests.append(recorded)
        if self._queued:
            reply = self._queued.popleft()
        else:
            outcome = self.handler(recorded)
            reply = await outcome if inspect.isawaitable(outcome) else outcome
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return reply.to_response()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
