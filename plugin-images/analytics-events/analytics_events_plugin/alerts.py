"""Alert rules: count matching events in tumbling windows, notify once per window.

A rule comes from the config (fixed while the plugin runs) or from the
``create_alert_rule`` operation (kept in the database, shared by replicas).
Every evaluation checks each rule over its current and previous window
(aligned to the epoch); a window whose count exceeds the threshold is claimed
in ``alert_firings`` (one row per rule and window) before its notification is
sent, and a notification that failed is sent again at the next evaluation
with the same idempotency key, so the router delivers it once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .events import iso
from .notify import Notification, NotificationFailed, NotificationRejected, Notifier
from .store import EventStore, Filters


@dataclass(frozen=True)
class AlertRule:
    """Fire when more than ``threshold`` matching events fall in one window."""

    name: str
    threshold: int
    window: timedelta
    channel: str
    recipient: str
    subject: str
    event_type: str | None
    category: str | None
    #: ``config`` or ``operation``: where the rule was made (and can be changed).
    source: str = "config"

    @classmethod
    def from_definition(cls, rule: Mapping[str, Any], source: str = "config") -> AlertRule:
        return cls(
            name=rule["name"],
            threshold=int(rule["threshold"]),
            window=timedelta(seconds=int(rule["window_seconds"])),
            channel=rule["channel"],
            recipient=rule["recipient"],
            subject=rule.get("subject") or f"Analytics alert: {rule['name']}",
            event_type=rule.get("event_type"),
            category=rule.get("category"),
            source=source,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "event_type": self.event_type,
            "category": self.category,
            "threshold": self.threshold,
            "window_seconds": int(self.window.total_seconds()),
            "channel": self.channel,
            "recipient": self.recipient,
            "subject": self.subject,
            "source": self.source,
        }

    def window_start(self, moment: datetime) -> datetime:
        seconds = int(self.window.total_seconds())
        epoch = int(moment.timestamp())
        return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


class AlertEvaluator:
    """Evaluates rules against the store and sends their notifications."""

    def __init__(
        self, store: EventStore, notifier: Notifier | None, logger: logging.Logger
    ) -> None:
        self.store = store
        self.notifier = notifier
        self._logger = logger

    async def evaluate(self, rules: Sequence[AlertRule], now: datetime) -> None:
        """Check every rule over its current and previous window; notify once per window."""
        for rule in rules:
            current = rule.window_start(now)
            for start in (current - rule.window, current):
                count = await self.store.count_in_window(
                    start,
                    start + rule.window,
                    Filters(event_type=rule.event_type, category=rule.category),
                )
                if count <= rule.threshold:
                    continue
                claim = await self.store.claim_alert(rule.name, start, count, now)
                if claim.status == "pending":
                    await self._notify(rule, start, count, now)

    async def _notify(self, rule: AlertRule, start: datetime, count: int, now: datetime) -> None:
        if self.notifier is None:
            return
        what = " ".join(part for part in (rule.category, rule.event_type) if part) or "analytics"
        end = start + rule.window
        notification = Notification(
            channel=rule.channel,
            recipient=rule.recipient,
            subject=rule.subject,
            content=(
                f"{count} {what} events between {iso(start)} and {iso(end)}: more than the "
                f"threshold of {rule.threshold} for alert rule {rule.name}."
            ),
            idempotency_key=f"alert:{rule.name}:{iso(start)}",
        )
        where = {"rule": rule.name, "window_start": iso(start)}
        try:
            await self.notifier.send(notification)
        except NotificationFailed as error:
            self._logger.warning(
                "Could not send an alert notification; retrying on the next evaluation",
                extra={**where, "error": str(error)},
            )
            return
        except NotificationRejected as error:
            self._logger.error(
                "The router rejected an alert notification", extra={**where, "error": str(error)}
            )
            await self.store.settle_alert(
                rule.name, start, status="rejected", now=now, error=str(error)
            )
            return
        await self.store.settle_alert(rule.name, start, status="sent", now=now)
        self._logger.info("Sent an alert notification", extra={**where, "events": count})
