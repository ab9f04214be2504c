"""Pydantic models of the two custom resources: the single source of truth.

`crds/*.yaml` is generated from these classes (see `crdgen`), local mode
validates resource YAML with them, and the operator and router read resources
through them. A field's docstring becomes its `kubectl explain` description.

Rules that one field cannot express alone are `CrossFieldRule`s: the same rule
is a CEL expression in the CRD (so the API server enforces it) and a Python
predicate here (so local mode gives the same answer without a cluster).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from switchboard.api import constants

# --- Patterns shared by fields -------------------------------------------------

#: A DNS-1123 label: what Kubernetes accepts as the name of most objects.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: A DNS-1123 subdomain: Secret and ServiceAccount names.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
#: A plugin resource's name: a DNS label that starts with a letter, as Service names must.
RESOURCE_NAME = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
#: Longest resource name: child objects append a suffix of up to 12 characters
#: and must stay within the 63 characters of a DNS label.
MAX_NAME_LENGTH = 50
#: A key of a Secret's data: what Kubernetes accepts as a file name in a Secret volume.
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"
#: A container image reference: [registry[:port]/]path[:tag][@sha256:digest].
IMAGE_REFERENCE = (
    r"^([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(:[0-9]+)?/)?"
    r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*"
    r"(:[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127})?"
    r"(@sha256:[a-f0-9]{64})?$"
)
#: A routing key such as `sms`, `email` or `push_notification`.
CHANNEL_TYPE = r"^[a-z][a-z0-9_-]*$"
#: A capability or permission name such as `delivery_receipts` or `network.fiber.manage`.
DOTTED_NAME = r"^[a-z0-9]+([._:-][a-z0-9]+)*$"
#: A Go-style duration made of hours, minutes, seconds or milliseconds: `500ms`, `1m30s`, `24h`.
DURATION = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
#: An environment variable name as Kubernetes accepts it.
ENV_VAR_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
#: A resource quantity such as `100m`, `128Mi` or `1`.
QUANTITY = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
#: An IPv4 or IPv6 CIDR such as `10.0.5.0/24` or `2001:db8::/64` (checked fully in Python).
CIDR = r"^[0-9a-fA-F:.]+/[0-9]{1,3}$"
#: A condition reason: one CamelCase word.
CONDITION_REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_DURATION_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `10s`, `500ms`, `1m30s` or `24h` (the `DURATION` pattern)."""
    if not re.fullmatch(DURATION, text):
        raise ValueError(f"{text!r} is not a duration such as 500ms, 10s, 1m30s or 24h")
    return sum(
        float(value) * _DURATION_UNIT_SECONDS[unit] for value, unit in _DURATION_PART.findall(text)
    )


def _unique(items: list[str]) -> list[str]:
    seen: set[str] = set()
    for index, item in enumerate(items):
        if item in seen:
            raise ValueError(f"duplicate value {item!r} at index {index}")
        seen.add(item)
    return items


def _set(max_items: int) -> Any:
    """A list whose items are unique and unordered (`x-kubernetes-list-type: set`)."""
    return (
        Field(json_schema_extra={"x-kubernetes-list-type": "set", "maxItems": max_items}),
        AfterValidator(_unique),
    )


def _quantity(text: str) -> str:
    if not re.fullmatch(QUANTITY, text):
        raise ValueError(f"{text!r} is not a quantity such as 500m, 1 or 256Mi")
    return text


class _Model(BaseModel):
    """Base of every API model: camelCase on the wire, docstrings as descriptions."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="forbid",
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as Kubernetes stores it: camelCase keys, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


@dataclass(frozen=True)
class CrossFieldRule:
    """A rule over several fields, enforced both by the API server and locally.

    `cel` is evaluated by the API server on the object the rule is attached to
    (`self`); `holds` is the same rule in Python on the pydantic model.
    """

    cel: str
    message: str
    field_path: str
    holds: Callable[[Any], bool]

    def as_validation(self) -> dict[str, str]:
        return {"rule": self.cel, "message": self.message, "fieldPath": self.field_path}


def _check_rules(model: Any, rules: tuple[CrossFieldRule, ...]) -> None:
    broken = [
        f"{rule.field_path.lstrip('.')}: {rule.message}" for rule in rules if not rule.holds(model)
    ]
    if broken:
        raise ValueError("; ".join(broken))


# --- Shared workload fields ----------------------------------------------------


class SecretReference(_Model):
    """A Secret in the resource's own namespace."""

    name: Annotated[str, Field(pattern=DNS_SUBDOMAIN, min_length=1, max_length=253)]
    """Name of the Secret. Its keys are mounted read-only as files in the plugin's
    container; `${KEY}` in `config` is resolved from them inside the pod."""


