"""generic-webhook against a local receiver that verifies signatures as the docs say."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from switchboard.sdk import (
    ConfigError,
    DeliveryState,
    InvalidInput,
    OutcomeUnknown,
    PluginError,
    RetryableError,
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
    outcome_of,
    rows_as_params,
)
from tests.plugins.fakes import HttpFake, Recorded, Reply, closed_port
from tests.plugins.receipttable import StatusRow, documented_states, statuses_as_params

SIGNING_SECRET = "whsec-5b0c7a1e9f2d4c3b"
BEARER = "receiver-token-81ac"
SECRETS = {"WEBHOOK_SIGNING_SECRET": SIGNING_SECRET, "WEBHOOK_TOKEN": BEARER}
RECEIPT_URL = "https://hooks.example.com/v1/receipts/team-a/generic-webhook"


def verify(request: Recorded, secret: str = SIGNING_SECRET, tolerance: int = 300) -> bool:
    """What docs/plugins/generic-webhook.md tells a receiver to do, written independently."""
    timestamp = request.headers.get("X-Switchboard-Timestamp", "")
    signature = request.headers.get("X-Switchboard-Signature", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(signature, f"sha256={expected}")


def receiver(request: Recorded) -> Reply:
    if request.headers.get("Authorization") != f"Bearer {BEARER}":
        return Reply(401, {"error": "missing or wrong bearer token"})
    if "X-Switchboard-Signature" in request.headers and not verify(request):
        return Reply(403, {"error": "bad signature"})
    return Reply(200, {"data": {"id": "rcv-123"}, "accepted": True})


@pytest.fixture
async def fake() -> AsyncIterator[HttpFake]:
    async with HttpFake(receiver) as server:
        yield server


def config(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "url": url + "/hooks/switchboard",
        "headers": {"Authorization": "Bearer ${WEBHOOK_TOKEN}", "X-Source": "switchboard"},
        "signing_secret": "${WEBHOOK_SIGNING_SECRET}",
        **extra,
    }


async def test_posts_signed_json_that_the_receiver_verifies(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin(
        "generic-webhook", config(fake.url, message_id_field="data.id"), secrets=SECRETS
    ) as client:
        result = await client.send(
            "ops@example.com",
            "Disk almost full",
            subject="Alert",
            metadata={"severity": "high"},
            idempotency_key="alert-77",
            tenant="team-a",
        )

    sent = fake.last
    assert (sent.method, sent.path) == ("POST", "/hooks/switchboard")
    assert verify(sent)
    assert sent.content_type == "application/json"
    assert sent.headers["X-Source"] == "switchboard"
    assert sent.headers["Idempotency-Key"] == '"alert-77"'
    assert parse_sf_string(sent.headers["Idempotency-Key"]) == "alert-77"
    body = sent.json()
    assert body == {
        "id": sent.headers["X-Switchboard-Message-Id"],
        "timestamp": int(sent.headers["X-Switchboard-Timestamp"]),
        "recipient": "ops@example.com",
        "subject": "Alert",
        "content": "Disk almost full",
        "content_type": "text/plain",
        "metadata": {"severity": "high"},
        "idempotency_key": "alert-77",
        "tenant": "team-a",
    }
    uuid.UUID(body["id"])
    assert result.provider_message_id == "rcv-123"
    assert result.details == {"status": "200", "message_id_source": "response"}


async def test_a_tampered_body_or_another_secret_fails_verification(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin("generic-webhook", config(fake.url), secrets=SECRETS) as client:
        await client.send("ops", "x")

    sent = fake.last
    tampered = Recorded(sent.method, sent.path, sent.query, sent.headers, sent.body + b" ")
    assert verify(sent)
    assert not verify(tampered)
    assert not verify(sent, secret="another-secret-0000")


async def test_without_a_response_id_the_generated_id_is_returned(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    fake.fail_next(Reply(202, b""))
    async with run_plugin(
        "generic-webhook", config(fake.url, message_id_field="data.id"), secrets=SECRETS
    ) as client:
        result = await client.send("ops", "x")

    assert result.provider_message_id == fake.last.json()["id"]
    assert result.details == {"status": "202", "message_id_source": "generated"}


async def test_unsigned_when_no_signing_secret_is_configured(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    settings = config(fake.url)
    del settings["signing_secret"]
    async with run_plugin("generic-webhook", settings, secrets=SECRETS) as client:
        await client.send("ops", "x", receipt_url=RECEIPT_URL)

    assert "X-Switchboard-Signature" not in fake.last.headers
    assert "X-Switchboard-Timestamp" not in fake.last.headers
    assert "Idempotency-Key" not in fake.last.headers
    assert "X-Switchboard-Receipt-Url" not in fake.last.headers


@pytest.mark.parametrize("failure", HTTP_FAILURES)
async def test_http_failures_are_classified(
    fake: HttpFake, run_plugin: RunPlugin, failure: Failure
) -> None:
    fake.fail_next(failure.reply({"error": "failure"}))
    async with run_plugin("generic-webhook", config(fake.url), secrets=SECRETS) as client:
        with pytest.raises(failure.error) as raised:
            await client.send("ops", "x")

    assert_classified(raised, failure)
    assert str(raised.value).startswith(f"127.0.0.1 answered HTTP {failure.status}: failure")


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({"X-Switchboard-Signature": "forged"}, "X-Switchboard-Signature is set by the plugin"),
        (
            {"X-Switchboard-Receipt-Url": "https://x.example"},
            "X-Switchboard-Receipt-Url is set by the plugin",
        ),
        ({"content-type": "text/plain"}, "content-type is set by the plugin"),
        ({"Bad Header": "x"}, "'Bad Header' is not a valid header name"),
    ],
)
async def test_headers_the_plugin_owns_cannot_be_configured(
    fake: HttpFake, run_plugin: RunPlugin, headers: dict[str, str], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        async with run_plugin(
            "generic-webhook", config(fake.url, headers=headers), secrets=SECRETS
        ):
            pass


@pytest.mark.parametrize(
    ("receipt_url", "problem"),
    [
        pytest.param(
            "https://hooks.example.com/v1/receipts/équipe-a/generic-webhook",
            "HTTP headers hold ASCII characters only",
            id="not-ascii",
        ),
        pytest.param(
            "https://hooks.example.com/v1/receipts\r\nX-Injected: yes",
            "a line break or control character is not allowed",
            id="line-break",
        ),
    ],
)
async def test_a_header_the_message_makes_unsendable_is_invalid_input_and_nothing_is_sent(
    fake: HttpFake, run_plugin: RunPlugin, receipt_url: str, problem: str
) -> None:
    # Failing over would send the same unsendable header through every plugin,
    # and a RETRYABLE here would count against this endpoint's health.
    async with run_plugin("generic-webhook", config(fake.url), secrets=SECRETS) as client:
        with pytest.raises(InvalidInput) as raised:
            await client.send("ops", "x", receipt_url=receipt_url)

    assert "header 'X-Switchboard-Receipt-Url'" in raised.value.message
    assert problem in raised.value.message
    assert fake.requests == []


async def test_a_refused_connection_is_retryable_and_a_timeout_is_unknown(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin(
        "generic-webhook", config(f"http://127.0.0.1:{closed_port()}"), secrets=SECRETS
    ) as client:
        with pytest.raises(RetryableError, match=r"Could not reach 127\.0\.0\.1: ConnectError"):
            await client.send("ops", "x")

    fake.fail_next(Reply(200, delay=2))
    async with run_plugin(
        "generic-webhook", config(fake.url, timeout_seconds=0.2), secrets=SECRETS
    ) as client:
        with pytest.raises(OutcomeUnknown, match=r"127\.0\.0\.1 did not answer in time"):
            await client.send("ops", "x")


def answer(row: Row) -> Reply:
    """The receiver's answer for one row of the table in docs/plugins/generic-webhook.md."""
    status = int(row.code("http"))
    said = row.code("receiver says") if row.codes("receiver says") else ""
    body: Any = json.loads(said) if said.startswith("{") else said
    headers = {"Location": "https://elsewhere.example/"} if 300 <= status < 400 else {}
    if row.wants_retry_after_header:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return Reply(status, body, headers)


