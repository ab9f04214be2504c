"""One reconcile of one plugin resource: read, check, apply children, write status.

Level-based: whatever triggered it (the resource changed, a child changed, a
Secret rotated, a dependency became Ready, the periodic resync), a reconcile
reads the current state and converges on it. Writes happen only for what
differs, so a reconcile of a settled resource writes nothing.

Errors (the exception tree; kopf only sees them at the handler edge):

    ReconcileError              something stopped this reconcile; retried later
    └── kubernetes ApiException (passed through) the API server refused or failed
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from switchboard.api import constants
from switchboard.api.constants import ConditionStatus, ConditionType, Reason
from switchboard.api.models import (
    CommunicationPlugin,
    EndpointsStatus,
    PluginStatus,
    ReportedPlugin,
    VendorIntegration,
)
from switchboard.controller import builders, licensing
from switchboard.controller import status as status_
from switchboard.controller.builders import PluginResource
from switchboard.controller.kube import Kube, SecretSummary
from switchboard.controller.settings import OperatorSettings

log = logging.getLogger("switchboard.operator")

MODELS: dict[str, type[CommunicationPlugin] | type[VendorIntegration]] = {
    CommunicationPlugin.kind_name: CommunicationPlugin,
    VendorIntegration.kind_name: VendorIntegration,
}

#: Calls Describe on a ready plugin endpoint (`ip:port`) → what the plugin reports.
Describer = Callable[[str], ReportedPlugin | None]


class ReconcileError(Exception):
    """A reconcile could not finish; the next trigger or resync retries it."""


@dataclass(frozen=True, slots=True)
class Key:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


def _plural(kind: str) -> str:
    return MODELS[kind].plural


class Reconciler:
    def __init__(
        self, kube: Kube, settings: OperatorSettings, describer: Describer | None = None
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.describer = describer

    # -- the gates: checks that must pass before anything runs --

    @staticmethod
    def secrets_gate(resource: PluginResource, summary: SecretSummary | None) -> status_.Gate:
        spec, namespace = resource.spec, resource.metadata.namespace or ""
        if spec.secret_ref is None:
            return status_.Gate(
                ConditionType.SECRETS_READY,
                True,
                Reason.NO_SECRETS_REQUIRED,
                "No Secret is referenced.",
            )
        name = spec.secret_ref.name
        if summary is None:
            wanted = ", ".join(spec.required_secrets) or "the plugin's keys"
            return status_.Gate(
                ConditionType.SECRETS_READY,
                False,
                Reason.SECRET_NOT_FOUND,
                f"Secret {name!r} does not exist in namespace {namespace!r}; "
                f"create it with {wanted}.",
            )
        missing = sorted(set(spec.required_secrets) - summary.keys)
        if missing:
            return status_.Gate(
                ConditionType.SECRETS_READY,
                False,
                Reason.SECRET_KEY_MISSING,
                f"Secret {name!r} lacks key(s) {', '.join(missing)} listed in requiredSecrets; "
                "add them to the Secret.",
            )
        return status_.Gate(
            ConditionType.SECRETS_READY,
            True,
            Reason.SECRETS_FOUND,
            f"Secret {name!r} holds every required key.",
        )

    def image_gate(self, resource: PluginResource) -> status_.Gate | None:
        image = resource.spec.image
        allowed = self.settings.allowed_registries
        if allowed and not any(image.startswith(prefix) for prefix in allowed):
            return status_.Gate(
                ConditionType.CONFIG_VALID,
                False,
                Reason.IMAGE_REFUSED,
                f"Image {image!r} is not from an allowed registry ({', '.join(allowed)}); "
                "use an image from one of them.",
            )
        if isinstance(resource, VendorIntegration):
            environment = resource.spec.environment
            if self.settings.preset(environment).require_digest and "@sha256:" not in image:
                return status_.Gate(
                    ConditionType.CONFIG_VALID,
                    False,
                    Reason.IMAGE_REFUSED,
                    f"The {environment.value} environment requires a digest-pinned image; "
                    f"pin {image!r} as image@sha256:<digest>.",
                )
        return None

    def license_gate(self, resource: PluginResource) -> status_.Gate | None:
        if not isinstance(resource, VendorIntegration) or resource.spec.license is None:
            return None
        ref, namespace = resource.spec.license, resource.metadata.namespace or ""
        token = self.kube.secret_value(namespace, ref.secret_name, ref.key)
        if token is None:
            return status_.Gate(
                ConditionType.LICENSED,
                False,
                Reason.LICENSE_INVALID,
                f"Secret {ref.secret_name!r} has no key {ref.key!r} holding the licence; add it.",
            )
        check = licensing.verify(
            token,
            plugin=resource.spec.vendor,
            namespace=namespace,
            public_keys=self.settings.license_public_keys,
            grace=datetime.timedelta(days=self.settings.license_grace_days),
        )
        reason = {
            licensing.Verdict.VALID: Reason.LICENSE_VALID,
            licensing.Verdict.IN_GRACE: Reason.LICENSE_IN_GRACE,
            licensing.Verdict.EXPIRED: Reason.LICENSE_EXPIRED,
            licensing.Verdict.INVALID: Reason.LICENSE_INVALID,
        }[check.verdict]
        message = check.message[0].upper() + check.message[1:] + "."
        return status_.Gate(ConditionType.LICENSED, check.allows_running, reason, message)

    def dependencies_gate(self, resource: PluginResource) -> status_.Gate | None:
        if not isinstance(resource, VendorIntegration) or not resource.spec.depends_on:
            return None
        namespace = resource.metadata.namespace or ""
        siblings = {
            item["metadata"]["name"]: item
            for item in self.kube.list_plugins(constants.VENDOR_INTEGRATIONS, namespace)
        }
        graph = {
            name: list(item.get("spec", {}).get("dependsOn", []) or [])
            for name, item in siblings.items()
        }
        graph[resource.metadata.name] = list(resource.spec.depends_on)
        cycle = find_cycle(graph, resource.metadata.name)
        if cycle:
            return status_.Gate(
                ConditionType.DEPENDENCIES_READY,
                False,
                Reason.DEPENDENCY_CYCLE,
                f"dependsOn forms a cycle: {' → '.join(cycle)}; remove one of these dependencies.",
            )
        for dependency in resource.spec.depends_on:
            item = siblings.get(dependency)
            if item is None:
                return status_.Gate(
                    ConditionType.DEPENDENCIES_READY,
                    False,
                    Reason.WAITING_FOR_DEPENDENCY,
                    f"Waiting for VendorIntegration {dependency!r}, which does not exist yet.",
                )
            ready = next(
                (
                    c
                    for c in (item.get("status") or {}).get("conditions", []) or []
                    if c.get("type") == ConditionType.READY
                ),
                None,
            )
            if ready is None or ready.get("status") != ConditionStatus.TRUE:
                return status_.Gate(
                    ConditionType.DEPENDENCIES_READY,
                    False,
                    Reason.WAITING_FOR_DEPENDENCY,
                    f"Waiting for VendorIntegration {dependency!r} to become Ready.",
                )
        return status_.Gate(
            ConditionType.DEPENDENCIES_READY,
            True,
            Reason.DEPENDENCIES_MET,
            f"Every dependency is Ready: {', '.join(resource.spec.depends_on)}.",
        )

    def all_keys(self) -> list[Key]:
        """Every plugin resource the operator is responsible for."""
        namespace = self.settings.namespace
        return [
            Key(kind, item_namespace, name)
            for kind, model in MODELS.items()
            for item_namespace, name in self.kube.plugin_names(model.plural, namespace)
        ]

    # -- the reconcile --

    def reconcile(self, key: Key) -> None:
        body = self.kube.get_plugin(_plural(key.kind), key.namespace, key.name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        try:
            resource = MODELS[key.kind].model_validate(body)
        except ValidationError as error:
            # The CRD schema admits nothing the model refuses; if it ever does,
            # say so on the resource instead of failing silently.
            raise ReconcileError(f"{key} does not match the API model: {error}") from error
        generation = int(body["metadata"].get("generation") or 0)
        secret = (
            self.kube.secret_summary(key.namespace, resource.spec.secret_ref.name)
            if resource.spec.secret_ref is not None
            else None
        )
        gates = [
            gate
            for gate in (
                self.secrets_gate(resource, secret),
                self.image_gate(resource),
                self.license_gate(resource),
                self.dependencies_gate(resource),
            )
            if gate is not None
        ]
        name = builders.child_name(resource)
        inputs = builders.Inputs(secret_checksum=secret.checksum if secret else "")
        deployment: dict[str, Any] | None
        if all(gate.ok for gate in gates):
            deployment = self._apply_children(resource, inputs)
        else:
            deployment = self.kube.get("apps/v1", "Deployment", key.namespace, name)
            licensed = next((g for g in gates if g.type == ConditionType.LICENSED), None)
            if licensed is not None and not licensed.ok and deployment is not None:
                # A commercial integration without a valid licence must not run.
                stopped = builders.deployment(resource, self.settings, inputs)
                stopped["spec"]["replicas"] = 0
                deployment = self.kube.apply(stopped)

        observation = status_.Observation(
            generation=generation,
            gates=gates,
            deployment=deployment,
            config_checksum=builders.config_checksum(resource),
        )
        previous = resource.status
        ready_addresses: list[str] = []
        if deployment is not None:
            observation.endpoints, ready_addresses = self._endpoints(key.namespace, name)
            if not _rolled_out(deployment):
                observation.pods = self.kube.list_objects(
                    "v1", "Pod", key.namespace, _selector(builders.selector_labels(resource))
                )
        observation.reported_plugin = previous.plugin if previous else None
        new, events = status_.compute(observation, previous)
        if (
            self.describer is not None
            and ready_addresses
            and _is_ready(new)
            and (observation.reported_plugin is None or not _is_ready(previous))
        ):
            reported = self.describer(ready_addresses[0])
            if reported is not None:
                observation.reported_plugin = reported
                new, events = status_.compute(observation, previous)
        if not status_.same(previous, new):
            self.kube.patch_status(_plural(key.kind), key.namespace, key.name, new.to_wire())
        for event in events:
            self.kube.post_event(
                body, event.type, event.reason, event.message, "switchboard-operator"
            )
            log.info(
                "Recorded %s event %s for %s: %s", event.type, event.reason, key, event.message
            )

    def _apply_children(
        self, resource: PluginResource, inputs: builders.Inputs
    ) -> dict[str, Any] | None:
        deployment = None
        for child in builders.children(resource, self.settings, inputs):
            live = self.kube.apply(child)
            if child["kind"] == "Deployment":
                deployment = live
        namespace, name = resource.metadata.namespace or "", builders.child_name(resource)
        if builders.pod_disruption_budget(resource, self.settings) is None and self.kube.get(
            "policy/v1", "PodDisruptionBudget", namespace, name
        ):
            self.kube.delete("policy/v1", "PodDisruptionBudget", namespace, name)
        return deployment

    def _endpoints(self, namespace: str, service: str) -> tuple[EndpointsStatus, list[str]]:
        """Ready and total endpoints of the plugin's Service, and the ready addresses."""
        slices = self.kube.list_objects(
            "discovery.k8s.io/v1",
            "EndpointSlice",
            namespace,
            f"kubernetes.io/service-name={service}",
        )
        endpoints = [e for s in slices for e in (s.get("endpoints") or [])]
        ready = [e for e in endpoints if (e.get("conditions") or {}).get("ready")]
        addresses = [
            f"{address}:{constants.PLUGIN_GRPC_PORT}"
            for endpoint in ready
            for address in endpoint.get("addresses") or []
        ]
        return EndpointsStatus(ready=len(ready), total=len(endpoints)), addresses


def find_cycle(graph: dict[str, list[str]], start: str) -> list[str] | None:
    """A dependency cycle through `start`, as [start, ..., start], if there is one."""
    path: list[str] = []

    def visit(node: str, seen: set[str]) -> list[str] | None:
        path.append(node)
        for nxt in graph.get(node, []):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                found = visit(nxt, seen)
                if found:
                    return found
        path.pop()
        return None

    return visit(start, {start})


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _rolled_out(deployment: dict[str, Any]) -> bool:
    return status_.rollout(deployment)[3]


def _is_ready(status: PluginStatus | None) -> bool:
    condition = status.condition(ConditionType.READY) if status else None
    return condition is not None and condition.status == "True"
