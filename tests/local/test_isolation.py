"""Local mode keeps its plugins on a short leash (issue 14, local mode).

No plugin outlives `switchboard up`, however it ends; a failed start leaves
nothing running; secrets exist only while their plugin runs; a plugin sees a
minimal environment; a hung start is killed, restarted and reported; a reload
under load fails no request; a one-character secret does not stop a plugin
from becoming routable; credentials a provider quotes back reach no caller in
any encoding.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from switchboard.client import Switchboard
from switchboard.local.supervisor import INHERITED
from tests.local.harness import HANG_SMS, LocalMode, deliveries, flaky, isolated_env, secret
from tests.sdk.harness import ECHO_SMS, ECHOED_REDACTED, ECHOED_TOKEN, echoed_forms
from tests.support.wait import wait_for


def _gone(pids: list[int]) -> bool:
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        if Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
            return False
    return True


def _plugin_pids(local: LocalMode) -> list[int]:
    """Processes that hold this run's secrets folder in their environment: its plugins."""
    from tests.local.harness import processes_with

    return processes_with(str(local.runtime_dir))


def test_kill_9_of_switchboard_up_leaves_no_plugin_running(workdir: Path) -> None:
    state = workdir / "state"
    state.mkdir()
    (workdir / "plugins.yaml").write_text(
        yaml.safe_dump_all([flaky("primary", 1, state), flaky("secondary", 2, state)])
    )
    local = LocalMode(workdir, "plugins.yaml")
    local.wait_ready()
    pids = [local.pid_of("primary"), local.pid_of("secondary")]
    assert not _gone(pids)
    local.process.kill()
    local.process.wait(30)
    assert wait_for(lambda: _gone(pids), 15, what="the plugins to die with switchboard up")


def test_a_port_in_use_stops_the_start_with_its_reason_and_nothing_left_running(
    workdir: Path,
) -> None:
    state = workdir / "state"
    state.mkdir()
    (workdir / "plugins.yaml").write_text(yaml.safe_dump(flaky("primary", 1, state)))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        local = LocalMode(workdir, "plugins.yaml", port=str(port))
        code = local.process.wait(120)
        local._reader.join(5)
    assert code == 2, local.output
    assert f"Port {port} on 127.0.0.1 is in use" in local.output
    assert "--port" in local.output  # the fix
    assert "Traceback" not in local.output
    assert _plugin_pids(local) == []
    assert local.records_of("Started a plugin") == []


def test_secrets_live_in_memory_only_while_their_plugin_runs_and_a_crash_leaves_none(
    workdir: Path,
) -> None:
    value = "s3cr3t-value-7f1e2d"
    state = workdir / "state"
    state.mkdir()
    plugin = flaky("primary", 1, state)
    plugin["spec"]["secretRef"] = {"name": "creds"}
    plugin["spec"]["requiredSecrets"] = ["API_TOKEN"]
    (workdir / "plugins.yaml").write_text(
        yaml.safe_dump_all([secret("creds", API_TOKEN=value), plugin])
    )

    def copies() -> list[Path]:
        places = [workdir, local.runtime_dir]
        return [
            path
            for place in places
            if place.exists()
            for path in place.rglob("*")
            if path.is_file() and path.suffix not in (".yaml",) and value.encode() in _bytes(path)
        ]

    local = LocalMode(workdir, "plugins.yaml")
    local.wait_ready()
    running = copies()
    assert running, "the plugin reads its secret from a file while it runs"
    assert all(path.is_relative_to(local.runtime_dir) for path in running)
    assert not str(local.runtime_dir).startswith(str(workdir))
    assert local.stop() == 0
    assert copies() == []

    crashed = LocalMode(workdir, "plugins.yaml")
    crashed.wait_ready()
    crashed.process.kill()  # no chance to clean up
    crashed.process.wait(30)
    recovered = LocalMode(workdir, "plugins.yaml")
    recovered.wait_ready()
    assert recovered.stop() == 0
    assert copies() == []


