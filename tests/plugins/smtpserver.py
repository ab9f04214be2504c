"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps every message it accepts.

Three flavours, as mail servers are deployed: ``starttls`` (STARTTLS offered
and required before MAIL, AUTH only after it), ``tls`` (implicit TLS from the
first byte) and ``plain`` (no TLS, no AUTH). It runs in the test's event loop.
``answer(stage, reply)`` makes it answer AUTH, MAIL or DATA with a reply of
RFC 5321/4954 (``"454 4.7.0 Temporary authentication failure"``), ``refuse``
refuses a recipient, and ``hold_data`` keeps the reply to a message's DATA back.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.plugins.tls import PrivateCA

Mode = Literal["starttls", "tls", "plain"]


@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    #: Whether the connection was encrypted when the message arrived.
    tls: bool
    #: The user that logged in with AUTH, if any.
    login: str | None
    #: The message exactly as it came after DATA.
    raw: bytes


@dataclass
class _Handler:
    users: dict[str, str]
    received: list[Received] = field(default_factory=list)
    #: Recipient address -> the reply to its RCPT TO.
    refused_recipients: dict[str, str] = field(default_factory=dict)
    #: "AUTH", "MAIL" or "DATA" -> the reply the server gives instead of accepting.
    replies: dict[str, str] = field(default_factory=dict)
    #: Seconds the reply to DATA's final dot is held back.
    data_delay: float = 0.0

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if "AUTH" in self.replies:
            return AuthResult(success=False, handled=False, message=self.replies["AUTH"])
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.users.get(auth_data.login.decode()) == auth_data.password.decode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.refused_recipients:
            return self.refused_recipients[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if "MAIL" in self.replies:
            return self.replies["MAIL"]
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if "DATA" in self.replies:
            return self.replies["DATA"]
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        transport = server.transport
        encrypted = session.ssl is not None or (
            transport is not None and transport.get_extra_info("sslcontext") is not None
        )
        auth = session.auth_data
        self.received.append(
            Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                message=message,
                tls=encrypted,
                login=auth.login.decode() if isinstance(auth, LoginPassword) else None,
                raw=envelope.content,
            )
        )
        return "250 2.0.0 Ok: queued as 4BCD1F00"


class SmtpServer:
    """``async with SmtpServer("starttls", ca, users={"ann": "pw"}) as server: server.port``"""

    def __init__(
        self, mode: Mode, ca: PrivateCA | None = None, users: dict[str, str] | None = None
    ):
        if mode != "plain" and ca is None:
            raise ValueError(f"{mode} needs a certificate")
        self.mode = mode
        self._context = ca.server_context() if ca is not None and mode != "plain" else None
        self._handler = _Handler(users or {})
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def received(self) -> list[Received]:
        return self._handler.received

    def refuse(
        self, address: str, reply: str = "550 5.1.1 Recipient address rejected: User unknown"
    ) -> None:
        """Answer RCPT TO for ``address`` with ``reply`` (by default 550, user unknown)."""
        self._handler.refused_recipients[address] = reply

    def answer(self, stage: Literal["AUTH", "MAIL", "DATA"], reply: str) -> None:
        """Answer every AUTH, MAIL FROM or message DATA with ``reply`` instead of accepting."""
        self._handler.replies[stage] = reply

    def hold_data(self, seconds: float) -> None:
        """Wait ``seconds`` before answering a message's DATA (the client times out first)."""
        self._handler.data_delay = seconds

    def _protocol(self) -> SMTP:
        return SMTP(
            self._handler,
            hostname="mail.test",
            loop=asyncio.get_running_loop(),
            authenticator=self._handler.authenticate,
            tls_context=self._context if self.mode == "starttls" else None,
            require_starttls=self.mode == "starttls",
            # Implicit TLS is invisible to aiosmtpd's STARTTLS bookkeeping.
            auth_require_tls=self.mode != "tls",
        )

    async def __aenter__(self) -> SmtpServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol,
            "127.0.0.1",
            0,
            ssl=self._context if self.mode == "tls" else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
