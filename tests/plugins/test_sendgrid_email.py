"""sendgrid-email against a local stand-in for SendGrid's v3 Mail Send API."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from switchboard.sdk import (
    Attachment,
    ConfigError,
    DeliveryState,
    InvalidInput,
    OutcomeUnknown,
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

API_KEY = "SG.test-key.7d1c2f"
SECRETS = {"SENDGRID_API_KEY": API_KEY}
#: An X-Message-Id in SendGrid's older, dotted form (its events' sg_message_id
#: append ".filter0001.16648.5515E0B88.0" to it).
MESSAGE_ID = "14c5d75ce93.dfd.64b469"


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


# -- delivery receipts: Event Webhook batches signed with ECDSA as SendGrid documents it --

RECEIPT_URL = "https://hooks.example.com/v1/receipts/default/sendgrid-email"
X_MESSAGE_ID = "LRzXl_NHStOGhQ4kofSm_A"
SG_MESSAGE_ID = f"{X_MESSAGE_ID}.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0"
#: SendGrid's signing key for these tests (the account's Signed Event Webhook).
SIGNING_KEY = ec.generate_private_key(ec.SECP256R1())


def public_key_text(key: ec.EllipticCurvePrivateKey = SIGNING_KEY) -> str:
    """The verification key as SendGrid's settings show it: base64 of the DER public key."""
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def receipts_config(**extra: Any) -> dict[str, Any]:
    return config("http://127.0.0.1:9", event_webhook_public_key=public_key_text(), **extra)


def event(kind: str, sg_message_id: str = SG_MESSAGE_ID, **fields: Any) -> dict[str, Any]:
    """One Event Webhook event as SendGrid's Event Webhook Reference shows it."""
    return {
        "email": "ann@example.com",
        "timestamp": int(time.time()) - 5,
        "smtp-id": f"<{X_MESSAGE_ID}@ismtpd0039p1iad1.sendgrid.net>",
        "event": kind,
        "category": ["receipts"],
        "sg_event_id": base64.urlsafe_b64encode(f"{kind}-{sg_message_id}".encode()).decode()[:22],
        "sg_message_id": sg_message_id,
        "switchboard_idempotency_key": "order-77",
        **fields,
    }


def signed_batch(
    events: list[Any],
    *,
    key: ec.EllipticCurvePrivateKey = SIGNING_KEY,
    timestamp: int | None = None,
) -> tuple[dict[str, str], bytes]:
    """Headers and body of an Event Webhook POST: the JSON array with SendGrid's
    trailing CRLF, signed (ECDSA, SHA-256) over the timestamp followed by the body."""
    body = (json.dumps(events) + "\r\n").encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    headers = {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        "User-Agent": "SendGrid Event API",
    }
    return headers, body


#: The fields SendGrid adds to the events that end badly.
FAILURE_FIELDS = {
    "bounce": {
        "type": "bounce",
        "status": "5.1.1",
        "reason": "550 5.1.1 The email account that you tried to reach does not exist",
        "bounce_classification": "Invalid Address",
    },
    "dropped": {"reason": "Bounced Address", "status": "5.0.0"},
    "deferred": {"response": "400 try again later", "attempt": "5"},
}
FAILURE_ERRORS = {
    "bounce": "SendGrid reports a bounce (5.1.1): 550 5.1.1 The email account that you "
    "tried to reach does not exist",
    "dropped": "SendGrid dropped the message: Bounced Address",
}


@pytest.mark.parametrize("row", statuses_as_params("sendgrid-email"))
async def test_every_documented_event_becomes_its_state(
    run_plugin: RunPlugin, row: StatusRow
) -> None:
    headers, body = signed_batch([event(row.status, **FAILURE_FIELDS.get(row.status, {}))])
    async with run_plugin("sendgrid-email", receipts_config(), secrets=SECRETS) as client:
        reply = await client.handle_receipt("POST", RECEIPT_URL, headers, body)

    if row.state is None:
        assert reply.receipts == (), row.line
        return
    assert [(r.provider_message_id, r.state) for r in reply.receipts] == [
        (X_MESSAGE_ID, row.state)
    ], row.line
    assert reply.receipts[0].error == FAILURE_ERRORS.get(row.status, "")


def test_the_receipt_table_lists_every_event_the_plugin_maps() -> None:
    documented = documented_states("sendgrid-email")
    mapped = plugin_module("sendgrid-email").EVENT_STATES

    assert {name: state for name, state in documented.items() if state} == mapped


async def test_a_batch_gives_one_receipt_per_event_about_a_message_in_its_order(
    run_plugin: RunPlugin,
) -> None:
    other = "Q2hhcmxpZV9CZXJuc3Rl"
    headers, body = signed_batch(
        [
            event("processed"),
            event("deferred", **FAILURE_FIELDS["deferred"]),
            event("delivered", response="250 OK"),
            event("bounce", f"{other}.recvd-5f6c7d-1.0", type="blocked", reason="IP blocked"),
            event("open", useragent="Mozilla/5.0", ip="203.0.113.9"),
            # An account event and a drop of an address SendGrid could not parse: no id.
            {"event": "account_status_change", "type": "compliance_suspend", "timestamp": 1},
            {"email": "not an address", "event": "dropped", "reason": "Invalid", "timestamp": 1},
        ]
    )
    async with run_plugin("sendgrid-email", receipts_config(), secrets=SECRETS) as client:
        reply = await client.handle_receipt("POST", RECEIPT_URL, headers, body)

    assert [(r.provider_message_id, r.state, r.error) for r in reply.receipts] == [
        (X_MESSAGE_ID, DeliveryState.SENT, ""),
        (X_MESSAGE_ID, DeliveryState.SENT, ""),
        (X_MESSAGE_ID, DeliveryState.DELIVERED, ""),
        (other, DeliveryState.FAILED, "SendGrid reports a blocked: IP blocked"),
        (X_MESSAGE_ID, DeliveryState.DELIVERED, ""),
    ]


