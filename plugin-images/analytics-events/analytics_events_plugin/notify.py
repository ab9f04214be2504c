"""Alert notifications: what the analytics plugin tells people, and how it reaches them.

``Notifier`` is the seam: the plugin only calls ``send(notification)``. The
production implementation, ``RouterNotifier``, posts to the Switchboard
router's HTTP API, which delivers through whichever channel plugin is healthy::

    POST {router_url}/v1/messages
    Authorization: Bearer <ROUTER_TOKEN>
    {"channel": ..., "recipient": ..., "content": ..., "subject": ...,
     "idempotencyKey": "alert:<rule>:<window start>"}

The idempotency key makes a retried notification safe: the router delivers one
message per key, however often the plugin (or another replica) sends it.
Failures are typed for the caller's retry decision::

    NotificationError
    ├── NotificationFailed     try again later (connection, timeout, 408/425/429, 5xx)
    └── NotificationRejected   the router refused it for good (other 4xx)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

import httpx

_RETRYABLE_STATUS: Final = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Notification:
    """One message to a person, as the router's ``send_message`` takes it."""

    channel: str
    recipient: str
    content: str
    subject: str
    #: Same key, same message: the router delivers it once.
    idempotency_key: str


class NotificationError(Exception):
    """A notification was not delivered."""


class NotificationFailed(NotificationError):
    """Not delivered this time; sending it again (same key) may work."""


class NotificationRejected(NotificationError):
    """The router refused the notification; sending it again will not help."""


class Notifier(Protocol):
    """Where alert notifications go. ``send`` raises a ``NotificationError`` on failure."""

    async def send(self, notification: Notification) -> None: ...

    async def close(self) -> None: ...


class RouterNotifier:
    """Sends notifications through the Switchboard router's ``POST /v1/messages``.

    ``transport`` replaces the network (``httpx.MockTransport`` in tests).
    """

    def __init__(
        self,
        router_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=router_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )

    async def send(self, notification: Notification) -> None:
        body = {
            "channel": notification.channel,
            "recipient": notification.recipient,
            "content": notification.content,
            "subject": notification.subject,
            "idempotencyKey": notification.idempotency_key,
        }
        try:
            response = await self._client.post("/v1/messages", json=body)
        except httpx.HTTPError as error:
            raise NotificationFailed(
                f"router unreachable: {type(error).__name__}: {error}"
            ) from None
        if response.is_success:
            return
        summary = f"router answered {response.status_code}: {response.text[:300]}"
        if response.status_code in _RETRYABLE_STATUS or response.status_code >= 500:
            raise NotificationFailed(summary)
        raise NotificationRejected(summary)

    async def close(self) -> None:
        await self._client.aclose()
