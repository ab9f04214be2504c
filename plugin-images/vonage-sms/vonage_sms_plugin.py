"""SMS through the Vonage (Nexmo) SMS API.

``Send`` is ``POST /sms/json`` on https://rest.nexmo.com, form-encoded:
``api_key``, ``api_secret``, ``from``, ``to`` (E.164 without the ``+``),
``text``, ``type=unicode`` when the text doesn't fit the GSM 7-bit alphabet,
and optionally ``callback`` (delivery receipts) and ``client-ref`` (the
idempotency key). Vonage answers HTTP 200 even when it refuses a message: each
part of the message has its own ``status`` code in ``messages[]``, classified
by ``STATUS_CLASSES``. A long text is split by Vonage and answered per
part: when some parts were accepted and others refused, the message is
reported delivered in part (``providers.result_of_parts``) and never sent
again, since the accepted parts already reached the handset.
``CheckCredentials`` reads the account balance (``GET /account/get-balance``,
Basic auth).

``HandleReceipt`` takes Vonage's delivery receipts (DLRs), sent as a GET
query, a POST form or a POST JSON object, signed as Vonage's "Signing
messages" guide describes: every parameter but ``sig``, sorted by name,
``&`` and ``=`` in values replaced by ``_``, joined as ``&name=value``; an
MD5 hash of that with the signature secret appended (``md5hash``), or an
HMAC keyed with it (``md5``, ``sha1``, ``sha256``, ``sha512``). The signed
``timestamp`` must be fresh. Each part of a long SMS has its own DLR; its
``messageId`` is one of the ids the send returned (``part_ids``).
See docs/plugins/vonage-sms.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import httpx

from switchboard.sdk import (
    ConfigError,
    DeliveryState,
    HttpProviderPlugin,
    InvalidInput,
    Message,
    OutcomeUnknown,
    PermanentError,
    PluginError,
    Receipt,
    ReceiptRequest,
    RetryableError,
    SendResult,
    Unauthenticated,
    providers,
)

PROVIDER: Final = "Vonage"
DEFAULT_BASE_URL: Final = "https://rest.nexmo.com"
#: Vonage keeps at most 100 characters of client-ref.
_CLIENT_REF_LIMIT: Final = 100

#: SMS API status codes (developer.vonage.com, "SMS API error codes") and the
#: error each becomes. Codes not listed are RETRYABLE: another provider may
#: deliver what Vonage couldn't explain.
STATUS_CLASSES: Final[dict[str, type[PluginError]]] = {
    "1": RetryableError,  # Throttled: faster than the account's rate limit
    "2": InvalidInput,  # Missing Parameters
    "3": InvalidInput,  # Invalid Parameters (e.g. the to number)
    "4": Unauthenticated,  # Invalid Credentials
    "5": RetryableError,  # Internal Error
    "6": PermanentError,  # Invalid Message: unroutable
    "7": PermanentError,  # Number Barred
    "8": ConfigError,  # Partner Account Barred: the account is suspended
    "9": ConfigError,  # Partner Quota Violation: not enough credit, top up the account
    "10": RetryableError,  # Too Many Existing Binds
    "11": ConfigError,  # Account Not Enabled For HTTP
    "12": InvalidInput,  # Message Too Long
    "14": Unauthenticated,  # Invalid Signature
    "15": ConfigError,  # Invalid Sender Address: config.from
    "22": InvalidInput,  # Invalid Network Code
    "23": ConfigError,  # Invalid Callback URL: config.callback_url
    "29": ConfigError,  # Non-Whitelisted Destination: a demo account
    "32": Unauthenticated,  # Signature And API Secret Disallowed
    "33": PermanentError,  # Number De-activated
}
#: DLR ``status`` values (Vonage's "Delivery receipts" guide) and the delivery
#: state each reports; docs/plugins/vonage-sms.md lists them.
STATUS_STATES: Final[dict[str, DeliveryState]] = {
    "accepted": DeliveryState.SENT,  # accepted for delivery, not delivered yet
    "buffered": DeliveryState.SENT,  # buffered by the network, delivered later
    "unknown": DeliveryState.SENT,  # the carrier gave no usable status: nothing final
    "delivered": DeliveryState.DELIVERED,
    "expired": DeliveryState.FAILED,  # the carrier gave up retrying within the validity period
    "failed": DeliveryState.FAILED,
    "rejected": DeliveryState.FAILED,  # refused by Vonage or the carrier
}
#: DLR ``err-code`` values, for the error of a failed receipt.
DLR_ERRORS: Final[dict[str, str]] = {
    "1": "Unknown",
    "2": "Absent Subscriber - Temporary",
    "3": "Absent Subscriber - Permanent",
    "4": "Call Barred by User",
    "5": "Portability Error",
    "6": "Anti-Spam Rejection",
    "7": "Handset Busy",
    "8": "Network Error",
    "9": "Illegal Number",
    "10": "Illegal Message",
    "11": "Unroutable",
    "12": "Destination Unreachable",
    "13": "Subscriber Age Restriction",
    "14": "Number Blocked by Carrier",
    "15": "Prepaid Insufficient Funds",
    "16": "Gateway Quota Exceeded",
    "50": "Entity Filter",
    "51": "Header Filter",
    "52": "Content Filter",
    "53": "Consent Filter",
    "54": "Regulation Error",
    "99": "General Error",
}
#: The signature methods of Vonage's dashboard: an MD5 hash, or an HMAC.
SIGNATURE_METHODS: Final = ("md5hash", "md5", "sha1", "sha256", "sha512")
#: Vonage asks throttled clients to slow down; one second is its documented rate unit.
_THROTTLE_RETRY_AFTER: Final = 1.0

# GSM 03.38: the default alphabet and its extension table (escaped, 2 septets).
_GSM_7BIT: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
    "^{}\\[~]|€\f"
)


class VonageSmsPlugin(HttpProviderPlugin):
    """Sends SMS with Vonage."""

    channel_type = "sms"
    capabilities = ("send", "text_messaging", "delivery_receipts")
    provider = PROVIDER
    default_base_url = DEFAULT_BASE_URL

    def validate_config(self) -> None:
        super().validate_config()
        method = self.config.get("signature_method", "md5hash")
        if method not in SIGNATURE_METHODS:
            raise ConfigError(
                f"config.signature_method: {method!r} is not one of {', '.join(SIGNATURE_METHODS)}"
            )

    async def send_message(self, message: Message) -> SendResult:
        providers.require_capabilities(message, self.capabilities, provider=PROVIDER)
        to = self.phone_number(message.recipient)
        if not message.content:
            raise InvalidInput("content: an SMS needs a body")
        form = {
            "api_key": self.config["api_key"],
            "api_secret": self.config["api_secret"],
            "from": self.config["from"],
            "to": to.removeprefix("+"),
            "text": message.content,
        }
        if not set(message.content) <= _GSM_7BIT:
            form["type"] = "unicode"
        # Receipts come to the router only when they can be verified there.
        receipts = message.receipt_url if self.config.get("signature_secret") else ""
        if callback := self.config.get("callback_url") or receipts:
            form["callback"] = callback
        if message.idempotency_key:
            form["client-ref"] = message.idempotency_key[:_CLIENT_REF_LIMIT]
        response = await self.request("POST", "/sms/json", data=form)
        providers.raise_for_status(response, provider=PROVIDER)
        parts = _message_parts(_json_or_none(response))
        return providers.result_of_parts(
            [_part_outcome(number, part) for number, part in enumerate(parts, 1)],
            details={"to": to, "network": str(parts[0].get("network") or "")},
        )

    async def handle_receipt(self, request: ReceiptRequest) -> list[Receipt]:
        """A delivery receipt: its signature and timestamp checked, then its status."""
        secret = self.config.get("signature_secret")
        if not secret:
            raise Unauthenticated(
                "config.signature_secret is not set, so Vonage's delivery receipts cannot be "
                "verified and none is believed"
            )
        fields = callback_fields(request)
        signature = fields.pop("sig", "")
        method = self.config.get("signature_method", "md5hash")
        expected = request_signature(fields, secret, method)
        if not signature or not providers.signatures_match(expected, signature.lower()):
            raise Unauthenticated(
                f"The receipt's sig does not match the signature secret ({method}): it was not "
                f"signed by {PROVIDER} for this account, or was altered"
            )
        providers.check_timestamp(
            fields.get("timestamp"),
            tolerance_seconds=float(
                self.config.get(
                    "receipt_tolerance_seconds", providers.DEFAULT_RECEIPT_TOLERANCE_SECONDS
                )
            ),
            provider=PROVIDER,
        )
        message_id = fields.get("messageId", "")
        status = fields.get("status", "")
        state = STATUS_STATES.get(status)
        if not message_id or state is None:
            return []
        error = ""
        if state is DeliveryState.FAILED:
            code = fields.get("err-code", "")
            reason = f": {DLR_ERRORS[code]}" if code in DLR_ERRORS else ""
            error = f"{PROVIDER} reports the message {status}" + (
                f" (err-code {code}{reason})" if code else ""
            )
        return [Receipt(message_id, state, error)]

    async def check_credentials(self) -> str:
        # Basic auth rather than the query string, which would put the secret in URLs.
        response = await self.request(
            "GET",
            "/account/get-balance",
            headers={"Authorization": _basic(self.config["api_key"], self.config["api_secret"])},
        )
        providers.raise_for_status(response, provider=PROVIDER)
        balance = providers.response_json(response, provider=PROVIDER)
        value = balance.get("value") if isinstance(balance, dict) else None
        return f"{PROVIDER} accepted the API key; balance {value}"


def callback_fields(request: ReceiptRequest) -> dict[str, str]:
    """A DLR's parameters: the query of a GET, the form or JSON object of a POST."""
    if request.method.upper() != "POST":
        return dict(parse_qsl(urlsplit(request.url).query, keep_blank_values=True))
    if request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
        try:
            body = json.loads(request.body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise InvalidInput(f"{PROVIDER}'s delivery receipt is not a JSON object")
        return {str(name): _text(value) for name, value in body.items()}
    return dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))


