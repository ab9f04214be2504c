"""A message's life, as the ledger records it: states and the moves between them.

::

    accepted ──▶ sending ──▶ sent ──▶ delivered
       ▲            │          │
       └── (retry) ─┤          └────▶ failed        (a receipt says it bounced)
                    ├──▶ failed                     (refused for good, or no plugin left)
                    ├──▶ unknown                    (AtMostOnce: it may have reached the provider)
                    └──▶ expired                    (asynchronous: maxDeliveryTime passed)

``accepted`` is durable before any provider is called: a router that dies
at any point leaves a record a restarted router resumes. ``sending`` means
an attempt may be in flight (the row holds a lease: which router, until
when). ``sent`` means a provider accepted it; ``delivered`` or ``failed``
come from the provider's receipt. A message that was sent again after an
attempt whose outcome is unknown carries ``possible_duplicate``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class State(StrEnum):
    ACCEPTED = "accepted"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    UNKNOWN = "unknown"
    EXPIRED = "expired"


#: States a message never leaves by itself (a replay starts a new round).
FINAL: Final = frozenset({State.DELIVERED, State.FAILED, State.UNKNOWN, State.EXPIRED})
#: States in which a router still owes the message work.
UNFINISHED: Final = frozenset({State.ACCEPTED, State.SENDING})

_MOVES: Final[dict[State, frozenset[State]]] = {
    State.ACCEPTED: frozenset({State.SENDING, State.EXPIRED, State.FAILED}),
    State.SENDING: frozenset(
        {State.ACCEPTED, State.SENDING, State.SENT, State.FAILED, State.UNKNOWN, State.EXPIRED}
    ),
    # A receipt may skip ahead or report failure; a fallback sends it again.
    State.SENT: frozenset({State.DELIVERED, State.FAILED, State.SENDING, State.SENT}),
    # A late receipt may still correct a delivered message (a bounce after delivery).
    State.DELIVERED: frozenset({State.FAILED}),
    # Replays start a new round from a final state.
    State.FAILED: frozenset({State.SENDING}),
    State.UNKNOWN: frozenset({State.SENDING, State.DELIVERED, State.FAILED, State.SENT}),
    State.EXPIRED: frozenset({State.SENDING}),
}


def can_move(current: State, new: State) -> bool:
    """Whether a message in ``current`` may move to ``new``."""
    return new in _MOVES[current]
