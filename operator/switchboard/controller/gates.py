"""The gates: what must hold before a plugin resource may run. Pure functions.

One implementation for the operator and for local mode: each gate takes the
resource, the policy (what this installation allows) and what was observed
about the world (the referenced Secret's key names, the licence token, the
sibling integrations), and returns a `Gate`. Nothing here reads a cluster, a
file or the clock unless given one, so local mode gives the same answer, in the
same words, as the operator.

    policy = GatePolicy(allowed_registries=("ghcr.io/acme/",))
    world = Observed(secret_keys=frozenset({"TOKEN"}), siblings={...})
    result = evaluate(resource, policy, world)
    if result.passed: ...run it...
    else: result.blocking.message   # why not, for people

Gates, in the order they are reported:

- SecretsReady: the Secret named by `secretRef` exists and has every key in
  `requiredSecrets`.
- ConfigValid: the image comes from an allowed registry and, in an
  environment that requires it, is pinned by digest; the security level is
  within the namespace's ceiling; declared egress stays out of the ranges the
  level forbids.
- Licensed (VendorIntegration with `license`): the token is signed by a
  trusted key, for this vendor and namespace, and not past its grace period.
- DependenciesReady (VendorIntegration with `dependsOn`): every dependency
  exists and is Ready, and `dependsOn` forms no cycle.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from switchboard.api.constants import ConditionType, Reason
from switchboard.api.models import (
    CommunicationPlugin,
    Environment,
    SecurityLevel,
    VendorIntegration,
)
from switchboard.controller import licensing

PluginResource = CommunicationPlugin | VendorIntegration

#: Security levels from the least to the most a plugin may do.
SECURITY_ORDER: tuple[SecurityLevel, ...] = (
    SecurityLevel.MINIMAL,
    SecurityLevel.STANDARD,
    SecurityLevel.ELEVATED,
    SecurityLevel.SYSTEM,
)
#: Link-local ranges: cloud metadata services live here (169.254.169.254).
LINK_LOCAL: tuple[str, ...] = ("169.254.0.0/16", "fe80::/10")
#: Namespaces of the cluster itself: no plugin ever runs there.
SYSTEM_NAMESPACES: frozenset[str] = frozenset({"kube-system", "kube-public", "kube-node-lease"})


@dataclass(frozen=True)
class Gate:
    """The outcome of one check that must pass before the plugin runs."""

    type: ConditionType
    ok: bool
    reason: str
    message: str


@dataclass(frozen=True)
class GatePolicy:
    """What this installation allows, whatever the resource asks."""

    allowed_registries: tuple[str, ...] = ()
    """Image prefixes plugins may come from; empty: any."""
    digest_required_in: frozenset[Environment] = frozenset({Environment.PRODUCTION})
    """Environments whose images must be pinned by digest (VendorIntegrations)."""
    max_security_level: SecurityLevel | None = SecurityLevel.STANDARD
    """The highest level a namespace may run without saying more; None: no ceiling."""
    license_public_keys: tuple[str, ...] = ()
    """Ed25519 public keys (base64) whose signatures make a licence valid."""
    license_grace: datetime.timedelta = datetime.timedelta(days=7)
    """How long an expired licence keeps an integration running."""
    forbidden_egress: tuple[str, ...] = LINK_LOCAL
    """CIDRs no level below `system` may reach: link-local and the API server."""
    served_namespaces: frozenset[str] | None = None
    """Namespaces where plugins may run; None: any but the cluster's own."""


@dataclass(frozen=True)
class Sibling:
    """Another VendorIntegration in the same namespace, as far as the gates care."""

    depends_on: tuple[str, ...] = ()
    ready: bool = False


@dataclass(frozen=True)
class Observed:
    """What was looked up about the world for one resource."""

    secret_keys: frozenset[str] | None = None
    """Key names of the Secret named by `secretRef`; None when it does not exist."""
    license_token: str | None = None
    """The licence token from the licence Secret; None when there is none."""
    siblings: Mapping[str, Sibling] = field(default_factory=dict)
    """VendorIntegrations of the namespace by name (for `dependsOn`)."""
    namespace_max_security_level: SecurityLevel | None = None
    """The namespace's own ceiling (its `switchboard.dev/max-security-level` label)."""
    now: datetime.datetime | None = None
    """The time licences are checked at; None: now."""


@dataclass(frozen=True)
class GateResult:
    """Every gate that applies to a resource, in report order."""

    gates: tuple[Gate, ...]

    @property
    def passed(self) -> bool:
        return all(gate.ok for gate in self.gates)

    @property
    def blocking(self) -> Gate | None:
        """The first gate that failed: what the resource waits for."""
        return next((gate for gate in self.gates if not gate.ok), None)

    def get(self, type_: ConditionType) -> Gate | None:
        return next((gate for gate in self.gates if gate.type == type_), None)

    @property
    def unlicensed(self) -> bool:
        """A licence is required and does not allow running: stop what runs."""
        licensed = self.get(ConditionType.LICENSED)
        return licensed is not None and not licensed.ok


