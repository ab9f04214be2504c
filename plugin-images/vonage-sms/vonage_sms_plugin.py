"""SMS through the Vonage (Nexmo) SMS API.

``Send`` is ``POST /sms/json`` on https://rest.nexmo.com, form-encoded:
``api_key``, ``api_secret``, ``from``, ``to`` (E.164 without the ``+``),
``text``, ``type=unicode`` when the text doesn't fit the GSM 7-bit alphabet,
and optionally ``callback`` (delivery receipts) and ``client-ref`` (the
idempotency key). Vonage answers HTTP 200 even when it refuses a message: each
part of the message has its own ``status`` code in ``messages[]``, classified
by ``STATUS_CLASSES``. ``CheckCredentials`` reads the account balance
(``GET /account/get-balance``, Basic auth).
See docs/plugins/vonage-sms.md.
"""

from __future__ import annotations

import base64
from typing import Any, Final

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
    "8": Unauthenticated,  # Partner Account Barred: the account is suspended
    "9": RetryableError,  # Partner Quota Violation: not enough credit
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


class VonageSmsPlugin(MessagingPlugin):
    """Sends SMS with Vonage."""

    channel_type = "sms"
    capabilities = ("send", "text_messaging", "delivery_receipts")

    def validate_config(self) -> None:
        if "default_region" in self.config:
            providers.validate_region(self.config["default_region"])

    async def initialize(self) -> None:
        self._http = providers.http_client(
            base_url=self.config.get("base_url", DEFAULT_BASE_URL),
            timeout=self.config.get("timeout_seconds"),
        )

    async def cleanup(self) -> None:
        await self._http.aclose()

    async def send_message(self, message: Message) -> SendResult:
        to = providers.normalize_phone_number(
            message.recipient,
            default_region=self.config.get("default_region"),
            strict=self.config.get("strict_phone_numbers", False),
        )
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
        response = await providers.send_request(
            self._http, "POST", "/sms/json", provider=PROVIDER, data=form
        )
        providers.raise_for_status(response, provider=PROVIDER)
        parts = _message_parts(providers.response_json(response, provider=PROVIDER))
        for part in parts:
            status = str(part.get("status", ""))
            if status != "0":
                raise _status_error(status, str(part.get("error-text") or ""))
        ids = [str(part.get("message-id") or "") for part in parts]
        return SendResult(
            ids[0],
            details={
                "to": to,
                "parts": str(len(parts)),
                "message_ids": ",".join(ids),
                "network": str(parts[0].get("network") or ""),
            },
        )

    async def check_credentials(self) -> str:
        # Basic auth rather than the query string, which would put the secret in URLs.
        response = await providers.send_request(
            self._http,
            "GET",
            "/account/get-balance",
            provider=PROVIDER,
            headers={"Authorization": _basic(self.config["api_key"], self.config["api_secret"])},
        )
        providers.raise_for_status(response, provider=PROVIDER)
        balance = providers.response_json(response, provider=PROVIDER)
        value = balance.get("value") if isinstance(balance, dict) else None
        return f"{PROVIDER} accepted the API key; balance {value}"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _message_parts(body: Any) -> list[dict[str, Any]]:
    parts = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) for p in parts):
        raise RetryableError(f"{PROVIDER} answered without a messages list")
    return parts


def _status_error(status: str, text: str) -> PluginError:
    error_class = STATUS_CLASSES.get(status, RetryableError)
    message = f"{PROVIDER} refused the message with status {status}: {text or 'no error text'}"
    if error_class is RetryableError and status == "1":
        return RetryableError(message, retry_after=_THROTTLE_RETRY_AFTER)
    return error_class(message)
