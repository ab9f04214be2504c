"""The static backend follows its routes file as it is replaced (how local mode hands routes)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from switchboard.router.discovery import StaticDiscovery
from switchboard.router.table import PluginRoute
from tests.router.router_process import RouterProcess

API_KEY = "static-routes-key"


def _total_plugins(router: RouterProcess) -> int:
    answer = httpx.get(
        f"{router.url}/v1/plugins", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5
    )
    answer.raise_for_status()
    total: int = answer.json()["totalPlugins"]
    return total


def test_a_replaced_routes_file_is_followed_within_moments(tmp_path: Path) -> None:
    router = RouterProcess(tmp_path, [], API_KEY)
    router.start()
    try:
        assert _total_plugins(router) == 0
        route = PluginRoute(
            "CommunicationPlugin", "default", "sms-a", "sms", endpoints=("127.0.0.1:9",)
        )
        StaticDiscovery.write(tmp_path / "routes.json", [route])
        deadline = time.monotonic() + 10
        while _total_plugins(router) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _total_plugins(router) == 1
    finally:
        router.stop()


def test_a_routes_file_in_a_missing_folder_stops_the_router_saying_what_to_fix(
    tmp_path: Path,
) -> None:
    router = RouterProcess(tmp_path, [], API_KEY)
    missing = tmp_path / "not-there" / "routes.json"
    router.env["SWITCHBOARD_ROUTER_STATIC_FILE"] = str(missing)
    ended = subprocess.run(
        [sys.executable, "-m", "switchboard", "router"],
        env=router.env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert ended.returncode == 1
    assert f"The routes file's folder {missing.parent} does not exist" in ended.stderr
    assert "Traceback" not in ended.stderr
