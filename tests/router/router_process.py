"""`switchboard router` as a real process, for tests that kill it or fuzz it over the network."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from switchboard.router.discovery import StaticDiscovery


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RouterProcess:
    """`switchboard router` with the static backend, started and killed by the test."""

    def __init__(self, tmp_path: Path, routes: list[Any], api_key: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        keys = tmp_path / "keys.yaml"
        keys.write_text(yaml.safe_dump({"keys": [{"name": "tests", "key": api_key}]}))
        routes_file = tmp_path / "routes.json"
        StaticDiscovery.write(routes_file, routes)
        self.env = {
            **os.environ,
            "SWITCHBOARD_ROUTER_BACKEND": "static",
            "SWITCHBOARD_ROUTER_HOST": "127.0.0.1",
            "SWITCHBOARD_ROUTER_HTTP_PORT": str(self.port),
            "SWITCHBOARD_ROUTER_GRPC_PORT": "-1",
            "SWITCHBOARD_ROUTER_API_KEYS_FILE": str(keys),
            "SWITCHBOARD_ROUTER_STATIC_FILE": str(routes_file),
            "SWITCHBOARD_ROUTER_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
            "SWITCHBOARD_ROUTER_DEADLINE_SECONDS": "5",
            "SWITCHBOARD_ROUTER_LEASE_MARGIN_SECONDS": "1",
            "SWITCHBOARD_ROUTER_RETRY_BASE_SECONDS": "0.2",
        }
        self.log = tmp_path / "router.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "switchboard", "router"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        # Generous: a loaded 2-core machine takes a while to import everything.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(
            f"the router did not start (exit code {self.process.poll()}):\n"
            f"{self.log.read_text()[-3000:]}"
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
