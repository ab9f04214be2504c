"""smtp-email against a real SMTP server: STARTTLS and implicit TLS with a private CA, AUTH."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from switchboard.sdk import (
    Attachment,
    ConfigError,
    InvalidInput,
    PermanentError,
    RetryableError,
    SendResult,
    Unauthenticated,
)
from tests.plugins.conftest import RunPlugin, plugin_module
from tests.plugins.errortable import Row, assert_outcome, error_table, outcome_of, rows_as_params
from tests.plugins.fakes import closed_port
from tests.plugins.smtpserver import Received, SmtpServer
from tests.plugins.tls import PrivateCA, create_private_ca

USER = "notifications@example.com"
PASSWORD = "smtp-pass-9d2e41"
SECRETS = {"SMTP_PASSWORD": PASSWORD}


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    return create_private_ca(tmp_path_factory.mktemp("ca"))


def config(server: SmtpServer, ca: PrivateCA | None = None, **extra: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "security": {"plain": "none"}.get(server.mode, server.mode),
        "from_address": "Example Notifications <notifications@example.com>",
        "local_hostname": "plugin.test",
        "timeout_seconds": 5,
    }
    if server.mode != "plain":
        settings |= {"username": USER, "password": "${SMTP_PASSWORD}"}
    if ca is not None:
        settings["ca_bundle"] = str(ca.ca_cert)
    return settings | extra


def only(received: list[Received]) -> Received:
    assert len(received) == 1, received
    return received[0]


@pytest.mark.parametrize("mode", ["starttls", "tls"])
async def test_delivers_a_message_with_every_header_and_both_bodies_over_tls_after_auth(
    mode: str, ca: PrivateCA, run_plugin: RunPlugin
) -> None:
    async with (
        SmtpServer(mode, ca, users={USER: PASSWORD}) as server,  # type: ignore[arg-type]
        run_plugin(
            "smtp-email", config(server, ca, reply_to="support@example.com"), secrets=SECRETS
        ) as client,
    ):
        result = await client.send(
            "Ann Example <ann@example.org>, bob@example.org",
            "Your code is 123456.",
            subject="Your sign-in code",
            metadata={
                "html": "<p>Your code is <b>123456</b>.</p>",
                "header.X-Campaign": "sign-in",
                "unrelated": "ignored",
            },
        )

    received = only(server.received)
    assert received.tls
    assert received.login == USER
    assert received.mail_from == "notifications@example.com"
    assert received.rcpt_tos == ["ann@example.org", "bob@example.org"]
    message = received.message
    assert message["From"] == "Example Notifications <notifications@example.com>"
    assert message["To"] == "Ann Example <ann@example.org>, bob@example.org"
    assert message["Subject"] == "Your sign-in code"
    assert message["Reply-To"] == "support@example.com"
    assert message["X-Campaign"] == "sign-in"
    assert message["unrelated"] is None
    assert message["Date"]
    assert message["Message-ID"] == result.provider_message_id
    assert result.provider_message_id.endswith("@example.com>")
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert (text.get_content_type(), text.get_content().strip()) == (
        "text/plain",
        "Your code is 123456.",
    )
    assert (html.get_content_type(), html.get_content().strip()) == (
        "text/html",
        "<p>Your code is <b>123456</b>.</p>",
    )
    assert result.details["smtp_response"].startswith("2.0.0 Ok: queued")


async def test_html_content_gets_a_text_part_derived_from_it(
    ca: PrivateCA, run_plugin: RunPlugin
) -> None:
    async with (
        SmtpServer("starttls", ca, users={USER: PASSWORD}) as server,
        run_plugin("smtp-email", config(server, ca), secrets=SECRETS) as client,
    ):
        await client.send(
            "ann@example.org",
            "<h1>Welcome</h1><p>Read the <a href='https://example.com/guide'>guide</a>.</p>",
            subject="Welcome",
            content_type="text/html",
            metadata={"reply_to": "Help <help@example.com>"},
        )

    message = only(server.received).message
    assert message["Reply-To"] == "Help <help@example.com>"
    text, html = message.iter_parts()
    assert text.get_content().replace("\r\n", "\n").strip() == (
        "Welcome\n\nRead the guide (https://example.com/guide)."
    )
    assert "<h1>Welcome</h1>" in html.get_content()


async def test_plain_text_without_html_is_a_single_text_part(run_plugin: RunPlugin) -> None:
    async with (
        SmtpServer("plain") as server,
        run_plugin("smtp-email", config(server)) as client,
    ):
        await client.send("ann@example.org", "Hello", subject="Hi")

    received = only(server.received)
    assert not received.tls
    assert received.login is None
    assert received.message.get_content_type() == "text/plain"
    assert received.message["Reply-To"] is None


async def test_an_idempotency_key_gives_retries_the_same_message_id(
    ca: PrivateCA, run_plugin: RunPlugin
) -> None:
    async with (
        SmtpServer("starttls", ca, users={USER: PASSWORD}) as server,
        run_plugin("smtp-email", config(server, ca), secrets=SECRETS) as client,
    ):
        first = await client.send("ann@example.org", "x", idempotency_key="k-1", tenant="t")
        again = await client.send("ann@example.org", "x", idempotency_key="k-1", tenant="t")
        other = await client.send("ann@example.org", "x", idempotency_key="k-2", tenant="t")

    assert first.provider_message_id == again.provider_message_id
    assert other.provider_message_id != first.provider_message_id
    assert [r.message["Message-ID"] for r in server.received] == [
        first.provider_message_id,
        first.provider_message_id,
        other.provider_message_id,
    ]


async def test_a_wrong_password_is_unauthenticated(ca: PrivateCA, run_plugin: RunPlugin) -> None:
    async with (
        SmtpServer("starttls", ca, users={USER: "another-password"}) as server,
        run_plugin("smtp-email", config(server, ca), secrets=SECRETS) as client,
    ):
        checked = await client.check_credentials()
        with pytest.raises(Unauthenticated, match="rejected the login: 535"):
            await client.send("ann@example.org", "x")

    assert not checked.ok
    assert "rejected the login: 535" in checked.message
    assert server.received == []


async def test_check_credentials_connects_logs_in_and_quits(
    ca: PrivateCA, run_plugin: RunPlugin
) -> None:
    async with (
        SmtpServer("tls", ca, users={USER: PASSWORD}) as server,
        run_plugin("smtp-email", config(server, ca), secrets=SECRETS) as client,
    ):
        checked = await client.check_credentials()

    assert checked.ok
    assert checked.message == (f"SMTP server 127.0.0.1:{server.port} accepted the login of {USER}")
    assert server.received == []


@pytest.mark.parametrize("mode", ["starttls", "tls"])
async def test_a_certificate_from_an_untrusted_ca_is_refused(
    mode: str, ca: PrivateCA, run_plugin: RunPlugin
) -> None:
    async with (
        SmtpServer(mode, ca, users={USER: PASSWORD}) as server,  # type: ignore[arg-type]
        run_plugin("smtp-email", config(server), secrets=SECRETS) as client,
    ):
        with pytest.raises(ConfigError, match=r"TLS with SMTP server 127\.0\.0\.1 failed"):
            await client.send("ann@example.org", "x")

    assert server.received == []


async def test_starttls_is_required_when_configured(run_plugin: RunPlugin) -> None:
    async with (
        SmtpServer("plain") as server,
        run_plugin("smtp-email", config(server, security="starttls")) as client,
    ):
        with pytest.raises(ConfigError, match="STARTTLS extension not supported"):
            await client.send("ann@example.org", "x")

    assert server.received == []


async def test_a_recipient_the_server_refuses_is_permanent(
    ca: PrivateCA, run_plugin: RunPlugin
) -> None:
    async with SmtpServer("starttls", ca, users={USER: PASSWORD}) as server:
        server.refuse("nobody@example.org")
        async with run_plugin("smtp-email", config(server, ca), secrets=SECRETS) as client:
            with pytest.raises(PermanentError, match=r"nobody@example\.org: 550 5\.1\.1"):
                await client.send("nobody@example.org", "x")
            partly = await client.send("nobody@example.org, ann@example.org", "y")

    assert only(server.received).rcpt_tos == ["ann@example.org"]
    assert partly.details["refused_recipients"] == "nobody@example.org"


@pytest.mark.parametrize(
    ("recipient", "metadata", "problem"),
    [
        ("not-an-address", {}, r"recipient: 'not-an-address' is not an email address"),
        ("ann@example.org", {"header.From": "x@example.com"}, r"metadata\.header\.From"),
        (
            "ann@example.org",
            {"header.X-A": "a\r\nBcc: x@example.com"},
            "line breaks|control characters",
        ),
        ("ann@example.org", {"reply_to": "nope"}, r"metadata\.reply_to: 'nope'"),
    ],
)
async def test_bad_input_is_invalid_and_nothing_is_sent(
    recipient: str, metadata: dict[str, str], problem: str, run_plugin: RunPlugin
) -> None:
    async with (
        SmtpServer("plain") as server,
        run_plugin("smtp-email", config(server)) as client,
    ):
        with pytest.raises(InvalidInput, match=problem):
            await client.send(recipient, "x", metadata=metadata)

    assert server.received == []


async def test_an_unreachable_server_is_retryable(run_plugin: RunPlugin) -> None:
    settings = {
        "host": "127.0.0.1",
        "port": closed_port(),
        "security": "none",
        "from_address": "a@example.com",
    }
    async with run_plugin("smtp-email", settings) as client:
        with pytest.raises(RetryableError, match=r"Could not talk to SMTP server 127\.0\.0\.1"):
            await client.send("ann@example.org", "x")


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"security": "none", "username": USER, "password": "p"}, "clear text"),
        ({"username": USER}, "set both username and password"),
        ({"from_address": "not an address"}, "config.from_address"),
        ({"ca_bundle": "/nonexistent/ca.pem"}, "config.ca_bundle: could not load"),
    ],
)
async def test_unusable_config_is_rejected_at_start(
    extra: dict[str, Any], problem: str, run_plugin: RunPlugin, tmp_path: Path
) -> None:
    settings = {"host": "127.0.0.1", "from_address": "a@example.com", **extra}
    with pytest.raises(ConfigError, match=problem):
        async with run_plugin("smtp-email", settings):
            pass


async def outcome_of_row(row: Row, ca: PrivateCA, run_plugin: RunPlugin) -> Any:
    """Play one row of the error table in docs/plugins/smtp-email.md against the real server."""
    stage, reply = row["stage"], f"{row.code('reply')} {row['server says']}"
    if stage == "connect":
        settings = {"host": "127.0.0.1", "port": closed_port(), "security": "none",
                    "from_address": "a@example.com"}  # fmt: skip
        async with run_plugin("smtp-email", settings) as client:
            return await outcome_of(client.send("ann@example.org", "x"))
    mode = "plain" if stage == "EHLO" else "starttls"
    async with SmtpServer(mode, ca, users={USER: PASSWORD}) as server:
        recipients = "ann@example.org"
        if stage in ("AUTH", "MAIL"):
            server.answer(stage, reply)
        elif stage == "RCPT":
            server.refuse("nobody@example.org", reply)
            recipients = (
                "nobody@example.org"
                if "one of two" not in row["reply"]
                else ("nobody@example.org, ann@example.org")
            )
        elif stage == "DATA" and row.codes("reply") and row.error is not None:
            server.answer("DATA", reply)
        elif stage == "DATA" and row.error is not None:
            server.hold_data(5)
        settings = (
            config(server, ca, timeout_seconds=1)
            if mode != "plain"
            else config(server, security="starttls")
        )
        async with run_plugin("smtp-email", settings, secrets=SECRETS) as client:
            return await outcome_of(client.send(recipients, "x", subject="Hi"))


@pytest.mark.parametrize("row", rows_as_params("smtp-email"))
async def test_every_row_of_the_error_table(row: Row, ca: PrivateCA, run_plugin: RunPlugin) -> None:
    outcome = await outcome_of_row(row, ca, run_plugin)

    assert_outcome(row, outcome)
    if row.error is not None and row.codes("reply") and row["stage"] != "EHLO":
        assert f"{row.code('reply')} {row['server says']}" in str(outcome)
    if row.partial:
        assert isinstance(outcome, SendResult)
        assert outcome.details["failed"] == (
            f"nobody@example.org: {row.code('reply')} {row['server says']}"
        )


def test_the_error_table_lists_every_auth_reply_the_plugin_tells_apart() -> None:
    table = {int(row.code("reply")): row.error for row in error_table("smtp-email")
             if row["stage"] == "AUTH"}  # fmt: skip
    replies = plugin_module("smtp-email").AUTH_REPLY_CLASSES

    assert {code: table.get(code) for code in replies} == replies


async def test_attachments_cc_and_bcc_arrive_as_the_recipients_expect(
    ca: PrivateCA, run_plugin: RunPlugin
) -> None:
    report = Attachment("report.pdf", "application/pdf", data=b"%PDF-1.7 binary \x00\xff")
    notes = Attachment("notes.txt", "text/plain; charset=utf-8", data="Grüße\n".encode())
    async with (
        SmtpServer("starttls", ca, users={USER: PASSWORD}) as server,
        run_plugin("smtp-email", config(server, ca), secrets=SECRETS) as client,
    ):
        result = await client.send(
            "ann@example.org",
            "See attached.",
            subject="Report",
            metadata={"html": "<p>See attached.</p>"},
            attachments=(report, notes),
            cc=("Bob <bob@example.org>", "ann@example.org"),
            bcc=("audit@example.org",),
        )

    received = only(server.received)
    assert received.rcpt_tos == ["ann@example.org", "bob@example.org", "audit@example.org"]
    message = received.message
    assert message["To"] == "ann@example.org"
    assert message["Cc"] == "Bob <bob@example.org>, ann@example.org"
    assert message["Bcc"] is None
    assert b"audit@example.org" not in received.raw
    assert message.get_content_type() == "multipart/mixed"
    body, *files = message.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert [
        (f.get_filename(), f.get_content_type(), f.get_content_disposition()) for f in files
    ] == [
        ("report.pdf", "application/pdf", "attachment"),
        ("notes.txt", "text/plain", "attachment"),
    ]
    assert files[0].get_content() == report.data
    assert files[1].get_content() == "Grüße\n"
    assert result.details["recipients"] == "3"


async def test_an_attachment_by_url_goes_to_a_plugin_that_fetches_urls(
    run_plugin: RunPlugin,
) -> None:
    linked = Attachment("a.png", "image/png", url="https://cdn.example.com/a.png")
    async with (
        SmtpServer("plain") as server,
        run_plugin("smtp-email", config(server)) as client,
    ):
        with pytest.raises(RetryableError, match="does not declare media_urls"):
            await client.send("ann@example.org", "x", attachments=(linked,))

    assert server.received == []
