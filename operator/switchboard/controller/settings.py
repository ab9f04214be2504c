"""Operator settings: one documented model, loaded from `SWITCHBOARD_*` variables.

Structured values (lists, maps, presets) are JSON in their variable, e.g.
`SWITCHBOARD_ALLOWED_REGISTRIES='["ghcr.io/acme"]'`. The Helm chart renders
them from `values.yaml`.
"""

from __future__ import annotations

import socket

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from switchboard.api import constants
from switchboard.api.models import Environment


class EnvironmentPreset(BaseModel):
    """Defaults for one deployment scenario (the seed's `deployment_scenarios`)."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    replicas: int = Field(ge=0, le=100)
    """Pods per integration when `spec.replicas` is unset."""
    resources: dict[str, dict[str, str]]
    """Container resources when `spec.resources` is unset (requests and limits)."""
    log_level: str = "INFO"
    """`SWITCHBOARD_LOG_LEVEL` given to the plugin."""
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
    """Image prefixes plugins may come from, e.g. `ghcr.io/acme/`. Empty: any."""
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
    """`SWITCHBOARD_LOG_LEVEL` for CommunicationPlugins."""
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
    describe_timeout_seconds: float = 3.0
    """Timeout of the Describe call the operator makes to a ready plugin."""

    def preset(self, environment: Environment) -> EnvironmentPreset:
        return self.presets.get(environment) or _default_presets()[environment]
