"""vonage-sms against a local stand-in for the Vonage SMS API (HTTP 200 with per-message status)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from switchboard.sdk import (
    OutcomeUnknown,
    PermanentError,
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
    error_table,
    outcome_of,
    rows_as_params,
)
from tests.plugins.fakes import HttpFake, Recorded, Reply, closed_port

KEY, SECRET = "abcd1234", "vonage-secret-6e1f"
SECRETS = {"VONAGE_API_KEY": KEY, "VONAGE_API_SECRET": SECRET}


def refused(status: str, text: str) -> Reply:
    """Vonage's documented refusal: HTTP 200, the status code in the message entry."""
    return Reply(200, {"message-count": "1", "messages": [{"status": status, "error-text": text}]})


def accepted_part(to: str, message_id: str) -> dict[str, str]:
    """One accepted part of a message, as Vonage lists it."""
    return {
        "to": to,
        "message-id": message_id,
        "status": "0",
        "remaining-balance": "3.14159265",
        "message-price": "0.03330000",
        "network": "23410",
    }


#: GSM 03.38 characters that take two septets (escape + character).
GSM_EXTENSION = set("^{}\\[~]|€\f")


def part_count(text: str, unicode: bool) -> int:
    """How many SMS Vonage splits ``text`` into: 160/153 septets, or 70/67 UCS-2 characters."""
    size = len(text) if unicode else sum(2 if c in GSM_EXTENSION else 1 for c in text)
    single, each = (70, 67) if unicode else (160, 153)
    return 1 if size <= single else -(-size // each)


class Vonage:
    """POST /sms/json (form) and GET /account/get-balance (Basic auth) as documented.

    ``refuse[n] = (status, error_text)`` makes part ``n`` (from 1) of every
    message fail with that status while its other parts are accepted.
    """

    def __init__(self) -> None:
        self.refuse: dict[int, tuple[str, str]] = {}

    def __call__(self, request: Recorded) -> Reply:
        if (request.method, request.path) == ("GET", "/account/get-balance"):
            if request.basic_auth() != (KEY, SECRET):
                return Reply(
                    401, {"error-code": "401", "error-code-label": "authentication failed"}
                )
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
        count = part_count(form["text"], form.get("type") == "unicode")
        parts = [
            {"status": self.refuse[n][0], "error-text": self.refuse[n][1]}
            if n in self.refuse
            else accepted_part(form["to"], f"0A00000001{n:07d}")
            for n in range(1, count + 1)
        ]
        return Reply(200, {"message-count": str(count), "messages": parts})


@pytest.fixture
def vonage() -> Vonage:
    return Vonage()


@pytest.fixture
async def fake(vonage: Vonage) -> AsyncIterator[HttpFake]:
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
    assert result.provider_message_id == "0A000000010000001"
    assert result.details == {
        "to": "+447700900123",
        "network": "23410",
        "parts": "1/1",
        "message_ids": "0A000000010000001",
    }


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
    async with run_plugin("vonage-sms", config(fake.url), secrets=SECRETS) as client:
        result = await client.send("+447700900123", "x" * 300)

    assert result.provider_message_id == "0A000000010000001"
    assert result.details["parts"] == "2/2"
    assert result.details["message_ids"] == "0A000000010000001,0A000000010000002"
    assert "partial" not in result.details


async def test_a_throttled_later_part_is_a_partial_delivery_and_nothing_is_sent_again(
    fake: HttpFake, vonage: Vonage, run_plugin: RunPlugin
) -> None:
    vonage.refuse[3] = ("1", "Throughput Rate Exceeded - please wait [ 30 ] and retry")
    async with run_plugin("vonage-sms", config(fake.url), secrets=SECRETS) as client:
        result = await client.send("+447700900123", "word " * 80)  # 400 characters: 3 parts

    assert len(fake.requests) == 1
    assert result.provider_message_id == "0A000000010000001"
    assert result.details["parts"] == "2/3"
    assert result.details["partial"] == "true"
    assert result.details["message_ids"] == "0A000000010000001,0A000000010000002"
    assert result.details["failed"] == (
        "part 3: RETRYABLE: Vonage refused part 3 of the message with status 1: "
        "Throughput Rate Exceeded - please wait [ 30 ] and retry"
    )


async def test_when_no_part_was_accepted_the_first_parts_status_decides(
    fake: HttpFake, vonage: Vonage, run_plugin: RunPlugin
) -> None:
    vonage.refuse |= {1: ("7", "Number barred"), 2: ("1", "Throttled")}
    async with run_plugin("vonage-sms", config(fake.url), secrets=SECRETS) as client:
        with pytest.raises(PermanentError, match="refused the message with status 7"):
            await client.send("+447700900123", "x" * 300)


def answer(row: Row) -> Reply:
    """What Vonage answers for one row of the error table in docs/plugins/vonage-sms.md."""
    status = int(row.code("http"))
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if row.wants_retry_after_header else {}
    if status != 200:
        return Reply(status, {"type": "about:blank", "title": row["vonage says"]}, headers)
    statuses = row.codes("status") or (["99"] if "other" in row["status"] else [])
    if not statuses:
        return Reply(200, {"message-count": "1"})
    parts = [
        accepted_part("447700900123", f"0A0{n}")
        if code == "0"
        else {"status": code, "error-text": row["vonage says"]}
        for n, code in enumerate(statuses, 1)
    ]
    return Reply(200, {"message-count": str(len(parts)), "messages": parts})


@pytest.mark.parametrize("row", rows_as_params("vonage-sms"))
async def test_every_row_of_the_error_table(
    fake: HttpFake, run_plugin: RunPlugin, row: Row
) -> None:
    fake.fail_next(answer(row))
    async with run_plugin("vonage-sms", config(fake.url), secrets=SECRETS) as client:
        outcome = await outcome_of(client.send("+447700900123", "hi"))

    assert_outcome(row, outcome)
    if row.error is not None and row.codes("status"):
        assert f"with status {row.codes('status')[0]}: {row['vonage says']}" in str(outcome)


def test_the_error_table_lists_every_status_the_plugin_tells_apart() -> None:
    table = {row.code("status"): row.error for row in error_table("vonage-sms")
             if len(row.codes("status")) == 1}  # fmt: skip
    statuses = plugin_module("vonage-sms").STATUS_CLASSES

    assert {status: table.get(status) for status in statuses} == statuses


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
