"""Prometheus metrics of the router, served at /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class RouterMetrics:
    """One registry per router, so several routers in one process stay apart."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "switchboard_router_requests",
            "Requests by kind (send, invoke), channel or integration, and result.",
            ["kind", "key", "result"],
            registry=r,
        )
        self.attempts = Counter(
            "switchboard_router_attempts",
            "Attempts on plugins by plugin and outcome (success or the failure class).",
            ["plugin", "outcome"],
            registry=r,
        )
        self.failovers = Counter(
            "switchboard_router_failovers",
            "Attempts made after an earlier attempt of the same request failed.",
            ["kind", "key"],
            registry=r,
        )
        self.ejections = Counter(
            "switchboard_router_ejections",
            "Endpoints ejected by outlier detection, by plugin.",
            ["plugin"],
            registry=r,
        )
        self.replays = Counter(
            "switchboard_router_idempotent_replays",
            "Requests answered from the idempotency store without a send.",
            ["key"],
            registry=r,
        )
        self.refused = Counter(
            "switchboard_router_refused",
            "Requests refused before routing, by reason (overload, auth, invalid).",
            ["reason"],
            registry=r,
        )
        self.latency = Histogram(
            "switchboard_router_request_seconds",
            "Time to answer a routed request, in seconds.",
            ["kind", "key"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.in_flight = Gauge(
            "switchboard_router_in_flight", "Requests being handled now.", registry=r
        )
        self.messages = Counter(
            "switchboard_router_message_transitions",
            "Messages this router moved to a state, by channel and state.",
            ["channel", "state"],
            registry=r,
        )
        self.ledger_messages = Gauge(
            "switchboard_ledger_messages",
            "Messages in the ledger by state (every replica's).",
            ["state"],
            registry=r,
        )
        self.oldest_unfinished = Gauge(
            "switchboard_ledger_oldest_unfinished_seconds",
            "Age of the oldest message still accepted or sending, in seconds (0: none).",
            registry=r,
        )
        self.receipts = Counter(
            "switchboard_router_receipts",
            "Provider delivery receipts by outcome (applied, unknown_message, stale, rejected).",
            ["outcome"],
            registry=r,
        )
