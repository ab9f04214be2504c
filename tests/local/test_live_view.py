"""The live view of `switchboard up` reads well at 80 columns, and nothing else prints into it
(issue 19 item 8)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from switchboard.local.view import live_view
from tests.local.harness import flaky, isolated_env
from tests.sdk.harness import SWITCHBOARD

ROWS: list[dict[str, Any]] = [
    {
        "plugin": "default/email",
        "route": "email",
        "priority": 1,
        "state": "serving",
        "endpoint": "127.0.0.1:40111",
        "restarts": 0,
        "lastError": "",
    },
    {
        "plugin": "default/twilio-primary-account",
        "route": "sms",
        "priority": 1,
        "state": "degraded",
        "restarts": 3,
        "lastError": "Failed a call (Send): RETRYABLE Twilio answered HTTP 503: Unavailable",
        "nextRestartAt": time.time() + 8,
    },
    {
        "plugin": "default/voltha",
        "route": "voltha",
        "priority": None,
        "state": "blocked",
        "reason": "ImageRefused",
        "message": "The production environment requires a digest-pinned image; pin it.",
        "restarts": 0,
    },
]


def test_the_view_fits_80_columns_with_one_line_per_plugin() -> None:
    console = Console(width=80, record=True, force_terminal=True, color_system=None)
    console.print(live_view(ROWS, "http://127.0.0.1:8080", "plugins.yaml: bad", ["12:00 x" * 30]))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    for row in ROWS:
        [line] = [line for line in lines if line.startswith(row["plugin"][:20])]
        assert row["state"] in line
    assert any("restart 3 in " in line and "RETRYABLE" in line for line in lines)
    assert any(line.startswith("YAML not applied") for line in lines)


_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")


def test_nothing_but_the_view_reaches_the_terminal(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (tmp_path / "plugins.yaml").write_text(yaml.safe_dump(flaky("primary", 1, state)))
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    process = subprocess.Popen(
        [SWITCHBOARD, "up", "plugins.yaml", "--port", "0", "--grpc-port", "-1"],
        cwd=tmp_path,
        env={**isolated_env(tmp_path), "TERM": "xterm", "COLUMNS": "80", "LINES": "24"},
        stdin=follower,
        stdout=follower,
        stderr=follower,
        start_new_session=True,
    )
    os.close(follower)
    screen = b""
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and b"1 of 1 serving" not in screen:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    screen += os.read(leader, 65536)
                except OSError:
                    break
        assert b"1 of 1 serving" in screen, screen[-2000:]
    finally:
        process.send_signal(signal.SIGINT)
        end = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < end:
            if select.select([leader], [], [], 0.5)[0]:
                try:
                    screen += os.read(leader, 65536)
                except OSError:
                    break
        process.wait(10)
        os.close(leader)
    text = _ESCAPES.sub("", screen.decode(errors="replace"))
    assert "Switchboard local mode: router at http://127.0.0.1:" in text
    assert '{"ts"' not in text  # no log record printed into the view
    assert "| info" not in text  # no plugin line either
    assert "Listening for calls" not in text
    assert "INFO Router listening" not in text  # records go to the log file and the view
    assert "Announced the local router url=http://127.0.0.1:" in text  # events show their fields
    logs = tmp_path / ".switchboard" / "logs"
    records = [json.loads(line) for line in (logs / "switchboard.log").read_text().splitlines()]
    assert any(
        r["msg"] == "Announced the local router" and r["url"].startswith("http://127.0.0.1:")
        for r in records
    )
    assert "Listening for calls" in (logs / "default-primary.log").read_text()