@dataclass(frozen=True)
class References:
    """The names a resource refers to in its namespace."""

    secrets: frozenset[str]
    depends_on: frozenset[str]


def references(resource: PluginResource) -> References:
    """Secrets (credentials and licence) and dependencies a resource names."""
    spec = resource.spec
    secrets = {spec.secret_ref.name} if spec.secret_ref is not None else set()
    depends_on: set[str] = set()
    if isinstance(resource, VendorIntegration):
        if resource.spec.license is not None:
            secrets.add(resource.spec.license.secret_name)
        depends_on = set(resource.spec.depends_on)
    return References(frozenset(secrets), frozenset(depends_on))


def security_level(resource: PluginResource) -> SecurityLevel:
    """A VendorIntegration's level; a CommunicationPlugin is always `standard`."""
    if isinstance(resource, VendorIntegration):
        return resource.spec.security_level
    return SecurityLevel.STANDARD


# --- the gates ---------------------------------------------------------------------


def secrets_gate(resource: PluginResource, secret_keys: frozenset[str] | None) -> Gate:
    spec, namespace = resource.spec, resource.metadata.namespace or ""
    if spec.secret_ref is None:
        return Gate(
            ConditionType.SECRETS_READY,
            True,
            Reason.NO_SECRETS_REQUIRED,
            "No Secret is referenced.",
        )
    name = spec.secret_ref.name
    if secret_keys is None:
        wanted = ", ".join(spec.required_secrets) or "the plugin's keys"
        return Gate(
            ConditionType.SECRETS_READY,
            False,
            Reason.SECRET_NOT_FOUND,
            f"Secret {name!r} does not exist in namespace {namespace!r}; create it with {wanted}.",
        )
    missing = sorted(set(spec.required_secrets) - secret_keys)
    if missing:
        return Gate(
            ConditionType.SECRETS_READY,
            False,
            Reason.SECRET_KEY_MISSING,
            f"Secret {name!r} lacks key(s) {', '.join(missing)} listed in requiredSecrets; "
            "add them to the Secret.",
        )
    return Gate(
        ConditionType.SECRETS_READY,
        True,
        Reason.SECRETS_FOUND,
        f"Secret {name!r} holds every required key.",
    )


def image_refusal(resource: PluginResource, policy: GatePolicy) -> Gate | None:
    """ConfigValid=False when the image is outside the allowed registries, or not
    pinned by digest where the environment requires it."""
    image = resource.spec.image
    allowed = policy.allowed_registries
    if allowed and not any(image.startswith(prefix) for prefix in allowed):
        return Gate(
            ConditionType.CONFIG_VALID,
            False,
            Reason.IMAGE_REFUSED,
            f"Image {image!r} is not from an allowed registry ({', '.join(allowed)}); "
            "use an image from one of them.",
        )
    if isinstance(resource, VendorIntegration):
        environment = resource.spec.environment
        if environment in policy.digest_required_in and "@sha256:" not in image:
            return Gate(
                ConditionType.CONFIG_VALID,
                False,
                Reason.IMAGE_REFUSED,
                f"The {environment.value} environment requires a digest-pinned image; "
                f"pin {image!r} as image@sha256:<digest>.",
            )
    return None


def namespace_refusal(resource: PluginResource, policy: GatePolicy) -> Gate | None:
    """ConfigValid=False in a namespace this installation does not serve."""
    namespace = resource.metadata.namespace or ""
    served = policy.served_namespaces
    if namespace not in SYSTEM_NAMESPACES and (served is None or namespace in served):
        return None
    where = (
        "the cluster's own namespaces never run plugins"
        if namespace in SYSTEM_NAMESPACES
        else f"this installation runs plugins only in {', '.join(sorted(served or ()))}"
    )
    return Gate(
        ConditionType.CONFIG_VALID,
        False,
        Reason.NAMESPACE_NOT_SERVED,
        f"Namespace {namespace!r} is not served: {where}; move the resource, or add the "
        "namespace to the chart's tenantNamespaces.",
    )


def security_ceiling(
    policy: GatePolicy, namespace_level: SecurityLevel | None
) -> SecurityLevel | None:
    """The highest level a namespace may run: its own label, else the policy's."""
    return namespace_level if namespace_level is not None else policy.max_security_level


def security_refusal(
    resource: PluginResource, policy: GatePolicy, namespace_level: SecurityLevel | None
) -> Gate | None:
    """ConfigValid=False when the security level is above what the namespace allows."""
    level, ceiling = security_level(resource), security_ceiling(policy, namespace_level)
    if ceiling is None or SECURITY_ORDER.index(level) <= SECURITY_ORDER.index(ceiling):
        return None
    namespace = resource.metadata.namespace or ""
    return Gate(
        ConditionType.CONFIG_VALID,
        False,
        Reason.SECURITY_LEVEL_REFUSED,
        f"securityLevel {level.value!r} is above what namespace {namespace!r} allows "
        f"({ceiling.value}); declare the egress it needs at a lower level, or ask a "
        f"platform admin to label the namespace switchboard.dev/max-security-level={level.value}.",
    )


