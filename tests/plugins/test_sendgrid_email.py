"""sendgrid-email against a local stand-in for SendGrid's v3 Mail Send API."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from switchboard.sdk import InvalidInput, OutcomeUnknown, RetryableError
from tests.plugins.conftest import HTTP_FAILURES, Failure, RunPlugin, assert_classified
from tests.plugins.fakes import HttpFake, Recorded, Reply, closed_port

API_KEY = "SG.test-key.7d1c2f"
SECRETS = {"SENDGRID_API_KEY": API_KEY}
MESSAGE_ID = "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"


def sendgrid_error(status: int, message: str, field: str | None = None) -> Reply:
    return Reply(status, {"errors": [{"message": message, "field": field, "help": None}]})


def sendgrid(request: Recorded) -> Reply:
    """Mail Send and scopes as documented: Bearer key, JSON, 202 with X-Message-Id."""
    if request.bearer() != API_KEY:
        return sendgrid_error(
            401, "The provided authorization grant is invalid, expired, or revoked"
        )
    if (request.method, request.path) == ("GET", "/v3/scopes"):
        return Reply(200, {"scopes": ["mail.send", "scopes.read"]})
    if (request.method, request.path) != ("POST", "/v3/mail/send"):
        return Reply(404, {"errors": [{"message": "Not found", "field": None}]})
    assert request.content_type == "application/json"
    mail = request.json()
    if not mail.get("personalizations") or not mail["personalizations"][0].get("to"):
        return sendgrid_error(400, "The personalizations field is required.", "personalizations")
    if not mail.get("from", {}).get("email"):
        return sendgrid_error(400, "The from object must be provided.", "from")
    if not mail.get("subject"):
        return sendgrid_error(400, "The subject is required.", "subject")
    types = [part["type"] for part in mail.get("content", [])]
    if not types or types[0] != "text/plain":
        return sendgrid_error(400, "The text/plain content type must be first.", "content")
    return Reply(202, b"", {"X-Message-Id": MESSAGE_ID})


@pytest.fixture
async def fake() -> AsyncIterator[HttpFake]:
    async with HttpFake(sendgrid) as server:
        yield server


def config(base_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "api_key": "${SENDGRID_API_KEY}",
        "from_address": "Example <notifications@example.com>",
        "base_url": base_url,
        **extra,
    }


async def test_posts_the_documented_mail_and_returns_x_message_id(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin(
        "sendgrid-email", config(fake.url, reply_to="support@example.com"), secrets=SECRETS
    ) as client:
        result = await client.send(
            "Ann <ann@example.org>, bob@example.org",
            "Your code is 123456.",
            subject="Your code",
            metadata={
                "html": "<p>Your code is <b>123456</b>.</p>",
                "header.X-Campaign": "sign-in",
            },
            idempotency_key="key-1",
        )

    sent = fake.last
    assert (sent.method, sent.path) == ("POST", "/v3/mail/send")
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
    assert sent.json() == {
        "personalizations": [
            {"to": [{"email": "ann@example.org", "name": "Ann"}, {"email": "bob@example.org"}]}
        ],
        "from": {"email": "notifications@example.com", "name": "Example"},
        "reply_to": {"email": "support@example.com"},
        "subject": "Your code",
        "content": [
            {"type": "text/plain", "value": "Your code is 123456."},
            {"type": "text/html", "value": "<p>Your code is <b>123456</b>.</p>"},
        ],
        "headers": {"X-Campaign": "sign-in"},
        "custom_args": {"switchboard_idempotency_key": "key-1"},
    }
    assert result.provider_message_id == MESSAGE_ID


async def test_html_content_gets_a_derived_text_part_and_metadata_reply_to_wins(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin(
        "sendgrid-email",
        config(fake.url, reply_to="support@example.com", sandbox_mode=True),
        secrets=SECRETS,
    ) as client:
        await client.send(
            "ann@example.org",
            "<p>Hello <b>Ann</b></p>",
            content_type="text/html",
            metadata={"reply_to": "Desk <desk@example.com>"},
        )

    mail = fake.last.json()
    assert mail["content"] == [
        {"type": "text/plain", "value": "Hello Ann"},
        {"type": "text/html", "value": "<p>Hello <b>Ann</b></p>"},
    ]
    assert mail["reply_to"] == {"email": "desk@example.com", "name": "Desk"}
    assert mail["subject"] == "(no subject)"
    assert mail["mail_settings"] == {"sandbox_mode": {"enable": True}}


async def test_a_400_quotes_sendgrids_field_and_message(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    fake.fail_next(
        sendgrid_error(400, "Does not contain a valid address.", "personalizations.0.to.0.email")
    )
    async with run_plugin("sendgrid-email", config(fake.url), secrets=SECRETS) as client:
        with pytest.raises(InvalidInput) as raised:
            await client.send("ann@example.org", "x")

    assert str(raised.value) == (
        "SendGrid answered HTTP 400: "
        "personalizations.0.to.0.email: Does not contain a valid address."
    )


@pytest.mark.parametrize("failure", HTTP_FAILURES)
async def test_http_failures_are_classified(
    fake: HttpFake, run_plugin: RunPlugin, failure: Failure
) -> None:
    fake.fail_next(failure.reply({"errors": [{"message": "failure", "field": None}]}))
    async with run_plugin("sendgrid-email", config(fake.url), secrets=SECRETS) as client:
        with pytest.raises(failure.error) as raised:
            await client.send("ann@example.org", "x")

    assert_classified(raised, failure)


async def test_a_429_without_retry_after_waits_for_the_rate_limit_reset(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    reset = int(time.time()) + 40
    fake.fail_next(
        Reply(
            429, {"errors": [{"message": "too many requests"}]}, {"X-RateLimit-Reset": str(reset)}
        )
    )
    async with run_plugin("sendgrid-email", config(fake.url), secrets=SECRETS) as client:
        with pytest.raises(RetryableError) as raised:
            await client.send("ann@example.org", "x")

    assert raised.value.retry_after is not None
    assert 37 <= raised.value.retry_after <= 40


async def test_a_bad_recipient_is_invalid_input_and_nothing_is_sent(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin("sendgrid-email", config(fake.url), secrets=SECRETS) as client:
        with pytest.raises(InvalidInput, match="recipient: 'ann@' is not an email address"):
            await client.send("ann@", "x")

    assert fake.requests == []


async def test_check_credentials_requires_the_mail_send_scope(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin("sendgrid-email", config(fake.url), secrets=SECRETS) as client:
        accepted = await client.check_credentials()
        fake.fail_next(Reply(200, {"scopes": ["stats.read"]}))
        lacking = await client.check_credentials()

    assert accepted.ok, accepted.message
    assert fake.last.path == "/v3/scopes"
    assert not lacking.ok
    assert "mail.send" in lacking.message


async def test_a_revoked_key_fails_check_credentials(fake: HttpFake, run_plugin: RunPlugin) -> None:
    async with run_plugin(
        "sendgrid-email", config(fake.url), secrets={"SENDGRID_API_KEY": "SG.revoked"}
    ) as client:
        checked = await client.check_credentials()

    assert not checked.ok
    assert "authorization grant is invalid" in checked.message


async def test_a_refused_connection_is_retryable_and_a_timeout_is_unknown(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    refused = config(f"http://127.0.0.1:{closed_port()}")
    async with run_plugin("sendgrid-email", refused, secrets=SECRETS) as client:
        with pytest.raises(RetryableError, match="Could not reach SendGrid"):
            await client.send("ann@example.org", "x")

    fake.fail_next(Reply(202, delay=2))
    async with run_plugin(
        "sendgrid-email", config(fake.url, timeout_seconds=0.2), secrets=SECRETS
    ) as client:
        with pytest.raises(OutcomeUnknown, match="SendGrid did not answer in time"):
            await client.send("ann@example.org", "x")