class EnvVar(_Model):
    """A plain environment variable for the plugin container.

    Credentials never go here: put them in the Secret named by `secretRef`.
    """

    name: Annotated[str, Field(pattern=ENV_VAR_NAME, min_length=1, max_length=256)]
    """Variable name."""
    value: Annotated[str, Field(max_length=32768)] = ""
    """Variable value."""


Quantity = Annotated[
    int | Annotated[str, AfterValidator(_quantity)],
    Field(
        json_schema_extra={
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY,
        }
    ),
]


class ResourceRequirements(_Model):
    """Compute resources of the plugin container, as in a Pod spec."""

    limits: dict[str, Quantity] | None = None
    """Maximum resources, e.g. `{cpu: 500m, memory: 256Mi}`."""
    requests: dict[str, Quantity] | None = None
    """Resources the scheduler reserves, e.g. `{cpu: 50m, memory: 64Mi}`."""


class TolerationOperator(StrEnum):
    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(_Model):
    """A toleration, as in a Pod spec, letting plugin pods run on tainted nodes."""

    key: Annotated[str, Field(max_length=316)] | None = None
    """Taint key the toleration applies to; empty with operator Exists matches every key."""
    operator: TolerationOperator | None = None
    """`Equal` (default) or `Exists`."""
    value: Annotated[str, Field(max_length=63)] | None = None
    """Taint value to match with operator `Equal`."""
    effect: TaintEffect | None = None
    """Taint effect to match; empty matches all effects."""
    toleration_seconds: int | None = None
    """How long a pod stays bound to a node with a NoExecute taint."""


class ImagePullPolicy(StrEnum):
    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


class NetworkProtocol(StrEnum):
    TCP = "TCP"
    UDP = "UDP"


class EgressPort(_Model):
    """A destination port a plugin may reach."""

    port: Annotated[int, Field(ge=1, le=65535)]
    """Port number, e.g. 5432 for PostgreSQL or 55555 for VOLTHA."""
    protocol: NetworkProtocol = NetworkProtocol.TCP
    """`TCP` or `UDP`."""


def _cidr(text: str) -> str:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError as error:
        raise ValueError(f"{text!r} is not a CIDR such as 10.0.5.0/24 or 2001:db8::/64") from error
    return text


class EgressRule(_Model):
    """Destinations a plugin may reach: addresses and ports, as in a NetworkPolicy."""

    cidrs: Annotated[
        list[
            Annotated[
                str,
                Field(
                    pattern=CIDR,
                    max_length=43,
                    json_schema_extra={
                        "x-kubernetes-validations": [
                            {
                                "rule": "isCIDR(self)",
                                "message": "must be a CIDR such as 10.0.5.0/24",
                            }
                        ]
                    },
                ),
                AfterValidator(_cidr),
            ]
        ],
        *_set(32),
    ] = Field(default_factory=list)
    """Address ranges, e.g. `10.0.5.0/24`. Empty: any address, except link-local
    (cloud metadata) and the API server below securityLevel `system`."""
    ports: Annotated[list[EgressPort], Field(json_schema_extra={"maxItems": 32})] = Field(
        default_factory=list
    )
    """Ports on those addresses. Empty: every port."""


