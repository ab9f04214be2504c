"""Router settings: one documented model, loaded from `SWITCHBOARD_ROUTER_*` variables."""

from __future__ import annotations

import socket
import uuid
from enum import StrEnum
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Backend(StrEnum):
    KUBERNETES = "kubernetes"
    STATIC = "static"


class RouterSettings(BaseSettings):
    """Everything the router can be told, with its unit, default and reason."""

    model_config = SettingsConfigDict(
        env_prefix="SWITCHBOARD_ROUTER_", use_attribute_docstrings=True, extra="ignore"
    )

    backend: Backend = Backend.KUBERNETES
    """Where plugins are discovered: the Kubernetes API, or a static list (local mode)."""
    host: str = "0.0.0.0"  # noqa: S104 - a server inside a pod listens on every interface
    """Address the HTTP and gRPC servers bind to."""
    http_port: int = 8080
    """Port of the HTTP/JSON API, /healthz, /readyz and /metrics."""
    grpc_port: int = 9090
    """Port of the gRPC API (-1 disables it; 0 picks a free port)."""
    watch_namespace: str | None = None
    """Kubernetes backend: route only within this namespace. Unset: every namespace."""
    max_concurrency: int = 512
    """Requests handled at once; more are refused at once with 429, never queued."""
    max_body_bytes: int = 256 * 1024
    """Largest accepted request body, in bytes (413 beyond)."""
    max_json_depth: int = 32
    """Deepest nesting of objects and arrays accepted in a JSON body (400 beyond)."""
    header_timeout_seconds: float = 10.0
    """Time a client has to send a request's headers, and most an idle keep-alive
    connection stays open, in seconds; the connection is closed after it."""
    body_timeout_seconds: float = 10.0
    """Time a client has to send a request's body once its headers arrived (408 after)."""
    deadline_seconds: float = 30.0
    """Overall deadline of one request across every attempt, in seconds."""
    invoke_timeout_seconds: float = 30.0
    """Per-attempt timeout of an Invoke on a vendor integration, in seconds."""
    idempotency_window_seconds: float = 24 * 3600.0
    """Invoke: how long an idempotency key remembers the operation it ran, in seconds
    (a message's key lives in the ledger instead, as long as the message)."""
    idempotency_max_keys: int = 100_000
    """Invoke: most idempotency keys kept at once (oldest forgotten first)."""
    ejection_failures: int = 3
    """Consecutive failures that eject an endpoint from selection."""
    ejection_base_seconds: float = 5.0
    """First ejection time; each further ejection of the same endpoint doubles it."""
    ejection_max_seconds: float = 300.0
    """Longest ejection time, in seconds."""
    auth_cache_seconds: float = 10.0
    """How long an authentication or authorization decision is reused, in seconds."""
    api_keys_file: Path | None = None
    """Static backend: YAML file of API keys (`keys: [{name, key, namespaces, permissions}]`)."""
    static_file: Path | None = None
    """Static backend: JSON routing table written by local mode; reloaded when it changes."""
    ledger_url: str | None = None
    """The delivery ledger's database: `postgresql+psycopg://user@host/db` (shared by
    every replica) or `sqlite:///path/ledger.db` (one router). Unset: an
    in-memory SQLite database, lost when the router stops (a warning says so)."""
    ledger_store_content: bool = False
    """Keep message content in the ledger after a message is sent (off: content is
    kept only while the message may still be sent, then erased)."""
    ledger_retention_days: float = 30.0
    """Days a message that reached a final state stays in the ledger (recipient,
    attempts, history) before it is purged."""
    ledger_sqlite_synchronous: str = "NORMAL"
    """SQLite's `synchronous` pragma: NORMAL survives a killed process (the default),
    FULL also a power loss, at the cost of a disk flush per message."""
    public_url: str | None = None
    """The router's address as providers see it (e.g. `https://switchboard.example.com`):
    plugins give providers `<public_url>/v1/receipts/<namespace>/<plugin>` for delivery
    callbacks. Unset: no callback URL is given."""
    lease_margin_seconds: float = 30.0
    """How long a router's hold on a message outlives the request's deadline: a router
    that died mid-send is taken over after `deadline_seconds` + this."""
    delivery_workers: int = 64
    """Asynchronous messages this router sends at once."""
    retry_base_seconds: float = 1.0
    """First back-off of an asynchronous message whose round failed; doubles each round."""
    retry_max_seconds: float = 300.0
    """Longest back-off between two rounds of an asynchronous message."""
    instance: str = Field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}")
    """This router's name in the ledger's leases (the pod name and a random suffix)."""
