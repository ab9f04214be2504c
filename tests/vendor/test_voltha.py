"""The VOLTHA plugin, served by the real SDK runtime, against a VOLTHA core stand-in over gRPC.

Every test drives the plugin the way the router does (``PluginClient.invoke``
over gRPC) and checks the outcome both in the plugin's answers and in the
stand-in core's state (``tests/vendor/voltha_core.py``).
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from voltha_protos import openflow_13_pb2

from switchboard.sdk import (
    InvalidInput,
    PermanentError,
    PluginClient,
    RetryableError,
    Unauthenticated,
    serve_plugin,
)
from tests.sdk.harness import eventually
from tests.vendor.conftest import OLT_ADDRESS, PASSWORD, USERNAME
from tests.vendor.voltha_core import (
    ADMIN,
    NNI_PORT_NO,
    ONU_TYPE,
    OPER,
    UNI_PORT_NO,
    VolthaCore,
    VolthaServer,
    pon_port_no,
)

VOLTHA_PLUGIN = Path(__file__).resolve().parents[2] / "plugin-images" / "voltha"
OFP = openflow_13_pb2


@dataclass
class Voltha:
    core: VolthaCore
    server: VolthaServer
    client: PluginClient

    async def invoke(self, operation: str, params: dict[str, Any] | None = None) -> Any:
        return await self.client.invoke(operation, params or {})

    async def status(self, device_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.invoke("get_device_status", {"device_id": device_id})
        return result

    async def active_olt(self) -> str:
        """Provision the OLT, wait until it is ACTIVE and its ONUs are discovered."""
        olt = (await self.invoke("provision_olt", {"host_and_port": OLT_ADDRESS}))["device"]
        await eventually(
            lambda: len(self.core.devices) == 4, within=10, what="OLT active, 3 ONUs discovered"
        )
        return str(olt["id"])

    async def active_onu(self, olt_id: str, serial: str, pon_index: int = 0) -> None:
        await self.invoke(
            "provision_onu",
            {"olt_device_id": olt_id, "pon_port": pon_port_no(pon_index), "serial_number": serial},
        )

        async def onu_active() -> bool:
            found = await self.invoke("discover_devices", {"filters": {"serial_number": serial}})
            return bool(found["devices"]) and found["devices"][0]["oper_status"] == "ACTIVE"

        await eventually(onu_active, within=10, what=f"ONU {serial} ACTIVE")


def write_secrets(directory: Path, username: str = USERNAME, password: str = PASSWORD) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "VOLTHA_USERNAME").write_text(username)
    (directory / "VOLTHA_PASSWORD").write_text(password)
    return directory


def plugin_config(server: VolthaServer, **extra: Any) -> dict[str, Any]:
    return {
        "voltha_host": "127.0.0.1",
        "voltha_port": server.port,
        "device_monitoring_interval": 0.2,
        "request_timeout": 3,
        **extra,
    }


@pytest.fixture
async def voltha(
    core: VolthaCore, voltha_server: VolthaServer, tmp_path: Path
) -> AsyncIterator[Voltha]:
    async with (
        serve_plugin(
            VOLTHA_PLUGIN,
            config=plugin_config(voltha_server),
            secrets_dir=write_secrets(tmp_path / "secrets"),
            secrets_poll_interval=None,
        ) as server,
        PluginClient(server.address, timeout=10) as client,
    ):
        yield Voltha(core, voltha_server, client)


# --- devices --------------------------------------------------------------------------


async def test_provisioned_olt_goes_from_preprovisioned_to_active(voltha: Voltha) -> None:
    result = await voltha.invoke("provision_olt", {"host_and_port": OLT_ADDRESS})

    assert result["created"] is True
    olt = result["device"]
    assert (olt["type"], olt["host_and_port"], olt["root"]) == ("openolt", OLT_ADDRESS, True)
    assert olt["admin_state"] == "ENABLED"
    assert olt["oper_status"] in ("ACTIVATING", "ACTIVE")
    calls = [rpc for rpc, _ in voltha.core.calls]
    assert calls.index("CreateDevice") < calls.index("EnableDevice")

    async def olt_active() -> bool:
        return (await voltha.status(olt["id"]))["oper_status"] == "ACTIVE"

    await eventually(olt_active, within=10, what="OLT ACTIVE")
    status = await voltha.status(olt["id"])
    assert status["connect_status"] == "REACHABLE"
    assert {(port["type"], port["port_no"]) for port in status["ports"]} == {
        ("ETHERNET_NNI", NNI_PORT_NO),
        ("PON_OLT", pon_port_no(0)),
        ("PON_OLT", pon_port_no(1)),
    }
    await eventually(lambda: len(voltha.core.devices) == 4, within=10, what="ONUs discovered")
    topology = await voltha.invoke("get_topology")
    [logical] = topology["logical_devices"]
    assert logical["root_device_id"] == olt["id"]
    assert [port["port_no"] for port in logical["ports"] if port["root_port"]] == [NNI_PORT_NO]
    [olt_tree] = topology["olts"]
    onus_by_pon = {
        pon["label"]: [o["serial_number"] for o in pon["onus"]] for pon in olt_tree["pon_ports"]
    }
    assert onus_by_pon == {"pon-0": ["BBSM000a0001", "BBSM000a0002"], "pon-1": ["ALPHe3d1cfde"]}


async def test_provisioning_the_same_olt_again_reuses_it(voltha: Voltha) -> None:
    first = await voltha.invoke("provision_olt", {"host_and_port": OLT_ADDRESS})
    second = await voltha.invoke("provision_olt", {"host_and_port": OLT_ADDRESS})

    assert second["created"] is False
    assert second["device"]["id"] == first["device"]["id"]
    assert [d.id for d in voltha.core.devices.values() if d.root] == [first["device"]["id"]]


async def test_olt_left_preprovisioned_when_not_enabled(voltha: Voltha) -> None:
    result = await voltha.invoke(
        "provision_olt", {"host_and_port": OLT_ADDRESS, "type": "adtran_olt", "enable": False}
    )

    assert (result["device"]["type"], result["device"]["admin_state"]) == (
        "adtran_olt",
        "PREPROVISIONED",
    )
    assert "EnableDevice" not in [rpc for rpc, _ in voltha.core.calls]


async def test_onu_is_provisioned_enabled_and_disabled_by_serial_number(voltha: Voltha) -> None:
    olt_id = await voltha.active_olt()
    discovered = await voltha.invoke("discover_devices", {"filters": {"root": "false"}})
    assert {d["serial_number"]: d["oper_status"] for d in discovered["devices"]} == {
        "BBSM000a0001": "DISCOVERED",
        "BBSM000a0002": "DISCOVERED",
        "ALPHe3d1cfde": "DISCOVERED",
    }

    provisioned = await voltha.invoke(
        "provision_onu",
        {"olt_device_id": olt_id, "pon_port": pon_port_no(0), "serial_number": "BBSM000a0001"},
    )
    assert provisioned["state"] == "enabled"
    assert provisioned["device"]["admin_state"] == "ENABLED"
    await voltha.active_onu(olt_id, "BBSM000a0001")
    onu = voltha.core.device_by_serial("BBSM000a0001")
    assert onu is not None
    logical = voltha.core.logical_device_of(olt_id)
    assert logical is not None
    assert onu.id in {port.device_id for port in voltha.core.logical_ports[logical.id]}

    disabled = await voltha.invoke("disable_onu", {"serial_number": "BBSM000a0001"})
    assert disabled["device"]["admin_state"] == "DISABLED"
    assert (await voltha.status(onu.id))["oper_status"] == "UNKNOWN"

    enabled = await voltha.invoke("enable_onu", {"serial_number": "BBSM000a0001"})
    assert enabled["device"]["admin_state"] == "ENABLED"
    await eventually(
        lambda: voltha.core.devices[onu.id].oper_status == OPER.ACTIVE,
        within=10,
        what="ONU ACTIVE again",
    )
    others = await voltha.invoke("discover_devices", {"filters": {"oper_status": "DISCOVERED"}})
    assert {d["serial_number"] for d in others["devices"]} == {"BBSM000a0002", "ALPHe3d1cfde"}


async def test_onu_on_the_wrong_pon_port_or_unknown_serial_is_refused(voltha: Voltha) -> None:
    olt_id = await voltha.active_olt()

    with pytest.raises(InvalidInput, match="PON port"):
        await voltha.invoke(
            "provision_onu",
            {"olt_device_id": olt_id, "pon_port": pon_port_no(1), "serial_number": "BBSM000a0001"},
        )
    with pytest.raises(InvalidInput, match=r"params\.pon_port: OLT .* has no PON port 7"):
        await voltha.invoke(
            "provision_onu",
            {"olt_device_id": olt_id, "pon_port": 7, "serial_number": "BBSM000a0001"},
        )
    with pytest.raises(PermanentError, match="no ONU with serial number ZZZZ00000000"):
        await voltha.invoke("enable_onu", {"serial_number": "ZZZZ00000000"})
    pending = await voltha.invoke(
        "provision_onu",
        {"olt_device_id": olt_id, "pon_port": pon_port_no(1), "serial_number": "ZZZZ00000001"},
    )
    assert (pending["state"], pending["device"]) == ("awaiting_discovery", None)


async def test_unknown_device_is_a_permanent_error(voltha: Voltha) -> None:
    with pytest.raises(PermanentError, match="device no-such-id is not known to VOLTHA"):
        await voltha.invoke("get_device_status", {"device_id": "no-such-id"})
    with pytest.raises(PermanentError, match="not known to VOLTHA"):
        await voltha.invoke("reboot_device", {"device_id": "no-such-id"})


async def test_reboot_and_delete_an_olt(voltha: Voltha) -> None:
    olt_id = await voltha.active_olt()

    assert (await voltha.invoke("reboot_device", {"device_id": olt_id}))["rebooting"] is True
    assert voltha.core.devices[olt_id].oper_status == OPER.REBOOTED
    await eventually(
        lambda: voltha.core.devices[olt_id].oper_status == OPER.ACTIVE,
        within=10,
        what="OLT back ACTIVE",
    )

    assert (await voltha.invoke("delete_device", {"device_id": olt_id}))["deleted"] is True
    assert voltha.core.devices == {}
    assert voltha.core.logical_devices == {}
    assert (await voltha.invoke("list_devices"))["olts"] == []


async def test_inventory_lists_olts_with_their_onus_and_ports(voltha: Voltha) -> None:
    olt_id = await voltha.active_olt()

    inventory = await voltha.invoke("list_devices", {"include_ports": True})

    [olt] = inventory["olts"]
    assert olt["id"] == olt_id
    assert len(olt["ports"]) == 3
    assert sorted(onu["serial_number"] for onu in olt["onus"]) == [
        "ALPHe3d1cfde",
        "BBSM000a0001",
        "BBSM000a0002",
    ]
    assert inventory["count"] == 4


async def test_an_olt_and_a_pon_port_are_disabled_and_enabled_again(voltha: Voltha) -> None:
    olt_id = await voltha.active_olt()
    await voltha.active_onu(olt_id, "BBSM000a0001")
    onu = voltha.core.device_by_serial("BBSM000a0001")
    assert onu is not None

    port = await voltha.invoke("disable_port", {"device_id": olt_id, "port_no": pon_port_no(0)})

    assert (port["port"]["admin_state"], port["port"]["oper_status"]) == ("DISABLED", "UNKNOWN")
    assert (await voltha.status(onu.id))["connect_status"] == "UNREACHABLE"
    await voltha.invoke("enable_port", {"device_id": olt_id, "port_no": pon_port_no(0)})
    assert (await voltha.status(onu.id))["oper_status"] == "ACTIVE"
    with pytest.raises(InvalidInput, match=r"params\.port_no: device .* has no port 7"):
        await voltha.invoke("disable_port", {"device_id": olt_id, "port_no": 7})

    disabled = await voltha.invoke("disable_device", {"device_id": olt_id})
    assert disabled["device"]["admin_state"] == "DISABLED"
    assert voltha.core.devices[olt_id].admin_state == ADMIN.DISABLED
    enabled = await voltha.invoke("enable_device", {"device_id": olt_id})
    assert enabled["device"]["admin_state"] == "ENABLED"
    await eventually(
        lambda: voltha.core.devices[olt_id].oper_status == OPER.ACTIVE,
        within=10,
        what="OLT ACTIVE again",
    )
    # Enabling what is enabled is no error (retry-safe), and calls no EnableDevice.
    calls = [rpc for rpc, _ in voltha.core.calls].count("EnableDevice")
    await voltha.invoke("enable_device", {"device_id": olt_id})
    assert [rpc for rpc, _ in voltha.core.calls].count("EnableDevice") == calls


async def test_adapters_and_components_are_listed(voltha: Voltha) -> None:
    adapters = await voltha.invoke("list_adapters")
    components = await voltha.invoke("list_components")

    assert [(a["id"], a["type"], a["device_types"]) for a in adapters["adapters"]] == [
        ("adapter-open-olt", "openolt", ["openolt"]),
        ("adapter-open-onu", ONU_TYPE, [ONU_TYPE]),
    ]
    assert adapters["adapters"][0]["endpoint"] == "adapter-open-olt.voltha.svc:50060"
    assert components["version"] == voltha.core.version
    assert components["core_instances"] == [
        {"instance_id": "rw-core-1", "health": "HEALTHY"},
        {"instance_id": "rw-core-2", "health": "HEALTHY"},
    ]
    assert [a["version"] for a in components["adapters"]] == ["4.4.10", "2.11.6"]


# --- configuration and metrics --------------------------------------------------------


async def test_pm_configs_and_address_are_updated(voltha: Voltha) -> None:
    olt_id = await voltha.active_olt()

    result = await voltha.invoke(
        "configure_device",
        {
            "device_id": olt_id,
            "settings": {
                "host_and_port": "10.90.0.12:9191",
                "pm_configs": {
                    "default_freq": 300,
                    "freq_override": True,
                    "metrics": {"rx_bytes": {"enabled": False}, "tx_bytes": {"sample_freq": 50}},
                },
            },
        },
    )

    assert result["device"]["host_and_port"] == "10.90.0.12:9191"
    assert voltha.core.devices[olt_id].host_and_port == "10.90.0.12:9191"
    stored = voltha.core.pm_configs[olt_id]
    assert (stored.default_freq, stored.freq_override) == (300, True)
    by_name = {metric.name: metric for metric in stored.metrics}
    assert by_name["rx_bytes"].enabled is False
    assert by_name["tx_bytes"].sample_freq == 50
    assert by_name["rx_packets"].enabled is True
    assert result["pm_configs"]["default_freq"] == 300
    with pytest.raises(InvalidInput, match=r"params.settings.pm_configs.metrics.nope: .*no such"):
        await voltha.invoke(
            "configure_device",
            {
                "device_id": olt_id,
                "settings": {"pm_configs": {"metrics": {"nope": {"enabled": True}}}},
            },
        )


async def test_pm_groups_of_an_onu_are_updated(voltha: Voltha) -> None:
    olt_id = await voltha.active_olt()
    await voltha.active_onu(olt_id, "BBSM000a0002")
    onu = voltha.core.device_by_serial("BBSM000a0002")
    assert onu is not None

    await voltha.invoke(
        "configure_device",
        {
            "device_id": onu.id,
            "settings": {"pm_configs": {"groups": {"PON_Optical": {"group_freq": 60}}}},
        },
    )

    groups = {group.group_name: group for group in voltha.core.pm_configs[onu.id].groups}
    assert groups["PON_Optical"].group_freq == 60
    assert groups["UNI_Status"].group_freq == 600


async def test_metrics_report_pm_configs_and_port_counters(voltha: Voltha) -> None:
    olt_id = await voltha.active_olt()
    voltha.core.add_traffic(olt_id, NNI_PORT_NO, rx_packets=1200, rx_bytes=900_000, tx_errors=3)
    voltha.core.add_traffic(olt_id, pon_port_no(0), rx_packets=34)

    metrics = await voltha.invoke("collect_metrics", {"device_id": olt_id})

    [device] = metrics["devices"]
    assert device["totals"]["rx_packets"] == 1234
    assert device["totals"]["rx_bytes"] == 900_000
    assert device["totals"]["tx_errors"] == 3
    assert {metric["name"] for metric in device["pm_configs"]["metrics"]} >= {"rx_bytes"}
    only = await voltha.invoke("collect_metrics", {"device_id": olt_id, "names": ["rx_packets"]})
    assert only["devices"][0]["totals"] == {"rx_packets": 1234}


# --- subscriber flows -----------------------------------------------------------------


def _fields(flow: openflow_13_pb2.ofp_flow_stats) -> dict[str, int]:
    return {
        OFP.oxm_ofb_field_types.Name(field.ofb_field.type): getattr(
            field.ofb_field, str(field.ofb_field.WhichOneof("value"))
        )
        for field in flow.match.oxm_fields
    }


def _actions(flow: openflow_13_pb2.ofp_flow_stats) -> list[str]:
    [instruction] = flow.instructions
    assert instruction.type == OFP.OFPIT_APPLY_ACTIONS
    return [OFP.ofp_action_type.Name(action.type) for action in instruction.actions.actions]


async def test_subscriber_flows_are_added_to_and_removed_from_the_logical_device(
    voltha: Voltha,
) -> None:
    olt_id = await voltha.active_olt()
    await voltha.active_onu(olt_id, "BBSM000a0001")
    await voltha.active_onu(olt_id, "BBSM000a0002")
    logical = voltha.core.logical_device_of(olt_id)
    assert logical is not None
    subscriber = {"olt_device_id": olt_id, "c_tag": 101, "s_tag": 900}

    added = await voltha.invoke(
        "add_subscriber_flow",
        {**subscriber, "onu_serial_number": "BBSM000a0001", "subscriber_id": "sub-1"},
    )
    await voltha.invoke(
        "add_subscriber_flow",
        {**subscriber, "onu_serial_number": "BBSM000a0002", "subscriber_id": "sub-2", "c_tag": 102},
    )

    flows = voltha.core.flows[logical.id]
    assert len(flows) == 4
    uni_port = added["flows"][0]["in_port"]
    upstream = next(f for f in flows if _fields(f).get("OFPXMT_OFB_IN_PORT") == uni_port)
    assert _fields(upstream) == {
        "OFPXMT_OFB_IN_PORT": uni_port,
        "OFPXMT_OFB_VLAN_VID": 101 | 0x1000,
    }
    assert _actions(upstream) == ["OFPAT_PUSH_VLAN", "OFPAT_SET_FIELD", "OFPAT_OUTPUT"]
    assert upstream.instructions[0].actions.actions[2].output.port == NNI_PORT_NO
    downstream = next(
        f for f in flows if f.cookie == upstream.cookie and f is not upstream and f != upstream
    )
    assert _fields(downstream) == {
        "OFPXMT_OFB_IN_PORT": NNI_PORT_NO,
        "OFPXMT_OFB_VLAN_VID": 900 | 0x1000,
        "OFPXMT_OFB_METADATA": (101 << 32) | uni_port,
    }
    assert _actions(downstream) == ["OFPAT_POP_VLAN", "OFPAT_OUTPUT"]
    assert downstream.instructions[0].actions.actions[1].output.port == uni_port
    assert int(added["cookie"], 16) == upstream.cookie

    # Adding the same subscriber again replaces its flows rather than duplicating them.
    await voltha.invoke(
        "add_subscriber_flow",
        {**subscriber, "onu_serial_number": "BBSM000a0001", "subscriber_id": "sub-1"},
    )
    assert len(voltha.core.flows[logical.id]) == 4

    removed = await voltha.invoke(
        "remove_subscriber_flow", {"olt_device_id": olt_id, "subscriber_id": "sub-1"}
    )
    assert removed["removed"] == 2
    remaining = voltha.core.flows[logical.id]
    assert len(remaining) == 2
    assert all(flow.cookie != upstream.cookie for flow in remaining)
    topology = await voltha.invoke("get_topology", {"include_flows": True})
    assert topology["logical_devices"][0]["flow_count"] == 2


async def test_the_flow_view_reads_vlans_and_actions(voltha: Voltha) -> None:
    olt_id = await voltha.active_olt()
    await voltha.active_onu(olt_id, "BBSM000a0001")
    added = await voltha.invoke(
        "add_subscriber_flow",
        {
            "olt_device_id": olt_id,
            "onu_serial_number": "BBSM000a0001",
            "subscriber_id": "sub-1",
            "c_tag": 101,
            "s_tag": 900,
        },
    )
    uni = added["flows"][0]["in_port"]

    flows = (await voltha.invoke("list_flows", {"olt_device_id": olt_id}))["flows"]

    by_direction = {flow["match"]["in_port"]: flow for flow in flows}
    upstream, downstream = by_direction[uni], by_direction[NNI_PORT_NO]
    assert upstream["match"] == {"in_port": uni, "vlan_vid": 101}
    assert upstream["actions"] == [
        {"push_vlan": "0x8100"},
        {"set_vlan_vid": 900},
        {"output": NNI_PORT_NO},
    ]
    assert downstream["match"] == {
        "in_port": NNI_PORT_NO,
        "vlan_vid": 900,
        "metadata": hex((101 << 32) | uni),
    }
    assert downstream["actions"] == [{"pop_vlan": True}, {"output": uni}]
    assert upstream["cookie"] == downstream["cookie"] == added["cookie"]
    topology = await voltha.invoke("get_topology", {"include_flows": True})
    assert topology["logical_devices"][0]["flows"] == flows


async def test_flows_need_an_active_onu(voltha: Voltha) -> None:
    olt_id = await voltha.active_olt()

    with pytest.raises(PermanentError, match="has no UNI port"):
        await voltha.invoke(
            "add_subscriber_flow",
            {
                "olt_device_id": olt_id,
                "onu_serial_number": "BBSM000a0001",
                "subscriber_id": "sub-1",
                "c_tag": 101,
                "s_tag": 900,
            },
        )


async def test_only_the_subscribers_own_uni_port_is_accepted(voltha: Voltha) -> None:
    olt_id = await voltha.active_olt()
    await voltha.active_onu(olt_id, "BBSM000a0001")
    await voltha.active_onu(olt_id, "BBSM000a0002")
    logical = voltha.core.logical_device_of(olt_id)
    assert logical is not None
    ports = voltha.core.logical_ports[logical.id]
    other_onu = voltha.core.device_by_serial("BBSM000a0002")
    assert other_onu is not None
    other_uni = next(p.ofp_port.port_no for p in ports if p.device_id == other_onu.id)
    subscriber = {
        "olt_device_id": olt_id,
        "onu_serial_number": "BBSM000a0001",
        "subscriber_id": "sub-1",
        "c_tag": 101,
        "s_tag": 900,
    }

    with pytest.raises(
        InvalidInput, match=r"params\.uni_port: .* not a UNI port of ONU BBSM000a0001"
    ):
        await voltha.invoke("add_subscriber_flow", {**subscriber, "uni_port": other_uni})
    with pytest.raises(
        InvalidInput, match=r"params\.uni_port: .* not a UNI port of ONU BBSM000a0001"
    ):
        await voltha.invoke("add_subscriber_flow", {**subscriber, "uni_port": NNI_PORT_NO})

    assert voltha.core.flows[logical.id] == []
    own_uni = next(
        p.ofp_port.port_no
        for p in ports
        if p.device_id == voltha.core.device_by_serial("BBSM000a0001").id  # type: ignore[union-attr]
    )
    added = await voltha.invoke("add_subscriber_flow", {**subscriber, "uni_port": own_uni})
    assert added["flows"][0]["in_port"] == own_uni


async def test_new_vlans_for_a_subscriber_replace_its_old_flows(voltha: Voltha) -> None:
    olt_id = await voltha.active_olt()
    await voltha.active_onu(olt_id, "BBSM000a0001")
    logical = voltha.core.logical_device_of(olt_id)
    assert logical is not None
    subscriber = {
        "olt_device_id": olt_id,
        "onu_serial_number": "BBSM000a0001",
        "subscriber_id": "sub-1",
    }
    await voltha.invoke("add_subscriber_flow", {**subscriber, "c_tag": 101, "s_tag": 900})

    await voltha.invoke("add_subscriber_flow", {**subscriber, "c_tag": 202, "s_tag": 901})

    flows = voltha.core.flows[logical.id]
    assert len(flows) == 2
    vlans = sorted(_fields(flow)["OFPXMT_OFB_VLAN_VID"] & 0xFFF for flow in flows)
    assert vlans == [202, 901]
    removed = await voltha.invoke(
        "remove_subscriber_flow", {"olt_device_id": olt_id, "subscriber_id": "sub-1"}
    )
    assert removed["removed"] == 2
    assert voltha.core.flows[logical.id] == []


# --- alarms ---------------------------------------------------------------------------


async def test_alarms_arrive_from_the_change_event_stream(voltha: Voltha) -> None:
    await eventually(lambda: voltha.core.subscriber_count == 1, within=10, what="subscribed")
    olt_id = await voltha.active_olt()
    await voltha.active_onu(olt_id, "BBSM000a0001")
    onu = voltha.core.device_by_serial("BBSM000a0001")
    assert onu is not None
    logical = voltha.core.logical_device_of(olt_id)
    assert logical is not None

    voltha.core.set_link(onu.id, UNI_PORT_NO, up=False)
    voltha.core.lose_olt(olt_id)

    async def two_alarms() -> bool:
        alarms = await voltha.invoke("get_alarms", {"alarms_only": True})
        return {"port_status", "device_status"} <= {a["kind"] for a in alarms["alarms"]}

    await eventually(two_alarms, within=10, what="link-down and disconnect alarms")
    result = await voltha.invoke("get_alarms", {"alarms_only": True})
    assert result["stream_connected"] is True
    kinds = {(alarm["kind"], alarm["severity"]) for alarm in result["alarms"]}
    assert ("port_status", "major") in kinds
    assert ("device_status", "critical") in kinds
    from_stream = [a for a in result["alarms"] if a["kind"] in ("port_status", "device_status")]
    assert all(alarm["logical_device_id"] == logical.id for alarm in from_stream)
    link_down = next(a for a in result["alarms"] if a["kind"] == "port_status")
    assert link_down["details"]["link_down"] is True
    assert link_down["details"]["port_name"] == f"BBSM000a0001-{link_down['details']['port_no']}"

    everything = await voltha.invoke("get_alarms")
    assert any(entry["details"].get("reason") == "OFPPR_ADD" for entry in everything["alarms"])
    newer = await voltha.invoke("get_alarms", {"after_seq": everything["last_seq"]})
    assert newer["alarms"] == []
    critical = await voltha.invoke("get_alarms", {"min_severity": "critical"})
    assert {a["kind"] for a in critical["alarms"]} <= {"device_status", "device_state"}

    # The device monitor notices the OLT's connection loss on its next poll.
    async def monitored() -> bool:
        alarms = (await voltha.invoke("get_alarms", {"device_id": olt_id}))["alarms"]
        return any(a["kind"] == "device_state" for a in alarms)

    await eventually(monitored, within=10, what="device monitor alarm")


async def test_alarm_buffer_is_bounded(
    core: VolthaCore, voltha_server: VolthaServer, tmp_path: Path
) -> None:
    async with (
        serve_plugin(
            VOLTHA_PLUGIN,
            config=plugin_config(voltha_server, alarm_buffer_size=3),
            secrets_dir=write_secrets(tmp_path / "secrets"),
            secrets_poll_interval=None,
        ) as server,
        PluginClient(server.address) as client,
    ):
        await eventually(lambda: core.subscriber_count == 1, within=10, what="subscribed")
        await client.invoke("provision_olt", {"host_and_port": OLT_ADDRESS})
        olt_id = next(iter(core.devices))
        await eventually(lambda: core.logical_device_of(olt_id) is not None, within=10)
        for _ in range(5):
            core.set_link(olt_id, NNI_PORT_NO, up=False)

        async def dropped() -> bool:
            return int((await client.invoke("get_alarms"))["dropped"]) >= 3

        await eventually(dropped, within=10, what="old alarms dropped")
        result = await client.invoke("get_alarms")
        assert len(result["alarms"]) == 3
        assert [a["seq"] for a in result["alarms"]] == sorted(a["seq"] for a in result["alarms"])


async def test_alarm_history_survives_a_restart_and_is_read_while_voltha_is_down(
    core: VolthaCore, voltha_server: VolthaServer, tmp_path: Path
) -> None:
    history = tmp_path / "volume" / "voltha-alarms.sqlite3"
    history.parent.mkdir()
    config = plugin_config(voltha_server, alarm_history_path=str(history), alarm_buffer_size=50)
    secrets = write_secrets(tmp_path / "secrets")

    def plugin() -> Any:
        return serve_plugin(
            VOLTHA_PLUGIN, config=config, secrets_dir=secrets, secrets_poll_interval=None
        )

    async with plugin() as server, PluginClient(server.address) as client:
        await eventually(lambda: core.subscriber_count == 1, within=10, what="subscribed")
        await client.invoke("provision_olt", {"host_and_port": OLT_ADDRESS})
        olt_id = next(iter(core.devices))
        await eventually(lambda: core.logical_device_of(olt_id) is not None, within=10)
        core.set_link(olt_id, NNI_PORT_NO, up=False)

        async def link_down_seen() -> bool:
            alarms = await client.invoke("get_alarms", {"alarms_only": True})
            return any(a["kind"] == "port_status" for a in alarms["alarms"])

        await eventually(link_down_seen, within=10, what="the link-down alarm")
        before = await client.invoke("get_alarms")
        assert before["persistent"] is True
        await voltha_server.stop()
        while_down = await client.invoke("get_alarms")
        assert while_down["alarms"][: len(before["alarms"])] == before["alarms"]

    # A new plugin process on the same volume, VOLTHA still down.
    async with plugin() as server, PluginClient(server.address) as client:
        assert await client.health() == "NOT_SERVING"
        after = await client.invoke("get_alarms", {"alarms_only": True})
        link_down = [a for a in after["alarms"] if a["kind"] == "port_status"]
        assert link_down and link_down[0]["details"]["link_down"] is True
        assert after["last_seq"] >= before["last_seq"]
        newer = await client.invoke("get_alarms", {"after_seq": after["last_seq"]})
        assert newer["alarms"] == []


# --- input validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "params", "message"),
    [
        ("provision_olt", {"host_and_port": "not an address"}, "params.host_and_port: "),
        ("provision_olt", {}, "params: 'host_and_port' is a required property"),
        (
            "provision_olt",
            {"host_and_port": OLT_ADDRESS, "colour": "red"},
            "'colour' was unexpected",
        ),
        (
            "provision_onu",
            {"olt_device_id": "x", "pon_port": -1, "serial_number": "BBSM000a0001"},
            "params.pon_port: -1 is less than the minimum of 0",
        ),
        ("enable_onu", {"serial_number": "short"}, "params.serial_number: 'short' does not match"),
        (
            "add_subscriber_flow",
            {
                "olt_device_id": "x",
                "onu_serial_number": "BBSM000a0001",
                "subscriber_id": "s",
                "c_tag": 4095,
                "s_tag": 10,
            },
            "params.c_tag: 4095 is greater than the maximum of 4094",
        ),
        (
            "configure_device",
            {"device_id": "x", "settings": {}},
            "params.settings: {} should be non-empty",
        ),
        ("get_alarms", {"min_severity": "loud"}, "params.min_severity: 'loud' is not one of"),
    ],
)
async def test_params_that_break_the_schema_are_rejected_before_voltha_is_called(
    voltha: Voltha, operation: str, params: dict[str, Any], message: str
) -> None:
    def foreground_calls() -> list[str]:
        # The plugin's monitor polls ListDevices and follows the event stream meanwhile.
        background = {"GetVoltha", "ListDevices", "ReceiveChangeEvents"}
        return [rpc for rpc, _ in voltha.core.calls if rpc not in background]

    calls_before = foreground_calls()

    with pytest.raises(InvalidInput) as raised:
        await voltha.invoke(operation, params)

    assert message in raised.value.message
    assert foreground_calls() == calls_before


async def test_operations_are_described_with_their_schemas(voltha: Voltha) -> None:
    described = await voltha.client.describe()

    operations = {op.name for op in described.operations}
    assert {"provision_olt", "add_subscriber_flow", "get_alarms", "get_topology"} <= operations
    assert described.vendor == "voltha"
    assert sorted(described.secrets.required) == ["VOLTHA_PASSWORD", "VOLTHA_USERNAME"]


# --- reachability and credentials -----------------------------------------------------


async def test_voltha_down_is_retryable_and_not_serving_until_it_is_back(voltha: Voltha) -> None:
    olt_id = await voltha.active_olt()
    assert await voltha.client.health() == "SERVING"

    await voltha.server.stop()

    with pytest.raises(RetryableError, match="unreachable") as raised:
        await voltha.invoke("get_device_status", {"device_id": olt_id})
    assert raised.value.retry_after is not None
    assert await voltha.client.health() == "NOT_SERVING"
    assert await voltha.client.health("switchboard.plugin.v1.PluginService") == "NOT_SERVING"

    await voltha.server.start()

    async def serving() -> bool:
        return await voltha.client.health() == "SERVING"

    await eventually(serving, within=15, what="SERVING once VOLTHA is back")
    assert (await voltha.status(olt_id))["oper_status"] == "ACTIVE"

    # The change event stream is followed again too.
    await eventually(lambda: voltha.core.subscriber_count == 1, within=15, what="resubscribed")
    voltha.core.lose_olt(olt_id)

    async def disconnect_seen() -> bool:
        alarms = await voltha.invoke("get_alarms", {"alarms_only": True})
        return any(a["kind"] == "device_status" for a in alarms["alarms"])

    await eventually(disconnect_seen, within=10, what="alarm after reconnecting")


async def test_plugin_starts_not_serving_while_voltha_is_down(
    core: VolthaCore, tmp_path: Path
) -> None:
    server = VolthaServer(core)
    await server.start()
    await server.stop()  # keep the port, free and unanswered
    async with (
        serve_plugin(
            VOLTHA_PLUGIN,
            config=plugin_config(server),
            secrets_dir=write_secrets(tmp_path / "secrets"),
            secrets_poll_interval=None,
        ) as plugin,
        PluginClient(plugin.address) as client,
    ):
        assert await client.health() == "NOT_SERVING"
        await server.start()

        async def serving() -> bool:
            return await client.health() == "SERVING"

        try:
            await eventually(serving, within=15, what="SERVING once VOLTHA answers")
        finally:
            await server.stop()


async def test_credentials_travel_as_metadata_and_are_checked(
    core: VolthaCore, voltha_server: VolthaServer, tmp_path: Path, voltha: Voltha
) -> None:
    checked = await voltha.client.check_credentials()
    assert checked.ok
    assert core.version in checked.message
    assert {auth for _, auth in core.calls} == {"Basic dm9sdGhhLWFkbWluOnB3LTNmOWE3YzFl"}
    assert PASSWORD not in checked.message

    async with (
        serve_plugin(
            VOLTHA_PLUGIN,
            config=plugin_config(voltha_server),
            secrets_dir=write_secrets(tmp_path / "wrong", password="not-it"),
            secrets_poll_interval=None,
        ) as server,
        PluginClient(server.address) as client,
    ):
        rejected = await client.check_credentials()
        assert not rejected.ok
        assert "VOLTHA_USERNAME/VOLTHA_PASSWORD" in rejected.message
        with pytest.raises(Unauthenticated):
            await client.invoke("list_devices")


async def test_rejected_credentials_are_not_serving_from_the_start(
    core: VolthaCore,
    voltha_server: VolthaServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        serve_plugin(
            VOLTHA_PLUGIN,
            config=plugin_config(voltha_server),
            secrets_dir=write_secrets(tmp_path / "wrong", password="not-it"),
            secrets_poll_interval=None,
        ) as server,
        PluginClient(server.address) as client,
    ):
        assert await client.health() == "NOT_SERVING"
        # The device monitor keeps asking; the answer stays the same.
        await eventually(
            lambda: [rpc for rpc, _ in core.calls].count("ListDevices") >= 3,
            within=10,
            what="the monitor asking again",
        )
        assert await client.health() == "NOT_SERVING"
    rejected = [r for r in caplog.records if r.getMessage() == "VOLTHA rejected the credentials"]
    assert len(rejected) == 1
    assert rejected[0].levelname == "ERROR"
    assert "not-it" not in caplog.text


def _certificates(directory: Path) -> tuple[Path, bytes, bytes]:
    """A CA (written to ``directory/ca.pem``) and a server certificate it signed for 127.0.0.1."""
    now = datetime.datetime.now(datetime.UTC)

    def build(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: Any, ca: bool
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("voltha.test"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stand-in CA")])
    ca = build("stand-in CA", ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = build("voltha.test", server_key, ca_name, ca_key, ca=False)
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return ca_path, key_pem, server.public_bytes(serialization.Encoding.PEM)


async def test_tls_with_a_private_ca(core: VolthaCore, tmp_path: Path) -> None:
    ca_path, key_pem, cert_pem = _certificates(tmp_path)
    server = VolthaServer(core, tls=(key_pem, cert_pem))
    await server.start()
    try:
        async with (
            serve_plugin(
                VOLTHA_PLUGIN,
                config=plugin_config(
                    server, tls={"ca_path": str(ca_path), "server_name": "voltha.test"}
                ),
                secrets_dir=write_secrets(tmp_path / "secrets"),
                secrets_poll_interval=None,
            ) as plugin,
            PluginClient(plugin.address) as client,
        ):
            assert await client.health() == "SERVING"
            result = await client.invoke("provision_olt", {"host_and_port": OLT_ADDRESS})
            assert result["created"] is True
    finally:
        await server.stop()


async def test_unreadable_ca_and_host_with_a_port_are_config_errors(
    voltha_server: VolthaServer, tmp_path: Path
) -> None:
    from switchboard.sdk import ConfigError

    secrets = write_secrets(tmp_path / "secrets")
    with pytest.raises(ConfigError, match=r"config.tls.ca_path: cannot read"):
        async with serve_plugin(
            VOLTHA_PLUGIN,
            config=plugin_config(voltha_server, tls={"ca_path": str(tmp_path / "missing.pem")}),
            secrets_dir=secrets,
        ):
            pass
    with pytest.raises(ConfigError, match=r"config.voltha_host: .* must be a host name"):
        async with serve_plugin(
            VOLTHA_PLUGIN,
            config={"voltha_host": "voltha:55555"},
            secrets_dir=secrets,
        ):
            pass
