"""A provider stand-in whose behaviour a test sets through `control.json`.

`{"mode": "ok"}` (default) delivers: one JSON line in `deliveries.jsonl`.
Other modes: `retryable` (optionally with `retry_after`), `permanent`,
`invalid`, `unauthenticated`, `configuration`, `slow` (sleeps `delay` seconds, then delivers),
`accept_then_slow` (delivers, then takes `delay` seconds to answer: a provider
that accepted the message although the caller never hears so).

Receipts: `POST` a JSON body `{"id": ..., "status": "delivered" | "failed"}`
signed with `X-Flaky-Signature: <hex HMAC-SHA256 of the body with receipt_secret>`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import uuid
from pathlib import Path
from typing import Any

from switchboard.sdk import (
    ConfigError,
    DeliveryState,
    InvalidInput,
    Message,
    MessagingPlugin,
    PermanentError,
    Receipt,
    ReceiptRequest,
    RetryableError,
    SendResult,
    Unauthenticated,
    operation,
)


class FlakySms(MessagingPlugin):
    channel_type = "sms"
    capabilities = ("send", "delivery_receipts")

    @property
    def state(self) -> Path:
        return Path(self.config["state_dir"])

    def control(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.state / "control.json").read_text())
        except (OSError, ValueError):
            return {}
        return data

    async def send_message(self, message: Message) -> SendResult:
        control = self.control()
        mode = control.get("mode", "ok")
        if mode == "retryable":
            raise RetryableError("provider is overloaded", retry_after=control.get("retry_after"))
        if mode == "permanent":
            raise PermanentError("the number is blocked at the provider")
        if mode == "invalid":
            raise InvalidInput("recipient: not a reachable number")
        if mode == "unauthenticated":
            raise Unauthenticated("the provider rejected our credentials")
        if mode == "configuration":
            raise ConfigError("the sender +15550001111 is not a number of this account")
        if mode == "slow":
            await asyncio.sleep(float(control.get("delay", 1)))
        accepted_first = mode == "accept_then_slow"
        message_id = f"{self.config['provider']}-{uuid.uuid4().hex[:12]}"
        record = {
            "provider": self.config["provider"],
            "id": message_id,
            "recipient": message.recipient,
            "content": message.content,
            "idempotency_key": message.idempotency_key,
            "tenant": message.tenant,
            "pid": os.getpid(),
        }
        with (self.state / "deliveries.jsonl").open("a") as sink:
            sink.write(json.dumps(record) + "\n")
        if accepted_first:
            await asyncio.sleep(float(control.get("delay", 1)))
        return SendResult(message_id)

    async def handle_receipt(self, request: ReceiptRequest) -> list[Receipt]:
        expected = hmac.new(
            self.config.get("receipt_secret", "").encode(), request.body, hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("x-flaky-signature", "")):
            raise Unauthenticated("the receipt's signature does not match")
        data = json.loads(request.body)
        return [Receipt(data["id"], DeliveryState(data["status"]), data.get("error", ""))]

    @operation(
        schema={
            "type": "object",
            "properties": {"value": {"type": "string"}},
            "required": ["value"],
            "additionalProperties": False,
        }
    )
    async def echo(self, params: dict[str, Any]) -> dict[str, Any]:
        """Return the value, and who answered."""
        return {"value": params["value"], "provider": self.config["provider"]}
