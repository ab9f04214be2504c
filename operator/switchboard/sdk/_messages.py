"""What a messaging plugin receives and returns.

Kept apart from the plugin classes so that a caller of plugins (the router,
through `PluginClient`) can use them without loading what plugin authors
need (JSON Schema and the runtime).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Message:
    """One message to deliver, as the router sent it."""

    recipient: str
    content: str
    subject: str = ""
    content_type: str = "text/plain"
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: Same key, same message: pass it to the provider to deduplicate retries.
    idempotency_key: str = ""
    #: The tenant (Kubernetes namespace) the message is sent for.
    tenant: str = ""


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the provider said when it accepted a message."""

    provider_message_id: str
    details: Mapping[str, str] = field(default_factory=dict)
