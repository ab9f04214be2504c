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
classified by ``ERROR_CLASSES``. See docs/plugins/slack.md.
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

PROVIDER: Final = "Slack"
DEFAULT_BASE_URL: Final = "https://slack.com/api"

#: Slack error codes (chat.postMessage and incoming webhooks) by the error they
#: become. Unknown codes fall back to the HTTP status, then to PERMANENT.
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
        ),
        InvalidInput,
    ),
    **dict.fromkeys(
        (
            "ratelimited",
            "rate_limited",
            "message_limit_exceeded",
            "internal_error",
            "fatal_error",
            "service_unavailable",
            "request_timeout",
            "rollup_error",
        ),
        RetryableError,
    ),
}


class SlackPlugin(MessagingPlugin):
    """Posts messages to Slack."""

    channel_type = "slack"
    capabilities = ("send", "block_kit", "threads")

    def validate_config(self) -> None:
        if bool(self.config.get("webhook_url")) == bool(self.config.get("bot_token")):
            raise ConfigError("config: set exactly one of webhook_url and bot_token")

    async def initialize(self) -> None:
        headers = {}
        if token := self.config.get("bot_token"):
            headers["Authorization"] = f"Bearer {token}"
        self._http = providers.http_client(
            base_url=self.config.get("base_url", DEFAULT_BASE_URL),
            timeout=self.config.get("timeout_seconds"),
            headers=headers,
        )

    async def cleanup(self) -> None:
        await self._http.aclose()

    async def send_message(self, message: Message) -> SendResult:
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
        response = await providers.send_request(
            self._http, "POST", webhook_url, provider=PROVIDER, json=payload
        )
        if not response.is_success:
            raise _error(response.text.strip(), response)
        return SendResult(
            providers.generated_message_id("slack"),
            details={"mode": "webhook", "recipient": recipient},
        )

    async def _call_api(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = await providers.send_request(
            self._http, "POST", f"/{method}", provider=PROVIDER, json=payload
        )
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


def _error(code: str, response: httpx.Response) -> PluginError:
    """Classify Slack's error ``code``; fall back to the HTTP status."""
    error_class = ERROR_CLASSES.get(code)
    retry_after = providers.parse_retry_after(response.headers.get("Retry-After"))
    if error_class is None and not response.is_success:
        return providers.error_for_status(
            response.status_code,
            provider=PROVIDER,
            detail=providers.response_detail(response),
            retry_after=retry_after,
        )
    message = f"{PROVIDER} answered {code or 'an error without a code'}"
    if error_class is None or error_class is PermanentError:
        return PermanentError(message)
    if error_class is RetryableError:
        return RetryableError(message, retry_after=retry_after)
    return error_class(message)
