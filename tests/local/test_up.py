"""`switchboard up` as a user runs it: a child process, YAML files, the CLI and the client."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from switchboard.client import Switchboard
from tests.local.harness import LocalMode, deliveries, flaky
from tests.sdk.harness import SWITCHBOARD
from tests.support.wait import wait_for


def test_cli_and_client_reach_the_plugins_and_ctrl_c_stops_everything(workdir: Path) -> None:
    state = workdir / "state"
    state.mkdir()
    (workdir / "plugins.yaml").write_text(yaml.safe_dump(flaky("primary", 1, state)))
    local = LocalMode(workdir, "plugins.yaml")
    try:
        info = local.wait_ready()
        cli = local.cli("send", "sms", "+15551234567", "from the CLI")
        assert cli.returncode == 0, cli.stderr
        assert "Sent by default/primary" in cli.stdout
        with Switchboard(info["url"], info["token"]) as client:
            result = client.send_message("sms", "+15551234567", "from Python")
        assert result.plugin == "default/primary"
        assert [d["content"] for d in deliveries(state)] == ["from the CLI", "from Python"]
        status = local.cli("status")
        assert status.returncode == 0, status.stderr
        assert "1 of 1 plugins serving" in status.stdout
        pid = local.pid_of("primary")
    finally:
        assert local.stop() == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the plugin process went with it
    assert not (local.state_dir / "local.json").exists()


def test_editing_one_plugin_under_load_fails_no_send_and_leaves_the_others_alone(
    workdir: Path,
) -> None:
    state = workdir / "state"
    state.mkdir()
    config = workdir / "config"
    config.mkdir()
    (config / "a.yaml").write_text(yaml.safe_dump(flaky("alpha", 1, state)))
    (config / "b.yaml").write_text(yaml.safe_dump(flaky("beta", 2, state)))
    local = LocalMode(workdir, "config")
    failures: list[str] = []
    sent = 0
    try:
        info = local.wait_ready()
        alpha_pid, beta_pid = local.pid_of("alpha"), local.pid_of("beta")
        stop = threading.Event()

        def steady_stream() -> None:
            nonlocal sent
            with Switchboard(info["url"], info["token"]) as client:
                deadline = time.monotonic() + 30
                while not stop.is_set() and time.monotonic() < deadline:
                    try:
                        client.send_message("sms", "+15551234567", f"m{sent}")
                        sent += 1
                    except Exception as error:  # a failed send is what this test looks for
                        failures.append(repr(error))
                    time.sleep(0.01)

        sender = threading.Thread(target=steady_stream)
        sender.start()
        time.sleep(1)
        edited = flaky("alpha", 1, state)
        edited["spec"]["config"]["provider"] = "alpha-v2"
        (config / "a.yaml").write_text(yaml.safe_dump(edited))
        local.wait_record("Reloaded a plugin", timeout=30, plugin="default/alpha")
        time.sleep(1)
        stop.set()
        sender.join(30)
        assert failures == []
        assert sent > 50
        providers = {d["provider"] for d in deliveries(state)}
        assert {"alpha", "alpha-v2"} <= providers  # before and after the edit
        assert local.pid_of("alpha") != alpha_pid
        assert local.pid_of("beta") == beta_pid  # untouched
        os.kill(beta_pid, 0)
    finally:
        local.stop()


def test_a_killed_plugin_is_restarted_and_the_next_priority_serves_meanwhile(
    workdir: Path,
) -> None:
    state = workdir / "state"
    state.mkdir()
    (workdir / "plugins.yaml").write_text(
        yaml.safe_dump_all([flaky("primary", 1, state), flaky("secondary", 2, state)])
    )
    local = LocalMode(workdir, "plugins.yaml")
    try:
        info = local.wait_ready()
        pid = local.pid_of("primary")
        os.kill(pid, signal.SIGKILL)
        with Switchboard(info["url"], info["token"]) as client:
            meanwhile = client.send_message("sms", "+15551234567", "during the restart")
            assert meanwhile.plugin == "default/secondary"
            wait_for(
                lambda: len(local.records_of("Started a plugin", plugin="default/primary")) == 2,
                30,
                what="the primary to be restarted",
            )
            assert local.pid_of("primary") != pid
            assert local.records_of("A plugin exited", plugin="default/primary", exit_code=-9)
            after = wait_for(
                lambda: (
                    (r := client.send_message("sms", "+1555", "after")).plugin == "default/primary"
                    and r
                ),
                15,
            )
            assert after
            status = client.system_status()
            assert all(p["healthy"] for p in status["channels"]["sms"])
    finally:
        local.stop()


def test_invalid_yaml_names_the_file_and_field_and_starts_nothing(workdir: Path) -> None:
    state = workdir / "state"
    state.mkdir()
    broken = flaky("primary", 0, state)  # priority must be >= 1
    (workdir / "good.yaml").write_text(yaml.safe_dump(flaky("fine", 1, state)))
    (workdir / "bad.yaml").write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [SWITCHBOARD, "up", "good.yaml", "bad.yaml", "--port", "0", "--no-live"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Nothing was started" in result.stderr
    assert "bad.yaml: CommunicationPlugin 'primary': spec.priority" in result.stderr
    assert "Started a plugin" not in result.stderr
    assert deliveries(state) == []
