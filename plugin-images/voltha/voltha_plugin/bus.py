"""VOLTHA's event bus: ONU and OLT alarms and KPIs, consumed from Kafka as VOLTHA publishes them.

VOLTHA's adapters publish ``voltha.Event`` messages (``voltha_protos.events_pb2``)
on the topic ``voltha.events``: device events such as
``ONU_LOSS_OF_SIGNAL_RAISE_EVENT`` or ``ONU_DYING_GASP_EVENT`` (each raise has
a matching ``..._CLEAR_EVENT``), and KPI events whose slices carry a group of
metrics for one device, such as ``PON_Optical`` (``transmit_power_dBm``,
``receive_power_dBm``). Device events go into the alarm log; the newest KPIs
of each device and group are kept for ``get_kpis``.

The consumer joins a consumer group, so a restarted plugin carries on from
the last offset the group committed; a first start reads from the newest
message (``start_from: earliest``: from the oldest the broker keeps).
aiokafka reconnects by itself while the broker is away; if the consumer
cannot start at all it is tried again with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from google.protobuf.message import DecodeError
from voltha_protos import events_pb2

from switchboard.sdk import Backoff

from .alarms import AlarmLog, entry

DEFAULT_TOPIC: Final = "voltha.events"
#: Device event names (without _RAISE_EVENT/_CLEAR_EVENT) by the severity of their raise.
_SEVERITY_BY_NAME: Final = (
    ("DYING_GASP", "critical"),
    ("LOSS_OF_SIGNAL", "major"),
    ("_LOS", "major"),
    ("SIGNALS_FAIL", "major"),
    ("LOSS_OF", "major"),
    ("SIGNAL_DEGRADE", "minor"),
    ("OPTICAL", "minor"),
    ("POWER", "minor"),
)


@dataclass(frozen=True)
class BusSettings:
    bootstrap_servers: str
    topic: str
    group_id: str
    #: Where a group with no committed offset starts: "latest" or "earliest".
    start_from: str = "latest"


def from_device_event(event: events_pb2.Event) -> dict[str, Any]:
    """The alarm log entry of one device event from the bus."""
    device_event = event.device_event
    name = device_event.device_event_name
    clear = name.endswith("_CLEAR_EVENT")
    severity = "info" if clear else _severity(name)
    context: Mapping[str, str] = device_event.context
    return entry(
        kind="voltha_event",
        alarm=not clear,
        severity=severity,
        device_id=context.get("onu-device-id") or device_event.resource_id,
        description=device_event.description or name,
        details={
            "event": name,
            "cleared": clear,
            "category": events_pb2.EventCategory.Types.Name(event.header.category),
            "sub_category": events_pb2.EventSubCategory.Types.Name(event.header.sub_category),
            "resource_id": device_event.resource_id,
            "raised_at": _iso(event.header.raised_ts.ToDatetime(tzinfo=UTC))
            if event.header.HasField("raised_ts")
            else None,
            "context": dict(context),
        },
    )


def kpis_of(event: events_pb2.Event) -> list[dict[str, Any]]:
    """The metric groups of one KPI event, one entry per device and group."""
    found = []
    for info in event.kpi_event2.slice_data:
        meta = info.metadata
        found.append(
            {
                "device_id": meta.device_id,
                "serial_number": meta.serial_no,
                "group": meta.title,
                "at": _iso(datetime.fromtimestamp(meta.ts or event.kpi_event2.ts, UTC)),
                "metrics": {name: round(value, 4) for name, value in sorted(info.metrics.items())},
            }
        )
    return found


def _severity(name: str) -> str:
    for part, severity in _SEVERITY_BY_NAME:
        if part in name:
            return severity
    return "warning"


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventBus:
    """Consumes ``voltha.events``; see the module docstring."""

    def __init__(self, settings: BusSettings, log: AlarmLog, logger: logging.Logger) -> None:
        self.settings = settings
        self.log = log
        self.logger = logger
        self.connected = False
        #: The newest metrics, by (device id, group).
        self.kpis: dict[tuple[str, str], dict[str, Any]] = {}

    async def run(self) -> None:
        backoff = Backoff(0.5, 30.0)
        while True:
            consumer = AIOKafkaConsumer(
                self.settings.topic,
                bootstrap_servers=self.settings.bootstrap_servers,
                group_id=self.settings.group_id,
                auto_offset_reset=self.settings.start_from,
                enable_auto_commit=True,
            )
            try:
                await consumer.start()
                self.connected = True
                backoff.reset()
                self.logger.info(
                    "Consuming VOLTHA events",
                    extra={
                        "topic": self.settings.topic,
                        "servers": self.settings.bootstrap_servers,
                    },
                )
                async for message in consumer:
                    await self.handle(message.value)
            except KafkaError as error:
                self.logger.warning(
                    "VOLTHA's event bus is unavailable", extra={"error": str(error)}
                )
            finally:
                self.connected = False
                await consumer.stop()
            await asyncio.sleep(backoff.next())

    async def handle(self, payload: bytes | None) -> None:
        event = events_pb2.Event()
        try:
            event.ParseFromString(payload or b"")
        except DecodeError:
            self.logger.warning("Skipped a message that is not a voltha.Event")
            return
        which = event.WhichOneof("event_type")
        if which == "device_event":
            await self.log.append(from_device_event(event))
        elif which == "kpi_event2":
            for kpi in kpis_of(event):
                self.kpis[(kpi["device_id"], kpi["group"])] = kpi
