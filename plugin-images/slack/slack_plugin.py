"""Slack messages through an incoming webhook or ``chat.postMessage``.

Two modes, chosen by the config:

* ``webhook_url``: ``POST`` the JSON message to the incoming webhook. Slack
  answers 200 with the text ``ok``, or an error code as text (``no_text``,
  ``channel_not_found``, ...) with a 4xx status. The webhook decides the
  channel, so the recipient is only recorded; webhooks return no message id,
  so the plugin makes one up (``slack-<uuid>``).
* ``bot_token``: ``POST {base_url}/chat.postMessage`` with
  ``Authorization: Bearer xoxb-...`` and ``{channel, text, blocks, thread_ts}``;
  the recipient is the channel (``C0123ABCD``, ``#general``) or a user id.
  Slack answers ``{ok, channel, ts}`` or ``{ok: false, error}`` (HTTP 200);
  the provider message id is ``<channel>:<ts>``, what Slack needs to thread,
  update or delete it. ``CheckCredentials`` calls ``auth.test``.

Block Kit passes through: metadata ``blocks`` is the JSON array of blocks (or
an object with a ``blocks`` key, as Block Kit Builder exports it) and the
content becomes the notification fallback text. Slack's error codes are
classified by ``ERROR_CLASSES`` (``WEBHOOK_ERROR_CLASSES`` first for a
webhook: its channel is fixed, so a channel that is gone is the plugin's
configuration). See docs/plugins/slack.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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

PROVIDER: Final = "Slack"
DEFAULT_BASE_URL: Final = "https://slack.com/api"

#: Slack error codes (chat.postMessage and incoming webhooks) by the error they
#: become; docs/plugins/slack.md lists each with its source. A code not listed is
#: RETRYABLE unless its HTTP status fails the message over anyway (401, 403, 404,
#: 429, 5xx): Slack adds codes, and an unknown one should send the message to the
#: next plugin, not drop it.
ERROR_CLASSES: Final[dict[str, type[PluginError]]] = {
    **dict.fromkeys(
        (
            "invalid_auth",
            "not_authed",
            "account_inactive",
            "token_revoked",
            "token_expired",
            "no_permission",
            "missing_scope",
            "not_allowed_token_type",
            "ekm_access_denied",
            "invalid_token",
            "no_service",
            "no_service_id",
            "no_team",
            "team_disabled",
        ),
        Unauthenticated,
    ),
    **dict.fromkeys(
        (
            "channel_not_found",
            "channel_is_archived",
            "is_archived",
            "not_in_channel",
            "user_not_found",
            "action_prohibited",
            "posting_to_general_channel_denied",
            "restricted_action",
            "restricted_action_read_only_channel",
            "restricted_action_thread_only_channel",
            "restricted_action_non_threadable_channel",
            "cannot_reply_to_message",
            "team_access_not_granted",
            "duplicate_channel_not_found",
        ),
        PermanentError,
    ),
    **dict.fromkeys(
        (
            "no_text",
            "msg_too_long",
            "too_many_attachments",
            "too_many_blocks",
            "invalid_blocks",
            "invalid_blocks_format",
            "invalid_attachments",
            "invalid_payload",
            "invalid_arguments",
            "invalid_arg_name",
            "invalid_array_arg",
            "invalid_charset",
            "invalid_form_data",
            "invalid_post_type",
            "missing_post_type",
            "missing_text_or_fallback_or_attachments",
            "invalid_thread_ts",
            "as_user_not_supported",
        ),
        InvalidInput,
    ),
    **dict.fromkeys(
        (
            "ratelimited",
            "rate_limited",
            "message_limit_exceeded",
            "service_unavailable",
            "request_timeout",
            "rollup_error",
            # The workspace is migrating into an Enterprise organization and
            # "will not be available until migration is complete".
            "team_added_to_org",
            "org_login_required",
        ),
        RetryableError,
    ),
    # "It's possible some aspect of the operation succeeded before the error
    # was raised" (Slack's words for both).
    **dict.fromkeys(("internal_error", "fatal_error"), OutcomeUnknown),
}
#: Incoming webhooks post to the channel chosen when the webhook was made, so
#: a channel that is gone or closed to posting is the plugin's configuration,
#: not the caller's recipient: the message fails over.
WEBHOOK_ERROR_CLASSES: Final[dict[str, type[PluginError]]] = dict.fromkeys(
    (
        "channel_not_found",
        "channel_is_archived",
        "user_not_found",
        "action_prohibited",
        "posting_to_general_channel_denied",
    ),
    ConfigError,
)

#: Slack's error codes are lower-case words joined by underscores.
_ERROR_CODE_SHAPE: Final = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


class SlackPlugin(HttpProviderPlugin):
    """Posts messages to Slack."""

    channel_type = "slack"
    capabilities = ("send", "block_kit", "threads")
    provider = PROVIDER
    default_base_url = DEFAULT_BASE_URL

    def validate_config(self) -> None:
        super().validate_config()
        if bool(self.config.get("webhook_url")) == bool(self.config.get("bot_token")):
            raise ConfigError("config: set exactly one of webhook_url and bot_token")

    def client_headers(self) -> Mapping[str, str]:
        token = self.config.get("bot_token")
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def send_message(self, message: Message) -> SendResult:
        providers.require_capabilities(message, self.capabilities, provider=PROVIDER)
        payload: dict[str, Any] = {"text": message.content}
        if (blocks := providers.metadata_json(message.metadata, "blocks")) is not None:
            payload["blocks"] = _blocks(blocks)
        elif not message.content:
            raise InvalidInput("content: Slack needs a text (or metadata.blocks)")
        if thread := message.metadata.get("thread_ts"):
            payload["thread_ts"] = thread
        if webhook_url := self.config.get("webhook_url"):
            return await self._post_to_webhook(webhook_url, payload, message.recipient)
        payload["channel"] = message.recipient
        body = await self._call_api("chat.postMessage", payload)
        channel, ts = str(body.get("channel") or message.recipient), str(body.get("ts") or "")
        if not ts:
            raise OutcomeUnknown(
                f"{PROVIDER} accepted the message without a ts; it was probably sent"
            )
        return SendResult(f"{channel}:{ts}", details={"channel": channel, "ts": ts})

    async def check_credentials(self) -> str:
        if self.config.get("webhook_url"):
            return (
                "A webhook URL is configured; Slack offers no way to check an incoming "
                "webhook without posting a message"
            )
        body = await self._call_api("auth.test", {})
        return f"{PROVIDER} accepted the bot token of {body.get('user')} in team {body.get('team')}"

    async def _post_to_webhook(
        self, webhook_url: str, payload: dict[str, Any], recipient: str
    ) -> SendResult:
        response = await self.request("POST", webhook_url, json=payload)
        if not response.is_success:
            raise _error(response.text.strip(), response, webhook=True)
        return SendResult(
            providers.generated_message_id("slack"),
            details={"mode": "webhook", "recipient": recipient},
        )

    async def _call_api(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = await self.request("POST", f"/{method}", json=payload)
        if not response.is_success:
            raise _error(_error_code(response), response)
        body = providers.response_json(response, provider=PROVIDER)
        if not isinstance(body, dict):
            raise RetryableError(f"{PROVIDER} answered {method} with a JSON {type(body).__name__}")
        if body.get("ok") is not True:
            raise _error(str(body.get("error") or "unknown_error"), response)
        return body


def _blocks(blocks: Any) -> list[Any]:
    if isinstance(blocks, dict):
        blocks = blocks.get("blocks")
    if not isinstance(blocks, list) or not all(isinstance(block, dict) for block in blocks):
        raise InvalidInput("metadata.blocks: must be a JSON array of Block Kit blocks")
    return blocks


def _error_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()
    return str(body.get("error") or "") if isinstance(body, dict) else ""


def _looks_like_a_code(text: str) -> bool:
    """Whether ``text`` is shaped like Slack's error codes (``no_text``), not, say, the
    HTML page of a proxy in front of Slack, which follows the shared HTTP table."""
    return _ERROR_CODE_SHAPE.fullmatch(text) is not None


def error_class_of(code: str, *, webhook: bool = False) -> type[PluginError] | None:
    """The error Slack's ``code`` stands for, in webhook or Web API mode; None if unknown."""
    if webhook and code in WEBHOOK_ERROR_CLASSES:
        return WEBHOOK_ERROR_CLASSES[code]
    return ERROR_CLASSES.get(code)


