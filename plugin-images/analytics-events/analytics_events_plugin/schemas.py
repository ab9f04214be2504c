"""JSON Schemas: of each operation's params (checked by the SDK) and of built-in event types."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

DEFAULT_CATEGORIES: Final = (
    "business",
    "technical",
    "security",
    "marketing",
    "product",
    "operations",
)
_CURRENCY = {"type": "string", "pattern": "^[A-Z]{3}$"}
_MONEY = {"type": "number", "minimum": 0, "maximum": 1_000_000_000_000}
#: Schemas of the built-in event types' ``properties``; the config may add or replace types.
BUILTIN_EVENT_SCHEMAS: Final[Mapping[str, Mapping[str, Any]]] = {
    "page_view": {
        "type": "object",
        "properties": {
            "url": {"type": "string", "minLength": 1, "maxLength": 2048},
            "title": {"type": "string", "maxLength": 512},
            "referrer": {"type": "string", "maxLength": 2048},
        },
        "required": ["url"],
    },
    "conversion": {
        "type": "object",
        "properties": {
            "goal": {"type": "string", "minLength": 1, "maxLength": 256},
            "value": _MONEY,
            "currency": _CURRENCY,
        },
        "required": ["goal"],
    },
    "transaction": {
        "type": "object",
        "properties": {
            "transaction_id": {"type": "string", "minLength": 1, "maxLength": 256},
            "amount": _MONEY,
            "currency": _CURRENCY,
            "items": {
                "type": "array",
                "maxItems": 500,
                "items": {
                    "type": "object",
                    "properties": {
                        "product_id": {"type": "string", "minLength": 1, "maxLength": 256},
                        "quantity": {"type": "integer", "minimum": 1},
                        "price": _MONEY,
                    },
                    "required": ["product_id"],
                },
            },
        },
        "required": ["transaction_id", "amount", "currency"],
    },
}
#: Where a type's monetary value is: (amount property, currency property). Any
#: other event with a numeric ``revenue`` property (the tracking spec's) counts too.
MONEY_PROPERTIES: Final = {
    "transaction": ("amount", "currency"),
    "conversion": ("value", "currency"),
}
SPEC_REVENUE: Final = ("revenue", "currency")

DURATION: Final = re.compile(r"^([1-9][0-9]{0,5})([smhdw])$")
DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: A property by name, or nested with dots: plan, address.city.
PROPERTY_PATH: Final = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,4}$"

EVENT: Final[Mapping[str, Any]] = {
    "type": "object",
    "properties": {
        "event": {
            "type": "string",
            "pattern": "^[a-z][a-z0-9_.-]{0,63}$",
            "description": "Event type: page_view, conversion, transaction or a configured one",
        },
        "category": {
            "type": "string",
            "pattern": "^[a-z][a-z0-9_-]{0,31}$",
            "description": "business, technical, security, ... (default: the type's)",
        },
        "event_id": {
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "description": "Your id for the event: resent with the same id, it is stored once",
        },
        "user_id": {"type": "string", "maxLength": 256},
        "session_id": {"type": "string", "maxLength": 256},
        "timestamp": {"type": "string", "description": "RFC 3339; default: when received"},
        "properties": {"type": "object"},
    },
    "required": ["event"],
    "additionalProperties": False,
}

# --- the tracking spec (Segment's) -----------------------------------------------------

_ID = {"type": ["string", "integer"], "minLength": 1, "maxLength": 256}
_SPEC_COMMON: Final[Mapping[str, Any]] = {
    "userId": _ID,
    "anonymousId": _ID,
    "messageId": {"type": "string", "minLength": 1, "maxLength": 128},
    "timestamp": {"type": "string", "description": "RFC 3339: when it happened"},
    "originalTimestamp": {"type": "string", "description": "RFC 3339, the device's clock"},
    "sentAt": {"type": "string", "description": "RFC 3339, the device's clock when sent"},
    "context": {"type": "object"},
    "integrations": {"type": "object"},
    "category": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,31}$"},
}
#: Each call of the tracking spec; unknown top-level fields are ignored, as the spec's
#: libraries send more (``_metadata``, ``version``, ``writeKey`` ...).
SPEC_CALLS: Final[Mapping[str, Mapping[str, Any]]] = {
    "track": {
        "type": "object",
        "properties": {
            **_SPEC_COMMON,
            "event": {"type": "string", "minLength": 1, "maxLength": 200},
            "properties": {"type": "object"},
        },
        "required": ["event"],
    },
    "identify": {
        "type": "object",
        "properties": {**_SPEC_COMMON, "traits": {"type": "object"}},
    },
    "page": {
        "type": "object",
        "properties": {
            **_SPEC_COMMON,
            "name": {"type": "string", "maxLength": 512},
            "properties": {"type": "object"},
        },
    },
    "group": {
        "type": "object",
        "properties": {**_SPEC_COMMON, "groupId": _ID, "traits": {"type": "object"}},
        "required": ["groupId"],
    },
    "alias": {
        "type": "object",
        "properties": {**_SPEC_COMMON, "previousId": _ID},
        "required": ["previousId", "userId"],
    },
}
SPEC_BATCH: Final[Mapping[str, Any]] = {
    "type": "object",
    "properties": {
        "batch": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1000,
            "items": {
                "type": "object",
                "properties": {"type": {"enum": sorted(SPEC_CALLS)}},
                "required": ["type"],
                "allOf": [
                    {
                        "if": {"properties": {"type": {"const": name}}},
                        "then": schema,
                    }
                    for name, schema in SPEC_CALLS.items()
                ],
            },
        },
        "context": {"type": "object", "description": "Merged under every call's context"},
        "sentAt": {"type": "string"},
        "integrations": {"type": "object"},
    },
    "required": ["batch"],
}

# --- reports ------------------------------------------------------------------------------

TIME_RANGE: Final[Mapping[str, Any]] = {
    "start": {"type": "string", "description": "RFC 3339, inclusive"},
    "end": {"type": "string", "description": "RFC 3339, exclusive; default: now"},
    "last": {
        "type": "string",
        "pattern": DURATION.pattern,
        "description": "Instead of start: this long before end, e.g. 15m, 24h, 7d",
    },
}
_FILTERS: Final[Mapping[str, Any]] = {
    "event_type": {"type": "string", "minLength": 1},
    "category": {"type": "string", "minLength": 1},
}
_BREAKDOWN: Final[Mapping[str, Any]] = {
    "type": "string",
    "pattern": PROPERTY_PATH,
    "description": "A property to break the figures down by: plan, address.city",
}
_JSON_SCALAR: Final = {"type": ["string", "number", "boolean"]}
REPORT_PARAMETERS: Final[Mapping[str, Mapping[str, Any]]] = {
    "counts": {
        "type": "object",
        "properties": {
            **TIME_RANGE,
            **_FILTERS,
            "breakdown": _BREAKDOWN,
            "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
        },
        "additionalProperties": False,
    },
    "timeseries": {
        "type": "object",
        "properties": {
            **TIME_RANGE,
            **_FILTERS,
            "interval": {
                "type": "string",
                "pattern": DURATION.pattern,
                "default": "1h",
                "description": "Width of each bucket: 1m, 15m, 1h, 1d, 1w",
            },
            "breakdown": _BREAKDOWN,
        },
        "additionalProperties": False,
    },
    "funnel": {
        "type": "object",
        "properties": {
            **TIME_RANGE,
            "steps": {
                "type": "array",
                "minItems": 2,
                "maxItems": 10,
                "items": {
                    "oneOf": [
                        {"type": "string", "minLength": 1},
                        {
                            "type": "object",
                            "properties": {
                                "event": {"type": "string", "minLength": 1},
                                "where": {
                                    "type": "object",
                                    "propertyNames": {"pattern": PROPERTY_PATH},
                                    "additionalProperties": _JSON_SCALAR,
                                },
                            },
                            "required": ["event"],
                            "additionalProperties": False,
                        },
                    ]
                },
            },
        },
        "required": ["steps"],
        "additionalProperties": False,
    },
    "revenue": {
        "type": "object",
        "properties": {
            **TIME_RANGE,
            "event_types": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "minItems": 1,
                "uniqueItems": True,
            },
        },
        "additionalProperties": False,
    },
    "top": {
        "type": "object",
        "properties": {
            **TIME_RANGE,
            "event_type": {"type": "string", "minLength": 1},
            "property": {
                "type": "string",
                "pattern": "^[A-Za-z_][A-Za-z0-9_]*(\\[\\]\\.[A-Za-z_][A-Za-z0-9_]*)?$",
                "description": "A property (url) or a property of array items (items[].product_id)",
            },
            "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
        },
        "required": ["event_type", "property"],
        "additionalProperties": False,
    },
    "summary": {
        "type": "object",
        "properties": {**TIME_RANGE},
        "additionalProperties": False,
    },
}
REPORT: Final[Mapping[str, Any]] = {
    "type": "object",
    "properties": {
        "report_type": {"enum": sorted(REPORT_PARAMETERS)},
        "parameters": {"type": "object"},
    },
    "required": ["report_type"],
    "additionalProperties": False,
    "allOf": [
        {
            "if": {"properties": {"report_type": {"const": name}}, "required": ["report_type"]},
            "then": {"properties": {"parameters": schema}},
        }
        for name, schema in REPORT_PARAMETERS.items()
    ],
}
NAME: Final = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"}

ALERT_RULE: Final[Mapping[str, Any]] = {
    "type": "object",
    "properties": {
        "name": NAME,
        "event_type": {"type": "string", "minLength": 1},
        "category": {"type": "string", "minLength": 1},
        "threshold": {"type": "integer", "minimum": 0},
        "window_seconds": {"type": "integer", "minimum": 1, "maximum": 604800},
        "channel": {"type": "string", "minLength": 1},
        "recipient": {"type": "string", "minLength": 1},
        "subject": {"type": "string"},
    },
    "required": ["name", "threshold", "window_seconds", "channel", "recipient"],
    "additionalProperties": False,
}

#: One person, by user id (their anonymous ids aliased to it come along).
USER: Final[Mapping[str, Any]] = {
    "type": "object",
    "properties": {"user_id": {"type": "string", "minLength": 1, "maxLength": 256}},
    "required": ["user_id"],
    "additionalProperties": False,
}
