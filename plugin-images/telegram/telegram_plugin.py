"""Telegram messages and documents through the Bot API.

``Send`` posts ``sendMessage`` (``POST {base_url}/bot<token>/sendMessage``)
with the JSON ``{chat_id, text, entities}``, and one ``sendDocument`` per
attachment (the file's bytes as ``multipart/form-data``, or its URL for
Telegram to fetch); ``disable_notification`` and ``message_thread_id`` come
from metadata. The recipient is the chat id (a number, negative for groups)
or ``@channelusername``.

Formatting never relies on escaping: Markdown (``text/markdown``, converted
by telegramify-markdown) and HTML (``text/html``, converted by sulguk) become
plain text plus ``entities`` (bold, links, code, ...), which Telegram takes
as they are. A text longer than Telegram's 4,096 characters (UTF-16 code
units after entity parsing) is sent as several messages split at line
breaks, each entity kept in its part. A ``parse_mode`` from metadata or the
config means the text is already written in that Telegram syntax; it is
sent unchanged.

Telegram answers ``{ok: true, result: {message_id, chat: {id}}}``; the
provider message id is ``<chat id>:<message_id>`` because message ids are
only unique within a chat. Several messages are reported with
``providers.result_of_parts``. Errors are ``{ok: false, error_code,
description, parameters: {retry_after, migrate_to_chat_id}}``, classified by
``_error``. ``CheckCredentials`` calls ``getMe``. See docs/plugins/telegram.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import sulguk
import telegramify_markdown
from telegramify_markdown import MessageEntity

from switchboard.sdk import (
    Attachment,
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

PROVIDER: Final = "Telegram"
DEFAULT_BASE_URL: Final = "https://api.telegram.org"
PARSE_MODES: Final = ("HTML", "MarkdownV2", "Markdown")
#: sendMessage's text limit, in UTF-16 code units after entities parsing (Bot API).
MAX_TEXT: Final = 4096
_CHAT_ID: Final = re.compile(r"^(-?\d+|@[A-Za-z][A-Za-z0-9_]{3,})$")
_NUMERIC: Final = re.compile(r"^-?\d+$")


@dataclass(frozen=True)
class Text:
    """One sendMessage: its text and either its entities or a parse_mode."""

    text: str
    entities: list[dict[str, Any]] = field(default_factory=list)
    parse_mode: str | None = None


class TelegramPlugin(HttpProviderPlugin):
    """Sends Telegram messages and documents as a bot."""

    channel_type = "telegram"
    capabilities = ("send", "html", "markdown", "attachments", "media_urls")
    provider = PROVIDER
    default_base_url = DEFAULT_BASE_URL

    def base_url(self) -> str:
        return f"{super().base_url().rstrip('/')}/bot{self.config['bot_token']}"

    async def send_message(self, message: Message) -> SendResult:
        providers.require_capabilities(message, self.capabilities, provider=PROVIDER)
        chat_id = message.recipient.strip()
        if not _CHAT_ID.match(chat_id):
            raise InvalidInput(
                f"recipient: {message.recipient!r} is not a Telegram chat id "
                "(a number, or @channelusername)"
            )
        if not (message.content or message.attachments):
            raise InvalidInput("content: Telegram needs a text or an attachment")
        common: dict[str, Any] = {"chat_id": int(chat_id) if _NUMERIC.match(chat_id) else chat_id}
        if message.metadata.get("disable_notification", "").lower() == "true":
            common["disable_notification"] = True
        if thread := message.metadata.get("message_thread_id"):
            if not thread.isdigit():
                raise InvalidInput("metadata.message_thread_id: must be a number")
            common["message_thread_id"] = int(thread)
        texts = self._texts(message) if message.content else []
        total = len(texts) + len(message.attachments)
        outcomes: list[str | PluginError] = []
        chat_ref = str(common["chat_id"])
        try:
            for text in texts:
                chat_ref, message_id = await self._send_text(common, text)
                outcomes.append(f"{chat_ref}:{message_id}")
            for attachment in message.attachments:
                chat_ref, message_id = await self._send_document(common, attachment)
                outcomes.append(f"{chat_ref}:{message_id}")
        except PluginError as error:
            # Stop: later parts would arrive out of order or fail alike, and what
            # was delivered must not be sent again (result_of_parts says so).
            outcomes.append(error)
        return providers.result_of_parts(outcomes, total=total, details={"chat_id": chat_ref})

    async def check_credentials(self) -> str:
        bot = await self._call("getMe", json_body=None)
        name = bot.get("username") if isinstance(bot, dict) else None
        return f"{PROVIDER} accepted the token of bot @{name}"

    def _texts(self, message: Message) -> list[Text]:
        """The sendMessage texts of ``message``: converted to entities and split, or
        unchanged in the Telegram syntax that metadata or the config names."""
        explicit = message.metadata.get("parse_mode")
        if explicit is not None and explicit not in ("", *PARSE_MODES):
            raise InvalidInput(
                f"metadata.parse_mode: {explicit!r} is not one of {', '.join(PARSE_MODES)}"
            )
        content_type = message.content_type.split(";")[0].strip().lower()
        if explicit is None and content_type in ("text/markdown", "text/html"):
            return split_text(*entities_of(message.content, content_type))
        parse_mode = explicit if explicit is not None else self.config.get("parse_mode")
        if parse_mode:
            return [Text(message.content, parse_mode=parse_mode)]
        return split_text(message.content, [])

    async def _send_text(self, common: dict[str, Any], text: Text) -> tuple[str, str]:
        body: dict[str, Any] = {**common, "text": text.text}
        if text.parse_mode:
            body["parse_mode"] = text.parse_mode
        elif text.entities:
            body["entities"] = text.entities
        return _sent(await self._call("sendMessage", json_body=body), common)

    async def _send_document(
        self, common: dict[str, Any], attachment: Attachment
    ) -> tuple[str, str]:
        if attachment.url:
            # Telegram fetches it (by URL it only takes GIF, PDF and ZIP documents).
            result = await self._call(
                "sendDocument", json_body={**common, "document": attachment.url}
            )
        else:
            form = {
                name: json.dumps(value) if isinstance(value, bool) else str(value)
                for name, value in common.items()
            }
            upload = {"document": (attachment.filename, attachment.data, attachment.content_type)}
            result = await self._call("sendDocument", form=form, files=upload)
        return _sent(result, common)

    async def _call(
        self,
        method: str,
        *,
        json_body: dict[str, Any] | None = None,
        form: dict[str, str] | None = None,
        files: dict[str, Any] | None = None,
    ) -> Any:
        response = await self.request("POST", f"/{method}", json=json_body, data=form, files=files)
        body = _json_or_none(response)
        if response.is_success and isinstance(body, dict) and body.get("ok") is True:
            return body.get("result")
        if not isinstance(body, dict):
            raise providers.error_for_response(response, provider=PROVIDER)
        raise _error(body, response)


def entities_of(content: str, content_type: str) -> tuple[str, list[MessageEntity]]:
    """Plain text and Telegram entities for Markdown or HTML ``content``."""
    if content_type == "text/markdown":
        text, entities = telegramify_markdown.convert(content)
        return _trimmed(text, list(entities))
    rendered = sulguk.transform_html(content)
    converted = [
        MessageEntity(
            type=entity["type"],
            offset=entity["offset"],
            length=entity["length"],
            url=entity.get("url"),
            language=entity.get("language"),
            custom_emoji_id=entity.get("custom_emoji_id"),
        )
        for entity in rendered.entities
    ]
    return _trimmed(rendered.text, converted)


def _trimmed(text: str, entities: list[MessageEntity]) -> tuple[str, list[MessageEntity]]:
    """``text`` without the trailing line breaks the converters add, entities cut to it."""
    trimmed = text.rstrip("\n")
    end = telegramify_markdown.utf16_len(trimmed)
    kept = []
    for entity in entities:
        length = min(entity.offset + entity.length, end) - entity.offset
        if length > 0:
            kept.append(entity.copy_with(length=length))
    return trimmed, kept


def split_text(text: str, entities: list[MessageEntity]) -> list[Text]:
    """``text`` in parts of at most ``MAX_TEXT`` UTF-16 units, split at line breaks
    where it can; each entity is cut to the parts it spans."""
    parts = telegramify_markdown.split_entities(text, entities, MAX_TEXT)
    return [
        Text(part, [entity.to_dict() for entity in part_entities])
        for part, part_entities in parts
        if part.strip()
    ]


def _sent(result: Any, common: dict[str, Any]) -> tuple[str, str]:
    """``(chat id, message_id)`` of a sent message, or OutcomeUnknown without an id."""
    message_id = result.get("message_id") if isinstance(result, dict) else None
    if message_id is None:
        raise OutcomeUnknown(
            f"{PROVIDER} accepted the message without a message_id; it was probably sent"
        )
    chat = result.get("chat") if isinstance(result, dict) else None
    chat_ref = chat.get("id") if isinstance(chat, dict) else None
    return str(chat_ref if chat_ref is not None else common["chat_id"]), str(message_id)


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
