"""SMS through Twilio's Programmable Messaging API.

``Send`` is ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with the
form fields ``To`` (the recipient in E.164), ``From`` (or
``MessagingServiceSid``), ``Body`` and, when configured, ``StatusCallback``;
HTTP Basic auth with the account SID and auth token. Twilio answers 201 with
the message resource; its ``sid`` (``SM...``) is the provider message id.
``CheckCredentials`` fetches the account (``GET /Accounts/{AccountSid}.json``).
See docs/plugins/twilio-sms.md.
"""

from __future__ import annotations

from typing import Any, Final

import httpx

from switchboard.sdk import (
    ConfigError,
    InvalidInput,
    Message,
    MessagingPlugin,
    OutcomeUnknown,
    PermanentError,
    PluginError,
    SendResult,
    Unauthenticated,
    providers,
)

PROVIDER: Final = "Twilio"
DEFAULT_BASE_URL: Final = "https://api.twilio.com"

#: Twilio error codes (https://www.twilio.com/docs/api/errors) whose class
#: differs from what the HTTP status alone says.
_PERMANENT_CODES: Final = frozenset(
    {
        21610,  # the recipient replied STOP: unsubscribed
        21612,  # the To number can't be reached from the From number
        21635,  # the To number can't receive SMS (landline)
    }
)
_CONFIG_CODES: Final = frozenset(
    {
        21212,  # invalid From number
        21408,  # the account may not send to this region
        21606,  # the From number can't send SMS
        21659,  # the From number is not a Twilio number
        21703,  # the messaging service has no phone numbers
    }
)


class TwilioSmsPlugin(MessagingPlugin):
    """Sends SMS with Twilio."""

    channel_type = "sms"
    capabilities = ("send", "text_messaging", "delivery_receipts")

    def validate_config(self) -> None:
        if not (self.config.get("from_number") or self.config.get("messaging_service_sid")):
            raise ConfigError("config: set from_number or messaging_service_sid")
        if "default_region" in self.config:
            providers.validate_region(self.config["default_region"])

    async def initialize(self) -> None:
        self._account_sid: str = self.config["account_sid"]
        self._http = providers.http_client(
            base_url=self.config.get("base_url", DEFAULT_BASE_URL),
            timeout=self.config.get("timeout_seconds"),
            auth=(self._account_sid, self.config["auth_token"]),
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
        form = {"To": to, "Body": message.content}
        if service := self.config.get("messaging_service_sid"):
            form["MessagingServiceSid"] = service
        if sender := self.config.get("from_number"):
            form["From"] = sender
        if callback := self.config.get("status_callback"):
            form["StatusCallback"] = callback
        response = await providers.send_request(
            self._http,
            "POST",
            f"/2010-04-01/Accounts/{self._account_sid}/Messages.json",
            provider=PROVIDER,
            data=form,
        )
        if not response.is_success:
            raise _error(response)
        sent = providers.response_json(response, provider=PROVIDER)
        sid = sent.get("sid") if isinstance(sent, dict) else None
        if not isinstance(sid, str) or not sid:
            raise OutcomeUnknown(
                f"{PROVIDER} answered HTTP {response.status_code} without a message sid; "
                "it was probably sent"
            )
        return SendResult(
            sid,
            details={
                "status": str(sent.get("status") or ""),
                "to": to,
                "segments": str(sent.get("num_segments") or ""),
            },
        )

    async def check_credentials(self) -> str:
        response = await providers.send_request(
            self._http,
            "GET",
            f"/2010-04-01/Accounts/{self._account_sid}.json",
            provider=PROVIDER,
        )
        if not response.is_success:
            raise _error(response)
        account = providers.response_json(response, provider=PROVIDER)
        status = account.get("status") if isinstance(account, dict) else None
        if status not in (None, "active"):
            raise Unauthenticated(f"{PROVIDER} account {self._account_sid} is {status}")
        return f"{PROVIDER} accepted the credentials of account {self._account_sid}"


def _error(response: httpx.Response) -> PluginError:
    """Twilio's error body is ``{code, message, more_info, status}``."""
    body: Any
    try:
        body = response.json()
    except ValueError:
        body = None
    code = body.get("code") if isinstance(body, dict) else None
    detail = providers.response_detail(response)
    if isinstance(code, int):
        detail = f"{detail} (code {code})"
        if code in _PERMANENT_CODES:
            return PermanentError(f"{PROVIDER} refused the message: {detail}")
        if code in _CONFIG_CODES:
            return ConfigError(f"{PROVIDER} refused the sender configuration: {detail}")
    return providers.error_for_response(response, provider=PROVIDER, detail=detail)
