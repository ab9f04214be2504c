"""SMS and MMS through Twilio's Programmable Messaging API.

``Send`` is ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with the
form fields ``To`` (the recipient in E.164), ``From`` (or
``MessagingServiceSid``), ``Body``, one ``MediaUrl`` per attachment given by
URL (MMS), ``ContentSid`` and ``ContentVariables`` for a Content template,
and, when configured, ``StatusCallback``; HTTP Basic auth with the account SID
and auth token. Twilio answers 201 with the message resource; its ``sid``
(``SM...``/``MM...``) is the provider message id. Errors are classified by
Twilio's error code (``CODE_CLASSES``), then by HTTP status.
``CheckCredentials`` fetches the account (``GET /Accounts/{AccountSid}.json``).
See docs/plugins/twilio-sms.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from switchboard.sdk import (
    ConfigError,
    HttpProviderPlugin,
    InvalidInput,
    Message,
    OutcomeUnknown,
    PermanentError,
    PluginError,
    SendResult,
    Unauthenticated,
    providers,
)

PROVIDER: Final = "Twilio"
DEFAULT_BASE_URL: Final = "https://api.twilio.com"
#: Twilio takes at most ten MediaUrl values per message.
MAX_MEDIA: Final = 10
_CONTENT_SID: Final = re.compile(r"^HX[0-9a-fA-F]{32}$")

#: Twilio error codes (twilio.com/docs/api/errors) whose class differs from what
#: the HTTP status alone says; docs/plugins/twilio-sms.md lists them with their source.
CODE_CLASSES: Final[dict[int, type[PluginError]]] = {
    21610: PermanentError,  # the recipient replied STOP: unsubscribed
    21612: PermanentError,  # the To number can't be reached from the From number
    21635: PermanentError,  # the To number can't receive SMS (landline)
    21212: ConfigError,  # invalid From number
    21408: ConfigError,  # the account may not send to this region
    21606: ConfigError,  # the From number can't send SMS to this destination
    21608: ConfigError,  # trial account: the To number is not verified
    21609: ConfigError,  # invalid StatusCallback URL
    21659: ConfigError,  # the From number is not a Twilio number
    21660: ConfigError,  # the From number belongs to another account
    21661: ConfigError,  # the From number is not SMS-capable
    21703: ConfigError,  # the messaging service has no phone numbers
}


class TwilioSmsPlugin(HttpProviderPlugin):
    """Sends SMS and MMS with Twilio."""

    channel_type = "sms"
    capabilities = ("send", "text_messaging", "delivery_receipts", "media_urls", "templates")
    provider = PROVIDER
    default_base_url = DEFAULT_BASE_URL

    def validate_config(self) -> None:
        super().validate_config()
        if not (self.config.get("from_number") or self.config.get("messaging_service_sid")):
            raise ConfigError("config: set from_number or messaging_service_sid")
        if callback := self.config.get("status_callback"):
            check_status_callback(callback)

    def client_auth(self) -> tuple[str, str]:
        return (self.config["account_sid"], self.config["auth_token"])

    async def send_message(self, message: Message) -> SendResult:
        providers.require_capabilities(message, self.capabilities, provider=PROVIDER)
        to = self.phone_number(message.recipient)
        form = self._form(message, to)
        response = await self.request(
            "POST",
            f"/2010-04-01/Accounts/{self.config['account_sid']}/Messages.json",
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
                "media": str(sent.get("num_media") or "0"),
            },
        )

    async def check_credentials(self) -> str:
        account_sid = self.config["account_sid"]
        response = await self.request("GET", f"/2010-04-01/Accounts/{account_sid}.json")
        if not response.is_success:
            raise _error(response)
        account = providers.response_json(response, provider=PROVIDER)
        status = account.get("status") if isinstance(account, dict) else None
        if status not in (None, "active"):
            raise Unauthenticated(f"{PROVIDER} account {account_sid} is {status}")
        return f"{PROVIDER} accepted the credentials of account {account_sid}"

    def _form(self, message: Message, to: str) -> dict[str, Any]:
        """The Messages form: ``To``, the sender, then the content (Body, MediaUrl, ContentSid)."""
        form: dict[str, Any] = {"To": to}
        if service := self.config.get("messaging_service_sid"):
            form["MessagingServiceSid"] = service
        if sender := self.config.get("from_number"):
            form["From"] = sender
        if message.content:
            form["Body"] = message.content
        media = [attachment.url for attachment in message.attachments]
        if len(media) > MAX_MEDIA:
            raise InvalidInput(f"attachments: Twilio sends at most {MAX_MEDIA} media per message")
        if media:
            form["MediaUrl"] = media
        if message.template is not None:
            form |= content_template(message.template.id, message.template.variables)
        if not (message.content or media or message.template):
            raise InvalidInput("content: a Twilio message needs a body, media or a template")
        if callback := self.config.get("status_callback"):
            form["StatusCallback"] = callback
        return form


def content_template(sid: str, variables: Mapping[str, Any]) -> dict[str, str]:
    """``ContentSid`` and ``ContentVariables`` (a JSON object of strings) for a Content template."""
    if not _CONTENT_SID.match(sid):
        raise InvalidInput(f"template.id: {sid!r} is not a Twilio Content SID (HX + 32 hex digits)")
    form = {"ContentSid": sid}
    if variables:
        form["ContentVariables"] = json.dumps(
            {str(name): value if isinstance(value, str) else json.dumps(value)
             for name, value in variables.items()},
            ensure_ascii=False,
        )  # fmt: skip
    return form


def check_status_callback(url: str) -> None:
    """``ConfigError`` for a StatusCallback Twilio refuses (error 21609).

    Twilio requires an absolute http(s) URL whose host name has no underscore
    (host names are letters, digits, hyphens and dots: RFC 952/1123).
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError("config.status_callback: must be an absolute http(s) URL")
    if "_" in host:
        raise ConfigError(
            f"config.status_callback: host {host!r} has an underscore, which Twilio refuses "
            "(error 21609)"
        )


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
        error_class = CODE_CLASSES.get(code)
        if error_class is PermanentError:
            return PermanentError(f"{PROVIDER} refused the message: {detail}")
        if error_class is ConfigError:
            return ConfigError(f"{PROVIDER} refused the sender configuration: {detail}")
    return providers.error_for_response(response, provider=PROVIDER, detail=detail)
