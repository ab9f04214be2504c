"""Fixtures for the SDK tests: the echo-sms test plugin, served in-process or as a child process."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from switchboard.sdk import serve_plugin
from tests.sdk.harness import ECHO_SMS, MountedSecret, PluginProcess, write_config

TOKEN = "tok-7c1f0e5a9b"


def token_id(token: str) -> str:
    """How echo-sms identifies the token it used without revealing it."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Endpoint:
    """A running echo-sms plugin: where to call it and where it leaves evidence."""

    address: str
    state_dir: Path


def echo_config(state_dir: Path, **extra: object) -> dict[str, object]:
    return {"state_dir": str(state_dir), "sender": "Switchboard", **extra}


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "state"
    directory.mkdir()
    return directory


@pytest.fixture
def secret(tmp_path: Path) -> MountedSecret:
    return MountedSecret(tmp_path / "secrets", {"API_TOKEN": TOKEN})


@pytest.fixture(scope="module")
def echo_child(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """One echo-sms child process shared by a module's tests (starting one costs ~1 s)."""
    root = tmp_path_factory.mktemp("echo-child")
    state = root / "state"
    state.mkdir()
    MountedSecret(root / "secrets", {"API_TOKEN": TOKEN})
    child = PluginProcess(
        ECHO_SMS,
        {
            "SWITCHBOARD_PLUGIN_CONFIG": str(
                write_config(root / "config.json", echo_config(state))
            ),
            "SWITCHBOARD_PLUGIN_SECRETS_DIR": str(root / "secrets"),
        },
    )
    try:
        yield Endpoint(child.wait_serving(), state)
    finally:
        child.terminate()
        try:
            child.process.wait(timeout=15)
        finally:
            child.kill()


@pytest.fixture(params=["in-process", "child-process"])
async def echo(
    request: pytest.FixtureRequest, state_dir: Path, secret: MountedSecret
) -> AsyncIterator[Endpoint]:
    """The echo-sms plugin, served both ways: every test using it runs twice."""
    if request.param == "child-process":
        yield request.getfixturevalue("echo_child")
        return
    async with serve_plugin(
        ECHO_SMS, config=echo_config(state_dir), secrets_dir=secret.directory
    ) as server:
        yield Endpoint(server.address, state_dir)