def _bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def test_a_plugin_gets_a_minimal_environment_never_the_callers_credentials(
    workdir: Path,
) -> None:
    state = workdir / "state"
    state.mkdir()
    plugin = flaky("primary", 1, state)
    plugin["spec"]["env"] = [{"name": "ACME_REGION", "value": "eu"}]
    (workdir / "plugins.yaml").write_text(yaml.safe_dump(plugin))
    env = isolated_env(
        workdir,
        CLOUD_ADMIN_TOKEN="do-not-pass-7a1c",
        OTEL_EXPORTER_OTLP_HEADERS="x-tenant=acme",
    )
    local = LocalMode(workdir, "plugins.yaml", env=env)
    try:
        local.wait_ready()
        raw = Path(f"/proc/{local.pid_of('primary')}/environ").read_bytes()
        seen = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
    finally:
        local.stop()
    assert "CLOUD_ADMIN_TOKEN" not in seen
    assert "do-not-pass-7a1c" not in raw.decode()
    assert seen["ACME_REGION"] == "eu"  # the resource's own env
    assert seen["OTEL_EXPORTER_OTLP_HEADERS"] == "x-tenant=acme"  # traces leave as configured
    allowed = {*INHERITED, "HOME", "TMPDIR", "ACME_REGION", "OTEL_EXPORTER_OTLP_HEADERS"}
    unexpected = {
        name for name in seen if name not in allowed and not name.startswith("SWITCHBOARD_")
    }
    assert unexpected == set()


def test_a_plugin_that_hangs_at_start_is_killed_restarted_and_reported(workdir: Path) -> None:
    hang = workdir / "hang-while-this-exists"
    hang.touch()
    state = workdir / "state"
    state.mkdir()
    stuck = {
        "apiVersion": "switchboard.dev/v1alpha1",
        "kind": "CommunicationPlugin",
        "metadata": {"name": "stuck", "annotations": {"switchboard.dev/plugin-dir": str(HANG_SMS)}},
        "spec": {
            "image": "hang-sms:1.0.0",
            "channelType": "sms",
            "priority": 1,
            "config": {"hang_while": str(hang)},
        },
    }
    (workdir / "plugins.yaml").write_text(yaml.safe_dump_all([stuck, flaky("backup", 2, state)]))
    local = LocalMode(workdir, "plugins.yaml", "--start-timeout", "20")
    try:
        info = local.wait_ready()
        # The router and the healthy plugin did not wait for the hung one.
        with Switchboard(info["url"], info["token"]) as client:
            assert client.send_message("sms", "+15551234567", "meanwhile").plugin == (
                "default/backup"
            )
        exited = local.wait_record("A plugin exited", timeout=60, plugin="default/stuck")
        assert exited["error"] == "did not become ready within 20s; killed it"
        row = wait_for(
            lambda: (r := local.row("stuck"))["restarts"] >= 1 and r, 60, what="a restart"
        )
        assert row["state"] in ("degraded", "starting")
        assert row["lastError"] == "did not become ready within 20s; killed it"
        status = local.cli("status")
        assert "did not become ready within 20s; killed it" in status.stdout
        assert "1 of 2 plugins serving" in status.stdout
        hang.unlink()  # the provider answers again: the next restart serves
        wait_for(lambda: local.row("stuck")["state"] == "serving", 90, what="the stuck plugin")
    finally:
        assert local.stop() == 0
    assert _plugin_pids(local) == []


