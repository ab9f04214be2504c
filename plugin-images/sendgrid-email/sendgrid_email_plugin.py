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
custom headers follow the same metadata conventions as smtp-email.

``HandleReceipt`` takes SendGrid's Event Webhook: a JSON array of events,
signed with ECDSA (P-256, SHA-256) over ``<timestamp><raw body>``, the base64
DER signature in ``X-Twilio-Email-Event-Webhook-Signature`` and the timestamp
in ``X-Twilio-Email-Event-Webhook-Timestamp``, checked with the verification
key in ``config.event_webhook_public_key``. Each event's ``sg_message_id``
starts with the ``X-Message-Id`` the send returned; its ``event`` becomes a
delivery state (``EVENT_STATES``). See docs/plugins/sendgrid-email.md.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Mapping
from typing import Any, Final

import httpx

from switchboard.sdk import (
    ConfigError,
    DeliveryState,
    HttpProviderPlugin,
    InvalidInput,
    Message,
    OutcomeUnknown,
    PluginError,
    Receipt,
    ReceiptRequest,
    RetryableError,
    SendResult,
    Unauthenticated,
    providers,
)

PROVIDER: Final = "SendGrid"
DEFAULT_BASE_URL: Final = "https://api.sendgrid.com"
#: Headers SendGrid sets itself and refuses in ``headers``, beyond the usual ones.
_SENDGRID_RESERVED: Final = frozenset({"x-sg-id", "x-sg-eid"})

SIGNATURE_HEADER: Final = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER: Final = "X-Twilio-Email-Event-Webhook-Timestamp"
#: Where SendGrid's suffix starts in an ``sg_message_id`` (``sent_message_id``).
_SG_SUFFIX: Final = re.compile(r"\.(?:filter|recvd)")

#: Event Webhook events (SendGrid's "Event Webhook Reference") and the delivery
#: state each reports; docs/plugins/sendgrid-email.md lists them. Events not
#: listed (unsubscribes, spam reports, account events) say nothing about
#: whether the message arrived.
EVENT_STATES: Final[dict[str, DeliveryState]] = {
    "processed": DeliveryState.SENT,  # accepted, about to be sent
    "deferred": DeliveryState.SENT,  # the receiving server said "later": SendGrid retries
    "delivered": DeliveryState.DELIVERED,  # the receiving server accepted it
    "open": DeliveryState.DELIVERED,  # opened: it arrived
    "click": DeliveryState.DELIVERED,  # a link was followed: it arrived
    "bounce": DeliveryState.FAILED,  # refused for good (type bounce) or blocked
    "dropped": DeliveryState.FAILED,  # SendGrid did not send it (suppressed, invalid)
}

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
        "delivery_receipts",
    )
    provider = PROVIDER
    default_base_url = DEFAULT_BASE_URL

    def validate_config(self) -> None:
        super().validate_config()
        self._sender = _address(self.config["from_address"], "config.from_address", ConfigError)
        reply_to = self.config.get("reply_to")
        self._reply_to = _address(reply_to, "config.reply_to", ConfigError) if reply_to else None
        key = self.config.get("event_webhook_public_key")
        self._event_key = (
            providers.load_ecdsa_public_key(key, field="config.event_webhook_public_key")
            if key
            else None
        )

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

    async def handle_receipt(self, request: ReceiptRequest) -> list[Receipt]:
        """An Event Webhook batch: its ECDSA signature checked, then one receipt per event."""
        if self._event_key is None:
            raise Unauthenticated(
                "config.event_webhook_public_key is not set, so SendGrid's Event Webhook "
                "callbacks cannot be verified and none is believed"
            )
        signature = request.headers.get(SIGNATURE_HEADER.lower(), "")
        timestamp = request.headers.get(TIMESTAMP_HEADER.lower(), "")
        signed = timestamp.encode() + request.body
        if not signature or not providers.ecdsa_signature_valid(self._event_key, signed, signature):
            raise Unauthenticated(
                f"{SIGNATURE_HEADER} does not match the verification key: the events were not "
                f"signed by {PROVIDER} for this account, or were altered"
            )
        providers.check_timestamp(
            timestamp,
            tolerance_seconds=float(
                self.config.get(
                    "receipt_tolerance_seconds", providers.DEFAULT_RECEIPT_TOLERANCE_SECONDS
                )
            ),
            provider=PROVIDER,
        )
        try:
            events = json.loads(request.body)
        except ValueError:
            events = None
        if not isinstance(events, list):
            raise InvalidInput(f"{PROVIDER}'s Event Webhook body is not a JSON array of events")
        return [receipt for event in events if (receipt := event_receipt(event)) is not None]

    async def check_credentials(self) -> str:
        response = await self.request("GET", "/v3/scopes")
        if not response.is_success:
            raise _error(response)
        body = providers.response_json(response, provider=PROVIDER)
        scopes = body.get("scopes") if isinstance(body, dict) else None
        if not isinstance(scopes, list) or "mail.send" not in scopes:
            raise Unauthenticated(f"{PROVIDER} API key lacks the mail.send scope")
        return f"{PROVIDER} accepted the API key (scope mail.send present)"


def event_receipt(event: Any) -> Receipt | None:
    """The receipt one Event Webhook event stands for, or None when it carries no news.

    ``sg_message_id`` is ``<X-Message-Id>.<SendGrid's suffix>`` (``sent_message_id``).
    """
    if not isinstance(event, dict):
        return None
    state = EVENT_STATES.get(str(event.get("event", "")))
    sg_message_id = event.get("sg_message_id")
    if state is None or not isinstance(sg_message_id, str) or not sg_message_id:
        return None
    return Receipt(sent_message_id(sg_message_id), state, _event_error(event))


def sent_message_id(sg_message_id: str) -> str:
    """The ``X-Message-Id`` a send returned, from an event's ``sg_message_id``.

    SendGrid appends the filter that handled the message:
    ``LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-...-9.0`` belongs to
    ``LRzXl_NHStOGhQ4kofSm_A``. Today's ids hold no dot, so the id ends at the
    first dot; older ones did (``14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0``),
    so the id ends before a ``.filter`` or ``.recvd`` suffix when there is one.
    """
    suffix = _SG_SUFFIX.search(sg_message_id)
    return sg_message_id[: suffix.start()] if suffix else sg_message_id.split(".", 1)[0]


def _event_error(event: dict[str, Any]) -> str:
    """What a bounce or drop says: SendGrid's type, status and reason."""
    kind = str(event.get("event"))
    reason = " ".join(str(event.get("reason") or "").split())[:300]
    if kind == "bounce":
        bounce = str(event.get("type") or "bounce")
        status = f" ({event['status']})" if event.get("status") else ""
        return f"{PROVIDER} reports a {bounce}{status}: {reason or 'no reason given'}"
    if kind == "dropped":
        return f"{PROVIDER} dropped the message: {reason or 'no reason given'}"
    return ""


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