@pytest.mark.parametrize("row", rows_as_params("generic-webhook"))
async def test_every_row_of_the_error_table(
    fake: HttpFake, run_plugin: RunPlugin, row: Row
) -> None:
    fake.fail_next(answer(row))
    async with run_plugin(
        "generic-webhook", config(fake.url, message_id_field="data.id"), secrets=SECRETS
    ) as client:
        outcome = await outcome_of(client.send("ops", "x", idempotency_key="alert-77"))

    assert_outcome(row, outcome)
    if isinstance(outcome, PluginError):
        assert outcome.message.startswith(f"127.0.0.1 answered HTTP {row.code('http')}")


@pytest.mark.parametrize(
    ("key", "header"),
    [
        ("alert-77", '"alert-77"'),
        ("8e03978e-40d5-43e8-bc93-6894a57f9324", '"8e03978e-40d5-43e8-bc93-6894a57f9324"'),
        ('a"b\\c', '"a\\"b\\\\c"'),
    ],
)
def test_the_idempotency_key_is_an_sf_string(key: str, header: str) -> None:
    serialized = plugin_module("generic-webhook").structured_string(key)

    assert serialized == header
    assert parse_sf_string(serialized) == key


def parse_sf_string(text: str) -> str:
    """RFC 8941 section 4.2.5, written from the RFC: the string an sf-string holds."""
    assert text[0] == text[-1] == '"', text
    value, escaped = "", False
    for char in text[1:-1]:
        assert " " <= char <= "~", text
        if escaped:
            assert char in '"\\', text
            value, escaped = value + char, False
        elif char == "\\":
            escaped = True
        else:
            assert char != '"', text
            value += char
    assert not escaped, text
    return value


