"""NetworkPolicy on the real node: a plugin reaches what its policy allows, and nothing else.

The operator writes one NetworkPolicy per plugin: ingress only from the
router's and the operator's pods, on the plugin's gRPC port; egress by
security level (`standard`: TCP 443, 80, 25, 465, 587), never to link-local
addresses nor to the API server below `system`. kube-router's policy
controller enforces them on the node (tests/support/policycontroller.py),
as the chart's own policies for the router and the operator.

Each check is one TCP connection made from inside a pod (`kubectl exec`).
Every refusal is shown next to a source whose connection to the same
address and port succeeds, so what refuses is the policy, not a closed port
or a missing route.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from switchboard.api import constants
from tests.realnode.sink import HTTP_PORT
from tests.realnode.tenant import (
    OTHER_TENANT,
    RELEASE,
    RELEASE_NAMESPACE,
    SECRETS,
    TENANT,
    Tenant,
    connect_from,
    example,
    get_json,
    plugin_pods,
    router_pod,
)
from tests.support.controlplane import ControlPlane
from tests.support.realnode import (
    API_SERVICE_ADDRESS,
    LINK_LOCAL_ADDRESS,
    NODE_ADDRESS,
    POD_GATEWAY,
)
from tests.support.wait import wait_for

pytestmark = [pytest.mark.realnode, pytest.mark.timeout(600)]

#: A port outside the `standard` level's egress ports.
OTHER_PORT = 8025
CONNECTED = "connected"
#: Where a plugin might try to go: name → (address, port).
TARGETS = {
    "the sink, HTTP": (POD_GATEWAY, HTTP_PORT),
    "a host on 443": (POD_GATEWAY, 443),
    "a host on another port": (POD_GATEWAY, OTHER_PORT),
    "link-local (metadata) on 443": (LINK_LOCAL_ADDRESS, 443),
    "the API server (kubernetes Service)": (API_SERVICE_ADDRESS, 443),
}
GRPC = constants.PLUGIN_GRPC_PORT


@dataclass
class Listeners:
    """TCP servers inside the tier's namespace that accept every connection and close it."""

    addresses: list[tuple[str, int]]
    _sockets: list[socket.socket] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _serve(self, server: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection.close()

    def start(self) -> None:
        for address in self.addresses:
            # Made from the test's thread, so bound inside the tier's network namespace.
            server = socket.create_server(address)
            server.settimeout(0.2)
            self._sockets.append(server)
            thread = threading.Thread(target=self._serve, args=(server,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for server in self._sockets:
            server.close()


@pytest.fixture(scope="module")
def listeners(tenant: Tenant) -> Iterator[Listeners]:
    """Servers on the targets the sink does not serve (the API server's is the forwarder)."""
    servers = Listeners([(POD_GATEWAY, 443), (POD_GATEWAY, OTHER_PORT), (LINK_LOCAL_ADDRESS, 443)])
    servers.start()
    try:
        yield servers
    finally:
        servers.stop()


BYSTANDER = "bystander"


@pytest.fixture(scope="module")
def bystander(tenant: Tenant) -> Iterator[str]:
    """A pod of the tenant that no NetworkPolicy selects: it may go anywhere."""
    plane = tenant.plane
    image = router_pod(plane)["spec"]["containers"][0]["image"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": BYSTANDER, "namespace": TENANT, "labels": {"app": BYSTANDER}},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", "import time; time.sleep(86400)"],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
            "terminationGracePeriodSeconds": 0,
        },
    }
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(pod))
    try:
        plane.kubectl(
            "wait", "--for=condition=Ready", f"pod/{BYSTANDER}", "-n", TENANT, "--timeout=120s",
            timeout=140,
        )  # fmt: skip
        yield BYSTANDER
    finally:
        plane.kubectl("delete", "pod", BYSTANDER, "-n", TENANT, "--wait=true", check=False)


@pytest.fixture(scope="module")
def other_tenant_plugin(tenant: Tenant) -> str:
    """The webhook example applied in the other tenant, Ready; its pod's IP."""
    plane = tenant.plane
    literals = [f"--from-literal={k}={v}" for k, v in SECRETS["webhook-signing"].items()]
    plane.kubectl("create", "secret", "generic", "webhook-signing", "-n", OTHER_TENANT, *literals)
    plane.kubectl(
        "apply", "-f", "-", input=yaml.safe_dump(example("generic-webhook", OTHER_TENANT))
    )
    plane.kubectl(
        "wait", "--for=condition=Ready", "communicationplugin/generic-webhook", "-n",
        OTHER_TENANT, "--timeout=180s", timeout=200,
    )  # fmt: skip
    (pod,) = plugin_pods(plane, "generic-webhook", OTHER_TENANT)
    return str(pod["status"]["podIP"])


