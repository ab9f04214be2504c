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
See docs/plugins/vonage-sms.md.
"""

from __future__ import annotations

import base64
from typing import Any, Final

import httpx

from switchboard.sdk import (
    ConfigError,
    HttpProviderPlugin,
    InvalidInput,
    Message,
    OutcomeUnknown,
    PermanentError,
    PluginError,
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
        if callback := self.config.get("callback_url"):
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
