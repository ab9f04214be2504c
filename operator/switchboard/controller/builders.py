"""Pure functions from a plugin resource to the objects it becomes.

Nothing here talks to the API server: each builder takes the resource, the
operator's settings and what the handler looked up (checksums), and returns a
manifest dict ready for server-side apply. Tests check them without a cluster.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from switchboard.api import constants
from switchboard.api.models import (
    CommunicationPlugin,
    EgressRule,
    SecurityLevel,
    VendorIntegration,
)
from switchboard.controller.gates import PluginResource, forbidden_networks, security_level
from switchboard.controller.settings import OperatorSettings


@dataclass(frozen=True)
class Kind:
    """A Kubernetes kind the operator reads or writes, with its URL name."""

    api_version: str
    kind: str
    plural: str


#: Every kind of child, in the order they are applied: the one table that the
#: builders, the watches and the API calls share.
CHILD_KINDS: tuple[Kind, ...] = (
    Kind("v1", "ServiceAccount", "serviceaccounts"),
    Kind("v1", "ConfigMap", "configmaps"),
    Kind("v1", "Service", "services"),
    Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    Kind("apps/v1", "Deployment", "deployments"),
)
#: What the cluster makes for the children (and copies our labels onto): watched
#: and read, never written.
DERIVED_KINDS: tuple[Kind, ...] = (
    Kind("v1", "Pod", "pods"),
    Kind("discovery.k8s.io/v1", "EndpointSlice", "endpointslices"),
)

#: Suffix of every child object's name, by kind, so a CommunicationPlugin and a
#: VendorIntegration of the same name never collide.
CHILD_SUFFIX = {
    constants.COMMUNICATION_PLUGIN: "-plugin",
    constants.VENDOR_INTEGRATION: "-integration",
}
CONFIG_FILE = constants.PLUGIN_CONFIG_PATH.rsplit("/", 1)[-1]
CONFIG_DIR = constants.PLUGIN_CONFIG_PATH.rsplit("/", 1)[0]
PLUGIN_UID = 65532

#: TCP ports a plugin may reach when its resource declares no egress, by
#: security level; None: any port.
EGRESS_PORTS: dict[SecurityLevel, list[int] | None] = {
    SecurityLevel.MINIMAL: [443],
    SecurityLevel.STANDARD: [443, 80, 25, 465, 587],
    SecurityLevel.ELEVATED: None,
    SecurityLevel.SYSTEM: None,
}


@dataclass(frozen=True)
class Inputs:
    """What a handler looked up that the builders need besides the resource."""

    secret_checksum: str = ""
    """Hash of the referenced Secret's data; a change rolls the pods."""


def child_name(resource: PluginResource) -> str:
    return resource.metadata.name + CHILD_SUFFIX[resource.kind]


def kind_label(resource: PluginResource) -> str:
    return constants.kind_label(resource.kind)


def selector_labels(resource: PluginResource) -> dict[str, str]:
    """The immutable Deployment selector: which pods belong to this resource."""
    return {
        constants.LABEL_KIND: kind_label(resource),
        constants.LABEL_PLUGIN: resource.metadata.name,
    }


def labels(resource: PluginResource) -> dict[str, str]:
    """Labels of every child object and pod; the router selects by these."""
    out = {
        constants.LABEL_NAME: "switchboard-plugin",
        constants.LABEL_INSTANCE: resource.metadata.name,
        constants.LABEL_COMPONENT: constants.COMPONENT_PLUGIN,
        constants.LABEL_MANAGED_BY: constants.MANAGED_BY,
        **selector_labels(resource),
    }
    if isinstance(resource, CommunicationPlugin):
        out[constants.LABEL_CHANNEL_TYPE] = resource.spec.channel_type
    else:
        out[constants.LABEL_VENDOR] = resource.spec.vendor
    return out


