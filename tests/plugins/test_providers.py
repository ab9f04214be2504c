"""``switchboard.sdk.providers``: the helpers every provider plugin shares."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import hmac
import importlib
import inspect
import pkgutil
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from switchboard.sdk import (
    Attachment,
    ConfigError,
    HttpProviderPlugin,
    InvalidInput,
    Message,
    OutcomeUnknown,
    PermanentError,
    PluginError,
    RetryableError,
    SendResult,
    Template,
    Unauthenticated,
    providers,
)
from tests.plugins.fakes import HttpFake, Reply, closed_port


@pytest.mark.parametrize(
    ("number", "region", "expected"),
    [
        pytest.param("+16502530000", None, "+16502530000", id="already-e164"),
        pytest.param("+1 (650) 253-0000", None, "+16502530000", id="spaces-dashes-parentheses"),
        pytest.param("(650) 253-0000", "US", "+16502530000", id="national-with-region"),
        pytest.param("020 7946 0958", "GB", "+442079460958", id="uk-trunk-zero"),
        pytest.param("0151 12345678", "DE", "+4915112345678", id="german-mobile"),
        pytest.param("+44 20.7946.0958", "US", "+442079460958", id="plus-wins-over-region"),
        pytest.param("  +1 650 253 0000  ", None, "+16502530000", id="surrounding-blanks"),
    ],
)
def test_phone_numbers_are_normalized_to_e164(
    number: str, region: str | None, expected: str
) -> None:
    assert providers.normalize_phone_number(number, default_region=region) == expected


@pytest.mark.parametrize(
    ("number", "region", "reason"),
    [
        pytest.param("650 253 0000", None, "has no valid country code", id="no-region"),
        pytest.param("+1 12345", None, "is not a valid phone number", id="too-short"),
        pytest.param(
            "12345", "US", "is not a valid phone number for region US", id="short-national"
        ),
        pytest.param("call me", "US", "is not a phone number", id="words"),
        pytest.param("+99 1234567", None, "has no valid country code", id="unknown-country"),
    ],
)
def test_invalid_phone_numbers_are_invalid_input_naming_the_number(
    number: str, region: str | None, reason: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        providers.normalize_phone_number(number, default_region=region, field="recipient")

    assert raised.value.message.startswith(f"recipient: {number!r} {reason}")


def test_strict_checking_also_rejects_unassigned_ranges() -> None:
    assert providers.normalize_phone_number("+1 555 123 4567") == "+15551234567"
    with pytest.raises(InvalidInput, match="is not a valid phone number"):
        providers.normalize_phone_number("+1 555 123 4567", strict=True)


def test_regions_are_checked_for_config() -> None:
    assert providers.validate_region("gb") == "GB"
    with pytest.raises(ConfigError, match=r"config.default_region: 'XX' is not"):
        providers.validate_region("XX")


NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        pytest.param("120", 120.0, id="delta-seconds"),
        pytest.param(" 0 ", 0.0, id="zero"),
        pytest.param("1.5", 1.5, id="fractional"),
        pytest.param(
            email.utils.format_datetime(NOW + timedelta(seconds=90), usegmt=True),
            90.0,
            id="http-date",
        ),
        pytest.param("Wed, 01 Jan 2025 11:00:00 GMT", 0.0, id="date-in-the-past"),
        pytest.param("Wednesday, 01-Jan-25 12:00:30 GMT", 30.0, id="rfc850-date"),
        pytest.param("999999999", 86_400.0, id="capped-at-a-day"),
        pytest.param("-5", 0.0, id="negative"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_retry_after_is_parsed_in_both_forms(header: str | None, seconds: float | None) -> None:
    assert providers.parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, InvalidInput),
        (422, InvalidInput),
        (401, Unauthenticated),
        (403, Unauthenticated),
        (404, ConfigError),
        (405, ConfigError),
        (301, ConfigError),
        (409, PermanentError),
        (410, PermanentError),
        (413, PermanentError),
        (408, RetryableError),
        (425, RetryableError),
        (429, RetryableError),
        (500, RetryableError),
        (502, RetryableError),
        (503, RetryableError),
        (504, RetryableError),
    ],
)
def test_http_statuses_map_to_one_error_class_for_every_provider(
    status: int, error: type[PluginError]
) -> None:
    raised = providers.error_for_status(status, provider="Acme", detail="it broke", retry_after=3)

    assert type(raised) is error
    assert raised.message.startswith(f"Acme answered HTTP {status}: it broke")
    assert raised.retry_after == (3 if error is RetryableError else None)


def test_a_plugin_may_treat_a_400_as_permanent() -> None:
    raised = providers.error_for_status(400, provider="Acme", client_error=PermanentError)
    assert type(raised) is PermanentError


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        pytest.param({"message": "Bad 'To'", "code": 21211}, "Bad 'To'", id="message"),
        pytest.param(
            {"error": {"message": "Invalid token", "code": 190}}, "Invalid token", id="nested"
        ),
        pytest.param({"errors": [{"message": "a"}, {"message": "b"}]}, "a; b", id="errors-list"),
        pytest.param(
            {"ok": False, "description": "Bad Request: chat not found"},
            "Bad Request: chat not found",
            id="description",
        ),
        pytest.param("invalid_payload", "invalid_payload", id="text"),
        pytest.param("x" * 1000, "x" * 297 + "...", id="shortened"),
    ],
)
def test_the_providers_own_words_are_quoted(body: object, detail: str) -> None:
    response = (
        httpx.Response(400, text=body) if isinstance(body, str) else httpx.Response(400, json=body)
    )
    assert providers.response_detail(response) == detail


@pytest.mark.parametrize(
    ("error", "raised", "words"),
    [
        pytest.param(
            httpx.ConnectError("refused"), RetryableError, "Could not reach Acme", id="refused"
        ),
        pytest.param(
            httpx.ConnectTimeout("slow"),
            RetryableError,
            "in time (connecting)",
            id="connect-timeout",
        ),
        pytest.param(
            httpx.PoolTimeout("busy"), RetryableError, "waiting for a free connection", id="pool"
        ),
        pytest.param(httpx.ProxyError("407"), RetryableError, "Could not reach Acme", id="proxy"),
        pytest.param(
            httpx.ReadTimeout("quiet"),
            OutcomeUnknown,
            "waiting for the response",
            id="read-timeout",
        ),
        pytest.param(
            httpx.WriteTimeout("stuck"), OutcomeUnknown, "sending the request", id="write-timeout"
        ),
        pytest.param(httpx.ReadError("reset"), OutcomeUnknown, "broke the connection", id="read"),
        pytest.param(httpx.WriteError("pipe"), OutcomeUnknown, "broke the connection", id="write"),
        pytest.param(
            httpx.RemoteProtocolError("closed"), OutcomeUnknown, "broke the connection", id="closed"
        ),
        pytest.param(
            httpx.UnsupportedProtocol("ftp"), ConfigError, "URL is not usable", id="scheme"
        ),
        pytest.param(httpx.InvalidURL("bad"), ConfigError, "URL is not usable", id="invalid-url"),
    ],
)
def test_a_failure_before_the_request_left_is_retryable_and_after_it_is_unknown(
    error: httpx.TransportError | httpx.InvalidURL, raised: type[PluginError], words: str
) -> None:
    classified = providers.error_for_transport(error, provider="Acme")

    assert type(classified) is raised
    assert words in classified.message
    if raised is OutcomeUnknown:
        assert classified.message.endswith("the message may or may not have been accepted")


async def test_send_request_over_loopback_tells_not_sent_from_maybe_sent() -> None:
    async with providers.http_client(base_url=f"http://127.0.0.1:{closed_port()}") as client:
        with pytest.raises(RetryableError, match="Could not reach Acme: ConnectError"):
            await providers.send_request(client, "GET", "/", provider="Acme")

    async with (
        # Long enough to connect on a busy machine; the answer takes longer still.
        HttpFake(lambda _: Reply(200, delay=4)) as slow,
        providers.http_client(base_url=slow.url, timeout=1.0) as client,
    ):
        with pytest.raises(OutcomeUnknown, match=r"Acme did not answer in time \(waiting for"):
            await providers.send_request(client, "POST", "/", provider="Acme", json={})

    async with (
        hanging_up_server() as port,
        providers.http_client(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        with pytest.raises(OutcomeUnknown, match="Acme broke the connection before answering"):
            await providers.send_request(client, "POST", "/", provider="Acme", json={})


@pytest.mark.parametrize(
    ("url", "body", "problem"),
    [
        pytest.param(
            "/users/ann\x01", {}, "InvalidURL: Invalid non-printable ASCII", id="recipient-in-url"
        ),
        pytest.param("/messages", {"priority": float("nan")}, "ValueError", id="nan-in-json"),
    ],
)
async def test_a_request_the_message_makes_unbuildable_is_invalid_input_and_not_sent(
    url: str, body: dict[str, float], problem: str
) -> None:
    async with (
        HttpFake(lambda _: Reply(200)) as fake,
        providers.http_client(base_url=fake.url) as client,
    ):
        with pytest.raises(InvalidInput, match="The request to Acme cannot be built") as raised:
            await providers.send_request(client, "POST", url, provider="Acme", json=body)

    assert problem in raised.value.message
    assert fake.requests == []


async def test_a_connect_timeout_is_retryable_because_nothing_was_sent() -> None:
    async with (
        full_backlog() as port,
        providers.http_client(base_url=f"http://127.0.0.1:{port}", timeout=0.3) as client,
    ):
        with pytest.raises(RetryableError, match=r"Could not reach Acme in time \(connecting\)"):
            await providers.send_request(client, "POST", "/", provider="Acme", json={})


async def test_the_client_goes_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with recording_proxy() as (port, request_lines):
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with providers.http_client(base_url="http://127.0.0.2:9") as client:
            response = await providers.send_request(client, "POST", "/send", provider="Acme")

    assert response.status_code == 200
    # The absolute form of the target: the request was handed to the proxy (the
    # target itself is a closed loopback port: without the proxy, no answer).
    assert request_lines == ["POST http://127.0.0.2:9/send HTTP/1.1"]


@asynccontextmanager
async def recording_proxy() -> AsyncIterator[tuple[int, list[str]]]:
    """An HTTP proxy that answers every request itself, keeping its request line."""
    lines: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines.append(head.split(b"\r\n", 1)[0].decode())
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], lines
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def hanging_up_server() -> AsyncIterator[int]:
    """A server that reads the request and closes the connection without an answer."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def full_backlog() -> AsyncIterator[int]:
    """A listening port whose accept queue is full, so a new connection's SYN goes unanswered."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        filling: list[socket.socket] = []
        try:
            # Linux queues backlog + 1 connections; fill the queue (never accepted).
            for _ in range(4):
                probe = socket.socket()
                probe.setblocking(False)
                probe.connect_ex(("127.0.0.1", port))
                filling.append(probe)
            yield port
        finally:
            for probe in filling:
                probe.close()


def test_a_message_in_parts_succeeds_once_any_part_was_accepted() -> None:
    throttled = RetryableError("Vonage refused part 3 with status 1: Throttled", retry_after=1)
    barred = PermanentError("Vonage refused part 1 with status 7: Number barred")

    whole = providers.result_of_parts(["id-1", "id-2"], details={"to": "+44"})
    partial = providers.result_of_parts(["id-1", "id-2", throttled])
    stopped = providers.result_of_parts(["id-1", throttled], total=4)

    assert whole == SendResult(
        "id-1", {"to": "+44", "parts": "2/2", "message_ids": "id-1,id-2"}, part_ids=("id-2",)
    )
    assert partial == SendResult(
        "id-1",
        {
            "parts": "2/3",
            "message_ids": "id-1,id-2",
            "partial": "true",
            "failed": "part 3: RETRYABLE: Vonage refused part 3 with status 1: Throttled",
        },
        part_ids=("id-2",),
    )
    assert stopped.details["parts"] == "1/4"
    assert stopped.part_ids == ()
    assert stopped.details["failed"].endswith("; part 3-4: not sent")
    with pytest.raises(PermanentError) as nothing:
        providers.result_of_parts([barred, throttled])
    assert nothing.value is barred


async def test_the_client_sends_a_user_agent_and_does_not_follow_redirects() -> None:
    async with (
        HttpFake(lambda _: Reply(302, headers={"Location": "http://elsewhere.invalid/"})) as fake,
        providers.http_client(base_url=fake.url) as client,
    ):
        response = await providers.send_request(client, "GET", "/x", provider="Acme")
        with pytest.raises(ConfigError, match="Acme answered HTTP 302"):
            providers.raise_for_status(response, provider="Acme")

    assert fake.last.headers["User-Agent"] == providers.USER_AGENT
    assert len(fake.requests) == 1


async def test_an_unusable_url_is_a_config_error() -> None:
    async with providers.http_client() as client:
        with pytest.raises(ConfigError, match="Acme URL is not usable"):
            await providers.send_request(client, "GET", "ftp://example.com/", provider="Acme")


def test_email_addresses_are_checked_for_syntax_only_and_normalized() -> None:
    parsed = providers.parse_email_addresses("Ann Example <ann@EXAMPLE.com>, bob@example.org")

    assert parsed == [
        providers.EmailAddress("ann@example.com", "Ann Example"),
        providers.EmailAddress("bob@example.org"),
    ]
    assert parsed[0].formatted() == "Ann Example <ann@example.com>"
    # No DNS: a domain that can't exist passes the syntax check.
    assert providers.parse_email_addresses("x@no-such-domain-7f3a.example")


@pytest.mark.parametrize(
    "value", ["not-an-address", "a@b@c.com", "ann@", "", "ann@example.com\nBcc: x@example.com"]
)
def test_bad_email_addresses_are_invalid_input(value: str) -> None:
    with pytest.raises(InvalidInput, match=r"^recipient: "):
        providers.parse_email_addresses(value)


def test_email_bodies_follow_the_content_type() -> None:
    text = providers.email_bodies(Message("a@example.com", "Hello"))
    both = providers.email_bodies(
        Message("a@example.com", "Hello", metadata={"html": "<p>Hello</p>"})
    )
    html = providers.email_bodies(
        Message("a@example.com", "<h1>Hi</h1><p>Code <b>42</b></p>", content_type="text/html")
    )
    chosen = providers.email_bodies(
        Message("a@example.com", "<p>Hi</p>", content_type="text/html", metadata={"text": "Hi!"})
    )

    assert text == providers.EmailBodies("Hello", None)
    assert both == providers.EmailBodies("Hello", "<p>Hello</p>")
    assert html == providers.EmailBodies("Hi\n\nCode 42", "<h1>Hi</h1><p>Code <b>42</b></p>")
    assert chosen == providers.EmailBodies("Hi!", "<p>Hi</p>")


def test_html_to_text_keeps_structure_and_links_and_drops_scripts() -> None:
    html = (
        "<html><head><title>T</title><style>p {color: red}</style></head><body>"
        "<h1>Welcome</h1><p>Your code:&nbsp;<b>123</b></p><ul><li>one</li><li>two</li></ul>"
        '<p><a href="https://example.com/x">Open</a> or <a href="https://e.com">https://e.com</a></p>'
        "<script>alert(1)</script>Bye<br>now</body></html>"
    )
    assert providers.html_to_text(html) == (
        "Welcome\n\nYour code: 123\n\n- one\n- two\n\n"
        "Open (https://example.com/x) or https://e.com\nBye\nnow"
    )


def test_custom_headers_come_from_prefixed_metadata_and_are_checked() -> None:
    headers = providers.metadata_headers(
        {
            "header.X-Campaign": "spring",
            "header.List-Unsubscribe": "<mailto:u@example.com>",
            "other": "x",
        }
    )
    assert headers == {"X-Campaign": "spring", "List-Unsubscribe": "<mailto:u@example.com>"}

    for metadata, problem in [
        ({"header.Bcc": "x@example.com"}, "Bcc is set by the plugin"),
        ({"header.X-A": "a\r\nBcc: x@example.com"}, "line breaks are not allowed"),
        ({"header.Bad Name": "x"}, "is not a valid header name"),
    ]:
        with pytest.raises(InvalidInput, match=problem):
            providers.metadata_headers(metadata)


def test_metadata_json_names_the_key_when_it_is_not_json() -> None:
    assert providers.metadata_json({"blocks": "[1, 2]"}, "blocks") == [1, 2]
    assert providers.metadata_json({}, "blocks") is None
    with pytest.raises(InvalidInput, match=r"metadata\.blocks: not valid JSON"):
        providers.metadata_json({"blocks": "[1,"}, "blocks")


def test_webhook_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"id":"1"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()

    assert providers.sign_webhook("s3cret", 1700000000, body) == expected


def test_verify_webhook_takes_its_own_signature_and_refuses_a_tampered_or_stale_one() -> None:
    body = b'{"message_id":"m-1","status":"delivered"}'
    now = 1_700_000_000
    signature = hmac.new(b"s3cret", f"{now}.".encode() + body, hashlib.sha256).hexdigest()

    providers.verify_webhook("s3cret", str(now), body, f"sha256={signature}", now=now + 5)
    providers.verify_webhook("s3cret", str(now), body, signature, now=now - 5)
    for secret, stamp, sent, at, problem in [
        ("other", str(now), body, now, "does not match the signing secret"),
        ("s3cret", str(now), body.replace(b"delivered", b"failed"), now, "does not match"),
        ("s3cret", str(now + 1), body, now, "does not match"),
        ("s3cret", str(now), body, now + 301, "301 s old; at most 300 s"),
        ("s3cret", str(now), body, now - 400, "400 s in the future"),
        ("s3cret", "yesterday", body, now, "no usable signature timestamp"),
    ]:
        with pytest.raises(Unauthenticated, match=problem) as refused:
            providers.verify_webhook(secret, stamp, sent, f"sha256={signature}", now=at)
        assert "s3cret" not in refused.value.message
        assert signature not in refused.value.message


def test_hmac_hex_and_constant_time_comparison() -> None:
    assert (
        providers.hmac_hex("key", b"data", "sha1") == hmac.new(b"key", b"data", "sha1").hexdigest()
    )
    assert providers.hmac_hex(b"key", b"data") == hmac.new(b"key", b"data", "sha256").hexdigest()
    assert providers.signatures_match("abc", "abc")
    assert not providers.signatures_match("abc", "abd")
    assert not providers.signatures_match("abc", "")


#: The test vector SendGrid publishes with its Python library's Event Webhook
#: verifier (sendgrid-python, test/unit/test_eventwebhook.py): a key, a batch
#: of one event with SendGrid's trailing CRLF, its timestamp and signature.
SENDGRID_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw"
    "+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
)
SENDGRID_SIGNATURE = (
    "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+lu"
    "QAbPIqHh89M15TluLtEZtM="
)
SENDGRID_TIMESTAMP = "1600112502"
SENDGRID_PAYLOAD = (
    '[{"email":"hello@world.com","event":"dropped","reason":"Bounced Address",'
    '"sg_event_id":"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",'
    '"sg_message_id":"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",'
    '"smtp-id":"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>","timestamp":1600112492}]'
    "\r\n"
)


def test_ecdsa_verification_accepts_sendgrids_published_vector_and_nothing_altered() -> None:
    key = providers.load_ecdsa_public_key(SENDGRID_PUBLIC_KEY, field="config.key")
    signed = (SENDGRID_TIMESTAMP + SENDGRID_PAYLOAD).encode()

    assert providers.ecdsa_signature_valid(key, signed, SENDGRID_SIGNATURE)
    assert not providers.ecdsa_signature_valid(
        key, signed.replace(b"dropped", b"delivered"), SENDGRID_SIGNATURE
    )
    assert not providers.ecdsa_signature_valid(key, b"1600112503" + signed[10:], SENDGRID_SIGNATURE)
    assert not providers.ecdsa_signature_valid(key, signed, "not base64!")
    assert not providers.ecdsa_signature_valid(key, signed, "AAAA")
    other = providers.load_ecdsa_public_key(
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REn"
        "tlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==",
        field="config.key",
    )
    assert not providers.ecdsa_signature_valid(other, signed, SENDGRID_SIGNATURE)


def test_an_unusable_public_key_is_a_configuration_error_naming_the_field() -> None:
    pem = "-----BEGIN PUBLIC KEY-----\n" + SENDGRID_PUBLIC_KEY + "\n-----END PUBLIC KEY-----\n"
    assert providers.load_ecdsa_public_key(pem, field="config.key") is not None
    for text in ("not a key", "AAAA", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"):
        with pytest.raises(ConfigError, match=r"config\.key: not a PEM or base64 DER public key"):
            providers.load_ecdsa_public_key(text, field="config.key")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    rsa_der = rsa_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ConfigError, match="not an elliptic-curve"):
        providers.load_ecdsa_public_key(base64.b64encode(rsa_der).decode(), field="config.key")


def test_every_public_name_exists_and_is_documented() -> None:
    # The package's modules (http, errors, phone, ...) define the names; the
    # package exports each public one, so `from switchboard.sdk.providers import X`
    # works for all of them. `_detail` is private.
    modules = [
        importlib.import_module(f"{providers.__name__}.{module.name}")
        for module in pkgutil.iter_modules(providers.__path__)
        if not module.name.startswith("_")
    ]
    defined = {
        name
        for module in modules
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == module.__name__
    }
    assert len(modules) >= 7
    assert defined == set(providers.__all__) - {
        name for name in providers.__all__ if not callable(getattr(providers, name))
    }
    for name in providers.__all__:
        value = getattr(providers, name)
        if callable(value):
            assert inspect.getdoc(value), f"providers.{name} has no docstring"


class AcmeSmsPlugin(HttpProviderPlugin):
    """A provider plugin as a plugin author writes one on the base."""

    provider = "Acme"
    default_base_url = "http://127.0.0.1:9"
    capabilities = ("send", "media_urls")

    def client_headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self.config['api_key']}"}

    async def send_message(self, message: Message) -> SendResult:
        providers.require_capabilities(message, self.capabilities, provider=self.provider)
        response = await self.request(
            "POST", "/messages", json={"to": self.phone_number(message.recipient)}
        )
        providers.raise_for_status(response, provider=self.provider)
        return SendResult(providers.response_json(response, provider=self.provider)["id"])


async def test_the_http_provider_base_opens_one_client_with_the_config_and_credentials() -> None:
    async with HttpFake(lambda _: Reply(201, {"id": "m-1"})) as fake:
        plugin = AcmeSmsPlugin({"api_key": "k-1", "base_url": fake.url, "default_region": "gb"})
        plugin.validate_config()
        await plugin.initialize()
        try:
            result = await plugin.send_message(Message("020 7946 0958", "hi"))
        finally:
            await plugin.cleanup()

    assert result.provider_message_id == "m-1"
    assert plugin.config["default_region"] == "GB"
    assert (fake.last.path, fake.last.json()) == ("/messages", {"to": "+442079460958"})
    assert fake.last.headers["Authorization"] == "Bearer k-1"
    assert fake.last.headers["User-Agent"] == providers.USER_AGENT
    assert plugin.http.is_closed


async def test_the_http_provider_base_names_the_provider_in_its_errors() -> None:
    plugin = AcmeSmsPlugin({"api_key": "k", "base_url": f"http://127.0.0.1:{closed_port()}"})
    plugin.validate_config()
    await plugin.initialize()
    try:
        with pytest.raises(RetryableError, match="Could not reach Acme"):
            await plugin.send_message(Message("+16502530000", "hi"))
        with pytest.raises(InvalidInput, match="to: '12' has no valid country code"):
            plugin.phone_number("12", field="to")
    finally:
        await plugin.cleanup()
    with pytest.raises(ConfigError, match=r"config\.default_region"):
        AcmeSmsPlugin({"api_key": "k", "default_region": "XX"}).validate_config()


def test_a_part_the_plugin_does_not_declare_is_refused_so_another_plugin_carries_it() -> None:
    with_url = Message(
        "+1", "x", attachments=(Attachment("a.png", "image/png", url="https://e/a"),)
    )
    with_bytes = Message(
        "+1", "x", attachments=(Attachment("a.pdf", "application/pdf", data=b"%"),)
    )
    templated = Message("+1", "x", template=Template("HX1"), cc=("a@example.com",))

    providers.require_capabilities(with_url, ("send", "media_urls"), provider="Acme")
    with pytest.raises(RetryableError, match="does not declare attachments"):
        providers.require_capabilities(with_bytes, ("send", "media_urls"), provider="Acme")
    with pytest.raises(RetryableError, match="does not declare cc, templates"):
        providers.require_capabilities(templated, None, provider="Acme")
