"""WhatsApp messages through the WhatsApp Business Cloud API (Meta Graph API).

``Send`` is ``POST {base_url}/v<api_version>/<phone_number_id>/messages`` with
``Authorization: Bearer <access token>`` and a JSON body with
``messaging_product: "whatsapp"``, ``to`` (E.164) and one of

* ``type: "text"``, ``text: {body, preview_url}`` (the default);
* ``type: "template"``, ``template: {name, language: {code}, components}``
  for the message's template (outside the 24-hour customer-service window
  only templates are delivered);
* ``type: "image" | "video" | "audio" | "document"`` with ``{link | id,
  caption, filename}``, one message per attachment, the content as the first
  one's caption: an attachment given by URL is a ``link`` Meta fetches, one
  with its bytes is uploaded first (``POST /<phone_number_id>/media``,
  multipart) and sent by the media ``id`` Meta answers.

Meta answers ``{messages: [{id: "wamid..."}]}``; that id is the provider
message id. A message sent as several (media) is reported with
``providers.result_of_parts``. Errors are ``{error: {message, type, code,
error_subcode, fbtrace_id}}`` and are classified by ``(code, subcode)``
(``SUBCODE_CLASSES``), then ``code`` (``CODE_CLASSES``), then by HTTP status.
``CheckCredentials`` reads the phone number (``GET
/v<api_version>/<phone_number_id>``).

``HandleReceipt`` takes the app's webhook: Meta's subscription check (a GET
with ``hub.mode=subscribe``, ``hub.verify_token`` equal to
``config.verify_token``, answered with ``hub.challenge`` as text) and status
notifications (a POST whose ``X-Hub-Signature-256`` is ``sha256=`` and the hex
HMAC-SHA256 of the raw body keyed with ``config.app_secret``); each entry of
``statuses`` becomes a receipt for its ``wamid`` (``STATUS_STATES``). See
docs/plugins/whatsapp-business.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import httpx

from switchboard.sdk import (
    Attachment,
    ConfigError,
    DeliveryState,
    HttpProviderPlugin,
    InvalidInput,
    Message,
    OutcomeUnknown,
    PermanentError,
    PluginError,
    Receipt,
    ReceiptReply,
    ReceiptRequest,
    RetryableError,
    SendResult,
    Template,
    Unauthenticated,
    providers,
)

PROVIDER: Final = "WhatsApp"
DEFAULT_BASE_URL: Final = "https://graph.facebook.com"
DEFAULT_API_VERSION: Final = "23.0"
DEFAULT_TEMPLATE_LANGUAGE: Final = "en_US"
#: Media types that take a caption (audio takes none).
_CAPTIONED: Final = frozenset({"image", "video", "document"})
SIGNATURE_HEADER: Final = "X-Hub-Signature-256"

#: ``statuses[].status`` of the webhook's ``messages`` field (WhatsApp Cloud API,
#: "Status messages") and the delivery state each reports.
STATUS_STATES: Final[dict[str, DeliveryState]] = {
    "sent": DeliveryState.SENT,  # on WhatsApp's servers, not on the phone yet
    "delivered": DeliveryState.DELIVERED,  # on the recipient's phone
    "read": DeliveryState.DELIVERED,  # opened (only with read receipts on)
    "played": DeliveryState.DELIVERED,  # a voice message was played
    "failed": DeliveryState.FAILED,  # will not be delivered; errors[] say why
}

#: Graph API / WhatsApp Cloud API error codes by the error they become
#: (developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes);
#: docs/plugins/whatsapp-business.md lists them with their source.
CODE_CLASSES: Final[dict[int, type[PluginError]]] = {
    0: Unauthenticated,  # AuthException
    190: Unauthenticated,  # access token expired or invalid
    10: Unauthenticated,  # permission denied
    200: Unauthenticated,  # permission not granted
    131005: Unauthenticated,  # access denied
    131031: ConfigError,  # the business account is locked
    131042: ConfigError,  # business eligibility: a payment issue
    131045: ConfigError,  # the phone number's certificate is wrong
    1: RetryableError,  # API unknown: temporary
    2: RetryableError,  # API service: temporary downtime
    4: RetryableError,  # too many calls for the app
    80007: RetryableError,  # business account rate limit
    130429: RetryableError,  # throughput limit reached
    131016: RetryableError,  # service unavailable
    131048: RetryableError,  # spam rate limit
    131056: RetryableError,  # pair rate limit: too many messages to one number
    131000: RetryableError,  # something went wrong
    368: RetryableError,  # temporarily blocked for policy violations
    100: InvalidInput,  # invalid parameter
    131008: InvalidInput,  # required parameter missing
    131009: InvalidInput,  # parameter value invalid
    131021: InvalidInput,  # recipient is the sender
    131051: InvalidInput,  # unsupported message type
    131053: InvalidInput,  # media upload error: the linked media can't be used
    132000: InvalidInput,  # template parameter count mismatch
    132001: InvalidInput,  # template does not exist (in that language)
    132005: InvalidInput,  # translated template text too long
    132007: InvalidInput,  # template violates a policy
    132012: InvalidInput,  # template parameter format mismatch
    131026: PermanentError,  # undeliverable (not on WhatsApp, old client, ...)
    131047: PermanentError,  # 24-hour window closed: send a template
    131050: PermanentError,  # the user stopped marketing messages
    131030: ConfigError,  # recipient not in the test number's allowed list
    133010: ConfigError,  # the phone number is not registered
}
#: (code, error_subcode) pairs that mean something else than their code alone.
SUBCODE_CLASSES: Final[dict[tuple[int, int], type[PluginError]]] = {
    # "Object with ID ... does not exist, cannot be loaded due to missing
    # permissions": the configured phone_number_id or the token's access to it.
    (100, 33): ConfigError,
}


@dataclass(frozen=True)
class Outgoing:
    """One WhatsApp message to send: its JSON, and the attachment to upload first, if any."""

    content: dict[str, Any]
    upload: Attachment | None = None


class WhatsappBusinessPlugin(HttpProviderPlugin):
    """Sends WhatsApp text, media and template messages with the Cloud API."""

    channel_type = "whatsapp"
    capabilities = (
        "send",
        "text_messaging",
        "templates",
        "media_urls",
        "attachments",
        "delivery_receipts",
    )
    provider = PROVIDER
    default_base_url = DEFAULT_BASE_URL

    def client_headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self.config['access_token']}"}

    async def initialize(self) -> None:
        version = str(self.config.get("api_version", DEFAULT_API_VERSION)).removeprefix("v")
        self._path = f"/v{version}/{self.config['phone_number_id']}"
        await super().initialize()

    async def send_message(self, message: Message) -> SendResult:
        providers.require_capabilities(message, self.capabilities, provider=PROVIDER)
        to = self.phone_number(message.recipient)
        contents = self._contents(message)
        outcomes: list[str | PluginError] = []
        details = {"to": to, "type": contents[0].content["type"]}
        for outgoing in contents:
            try:
                message_id, status = await self._send_one(to, outgoing)
            except PluginError as error:
                # The rest is not sent: it would likely fail alike, and what was
                # delivered must not be sent again (result_of_parts says so).
                outcomes.append(error)
                break
            outcomes.append(message_id)
            if status and "message_status" not in details:
                # Meta's verdict on a template ("accepted", "held_for_quality_assessment").
                details["message_status"] = status
        return providers.result_of_parts(outcomes, total=len(contents), details=details)

    async def handle_receipt(self, request: ReceiptRequest) -> list[Receipt] | ReceiptReply:
        """Meta's subscription check (GET), or a signed notification (POST)."""
        if request.method.upper() == "GET":
            return ReceiptReply(body=self._challenge(request.url), content_type="text/plain")
        secret = self.config.get("app_secret")
        if not secret:
            raise Unauthenticated(
                "config.app_secret is not set, so WhatsApp's webhook notifications cannot be "
                "verified and none is believed"
            )
        signature = request.headers.get(SIGNATURE_HEADER.lower(), "")
        expected = "sha256=" + providers.hmac_hex(secret, request.body)
        if not providers.signatures_match(expected, signature.strip()):
            raise Unauthenticated(
                f"{SIGNATURE_HEADER} does not match the app secret: the notification was not "
                "sent by Meta for this app, or was altered"
            )
        try:
            notification = json.loads(request.body)
        except ValueError:
            raise InvalidInput(f"{PROVIDER}'s webhook notification is not JSON") from None
        return [status_receipt(status) for status in _statuses(notification)]

    def _challenge(self, url: str) -> str:
        """``hub.challenge``, when ``hub.verify_token`` is the configured token."""
        query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
        token = self.config.get("verify_token")
        if not token:
            raise Unauthenticated(
                "config.verify_token is not set, so Meta's webhook subscription check "
                "cannot succeed"
            )
        if query.get("hub.mode") != "subscribe" or not providers.signatures_match(
            token, query.get("hub.verify_token", "")
        ):
            raise Unauthenticated(
                "The webhook subscription check does not carry the configured verify token"
            )
        return query.get("hub.challenge", "")

    async def check_credentials(self) -> str:
        response = await self.request(
            "GET", self._path, params={"fields": "display_phone_number,verified_name"}
        )
        if not response.is_success:
            raise _error(response)
        number = providers.response_json(response, provider=PROVIDER)
        shown = number.get("display_phone_number") if isinstance(number, dict) else None
        return f"{PROVIDER} accepted the access token for phone number {shown}"

    async def _send_one(self, to: str, outgoing: Outgoing) -> tuple[str, str]:
        """Send one message (text, template or media) to ``to``: its wamid and
        ``message_status`` (empty when Meta gives none)."""
        content = outgoing.content
        if outgoing.upload is not None:
            kind = content["type"]
            content = content | {kind: {**content[kind], "id": await self._upload(outgoing.upload)}}
        payload = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to}
        response = await self.request("POST", f"{self._path}/messages", json=payload | content)
        if not response.is_success:
            raise _error(response)
        body = providers.response_json(response, provider=PROVIDER)
        messages = body.get("messages") if isinstance(body, dict) else None
        first = messages[0] if isinstance(messages, list) and messages else None
        message_id = first.get("id") if isinstance(first, dict) else None
        if not isinstance(message_id, str) or not message_id:
            raise OutcomeUnknown(
                f"{PROVIDER} accepted the message without an id; it was probably sent"
            )
        assert isinstance(first, dict)
        return message_id, str(first.get("message_status") or "")

    async def _upload(self, attachment: Attachment) -> str:
        """Upload ``attachment``'s bytes to Meta; the media id to send it by."""
        response = await self.request(
            "POST",
            f"{self._path}/media",
            data={"messaging_product": "whatsapp", "type": attachment.content_type},
            files={"file": (attachment.filename, attachment.data, attachment.content_type)},
        )
        if not response.is_success:
            raise _error(response)
        body = providers.response_json(response, provider=PROVIDER)
        media_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(media_id, str) or not media_id:
            raise RetryableError(f"{PROVIDER} answered the media upload without an id")
        return media_id

    def _contents(self, message: Message) -> list[Outgoing]:
        """The WhatsApp messages ``message`` becomes: a template, media, or a text."""
        template = message.template or _template_from_metadata(message.metadata)
        if template is not None:
            if message.attachments:
                raise InvalidInput(
                    "attachments: a WhatsApp template carries media in its header component, "
                    "not as attachments"
                )
            return [Outgoing({"type": "template", "template": self._template(template)})]
        if message.attachments:
            return media_messages(message.attachments, message.content)
        if not message.content:
            raise InvalidInput("content: a WhatsApp text message needs a body")
        preview = message.metadata.get("preview_url", "").lower() == "true"
        return [
            Outgoing({"type": "text", "text": {"body": message.content, "preview_url": preview}})
        ]

    def _template(self, template: Template) -> dict[str, Any]:
        language = template.language or self.config.get(
            "template_language", DEFAULT_TEMPLATE_LANGUAGE
        )
        body: dict[str, Any] = {"name": template.id, "language": {"code": language}}
        components = template_components(template.variables)
        if components:
            body["components"] = components
        return body