def owner_reference(resource: PluginResource) -> dict[str, Any]:
    assert resource.metadata.uid, "an owner must have been read from the API server"
    return {
        "apiVersion": constants.API_VERSION,
        "kind": resource.kind,
        "name": resource.metadata.name,
        "uid": resource.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(resource: PluginResource, **extra: Any) -> dict[str, Any]:
    return {
        "name": child_name(resource),
        "namespace": resource.metadata.namespace,
        "labels": labels(resource),
        "ownerReferences": [owner_reference(resource)],
        **extra,
    }


def checksum(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def config_checksum(resource: PluginResource) -> str:
    """Hash of the plugin's config; a change rolls the pods."""
    return checksum({"config": resource.spec.config})


# --- children ---------------------------------------------------------------------


def config_map(resource: PluginResource) -> dict[str, Any]:
    """The rendered config. `${KEY}` references stay as written: the plugin
    resolves them from its mounted Secret, so no secret value lands here."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(resource),
        "data": {CONFIG_FILE: json.dumps(resource.spec.config, sort_keys=True, indent=2)},
    }


def service_account(resource: PluginResource) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(resource),
        "automountServiceAccountToken": security_level(resource) is SecurityLevel.SYSTEM,
    }


def service(resource: PluginResource) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(resource),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(resource),
            "ports": [
                {
                    "name": constants.PLUGIN_PORT_NAME,
                    "port": constants.PLUGIN_GRPC_PORT,
                    "targetPort": constants.PLUGIN_PORT_NAME,
                    "protocol": "TCP",
                    "appProtocol": "grpc",
                }
            ],
        },
    }


def replicas(resource: PluginResource, settings: OperatorSettings) -> int:
    if resource.spec.replicas is not None:
        return resource.spec.replicas
    if isinstance(resource, VendorIntegration):
        return settings.preset(resource.spec.environment).replicas
    return 1


def _resources(resource: PluginResource, settings: OperatorSettings) -> dict[str, Any]:
    if resource.spec.resources is not None:
        return resource.spec.resources.to_wire()
    if isinstance(resource, VendorIntegration):
        return settings.preset(resource.spec.environment).resources
    return settings.default_resources


def _log_level(resource: PluginResource, settings: OperatorSettings) -> str:
    if isinstance(resource, VendorIntegration):
        return settings.preset(resource.spec.environment).log_level
    return settings.default_log_level


def _probe(resource: PluginResource, *, liveness: bool) -> dict[str, Any]:
    check = resource.spec.health_check if isinstance(resource, VendorIntegration) else None
    period = check.period_seconds if check else 10
    return {
        "grpc": {
            "port": constants.PLUGIN_GRPC_PORT,
            "service": constants.LIVENESS_SERVICE if liveness else "",
        },
        "periodSeconds": period,
        "timeoutSeconds": check.timeout_seconds if check else 5,
        "failureThreshold": (check.failure_threshold if check else 3) * (2 if liveness else 1),
        **({"initialDelaySeconds": 10} if liveness else {}),
    }


def _env(resource: PluginResource, settings: OperatorSettings) -> list[dict[str, Any]]:
    """The plugin's environment: where its config and Secret are, then the spec's own."""
    return [
        {"name": "SWITCHBOARD_PLUGIN_PORT", "value": str(constants.PLUGIN_GRPC_PORT)},
        {"name": "SWITCHBOARD_PLUGIN_CONFIG", "value": constants.PLUGIN_CONFIG_PATH},
        {"name": "SWITCHBOARD_PLUGIN_SECRETS_DIR", "value": constants.PLUGIN_SECRETS_DIR},
        {"name": "SWITCHBOARD_PLUGIN_LOG_LEVEL", "value": _log_level(resource, settings)},
        {"name": "SWITCHBOARD_TENANT", "value": resource.metadata.namespace or ""},
        {
            "name": "SWITCHBOARD_RESOURCE",
            "value": f"{kind_label(resource)}/{resource.metadata.name}",
        },
        {"name": "TMPDIR", "value": "/tmp"},  # noqa: S108 - a private emptyDir
        *(e.to_wire() for e in resource.spec.env),
    ]


def _volumes(resource: PluginResource) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volume mounts, volumes): the config, a scratch /tmp, the Secret if any."""
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - a private emptyDir
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": child_name(resource)}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    if resource.spec.secret_ref is not None:
        mounts.append(
            {"name": "secrets", "mountPath": constants.PLUGIN_SECRETS_DIR, "readOnly": True}
        )
        volumes.append(
            {
                "name": "secrets",
                "secret": {"secretName": resource.spec.secret_ref.name, "defaultMode": 0o440},
            }
        )
    return mounts, volumes


def _container(
    resource: PluginResource, settings: OperatorSettings, mounts: list[dict[str, Any]]
) -> dict[str, Any]:
    """The plugin container, at the `restricted` pod security level."""
    container: dict[str, Any] = {
        "name": "plugin",
        "image": resource.spec.image,
        "ports": [
            {
                "name": constants.PLUGIN_PORT_NAME,
                "containerPort": constants.PLUGIN_GRPC_PORT,
                "protocol": "TCP",
            }
        ],
        "env": _env(resource, settings),
        "resources": _resources(resource, settings),
        "volumeMounts": mounts,
        "readinessProbe": _probe(resource, liveness=False),
        "livenessProbe": _probe(resource, liveness=True),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if resource.spec.image_pull_policy is not None:
        container["imagePullPolicy"] = resource.spec.image_pull_policy.value
    return container


def _pod_spec(resource: PluginResource, settings: OperatorSettings) -> dict[str, Any]:
    """The pod: no API token below `system`, no service links, non-root."""
    spec = resource.spec
    mounts, volumes = _volumes(resource)
    pod_spec: dict[str, Any] = {
        "serviceAccountName": spec.service_account_name or child_name(resource),
        "automountServiceAccountToken": security_level(resource) is SecurityLevel.SYSTEM,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": PLUGIN_UID,
            "runAsGroup": PLUGIN_UID,
            "fsGroup": PLUGIN_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(resource, settings, mounts)],
        "volumes": volumes,
    }
    if spec.node_selector:
        pod_spec["nodeSelector"] = spec.node_selector
    if spec.tolerations:
        pod_spec["tolerations"] = [t.to_wire() for t in spec.tolerations]
    return pod_spec


def deployment(
    resource: PluginResource, settings: OperatorSettings, inputs: Inputs
) -> dict[str, Any]:
    """The plugin's Deployment, at the `restricted` pod security level."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(resource),
        "spec": {
            "replicas": replicas(resource, settings),
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(resource)},
            # Surge before removing a pod, so a config change or a secret
            # rotation never lowers the number of ready plugin pods.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": labels(resource),
                    "annotations": {
                        constants.ANNOTATION_CONFIG_CHECKSUM: config_checksum(resource),
                        constants.ANNOTATION_SECRET_CHECKSUM: inputs.secret_checksum,
                    },
                },
                "spec": _pod_spec(resource, settings),
            },
        },
    }


_ANY_V4, _ANY_V6 = ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")
_DNS_PORTS = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def ip_blocks(cidrs: Sequence[str], forbidden: Sequence[Network]) -> list[dict[str, Any]]:
    """NetworkPolicy peers for `cidrs` (empty: every address), each with the
    forbidden ranges inside it cut out. A CIDR inside a forbidden range is
    left out entirely (the gates refuse such a resource before this runs)."""
    networks = [ipaddress.ip_network(c, strict=False) for c in cidrs] or [_ANY_V4, _ANY_V6]
    peers = []
    for network in networks:
        same_family = [f for f in forbidden if f.version == network.version]
        if any(network.subnet_of(f) for f in same_family):  # type: ignore[arg-type]
            continue
        cut = sorted(str(f) for f in same_family if f.subnet_of(network))  # type: ignore[arg-type]
        block: dict[str, Any] = {"cidr": str(network)}
        if cut:
            block["except"] = cut
        peers.append({"ipBlock": block})
    return peers


def egress_rules(
    level: SecurityLevel, declared: Sequence[EgressRule], forbidden: Sequence[Network]
) -> list[dict[str, Any]]:
    """What a plugin may reach: DNS, then the declared rules or the level's defaults.

    DNS may go to any address (node-local caches listen on link-local ones);
    everything else keeps out of `forbidden` (empty at `system`)."""
    if not declared and not forbidden and EGRESS_PORTS[level] is None:
        return [{}]  # system without a declaration: anything
    rules: list[dict[str, Any]] = [{"ports": list(_DNS_PORTS)}]
    if declared:
        for rule in declared:
            out: dict[str, Any] = {"to": ip_blocks(rule.cidrs, forbidden)}
            if rule.ports:
                out["ports"] = [{"protocol": p.protocol.value, "port": p.port} for p in rule.ports]
            if out["to"]:
                rules.append(out)
        return rules
    default: dict[str, Any] = {"to": ip_blocks([], forbidden)}
    ports = EGRESS_PORTS[level]
    if ports is not None:
        default["ports"] = [{"protocol": "TCP", "port": p} for p in ports]
    rules.append(default)
    return rules


def network_policy(resource: PluginResource, settings: OperatorSettings) -> dict[str, Any]:
    """Only the router (and the operator, for Describe) may reach a plugin;
    what a plugin may reach follows its `egress` or its security level, and
    never link-local addresses or the API server below `system`."""
    peers = [
        {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": settings.router_namespace}
            },
            "podSelector": {"matchLabels": pod_labels},
        }
        for pod_labels in (settings.router_pod_labels, settings.operator_pod_labels)
    ]
    level = security_level(resource)
    forbidden = forbidden_networks(level, settings.gate_policy())
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(resource),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(resource)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": peers,
                    "ports": [{"protocol": "TCP", "port": constants.PLUGIN_GRPC_PORT}],
                }
            ],
            "egress": egress_rules(level, resource.spec.egress, forbidden),
        },
    }


def pod_disruption_budget(
    resource: PluginResource, settings: OperatorSettings
) -> dict[str, Any] | None:
    """A PodDisruptionBudget when there is more than one pod to keep."""
    if replicas(resource, settings) <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(resource),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(resource)},
        },
    }


def children(
    resource: PluginResource, settings: OperatorSettings, inputs: Inputs
) -> list[dict[str, Any]]:
    """Every child object, in the order they should be applied."""
    objects = [
        service_account(resource) if resource.spec.service_account_name is None else None,
        config_map(resource),
        service(resource),
        network_policy(resource, settings),
        pod_disruption_budget(resource, settings),
        deployment(resource, settings, inputs),
    ]
    return [o for o in objects if o is not None]
