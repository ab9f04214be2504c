"""Fixtures for the plugin tests: run a plugin from plugin-images/ over real gRPC.

Every test drives a plugin the way the router will: ``serve_plugin`` runs it
in this event loop behind a real gRPC server, with its credentials in a
directory laid out like a mounted Kubernetes Secret and referenced from the
config as ``${KEY}``, and ``PluginClient`` calls it.
"""

from __future__ import annotations

import email.utils
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from switchboard.sdk import (
    InvalidInput,
    PluginClient,
    PluginError,
    RetryableError,
    Unauthenticated,
    serve_plugin,
)
from switchboard.sdk._loader import load_plugin
from tests.plugins.fakes import Reply
from tests.sdk.harness import MountedSecret

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN_IMAGES = REPO_ROOT / "plugin-images"
#: The plugins this suite covers (plugin-images/ also holds the base image and
#: vendor integrations owned elsewhere).
PLUGINS = (
    "smtp-email",
    "sendgrid-email",
    "twilio-sms",
    "vonage-sms",
    "slack",
    "teams",
    "telegram",
    "whatsapp-business",
    "generic-webhook",
    "apprise",
)

RunPlugin = Callable[..., AbstractAsyncContextManager[PluginClient]]


def plugin_module(name: str) -> ModuleType:
    """The module of plugin ``name`` as the runtime imports it (to read its code tables)."""
    return sys.modules[load_plugin(PLUGIN_IMAGES / name).plugin_class.__module__]


@pytest.fixture
def run_plugin(tmp_path: Path) -> RunPlugin:
    """``async with run_plugin("twilio-sms", config, secrets={...}) as client: ...``"""
    counter = iter(range(1_000_000))

    @asynccontextmanager
    async def run(
        name: str, config: dict[str, Any], *, secrets: dict[str, str] | None = None
    ) -> AsyncIterator[PluginClient]:
        secret = MountedSecret(tmp_path / f"secrets-{next(counter)}", secrets or {})
        async with (
            serve_plugin(
                PLUGIN_IMAGES / name,
                config=config,
                secrets_dir=secret.directory,
                secrets_poll_interval=None,
                environ={},
            ) as server,
            PluginClient(server.address, timeout=15) as client,
        ):
            yield client

    return run


@dataclass(frozen=True)
class Failure:
    """An HTTP failure a provider may answer, and what the plugin must raise for it."""

    status: int
    error: type[PluginError]
    retry_after: float | None = None
    #: The Retry-After header to send: "delta" (seconds) or "date" (an HTTP-date).
    retry_after_form: str | None = None

    def reply(self, body: Any) -> Reply:
        headers = {}
        if self.retry_after_form == "delta":
            headers["Retry-After"] = str(int(self.retry_after or 0))
        elif self.retry_after_form == "date":
            when = time.time() + (self.retry_after or 0)
            headers["Retry-After"] = email.utils.formatdate(when, usegmt=True)
        return Reply(self.status, body, headers)


#: How every HTTP plugin classifies the provider's HTTP failures (switchboard.sdk.providers).
HTTP_FAILURES = [
    pytest.param(Failure(400, InvalidInput), id="400"),
    pytest.param(Failure(401, Unauthenticated), id="401"),
    pytest.param(Failure(403, Unauthenticated), id="403"),
    pytest.param(Failure(429, RetryableError, 7, "delta"), id="429-retry-after-seconds"),
    pytest.param(Failure(429, RetryableError, 30, "date"), id="429-retry-after-date"),
    pytest.param(Failure(500, RetryableError), id="500"),
    pytest.param(Failure(503, RetryableError, 120, "delta"), id="503-retry-after"),
]


def assert_classified(raised: pytest.ExceptionInfo[PluginError], failure: Failure) -> None:
    """The typed error crossed gRPC intact: class and, for 429/503, retry-after."""
    assert type(raised.value) is failure.error, raised.value
    if failure.retry_after is None:
        return
    assert raised.value.retry_after is not None, raised.value
    # An HTTP-date has one-second resolution and the request took some time.
    assert failure.retry_after - 3 <= raised.value.retry_after <= failure.retry_after
