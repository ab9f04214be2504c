"""twilio-sms against a local stand-in for Twilio's Messages API."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from switchboard.sdk import (
    Attachment,
    ConfigError,
    InvalidInput,
    OutcomeUnknown,
    PluginError,
    RetryableError,
    Template,
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
    fields = request.form_lists()
    assert all(len(values) == 1 for name, values in fields.items() if name != "MediaUrl"), fields
    form = {name: values[0] for name, values in fields.items()}
    media = fields.get("MediaUrl", [])
    if not E164.match(form.get("To", "")):
        return twilio_error(400, 21211, f"Invalid 'To' Phone Number: {form.get('To')}")
    if not (form.get("Body") or media or form.get("ContentSid")):
        return twilio_error(400, 21602, "Message body is required.")
    if not (form.get("From") or form.get("MessagingServiceSid")):
        return twilio_error(400, 21603, "'From' phone number is required.")
    if len(media) > 10:
        return twilio_error(400, 21623, "Number of media files exceeds allowed limit")
    if "ContentVariables" in form and (
        "ContentSid" not in form or not isinstance(json.loads(form["ContentVariables"]), dict)
    ):
        return twilio_error(400, 21656, "The ContentVariables Parameter is invalid.")
    if "_" in (urlsplit(form.get("StatusCallback", "")).hostname or ""):
        return twilio_error(400, 21609, "Invalid StatusCallback")
    return Reply(201, message_resource(form, media))


def message_resource(form: dict[str, str], media: list[str]) -> dict[str, Any]:
    """The message resource Twilio answers a create with (201)."""
    sid = ("MM" if media else "SM") + "f" * 32
    return {
        "account_sid": SID,
        "api_version": "2010-04-01",
        "body": form.get("Body", ""),
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": form.get("From"),
        "messaging_service_sid": form.get("MessagingServiceSid"),
        "num_media": str(len(media)),
        "num_segments": "1",
        "sid": sid,
        "status": "accepted" if form.get("MessagingServiceSid") else "queued",
        "to": form["To"],
        "uri": f"/2010-04-01/Accounts/{SID}/Messages/{sid}.json",
    }


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


def answer(row: Row) -> Reply:
    """What Twilio answers for one row of the error table in docs/plugins/twilio-sms.md."""
    status = int(row.code("http"))
    if status == 201:
        body = message_resource({"To": "+16502530000", "Body": "hi", "From": SENDER}, [])
        if "without" in row["twilio says"]:
            del body["sid"]
        return Reply(201, body)
    code = row.code("code")
    reply = twilio_error(status, int(code) if code.isdigit() else 21999, row["twilio says"])
    if row.wants_retry_after_header:
        reply.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return reply


@pytest.mark.parametrize("row", rows_as_params("twilio-sms"))
async def test_every_row_of_the_error_table(
    fake: HttpFake, run_plugin: RunPlugin, row: Row
) -> None:
    fake.fail_next(answer(row))
    async with run_plugin("twilio-sms", config(fake.url), secrets=SECRETS) as client:
        outcome = await outcome_of(client.send("+16502530000", "hi"))

    assert_outcome(row, outcome)
    if isinstance(outcome, PluginError) and row.code("code").isdigit():
        assert f"(code {row.code('code')})" in outcome.message
        assert row["twilio says"] in outcome.message


def test_the_error_table_lists_every_code_the_plugin_tells_apart() -> None:
    table = {int(row.code("code")): row.error for row in error_table("twilio-sms")
             if row.code("code").isdigit()}  # fmt: skip
    codes = plugin_module("twilio-sms").CODE_CLASSES

    assert {code: table.get(code) for code in codes} == codes


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


async def test_media_by_url_become_repeated_media_url_fields_an_mms(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    photos = (
        Attachment("front.jpg", "image/jpeg", url="https://cdn.example.com/front.jpg"),
        Attachment("back.png", "image/png", url="https://cdn.example.com/back.png"),
    )
    async with run_plugin("twilio-sms", config(fake.url), secrets=SECRETS) as client:
        result = await client.send("+16502530000", "Your parcel", attachments=photos)

    assert fake.last.form_lists() == {
        "To": ["+16502530000"],
        "From": [SENDER],
        "Body": ["Your parcel"],
        "MediaUrl": ["https://cdn.example.com/front.jpg", "https://cdn.example.com/back.png"],
    }
    assert result.provider_message_id.startswith("MM")
    assert result.details["media"] == "2"


async def test_a_content_template_is_content_sid_and_content_variables_without_a_body(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    template = Template("HX" + "b" * 32, {"1": "Ann", "2": 3})
    async with run_plugin("twilio-sms", config(fake.url), secrets=SECRETS) as client:
        await client.send("+16502530000", "", template=template)

    form = fake.last.form()
    assert form == {
        "To": "+16502530000",
        "From": SENDER,
        "ContentSid": "HX" + "b" * 32,
        "ContentVariables": form["ContentVariables"],
    }
    assert json.loads(form["ContentVariables"]) == {"1": "Ann", "2": "3"}


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        pytest.param({"template": Template("order_update")}, "not a Twilio Content SID", id="sid"),
        pytest.param(
            {
                "attachments": tuple(
                    Attachment(f"{n}.jpg", "image/jpeg", url=f"https://cdn.example.com/{n}.jpg")
                    for n in range(11)
                )
            },
            "at most 10 media",
            id="eleven-media",
        ),
        pytest.param({"content": ""}, "needs a body, media or a template", id="empty"),
    ],
)
async def test_what_twilio_would_refuse_is_invalid_input_and_nothing_is_sent(
    fake: HttpFake, run_plugin: RunPlugin, message: dict[str, Any], problem: str
) -> None:
    async with run_plugin("twilio-sms", config(fake.url), secrets=SECRETS) as client:
        with pytest.raises(InvalidInput, match=problem):
            await client.send("+16502530000", **{"content": "hi", **message})

    assert fake.requests == []


async def test_an_attachment_with_its_bytes_goes_to_a_plugin_that_can_carry_it(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    invoice = Attachment("invoice.pdf", "application/pdf", data=b"%PDF-1.7")
    async with run_plugin("twilio-sms", config(fake.url), secrets=SECRETS) as client:
        with pytest.raises(RetryableError, match="does not declare attachments"):
            await client.send("+16502530000", "hi", attachments=(invoice,))

    assert fake.requests == []


@pytest.mark.parametrize(
    ("callback", "problem"),
    [
        ("https://my_hooks.example.com/status", "has an underscore"),
        ("https:///status", "absolute http"),
    ],
)
async def test_a_status_callback_twilio_would_refuse_stops_the_plugin_at_start(
    fake: HttpFake, run_plugin: RunPlugin, callback: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=rf"config\.status_callback: .*{problem}"):
        async with run_plugin(
            "twilio-sms", config(fake.url, status_callback=callback), secrets=SECRETS
        ):
            pass
