"""The contract's names: API group, kinds, labels, annotations, conditions.

Every other module takes these names from here. The router finds plugin pods
by these labels, the operator writes them, and the CRDs are generated with
them, so a rename happens in exactly one place.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

GROUP: Final = "switchboard.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
CATEGORY: Final = "switchboard"

COMMUNICATION_PLUGIN: Final = "CommunicationPlugin"
COMMUNICATION_PLUGINS: Final = "communicationplugins"
VENDOR_INTEGRATION: Final = "VendorIntegration"
VENDOR_INTEGRATIONS: Final = "vendorintegrations"

#: Prefix of every label and annotation Switchboard writes.
PREFIX: Final = GROUP

# Labels on every child object and plugin pod. The router selects by these.
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_KIND: Final = f"{PREFIX}/kind"
LABEL_PLUGIN: Final = f"{PREFIX}/plugin"
LABEL_CHANNEL_TYPE: Final = f"{PREFIX}/channel-type"
LABEL_VENDOR: Final = f"{PREFIX}/vendor"
MANAGED_BY: Final = "switchboard-operator"
#: The label selector of everything the operator makes (children, and so their pods).
MANAGED_SELECTOR: Final = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
COMPONENT_PLUGIN: Final = "plugin"
COMPONENT_ROUTER: Final = "router"

# Annotations.
ANNOTATION_CONFIG_CHECKSUM: Final = f"{PREFIX}/config-checksum"
ANNOTATION_SECRET_CHECKSUM: Final = f"{PREFIX}/secret-checksum"
#: kopf keeps its progress and last-handled state under this prefix.
ANNOTATION_KOPF_PREFIX: Final = PREFIX
#: Namespace label: the highest securityLevel resources in the namespace may ask
#: for (minimal, standard, elevated or system). Set by whoever may label namespaces.
LABEL_MAX_SECURITY_LEVEL: Final = f"{PREFIX}/max-security-level"


def kind_label(kind: str) -> str:
    """Value of LABEL_KIND for a kind: `CommunicationPlugin` → `communicationplugin`."""
    return kind.lower()


#: What a caller's idempotency key may hold: printable ASCII without space, quote
#: or backslash, so that it fits in any provider header (the IETF Idempotency-Key
#: header is a structured-field string) without escaping.
IDEMPOTENCY_KEY_PATTERN: Final = r"^[!#-\[\]-~]{1,255}$"
#: A message's metadata key: a word plugins recognise (`notify_type`, `header.X-Tag`).
METADATA_KEY_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
#: Characters a metadata value may not hold: control characters other than tab
#: and newline (a CR or NUL would break the provider request built from it).
METADATA_VALUE_FORBIDDEN: Final = r"[\x00-\x08\x0b-\x1f\x7f]"

#: The gRPC port every plugin container listens on.
PLUGIN_GRPC_PORT: Final = 50051
PLUGIN_PORT_NAME: Final = "grpc"
#: The grpc.health.v1 service name a plugin's liveness probe asks: the process is
#: alive, whether or not its provider is reachable (that is readiness, service "").
LIVENESS_SERVICE: Final = "switchboard.plugin.v1.Liveness"
#: Where the operator mounts a plugin's rendered config and its Secret.
PLUGIN_CONFIG_PATH: Final = "/etc/switchboard/config/config.json"
PLUGIN_SECRETS_DIR: Final = "/etc/switchboard/secrets"


class ConditionType(StrEnum):
    """Condition types, adjectives in the Kubernetes API convention."""

    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    CONFIG_VALID = "ConfigValid"
    SECRETS_READY = "SecretsReady"
    LICENSED = "Licensed"
    DEPENDENCIES_READY = "DependenciesReady"
    #: kstatus' abnormal-true pair, read by Flux and cli-utils: mirrors
    #: Progressing, and says when progress needs a person.
    RECONCILING = "Reconciling"
    STALLED = "Stalled"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Reason(StrEnum):
    """Condition reasons: one CamelCase word each."""

    RECONCILING = "Reconciling"
    DEPLOYED = "Deployed"
    AVAILABLE = "Available"
    PODS_NOT_READY = "PodsNotReady"
    PODS_UNAVAILABLE = "PodsUnavailable"
    ROLLING_OUT = "RollingOut"
    SECRET_NOT_FOUND = "SecretNotFound"
    SECRET_KEY_MISSING = "SecretKeyMissing"
    SECRETS_FOUND = "SecretsFound"
    NO_SECRETS_REQUIRED = "NoSecretsRequired"
    CONFIG_ACCEPTED = "ConfigAccepted"
    CONFIG_REJECTED = "ConfigRejected"
    IMAGE_REFUSED = "ImageRefused"
    SECURITY_LEVEL_REFUSED = "SecurityLevelRefused"
    EGRESS_REFUSED = "EgressRefused"
    NAMESPACE_NOT_SERVED = "NamespaceNotServed"
    APPLY_FAILED = "ApplyFailed"
    RECONCILE_FAILED = "ReconcileFailed"
    LICENSE_VALID = "LicenseValid"
    LICENSE_IN_GRACE = "LicenseInGracePeriod"
    LICENSE_EXPIRED = "LicenseExpired"
    LICENSE_INVALID = "LicenseInvalid"
    WAITING_FOR_DEPENDENCY = "WaitingForDependency"
    DEPENDENCY_CYCLE = "DependencyCycle"
    DEPENDENCIES_MET = "DependenciesMet"
