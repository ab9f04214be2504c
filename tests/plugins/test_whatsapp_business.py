"""whatsapp-business against a local stand-in for the WhatsApp Business Cloud API."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest

from switchboard.sdk import (
    Attachment,
    ConfigError,
    DeliveryState,
    InvalidInput,
    OutcomeUnknown,
    PluginError,
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


MEDIA_TYPES = {"image", "video", "audio", "document", "sticker"}


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
    if (request.method, request.path) == ("POST", f"/v23.0/{PHONE_NUMBER_ID}/media"):
        return upload_media(request)
    if request.path.startswith("/v23.0/") and request.path != f"/v23.0/{PHONE_NUMBER_ID}/messages":
        return graph_error(
            400,
            100,
            "Unsupported post request. Object with ID '1' does not exist, cannot be loaded due "
            "to missing permissions, or does not support this operation.",
            33,
        )
    assert (request.method, request.path) == ("POST", f"/v23.0/{PHONE_NUMBER_ID}/messages")
    assert request.content_type == "application/json"
    message = request.json()
    if message.get("messaging_product") != "whatsapp":
        return graph_error(400, 100, "(#100) The parameter messaging_product is required.")
    kind = message.get("type")
    if kind == "template" and message["template"]["name"] != "order_update":
        return graph_error(404, 132001, "(#132001) Template name does not exist in the translation")
    if kind in MEDIA_TYPES:
        media = message.get(kind)
        if not isinstance(media, dict) or not (media.get("link") or media.get("id")):
            return graph_error(400, 131009, "(#131009) Parameter value is not valid")
        if "caption" in media and kind not in ("image", "video", "document"):
            return graph_error(400, 131009, "(#131009) Parameter value is not valid")
        if "filename" in media and kind != "document":
            return graph_error(400, 131009, "(#131009) Parameter value is not valid")
    elif kind == "text" and not message.get("text", {}).get("body"):
        return graph_error(400, 131008, "(#131008) Required parameter is missing")
    reply: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "contacts": [{"input": message["to"], "wa_id": message["to"].lstrip("+")}],
        "messages": [{"id": wamid_of(request)}],
    }
    if kind == "template":
        reply["messages"][0]["message_status"] = "accepted"
    return Reply(200, reply)


#: Media types the Cloud API takes for upload (supported media types, abridged).
UPLOADABLE = {"image/jpeg", "image/png", "application/pdf", "audio/ogg", "video/mp4", "text/plain"}


def upload_media(request: Recorded) -> Reply:
    """POST /<phone_number_id>/media: multipart with messaging_product, type and file."""
    assert request.content_type == "multipart/form-data"
    form = request.multipart()
    if form.get("messaging_product", ("", ""))[1] != "whatsapp":
        return graph_error(400, 100, "(#100) The parameter messaging_product is required.")
    if "file" not in form or not form["file"][0]:
        return graph_error(400, 100, "(#100) The parameter file is required.")
    media_type = form.get("type", ("", ""))[1]
    if media_type not in UPLOADABLE:
        return graph_error(400, 131053, "(#131053) Media upload error")
    return Reply(200, {"id": "media-" + hashlib.sha256(form["file"][1]).hexdigest()[:16]})


def wamid_of(request: Recorded) -> str:
    """The message id the fake gives a request: one per distinct message."""
    return "wamid." + hashlib.sha256(request.body).hexdigest()[:40]


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
    assert result.provider_message_id == wamid_of(sent)
    assert result.details == {
        "to": "+16502530000",
        "type": "text",
        "parts": "1/1",
        "message_ids": wamid_of(sent),
    }


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


def answer(row: Row) -> Reply:
    """What Meta answers for one row of the error table in docs/plugins/whatsapp-business.md."""
    status = int(row.code("http"))
    if status == 200:
        body: dict[str, Any] = {"messaging_product": "whatsapp", "contacts": [], "messages": []}
        if "without" not in row["meta says"]:
            body["messages"] = [{"id": WAMID}]
        return Reply(200, body)
    code = int(row.code("code")) if row.code("code").isdigit() else 99999
    subcode = int(row.code("subcode")) if row.code("subcode").isdigit() else None
    reply = graph_error(status, code, row["meta says"], subcode)
    if row.wants_retry_after_header:
        reply.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return reply


@pytest.mark.parametrize("row", rows_as_params("whatsapp-business"))
async def test_every_row_of_the_error_table(
    fake: HttpFake, run_plugin: RunPlugin, row: Row
) -> None:
    fake.fail_next(answer(row))
    async with run_plugin("whatsapp-business", config(fake.url), secrets=SECRETS) as client:
        outcome = await outcome_of(client.send("+16502530000", "hi"))

    assert_outcome(row, outcome)
    if isinstance(outcome, PluginError) and row.code("code").isdigit():
        assert row["meta says"] in outcome.message
        assert f"code {row.code('code')}" in outcome.message
        assert "fbtrace_id AbCdEf123" in outcome.message


def test_the_error_table_lists_every_code_the_plugin_tells_apart() -> None:
    rows = [row for row in error_table("whatsapp-business") if row.code("code").isdigit()]
    by_code = {int(row.code("code")): row.error for row in rows if not row.code("subcode")}
    by_pair = {
        (int(row.code("code")), int(row.code("subcode"))): row.error
        for row in rows
        if row.code("subcode")
    }
    module = plugin_module("whatsapp-business")

    assert {code: by_code.get(code) for code in module.CODE_CLASSES} == module.CODE_CLASSES
    assert by_pair == module.SUBCODE_CLASSES


async def test_a_wrong_phone_number_id_fails_over_as_configuration(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    settings = config(fake.url, phone_number_id="1")
    async with run_plugin("whatsapp-business", settings, secrets=SECRETS) as client:
        with pytest.raises(ConfigError, match=r"code 100, subcode 33") as raised:
            await client.send("+16502530000", "hi")

    assert "check the plugin's phone number and account" in str(raised.value)


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


async def test_a_message_template_becomes_a_template_message_with_body_parameters(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin("whatsapp-business", config(fake.url), secrets=SECRETS) as client:
        await client.send(
            "+16502530000", "", template=Template("order_update", {"1": "A-1042", "2": 3}, "de")
        )
        await client.send("+16502530000", "", template=Template("order_update", {"order": "A-7"}))

    positional, named = (request.json()["template"] for request in fake.requests)
    assert positional == {
        "name": "order_update",
        "language": {"code": "de"},
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "A-1042"}, {"type": "text", "text": "3"}],
            }
        ],
    }
    assert named == {
        "name": "order_update",
        "language": {"code": "en_US"},
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "parameter_name": "order", "text": "A-7"}],
            }
        ],
    }


async def test_media_by_url_are_one_message_each_with_the_content_as_caption(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    attachments = (
        Attachment("receipt.png", "image/png", url="https://cdn.example.com/receipt.png"),
        Attachment("terms.pdf", "application/pdf", url="https://cdn.example.com/terms.pdf"),
    )
    async with run_plugin("whatsapp-business", config(fake.url), secrets=SECRETS) as client:
        result = await client.send("+16502530000", "Your receipt", attachments=attachments)

    image, document = (request.json() for request in fake.requests)
    assert image == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+16502530000",
        "type": "image",
        "image": {"link": "https://cdn.example.com/receipt.png", "caption": "Your receipt"},
    }
    assert document["type"] == "document"
    assert document["document"] == {
        "link": "https://cdn.example.com/terms.pdf",
        "filename": "terms.pdf",
    }
    assert result.details["parts"] == "2/2"
    assert len(result.details["message_ids"].split(",")) == 2
    assert result.part_ids == (wamid_of(fake.requests[1]),)


async def test_audio_takes_no_caption_so_the_text_goes_first(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    voice = Attachment("note.ogg", "audio/ogg", url="https://cdn.example.com/note.ogg")
    async with run_plugin("whatsapp-business", config(fake.url), secrets=SECRETS) as client:
        await client.send("+16502530000", "Listen to this", attachments=(voice,))

    text, audio = (request.json() for request in fake.requests)
    assert text["text"] == {"body": "Listen to this", "preview_url": False}
    assert audio["audio"] == {"link": "https://cdn.example.com/note.ogg"}


async def test_a_refused_second_media_is_a_partial_delivery(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    attachments = (
        Attachment("a.png", "image/png", url="https://cdn.example.com/a.png"),
        Attachment("b.png", "image/png", url="https://cdn.example.com/b.png"),
        Attachment("c.png", "image/png", url="https://cdn.example.com/c.png"),
    )
    async with run_plugin("whatsapp-business", config(fake.url), secrets=SECRETS) as client:
        fake.fail_next(
            Reply(200, {"messaging_product": "whatsapp", "messages": [{"id": "wamid.first"}]}),
            graph_error(400, 130429, "(#130429) Rate limit hit"),
        )
        result = await client.send("+16502530000", "", attachments=attachments)

    assert len(fake.requests) == 2
    assert result.provider_message_id == "wamid.first"
    assert result.details["partial"] == "true"
    assert result.details["parts"] == "1/3"
    assert result.details["failed"].startswith("part 2: RETRYABLE: WhatsApp answered HTTP 400")
    assert result.details["failed"].endswith("part 3: not sent")


async def test_an_attachment_with_its_bytes_is_uploaded_then_sent_by_its_media_id(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    receipt = Attachment("receipt.pdf", "application/pdf", data=b"%PDF-1.7 \x00\xff")
    async with run_plugin("whatsapp-business", config(fake.url), secrets=SECRETS) as client:
        result = await client.send("+16502530000", "Your receipt", attachments=(receipt,))

    upload, sent = fake.requests
    assert upload.path == f"/v23.0/{PHONE_NUMBER_ID}/media"
    assert upload.headers["Authorization"] == f"Bearer {TOKEN}"
    assert upload.multipart() == {
        "messaging_product": ("", "whatsapp"),
        "type": ("", "application/pdf"),
        "file": ("receipt.pdf", receipt.data),
    }
    media_id = "media-" + hashlib.sha256(receipt.data).hexdigest()[:16]
    assert sent.json()["document"] == {
        "id": media_id,
        "filename": "receipt.pdf",
        "caption": "Your receipt",
    }
    assert result.details["parts"] == "1/1"


async def test_a_refused_upload_is_the_parts_failure(fake: HttpFake, run_plugin: RunPlugin) -> None:
    odd = Attachment("model.stl", "model/stl", data=b"solid x")
    async with run_plugin("whatsapp-business", config(fake.url), secrets=SECRETS) as client:
        with pytest.raises(InvalidInput, match="Media upload error"):
            await client.send("+16502530000", "", attachments=(odd,))

    assert [request.path for request in fake.requests] == [f"/v23.0/{PHONE_NUMBER_ID}/media"]


# -- delivery receipts: the app's webhook, as Meta's Webhooks guide documents it --

RECEIPT_URL = "https://hooks.example.com/v1/receipts/default/whatsapp-business"
APP_SECRET = "meta-app-secret-0c4b9a"
VERIFY_TOKEN = "switchboard-verify-5d2e"
RECEIPT_SECRETS = {
    **SECRETS,
    "WHATSAPP_APP_SECRET": APP_SECRET,
    "WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN,
}


def receipts_config(**extra: Any) -> dict[str, Any]:
    return config(
        "http://127.0.0.1:9",
        app_secret="${WHATSAPP_APP_SECRET}",
        verify_token="${WHATSAPP_VERIFY_TOKEN}",
        **extra,
    )


def status_update(*statuses: dict[str, Any]) -> dict[str, Any]:
    """A ``messages`` notification carrying ``statuses`` (Cloud API webhook payload)."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": PHONE_NUMBER_ID,
                            },
                            "statuses": list(statuses),
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }


def status(kind: str, wamid: str = WAMID, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": wamid,
        "status": kind,
        "timestamp": "1750263773",
        "recipient_id": "16505551234",
        **extra,
    }
    if kind == "sent":
        entry["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "utility"}
    return entry


WINDOW_CLOSED = {
    "code": 131047,
    "title": "Re-engagement message",
    "message": "Re-engagement message",
    "error_data": {
        "details": "Message failed to send because more than 24 hours have passed since "
        "the customer last replied to this number."
    },
    "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
}


def signed_notification(
    notification: dict[str, Any], secret: str = APP_SECRET
) -> tuple[str, str, dict[str, str], bytes]:
    """A POST as Meta sends it: JSON (non-ASCII escaped, as Meta does), and
    X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, keyed with the app secret>."""
    body = json.dumps(notification).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}
    return "POST", RECEIPT_URL, headers, body


@pytest.mark.parametrize("row", statuses_as_params("whatsapp-business"))
async def test_every_documented_status_becomes_its_state(
    run_plugin: RunPlugin, row: StatusRow
) -> None:
    failed = row.state is DeliveryState.FAILED
    entry = status(row.status, **({"errors": [WINDOW_CLOSED]} if failed else {}))
    async with run_plugin(
        "whatsapp-business", receipts_config(), secrets=RECEIPT_SECRETS
    ) as client:
        reply = await client.handle_receipt(*signed_notification(status_update(entry)))

    assert [(r.provider_message_id, r.state) for r in reply.receipts] == [(WAMID, row.state)]
    expected = (
        "WhatsApp reports the message failed: Re-engagement message (code 131047): Message "
        "failed to send because more than 24 hours have passed since the customer last "
        "replied to this number."
    )
    assert reply.receipts[0].error == (expected if failed else "")