class WorkloadSpec(_Model):
    """Fields shared by both kinds: what runs, with which settings and credentials."""

    image: Annotated[str, Field(pattern=IMAGE_REFERENCE, min_length=1, max_length=512)]
    """Container image of the plugin, e.g. `ghcr.io/acme/twilio-sms:1.2.0`. A
    digest-pinned reference (`...@sha256:<64 hex>`) is preferred and is required
    by the production environment's image policy."""
    image_pull_policy: ImagePullPolicy | None = None
    """When the kubelet pulls the image; Kubernetes' default applies when unset."""
    replicas: Annotated[int, Field(ge=0, le=100)] | None = None
    """Number of plugin pods. Unset: 1 for a CommunicationPlugin, the environment
    preset's count for a VendorIntegration. 0 stops the plugin but keeps its
    objects."""
    resources: ResourceRequirements | None = None
    """CPU and memory for the plugin container. Unset: the operator's default,
    or the environment preset's for a VendorIntegration."""
    config: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Non-secret settings of the plugin, checked against the JSON Schema in the
    plugin's manifest. A string value `${KEY}` is replaced inside the pod with
    key KEY of the Secret named by `secretRef`; the operator never reads it."""
    secret_ref: SecretReference | None = None
    """The Secret holding the plugin's credentials, mounted read-only as files."""
    required_secrets: Annotated[
        list[Annotated[str, Field(pattern=SECRET_KEY, max_length=253)]],
        *_set(64),
    ] = Field(default_factory=list)
    """Keys that must exist in the Secret named by `secretRef` before the plugin is
    deployed. Until they do, condition SecretsReady is False and nothing runs."""
    env: Annotated[list[EnvVar], Field(json_schema_extra={"maxItems": 64})] = Field(
        default_factory=list
    )
    """Extra environment variables for the plugin container (never credentials)."""
    service_account_name: (
        Annotated[str, Field(pattern=DNS_SUBDOMAIN, min_length=1, max_length=253)] | None
    ) = None
    """ServiceAccount the plugin pods run as. Unset: one made for this resource,
    without an API token mounted."""
    node_selector: dict[str, str] | None = None
    """Node labels that plugin pods must be scheduled onto."""
    tolerations: Annotated[list[Toleration], Field(json_schema_extra={"maxItems": 32})] = Field(
        default_factory=list
    )
    """Taints that plugin pods tolerate."""
    egress: Annotated[list[EgressRule], Field(json_schema_extra={"maxItems": 16})] = Field(
        default_factory=list
    )
    """Where the plugin may connect besides DNS. Set: exactly these rules, at
    every security level (e.g. `[{ports: [{port: 5432}]}]` for a PostgreSQL
    database). Unset: what the security level allows (see `securityLevel`).
    Link-local addresses (cloud metadata) and the API server stay out of reach
    below securityLevel `system`."""


_REQUIRED_SECRETS_NEED_SECRET_REF = CrossFieldRule(
    cel="!has(self.requiredSecrets) || size(self.requiredSecrets) == 0 || has(self.secretRef)",
    message="requiredSecrets needs secretRef: name the Secret that holds these keys",
    field_path=".requiredSecrets",
    holds=lambda spec: not spec.required_secrets or spec.secret_ref is not None,
)


# --- CommunicationPlugin -------------------------------------------------------


class DeliveryPolicy(StrEnum):
    """What the router does when an attempt may have reached the provider."""

    AT_LEAST_ONCE = "AtLeastOnce"
    AT_MOST_ONCE = "AtMostOnce"


class ReceiptFallback(_Model):
    """Send the message again when the provider reports that delivery failed."""

    window: Annotated[str, Field(pattern=DURATION, max_length=32)] = "1h"
    """How long after sending a failed-delivery receipt still triggers the fallback."""
    channel_type: Annotated[str | None, Field(pattern=CHANNEL_TYPE, max_length=63)] = None
    """Channel to send through instead (e.g. `sms` for a `whatsapp` message); unset:
    the next plugin of this channel."""


class CommunicationPluginSpec(WorkloadSpec):
    """Desired state of a CommunicationPlugin: one provider for one channel type."""

    cross_field_rules: ClassVar[tuple[CrossFieldRule, ...]] = (_REQUIRED_SECRETS_NEED_SECRET_REF,)

    channel_type: Annotated[str, Field(pattern=CHANNEL_TYPE, min_length=1, max_length=63)]
    """Routing key: `send_message(channel_type, ...)` reaches the plugins of this
    type in the caller's namespace, e.g. `email`, `sms`, `slack`."""
    priority: Annotated[int, Field(ge=1, le=1000)] = 1
    """Order of preference within the channel type: 1 is tried first, 2 when every
    priority-1 plugin has failed, and so on."""
    weight: Annotated[int, Field(ge=0, le=1000)] = 100
    """Share of traffic among plugins of the same priority (A/B split). 0 takes
    traffic only when every other plugin of its priority is unavailable."""
    enabled: bool = True
    """Whether the router sends to this plugin. A disabled plugin keeps running."""
    capabilities: Annotated[
        list[Annotated[str, Field(pattern=DOTTED_NAME, max_length=63)]],
        *_set(32),
    ] = Field(default_factory=list)
    """Capabilities a caller may require, e.g. `html`, `delivery_receipts`. The
    running plugin's own report is in `status.plugin.capabilities`."""
    send_timeout: Annotated[str, Field(pattern=DURATION, max_length=32)] = "10s"
    """Longest the router waits for one send attempt to this plugin before it
    tries the next one, e.g. `10s` or `500ms`."""
    delivery: DeliveryPolicy = DeliveryPolicy.AT_LEAST_ONCE
    """When an attempt may have reached the provider (the plugin died or timed out
    after sending): `AtLeastOnce` sends it through the next plugin and flags the
    message as a possible duplicate; `AtMostOnce` stops and records its outcome as
    `unknown`. The default favours delivery: a repeated notification is a nuisance,
    a lost one may be an outage. Plugins of one channel type should agree; if they
    do not, `AtMostOnce` wins."""
    max_delivery_time: Annotated[str, Field(pattern=DURATION, max_length=32)] = "24h"
    """How long the router keeps retrying an asynchronous message on this channel
    (with exponential back-off) before it gives up and marks it `expired`."""
    receipt_fallback: ReceiptFallback | None = None
    """Opt-in: when this plugin's provider reports a failed delivery, send the
    message again through the channel's next plugin or another channel."""

    @model_validator(mode="after")
    def _cross_field(self) -> CommunicationPluginSpec:
        _check_rules(self, self.cross_field_rules)
        return self


