"""The CRDs against a real API server: what users see from kubectl."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from switchboard.api import constants
from tests.support.controlplane import ControlPlane
from tests.support.resources import (
    INVALID_CASES,
    InvalidCase,
    communication_plugin,
    vendor_integration,
)

pytestmark = pytest.mark.cluster
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _create(api_client: k8s.ApiClient, namespace: str, resource: dict[str, Any]) -> Any:
    plural = {
        constants.COMMUNICATION_PLUGIN: constants.COMMUNICATION_PLUGINS,
        constants.VENDOR_INTEGRATION: constants.VENDOR_INTEGRATIONS,
    }[resource["kind"]]
    return k8s.CustomObjectsApi(api_client).create_namespaced_custom_object(
        constants.GROUP,
        constants.VERSION,
        namespace,
        plural,
        resource,
        field_validation="Strict",
    )


def test_crds_install_with_status_subresource_and_category(crds_installed: ControlPlane) -> None:
    out = crds_installed.kubectl("api-resources", "--api-group=switchboard.dev", "-o", "wide")
    lines = out.stdout.splitlines()
    assert any(line.startswith("communicationplugins") and "switchboard" in line for line in lines)
    assert any(line.startswith("vendorintegrations") and "switchboard" in line for line in lines)
    crd = json.loads(
        crds_installed.kubectl(
            "get", "crd", "communicationplugins.switchboard.dev", "-o", "json"
        ).stdout
    )
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_accepted(
    crds_installed: ControlPlane, api_client: k8s.ApiClient, namespace: str, path: Path
) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        created = _create(api_client, namespace, doc)
        assert created["metadata"]["name"] == doc["metadata"]["name"]


def test_defaults_are_filled_in_by_the_api_server(
    crds_installed: ControlPlane, api_client: k8s.ApiClient, namespace: str
) -> None:
    created = _create(api_client, namespace, communication_plugin())
    spec = created["spec"]
    assert (spec["priority"], spec["weight"], spec["enabled"], spec["sendTimeout"]) == (
        1,
        100,
        True,
        "10s",
    )
    created = _create(api_client, namespace, vendor_integration())
    assert (created["spec"]["environment"], created["spec"]["securityLevel"]) == (
        "development",
        "standard",
    )


@pytest.mark.parametrize("case", INVALID_CASES, ids=lambda c: c.id)
def test_invalid_resource_is_rejected_naming_the_field(
    crds_installed: ControlPlane, api_client: k8s.ApiClient, namespace: str, case: InvalidCase
) -> None:
    with pytest.raises(ApiException) as caught:
        _create(api_client, namespace, case.resource)
    assert caught.value.status in (400, 422), caught.value.body
    message = json.loads(caught.value.body)["message"]
    assert case.field in message, f"{case.id}: {message}"


def test_kubectl_explain_prints_the_field_description(crds_installed: ControlPlane) -> None:
    out = crds_installed.kubectl("explain", "communicationplugin.spec.priority").stdout
    assert "FIELD: priority <integer>" in out
    assert "1 is tried first" in " ".join(out.split())


def test_kubectl_get_switchboard_lists_both_kinds_with_printer_columns(
    crds_installed: ControlPlane, api_client: k8s.ApiClient, namespace: str
) -> None:
    _create(api_client, namespace, communication_plugin("sms-primary", priority=1))
    _create(api_client, namespace, vendor_integration("voltha"))
    out = crds_installed.kubectl("get", "switchboard", "-n", namespace).stdout
    assert "communicationplugin.switchboard.dev/sms-primary" in out
    assert "vendorintegration.switchboard.dev/voltha" in out
    headers = [line.split() for line in out.splitlines() if line.startswith("NAME")]
    assert ["NAME", "CHANNEL", "PRIORITY", "READY", "ENDPOINTS", "AGE"] in headers
    assert ["NAME", "VENDOR", "TYPE", "ENVIRONMENT", "READY", "ENDPOINTS", "AGE"] in headers
    row = next(line.split() for line in out.splitlines() if "sms-primary" in line)
    assert row[1:3] == ["sms", "1"]