def test_the_receipt_table_lists_every_status_the_plugin_maps() -> None:
    documented = documented_states("whatsapp-business")
    mapped = plugin_module("whatsapp-business").STATUS_STATES

    assert documented == mapped


async def test_a_notification_gives_a_receipt_per_status_and_ignores_incoming_messages(
    run_plugin: RunPlugin,
) -> None:
    notification = status_update(status("sent"), status("delivered", "wamid.second"))
    notification["entry"][0]["changes"].append(
        {
            "value": {
                "messaging_product": "whatsapp",
                "metadata": {"phone_number_id": PHONE_NUMBER_ID},
                "contacts": [{"profile": {"name": "Ann"}, "wa_id": "16505551234"}],
                "messages": [
                    {
                        "from": "16505551234",
                        "id": "wamid.in",
                        "type": "text",
                        "text": {"body": "hi"},
                    }
                ],
            },
            "field": "messages",
        }
    )
    async with run_plugin(
        "whatsapp-business", receipts_config(), secrets=RECEIPT_SECRETS
    ) as client:
        reply = await client.handle_receipt(*signed_notification(notification))

    assert [(r.provider_message_id, r.state) for r in reply.receipts] == [
        (WAMID, DeliveryState.SENT),
        ("wamid.second", DeliveryState.DELIVERED),
    ]