# --- VendorIntegration ---------------------------------------------------------


class IntegrationType(StrEnum):
    NETWORK_AUTOMATION = "network_automation"
    MONITORING = "monitoring"
    ANALYTICS = "analytics"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


class SecurityLevel(StrEnum):
    MINIMAL = "minimal"
    STANDARD = "standard"
    ELEVATED = "elevated"
    SYSTEM = "system"


class LicenseReference(_Model):
    """Where the signed licence of a commercial integration is kept."""

    secret_name: Annotated[str, Field(pattern=DNS_SUBDOMAIN, min_length=1, max_length=253)]
    """Secret in the resource's namespace that holds the licence."""
    key: Annotated[str, Field(pattern=SECRET_KEY, max_length=253)] = "license"
    """Key of the Secret holding the licence token."""


class HealthCheck(_Model):
    """How the integration's health is probed over gRPC health checking."""

    period_seconds: Annotated[int, Field(ge=1, le=3600)] = 10
    """Seconds between probes."""
    timeout_seconds: Annotated[int, Field(ge=1, le=600)] = 5
    """Seconds after which one probe counts as failed."""
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = 3
    """Consecutive failed probes before the pod is marked unready."""


class VendorIntegrationSpec(WorkloadSpec):
    """Desired state of a VendorIntegration: one vendor system behind named operations."""

    cross_field_rules: ClassVar[tuple[CrossFieldRule, ...]] = (_REQUIRED_SECRETS_NEED_SECRET_REF,)

    vendor: Annotated[str, Field(pattern=CHANNEL_TYPE, min_length=1, max_length=63)]
    """Vendor system this integration talks to, e.g. `voltha`."""
    integration_type: IntegrationType
    """What kind of integration this is: `network_automation`, `monitoring` or `analytics`."""
    environment: Environment = Environment.DEVELOPMENT
    """Deployment scenario preset: sets default replicas, resources, log level and
    image policy from the operator's settings."""
    permissions: Annotated[
        list[Annotated[str, Field(pattern=DOTTED_NAME, max_length=128)]],
        *_set(32),
    ] = Field(default_factory=list)
    """Permissions a caller must hold to invoke this integration, e.g.
    `network.fiber.manage`; checked by the router."""
    security_level: SecurityLevel = SecurityLevel.STANDARD
    """What the plugin pods may reach when `egress` is unset: `minimal` DNS and
    port 443; `standard` (also every CommunicationPlugin) DNS and ports 443, 80,
    25, 465 and 587; `elevated` any port. Below `system`, link-local addresses
    (cloud metadata) and the API server are never reachable, even through
    `egress`. `system` also mounts an API token and reaches anything. A level
    above `standard` needs the namespace label
    `switchboard.dev/max-security-level` (or the admission policy's `use`
    permission on `securitylevels.switchboard.dev`)."""
    license: LicenseReference | None = None
    """A signed licence for a commercial integration; condition Licensed reports
    whether it is valid."""
    depends_on: Annotated[
        list[Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]],
        *_set(32),
    ] = Field(default_factory=list)
    """Other VendorIntegrations in this namespace that must be Ready before this
    one is deployed."""
    health_check: HealthCheck = Field(default_factory=HealthCheck)
    """Probe timing for the integration's pods."""

    @model_validator(mode="after")
    def _cross_field(self) -> VendorIntegrationSpec:
        _check_rules(self, self.cross_field_rules)
        return self


# --- Status ----------------------------------------------------------------------


class Condition(_Model):
    """One aspect of the resource's state, in the Kubernetes API convention."""

    type: Annotated[str, Field(pattern=r"^[A-Z][A-Za-z0-9]*$", max_length=316)]
    """Condition type, e.g. Ready, Progressing, Degraded, SecretsReady."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: Annotated[str, Field(pattern=CONDITION_REASON, min_length=1, max_length=1024)]
    """One CamelCase word saying why."""
    message: Annotated[str, Field(max_length=32768)] = ""
    """What happened and what to do about it, for people."""
    last_transition_time: str | None = Field(
        default=None, json_schema_extra={"format": "date-time"}
    )
    """When the status last changed."""
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The metadata.generation this condition was computed from."""


