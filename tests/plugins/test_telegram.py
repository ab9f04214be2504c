"""telegram against a local stand-in for the Telegram Bot API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from switchboard.sdk import (
    InvalidInput,
    OutcomeUnknown,
    PermanentError,
    PluginError,
    RetryableError,
    Unauthenticated,
)
from tests.plugins.conftest import RunPlugin
from tests.plugins.fakes import HttpFake, Recorded, Reply, closed_port

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SECRETS = {"TELEGRAM_BOT_TOKEN": TOKEN}
CHATS = {123456789: 123456789, "@switchboard_news": -1001234567890}


def telegram_error(code: int, description: str, **parameters: Any) -> Reply:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return Reply(code, body)


def telegram(request: Recorded) -> Reply:
    """Bot API methods under /bot<token>/, JSON in, {ok, result} out."""
    prefix = f"/bot{TOKEN}/"
    if not request.path.startswith("/bot"):
        return telegram_error(404, "Not Found")
    if not request.path.startswith(prefix):
        return telegram_error(401, "Unauthorized")
    method = request.path.removeprefix(prefix)
    if method == "getMe":
        return Reply(
            200,
            {
                "ok": True,
                "result": {"id": 123, "is_bot": True, "first_name": "SB", "username": "sb_bot"},
            },
        )
    assert (request.method, method) == ("POST", "sendMessage")
    assert request.content_type == "application/json"
    message = request.json()
    if message.get("chat_id") not in CHATS:
        return telegram_error(400, "Bad Request: chat not found")
    if not message.get("text"):
        return telegram_error(400, "Bad Request: message text is empty")
    return Reply(
        200,
        {
            "ok": True,
            "result": {
                "message_id": 42,
                "from": {"id": 123, "is_bot": True, "first_name": "SB", "username": "sb_bot"},
                "chat": {"id": CHATS[message["chat_id"]], "type": "private"},
                "date": 1700000000,
                "text": message["text"],
            },
        },
    )


@pytest.fixture
async def fake() -> AsyncIterator[HttpFake]:
    async with HttpFake(telegram) as server:
        yield server


def config(base_url: str, **extra: Any) -> dict[str, Any]:
    return {"bot_token": "${TELEGRAM_BOT_TOKEN}", "base_url": base_url, **extra}


async def test_send_message_posts_the_documented_json_and_returns_chat_and_message_id(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin("telegram", config(fake.url), secrets=SECRETS) as client:
        result = await client.send("123456789", "<b>Deployed</b> v1.4.0", content_type="text/html")

    sent = fake.last
    assert (sent.method, sent.path) == ("POST", f"/bot{TOKEN}/sendMessage")
    assert sent.json() == {
        "chat_id": 123456789,
        "text": "<b>Deployed</b> v1.4.0",
        "parse_mode": "HTML",
    }
    assert result.provider_message_id == "123456789:42"
    assert result.details == {"chat_id": "123456789", "message_id": "42"}


async def test_parse_mode_and_options_come_from_config_and_metadata(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin(
        "telegram", config(fake.url, parse_mode="MarkdownV2"), secrets=SECRETS
    ) as client:
        channel = await client.send("@switchboard_news", "*bold*")
        await client.send(
            "123456789",
            "<i>x</i>",
            metadata={"parse_mode": "", "disable_notification": "true", "message_thread_id": "7"},
        )
        await client.send("123456789", "_x_", content_type="text/markdown")

    channel_post, plain, markdown = (request.json() for request in fake.requests)
    assert channel_post == {
        "chat_id": "@switchboard_news",
        "text": "*bold*",
        "parse_mode": "MarkdownV2",
    }
    assert channel.provider_message_id == "-1001234567890:42"
    assert plain == {
        "chat_id": 123456789,
        "text": "<i>x</i>",
        "disable_notification": True,
        "message_thread_id": 7,
    }
    assert markdown["parse_mode"] == "MarkdownV2"


@pytest.mark.parametrize(
    ("reply", "error", "retry_after"),
    [
        pytest.param(
            telegram_error(400, "Bad Request: chat not found"),
            PermanentError,
            None,
            id="chat-not-found",
        ),
        pytest.param(
            telegram_error(400, 'Bad Request: can\'t parse entities: Unsupported start tag "x"'),
            InvalidInput,
            None,
            id="cant-parse-entities",
        ),
        pytest.param(
            telegram_error(400, "Bad Request: message is too long"),
            InvalidInput,
            None,
            id="too-long",
        ),
        pytest.param(
            telegram_error(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                migrate_to_chat_id=-1009,
            ),
            PermanentError,
            None,
            id="migrated",
        ),
        pytest.param(telegram_error(401, "Unauthorized"), Unauthenticated, None, id="401"),
        pytest.param(
            telegram_error(403, "Forbidden: bot was blocked by the user"),
            PermanentError,
            None,
            id="403-blocked",
        ),
        pytest.param(
            telegram_error(404, "Not Found"), Unauthenticated, None, id="404-unknown-token"
        ),
        pytest.param(
            telegram_error(429, "Too Many Requests: retry after 35", retry_after=35),
            RetryableError,
            35,
            id="429-retry-after",
        ),
        pytest.param(telegram_error(500, "Internal Server Error"), RetryableError, None, id="500"),
        pytest.param(
            Reply(502, "<html>Bad Gateway</html>", {"Retry-After": "12"}),
            RetryableError,
            12,
            id="502-html",
        ),
    ],
)
async def test_bot_api_errors_are_classified(
    fake: HttpFake,
    run_plugin: RunPlugin,
    reply: Reply,
    error: type[PluginError],
    retry_after: float | None,
) -> None:
    fake.fail_next(reply)
    async with run_plugin("telegram", config(fake.url), secrets=SECRETS) as client:
        with pytest.raises(error) as raised:
            await client.send("123456789", "hi")

    assert type(raised.value) is error
    assert raised.value.retry_after == retry_after
    if isinstance(reply.body, dict):
        assert reply.body["description"] in str(raised.value)
    assert TOKEN not in str(raised.value)


@pytest.mark.parametrize("recipient", ["@ab", "me", "12 34", "@bad-name!"])
async def test_a_recipient_that_is_not_a_chat_id_is_invalid_input(
    fake: HttpFake, run_plugin: RunPlugin, recipient: str
) -> None:
    async with run_plugin("telegram", config(fake.url), secrets=SECRETS) as client:
        with pytest.raises(InvalidInput, match="is not a Telegram chat id"):
            await client.send(recipient, "hi")

    assert fake.requests == []


async def test_check_credentials_calls_get_me(fake: HttpFake, run_plugin: RunPlugin) -> None:
    async with run_plugin("telegram", config(fake.url), secrets=SECRETS) as client:
        accepted = await client.check_credentials()
    wrong = {"TELEGRAM_BOT_TOKEN": "987654321:wrong-token"}
    async with run_plugin("telegram", config(fake.url), secrets=wrong) as client:
        rejected = await client.check_credentials()

    assert accepted.ok
    assert accepted.message == "Telegram accepted the token of bot @sb_bot"
    assert fake.requests[0].path == f"/bot{TOKEN}/getMe"
    assert not rejected.ok
    assert "Unauthorized" in rejected.message
    assert "wrong-token" not in rejected.message


async def test_a_refused_connection_is_retryable_and_a_timeout_is_unknown(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin(
        "telegram", config(f"http://127.0.0.1:{closed_port()}"), secrets=SECRETS
    ) as client:
        with pytest.raises(RetryableError, match="Could not reach Telegram") as refused:
            await client.send("123456789", "hi")

    fake.fail_next(Reply(200, delay=2))
    async with run_plugin(
        "telegram", config(fake.url, timeout_seconds=0.2), secrets=SECRETS
    ) as client:
        with pytest.raises(OutcomeUnknown, match="Telegram did not answer in time"):
            await client.send("123456789", "hi")

    assert TOKEN not in str(refused.value)
