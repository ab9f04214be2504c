"""The outside world of the real-node tests: the local demo's sink, on the pods' gateway.

``examples/local/sink.py`` is the demo's SMTP server and HTTP receivers
(webhooks saved, Twilio down with 503, Vonage accepting). Here it listens on
the CNI bridge's gateway address, inside the tier's network namespace, so the
plugin pods reach it and nothing else can; deliveries land in an outbox
directory the tests read. It listens on SMTP's and HTTP's own ports (25, 80),
which the plugins' NetworkPolicies allow at the examples' `standard` level.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.policy import default as email_policy
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.support.controlplane import REPO_ROOT
from tests.support.realnode import POD_GATEWAY

SMTP_PORT, HTTP_PORT = 25, 80


def _demo_sink() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "switchboard_demo_sink", REPO_ROOT / "examples" / "local" / "sink.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Sink:
    """SMTP on POD_GATEWAY:25 and HTTP on POD_GATEWAY:80, in a thread of its own."""

    outbox: Path
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _thread: threading.Thread | None = None
    _stop: Any = None

    def start(self) -> None:
        demo = _demo_sink()
        ready = threading.Event()

        async def serve() -> None:
            from aiohttp import web
            from aiosmtpd.controller import Controller

            outbox = demo.Outbox(self.outbox)
            smtp = Controller(demo.SmtpHandler(outbox), hostname=POD_GATEWAY, port=SMTP_PORT)
            smtp.start()
            runner = web.AppRunner(demo.http_app(outbox), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, POD_GATEWAY, HTTP_PORT).start()
            self._stop = asyncio.Event()
            ready.set()
            try:
                await self._stop.wait()
            finally:
                smtp.stop()
                await runner.cleanup()

        # The thread starts from the caller's thread, so it is in the same network namespace.
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(serve(),), daemon=True
        )
        self._thread.start()
        if not ready.wait(30):
            raise TimeoutError("the sink did not start")

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._loop.close()

    # -- what arrived --

    def files(self, kind: str) -> list[Path]:
        return sorted(self.outbox.glob(f"*-{kind}.*")) if self.outbox.is_dir() else []

    def emails(self) -> list[Message]:
        files = self.files("email")
        return [message_from_bytes(p.read_bytes(), policy=email_policy) for p in files]

    def webhooks(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in self.files("webhook")]

    def sms(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in self.files("sms")]
