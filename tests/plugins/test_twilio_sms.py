"""twilio-sms against a local stand-in for Twilio's Messages API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from switchboard.sdk import (
    Attachment,
    ConfigError,
    DeliveryState,
    InvalidInput,
    OutcomeUnknown,
    PluginError,
    RetryableError,
    Template,
    Unauthenticated,
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
from tests.plugins.receipttable import StatusRow, documented_states, statuses_as_params

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


# -- delivery receipts: status callbacks signed as Twilio documents it --

RECEIPT_URL = "https://hooks.example.com/v1/receipts/default/twilio-sms"
MESSAGE_SID = "SM" + "e" * 32


def twilio_signature(url: str, params: list[tuple[str, str]], token: str = TOKEN) -> str:
    """X-Twilio-Signature as Twilio's "Webhooks security" page describes it: the full
    URL, then every POST parameter sorted by name, name and value appended without
    separators; HMAC-SHA1 keyed with the auth token; base64."""
    data = url + "".join(f"{name}{value}" for name, value in sorted(params))
    digest = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def status_callback(status: str, **extra: str) -> list[tuple[str, str]]:
    """The POST parameters of a status callback for an outbound SMS (Twilio's
    "Track the message status of outbound messages")."""
    params = {
        "AccountSid": SID,
        "ApiVersion": "2010-04-01",
        "From": SENDER,
        "MessageSid": MESSAGE_SID,
        "MessageStatus": status,
        "SmsSid": MESSAGE_SID,
        "SmsStatus": status,
        "To": "+16502530000",
        **extra,
    }
    return list(params.items())


def signed(
    params: list[tuple[str, str]], *, url: str = RECEIPT_URL, token: str = TOKEN
) -> tuple[dict[str, str], bytes]:
    """Headers and form body of a callback Twilio signed for ``url``."""
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": twilio_signature(url, params, token),
        "I-Twilio-Idempotency-Token": "5d6f7e8a-1b2c-4d3e-9f00-112233445566",
    }
    return headers, urlencode(params).encode()


async def test_the_receipts_url_is_the_status_callback_unless_one_is_configured(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin("twilio-sms", config(fake.url), secrets=SECRETS) as client:
        await client.send("+16502530000", "hi", receipt_url=RECEIPT_URL)
        with_router = fake.last.form()
        await client.send("+16502530000", "hi")
        without_router = fake.last.form()
    own = "https://relay.example.com/twilio"
    async with run_plugin(
        "twilio-sms", config(fake.url, status_callback=own), secrets=SECRETS
    ) as client:
        await client.send("+16502530000", "hi", receipt_url=RECEIPT_URL)
        configured = fake.last.form()

    assert with_router["StatusCallback"] == RECEIPT_URL
    assert "StatusCallback" not in without_router
    assert configured["StatusCallback"] == own


async def test_a_receipts_url_twilio_would_refuse_is_left_out_and_the_message_still_goes(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin("twilio-sms", config(fake.url), secrets=SECRETS) as client:
        result = await client.send(
            "+16502530000", "hi", receipt_url="https://sw_router.example.com/v1/receipts/a/b"
        )

    assert result.provider_message_id.startswith("SM")
    assert "StatusCallback" not in fake.last.form()


@pytest.mark.parametrize("row", statuses_as_params("twilio-sms"))
async def test_every_documented_message_status_becomes_its_state(
    run_plugin: RunPlugin, row: StatusRow
) -> None:
    failed = row.state is DeliveryState.FAILED
    params = status_callback(row.status, **({"ErrorCode": "30003"} if failed else {}))
    headers, body = signed(params)
    async with run_plugin("twilio-sms", config("http://127.0.0.1:9"), secrets=SECRETS) as client:
        reply = await client.handle_receipt("POST", RECEIPT_URL, headers, body)

    if row.state is None:
        assert reply.receipts == (), row.line
        return
    assert [(r.provider_message_id, r.state) for r in reply.receipts] == [
        (MESSAGE_SID, row.state)
    ], row.line
    if failed:
        assert reply.receipts[0].error == f"Twilio reports the message {row.status} (error 30003)"
    else:
        assert reply.receipts[0].error == ""


def test_the_receipt_table_lists_every_status_the_plugin_maps() -> None:
    documented = documented_states("twilio-sms")
    mapped = plugin_module("twilio-sms").STATUS_STATES

    assert {status: state for status, state in documented.items() if state} == mapped


@pytest.mark.parametrize(
    ("signed_url", "called_url"),
    [
        pytest.param(RECEIPT_URL, RECEIPT_URL, id="same"),
        pytest.param(
            "https://hooks.example.com:443/v1/receipts/default/twilio-sms",
            RECEIPT_URL,
            id="twilio-added-the-port",
        ),
        pytest.param(
            RECEIPT_URL,
            "https://hooks.example.com:443/v1/receipts/default/twilio-sms",
            id="the-router-saw-the-port",
        ),
        pytest.param(
            "https://relay.example.com/twilio?tenant=a b",
            RECEIPT_URL,
            id="the-configured-status-callback",
        ),
    ],
)
async def test_a_signature_for_the_url_twilio_called_is_accepted(
    run_plugin: RunPlugin, signed_url: str, called_url: str
) -> None:
    headers, body = signed(status_callback("delivered"), url=signed_url)
    settings = config(
        "http://127.0.0.1:9", status_callback="https://relay.example.com/twilio?tenant=a b"
    )
    async with run_plugin("twilio-sms", settings, secrets=SECRETS) as client:
        reply = await client.handle_receipt("POST", called_url, headers, body)

    assert [r.state for r in reply.receipts] == [DeliveryState.DELIVERED]


def forged(kind: str) -> tuple[str, dict[str, str], bytes]:
    """A callback that did not come from Twilio for this account, or was altered."""
    params = status_callback("delivered")
    headers, body = signed(params)
    if kind == "other-token":
        headers, body = signed(params, token="another-accounts-token")
    elif kind == "status-changed":
        body = body.replace(b"MessageStatus=delivered", b"MessageStatus=failed")
    elif kind == "parameter-added":
        body += b"&ErrorCode=30003"
    elif kind == "other-url":
        headers, body = signed(params, url="https://attacker.example.com/v1/receipts/default/x")
    elif kind == "no-signature":
        del headers["X-Twilio-Signature"]
    elif kind == "garbage-signature":
        headers["X-Twilio-Signature"] = "bm90IGEgc2lnbmF0dXJl"
    return RECEIPT_URL, headers, body


@pytest.mark.parametrize(
    "kind",
    [
        "other-token",
        "status-changed",
        "parameter-added",
        "other-url",
        "no-signature",
        "garbage-signature",
    ],
)
async def test_a_forged_or_altered_callback_is_unauthenticated(
    run_plugin: RunPlugin, kind: str
) -> None:
    url, headers, body = forged(kind)
    async with run_plugin("twilio-sms", config("http://127.0.0.1:9"), secrets=SECRETS) as client:
        with pytest.raises(Unauthenticated, match="X-Twilio-Signature does not match") as refused:
            await client.handle_receipt("POST", url, headers, body)

    assert TOKEN not in refused.value.message
