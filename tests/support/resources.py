"""Valid resources to start from, and a table of invalid variations.

The same table is checked twice: against the real API server (the CRDs) and
against the pydantic models (local mode), so both reject the same mistakes
and both name the offending field.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

DELETE = object()


def communication_plugin(name: str = "sms-primary", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "switchboard.dev/v1alpha1",
        "kind": "CommunicationPlugin",
        "metadata": {"name": name},
        "spec": {
            "image": "ghcr.io/switchboard-dev/plugin-twilio-sms:0.1.0",
            "channelType": "sms",
            **spec,
        },
    }


def vendor_integration(name: str = "voltha", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "switchboard.dev/v1alpha1",
        "kind": "VendorIntegration",
        "metadata": {"name": name},
        "spec": {
            "image": "ghcr.io/switchboard-dev/plugin-voltha:0.1.0",
            "vendor": "voltha",
            "integrationType": "network_automation",
            **spec,
        },
    }


def merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`base` with `patch` merged in; a value of DELETE removes the key."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class InvalidCase:
    id: str
    resource: dict[str, Any]
    field: str
    """The field path the error message must name."""


def _cp(case_id: str, field: str, **spec: Any) -> InvalidCase:
    return InvalidCase(case_id, merged(communication_plugin(), {"spec": spec}), field)


def _vi(case_id: str, field: str, **spec: Any) -> InvalidCase:
    return InvalidCase(case_id, merged(vendor_integration(), {"spec": spec}), field)


INVALID_CASES: list[InvalidCase] = [
    InvalidCase(
        "name-starts-with-digit",
        merged(communication_plugin(), {"metadata": {"name": "1sms"}}),
        "metadata.name",
    ),
    InvalidCase(
        "name-too-long-for-children",
        merged(vendor_integration(), {"metadata": {"name": "v" * 51}}),
        "metadata.name",
    ),
    _cp("priority-zero", "spec.priority", priority=0),
    _cp("priority-not-a-number", "spec.priority", priority="high"),
    _cp("weight-above-1000", "spec.weight", weight=1001),
    _cp("weight-negative", "spec.weight", weight=-1),
    _cp("channel-type-punctuation", "spec.channelType", channelType="SMS!"),
    _cp("channel-type-missing", "spec.channelType", channelType=DELETE),
    _cp("image-missing", "spec.image", image=DELETE),
    _cp("image-malformed", "spec.image", image="Not An Image!!"),
    _cp("image-short-digest", "spec.image", image="ghcr.io/acme/sms@sha256:1234"),
    _cp("required-secrets-without-secret-ref", "spec.requiredSecrets", requiredSecrets=["TOKEN"]),
    _cp(
        "secret-key-with-slash",
        "spec.requiredSecrets[0]",
        requiredSecrets=["bad/key"],
        secretRef={"name": "creds"},
    ),
    _cp(
        "required-secrets-duplicated",
        "spec.requiredSecrets[1]",
        requiredSecrets=["TOKEN", "TOKEN"],
        secretRef={"name": "creds"},
    ),
    _cp("send-timeout-in-words", "spec.sendTimeout", sendTimeout="10 seconds"),
    _cp("enabled-not-boolean", "spec.enabled", enabled="maybe"),
    _cp("replicas-too-many", "spec.replicas", replicas=1000),
    _cp("secret-ref-name-uppercase", "spec.secretRef.name", secretRef={"name": "Bad_Name"}),
    _cp("env-name-starts-with-digit", "spec.env[0].name", env=[{"name": "1BAD", "value": "x"}]),
    _cp(
        "toleration-operator-unknown",
        "spec.tolerations[0].operator",
        tolerations=[{"key": "k", "operator": "Sometimes"}],
    ),
    _cp(
        "resource-quantity-in-words",
        "spec.resources.limits.cpu",
        resources={"limits": {"cpu": "lots"}},
    ),
    _cp("config-not-an-object", "spec.config", config="host=smtp"),
    _cp("capability-with-spaces", "spec.capabilities[0]", capabilities=["Delivery Receipts"]),
    _cp("unknown-field", "spec.priorty", priorty=2),
    _vi("integration-type-unknown", "spec.integrationType", integrationType="crm"),
    _vi("environment-unknown", "spec.environment", environment="qa"),
    _vi("security-level-unknown", "spec.securityLevel", securityLevel="root"),
    _vi("depends-on-itself", "spec.dependsOn", dependsOn=["voltha"]),
    _vi("depends-on-bad-name", "spec.dependsOn[0]", dependsOn=["Analytics_Events"]),
    _vi("vendor-missing", "spec.vendor", vendor=DELETE),
    _vi("permission-with-spaces", "spec.permissions[0]", permissions=["Network Manage"]),
    _vi("health-period-zero", "spec.healthCheck.periodSeconds", healthCheck={"periodSeconds": 0}),
    _vi("license-without-secret", "spec.license.secretName", license={"key": "license"}),
]