def forged_notification(kind: str) -> tuple[str, str, dict[str, str], bytes]:
    """A notification Meta did not sign with this app's secret, or one altered."""
    notification = status_update(status("failed", errors=[WINDOW_CLOSED]))
    method, url, headers, body = signed_notification(notification)
    if kind == "other-app":
        method, url, headers, body = signed_notification(notification, secret="other-app")
    elif kind == "status-changed":
        body = body.replace(b'"failed"', b'"delivered"')
    elif kind == "no-signature":
        del headers["X-Hub-Signature-256"]
    elif kind == "sha1-signature-only":
        # The older X-Hub-Signature header (SHA-1) is not enough.
        del headers["X-Hub-Signature-256"]
        digest = hmac.new(APP_SECRET.encode(), body, hashlib.sha1).hexdigest()
        headers["X-Hub-Signature"] = f"sha1={digest}"
    elif kind == "bare-hex":
        headers["X-Hub-Signature-256"] = headers["X-Hub-Signature-256"].removeprefix("sha256=")
    return method, url, headers, body


@pytest.mark.parametrize(
    "kind", ["other-app", "status-changed", "no-signature", "sha1-signature-only", "bare-hex"]
)
async def test_a_forged_or_altered_notification_is_unauthenticated(
    run_plugin: RunPlugin, kind: str
) -> None:
    async with run_plugin(
        "whatsapp-business", receipts_config(), secrets=RECEIPT_SECRETS
    ) as client:
        with pytest.raises(Unauthenticated, match="X-Hub-Signature-256 does not match") as refused:
            await client.handle_receipt(*forged_notification(kind))

    assert APP_SECRET not in refused.value.message


