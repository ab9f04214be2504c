"""What the status of a plugin resource says, computed from what was observed.

Pure functions: the reconciler gathers the observations (gates, the live
Deployment, pods, endpoints) and this module turns them into conditions in
the Kubernetes convention. Besides Ready, Progressing and Degraded it writes
kstatus' Reconciling and Stalled, so Flux and Argo CD read health without a
custom check; `observedGeneration` is on the status and on every condition.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from switchboard.api import constants
from switchboard.api.constants import ConditionStatus, ConditionType, Reason
from switchboard.api.models import Condition, EndpointsStatus, PluginStatus, ReportedPlugin
from switchboard.controller.gates import Gate

#: Exit code of a plugin that rejected its config (the SDK runtime's contract).
CONFIG_REJECTED_EXIT_CODE = 2

#: Conditions whose transitions become Kubernetes Events.
_ANNOUNCED = {
    ConditionType.READY,
    ConditionType.SECRETS_READY,
    ConditionType.CONFIG_VALID,
    ConditionType.LICENSED,
    ConditionType.DEPENDENCIES_READY,
    ConditionType.DEGRADED,
}
#: Reasons of a not-Ready plugin that is simply on its way; no Event for them.
_PROGRESS = {Reason.RECONCILING, Reason.ROLLING_OUT, Reason.PODS_NOT_READY}
#: Reasons that need a person to act; kstatus calls that Stalled.
_STALLING = {
    Reason.CONFIG_REJECTED,
    Reason.IMAGE_REFUSED,
    Reason.LICENSE_EXPIRED,
    Reason.LICENSE_INVALID,
    Reason.DEPENDENCY_CYCLE,
    Reason.SECURITY_LEVEL_REFUSED,
    Reason.EGRESS_REFUSED,
    Reason.NAMESPACE_NOT_SERVED,
    "ProgressDeadlineExceeded",
}


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass
class Observation:
    """Everything the reconciler saw, as plain data."""

    generation: int
    gates: list[Gate]
    deployment: dict[str, Any] | None
    pods: list[dict[str, Any]] = field(default_factory=list)
    endpoints: EndpointsStatus = field(default_factory=EndpointsStatus)
    config_checksum: str = ""
    reported_plugin: ReportedPlugin | None = None
    apply_failures: dict[str, str] = field(default_factory=dict)
    """Children that could not be applied ("Service/sms-plugin") → the API's message."""


@dataclass(frozen=True)
class StatusUpdate:
    """What `compute` decided: the new status and the Events its transitions deserve."""

    status: PluginStatus
    events: list[Event]


@dataclass(frozen=True)
class Rollout:
    """How far a live Deployment has rolled out."""

    desired: int
    ready: int
    updated: int
    complete: bool
    deadline_reason: str | None


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def config_rejection(pods: Iterable[dict[str, Any]], config_checksum: str) -> str | None:
    """The termination message of a pod running the current config that exited
    because the plugin rejected that config, if any."""
    for pod in pods:
        annotations = pod.get("metadata", {}).get("annotations", {}) or {}
        if annotations.get(constants.ANNOTATION_CONFIG_CHECKSUM) != config_checksum:
            continue
        for status in pod.get("status", {}).get("containerStatuses", []) or []:
            for state in (status.get("state"), status.get("lastState")):
                terminated = (state or {}).get("terminated")
                if terminated and terminated.get("exitCode") == CONFIG_REJECTED_EXIT_CODE:
                    message = " ".join(str(terminated.get("message") or "").split())
                    return message or "the plugin exited because its config is invalid"
    return None


def rollout(deployment: dict[str, Any]) -> Rollout:
    """How far a live Deployment has rolled out."""
    spec, status = deployment.get("spec", {}), deployment.get("status", {}) or {}
    desired = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas", 0) or 0)
    updated = int(status.get("updatedReplicas", 0) or 0)
    total = int(status.get("replicas", 0) or 0)
    available = int(status.get("availableReplicas", 0) or 0)
    observed = int(status.get("observedGeneration", 0) or 0) >= int(
        deployment.get("metadata", {}).get("generation", 0) or 0
    )
    rolled_out = observed and updated == desired and total == desired and available >= desired
    deadline = next(
        (
            c.get("reason")
            for c in status.get("conditions", []) or []
            if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
        ),
        None,
    )
    return Rollout(desired, ready, updated, rolled_out, deadline)


