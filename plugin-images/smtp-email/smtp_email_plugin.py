"""Email through any SMTP server, with aiosmtplib.

Each ``Send`` opens one connection: implicit TLS (``security: tls``, port 465)
or a plain connection upgraded with STARTTLS, which is then required
(``security: starttls``, port 587), or no TLS at all (``security: none``, port
25, no AUTH allowed). The server certificate is verified against the system
CAs or ``ca_bundle``. With ``username`` set the plugin logs in (AUTH), sends
one MIME message and says QUIT.

The message has From, To, Cc, Subject, Date, Message-ID, optional Reply-To
and custom headers (metadata ``header.<Name>``); Bcc recipients are envelope
recipients only. Its body is ``text/plain``, or ``multipart/alternative``
with a ``text/html`` part (``providers.email_bodies``), inside a
``multipart/mixed`` with one part per attachment. The Message-ID is the
provider message id; with an idempotency key it is derived from the key, so a
retried message carries the same Message-ID. Failures are classified by the
SMTP reply code and the stage it came at (``_classify``, RFC 5321 and RFC
4954 §6); a timeout or broken connection once the message's DATA started is
an unknown outcome. ``CheckCredentials`` connects, logs in and quits. See
docs/plugins/smtp-email.md.
"""

from __future__ import annotations

import hashlib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, Final

import aiosmtplib

from switchboard.sdk import (
    ConfigError,
    InvalidInput,
    Message,
    MessagingPlugin,
    OutcomeUnknown,
    PermanentError,
    PluginError,
    RetryableError,
    SendResult,
    Unauthenticated,
    providers,
)

