"""vonage-sms against a local stand-in for the Vonage SMS API (HTTP 200 with per-message status)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest

from switchboard.sdk import (
    ConfigError,
    DeliveryState,
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
from tests.plugins.receipttable import StatusRow, documented_states, statuses_as_params

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
    assert result.part_ids == ("0A000000010000002",)
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
    assert result.part_ids == ("0A000000010000002",)
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


# -- delivery receipts: DLRs signed as Vonage's "Signing messages" guide describes --

RECEIPT_URL = "https://hooks.example.com/v1/receipts/default/vonage-sms"
SIGNATURE_SECRET = "vonage-signature-secret-93c1"
RECEIPT_SECRETS = {**SECRETS, "VONAGE_SIGNATURE_SECRET": SIGNATURE_SECRET}


def receipts_config(method: str | None = None, **extra: Any) -> dict[str, Any]:
    settings = config("http://127.0.0.1:9", signature_secret="${VONAGE_SIGNATURE_SECRET}", **extra)
    if method:
        settings["signature_method"] = method
    return settings


def vonage_sig(params: dict[str, str], method: str, secret: str = SIGNATURE_SECRET) -> str:
    """``sig`` as the guide's "Manually generate a signature" builds it: the parameters
    sorted by key, ``&`` and ``=`` in values replaced by ``_``, ``&key=value`` each;
    "MD5 hash" appends the secret and hashes, the HMACs key with the secret. Vonage's
    HMAC signatures come in upper-case hex."""
    text = "".join(
        "&" + key + "=" + params[key].replace("&", "_").replace("=", "_") for key in sorted(params)
    )
    if method == "md5hash":
        return hashlib.md5((text + secret).encode(), usedforsecurity=False).hexdigest()
    return hmac.new(secret.encode(), text.encode(), method).hexdigest().upper()


def dlr(status: str, message_id: str = "0A000000010000002", **extra: str) -> dict[str, str]:
    """A delivery receipt's parameters (Vonage's "Delivery receipts" guide), signed fields
    included: ``timestamp`` and ``nonce``."""
    return {
        "msisdn": "447700900123",
        "to": "Switchboard",
        "network-code": "23410",
        "messageId": message_id,
        "price": "0.03330000",
        "status": status,
        "scts": "2001011400",
        "err-code": "0" if status == "delivered" else "1",
        "api-key": KEY,
        "client-ref": "order-77",
        "message-timestamp": "2026-12-01 14:00:00",
        "timestamp": str(int(time.time())),
        "nonce": "2f3e4d5c-6b7a-4988-8776-655443322110",
        **extra,
    }


def signed_dlr(
    params: dict[str, str],
    *,
    method: str = "md5hash",
    as_: str = "GET",
    secret: str = SIGNATURE_SECRET,
) -> tuple[str, str, dict[str, str], bytes]:
    """(method, url, headers, body) of a DLR as Vonage sends it: GET with the
    parameters in the query, POST as a form, or POST-JSON."""
    sent = {**params, "sig": vonage_sig(params, method, secret)}
    if as_ == "GET":
        return "GET", f"{RECEIPT_URL}?{urlencode(sent)}", {}, b""
    if as_ == "POST":
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return "POST", RECEIPT_URL, headers, urlencode(sent).encode()
    return "POST", RECEIPT_URL, {"Content-Type": "application/json"}, json.dumps(sent).encode()


async def test_the_receipts_url_is_the_callback_only_when_receipts_can_be_verified(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    signed = {**receipts_config(), "base_url": fake.url}
    async with run_plugin("vonage-sms", signed, secrets=RECEIPT_SECRETS) as client:
        await client.send("+447700900123", "hi", receipt_url=RECEIPT_URL)
        with_secret = fake.last.form()
    async with run_plugin("vonage-sms", config(fake.url), secrets=SECRETS) as client:
        await client.send("+447700900123", "hi", receipt_url=RECEIPT_URL)
        without_secret = fake.last.form()
    own = "https://relay.example.com/vonage"
    async with run_plugin(
        "vonage-sms", {**signed, "callback_url": own}, secrets=RECEIPT_SECRETS
    ) as client:
        await client.send("+447700900123", "hi", receipt_url=RECEIPT_URL)
        configured = fake.last.form()

    assert with_secret["callback"] == RECEIPT_URL
    assert "callback" not in without_secret
    assert configured["callback"] == own


@pytest.mark.parametrize("row", statuses_as_params("vonage-sms"))
async def test_every_documented_status_becomes_its_state(
    run_plugin: RunPlugin, row: StatusRow
) -> None:
    failed = row.state is DeliveryState.FAILED
    params = dlr(row.status, **({"err-code": "3"} if failed else {}))
    method, url, headers, body = signed_dlr(params)
    async with run_plugin("vonage-sms", receipts_config(), secrets=RECEIPT_SECRETS) as client:
        reply = await client.handle_receipt(method, url, headers, body)

    assert [(r.provider_message_id, r.state) for r in reply.receipts] == [
        ("0A000000010000002", row.state)
    ], row.line
    expected = (
        f"Vonage reports the message {row.status} (err-code 3: Absent Subscriber - Permanent)"
    )
    assert reply.receipts[0].error == (expected if failed else "")


def test_the_receipt_table_lists_every_status_the_plugin_maps() -> None:
    documented = documented_states("vonage-sms")
    mapped = plugin_module("vonage-sms").STATUS_STATES

    assert documented == mapped


@pytest.mark.parametrize("method", ["md5hash", "md5", "sha1", "sha256", "sha512"])
@pytest.mark.parametrize("as_", ["GET", "POST", "POST-JSON"])
async def test_every_signature_method_and_webhook_format_is_verified(
    run_plugin: RunPlugin, method: str, as_: str
) -> None:
    # A client reference with the characters the scheme replaces.
    params = dlr("delivered", **{"client-ref": "a=1&b=2"})
    request = signed_dlr(params, method=method, as_=as_)
    async with run_plugin("vonage-sms", receipts_config(method), secrets=RECEIPT_SECRETS) as client:
        reply = await client.handle_receipt(*request)

    assert [r.state for r in reply.receipts] == [DeliveryState.DELIVERED]


def forged_dlr(kind: str) -> tuple[str, str, dict[str, str], bytes]:
    """A DLR Vonage did not sign with this account's secret, or one altered on the way."""
    params = dlr("failed", **{"err-code": "3"})
    request = signed_dlr(params, as_="POST")
    if kind == "other-secret":
        request = signed_dlr(params, as_="POST", secret="another-accounts-secret")
    elif kind == "other-method":
        request = signed_dlr(params, method="sha256", as_="POST")
    elif kind == "status-changed":
        request = (*request[:3], request[3].replace(b"status=failed", b"status=delivered"))
    elif kind == "message-changed":
        request = (*request[:3], request[3].replace(b"0A000000010000002", b"0A000000010000009"))
    elif kind == "parameter-added":
        request = (*request[:3], request[3] + b"&extra=1")
    elif kind == "no-sig":
        sent = {**params}
        request = ("POST", RECEIPT_URL, request[2], urlencode(sent).encode())
    return request


