"""VOLTHA's protobuf messages as plain JSON, the way the operations answer.

Enums are their names (``ENABLED``, ``ACTIVE``, ``PON_OLT``), ids and counters
as they are. ``apply_pm_changes`` applies a ``configure_device`` PM change to
VOLTHA's current PM configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from voltha_protos import (
    adapter_pb2,
    common_pb2,
    device_pb2,
    health_pb2,
    logical_device_pb2,
    voltha_pb2,
)

from switchboard.sdk import InvalidInput

from .openflow import LINK_DOWN

ADMIN: Final = common_pb2.AdminState.Types
OPER: Final = common_pb2.OperStatus.Types
CONNECT: Final = common_pb2.ConnectStatus.Types
PORT_TYPE: Final = device_pb2.Port.PortType
_PM_TYPE: Final = device_pb2.PmConfig.PmType
PORT_COUNTERS: Final = (
    "rx_packets",
    "rx_bytes",
    "rx_errors",
    "tx_packets",
    "tx_bytes",
    "tx_errors",
)


def device_json(device: device_pb2.Device | None) -> dict[str, Any]:
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
        "admin_state": ADMIN.Name(device.admin_state),
        "oper_status": OPER.Name(device.oper_status),
        "connect_status": CONNECT.Name(device.connect_status),
        "reason": device.reason,
    }


def port_json(port: device_pb2.Port) -> dict[str, Any]:
    return {
        "port_no": port.port_no,
        "label": port.label,
        "type": PORT_TYPE.Name(port.type),
        "admin_state": ADMIN.Name(port.admin_state),
        "oper_status": OPER.Name(port.oper_status),
        "peers": [{"device_id": peer.device_id, "port_no": peer.port_no} for peer in port.peers],
        "counters": {name: getattr(port, name) for name in PORT_COUNTERS},
    }


def logical_port_json(port: logical_device_pb2.LogicalPort) -> dict[str, Any]:
    return {
        "id": port.id,
        "port_no": port.ofp_port.port_no,
        "name": port.ofp_port.name,
        "device_id": port.device_id,
        "device_port_no": port.device_port_no,
        "root_port": port.root_port,
        "link_down": bool(port.ofp_port.state & LINK_DOWN),
    }


def pm_configs_json(configs: device_pb2.PmConfigs) -> dict[str, Any]:
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


def apply_pm_changes(configs: device_pb2.PmConfigs, changes: Mapping[str, Any]) -> None:
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


def adapter_json(adapter: adapter_pb2.Adapter) -> dict[str, Any]:
    """One adapter as ``voltctl adapter list`` shows it."""
    return {
        "id": adapter.id,
        "vendor": adapter.vendor,
        "type": adapter.type,
        "version": adapter.version,
        "endpoint": adapter.endpoint,
        "current_replica": adapter.currentReplica,
        "total_replicas": adapter.totalReplicas,
        "last_communication": adapter.last_communication,
    }


def device_type_json(device_type: device_pb2.DeviceType) -> dict[str, Any]:
    return {
        "id": device_type.id,
        "adapter": device_type.adapter,
        "vendor_ids": list(device_type.vendor_ids) or [device_type.vendor_id],
    }


def core_instance_json(core: voltha_pb2.CoreInstance) -> dict[str, Any]:
    return {
        "instance_id": core.instance_id,
        "health": health_pb2.HealthStatus.HealthState.Name(core.health.state),
    }
