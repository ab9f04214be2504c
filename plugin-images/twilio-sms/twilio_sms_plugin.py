"""SMS and MMS through Twilio's Programmable Messaging API.

``Send`` is ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with the
form fields ``To`` (the recipient in E.164), ``From`` (or
``MessagingServiceSid``), ``Body``, one ``MediaUrl`` per attachment given by
URL (MMS), ``ContentSid`` and ``ContentVariables`` for a Content template,
and ``StatusCallback`` (``config.status_callback``, else the router's receipts
URL for this plugin); HTTP Basic auth with the account SID and auth token.
Twilio answers 201 with the message resource; its ``sid`` (``SM...``/``MM...``)
is the provider message id. Errors are classified by Twilio's error code
(``CODE_CLASSES``), then by HTTP status. ``CheckCredentials`` fetches the
account (``GET /Accounts/{AccountSid}.json``).

``HandleReceipt`` takes Twilio's status callbacks: the ``X-Twilio-Signature``
header must be the base64 HMAC-SHA1, keyed with the auth token, of the URL
Twilio called followed by every POST parameter, sorted by name, as name and
value without separators; ``MessageStatus`` becomes a delivery state
(``STATUS_STATES``). See docs/plugins/twilio-sms.md.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
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
    SendResult,
    Unauthenticated,
    providers,
)

PROVIDER: Final = "Twilio"
DEFAULT_BASE_URL: Final = "https://api.twilio.com"
#: Twilio takes at most ten MediaUrl values per message.
MAX_MEDIA: Final = 10
_CONTENT_SID: Final = re.compile(r"^HX[0-9a-fA-F]{32}$")
SIGNATURE_HEADER: Final = "X-Twilio-Signature"
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

#: MessageStatus values of an outbound message (Message resource, "Message
#: status values") and the delivery state each reports; statuses of inbound
#: messages (receiving, received) carry no news about a sent one.
STATUS_STATES: Final[dict[str, DeliveryState]] = {
    "accepted": DeliveryState.SENT,
    "scheduled": DeliveryState.SENT,
    "queued": DeliveryState.SENT,
    "sending": DeliveryState.SENT,
    "sent": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "read": DeliveryState.DELIVERED,
    # Some parts reached the handset: sending it again would repeat them.
    "partially_delivered": DeliveryState.DELIVERED,
    "undelivered": DeliveryState.FAILED,
    "failed": DeliveryState.FAILED,
    "canceled": DeliveryState.FAILED,
}

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
        self._warned_receipt_url = False
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

    async def handle_receipt(self, request: ReceiptRequest) -> list[Receipt]:
        """A status callback: verified with the auth token, then its MessageStatus."""
        fields = parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        signature = request.headers.get(SIGNATURE_HEADER.lower(), "")
        # Twilio signs the URL it called: the router's public URL for the
        # callback, or a status_callback that reaches the router another way.
        called = [request.url, *filter(None, [self.config.get("status_callback")])]
        token = self.config["auth_token"]
        if not signature or not any(
            providers.signatures_match(request_signature(token, url, fields), signature)
            for candidate in called
            for url in _port_variants(candidate)
        ):
            raise Unauthenticated(
                f"{SIGNATURE_HEADER} does not match the auth token and the URL called: the "
                f"callback was not sent by {PROVIDER} for this account, or was altered"
            )
        form = dict(fields)
        sid = form.get("MessageSid") or form.get("SmsSid") or ""
        status = form.get("MessageStatus") or form.get("SmsStatus") or ""
        state = STATUS_STATES.get(status)
        if not sid or state is None:
            return []
        error = ""
        if state is DeliveryState.FAILED:
            code = form.get("ErrorCode")
            error = f"{PROVIDER} reports the message {status}" + (
                f" (error {code})" if code else ""
            )
        return [Receipt(sid, state, error)]

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
        if callback := self.config.get("status_callback") or self._receipt_url(message):
            form["StatusCallback"] = callback
        return form

    def _receipt_url(self, message: Message) -> str:
        """The router's receipts URL, if Twilio would take it (error 21609 otherwise)."""
        if not message.receipt_url:
            return ""
        try:
            check_status_callback(message.receipt_url)
        except ConfigError as refused:
            if not self._warned_receipt_url:
                self._warned_receipt_url = True
                self.logger.warning(
                    "Not asking Twilio for status callbacks: the receipts URL is not one "
                    "Twilio takes",
                    extra={"reason": refused.message.removeprefix("config.status_callback: ")},
                )
            return ""
        return message.receipt_url


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


def request_signature(auth_token: str, url: str, fields: Sequence[tuple[str, str]]) -> str:
    """What ``X-Twilio-Signature`` holds for a request to ``url`` with POST ``fields``.

    Base64 of the HMAC-SHA1, keyed with the auth token, of the full URL (query
    string included) followed by each POST field's name and value, sorted by
    name (then value, for a repeated name), without separators.
    """
    signed = url + "".join(name + value for name, value in sorted(fields))
    return base64.b64encode(providers.hmac_digest(auth_token, signed.encode(), "sha1")).decode()


def _port_variants(url: str) -> list[str]:
    """``url`` as given and with its default port added or removed: the URL
    Twilio signs may carry ``:443`` where the configured one does not, or not."""
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme)
    if default is None or not parts.hostname:
        return [url]
    try:
        port = parts.port
    except ValueError:
        return [url]
    if port is None:
        return [url, parts._replace(netloc=f"{parts.netloc}:{default}").geturl()]
    if port == default:
        return [url, parts._replace(netloc=parts.netloc.rsplit(":", 1)[0]).geturl()]
    return [url]


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
