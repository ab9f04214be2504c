"""sendgrid-email against a local stand-in for SendGrid's v3 Mail Send API."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from switchboard.sdk import (
    Attachment,
    ConfigError,
    InvalidInput,
    OutcomeUnknown,
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

API_KEY = "SG.test-key.7d1c2f"
SECRETS = {"SENDGRID_API_KEY": API_KEY}
MESSAGE_ID = "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"


def sendgrid_error(status: int, message: str, field: str | None = None) -> Reply:
    return Reply(status, {"errors": [{"message": message, "field": field, "help": None}]})


#: Sender identities verified on the fake account.
VERIFIED_SENDERS = {"notifications@example.com"}
UNVERIFIED = (
    "The from address does not match a verified Sender Identity. Mail cannot be sent until "
    "this error is resolved. Visit https://sendgrid.com/docs/for-developers/sending-email/"
    "sender-identity/ to see the Sender Identity requirements"
)


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
    for number, personalization in enumerate(mail["personalizations"]):
        addresses = [
            (kind, party["email"].lower())
            for kind in ("to", "cc", "bcc")
            for party in personalization.get(kind, [])
        ]
        seen: set[str] = set()
        for kind, address in addresses:
            if address in seen:
                return sendgrid_error(
                    400,
                    "Each email address in the personalization block should be unique between "
                    f"to, cc, and bcc. We found the first duplicate instance of [{address}] in "
                    f"the personalizations.{number}.{kind} field.",
                    f"personalizations.{number}.{kind}",
                )
            seen.add(address)
        if "dynamic_template_data" in personalization and not str(
            mail.get("template_id", "")
        ).startswith("d-"):
            return sendgrid_error(
                400, "dynamic_template_data needs a dynamic template_id", "template_id"
            )
    if not mail.get("from", {}).get("email"):
        return sendgrid_error(400, "The from object must be provided.", "from")
    if mail["from"]["email"] not in VERIFIED_SENDERS:
        return sendgrid_error(403, UNVERIFIED, "from")
    if "template_id" not in mail:
        if not mail.get("subject"):
            return sendgrid_error(400, "The subject is required.", "subject")
        types = [part["type"] for part in mail.get("content", [])]
        if not types or types[0] != "text/plain":
            return sendgrid_error(400, "The text/plain content type must be first.", "content")
    for number, attachment in enumerate(mail.get("attachments", [])):
        try:
            base64.b64decode(attachment.get("content", ""), validate=True)
        except ValueError:
            return sendgrid_error(
                400,
                "The attachment content must be base64 encoded.",
                f"attachments.{number}.content",
            )
        if not attachment.get("filename"):
            return sendgrid_error(
                400,
                "The attachment filename parameter is required.",
                f"attachments.{number}.filename",
            )
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


# SendGrid's 403 is told apart by its message (the error table below).
@pytest.mark.parametrize(
    "failure", [failure for failure in HTTP_FAILURES if failure.values[0].status != 403]
)
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


def answer(row: Row) -> Reply:
    """What SendGrid answers for one row of the error table in docs/plugins/sendgrid-email.md."""
    status = int(row.code("http"))
    if status == 202:
        headers = {"X-Message-Id": MESSAGE_ID} if "no " not in row["sendgrid says"] else {}
        return Reply(202, b"", headers)
    reply = sendgrid_error(status, row.code("sendgrid says"))
    if row.wants_retry_after_header:
        reply.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return reply


@pytest.mark.parametrize("row", rows_as_params("sendgrid-email"))
async def test_every_row_of_the_error_table(
    fake: HttpFake, run_plugin: RunPlugin, row: Row
) -> None:
    fake.fail_next(answer(row))
    async with run_plugin("sendgrid-email", config(fake.url), secrets=SECRETS) as client:
        outcome = await outcome_of(client.send("ann@example.org", "x"))

    assert_outcome(row, outcome)
    if row.error is not None:
        assert row.code("sendgrid says") in str(outcome)


def test_the_error_table_lists_every_message_the_plugin_tells_apart() -> None:
    table = {
        (int(row.code("http")), row.code("sendgrid says").lower()): row.error
        for row in error_table("sendgrid-email")
    }
    module = plugin_module("sendgrid-email")

    for status, messages in module.MESSAGE_CLASSES.items():
        for words, error_class in messages:
            matching = [
                cls for (code, said), cls in table.items() if code == status and words in said
            ]
            assert matching == [error_class], (status, words)


async def test_an_unverified_sender_fails_over_as_configuration(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    settings = config(fake.url, from_address="someone@unverified.example")
    async with run_plugin("sendgrid-email", settings, secrets=SECRETS) as client:
        with pytest.raises(ConfigError, match="does not match a verified Sender Identity"):
            await client.send("ann@example.org", "x")


async def test_attachments_cc_and_bcc_are_the_documented_json(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    invoice = Attachment("invoice.pdf", "application/pdf", data=b"%PDF-1.7 \x00\xff")
    async with run_plugin("sendgrid-email", config(fake.url), secrets=SECRETS) as client:
        result = await client.send(
            "ann@example.org",
            "Your invoice",
            subject="Invoice",
            attachments=(invoice,),
            cc=("Bob <bob@example.org>", "ANN@example.org"),
            bcc=("audit@example.org", "bob@example.org"),
        )

    mail = fake.last.json()
    assert mail["personalizations"] == [
        {
            "to": [{"email": "ann@example.org"}],
            "cc": [{"email": "bob@example.org", "name": "Bob"}],
            "bcc": [{"email": "audit@example.org"}],
        }
    ]
    assert mail["attachments"] == [
        {
            "content": base64.b64encode(invoice.data).decode(),
            "type": "application/pdf",
            "filename": "invoice.pdf",
            "disposition": "attachment",
        }
    ]
    assert result.details["recipients"] == "3"
    assert result.details["attachments"] == "1"


async def test_a_dynamic_template_sends_its_id_and_data_and_no_content(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    template = Template("d-13b8f94fbcae4ec6b75270d6cb59f932", {"name": "Ann", "code": 123456})
    async with run_plugin("sendgrid-email", config(fake.url), secrets=SECRETS) as client:
        await client.send("ann@example.org", "", template=template)

    assert fake.last.json() == {
        "personalizations": [
            {
                "to": [{"email": "ann@example.org"}],
                "dynamic_template_data": {"name": "Ann", "code": 123456},
            }
        ],
        "from": {"email": "notifications@example.com", "name": "Example"},
        "template_id": "d-13b8f94fbcae4ec6b75270d6cb59f932",
    }