def media_messages(attachments: tuple[Attachment, ...], caption: str) -> list[Outgoing]:
    """One media message per attachment; ``caption`` goes on the first that takes one.

    The media type follows the MIME type (``image/*``, ``video/*``, ``audio/*``,
    anything else a document named by its file name); a URL is the media's
    ``link``, bytes are uploaded first. A caption no media can carry (only
    audio) is sent first as a text message.
    """
    contents: list[Outgoing] = []
    for attachment in attachments:
        kind = _media_type(attachment.content_type)
        media: dict[str, Any] = {"link": attachment.url} if attachment.url else {}
        if kind == "document":
            media["filename"] = attachment.filename
        if caption and kind in _CAPTIONED:
            media["caption"] = caption
            caption = ""
        upload = None if attachment.url else attachment
        contents.append(Outgoing({"type": kind, kind: media}, upload))
    if caption:
        text = {"type": "text", "text": {"body": caption, "preview_url": False}}
        contents.insert(0, Outgoing(text))
    return contents


def template_components(variables: Mapping[str, Any]) -> list[Any]:
    """A template's ``components`` from the message template's variables.

    ``{"components": [...]}`` passes through as Meta documents it (header,
    body and button parameters); otherwise the variables are the body's text
    parameters: positional when every name is a number (``{"1": "A-1042"}``
    fills ``{{1}}``), named otherwise (``{"order": "A-1042"}`` fills
    ``{{order}}``, ``parameter_name``).
    """
    if "components" in variables:
        components = variables["components"]
        if not isinstance(components, list) or len(variables) != 1:
            raise InvalidInput(
                "template.variables: components must be a JSON array and stand alone"
            )
        return components
    if not variables:
        return []
    if all(str(name).isdigit() for name in variables):
        ordered = sorted(variables.items(), key=lambda item: int(item[0]))
        parameters = [{"type": "text", "text": _text(value)} for _, value in ordered]
    else:
        parameters = [
            {"type": "text", "parameter_name": str(name), "text": _text(value)}
            for name, value in variables.items()
        ]
    return [{"type": "body", "parameters": parameters}]


