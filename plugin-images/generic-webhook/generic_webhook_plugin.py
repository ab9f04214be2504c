"""Any HTTP endpoint: a signed JSON POST per message.

``Send`` posts one JSON document to ``config.url``::

    {"id": "<uuid>", "timestamp": 1700000000, "recipient": "...", "subject": "...",
     "content": "...", "content_type": "text/plain", "metadata": {...},
     "idempotency_key": "...", "tenant": "..."}

with ``Content-Type: application/json``, the configured ``headers``,
``X-Switchboard-Message-Id``, ``Idempotency-Key`` (when the message has one,
as the quoted string the IETF draft "The Idempotency-Key HTTP Header Field"
defines: an RFC 8941 sf-string, ``Idempotency-Key: "alert-77"``) and, when
``signing_secret`` is set, ``X-Switchboard-Timestamp: <unix
seconds>`` and ``X-Switchboard-Signature: sha256=<hex>``, the HMAC-SHA256 of
``"<timestamp>." + <raw body bytes>`` keyed with the secret
(``providers.sign_webhook``). Any 2xx is success; the provider message id is
the value at ``message_id_field`` (a dotted path) in the JSON response, or
the generated ``id``. When signing and the router serves receipts, the request
also carries ``X-Switchboard-Receipt-Url``.

``HandleReceipt`` takes the receipts a receiver posts back to that URL, in a
contract of Switchboard's own: a JSON object ``{"message_id", "status",
"error"}`` (or an array of them), ``status`` one of ``sent``, ``delivered``,
``failed``, signed exactly as the plugin signs what it posts (the same two
headers, the same ``signing_secret``) and fresh within
``receipt_tolerance_seconds``. See docs/plugins/generic-webhook.md, which
shows how a receiver verifies the signature and signs a receipt.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any, Final

import httpx

from switchboard.sdk import (
    ConfigError,
    DeliveryState,
    HttpProviderPlugin,
    InvalidInput,
    Message,
    Receipt,
    ReceiptRequest,
    RetryableError,
    SendResult,
    Unauthenticated,
    providers,
)

TIMESTAMP_HEADER: Final = "X-Switchboard-Timestamp"
SIGNATURE_HEADER: Final = "X-Switchboard-Signature"
MESSAGE_ID_HEADER: Final = "X-Switchboard-Message-Id"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
RECEIPT_URL_HEADER: Final = "X-Switchboard-Receipt-Url"
#: A receipt's ``status`` and the delivery state it reports.
RECEIPT_STATES: Final[dict[str, DeliveryState]] = {
    "sent": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "failed": DeliveryState.FAILED,
}
#: A receipt's ``error`` is kept to this many characters.
_MAX_ERROR: Final = 1000
#: Headers the plugin sets itself; config.headers may not override them.
_OWN_HEADERS: Final = frozenset(
    name.lower()
    for name in (
        "Content-Type",
        "Content-Length",
        "Host",
        TIMESTAMP_HEADER,
        SIGNATURE_HEADER,
        MESSAGE_ID_HEADER,
        IDEMPOTENCY_HEADER,
        RECEIPT_URL_HEADER,
    )
)
#: RFC 9110 field names (tokens).
_TOKEN: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class GenericWebhookPlugin(HttpProviderPlugin):
    """Posts each message as signed JSON to an HTTP endpoint."""

    channel_type = "webhook"
    capabilities = ("send", "signed_payloads", "idempotency", "delivery_receipts")

    def validate_config(self) -> None:
        super().validate_config()
        try:
            # Errors name the receiving host (never the path or query, which may hold a token).
            self.provider = httpx.URL(self.config["url"]).host
        except httpx.InvalidURL:
            raise ConfigError("config.url: not a usable URL") from None
        if not self.provider:
            raise ConfigError("config.url: has no host")
        for name, value in self.config.get("headers", {}).items():
            if not _TOKEN.match(name):
                raise ConfigError(f"config.headers: {name!r} is not a valid header name")
            if name.lower() in _OWN_HEADERS:
                raise ConfigError(f"config.headers: {name} is set by the plugin")
            if "\r" in value or "\n" in value:
                raise ConfigError(f"config.headers.{name}: line breaks are not allowed")

    def client_headers(self) -> Mapping[str, str]:
        headers: Mapping[str, str] = self.config.get("headers", {})
        return headers

    async def send_message(self, message: Message) -> SendResult:
        providers.require_capabilities(message, self.capabilities, provider=self.provider)
        message_id = str(uuid.uuid4())
        timestamp = int(time.time())
        body = json.dumps(
            {
                "id": message_id,
                "timestamp": timestamp,
                "recipient": message.recipient,
                "subject": message.subject,
                "content": message.content,
                "content_type": message.content_type,
                "metadata": dict(message.metadata),
                "idempotency_key": message.idempotency_key,
                "tenant": message.tenant,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        headers = {"Content-Type": "application/json", MESSAGE_ID_HEADER: message_id}
        if message.idempotency_key:
            headers[IDEMPOTENCY_HEADER] = structured_string(message.idempotency_key)
        if secret := self.config.get("signing_secret"):
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = "sha256=" + providers.sign_webhook(secret, timestamp, body)
            # Only a signed exchange can carry receipts back: they are verified
            # with the same secret.
            if message.receipt_url:
                headers[RECEIPT_URL_HEADER] = message.receipt_url
        response = await self.request("POST", self.config["url"], content=body, headers=headers)
        if response.status_code == 409 and message.idempotency_key:
            # The draft's answer while a request with the same key is still
            # being processed: the first one may yet succeed, try again later.
            raise RetryableError(
                f"{self.provider} answered HTTP 409: a request with this Idempotency-Key "
                "is still being processed",
                retry_after=providers.parse_retry_after(response.headers.get("Retry-After")),
            )
        providers.raise_for_status(response, provider=self.provider)
        answered = self._message_id_from(response.content)
        return SendResult(
            answered or message_id,
            details={
                "status": str(response.status_code),
                "message_id_source": "response" if answered else "generated",
            },
        )

    async def handle_receipt(self, request: ReceiptRequest) -> list[Receipt]:
        """Receipts a receiver posted back, signed with the signing secret."""
        secret = self.config.get("signing_secret")
        if not secret:
            raise Unauthenticated(
                "config.signing_secret is not set, so receipts cannot be verified and none "
                "is believed"
            )
        providers.verify_webhook(
            secret,
            request.headers.get(TIMESTAMP_HEADER.lower(), ""),
            request.body,
            request.headers.get(SIGNATURE_HEADER.lower(), ""),
            tolerance_seconds=float(
                self.config.get(
                    "receipt_tolerance_seconds", providers.DEFAULT_RECEIPT_TOLERANCE_SECONDS
                )
            ),
            provider=self.provider,
        )
        try:
            document = json.loads(request.body)
        except ValueError:
            raise InvalidInput("receipt: the body is not JSON") from None
        items = document if isinstance(document, list) else [document]
        return [receipt_of(item, number) for number, item in enumerate(items)]

    def _message_id_from(self, content: bytes) -> str | None:
        path = self.config.get("message_id_field")
        if not path or not content:
            return None
        try:
            value: Any = json.loads(content)
        except ValueError:
            return None
        for part in path.split("."):
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return str(value) if isinstance(value, str | int) and str(value) else None


def receipt_of(item: Any, number: int = 0) -> Receipt:
    """One receipt of the contract, or ``InvalidInput`` naming what is wrong with it.

    A batch is taken whole or not at all: one bad receipt refuses the batch.
    """
    where = f"receipt[{number}]"
    if not isinstance(item, dict):
        raise InvalidInput(f"{where}: not a JSON object")
    message_id = item.get("message_id")
    if not isinstance(message_id, str) or not message_id:
        raise InvalidInput(f"{where}.message_id: the provider message id is required")
    status = item.get("status")
    state = RECEIPT_STATES.get(status) if isinstance(status, str) else None
    if state is None:
        raise InvalidInput(f"{where}.status: {status!r} is not one of sent, delivered, failed")
    error = item.get("error") or ""
    if not isinstance(error, str):
        raise InvalidInput(f"{where}.error: must be a string")
    return Receipt(message_id, state, " ".join(error.split())[:_MAX_ERROR])


def structured_string(value: str) -> str:
    """``value`` as an RFC 8941 sf-string: in double quotes, ``"`` and ``\\`` escaped.

    The Idempotency-Key header's value is an sf-string (draft-ietf-httpapi-
    idempotency-key-header, section 2), which holds printable ASCII only.
    """
    if not all(" " <= char <= "~" for char in value):
        raise InvalidInput("idempotency_key: the Idempotency-Key header takes printable ASCII")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
