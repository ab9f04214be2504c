"""Email through SendGrid's v3 Mail Send API.

``Send`` is ``POST /v3/mail/send`` with ``Authorization: Bearer <API key>``
and a JSON body (``personalizations``, ``from``, ``reply_to``, ``subject``,
``content`` with ``text/plain`` first and ``text/html`` second, ``headers``,
``custom_args``). SendGrid answers 202 Accepted with an empty body; the
``X-Message-Id`` response header is the provider message id.
``CheckCredentials`` lists the key's scopes (``GET /v3/scopes``) and requires
``mail.send``. Bodies, reply-to and custom headers follow the same metadata
conventions as smtp-email. See docs/plugins/sendgrid-email.md.
"""

from __future__ import annotations

import time
from typing import Any, Final

import httpx

from switchboard.sdk import (
    ConfigError,
    InvalidInput,
    Message,
    MessagingPlugin,
    OutcomeUnknown,
    PluginError,
    SendResult,
    Unauthenticated,
    providers,
)

PROVIDER: Final = "SendGrid"
DEFAULT_BASE_URL: Final = "https://api.sendgrid.com"
#: Headers SendGrid sets itself and refuses in ``headers``, beyond the usual ones.
_SENDGRID_RESERVED: Final = frozenset({"x-sg-id", "x-sg-eid"})


class SendgridEmailPlugin(MessagingPlugin):
    """Sends email with SendGrid."""

    channel_type = "email"
    capabilities = ("send", "html", "reply_to", "custom_headers")

    def validate_config(self) -> None:
        self._sender = _address(self.config["from_address"], "config.from_address", ConfigError)
        reply_to = self.config.get("reply_to")
        self._reply_to = _address(reply_to, "config.reply_to", ConfigError) if reply_to else None

    async def initialize(self) -> None:
        self._http = providers.http_client(
            base_url=self.config.get("base_url", DEFAULT_BASE_URL),
            timeout=self.config.get("timeout_seconds"),
            headers={"Authorization": f"Bearer {self.config['api_key']}"},
        )

    async def cleanup(self) -> None:
        await self._http.aclose()

    async def send_message(self, message: Message) -> SendResult:
        recipients = providers.parse_email_addresses(message.recipient, field="recipient")
        reply_to = message.metadata.get("reply_to")
        reply_address = (
            _address(reply_to, "metadata.reply_to", InvalidInput) if reply_to else self._reply_to
        )
        bodies = providers.email_bodies(message)
        content = [{"type": "text/plain", "value": bodies.text or " "}]
        if bodies.html is not None:
            content.append({"type": "text/html", "value": bodies.html})
        mail: dict[str, Any] = {
            "personalizations": [{"to": [_party(address) for address in recipients]}],
            "from": _party(self._sender),
            "subject": message.subject or self.config.get("default_subject", "(no subject)"),
            "content": content,
        }
        if reply_address is not None:
            mail["reply_to"] = _party(reply_address)
        headers = providers.metadata_headers(
            message.metadata,
            reserved=providers.RESERVED_EMAIL_HEADERS | _SENDGRID_RESERVED,
        )
        if headers:
            mail["headers"] = headers
        if message.idempotency_key:
            mail["custom_args"] = {"switchboard_idempotency_key": message.idempotency_key}
        if self.config.get("sandbox_mode"):
            mail["mail_settings"] = {"sandbox_mode": {"enable": True}}
        response = await providers.send_request(
            self._http, "POST", "/v3/mail/send", provider=PROVIDER, json=mail
        )
        if not response.is_success:
            raise _error(response)
        message_id = response.headers.get("X-Message-Id")
        if not message_id:
            raise OutcomeUnknown(
                f"{PROVIDER} answered HTTP {response.status_code} without X-Message-Id; "
                "it was probably sent"
            )
        return SendResult(
            message_id,
            details={"recipients": str(len(recipients)), "html": str(bodies.html is not None)},
        )

    async def check_credentials(self) -> str:
        response = await providers.send_request(self._http, "GET", "/v3/scopes", provider=PROVIDER)
        if not response.is_success:
            raise _error(response)
        body = providers.response_json(response, provider=PROVIDER)
        scopes = body.get("scopes") if isinstance(body, dict) else None
        if not isinstance(scopes, list) or "mail.send" not in scopes:
            raise Unauthenticated(f"{PROVIDER} API key lacks the mail.send scope")
        return f"{PROVIDER} accepted the API key (scope mail.send present)"


def _address(value: str, field: str, error: type[PluginError]) -> providers.EmailAddress:
    return providers.parse_email_address(value, field=field, error=error)


def _party(address: providers.EmailAddress) -> dict[str, str]:
    party = {"email": address.address}
    if address.name:
        party["name"] = address.name
    return party


def _error(response: httpx.Response) -> PluginError:
    """SendGrid's error body is ``{"errors": [{"message", "field", "help"}]}``."""
    retry_after = providers.parse_retry_after(response.headers.get("Retry-After"))
    if retry_after is None and response.status_code == 429:
        retry_after = _seconds_until(response.headers.get("X-RateLimit-Reset"))
    return providers.error_for_status(
        response.status_code, provider=PROVIDER, detail=_detail(response), retry_after=retry_after
    )


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return providers.response_detail(response)
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors:
        return providers.response_detail(response)
    described = []
    for item in errors[:3]:
        if isinstance(item, dict):
            field = f"{item['field']}: " if item.get("field") else ""
            described.append(f"{field}{item.get('message', '')}")
    return "; ".join(described)


def _seconds_until(epoch: str | None) -> float | None:
    """``X-RateLimit-Reset`` is the Unix time the limit resets."""
    try:
        reset = float(epoch or "")
    except ValueError:
        return None
    return max(reset - time.time(), 0.0)
