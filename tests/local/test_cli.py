"""The CLI as a new user meets it (issue 19 items 7, 9, 10; deliverables 2-4; issue 15 item 7).

One local mode serves every test of this module (starting one costs seconds);
each test looks at what a person or a script reads: output, exit code, files.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.local.harness import LocalMode, deliveries, flaky, isolated_env
from tests.sdk.harness import SWITCHBOARD
from tests.support.controlplane import free_port


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMode]:
    workdir = tmp_path_factory.mktemp("cli")
    state = workdir / "state"
    state.mkdir()
    (workdir / "plugins.yaml").write_text(yaml.safe_dump(flaky("primary", 1, state)))
    running = LocalMode(workdir, "plugins.yaml")
    running.wait_ready()
    yield running
    running.stop()


def _state(local: LocalMode) -> Path:
    return local.workdir / "state"


def test_a_message_body_can_come_from_stdin(local: LocalMode) -> None:
    result = local.cli("send", "sms", "+15551234567", "-", input="line one\nline two\n")
    assert result.returncode == 0, result.stderr
    assert deliveries(_state(local))[-1]["content"] == "line one\nline two"


def test_every_data_command_prints_json_yaml_or_a_table(local: LocalMode) -> None:
    sent = local.cli("send", "sms", "+15551234567", "formats", "-o", "json")
    assert sent.returncode == 0, sent.stderr
    message = json.loads(sent.stdout)
    assert (message["plugin"], message["state"]) == ("default/primary", "sent")
    table = local.cli("messages", "list")
    assert table.stdout.splitlines()[0].split() == [
        "ID",
        "STATE",
        "CHANNEL",
        "RECIPIENT",
        "PLUGIN",
        "UPDATED",
    ]
    assert message["id"] in table.stdout
    listed = yaml.safe_load(local.cli("messages", "list", "-o", "yaml").stdout)
    assert message["id"] in [m["id"] for m in listed]
    shown = json.loads(local.cli("messages", "show", message["id"], "-o", "json").stdout)
    assert [e["state"] for e in shown["history"]] == ["accepted", "sending", "sent"]
    status = yaml.safe_load(local.cli("status", "-o", "yaml").stdout)
    assert status["totalPlugins"] == 1 and status["plugins"][0]["state"] == "serving"


def test_send_no_wait_returns_at_once_and_watch_follows_the_message(local: LocalMode) -> None:
    watch = subprocess.Popen(
        [SWITCHBOARD, "messages", "watch", "--count", "3", "-o", "json"],
        cwd=local.workdir,
        env=local.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)  # the stream starts now: let it connect first
        accepted = local.cli("send", "sms", "+15551234567", "later", "--no-wait")
        assert accepted.returncode == 0, accepted.stderr
        assert accepted.stdout.startswith("Accepted as message ")
        message_id = accepted.stdout.split()[3].rstrip(";")
        out, _ = watch.communicate(timeout=60)
    finally:
        watch.kill()
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["id"], e["state"]) for e in events] == [
        (message_id, "accepted"),
        (message_id, "sending"),
        (message_id, "sent"),
    ]
    # Resuming after the first event gives the rest again, as Last-Event-ID does.
    resumed = local.cli(
        "messages", "watch", "--after", str(events[0]["seq"]), "--count", "2", "-o", "json"
    )
    assert [json.loads(x)["state"] for x in resumed.stdout.splitlines()] == ["sending", "sent"]


def test_replay_sends_a_failed_message_again_as_the_same_message(local: LocalMode) -> None:
    control = _state(local) / "control.json"
    control.write_text('{"mode": "retryable"}')  # every plugin failed: replayable
    try:
        failed = local.cli("send", "sms", "+15551234567", "replay me")
    finally:
        control.unlink()
    assert failed.returncode == 1
    message_id = failed.stderr.split("messages show ")[1].split()[0]
    replayed = local.cli("messages", "replay", message_id)
    assert replayed.returncode == 0, replayed.stderr
    assert f"as message {message_id}" in replayed.stdout
    shown = json.loads(local.cli("messages", "show", message_id, "-o", "json").stdout)
    assert shown["state"] == "sent"


def test_errors_name_the_cause_and_the_fix_with_documented_exit_codes(
    local: LocalMode,
) -> None:
    refused = local.cli("send", "fax", "+15551234567", "x")
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: No CommunicationPlugin serves channel 'fax'")
    assert "(HTTP 404 NO_PLUGIN)" in refused.stderr
    assert "\nFix: apply a plugin resource for it" in refused.stderr
    usage = local.cli("send", "sms")
    assert usage.returncode == 2
    port = free_port()
    down = local.cli("status", "--url", f"http://127.0.0.1:{port}")
    assert down.returncode == 3
    assert f"Error: Could not reach the router at http://127.0.0.1:{port}" in down.stderr
    assert "Fix: start a router (`make demo`, or `switchboard up DIR`)" in down.stderr
    assert "ROUTER_UNREACHABLE" not in down.stderr


def test_without_a_router_the_cli_says_so_instead_of_calling_a_default_address(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [SWITCHBOARD, "send", "sms", "+15551234567", "x"],
        cwd=tmp_path,
        env={
            k: v
            for k, v in isolated_env(tmp_path).items()
            if k not in ("SWITCHBOARD_URL", "SWITCHBOARD_TOKEN")
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3
    assert result.stderr.startswith("Error: No router to talk to: no switchboard up runs")
    assert "127.0.0.1:8080" not in result.stderr


def test_env_works_from_any_folder_and_in_three_forms(local: LocalMode, tmp_path: Path) -> None:
    elsewhere = tmp_path / "my-app"
    (elsewhere / "src").mkdir(parents=True)
    info = json.loads((local.state_dir / "local.json").read_text())
    for folder in (local.workdir / "state", elsewhere / "src"):
        shell = local.cli("env", cwd=folder)
        assert shell.returncode == 0, shell.stderr
        assert shell.stdout == (
            f"export SWITCHBOARD_URL={info['url']}\nexport SWITCHBOARD_TOKEN={info['token']}\n"
        )
    dotenv = local.cli("env", "-o", "dotenv", cwd=elsewhere)
    assert dotenv.stdout.splitlines()[0] == f"SWITCHBOARD_URL={info['url']}"
    assert json.loads(local.cli("env", "-o", "json", cwd=elsewhere).stdout) == {
        "SWITCHBOARD_URL": info["url"],
        "SWITCHBOARD_TOKEN": info["token"],
    }
    sent = local.cli("send", "sms", "+15551234567", "from elsewhere", cwd=elsewhere)
    assert sent.returncode == 0, sent.stderr


def test_plugin_call_talks_to_one_plugin_without_grpcurl(local: LocalMode) -> None:
    described = json.loads(local.cli("plugin", "call", "primary", "describe", "-o", "json").stdout)
    assert described["plugin_id"] == "flaky-sms"
    address = local.row("primary")["endpoint"]
    sent = local.cli("plugin", "call", address, "send", "+15551234567", "direct")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("Sent: provider message id primary-")
    assert deliveries(_state(local))[-1]["content"] == "direct"
    echoed = local.cli("plugin", "call", "primary", "invoke", "echo", '{"value": "hi"}')
    assert json.loads(echoed.stdout) == {"value": "hi", "provider": "primary"}
    credentials = local.cli("plugin", "call", "primary", "check-credentials")
    assert credentials.returncode == 0 and credentials.stdout.startswith("ok: ")
    invalid = local.cli("plugin", "call", "primary", "invoke", "echo", "{}")
    assert invalid.returncode == 1
    assert invalid.stderr.startswith("Error: INVALID_INPUT: params")
    nobody = local.cli("plugin", "call", f"127.0.0.1:{free_port()}", "describe")
    assert nobody.returncode == 3 and "no plugin answers at" in nobody.stderr


def test_up_needs_paths_and_the_token_survives_a_restart(tmp_path: Path) -> None:
    no_paths = subprocess.run(
        [SWITCHBOARD, "up", "--no-live"],
        cwd=tmp_path,
        env=isolated_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert no_paths.returncode == 2
    assert "Name the YAML files or folders to run" in no_paths.stderr
    state = tmp_path / "state"
    state.mkdir()
    (tmp_path / "plugins.yaml").write_text(yaml.safe_dump(flaky("primary", 1, state)))
    tokens = []
    for _ in range(2):
        run = LocalMode(tmp_path, "plugins.yaml")
        tokens.append(run.wait_ready()["token"])
        assert run.stop() == 0
    assert tokens[0] == tokens[1]


def test_a_second_up_in_the_same_folder_says_one_runs_and_starts_nothing(
    local: LocalMode,
) -> None:
    second = LocalMode(local.workdir, "plugins.yaml", env=local.env)
    code = second.process.wait(60)
    second._reader.join(5)
    assert code == 2
    assert "switchboard up already runs with state folder" in second.output
    assert "Traceback" not in second.output
    assert local.cli("status").returncode == 0  # the first one is untouched


def test_up_runs_an_app_with_url_and_token_then_stops_everything(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (tmp_path / "plugins.yaml").write_text(yaml.safe_dump(flaky("primary", 1, state)))
    (tmp_path / "app.py").write_text(
        "import asyncio, sys\n"
        "from switchboard import send_message\n"
        "result = asyncio.run(send_message('sms', '+15551234567', 'from the app'))\n"
        "print('app sent', result.plugin, flush=True)\n"
        "sys.exit(7)\n"
    )
    run = subprocess.run(
        [
            SWITCHBOARD,
            "up",
            "plugins.yaml",
            "--port",
            "0",
            "--grpc-port",
            "-1",
            "--",
            sys.executable,
            "app.py",
        ],
        cwd=tmp_path,
        env=isolated_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 7, run.stderr
    assert "app sent default/primary" in run.stdout
    assert [d["content"] for d in deliveries(state)] == ["from the app"]
    assert "primary      | info    Activated the plugin" in run.stderr
    assert "Stopped every plugin and the router" in run.stderr
    assert not (tmp_path / ".switchboard" / "local.json").exists()
