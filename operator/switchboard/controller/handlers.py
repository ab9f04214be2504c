"""kopf handlers: thin triggers that hand a resource key to the work queue.

One `register_*` function per kind keeps the handlers of a kind together.
Every handler only decides *which* resource to reconcile; the reconcile
itself is level-based and lives in `reconciler`.

Secrets are not watched: the operator may read only the Secrets resources
name, one by one (no list, no watch, no cache of every Secret in the
cluster). A rotation is noticed when the resource is reconciled next, at the
latest at the periodic resync; a Secret that is missing is polled with back-off.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import kopf

from switchboard.api import constants
from switchboard.controller.builders import CHILD_KINDS, DERIVED_KINDS
from switchboard.controller.runtime import Key

_MANAGED = {constants.LABEL_MANAGED_BY: constants.MANAGED_BY}
_KIND_BY_LABEL = {
    constants.kind_label(kind): kind
    for kind in (constants.COMMUNICATION_PLUGIN, constants.VENDOR_INTEGRATION)
}
#: The kopf index of "which integrations depend on this one".
DEPENDENTS_INDEX = "vendor_integration_dependents"

#: Queue a key for a reconcile.
Request = Callable[[Key], None]
#: The resource is gone: drop what is kept about it.
Forget = Callable[[Key], None]


def watched_resources() -> list[tuple[str, str]]:
    """(apiVersion, plural) of the children and what the cluster makes for them."""
    return [(kind.api_version, kind.plural) for kind in (*CHILD_KINDS, *DERIVED_KINDS)]


def register_communication_plugins(
    registry: kopf.OperatorRegistry, request: Request, forget: Forget
) -> None:
    kind = constants.COMMUNICATION_PLUGIN

    @kopf.on.event(
        constants.GROUP, constants.VERSION, constants.COMMUNICATION_PLUGINS, registry=registry
    )
    async def communication_plugin_event(
        type: str, name: str, namespace: str | None, **_: Any
    ) -> None:
        key = Key(kind, namespace or "", name)
        if type == "DELETED":
            forget(key)
        else:
            request(key)


def register_vendor_integrations(
    registry: kopf.OperatorRegistry, request: Request, forget: Forget
) -> None:
    kind = constants.VENDOR_INTEGRATION

    @kopf.index(
        constants.GROUP,
        constants.VERSION,
        constants.VENDOR_INTEGRATIONS,
        id=DEPENDENTS_INDEX,
        registry=registry,
    )
    async def vendor_integration_dependents(
        name: str, namespace: str | None, spec: kopf.Spec, **_: Any
    ) -> dict[tuple[str, str], str]:
        """(namespace, dependency) → the integrations that depend on it."""
        return {(namespace or "", dependency): name for dependency in spec.get("dependsOn") or []}

    @kopf.on.event(
        constants.GROUP, constants.VERSION, constants.VENDOR_INTEGRATIONS, registry=registry
    )
    async def vendor_integration_event(
        type: str, name: str, namespace: str | None, **kwargs: Any
    ) -> None:
        key = Key(kind, namespace or "", name)
        if type == "DELETED":
            forget(key)
        else:
            request(key)
        # Whatever happened to this one may unblock (or block) its dependents.
        dependents: kopf.Index[tuple[str, str], str] = kwargs[DEPENDENTS_INDEX]
        for dependent in dependents.get((namespace or "", name), []):
            request(Key(kind, namespace or "", dependent))


def written_by(body: Mapping[str, Any], field_manager: str) -> bool:
    """Whether the latest change to an object was our own write (its echo needs no reconcile)."""
    entries = body.get("metadata", {}).get("managedFields") or []
    latest = max(entries, key=lambda e: e.get("time") or "", default=None)
    return latest is not None and latest.get("manager") == field_manager


def owner_key(labels: Mapping[str, str], namespace: str) -> Key | None:
    """The resource a child (or its pod or EndpointSlice) belongs to, by its labels."""
    kind = _KIND_BY_LABEL.get(labels.get(constants.LABEL_KIND, ""))
    name = labels.get(constants.LABEL_PLUGIN)
    return Key(kind, namespace, name) if kind and name else None


def register_dependents(
    registry: kopf.OperatorRegistry, request: Request, field_manager: str
) -> None:
    """Children, pods and endpoints: changes there reconcile their owner."""
    for group_version, plural in watched_resources():

        @kopf.on.event(group_version, plural, labels=_MANAGED, registry=registry)
        async def child_event(
            type: str, body: kopf.Body, labels: kopf.Labels, namespace: str | None, **_: Any
        ) -> None:
            if type != "DELETED" and written_by(body, field_manager):
                return
            if (key := owner_key(dict(labels), namespace or "")) is not None:
                request(key)