DEFAULT_PORTS: Final = {"starttls": 587, "tls": 465, "none": 25}
DEFAULT_TIMEOUT_SECONDS: Final = 30.0
#: AUTH replies (RFC 4954 section 6) that are not "wrong credentials".
AUTH_REPLY_CLASSES: Final[dict[int, type[PluginError]]] = {
    454: RetryableError,  # 4.7.0 Temporary authentication failure
    432: ConfigError,  # 4.7.12 A password transition is needed
    534: ConfigError,  # 5.7.9 Authentication mechanism is too weak
    538: ConfigError,  # 5.7.11 Encryption required for requested authentication mechanism
}


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client, noting when DATA starts: from then on the server may
    take the message even if its answer never arrives."""

    data_started = False

    async def data(self, message: str | bytes, /, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        self.data_started = True
        return await super().data(message, **kwargs)


class SmtpEmailPlugin(MessagingPlugin):
    """Sends email through an SMTP server."""

    channel_type = "email"
    capabilities = ("send", "html", "reply_to", "custom_headers", "attachments", "cc")

    def validate_config(self) -> None:
        self._security: str = self.config.get("security", "starttls")
        username = self.config.get("username")
        password = self.config.get("password")
        if bool(username) != bool(password):
            raise ConfigError("config: set both username and password, or neither")
        if username and self._security == "none":
            raise ConfigError(
                "config.security: 'none' would send the password in clear text; "
                "use starttls or tls to log in"
            )
        self._sender = _address(self.config["from_address"], "config.from_address", ConfigError)
        reply_to = self.config.get("reply_to")
        self._reply_to = _address(reply_to, "config.reply_to", ConfigError) if reply_to else None

    async def initialize(self) -> None:
        self._tls_context: ssl.SSLContext | None = None
        if self._security != "none":
            ca_bundle = self.config.get("ca_bundle")
            try:
                self._tls_context = ssl.create_default_context(cafile=ca_bundle)
            except (OSError, ssl.SSLError) as error:
                raise ConfigError(
                    f"config.ca_bundle: could not load {ca_bundle}: {error.strerror or error}"
                ) from None
            self._tls_context.minimum_version = ssl.TLSVersion.TLSv1_2

    def _client(self) -> _Client:
        host = self.config["host"]
        return _Client(
            hostname=host,
            port=self.config.get("port", DEFAULT_PORTS[self._security]),
            username=self.config.get("username"),
            password=self.config.get("password"),
            local_hostname=self.config.get("local_hostname"),
            timeout=self.config.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS),
            use_tls=self._security == "tls",
            start_tls=self._security == "starttls",
            tls_context=self._tls_context,
        )

    async def send_message(self, message: Message) -> SendResult:
        providers.require_capabilities(message, self.capabilities, provider="SMTP")
        recipients = providers.parse_email_addresses(message.recipient, field="recipient")
        copies = [
            providers.parse_email_addresses(", ".join(addresses), field=field) if addresses else []
            for addresses, field in ((message.cc, "cc"), (message.bcc, "bcc"))
        ]
        email = self._compose(message, recipients, copies[0])
        envelope = _unique([mailbox.address for mailbox in [*recipients, *copies[0], *copies[1]]])
        smtp = self._client()
        try:
            async with smtp:
                refused, response = await smtp.send_message(
                    email, sender=self._sender.address, recipients=envelope
                )
        except (aiosmtplib.SMTPException, OSError) as error:
            raise _classify(error, self.config["host"], after_data=smtp.data_started) from None
        details = {"smtp_response": response, "recipients": str(len(envelope))}
        if refused:
            # Accepted for the others: sending again would reach them twice.
            details |= {
                "refused_recipients": ", ".join(sorted(refused)),
                "partial": "true",
                "failed": "; ".join(
                    f"{address}: {_reply(reply)}" for address, reply in sorted(refused.items())
                ),
            }
        return SendResult(str(email["Message-ID"]), details=details)

    async def check_credentials(self) -> str:
        where = f"{self.config['host']}:{self.config.get('port', DEFAULT_PORTS[self._security])}"
        try:
            async with self._client():
                pass
        except (aiosmtplib.SMTPException, OSError) as error:
            raise _classify(error, self.config["host"]) from None
        if self.config.get("username"):
            return f"SMTP server {where} accepted the login of {self.config['username']}"
        return f"SMTP server {where} accepted the connection; no login is configured"

    def _compose(
        self,
        message: Message,
        recipients: list[providers.EmailAddress],
        cc: list[providers.EmailAddress],
    ) -> EmailMessage:
        if "\r" in message.subject or "\n" in message.subject:
            raise InvalidInput("subject: line breaks are not allowed")
        reply_to = message.metadata.get("reply_to")
        reply_address = (
            _address(reply_to, "metadata.reply_to", InvalidInput) if reply_to else self._reply_to
        )
        custom = providers.metadata_headers(message.metadata)
        bodies = providers.email_bodies(message)
        email = EmailMessage()
        email["From"] = self._sender.formatted()
        email["To"] = ", ".join(recipient.formatted() for recipient in recipients)
        if cc:
            email["Cc"] = ", ".join(copy.formatted() for copy in cc)
        email["Subject"] = message.subject
        email["Date"] = format_datetime(datetime.now(UTC))
        email["Message-ID"] = self._message_id(message)
        if reply_address is not None:
            email["Reply-To"] = reply_address.formatted()
        for name, value in custom.items():
            try:
                email[name] = value
            except (ValueError, TypeError) as error:
                raise InvalidInput(f"metadata.header.{name}: {error}") from None
        email.set_content(bodies.text)
        if bodies.html is not None:
            email.add_alternative(bodies.html, subtype="html")
        for attachment in message.attachments:
            maintype, subtype, params = _mime_type(attachment.content_type)
            email.add_attachment(
                attachment.data,
                maintype=maintype,
                subtype=subtype,
                params=params,
                filename=attachment.filename,
            )
        return email

    def _message_id(self, message: Message) -> str:
        domain = self._sender.address.rpartition("@")[2]
        if not message.idempotency_key:
            return make_msgid(domain=domain)
        key = f"{message.tenant}\0{message.idempotency_key}".encode()
        return f"<{hashlib.sha256(key).hexdigest()[:32]}.switchboard@{domain}>"


def _address(value: str, field: str, error: type[PluginError]) -> providers.EmailAddress:
    return providers.parse_email_address(value, field=field, error=error)


def _mime_type(content_type: str) -> tuple[str, str, dict[str, str]]:
    """``("text", "plain", {"charset": "utf-8"})`` for ``"text/plain; charset=utf-8"``."""
    header = EmailMessage()
    header["Content-Type"] = content_type
    params = {name: str(value) for name, value in (header.get_params() or [])[1:]}
    return header.get_content_maintype(), header.get_content_subtype(), params


def _unique(addresses: list[str]) -> list[str]:
    """``addresses`` without repeats (case-insensitive), in order: one copy per mailbox."""
    unique: dict[str, str] = {}
    for address in addresses:
        unique.setdefault(address.lower(), address)
    return list(unique.values())


def _classify(error: Exception, host: str, *, after_data: bool = False) -> PluginError:
    """An SMTP failure as the SDK error the router acts on (docs/plugins/smtp-email.md)."""
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        error_class = AUTH_REPLY_CLASSES.get(error.code)
        if error_class is None and error.code < 500:
            error_class = RetryableError
        if error_class is RetryableError:
            return RetryableError(f"SMTP server {host} could not log in for now: {_reply(error)}")
        if error_class is ConfigError:
            return ConfigError(f"SMTP server {host} refused the login setup: {_reply(error)}")
        return Unauthenticated(f"SMTP server {host} rejected the login: {_reply(error)}")
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        refusals = error.recipients
        summary = "; ".join(f"{refused.recipient}: {_reply(refused)}" for refused in refusals)
        if refusals and all(refused.code >= 500 for refused in refusals):
            return PermanentError(f"SMTP server {host} refused every recipient: {summary}")
        return RetryableError(f"SMTP server {host} refused the recipients for now: {summary}")
    if isinstance(error, aiosmtplib.SMTPRecipientRefused):
        if error.code >= 500:
            return PermanentError(f"SMTP server {host} refused {error.recipient}: {_reply(error)}")
        return RetryableError(f"SMTP server {host} deferred {error.recipient}: {_reply(error)}")
    if isinstance(error, aiosmtplib.SMTPSenderRefused):
        if error.code >= 500:
            return ConfigError(f"SMTP server {host} refused the sender: {_reply(error)}")
        return RetryableError(f"SMTP server {host} deferred the sender: {_reply(error)}")
    if isinstance(error, aiosmtplib.SMTPDataError):
        if error.code >= 500:
            return PermanentError(f"SMTP server {host} refused the message: {_reply(error)}")
        return RetryableError(f"SMTP server {host} deferred the message: {_reply(error)}")
    if after_data and isinstance(
        error, aiosmtplib.SMTPTimeoutError | aiosmtplib.SMTPServerDisconnected
    ):
        return OutcomeUnknown(
            f"SMTP server {host} gave no answer to the message's DATA ({error}); "
            "it may or may not have taken the message"
        )
    if isinstance(error, aiosmtplib.SMTPNotSupported) or type(error) is aiosmtplib.SMTPException:
        # A missing extension: no STARTTLS for security starttls, no AUTH for username.
        return ConfigError(f"SMTP server {host} can't do what the config asks: {error}")
    if isinstance(error, aiosmtplib.SMTPTimeoutError):
        return RetryableError(f"SMTP server {host} did not answer in time: {error}")
    if isinstance(error, ssl.SSLError) or isinstance(error.__cause__, ssl.SSLError):
        return ConfigError(
            f"TLS with SMTP server {host} failed ({error}); check config.security and "
            "config.ca_bundle"
        )
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return RetryableError(f"SMTP server {host} answered {_reply(error)}")
    return RetryableError(f"Could not talk to SMTP server {host}: {type(error).__name__}: {error}")


def _reply(reply: aiosmtplib.SMTPResponseException | aiosmtplib.SMTPResponse) -> str:
    return f"{reply.code} {' '.join(reply.message.split())}"