def apply_failure_message(failures: dict[str, str]) -> str:
    """One line naming each child that could not be applied and the API's reason."""
    parts = [f"{child}: {message}" for child, message in sorted(failures.items())]
    return "Could not apply " + "; ".join(parts) + ". Retrying with back-off."


def compute(observation: Observation, previous: PluginStatus | None) -> StatusUpdate:
    """The new status, and the Events its transitions deserve."""
    conditions: dict[str, tuple[str, str, str]] = {}  # type -> (status, reason, message)

    def put(type_: ConditionType, ok: bool, reason: str, message: str) -> None:
        conditions[type_] = (ConditionStatus.TRUE if ok else ConditionStatus.FALSE, reason, message)

    for gate in observation.gates:
        put(gate.type, gate.ok, gate.reason, gate.message)
    failed = next((g for g in observation.gates if not g.ok), None)
    deployment = observation.deployment
    rejection = config_rejection(observation.pods, observation.config_checksum)
    replicas = ready_replicas = None
    stalled_reason: str | None = None

    if rejection is not None:
        put(ConditionType.CONFIG_VALID, False, Reason.CONFIG_REJECTED, rejection)
        failed = Gate(ConditionType.CONFIG_VALID, False, Reason.CONFIG_REJECTED, rejection)
    elif ConditionType.CONFIG_VALID not in conditions:
        put(
            ConditionType.CONFIG_VALID,
            True,
            Reason.CONFIG_ACCEPTED,
            "The plugin accepted its config.",
        )

    # Pods still starting are progress; capacity lost after the plugin was
    # available (or a rollout past its deadline) is degradation.
    was_serving = previous is not None and (
        _holds(previous, ConditionType.READY) or _holds(previous, ConditionType.DEGRADED)
    )
    if deployment is not None:
        progress = rollout(deployment)
        desired, ready, updated = progress.desired, progress.ready, progress.updated
        rolled_out, deadline = progress.complete, progress.deadline_reason
        replicas, ready_replicas = desired, ready
        pods_text = f"{ready}/{desired} plugin pods ready"
    else:
        desired = ready = updated = 0
        rolled_out, deadline, pods_text = False, None, "no plugin pods yet"

    if failed is not None:
        put(ConditionType.READY, False, failed.reason, failed.message)
        progressing = failed.reason not in _STALLING
        put(
            ConditionType.PROGRESSING,
            progressing,
            Reason.RECONCILING if progressing else failed.reason,
            f"Waiting: {failed.message}" if progressing else failed.message,
        )
        degraded = failed.reason == Reason.CONFIG_REJECTED or (
            deployment is not None and ready < desired
        )
        put(
            ConditionType.DEGRADED,
            degraded,
            failed.reason if degraded else Reason.AVAILABLE,
            pods_text,
        )
        stalled_reason = failed.reason if failed.reason in _STALLING else None
    elif observation.apply_failures:
        # What runs is not what the resource says: not Ready, and degraded until
        # every child applies again (retried with back-off; a person may be needed).
        message = apply_failure_message(observation.apply_failures)
        put(ConditionType.READY, False, Reason.APPLY_FAILED, message)
        put(ConditionType.PROGRESSING, True, Reason.RECONCILING, message)
        put(ConditionType.DEGRADED, True, Reason.APPLY_FAILED, message)
    elif deployment is None:
        put(ConditionType.READY, False, Reason.RECONCILING, "Creating the plugin's Deployment.")
        put(
            ConditionType.PROGRESSING, True, Reason.RECONCILING, "Creating the plugin's Deployment."
        )
        put(ConditionType.DEGRADED, False, Reason.RECONCILING, pods_text)
    elif rolled_out and observation.endpoints.ready < desired:
        # The pods are ready but the Service does not list them yet: the router
        # cannot reach them, so the plugin is not Ready for its callers.
        message = f"{pods_text}; waiting for their endpoints."
        put(ConditionType.READY, False, Reason.PODS_NOT_READY, message)
        put(ConditionType.PROGRESSING, True, Reason.ROLLING_OUT, message)
        put(
            ConditionType.DEGRADED,
            was_serving,
            Reason.PODS_UNAVAILABLE if was_serving else Reason.ROLLING_OUT,
            message,
        )
    elif rolled_out:
        put(ConditionType.READY, True, Reason.AVAILABLE, f"{pods_text}.")
        put(ConditionType.PROGRESSING, False, Reason.DEPLOYED, "The rollout is complete.")
        put(ConditionType.DEGRADED, False, Reason.AVAILABLE, f"{pods_text}.")
    else:
        put(ConditionType.READY, False, Reason.PODS_NOT_READY, f"{pods_text}; rolling out.")
        put(
            ConditionType.PROGRESSING,
            deadline is None,
            Reason.ROLLING_OUT if deadline is None else deadline,
            f"{updated}/{desired} pods updated, {pods_text}.",
        )
        failing = deadline is not None or (was_serving and updated == desired and ready < desired)
        put(
            ConditionType.DEGRADED,
            failing,
            Reason.PODS_UNAVAILABLE if failing else Reason.ROLLING_OUT,
            f"{pods_text}.",
        )
        stalled_reason = deadline

    reconciling = conditions[ConditionType.PROGRESSING]
    conditions[ConditionType.RECONCILING] = reconciling
    put(
        ConditionType.STALLED,
        stalled_reason is not None,
        stalled_reason or Reason.AVAILABLE,
        conditions[ConditionType.READY][2] if stalled_reason else "Nothing needs a person.",
    )

    old = {c.type: c for c in (previous.conditions if previous else [])}
    stamp = now()
    built: list[Condition] = []
    events: list[Event] = []
    for type_, (state, reason, message) in conditions.items():
        before = old.get(type_)
        changed = before is None or before.status != state
        built.append(
            Condition(
                type=type_,
                status=state,
                reason=reason,
                message=message,
                last_transition_time=stamp
                if changed or before is None
                else before.last_transition_time,
                observed_generation=observation.generation,
            )
        )
        bad = (state == ConditionStatus.TRUE) == (type_ == ConditionType.DEGRADED)
        # News: a condition turned, or a problem changed its cause.
        news = changed or (bad and before is not None and before.reason != reason)
        if type_ in _ANNOUNCED and news:
            if bad and reason in _PROGRESS:
                continue  # pods starting or rolling are progress, not news
            if before is None and not bad:
                continue  # "it is fine" at creation is not news
            events.append(Event("Warning" if bad else "Normal", reason, f"{type_}: {message}"))
    new = PluginStatus(
        observed_generation=observation.generation,
        conditions=built,
        replicas=replicas,
        ready_replicas=ready_replicas,
        plugin=observation.reported_plugin,
        endpoints=observation.endpoints,
    )
    return StatusUpdate(new, events)


def _holds(status: PluginStatus, type_: ConditionType) -> bool:
    condition = status.condition(type_)
    return condition is not None and condition.status == "True"


def same(a: PluginStatus | None, b: PluginStatus) -> bool:
    """Equal but for transition times: writing one would change nothing people read."""
    if a is None:
        return False
    strip = {"conditions": {"__all__": {"last_transition_time"}}}
    return a.model_dump(exclude=strip) == b.model_dump(exclude=strip)


def _shape(status: PluginStatus) -> tuple[Any, ...]:
    """What a status says, minus the words and counts that change during a rollout."""
    return (
        status.observed_generation,
        sorted((c.type, c.status, c.reason, c.observed_generation) for c in status.conditions),
        status.plugin,
    )


def only_progress(previous: PluginStatus | None, new: PluginStatus) -> bool:
    """Whether `new` differs from `previous` only in the pod counts and messages of a
    rollout in progress: not worth a write (the next write comes when it ends or
    when anything else changes). Keeps a new resource at two status writes."""
    if previous is None:
        return False
    ready = new.condition(ConditionType.READY)
    in_progress = (
        ready is not None and ready.status != ConditionStatus.TRUE and ready.reason in _PROGRESS
    )
    return in_progress and _shape(previous) == _shape(new)
