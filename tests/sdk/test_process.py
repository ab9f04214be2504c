"""``switchboard plugin serve`` as a container runs it: health, signals, rotation, exits, logs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard.sdk import ExitCode, PluginClient, RetryableError
from tests.sdk.conftest import TOKEN, echo_config, token_id
from tests.sdk.harness import (
    ECHO_SMS,
    MountedSecret,
    PluginProcess,
    eventually,
    file_contains,
    write_config,
)

SERVICE = "switchboard.plugin.v1.PluginService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def start_echo(
    tmp_path: Path, secret: MountedSecret, config: dict[str, object], **env: str
) -> PluginProcess:
    return PluginProcess(
        ECHO_SMS,
        {
            "SWITCHBOARD_PLUGIN_CONFIG": str(write_config(tmp_path / "config.json", config)),
            "SWITCHBOARD_PLUGIN_SECRETS_DIR": str(secret.directory),
            "SWITCHBOARD_TERMINATION_LOG": str(tmp_path / "termination-log"),
            "SWITCHBOARD_PLUGIN_SECRETS_POLL_SECONDS": "0.1",
            "SWITCHBOARD_SHUTDOWN_GRACE_SECONDS": "10",
            **env,
        },
    )


@pytest.fixture
def processes() -> Iterator[list[PluginProcess]]:
    """Child processes a test started; killed afterwards whatever happened."""
    started: list[PluginProcess] = []
    yield started
    for process in started:
        process.kill()


async def health_of(channel: grpc.aio.Channel, service: str) -> int:
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5
    )
    return int(response.status)


async def is_serving(channel: grpc.aio.Channel) -> bool:
    return await health_of(channel, "") == SERVING


def lifecycle(state_dir: Path) -> list[str]:
    return (state_dir / "lifecycle.log").read_text().splitlines()


async def test_health_is_not_serving_until_activated_then_serving_then_not_serving_on_sigterm(
    tmp_path: Path, state_dir: Path, secret: MountedSecret, processes: list[PluginProcess]
) -> None:
    child = start_echo(tmp_path, secret, echo_config(state_dir, activate_delay=1.5))
    processes.append(child)
    address = await asyncio.to_thread(child.wait_listening)

    async with grpc.aio.insecure_channel(address) as channel:
        assert await health_of(channel, "") == NOT_SERVING
        assert await health_of(channel, SERVICE) == NOT_SERVING
        await eventually(lambda: is_serving(channel), what="health SERVING")
        assert await health_of(channel, SERVICE) == SERVING
        assert any(line.startswith("activate ") for line in lifecycle(state_dir))

        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
        assert (await watch.read()).status == SERVING
        child.terminate()
        assert (await watch.read()).status == NOT_SERVING

    assert await child.async_wait_exit() == ExitCode.STOPPED


async def test_sigterm_lets_the_running_call_finish_refuses_new_ones_and_exits_0(
    tmp_path: Path, state_dir: Path, secret: MountedSecret, processes: list[PluginProcess]
) -> None:
    child = start_echo(tmp_path, secret, echo_config(state_dir))
    processes.append(child)
    address = await child.async_wait_serving()

    async with PluginClient(address) as client:
        slow_call = asyncio.create_task(client.send("slow:2", "still delivered"))
        await eventually(file_contains(state_dir / "lifecycle.log", "slow-call-started"))
        child.terminate()
        await child.async_wait_for_record("Stopped accepting new calls")

        async with PluginClient(address, timeout=5) as late_client:
            with pytest.raises(RetryableError, match="UNAVAILABLE"):
                await late_client.send("+15551234567", "too late")
        assert not slow_call.done(), "the new call should be refused while the slow one runs"

        result = await slow_call

    assert result.details["echo"] == "still delivered"
    assert await child.async_wait_exit() == ExitCode.STOPPED
    events = [line.split()[0] for line in lifecycle(state_dir)]
    assert events == ["initialize", "activate", "slow-call-started", "deactivate", "cleanup"]


async def test_rotated_secret_is_used_by_the_next_call_without_restart_or_failed_call(
    tmp_path: Path, state_dir: Path, secret: MountedSecret, processes: list[PluginProcess]
) -> None:
    child = start_echo(tmp_path, secret, echo_config(state_dir))
    processes.append(child)
    address = await child.async_wait_serving()
    new_token = "tok-rotated-51d2"
    results = []

    async with PluginClient(address) as client:
        in_flight_on_old = asyncio.create_task(client.send("slow:1", "old instance"))
        await eventually(file_contains(state_dir / "lifecycle.log", "slow-call-started"))
        secret.update({"API_TOKEN": new_token})
        async with asyncio.timeout(10):
            while not results or results[-1].details["token_id"] != token_id(new_token):
                results.append(await client.send("+15551234567", "during rotation"))
                await asyncio.sleep(0.01)
        old_result = await in_flight_on_old
        results.append(await client.send("+15551234567", "after rotation"))

    assert old_result.details["token_id"] == token_id(TOKEN)
    assert results[-1].details["token_id"] == token_id(new_token)
    assert {result.details["pid"] for result in [*results, old_result]} == {str(child.pid)}
    assert child.process.poll() is None, "rotation must not restart the plugin"
    await child.async_wait_for_record("Rotated secrets without a restart")
    await eventually(file_contains(state_dir / "lifecycle.log", f"cleanup token={token_id(TOKEN)}"))
    events = lifecycle(state_dir)
    assert events.index(f"initialize token={token_id(new_token)} pid={child.pid}") < events.index(
        f"deactivate token={token_id(TOKEN)} pid={child.pid}"
    )
    listening = [record for record in child.records if record["msg"] == "Listening for calls"]
    assert len(listening) == 1


@pytest.mark.parametrize(
    ("config_change", "secrets", "reason"),
    [
        (
            {"sender": None},
            {"API_TOKEN": TOKEN},
            "Configuration rejected: config: 'sender' is a required property",
        ),
        (
            {"sender": 42},
            {"API_TOKEN": TOKEN},
            "Configuration rejected: config.sender: 42 is not of type 'string'",
        ),
        (
            {"auth_header": "Bearer ${PARTNER_TOKEN}"},
            {"API_TOKEN": TOKEN},
            "Configuration rejected: config.auth_header references ${PARTNER_TOKEN}, "
            "but the Secret has no key 'PARTNER_TOKEN' and no environment variable "
            "PARTNER_TOKEN is set",
        ),
        (
            {"reject": True},
            {"API_TOKEN": TOKEN},
            "Configuration rejected: config.reject is true, so this plugin refuses to start",
        ),
        (
            {},
            {"WEBHOOK_SECRET": "x"},
            "Configuration rejected: Required secret key(s) API_TOKEN not found in",
        ),
    ],
    ids=["missing-field", "wrong-type", "unresolved-reference", "validate_config", "no-secret"],
)
async def test_rejected_config_exits_2_with_the_reason_in_the_termination_log(
    tmp_path: Path,
    state_dir: Path,
    processes: list[PluginProcess],
    config_change: dict[str, object],
    secrets: dict[str, str],
    reason: str,
) -> None:
    config = {
        key: value
        for key, value in {**echo_config(state_dir), **config_change}.items()
        if value is not None
    }
    secret = MountedSecret(tmp_path / "secrets", secrets)
    child = start_echo(tmp_path, secret, config)
    processes.append(child)

    assert await child.async_wait_exit() == ExitCode.CONFIG_REJECTED
    termination_message = (tmp_path / "termination-log").read_text()
    assert termination_message.startswith(reason)
    assert termination_message.count("\n") == 1
    assert termination_message.strip() in child.stderr
    assert not (state_dir / "lifecycle.log").exists(), "no plugin code may run on a bad config"


async def test_broken_plugin_folder_exits_3_saying_what_to_fix(
    tmp_path: Path, processes: list[PluginProcess]
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.yml").write_text(
        (ECHO_SMS / "manifest.yml").read_text().replace("echo_sms:EchoSms", "echo_sms:Missing")
    )
    (broken / "echo_sms.py").write_text((ECHO_SMS / "echo_sms.py").read_text())
    child = PluginProcess(
        broken, {"SWITCHBOARD_TERMINATION_LOG": str(tmp_path / "termination-log")}
    )
    processes.append(child)

    assert await child.async_wait_exit() == ExitCode.PACKAGE_INVALID
    assert "module 'echo_sms' has no 'Missing'" in (tmp_path / "termination-log").read_text()


async def test_logs_are_json_lines_and_never_contain_a_secret_value(
    tmp_path: Path, state_dir: Path, secret: MountedSecret, processes: list[PluginProcess]
) -> None:
    child = start_echo(
        tmp_path,
        secret,
        echo_config(state_dir, auth_header="Bearer ${API_TOKEN}"),
    )
    processes.append(child)
    address = await child.async_wait_serving()
    async with PluginClient(address) as client:
        await client.send("+15551234567", "hello")  # the plugin logs its token
        with pytest.raises(RetryableError):
            await client.send("fail:crash", "x")  # the traceback carries the token
    child.terminate()
    assert await child.async_wait_exit() == ExitCode.STOPPED

    records = [json.loads(line) for line in child.lines]
    assert all({"ts", "level", "msg", "plugin"} <= record.keys() for record in records)
    assert {record["plugin"] for record in records} == {"echo-sms"}
    # Switchboard's own events are capitalised; the libraries' DEBUG lines
    # (grpc's "[_cygrpc] ...") are theirs to word.
    own = [record for record in records if record["logger"].startswith("switchboard.")]
    assert own and all(record["msg"][0].isupper() for record in own)
    assert TOKEN not in child.stderr
    assert any(record["msg"] == "Sending with token ***" for record in records)
    crash = next(record for record in records if record.get("rpc") == "Send" and "error" in record)
    assert "***" in crash["error"]
