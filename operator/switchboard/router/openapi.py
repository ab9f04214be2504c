"""The router's OpenAPI document, built from the request models it validates with.

Served at /openapi.json and committed as docs/openapi.json (a test fails when
the committed copy is stale; `switchboard router --openapi` prints it).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from switchboard import __version__
from switchboard.router.service import InvokeBody, SendMessageBody

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
_ATTEMPT: dict[str, Any] = {
    "type": "object",
    "required": ["plugin", "endpoint", "outcome", "durationMs"],
    "properties": {
        "plugin": {"type": "string", "description": "namespace/name of the plugin resource."},
        "endpoint": {"type": "string", "description": "host:port of the plugin pod."},
        "outcome": {
            "type": "string",
            "enum": [
                "success",
                "invalid_input",
                "permanent",
                "unauthenticated",
                "configuration",
                "retryable",
                "unknown_outcome",
                "timeout",
                "unavailable",
            ],
        },
        "durationMs": {"type": "number"},
        "message": {"type": "string"},
        "retryAfterSeconds": {"type": "number"},
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
        404: "No plugin serves that channel, or no such integration.",
        413: "Body too large.",
        415: "Body is not application/json.",
        422: "The plugin rejected the input (INVALID_INPUT); never retried.",
        429: "The router is at capacity; retry after Retry-After seconds.",
        502: "The provider refused for good (PERMANENT); never retried.",
        503: "Every eligible plugin failed or none is ready; see attempts.",
        504: "The overall deadline passed.",
    }
    return {
        str(s): {
            "description": described[s],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for s in statuses
    }


def _schema(model: Any) -> dict[str, Any]:
    schema: dict[str, Any] = model.model_json_schema(by_alias=True)
    return schema


@cache
def openapi_document() -> dict[str, Any]:
    common = (400, 401, 403, 404, 413, 415, 422, 429, 502, 503, 504)
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    sent = {
        **_ROUTED,
        "properties": {
            **_ROUTED["properties"],
            "providerMessageId": {"type": "string"},
            "details": {"type": "object", "additionalProperties": {"type": "string"}},
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
                "SendMessage": _schema(SendMessageBody),
                "Invoke": _schema(InvokeBody),
                "Sent": sent,
                "Invoked": invoked,
                "Attempt": _ATTEMPT,
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
                        "200": {
                            "description": "Delivered by one plugin.",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Sent"}
                                }
                            },
                        },
                        **_errors(*common),
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
