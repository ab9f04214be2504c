"""The audit table on both engines: an event several writers see is kept once."""

from __future__ import annotations

import pytest

from switchboard.ledger import AuditEvent, Ledger

pytestmark = pytest.mark.asyncio


async def test_a_gate_change_every_replica_records_is_kept_once(ledger: Ledger) -> None:
    def gate(actor: str, outcome: str, key: str) -> AuditEvent:
        return AuditEvent(
            "team-a", actor, "gate", "CommunicationPlugin/sms", outcome, at=100.0, key=key
        )

    # Two replicas, and one of them again after a restart, saw the same verdict;
    # then the gate turned and only one replica had seen it yet.
    await ledger.record_audit([gate("replica-1", "SecretMissing", "gate:u1:SecretMissing:100")])
    await ledger.record_audit(
        [
            gate("replica-2", "SecretMissing", "gate:u1:SecretMissing:100"),
            gate("replica-2", "passed", "gate:u1:passed:160"),
        ]
    )
    await ledger.record_audit([gate("replica-1", "SecretMissing", "gate:u1:SecretMissing:100")])
    # Events without a key (each send is its own) are never merged.
    send = AuditEvent("team-a", "app", "send", "sms", "sent", at=101.0)
    await ledger.record_audit([send, send])

    trail = await ledger.audit_trail("team-a", limit=10)
    assert sorted((e.action, e.outcome) for e in trail) == [
        ("gate", "SecretMissing"),
        ("gate", "passed"),
        ("send", "sent"),
        ("send", "sent"),
    ]
    assert next(e for e in trail if e.outcome == "SecretMissing").actor == "replica-1"
