"""Email through any SMTP server, with aiosmtplib.

Each ``Send`` opens one connection: implicit TLS (``security: tls``, port 465)
or a plain connection upgraded with STARTTLS, which is then required
(``security: starttls``, port 587), or no TLS at all (``security: none``, port
25, no AUTH allowed). The server certificate is verified against the system
CAs or ``ca_bundle``. With ``username`` set the plugin logs in (AUTH), sends
one MIME message and says QUIT.

The message has From, To, Subject, Date, Message-ID, optional Reply-To and
custom headers (metadata ``header.<Name>``); its body is ``text/plain``, or
``multipart/alternative`` with a ``text/html`` part (``providers.email_bodies``).
The Message-ID is the provider message id; with an idempotency key it is
derived from the key, so a retried message carries the same Message-ID.
``CheckCredentials`` connects, logs in and quits. See docs/plugins/smtp-email.md.
"""

from __future__ import annotations

import hashlib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Final

import aiosmtplib

from switchboard.sdk import (
    ConfigError,
    InvalidInput,
    Message,
    MessagingPlugin,
    PermanentError,
    PluginError,
    RetryableError,
    SendResult,
    Unauthenticated,
    providers,
)

DEFAULT_PORTS: Final = {"starttls": 587, "tls": 465, "none": 25}
DEFAULT_TIMEOUT_SECONDS: Final = 30.0


class SmtpEmailPlugin(MessagingPlugin):
    """Sends email through an SMTP server."""

    channel_type = "email"
    capabilities = ("send", "html", "reply_to", "custom_headers")

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

    def _client(self) -> aiosmtplib.SMTP:
        host = self.config["host"]
        return aiosmtplib.SMTP(
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
        recipients = providers.parse_email_addresses(message.recipient, field="recipient")
        email = self._compose(message, recipients)
        try:
            async with self._client() as smtp:
                refused, response = await smtp.send_message(
                    email,
                    sender=self._sender.address,
                    recipients=[recipient.address for recipient in recipients],
                )
        except (aiosmtplib.SMTPException, OSError) as error:
            raise _classify(error, self.config["host"]) from None
        details = {"smtp_response": response, "recipients": str(len(recipients))}
        if refused:
            details["refused_recipients"] = ", ".join(sorted(refused))
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

    def _compose(self, message: Message, recipients: list[providers.EmailAddress]) -> EmailMessage:
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
        return email

    def _message_id(self, message: Message) -> str:
        domain = self._sender.address.rpartition("@")[2]
        if not message.idempotency_key:
            return make_msgid(domain=domain)
        key = f"{message.tenant}\0{message.idempotency_key}".encode()
        return f"<{hashlib.sha256(key).hexdigest()[:32]}.switchboard@{domain}>"


def _address(value: str, field: str, error: type[PluginError]) -> providers.EmailAddress:
    return providers.parse_email_address(value, field=field, error=error)


def _classify(error: Exception, host: str) -> PluginError:
    """An SMTP failure as the SDK error the router acts on (docs/plugins/smtp-email.md)."""
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
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


def _reply(error: aiosmtplib.SMTPResponseException) -> str:
    return f"{error.code} {' '.join(error.message.split())}"