async def test_without_an_app_secret_every_notification_is_refused(
    run_plugin: RunPlugin,
) -> None:
    async with run_plugin(
        "whatsapp-business", config("http://127.0.0.1:9"), secrets=SECRETS
    ) as client:
        with pytest.raises(Unauthenticated, match="app_secret is not set"):
            await client.handle_receipt(*signed_notification(status_update(status("sent"))))


def subscription_check(
    token: str, mode: str = "subscribe"
) -> tuple[str, str, dict[str, str], bytes]:
    """Meta's verification request: a GET with hub.mode, hub.verify_token, hub.challenge."""
    query = urlencode({"hub.mode": mode, "hub.verify_token": token, "hub.challenge": "1158201444"})
    return "GET", f"{RECEIPT_URL}?{query}", {"User-Agent": "facebookplatform/1.0"}, b""


async def test_the_subscription_check_is_answered_with_the_challenge_as_text(
    run_plugin: RunPlugin,
) -> None:
    async with run_plugin(
        "whatsapp-business", receipts_config(), secrets=RECEIPT_SECRETS
    ) as client:
        reply = await client.handle_receipt(*subscription_check(VERIFY_TOKEN))

    assert (reply.body, reply.content_type, reply.receipts) == ("1158201444", "text/plain", ())


@pytest.mark.parametrize(
    ("token", "mode"),
    [
        pytest.param("a-guess", "subscribe", id="wrong-token"),
        pytest.param("", "subscribe", id="no-token"),
        pytest.param(VERIFY_TOKEN, "unsubscribe", id="other-mode"),
    ],
)
async def test_a_subscription_check_without_the_token_is_unauthenticated(
    run_plugin: RunPlugin, token: str, mode: str
) -> None:
    async with run_plugin(
        "whatsapp-business", receipts_config(), secrets=RECEIPT_SECRETS
    ) as client:
        with pytest.raises(Unauthenticated, match="configured verify token") as refused:
            await client.handle_receipt(*subscription_check(token, mode))

    assert VERIFY_TOKEN not in refused.value.message


async def test_without_a_verify_token_the_subscription_check_fails(
    run_plugin: RunPlugin,
) -> None:
    settings = config("http://127.0.0.1:9", app_secret="${WHATSAPP_APP_SECRET}")
    async with run_plugin("whatsapp-business", settings, secrets=RECEIPT_SECRETS) as client:
        with pytest.raises(Unauthenticated, match="verify_token is not set"):
            await client.handle_receipt(*subscription_check(VERIFY_TOKEN))


async def test_receipts_about_each_part_of_a_message_name_the_wamids_the_send_returned(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    attachments = (
        Attachment("receipt.png", "image/png", url="https://cdn.example.com/receipt.png"),
        Attachment("terms.pdf", "application/pdf", url="https://cdn.example.com/terms.pdf"),
    )
    settings = {**receipts_config(), "base_url": fake.url}
    async with run_plugin("whatsapp-business", settings, secrets=RECEIPT_SECRETS) as client:
        sent = await client.send("+16502530000", "Your receipt", attachments=attachments)
        ids = [sent.provider_message_id, *sent.part_ids]
        reply = await client.handle_receipt(
            *signed_notification(status_update(*(status("delivered", wamid) for wamid in ids)))
        )

    assert len(ids) == 2
    assert [r.provider_message_id for r in reply.receipts] == ids
