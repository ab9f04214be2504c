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

from switchboard.sdk import ConfigError, OutcomeUnknown, PluginError, RetryableError
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

SIGNING_SECRET = "whsec-5b0c7a1e9f2d4c3b"
BEARER = "receiver-token-81ac"
SECRETS = {"WEBHOOK_SIGNING_SECRET": SIGNING_SECRET, "WEBHOOK_TOKEN": BEARER}


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
        await client.send("ops", "x")

    assert "X-Switchboard-Signature" not in fake.last.headers
    assert "X-Switchboard-Timestamp" not in fake.last.headers
    assert "Idempotency-Key" not in fake.last.headers


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
