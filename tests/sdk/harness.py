"""Test helpers: a plugin as a child process, and a Secret mounted the way the kubelet does it."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from tests.support.loglevel import verbose_plugin_env

PLUGINS = Path(__file__).parent / "plugins"
ECHO_SMS = PLUGINS / "echo_sms"
MINI_OLT = PLUGINS / "mini_olt"
#: The console script installed next to the interpreter running the tests.
SWITCHBOARD = str(Path(sys.executable).with_name("switchboard"))

#: A token every encoding changes: '/', '+', '=', '?' and spaces are quoted
#: differently by `quote`, `quote(safe="")` and `quote_plus`, and its base64
#: (alone, and as `echo-user:TOKEN` Basic credentials) holds both '+' and '/',
#: so the URL-safe alphabet spells it differently too.
ECHOED_TOKEN = "k3y/+= ??>>~~ end"
#: What echo-sms's `fail:echoed-credentials` error reads once its token is hidden.
ECHOED_REDACTED = (
    "Provider said: bad request (Authorization: Basic ***; key=***; "
    "url=/send/***?token=***; form=token=***)"
)


def echoed_forms(token: str) -> dict[str, str]:
    """Every spelling of `token` echo-sms's `fail:echoed-credentials` error quotes back."""
    basic = f"echo-user:{token}".encode()
    forms = {
        "as is": token,
        "quote": quote(token),
        "quote, nothing safe": quote(token, safe=""),
        "quote_plus": quote_plus(token),
        "base64": base64.b64encode(token.encode()).decode(),
        "URL-safe base64": base64.urlsafe_b64encode(token.encode()).decode(),
        "Basic credentials, base64": base64.b64encode(basic).decode(),
        "Basic credentials, URL-safe base64": base64.urlsafe_b64encode(basic).decode(),
    }
    # Each form differs from the others, or a test would check one spelling twice.
    assert len(set(forms.values())) == len(forms), forms
    return forms


class MountedSecret:
    """A directory laid out like a Kubernetes Secret volume.

    ``KEY -> ..data/KEY`` symlinks, ``..data -> ..<version>/``; ``update``
    writes a new version and swaps ``..data`` atomically, as the kubelet does.
    """

    def __init__(self, directory: Path, values: dict[str, str]) -> None:
        self.directory = directory
        directory.mkdir(parents=True)
        self.update(values)

    def update(self, values: dict[str, str]) -> None:
        version = self.directory / f"..{uuid.uuid4().hex}"
        version.mkdir()
        for key, value in values.items():
            (version / key).write_text(value + "\n")
        staging = self.directory / "..data_tmp"
        staging.symlink_to(version.name)
        os.replace(staging, self.directory / "..data")
        for key in values:
            link = self.directory / key
            if not link.is_symlink():
                link.symlink_to(f"..data/{key}")


class PluginProcess:
    """``switchboard plugin serve DIR`` as a child process on 127.0.0.1, port 0.

    Its stderr (JSON log lines) is collected by a thread; ``address`` comes
    from the "Listening for calls" record, as an operator's tooling would read it.
    """

    def __init__(
        self, plugin_dir: Path, env: dict[str, str], prefix: list[str] | None = None
    ) -> None:
        # `prefix` wraps the command, e.g. `ip netns exec NAME` to run it in a pod sandbox.
        self.process = subprocess.Popen(
            [*(prefix or []), SWITCHBOARD, "plugin", "serve", str(plugin_dir)],
            env={
                **os.environ,
                "SWITCHBOARD_PLUGIN_HOST": "127.0.0.1",
                "SWITCHBOARD_PLUGIN_PORT": "0",
                **verbose_plugin_env(),
                **env,
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.host = env.get("SWITCHBOARD_PLUGIN_HOST", "127.0.0.1")
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self.port: int | None = None

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        with self.process.stderr:
            for line in self.process.stderr:
                self.lines.append(line)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    @property
    def records(self) -> list[dict[str, Any]]:
        parsed = []
        for line in list(self.lines):
            try:
                parsed.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return parsed

    @property
    def address(self) -> str:
        assert self.port is not None, "call wait_listening() first"
        return f"{self.host}:{self.port}"

    def wait_for_record(self, message: str, timeout: float = 15) -> dict[str, Any]:
        """Block until a log record with ``msg == message`` appears (or fail with the stderr)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.records:
                if record.get("msg") == message:
                    return record
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"no {message!r} log record; stderr so far:\n{self.stderr}")

    def wait_listening(self, timeout: float = 15) -> str:
        self.port = int(self.wait_for_record("Listening for calls", timeout)["port"])
        return self.address

    def wait_serving(self, timeout: float = 15) -> str:
        self.wait_listening(timeout)
        self.wait_for_record("Activated the plugin", timeout)
        return self.address

    def wait_exit(self, timeout: float = 15) -> int:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"plugin still running after {timeout}s:\n{self.stderr}") from None
        self._reader.join(timeout=5)
        return self.process.returncode

    # Async tests must not block their event loop (an in-flight call lives there).
    async def async_wait_for_record(self, message: str, within: float = 15) -> dict[str, Any]:
        return await asyncio.to_thread(self.wait_for_record, message, within)

    async def async_wait_serving(self, within: float = 15) -> str:
        return await asyncio.to_thread(self.wait_serving, within)

    async def async_wait_exit(self, within: float = 15) -> int:
        return await asyncio.to_thread(self.wait_exit, within)

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
        self._reader.join(timeout=5)


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], *, within: float = 10, what: str = ""
) -> None:
    """Wait until ``condition()`` is true, polling; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        outcome = condition()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within}s: {what or condition}")
        await asyncio.sleep(0.02)


def file_contains(path: Path, text: str) -> Callable[[], bool]:
    return lambda: path.exists() and text in path.read_text()


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(json.dumps(config))
    return path
