"""kopf handlers: thin triggers that hand a resource key to the runtime.

One `register_*` function per kind keeps the handlers of a kind together and
lets `switchboard operator` and `kopf run -m switchboard.controller.kopf_main`
register the same handlers. Every handler only decides *which* resource to
reconcile; the reconcile itself is level-based and lives in `reconciler`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from switchboard.api import constants
from switchboard.controller.reconciler import Key
from switchboard.controller.runtime import OperatorRuntime

_MANAGED = {constants.LABEL_MANAGED_BY: constants.MANAGED_BY}
#: The same, as a server-side label selector for the watches of these kinds.
MANAGED_SELECTOR = f"{constants.LABEL_MANAGED_BY}={constants.MANAGED_BY}"
#: What the operator makes or what its workloads make: changes reconcile the owner.
CHILD_RESOURCES = (
    ("apps/v1", "deployments"),
    ("v1", "services"),
    ("v1", "configmaps"),
    ("v1", "serviceaccounts"),
    ("networking.k8s.io/v1", "networkpolicies"),
    ("policy/v1", "poddisruptionbudgets"),
    ("v1", "pods"),
    ("discovery.k8s.io/v1", "endpointslices"),
)
_KIND_BY_LABEL = {
    constants.kind_label(kind): kind
    for kind in (constants.COMMUNICATION_PLUGIN, constants.VENDOR_INTEGRATION)
}


def _references(spec: dict[str, Any]) -> tuple[set[str], set[str]]:
    secrets = {ref["name"]} if (ref := spec.get("secretRef")) else set()
    if license_ref := spec.get("license"):
        secrets.add(license_ref["secretName"])
    return secrets, set(spec.get("dependsOn") or [])


def register_communication_plugins(
    registry: kopf.OperatorRegistry, runtime: OperatorRuntime
) -> None:
    kind = constants.COMMUNICATION_PLUGIN

    @kopf.on.event(
        constants.GROUP, constants.VERSION, constants.COMMUNICATION_PLUGINS, registry=registry
    )
    async def communication_plugin_event(
        type: str, name: str, namespace: str | None, spec: kopf.Spec, **_: Any
    ) -> None:
        key = Key(kind, namespace or "", name)
        secrets, _deps = _references(dict(spec))
        runtime.remember_references(key, secrets, set(), deleted=type == "DELETED")
        if type != "DELETED":
            runtime.request(key)


def register_vendor_integrations(registry: kopf.OperatorRegistry, runtime: OperatorRuntime) -> None:
    kind = constants.VENDOR_INTEGRATION

    @kopf.on.event(
        constants.GROUP, constants.VERSION, constants.VENDOR_INTEGRATIONS, registry=registry
    )
    async def vendor_integration_event(
        type: str, name: str, namespace: str | None, spec: kopf.Spec, **_: Any
    ) -> None:
        key = Key(kind, namespace or "", name)
        secrets, depends_on = _references(dict(spec))
        runtime.remember_references(key, secrets, depends_on, deleted=type == "DELETED")
        if type != "DELETED":
            runtime.request(key)
        # Whatever happened to this one may unblock (or block) its dependents.
        for dependent in list(runtime.dependents.get((namespace or "", name), ())):
            runtime.request(dependent)


def written_by(body: Mapping[str, Any], field_manager: str) -> bool:
    """Whether the latest change to an object was our own write (its echo needs no reconcile)."""
    entries = body.get("metadata", {}).get("managedFields") or []
    latest = max(entries, key=lambda e: e.get("time") or "", default=None)
    return latest is not None and latest.get("manager") == field_manager


def register_dependents(
    registry: kopf.OperatorRegistry, runtime: OperatorRuntime, field_manager: str
) -> None:
    """Children, pods, endpoints and Secrets: changes there reconcile their owner."""

    def owner_changed(labels: dict[str, str], namespace: str) -> None:
        kind = _KIND_BY_LABEL.get(labels.get(constants.LABEL_KIND, ""))
        name = labels.get(constants.LABEL_PLUGIN)
        if kind and name:
            runtime.request(Key(kind, namespace or "", name))

    for group_version, plural in CHILD_RESOURCES:

        @kopf.on.event(group_version, plural, labels=_MANAGED, registry=registry)
        async def child_event(
            type: str, body: kopf.Body, labels: kopf.Labels, namespace: str | None, **_: Any
        ) -> None:
            if type != "DELETED" and written_by(body, field_manager):
                return
            owner_changed(dict(labels), namespace or "")

    @kopf.on.event("v1", "secrets", registry=registry)
    async def secret_event(name: str, namespace: str | None, **_: Any) -> None:
        for user in list(runtime.secret_users.get((namespace or "", name), ())):
            runtime.request(user)
