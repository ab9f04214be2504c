"""What a messaging plugin receives and returns.

Kept apart from the plugin classes so that a caller of plugins (the router,
through `PluginClient`) can use them without loading what plugin authors
need (JSON Schema and the runtime).

A message may need more than text from its plugin; each such need is a
capability the plugin declares (``capabilities`` in its manifest and class),
and the router only routes a message to plugins that declare every
capability it needs (``required_capabilities``)::

    the message has                       the plugin must declare
    an attachment with its bytes          attachments
    an attachment given by URL            media_urls
    a provider template                   templates
    cc or bcc recipients                  cc
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

ATTACHMENTS: Final = "attachments"
MEDIA_URLS: Final = "media_urls"
TEMPLATES: Final = "templates"
CC: Final = "cc"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with a message: its bytes (``data``) or a URL the provider fetches."""

    filename: str
    content_type: str
    data: bytes = b""
    url: str = ""


@dataclass(frozen=True, slots=True)
class Template:
    """A template kept at the provider (SendGrid ``d-...``, Twilio ``HX...``, a WhatsApp name)."""

    id: str
    #: The template's variables (a JSON object).
    variables: Mapping[str, Any] = field(default_factory=dict)
    #: The template's language where the provider needs one (WhatsApp: ``en_US``).
    language: str = ""


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
    attachments: tuple[Attachment, ...] = ()
    template: Template | None = None
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    #: Where the provider should send delivery callbacks for this message (empty: nowhere).
    receipt_url: str = ""


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the provider said when it accepted a message."""

    provider_message_id: str
    details: Mapping[str, str] = field(default_factory=dict)
    #: Further provider ids of the same message (one per part of a long SMS).
    part_ids: tuple[str, ...] = ()


class DeliveryState(StrEnum):
    """What a provider's receipt says happened to a message."""

    SENT = "sent"
    """Accepted or queued by the provider, not delivered yet."""
    DELIVERED = "delivered"
    """Reached the recipient."""
    FAILED = "failed"
    """Will not be delivered (bounced, undeliverable, rejected)."""


@dataclass(frozen=True, slots=True)
class ReceiptRequest:
    """A provider's delivery callback as the router received it."""

    method: str
    #: The public URL the provider called (signature schemes often cover it).
    url: str
    #: Header names lower-cased.
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Receipt:
    """One message's new state, read from a verified provider callback."""

    provider_message_id: str
    state: DeliveryState
    error: str = ""


@dataclass(frozen=True, slots=True)
class ReceiptReply:
    """A plugin's answer to a callback: the receipts in it, and a body for the provider
    when it expects one (e.g. the challenge of a webhook subscription)."""

    receipts: tuple[Receipt, ...] = ()
    body: str = ""
    content_type: str = "text/plain"


def required_capabilities(
    attachments: tuple[Attachment, ...] = (),
    template: Template | None = None,
    cc: tuple[str, ...] = (),
    bcc: tuple[str, ...] = (),
) -> frozenset[str]:
    """The capabilities a plugin must declare to deliver a message with these parts."""
    needed = set()
    if any(attachment.data for attachment in attachments):
        needed.add(ATTACHMENTS)
    if any(attachment.url for attachment in attachments):
        needed.add(MEDIA_URLS)
    if template is not None:
        needed.add(TEMPLATES)
    if cc or bcc:
        needed.add(CC)
    return frozenset(needed)
