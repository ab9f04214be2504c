"""telegram against a local stand-in for the Telegram Bot API."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from switchboard.sdk import (
    Attachment,
    InvalidInput,
    OutcomeUnknown,
    PluginError,
    RetryableError,
)
from tests.plugins.conftest import RunPlugin
from tests.plugins.errortable import (
    RETRY_AFTER_SECONDS,
    Row,
    assert_outcome,
    outcome_of,
    rows_as_params,
)
from tests.plugins.fakes import HttpFake, Recorded, Reply, closed_port

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SECRETS = {"TELEGRAM_BOT_TOKEN": TOKEN}
CHATS = {123456789: 123456789, "@switchboard_news": -1001234567890}


def telegram_error(code: int, description: str, **parameters: Any) -> Reply:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return Reply(code, body)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


#: Entity types the Bot API knows (MessageEntity.type).
ENTITY_TYPES = {
    "mention", "hashtag", "cashtag", "bot_command", "url", "email", "phone_number", "bold",
    "italic", "underline", "strikethrough", "spoiler", "blockquote", "expandable_blockquote",
    "code", "pre", "text_link", "text_mention", "custom_emoji",
}  # fmt: skip
#: Tags of the HTML parse mode ("HTML style"); anything else is refused.
HTML_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
    "tg-emoji", "code", "pre", "blockquote",
}  # fmt: skip
#: Characters MarkdownV2 reserves ("MarkdownV2 style"): escape them with a backslash.
MARKDOWN_V2_RESERVED = set("_*[]()~`>#+-=|{}.!")


def parse_error(text: str, parse_mode: str | None) -> str | None:
    """Why Telegram would refuse ``text`` in ``parse_mode``, as its description says."""
    if parse_mode == "HTML":
        for tag in re.findall(r"</?([A-Za-z][A-Za-z0-9-]*)", text):
            if tag.lower() not in HTML_TAGS:
                return f'Bad Request: can\'t parse entities: Unsupported start tag "{tag}"'
        if re.search(r"&(?!(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);)", text):
            return "Bad Request: can't parse entities: Unsupported HTML entity"
    if parse_mode == "MarkdownV2":
        plain = re.sub(r"\\.", "", text)  # escaped characters are fine
        plain = re.sub(r"\[[^\]]*\]\([^)]*\)", "", plain)  # [text](url)
        plain = re.sub(r"(\*|__|_|~|\|\||`)[^*_~|`]+\1", "", plain)  # *bold* _italic_ ...
        for char in plain:
            if char in MARKDOWN_V2_RESERVED:
                return (
                    f"Bad Request: can't parse entities: Character '{char}' is reserved and "
                    "must be escaped with the preceding '\\'"
                )
    return None


class Telegram:
    """Bot API methods under /bot<token>/, as the Bot API documents them."""

    def __init__(self) -> None:
        self.next_message_id = 42

    def __call__(self, request: Recorded) -> Reply:
        prefix = f"/bot{TOKEN}/"
        if not request.path.startswith("/bot"):
            return telegram_error(404, "Not Found")
        if not request.path.startswith(prefix):
            return telegram_error(401, "Unauthorized")
        method = request.path.removeprefix(prefix)
        if method == "getMe":
            return Reply(
                200,
                {
                    "ok": True,
                    "result": {"id": 123, "is_bot": True, "first_name": "SB", "username": "sb_bot"},
                },
            )
        assert request.method == "POST"
        if method == "sendDocument":
            return self._send_document(request)
        assert method == "sendMessage"
        assert request.content_type == "application/json"
        message = request.json()
        if message.get("chat_id") not in CHATS:
            return telegram_error(400, "Bad Request: chat not found")
        text = message.get("text", "")
        if not text.strip():
            return telegram_error(400, "Bad Request: message text is empty")
        if problem := parse_error(text, message.get("parse_mode")):
            return telegram_error(400, problem)
        if message.get("parse_mode") is None and utf16_len(text) > 4096:
            return telegram_error(400, "Bad Request: message is too long")
        for entity in message.get("entities", []):
            if entity["type"] not in ENTITY_TYPES or (
                entity["type"] == "text_link" and not entity.get("url")
            ):
                return telegram_error(400, "Bad Request: can't parse entities: bad entity")
            if entity["offset"] + entity["length"] > utf16_len(text):
                return telegram_error(400, "Bad Request: entity beyond the end of the text")
        return self._sent(message["chat_id"], {"text": text})

    def _send_document(self, request: Recorded) -> Reply:
        if request.content_type == "application/json":
            fields = request.json()
            document = fields.get("document")
            if not isinstance(document, str) or not document.startswith("https://"):
                return telegram_error(400, "Bad Request: wrong HTTP URL specified")
            about: dict[str, Any] = {"file_name": document.rsplit("/", 1)[-1]}
        else:
            assert request.content_type == "multipart/form-data"
            form = request.multipart()
            fields = {name: value for name, (_, value) in form.items() if name != "document"}
            if "document" not in form or not form["document"][0]:
                return telegram_error(400, "Bad Request: there is no document in the request")
            name, data = form["document"]
            about = {"file_name": name, "file_size": len(data)}
            fields["chat_id"] = (
                int(fields["chat_id"])
                if fields["chat_id"].lstrip("-").isdigit()
                else fields["chat_id"]
            )
        if fields.get("chat_id") not in CHATS:
            return telegram_error(400, "Bad Request: chat not found")
        return self._sent(fields["chat_id"], {"document": about})

    def _sent(self, chat_id: Any, content: dict[str, Any]) -> Reply:
        message_id, self.next_message_id = self.next_message_id, self.next_message_id + 1
        return Reply(
            200,
            {
                "ok": True,
                "result": {
                    "message_id": message_id,
                    "from": {"id": 123, "is_bot": True, "first_name": "SB", "username": "sb_bot"},
                    "chat": {"id": CHATS[chat_id], "type": "private"},
                    "date": 1700000000,
                    **content,
                },
            },
        )


@pytest.fixture
async def fake() -> AsyncIterator[HttpFake]:
    async with HttpFake(Telegram()) as server:
        yield server


def config(base_url: str, **extra: Any) -> dict[str, Any]:
    return {"bot_token": "${TELEGRAM_BOT_TOKEN}", "base_url": base_url, **extra}


async def test_html_becomes_plain_text_with_entities_that_telegram_takes(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    html = "<p>Deploy <b>v1.4.0</b> done.</p>" + (
        '<p>See <a href="https://e.com/x">the notes</a> &amp; go.</p>'
    )
    async with run_plugin("telegram", config(fake.url), secrets=SECRETS) as client:
        result = await client.send("123456789", html, content_type="text/html")

    sent = fake.last
    assert (sent.method, sent.path) == ("POST", f"/bot{TOKEN}/sendMessage")
    assert sent.json() == {
        "chat_id": 123456789,
        "text": "Deploy v1.4.0 done.\n\nSee the notes & go.",
        "entities": [
            {"type": "bold", "offset": 7, "length": 6},
            {"type": "text_link", "offset": 25, "length": 9, "url": "https://e.com/x"},
        ],
    }
    assert result.provider_message_id == "123456789:42"
    assert result.details == {
        "chat_id": "123456789",
        "parts": "1/1",
        "message_ids": "123456789:42",
    }


async def test_ordinary_markdown_with_dots_and_dashes_is_delivered(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    markdown = "**Deploy** v1.4.0 - done. See [notes](https://e.com/x) and `make test`!"
    async with run_plugin("telegram", config(fake.url), secrets=SECRETS) as client:
        await client.send("123456789", markdown, content_type="text/markdown")

    sent = fake.last.json()
    assert "parse_mode" not in sent
    assert sent["text"] == "Deploy v1.4.0 - done. See notes and make test!"
    assert sent["entities"] == [
        {"type": "bold", "offset": 0, "length": 6},
        {"type": "text_link", "offset": 26, "length": 5, "url": "https://e.com/x"},
        {"type": "code", "offset": 36, "length": 9},
    ]


async def test_a_parse_mode_from_config_or_metadata_means_the_text_is_already_telegram_syntax(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin(
        "telegram", config(fake.url, parse_mode="MarkdownV2"), secrets=SECRETS
    ) as client:
        channel = await client.send("@switchboard_news", "*bold* v1\\.4")
        await client.send(
            "123456789",
            "<i>x</i>",
            metadata={"parse_mode": "", "disable_notification": "true", "message_thread_id": "7"},
        )

    channel_post, plain = (request.json() for request in fake.requests)
    assert channel_post == {
        "chat_id": "@switchboard_news",
        "text": "*bold* v1\\.4",
        "parse_mode": "MarkdownV2",
    }
    assert channel.provider_message_id == "-1001234567890:42"
    assert plain == {
        "chat_id": 123456789,
        "text": "<i>x</i>",
        "disable_notification": True,
        "message_thread_id": 7,
    }


async def test_a_text_over_4096_characters_is_split_at_line_breaks_with_entities_kept(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    paragraph = "**Section** " + "word " * 150 + "\n\n"  # 770 characters
    markdown = paragraph * 12  # over 9,000 characters
    async with run_plugin("telegram", config(fake.url), secrets=SECRETS) as client:
        result = await client.send("123456789", markdown, content_type="text/markdown")

    texts = [request.json() for request in fake.requests]
    assert len(texts) == 3
    assert all(utf16_len(part["text"]) <= 4096 for part in texts)
    assert all(part["text"].startswith("Section") for part in texts)
    for part in texts:
        for entity in part["entities"]:
            assert part["text"][entity["offset"] :][: entity["length"]] == "Section"
    assert sum(part["text"].count("Section") for part in texts) == 12
    assert result.details["parts"] == "3/3"
    assert result.details["message_ids"] == "123456789:42,123456789:43,123456789:44"


async def test_the_limit_counts_utf16_units_as_telegram_does(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin("telegram", config(fake.url), secrets=SECRETS) as client:
        await client.send("123456789", "🚀" * 3000)  # 3,000 characters, 6,000 UTF-16 units

    assert [utf16_len(request.json()["text"]) for request in fake.requests] == [4096, 1904]


async def test_a_later_part_refused_is_a_partial_delivery(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin("telegram", config(fake.url), secrets=SECRETS) as client:
        fake.fail_next(
            Reply(
                200,
                {"ok": True, "result": {"message_id": 7, "chat": {"id": 123456789}}},
            ),
            telegram_error(429, "Too Many Requests: retry after 3", retry_after=3),
        )
        result = await client.send("123456789", ("x" * 4000 + "\n") * 3)

    assert len(fake.requests) == 2
    assert result.provider_message_id == "123456789:7"
    assert result.details["partial"] == "true"
    assert result.details["parts"] == "1/3"
    assert result.details["failed"] == (
        "part 2: RETRYABLE: Telegram answered 429: Too Many Requests: retry after 3; "
        "part 3: not sent"
    )


async def test_attachments_are_documents_uploaded_or_fetched_by_url(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    report = Attachment("report.pdf", "application/pdf", data=b"%PDF-1.7 \x00\xff")
    linked = Attachment("terms.pdf", "application/pdf", url="https://cdn.example.com/terms.pdf")
    async with run_plugin("telegram", config(fake.url), secrets=SECRETS) as client:
        result = await client.send(
            "123456789",
            "Your documents",
            attachments=(report, linked),
            metadata={"disable_notification": "true"},
        )

    text, upload, by_url = fake.requests
    assert text.json()["text"] == "Your documents"
    assert (upload.path, upload.content_type) == (
        f"/bot{TOKEN}/sendDocument",
        "multipart/form-data",
    )
    form = upload.multipart()
    assert form["document"] == ("report.pdf", report.data)
    assert form["chat_id"] == ("", "123456789")
    assert form["disable_notification"] == ("", "true")
    assert by_url.json() == {
        "chat_id": 123456789,
        "disable_notification": True,
        "document": "https://cdn.example.com/terms.pdf",
    }
    assert result.details["parts"] == "3/3"


def answer(row: Row) -> Reply:
    """What the Bot API answers for one row of the error table in docs/plugins/telegram.md."""
    status = int(row.code("http"))
    if status == 200:
        result = {"chat": {"id": 123456789}} | (
            {} if "without" in row["telegram says"] else {"message_id": 42}
        )
        return Reply(200, {"ok": True, "result": result})
    if not row.codes("description"):
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if row.wants_retry_after_header else {}
        return Reply(status, "<html>Bad Gateway</html>", headers)
    parameters = json.loads(row.code("parameters")) if row.codes("parameters") else {}
    return telegram_error(status, row.code("description"), **parameters)


@pytest.mark.parametrize("row", rows_as_params("telegram"))
async def test_every_row_of_the_error_table(
    fake: HttpFake, run_plugin: RunPlugin, row: Row
) -> None:
    fake.fail_next(answer(row))
    async with run_plugin("telegram", config(fake.url), secrets=SECRETS) as client:
        outcome = await outcome_of(client.send("123456789", "hi"))

    assert_outcome(row, outcome)
    if isinstance(outcome, PluginError):
        assert TOKEN not in outcome.message
        if row.codes("description"):
            assert row.code("description") in outcome.message


@pytest.mark.parametrize("recipient", ["@ab", "me", "12 34", "@bad-name!"])
async def test_a_recipient_that_is_not_a_chat_id_is_invalid_input(
    fake: HttpFake, run_plugin: RunPlugin, recipient: str
) -> None:
    async with run_plugin("telegram", config(fake.url), secrets=SECRETS) as client:
        with pytest.raises(InvalidInput, match="is not a Telegram chat id"):
            await client.send(recipient, "hi")

    assert fake.requests == []


async def test_check_credentials_calls_get_me(fake: HttpFake, run_plugin: RunPlugin) -> None:
    async with run_plugin("telegram", config(fake.url), secrets=SECRETS) as client:
        accepted = await client.check_credentials()
    wrong = {"TELEGRAM_BOT_TOKEN": "987654321:wrong-token"}
    async with run_plugin("telegram", config(fake.url), secrets=wrong) as client:
        rejected = await client.check_credentials()

    assert accepted.ok
    assert accepted.message == "Telegram accepted the token of bot @sb_bot"
    assert fake.requests[0].path == f"/bot{TOKEN}/getMe"
    assert not rejected.ok
    assert "Unauthorized" in rejected.message
    assert "wrong-token" not in rejected.message


async def test_a_refused_connection_is_retryable_and_a_timeout_is_unknown(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin(
        "telegram", config(f"http://127.0.0.1:{closed_port()}"), secrets=SECRETS
    ) as client:
        with pytest.raises(RetryableError, match="Could not reach Telegram") as refused:
            await client.send("123456789", "hi")

    fake.fail_next(Reply(200, delay=2))
    async with run_plugin(
        "telegram", config(fake.url, timeout_seconds=0.2), secrets=SECRETS
    ) as client:
        with pytest.raises(OutcomeUnknown, match="Telegram did not answer in time"):
            await client.send("123456789", "hi")

    assert TOKEN not in str(refused.value)
