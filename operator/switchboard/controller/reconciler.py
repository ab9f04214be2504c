"""One reconcile of one plugin resource: read, check, apply children, write status.

Level-based: whatever triggered it (the resource changed, a child changed, a
dependency became Ready, the periodic resync, a retry), a reconcile reads the
current state and converges on it. Writes happen only for what differs, so a
reconcile of a settled resource writes nothing.

The I/O is here; the decisions are pure functions elsewhere: `gates` (may it
run?), `builders` (what it becomes), `drift` (does a child still say that?),
`status` (what its status says).

Each child is applied on its own: one that the API server refuses does not
stop the others. Its name and the API's message go to the status (Ready=False,
Degraded=True, reason ApplyFailed) and a Warning Event, and the reconcile is
retried with back-off until it applies.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from switchboard.api import constants
from switchboard.api.constants import ConditionStatus, ConditionType, Reason
from switchboard.api.models import (
    RESOURCE_MODELS,
    Condition,
    EndpointsStatus,
    PluginStatus,
    ReportedPlugin,
    SecurityLevel,
    VendorIntegration,
)
from switchboard.controller import builders, gates
from switchboard.controller import status as status_
from switchboard.controller.gates import PluginResource
from switchboard.controller.kube import ApiError, Kube, SecretSummary, api_message
from switchboard.controller.runtime import OK, RETRY, Key, Outcome
from switchboard.controller.settings import OperatorSettings

log = logging.getLogger("switchboard.operator")
audit = logging.getLogger("switchboard.audit")

MODELS = {model.kind_name: model for model in RESOURCE_MODELS}

#: Calls Describe on a ready plugin endpoint (`ip:port`) → what the plugin reports.
Describer = Callable[[str], Awaitable[ReportedPlugin | None]]
#: Told the conditions of each resource after its reconcile (None: it is gone).
StatusObserver = Callable[[Key, PluginStatus | None], None]

#: Gate reasons that are waiting for something the operator does not watch (a
#: Secret): checked again with back-off, so a Secret created later is noticed
#: within seconds, not at the next resync.
_POLLED = {Reason.SECRET_NOT_FOUND, Reason.SECRET_KEY_MISSING, Reason.LICENSE_INVALID}


class ReconcileError(Exception):
    """A reconcile could not finish; it is retried with back-off."""


def _ready(conditions: list[dict[str, Any]] | None) -> bool:
    return any(
        c.get("type") == ConditionType.READY and c.get("status") == ConditionStatus.TRUE
        for c in conditions or []
    )


def siblings_of(items: list[dict[str, Any]]) -> dict[str, gates.Sibling]:
    """VendorIntegrations as the dependency gate sees them."""
    return {
        item["metadata"]["name"]: gates.Sibling(
            depends_on=tuple((item.get("spec") or {}).get("dependsOn") or ()),
            ready=_ready((item.get("status") or {}).get("conditions")),
        )
        for item in items
    }


def namespace_ceiling(labels: dict[str, str]) -> SecurityLevel | None:
    """The namespace's `switchboard.dev/max-security-level` label, if it names a level."""
    value = labels.get(constants.LABEL_MAX_SECURITY_LEVEL)
    try:
        return SecurityLevel(value) if value else None
    except ValueError:
        return None


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        describer: Describer | None = None,
        on_status: StatusObserver | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.describer = describer
        self.on_status = on_status
        self.policy = settings.gate_policy()

    # -- what the gates need to know --

    async def observe(
        self, resource: PluginResource, secret: SecretSummary | None
    ) -> gates.Observed:
        namespace = resource.metadata.namespace or ""
        token = None
        if isinstance(resource, VendorIntegration) and resource.spec.license is not None:
            ref = resource.spec.license
            token = await self.kube.secret_value(namespace, ref.secret_name, ref.key)
        siblings: dict[str, gates.Sibling] = {}
        if isinstance(resource, VendorIntegration) and resource.spec.depends_on:
            siblings = siblings_of(
                await self.kube.list_plugins(constants.VENDOR_INTEGRATION, namespace)
            )
        ceiling = None
        if gates.security_level(resource) not in (SecurityLevel.MINIMAL, SecurityLevel.STANDARD):
            # Only a level above the usual needs the namespace's word.
            ceiling = namespace_ceiling(await self.kube.namespace_labels(namespace))
        return gates.Observed(
            secret_keys=secret.keys if secret is not None else None,
            license_token=token,
            siblings=siblings,
            namespace_max_security_level=ceiling,
        )

    async def all_keys(self) -> list[Key]:
        """Every plugin resource the operator is responsible for."""
        return [
            Key(kind, namespace, name)
            for kind in MODELS
            for namespace, name in await self.kube.plugin_names(kind, self.settings.namespace)
        ]

    # -- the reconcile --

    async def reconcile(self, key: Key) -> Outcome:
        body = await self.kube.get_plugin(key.kind, key.namespace, key.name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            if self.on_status is not None:
                self.on_status(key, None)
            return OK
        try:
            resource = MODELS[key.kind].model_validate(body)
        except ValidationError as error:
            # The CRD schema admits nothing the model refuses; if it ever does,
            # say so instead of failing silently.
            raise ReconcileError(f"{key} does not match the API model: {error}") from error
        secret = (
            await self.kube.secret_summary(key.namespace, resource.spec.secret_ref.name)
            if resource.spec.secret_ref is not None
            else None
        )
        verdict = gates.evaluate(resource, self.policy, await self.observe(resource, secret))
        inputs = builders.Inputs(secret_checksum=secret.checksum if secret else "")
        failures: dict[str, str] = {}
        if verdict.passed:
            deployment, failures = await self._apply_children(resource, inputs)
        else:
            deployment = await self._hold(resource, inputs, stop=verdict.unlicensed)
        observation = status_.Observation(
            generation=int(body["metadata"].get("generation") or 0),
            gates=list(verdict.gates),
            deployment=deployment,
            config_checksum=builders.config_checksum(resource),
            apply_failures=failures,
            reported_plugin=resource.status.plugin if resource.status else None,
        )
        await self._publish(key, body, resource, observation)
        blocking = verdict.blocking
        waiting = blocking is not None and blocking.reason in _POLLED
        return RETRY if failures or waiting else OK

    async def _hold(
        self, resource: PluginResource, inputs: builders.Inputs, *, stop: bool
    ) -> dict[str, Any] | None:
        """A gate failed: apply nothing, but stop (scale to 0) what runs when `stop`:
        a commercial integration without a valid licence must not run."""
        namespace, name = resource.metadata.namespace or "", builders.child_name(resource)
        deployment = await self.kube.get("apps/v1", "Deployment", namespace, name)
        if stop and deployment is not None:
            stopped = builders.deployment(resource, self.settings, inputs)
            stopped["spec"]["replicas"] = 0
            deployment = await self.kube.apply(stopped)
        return deployment

    async def _publish(
        self,
        key: Key,
        body: dict[str, Any],
        resource: PluginResource,
        observation: status_.Observation,
    ) -> None:
        """Observe pods and endpoints, ask the plugin what it is once it is Ready,
        then write the status (when it says something new) and its Events."""
        previous = resource.status
        ready_addresses: list[str] = []
        name = builders.child_name(resource)
        if observation.deployment is not None:
            observation.endpoints, ready_addresses = await self._endpoints(key.namespace, name)
            if not status_.rollout(observation.deployment).complete:
                observation.pods = await self.kube.list_objects(
                    "v1", "Pod", key.namespace, builders.selector_labels(resource)
                )
        update = status_.compute(observation, previous)
        newly_ready = _is_ready(update.status) and (
            observation.reported_plugin is None or not _is_ready(previous)
        )
        if self.describer is not None and ready_addresses and newly_ready:
            reported = await self.describer(ready_addresses[0])
            if reported is not None:
                observation.reported_plugin = reported
                update = status_.compute(observation, previous)
        if not status_.same(previous, update.status) and not status_.only_progress(
            previous, update.status
        ):
            await self.kube.patch_status(key.kind, key.namespace, key.name, update.status.to_wire())
        for event in update.events:
            await self.kube.post_event(
                body, event.type, event.reason, event.message, "switchboard-operator"
            )
            log.info(
                "Recorded a Kubernetes event",
                extra={
                    "resource": str(key),
                    "event_type": event.type,
                    "reason": event.reason,
                    "detail": event.message,
                },
            )
            # The audit trail of a cluster: the log pipeline keeps it (no database here).
            audit.info(
                "Audited gate",
                extra={
                    "tenant": key.namespace,
                    "actor": "switchboard-operator",
                    "action": "gate",
                    "target": f"{key.kind}/{key.name}",
                    "outcome": event.reason,
                },
            )
        if self.on_status is not None:
            self.on_status(key, update.status)

    async def _apply_children(
        self, resource: PluginResource, inputs: builders.Inputs
    ) -> tuple[dict[str, Any] | None, dict[str, str]]:
        """Apply every child on its own; the live Deployment and the refusals."""
        namespace, name = resource.metadata.namespace or "", builders.child_name(resource)
        deployment = None
        failures: dict[str, str] = {}
        for child in builders.children(resource, self.settings, inputs):
            try:
                live = await self.kube.apply(child)
            except ApiError as error:
                failures[f"{child['kind']}/{name}"] = api_message(error)
                continue
            if child["kind"] == "Deployment":
                deployment = live
        if deployment is None and "Deployment/" + name in failures:
            deployment = await self.kube.get("apps/v1", "Deployment", namespace, name)
        if builders.pod_disruption_budget(resource, self.settings) is None:
            try:
                # Read first: a DELETE of nothing is still a write in the audit log.
                if await self.kube.get("policy/v1", "PodDisruptionBudget", namespace, name):
                    await self.kube.delete("policy/v1", "PodDisruptionBudget", namespace, name)
            except ApiError as error:
                failures[f"PodDisruptionBudget/{name}"] = api_message(error)
        return deployment, failures

    async def _endpoints(self, namespace: str, service: str) -> tuple[EndpointsStatus, list[str]]:
        """Ready and total endpoints of the plugin's Service, and the ready addresses."""
        slices = await self.kube.list_objects(
            "discovery.k8s.io/v1",
            "EndpointSlice",
            namespace,
            {"kubernetes.io/service-name": service},
        )
        endpoints = [e for s in slices for e in (s.get("endpoints") or [])]
        ready = [e for e in endpoints if (e.get("conditions") or {}).get("ready")]
        addresses = [
            f"{address}:{constants.PLUGIN_GRPC_PORT}"
            for endpoint in ready
            for address in endpoint.get("addresses") or []
        ]
        return EndpointsStatus(ready=len(ready), total=len(endpoints)), addresses

    # -- when a reconcile fails --

    async def report_failure(self, key: Key, error: BaseException, retry_in: float) -> None:
        """A Warning Event, and Degraded=True with reason ReconcileFailed on the resource.

        The Event goes first: what failed may be the status write itself."""
        body = await self.kube.get_plugin(key.kind, key.namespace, key.name)
        if body is None:
            return
        text = api_message(error) if isinstance(error, ApiError) else str(error)
        message = f"The reconcile failed: {text[:500]}; retrying in {retry_in:.0f}s."
        previous = PluginStatus.model_validate(body.get("status") or {})
        before = previous.condition(ConditionType.DEGRADED)
        if before is None or before.reason != Reason.RECONCILE_FAILED:
            await self.kube.post_event(
                body, "Warning", Reason.RECONCILE_FAILED, message, "switchboard-operator"
            )
        degraded = Condition(
            type=ConditionType.DEGRADED,
            status=ConditionStatus.TRUE,
            reason=Reason.RECONCILE_FAILED,
            message=message,
            last_transition_time=status_.now(),
            observed_generation=int(body["metadata"].get("generation") or 0),
        )
        conditions = [c for c in previous.conditions if c.type != ConditionType.DEGRADED]
        updated = previous.model_copy(update={"conditions": [*conditions, degraded]})
        await self.kube.patch_status(key.kind, key.namespace, key.name, updated.to_wire())


def _is_ready(status: PluginStatus | None) -> bool:
    condition = status.condition(ConditionType.READY) if status else None
    return condition is not None and condition.status == "True"