class ReportedPlugin(_Model):
    """What the running plugin says about itself through Describe."""

    name: str | None = None
    """Plugin name from its manifest."""
    version: str | None = None
    """Plugin version."""
    capabilities: list[str] = Field(default_factory=list)
    """Capabilities the plugin implements."""
    operations: list[str] = Field(default_factory=list)
    """Operations the plugin accepts through Invoke."""
    operation_permissions: dict[str, str] = Field(default_factory=dict)
    """The permission each operation needs beyond the resource's `permissions`
    (the plugin manifest's `operation_permissions`); the router checks it."""


class EndpointsStatus(_Model):
    """Plugin endpoints the router can use."""

    ready: Annotated[int, Field(ge=0)] = 0
    """Number of ready endpoints."""
    total: Annotated[int, Field(ge=0)] = 0
    """Number of endpoints, ready or not."""


class PluginStatus(_Model):
    """Observed state, written by the operator."""

    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The metadata.generation the operator last acted on."""
    conditions: Annotated[
        list[Condition],
        Field(
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "maxItems": 16,
            }
        ),
    ] = Field(default_factory=list)
    """Ready, Progressing, Degraded and the checks that gate deployment."""
    replicas: Annotated[int, Field(ge=0)] | None = None
    """Pods the plugin's Deployment has."""
    ready_replicas: Annotated[int, Field(ge=0)] | None = None
    """Pods that pass their readiness probe."""
    plugin: ReportedPlugin | None = None
    """What the running plugin reports about itself."""
    endpoints: EndpointsStatus | None = None
    """Endpoints the router can reach."""

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


# --- Whole resources ---------------------------------------------------------------


class ObjectMeta(BaseModel):
    """The part of Kubernetes object metadata Switchboard reads."""

    model_config = ConfigDict(
        extra="allow",
        populate_by_name=True,
        alias_generator=to_camel,
        use_attribute_docstrings=True,
    )

    name: Annotated[str, Field(pattern=RESOURCE_NAME, min_length=1, max_length=MAX_NAME_LENGTH)]
    """Name of the resource: starts with a letter and has at most 50 characters, so
    the names of its Service and Deployment (the name plus a suffix) are valid."""
    namespace: Annotated[str, Field(pattern=DNS_LABEL, max_length=63)] | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int | None = None
    uid: str | None = None


class _Resource(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel)

    kind_name: ClassVar[str]
    plural: ClassVar[str]
    short_names: ClassVar[tuple[str, ...]]
    root_rules: ClassVar[tuple[CrossFieldRule, ...]] = ()

    api_version: Literal["switchboard.dev/v1alpha1"] = "switchboard.dev/v1alpha1"
    kind: str
    metadata: ObjectMeta
    status: PluginStatus | None = None

    @model_validator(mode="after")
    def _cross_field(self) -> _Resource:
        _check_rules(self, self.root_rules)
        return self


class CommunicationPlugin(_Resource):
    """A provider for one communication channel (email, SMS, chat, webhook...),
    run as its own Deployment, chosen by the router by priority and weight."""

    kind_name = constants.COMMUNICATION_PLUGIN
    plural = constants.COMMUNICATION_PLUGINS
    short_names = ("cplugin", "cplugins")

    kind: Literal["CommunicationPlugin"] = "CommunicationPlugin"
    spec: CommunicationPluginSpec


class VendorIntegration(_Resource):
    """An integration with a vendor system (fiber network management, monitoring,
    analytics), run as its own Deployment and invoked through named operations."""

    kind_name = constants.VENDOR_INTEGRATION
    plural = constants.VENDOR_INTEGRATIONS
    short_names = ("vint", "vints")
    root_rules = (
        CrossFieldRule(
            cel="!has(self.spec.dependsOn) || !(self.metadata.name in self.spec.dependsOn)",
            message="dependsOn must not name the resource itself",
            field_path=".spec.dependsOn",
            holds=lambda vi: vi.metadata.name not in vi.spec.depends_on,
        ),
    )

    kind: Literal["VendorIntegration"] = "VendorIntegration"
    spec: VendorIntegrationSpec


RESOURCE_MODELS: tuple[type[CommunicationPlugin] | type[VendorIntegration], ...] = (
    CommunicationPlugin,
    VendorIntegration,
)