def webhook_pod(plane: ControlPlane) -> str:
    return str(plugin_pods(plane, "generic-webhook")[0]["metadata"]["name"])


def outcomes(plane: ControlPlane, namespace: str, pod: str) -> dict[str, str]:
    return {
        name: connect_from(plane, namespace, pod, host, port)
        for name, (host, port) in TARGETS.items()
    }


def test_each_plugin_has_one_policy_that_names_the_api_server(tenant: Tenant) -> None:
    plane = tenant.plane
    owners: dict[str, list[dict[str, Any]]] = {}
    for policy in get_json(plane, "networkpolicies", "-n", TENANT)["items"]:
        for owner in policy["metadata"].get("ownerReferences", []):
            owners.setdefault(owner["name"], []).append(policy)
    plugins = get_json(plane, "communicationplugins", "-n", TENANT)["items"]
    for plugin in plugins:
        assert len(owners.get(plugin["metadata"]["name"], [])) == 1, plugin["metadata"]["name"]
    (policy,) = owners["generic-webhook"]
    excepted = {
        cidr
        for rule in policy["spec"]["egress"]
        for peer in rule.get("to", [])
        for cidr in peer.get("ipBlock", {}).get("except", [])
    }
    # The Service address, the endpoint the chart was told of, and link-local.
    assert {f"{API_SERVICE_ADDRESS}/32", f"{NODE_ADDRESS}/32", "169.254.0.0/16"} <= excepted


def test_a_plugin_reaches_what_its_security_level_allows_and_nothing_else(
    tenant: Tenant, listeners: Listeners, bystander: str
) -> None:
    plane = tenant.plane
    # Without a policy, every target answers: the network itself lets a pod through.
    unrestricted = outcomes(plane, TENANT, bystander)
    assert unrestricted == dict.fromkeys(TARGETS, CONNECTED), unrestricted

    plugin = outcomes(plane, TENANT, webhook_pod(plane))
    allowed = {"the sink, HTTP", "a host on 443"}
    assert {name for name, outcome in plugin.items() if outcome == CONNECTED} == allowed, plugin


def test_a_plugin_cannot_reach_another_tenants_plugin_but_the_router_can(
    tenant: Tenant, other_tenant_plugin: str, bystander: str
) -> None:
    plane = tenant.plane
    router = router_pod(plane)["metadata"]["name"]
    # The operator's Describe got in (status.plugin), and so does the router.
    described = get_json(plane, "communicationplugin", "generic-webhook", "-n", OTHER_TENANT)
    assert described["status"]["plugin"]["name"]
    assert connect_from(plane, RELEASE_NAMESPACE, router, other_tenant_plugin, GRPC) == CONNECTED

    # A plugin of tenant-a, and a pod of tenant-a without any egress policy: the
    # other tenant's plugin admits neither.
    def refused() -> dict[str, str] | None:
        found = {
            source: connect_from(plane, TENANT, pod, other_tenant_plugin, GRPC)
            for source, pod in (("plugin", webhook_pod(plane)), ("bystander", bystander))
        }
        return found if CONNECTED not in found.values() else None

    wait_for(refused, timeout=30, interval=1, what="tenant-a refused by tenant-b's plugin")
    # And still open to the router: the refusals were the policy's.
    assert connect_from(plane, RELEASE_NAMESPACE, router, other_tenant_plugin, GRPC) == CONNECTED


def test_the_router_reaches_the_api_server_and_plugins_and_nothing_else(
    tenant: Tenant, listeners: Listeners
) -> None:
    plane = tenant.plane
    names = {
        p["metadata"]["name"]
        for p in get_json(plane, "networkpolicies", "-n", RELEASE_NAMESPACE)["items"]
    }
    assert {f"{RELEASE}-router", f"{RELEASE}-operator"} <= names
    router = router_pod(plane)["metadata"]["name"]
    reached = outcomes(plane, RELEASE_NAMESPACE, router)
    assert reached["the API server (kubernetes Service)"] == CONNECTED, reached
    assert {n for n, o in reached.items() if o == CONNECTED} == {
        "the API server (kubernetes Service)"
    }, reached
    # Sends still go through it to the plugins (the chart's egress to their gRPC port).
    with tenant.client() as client:
        assert client.send_message("webhook", "ops", "under policy").plugin.endswith(
            "/generic-webhook"
        )