def _error(code: str, response: httpx.Response, *, webhook: bool = False) -> PluginError:
    """Classify Slack's error ``code``; an unknown one RETRYABLE, unless the HTTP status
    already fails the message over (or the answer is no Slack code at all)."""
    error_class = error_class_of(code, webhook=webhook)
    retry_after = providers.parse_retry_after(response.headers.get("Retry-After"))
    message = f"{PROVIDER} answered {code or 'an error without a code'}"
    if error_class is None and not response.is_success:
        by_status = providers.error_for_status(
            response.status_code,
            provider=PROVIDER,
            detail=providers.response_detail(response),
            retry_after=retry_after,
        )
        # Slack answers many codes with 400, some of them its own or the webhook's
        # fault (no_service_id, user_not_found), so a 400 with a code this plugin
        # does not know is no proof the message is bad: the next plugin gets it.
        if _looks_like_a_code(code) and isinstance(by_status, (InvalidInput, PermanentError)):
            return RetryableError(
                f"{message} with HTTP {response.status_code}, an error this plugin does not know",
                retry_after=retry_after,
            )
        return by_status
    if error_class is None:
        return RetryableError(f"{message}, an error this plugin does not know")
    if error_class is RetryableError:
        return RetryableError(message, retry_after=retry_after)
    if error_class is ConfigError:
        return ConfigError(f"{message}: the webhook's channel is gone or closed to it")
    return error_class(message)
