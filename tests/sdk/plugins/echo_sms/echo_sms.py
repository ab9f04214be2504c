"""A test plugin whose behaviour the recipient selects, and which leaves evidence in files.

The tests run it in-process and as a child process, so everything they check
is observable from outside: ``lifecycle.log`` (one line per hook, with the
process id and a fingerprint of the token the instance was built with) and
``shout.log`` (one line per operation run). Recipients ``fail:<class>`` raise
that class, ``slow:<seconds>`` sleeps first.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from switchboard.sdk import (
    ConfigError,
    InvalidInput,
    Message,
    MessagingPlugin,
    OutcomeUnknown,
    PermanentError,
    RetryableError,
    SendResult,
    Unauthenticated,
    operation,
)

FAILURES = {
    "fail:invalid": lambda: InvalidInput("recipient: not a phone number"),
    "fail:permanent": lambda: PermanentError("the number is blocked"),
    "fail:retryable": lambda: RetryableError("the provider throttled us", retry_after=7.5),
    "fail:unauthenticated": lambda: Unauthenticated("the provider rejected the token"),
    "fail:config": lambda: ConfigError("the sender is not verified"),
    "fail:unknown": lambda: OutcomeUnknown("the provider did not answer in time"),
}


def token_id(token: str) -> str:
    """A fingerprint that identifies a token without revealing it."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class EchoSms(MessagingPlugin):
    channel_type = "sms"
    capabilities = ("send", "delivery_receipts")

    def validate_config(self) -> None:
        if self.config.get("reject"):
            raise ConfigError("config.reject is true, so this plugin refuses to start")

    @property
    def token_id(self) -> str:
        return token_id(self.secrets["API_TOKEN"])

    def record(self, log: str, line: str) -> None:
        with (Path(self.config["state_dir"]) / log).open("a") as file:
            file.write(f"{line} token={self.token_id} pid={os.getpid()}\n")

    async def initialize(self) -> None:
        self.record("lifecycle.log", "initialize")

    async def activate(self) -> None:
        await asyncio.sleep(float(self.config.get("activate_delay", 0)))
        self.record("lifecycle.log", "activate")

    async def deactivate(self) -> None:
        self.record("lifecycle.log", "deactivate")

    async def cleanup(self) -> None:
        self.record("lifecycle.log", "cleanup")

    async def send_message(self, message: Message) -> SendResult:
        # Careless on purpose: the runtime must keep the token out of the logs.
        self.logger.info("Sending with token %s", self.secrets["API_TOKEN"])
        if message.recipient.startswith("slow:"):
            self.record("lifecycle.log", "slow-call-started")
            await asyncio.sleep(float(message.recipient.removeprefix("slow:")))
        if message.recipient in FAILURES:
            raise FAILURES[message.recipient]()
        if message.recipient == "fail:echoed-credentials":
            # A provider that quotes the request back: the Authorization header,
            # a URL-safe base64 key, and the token in a query, a path and a form.
            token = self.secrets["API_TOKEN"]
            basic = base64.b64encode(f"echo-user:{token}".encode()).decode()
            key = base64.urlsafe_b64encode(token.encode()).decode()
            raise RetryableError(
                f"Provider said: bad request (Authorization: Basic {basic}; key={key}; "
                f"url=/send/{quote(token)}?token={quote(token, safe='')}; "
                f"form=token={quote_plus(token)})"
            )
        if message.recipient == "fail:crash":
            raise RuntimeError(f"client broke while using {self.secrets['API_TOKEN']}")
        return SendResult(
            provider_message_id=f"echo-{uuid.uuid4().hex}",
            details={
                "token_id": self.token_id,
                "pid": str(os.getpid()),
                "sender": self.config["sender"],
                "echo": message.content,
                "tenant": message.tenant,
                "idempotency_key": message.idempotency_key,
                **_parts(message),
                **dict(message.metadata),
            },
        )

    async def check_credentials(self) -> str:
        if self.secrets["API_TOKEN"] == "rejected-token":
            raise Unauthenticated("the provider rejected the token")
        return f"Token {self.token_id} accepted"

    @operation(
        schema={
            "type": "object",
            "properties": {"text": {"type": "string", "maxLength": 20}},
            "required": ["text"],
            "additionalProperties": False,
        },
    )
    async def shout(self, params: dict[str, Any]) -> Any:
        """Upper-case a short text."""
        self.record("shout.log", params["text"])
        return {"text": params["text"].upper()}


def _parts(message: Message) -> dict[str, str]:
    """What arrived besides the text, for tests to compare with what they sent."""
    parts = {
        f"attachment.{attachment.filename}": (
            f"{attachment.content_type} url={attachment.url}"
            if attachment.url
            else f"{attachment.content_type} sha256={hashlib.sha256(attachment.data).hexdigest()}"
        )
        for attachment in message.attachments
    }
    if message.template is not None:
        parts["template"] = (
            f"{message.template.id} {message.template.language} "
            f"{json.dumps(dict(message.template.variables), sort_keys=True)}"
        )
    if message.cc or message.bcc:
        parts["copies"] = f"cc={','.join(message.cc)} bcc={','.join(message.bcc)}"
    return parts
