"""What the real-node tests share: the examples as a tenant applies them, and ways to look.

The `tenant` fixture (conftest) applies the examples in TENANT with their
Secrets, pointed at the sink; every module of the tier then uses the same
plugins, router and sink.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from typing import Any

import yaml

from switchboard.api import constants
from switchboard.client import Switchboard, SwitchboardError
from tests.realnode.sink import HTTP_PORT, SMTP_PORT, Sink
from tests.support.controlplane import REPO_ROOT, ControlPlane
from tests.support.realnode import POD_GATEWAY, RealCluster
from tests.support.wait import wait_for

RELEASE = "switchboard"
RELEASE_NAMESPACE = "switchboard-system"
#: Where the tests run plugins: tenant namespaces of the release, restricted.
TENANT = "tenant-a"
OTHER_TENANT = "tenant-b"
EXAMPLES = REPO_ROOT / "examples"
SINK = f"http://{POD_GATEWAY}:{HTTP_PORT}"
SECRETS = {
    "smtp-credentials": {"SMTP_PASSWORD": "not-used-by-the-sink"},
    "twilio-credentials": {
        "TWILIO_ACCOUNT_SID": "AC00000000000000000000000000000000",
        "TWILIO_AUTH_TOKEN": "real-node-twilio-token",
    },
    "vonage-credentials": {
        "VONAGE_API_KEY": "real-node-vonage-key",
        "VONAGE_API_SECRET": "real-node-vonage-secret",
    },
    "webhook-signing": {"WEBHOOK_SIGNING_SECRET": "real-node-signing-secret-1"},
}
#: Each example, and what changes so that it delivers to the sink (on ports the
#: `standard` level's egress allows: SMTP 25, HTTP 80).
EXAMPLE_CONFIG: dict[str, dict[str, Any]] = {
    # The sink's SMTP server has neither TLS nor AUTH.
    "smtp-email": {"host": POD_GATEWAY, "port": SMTP_PORT, "security": "none"},
    # The sink answers Twilio with 503 (an outage): the router fails over.
    "twilio-sms": {"base_url": f"{SINK}/twilio"},
    "vonage-sms": {"base_url": f"{SINK}/vonage"},
    "generic-webhook": {"url": f"{SINK}/webhook"},
}
SEND_RBAC = f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: app, namespace: {TENANT}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: switchboard-sender, namespace: {TENANT}}}
rules:
  - apiGroups: [switchboard.dev]
    resources: [communicationplugins, vendorintegrations]
    verbs: [send, invoke, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: app-sends, namespace: {TENANT}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: switchboard-sender}}
subjects: [{{kind: ServiceAccount, name: app, namespace: {TENANT}}}]
"""


def example(name: str, namespace: str = TENANT) -> dict[str, Any]:
    """examples/NAME.yaml in `namespace`, delivering to the sink."""
    resource = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    resource["metadata"]["namespace"] = namespace
    config = resource["spec"]["config"]
    if name == "smtp-email":
        config.pop("username")
        config.pop("password")
    config.update(EXAMPLE_CONFIG[name])
    return resource


def get_json(plane: ControlPlane, *args: str) -> Any:
    return json.loads(plane.kubectl("get", *args, "-o", "json").stdout)


def plugin_pods(plane: ControlPlane, name: str, namespace: str = TENANT) -> list[dict[str, Any]]:
    pods = get_json(plane, "pods", "-n", namespace, "-l", f"{constants.LABEL_INSTANCE}={name}")
    return [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]


def router_pod(plane: ControlPlane) -> dict[str, Any]:
    pods = get_json(
        plane, "pods", "-n", RELEASE_NAMESPACE, "-l", "app.kubernetes.io/component=router"
    )["items"]
    (pod,) = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return dict(pod)


@dataclass
class Installed:
    """The cluster with the chart installed."""

    cluster: RealCluster
    namespace: str = RELEASE_NAMESPACE

    @property
    def plane(self) -> ControlPlane:
        return self.cluster.plane


@dataclass
class Tenant:
    """The examples applied in TENANT, the sink they deliver to, and a client of the router."""

    installed: Installed
    sink: Sink
    router_url: str
    token: str
    #: Seconds from `kubectl apply` until every plugin was Ready.
    apply_to_ready: float

    @property
    def plane(self) -> ControlPlane:
        return self.installed.plane

    def client(self, token: str | None = None) -> Switchboard:
        return Switchboard(self.router_url, token or self.token, timeout=30)


def when_authorized(tenant: Tenant, call: Any, token: str | None = None) -> Any:
    """The first call with a token: its RoleBinding may still be on its way to the
    router's authorizer (401/403 are retried for a minute)."""

    def attempt() -> Any:
        with tenant.client(token) as client:
            try:
                return call(client)
            except SwitchboardError as error:
                if error.status in (401, 403):
                    return None
                raise

    return wait_for(attempt, timeout=60, interval=1, what="an authorized call")


def send_when_authorized(tenant: Tenant, *args: Any, **kwargs: Any) -> Any:
    return when_authorized(tenant, lambda client: client.send_message(*args, **kwargs))


#: Run in a pod: connect to HOST:PORT once, print `connected` or why not.
_CONNECT = textwrap.dedent(
    """
    import errno, socket, sys
    s = socket.socket()
    s.settimeout(float(sys.argv[3]))
    try:
        s.connect((sys.argv[1], int(sys.argv[2])))
        print("connected")
    except socket.timeout:
        print("timeout")
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e)))
    """
)


def connect_from(
    plane: ControlPlane, namespace: str, pod: str, host: str, port: int, timeout: float = 3
) -> str:
    """What a TCP connection from inside `pod` to HOST:PORT gives: `connected`, or the
    error (`ECONNREFUSED` when a firewall rejects it, `timeout` when it drops it)."""
    result = plane.kubectl(
        "exec", "-n", namespace, pod, "--", "python", "-c", _CONNECT, host, str(port),
        str(timeout), timeout=timeout + 30,
    )  # fmt: skip
    return result.stdout.strip()
