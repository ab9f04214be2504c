"""The VOLTHA integration on the real node: examples/voltha.yaml against a VOLTHA core.

The VOLTHA core stand-in of the vendor tier (VOLTHA's own proto) listens on
the pods' gateway, port 55555, inside the tier's network namespace
(tests/realnode/voltha.py). `kubectl apply` of examples/voltha.yaml, pointed
at it, with its Secret; the plugin image is built from plugin-images/voltha
like every other. Calls go through the router pod under a ServiceAccount
with the RBAC docs/operations.md gives a network operations team; the tests
read the core's state.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from switchboard.client import SwitchboardError
from tests.realnode.sink import HTTP_PORT
from tests.realnode.tenant import (
    EXAMPLES,
    TENANT,
    Tenant,
    connect_from,
    get_json,
    plugin_pods,
    when_authorized,
)
from tests.realnode.voltha import VOLTHA_PORT, VolthaOnGateway
from tests.support.controlplane import REPO_ROOT
from tests.support.realnode import API_SERVICE_ADDRESS, POD_GATEWAY
from tests.support.wait import wait_for

pytestmark = [pytest.mark.realnode, pytest.mark.timeout(600)]

USERNAME, PASSWORD = "voltha-noc", "real-node-voltha-password"
OLT = "10.90.0.11:9191"
#: ONUs cabled to the OLT's PON ports.
PLANT = {OLT: {0: ["BBSM000a0001", "BBSM000a0002"], 1: ["ALPHe3d1cfde"]}}
NOC_RBAC = f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: noc, namespace: {TENANT}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: fiber-operator, namespace: {TENANT}}}
rules:
  - apiGroups: [switchboard.dev]
    resources: [vendorintegrations]
    resourceNames: [voltha]
    verbs: [invoke]
  - apiGroups: [switchboard.dev]
    resources: [permissions]
    resourceNames: [network.fiber.read, network.fiber.manage]
    verbs: [use]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: noc-operates-fiber, namespace: {TENANT}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: fiber-operator}}
subjects: [{{kind: ServiceAccount, name: noc, namespace: {TENANT}}}]
"""


@dataclass
class Voltha:
    tenant: Tenant
    core: VolthaOnGateway
    #: A token of the `noc` ServiceAccount (invoke, network.fiber.read and .manage).
    token: str

    def invoke(self, operation: str, params: dict[str, Any] | None = None) -> Any:
        return when_authorized(
            self.tenant,
            lambda client: client.invoke("voltha", operation, params or {}),
            token=self.token,
        )


def voltha_example() -> dict[str, Any]:
    """examples/voltha.yaml in TENANT, pointed at the core on the gateway."""
    resource = yaml.safe_load((EXAMPLES / "voltha.yaml").read_text())
    resource["metadata"]["namespace"] = TENANT
    resource["spec"]["config"]["voltha_host"] = POD_GATEWAY
    assert resource["spec"]["config"]["voltha_port"] == VOLTHA_PORT
    return dict(resource)


@pytest.fixture(scope="module")
def voltha(tenant: Tenant) -> Iterator[Voltha]:
    plane = tenant.plane
    core = VolthaOnGateway(USERNAME, PASSWORD, PLANT)
    core.start()
    try:
        plane.kubectl(
            "create", "secret", "generic", "voltha-credentials", "-n", TENANT,
            f"--from-literal=VOLTHA_USERNAME={USERNAME}",
            f"--from-literal=VOLTHA_PASSWORD={PASSWORD}",
        )  # fmt: skip
        plane.kubectl("apply", "-f", "-", input=NOC_RBAC)
        plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(voltha_example()))
        plane.kubectl(
            "wait", "--for=condition=Ready", "vendorintegration/voltha", "-n", TENANT,
            "--timeout=180s", timeout=200,
        )  # fmt: skip
        token = plane.kubectl("create", "token", "noc", "-n", TENANT).stdout.strip()
        yield Voltha(tenant, core, token)
    finally:
        core.stop()


def test_the_voltha_example_is_ready_with_the_plugins_own_describe(voltha: Voltha) -> None:
    plane = voltha.tenant.plane
    manifest = yaml.safe_load((REPO_ROOT / "plugin-images" / "voltha" / "manifest.yml").read_text())
    status = get_json(plane, "vendorintegration", "voltha", "-n", TENANT)["status"]
    assert status["plugin"]["name"] == manifest["name"]
    assert status["plugin"]["version"] == manifest["version"]
    (pod,) = plugin_pods(plane, "voltha")
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "ghcr.io/switchboard-dev/plugin-voltha:0.1.0"
    (state,) = pod["status"]["containerStatuses"]
    assert state["ready"] and state["restartCount"] == 0, state


def test_provision_olt_through_the_router_pod_reaches_the_voltha_core(voltha: Voltha) -> None:
    result = voltha.invoke("provision_olt", {"host_and_port": OLT})
    assert result.plugin == f"{TENANT}/voltha"
    assert result.result["created"] is True
    olt_id = result.result["device"]["id"]

    # The core holds the OLT, created with the credentials the pod read from its Secret.
    device = voltha.core.call(lambda core: core.devices.get(olt_id))
    assert device is not None and device.host_and_port == OLT
    basic = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    calls = voltha.core.call(lambda core: list(core.calls))
    assert ("CreateDevice", basic) in calls

    # VOLTHA's state machine runs on: the OLT turns ACTIVE and its ONUs are discovered,
    # and list_devices through the router says so.
    def listed() -> Any:
        olts = voltha.invoke("list_devices").result["olts"]
        found = [o for o in olts if o["id"] == olt_id]
        return found if found and len(found[0]["onus"]) == 3 else None

    (olt,) = wait_for(listed, timeout=60, interval=1, what="the OLT with its 3 ONUs listed")
    assert olt["oper_status"] == "ACTIVE", olt


def test_a_caller_without_the_fiber_permission_is_refused_and_voltha_sees_nothing(
    voltha: Voltha,
) -> None:
    other_olt = "10.90.0.12:9191"
    # `app` may invoke integrations but holds no network.fiber permission.
    with voltha.tenant.client() as client, pytest.raises(SwitchboardError) as refused:
        client.invoke("voltha", "provision_olt", {"host_and_port": other_olt})
    assert refused.value.status == 403
    devices = voltha.core.call(lambda core: [d.host_and_port for d in core.devices.values()])
    assert other_olt not in devices


def test_the_voltha_plugin_reaches_the_port_it_declares_and_nothing_else(
    voltha: Voltha,
) -> None:
    plane = voltha.tenant.plane
    (pod,) = plugin_pods(plane, "voltha")
    name = pod["metadata"]["name"]
    # Its egress is the example's declaration (port 55555), not the level's defaults.
    assert connect_from(plane, TENANT, name, POD_GATEWAY, VOLTHA_PORT) == "connected"
    assert connect_from(plane, TENANT, name, POD_GATEWAY, HTTP_PORT) != "connected"
    assert connect_from(plane, TENANT, name, API_SERVICE_ADDRESS, 443) != "connected"
    # The sink's port is open: the webhook plugin (level defaults) gets in.
    (webhook, *_) = plugin_pods(plane, "generic-webhook")
    assert (
        connect_from(plane, TENANT, webhook["metadata"]["name"], POD_GATEWAY, HTTP_PORT)
        == "connected"
    )
