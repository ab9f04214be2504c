"""Email through SendGrid's v3 Mail Send API.

``Send`` is ``POST /v3/mail/send`` with ``Authorization: Bearer <API key>``
and a JSON body (``personalizations`` with ``to``, ``cc``, ``bcc`` and, for
a dynamic template, ``dynamic_template_data``; ``from``, ``reply_to``,
``subject``, ``content`` with ``text/plain`` first and ``text/html`` second,
or ``template_id``; ``attachments``, ``headers``, ``custom_args``). SendGrid
answers 202 Accepted with an empty body; the ``X-Message-Id`` response header
is the provider message id. Errors are classified by status and, for 401 and
403, by SendGrid's message (``_error``). ``CheckCredentials`` lists the key's
scopes (``GET /v3/scopes``) and requires ``mail.send``. Bodies, reply-to and
custom headers follow the same metadata conventions as smtp-email. See
docs/plugins/sendgrid-email.md.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from typing import Any, Final

import httpx

from switchboard.sdk import (
    ConfigError,
    HttpProviderPlugin,
    InvalidInput,
    Message,
    OutcomeUnknown,
    PluginError,
    RetryableError,
    SendResult,
    Unauthenticated,
    providers,
)

PROVIDER: Final = "SendGrid"
DEFAULT_BASE_URL: Final = "https://api.sendgrid.com"
#: Headers SendGrid sets itself and refuses in ``headers``, beyond the usual ones.
_SENDGRID_RESERVED: Final = frozenset({"x-sg-id", "x-sg-eid"})

#: 401 and 403 answers told apart by SendGrid's message (lower case, a part of
#: it), in order; docs/plugins/sendgrid-email.md lists them with their source.
#: A 403 that none matches is SendGrid's "Too many bad requests. Temporary
#: block": RETRYABLE. A 401 that none matches is the key: UNAUTHENTICATED.
MESSAGE_CLASSES: Final[dict[int, tuple[tuple[str, type[PluginError]], ...]]] = {
    401: (("maximum credits exceeded", ConfigError),),
    403: (
        ("verified sender identity", ConfigError),
        ("access forbidden", Unauthenticated),
    ),
}


class SendgridEmailPlugin(HttpProviderPlugin):
    """Sends email with SendGrid."""

    channel_type = "email"
    capabilities = (
        "send",
        "html",
        "reply_to",
        "custom_headers",
        "attachments",
        "cc",
        "templates",
    )
    provider = PROVIDER
    default_base_url = DEFAULT_BASE_URL

    def validate_config(self) -> None:
        super().validate_config()
        self._sender = _address(self.config["from_address"], "config.from_address", ConfigError)
        reply_to = self.config.get("reply_to")
        self._reply_to = _address(reply_to, "config.reply_to", ConfigError) if reply_to else None

    def client_headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self.config['api_key']}"}

    async def send_message(self, message: Message) -> SendResult:
        providers.require_capabilities(message, self.capabilities, provider=PROVIDER)
        recipients = providers.parse_email_addresses(message.recipient, field="recipient")
        reply_to = message.metadata.get("reply_to")
        reply_address = (
            _address(reply_to, "metadata.reply_to", InvalidInput) if reply_to else self._reply_to
        )
        personalization = _personalization(recipients, message.cc, message.bcc)
        mail: dict[str, Any] = {
            "personalizations": [personalization],
            "from": _party(self._sender),
        }
        if message.template is not None:
            # A dynamic template brings its own subject and bodies.
            mail["template_id"] = message.template.id
            if message.template.variables:
                personalization["dynamic_template_data"] = dict(message.template.variables)
            html = False
        else:
            bodies = providers.email_bodies(message)
            content = [{"type": "text/plain", "value": bodies.text or " "}]
            if bodies.html is not None:
                content.append({"type": "text/html", "value": bodies.html})
            mail["subject"] = message.subject or self.config.get("default_subject", "(no subject)")
            mail["content"] = content
            html = bodies.html is not None
        if reply_address is not None:
            mail["reply_to"] = _party(reply_address)
        if message.attachments:
            mail["attachments"] = [
                {
                    "content": base64.b64encode(attachment.data).decode(),
                    "type": attachment.content_type,
                    "filename": attachment.filename,
                    "disposition": "attachment",
                }
                for attachment in message.attachments
            ]
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
        response = await self.request("POST", "/v3/mail/send", json=mail)
        if not response.is_success:
            raise _error(response)
        message_id = response.headers.get("X-Message-Id")
        if not message_id:
            raise OutcomeUnknown(
                f"{PROVIDER} answered HTTP {response.status_code} without X-Message-Id; "
                "it was probably sent"
            )
        copies = sum(len(personalization.get(kind, [])) for kind in ("to", "cc", "bcc"))
        return SendResult(
            message_id,
            details={
                "recipients": str(copies),
                "html": str(html),
                "attachments": str(len(message.attachments)),
            },
        )

    async def check_credentials(self) -> str:
        response = await self.request("GET", "/v3/scopes")
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


def _personalization(
    to: list[providers.EmailAddress], cc: tuple[str, ...], bcc: tuple[str, ...]
) -> dict[str, Any]:
    """``to``, ``cc`` and ``bcc`` of one personalization; SendGrid refuses an address
    twice in it, so a copy to someone already listed is left out (they get one)."""
    seen: set[str] = set()
    personalization: dict[str, Any] = {}
    for kind, addresses in (
        ("to", to),
        ("cc", providers.parse_email_addresses(", ".join(cc), field="cc") if cc else []),
        ("bcc", providers.parse_email_addresses(", ".join(bcc), field="bcc") if bcc else []),
    ):
        parties = []
        for address in addresses:
            if address.address.lower() not in seen:
                seen.add(address.address.lower())
                parties.append(_party(address))
        if parties:
            personalization[kind] = parties
    return personalization


def _error(response: httpx.Response) -> PluginError:
    """SendGrid's error body is ``{"errors": [{"message", "field", "help"}]}``."""
    retry_after = providers.parse_retry_after(response.headers.get("Retry-After"))
    if retry_after is None and response.status_code == 429:
        retry_after = _seconds_until(response.headers.get("X-RateLimit-Reset"))
    detail = _detail(response)
    status = response.status_code
    message = f"{PROVIDER} answered HTTP {status}: {detail}"
    for words, error_class in MESSAGE_CLASSES.get(status, ()):
        if words in detail.lower():
            if error_class is ConfigError:
                return ConfigError(f"{message}; fix the sender or account")
            return error_class(f"{message}; check the plugin's credentials")
    if status == 403:
        return RetryableError(f"{message}; SendGrid blocks the key for now")
    return providers.error_for_status(
        status, provider=PROVIDER, detail=detail, retry_after=retry_after
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