@pytest.mark.parametrize(
    "kind",
    [
        "other-secret",
        "other-method",
        "status-changed",
        "message-changed",
        "parameter-added",
        "no-sig",
    ],
)
async def test_a_forged_or_altered_receipt_is_unauthenticated(
    run_plugin: RunPlugin, kind: str
) -> None:
    async with run_plugin("vonage-sms", receipts_config(), secrets=RECEIPT_SECRETS) as client:
        with pytest.raises(Unauthenticated, match="sig does not match") as refused:
            await client.handle_receipt(*forged_dlr(kind))

    assert SIGNATURE_SECRET not in refused.value.message


async def test_a_correctly_signed_receipt_outside_the_time_window_is_unauthenticated(
    run_plugin: RunPlugin,
) -> None:
    old = dlr("delivered", timestamp=str(int(time.time()) - 400))
    async with run_plugin("vonage-sms", receipts_config(), secrets=RECEIPT_SECRETS) as client:
        with pytest.raises(Unauthenticated, match="s old; at most 300 s"):
            await client.handle_receipt(*signed_dlr(old))
    async with run_plugin(
        "vonage-sms", receipts_config(receipt_tolerance_seconds=900), secrets=RECEIPT_SECRETS
    ) as client:
        reply = await client.handle_receipt(*signed_dlr(old))

    assert [r.state for r in reply.receipts] == [DeliveryState.DELIVERED]


async def test_without_a_signature_secret_every_receipt_is_refused(
    run_plugin: RunPlugin,
) -> None:
    async with run_plugin("vonage-sms", config("http://127.0.0.1:9"), secrets=SECRETS) as client:
        with pytest.raises(Unauthenticated, match="signature_secret is not set"):
            await client.handle_receipt(*signed_dlr(dlr("delivered")))


async def test_an_unknown_signature_method_stops_the_plugin_at_start(
    run_plugin: RunPlugin,
) -> None:
    with pytest.raises(ConfigError, match="signature_method"):
        async with run_plugin("vonage-sms", receipts_config("sha3"), secrets=RECEIPT_SECRETS):
            pass


async def test_receipts_about_each_part_of_a_long_text_name_the_ids_the_send_returned(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    settings = {**receipts_config(), "base_url": fake.url}
    async with run_plugin("vonage-sms", settings, secrets=RECEIPT_SECRETS) as client:
        sent = await client.send("+447700900123", "x" * 300, receipt_url=RECEIPT_URL)
        receipts = [
            (await client.handle_receipt(*signed_dlr(dlr("delivered", part_id)))).receipts[0]
            for part_id in (sent.provider_message_id, *sent.part_ids)
        ]

    assert [r.provider_message_id for r in receipts] == [
        "0A000000010000001",
        "0A000000010000002",
    ]
    assert {r.state for r in receipts} == {DeliveryState.DELIVERED}