def request_signature(fields: dict[str, str], secret: str, method: str) -> str:
    """The ``sig`` Vonage computes over ``fields`` (without ``sig``), in lower-case hex.

    ``&name=value`` for each field sorted by name, with ``&`` and ``=`` in
    values replaced by ``_``; then MD5 of that followed by the secret
    (``md5hash``, Vonage's default), or its HMAC keyed with the secret.
    """
    signed = "".join(
        f"&{name}={value.replace('&', '_').replace('=', '_')}"
        for name, value in sorted(fields.items())
    ).encode()
    if method == "md5hash":
        return hashlib.md5(signed + secret.encode(), usedforsecurity=False).hexdigest()
    return providers.hmac_hex(secret, signed, method)


def _text(value: Any) -> str:
    """A JSON value as the form field it would have been."""
    if isinstance(value, str):
        return value
    return (
        json.dumps(value) if isinstance(value, dict | list | bool) or value is None else str(value)
    )


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _message_parts(body: Any) -> list[dict[str, Any]]:
    """The per-part entries of a 200; a 200 without them may still have been a send."""
    parts = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) for p in parts):
        raise OutcomeUnknown(
            f"{PROVIDER} answered HTTP 200 without a messages list; "
            "the message may or may not have been accepted"
        )
    return parts


def _part_outcome(number: int, part: dict[str, Any]) -> str | PluginError:
    """A part's message id, or the error its status stands for."""
    status = str(part.get("status", ""))
    if status == "0":
        return str(part.get("message-id") or "")
    return _status_error(status, str(part.get("error-text") or ""), number)


def _status_error(status: str, text: str, part: int = 1) -> PluginError:
    error_class = STATUS_CLASSES.get(status, RetryableError)
    which = "the message" if part == 1 else f"part {part} of the message"
    message = f"{PROVIDER} refused {which} with status {status}: {text or 'no error text'}"
    if error_class is RetryableError and status == "1":
        return RetryableError(message, retry_after=_THROTTLE_RETRY_AFTER)
    return error_class(message)
