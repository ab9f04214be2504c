"""Reading a resource's gates back from its status, as written by the operator.

The operator evaluates the gates (a valid config, its Secrets, its licence,
its dependencies) and writes one condition per gate. Whoever else keeps a
record of gate changes (the router's audit trail in a cluster) reads them
here, so that every reader agrees on what counts as a change.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Final

from switchboard.api.constants import ConditionType

#: The conditions that are gates, in the order the operator reports them.
GATE_CONDITIONS: Final = (
    ConditionType.CONFIG_VALID,
    ConditionType.SECRETS_READY,
    ConditionType.LICENSED,
    ConditionType.DEPENDENCIES_READY,
)


@dataclass(frozen=True)
class GateVerdict:
    """``passed``, or the blocking gate's reason, since when, and why."""

    outcome: str
    since: float
    """When the verdict was reached (the gate condition's last transition), epoch seconds."""
    detail: str | None = None

    def key(self, uid: str) -> str:
        """The same for every reader of the same verdict of the same resource."""
        return f"gate:{uid}:{self.outcome}:{self.since:.0f}"


def _epoch(stamp: str | None) -> float:
    if not stamp:
        return 0.0
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def gate_verdict(resource: dict[str, Any]) -> GateVerdict | None:
    """The gates' verdict in ``resource``'s status; None before the operator wrote one."""
    status = resource.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    gates = [conditions[t] for t in GATE_CONDITIONS if t in conditions]
    if not gates:
        return None
    blocking = next((c for c in gates if c.get("status") != "True"), None)
    if blocking is not None:
        return GateVerdict(
            str(blocking.get("reason") or blocking.get("type")),
            _epoch(blocking.get("lastTransitionTime")),
            blocking.get("message") or None,
        )
    return GateVerdict("passed", max(_epoch(c.get("lastTransitionTime")) for c in gates))
