"""The VOLTHA plugin consumes ONU alarms and KPIs from VOLTHA's event bus: a real Kafka broker.

The messages are ``voltha.Event`` protobufs (``voltha_protos.events_pb2``),
published on ``voltha.events`` the way VOLTHA's adapters publish them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from voltha_protos import events_pb2

from switchboard.sdk import PermanentError, PluginClient, serve_plugin
from tests.sdk.harness import eventually
from tests.vendor.kafka import KafkaBroker
from tests.vendor.test_voltha import VOLTHA_PLUGIN, plugin_config, write_secrets
from tests.vendor.voltha_core import VolthaServer

ONU_ID = "5c1b6f0e-onu-0001"
OLT_ID = "0a5e11c2-olt-0001"


def device_event(name: str, description: str) -> bytes:
    event = events_pb2.Event(
        header=events_pb2.EventHeader(
            id=f"Voltha.openolt.{name}.{time.time_ns()}",
            category=events_pb2.EventCategory.COMMUNICATION,
            sub_category=events_pb2.EventSubCategory.ONU,
            type=events_pb2.EventType.DEVICE_EVENT,
            type_version="0.1",
        ),
        device_event=events_pb2.DeviceEvent(
            resource_id=OLT_ID,
            device_event_name=name,
            description=description,
            context={
                "onu-device-id": ONU_ID,
                "serial-number": "BBSM000a0001",
                "intf-id": "0",
                "onu-id": "1",
            },
        ),
    )
    event.header.raised_ts.GetCurrentTime()
    return event.SerializeToString()


def optical_kpis(rx_dbm: float, tx_dbm: float) -> bytes:
    now = time.time()
    event = events_pb2.Event(
        header=events_pb2.EventHeader(type=events_pb2.EventType.KPI_EVENT2, type_version="0.1"),
        kpi_event2=events_pb2.KpiEvent2(
            type=events_pb2.KpiEventType.slice,
            ts=now,
            slice_data=[
                events_pb2.MetricInformation(
                    metadata=events_pb2.MetricMetaData(
                        title="PON_Optical", ts=now, device_id=ONU_ID, serial_no="BBSM000a0001"
                    ),
                    metrics={"receive_power_dBm": rx_dbm, "transmit_power_dBm": tx_dbm},
                )
            ],
        ),
    )
    return event.SerializeToString()


@pytest.fixture
async def producer(kafka: KafkaBroker) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def test_onu_alarms_and_kpis_arrive_from_the_event_bus(
    kafka: KafkaBroker,
    producer: AIOKafkaProducer,
    voltha_server: VolthaServer,
    tmp_path: Path,
) -> None:
    topic = f"voltha.events.{time.time_ns()}"
    for payload in (
        device_event("ONU_LOSS_OF_SIGNAL_RAISE_EVENT", "ONU lost signal"),
        device_event("ONU_DYING_GASP_EVENT", "ONU dying gasp"),
        device_event("ONU_LOSS_OF_SIGNAL_CLEAR_EVENT", "ONU signal restored"),
        optical_kpis(-21.5, 2.25),
    ):
        await producer.send_and_wait(topic, payload)
    config = plugin_config(
        voltha_server,
        kafka={
            "bootstrap_servers": kafka.bootstrap_servers,
            "topic": topic,
            "group_id": topic,
            # A new group reads what was published before it joined.
            "start_from": "earliest",
        },
    )
    async with (
        serve_plugin(
            VOLTHA_PLUGIN,
            config=config,
            secrets_dir=write_secrets(tmp_path / "secrets"),
            secrets_poll_interval=None,
        ) as server,
        PluginClient(server.address) as client,
    ):

        async def three_events() -> bool:
            alarms = await client.invoke("get_alarms", {"device_id": ONU_ID})
            return len([a for a in alarms["alarms"] if a["kind"] == "voltha_event"]) == 3

        await eventually(three_events, within=60, what="the ONU's events in the alarm log")
        assert (await client.invoke("get_alarms"))["event_bus_connected"] is True

        alarms = [
            a
            for a in (await client.invoke("get_alarms", {"device_id": ONU_ID}))["alarms"]
            if a["kind"] == "voltha_event"
        ]
        by_event = {a["details"]["event"]: a for a in alarms}
        los = by_event["ONU_LOSS_OF_SIGNAL_RAISE_EVENT"]
        assert (los["severity"], los["alarm"], los["description"]) == (
            "major",
            True,
            "ONU lost signal",
        )
        assert los["details"]["context"]["serial-number"] == "BBSM000a0001"
        assert los["details"]["sub_category"] == "ONU"
        gasp = by_event["ONU_DYING_GASP_EVENT"]
        assert (gasp["severity"], gasp["alarm"]) == ("critical", True)
        cleared = by_event["ONU_LOSS_OF_SIGNAL_CLEAR_EVENT"]
        assert (cleared["severity"], cleared["alarm"], cleared["details"]["cleared"]) == (
            "info",
            False,
            True,
        )
        critical = await client.invoke("get_alarms", {"min_severity": "critical"})
        assert "ONU_DYING_GASP_EVENT" in {a["details"].get("event") for a in critical["alarms"]}

        async def optical() -> bool:
            kpis = await client.invoke("get_kpis", {"device_id": ONU_ID, "group": "PON_Optical"})
            return bool(kpis["kpis"])

        await eventually(optical, within=30, what="the optical power KPIs")
        [kpi] = (await client.invoke("get_kpis", {"group": "PON_Optical"}))["kpis"]
        assert kpi["metrics"] == {"receive_power_dBm": -21.5, "transmit_power_dBm": 2.25}
        assert (kpi["device_id"], kpi["serial_number"]) == (ONU_ID, "BBSM000a0001")


async def test_kpis_need_the_event_bus_configured(
    voltha_server: VolthaServer, tmp_path: Path
) -> None:
    async with (
        serve_plugin(
            VOLTHA_PLUGIN,
            config=plugin_config(voltha_server),
            secrets_dir=write_secrets(tmp_path / "secrets"),
            secrets_poll_interval=None,
        ) as server,
        PluginClient(server.address) as client,
    ):
        with pytest.raises(PermanentError, match=r"no event bus configured: set config\.kafka"):
            await client.invoke("get_kpis")
