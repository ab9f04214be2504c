"""vonage-sms against a local stand-in for the Vonage SMS API (HTTP 200 with per-message status)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from switchboard.sdk import (
    ConfigError,
    InvalidInput,
    OutcomeUnknown,
    PermanentError,
    PluginError,
    RetryableError,
    Unauthenticated,
)
from tests.plugins.conftest import HTTP_FAILURES, Failure, RunPlugin, assert_classified
from tests.plugins.fakes import HttpFake, Recorded, Reply, closed_port

KEY, SECRET = "abcd1234", "vonage-secret-6e1f"
SECRETS = {"VONAGE_API_KEY": KEY, "VONAGE_API_SECRET": SECRET}


def refused(status: str, text: str) -> Reply:
    """Vonage's documented refusal: HTTP 200, the status code in the message entry."""
    return Reply(200, {"message-count": "1", "messages": [{"status": status, "error-text": text}]})


def accepted(to: str, *ids: str) -> Reply:
    return Reply(
        200,
        {
            "message-count": str(len(ids)),
            "messages": [
                {
                    "to": to,
                    "message-id": message_id,
                    "status": "0",
                    "remaining-balance": "3.14159265",
                    "message-price": "0.03330000",
                    "network": "23410",
                }
                for message_id in ids
            ],
        },
    )


def vonage(request: Recorded) -> Reply:
    """POST /sms/json (form) and GET /account/get-balance (Basic auth) as documented."""
    if (request.method, request.path) == ("GET", "/account/get-balance"):
        if request.basic_auth() != (KEY, SECRET):
            return Reply(401, {"error-code": "401", "error-code-label": "authentication failed"})
        return Reply(200, {"value": 10.28, "autoReload": False})
    assert (request.method, request.path) == ("POST", "/sms/json")
    assert request.content_type == "application/x-www-form-urlencoded"
    form = request.form()
    for field in ("api_key", "api_secret", "from", "to", "text"):
        if not form.get(field):
            return refused("2", f"Missing {field} param")
    if (form["api_key"], form["api_secret"]) != (KEY, SECRET):
        return refused("4", "Bad Credentials")
    if not form["to"].isdigit():
        return refused("3", "Invalid to address")
    return accepted(form["to"], "0A0000000123ABCD1")


@pytest.fixture
async def fake() -> AsyncIterator[HttpFake]:
    async with HttpFake(vonage) as server:
        yield server


def config(base_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "api_key": "${VONAGE_API_KEY}",
        "api_secret": "${VONAGE_API_SECRET}",
        "from": "Switchboard",
        "base_url": base_url,
        **extra,
    }


