"""Fiber access management on VOLTHA's northbound gRPC API (``voltha.VolthaService``).

The plugin is a thin, typed layer over the RPCs VOLTHA itself offers, using the
generated code of the ``voltha-protos`` package (never hand-written protos)::

    provision_olt          CreateDevice(type, host_and_port) -> EnableDevice
    provision_onu          EnableOnuSerialNumber(OLT, PON port, serial) [-> EnableDevice]
    enable_onu/disable_onu EnableDevice / DisableDevice on the ONU found by serial number
    discover_devices       ListDevices, filtered
    list_devices           ListDevices + ListDevicePorts, OLTs with their ONUs
    get_device_status      GetDevice + ListDevicePorts
    configure_device       UpdateDevice, ListDevicePmConfigs -> UpdateDevicePmConfigs
    reboot_device          RebootDevice
    delete_device          DeleteDevice
    add_subscriber_flow    UpdateLogicalDeviceFlowTable, two OFPFC_ADD flow mods
    remove_subscriber_flow UpdateLogicalDeviceFlowTable, one OFPFC_DELETE by cookie
    collect_metrics        ListDevicePmConfigs + port counters from ListDevicePorts
    get_alarms             the plugin's bounded buffer, fed by ReceiveChangeEvents
    get_topology           ListLogicalDevices + ListLogicalDevicePorts (+ flows)

Two background tasks run between ``activate`` and ``deactivate``: one follows
the ``ReceiveChangeEvents`` stream into the alarm buffer (reconnecting with
backoff), the other polls ``ListDevices`` every ``device_monitoring_interval``
seconds, records device state changes, and keeps the plugin's health in step
with VOLTHA's reachability: NOT_SERVING while VOLTHA cannot be reached, SERVING
once it answers again.

Failures map onto the SDK's classes: VOLTHA unreachable or timing out is
RETRYABLE, an unknown device (NOT_FOUND) or a refused state change is
PERMANENT, a rejected request INVALID_INPUT, rejected credentials
UNAUTHENTICATED. The credentials (``VOLTHA_USERNAME``/``VOLTHA_PASSWORD``)
travel on every call as ``authorization: Basic ...`` gRPC metadata.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import ipaddress
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Final

import grpc
from google.protobuf import empty_pb2
from voltha_protos import (
    common_pb2,
    device_pb2,
    logical_device_pb2,
    openflow_13_pb2,
    voltha_pb2_grpc,
)

from switchboard.sdk import (
    ConfigError,
    InvalidInput,
    NetworkAutomationPlugin,
    PermanentError,
    PluginError,
    RetryableError,
    Unauthenticated,
    operation,
)

_ADMIN = common_pb2.AdminState.Types
_OPER = common_pb2.OperStatus.Types
_CONNECT = common_pb2.ConnectStatus.Types
_PORT_TYPE = device_pb2.Port.PortType
_PM_TYPE = device_pb2.PmConfig.PmType
_OFP = openflow_13_pb2

#: OpenFlow's "VLAN id present" bit, OR-ed into a VLAN_VID match or set-field.
_VLAN_PRESENT: Final = _OFP.OFPVID_PRESENT
_ALL_COOKIE_BITS: Final = 0xFFFF_FFFF_FFFF_FFFF
_ETHERTYPE_8021Q: Final = 0x8100
_PORT_COUNTERS: Final = (
    "rx_packets",
    "rx_bytes",
    "rx_errors",
    "tx_packets",
    "tx_bytes",
    "tx_errors",
)
_SEVERITIES: Final = ("info", "warning", "minor", "major", "critical")
#: How long one probe of VOLTHA's reachability may take at most.
_PROBE_TIMEOUT: Final = 3.0

_SERIAL_NUMBER = {
    "type": "string",
    "pattern": "^[A-Za-z0-9]{4}[0-9A-Fa-f]{8}$",
    "description": "ONU serial number: 4-character vendor id and 8 hex digits, e.g. BBSM000a0001",
}
_DEVICE_ID = {"type": "string", "minLength": 1, "maxLength": 128}
_HOST_AND_PORT = {
    "type": "string",
    "pattern": r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):[0-9]{1,5}$",
    "description": "host:port of the device's management interface",
}
_VLAN = {"type": "integer", "minimum": 1, "maximum": 4094}
_FREQUENCY = {"type": "integer", "minimum": 0, "maximum": 86400}


@dataclass(frozen=True)
class _Settings:
    target: str
    ca_certificate: bytes | None
    server_name: str | None
    tls: bool
    monitoring_interval: float
    request_timeout: float
    alarm_buffer_size: int


class _Backoff:
    """Exponential delays from ``initial`` up to ``maximum``; ``reset`` after a success."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._initial = initial
        self._maximum = max(initial, maximum)
        self._next = initial

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self._maximum)
        return delay

    def reset(self) -> None:
        self._next = self._initial


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
        self._settings = self._read_settings()
        options: list[tuple[str, int | str]] = [
            # Reconnect quickly once VOLTHA is back (gRPC's default waits up to 120 s).
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 5000),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
        ]
        if self._settings.server_name:
            options.append(("grpc.ssl_target_name_override", self._settings.server_name))
        if self._settings.tls:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=self._settings.ca_certificate
            )
            self._channel = grpc.aio.secure_channel(self._settings.target, credentials, options)
        else:
            self._channel = grpc.aio.insecure_channel(self._settings.target, options)
        self._stub = voltha_pb2_grpc.VolthaServiceStub(self._channel)
        token = base64.b64encode(
            f"{self.secrets['VOLTHA_USERNAME']}:{self.secrets['VOLTHA_PASSWORD']}".encode()
        ).decode("ascii")
        self._metadata = (("authorization", f"Basic {token}"),)
        self._alarms: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=self._settings.alarm_buffer_size
        )
        self._alarm_sequence = itertools.count(1)
        self._alarms_dropped = 0
        self._stream_connected = False
        #: What VOLTHA last answered: "reachable", "unreachable" or "unauthenticated".
        self._voltha_state: str | None = None
        self._device_states: dict[str, tuple[int, int, int]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def activate(self) -> None:
        # The first health status follows one quick probe; VOLTHA being down
        # does not stop the plugin from starting (it reports NOT_SERVING).
        with contextlib.suppress(PluginError):
            await self._rpc("GetVoltha", empty_pb2.Empty(), timeout=_PROBE_TIMEOUT)
        self._tasks = [
            asyncio.create_task(self._follow_change_events(), name="voltha-change-events"),
            asyncio.create_task(self._monitor_devices(), name="voltha-device-monitor"),
        ]

    async def deactivate(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def cleanup(self) -> None:
        await self._channel.close()

    async def check_credentials(self) -> str:
        voltha = await self._rpc("GetVoltha", empty_pb2.Empty())
        return f"VOLTHA {voltha.version or '(version not reported)'} accepted the credentials"

    # --- devices ----------------------------------------------------------------------

    @operation(
        schema={
            "type": "object",
            "properties": {
                "type": {
                    "type": "string",
                    "minLength": 1,
                    "description": "VOLTHA device type (adapter), e.g. openolt",
                    "default": "openolt",
                },
                "host_and_port": _HOST_AND_PORT,
                "mac_address": {
                    "type": "string",
                    "pattern": "^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$",
                },
                "enable": {
                    "type": "boolean",
                    "default": True,
                    "description": "Enable the OLT once created (false: keep it preprovisioned)",
                },
            },
            "required": ["host_and_port"],
            "additionalProperties": False,
        }
    )
    async def provision_olt(self, params: dict[str, Any]) -> Any:
        """Pre-provision an OLT (CreateDevice) and enable it (EnableDevice).

        Idempotent: an OLT already known at ``host_and_port`` is reused, so a
        retried call never creates a second device.
        """
        host_and_port = params["host_and_port"]
        existing = [
            device
            for device in (await self._rpc("ListDevices", empty_pb2.Empty())).items
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
            device, created = await self._rpc("CreateDevice", request), True
        if params.get("enable", True) and device.admin_state in (
            _ADMIN.PREPROVISIONED,
            _ADMIN.DISABLED,
        ):
            await self._rpc("EnableDevice", common_pb2.ID(id=device.id), subject=device.id)
        device = await self._get_device(device.id)
        self.logger.info(
            "Provisioned an OLT",
            extra={"device_id": device.id, "host_and_port": host_and_port, "new_device": created},
        )
        return {"created": created, "device": _device_json(device)}

    @operation(
        schema={
            "type": "object",
            "properties": {
                "olt_device_id": _DEVICE_ID,
                "pon_port": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 4294967295,
                    "description": "port_no of the OLT's PON port (see get_device_status)",
                },
                "serial_number": _SERIAL_NUMBER,
            },
            "required": ["olt_device_id", "pon_port", "serial_number"],
            "additionalProperties": False,
        }
    )
    async def provision_onu(self, params: dict[str, Any]) -> Any:
        """Allow an ONU by serial number on one PON port of an OLT and enable it."""
        olt = await self._get_olt(params["olt_device_id"])
        serial = params["serial_number"]
        pon_port = params["pon_port"]
        ports = (await self._rpc("ListDevicePorts", common_pb2.ID(id=olt.id), subject=olt.id)).items
        pon_ports = {port.port_no for port in ports if port.type == _PORT_TYPE.PON_OLT}
        if pon_port not in pon_ports:
            raise InvalidInput(
                f"params.pon_port: OLT {olt.id} has no PON port {pon_port} "
                f"(PON ports: {sorted(pon_ports) or 'none yet; is the OLT ACTIVE?'})"
            )
        await self._rpc(
            "EnableOnuSerialNumber",
            device_pb2.OnuSerialNumberOnOLTPon(
                olt_device_id=common_pb2.ID(id=olt.id),
                port=device_pb2.Port(port_no=pon_port, type=_PORT_TYPE.PON_OLT, device_id=olt.id),
                serial_number=serial,
            ),
            subject=f"ONU {serial} on OLT {olt.id}",
        )
        onu = await self._find_onu(serial, olt.id)
        if onu is not None and onu.admin_state in (_ADMIN.PREPROVISIONED, _ADMIN.DISABLED):
            await self._rpc("EnableDevice", common_pb2.ID(id=onu.id), subject=onu.id)
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
            "device": _device_json(onu) if onu is not None else None,
        }

    @operation(
        schema={
            "type": "object",
            "properties": {"serial_number": _SERIAL_NUMBER, "olt_device_id": _DEVICE_ID},
            "required": ["serial_number"],
            "additionalProperties": False,
        }
    )
    async def enable_onu(self, params: dict[str, Any]) -> Any:
        """Enable (admin up) the ONU with this serial number."""
        onu = await self._require_onu(params["serial_number"], params.get("olt_device_id"))
        await self._rpc("EnableDevice", common_pb2.ID(id=onu.id), subject=onu.id)
        return {"device": _device_json(await self._get_device(onu.id))}

    @operation(
        schema={
            "type": "object",
            "properties": {"serial_number": _SERIAL_NUMBER, "olt_device_id": _DEVICE_ID},
            "required": ["serial_number"],
            "additionalProperties": False,
        }
    )
    async def disable_onu(self, params: dict[str, Any]) -> Any:
        """Disable (admin down) the ONU with this serial number; its subscribers lose service."""
        onu = await self._require_onu(params["serial_number"], params.get("olt_device_id"))
        await self._rpc("DisableDevice", common_pb2.ID(id=onu.id), subject=onu.id)
        return {"device": _device_json(await self._get_device(onu.id))}

    async def discover_devices(self, params: dict[str, Any]) -> Any:
        """List VOLTHA's devices whose attributes equal every filter, e.g. ``{"root": "true"}``."""
        filters: Mapping[str, str] = params.get("filters", {})
        attributes = _device_json(None)
        unknown = sorted(set(filters) - set(attributes))
        if unknown:
            raise InvalidInput(
                f"params.filters: {unknown} are not device attributes "
                f"(use: {', '.join(sorted(attributes))})"
            )
        devices = [
            _device_json(device)
            for device in (await self._rpc("ListDevices", empty_pb2.Empty())).items
        ]
        matching = [
            device
            for device in devices
            if all(_text(device[key]) == value for key, value in filters.items())
        ]
        return {"devices": matching, "count": len(matching)}

    @operation(
        schema={
            "type": "object",
            "properties": {
                "include_ports": {"type": "boolean", "default": False},
            },
            "additionalProperties": False,
        }
    )
    async def list_devices(self, params: dict[str, Any]) -> Any:
        """The inventory: every OLT with its ONUs (and ports if asked)."""
        devices = list((await self._rpc("ListDevices", empty_pb2.Empty())).items)
        include_ports = params.get("include_ports", False)

        async def entry(device: device_pb2.Device) -> dict[str, Any]:
            result = _device_json(device)
            if include_ports:
                ports = await self._rpc(
                    "ListDevicePorts", common_pb2.ID(id=device.id), subject=device.id
                )
                result["ports"] = [_port_json(port) for port in ports.items]
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
        ports = await self._rpc("ListDevicePorts", common_pb2.ID(id=device.id), subject=device.id)
        return {**_device_json(device), "ports": [_port_json(port) for port in ports.items]}

    @operation(
        schema={
            "type": "object",
            "properties": {
                "device_id": _DEVICE_ID,
                "settings": {
                    "type": "object",
                    "properties": {
                        "host_and_port": _HOST_AND_PORT,
                        "ipv4_address": {"type": "string", "format": "ipv4"},
                        "ipv6_address": {"type": "string", "format": "ipv6"},
                        "pm_configs": {
                            "type": "object",
                            "properties": {
                                "default_freq": _FREQUENCY,
                                "freq_override": {"type": "boolean"},
                                "max_skew": {"type": "integer", "minimum": 0, "maximum": 100},
                                "metrics": {
                                    "type": "object",
                                    "description": "By metric name",
                                    "additionalProperties": {
                                        "type": "object",
                                        "properties": {
                                            "enabled": {"type": "boolean"},
                                            "sample_freq": _FREQUENCY,
                                        },
                                        "additionalProperties": False,
                                        "minProperties": 1,
                                    },
                                },
                                "groups": {
                                    "type": "object",
                                    "description": "By group name",
                                    "additionalProperties": {
                                        "type": "object",
                                        "properties": {
                                            "enabled": {"type": "boolean"},
                                            "group_freq": _FREQUENCY,
                                        },
                                        "additionalProperties": False,
                                        "minProperties": 1,
                                    },
                                },
                            },
                            "additionalProperties": False,
                            "minProperties": 1,
                        },
                    },
                    "additionalProperties": False,
                    "minProperties": 1,
                },
            },
            "required": ["device_id", "settings"],
            "additionalProperties": False,
        }
    )
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
            await self._rpc(
                "UpdateDevice",
                device_pb2.UpdateDevice(id=device.id, **{key: settings[key]}),
                subject=device.id,
            )
        result: dict[str, Any] = {}
        if "pm_configs" in settings:
            current = await self._rpc(
                "ListDevicePmConfigs", common_pb2.ID(id=device.id), subject=device.id
            )
            _apply_pm_changes(current, settings["pm_configs"])
            current.id = device.id
            await self._rpc("UpdateDevicePmConfigs", current, subject=device.id)
            updated = await self._rpc(
                "ListDevicePmConfigs", common_pb2.ID(id=device.id), subject=device.id
            )
            result["pm_configs"] = _pm_configs_json(updated)
        result["device"] = _device_json(await self._get_device(device.id))
        self.logger.info(
            "Configured a device", extra={"device_id": device.id, "settings": sorted(settings)}
        )
        return result

    @operation(
        schema={
            "type": "object",
            "properties": {"device_id": _DEVICE_ID},
            "required": ["device_id"],
            "additionalProperties": False,
        }
    )
    async def reboot_device(self, params: dict[str, Any]) -> Any:
        """Reboot one OLT or ONU (RebootDevice)."""
        device_id = params["device_id"]
        await self._rpc("RebootDevice", common_pb2.ID(id=device_id), subject=device_id)
        return {"device_id": device_id, "rebooting": True}

    @operation(
        schema={
            "type": "object",
            "properties": {"device_id": _DEVICE_ID},
            "required": ["device_id"],
            "additionalProperties": False,
        }
    )
    async def delete_device(self, params: dict[str, Any]) -> Any:
        """Delete one device from VOLTHA (an OLT takes its ONUs and logical device with it)."""
        device_id = params["device_id"]
        await self._rpc("DeleteDevice", common_pb2.ID(id=device_id), subject=device_id)
        self._device_states.pop(device_id, None)
        self.logger.info("Deleted a device", extra={"device_id": device_id})
        return {"device_id": device_id, "deleted": True}

    # --- subscriber flows -------------------------------------------------------------

    @operation(
        schema={
            "type": "object",
            "properties": {
                "olt_device_id": _DEVICE_ID,
                "onu_serial_number": _SERIAL_NUMBER,
                "subscriber_id": {"type": "string", "minLength": 1, "maxLength": 128},
                "c_tag": {**_VLAN, "description": "customer VLAN on the UNI"},
                "s_tag": {**_VLAN, "description": "service VLAN on the NNI"},
                "uni_port": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "logical port number; default: the ONU's UNI port",
                },
                "priority": {"type": "integer", "minimum": 0, "maximum": 65535, "default": 1000},
                "table_id": {"type": "integer", "minimum": 0, "maximum": 254, "default": 0},
            },
            "required": ["olt_device_id", "onu_serial_number", "subscriber_id", "c_tag", "s_tag"],
            "additionalProperties": False,
        }
    )
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
            await self._rpc(
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
        cookie = _subscriber_cookie(olt.id, params["subscriber_id"])
        c_tag, s_tag = params["c_tag"], params["s_tag"]
        common = {
            "cookie": cookie,
            "table_id": params.get("table_id", 0),
            "priority": params.get("priority", 1000),
        }
        upstream = _OFP.ofp_flow_mod(
            command=_OFP.OFPFC_ADD,
            match=_match(in_port=uni_port, vlan_vid=c_tag),
            instructions=[
                _apply_actions(
                    _OFP.ofp_action(
                        type=_OFP.OFPAT_PUSH_VLAN,
                        push=_OFP.ofp_action_push(ethertype=_ETHERTYPE_8021Q),
                    ),
                    _OFP.ofp_action(
                        type=_OFP.OFPAT_SET_FIELD,
                        set_field=_OFP.ofp_action_set_field(
                            field=_oxm(_OFP.OFPXMT_OFB_VLAN_VID, vlan_vid=s_tag | _VLAN_PRESENT)
                        ),
                    ),
                    _output(nni_port),
                )
            ],
            **common,
        )
        downstream = _OFP.ofp_flow_mod(
            command=_OFP.OFPFC_ADD,
            # Many subscribers share an s-tag: like ONOS' olt app, name the inner
            # VLAN and the egress UNI in the metadata so each downstream flow is unique.
            match=_match(in_port=nni_port, vlan_vid=s_tag, metadata=(c_tag << 32) | uni_port),
            instructions=[
                _apply_actions(_OFP.ofp_action(type=_OFP.OFPAT_POP_VLAN), _output(uni_port))
            ],
            **common,
        )
        previous = await self._rpc(
            "ListLogicalDeviceFlows", common_pb2.ID(id=logical_device.id), subject=logical_device.id
        )
        for flow_mod in (upstream, downstream):
            await self._rpc(
                "UpdateLogicalDeviceFlowTable",
                _OFP.FlowTableUpdate(id=logical_device.id, flow_mod=flow_mod),
                subject=logical_device.id,
            )
        # Make before break: the subscriber's flows from an earlier call with other
        # VLANs or ports go only once the new ones are in.
        current = {_flow_key(flow_mod) for flow_mod in (upstream, downstream)}
        for flow in previous.items:
            if flow.cookie == cookie and _flow_key(flow) not in current:
                await self._rpc(
                    "UpdateLogicalDeviceFlowTable",
                    _OFP.FlowTableUpdate(id=logical_device.id, flow_mod=_delete_strict(flow)),
                    subject=logical_device.id,
                )
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

    @operation(
        schema={
            "type": "object",
            "properties": {
                "olt_device_id": _DEVICE_ID,
                "subscriber_id": {"type": "string", "minLength": 1, "maxLength": 128},
            },
            "required": ["olt_device_id", "subscriber_id"],
            "additionalProperties": False,
        }
    )
    async def remove_subscriber_flow(self, params: dict[str, Any]) -> Any:
        """Delete every flow of one subscriber from the OLT's logical device (by cookie)."""
        olt = await self._get_olt(params["olt_device_id"])
        logical_device = await self._logical_device_of(olt.id)
        cookie = _subscriber_cookie(olt.id, params["subscriber_id"])
        before = await self._rpc(
            "ListLogicalDeviceFlows", common_pb2.ID(id=logical_device.id), subject=logical_device.id
        )
        matching = sum(1 for flow in before.items if flow.cookie == cookie)
        await self._rpc(
            "UpdateLogicalDeviceFlowTable",
            _OFP.FlowTableUpdate(
                id=logical_device.id,
                flow_mod=_OFP.ofp_flow_mod(
                    command=_OFP.OFPFC_DELETE,
                    cookie=cookie,
                    cookie_mask=_ALL_COOKIE_BITS,
                    table_id=_OFP.OFPTT_ALL,
                    out_port=_OFP.OFPP_ANY,
                    out_group=_OFP.OFPG_ANY,
                ),
            ),
            subject=logical_device.id,
        )
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

    @operation(
        schema={
            "type": "object",
            "properties": {
                "device_id": _DEVICE_ID,
                "names": {
                    "type": "array",
                    "items": {"enum": list(_PORT_COUNTERS)},
                    "uniqueItems": True,
                    "description": "Port counters to report (default: all)",
                },
            },
            "additionalProperties": False,
        }
    )
    async def collect_metrics(self, params: dict[str, Any]) -> Any:
        """PM configuration and port counters of one device, or of every device."""
        names = params.get("names") or list(_PORT_COUNTERS)
        if "device_id" in params:
            devices = [await self._get_device(params["device_id"])]
        else:
            devices = list((await self._rpc("ListDevices", empty_pb2.Empty())).items)
        collected = []
        for device in devices:
            pm_configs = await self._rpc(
                "ListDevicePmConfigs", common_pb2.ID(id=device.id), subject=device.id
            )
            ports = await self._rpc(
                "ListDevicePorts", common_pb2.ID(id=device.id), subject=device.id
            )
            port_counters = [
                {
                    "port_no": port.port_no,
                    "label": port.label,
                    "type": _PORT_TYPE.Name(port.type),
                    **{name: getattr(port, name) for name in names},
                }
                for port in ports.items
            ]
            collected.append(
                {
                    "device_id": device.id,
                    "serial_number": device.serial_number,
                    "pm_configs": _pm_configs_json(pm_configs),
                    "ports": port_counters,
                    "totals": {name: sum(port[name] for port in port_counters) for name in names},
                }
            )
        return {"collected_at": _now(), "devices": collected}

    @operation(
        schema={
            "type": "object",
            "properties": {
                "after_seq": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Only entries newer than this sequence number",
                },
                "device_id": _DEVICE_ID,
                "min_severity": {"enum": list(_SEVERITIES)},
                "alarms_only": {"type": "boolean", "default": False},
                "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
            },
            "additionalProperties": False,
        }
    )
    async def get_alarms(self, params: dict[str, Any]) -> Any:
        """Alarms and events received from VOLTHA, oldest first, from the plugin's buffer."""
        after = params.get("after_seq", 0)
        floor = _SEVERITIES.index(params.get("min_severity", "info"))
        device_id = params.get("device_id")
        alarms_only = params.get("alarms_only", False)
        selected = [
            entry
            for entry in self._alarms
            if entry["seq"] > after
            and _SEVERITIES.index(entry["severity"]) >= floor
            and (not alarms_only or entry["alarm"])
            and (device_id is None or device_id in (entry["device_id"], entry["logical_device_id"]))
        ][: params.get("limit", 100)]
        return {
            "alarms": selected,
            "last_seq": self._alarms[-1]["seq"] if self._alarms else 0,
            "dropped": self._alarms_dropped,
            "stream_connected": self._stream_connected,
        }

    @operation(
        schema={
            "type": "object",
            "properties": {"include_flows": {"type": "boolean", "default": False}},
            "additionalProperties": False,
        }
    )
    async def get_topology(self, params: dict[str, Any]) -> Any:
        """Logical devices (one per OLT) with their ports, and the OLT -> PON -> ONU tree."""
        logical_devices = (await self._rpc("ListLogicalDevices", empty_pb2.Empty())).items
        result = []
        for logical_device in logical_devices:
            ports = await self._rpc(
                "ListLogicalDevicePorts",
                common_pb2.ID(id=logical_device.id),
                subject=logical_device.id,
            )
            flows = await self._rpc(
                "ListLogicalDeviceFlows",
                common_pb2.ID(id=logical_device.id),
                subject=logical_device.id,
            )
            entry: dict[str, Any] = {
                "id": logical_device.id,
                "datapath_id": f"{logical_device.datapath_id:#018x}",
                "root_device_id": logical_device.root_device_id,
                "serial_number": logical_device.desc.serial_num,
                "ports": [_logical_port_json(port) for port in ports.items],
                "flow_count": len(flows.items),
            }
            if params.get("include_flows", False):
                entry["flows"] = [_flow_json(flow) for flow in flows.items]
            result.append(entry)
        devices = list((await self._rpc("ListDevices", empty_pb2.Empty())).items)
        olts = []
        for olt in (device for device in devices if device.root):
            ports = await self._rpc("ListDevicePorts", common_pb2.ID(id=olt.id), subject=olt.id)
            olts.append(
                {
                    "device_id": olt.id,
                    "host_and_port": olt.host_and_port,
                    "oper_status": _OPER.Name(olt.oper_status),
                    "pon_ports": [
                        {
                            "port_no": port.port_no,
                            "label": port.label,
                            "onus": [
                                {
                                    "device_id": onu.id,
                                    "serial_number": onu.serial_number,
                                    "oper_status": _OPER.Name(onu.oper_status),
                                }
                                for onu in devices
                                if onu.parent_id == olt.id and onu.parent_port_no == port.port_no
                            ],
                        }
                        for port in ports.items
                        if port.type == _PORT_TYPE.PON_OLT
                    ],
                }
            )
        return {"logical_devices": result, "olts": olts}

    # --- talking to VOLTHA ------------------------------------------------------------

    async def _rpc(
        self, name: str, request: Any, *, subject: str = "", timeout: float | None = None
    ) -> Any:
        """Call ``VolthaService/<name>``; translate its failure into the SDK's error classes."""
        method = getattr(self._stub, name)
        try:
            response = await method(
                request,
                timeout=timeout or self._settings.request_timeout,
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError as error:
            raise await self._translate(error, name, subject) from None
        await self._note_voltha("reachable")
        return response

    async def _translate(self, error: grpc.aio.AioRpcError, rpc: str, subject: str) -> PluginError:
        code, details = error.code(), error.details() or ""
        what = f"VOLTHA {rpc}"
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            await self._note_voltha("unreachable", reason=f"{code.name}: {details}")
            return RetryableError(
                f"{what} failed: VOLTHA at {self._settings.target} is unreachable "
                f"({code.name}: {details})",
                retry_after=min(max(self._settings.monitoring_interval, 1.0), 30.0),
            )
        if code == grpc.StatusCode.NOT_FOUND:
            return PermanentError(f"{what}: {subject or 'the object'} is not known to VOLTHA")
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE):
            return InvalidInput(f"{what} rejected the request: {details}")
        if code == grpc.StatusCode.UNAUTHENTICATED:
            await self._note_voltha("unauthenticated")
            return Unauthenticated(
                f"{what}: VOLTHA rejected the credentials in VOLTHA_USERNAME/VOLTHA_PASSWORD"
            )
        if code in (
            grpc.StatusCode.ALREADY_EXISTS,
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.UNIMPLEMENTED,
        ):
            return PermanentError(f"{what} refused: {code.name}: {details}")
        return RetryableError(f"{what} failed: {code.name}: {details}")

    async def _note_voltha(self, state: str, *, reason: str = "") -> None:
        """Keep health in step with VOLTHA: SERVING only while it answers and accepts us."""
        if state == self._voltha_state:
            return
        self._voltha_state = state
        target = self._settings.target
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

    async def _get_device(self, device_id: str) -> device_pb2.Device:
        device: device_pb2.Device = await self._rpc(
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
        devices = (await self._rpc("ListDevices", empty_pb2.Empty())).items
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
        for logical_device in (await self._rpc("ListLogicalDevices", empty_pb2.Empty())).items:
            if logical_device.root_device_id == olt_id:
                found: logical_device_pb2.LogicalDevice = logical_device
                return found
        raise PermanentError(
            f"OLT {olt_id} has no logical device yet; VOLTHA creates it when the OLT becomes ACTIVE"
        )

    def _read_settings(self) -> _Settings:
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
        return _Settings(
            target=f"{host}:{config.get('voltha_port', self.default_port)}",
            ca_certificate=ca_certificate,
            server_name=(tls or {}).get("server_name") or None,
            tls=tls is not None,
            monitoring_interval=float(config.get("device_monitoring_interval", 30)),
            request_timeout=float(config.get("request_timeout", 10)),
            alarm_buffer_size=int(config.get("alarm_buffer_size", 1000)),
        )

    # --- background work --------------------------------------------------------------

    async def _follow_change_events(self) -> None:
        """Follow ReceiveChangeEvents into the alarm buffer; reconnect with backoff."""
        backoff = _Backoff(0.2, max(self._settings.monitoring_interval, 1.0))
        while True:
            call = self._stub.ReceiveChangeEvents(empty_pb2.Empty(), metadata=self._metadata)
            try:
                await call.wait_for_connection()
                self._stream_connected = True
                backoff.reset()
                self.logger.info("Subscribed to VOLTHA change events")
                async for event in call:
                    self._record_change_event(event)
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.UNAVAILABLE:
                    await self._note_voltha(
                        "unreachable", reason=f"event stream: {error.details()}"
                    )
                elif error.code() == grpc.StatusCode.UNAUTHENTICATED:
                    await self._note_voltha("unauthenticated")
            except Exception:
                self.logger.exception("Failed to read VOLTHA change events")
            finally:
                call.cancel()
                if self._stream_connected:
                    self.logger.warning("Lost the VOLTHA change event stream")
                self._stream_connected = False
            await asyncio.sleep(backoff.next())

    async def _monitor_devices(self) -> None:
        """Poll device states every ``device_monitoring_interval`` seconds."""
        interval = self._settings.monitoring_interval
        backoff = _Backoff(min(0.5, interval), interval)
        while True:
            try:
                devices = await self._rpc(
                    "ListDevices", empty_pb2.Empty(), timeout=min(_PROBE_TIMEOUT, interval * 5)
                )
            except RetryableError:
                # Unreachable: probe more often than the interval until VOLTHA is back.
                await asyncio.sleep(backoff.next())
                continue
            except Unauthenticated:
                pass  # said once, when VOLTHA first refused; health is NOT_SERVING
            except PluginError as error:
                self.logger.warning("Device monitoring failed", extra={"error": error.message})
            except Exception:
                self.logger.exception("Device monitoring failed")
            else:
                backoff.reset()
                self._note_device_states(devices.items)
            await asyncio.sleep(interval)

    def _note_device_states(self, devices: Iterable[device_pb2.Device]) -> None:
        seen = set()
        for device in devices:
            seen.add(device.id)
            state = (device.admin_state, device.oper_status, device.connect_status)
            previous = self._device_states.get(device.id)
            self._device_states[device.id] = state
            # An enabled device that failed or can't be reached is an alarm, also
            # when first seen (say, after a restart of the plugin); any other
            # change of state is an event.
            broken = device.admin_state == _ADMIN.ENABLED and (
                device.oper_status == _OPER.FAILED or device.connect_status == _CONNECT.UNREACHABLE
            )
            if previous == state or (previous is None and not broken):
                continue
            self._record(
                kind="device_state",
                alarm=broken,
                severity="critical" if broken else "info",
                device_id=device.id,
                description=(
                    f"{'OLT' if device.root else 'ONU'} {device.serial_number or device.id} is "
                    f"{_ADMIN.Name(device.admin_state)}/{_OPER.Name(device.oper_status)}/"
                    f"{_CONNECT.Name(device.connect_status)}"
                ),
                details={
                    "admin_state": _ADMIN.Name(device.admin_state),
                    "oper_status": _OPER.Name(device.oper_status),
                    "connect_status": _CONNECT.Name(device.connect_status),
                    "previous_oper_status": _OPER.Name(previous[1]) if previous else None,
                    "reason": device.reason,
                },
            )
        for gone in set(self._device_states) - seen:
            del self._device_states[gone]

    def _record_change_event(self, event: openflow_13_pb2.ChangeEvent) -> None:
        which = event.WhichOneof("event")
        if which == "port_status":
            status = event.port_status
            port = status.desc
            reason = _OFP.ofp_port_reason.Name(status.reason)
            link_down = bool(port.state & _OFP.OFPPS_LINK_DOWN)
            if status.reason == _OFP.OFPPR_DELETE:
                severity, alarm, what = "minor", True, "was deleted"
            elif link_down:
                severity, alarm, what = "major", True, "is down"
            elif status.reason == _OFP.OFPPR_ADD:
                severity, alarm, what = "info", False, "was added"
            else:
                severity, alarm, what = "info", False, "is up"
            self._record(
                kind="port_status",
                alarm=alarm,
                severity=severity,
                logical_device_id=event.id,
                description=f"Port {port.name or port.port_no} {what}",
                details={
                    "reason": reason,
                    "port_no": port.port_no,
                    "port_name": port.name,
                    "link_down": link_down,
                },
            )
        elif which == "device_status":
            connected = event.device_status.status == _OFP.OFPDEV_CONNECTED
            self._record(
                kind="device_status",
                alarm=not connected,
                severity="info" if connected else "critical",
                logical_device_id=event.id,
                description=f"Device {'connected' if connected else 'disconnected'}",
                details={"status": _OFP.ofp_device_connection.Name(event.device_status.status)},
            )
        elif which == "error":
            error = event.error
            self._record(
                kind="openflow_error",
                alarm=True,
                severity="major",
                logical_device_id=event.id,
                description=f"OpenFlow error type {error.type} code {error.code}",
                details={"type": error.type, "code": error.code, "data": error.data.hex()},
            )

    def _record(
        self,
        *,
        kind: str,
        alarm: bool,
        severity: str,
        description: str,
        details: Mapping[str, Any],
        device_id: str = "",
        logical_device_id: str = "",
    ) -> None:
        if len(self._alarms) == self._alarms.maxlen:
            self._alarms_dropped += 1
        self._alarms.append(
            {
                "seq": next(self._alarm_sequence),
                "received_at": _now(),
                "kind": kind,
                "alarm": alarm,
                "severity": severity,
                "device_id": device_id,
                "logical_device_id": logical_device_id,
                "description": description,
                "details": dict(details),
            }
        )


# --- protobuf to JSON -----------------------------------------------------------------


def _device_json(device: device_pb2.Device | None) -> dict[str, Any]:
    """One device as plain JSON; ``None`` gives the keys (for filter validation)."""
    device = device or device_pb2.Device()
    return {
        "id": device.id,
        "type": device.type,
        "root": device.root,
        "parent_id": device.parent_id,
        "parent_port_no": device.parent_port_no,
        "vendor": device.vendor,
        "model": device.model,
        "serial_number": device.serial_number,
        "hardware_version": device.hardware_version,
        "firmware_version": device.firmware_version,
        "mac_address": device.mac_address,
        "host_and_port": device.host_and_port,
        "ipv4_address": device.ipv4_address,
        "ipv6_address": device.ipv6_address,
        "admin_state": _ADMIN.Name(device.admin_state),
        "oper_status": _OPER.Name(device.oper_status),
        "connect_status": _CONNECT.Name(device.connect_status),
        "reason": device.reason,
    }


def _port_json(port: device_pb2.Port) -> dict[str, Any]:
    return {
        "port_no": port.port_no,
        "label": port.label,
        "type": _PORT_TYPE.Name(port.type),
        "admin_state": _ADMIN.Name(port.admin_state),
        "oper_status": _OPER.Name(port.oper_status),
        "peers": [{"device_id": peer.device_id, "port_no": peer.port_no} for peer in port.peers],
        "counters": {name: getattr(port, name) for name in _PORT_COUNTERS},
    }


def _logical_port_json(port: logical_device_pb2.LogicalPort) -> dict[str, Any]:
    return {
        "id": port.id,
        "port_no": port.ofp_port.port_no,
        "name": port.ofp_port.name,
        "device_id": port.device_id,
        "device_port_no": port.device_port_no,
        "root_port": port.root_port,
        "link_down": bool(port.ofp_port.state & _OFP.OFPPS_LINK_DOWN),
    }


def _pm_configs_json(configs: device_pb2.PmConfigs) -> dict[str, Any]:
    def metric(config: device_pb2.PmConfig) -> dict[str, Any]:
        return {
            "name": config.name,
            "type": _PM_TYPE.Name(config.type),
            "enabled": config.enabled,
            "sample_freq": config.sample_freq,
        }

    return {
        "default_freq": configs.default_freq,
        "grouped": configs.grouped,
        "freq_override": configs.freq_override,
        "max_skew": configs.max_skew,
        "metrics": [metric(config) for config in configs.metrics],
        "groups": [
            {
                "group_name": group.group_name,
                "group_freq": group.group_freq,
                "enabled": group.enabled,
                "metrics": [metric(config) for config in group.metrics],
            }
            for group in configs.groups
        ],
    }


def _flow_json(flow: openflow_13_pb2.ofp_flow_stats) -> dict[str, Any]:
    match = {
        _OFP.oxm_ofb_field_types.Name(field.ofb_field.type): field.ofb_field.WhichOneof("value")
        and getattr(field.ofb_field, str(field.ofb_field.WhichOneof("value")))
        for field in flow.match.oxm_fields
    }
    return {
        "id": str(flow.id),
        "table_id": flow.table_id,
        "priority": flow.priority,
        "cookie": f"{flow.cookie:#018x}",
        "match": match,
        "packet_count": flow.packet_count,
        "byte_count": flow.byte_count,
    }


def _apply_pm_changes(configs: device_pb2.PmConfigs, changes: Mapping[str, Any]) -> None:
    """Apply ``settings.pm_configs`` to VOLTHA's current PM configuration, in place."""
    for key in ("default_freq", "freq_override", "max_skew"):
        if key in changes:
            setattr(configs, key, changes[key])
    by_name = {config.name: config for config in configs.metrics}
    for group in configs.groups:
        by_name.update({config.name: config for config in group.metrics})
    _apply_named(by_name, changes.get("metrics", {}), "metrics")
    groups = {group.group_name: group for group in configs.groups}
    _apply_named(groups, changes.get("groups", {}), "groups")


def _apply_named(
    targets: Mapping[str, Any], changes: Mapping[str, Mapping[str, Any]], field: str
) -> None:
    for name, values in changes.items():
        target = targets.get(name)
        if target is None:
            raise InvalidInput(
                f"params.settings.pm_configs.{field}.{name}: the device has no such PM "
                f"{field[:-1]} (it has: {', '.join(sorted(targets)) or 'none'})"
            )
        for key, value in values.items():
            setattr(target, key, value)


# --- OpenFlow building blocks ---------------------------------------------------------


def _oxm(field_type: int, **value: Any) -> openflow_13_pb2.ofp_oxm_field:
    return _OFP.ofp_oxm_field(
        oxm_class=_OFP.OFPXMC_OPENFLOW_BASIC,
        ofb_field=_OFP.ofp_oxm_ofb_field(type=field_type, **value),
    )


def _match(
    *, in_port: int, vlan_vid: int, metadata: int | None = None
) -> openflow_13_pb2.ofp_match:
    fields = [
        _oxm(_OFP.OFPXMT_OFB_IN_PORT, port=in_port),
        _oxm(_OFP.OFPXMT_OFB_VLAN_VID, vlan_vid=vlan_vid | _VLAN_PRESENT),
    ]
    if metadata is not None:
        fields.append(_oxm(_OFP.OFPXMT_OFB_METADATA, table_metadata=metadata))
    return _OFP.ofp_match(type=_OFP.OFPMT_OXM, oxm_fields=fields)


def _output(port: int) -> openflow_13_pb2.ofp_action:
    return _OFP.ofp_action(
        type=_OFP.OFPAT_OUTPUT,
        output=_OFP.ofp_action_output(port=port, max_len=_OFP.OFPCML_NO_BUFFER),
    )


def _apply_actions(*actions: openflow_13_pb2.ofp_action) -> openflow_13_pb2.ofp_instruction:
    return _OFP.ofp_instruction(
        type=_OFP.OFPIT_APPLY_ACTIONS,
        actions=_OFP.ofp_instruction_actions(actions=list(actions)),
    )


def _flow_key(flow: Any) -> tuple[int, int, bytes]:
    """What identifies a flow in its table: table, priority and match (OpenFlow 1.3, 6.4)."""
    return flow.table_id, flow.priority, flow.match.SerializeToString(deterministic=True)


def _delete_strict(flow: openflow_13_pb2.ofp_flow_stats) -> openflow_13_pb2.ofp_flow_mod:
    """A flow mod deleting exactly ``flow``."""
    return _OFP.ofp_flow_mod(
        command=_OFP.OFPFC_DELETE_STRICT,
        cookie=flow.cookie,
        cookie_mask=_ALL_COOKIE_BITS,
        table_id=flow.table_id,
        priority=flow.priority,
        match=flow.match,
        out_port=_OFP.OFPP_ANY,
        out_group=_OFP.OFPG_ANY,
    )


def _subscriber_cookie(olt_id: str, subscriber_id: str) -> int:
    """A stable 63-bit cookie naming one subscriber's flows on one OLT."""
    digest = hashlib.sha256(f"{olt_id}\0{subscriber_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


# --- small helpers --------------------------------------------------------------------


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host.strip("[]")), ipaddress.IPv6Address)
    except ValueError:
        return False


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
