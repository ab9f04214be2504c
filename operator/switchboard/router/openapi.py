"""The router's OpenAPI document, built from the request models it validates with.

Served at /openapi.json and committed as docs/openapi.json (a test fails when
the committed copy is stale; `switchboard router --openapi` prints it).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from switchboard import __version__
from switchboard.router.service import (
    AttemptView,
    InvokeBody,
    RecordedAttemptView,
    SendMessageBody,
)

_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "Stable machine-readable word."},
                "message": {"type": "string", "description": "What went wrong, for people."},
                "fields": {
                    "type": "array",
                    "description": "Offending fields of a malformed request.",
                    "items": {
                        "type": "object",
                        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                    },
                },
                "attempts": {"type": "array", "items": {"$ref": "#/components/schemas/Attempt"}},
                "retryAfterSeconds": {"type": "number"},
            },
        }
    },
}
_ROUTED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "string"},
        "namespace": {"type": "string"},
        "plugin": {"type": "string"},
        "endpoint": {"type": "string"},
        "replayed": {"type": "boolean"},
        "attempts": {"type": "array", "items": {"$ref": "#/components/schemas/Attempt"}},
    },
}


def _errors(*statuses: int) -> dict[str, Any]:
    described = {
        400: "Malformed request; `fields` names what to fix.",
        401: "Missing or unknown bearer token.",
        403: "RBAC (or the API key) does not allow this in that namespace.",
        404: "No plugin serves that channel, no such integration or message.",
        408: "The body did not arrive within the router's body timeout.",
        409: "The idempotency key was used for a different message, or the message "
        "cannot be replayed; `messageId` names it.",
        413: "Body too large.",
        415: "Body is not application/json.",
        422: "The plugin rejected the input (INVALID_INPUT); never retried.",
        429: "The router is at capacity; retry after Retry-After seconds.",
        502: "The provider refused for good (PERMANENT); never retried.",
        503: "Every eligible plugin failed or none is ready (see attempts), or the "
        "ledger database is unavailable (LEDGER_UNAVAILABLE: nothing was recorded or sent).",
        504: "The overall deadline passed.",
    }
    return {
        str(s): {
            "description": described[s],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for s in statuses
    }


def _schemas(**models: Any) -> dict[str, Any]:
    """Component schemas of request models, nested models hoisted beside them
    (pydantic's `$defs` resolve against the document, as components)."""
    found: dict[str, Any] = {}
    for name, model in models.items():
        schema: dict[str, Any] = model.model_json_schema(
            by_alias=True, ref_template="#/components/schemas/{model}"
        )
        found.update(schema.pop("$defs", {}))
        found[name] = schema
    return found


def _query(*names: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
        for name in names
    ]


def _path(*names: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in names
    ]


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_MESSAGE: dict[str, Any] = {
    "type": "object",
    "description": "A message as the ledger records it (content is not shown).",
    "properties": {
        "id": {"type": "string"},
        "namespace": {"type": "string"},
        "channel": {"type": "string"},
        "recipient": {"type": ["string", "null"]},
        "state": {"$ref": "#/components/schemas/State"},
        "possibleDuplicate": {"type": "boolean"},
        "delivery": {"type": "string", "enum": ["AtLeastOnce", "AtMostOnce"]},
        "asynchronous": {"type": "boolean"},
        "plugin": {"type": ["string", "null"]},
        "providerMessageId": {"type": ["string", "null"]},
        "idempotencyKey": {"type": ["string", "null"]},
        "rounds": {"type": "integer"},
        "createdAt": {"type": "string", "format": "date-time"},
        "updatedAt": {"type": "string", "format": "date-time"},
        "deliverBy": {"type": ["string", "null"], "format": "date-time"},
        "nextAttemptAt": {"type": ["string", "null"], "format": "date-time"},
        "error": {"type": ["object", "null"]},
        "attempts": {"type": "array", "items": {"$ref": "#/components/schemas/RecordedAttempt"}},
        "history": {"type": "array", "items": {"$ref": "#/components/schemas/StateChange"}},
    },
}
_STATE_CHANGE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "seq": {"type": "integer"},
        "id": {"type": "string"},
        "namespace": {"type": "string"},
        "channel": {"type": "string"},
        "state": {"$ref": "#/components/schemas/State"},
        "at": {"type": "string", "format": "date-time"},
        "detail": {"type": "string"},
    },
}


