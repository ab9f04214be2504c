"""Status computation, without a cluster: conditions, kstatus and Events."""

from __future__ import annotations

from typing import Any

from switchboard.api.constants import ConditionType, Reason
from switchboard.api.models import EndpointsStatus, PluginStatus
from switchboard.controller import status
from switchboard.controller.gates import Gate


def _deployment(
    desired: int = 1, ready: int = 1, updated: int = 1, available: int | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"generation": 2},
        "spec": {"replicas": desired},
        "status": {
            "observedGeneration": 2,
            "replicas": desired,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "availableReplicas": ready if available is None else available,
        },
    }


def _conditions(result: status.StatusUpdate) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in result.status.conditions}


def _observation(**kwargs: Any) -> status.Observation:
    kwargs.setdefault("generation", 2)
    kwargs.setdefault("gates", [])
    kwargs.setdefault("deployment", _deployment())
    kwargs.setdefault("endpoints", EndpointsStatus(ready=1, total=1))
    return status.Observation(**kwargs)


def test_a_rolled_out_plugin_with_endpoints_is_ready_and_says_so_in_kstatus_terms() -> None:
    result = status.compute(_observation(), None)
    conditions = _conditions(result)
    assert conditions[ConditionType.READY] == ("True", Reason.AVAILABLE)
    assert conditions[ConditionType.PROGRESSING] == ("False", Reason.DEPLOYED)
    assert conditions[ConditionType.RECONCILING] == conditions[ConditionType.PROGRESSING]
    assert conditions[ConditionType.STALLED][0] == "False"
    assert all(c.observed_generation == 2 for c in result.status.conditions)
    assert (result.status.replicas, result.status.ready_replicas) == (1, 1)
    assert result.events == [], "fine from the start is not news"
    starting = status.compute(_observation(deployment=_deployment(ready=0)), None).status
    became = status.compute(_observation(), starting)
    assert [(e.type, e.reason) for e in became.events] == [("Normal", Reason.AVAILABLE)]


def test_ready_pods_without_endpoints_are_not_ready_yet() -> None:
    result = status.compute(_observation(endpoints=EndpointsStatus(ready=0, total=1)), None)
    assert _conditions(result)[ConditionType.READY] == ("False", Reason.PODS_NOT_READY)
    assert result.events == [], "pods on their way are not news"


def test_a_failed_gate_that_needs_a_person_stalls() -> None:
    gate = Gate(ConditionType.CONFIG_VALID, False, Reason.IMAGE_REFUSED, "Image 'x' is refused.")
    result = status.compute(_observation(gates=[gate], deployment=None), None)
    conditions = _conditions(result)
    assert conditions[ConditionType.READY] == ("False", Reason.IMAGE_REFUSED)
    assert conditions[ConditionType.STALLED] == ("True", Reason.IMAGE_REFUSED)
    assert conditions[ConditionType.PROGRESSING][0] == "False"
    assert [(e.type, e.reason) for e in result.events] == [
        ("Warning", Reason.IMAGE_REFUSED),
        ("Warning", Reason.IMAGE_REFUSED),
    ]


def test_a_gate_that_waits_is_progress_not_a_stall() -> None:
    gate = Gate(ConditionType.SECRETS_READY, False, Reason.SECRET_NOT_FOUND, "Secret 'x' ...")
    conditions = _conditions(status.compute(_observation(gates=[gate], deployment=None), None))
    assert conditions[ConditionType.PROGRESSING] == ("True", Reason.RECONCILING)
    assert conditions[ConditionType.STALLED][0] == "False"


def test_a_child_that_cannot_be_applied_degrades_and_names_the_api_message() -> None:
    failures = {"Service/sms-plugin": "403 Forbidden: exceeded quota: services=0"}
    result = status.compute(_observation(apply_failures=failures), None)
    conditions = _conditions(result)
    assert conditions[ConditionType.READY] == ("False", Reason.APPLY_FAILED)
    assert conditions[ConditionType.DEGRADED] == ("True", Reason.APPLY_FAILED)
    degraded = result.status.condition(ConditionType.DEGRADED)
    assert degraded is not None and "Service/sms-plugin: 403 Forbidden" in degraded.message
    assert ("Warning", Reason.APPLY_FAILED) in [(e.type, e.reason) for e in result.events]
    # Once it applies again, it is Ready and no longer degraded.
    healed = status.compute(_observation(), result.status)
    assert _conditions(healed)[ConditionType.DEGRADED] == ("False", Reason.AVAILABLE)
    assert ("Normal", Reason.AVAILABLE) in [(e.type, e.reason) for e in healed.events]


def test_losing_pods_after_serving_is_degradation() -> None:
    serving = status.compute(_observation(), None).status
    lost = status.compute(_observation(deployment=_deployment(ready=0, available=0)), serving)
    conditions = _conditions(lost)
    assert conditions[ConditionType.READY][0] == "False"
    assert conditions[ConditionType.DEGRADED] == ("True", Reason.PODS_UNAVAILABLE)


def test_a_config_the_plugin_rejected_surfaces_its_termination_message() -> None:
    pod = {
        "metadata": {"annotations": {"switchboard.dev/config-checksum": "c1"}},
        "status": {
            "containerStatuses": [
                {"lastState": {"terminated": {"exitCode": 2, "message": "config.port: bad"}}}
            ]
        },
    }
    result = status.compute(
        _observation(pods=[pod], config_checksum="c1", deployment=_deployment(ready=0)), None
    )
    assert _conditions(result)[ConditionType.CONFIG_VALID] == ("False", Reason.CONFIG_REJECTED)
    assert status.config_rejection([pod], "other-config") is None


def test_rollout_reads_a_deployment() -> None:
    progress = status.rollout(_deployment(desired=3, ready=2, updated=3, available=2))
    assert (progress.desired, progress.ready, progress.updated) == (3, 2, 3)
    assert not progress.complete and progress.deadline_reason is None
    assert status.rollout(_deployment(desired=2, ready=2, updated=2)).complete


def test_same_ignores_transition_times_only() -> None:
    first = status.compute(_observation(), None).status
    again = status.compute(_observation(), first).status
    assert status.same(first, again)
    assert not status.same(None, again)
    other = status.compute(_observation(endpoints=EndpointsStatus(ready=2, total=2)), first)
    assert not status.same(first, other.status)
    assert isinstance(first, PluginStatus)


def test_a_rollout_in_progress_is_written_when_it_starts_and_when_it_ends() -> None:
    starting = status.compute(_observation(deployment=_deployment(ready=0)), None).status
    waiting = status.compute(_observation(endpoints=EndpointsStatus(ready=0, total=1)), starting)
    assert not status.same(starting, waiting.status), "the counts and words changed"
    assert status.only_progress(starting, waiting.status), "but nothing a reader acts on"
    ready = status.compute(_observation(), waiting.status)
    assert not status.only_progress(waiting.status, ready.status)
    assert not status.only_progress(None, starting)
    serving = ready.status
    lost = status.compute(_observation(deployment=_deployment(ready=0, available=0)), serving)
    assert not status.only_progress(serving, lost.status), "losing pods is news"
