"""apprise delivering to local JSON endpoints through Apprise's own json:// service."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from switchboard.sdk import ConfigError, InvalidInput, RetryableError
from tests.plugins.conftest import RunPlugin
from tests.plugins.errortable import Row, assert_outcome, outcome_of, rows_as_params
from tests.plugins.fakes import HttpFake, Recorded, Reply

# Apprise 2.2 loads its email service, which imports the standard library's
# deprecated imghdr module on Python < 3.13; the warning is Apprise's to fix.
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

CONFIG = {"urls": "${APPRISE_URLS}", "timeout_seconds": 10}


def endpoint(request: Recorded) -> Reply:
    assert request.method == "POST"
    assert request.content_type == "application/json"
    if request.path == "/broken":
        return Reply(500, "boom")
    if request.path == "/slow":
        # Longer than the plugin's timeout_seconds, shorter than json://'s own read timeout.
        return Reply(200, {"ok": True}, delay=3)
    return Reply(200, {"ok": True})


@pytest.fixture
async def fake() -> AsyncIterator[HttpFake]:
    async with HttpFake(endpoint) as server:
        yield server


def urls(fake: HttpFake, *paths: str) -> dict[str, str]:
    return {"APPRISE_URLS": ", ".join(f"json://127.0.0.1:{fake.port}{path}" for path in paths)}


async def test_notifies_every_url_with_title_body_and_type(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin("apprise", CONFIG, secrets=urls(fake, "/ops", "/audit")) as client:
        result = await client.send(
            "ops-room",
            "Disk on db-1 is 90% full",
            subject="Alert",
            metadata={"notify_type": "warning"},
        )

    assert sorted(request.path for request in fake.requests) == ["/audit", "/ops"]
    for request in fake.requests:
        assert request.json() == {
            "version": "1.0",
            "title": "Alert",
            "message": "Disk on db-1 is 90% full",
            "attachments": [],
            "type": "warning",
        }
    assert result.provider_message_id.startswith("apprise-")
    assert result.details["delivered"] == "2/2"
    assert result.details["recipient"] == "ops-room"


async def test_when_every_service_fails_it_is_retryable_and_names_the_service(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    secret = {"APPRISE_URLS": f"json://user:url-password-77@127.0.0.1:{fake.port}/broken"}
    async with run_plugin("apprise", CONFIG, secrets=secret) as client:
        with pytest.raises(RetryableError, match=r"Apprise could not notify JSON") as raised:
            await client.send("ops", "x")

    assert "error=500" in str(raised.value)
    assert "url-password-77" not in str(raised.value)
    assert fake.last.basic_auth() == ("user", "url-password-77")


async def test_a_partial_delivery_succeeds_and_reports_the_failure(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin("apprise", CONFIG, secrets=urls(fake, "/ops", "/broken")) as client:
        result = await client.send("ops", "x")

    assert result.details["delivered"] == "1/2"
    assert "error=500" in result.details["failed"]


async def test_an_unknown_notify_type_is_invalid_input(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    async with run_plugin("apprise", CONFIG, secrets=urls(fake, "/ops")) as client:
        with pytest.raises(InvalidInput, match=r"metadata\.notify_type: 'loud' is not one of"):
            await client.send("ops", "x", metadata={"notify_type": "loud"})

    assert fake.requests == []


async def test_an_unsupported_url_is_rejected_at_start_without_revealing_it(
    fake: HttpFake, run_plugin: RunPlugin
) -> None:
    secret = {"APPRISE_URLS": f"json://127.0.0.1:{fake.port}/ops, nosuchservice://token-4411"}
    with pytest.raises(
        ConfigError, match=r"config\.urls: URL 2 of 2 is not a URL Apprise supports"
    ) as raised:
        async with run_plugin("apprise", CONFIG, secrets=secret):
            pass

    assert "token-4411" not in str(raised.value)


def endpoint_paths(row: Row) -> list[str]:
    """The json:// endpoints of one row of the table in docs/plugins/apprise.md."""
    return [
        {"ok": "/ops", "500": "/broken", "slow": "/slow"}[name] for name in row.codes("services")
    ]


@pytest.mark.parametrize("row", rows_as_params("apprise"))
async def test_every_row_of_the_error_table(
    fake: HttpFake, run_plugin: RunPlugin, row: Row
) -> None:
    config = {**CONFIG, "timeout_seconds": 1} if "slow" in row.codes("services") else CONFIG
    async with run_plugin("apprise", config, secrets=urls(fake, *endpoint_paths(row))) as client:
        outcome = await outcome_of(client.send("ops", "x"))

    assert_outcome(row, outcome)
