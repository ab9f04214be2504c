"""Telegram messages through the Bot API.

``Send`` is ``POST {base_url}/bot<token>/sendMessage`` with the JSON
``{chat_id, text, parse_mode}`` (plus ``disable_notification`` and
``message_thread_id`` from metadata); the recipient is the chat id (a number,
negative for groups) or ``@channelusername``. Telegram answers
``{ok: true, result: {message_id, chat: {id}}}``; the provider message id is
``<chat id>:<message_id>`` because message ids are only unique within a chat.
Errors are ``{ok: false, error_code, description, parameters: {retry_after,
migrate_to_chat_id}}``, classified by ``_error``. ``CheckCredentials`` calls
``getMe``. See docs/plugins/telegram.md.
"""

from __future__ import annotations

import re
from typing import Any, Final

import httpx

from switchboard.sdk import (
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

PROVIDER: Final = "Telegram"
DEFAULT_BASE_URL: Final = "https://api.telegram.org"
PARSE_MODES: Final = ("HTML", "MarkdownV2", "Markdown")
#: parse_mode for a message's content_type, when metadata and config don't set one.
_PARSE_MODE_OF_CONTENT_TYPE: Final = {"text/html": "HTML", "text/markdown": "MarkdownV2"}
_CHAT_ID: Final = re.compile(r"^(-?\d+|@[A-Za-z][A-Za-z0-9_]{3,})$")
_NUMERIC: Final = re.compile(r"^-?\d+$")


class TelegramPlugin(MessagingPlugin):
    """Sends Telegram messages as a bot."""

    channel_type = "telegram"
    capabilities = ("send", "html", "markdown")

    async def initialize(self) -> None:
        base_url = self.config.get("base_url", DEFAULT_BASE_URL).rstrip("/")
        self._http = providers.http_client(
            base_url=f"{base_url}/bot{self.config['bot_token']}",
            timeout=self.config.get("timeout_seconds"),
        )

    async def cleanup(self) -> None:
        await self._http.aclose()

    async def send_message(self, message: Message) -> SendResult:
        chat_id = message.recipient.strip()
        if not _CHAT_ID.match(chat_id):
            raise InvalidInput(
                f"recipient: {message.recipient!r} is not a Telegram chat id "
                "(a number, or @channelusername)"
            )
        if not message.content:
            raise InvalidInput("content: Telegram needs a text")
        payload: dict[str, Any] = {
            "chat_id": int(chat_id) if _NUMERIC.match(chat_id) else chat_id,
            "text": message.content,
        }
        if parse_mode := self._parse_mode(message):
            payload["parse_mode"] = parse_mode
        if message.metadata.get("disable_notification", "").lower() == "true":
            payload["disable_notification"] = True
        if thread := message.metadata.get("message_thread_id"):
            if not thread.isdigit():
                raise InvalidInput("metadata.message_thread_id: must be a number")
            payload["message_thread_id"] = int(thread)
        result = await self._call("sendMessage", payload)
        message_id = result.get("message_id") if isinstance(result, dict) else None
        if message_id is None:
            raise OutcomeUnknown(
                f"{PROVIDER} accepted the message without a message_id; it was probably sent"
            )
        chat = result.get("chat") if isinstance(result, dict) else None
        chat_ref = str(chat.get("id") if isinstance(chat, dict) else chat_id)
        return SendResult(
            f"{chat_ref}:{message_id}",
            details={"chat_id": chat_ref, "message_id": str(message_id)},
        )

    async def check_credentials(self) -> str:
        bot = await self._call("getMe", None)
        name = bot.get("username") if isinstance(bot, dict) else None
        return f"{PROVIDER} accepted the token of bot @{name}"

    def _parse_mode(self, message: Message) -> str | None:
        explicit = message.metadata.get("parse_mode")
        if explicit is not None:
            if explicit and explicit not in PARSE_MODES:
                raise InvalidInput(
                    f"metadata.parse_mode: {explicit!r} is not one of {', '.join(PARSE_MODES)}"
                )
            return explicit or None
        content_type = message.content_type.split(";")[0].strip().lower()
        configured: str | None = self.config.get("parse_mode")
        return _PARSE_MODE_OF_CONTENT_TYPE.get(content_type, configured)

    async def _call(self, method: str, payload: dict[str, Any] | None) -> Any:
        response = await providers.send_request(
            self._http, "POST", f"/{method}", provider=PROVIDER, json=payload
        )
        body = _json_or_none(response)
        if response.is_success and isinstance(body, dict) and body.get("ok") is True:
            return body.get("result")
        if not isinstance(body, dict):
            raise providers.error_for_response(response, provider=PROVIDER)
        raise _error(body, response)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error(body: dict[str, Any], response: httpx.Response) -> PluginError:
    """Classify ``{ok: false, error_code, description, parameters}``.

    Telegram's 403 means the chat refuses the bot (blocked, kicked, not a
    member), not that the token is wrong, so it is PERMANENT; an unknown
    token answers 401 or 404.
    """
    code = body.get("error_code")
    status = code if isinstance(code, int) else response.status_code
    description = " ".join(str(body.get("description") or "no description").split())
    parameters = body.get("parameters")
    parameters = parameters if isinstance(parameters, dict) else {}
    message = f"{PROVIDER} answered {status}: {description}"
    if status == 429 or "retry_after" in parameters:
        retry_after = parameters.get("retry_after")
        seconds = (
            float(retry_after)
            if isinstance(retry_after, int | float)
            else providers.parse_retry_after(response.headers.get("Retry-After"))
        )
        return RetryableError(message, retry_after=seconds)
    if status in (401, 404):
        return Unauthenticated(f"{message}; check the bot token")
    if status == 403:
        return PermanentError(message)
    if status == 400:
        if "migrate_to_chat_id" in parameters:
            return PermanentError(
                f"{message}; the group is now supergroup {parameters['migrate_to_chat_id']}"
            )
        if "chat not found" in description.lower() or "user not found" in description.lower():
            return PermanentError(message)
        return InvalidInput(message)
    return providers.error_for_status(
        status,
        provider=PROVIDER,
        detail=description,
        retry_after=providers.parse_retry_after(response.headers.get("Retry-After")),
    )
