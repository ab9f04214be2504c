"""Operator settings: one documented model, loaded from `SWITCHBOARD_*` variables.

Structured values (lists, maps, presets) are JSON in their variable, e.g.
`SWITCHBOARD_ALLOWED_REGISTRIES='["ghcr.io/acme"]'`. The Helm chart renders
them from `values.yaml`.
"""

from __future__ import annotations

import datetime
import socket
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from switchboard.api import constants
from switchboard.api.models import Environment, SecurityLevel
from switchboard.controller.gates import LINK_LOCAL, GatePolicy


class EnvironmentPreset(BaseModel):
    """Defaults for one deployment scenario (the seed's `deployment_scenarios`)."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    replicas: int = Field(ge=0, le=100)
    """Pods per integration when `spec.replicas` is unset."""
    resources: dict[str, dict[str, str]]
    """Container resources when `spec.resources` is unset (requests and limits)."""
    log_level: str = "INFO"
    """`SWITCHBOARD_PLUGIN_LOG_LEVEL` given to the plugin."""
    require_digest: bool = False
    """Refuse images that are not pinned by digest (`@sha256:...`)."""


def _default_presets() -> dict[Environment, EnvironmentPreset]:
    small = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
    large = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    return {
        Environment.DEVELOPMENT: EnvironmentPreset(replicas=1, resources=small, log_level="DEBUG"),
        Environment.STAGING: EnvironmentPreset(replicas=2, resources=small),
        Environment.PRODUCTION: EnvironmentPreset(replicas=3, resources=large, require_digest=True),
    }


class OperatorSettings(BaseSettings):
    """Everything the operator can be told, with its unit, default and reason."""

    model_config = SettingsConfigDict(
        env_prefix="SWITCHBOARD_", use_attribute_docstrings=True, extra="ignore"
    )

    namespace: str | None = None
    """Watch only this namespace (a namespaced install). Unset: every namespace."""
    tenant_namespaces: list[str] = Field(default_factory=list)
    """Namespaces where plugins may run, watching every namespace: the chart
    lets the operator write children only there. A resource elsewhere gets
    ConfigValid=False, reason NamespaceNotServed. Empty: any namespace but the
    cluster's own (kube-system, kube-public, kube-node-lease), which never are."""
    router_namespace: str = "switchboard-system"
    """Namespace of the router pods; the only pods a plugin's NetworkPolicy admits,
    together with the operator's own."""
    router_pod_labels: dict[str, str] = Field(
        default_factory=lambda: {
            constants.LABEL_NAME: "switchboard",
            constants.LABEL_COMPONENT: constants.COMPONENT_ROUTER,
        }
    )
    """Labels of router pods, for NetworkPolicy ingress rules."""
    operator_pod_labels: dict[str, str] = Field(
        default_factory=lambda: {
            constants.LABEL_NAME: "switchboard",
            constants.LABEL_COMPONENT: "operator",
        }
    )
    """Labels of operator pods, admitted to plugins to call Describe."""
    allowed_registries: list[str] = Field(default_factory=list)
    """Image prefixes plugins may come from, e.g. `ghcr.io/acme/`. Empty: any.
    Left to `admission_policy` while it is in force (it checks the author's `use` of a
    registry instead)."""
    max_security_level: SecurityLevel = SecurityLevel.STANDARD
    """The highest securityLevel a namespace may run unless its label
    `switchboard.dev/max-security-level` says otherwise."""
    admission_policy: str = ""
    """The name of the chart's ValidatingAdmissionPolicy (and of its binding), which
    checks, for whoever creates or updates a resource, the registry and the
    security level (and ServiceAccount and Secrets). While the policy exists and
    its binding denies, the operator no longer refuses images outside
    `allowed_registries` nor levels above `max_security_level`; when either is
    missing it refuses them itself (checked at start and at every resync). A
    namespace's own `switchboard.dev/max-security-level` label always applies.
    Empty: no policy."""
    api_server_cidrs: list[str] = Field(default_factory=list)
    """Addresses of the API server (its Service IP and endpoints), which plugin
    NetworkPolicies exclude below securityLevel `system`. The operator adds the
    addresses it finds at start (the `kubernetes` Service)."""
    presets: dict[Environment, EnvironmentPreset] = Field(default_factory=_default_presets)
    """Per-environment defaults for VendorIntegrations."""
    default_resources: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        }
    )
    """Container resources of a CommunicationPlugin whose spec sets none."""
    default_log_level: str = "INFO"
    """`SWITCHBOARD_PLUGIN_LOG_LEVEL` for CommunicationPlugins."""
    license_public_keys: list[str] = Field(default_factory=list)
    """Ed25519 public keys (base64, raw 32 bytes) that may sign licences."""
    license_grace_days: float = 7.0
    """Days after a licence's expiry during which the integration keeps running,
    with condition Licensed True and reason LicenseInGracePeriod."""
    resync_seconds: float = 60.0
    """Interval of the level-based resync that repairs anything a missed event left."""
    field_manager: str = "switchboard-operator"
    """Server-side apply field manager of every child object."""
    leader_election: bool = False
    """Hold a Lease before reconciling, so several replicas can run with one active."""
    lease_namespace: str = "switchboard-system"
    """Namespace of the leadership Lease (the operator's own namespace)."""
    lease_name: str = "switchboard-operator"
    """Name of the leadership Lease."""
    identity: str = Field(default_factory=socket.gethostname)
    """This replica's name in the Lease; the pod name in Kubernetes."""
    workers: int = Field(default=8, ge=1, le=64)
    """Reconciles that run at once (asyncio tasks). They wait on the API server,
    not on the CPU; more overlap its latency, at a little memory each."""
    describe_timeout_seconds: float = 3.0
    """Timeout of the Describe call the operator makes to a ready plugin."""
    metrics_host: str = "0.0.0.0"  # noqa: S104 - probes and scrapes come from outside the pod
    """Address `/metrics`, `/healthz` and `/readyz` are served on."""
    metrics_port: int = Field(default=8080, ge=0, le=65535)
    """Port of `/metrics`, `/healthz` and `/readyz`."""

    def preset(self, environment: Environment) -> EnvironmentPreset:
        return self.presets.get(environment) or _default_presets()[environment]

    def gate_policy(self, admission_policy_in_force: bool = False) -> GatePolicy:
        """What the gates allow, from these settings: registries and levels are left
        to the admission policy only while it is in force (`admission_policy_gap`)."""
        delegated = admission_policy_in_force
        return GatePolicy(
            allowed_registries=() if delegated else tuple(self.allowed_registries),
            digest_required_in=frozenset(
                environment
                for environment in Environment
                if self.preset(environment).require_digest
            ),
            max_security_level=None if delegated else self.max_security_level,
            license_public_keys=tuple(self.license_public_keys),
            license_grace=datetime.timedelta(days=self.license_grace_days),
            forbidden_egress=(*LINK_LOCAL, *self.api_server_cidrs),
            served_namespaces=self._served_namespaces(),
        )

    def _served_namespaces(self) -> frozenset[str] | None:
        if self.namespace:
            return frozenset({self.namespace})
        return frozenset(self.tenant_namespaces) if self.tenant_namespaces else None


def admission_policy_gap(
    name: str, policy: dict[str, Any] | None, binding: dict[str, Any] | None
) -> str | None:
    """Why the admission policy ``name`` is not in force, or None when it is.

    In force: the ValidatingAdmissionPolicy exists and fails closed, and its
    binding (same name) points at it and denies what it refuses.
    """
    if policy is None:
        return f"the ValidatingAdmissionPolicy {name} does not exist"
    if (policy.get("spec") or {}).get("failurePolicy", "Fail") != "Fail":
        return f"the ValidatingAdmissionPolicy {name} admits what it cannot evaluate"
    if binding is None:
        return f"the ValidatingAdmissionPolicyBinding {name} does not exist"
    spec = binding.get("spec") or {}
    if spec.get("policyName") != name:
        return f"the ValidatingAdmissionPolicyBinding {name} binds another policy"
    if "Deny" not in (spec.get("validationActions") or []):
        return f"the ValidatingAdmissionPolicyBinding {name} does not deny"
    return None
