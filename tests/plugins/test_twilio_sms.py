"""twilio-sms against a local stand-in for Twilio's Messages API."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from switchboard.sdk import (
    ConfigError,
    InvalidInput,
    OutcomeUnknown,
    PermanentError,
    RetryableError,
)
from tests.plugins.conftest import HTTP_FAILURES, Failure, RunPlugin, assert_classified
from tests.plugins.fakes import HttpFake, Recorded, Reply, closed_port

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "twilio-auth-token-5f2b"
SENDER = "+15005550006"
MESSAGES_PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"
E164 = re.compile(r"^\+[1-9]\d{1,14}$")


def twilio_error(status: int, code: int, message: str) -> Reply:
    """Twilio's documented error body."""
    return Reply(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


def twilio(request: Recorded) -> Reply:
    """Twilio's Messages API as documented: Basic auth, form fields, 201 with the resource."""
    if request.basic_auth() != (SID, TOKEN):
        return twilio_error(401, 20003, "Authenticate")
    if request.method == "GET" and request.path == f"/2010-04-01/Accounts/{SID}.json":
        return Reply(200, {"sid": SID, "friendly_name": "Switchboard", "status": "active"})
    if request.method != "POST" or request.path != MESSAGES_PATH:
        return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
    assert request.content_type == "application/x-www-form-urlencoded"
    form = request.form()
    if not E164.match(form.get("To", "")):
        return twilio_error(400, 21211, f"Invalid 'To' Phone Number: {form.get('To')}")
    if not form.get("Body"):
        return twilio_error(400, 21602, "Message body is required.")
    if not (form.get("From") or form.get("MessagingServiceSid")):
        return twilio_error(400, 21603, "'From' phone number is required.")
    return Reply(
        201,
        {
            "account_sid": SID,
            "api_version": "2010-04-01",
            "body": form["Body"],
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_segments": "1",
            "sid": "SM" + "f" * 32,
            "status": "queued",
            "to": form["To"],
            "uri": f"/2010-04-01/Accounts/{SID}/Messages/SM{'f' * 32}.json",
        },
    )


@pytest.fixture
async def fake() -> AsyncIterator[HttpFake]:
    async with HttpFake(twilio) as server:
        yield server


def config(base_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "account_sid": "${TWILIO_ACCOUNT_SID}",
        "auth_token": "${TWILIO_AUTH_TOKEN}",
        "from_number": SENDER,
        "base_url": base_url,
        **extra,
    }


SECRETS = {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN}


async def test_sends_the_documented_form_with_basic_auth_and_returns_the_message_sid(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    callback = "https://example.com/twilio/status"
    async with run_plugin(
        "twilio-sms", config(fake.url, status_callback=callback), secrets=SECRETS
    ) as client:
        result = await client.send("+1 650-253-0000", "Your code is 123456")

    sent = fake.last
    assert (sent.method, sent.path) == ("POST", MESSAGES_PATH)
    assert sent.basic_auth() == (SID, TOKEN)
    assert sent.content_type == "application/x-www-form-urlencoded"
    assert sent.form() == {
        "To": "+16502530000",
        "From": SENDER,
        "Body": "Your code is 123456",
        "StatusCallback": callback,
    }
    assert result.provider_message_id == "SM" + "f" * 32
    assert result.details["status"] == "queued"


async def test_a_messaging_service_replaces_the_sender(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    service = "MG" + "a" * 32
    settings = config(fake.url, messaging_service_sid=service)
    del settings["from_number"]
    async with run_plugin("twilio-sms", settings, secrets=SECRETS) as client:
        await client.send("+16502530000", "hi")

    assert fake.last.form() == {"To": "+16502530000", "MessagingServiceSid": service, "Body": "hi"}


async def test_a_national_number_is_normalized_with_the_default_region(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin(
        "twilio-sms", config(fake.url, default_region="GB"), secrets=SECRETS
    ) as client:
        await client.send("020 7946 0958", "hi")

    assert fake.last.form()["To"] == "+442079460958"


async def test_an_invalid_number_is_invalid_input_naming_it_and_nothing_is_sent(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin("twilio-sms", config(fake.url), secrets=SECRETS) as client:
        with pytest.raises(
            InvalidInput, match=r"recipient: '\+1 12345' is not a valid phone number"
        ):
            await client.send("+1 12345", "hi")

    assert fake.requests == []


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        pytest.param(
            twilio_error(400, 21211, "Invalid 'To' Phone Number"), InvalidInput, id="21211"
        ),
        pytest.param(
            twilio_error(400, 21610, "Attempt to send to unsubscribed recipient"),
            PermanentError,
            id="21610-unsubscribed",
        ),
        pytest.param(
            twilio_error(
                400,
                21606,
                "The 'From' phone number is not a valid message-capable Twilio phone number.",
            ),
            ConfigError,
            id="21606-sender-is-config",
        ),
    ],
)
async def test_twilio_error_codes_decide_the_class_and_the_message_quotes_twilio(
    fake: HttpFake, run_plugin: RunPlugin, reply: Reply, error: type[Exception]
) -> None:
    fake.fail_next(reply)
    async with run_plugin("twilio-sms", config(fake.url), secrets=SECRETS) as client:
        with pytest.raises(error) as raised:
            await client.send("+16502530000", "hi")

    code = reply.body["code"]
    assert f"(code {code})" in str(raised.value)
    assert reply.body["message"] in str(raised.value)


@pytest.mark.parametrize("failure", HTTP_FAILURES)
async def test_http_failures_are_classified(
    fake: HttpFake, run_plugin: RunPlugin, failure: Failure
) -> None:
    fake.fail_next(failure.reply(twilio_error(failure.status, 20001, "failure").body))
    async with run_plugin("twilio-sms", config(fake.url), secrets=SECRETS) as client:
        with pytest.raises(failure.error) as raised:
            await client.send("+16502530000", "hi")

    assert_classified(raised, failure)


async def test_wrong_credentials_are_unauthenticated(fake: HttpFake, run_plugin: RunPlugin) -> None:
    secrets = {**SECRETS, "TWILIO_AUTH_TOKEN": "wrong"}
    async with run_plugin("twilio-sms", config(fake.url), secrets=secrets) as client:
        checked = await client.check_credentials()

    assert not checked.ok
    assert "Authenticate" in checked.message
    assert "wrong" not in checked.message


async def test_check_credentials_fetches_the_account(fake: HttpFake, run_plugin: RunPlugin) -> None:
    async with run_plugin("twilio-sms", config(fake.url), secrets=SECRETS) as client:
        checked = await client.check_credentials()

    assert checked.ok, checked.message
    assert fake.last.path == f"/2010-04-01/Accounts/{SID}.json"


async def test_connection_refused_is_retryable(run_plugin: RunPlugin) -> None:
    base_url = f"http://127.0.0.1:{closed_port()}"
    async with run_plugin("twilio-sms", config(base_url), secrets=SECRETS) as client:
        with pytest.raises(RetryableError, match="Could not reach Twilio"):
            await client.send("+16502530000", "hi")


async def test_a_timeout_after_sending_is_an_unknown_outcome(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    fake.fail_next(Reply(201, {"sid": "SMlate"}, delay=2))
    async with run_plugin(
        "twilio-sms", config(fake.url, timeout_seconds=0.2), secrets=SECRETS
    ) as client:
        with pytest.raises(OutcomeUnknown, match="Twilio did not answer in time"):
            await client.send("+16502530000", "hi")
