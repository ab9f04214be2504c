"""Exponential back-off: the one rule every retry loop in Switchboard follows.

The operator's reconcile retries, the router's ejections, health watches and
delivery rounds, local mode's restarts, the CLI's reconnects and the shipped
plugins' reconnects all wait ``base``, ``2 * base``, ``4 * base``, ... and
never more than ``cap``.
"""

from __future__ import annotations

__all__ = ["Backoff", "backoff_seconds"]


def backoff_seconds(attempt: int, *, base: float, cap: float) -> float:
    """Seconds before retry number ``attempt`` (1, 2, ...): doubling from ``base``, at most ``cap``.

    0 before the first retry (``attempt`` ≤ 0).
    """
    if attempt <= 0:
        return 0.0
    # The exponent is bounded so a long outage cannot overflow the float.
    return float(min(cap, base * 2.0 ** min(attempt - 1, 64)))


class Backoff:
    """A retry loop's delays: base, 2 * base, ... up to cap; ``reset()`` after a success."""

    def __init__(self, base: float, cap: float) -> None:
        self.base = base
        self.cap = max(base, cap)
        self.attempt = 0

    def next(self) -> float:
        self.attempt += 1
        return backoff_seconds(self.attempt, base=self.base, cap=self.cap)

    def reset(self) -> None:
        self.attempt = 0