# -- delivery receipts: the contract of docs/plugins/generic-webhook.md, from the receiver's side --


def signed_receipt(
    document: Any,
    *,
    secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
    url: str = RECEIPT_URL,
) -> tuple[str, str, dict[str, str], bytes]:
    """A receipt as the docs tell a receiver to post it: JSON, X-Switchboard-Timestamp,
    and X-Switchboard-Signature: sha256=<hex HMAC-SHA256 over "<timestamp>." + body>."""
    body = json.dumps(document).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Switchboard-Timestamp": stamp,
        "X-Switchboard-Signature": f"sha256={digest}",
    }
    return "POST", url, headers, body


async def test_a_signed_request_names_the_receipts_url_and_the_receipt_finds_the_message(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin(
        "generic-webhook", config(fake.url, message_id_field="data.id"), secrets=SECRETS
    ) as client:
        sent = await client.send("ops@example.com", "Disk almost full", receipt_url=RECEIPT_URL)
        # The receiver answers on the URL it was given, about the id it answered with.
        request = fake.last
        assert verify(request)
        reply = await client.handle_receipt(
            *signed_receipt(
                {"message_id": "rcv-123", "status": "failed", "error": "mailbox full"},
                url=request.headers["X-Switchboard-Receipt-Url"],
            )
        )

    assert request.headers["X-Switchboard-Receipt-Url"] == RECEIPT_URL
    assert sent.provider_message_id == "rcv-123"
    assert [(r.provider_message_id, r.state, r.error) for r in reply.receipts] == [
        ("rcv-123", DeliveryState.FAILED, "mailbox full")
    ]


async def test_without_a_router_url_no_receipts_url_is_sent(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin("generic-webhook", config(fake.url), secrets=SECRETS) as client:
        await client.send("ops", "x")

    assert "X-Switchboard-Receipt-Url" not in fake.last.headers


@pytest.mark.parametrize("row", statuses_as_params("generic-webhook"))
async def test_every_documented_status_becomes_its_state(
    run_plugin: RunPlugin, row: StatusRow
) -> None:
    receipt = {"message_id": "5b1f7c7e-2c1d-4a57-9a49-2f0c9b8e1d3a", "status": row.status}
    async with run_plugin(
        "generic-webhook", config("http://127.0.0.1:9"), secrets=SECRETS
    ) as client:
        reply = await client.handle_receipt(*signed_receipt(receipt))

    assert [(r.provider_message_id, r.state) for r in reply.receipts] == [
        ("5b1f7c7e-2c1d-4a57-9a49-2f0c9b8e1d3a", row.state)
    ], row.line


def test_the_receipt_table_lists_every_status_the_plugin_maps() -> None:
    assert documented_states("generic-webhook") == plugin_module("generic-webhook").RECEIPT_STATES


async def test_a_batch_gives_a_receipt_per_entry_in_order(run_plugin: RunPlugin) -> None:
    batch = [
        {"message_id": "a", "status": "sent"},
        {"message_id": "b", "status": "delivered", "error": None},
        {"message_id": "c", "status": "failed", "error": "  number\n unreachable "},
    ]
    async with run_plugin(
        "generic-webhook", config("http://127.0.0.1:9"), secrets=SECRETS
    ) as client:
        reply = await client.handle_receipt(*signed_receipt(batch))

    assert [(r.provider_message_id, r.state, r.error) for r in reply.receipts] == [
        ("a", DeliveryState.SENT, ""),
        ("b", DeliveryState.DELIVERED, ""),
        ("c", DeliveryState.FAILED, "number unreachable"),
    ]


def forged_receipt(kind: str) -> tuple[str, str, dict[str, str], bytes]:
    """A receipt not signed with this plugin's secret, or altered on the way."""
    receipt = {"message_id": "rcv-123", "status": "delivered"}
    method, url, headers, body = signed_receipt(receipt)
    if kind == "other-secret":
        method, url, headers, body = signed_receipt(receipt, secret="another-secret-0000")
    elif kind == "status-changed":
        body = body.replace(b"delivered", b"failed")
    elif kind == "timestamp-changed":
        headers["X-Switchboard-Timestamp"] = str(int(headers["X-Switchboard-Timestamp"]) - 1)
    elif kind == "no-signature":
        del headers["X-Switchboard-Signature"]
    elif kind == "signature-without-timestamp":
        digest = hmac.new(SIGNING_SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Switchboard-Signature"] = f"sha256={digest}"
    return method, url, headers, body


@pytest.mark.parametrize(
    "kind",
    [
        "other-secret",
        "status-changed",
        "timestamp-changed",
        "no-signature",
        "signature-without-timestamp",
    ],
)
async def test_a_forged_or_altered_receipt_is_unauthenticated(
    run_plugin: RunPlugin, kind: str
) -> None:
    async with run_plugin(
        "generic-webhook", config("http://127.0.0.1:9"), secrets=SECRETS
    ) as client:
        with pytest.raises(Unauthenticated, match="does not match the signing secret") as refused:
            await client.handle_receipt(*forged_receipt(kind))

    assert SIGNING_SECRET not in refused.value.message


@pytest.mark.parametrize(
    ("age", "problem"),
    [
        pytest.param(301, "s old; at most 300 s", id="replayed"),
        pytest.param(-400, "s in the future", id="from-the-future"),
        pytest.param(None, "no usable signature timestamp", id="no-timestamp"),
    ],
)
async def test_a_correctly_signed_receipt_outside_the_time_window_is_unauthenticated(
    run_plugin: RunPlugin, age: int | None, problem: str
) -> None:
    receipt = {"message_id": "rcv-123", "status": "delivered"}
    stamp = int(time.time()) - (age or 0)
    method, url, headers, body = signed_receipt(receipt, timestamp=stamp)
    if age is None:
        del headers["X-Switchboard-Timestamp"]
    async with run_plugin(
        "generic-webhook", config("http://127.0.0.1:9"), secrets=SECRETS
    ) as client:
        with pytest.raises(Unauthenticated, match=problem):
            await client.handle_receipt(method, url, headers, body)


async def test_a_longer_tolerance_accepts_an_older_receipt(run_plugin: RunPlugin) -> None:
    receipt = {"message_id": "rcv-123", "status": "delivered"}
    late = signed_receipt(receipt, timestamp=int(time.time()) - 900)
    async with run_plugin(
        "generic-webhook",
        config("http://127.0.0.1:9", receipt_tolerance_seconds=1200),
        secrets=SECRETS,
    ) as client:
        reply = await client.handle_receipt(*late)

    assert [r.state for r in reply.receipts] == [DeliveryState.DELIVERED]


async def test_without_a_signing_secret_no_receipt_is_believed(run_plugin: RunPlugin) -> None:
    settings = config("http://127.0.0.1:9")
    del settings["signing_secret"]
    async with run_plugin("generic-webhook", settings, secrets=SECRETS) as client:
        with pytest.raises(Unauthenticated, match="signing_secret is not set"):
            await client.handle_receipt(
                *signed_receipt({"message_id": "rcv-123", "status": "delivered"})
            )


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        pytest.param({"status": "delivered"}, r"receipt\[0\]\.message_id", id="no-id"),
        pytest.param(
            {"message_id": "a", "status": "bounced"},
            r"receipt\[0\]\.status: 'bounced' is not one of sent, delivered, failed",
            id="unknown-status",
        ),
        pytest.param(
            [{"message_id": "a", "status": "sent"}, "delivered"],
            r"receipt\[1\]: not a JSON object",
            id="bad-batch-entry",
        ),
        pytest.param(
            {"message_id": "a", "status": "failed", "error": {"code": 1}},
            r"receipt\[0\]\.error: must be a string",
            id="error-not-text",
        ),
    ],
)
async def test_a_signed_receipt_that_breaks_the_contract_is_invalid_input(
    run_plugin: RunPlugin, document: Any, problem: str
) -> None:
    async with run_plugin(
        "generic-webhook", config("http://127.0.0.1:9"), secrets=SECRETS
    ) as client:
        with pytest.raises(InvalidInput, match=problem):
            await client.handle_receipt(*signed_receipt(document))
