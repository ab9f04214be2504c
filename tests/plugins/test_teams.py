"""teams against a local stand-in for a Teams Workflows (Power Automate) webhook."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from switchboard.sdk import (
    ConfigError,
    InvalidInput,
    OutcomeUnknown,
    PluginError,
    RetryableError,
    Unauthenticated,
)
from tests.plugins.conftest import HTTP_FAILURES, Failure, RunPlugin, assert_classified
from tests.plugins.errortable import (
    RETRY_AFTER_SECONDS,
    Row,
    assert_outcome,
    outcome_of,
    rows_as_params,
)
from tests.plugins.fakes import HttpFake, Recorded, Reply, closed_port

WORKFLOW_PATH = "/workflows/5f1c0e/triggers/manual/paths/invoke"
SIGNATURE = "sig-0b7d4e2a"
RUN_ID = "08584687512345678901234567890CU00"


def workflows(request: Recorded) -> Reply:
    """The HTTP trigger: signed URL, an Adaptive Card message, 202 with the run id."""
    if request.query.get("sig") != SIGNATURE:
        return Reply(
            401,
            {
                "error": {
                    "code": "DirectApiAuthorizationRequired",
                    "message": "The request must be authenticated only by Shared Access scheme.",
                }
            },
        )
    assert (request.method, request.path) == ("POST", WORKFLOW_PATH)
    assert request.content_type == "application/json"
    attachment = request.json()["attachments"][0]
    if attachment["contentType"] != "application/vnd.microsoft.card.adaptive":
        return Reply(400, {"error": {"code": "InvalidTemplate", "message": "Not a card."}})
    return Reply(202, b"", {"x-ms-workflow-run-id": RUN_ID})


@pytest.fixture
async def fake() -> AsyncIterator[HttpFake]:
    async with HttpFake(workflows) as server:
        yield server


CONFIG = {"webhook_url": "${TEAMS_WEBHOOK_URL}"}


def secrets(fake: HttpFake, sig: str = SIGNATURE) -> dict[str, str]:
    return {
        "TEAMS_WEBHOOK_URL": f"{fake.url}{WORKFLOW_PATH}?api-version=2016-06-01&sp=%2Ftriggers"
        f"%2Fmanual%2Frun&sv=1.0&sig={sig}"
    }


async def test_posts_an_adaptive_card_built_from_subject_and_content(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin("teams", CONFIG, secrets=secrets(fake)) as client:
        result = await client.send("ops-channel", "Disk on db-1 is **90%** full", subject="Alert")

    assert fake.last.json() == {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {
                            "type": "TextBlock",
                            "text": "Alert",
                            "weight": "Bolder",
                            "size": "Medium",
                            "wrap": True,
                        },
                        {"type": "TextBlock", "text": "Disk on db-1 is **90%** full", "wrap": True},
                    ],
                },
            }
        ],
    }
    assert result.provider_message_id == RUN_ID
    assert result.details == {"status": "202", "recipient": "ops-channel"}


async def test_a_card_in_metadata_passes_through_unchanged(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    card = {
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [{"type": "FactSet", "facts": [{"title": "Host", "value": "db-1"}]}],
        "actions": [{"type": "Action.OpenUrl", "title": "Open", "url": "https://example.com"}],
    }
    fake.fail_next(Reply(200, b""))
    async with run_plugin("teams", CONFIG, secrets=secrets(fake)) as client:
        result = await client.send("ops", "fallback", metadata={"card": json.dumps(card)})

    assert fake.last.json()["attachments"][0]["content"] == card
    assert result.provider_message_id.startswith("teams-")


@pytest.mark.parametrize(
    "card", ['{"type": "MessageCard"}', "[]", "{not json"], ids=["wrong-type", "array", "garbage"]
)
async def test_a_card_that_is_not_an_adaptive_card_is_invalid_input(
    fake: HttpFake, run_plugin: RunPlugin, card: str
) -> None:
    async with run_plugin("teams", CONFIG, secrets=secrets(fake)) as client:
        with pytest.raises(InvalidInput, match=r"^metadata\.card: "):
            await client.send("ops", "x", metadata={"card": card})

    assert fake.requests == []


async def test_a_bad_signature_is_unauthenticated_and_a_deleted_workflow_fails_over(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin("teams", CONFIG, secrets=secrets(fake, sig="expired")) as client:
        with pytest.raises(Unauthenticated, match="Shared Access scheme") as rejected:
            await client.send("ops", "x")

    fake.fail_next(Reply(404, {"error": {"code": "WorkflowNotFound", "message": "Gone."}}))
    async with run_plugin("teams", CONFIG, secrets=secrets(fake)) as client:
        with pytest.raises(ConfigError, match="check the plugin's URL settings"):
            await client.send("ops", "x")

    assert SIGNATURE not in str(rejected.value)


@pytest.mark.parametrize("failure", HTTP_FAILURES)
async def test_http_failures_are_classified(
    fake: HttpFake, run_plugin: RunPlugin, failure: Failure
) -> None:
    fake.fail_next(failure.reply({"error": {"code": "Failure", "message": "failure"}}))
    async with run_plugin("teams", CONFIG, secrets=secrets(fake)) as client:
        with pytest.raises(failure.error) as raised:
            await client.send("ops", "x")

    assert_classified(raised, failure)


async def test_a_refused_connection_is_retryable_and_a_timeout_is_unknown(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    refused = {"TEAMS_WEBHOOK_URL": f"http://127.0.0.1:{closed_port()}{WORKFLOW_PATH}"}
    async with run_plugin("teams", CONFIG, secrets=refused) as client:
        with pytest.raises(RetryableError, match="Could not reach Teams"):
            await client.send("ops", "x")

    fake.fail_next(Reply(202, delay=2))
    async with run_plugin(
        "teams", {**CONFIG, "timeout_seconds": 0.2}, secrets=secrets(fake)
    ) as client:
        with pytest.raises(OutcomeUnknown, match="Teams did not answer in time"):
            await client.send("ops", "x")


def answer(row: Row) -> Reply:
    """What the webhook answers for one row of the error table in docs/plugins/teams.md."""
    status = int(row.code("http"))
    headers = {"x-ms-workflow-run-id": RUN_ID} if status == 202 else {}
    if row.wants_retry_after_header:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    body = row.code("body") if row.codes("body") else ""
    if body.startswith("{"):
        return Reply(status, json.loads(body), headers)
    return Reply(status, body, headers)


@pytest.mark.parametrize("row", rows_as_params("teams"))
async def test_every_row_of_the_error_table(
    fake: HttpFake, run_plugin: RunPlugin, row: Row
) -> None:
    fake.fail_next(answer(row))
    async with run_plugin("teams", CONFIG, secrets=secrets(fake)) as client:
        outcome = await outcome_of(client.send("ops", "x"))

    assert_outcome(row, outcome)
    if isinstance(outcome, PluginError) and row.code("http") == "200":
        assert row.code("body")[:40] in outcome.message
        assert SIGNATURE not in outcome.message


async def test_a_throttled_connector_answering_200_is_not_a_success(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    fake.fail_next(
        Reply(
            200,
            "Microsoft Teams endpoint returned HTTP error 429 with ContextId "
            "tcid=0,server=msgapi-production-eus-azsc2-4-170,cv=deLVK4chAUg8eyqmatUjyw.0",
        )
    )
    async with run_plugin("teams", CONFIG, secrets=secrets(fake)) as client:
        with pytest.raises(RetryableError, match="Teams answered HTTP 429: the connector"):
            await client.send("ops", "x")