def test_reloading_the_only_plugin_of_a_channel_under_load_fails_no_request(
    workdir: Path,
) -> None:
    state = workdir / "state"
    state.mkdir()
    (workdir / "plugins.yaml").write_text(yaml.safe_dump(flaky("only", 1, state)))
    local = LocalMode(workdir, "plugins.yaml")
    failures: list[str] = []
    sent = [0]
    stop = threading.Event()
    senders: list[threading.Thread] = []
    edits = ("only-v2", "only-v3", "only-v4")
    try:
        info = local.wait_ready()
        first_pid = local.pid_of("only")

        def steady_stream() -> None:
            with Switchboard(info["url"], info["token"]) as client:
                deadline = time.monotonic() + 240
                while not stop.is_set() and time.monotonic() < deadline and sent[0] < 20000:
                    try:
                        client.send_message("sms", "+15551234567", "m")
                        sent[0] += 1
                    except Exception as error:  # a failed send is what this test looks for
                        failures.append(repr(error))

        senders = [threading.Thread(target=steady_stream) for _ in range(8)]
        for sender in senders:
            sender.start()
        for number, provider in enumerate(edits, start=1):
            wait_for(lambda n=sent[0]: sent[0] >= n + 50, 30, what="traffic before the edit")
            edited = flaky("only", 1, state)
            edited["spec"]["config"]["provider"] = provider
            (workdir / "plugins.yaml").write_text(yaml.safe_dump(edited))
            local.wait_record("Reloaded a plugin", timeout=90, count=number, plugin="default/only")
        before = sent[0]
        wait_for(lambda: sent[0] >= before + 50, 30, what="traffic after the last edit")
    finally:
        stop.set()
        for sender in senders:
            sender.join(60)
        local.stop()
    assert failures == []
    assert {d["provider"] for d in deliveries(state)} == {"only", *edits}
    assert _gone([first_pid])


@pytest.mark.parametrize("value", ["k", "1"])
def test_a_plugin_whose_secret_is_one_character_becomes_routable(workdir: Path, value: str) -> None:
    state = workdir / "state"
    state.mkdir()
    plugin = flaky("primary", 1, state)
    plugin["spec"]["secretRef"] = {"name": "creds"}
    plugin["spec"]["requiredSecrets"] = ["API_TOKEN"]
    (workdir / "plugins.yaml").write_text(
        yaml.safe_dump_all([secret("creds", API_TOKEN=value), plugin])
    )
    local = LocalMode(workdir, "plugins.yaml")
    try:
        info = local.wait_ready()
        with Switchboard(info["url"], info["token"]) as client:
            assert client.send_message("sms", "+15551234567", "hi").plugin == "default/primary"
    finally:
        local.stop(signal.SIGTERM)


def test_credentials_a_provider_echoes_reach_no_http_caller_or_cli_user_in_any_encoding(
    workdir: Path,
) -> None:
    state = workdir / "state"
    state.mkdir()
    plugin = {
        "apiVersion": "switchboard.dev/v1alpha1",
        "kind": "CommunicationPlugin",
        "metadata": {"name": "echo", "annotations": {"switchboard.dev/plugin-dir": str(ECHO_SMS)}},
        "spec": {
            "image": "ghcr.io/switchboard-dev/plugin-echo-sms:1.2.3",
            "channelType": "sms",
            "priority": 1,
            "secretRef": {"name": "creds"},
            "requiredSecrets": ["API_TOKEN"],
            "config": {"state_dir": str(state), "sender": "Switchboard"},
        },
    }
    (workdir / "plugins.yaml").write_text(
        yaml.safe_dump_all([secret("creds", API_TOKEN=ECHOED_TOKEN), plugin])
    )
    local = LocalMode(workdir, "plugins.yaml")
    try:
        info = local.wait_ready()
        response = httpx.post(
            f"{info['url']}/v1/messages",
            headers={"Authorization": f"Bearer {info['token']}"},
            json={"channel": "sms", "recipient": "fail:echoed-credentials", "content": "x"},
            timeout=30,
        )
        cli = local.cli("send", "sms", "fail:echoed-credentials", "x")
    finally:
        local.stop()

    # The provider's words reach both, with the token hidden ...
    assert response.status_code == 503, response.text
    [attempt] = response.json()["error"]["attempts"]
    assert attempt["message"] == ECHOED_REDACTED
    assert cli.returncode != 0
    assert ECHOED_REDACTED in cli.stderr
    # ... in none of the spellings the provider used.
    for where, text in {
        "HTTP response": response.text,
        "CLI output": cli.stdout + cli.stderr,
        "switchboard up's output": local.output,
    }.items():
        leaked = [name for name, form in echoed_forms(ECHOED_TOKEN).items() if form in text]
        assert leaked == [], where