async def test_posts_the_documented_form_and_returns_the_message_id(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    callback = "https://example.com/vonage/dlr"
    async with run_plugin(
        "vonage-sms", config(fake.url, callback_url=callback, default_region="GB"), secrets=SECRETS
    ) as client:
        result = await client.send("07700 900123", "Your code is 123456", idempotency_key="k-9")

    assert fake.last.form() == {
        "api_key": KEY,
        "api_secret": SECRET,
        "from": "Switchboard",
        "to": "447700900123",
        "text": "Your code is 123456",
        "callback": callback,
        "client-ref": "k-9",
    }
    assert result.provider_message_id == "0A0000000123ABCD1"
    assert result.details["network"] == "23410"


async def test_text_outside_the_gsm_alphabet_is_sent_as_unicode(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin("vonage-sms", config(fake.url), secrets=SECRETS) as client:
        await client.send("+447700900123", "Ünïcödé 🚀")
        await client.send("+447700900123", "Plain GSM: @£$ and €")

    unicode, gsm = (request.form() for request in fake.requests)
    assert unicode["type"] == "unicode"
    assert "type" not in gsm


async def test_a_long_message_reports_every_part(fake: HttpFake, run_plugin: RunPlugin) -> None:
    fake.fail_next(accepted("447700900123", "0A01", "0A02"))
    async with run_plugin("vonage-sms", config(fake.url), secrets=SECRETS) as client:
        result = await client.send("+447700900123", "x" * 300)

    assert result.provider_message_id == "0A01"
    assert result.details["parts"] == "2"
    assert result.details["message_ids"] == "0A01,0A02"


@pytest.mark.parametrize(
    ("status", "text", "error", "retry_after"),
    [
        ("1", "Throughput Rate Exceeded - please wait [ 30 ] and retry", RetryableError, 1.0),
        ("2", "Missing to param", InvalidInput, None),
        ("3", "Invalid to address", InvalidInput, None),
        ("4", "Bad Credentials", Unauthenticated, None),
        ("5", "Internal Error", RetryableError, None),
        ("6", "Unroutable message - rejected", PermanentError, None),
        ("7", "Number barred", PermanentError, None),
        ("8", "Partner account barred", Unauthenticated, None),
        ("9", "Partner quota exceeded", RetryableError, None),
        ("12", "Message too long", InvalidInput, None),
        ("15", "Illegal Sender Address - rejected", ConfigError, None),
        ("29", "Non White-listed Destination - rejected", ConfigError, None),
        ("33", "Number de-activated", PermanentError, None),
        ("99", "Something new", RetryableError, None),
    ],
)
async def test_vonage_status_codes_in_a_200_are_classified(
    fake: HttpFake,
    run_plugin: RunPlugin,
    status: str,
    text: str,
    error: type[PluginError],
    retry_after: float | None,
) -> None:
    fake.fail_next(refused(status, text))
    async with run_plugin("vonage-sms", config(fake.url), secrets=SECRETS) as client:
        with pytest.raises(error) as raised:
            await client.send("+447700900123", "hi")

    assert type(raised.value) is error
    assert str(raised.value) == f"Vonage refused the message with status {status}: {text}"
    assert raised.value.retry_after == retry_after


async def test_wrong_credentials_are_unauthenticated(fake: HttpFake, run_plugin: RunPlugin) -> None:
    secrets = {**SECRETS, "VONAGE_API_SECRET": "wrong"}
    async with run_plugin("vonage-sms", config(fake.url), secrets=secrets) as client:
        with pytest.raises(Unauthenticated, match="status 4: Bad Credentials"):
            await client.send("+447700900123", "hi")
        checked = await client.check_credentials()

    assert not checked.ok
    assert fake.last.basic_auth() == (KEY, "wrong")
    assert fake.last.query == {}


async def test_check_credentials_reads_the_balance(fake: HttpFake, run_plugin: RunPlugin) -> None:
    async with run_plugin("vonage-sms", config(fake.url), secrets=SECRETS) as client:
        checked = await client.check_credentials()

    assert checked.ok
    assert checked.message == "Vonage accepted the API key; balance 10.28"


@pytest.mark.parametrize("failure", HTTP_FAILURES)
async def test_http_failures_are_classified(
    fake: HttpFake, run_plugin: RunPlugin, failure: Failure
) -> None:
    fake.fail_next(failure.reply({"type": "about:blank", "title": "failure"}))
    async with run_plugin("vonage-sms", config(fake.url), secrets=SECRETS) as client:
        with pytest.raises(failure.error) as raised:
            await client.send("+447700900123", "hi")

    assert_classified(raised, failure)


async def test_a_refused_connection_is_retryable_and_a_timeout_is_unknown(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    refused_config = config(f"http://127.0.0.1:{closed_port()}")
    async with run_plugin("vonage-sms", refused_config, secrets=SECRETS) as client:
        with pytest.raises(RetryableError, match="Could not reach Vonage"):
            await client.send("+447700900123", "hi")

    fake.fail_next(Reply(200, delay=2))
    async with run_plugin(
        "vonage-sms", config(fake.url, timeout_seconds=0.2), secrets=SECRETS
    ) as client:
        with pytest.raises(OutcomeUnknown, match="Vonage did not answer in time"):
            await client.send("+447700900123", "hi")
