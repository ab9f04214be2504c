"""Hangs in `initialize` while the file `hang_while` exists (a provider that never answers)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from switchboard.sdk import Message, MessagingPlugin, SendResult


class HangSms(MessagingPlugin):
    channel_type = "sms"
    capabilities = ("send",)

    async def initialize(self) -> None:
        while Path(self.config["hang_while"]).exists():  # noqa: ASYNC110 - a file, not an event
            await asyncio.sleep(0.2)

    async def send_message(self, message: Message) -> SendResult:
        return SendResult(f"hang-{uuid.uuid4().hex[:8]}")
