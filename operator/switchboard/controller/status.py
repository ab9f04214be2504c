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


#: One condition as computed: (holds, reason, message).
Verdict = tuple[bool, str, str]


@dataclass(frozen=True)
class Health:
    """Ready, Progressing and Degraded, and what stalls the resource (if anything)."""

    ready: Verdict
    progressing: Verdict
    degraded: Verdict
    stalled_reason: str | None = None


def _pods_text(progress: Rollout | None) -> str:
    if progress is None:
        return "no plugin pods yet"
    return f"{progress.ready}/{progress.desired} plugin pods ready"


def _blocked(failed: Gate, progress: Rollout | None) -> Health:
    """A gate failed (or the plugin rejected its config): not Ready, and why."""
    waiting = failed.reason not in _STALLING
    degraded = failed.reason == Reason.CONFIG_REJECTED or (
        progress is not None and progress.ready < progress.desired
    )
    return Health(
        ready=(False, failed.reason, failed.message),
        progressing=(
            waiting,
            Reason.RECONCILING if waiting else failed.reason,
            f"Waiting: {failed.message}" if waiting else failed.message,
        ),
        degraded=(
            degraded,
            failed.reason if degraded else Reason.AVAILABLE,
            _pods_text(progress),
        ),
        stalled_reason=None if waiting else failed.reason,
    )


def _rolling(progress: Rollout, endpoints: EndpointsStatus, was_serving: bool) -> Health:
    """Health of a Deployment that exists, from its rollout and its endpoints."""
    pods_text = _pods_text(progress)
    if progress.complete and endpoints.ready < progress.desired:
        # The pods are ready but the Service does not list them yet: the router
        # cannot reach them, so the plugin is not Ready for its callers.
        message = f"{pods_text}; waiting for their endpoints."
        return Health(
            ready=(False, Reason.PODS_NOT_READY, message),
            progressing=(True, Reason.ROLLING_OUT, message),
            degraded=(
                was_serving,
                Reason.PODS_UNAVAILABLE if was_serving else Reason.ROLLING_OUT,
                message,
            ),
        )
    if progress.complete:
        return Health(
            ready=(True, Reason.AVAILABLE, f"{pods_text}."),
            progressing=(False, Reason.DEPLOYED, "The rollout is complete."),
            degraded=(False, Reason.AVAILABLE, f"{pods_text}."),
        )
    deadline = progress.deadline_reason
    # Pods still starting are progress; capacity lost after the plugin was
    # available (or a rollout past its deadline) is degradation.
    failing = deadline is not None or (
        was_serving and progress.updated == progress.desired and progress.ready < progress.desired
    )
    return Health(
        ready=(False, Reason.PODS_NOT_READY, f"{pods_text}; rolling out."),
        progressing=(
            deadline is None,
            Reason.ROLLING_OUT if deadline is None else deadline,
            f"{progress.updated}/{progress.desired} pods updated, {pods_text}.",
        ),
        degraded=(
            failing,
            Reason.PODS_UNAVAILABLE if failing else Reason.ROLLING_OUT,
            f"{pods_text}.",
        ),
        stalled_reason=deadline,
    )


def health(observation: Observation, failed: Gate | None, previous: PluginStatus | None) -> Health:
    """Ready, Progressing, Degraded and Stalled from what was observed."""
    progress = rollout(observation.deployment) if observation.deployment is not None else None
    if failed is not None:
        return _blocked(failed, progress)
    if observation.apply_failures:
        # What runs is not what the resource says: not Ready, and degraded until
        # every child applies again (retried with back-off; a person may be needed).
        message = apply_failure_message(observation.apply_failures)
        return Health(
            ready=(False, Reason.APPLY_FAILED, message),
            progressing=(True, Reason.RECONCILING, message),
            degraded=(True, Reason.APPLY_FAILED, message),
        )
    if progress is None:
        creating = "Creating the plugin's Deployment."
        return Health(
            ready=(False, Reason.RECONCILING, creating),
            progressing=(True, Reason.RECONCILING, creating),
            degraded=(False, Reason.RECONCILING, _pods_text(None)),
        )
    was_serving = previous is not None and (
        _holds(previous, ConditionType.READY) or _holds(previous, ConditionType.DEGRADED)
    )
    return _rolling(progress, observation.endpoints, was_serving)


def _verdicts(observation: Observation, previous: PluginStatus | None) -> dict[str, Verdict]:
    """Every condition type → its verdict, gates first."""
    verdicts: dict[str, Verdict] = {g.type: (g.ok, g.reason, g.message) for g in observation.gates}
    failed = next((g for g in observation.gates if not g.ok), None)
    rejection = config_rejection(observation.pods, observation.config_checksum)
    if rejection is not None:
        verdicts[ConditionType.CONFIG_VALID] = (False, Reason.CONFIG_REJECTED, rejection)
        failed = Gate(ConditionType.CONFIG_VALID, False, Reason.CONFIG_REJECTED, rejection)
    elif ConditionType.CONFIG_VALID not in verdicts:
        verdicts[ConditionType.CONFIG_VALID] = (
            True,
            Reason.CONFIG_ACCEPTED,
            "The plugin accepted its config.",
        )
    state = health(observation, failed, previous)
    verdicts[ConditionType.READY] = state.ready
    verdicts[ConditionType.PROGRESSING] = state.progressing
    verdicts[ConditionType.DEGRADED] = state.degraded
    verdicts[ConditionType.RECONCILING] = state.progressing
    stalled = state.stalled_reason
    verdicts[ConditionType.STALLED] = (
        stalled is not None,
        stalled or Reason.AVAILABLE,
        state.ready[2] if stalled else "Nothing needs a person.",
    )
    return verdicts


def _is_news(type_: str, holds: bool, reason: str, before: Condition | None, changed: bool) -> bool:
    """Whether a condition deserves an Event: it turned, or a problem changed its cause."""
    bad = holds == (type_ == ConditionType.DEGRADED)
    news = changed or (bad and before is not None and before.reason != reason)
    if type_ not in _ANNOUNCED or not news:
        return False
    if bad and reason in _PROGRESS:
        return False  # pods starting or rolling are progress, not news
    return not (before is None and not bad)  # "it is fine" at creation is not news


def compute(observation: Observation, previous: PluginStatus | None) -> StatusUpdate:
    """The new status, and the Events its transitions deserve."""
    old = {c.type: c for c in (previous.conditions if previous else [])}
    stamp = now()
    built: list[Condition] = []
    events: list[Event] = []
    for type_, (holds, reason, message) in _verdicts(observation, previous).items():
        state = ConditionStatus.TRUE if holds else ConditionStatus.FALSE
        before = old.get(type_)
        changed = before is None or before.status != state
        built.append(
            Condition(
                type=type_,
                status=state,
                reason=reason,
                message=message,
                last_transition_time=stamp if changed else before.last_transition_time,  # type: ignore[union-attr]
                observed_generation=observation.generation,
            )
        )
        if _is_news(type_, holds, reason, before, changed):
            bad = holds == (type_ == ConditionType.DEGRADED)
            events.append(Event("Warning" if bad else "Normal", reason, f"{type_}: {message}"))
    progress = rollout(observation.deployment) if observation.deployment is not None else None
    new = PluginStatus(
        observed_generation=observation.generation,
        conditions=built,
        replicas=progress.desired if progress else None,
        ready_replicas=progress.ready if progress else None,
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
    in_progress = ready is not None and ready.status != "True" and ready.reason in _PROGRESS
    return in_progress and _shape(previous) == _shape(new)
