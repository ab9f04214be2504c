"""The VOLTHA plugin: its configuration, lifecycle and operations.

The work happens in the modules beside it: ``connection`` talks to VOLTHA
and translates its answers, ``openflow`` builds and reads flows, ``views``
turns VOLTHA's messages into JSON, ``alarms`` says what events mean and keeps
their history, ``monitor`` runs the background tasks, ``schemas`` holds the
operations' params schemas.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from google.protobuf import empty_pb2
from voltha_protos import common_pb2, device_pb2, logical_device_pb2, openflow_13_pb2

from switchboard.sdk import (
    ConfigError,
    InvalidInput,
    NetworkAutomationPlugin,
    PermanentError,
    PluginError,
    operation,
)

from . import schemas
from .alarms import AlarmLog, Query, now
from .bus import DEFAULT_TOPIC, BusSettings, EventBus
from .connection import PROBE_TIMEOUT, Endpoint, VolthaConnection
from .monitor import Monitor
from .openflow import (
    delete_by_cookie,
    delete_strict,
    flow_json,
    flow_key,
    subscriber_cookie,
    subscriber_flows,
)
from .views import (
    ADMIN,
    OPER,
    PORT_COUNTERS,
    PORT_TYPE,
    adapter_json,
    apply_pm_changes,
    core_instance_json,
    device_json,
    device_type_json,
    logical_port_json,
    pm_configs_json,
    port_json,
)


class VolthaPlugin(NetworkAutomationPlugin):
    """OLTs, ONUs, subscriber flows and alarms on a VOLTHA core."""

    vendor = "voltha"
    capabilities = (
        "device_provisioning",
        "subscriber_flows",
        "performance_monitoring",
        "alarms",
        "topology",
    )
    required_secrets = ("VOLTHA_USERNAME", "VOLTHA_PASSWORD")
    optional_secrets = ("VOLTHA_CA_CERT",)

    #: VOLTHA's rw-core northbound port.
    default_port: ClassVar[int] = 55555

    # --- lifecycle --------------------------------------------------------------------

    def validate_config(self) -> None:
        host = str(self.config["voltha_host"])
        if "://" in host or (":" in host and not _is_ipv6(host)):
            raise ConfigError(
                f"config.voltha_host: {host!r} must be a host name or address only; "
                "put the port in voltha_port and TLS settings under tls"
            )

    async def initialize(self) -> None:
        config = self.config
        interval = float(config.get("device_monitoring_interval", 30))
        self.voltha = VolthaConnection(
            self._endpoint(interval),
            self.secrets["VOLTHA_USERNAME"],
            self.secrets["VOLTHA_PASSWORD"],
            self._on_voltha_state,
        )
        self.alarm_log_path: str | None = config.get("alarm_history_path")
        try:
            self.alarm_log = await AlarmLog.open(
                self.alarm_log_path, int(config.get("alarm_buffer_size", 1000))
            )
        except OSError as error:
            raise ConfigError(
                f"config.alarm_history_path: cannot open {self.alarm_log_path}: {error}"
            ) from None
        self.monitor = Monitor(self.voltha, self.alarm_log, interval, self.logger)
        kafka = config.get("kafka")
        self.bus = (
            EventBus(
                BusSettings(
                    bootstrap_servers=kafka["bootstrap_servers"],
                    topic=kafka.get("topic", DEFAULT_TOPIC),
                    group_id=kafka.get("group_id", "switchboard-voltha"),
                    start_from=kafka.get("start_from", "latest"),
                ),
                self.alarm_log,
                self.logger,
            )
            if kafka
            else None
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def activate(self) -> None:
        # The first health status follows one quick probe; VOLTHA being down (or
        # refusing the credentials) does not stop the plugin from starting: it
        # reports NOT_SERVING.
        with contextlib.suppress(PluginError):
            await self.voltha.call("GetVoltha", empty_pb2.Empty(), timeout=PROBE_TIMEOUT)
        self._tasks = [
            asyncio.create_task(self.monitor.follow_change_events(), name="voltha-change-events"),
            asyncio.create_task(self.monitor.monitor_devices(), name="voltha-device-monitor"),
        ]
        if self.bus is not None:
            self._tasks.append(asyncio.create_task(self.bus.run(), name="voltha-event-bus"))

    async def deactivate(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def cleanup(self) -> None:
        await self.voltha.close()
        await self.alarm_log.close()

    async def check_credentials(self) -> str:
        voltha = await self.voltha.call("GetVoltha", empty_pb2.Empty())
        return f"VOLTHA {voltha.version or '(version not reported)'} accepted the credentials"

    # --- devices ----------------------------------------------------------------------

    @operation(schema=schemas.PROVISION_OLT)
    async def provision_olt(self, params: dict[str, Any]) -> Any:
        """Pre-provision an OLT (CreateDevice) and enable it (EnableDevice).

        Idempotent: an OLT already known at ``host_and_port`` is reused, so a
        retried call never creates a second device.
        """
        host_and_port = params["host_and_port"]
        existing = [
            device
            for device in (await self.voltha.call("ListDevices", empty_pb2.Empty())).items
            if device.root and device.host_and_port == host_and_port
        ]
        if existing:
            device, created = existing[0], False
        else:
            request = device_pb2.Device(
                type=params.get("type", "openolt"),
                host_and_port=host_and_port,
                mac_address=params.get("mac_address", ""),
            )
            device, created = await self.voltha.call("CreateDevice", request), True
        if params.get("enable", True) and device.admin_state in (
            ADMIN.PREPROVISIONED,
            ADMIN.DISABLED,
        ):
            await self.voltha.call("EnableDevice", common_pb2.ID(id=device.id), subject=device.id)
        device = await self._get_device(device.id)
        self.logger.info(
            "Provisioned an OLT",
            extra={"device_id": device.id, "host_and_port": host_and_port, "new_device": created},
        )
        return {"created": created, "device": device_json(device)}

    @operation(schema=schemas.PROVISION_ONU)
    async def provision_onu(self, params: dict[str, Any]) -> Any:
        """Allow an ONU by serial number on one PON port of an OLT and enable it."""
        olt = await self._get_olt(params["olt_device_id"])
        serial = params["serial_number"]
        pon_port = params["pon_port"]
        ports = (
            await self.voltha.call("ListDevicePorts", common_pb2.ID(id=olt.id), subject=olt.id)
        ).items
        pon_ports = {port.port_no for port in ports if port.type == PORT_TYPE.PON_OLT}
        if pon_port not in pon_ports:
            raise InvalidInput(
                f"params.pon_port: OLT {olt.id} has no PON port {pon_port} "
                f"(PON ports: {sorted(pon_ports) or 'none yet; is the OLT ACTIVE?'})"
            )
        await self.voltha.call(
            "EnableOnuSerialNumber",
            device_pb2.OnuSerialNumberOnOLTPon(
                olt_device_id=common_pb2.ID(id=olt.id),
                port=device_pb2.Port(port_no=pon_port, type=PORT_TYPE.PON_OLT, device_id=olt.id),
                serial_number=serial,
            ),
            subject=f"ONU {serial} on OLT {olt.id}",
        )
        onu = await self._find_onu(serial, olt.id)
        if onu is not None and onu.admin_state in (ADMIN.PREPROVISIONED, ADMIN.DISABLED):
            await self.voltha.call("EnableDevice", common_pb2.ID(id=onu.id), subject=onu.id)
            onu = await self._get_device(onu.id)
        self.logger.info(
            "Provisioned an ONU",
            extra={"serial_number": serial, "olt_device_id": olt.id, "pon_port": pon_port},
        )
        return {
            "serial_number": serial,
            "olt_device_id": olt.id,
            "pon_port": pon_port,
            "state": "enabled" if onu is not None else "awaiting_discovery",
            "device": device_json(onu) if onu is not None else None,
        }

    @operation(schema=schemas.ENABLE_ONU)
    async def enable_onu(self, params: dict[str, Any]) -> Any:
        """Enable (admin up) the ONU with this serial number."""
        onu = await self._require_onu(params["serial_number"], params.get("olt_device_id"))
        await self.voltha.call("EnableDevice", common_pb2.ID(id=onu.id), subject=onu.id)
        return {"device": device_json(await self._get_device(onu.id))}

    @operation(schema=schemas.DISABLE_ONU)
    async def disable_onu(self, params: dict[str, Any]) -> Any:
        """Disable (admin down) the ONU with this serial number; its subscribers lose service."""
        onu = await self._require_onu(params["serial_number"], params.get("olt_device_id"))
        await self.voltha.call("DisableDevice", common_pb2.ID(id=onu.id), subject=onu.id)
        return {"device": device_json(await self._get_device(onu.id))}

    async def discover_devices(self, params: dict[str, Any]) -> Any:
        """List VOLTHA's devices whose attributes equal every filter, e.g. ``{"root": "true"}``."""
        filters: Mapping[str, str] = params.get("filters", {})
        attributes = device_json(None)
        unknown = sorted(set(filters) - set(attributes))
        if unknown:
            raise InvalidInput(
                f"params.filters: {unknown} are not device attributes "
                f"(use: {', '.join(sorted(attributes))})"
            )
        devices = [
            device_json(device)
            for device in (await self.voltha.call("ListDevices", empty_pb2.Empty())).items
        ]
        matching = [
            device
            for device in devices
            if all(_text(device[key]) == value for key, value in filters.items())
        ]
        return {"devices": matching, "count": len(matching)}

    @operation(schema=schemas.LIST_DEVICES)
    async def list_devices(self, params: dict[str, Any]) -> Any:
        """The inventory: every OLT with its ONUs (and ports if asked)."""
        devices = list((await self.voltha.call("ListDevices", empty_pb2.Empty())).items)
        include_ports = params.get("include_ports", False)

        async def entry(device: device_pb2.Device) -> dict[str, Any]:
            result = device_json(device)
            if include_ports:
                ports = await self.voltha.call(
                    "ListDevicePorts", common_pb2.ID(id=device.id), subject=device.id
                )
                result["ports"] = [port_json(port) for port in ports.items]
            return result

        olts = []
        for olt in (device for device in devices if device.root):
            item = await entry(olt)
            item["onus"] = [
                await entry(onu) for onu in devices if not onu.root and onu.parent_id == olt.id
            ]
            olts.append(item)
        known = {olt.id for olt in devices if olt.root}
        orphans = [
            await entry(device)
            for device in devices
            if not device.root and device.parent_id not in known
        ]
        return {"olts": olts, "unattached_devices": orphans, "count": len(devices)}

    async def get_device_status(self, params: dict[str, Any]) -> Any:
        """Admin, operational and connection state of one device, with its ports."""
        device = await self._get_device(params["device_id"])
        ports = await self.voltha.call(
            "ListDevicePorts", common_pb2.ID(id=device.id), subject=device.id
        )
        return {**device_json(device), "ports": [port_json(port) for port in ports.items]}

    @operation(schema=schemas.CONFIGURE_DEVICE)
    async def configure_device(self, params: dict[str, Any]) -> Any:
        """Change a device's address (UpdateDevice) and/or its PM configuration."""
        settings: Mapping[str, Any] = params["settings"]
        addresses = [
            key for key in ("host_and_port", "ipv4_address", "ipv6_address") if key in settings
        ]
        if len(addresses) > 1:
            raise InvalidInput(f"params.settings: set one address, not {addresses}")
        device = await self._get_device(params["device_id"])
        if addresses:
            key = addresses[0]
            await self.voltha.call(
                "UpdateDevice",
                device_pb2.UpdateDevice(id=device.id, **{key: settings[key]}),
                subject=device.id,
            )
        result: dict[str, Any] = {}
        if "pm_configs" in settings:
            current = await self.voltha.call(
                "ListDevicePmConfigs", common_pb2.ID(id=device.id), subject=device.id
            )
            apply_pm_changes(current, settings["pm_configs"])
            current.id = device.id
            await self.voltha.call("UpdateDevicePmConfigs", current, subject=device.id)
            updated = await self.voltha.call(
                "ListDevicePmConfigs", common_pb2.ID(id=device.id), subject=device.id
            )
            result["pm_configs"] = pm_configs_json(updated)
        result["device"] = device_json(await self._get_device(device.id))
        self.logger.info(
            "Configured a device", extra={"device_id": device.id, "settings": sorted(settings)}
        )
        return result

    @operation(schema=schemas.REBOOT_DEVICE)
    async def reboot_device(self, params: dict[str, Any]) -> Any:
        """Reboot one OLT or ONU (RebootDevice)."""
        device_id = params["device_id"]
        await self.voltha.call("RebootDevice", common_pb2.ID(id=device_id), subject=device_id)
        return {"device_id": device_id, "rebooting": True}

    @operation(schema=schemas.DELETE_DEVICE)
    async def delete_device(self, params: dict[str, Any]) -> Any:
        """Delete one device from VOLTHA (an OLT takes its ONUs and logical device with it)."""
        device_id = params["device_id"]
        await self.voltha.call("DeleteDevice", common_pb2.ID(id=device_id), subject=device_id)
        self.monitor.forget(device_id)
        self.logger.info("Deleted a device", extra={"device_id": device_id})
        return {"device_id": device_id, "deleted": True}

    # --- subscriber flows -------------------------------------------------------------

    @operation(schema=schemas.ADD_SUBSCRIBER_FLOW)
    async def add_subscriber_flow(self, params: dict[str, Any]) -> Any:
        """Add a subscriber's upstream and downstream flows to the OLT's logical device.

        Upstream: in_port=UNI, vlan=c_tag -> push 802.1Q, set vlan=s_tag, output NNI.
        Downstream: in_port=NNI, vlan=s_tag, metadata=c_tag<<32|UNI -> pop vlan,
        output UNI. Both carry a
        cookie derived from the subscriber id, which ``remove_subscriber_flow``
        deletes by; adding the same subscriber again replaces its flows.
        """
        olt = await self._get_olt(params["olt_device_id"])
        onu = await self._require_onu(params["onu_serial_number"], olt.id)
        logical_device = await self._logical_device_of(olt.id)
        ports = (
            await self.voltha.call(
                "ListLogicalDevicePorts",
                common_pb2.ID(id=logical_device.id),
                subject=logical_device.id,
            )
        ).items
        nni = next((port for port in ports if port.root_port), None)
        if nni is None:
            raise PermanentError(f"logical device {logical_device.id} has no NNI port yet")
        # Only the subscriber's own ONU's UNI ports: another ONU's port would
        # hand the subscriber someone else's line, the NNI would loop traffic.
        own_unis = sorted(
            port.ofp_port.port_no
            for port in ports
            if port.device_id == onu.id and not port.root_port
        )
        if not own_unis:
            raise PermanentError(
                f"ONU {params['onu_serial_number']} has no UNI port on logical device "
                f"{logical_device.id}; provision and enable the ONU first"
            )
        uni_port = params.get("uni_port", own_unis[0])
        if uni_port not in own_unis:
            raise InvalidInput(
                f"params.uni_port: {uni_port} is not a UNI port of ONU "
                f"{params['onu_serial_number']} (its UNI ports: {own_unis})"
            )
        nni_port = nni.ofp_port.port_no
        cookie = subscriber_cookie(olt.id, params["subscriber_id"])
        c_tag, s_tag = params["c_tag"], params["s_tag"]
        upstream, downstream = subscriber_flows(
            cookie=cookie,
            uni_port=uni_port,
            nni_port=nni_port,
            c_tag=c_tag,
            s_tag=s_tag,
            priority=params.get("priority", 1000),
            table_id=params.get("table_id", 0),
        )
        previous = await self.voltha.call(
            "ListLogicalDeviceFlows", common_pb2.ID(id=logical_device.id), subject=logical_device.id
        )
        for flow_mod in (upstream, downstream):
            await self._update_flows(logical_device.id, flow_mod)
        # Make before break: the subscriber's flows from an earlier call with other
        # VLANs or ports go only once the new ones are in.
        current = {flow_key(flow_mod) for flow_mod in (upstream, downstream)}
        for flow in previous.items:
            if flow.cookie == cookie and flow_key(flow) not in current:
                await self._update_flows(logical_device.id, delete_strict(flow))
        self.logger.info(
            "Added subscriber flows",
            extra={
                "logical_device_id": logical_device.id,
                "subscriber_id": params["subscriber_id"],
            },
        )
        return {
            "logical_device_id": logical_device.id,
            "subscriber_id": params["subscriber_id"],
            "cookie": f"{cookie:#018x}",
            "flows": [
                {
                    "direction": "upstream",
                    "in_port": uni_port,
                    "vlan": c_tag,
                    "out_port": nni_port,
                    "push_vlan": s_tag,
                },
                {
                    "direction": "downstream",
                    "in_port": nni_port,
                    "vlan": s_tag,
                    "out_port": uni_port,
                    "pop_vlan": True,
                },
            ],
        }

    @operation(schema=schemas.REMOVE_SUBSCRIBER_FLOW)
    async def remove_subscriber_flow(self, params: dict[str, Any]) -> Any:
        """Delete every flow of one subscriber from the OLT's logical device (by cookie)."""
        olt = await self._get_olt(params["olt_device_id"])
        logical_device = await self._logical_device_of(olt.id)
        cookie = subscriber_cookie(olt.id, params["subscriber_id"])
        before = await self.voltha.call(
            "ListLogicalDeviceFlows", common_pb2.ID(id=logical_device.id), subject=logical_device.id
        )
        matching = sum(1 for flow in before.items if flow.cookie == cookie)
        await self._update_flows(logical_device.id, delete_by_cookie(cookie))
        self.logger.info(
            "Removed subscriber flows",
            extra={
                "logical_device_id": logical_device.id,
                "subscriber_id": params["subscriber_id"],
            },
        )
        return {
            "logical_device_id": logical_device.id,
            "subscriber_id": params["subscriber_id"],
            "removed": matching,
        }

    # --- monitoring -------------------------------------------------------------------

    @operation(schema=schemas.COLLECT_METRICS)
    async def collect_metrics(self, params: dict[str, Any]) -> Any:
        """PM configuration and port counters of one device, or of every device."""
        names = params.get("names") or list(PORT_COUNTERS)
        if "device_id" in params:
            devices = [await self._get_device(params["device_id"])]
        else:
            devices = list((await self.voltha.call("ListDevices", empty_pb2.Empty())).items)
        collected = []
        for device in devices:
            pm_configs = await self.voltha.call(
                "ListDevicePmConfigs", common_pb2.ID(id=device.id), subject=device.id
            )
            ports = await self.voltha.call(
                "ListDevicePorts", common_pb2.ID(id=device.id), subject=device.id
            )
            port_counters = [
                {
                    "port_no": port.port_no,
                    "label": port.label,
                    "type": PORT_TYPE.Name(port.type),
                    **{name: getattr(port, name) for name in names},
                }
                for port in ports.items
            ]
            collected.append(
                {
                    "device_id": device.id,
                    "serial_number": device.serial_number,
                    "pm_configs": pm_configs_json(pm_configs),
                    "ports": port_counters,
                    "totals": {name: sum(port[name] for port in port_counters) for name in names},
                }
            )
        return {"collected_at": now(), "devices": collected}

    @operation(schema=schemas.GET_ALARMS)
    async def get_alarms(self, params: dict[str, Any]) -> Any:
        """Alarms and events received from VOLTHA, oldest first, from the plugin's log.

        Never asks VOLTHA: the history answers while VOLTHA is down, and (with
        ``alarm_history_path``) after a restart of the plugin.
        """
        query = Query(
            after_seq=params.get("after_seq", 0),
            device_id=params.get("device_id"),
            min_severity=params.get("min_severity", "info"),
            alarms_only=params.get("alarms_only", False),
            limit=params.get("limit", 100),
        )
        return {
            "alarms": await self.alarm_log.select(query),
            "last_seq": self.alarm_log.last_seq,
            "dropped": self.alarm_log.dropped,
            "stream_connected": self.monitor.stream_connected,
            "event_bus_connected": self.bus.connected if self.bus is not None else None,
            "persistent": self.alarm_log_path is not None,
        }

    @operation(schema=schemas.GET_KPIS)
    async def get_kpis(self, params: dict[str, Any]) -> Any:
        """The newest KPIs VOLTHA published on its event bus (e.g. PON_Optical), per device."""
        if self.bus is None:
            raise PermanentError("no event bus configured: set config.kafka to receive KPIs")
        device_id, group = params.get("device_id"), params.get("group")
        kpis = [
            kpi
            for (kpi_device, kpi_group), kpi in sorted(self.bus.kpis.items())
            if device_id in (None, kpi_device) and group in (None, kpi_group)
        ]
        return {"kpis": kpis, "event_bus_connected": self.bus.connected}

    @operation(schema=schemas.GET_TOPOLOGY)
    async def get_topology(self, params: dict[str, Any]) -> Any:
        """Logical devices (one per OLT) with their ports, and the OLT -> PON -> ONU tree."""
        logical_devices = (await self.voltha.call("ListLogicalDevices", empty_pb2.Empty())).items
        result = []
        for logical_device in logical_devices:
            ports = await self.voltha.call(
                "ListLogicalDevicePorts",
                common_pb2.ID(id=logical_device.id),
                subject=logical_device.id,
            )
            flows = await self.voltha.call(
                "ListLogicalDeviceFlows",
                common_pb2.ID(id=logical_device.id),
                subject=logical_device.id,
            )
            entry: dict[str, Any] = {
                "id": logical_device.id,
                "datapath_id": f"{logical_device.datapath_id:#018x}",
                "root_device_id": logical_device.root_device_id,
                "serial_number": logical_device.desc.serial_num,
                "ports": [logical_port_json(port) for port in ports.items],
                "flow_count": len(flows.items),
            }
            if params.get("include_flows", False):
                entry["flows"] = [flow_json(flow) for flow in flows.items]
            result.append(entry)
        devices = list((await self.voltha.call("ListDevices", empty_pb2.Empty())).items)
        olts = []
        for olt in (device for device in devices if device.root):
            ports = await self.voltha.call(
                "ListDevicePorts", common_pb2.ID(id=olt.id), subject=olt.id
            )
            olts.append(
                {
                    "device_id": olt.id,
                    "host_and_port": olt.host_and_port,
                    "oper_status": OPER.Name(olt.oper_status),
                    "pon_ports": [
                        {
                            "port_no": port.port_no,
                            "label": port.label,
                            "onus": [
                                {
                                    "device_id": onu.id,
                                    "serial_number": onu.serial_number,
                                    "oper_status": OPER.Name(onu.oper_status),
                                }
                                for onu in devices
                                if onu.parent_id == olt.id and onu.parent_port_no == port.port_no
                            ],
                        }
                        for port in ports.items
                        if port.type == PORT_TYPE.PON_OLT
                    ],
                }
            )
        return {"logical_devices": result, "olts": olts}

    # --- administrative state, as voltctl's enable and disable ---------------------------

    @operation(schema=schemas.DEVICE)
    async def enable_device(self, params: dict[str, Any]) -> Any:
        """Enable (admin up) an OLT or ONU by id (EnableDevice); an enabled one is left as is."""
        device = await self._get_device(params["device_id"])
        if device.admin_state != ADMIN.ENABLED:
            await self.voltha.call("EnableDevice", common_pb2.ID(id=device.id), subject=device.id)
        self.logger.info("Enabled a device", extra={"device_id": device.id})
        return {"device": device_json(await self._get_device(device.id))}

    @operation(schema=schemas.DEVICE)
    async def disable_device(self, params: dict[str, Any]) -> Any:
        """Disable (admin down) an OLT or ONU by id (DisableDevice): an OLT takes its PON down."""
        device = await self._get_device(params["device_id"])
        if device.admin_state == ADMIN.ENABLED:
            await self.voltha.call("DisableDevice", common_pb2.ID(id=device.id), subject=device.id)
        self.logger.info("Disabled a device", extra={"device_id": device.id})
        return {"device": device_json(await self._get_device(device.id))}

    @operation(schema=schemas.PORT)
    async def enable_port(self, params: dict[str, Any]) -> Any:
        """Enable one port of a device (EnablePort), e.g. a PON port of an OLT."""
        return await self._port_admin("EnablePort", params)

    @operation(schema=schemas.PORT)
    async def disable_port(self, params: dict[str, Any]) -> Any:
        """Disable one port of a device (DisablePort): its ONUs or subscribers lose service."""
        return await self._port_admin("DisablePort", params)

    async def _port_admin(self, rpc: str, params: Mapping[str, Any]) -> Any:
        device = await self._get_device(params["device_id"])
        port = await self._port_of(device, params["port_no"])
        await self.voltha.call(
            rpc,
            device_pb2.Port(device_id=device.id, port_no=port.port_no, type=port.type),
            subject=f"port {port.port_no} of device {device.id}",
        )
        self.logger.info(
            "Changed a port's admin state",
            extra={"device_id": device.id, "port_no": port.port_no, "rpc": rpc},
        )
        return {
            "device_id": device.id,
            "port": port_json(await self._port_of(device, port.port_no)),
        }

    # --- the VOLTHA installation, as voltctl's adapter and component lists --------------

    @operation(schema=schemas.NO_PARAMS)
    async def list_adapters(self, params: dict[str, Any]) -> Any:
        """The adapters registered with VOLTHA (ListAdapters) and the device types they serve."""
        adapters = await self.voltha.call("ListAdapters", empty_pb2.Empty())
        device_types = await self.voltha.call("ListDeviceTypes", empty_pb2.Empty())
        served: dict[str, list[str]] = {}
        for device_type in device_types.items:
            served.setdefault(device_type.adapter, []).append(device_type.id)
        return {
            "adapters": [
                {**adapter_json(adapter), "device_types": sorted(served.get(adapter.id, []))}
                for adapter in adapters.items
            ],
            "device_types": [device_type_json(item) for item in device_types.items],
        }

    @operation(schema=schemas.NO_PARAMS)
    async def list_components(self, params: dict[str, Any]) -> Any:
        """VOLTHA's version, its core instances with their health, and its adapters."""
        voltha = await self.voltha.call("GetVoltha", empty_pb2.Empty())
        cores = await self.voltha.call("ListCoreInstances", empty_pb2.Empty())
        adapters = await self.voltha.call("ListAdapters", empty_pb2.Empty())
        return {
            "version": voltha.version,
            "core_instances": [core_instance_json(core) for core in cores.items],
            "adapters": [adapter_json(adapter) for adapter in adapters.items],
        }

    @operation(schema=schemas.LIST_FLOWS)
    async def list_flows(self, params: dict[str, Any]) -> Any:
        """The flows of an OLT's logical device, readable: VLAN ids as numbers, actions by name."""
        olt = await self._get_olt(params["olt_device_id"])
        logical_device = await self._logical_device_of(olt.id)
        flows = await self.voltha.call(
            "ListLogicalDeviceFlows", common_pb2.ID(id=logical_device.id), subject=logical_device.id
        )
        return {
            "logical_device_id": logical_device.id,
            "flows": [flow_json(flow) for flow in flows.items],
        }

    # --- talking to VOLTHA --------------------------------------------------------------

    async def _get_device(self, device_id: str) -> device_pb2.Device:
        device: device_pb2.Device = await self.voltha.call(
            "GetDevice", common_pb2.ID(id=device_id), subject=f"device {device_id}"
        )
        return device

    async def _get_olt(self, device_id: str) -> device_pb2.Device:
        device = await self._get_device(device_id)
        if not device.root:
            raise InvalidInput(
                f"params.olt_device_id: device {device_id} is a {device.type} (an ONU), not an OLT"
            )
        return device

    async def _find_onu(self, serial: str, olt_id: str | None) -> device_pb2.Device | None:
        devices = (await self.voltha.call("ListDevices", empty_pb2.Empty())).items
        for device in devices:
            if (
                not device.root
                and device.serial_number == serial
                and (olt_id is None or device.parent_id == olt_id)
            ):
                found: device_pb2.Device = device
                return found
        return None

    async def _require_onu(self, serial: str, olt_id: str | None) -> device_pb2.Device:
        onu = await self._find_onu(serial, olt_id)
        if onu is None:
            where = f" under OLT {olt_id}" if olt_id else ""
            raise PermanentError(
                f"no ONU with serial number {serial} is known to VOLTHA{where}; "
                "it appears once its OLT is ACTIVE and has discovered it"
            )
        return onu

    async def _logical_device_of(self, olt_id: str) -> logical_device_pb2.LogicalDevice:
        for logical_device in (
            await self.voltha.call("ListLogicalDevices", empty_pb2.Empty())
        ).items:
            if logical_device.root_device_id == olt_id:
                found: logical_device_pb2.LogicalDevice = logical_device
                return found
        raise PermanentError(
            f"OLT {olt_id} has no logical device yet; VOLTHA creates it when the OLT becomes ACTIVE"
        )

    async def _update_flows(
        self, logical_device_id: str, flow_mod: openflow_13_pb2.ofp_flow_mod
    ) -> None:
        await self.voltha.call(
            "UpdateLogicalDeviceFlowTable",
            openflow_13_pb2.FlowTableUpdate(id=logical_device_id, flow_mod=flow_mod),
            subject=logical_device_id,
        )

    async def _ports(self, device_id: str) -> list[device_pb2.Port]:
        ports = await self.voltha.call(
            "ListDevicePorts", common_pb2.ID(id=device_id), subject=f"device {device_id}"
        )
        return list(ports.items)

    async def _port_of(self, device: device_pb2.Device, port_no: int) -> device_pb2.Port:
        ports = await self._ports(device.id)
        for port in ports:
            if port.port_no == port_no:
                return port
        raise InvalidInput(
            f"params.port_no: device {device.id} has no port {port_no} "
            f"(its ports: {sorted(port.port_no for port in ports)})"
        )

    async def _on_voltha_state(self, state: str, reason: str) -> None:
        """Keep health in step with VOLTHA: SERVING only while it answers and accepts us."""
        target = self.voltha.endpoint.target
        if state == "reachable":
            self.logger.info("Reached VOLTHA", extra={"target": target})
        elif state == "unauthenticated":
            self.logger.error(
                "VOLTHA rejected the credentials",
                extra={"target": target, "secrets": "VOLTHA_USERNAME/VOLTHA_PASSWORD"},
            )
        else:
            self.logger.warning("Lost VOLTHA", extra={"target": target, "reason": reason})
        await self.report_health(state == "reachable")

    def _endpoint(self, interval: float) -> Endpoint:
        config = self.config
        tls = config.get("tls")
        ca_certificate = None
        if tls is not None and tls.get("ca_path"):
            path = Path(tls["ca_path"])
            try:
                ca_certificate = path.read_bytes()
            except OSError as error:
                raise ConfigError(
                    f"config.tls.ca_path: cannot read {path}: {error.strerror}"
                ) from None
        host = str(config["voltha_host"])
        host = f"[{host}]" if _is_ipv6(host) else host
        return Endpoint(
            target=f"{host}:{config.get('voltha_port', self.default_port)}",
            tls=tls is not None,
            ca_certificate=ca_certificate,
            server_name=(tls or {}).get("server_name") or None,
            request_timeout=float(config.get("request_timeout", 10)),
            retry_after=min(max(interval, 1.0), 30.0),
        )


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host.strip("[]")), ipaddress.IPv6Address)
    except ValueError:
        return False


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
