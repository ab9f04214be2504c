"""WhatsApp messages through the WhatsApp Business Cloud API (Meta Graph API).

``Send`` is ``POST {base_url}/v<api_version>/<phone_number_id>/messages`` with
``Authorization: Bearer <access token>`` and a JSON body with
``messaging_product: "whatsapp"``, ``to`` (E.164) and either

* ``type: "text"``, ``text: {body, preview_url}`` (the default), or
* ``type: "template"``, ``template: {name, language: {code}, components}``
  when metadata ``template`` names an approved template (``template_language``
  and ``template_components``, a JSON array, complete it). Outside the
  24-hour customer-service window only templates are delivered.

Meta answers ``{messages: [{id: "wamid..."}]}``; that id is the provider
message id. Errors are ``{error: {message, type, code, error_subcode,
fbtrace_id}}`` and are classified by their ``code`` (``CODE_CLASSES``), then
by HTTP status. ``CheckCredentials`` reads the phone number
(``GET /v<api_version>/<phone_number_id>``). See docs/plugins/whatsapp-business.md.
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
    RetryableError,
    SendResult,
    Unauthenticated,
    providers,
)

PROVIDER: Final = "WhatsApp"
DEFAULT_BASE_URL: Final = "https://graph.facebook.com"
DEFAULT_API_VERSION: Final = "23.0"
DEFAULT_TEMPLATE_LANGUAGE: Final = "en_US"

#: Graph API / WhatsApp Cloud API error codes by the error they become
#: (developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes).
CODE_CLASSES: Final[dict[int, type[PluginError]]] = {
    0: Unauthenticated,  # AuthException
    190: Unauthenticated,  # access token expired or invalid
    10: Unauthenticated,  # permission denied
    200: Unauthenticated,  # permission not granted
    131005: Unauthenticated,  # access denied
    131031: Unauthenticated,  # business account locked
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


class WhatsappBusinessPlugin(MessagingPlugin):
    """Sends WhatsApp text and template messages with the Cloud API."""

    channel_type = "whatsapp"
    capabilities = ("send", "text_messaging", "templates")

    def validate_config(self) -> None:
        if "default_region" in self.config:
            providers.validate_region(self.config["default_region"])

    async def initialize(self) -> None:
        version = str(self.config.get("api_version", DEFAULT_API_VERSION)).removeprefix("v")
        self._path = f"/v{version}/{self.config['phone_number_id']}"
        self._http = providers.http_client(
            base_url=self.config.get("base_url", DEFAULT_BASE_URL),
            timeout=self.config.get("timeout_seconds"),
            headers={"Authorization": f"Bearer {self.config['access_token']}"},
        )

    async def cleanup(self) -> None:
        await self._http.aclose()

    async def send_message(self, message: Message) -> SendResult:
        to = providers.normalize_phone_number(
            message.recipient,
            default_region=self.config.get("default_region"),
            strict=self.config.get("strict_phone_numbers", False),
        )
        payload: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
        }
        if template := message.metadata.get("template"):
            payload["type"] = "template"
            payload["template"] = self._template(template, message)
        else:
            if not message.content:
                raise InvalidInput("content: a WhatsApp text message needs a body")
            payload["type"] = "text"
            payload["text"] = {
                "body": message.content,
                "preview_url": message.metadata.get("preview_url", "").lower() == "true",
            }
        response = await providers.send_request(
            self._http, "POST", f"{self._path}/messages", provider=PROVIDER, json=payload
        )
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
        details = {"to": to, "type": payload["type"]}
        if isinstance(first, dict) and first.get("message_status"):
            details["message_status"] = str(first["message_status"])
        return SendResult(message_id, details=details)

    async def check_credentials(self) -> str:
        response = await providers.send_request(
            self._http,
            "GET",
            self._path,
            provider=PROVIDER,
            params={"fields": "display_phone_number,verified_name"},
        )
        if not response.is_success:
            raise _error(response)
        number = providers.response_json(response, provider=PROVIDER)
        shown = number.get("display_phone_number") if isinstance(number, dict) else None
        return f"{PROVIDER} accepted the access token for phone number {shown}"

    def _template(self, name: str, message: Message) -> dict[str, Any]:
        language = message.metadata.get("template_language") or self.config.get(
            "template_language", DEFAULT_TEMPLATE_LANGUAGE
        )
        template: dict[str, Any] = {"name": name, "language": {"code": language}}
        components = providers.metadata_json(message.metadata, "template_components")
        if components is not None:
            if not isinstance(components, list):
                raise InvalidInput("metadata.template_components: must be a JSON array")
            template["components"] = components
        return template


def _error(response: httpx.Response) -> PluginError:
    """Classify ``{error: {message, type, code, error_subcode, fbtrace_id}}``."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return providers.error_for_response(response, provider=PROVIDER)
    code = error.get("code")
    text = " ".join(str(error.get("message") or "no message").split())
    data = error.get("error_data")
    if isinstance(data, dict) and data.get("details"):
        text = f"{text} ({' '.join(str(data['details']).split())})"
    trace = f"; fbtrace_id {error['fbtrace_id']}" if error.get("fbtrace_id") else ""
    detail = f"{text} [code {code}{trace}]"
    retry_after = providers.parse_retry_after(response.headers.get("Retry-After"))
    error_class = CODE_CLASSES.get(code) if isinstance(code, int) else None
    if error_class is None:
        return providers.error_for_status(
            response.status_code, provider=PROVIDER, detail=detail, retry_after=retry_after
        )
    message = f"{PROVIDER} answered HTTP {response.status_code}: {detail}"
    if error_class is RetryableError:
        return RetryableError(message, retry_after=retry_after)
    return error_class(message)
