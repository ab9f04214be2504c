"""The gates' verdict as a reader of the operator's conditions sees it (the router's audit)."""

from __future__ import annotations

from typing import Any

from switchboard.api.conditions import GateVerdict, gate_verdict


def _resource(*conditions: tuple[str, str, str, str]) -> dict[str, Any]:
    return {
        "status": {
            "conditions": [
                {
                    "type": t,
                    "status": s,
                    "reason": r,
                    "message": f"{t} says {r}",
                    "lastTransitionTime": at,
                }
                for t, s, r, at in conditions
            ]
        }
    }


def test_before_the_operator_wrote_a_status_there_is_no_verdict() -> None:
    assert gate_verdict({}) is None
    assert (
        gate_verdict(_resource(("Ready", "False", "Reconciling", "2026-12-01T10:00:00Z"))) is None
    )


def test_every_gate_true_has_passed_since_the_last_of_them_turned() -> None:
    verdict = gate_verdict(
        _resource(
            ("ConfigValid", "True", "Valid", "2026-12-01T10:00:00Z"),
            ("SecretsReady", "True", "SecretsFound", "2026-12-01T10:05:00Z"),
            ("Ready", "False", "Rolling", "2026-12-01T10:06:00Z"),
        )
    )
    assert verdict is not None
    assert (verdict.outcome, verdict.detail) == ("passed", None)
    assert verdict.since == 1796119500.0  # 2026-12-01T10:05:00Z


def test_the_first_failed_gate_in_report_order_is_the_verdict() -> None:
    verdict = gate_verdict(
        _resource(
            ("ConfigValid", "True", "Valid", "2026-12-01T10:00:00Z"),
            ("DependenciesReady", "False", "DependencyMissing", "2026-12-01T10:01:00Z"),
            ("SecretsReady", "False", "SecretMissing", "2026-12-01T10:02:00Z"),
        )
    )
    assert verdict == GateVerdict("SecretMissing", 1796119320.0, "SecretsReady says SecretMissing")


def test_the_key_is_the_same_for_every_reader_and_differs_per_verdict() -> None:
    a = GateVerdict("SecretMissing", 1796119320.0).key("uid-1")
    assert a == GateVerdict("SecretMissing", 1796119320.0, "other words").key("uid-1")
    assert a != GateVerdict("passed", 1796119320.0).key("uid-1")
    assert a != GateVerdict("SecretMissing", 1796119320.0).key("uid-2")
