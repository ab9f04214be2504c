"""The audit trail: every send, invoke, replay, denied call and gate change.

Each event says who (the caller's name), where (the tenant), what (the
action and its target: a channel, `integration/operation`), and the outcome
(the message's state or an error code), never content, recipients or
secrets. It is written at once as a JSON log line on the `switchboard.audit`
logger (the durable copy in a cluster's log pipeline) and, in batches, to the
ledger's `audit` table, which `GET /v1/audit` and `switchboard audit` read.
A full queue or an unreachable database costs the table copy, never the
request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Final

from switchboard.ledger import AuditEvent, Ledger, LedgerError

log = logging.getLogger("switchboard.audit")

#: Events waiting for the table; beyond this the log line is the only copy.
QUEUE_LIMIT: Final = 10_000
#: Events written to the table in one transaction.
BATCH: Final = 200


class Auditor:
    def __init__(self, ledger: Ledger | None) -> None:
        self.ledger = ledger
        self._queue: asyncio.Queue[AuditEvent] = asyncio.Queue(QUEUE_LIMIT)
        self._writer: asyncio.Task[None] | None = None

    def record(
        self,
        tenant: str,
        actor: str,
        action: str,
        target: str,
        outcome: str,
        *,
        message_id: str | None = None,
        detail: str | None = None,
        at: float | None = None,
        key: str | None = None,
    ) -> None:
        """Log the event and queue it for the table. ``key``: an event other writers
        may record too (a gate change every replica sees) is kept once."""
        event = AuditEvent(
            tenant,
            actor,
            action,
            target,
            outcome,
            message_id,
            detail,
            at=at or time.time(),
            key=key,
        )
        log.info(
            "Audited an action",
            extra={
                "tenant": tenant,
                "actor": actor,
                "action": action,
                "target": target,
                "outcome": outcome,
                "message_id": message_id,
            },
        )
        if self.ledger is None:
            return
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(event)

    async def start(self) -> None:
        if self.ledger is not None:
            self._writer = asyncio.create_task(self._write(), name="audit writer")

    async def stop(self) -> None:
        if self._writer is not None:
            await self._queue.put(_STOP)
            await self._writer

    async def _write(self) -> None:
        assert self.ledger is not None
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stopping = _STOP in batch
            events = [event for event in batch if event is not _STOP]
            try:
                await self.ledger.record_audit(events)
            except LedgerError as error:
                log.warning(
                    "Could not write audit events to the ledger; the log has them",
                    extra={"events": len(events), "error": str(error)},
                )
            if stopping:
                return


_STOP: Final = AuditEvent("", "", "", "", "")