def forbidden_networks(
    level: SecurityLevel, policy: GatePolicy
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The ranges a plugin at `level` may never reach (none at `system`)."""
    if level is SecurityLevel.SYSTEM:
        return ()
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in policy.forbidden_egress)


def egress_refusal(resource: PluginResource, policy: GatePolicy) -> Gate | None:
    """ConfigValid=False when a declared CIDR lies inside a forbidden range."""
    forbidden = forbidden_networks(security_level(resource), policy)
    for rule in resource.spec.egress:
        for cidr in rule.cidrs:
            network = ipaddress.ip_network(cidr, strict=False)
            inside = next(
                (f for f in forbidden if f.version == network.version and network.subnet_of(f)),  # type: ignore[arg-type]
                None,
            )
            if inside is not None:
                return Gate(
                    ConditionType.CONFIG_VALID,
                    False,
                    Reason.EGRESS_REFUSED,
                    f"egress to {cidr} is inside {inside}, which only securityLevel system "
                    "may reach (link-local and the API server); remove it.",
                )
    return None


def license_gate(
    resource: PluginResource,
    token: str | None,
    policy: GatePolicy,
    now: datetime.datetime | None = None,
) -> Gate | None:
    """Licensed, for a VendorIntegration that names a licence; None otherwise."""
    if not isinstance(resource, VendorIntegration) or resource.spec.license is None:
        return None
    ref, namespace = resource.spec.license, resource.metadata.namespace or ""
    if token is None:
        return Gate(
            ConditionType.LICENSED,
            False,
            Reason.LICENSE_INVALID,
            f"Secret {ref.secret_name!r} has no key {ref.key!r} holding the licence; add it.",
        )
    check = licensing.verify(
        token,
        plugin=resource.spec.vendor,
        namespace=namespace,
        public_keys=list(policy.license_public_keys),
        grace=policy.license_grace,
        now=now,
    )
    reason = {
        licensing.Verdict.VALID: Reason.LICENSE_VALID,
        licensing.Verdict.IN_GRACE: Reason.LICENSE_IN_GRACE,
        licensing.Verdict.EXPIRED: Reason.LICENSE_EXPIRED,
        licensing.Verdict.INVALID: Reason.LICENSE_INVALID,
    }[check.verdict]
    message = check.message[0].upper() + check.message[1:] + "."
    return Gate(ConditionType.LICENSED, check.allows_running, reason, message)


def find_cycle(graph: Mapping[str, Iterable[str]], start: str) -> list[str] | None:
    """A dependency cycle through `start`, as [start, ..., start], if there is one."""
    path: list[str] = []

    def visit(node: str, seen: set[str]) -> list[str] | None:
        path.append(node)
        for nxt in graph.get(node, ()):
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


def dependencies_gate(resource: PluginResource, siblings: Mapping[str, Sibling]) -> Gate | None:
    """DependenciesReady, for a VendorIntegration with `dependsOn`; None otherwise."""
    if not isinstance(resource, VendorIntegration) or not resource.spec.depends_on:
        return None
    name = resource.metadata.name
    graph: dict[str, Iterable[str]] = {n: s.depends_on for n, s in siblings.items()}
    graph[name] = resource.spec.depends_on
    cycle = find_cycle(graph, name)
    if cycle:
        return Gate(
            ConditionType.DEPENDENCIES_READY,
            False,
            Reason.DEPENDENCY_CYCLE,
            f"dependsOn forms a cycle: {' → '.join(cycle)}; remove one of these dependencies.",
        )
    for dependency in resource.spec.depends_on:
        sibling = siblings.get(dependency)
        if sibling is None:
            return Gate(
                ConditionType.DEPENDENCIES_READY,
                False,
                Reason.WAITING_FOR_DEPENDENCY,
                f"Waiting for VendorIntegration {dependency!r}, which does not exist yet.",
            )
        if not sibling.ready:
            return Gate(
                ConditionType.DEPENDENCIES_READY,
                False,
                Reason.WAITING_FOR_DEPENDENCY,
                f"Waiting for VendorIntegration {dependency!r} to become Ready.",
            )
    return Gate(
        ConditionType.DEPENDENCIES_READY,
        True,
        Reason.DEPENDENCIES_MET,
        f"Every dependency is Ready: {', '.join(resource.spec.depends_on)}.",
    )


def evaluate(resource: PluginResource, policy: GatePolicy, world: Observed) -> GateResult:
    """Every gate that applies to `resource`, in report order."""
    config_refusal = (
        namespace_refusal(resource, policy)
        or image_refusal(resource, policy)
        or security_refusal(resource, policy, world.namespace_max_security_level)
        or egress_refusal(resource, policy)
    )
    gates = (
        secrets_gate(resource, world.secret_keys),
        config_refusal,
        license_gate(resource, world.license_token, policy, world.now),
        dependencies_gate(resource, world.siblings),
    )
    return GateResult(tuple(gate for gate in gates if gate is not None))
