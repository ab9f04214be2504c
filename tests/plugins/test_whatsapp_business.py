"""whatsapp-business against a local stand-in for the WhatsApp Business Cloud API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from switchboard.sdk import (
    ConfigError,
    InvalidInput,
    OutcomeUnknown,
    PermanentError,
    PluginError,
    RetryableError,
    Unauthenticated,
)
from tests.plugins.conftest import HTTP_FAILURES, Failure, RunPlugin, assert_classified
from tests.plugins.fakes import HttpFake, Recorded, Reply, closed_port

TOKEN = "EAAJB-whatsapp-token-3e9f"
PHONE_NUMBER_ID = "106540352242922"
SECRETS = {"WHATSAPP_TOKEN": TOKEN}
WAMID = "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"


def graph_error(status: int, code: int, message: str, subcode: int | None = None) -> Reply:
    error: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "AbCdEf123",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return Reply(status, {"error": error})


def cloud_api(request: Recorded) -> Reply:
    """Messages and the phone number node, as the Cloud API documents them."""
    if request.bearer() != TOKEN:
        return graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
    if request.method == "GET" and request.path == f"/v23.0/{PHONE_NUMBER_ID}":
        assert request.query == {"fields": "display_phone_number,verified_name"}
        return Reply(
            200,
            {
                "display_phone_number": "+1 555-010-0000",
                "verified_name": "Acme",
                "id": PHONE_NUMBER_ID,
            },
        )
    assert (request.method, request.path) == ("POST", f"/v23.0/{PHONE_NUMBER_ID}/messages")
    assert request.content_type == "application/json"
    message = request.json()
    if message.get("messaging_product") != "whatsapp":
        return graph_error(400, 100, "(#100) The parameter messaging_product is required.")
    if message.get("type") == "template" and message["template"]["name"] != "order_update":
        return graph_error(404, 132001, "(#132001) Template name does not exist in the translation")
    reply: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "contacts": [{"input": message["to"], "wa_id": message["to"].lstrip("+")}],
        "messages": [{"id": WAMID}],
    }
    if message.get("type") == "template":
        reply["messages"][0]["message_status"] = "accepted"
    return Reply(200, reply)


@pytest.fixture
async def fake() -> AsyncIterator[HttpFake]:
    async with HttpFake(cloud_api) as server:
        yield server


def config(base_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "access_token": "${WHATSAPP_TOKEN}",
        "phone_number_id": PHONE_NUMBER_ID,
        "base_url": base_url,
        **extra,
    }


async def test_text_message_is_the_documented_json_and_returns_the_wamid(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin("whatsapp-business", config(fake.url), secrets=SECRETS) as client:
        result = await client.send(
            "+1 650-253-0000", "Your order has shipped", metadata={"preview_url": "true"}
        )

    sent = fake.last
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent.json() == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+16502530000",
        "type": "text",
        "text": {"body": "Your order has shipped", "preview_url": True},
    }
    assert result.provider_message_id == WAMID
    assert result.details == {"to": "+16502530000", "type": "text"}


async def test_template_message_takes_name_language_and_components_from_metadata(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    components = [{"type": "body", "parameters": [{"type": "text", "text": "A-1042"}]}]
    async with run_plugin(
        "whatsapp-business",
        config(fake.url, template_language="de", default_region="DE"),
        secrets=SECRETS,
    ) as client:
        result = await client.send(
            "0151 12345678",
            "",
            metadata={"template": "order_update", "template_components": json.dumps(components)},
        )
        await client.send(
            "+4915112345678",
            "",
            metadata={"template": "order_update", "template_language": "en_US"},
        )

    first, second = (request.json() for request in fake.requests)
    assert first == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+4915112345678",
        "type": "template",
        "template": {"name": "order_update", "language": {"code": "de"}, "components": components},
    }
    assert second["template"] == {"name": "order_update", "language": {"code": "en_US"}}
    assert result.details["message_status"] == "accepted"


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        pytest.param(
            graph_error(
                400, 131056, "(#131056) (Business Account, Consumer Account) pair rate limit hit"
            ),
            RetryableError,
            id="131056-pair-rate-limit",
        ),
        pytest.param(
            graph_error(400, 130429, "(#130429) Rate limit hit"),
            RetryableError,
            id="130429-throughput",
        ),
        pytest.param(
            graph_error(401, 190, "Error validating access token: Session has expired", 463),
            Unauthenticated,
            id="190-expired-token",
        ),
        pytest.param(
            graph_error(400, 131047, "(#131047) Re-engagement message"),
            PermanentError,
            id="131047-window-closed",
        ),
        pytest.param(
            graph_error(400, 131026, "(#131026) Message undeliverable"),
            PermanentError,
            id="131026-undeliverable",
        ),
        pytest.param(
            graph_error(400, 100, "(#100) Invalid parameter"),
            InvalidInput,
            id="100-invalid-parameter",
        ),
        pytest.param(
            graph_error(404, 132001, "(#132001) Template name does not exist"),
            InvalidInput,
            id="132001-no-template",
        ),
        pytest.param(
            graph_error(400, 131030, "(#131030) Recipient phone number not in allowed list"),
            ConfigError,
            id="131030-test-number-list",
        ),
        pytest.param(
            graph_error(400, 368, "Temporarily blocked for policies violations"),
            RetryableError,
            id="368-blocked",
        ),
        pytest.param(
            graph_error(400, 99999, "Something new"), InvalidInput, id="unknown-code-uses-status"
        ),
    ],
)
async def test_graph_error_codes_are_classified_and_quoted(
    fake: HttpFake, run_plugin: RunPlugin, reply: Reply, error: type[PluginError]
) -> None:
    fake.fail_next(reply)
    async with run_plugin("whatsapp-business", config(fake.url), secrets=SECRETS) as client:
        with pytest.raises(error) as raised:
            await client.send("+16502530000", "hi")

    assert type(raised.value) is error
    error_body = reply.body["error"]
    assert error_body["message"] in str(raised.value)
    assert f"code {error_body['code']}; fbtrace_id AbCdEf123" in str(raised.value)


@pytest.mark.parametrize("failure", HTTP_FAILURES)
async def test_http_failures_are_classified(
    fake: HttpFake, run_plugin: RunPlugin, failure: Failure
) -> None:
    fake.fail_next(failure.reply({"error": {"message": "failure", "type": "OAuthException"}}))
    async with run_plugin("whatsapp-business", config(fake.url), secrets=SECRETS) as client:
        with pytest.raises(failure.error) as raised:
            await client.send("+16502530000", "hi")

    assert_classified(raised, failure)


@pytest.mark.parametrize(
    ("recipient", "metadata", "problem"),
    [
        ("+1 12345", {}, "is not a valid phone number"),
        ("+16502530000", {"template": "t", "template_components": "{}"}, "must be a JSON array"),
        ("+16502530000", {"template": "t", "template_components": "[{"}, "not valid JSON"),
    ],
)
async def test_bad_input_is_invalid_and_nothing_is_sent(
    fake: HttpFake, run_plugin: RunPlugin, recipient: str, metadata: dict[str, str], problem: str
) -> None:
    async with run_plugin("whatsapp-business", config(fake.url), secrets=SECRETS) as client:
        with pytest.raises(InvalidInput, match=problem):
            await client.send(recipient, "hi", metadata=metadata)

    assert fake.requests == []


async def test_check_credentials_reads_the_phone_number(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin("whatsapp-business", config(fake.url), secrets=SECRETS) as client:
        accepted = await client.check_credentials()
    async with run_plugin(
        "whatsapp-business", config(fake.url), secrets={"WHATSAPP_TOKEN": "expired"}
    ) as client:
        rejected = await client.check_credentials()

    assert accepted.ok
    assert accepted.message == "WhatsApp accepted the access token for phone number +1 555-010-0000"
    assert not rejected.ok
    assert "code 190" in rejected.message


async def test_a_refused_connection_is_retryable_and_a_timeout_is_unknown(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin(
        "whatsapp-business", config(f"http://127.0.0.1:{closed_port()}"), secrets=SECRETS
    ) as client:
        with pytest.raises(RetryableError, match="Could not reach WhatsApp"):
            await client.send("+16502530000", "hi")

    fake.fail_next(Reply(200, delay=2))
    async with run_plugin(
        "whatsapp-business", config(fake.url, timeout_seconds=0.2), secrets=SECRETS
    ) as client:
        with pytest.raises(OutcomeUnknown, match="WhatsApp did not answer in time"):
            await client.send("+16502530000", "hi")
