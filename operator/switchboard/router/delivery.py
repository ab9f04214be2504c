"""Sending with a record: every message goes through the ledger before any provider sees it.

``Delivery`` sits between the API and the dispatcher. A message is accepted
into the ledger first (the answer to a caller never runs ahead of the
record), then sent:

- *synchronously*: in the caller's request, which waits for the round of
  attempts and gets its outcome;
- *asynchronously* (``wait=False``): the caller gets the message id at once
  and this router's workers, or any other replica's, send it, retrying a
  round that found every plugin unavailable with exponential back-off until
  the channel's ``maxDeliveryTime``, then ``expired``.

A router that dies mid-send leaves the message ``sending`` with a lease; when
the lease runs out a worker takes it over and the channel's delivery policy
decides: AtMostOnce records ``unknown``, AtLeastOnce sends it again flagged
``possibleDuplicate``. An idempotency key is unique per tenant in the
ledger, so a retry reaches the same message on any replica, and a key reused
for another message is a conflict.

Receipts: a provider's delivery callback reaches ``receipt``; the plugin
verifies it, the ledger moves the message, and a failed delivery may send it
again through the next plugin or a fallback channel (``receiptFallback``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from switchboard.api.backoff import backoff_seconds
from switchboard.ledger import (
    AttemptRecord,
    Finish,
    Ledger,
    LedgerError,
    MessageRecord,
    NewMessage,
    State,
)
from switchboard.router.dispatch import (
    MAYBE_SENT,
    Attempt,
    Dispatcher,
    DispatchError,
    Outgoing,
    Routed,
)
from switchboard.router.metrics import RouterMetrics
from switchboard.router.settings import RouterSettings
from switchboard.router.table import AT_MOST_ONCE, PluginRoute, RoutingTable
from switchboard.sdk import Attachment, DeliveryState, ReceiptReply, Template

log = logging.getLogger("switchboard.router")

#: Dispatch failures that end a message for good: no round will do better.
_FINAL_FAILURES: Final = frozenset(
    {"INVALID_INPUT", "PERMANENT", "NO_CAPABLE_PLUGIN", "UNAUTHENTICATED"}
)
_RECEIPT_STATES: Final = {
    DeliveryState.SENT: State.SENT,
    DeliveryState.DELIVERED: State.DELIVERED,
    DeliveryState.FAILED: State.FAILED,
}


@dataclass(frozen=True)
class Outcome:
    """Where a message stands after the router did what it could now."""

    record: MessageRecord
    #: The round's routing result, when a plugin took the message in this call.
    routed: Routed | None = None
    #: The round's failure, when it failed in this call.
    error: DispatchError | None = None
    #: The answer came from the ledger: an earlier request sent (or is sending) it.
    replayed: bool = False


def to_payload(message: Outgoing) -> dict[str, Any]:
    """The message as the ledger keeps it (JSON: attachment bytes in base64)."""
    return {
        "recipient": message.recipient,
        "content": message.content,
        "subject": message.subject,
        "content_type": message.content_type,
        "metadata": dict(message.metadata),
        "attachments": [
            {
                "filename": a.filename,
                "content_type": a.content_type,
                **({"url": a.url} if a.url else {"data": base64.b64encode(a.data).decode("ascii")}),
            }
            for a in message.attachments
        ],
        "template": (
            {
                "id": message.template.id,
                "variables": dict(message.template.variables),
                "language": message.template.language,
            }
            if message.template is not None
            else None
        ),
        "cc": list(message.cc),
        "bcc": list(message.bcc),
    }


def from_payload(payload: Mapping[str, Any]) -> Outgoing:
    template = payload.get("template")
    return Outgoing(
        recipient=payload["recipient"],
        content=payload.get("content", ""),
        subject=payload.get("subject", ""),
        content_type=payload.get("content_type", ""),
        metadata=dict(payload.get("metadata") or {}),
        attachments=tuple(
            Attachment(
                a["filename"],
                a["content_type"],
                data=base64.b64decode(a["data"]) if "data" in a else b"",
                url=a.get("url", ""),
            )
            for a in payload.get("attachments") or []
        ),
        template=(
            Template(template["id"], template.get("variables") or {}, template.get("language", ""))
            if template
            else None
        ),
        cc=tuple(payload.get("cc") or ()),
        bcc=tuple(payload.get("bcc") or ()),
    )


def _attempt_records(attempts: list[Attempt], routed: Routed | None) -> list[AttemptRecord]:
    now = time.time()
    records = []
    for index, attempt in enumerate(attempts):
        succeeded = routed is not None and index == len(attempts) - 1
        records.append(
            AttemptRecord(
                plugin=attempt.plugin,
                endpoint=attempt.endpoint,
                outcome=attempt.outcome,
                duration_ms=attempt.duration_ms,
                message=attempt.message,
                provider_message_id=routed.provider_message_id if succeeded and routed else "",
                finished_at=now,
            )
        )
    return records


class Delivery:
    """Accepting, sending, resuming and reporting messages through the ledger."""

    def __init__(
        self,
        ledger: Ledger,
        dispatcher: Dispatcher,
        table: Callable[[], RoutingTable],
        settings: RouterSettings,
        metrics: RouterMetrics,
    ) -> None:
        self.ledger, self.dispatcher, self._table = ledger, dispatcher, table
        self.settings, self.metrics = settings, metrics
        self.owner = settings.instance
        self.lease_seconds = settings.deadline_seconds + settings.lease_margin_seconds
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.delivery_workers)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._housekeeping: asyncio.Task[None] | None = None

    @property
    def table(self) -> RoutingTable:
        return self._table()

    # -- lifecycle --

    async def start(self) -> None:
        self._loop = asyncio.create_task(self._work(), name="delivery workers")
        self._housekeeping = asyncio.create_task(self._keep_house(), name="ledger housekeeping")

    async def stop(self) -> None:
        # The loops finish the database call they are in (a call cancelled half-way
        # would leave the driver's thread answering a loop that is gone).
        self._stopping.set()
        self._wake.set()
        self._slot_freed.set()
        for task in (self._loop, self._housekeeping):
            if task is not None:
                await task
        # Rounds in flight finish (each within the deadline); what they leave
        # unfinished stays leased in the ledger and is resumed after the lease.
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.settings.deadline_seconds)

    # -- sending --

    async def send(
        self,
        tenant: str,
        channel: str,
        message: Outgoing,
        idempotency_key: str | None,
        *,
        wait: bool,
    ) -> Outcome:
        """Accept ``message`` into the ledger and, when ``wait``, send it now.

        Raises ``LedgerError`` (``IdempotencyConflict``, ``LedgerUnavailable``)
        before anything is sent.
        """
        table = self.table
        policy = table.delivery_policy(tenant, channel)
        deliver_by = None if wait else time.time() + table.max_delivery_seconds(tenant, channel)
        record, created = await self.ledger.accept(
            NewMessage(
                tenant=tenant,
                channel=channel,
                recipient=message.recipient,
                payload=to_payload(message),
                idempotency_key=idempotency_key,
                policy=policy,
                asynchronous=not wait,
                deliver_by=deliver_by,
            ),
            owner=self.owner if wait else None,
            lease_seconds=self.lease_seconds,
        )
        if created:
            self.metrics.messages.labels(channel, record.state).inc()
            if not wait:
                self._wake.set()
                return Outcome(record)
            return await self._round(record, message)
        return await self._again(record, wait)

    async def _again(self, record: MessageRecord, wait: bool) -> Outcome:
        """A request for a message the ledger already has (same key, same payload)."""
        if wait and record.state in (State.ACCEPTED, State.SENDING):
            record = await self._await_progress(record)
        if (
            wait
            and record.state is State.FAILED
            and record.error_code not in _FINAL_FAILURES
            and record.payload is not None
        ):
            # Every plugin was unavailable last time: a retry is a new round.
            taken = await self.ledger.reclaim(record.id, self.owner, self.lease_seconds)
            if taken is not None and taken.payload is not None:
                return await self._round(taken, from_payload(taken.payload))
        self.metrics.replays.labels(record.channel).inc()
        return Outcome(record, replayed=True)

    async def _await_progress(self, record: MessageRecord) -> MessageRecord:
        """Wait (up to the request deadline) for another request's round of this message."""
        deadline = time.monotonic() + self.settings.deadline_seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            current = await self.ledger.get(record.id)
            if current is not None and current.state not in (State.ACCEPTED, State.SENDING):
                return current
        return await self.ledger.get(record.id) or record

    async def _round(
        self,
        record: MessageRecord,
        message: Outgoing,
        *,
        exclude: frozenset[str] = frozenset(),
        channel: str | None = None,
        resent: bool = False,
        last: bool = False,
    ) -> Outcome:
        """One round of attempts for a message this router holds; record how it ended.

        ``resent``: an earlier round may have reached a provider, so whatever this
        one sends is a possible duplicate. ``last``: no round follows this one, so a
        failure that could be retried ends the message failed, in the failure's words.
        """
        routed: Routed | None = None
        error: DispatchError | None = None
        try:
            routed = await self.dispatcher.send(
                record.tenant,
                channel or record.channel,
                message,
                record.idempotency_key or record.id,
                policy=record.policy,
                exclude=exclude,
                receipt_url=self._receipt_url,
            )
        except DispatchError as failed:
            error = failed
        finish = self._finish_of(record, routed, error, last=last)
        if resent:
            finish = replace(finish, possible_duplicate=True)
        stored = await self.ledger.finish_round(record.id, self.owner, finish)
        if stored is None:
            log.warning(
                "Lost the lease on a message before recording its round",
                extra={"message_id": record.id},
            )
            stored = await self.ledger.get(record.id)
        self.metrics.messages.labels(record.channel, finish.state).inc()
        return Outcome(stored or record, routed, error)

    def _finish_of(
        self,
        record: MessageRecord,
        routed: Routed | None,
        error: DispatchError | None,
        *,
        last: bool = False,
    ) -> Finish:
        if routed is not None:
            route = self.table.plugin(*routed.plugin.split("/", 1))
            return Finish(
                State.SENT,
                attempts=_attempt_records(routed.attempts, routed),
                plugin=routed.plugin,
                provider_message_id=routed.provider_message_id or None,
                provider_ids=[routed.provider_message_id, *routed.part_ids],
                possible_duplicate=routed.possible_duplicate,
                keep_payload=route is not None and route.fallback_window_seconds is not None,
            )
        assert error is not None
        attempts = _attempt_records(error.attempts, None)
        maybe_sent = any(a.outcome in MAYBE_SENT for a in error.attempts)
        if error.code == "UNKNOWN_OUTCOME":
            return Finish(
                State.UNKNOWN,
                attempts,
                error_code=error.code,
                error=error.message,
                keep_payload=True,
            )
        if error.code in _FINAL_FAILURES or not record.asynchronous or last:
            return Finish(
                State.FAILED,
                attempts,
                error_code=error.code,
                error=error.message,
                possible_duplicate=maybe_sent,
                keep_payload=error.code not in _FINAL_FAILURES,
            )
        now = time.time()
        # Never sooner than the provider's retry-after.
        wait = max(
            backoff_seconds(
                max(record.rounds, 1),
                base=self.settings.retry_base_seconds,
                cap=self.settings.retry_max_seconds,
            ),
            error.retry_after or 0.0,
        )
        if record.deliver_by is not None and now + wait > record.deliver_by:
            return Finish(
                State.EXPIRED,
                attempts,
                error_code="EXPIRED",
                error=f"Not delivered within the channel's maxDeliveryTime: {error.message}",
                possible_duplicate=maybe_sent,
                keep_payload=True,
            )
        return Finish(
            State.ACCEPTED,
            attempts,
            error_code=error.code,
            error=error.message,
            possible_duplicate=maybe_sent,
            next_attempt_at=now + wait,
            detail=f"retry in {wait:.1f}s: {error.message}",
        )

    def _receipt_url(self, route: PluginRoute) -> str:
        if not self.settings.public_url:
            return ""
        return f"{self.settings.public_url.rstrip('/')}/v1/receipts/{route.namespace}/{route.name}"

    # -- workers --

    async def _pause(self, seconds: float, event: asyncio.Event | None = None) -> None:
        """Sleep ``seconds``, or less when the router stops or ``event`` (new work) is set."""
        event = event or self._wake
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=seconds)
        event.clear()

    async def _work(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            free = self.settings.delivery_workers - len(self._tasks)
            if free <= 0:  # every worker busy: wait for one, not for the database
                await self._pause(1.0, self._slot_freed)
                continue
            try:
                claimed = await self.ledger.claim_due(self.owner, free, self.lease_seconds)
                failures = 0
            except LedgerError as error:
                failures += 1
                pause = min(2.0**failures, 30.0)
                log.warning(
                    "Could not read due messages from the ledger",
                    extra={"error": str(error), "retry_in_seconds": pause},
                )
                await self._pause(pause)
                continue
            for record in claimed:
                task = asyncio.create_task(self._deliver(record), name=f"deliver {record.id}")
                self._tasks.add(task)
                task.add_done_callback(self._round_done)
            if claimed and len(claimed) == free:
                continue  # more may be due right now
            self._wake.clear()
            if not self._stopping.is_set():
                await self._pause(await self._idle_seconds())

    def _round_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._slot_freed.set()

    async def _idle_seconds(self) -> float:
        """How long the workers may sleep: until the next due message, between 50 ms
        (a due message another replica holds is not polled for in a tight loop) and 1 s."""
        try:
            due = await self.ledger.next_due()
        except LedgerError:
            return 1.0
        if due is None:
            return 1.0
        return min(max(due - time.time(), 0.05), 1.0)

    async def _deliver(self, record: MessageRecord) -> None:
        """Send a claimed message: one round, or a decision for one found mid-send."""
        try:
            if record.payload is None:
                await self.ledger.finish_round(
                    record.id,
                    self.owner,
                    Finish(State.FAILED, error_code="NO_CONTENT", error="The content is gone"),
                )
                return
            if record.recovered and record.policy == AT_MOST_ONCE:
                await self.ledger.finish_round(
                    record.id,
                    self.owner,
                    Finish(
                        State.UNKNOWN,
                        error_code="UNKNOWN_OUTCOME",
                        error="The router sending it stopped mid-send; it may have been "
                        "delivered. The channel is AtMostOnce, so it was not sent again.",
                        keep_payload=True,
                    ),
                )
                self.metrics.messages.labels(record.channel, State.UNKNOWN).inc()
                return
            # Found mid-send: its last attempt may have reached a provider.
            await self._round(record, from_payload(record.payload), resent=record.recovered)
        except LedgerError as error:
            log.warning(
                "Could not record a delivery round; the message stays leased and is resumed",
                extra={"message_id": record.id, "error": str(error)},
            )
        except Exception:
            log.exception("Delivery round failed", extra={"message_id": record.id})

    # -- receipts --

    async def receipt(
        self,
        tenant: str,
        plugin: str,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[ReceiptReply, list[tuple[str, str]]]:
        """Hand a provider callback to the plugin and apply what it verified.

        Returns the plugin's reply (a body the provider expects, if any) and
        (provider message id, outcome) for each receipt.

        Raises ``PluginError`` (``Unauthenticated`` for a bad signature) and
        ``DispatchError`` (no ready endpoint of that plugin).
        """
        route = self.table.plugin(tenant, plugin)
        if route is None:
            raise DispatchError(
                "NO_PLUGIN", f"No CommunicationPlugin {plugin!r} in namespace {tenant!r}."
            )
        endpoints = [e for e in route.endpoints if self.dispatcher.pool.eligible(e)]
        if not endpoints:
            raise DispatchError("NO_ENDPOINT", f"No ready endpoint of {route.id}.")
        client = self.dispatcher.pool.client(endpoints[0])
        reply = await client.handle_receipt(
            method, url, headers, body, timeout=self.settings.deadline_seconds
        )
        applied = []
        for item in reply.receipts:
            state = _RECEIPT_STATES[item.state]
            outcome, record = await self.ledger.apply_receipt(
                route.id, item.provider_message_id, state, item.error or None
            )
            self.metrics.receipts.labels(outcome).inc()
            applied.append((item.provider_message_id, outcome))
            if outcome == "applied" and record is not None and state is State.FAILED:
                self._spawn(self._fall_back(record, route))
        return reply, applied

    async def _fall_back(self, record: MessageRecord, route: PluginRoute) -> None:
        """Send a message whose delivery failed again: the next plugin, or the fallback channel."""
        window = route.fallback_window_seconds
        if window is None or record.payload is None:
            return
        sent_at = next(
            (e.at for e in reversed(await self.ledger.history(record.id)) if e.state is State.SENT),
            None,
        )
        if sent_at is None or time.time() - sent_at > window:
            return
        taken = await self.ledger.reclaim(record.id, self.owner, self.lease_seconds)
        if taken is None or taken.payload is None:
            return
        channel = route.fallback_channel
        exclude = frozenset() if channel else frozenset({route.id})
        log.info(
            "Sending a message again after a failed-delivery receipt",
            extra={"message_id": record.id, "plugin": route.id, "channel": channel},
        )
        await self._round(taken, from_payload(taken.payload), exclude=exclude, channel=channel)

    async def replay(self, record: MessageRecord) -> Outcome:
        """Send a finished message again as a new round of the same message."""
        if record.state not in (State.FAILED, State.UNKNOWN, State.EXPIRED):
            raise ReplayRefused(
                f"Message {record.id} is {record.state}: only failed, unknown or expired "
                "messages can be replayed."
            )
        if record.payload is None:
            raise ReplayRefused(
                f"Message {record.id} has no content left to send (it was sent, or its "
                "content was erased); only unfinished, failed, unknown or expired messages "
                "keep it."
            )
        taken = await self.ledger.reclaim(
            record.id,
            self.owner,
            self.lease_seconds,
            possible_duplicate=record.state is State.UNKNOWN,
        )
        if taken is None or taken.payload is None:
            raise ReplayRefused(f"Message {record.id} is being sent by a router right now.")
        # Past its maxDeliveryTime, a replay is one more round and no retries: its
        # failure is the provider's (or the channel's), not "expired" once again.
        overdue = taken.deliver_by is not None and taken.deliver_by <= time.time()
        return await self._round(taken, from_payload(taken.payload), last=overdue)

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- housekeeping --

    async def _keep_house(self) -> None:
        """Purge old finished messages and publish the ledger's gauges, every 15 seconds."""
        while not self._stopping.is_set():
            try:
                counts = await self.ledger.state_counts()
                for state in State:
                    self.metrics.ledger_messages.labels(state).set(counts.get(state, 0))
                oldest = await self.ledger.oldest_unfinished()
                self.metrics.oldest_unfinished.set(time.time() - oldest if oldest else 0)
                retention = self.settings.ledger_retention_days * 86400
                await self.ledger.purge(finished_before=time.time() - retention)
            except LedgerError as error:
                log.warning("Ledger housekeeping failed", extra={"error": str(error)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=15)


class ReplayRefused(Exception):
    """A replay that cannot be done (no content, or a state that does not allow it)."""


__all__ = ["Delivery", "Outcome", "ReplayRefused", "from_payload", "to_payload"]
