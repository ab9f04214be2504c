"""slack against a local stand-in for Slack: incoming webhooks and the Web API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from switchboard.sdk import (
    ConfigError,
    InvalidInput,
    OutcomeUnknown,
    PluginError,
    RetryableError,
)
from tests.plugins.conftest import (
    HTTP_FAILURES,
    Failure,
    RunPlugin,
    assert_classified,
    plugin_module,
)
from tests.plugins.errortable import (
    RETRY_AFTER_SECONDS,
    Row,
    assert_outcome,
    error_table,
    outcome_of,
    rows_as_params,
)
from tests.plugins.fakes import HttpFake, Recorded, Reply, closed_port

BOT_TOKEN = "xoxb-1111-2222-abcdef"
WEBHOOK_PATH = "/services/T0001/B0001/XXXXXXXXXXXXXXXXXXXXXXXX"
BLOCKS = [
    {"type": "header", "text": {"type": "plain_text", "text": "Deploy finished"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*prod* is on `v1.4.0`"}},
]


def slack(request: Recorded) -> Reply:
    """Incoming webhooks answer text; the Web API answers {ok, ...} with HTTP 200."""
    assert request.method == "POST"
    assert request.content_type == "application/json"
    if request.path == WEBHOOK_PATH:
        if not request.json().get("text") and not request.json().get("blocks"):
            return Reply(400, "no_text")
        return Reply(200, "ok")
    if request.bearer() != BOT_TOKEN:
        return Reply(200, {"ok": False, "error": "invalid_auth"})
    if request.path == "/api/auth.test":
        return Reply(
            200,
            {
                "ok": True,
                "url": "https://acme.slack.com/",
                "team": "Acme",
                "user": "switchboard",
                "team_id": "T0001",
                "user_id": "U0001",
                "bot_id": "B0001",
            },
        )
    assert request.path == "/api/chat.postMessage"
    message = request.json()
    if message.get("channel") != "C0123ABCD":
        return Reply(200, {"ok": False, "error": "channel_not_found"})
    return Reply(
        200,
        {
            "ok": True,
            "channel": "C0123ABCD",
            "ts": "1503435956.000247",
            "message": {"text": message.get("text"), "type": "message", "bot_id": "B0001"},
        },
    )


@pytest.fixture
async def fake() -> AsyncIterator[HttpFake]:
    async with HttpFake(slack) as server:
        yield server


def webhook_config(fake: HttpFake) -> dict[str, Any]:
    return {"webhook_url": "${SLACK_WEBHOOK_URL}"}


def webhook_secrets(fake: HttpFake) -> dict[str, str]:
    return {"SLACK_WEBHOOK_URL": fake.url + WEBHOOK_PATH}


def bot_config(base_url: str, **extra: Any) -> dict[str, Any]:
    return {"bot_token": "${SLACK_BOT_TOKEN}", "base_url": base_url + "/api", **extra}


BOT_SECRETS = {"SLACK_BOT_TOKEN": BOT_TOKEN}


async def test_webhook_posts_text_and_block_kit_unchanged(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin("slack", webhook_config(fake), secrets=webhook_secrets(fake)) as client:
        result = await client.send(
            "#deploys",
            "Deploy finished: prod is on v1.4.0",
            metadata={"blocks": json.dumps({"blocks": BLOCKS}), "thread_ts": "1503435956.000100"},
        )

    sent = fake.last
    assert (sent.method, sent.path) == ("POST", WEBHOOK_PATH)
    assert "Authorization" not in sent.headers
    assert sent.json() == {
        "text": "Deploy finished: prod is on v1.4.0",
        "blocks": BLOCKS,
        "thread_ts": "1503435956.000100",
    }
    assert result.provider_message_id.startswith("slack-")
    assert result.details == {"mode": "webhook", "recipient": "#deploys"}


async def test_chat_post_message_uses_the_bot_token_and_returns_channel_and_ts(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin("slack", bot_config(fake.url), secrets=BOT_SECRETS) as client:
        result = await client.send("C0123ABCD", "hello", metadata={"blocks": json.dumps(BLOCKS)})

    sent = fake.last
    assert (sent.method, sent.path) == ("POST", "/api/chat.postMessage")
    assert sent.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert sent.json() == {"channel": "C0123ABCD", "text": "hello", "blocks": BLOCKS}
    assert result.provider_message_id == "C0123ABCD:1503435956.000247"
    assert result.details == {"channel": "C0123ABCD", "ts": "1503435956.000247"}


def answer(row: Row) -> Reply:
    """What Slack answers for one row of the error table in docs/plugins/slack.md."""
    status, code = int(row.code("http")), row.code("error")
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if row.wants_retry_after_header else {}
    if row["mode"] == "webhook":
        return Reply(status, code if code != "any other" else "something_new", headers)
    if row.error is None:
        return Reply(200, {"ok": True, "channel": "C0123ABCD", "ts": "1503435956.000247"})
    if not code:
        return Reply(200, {"ok": True, "channel": "C0123ABCD"})
    error = code if code != "any other" else "something_new"
    return Reply(status, {"ok": False, "error": error}, headers)


@pytest.mark.parametrize("row", rows_as_params("slack"))
async def test_every_row_of_the_error_table(
    fake: HttpFake, run_plugin: RunPlugin, row: Row
) -> None:
    webhook = row["mode"] == "webhook"
    settings, secrets = (
        (webhook_config(fake), webhook_secrets(fake))
        if webhook
        else (bot_config(fake.url), BOT_SECRETS)
    )
    fake.fail_next(answer(row))
    async with run_plugin("slack", settings, secrets=secrets) as client:
        outcome = await outcome_of(client.send("C0123ABCD", "hello"))

    assert_outcome(row, outcome)
    if isinstance(outcome, PluginError) and row.codes("error"):
        assert f"Slack answered {row.code('error')}" in outcome.message


def test_the_error_table_lists_every_code_the_plugin_tells_apart() -> None:
    rows = error_table("slack")
    api = {row.code("error"): row.error for row in rows if row["mode"] == "Web API"}
    hooks = {row.code("error"): row.error for row in rows if row["mode"] == "webhook"}
    module = plugin_module("slack")

    assert {code: api.get(code) for code in module.ERROR_CLASSES} == module.ERROR_CLASSES
    assert {
        code: hooks.get(code) for code in module.WEBHOOK_ERROR_CLASSES
    } == module.WEBHOOK_ERROR_CLASSES


@pytest.mark.parametrize("failure", HTTP_FAILURES)
async def test_http_failures_are_classified(
    fake: HttpFake, run_plugin: RunPlugin, failure: Failure
) -> None:
    fake.fail_next(failure.reply("<html>Something went wrong</html>"))
    async with run_plugin("slack", webhook_config(fake), secrets=webhook_secrets(fake)) as client:
        with pytest.raises(failure.error) as raised:
            await client.send("#general", "hello")

    assert_classified(raised, failure)


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ({"blocks": "[{"}, r"metadata\.blocks: not valid JSON"),
        ({"blocks": '{"type": "section"}'}, r"metadata\.blocks: must be a JSON array"),
    ],
)
async def test_malformed_blocks_are_invalid_input(
    fake: HttpFake, run_plugin: RunPlugin, metadata: dict[str, str], problem: str
) -> None:
    async with run_plugin("slack", bot_config(fake.url), secrets=BOT_SECRETS) as client:
        with pytest.raises(InvalidInput, match=problem):
            await client.send("C0123ABCD", "hello", metadata=metadata)

    assert fake.requests == []


async def test_check_credentials_calls_auth_test(fake: HttpFake, run_plugin: RunPlugin) -> None:
    async with run_plugin("slack", bot_config(fake.url), secrets=BOT_SECRETS) as client:
        accepted = await client.check_credentials()
    async with run_plugin(
        "slack", bot_config(fake.url), secrets={"SLACK_BOT_TOKEN": "xoxb-revoked"}
    ) as client:
        rejected = await client.check_credentials()
    async with run_plugin("slack", webhook_config(fake), secrets=webhook_secrets(fake)) as client:
        webhook = await client.check_credentials()

    assert accepted.ok
    assert accepted.message == "Slack accepted the bot token of switchboard in team Acme"
    assert fake.requests[0].path == "/api/auth.test"
    assert (rejected.ok, rejected.message) == (False, "Slack answered invalid_auth")
    assert webhook.ok
    assert "no way to check an incoming webhook" in webhook.message
    assert len(fake.requests) == 2


async def test_exactly_one_mode_must_be_configured(fake: HttpFake, run_plugin: RunPlugin) -> None:
    both = {**bot_config(fake.url), **webhook_config(fake)}
    with pytest.raises(ConfigError, match="exactly one of webhook_url and bot_token"):
        async with run_plugin("slack", both, secrets={**BOT_SECRETS, **webhook_secrets(fake)}):
            pass


async def test_a_refused_connection_is_retryable_and_a_timeout_is_unknown(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    refused = bot_config(f"http://127.0.0.1:{closed_port()}")
    async with run_plugin("slack", refused, secrets=BOT_SECRETS) as client:
        with pytest.raises(RetryableError, match="Could not reach Slack"):
            await client.send("C0123ABCD", "hello")

    fake.fail_next(Reply(200, "ok", delay=2))
    slow = {**webhook_config(fake), "timeout_seconds": 0.2}
    async with run_plugin("slack", slow, secrets=webhook_secrets(fake)) as client:
        with pytest.raises(OutcomeUnknown, match="Slack did not answer in time"):
            await client.send("#general", "hello")


async def test_an_unknown_webhook_code_with_400_moves_the_message_to_the_next_plugin(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    # Slack answers some of its own faults with 400; a code this plugin has never
    # seen must not drop the message as the caller's fault.
    fake.fail_next(Reply(400, "webhook_quota_reshuffled"))
    async with run_plugin("slack", webhook_config(fake), secrets=webhook_secrets(fake)) as client:
        with pytest.raises(RetryableError) as raised:
            await client.send("#general", "hello")

    assert "Slack answered webhook_quota_reshuffled with HTTP 400" in raised.value.message
