"""A VOLTHA core stand-in: ``voltha.VolthaService`` from ``voltha-protos``, served by grpc.aio.

It implements the northbound RPCs the VOLTHA plugin uses, on devices kept in
memory, following the state machine VOLTHA documents:

* ``CreateDevice`` pre-provisions an OLT: admin PREPROVISIONED, oper UNKNOWN,
  connect UNREACHABLE. A second OLT at the same ``host_and_port`` is
  ALREADY_EXISTS; no type or no address is INVALID_ARGUMENT.
* ``EnableDevice`` on an OLT: admin ENABLED, oper ACTIVATING, connect
  REACHABLE; one step later oper ACTIVE, its NNI and PON ports exist, a
  logical device is created with the NNI as root port, and the ONUs cabled to
  its PON ports (``plant``) are discovered one step after that: child devices
  with admin PREPROVISIONED, oper DISCOVERED.
* ``EnableOnuSerialNumber`` (or ``EnableDevice`` on the ONU) activates an ONU:
  admin ENABLED, oper ACTIVATING, then ACTIVE with a UNI port that also
  appears on the OLT's logical device. ``DisableDevice`` takes it down: admin
  DISABLED, oper UNKNOWN, its logical port LINK_DOWN.
* ``RebootDevice`` passes through REBOOTED back to ACTIVE; ``DeleteDevice``
  removes a device (an OLT with its ONUs, logical device and flows).
* Flows are stored per logical device: ``OFPFC_ADD`` replaces a flow with the
  same table, priority and match; ``OFPFC_DELETE`` removes the flows whose
  cookie matches under the mask and whose match contains the mod's fields.
* Every port change is streamed to ``ReceiveChangeEvents`` subscribers as an
  ``ofp_port_status``; OLT connection changes as ``ofp_device_status``.
* An unknown id is NOT_FOUND; a call without the expected
  ``authorization: Basic ...`` metadata is UNAUTHENTICATED.

``VolthaServer`` runs it on 127.0.0.1 and can be stopped and started again on
the same port (the core keeps its state, as VOLTHA keeps it in etcd).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Final

import grpc
from google.protobuf import empty_pb2
from voltha_protos import (
    adapter_pb2,
    common_pb2,
    device_pb2,
    health_pb2,
    logical_device_pb2,
    openflow_13_pb2,
    voltha_pb2,
    voltha_pb2_grpc,
)

ADMIN = common_pb2.AdminState.Types
OPER = common_pb2.OperStatus.Types
CONNECT = common_pb2.ConnectStatus.Types
PORT_TYPE = device_pb2.Port.PortType
OFP = openflow_13_pb2

#: OpenOLT's port numbering: NNI interfaces at 1 << 20, PON interfaces at 2 << 28.
NNI_PORT_NO: Final = 1 << 20
PON_PORT_BASE: Final = 2 << 28
UNI_PORT_NO: Final = 16
ONU_TYPE: Final = "brcm_openomci_onu_adapter"
_Context = grpc.aio.ServicerContext[Any, Any]


#: The adapters registered with the stand-in core, as VOLTHA lists them.
ADAPTERS: Final = (
    adapter_pb2.Adapter(
        id="adapter-open-olt",
        vendor="VOLTHA OpenOLT",
        type="openolt",
        version="4.4.10",
        endpoint="adapter-open-olt.voltha.svc:50060",
        currentReplica=1,
        totalReplicas=1,
    ),
    adapter_pb2.Adapter(
        id="adapter-open-onu",
        vendor="VOLTHA OpenONUGo",
        type=ONU_TYPE,
        version="2.11.6",
        endpoint="adapter-open-onu.voltha.svc:50060",
        currentReplica=1,
        totalReplicas=1,
    ),
)


def pon_port_no(index: int) -> int:
    """The VOLTHA port number of PON interface ``index``."""
    return PON_PORT_BASE + index


class VolthaCore(voltha_pb2_grpc.VolthaServiceServicer):  # type: ignore[misc]  # generated
    """An in-memory VOLTHA core; see the module docstring for its behaviour."""

    def __init__(
        self,
        *,
        username: str,
        password: str,
        plant: Mapping[str, Mapping[int, Sequence[str]]] | None = None,
        pon_ports: int = 2,
        step: float = 0.05,
    ) -> None:
        #: ONU serial numbers cabled to each PON interface, by OLT ``host_and_port``.
        self.plant = {olt: dict(pons) for olt, pons in (plant or {}).items()}
        self.pon_ports = pon_ports
        self.step = step
        self.version = "2.12.0-switchboard-standin"
        self._authorization = (
            "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        )
        self.devices: dict[str, device_pb2.Device] = {}
        self.ports: dict[str, list[device_pb2.Port]] = {}
        self.pm_configs: dict[str, device_pb2.PmConfigs] = {}
        self.logical_devices: dict[str, logical_device_pb2.LogicalDevice] = {}
        self.logical_ports: dict[str, list[logical_device_pb2.LogicalPort]] = {}
        self.flows: dict[str, list[openflow_13_pb2.ofp_flow_stats]] = {}
        #: Serial numbers allowed by EnableOnuSerialNumber, by OLT id.
        self.allowed_serials: dict[str, set[str]] = {}
        #: (rpc, authorization metadata) of every call, for assertions.
        self.calls: list[tuple[str, str]] = []
        self._subscribers: set[asyncio.Queue[openflow_13_pb2.ChangeEvent]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flow_ids = itertools.count(1)
        self._logical_port_numbers = itertools.count(256)
        self._datapath_ids = itertools.count(1)

    # --- test helpers -----------------------------------------------------------------

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def device_by_serial(self, serial: str) -> device_pb2.Device | None:
        return next((d for d in self.devices.values() if d.serial_number == serial), None)

    def logical_device_of(self, olt_id: str) -> logical_device_pb2.LogicalDevice | None:
        return next(
            (ld for ld in self.logical_devices.values() if ld.root_device_id == olt_id), None
        )

    def add_traffic(self, device_id: str, port_no: int, **counters: int) -> None:
        port = self._port(device_id, port_no)
        for name, value in counters.items():
            setattr(port, name, getattr(port, name) + value)

    def set_link(self, device_id: str, port_no: int, *, up: bool) -> None:
        """Cut or mend the fiber of one port: its logical port goes LINK_DOWN or LIVE."""
        port = self._port(device_id, port_no)
        port.oper_status = OPER.ACTIVE if up else OPER.FAILED
        self._set_logical_port_state(device_id, port_no, live=up)

    def lose_olt(self, olt_id: str) -> None:
        """The OLT stops answering VOLTHA: connect UNREACHABLE and a disconnect event."""
        olt = self.devices[olt_id]
        olt.connect_status = CONNECT.UNREACHABLE
        olt.reason = "olt-connection-lost"
        self._device_status_event(olt_id, connected=False)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- VolthaService ----------------------------------------------------------------

    async def ListAdapters(self, request: empty_pb2.Empty, context: _Context) -> Any:
        await self._authorize("ListAdapters", context)
        return adapter_pb2.Adapters(items=list(ADAPTERS))

    async def ListDeviceTypes(self, request: empty_pb2.Empty, context: _Context) -> Any:
        await self._authorize("ListDeviceTypes", context)
        return device_pb2.DeviceTypes(
            items=[
                device_pb2.DeviceType(
                    id=adapter.type, adapter=adapter.id, vendor_ids=[adapter.vendor]
                )
                for adapter in ADAPTERS
            ]
        )

    async def ListCoreInstances(self, request: empty_pb2.Empty, context: _Context) -> Any:
        await self._authorize("ListCoreInstances", context)
        return voltha_pb2.CoreInstances(
            items=[
                voltha_pb2.CoreInstance(
                    instance_id=f"rw-core-{index}",
                    health=health_pb2.HealthStatus(state=health_pb2.HealthStatus.HEALTHY),
                )
                for index in (1, 2)
            ]
        )

    async def DisablePort(self, request: device_pb2.Port, context: _Context) -> Any:
        await self._authorize("DisablePort", context)
        await self._set_port_admin(request, context, enabled=False)
        return empty_pb2.Empty()

    async def EnablePort(self, request: device_pb2.Port, context: _Context) -> Any:
        await self._authorize("EnablePort", context)
        await self._set_port_admin(request, context, enabled=True)
        return empty_pb2.Empty()

    async def GetVoltha(self, request: empty_pb2.Empty, context: _Context) -> Any:
        await self._authorize("GetVoltha", context)
        return voltha_pb2.Voltha(version=self.version)

    async def ListDevices(self, request: empty_pb2.Empty, context: _Context) -> Any:
        await self._authorize("ListDevices", context)
        return device_pb2.Devices(items=list(self.devices.values()))

    async def GetDevice(self, request: common_pb2.ID, context: _Context) -> Any:
        await self._authorize("GetDevice", context)
        return await self._device(request.id, context)

    async def CreateDevice(self, request: device_pb2.Device, context: _Context) -> Any:
        await self._authorize("CreateDevice", context)
        if not request.type:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "device type is required")
        if request.WhichOneof("address") is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a device address is required")
        if any(d.root and d.host_and_port == request.host_and_port for d in self.devices.values()):
            await context.abort(
                grpc.StatusCode.ALREADY_EXISTS,
                f"device at {request.host_and_port} already exists",
            )
        device = device_pb2.Device()
        device.CopyFrom(request)
        device.id = str(uuid.uuid4())
        device.root = True
        device.vendor = device.vendor or "Switchboard"
        device.model = device.model or "stand-in OLT"
        device.serial_number = device.serial_number or f"OLT{len(self.devices):09d}"
        device.admin_state = ADMIN.PREPROVISIONED
        device.oper_status = OPER.UNKNOWN
        device.connect_status = CONNECT.UNREACHABLE
        self.devices[device.id] = device
        self.ports[device.id] = []
        return device

    async def EnableDevice(self, request: common_pb2.ID, context: _Context) -> Any:
        await self._authorize("EnableDevice", context)
        device = await self._device(request.id, context)
        if device.admin_state == ADMIN.ENABLED:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"device {device.id} is already enabled"
            )
        if device.root:
            device.admin_state = ADMIN.ENABLED
            device.oper_status = OPER.ACTIVATING
            device.connect_status = CONNECT.REACHABLE
            device.reason = "initial-enable"
            self._later(self._activate_olt(device.id))
        else:
            self.allowed_serials.setdefault(device.parent_id, set()).add(device.serial_number)
            self._start_onu(device)
        return empty_pb2.Empty()

    async def DisableDevice(self, request: common_pb2.ID, context: _Context) -> Any:
        await self._authorize("DisableDevice", context)
        device = await self._device(request.id, context)
        if device.admin_state != ADMIN.ENABLED:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"device {device.id} is not enabled"
            )
        self._disable(device)
        return empty_pb2.Empty()

    async def RebootDevice(self, request: common_pb2.ID, context: _Context) -> Any:
        await self._authorize("RebootDevice", context)
        device = await self._device(request.id, context)
        if device.admin_state != ADMIN.ENABLED:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"device {device.id} is not enabled"
            )
        device.oper_status = OPER.REBOOTED
        device.reason = "rebooting"
        if device.root:
            device.connect_status = CONNECT.UNREACHABLE
            self._device_status_event(device.id, connected=False)
        self._later(self._finish_reboot(device.id))
        return empty_pb2.Empty()

    async def DeleteDevice(self, request: common_pb2.ID, context: _Context) -> Any:
        await self._authorize("DeleteDevice", context)
        device = await self._device(request.id, context)
        if device.root:
            for child in [d for d in self.devices.values() if d.parent_id == device.id]:
                self._forget(child.id)
            logical = self.logical_device_of(device.id)
            if logical is not None:
                for port in self.logical_ports.pop(logical.id, []):
                    self._port_status_event(logical.id, OFP.OFPPR_DELETE, port.ofp_port)
                self.flows.pop(logical.id, None)
                del self.logical_devices[logical.id]
        else:
            self._remove_logical_port(device)
        self._forget(device.id)
        return empty_pb2.Empty()

    async def ListDevicePorts(self, request: common_pb2.ID, context: _Context) -> Any:
        await self._authorize("ListDevicePorts", context)
        await self._device(request.id, context)
        return device_pb2.Ports(items=self.ports[request.id])

    async def ListDevicePmConfigs(self, request: common_pb2.ID, context: _Context) -> Any:
        await self._authorize("ListDevicePmConfigs", context)
        await self._device(request.id, context)
        return self.pm_configs.get(request.id, device_pb2.PmConfigs(id=request.id))

    async def UpdateDevicePmConfigs(self, request: device_pb2.PmConfigs, context: _Context) -> Any:
        await self._authorize("UpdateDevicePmConfigs", context)
        await self._device(request.id, context)
        known = self.pm_configs.get(request.id)
        names = _pm_names(known) if known is not None else set()
        unknown = _pm_names(request) - names
        if unknown:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"unknown PM metrics {sorted(unknown)}"
            )
        stored = device_pb2.PmConfigs()
        stored.CopyFrom(request)
        self.pm_configs[request.id] = stored
        return empty_pb2.Empty()

    async def UpdateDevice(self, request: device_pb2.UpdateDevice, context: _Context) -> Any:
        await self._authorize("UpdateDevice", context)
        device = await self._device(request.id, context)
        which = request.WhichOneof("address")
        if which is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no address to update")
        setattr(device, str(which), getattr(request, str(which)))
        return empty_pb2.Empty()

    async def EnableOnuSerialNumber(
        self, request: device_pb2.OnuSerialNumberOnOLTPon, context: _Context
    ) -> Any:
        await self._authorize("EnableOnuSerialNumber", context)
        olt = await self._device(request.olt_device_id.id, context)
        self.allowed_serials.setdefault(olt.id, set()).add(request.serial_number)
        onu = self.device_by_serial(request.serial_number)
        if onu is not None and onu.parent_id == olt.id:
            if onu.parent_port_no != request.port.port_no:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"ONU {request.serial_number} is on PON port {onu.parent_port_no}, "
                    f"not {request.port.port_no}",
                )
            if onu.admin_state != ADMIN.ENABLED:
                self._start_onu(onu)
        return empty_pb2.Empty()

    async def DisableOnuSerialNumber(
        self, request: device_pb2.OnuSerialNumberOnOLTPon, context: _Context
    ) -> Any:
        await self._authorize("DisableOnuSerialNumber", context)
        olt = await self._device(request.olt_device_id.id, context)
        self.allowed_serials.get(olt.id, set()).discard(request.serial_number)
        onu = self.device_by_serial(request.serial_number)
        if onu is not None and onu.admin_state == ADMIN.ENABLED:
            self._disable(onu)
        return empty_pb2.Empty()

    async def ListLogicalDevices(self, request: empty_pb2.Empty, context: _Context) -> Any:
        await self._authorize("ListLogicalDevices", context)
        return logical_device_pb2.LogicalDevices(items=list(self.logical_devices.values()))

    async def GetLogicalDevice(self, request: common_pb2.ID, context: _Context) -> Any:
        await self._authorize("GetLogicalDevice", context)
        return await self._logical_device(request.id, context)

    async def ListLogicalDevicePorts(self, request: common_pb2.ID, context: _Context) -> Any:
        await self._authorize("ListLogicalDevicePorts", context)
        await self._logical_device(request.id, context)
        return logical_device_pb2.LogicalPorts(items=self.logical_ports[request.id])

    async def ListLogicalDeviceFlows(self, request: common_pb2.ID, context: _Context) -> Any:
        await self._authorize("ListLogicalDeviceFlows", context)
        await self._logical_device(request.id, context)
        return OFP.Flows(items=self.flows[request.id])

    async def UpdateLogicalDeviceFlowTable(
        self, request: openflow_13_pb2.FlowTableUpdate, context: _Context
    ) -> Any:
        await self._authorize("UpdateLogicalDeviceFlowTable", context)
        logical = await self._logical_device(request.id, context)
        mod = request.flow_mod
        flows = self.flows[logical.id]
        if mod.command == OFP.OFPFC_ADD:
            in_port = _field(mod.match, OFP.OFPXMT_OFB_IN_PORT)
            ports = {port.ofp_port.port_no for port in self.logical_ports[logical.id]}
            if in_port is not None and in_port.port not in ports:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"in_port {in_port.port} is not a port of logical device {logical.id}",
                )
            flows[:] = [
                flow
                for flow in flows
                if not (
                    flow.table_id == mod.table_id
                    and flow.priority == mod.priority
                    and flow.match == mod.match
                )
            ]
            flows.append(
                OFP.ofp_flow_stats(
                    id=next(self._flow_ids),
                    table_id=mod.table_id,
                    priority=mod.priority,
                    cookie=mod.cookie,
                    idle_timeout=mod.idle_timeout,
                    hard_timeout=mod.hard_timeout,
                    flags=mod.flags,
                    match=mod.match,
                    instructions=mod.instructions,
                )
            )
        elif mod.command in (OFP.OFPFC_DELETE, OFP.OFPFC_DELETE_STRICT):
            strict = mod.command == OFP.OFPFC_DELETE_STRICT
            flows[:] = [flow for flow in flows if not _deletes(mod, flow, strict=strict)]
        else:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED,
                f"flow mod command {OFP.ofp_flow_mod_command.Name(mod.command)}",
            )
        return empty_pb2.Empty()

    async def ReceiveChangeEvents(
        self, request: empty_pb2.Empty, context: _Context
    ) -> AsyncIterator[openflow_13_pb2.ChangeEvent]:
        await self._authorize("ReceiveChangeEvents", context)
        queue: asyncio.Queue[openflow_13_pb2.ChangeEvent] = asyncio.Queue(maxsize=1000)
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)

    async def _set_port_admin(
        self, request: device_pb2.Port, context: _Context, *, enabled: bool
    ) -> None:
        """A port's admin state; an OLT's PON port takes the ONUs on it down and up with it."""
        await self._device(request.device_id, context)
        port = next(
            (p for p in self.ports[request.device_id] if p.port_no == request.port_no), None
        )
        if port is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"port {request.port_no} of device {request.device_id} not found",
            )
        assert port is not None
        port.admin_state = ADMIN.ENABLED if enabled else ADMIN.DISABLED
        port.oper_status = OPER.ACTIVE if enabled else OPER.UNKNOWN
        for onu in [d for d in self.devices.values() if d.parent_id == request.device_id]:
            if onu.parent_port_no != request.port_no or onu.admin_state != ADMIN.ENABLED:
                continue
            onu.oper_status = OPER.ACTIVE if enabled else OPER.UNKNOWN
            onu.connect_status = CONNECT.REACHABLE if enabled else CONNECT.UNREACHABLE
            self._set_logical_port_state(onu.id, UNI_PORT_NO, live=enabled)

    # --- state machine ----------------------------------------------------------------

    async def _activate_olt(self, olt_id: str) -> None:
        await asyncio.sleep(self.step)
        olt = self.devices.get(olt_id)
        if olt is None or olt.admin_state != ADMIN.ENABLED:
            return
        olt.oper_status = OPER.ACTIVE
        olt.reason = "olt-active"
        if not self.ports[olt_id]:
            self.ports[olt_id] = [
                _port(olt_id, NNI_PORT_NO, f"nni-{NNI_PORT_NO}", PORT_TYPE.ETHERNET_NNI),
                *(
                    _port(olt_id, pon_port_no(i), f"pon-{i}", PORT_TYPE.PON_OLT)
                    for i in range(self.pon_ports)
                ),
            ]
            self.pm_configs[olt_id] = device_pb2.PmConfigs(
                id=olt_id,
                default_freq=150,
                metrics=[
                    device_pb2.PmConfig(name=name, type=device_pb2.PmConfig.COUNTER, enabled=True)
                    for name in ("rx_bytes", "rx_packets", "tx_bytes", "tx_packets")
                ],
            )
        for port in self.ports[olt_id]:
            port.admin_state, port.oper_status = ADMIN.ENABLED, OPER.ACTIVE
        logical = self.logical_device_of(olt_id)
        if logical is None:
            logical = logical_device_pb2.LogicalDevice(
                id=str(uuid.uuid4()),
                datapath_id=next(self._datapath_ids),
                root_device_id=olt_id,
                desc=OFP.ofp_desc(
                    mfr_desc="Switchboard", sw_desc="stand-in", serial_num=olt.serial_number
                ),
                switch_features=OFP.ofp_switch_features(n_buffers=256, n_tables=2),
            )
            self.logical_devices[logical.id] = logical
            self.logical_ports[logical.id] = []
            self.flows[logical.id] = []
            self._add_logical_port(logical.id, olt_id, NNI_PORT_NO, NNI_PORT_NO, root=True)
        self._device_status_event(olt_id, connected=True)
        await asyncio.sleep(self.step)
        self._discover_onus(olt)

    def _discover_onus(self, olt: device_pb2.Device) -> None:
        for index, serials in self.plant.get(olt.host_and_port, {}).items():
            for serial in serials:
                if self.device_by_serial(serial) is not None:
                    continue
                onu = device_pb2.Device(
                    id=str(uuid.uuid4()),
                    type=ONU_TYPE,
                    root=False,
                    parent_id=olt.id,
                    parent_port_no=pon_port_no(index),
                    vendor=serial[:4],
                    model="stand-in ONU",
                    serial_number=serial,
                    admin_state=ADMIN.PREPROVISIONED,
                    oper_status=OPER.DISCOVERED,
                    connect_status=CONNECT.REACHABLE,
                    reason="onu-discovered",
                    proxy_address=device_pb2.Device.ProxyAddress(
                        device_id=olt.id, channel_id=index
                    ),
                )
                self.devices[onu.id] = onu
                self.ports[onu.id] = []
                if serial in self.allowed_serials.get(olt.id, set()):
                    self._start_onu(onu)

    def _start_onu(self, onu: device_pb2.Device) -> None:
        onu.admin_state = ADMIN.ENABLED
        onu.oper_status = OPER.ACTIVATING
        onu.reason = "starting-omci"
        self._later(self._activate_onu(onu.id))

    async def _activate_onu(self, onu_id: str) -> None:
        await asyncio.sleep(self.step)
        onu = self.devices.get(onu_id)
        if onu is None or onu.admin_state != ADMIN.ENABLED:
            return
        onu.oper_status = OPER.ACTIVE
        onu.reason = "initial-mib-downloaded"
        if not self.ports[onu_id]:
            self.ports[onu_id] = [
                _port(onu_id, 1, "pon-1", PORT_TYPE.PON_ONU),
                _port(onu_id, UNI_PORT_NO, f"uni-{UNI_PORT_NO}", PORT_TYPE.ETHERNET_UNI),
            ]
            self.pm_configs[onu_id] = device_pb2.PmConfigs(
                id=onu_id,
                default_freq=600,
                grouped=True,
                groups=[
                    device_pb2.PmGroupConfig(
                        group_name=group,
                        group_freq=600,
                        enabled=True,
                        metrics=[
                            device_pb2.PmConfig(name=name, type=device_pb2.PmConfig.GAUGE)
                            for name in metrics
                        ],
                    )
                    for group, metrics in (
                        ("PON_Optical", ("transmit_power_dBm", "receive_power_dBm")),
                        ("UNI_Status", ("uni_oper_state", "uni_admin_state")),
                    )
                ],
            )
        for port in self.ports[onu_id]:
            port.admin_state, port.oper_status = ADMIN.ENABLED, OPER.ACTIVE
        logical = self.logical_device_of(onu.parent_id)
        if logical is None:
            return
        existing = self._logical_port_of(onu_id)
        if existing is None:
            number = next(self._logical_port_numbers)
            self._add_logical_port(logical.id, onu_id, UNI_PORT_NO, number, root=False)
        else:
            self._set_logical_port_state(onu_id, UNI_PORT_NO, live=True)

    def _disable(self, device: device_pb2.Device) -> None:
        device.admin_state = ADMIN.DISABLED
        device.oper_status = OPER.UNKNOWN
        device.reason = "omci-admin-lock" if not device.root else "olt-disabled"
        for port in self.ports[device.id]:
            port.oper_status = OPER.UNKNOWN
        if device.root:
            self._device_status_event(device.id, connected=False)
        else:
            self._set_logical_port_state(device.id, UNI_PORT_NO, live=False)

    async def _finish_reboot(self, device_id: str) -> None:
        await asyncio.sleep(self.step)
        device = self.devices.get(device_id)
        if device is None:
            return
        device.oper_status = OPER.ACTIVE
        device.reason = "rebooted"
        if device.root:
            device.connect_status = CONNECT.REACHABLE
            self._device_status_event(device_id, connected=True)

    def _forget(self, device_id: str) -> None:
        self.devices.pop(device_id, None)
        self.ports.pop(device_id, None)
        self.pm_configs.pop(device_id, None)

    # --- logical ports and events -----------------------------------------------------

    def _add_logical_port(
        self, logical_id: str, device_id: str, device_port_no: int, number: int, *, root: bool
    ) -> None:
        name = f"nni-{number}" if root else f"{self.devices[device_id].serial_number}-{number}"
        ofp_port = OFP.ofp_port(
            port_no=number,
            name=name,
            hw_addr=[0, 0, 0, 0, (number >> 8) & 0xFF, number & 0xFF],
            state=OFP.OFPPS_LIVE,
            curr_speed=10_000_000 if root else 1_000_000,
            max_speed=10_000_000 if root else 1_000_000,
        )
        self.logical_ports[logical_id].append(
            logical_device_pb2.LogicalPort(
                id=name,
                ofp_port=ofp_port,
                device_id=device_id,
                device_port_no=device_port_no,
                root_port=root,
            )
        )
        self._port_status_event(logical_id, OFP.OFPPR_ADD, ofp_port)

    def _logical_port_of(self, device_id: str) -> logical_device_pb2.LogicalPort | None:
        for ports in self.logical_ports.values():
            for port in ports:
                if port.device_id == device_id and not port.root_port:
                    return port
        return None

    def _set_logical_port_state(self, device_id: str, device_port_no: int, *, live: bool) -> None:
        for logical_id, ports in self.logical_ports.items():
            for port in ports:
                if port.device_id == device_id and port.device_port_no == device_port_no:
                    port.ofp_port.state = OFP.OFPPS_LIVE if live else OFP.OFPPS_LINK_DOWN
                    self._port_status_event(logical_id, OFP.OFPPR_MODIFY, port.ofp_port)

    def _remove_logical_port(self, device: device_pb2.Device) -> None:
        for logical_id, ports in self.logical_ports.items():
            for port in [p for p in ports if p.device_id == device.id]:
                ports.remove(port)
                self._port_status_event(logical_id, OFP.OFPPR_DELETE, port.ofp_port)

    def _port_status_event(self, logical_id: str, reason: int, port: Any) -> None:
        self._publish(
            OFP.ChangeEvent(
                id=logical_id, port_status=OFP.ofp_port_status(reason=reason, desc=port)
            )
        )

    def _device_status_event(self, olt_id: str, *, connected: bool) -> None:
        logical = self.logical_device_of(olt_id)
        status = OFP.OFPDEV_CONNECTED if connected else OFP.OFPDEV_DISCONNECTED
        self._publish(
            OFP.ChangeEvent(
                id=logical.id if logical is not None else olt_id,
                device_status=OFP.ofp_device_status(status=status),
            )
        )

    def _publish(self, event: openflow_13_pb2.ChangeEvent) -> None:
        for queue in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    # --- plumbing ---------------------------------------------------------------------

    def _later(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _authorize(self, rpc: str, context: _Context) -> None:
        metadata = dict(context.invocation_metadata() or ())
        authorization = str(metadata.get("authorization", ""))
        self.calls.append((rpc, authorization))
        if authorization != self._authorization:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid credentials")

    async def _device(self, device_id: str, context: _Context) -> device_pb2.Device:
        device = self.devices.get(device_id)
        if device is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"device {device_id} not found")
        assert device is not None
        return device

    async def _logical_device(
        self, logical_id: str, context: _Context
    ) -> logical_device_pb2.LogicalDevice:
        logical = self.logical_devices.get(logical_id)
        if logical is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"logical device {logical_id} not found")
        assert logical is not None
        return logical

    def _port(self, device_id: str, port_no: int) -> device_pb2.Port:
        return next(port for port in self.ports[device_id] if port.port_no == port_no)


class VolthaServer:
    """A ``VolthaCore`` served on 127.0.0.1; ``stop`` and ``start`` keep the same port."""

    def __init__(
        self, core: VolthaCore, *, tls: tuple[bytes, bytes] | None = None, port: int = 0
    ) -> None:
        self.core = core
        self.port = port
        self._tls = tls
        self._server: grpc.aio.Server | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        server = grpc.aio.server()
        voltha_pb2_grpc.add_VolthaServiceServicer_to_server(self.core, server)
        address = f"127.0.0.1:{self.port}"
        if self._tls is not None:
            credentials = grpc.ssl_server_credentials([self._tls])
            self.port = server.add_secure_port(address, credentials)
        else:
            self.port = server.add_insecure_port(address)
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None


def _port(device_id: str, port_no: int, label: str, port_type: int) -> device_pb2.Port:
    return device_pb2.Port(
        port_no=port_no,
        label=label,
        type=port_type,
        device_id=device_id,
        admin_state=ADMIN.ENABLED,
        oper_status=OPER.ACTIVE,
    )


def _pm_names(configs: device_pb2.PmConfigs) -> set[str]:
    names = {metric.name for metric in configs.metrics}
    for group in configs.groups:
        names |= {group.group_name} | {metric.name for metric in group.metrics}
    return names


def _field(match: openflow_13_pb2.ofp_match, field_type: int) -> Any:
    for field in match.oxm_fields:
        if field.ofb_field.type == field_type:
            return field.ofb_field
    return None


def _deletes(
    mod: openflow_13_pb2.ofp_flow_mod, flow: openflow_13_pb2.ofp_flow_stats, *, strict: bool
) -> bool:
    """Whether the DELETE ``mod`` removes ``flow`` (OpenFlow 1.3 section 6.4)."""
    if (flow.cookie & mod.cookie_mask) != (mod.cookie & mod.cookie_mask):
        return False
    if mod.table_id != OFP.OFPTT_ALL and flow.table_id != mod.table_id:
        return False
    if strict:
        return flow.priority == mod.priority and flow.match == mod.match
    flow_fields = [field.SerializeToString() for field in flow.match.oxm_fields]
    return all(field.SerializeToString() in flow_fields for field in mod.match.oxm_fields)
