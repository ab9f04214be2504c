"""JSON Schemas of the operations' params: the SDK checks them before any VOLTHA call."""

from __future__ import annotations

from typing import Any, Final

from .alarms import SEVERITIES
from .views import PORT_COUNTERS

SERIAL_NUMBER = {
    "type": "string",
    "pattern": "^[A-Za-z0-9]{4}[0-9A-Fa-f]{8}$",
    "description": "ONU serial number: 4-character vendor id and 8 hex digits, e.g. BBSM000a0001",
}
DEVICE_ID = {"type": "string", "minLength": 1, "maxLength": 128}
HOST_AND_PORT = {
    "type": "string",
    "pattern": r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):[0-9]{1,5}$",
    "description": "host:port of the device's management interface",
}
VLAN = {"type": "integer", "minimum": 1, "maximum": 4094}
FREQUENCY = {"type": "integer", "minimum": 0, "maximum": 86400}

PROVISION_OLT: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "type": {
            "type": "string",
            "minLength": 1,
            "description": "VOLTHA device type (adapter), e.g. openolt",
            "default": "openolt",
        },
        "host_and_port": HOST_AND_PORT,
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

PROVISION_ONU: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "olt_device_id": DEVICE_ID,
        "pon_port": {
            "type": "integer",
            "minimum": 0,
            "maximum": 4294967295,
            "description": "port_no of the OLT's PON port (see get_device_status)",
        },
        "serial_number": SERIAL_NUMBER,
    },
    "required": ["olt_device_id", "pon_port", "serial_number"],
    "additionalProperties": False,
}

ENABLE_ONU: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"serial_number": SERIAL_NUMBER, "olt_device_id": DEVICE_ID},
    "required": ["serial_number"],
    "additionalProperties": False,
}

DISABLE_ONU: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"serial_number": SERIAL_NUMBER, "olt_device_id": DEVICE_ID},
    "required": ["serial_number"],
    "additionalProperties": False,
}

LIST_DEVICES: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "include_ports": {"type": "boolean", "default": False},
    },
    "additionalProperties": False,
}

CONFIGURE_DEVICE: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "device_id": DEVICE_ID,
        "settings": {
            "type": "object",
            "properties": {
                "host_and_port": HOST_AND_PORT,
                "ipv4_address": {"type": "string", "format": "ipv4"},
                "ipv6_address": {"type": "string", "format": "ipv6"},
                "pm_configs": {
                    "type": "object",
                    "properties": {
                        "default_freq": FREQUENCY,
                        "freq_override": {"type": "boolean"},
                        "max_skew": {"type": "integer", "minimum": 0, "maximum": 100},
                        "metrics": {
                            "type": "object",
                            "description": "By metric name",
                            "additionalProperties": {
                                "type": "object",
                                "properties": {
                                    "enabled": {"type": "boolean"},
                                    "sample_freq": FREQUENCY,
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
                                    "group_freq": FREQUENCY,
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

REBOOT_DEVICE: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"device_id": DEVICE_ID},
    "required": ["device_id"],
    "additionalProperties": False,
}

DELETE_DEVICE: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"device_id": DEVICE_ID},
    "required": ["device_id"],
    "additionalProperties": False,
}

ADD_SUBSCRIBER_FLOW: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "olt_device_id": DEVICE_ID,
        "onu_serial_number": SERIAL_NUMBER,
        "subscriber_id": {"type": "string", "minLength": 1, "maxLength": 128},
        "c_tag": {**VLAN, "description": "customer VLAN on the UNI"},
        "s_tag": {**VLAN, "description": "service VLAN on the NNI"},
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

REMOVE_SUBSCRIBER_FLOW: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "olt_device_id": DEVICE_ID,
        "subscriber_id": {"type": "string", "minLength": 1, "maxLength": 128},
    },
    "required": ["olt_device_id", "subscriber_id"],
    "additionalProperties": False,
}

COLLECT_METRICS: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "device_id": DEVICE_ID,
        "names": {
            "type": "array",
            "items": {"enum": list(PORT_COUNTERS)},
            "uniqueItems": True,
            "description": "Port counters to report (default: all)",
        },
    },
    "additionalProperties": False,
}

GET_ALARMS: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "after_seq": {
            "type": "integer",
            "minimum": 0,
            "description": "Only entries newer than this sequence number",
        },
        "device_id": DEVICE_ID,
        "min_severity": {"enum": list(SEVERITIES)},
        "alarms_only": {"type": "boolean", "default": False},
        "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    },
    "additionalProperties": False,
}

GET_TOPOLOGY: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"include_flows": {"type": "boolean", "default": False}},
    "additionalProperties": False,
}

DEVICE: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"device_id": DEVICE_ID},
    "required": ["device_id"],
    "additionalProperties": False,
}

PORT: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "device_id": DEVICE_ID,
        "port_no": {
            "type": "integer",
            "minimum": 0,
            "maximum": 4294967295,
            "description": "The port's port_no (see get_device_status)",
        },
    },
    "required": ["device_id", "port_no"],
    "additionalProperties": False,
}

LIST_FLOWS: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"olt_device_id": DEVICE_ID},
    "required": ["olt_device_id"],
    "additionalProperties": False,
}

NO_PARAMS: Final[dict[str, Any]] = {"type": "object", "additionalProperties": False}

GET_KPIS: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "device_id": DEVICE_ID,
        "group": {"type": "string", "minLength": 1, "description": "e.g. PON_Optical"},
    },
    "additionalProperties": False,
}
