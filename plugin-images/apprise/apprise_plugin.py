"""Any of Apprise's 100+ services (Discord, ntfy, Matrix, Pushover, ...) from URLs in a Secret.

``config.urls`` holds one or more Apprise URLs (``discord://id/token``,
``ntfys://topic``, ``json://host/path``, ...), separated by spaces, commas or
new lines, and is normally ``${APPRISE_URLS}`` so the tokens stay in the
Secret. Every ``Send`` notifies every URL: the subject is the title, the
content the body (``content_type`` text/html or text/markdown tells Apprise
how to convert it for each service), metadata ``notify_type`` one of info,
success, warning, failure. The recipient is only recorded: Apprise URLs carry
their own destinations.

The manifest's channel type is ``apprise``; the routing key callers use is
the CommunicationPlugin's ``channelType`` (``discord``, ``ntfy``, ...), so one
image serves any number of channels. Apprise reports no message ids, so the
plugin makes one up. Some services notified and others not is a partial
delivery; none notified is RETRYABLE, except when Apprise stopped waiting
for a service (TIMEOUT): that service may still deliver later, so the outcome
is unknown. See docs/plugins/apprise.md.
"""

from __future__ import annotations

from typing import Final

import apprise
from apprise.utils.parse import parse_urls

from switchboard.sdk import (
    ConfigError,
    InvalidInput,
    Message,
    MessagingPlugin,
    OutcomeUnknown,
    RetryableError,
    SendResult,
    providers,
)

DEFAULT_TIMEOUT_SECONDS: Final = 30.0
_BODY_FORMATS: Final = {
    "text/html": apprise.NotifyFormat.HTML,
    "text/markdown": apprise.NotifyFormat.MARKDOWN,
}
_NOTIFY_TYPES: Final = {kind.value: kind for kind in apprise.NotifyType}
#: A failed service's last few log lines go into the error message.
_LOG_LINES_PER_SERVICE: Final = 2


class ApprisePlugin(MessagingPlugin):
    """Notifies every configured Apprise URL."""

    channel_type = "apprise"
    capabilities = ("send", "html", "markdown")

    def validate_config(self) -> None:
        self._urls: list[str] = parse_urls(self.config["urls"])  # type: ignore[no-untyped-call]
        if not self._urls:
            raise ConfigError("config.urls: no Apprise URL found")
        # Parsing only (no I/O). Only positions are reported: the URLs hold tokens.
        asset = self._asset()
        invalid = [
            str(position)
            for position, url in enumerate(self._urls, start=1)
            if apprise.Apprise.instantiate(url, asset=asset) is None
        ]
        if invalid:
            raise ConfigError(
                f"config.urls: URL {', '.join(invalid)} of {len(self._urls)} is not a URL "
                "Apprise supports (see `apprise --details` for the schemes)"
            )

    async def initialize(self) -> None:
        self._apprise = apprise.Apprise(asset=self._asset())
        if not self._apprise.add(self._urls):
            raise ConfigError("config.urls: Apprise rejected a URL")

    async def cleanup(self) -> None:
        self._apprise.clear()

    async def send_message(self, message: Message) -> SendResult:
        providers.require_capabilities(message, self.capabilities, provider="Apprise")
        if not (message.content or message.subject):
            raise InvalidInput("content: an Apprise notification needs a body or a subject")
        kind = message.metadata.get("notify_type", "info")
        if kind not in _NOTIFY_TYPES:
            raise InvalidInput(
                f"metadata.notify_type: {kind!r} is not one of {', '.join(_NOTIFY_TYPES)}"
            )
        content_type = message.content_type.split(";")[0].strip().lower()
        result = await self._apprise.async_notify(
            body=message.content,
            title=message.subject,
            notify_type=_NOTIFY_TYPES[kind],
            body_format=_BODY_FORMATS.get(content_type, apprise.NotifyFormat.TEXT),
            timeout=float(self.config.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)),
        )
        with result:
            delivered = [service for service in result if service]
            failed = [service for service in result if not service]
            if result.status == apprise.AppriseResultStatus.NOMATCH:
                raise ConfigError("Apprise has no service to notify; check config.urls")
            if not delivered:
                raise _nothing_delivered(failed, result.status)
            details = {
                "delivered": f"{len(delivered)}/{len(delivered) + len(failed)}",
                "services": ", ".join(service.name for service in delivered),
                "recipient": message.recipient,
            }
            if failed:
                details |= {"partial": "true", "failed": _describe(failed)}
                self.logger.warning(
                    "Delivered to some Apprise services only",
                    extra={"delivered": details["delivered"], "failed": details["failed"]},
                )
        return SendResult(providers.generated_message_id("apprise"), details=details)

    def _asset(self) -> apprise.AppriseAsset:
        # Memory only: the root filesystem is read-only. Secure logging masks
        # the tokens in every URL Apprise writes to its log.
        # A constructor argument: 2.3 made the attribute read-only.
        return apprise.AppriseAsset(
            storage_mode=apprise.PersistentStoreMode.MEMORY, secure_logging=True
        )


def _nothing_delivered(
    failed: list[apprise.NotifyResult], status: apprise.AppriseResultStatus
) -> RetryableError | OutcomeUnknown:
    """No service took the notification: RETRYABLE, unless Apprise stopped
    waiting for one (TIMEOUT), which "may still finish later" (Apprise)."""
    described = _describe(failed) or "any service"
    if any(service.status == apprise.AppriseResultStatus.TIMEOUT for service in failed):
        return OutcomeUnknown(
            f"Apprise stopped waiting for {described}; a service that timed out may still "
            "deliver the notification"
        )
    return RetryableError(f"Apprise could not notify {described} ({status.name.lower()})")


def _describe(services: list[apprise.NotifyResult]) -> str:
    """``Discord (HTTP 500 ...); ntfy (timeout)``: names and Apprise's own words, no tokens."""
    described = []
    for service in services:
        lines = [
            " ".join(entry.message.split())
            for entry in service.logs()
            if entry.level in ("WARNING", "ERROR")
        ][-_LOG_LINES_PER_SERVICE:]
        reason = "; ".join(lines) or service.status.name.lower()
        described.append(f"{service.name} ({reason})")
    return "; ".join(described)
