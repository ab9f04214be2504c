"""The message being sent: the parts it needs, its JSON metadata, its outcome when the
provider takes it in parts, and an id when the provider gives none."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from switchboard.sdk._errors import InvalidInput, PluginError, RetryableError
from switchboard.sdk._messages import Message, SendResult, required_capabilities


def require_capabilities(
    message: Message, capabilities: Collection[str] | None, *, provider: str
) -> None:
    """``RetryableError`` if ``message`` has a part the plugin does not declare a capability for.

    The router sends a message only to plugins whose capabilities cover its
    attachments, template and copies; a plugin that gets one anyway (an older
    router) must not drop the part silently, and another plugin may carry it,
    so the router should move on. Call it first in ``send_message`` with the
    class's ``capabilities``.
    """
    missing = sorted(
        required_capabilities(message.attachments, message.template, message.cc, message.bcc)
        - set(capabilities or ())
    )
    if missing:
        raise RetryableError(
            f"This {provider} plugin does not declare {', '.join(missing)}: the message "
            "needs a plugin that does"
        )


def result_of_parts(
    parts: Sequence[str | PluginError],
    *,
    total: int | None = None,
    details: Mapping[str, str] | None = None,
) -> SendResult:
    """The outcome of a message the provider takes in parts, each accepted or refused on its own.

    A long SMS answered per part, a long chat text sent as several messages, one
    message per attachment: ``parts`` holds, in order, each part's provider id
    or the ``PluginError`` it failed with; ``total`` (default ``len(parts)``)
    counts the parts that were to be sent, so parts never tried count as not
    delivered.

    * No part accepted: the first part's error is raised; nothing reached the
      recipient, so the message may go elsewhere as a whole.
    * Some part accepted: a success, because sending the message again would
      repeat what the recipient already has. The result's id is the first
      accepted part's; details hold ``parts`` (``"2/3"``), ``partial: "true"``,
      ``message_ids`` and ``failed``: each failed part with its error class and
      the provider's words (``"part 3: RETRYABLE: ... status 1: Throttled"``).
    * Every part accepted: details ``parts`` (``"3/3"``) and ``message_ids``.

    The other accepted parts' ids are the result's ``part_ids``, so that a
    delivery receipt about any part finds the message. ``details`` are added
    to the result's details.
    """
    count = len(parts) if total is None else total
    accepted = [part for part in parts if isinstance(part, str)]
    refused = [(index, part) for index, part in enumerate(parts, 1) if not isinstance(part, str)]
    if not accepted:
        if refused:
            raise refused[0][1]
        raise ValueError("result_of_parts needs at least one part")
    summary = {
        **(details or {}),
        "parts": f"{len(accepted)}/{count}",
        "message_ids": ",".join(accepted),
    }
    if len(accepted) < count:
        failed = [f"part {index}: {error.error_class}: {error.message}" for index, error in refused]
        if len(parts) < count:
            untried = (
                f"{len(parts) + 1}" if len(parts) + 1 == count else f"{len(parts) + 1}-{count}"
            )
            failed.append(f"part {untried}: not sent")
        summary |= {"partial": "true", "failed": "; ".join(failed)}
    return SendResult(accepted[0], details=summary, part_ids=tuple(accepted[1:]))


def metadata_json(metadata: Mapping[str, str], key: str) -> Any:
    """The JSON value in ``metadata[key]``; ``None`` when the key is absent or empty.

    Metadata values are strings on the wire, so structured extras (Slack
    blocks, an Adaptive Card, template components) travel as JSON text.
    Raises ``InvalidInput`` naming ``metadata.<key>`` when it isn't JSON.
    """
    raw = metadata.get(key)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise InvalidInput(
            f"metadata.{key}: not valid JSON ({error.msg} at position {error.pos})"
        ) from None


def generated_message_id(prefix: str) -> str:
    """A unique id for providers that return none: ``f"{prefix}-{uuid4 hex}"``."""
    return f"{prefix}-{uuid.uuid4().hex}"
