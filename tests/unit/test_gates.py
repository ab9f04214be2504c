"""The gates, without a cluster: the same answers local mode and the operator give."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from switchboard.api.constants import ConditionType, Reason
from switchboard.api.models import (
    CommunicationPlugin,
    Environment,
    SecurityLevel,
    VendorIntegration,
)
from switchboard.controller import gates, licensing
from switchboard.controller.gates import GatePolicy, Observed, Sibling
from switchboard.controller.settings import OperatorSettings, admission_policy_gap
from tests.support.resources import communication_plugin, vendor_integration

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)


def _cp(**spec: Any) -> CommunicationPlugin:
    body = communication_plugin("sms", **spec)
    body["metadata"]["namespace"] = "tenant-a"
    return CommunicationPlugin.model_validate(body)


def _vi(name: str = "voltha", **spec: Any) -> VendorIntegration:
    body = vendor_integration(name, **spec)
    body["metadata"]["namespace"] = "tenant-a"
    return VendorIntegration.model_validate(body)


# --- SecretsReady ------------------------------------------------------------------


def test_no_secret_referenced_passes() -> None:
    gate = gates.secrets_gate(_cp(), None)
    assert (gate.ok, gate.reason) == (True, Reason.NO_SECRETS_REQUIRED)


def test_a_missing_secret_names_it_and_the_keys_to_create() -> None:
    gate = gates.secrets_gate(
        _cp(secretRef={"name": "twilio"}, requiredSecrets=["SID", "TOKEN"]), None
    )
    assert (gate.ok, gate.reason) == (False, Reason.SECRET_NOT_FOUND)
    assert "'twilio'" in gate.message and "SID, TOKEN" in gate.message


def test_missing_keys_are_listed_and_present_ones_are_not() -> None:
    resource = _cp(secretRef={"name": "twilio"}, requiredSecrets=["SID", "TOKEN"])
    gate = gates.secrets_gate(resource, frozenset({"SID"}))
    assert (gate.ok, gate.reason) == (False, Reason.SECRET_KEY_MISSING)
    assert "TOKEN" in gate.message and "SID" not in gate.message.split("key(s)")[1]
    assert gates.secrets_gate(resource, frozenset({"SID", "TOKEN", "X"})).ok


# --- ConfigValid: images, security levels, egress ----------------------------------


def test_an_image_outside_the_allowed_registries_is_refused() -> None:
    policy = GatePolicy(allowed_registries=("ghcr.io/acme/",))
    refused = gates.image_refusal(_cp(image="docker.io/someone/sms:1"), policy)
    assert refused is not None and refused.reason == Reason.IMAGE_REFUSED
    assert "allowed registry" in refused.message and "ghcr.io/acme/" in refused.message
    assert gates.image_refusal(_cp(image="ghcr.io/acme/sms:1"), policy) is None
    assert gates.image_refusal(_cp(image="docker.io/someone/sms:1"), GatePolicy()) is None


def test_production_needs_a_digest_pinned_image() -> None:
    policy = GatePolicy()
    tagged = _vi(image="registry.test/voltha:1.0", environment="production")
    refused = gates.image_refusal(tagged, policy)
    assert refused is not None and "digest-pinned" in refused.message
    pinned = _vi(image="registry.test/voltha@sha256:" + "a" * 64, environment="production")
    assert gates.image_refusal(pinned, policy) is None
    staging = _vi(image="registry.test/voltha:1.0", environment="staging")
    assert gates.image_refusal(staging, policy) is None
    lax = GatePolicy(digest_required_in=frozenset())
    assert gates.image_refusal(tagged, lax) is None
    strict = GatePolicy(digest_required_in=frozenset({Environment.STAGING}))
    assert gates.image_refusal(staging, strict) is not None


@pytest.mark.parametrize(
    ("level", "namespace_label", "policy_max", "refused"),
    [
        ("standard", None, SecurityLevel.STANDARD, False),
        ("minimal", None, SecurityLevel.STANDARD, False),
        ("elevated", None, SecurityLevel.STANDARD, True),
        ("system", None, SecurityLevel.STANDARD, True),
        ("elevated", SecurityLevel.ELEVATED, SecurityLevel.STANDARD, False),
        ("system", SecurityLevel.ELEVATED, SecurityLevel.STANDARD, True),
        ("standard", SecurityLevel.MINIMAL, SecurityLevel.STANDARD, True),
        ("system", None, None, False),  # the admission policy decides instead
        ("system", SecurityLevel.STANDARD, None, True),  # the namespace label still holds
    ],
)
def test_the_security_level_must_be_within_the_namespace_ceiling(
    level: str,
    namespace_label: SecurityLevel | None,
    policy_max: SecurityLevel | None,
    refused: bool,
) -> None:
    gate = gates.security_refusal(
        _vi(securityLevel=level), GatePolicy(max_security_level=policy_max), namespace_label
    )
    assert (gate is not None) == refused
    if gate is not None:
        assert gate.reason == Reason.SECURITY_LEVEL_REFUSED
        assert "switchboard.dev/max-security-level" in gate.message


def test_declared_egress_into_link_local_or_the_api_server_is_refused_below_system() -> None:
    policy = GatePolicy(forbidden_egress=(*gates.LINK_LOCAL, "10.96.0.1/32"))
    metadata = [{"cidrs": ["169.254.169.254/32"], "ports": [{"port": 80}]}]
    refused = gates.egress_refusal(_vi(egress=metadata), policy)
    assert refused is not None and refused.reason == Reason.EGRESS_REFUSED
    assert "169.254.0.0/16" in refused.message
    api = gates.egress_refusal(_vi(egress=[{"cidrs": ["10.96.0.1/32"]}]), policy)
    assert api is not None
    # A range that merely contains them is narrowed by the NetworkPolicy, not refused.
    assert gates.egress_refusal(_vi(egress=[{"cidrs": ["0.0.0.0/0"]}]), policy) is None
    assert gates.egress_refusal(_vi(securityLevel="system", egress=metadata), policy) is None
    v6 = gates.egress_refusal(_vi(egress=[{"cidrs": ["fe80::1/128"]}]), policy)
    assert v6 is not None


# --- Licensed ------------------------------------------------------------------------


def _token(key: Ed25519PrivateKey, expires: datetime.datetime, vendor: str = "voltha") -> str:
    return licensing.sign(key, vendor, "tenant-a", expires)


@pytest.mark.parametrize(
    ("expires_in", "ok", "reason"),
    [
        (datetime.timedelta(days=30), True, Reason.LICENSE_VALID),
        (datetime.timedelta(hours=-2), True, Reason.LICENSE_IN_GRACE),
        (datetime.timedelta(days=-3), False, Reason.LICENSE_EXPIRED),
    ],
)
def test_licence_validity_and_grace(
    expires_in: datetime.timedelta, ok: bool, reason: Reason
) -> None:
    key = Ed25519PrivateKey.generate()
    policy = GatePolicy(
        license_public_keys=(licensing.public_key_text(key),),
        license_grace=datetime.timedelta(days=1),
    )
    resource = _vi(license={"secretName": "voltha-license"})
    gate = gates.license_gate(resource, _token(key, NOW + expires_in), policy, NOW)
    assert gate is not None and (gate.ok, gate.reason) == (ok, reason)


def test_a_forged_or_misdirected_licence_is_invalid_and_no_licence_is_none() -> None:
    trusted, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    policy = GatePolicy(license_public_keys=(licensing.public_key_text(trusted),))
    resource = _vi(license={"secretName": "voltha-license"})
    later = NOW + datetime.timedelta(days=30)
    forged = gates.license_gate(resource, _token(other, later), policy, NOW)
    assert forged is not None and forged.reason == Reason.LICENSE_INVALID
    elsewhere = gates.license_gate(resource, _token(trusted, later, "analytics"), policy, NOW)
    assert elsewhere is not None and not elsewhere.ok and "'analytics'" in elsewhere.message
    missing = gates.license_gate(resource, None, policy, NOW)
    assert missing is not None and "'voltha-license'" in missing.message
    assert gates.license_gate(_vi(), None, policy, NOW) is None


# --- DependenciesReady ---------------------------------------------------------------


def test_cycles_are_found_through_the_start_only() -> None:
    assert gates.find_cycle({"a": ["b"], "b": ["a"]}, "a") == ["a", "b", "a"]
    assert gates.find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}, "a") == ["a", "b", "c", "a"]
    assert gates.find_cycle({"a": ["b"], "b": ["c"], "c": ["b"]}, "a") is None
    assert gates.find_cycle({"a": ["b", "c"], "b": [], "c": []}, "a") is None


def test_dependencies_wait_until_every_one_exists_and_is_ready() -> None:
    resource = _vi("analytics", vendor="analytics", dependsOn=["voltha"])
    waiting = gates.dependencies_gate(resource, {})
    assert waiting is not None and waiting.reason == Reason.WAITING_FOR_DEPENDENCY
    assert "does not exist yet" in waiting.message
    not_ready = gates.dependencies_gate(resource, {"voltha": Sibling()})
    assert not_ready is not None and "to become Ready" in not_ready.message
    met = gates.dependencies_gate(resource, {"voltha": Sibling(ready=True)})
    assert met is not None and (met.ok, met.reason) == (True, Reason.DEPENDENCIES_MET)
    cycle = gates.dependencies_gate(
        _vi("alpha", dependsOn=["beta"]), {"beta": Sibling(depends_on=("alpha",), ready=True)}
    )
    assert cycle is not None and "alpha → beta → alpha" in cycle.message
    assert gates.dependencies_gate(_vi(), {}) is None


# --- all of them ---------------------------------------------------------------------


def test_evaluate_reports_every_gate_in_order_and_the_first_that_blocks() -> None:
    resource = _vi(
        secretRef={"name": "creds"},
        requiredSecrets=["TOKEN"],
        securityLevel="elevated",
        dependsOn=["base"],
    )
    result = gates.evaluate(
        resource, GatePolicy(), Observed(secret_keys=frozenset({"TOKEN"}), siblings={})
    )
    assert [g.type for g in result.gates] == [
        ConditionType.SECRETS_READY,
        ConditionType.CONFIG_VALID,
        ConditionType.DEPENDENCIES_READY,
    ]
    assert not result.passed
    assert result.blocking is not None and result.blocking.reason == Reason.SECURITY_LEVEL_REFUSED
    allowed = gates.evaluate(
        resource,
        GatePolicy(),
        Observed(
            secret_keys=frozenset({"TOKEN"}),
            siblings={"base": Sibling(ready=True)},
            namespace_max_security_level=SecurityLevel.ELEVATED,
        ),
    )
    assert allowed.passed and allowed.blocking is None


def test_references_name_credentials_licence_and_dependencies() -> None:
    refs = gates.references(
        _vi(
            secretRef={"name": "creds"},
            license={"secretName": "lic"},
            dependsOn=["a", "b"],
        )
    )
    assert refs.secrets == {"creds", "lic"} and refs.depends_on == {"a", "b"}
    assert gates.references(_cp()).secrets == frozenset()


def test_plugins_never_run_in_the_clusters_own_namespaces_nor_outside_the_served_ones() -> None:
    body = communication_plugin("sms")
    body["metadata"]["namespace"] = "kube-system"
    system = gates.namespace_refusal(CommunicationPlugin.model_validate(body), GatePolicy())
    assert system is not None and system.reason == Reason.NAMESPACE_NOT_SERVED
    served = GatePolicy(served_namespaces=frozenset({"tenant-b"}))
    elsewhere = gates.namespace_refusal(_cp(), served)
    assert elsewhere is not None and "tenant-b" in elsewhere.message
    assert gates.namespace_refusal(_cp(), GatePolicy()) is None
    assert (
        gates.namespace_refusal(_cp(), GatePolicy(served_namespaces=frozenset({"tenant-a"})))
        is None
    )


POLICY = {"spec": {"failurePolicy": "Fail"}}
BINDING = {"spec": {"policyName": "who-may-run-what", "validationActions": ["Deny"]}}


@pytest.mark.parametrize(
    ("policy", "binding", "gap"),
    [
        (POLICY, BINDING, None),
        (None, BINDING, "ValidatingAdmissionPolicy who-may-run-what does not exist"),
        (POLICY, None, "ValidatingAdmissionPolicyBinding who-may-run-what does not exist"),
        ({"spec": {"failurePolicy": "Ignore"}}, BINDING, "admits what it cannot evaluate"),
        (POLICY, {"spec": {**BINDING["spec"], "validationActions": ["Warn", "Audit"]}}, "not deny"),
        (POLICY, {"spec": {**BINDING["spec"], "policyName": "other"}}, "binds another policy"),
    ],
)
def test_the_admission_policy_is_trusted_only_while_it_denies(
    policy: dict[str, Any] | None, binding: dict[str, Any] | None, gap: str | None
) -> None:
    found = admission_policy_gap("who-may-run-what", policy, binding)
    assert found == gap if gap is None else (found is not None and gap in found)


def test_registries_and_levels_are_left_to_the_policy_only_while_it_is_in_force() -> None:
    settings = OperatorSettings(
        admission_policy="who-may-run-what", allowed_registries=["ghcr.io/acme/"]
    )
    trusted, alone = settings.gate_policy(True), settings.gate_policy()
    assert (trusted.allowed_registries, trusted.max_security_level) == ((), None)
    assert (alone.allowed_registries, alone.max_security_level) == (("ghcr.io/acme/",), "standard")