def status_receipt(status: dict[str, Any]) -> Receipt:
    """The receipt of one ``statuses[]`` entry (its state known: ``_statuses`` filters)."""
    state = STATUS_STATES[status["status"]]
    error = ""
    if state is DeliveryState.FAILED:
        errors = status.get("errors")
        first = errors[0] if isinstance(errors, list) and errors else None
        error = f"{PROVIDER} reports the message failed" + (
            f": {_status_error(first)}" if isinstance(first, dict) else ""
        )
    return Receipt(status["id"], state, error)


def _statuses(notification: Any) -> Iterator[dict[str, Any]]:
    """The ``statuses`` entries with an id and a known status, in every change of
    every entry of a ``whatsapp_business_account`` notification."""
    if not isinstance(notification, dict):
        return
    if notification.get("object") != "whatsapp_business_account":
        return
    for entry in notification.get("entry") or []:
        for change in (entry.get("changes") or []) if isinstance(entry, dict) else []:
            value = change.get("value") if isinstance(change, dict) else None
            statuses = value.get("statuses") if isinstance(value, dict) else None
            for status in statuses if isinstance(statuses, list) else []:
                if (
                    isinstance(status, dict)
                    and isinstance(status.get("id"), str)
                    and status["id"]
                    and status.get("status") in STATUS_STATES
                ):
                    yield status