@cache
def openapi_document() -> dict[str, Any]:
    common = (400, 401, 403, 404, 408, 409, 413, 415, 422, 429, 502, 503, 504)
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    sent = {
        **_ROUTED,
        "properties": {
            **_ROUTED["properties"],
            "id": {"type": "string", "description": "The message's id in the ledger."},
            "state": {"$ref": "#/components/schemas/State"},
            "possibleDuplicate": {
                "type": "boolean",
                "description": "An earlier attempt may have reached a provider too.",
            },
            "providerMessageId": {"type": "string"},
            "details": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    accepted = {
        "type": "object",
        "properties": {
            "status": {"const": "accepted"},
            "id": {"type": "string"},
            "namespace": {"type": "string"},
            "state": {"$ref": "#/components/schemas/State"},
            "replayed": {"type": "boolean"},
            "possibleDuplicate": {"type": "boolean"},
        },
    }
    invoked = {
        **_ROUTED,
        "properties": {
            **_ROUTED["properties"],
            "result": {"description": "What the operation returned."},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard router",
            "version": __version__,
            "description": "Send messages and invoke integrations without naming a provider.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A ServiceAccount token, or an API key in local mode.",
                }
            },
            "schemas": {
                **_schemas(SendMessage=SendMessageBody, Invoke=InvokeBody),
                "Sent": sent,
                "Accepted": accepted,
                "Message": _MESSAGE,
                "StateChange": _STATE_CHANGE,
                "State": {
                    "type": "string",
                    "enum": [
                        "accepted",
                        "sending",
                        "sent",
                        "delivered",
                        "failed",
                        "unknown",
                        "expired",
                    ],
                },
                "Invoked": invoked,
                **_schemas(Attempt=AttemptView, RecordedAttempt=RecordedAttemptView),
                "Error": _ERROR,
            },
        },
        "paths": {
            "/v1/messages": {
                "post": {
                    "summary": "Send one message on a channel.",
                    "operationId": "sendMessage",
                    "security": bearer,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/SendMessage"}
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            "A provider accepted it (or did earlier, `replayed`).",
                            {"$ref": "#/components/schemas/Sent"},
                        ),
                        "202": _json(
                            "Recorded (`wait: false`); the router sends it in the background.",
                            {"$ref": "#/components/schemas/Accepted"},
                        ),
                        **_errors(*common),
                    },
                },
                "get": {
                    "summary": "Messages of a namespace, newest first.",
                    "operationId": "listMessages",
                    "security": bearer,
                    "parameters": _query(
                        "namespace", "state", "channel", "recipient", "since", "until", "limit"
                    ),
                    "responses": {
                        "200": _json(
                            "The messages.",
                            {
                                "type": "object",
                                "properties": {
                                    "namespace": {"type": "string"},
                                    "messages": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Message"},
                                    },
                                },
                            },
                        ),
                        **_errors(400, 401, 403, 503),
                    },
                },
            },
            "/v1/messages/events": {
                "get": {
                    "summary": "Server-sent events: each state change of the namespace's messages.",
                    "operationId": "watchMessages",
                    "security": bearer,
                    "parameters": _query("namespace", "after"),
                    "responses": {
                        "200": {
                            "description": "`event: state`, `id: <seq>`, `data: <StateChange>`; "
                            "resume with Last-Event-ID.",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        **_errors(400, 401, 403, 503),
                    },
                }
            },
            "/v1/messages/{id}": {
                "get": {
                    "summary": "What happened to one message: state, attempts, history.",
                    "operationId": "getMessage",
                    "security": bearer,
                    "parameters": [*_path("id"), *_query("namespace")],
                    "responses": {
                        "200": _json("The message.", {"$ref": "#/components/schemas/Message"}),
                        **_errors(401, 403, 404, 503),
                    },
                }
            },
            "/v1/messages/{id}/replay": {
                "post": {
                    "summary": "Send a failed, unknown or expired message again (a new round).",
                    "operationId": "replayMessage",
                    "security": bearer,
                    "parameters": [*_path("id"), *_query("namespace")],
                    "responses": {
                        "200": _json("Sent.", {"$ref": "#/components/schemas/Sent"}),
                        **_errors(*common),
                    },
                }
            },
            "/v1/audit": {
                "get": {
                    "summary": "The audit trail of a namespace, newest first: sends, invokes, "
                    "replays and refused calls (needs `list` on `auditevents`).",
                    "operationId": "auditTrail",
                    "security": bearer,
                    "parameters": _query("namespace", "since", "limit"),
                    "responses": {
                        "200": _json("The events.", {"type": "object"}),
                        **_errors(400, 401, 403, 503),
                    },
                }
            },
            "/v1/receipts/{namespace}/{plugin}": {
                "post": {
                    "summary": "A provider's delivery callback for one plugin (no bearer token: "
                    "the plugin verifies the provider's signature).",
                    "operationId": "receipt",
                    "parameters": _path("namespace", "plugin"),
                    "requestBody": {"content": {"*/*": {"schema": {}}}},
                    "responses": {
                        "200": {"description": "Verified and recorded (or ignored, unknown id)."},
                        **_errors(401, 404, 408, 413, 422, 503),
                    },
                }
            },
            "/v1/integrations/{name}/operations/{operation}": {
                "post": {
                    "summary": "Run one operation of a vendor integration.",
                    "operationId": "invoke",
                    "security": bearer,
                    "parameters": [
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "operation",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Invoke"}}
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "The operation's result.",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Invoked"}
                                }
                            },
                        },
                        **_errors(*common),
                    },
                }
            },
            "/v1/plugins": {
                "get": {
                    "summary": "System status: plugins, endpoints and error rates.",
                    "operationId": "systemStatus",
                    "security": bearer,
                    "parameters": [
                        {
                            "name": "namespace",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The status document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **_errors(400, 401, 403, 429),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "The process is alive.",
                    "responses": {"200": {"description": "ok"}},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Discovery has a full view.",
                    "responses": {
                        "200": {"description": "ready"},
                        "503": {"description": "discovering"},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics.",
                    "responses": {"200": {"description": "text"}},
                }
            },
        },
    }
