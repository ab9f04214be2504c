"""Plugins as the container runs them: ``switchboard plugin serve DIR`` in a child process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from switchboard.sdk import ExitCode, PluginClient, RetryableError
from tests.plugins.conftest import PLUGIN_IMAGES
from tests.plugins.fakes import HttpFake, Recorded, Reply
from tests.plugins.test_generic_webhook import verify
from tests.sdk.harness import MountedSecret, PluginProcess, write_config

SIGNING_SECRET = "whsec-5b0c7a1e9f2d4c3b"
TOKEN = "receiver-token-81ac"
BODY = "The launch code is 7-ALPHA-SIERRA"


def receiver(request: Recorded) -> Reply:
    return Reply(200, {"id": "rcv-1"})


async def test_generic_webhook_served_by_the_cli_delivers_and_keeps_secrets_and_bodies_out_of_logs(
    tmp_path: Path,
) -> None:
    secret = MountedSecret(
        tmp_path / "secrets", {"WEBHOOK_SIGNING_SECRET": SIGNING_SECRET, "WEBHOOK_TOKEN": TOKEN}
    )
    async with HttpFake(receiver) as fake:
        config = write_config(
            tmp_path / "config.json",
            {
                "url": f"{fake.url}/hooks",
                "headers": {"Authorization": "Bearer ${WEBHOOK_TOKEN}"},
                "signing_secret": "${WEBHOOK_SIGNING_SECRET}",
                "message_id_field": "id",
            },
        )
        child = PluginProcess(
            PLUGIN_IMAGES / "generic-webhook",
            {
                "SWITCHBOARD_PLUGIN_CONFIG": str(config),
                "SWITCHBOARD_PLUGIN_SECRETS_DIR": str(secret.directory),
                "SWITCHBOARD_SHUTDOWN_GRACE_SECONDS": "5",
            },
        )
        try:
            address = await child.async_wait_serving()
            async with PluginClient(address, timeout=10) as client:
                described = await client.describe()
                result = await client.send("ops", BODY, subject="Launch")
                fake.fail_next(Reply(503, {"error": "maintenance"}, {"Retry-After": "45"}))
                with pytest.raises(RetryableError) as unavailable:
                    await client.send("ops", BODY)
        finally:
            child.terminate()
            exit_code = await child.async_wait_exit()
            child.kill()

    assert exit_code == ExitCode.STOPPED
    assert described.channel_type == "webhook"
    assert result.provider_message_id == "rcv-1"
    assert unavailable.value.retry_after == 45
    assert str(unavailable.value) == "127.0.0.1 answered HTTP 503: maintenance"
    delivered = fake.requests[0]
    assert verify(delivered, SIGNING_SECRET)
    assert delivered.headers["Authorization"] == f"Bearer {TOKEN}"
    logs = child.stderr
    assert json.loads(child.lines[0])["plugin"] == "generic-webhook"
    for leaked in (SIGNING_SECRET, TOKEN, BODY):
        assert leaked not in logs


async def test_a_rejected_config_exits_2_with_the_reason_in_the_termination_log(
    tmp_path: Path,
) -> None:
    secret = MountedSecret(tmp_path / "secrets", {"SLACK_BOT_TOKEN": "xoxb-1"})
    config = {"bot_token": "${SLACK_BOT_TOKEN}", "webhook_url": "https://hooks.slack.com/x"}
    child = PluginProcess(
        PLUGIN_IMAGES / "slack",
        {
            "SWITCHBOARD_PLUGIN_CONFIG": str(write_config(tmp_path / "config.json", config)),
            "SWITCHBOARD_PLUGIN_SECRETS_DIR": str(secret.directory),
            "SWITCHBOARD_TERMINATION_LOG": str(tmp_path / "termination-log"),
        },
    )
    try:
        exit_code = await child.async_wait_exit()
    finally:
        child.kill()

    assert exit_code == ExitCode.CONFIG_REJECTED
    assert (tmp_path / "termination-log").read_text() == (
        "Configuration rejected: config: set exactly one of webhook_url and bot_token\n"
    )