async def test_a_receipt_names_the_id_the_send_returned_even_an_older_dotted_one(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    settings = {**receipts_config(), "base_url": fake.url}
    async with run_plugin("sendgrid-email", settings, secrets=SECRETS) as client:
        sent = await client.send("ann@example.com", "Your receipt", subject="Receipt")
        headers, body = signed_batch(
            [event("delivered", f"{sent.provider_message_id}.filter0001.16648.5515E0B88.0")]
        )
        reply = await client.handle_receipt("POST", RECEIPT_URL, headers, body)

    assert sent.provider_message_id == MESSAGE_ID
    assert [r.provider_message_id for r in reply.receipts] == [MESSAGE_ID]


def forged_batch(kind: str) -> tuple[dict[str, str], bytes]:
    """An Event Webhook POST SendGrid did not sign with this account's key, or altered."""
    events = [event("bounce", **FAILURE_FIELDS["bounce"])]
    headers, body = signed_batch(events)
    if kind == "other-key":
        headers, body = signed_batch(events, key=ec.generate_private_key(ec.SECP256R1()))
    elif kind == "event-changed":
        body = body.replace(b'"bounce"', b'"delivered"')
    elif kind == "timestamp-changed":
        headers["X-Twilio-Email-Event-Webhook-Timestamp"] = str(int(time.time()) - 1)
    elif kind == "no-signature":
        del headers["X-Twilio-Email-Event-Webhook-Signature"]
    elif kind == "signature-of-another-batch":
        other, _ = signed_batch([event("delivered")])
        headers["X-Twilio-Email-Event-Webhook-Signature"] = other[
            "X-Twilio-Email-Event-Webhook-Signature"
        ]
    elif kind == "not-a-signature":
        headers["X-Twilio-Email-Event-Webhook-Signature"] = "not base64 at all"
    return headers, body


@pytest.mark.parametrize(
    "kind",
    [
        "other-key",
        "event-changed",
        "timestamp-changed",
        "no-signature",
        "signature-of-another-batch",
        "not-a-signature",
    ],
)
async def test_a_forged_or_altered_batch_is_unauthenticated(
    run_plugin: RunPlugin, kind: str
) -> None:
    headers, body = forged_batch(kind)
    async with run_plugin("sendgrid-email", receipts_config(), secrets=SECRETS) as client:
        with pytest.raises(Unauthenticated, match="does not match the verification key"):
            await client.handle_receipt("POST", RECEIPT_URL, headers, body)


@pytest.mark.parametrize(
    ("age", "problem"),
    [
        pytest.param(400, "s old; at most 300 s", id="replayed"),
        pytest.param(-400, "s in the future", id="from-the-future"),
    ],
)
async def test_a_correctly_signed_batch_outside_the_time_window_is_unauthenticated(
    run_plugin: RunPlugin, age: int, problem: str
) -> None:
    headers, body = signed_batch([event("delivered")], timestamp=int(time.time()) - age)
    async with run_plugin("sendgrid-email", receipts_config(), secrets=SECRETS) as client:
        with pytest.raises(Unauthenticated, match=problem):
            await client.handle_receipt("POST", RECEIPT_URL, headers, body)
    async with run_plugin(
        "sendgrid-email", receipts_config(receipt_tolerance_seconds=600), secrets=SECRETS
    ) as client:
        reply = await client.handle_receipt("POST", RECEIPT_URL, headers, body)

    assert [r.state for r in reply.receipts] == [DeliveryState.DELIVERED]


async def test_without_a_verification_key_every_callback_is_refused(
    run_plugin: RunPlugin,
) -> None:
    headers, body = signed_batch([event("delivered")])
    async with run_plugin(
        "sendgrid-email", config("http://127.0.0.1:9"), secrets=SECRETS
    ) as client:
        with pytest.raises(Unauthenticated, match="event_webhook_public_key is not set"):
            await client.handle_receipt("POST", RECEIPT_URL, headers, body)


async def test_a_verification_key_that_is_not_one_stops_the_plugin_at_start(
    run_plugin: RunPlugin,
) -> None:
    with pytest.raises(ConfigError, match=r"config\.event_webhook_public_key: not a PEM"):
        async with run_plugin(
            "sendgrid-email",
            config("http://127.0.0.1:9", event_webhook_public_key="MFkwEwYHKoZI"),
            secrets=SECRETS,
        ):
            pass


async def test_a_signed_body_that_is_not_a_batch_is_invalid_input(
    run_plugin: RunPlugin,
) -> None:
    headers, body = signed_batch([])
    body = b'{"event": "delivered"}'
    stamp = headers["X-Twilio-Email-Event-Webhook-Timestamp"]
    signature = SIGNING_KEY.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    headers["X-Twilio-Email-Event-Webhook-Signature"] = base64.b64encode(signature).decode()
    async with run_plugin("sendgrid-email", receipts_config(), secrets=SECRETS) as client:
        with pytest.raises(InvalidInput, match="not a JSON array of events"):
            await client.handle_receipt("POST", RECEIPT_URL, headers, body)
