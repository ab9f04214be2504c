"""The real node's NetworkPolicy enforcer: kube-router's network policy controller.

A cluster enforces NetworkPolicies only if its network plugin does; the CNI
bridge plugin does not. kube-router's policy controller does it for any
bridge network, with iptables and ipset: for every pod on its node a chain
that runs the pod's traffic (switched on the bridge, routed, or to the node
itself) through the policies that select it, and rejects what none allows.

It runs as a process of the real-node harness (not a pod), only the
firewall (``--run-firewall``, no routing, no service proxy), inside the
tier's network namespace: every chain and set it writes lives there and
vanishes with it. ``hack/build-policy-controller.sh`` builds it from its Go
module, cached by version; iptables and ipset are Debian's
(``make system-deps``).

kube-router exempts the whole Service range from pod firewalls on the node's
INPUT path, because kube-proxy has already rewritten a Service address to an
endpoint by then. The harness does what kube-proxy would (a DNAT of the
``kubernetes`` Service to the API server's endpoint, see
``tests.support.realnode``), so policies see the API server's real address,
as they do in a cluster.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from tests.support.controlplane import REPO_ROOT

BUILD = REPO_ROOT / "hack" / "build-policy-controller.sh"
#: The controller's Kubernetes user; the ClusterRole is kube-router's own (firewall part).
USER = "switchboard-real-node-policy"
#: What kube-router logs (at -v 1) when a full sync reached iptables.
SYNCED = "Restoring IPv4 iptables rules took"


def binary() -> Path:
    """Build (or find in the cache) kube-router; its path."""
    out = subprocess.run(["bash", str(BUILD)], check=True, stdout=subprocess.PIPE, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def rbac() -> list[dict[str, Any]]:
    """Read access to what the policy controller watches, as kube-router's manifests grant."""
    rbac_group = "rbac.authorization.k8s.io"
    read = ["get", "list", "watch"]
    return [
        {
            "apiVersion": f"{rbac_group}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": USER},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["namespaces", "pods", "services", "nodes", "endpoints"],
                    "verbs": read,
                },
                {
                    "apiGroups": ["networking.k8s.io"],
                    "resources": ["networkpolicies"],
                    "verbs": read,
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": read,
                },
            ],
        },
        {
            "apiVersion": f"{rbac_group}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": USER},
            "roleRef": {"apiGroup": rbac_group, "kind": "ClusterRole", "name": USER},
            "subjects": [{"apiGroup": rbac_group, "kind": "User", "name": USER}],
        },
    ]


def command(kube_router: Path, kubeconfig: Path, node_name: str, service_cidr: str) -> list[str]:
    return [
        str(kube_router),
        f"--kubeconfig={kubeconfig}",
        f"--hostname-override={node_name}",
        "--run-firewall=true",
        "--run-router=false",
        "--run-service-proxy=false",
        f"--service-cluster-ip-range={service_cidr}",
        # No health or metrics listener: the harness reads its log.
        "--health-port=0",
        "--v=1",
    ]


def synced(log: Path) -> bool:
    """Whether the controller has written its rules to iptables at least once."""
    return log.exists() and SYNCED in log.read_text(errors="replace")
