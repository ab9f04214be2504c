"""The four RPCs round-trip over real gRPC, with the plugin in-process and as a child process."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import grpc
import pytest

from switchboard.plugin.v1 import ERROR_METADATA_KEY, plugin_pb2, plugin_pb2_grpc
from switchboard.sdk import (
    Attachment,
    ConfigError,
    ErrorClass,
    InvalidInput,
    OutcomeUnknown,
    PermanentError,
    PluginClient,
    PluginError,
    RetryableError,
    Template,
    Unauthenticated,
    errors_from_rpc_error,
    serve_plugin,
)
from switchboard.sdk._logging import Redactor
from switchboard.sdk._messages import required_capabilities
from tests.sdk.conftest import TOKEN, Endpoint, echo_config, token_id
from tests.sdk.harness import ECHO_SMS, ECHOED_REDACTED, ECHOED_TOKEN, MountedSecret, echoed_forms


async def test_describe_reports_identity_from_manifest_and_behaviour_from_code(
    echo: Endpoint,
) -> None:
    async with PluginClient(echo.address) as client:
        described = await client.describe()

    assert (described.plugin_id, described.name, described.version) == (
        "echo-sms",
        "Echo SMS",
        "1.2.3",
    )
    assert described.WhichOneof("kind") == "channel_type"
    assert described.channel_type == "sms"
    assert list(described.capabilities) == ["delivery_receipts", "send"]
    assert list(described.secrets.required) == ["API_TOKEN"]
    assert list(described.secrets.optional) == ["WEBHOOK_SECRET"]
    assert json.loads(described.required_config_schema_json)["required"] == ["state_dir", "sender"]
    [shout] = described.operations
    assert (shout.name, shout.description) == ("shout", "Upper-case a short text.")
    assert shout.permission == "messages.shout"  # the router checks it on Invoke
    assert json.loads(shout.params_schema_json)["properties"]["text"]["maxLength"] == 20


async def test_send_delivers_everything_the_router_passed(echo: Endpoint) -> None:
    async with PluginClient(echo.address) as client:
        result = await client.send(
            "+15551234567",
            "Your code is 123456",
            subject="Login",
            metadata={"campaign": "spring"},
            idempotency_key="order-42",
            tenant="team-a",
        )

    assert result.provider_message_id.startswith("echo-")
    assert result.details["echo"] == "Your code is 123456"
    assert result.details["campaign"] == "spring"
    assert result.details["idempotency_key"] == "order-42"
    assert result.details["tenant"] == "team-a"
    assert result.details["token_id"] == token_id(TOKEN)


async def test_invoke_runs_the_operation_and_returns_its_json(echo: Endpoint) -> None:
    async with PluginClient(echo.address) as client:
        assert await client.invoke("shout", {"text": "hello"}) == {"text": "HELLO"}


async def test_check_credentials_answers_ok_with_the_plugin_message(echo: Endpoint) -> None:
    async with PluginClient(echo.address) as client:
        answer = await client.check_credentials()

    assert answer.ok
    assert answer.message == f"Token {token_id(TOKEN)} accepted"


async def test_params_breaking_the_schema_are_rejected_before_plugin_code_runs(
    echo: Endpoint,
) -> None:
    too_long = uuid.uuid4().hex  # 32 characters; the schema allows 20
    shout_log = echo.state_dir / "shout.log"

    async with PluginClient(echo.address) as client:
        with pytest.raises(InvalidInput) as too_long_error:
            await client.invoke("shout", {"text": too_long})
        with pytest.raises(InvalidInput) as missing_error:
            await client.invoke("shout", {"words": "hi"})
        accepted = uuid.uuid4().hex[:8]
        await client.invoke("shout", {"text": accepted})

    assert too_long_error.value.message.startswith("params.text: ")
    assert "is too long" in too_long_error.value.message
    assert "'text' is a required property" in missing_error.value.message
    runs = shout_log.read_text()
    assert accepted in runs, "the valid call should have reached the plugin"
    assert too_long not in runs, "the plugin ran although its params broke the schema"


async def test_unknown_operation_is_invalid_input_listing_the_offered_ones(
    echo: Endpoint,
) -> None:
    async with PluginClient(echo.address) as client:
        with pytest.raises(InvalidInput, match=r"'whisper' is not an operation.*offered: shout"):
            await client.invoke("whisper", {})


async def test_empty_recipient_is_invalid_input(echo: Endpoint) -> None:
    async with PluginClient(echo.address) as client:
        with pytest.raises(InvalidInput, match="recipient"):
            await client.send("  ", "hello")


@pytest.mark.parametrize(
    ("recipient", "exception", "error_class", "status_code", "retry_after"),
    [
        ("fail:invalid", InvalidInput, ErrorClass.INVALID_INPUT, "INVALID_ARGUMENT", None),
        ("fail:permanent", PermanentError, ErrorClass.PERMANENT, "FAILED_PRECONDITION", None),
        ("fail:retryable", RetryableError, ErrorClass.RETRYABLE, "UNAVAILABLE", 7.5),
        (
            "fail:unauthenticated",
            Unauthenticated,
            ErrorClass.UNAUTHENTICATED,
            "UNAUTHENTICATED",
            None,
        ),
        # ConfigError during a call: the request is fine, another provider may take it.
        ("fail:config", ConfigError, ErrorClass.CONFIGURATION, "UNAVAILABLE", None),
        # Maybe delivered: DEADLINE_EXCEEDED, gRPC's "may have completed".
        ("fail:unknown", OutcomeUnknown, ErrorClass.UNKNOWN_OUTCOME, "DEADLINE_EXCEEDED", None),
        # An unexpected exception: a bug in this plugin must let the router fail over.
        ("fail:crash", RetryableError, ErrorClass.RETRYABLE, "UNAVAILABLE", None),
    ],
)
async def test_each_failure_travels_as_its_status_code_and_typed_trailer(
    echo: Endpoint,
    recipient: str,
    exception: type[PluginError],
    error_class: ErrorClass,
    status_code: str,
    retry_after: float | None,
) -> None:
    async with grpc.aio.insecure_channel(echo.address) as channel:
        stub = plugin_pb2_grpc.PluginServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Send(plugin_pb2.SendRequest(recipient=recipient, content="x"), timeout=10)
    rpc_error = raised.value

    assert rpc_error.code().name == status_code
    trailer = dict(rpc_error.trailing_metadata() or ())[ERROR_METADATA_KEY]
    assert isinstance(trailer, bytes)
    classified = errors_from_rpc_error(rpc_error)
    assert type(classified) is exception
    assert classified.error_class is error_class
    assert classified.retry_after == retry_after
    assert classified.message == rpc_error.details()


async def test_plugin_client_raises_the_typed_error_with_retry_after(echo: Endpoint) -> None:
    async with PluginClient(echo.address) as client:
        with pytest.raises(RetryableError) as raised:
            await client.send("fail:retryable", "x")

    assert raised.value.retry_after == 7.5
    assert raised.value.message == "the provider throttled us"


async def test_unexpected_exception_message_names_the_error_but_not_the_secret(
    echo: Endpoint,
) -> None:
    async with PluginClient(echo.address) as client:
        with pytest.raises(RetryableError) as raised:
            await client.send("fail:crash", "x")

    assert raised.value.message == "Send failed: RuntimeError: client broke while using ***"
    assert TOKEN not in raised.value.message


async def test_credentials_a_provider_echoes_are_hidden_in_every_encoding(
    state_dir: Path, tmp_path: Path
) -> None:
    secrets = MountedSecret(tmp_path / "echoed-secrets", {"API_TOKEN": ECHOED_TOKEN})
    async with (
        serve_plugin(
            ECHO_SMS, config=echo_config(state_dir), secrets_dir=secrets.directory
        ) as server,
        PluginClient(server.address) as client,
    ):
        with pytest.raises(RetryableError) as raised:
            await client.send("fail:echoed-credentials", "x")

    message = raised.value.message
    assert message == ECHOED_REDACTED
    leaked = [name for name, form in echoed_forms(ECHOED_TOKEN).items() if form in message]
    assert leaked == []


def test_a_short_secret_is_hidden_only_where_it_stands_alone() -> None:
    redactor = Redactor()
    redactor.add(["k", "tok-7c1f0e5a9b"])

    assert redactor.redact("Listening for calls, token k") == "Listening for calls, token ***"
    assert redactor.redact('{"msg": "Activated the plugin", "kind": "ok"}') == (
        '{"msg": "Activated the plugin", "kind": "ok"}'
    )
    assert redactor.redact("token=tok-7c1f0e5a9b") == "token=***"


async def test_attachments_template_and_copies_reach_the_plugin_as_sent(echo: Endpoint) -> None:
    pdf = b"%PDF-1.7 invoice"
    async with PluginClient(echo.address) as client:
        result = await client.send(
            "+15551234567",
            "Your invoice",
            attachments=(
                Attachment("invoice.pdf", "application/pdf", data=pdf),
                Attachment("logo.png", "image/png", url="https://cdn.example.com/logo.png"),
            ),
            template=Template("d-123", {"name": "Ann", "items": [1, 2]}, "en_US"),
            cc=("a@example.org",),
            bcc=("b@example.org",),
        )

    assert result.details["attachment.invoice.pdf"] == (
        f"application/pdf sha256={hashlib.sha256(pdf).hexdigest()}"
    )
    assert result.details["attachment.logo.png"] == "image/png url=https://cdn.example.com/logo.png"
    assert result.details["template"] == 'd-123 en_US {"items": [1, 2], "name": "Ann"}'
    assert result.details["copies"] == "cc=a@example.org bcc=b@example.org"


@pytest.mark.parametrize(
    ("attachment", "complaint"),
    [
        (Attachment("", "application/pdf", data=b"x"), r"attachments\[0\]\.filename"),
        (Attachment("a.pdf", "pdf", data=b"x"), r"attachments\[0\]\.content_type"),
        (Attachment("a.pdf", "application/pdf"), r"attachments\[0\]: needs its data or a url"),
        (Attachment("a.png", "image/png", url="file:///etc/passwd"), r"attachments\[0\]\.url"),
    ],
)
async def test_an_incomplete_attachment_is_invalid_input_naming_it(
    echo: Endpoint, attachment: Attachment, complaint: str
) -> None:
    async with PluginClient(echo.address) as client:
        with pytest.raises(InvalidInput, match=complaint):
            await client.send("+15551234567", "x", attachments=(attachment,))


def test_a_message_needs_the_capabilities_of_its_parts() -> None:
    assert required_capabilities() == frozenset()
    assert required_capabilities(
        attachments=(Attachment("a.pdf", "application/pdf", data=b"x"),)
    ) == {"attachments"}
    assert required_capabilities(
        attachments=(Attachment("a.png", "image/png", url="https://x.example/a.png"),),
        template=Template("HX1"),
        bcc=("b@example.org",),
    ) == {"media_urls", "templates", "cc"}
