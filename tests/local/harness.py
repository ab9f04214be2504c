"""`switchboard up` and the CLI as a user runs them: child processes in a folder of their own.

Every process gets `XDG_STATE_HOME` inside the test's folder, so the pointer a
running `switchboard up` leaves for `switchboard env` (and the others) never
meets another test's router or the user's own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

from switchboard.local import state
from tests.router.conftest import FLAKY_SMS
from tests.sdk.harness import MINI_OLT, SWITCHBOARD
from tests.support.loglevel import verbose_spec_env
from tests.support.wait import wait_for

REPO = Path(__file__).resolve().parents[2]
HANG_SMS = Path(__file__).parent / "plugins" / "hang_sms"


def isolated_env(workdir: Path, **extra: str) -> dict[str, str]:
    """The test's environment, with local mode's per-user state inside `workdir`.

    `SWITCHBOARD_UNDER_TEST=DIR` runs the processes a test starts on the
    `switchboard` package in DIR (say, an older checkout's `operator/`), to see
    a test fail on the code before a fix.
    """
    under_test = os.environ.get("SWITCHBOARD_UNDER_TEST")
    code = {"PYTHONPATH": under_test} if under_test else {}
    return {**os.environ, **code, "XDG_STATE_HOME": str(workdir / ".xdg-state"), **extra}


def flaky(name: str, priority: int, state_dir: Path, **config: Any) -> dict[str, Any]:
    """A CommunicationPlugin running tests/router/plugins/flaky_sms (delivers to a file)."""
    return {
        "apiVersion": "switchboard.dev/v1alpha1",
        "kind": "CommunicationPlugin",
        "metadata": {
            "name": name,
            "annotations": {"switchboard.dev/plugin-dir": str(FLAKY_SMS)},
        },
        "spec": {
            "image": "ghcr.io/switchboard-dev/plugin-flaky-sms:1.0.0",
            "channelType": "sms",
            "priority": priority,
            "env": verbose_spec_env(),
            "config": {"provider": name, "state_dir": str(state_dir), **config},
        },
    }


def integration(name: str, **spec: Any) -> dict[str, Any]:
    """A VendorIntegration running tests/sdk/plugins/mini_olt."""
    return {
        "apiVersion": "switchboard.dev/v1alpha1",
        "kind": "VendorIntegration",
        "metadata": {"name": name, "annotations": {"switchboard.dev/plugin-dir": str(MINI_OLT)}},
        "spec": {
            "image": "ghcr.io/switchboard-dev/plugin-mini-olt:0.3.0",
            "vendor": "voltha",
            "integrationType": "network_automation",
            "env": verbose_spec_env(),
            **spec,
        },
    }


def secret(name: str, **values: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": values}


def deliveries(state_dir: Path) -> list[dict[str, Any]]:
    sink = state_dir / "deliveries.jsonl"
    return [json.loads(x) for x in sink.read_text().splitlines()] if sink.exists() else []


def processes_with(marker: str) -> list[int]:
    """Pids of processes whose environment mentions `marker` (a folder only one run uses)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environment = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environment:
            found.append(int(entry.name))
    return found


class LocalMode:
    """`switchboard up PATHS...` in a working directory, with its log records."""

    def __init__(
        self,
        workdir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        port: str = "0",
        grpc_port: str = "-1",
    ) -> None:
        self.workdir = workdir
        self.env = env or isolated_env(workdir)
        self.process = subprocess.Popen(
            [SWITCHBOARD, "up", *args, "--port", port, "--grpc-port", grpc_port, "--no-live"],
            cwd=workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        with self.process.stderr:
            for line in self.process.stderr:
                self.lines.append(line)

    @property
    def state_dir(self) -> Path:
        return self.workdir / state.STATE_DIR_NAME

    @property
    def runtime_dir(self) -> Path:
        """Where this run's plugins find their secrets (in memory)."""
        return state.runtime_dir(self.state_dir, self.env)

    @property
    def records(self) -> list[dict[str, Any]]:
        """Local mode's own log records (its JSON lines): `msg` and the fields."""
        out = []
        for line in list(self.lines):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "msg" in record:
                out.append(record)
        return out

    def records_of(self, message: str, **fields: Any) -> list[dict[str, Any]]:
        """The records with this message and these field values."""
        return [
            record
            for record in self.records
            if record["msg"] == message
            and all(record.get(key) == value for key, value in fields.items())
        ]

    def plugin_lines(self, name: str) -> list[str]:
        """What plugin `name` logged, as `switchboard up` showed it (`name | ...`)."""
        return [
            line.split("|", 1)[1].strip()
            for line in list(self.lines)
            if line.split("|", 1)[0].strip() == name and "|" in line
        ]

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout: float = 120) -> dict[str, Any]:
        """Until every plugin served or failed once; the router's URL and token."""
        wait_for(
            lambda: self.records_of("Plugins settled") or self.process.poll() is not None,
            timeout=timeout,
            what="the local plugins to settle",
        )
        assert self.process.poll() is None, self.output
        found: dict[str, Any] = json.loads((self.state_dir / state.STATE_FILE).read_text())
        return found

    def wait_record(
        self, message: str, timeout: float = 60, count: int = 1, **fields: Any
    ) -> dict[str, Any]:
        """The `count`th record with this message and these fields, once it was logged."""

        def found() -> dict[str, Any] | None:
            records = self.records_of(message, **fields)
            return records[count - 1] if len(records) >= count else None

        return wait_for(
            found, timeout, what=f"{message!r} {fields or ''} in the log of switchboard up"
        )

    def pid_of(self, name: str) -> int:
        """The pid of the latest process of plugin (or integration) `default/name`."""
        pid: int = self.records_of("Started a plugin", plugin=f"default/{name}")[-1]["pid"]
        return pid

    def cli(self, *args: str, input: str | None = None, cwd: Path | None = None) -> Any:
        """`switchboard ARGS...` next to this local mode, as a user types it."""
        return subprocess.run(
            [SWITCHBOARD, *args],
            cwd=cwd or self.workdir,
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def status(self) -> dict[str, Any]:
        result = self.cli("status", "-o", "json")
        assert result.returncode == 0, result.stderr
        document: dict[str, Any] = json.loads(result.stdout)
        return document

    def row(self, name: str) -> dict[str, Any]:
        return next(r for r in self.status()["plugins"] if r["plugin"] == f"default/{name}")

    def stop(self, signum: int = signal.SIGINT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        code = self.process.wait(timeout=60)
        self._reader.join(timeout=5)
        return code
