"""The real-node tier: this checkout's images as real pods on a real kubelet.

The package fixture builds what is missing (``hack/build-node.sh``,
``hack/build-policy-controller.sh``, ``hack/images.py``: all cached, so a
warm run builds nothing), enters a network namespace of its own, starts a
control plane and one real node there (tests/support/realnode.py), with
kube-router's NetworkPolicy controller enforcing every policy, and installs
the chart with the built images and its own NetworkPolicies on. Every test
of the tier runs inside that namespace; everything is removed when the tier
ends, also when a test fails.

The modules share one installation and one tenant (the examples applied in
TENANT), and run in the order of MODULES: the release is uninstalled last.

On a machine that cannot run a node (not Linux, not root, no overlayfs, no
cgroups) the tier is skipped and says why. On one that can, a missing tool is
an error, not a skip: ``make test`` installs the tools first.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.realnode.sink import Sink
from tests.realnode.tenant import (
    EXAMPLE_CONFIG,
    OTHER_TENANT,
    RELEASE,
    RELEASE_NAMESPACE,
    SECRETS,
    SEND_RBAC,
    TENANT,
    Installed,
    Tenant,
    example,
    router_pod,
)
from tests.support.controlplane import REPO_ROOT, binaries_dir
from tests.support.realnode import (
    NODE_ADDRESS,
    RealCluster,
    running_real_cluster,
    unavailable_reason,
)

CHART = REPO_ROOT / "helm" / "switchboard"
#: Seconds each phase of the last run took (build, start, apply to Ready, rollouts).
FIGURES = (
    Path(
        os.environ.get("SWITCHBOARD_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "switchboard"
    )
    / "realnode-timings.json"
)
#: What a machine without these can never run, so the tier is skipped there.
HARD_REQUIREMENTS = ("needs Linux", "needs root", "overlay filesystem", "cgroup hierarchy")
#: The order the tier's modules run in (they share the release; the last one removes it).
MODULES = ("test_e2e.py", "test_network_policy.py", "test_voltha.py", "test_uninstall.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """This package's tests last in the session, in the order of MODULES.

    Last, because the tier's thread enters its network namespace, and a network
    namespace belongs to a thread: threads started meanwhile (gRPC's own, the
    event loop's executor) stay in it after the tier. A test after the tier
    could find its gRPC channel connecting from inside that namespace, where
    127.0.0.1 is not the host's loopback.
    """
    here = Path(__file__).parent
    tier = sorted(
        (item for item in items if item.path.parent == here),
        key=lambda item: MODULES.index(item.path.name) if item.path.name in MODULES else -1,
    )
    items[:] = [item for item in items if item.path.parent != here] + tier


@pytest.fixture(scope="package")
def real_cluster() -> Iterator[RealCluster]:
    reason = unavailable_reason()
    if reason and any(hard in reason for hard in HARD_REQUIREMENTS):
        pytest.skip(f"real-node tier skipped: {reason}")
    if reason:
        pytest.fail(f"this machine can run the real-node tier, but {reason}")
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-realnode-"))
    try:
        with running_real_cluster(binaries_dir(), workdir) as cluster:
            yield cluster
            # The figures of docs/performance.md, from the last run.
            FIGURES.parent.mkdir(parents=True, exist_ok=True)
            FIGURES.write_text(json.dumps(cluster.timings, indent=2) + "\n")
    finally:
        if not os.environ.get("SWITCHBOARD_KEEP_CONTROL_PLANE"):
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="package")
def installed(real_cluster: RealCluster) -> Installed:
    """The chart from this checkout, with the built images, operator and router as real pods,
    each under the chart's NetworkPolicy."""
    plane = real_cluster.plane
    for namespace in (TENANT, OTHER_TENANT):
        plane.kubectl("create", "namespace", namespace)
        plane.kubectl(
            "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
        )
    # The API server as pods reach it (the `kubernetes` Service's endpoint, port 443):
    # the router's and operator's policies let them reach it, the plugins' keep them away.
    api_server = f"{{{NODE_ADDRESS}/32}}"
    plane.helm(
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        RELEASE_NAMESPACE,
        "--create-namespace",
        "--set",
        "operator.replicas=1",
        "--set",
        "router.replicas=1",
        "--set",
        f"tenantNamespaces={{{TENANT},{OTHER_TENANT}}}",
        "--set",
        "operator.networkPolicy.enabled=true",
        "--set",
        "router.networkPolicy.enabled=true",
        "--set",
        f"operator.networkPolicy.apiServerCIDRs={api_server}",
        "--set",
        f"router.networkPolicy.apiServerCIDRs={api_server}",
        # So that `helm uninstall` can be shown to leave nothing behind.
        "--set",
        "crds.keep=false",
        "--wait",
        "--timeout",
        "300s",
        timeout=360,
    )
    # `helm --wait` accepts a Deployment within its maxUnavailable; the tests want every pod.
    plane.kubectl(
        "wait", "--for=condition=Ready", "pods", "--all", "-n", RELEASE_NAMESPACE,
        "--timeout=300s", timeout=320,
    )  # fmt: skip
    return Installed(real_cluster)


@pytest.fixture(scope="package")
def tenant(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenant]:
    """The examples (email, the SMS pair, the signed webhook) applied in TENANT with their
    Secrets, Ready, delivering to the sink; a token that may send through the router."""
    plane = installed.plane
    sink = Sink(tmp_path_factory.mktemp("outbox"))
    sink.start()
    try:
        for name, data in SECRETS.items():
            literals = [f"--from-literal={k}={v}" for k, v in data.items()]
            plane.kubectl("create", "secret", "generic", name, "-n", TENANT, *literals)
        plane.kubectl("apply", "-f", "-", input=SEND_RBAC)
        started = time.monotonic()
        documents = [example(name) for name in EXAMPLE_CONFIG]
        plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))
        plane.kubectl(
            "wait",
            "--for=condition=Ready",
            "communicationplugins",
            "--all",
            "-n",
            TENANT,
            "--timeout=300s",
            timeout=320,
        )
        apply_to_ready = time.monotonic() - started
        token = plane.kubectl("create", "token", "app", "-n", TENANT).stdout.strip()
        yield Tenant(
            installed=installed,
            sink=sink,
            router_url=f"http://{router_pod(plane)['status']['podIP']}:8080",
            token=token,
            apply_to_ready=apply_to_ready,
        )
    finally:
        sink.stop()