def _status_error(error: dict[str, Any]) -> str:
    """``title (code N): details`` of a status's first error, on one line."""
    title = " ".join(str(error.get("title") or error.get("message") or "no title").split())
    code = f" (code {error['code']})" if error.get("code") is not None else ""
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    return f"{title}{code}" + (f": {' '.join(str(details).split())}" if details else "")


def _template_from_metadata(metadata: Mapping[str, str]) -> Template | None:
    """The older way to ask for a template: metadata ``template``, ``template_language``
    and ``template_components`` (a JSON array)."""
    name = metadata.get("template")
    if not name:
        return None
    components = providers.metadata_json(metadata, "template_components")
    if components is not None and not isinstance(components, list):
        raise InvalidInput("metadata.template_components: must be a JSON array")
    variables = {"components": components} if components is not None else {}
    return Template(name, variables, metadata.get("template_language", ""))


def _media_type(content_type: str) -> str:
    major = content_type.partition("/")[0].lower()
    return major if major in ("image", "video", "audio") else "document"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _error(response: httpx.Response) -> PluginError:
    """Classify ``{error: {message, type, code, error_subcode, fbtrace_id}}``."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return providers.error_for_response(response, provider=PROVIDER)
    code, subcode = error.get("code"), error.get("error_subcode")
    text = " ".join(str(error.get("message") or "no message").split())
    data = error.get("error_data")
    if isinstance(data, dict) and data.get("details"):
        text = f"{text} ({' '.join(str(data['details']).split())})"
    trace = f"; fbtrace_id {error['fbtrace_id']}" if error.get("fbtrace_id") else ""
    sub = f", subcode {subcode}" if subcode is not None else ""
    detail = f"{text} [code {code}{sub}{trace}]"
    retry_after = providers.parse_retry_after(response.headers.get("Retry-After"))
    error_class = (
        SUBCODE_CLASSES.get((code, subcode))
        if isinstance(code, int) and isinstance(subcode, int)
        else None
    )
    if error_class is None and isinstance(code, int):
        error_class = CODE_CLASSES.get(code)
    if error_class is None:
        return providers.error_for_status(
            response.status_code, provider=PROVIDER, detail=detail, retry_after=retry_after
        )
    message = f"{PROVIDER} answered HTTP {response.status_code}: {detail}"
    if error_class is RetryableError:
        return RetryableError(message, retry_after=retry_after)
    if error_class is ConfigError:
        return ConfigError(f"{message}; check the plugin's phone number and account")
    return error_class(message)
