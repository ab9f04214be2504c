"""The real-node tier: this checkout's images as real pods on a real kubelet.

The package fixture builds what is missing (``hack/build-node.sh``,
``hack/images.py``: both cached, so a warm run builds nothing), enters a
network namespace of its own, starts a control plane and one real node
there (tests/support/realnode.py), and installs the chart with the built
images. Every test of the tier runs inside that namespace; everything is
removed when the tier ends, also when a test fails.

On a machine that cannot run a node (not Linux, not root, no overlayfs, no
cgroups) the tier is skipped and says why. On one that can, a missing tool is
an error, not a skip: ``make test`` installs the tools first.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.controlplane import REPO_ROOT, ControlPlane, binaries_dir
from tests.support.realnode import RealCluster, running_real_cluster, unavailable_reason

CHART = REPO_ROOT / "helm" / "switchboard"
RELEASE = "switchboard"
RELEASE_NAMESPACE = "switchboard-system"
#: Where the tests run plugins: a tenant namespace of the release, restricted.
TENANT = "tenant-a"
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


@dataclass
class Installed:
    """The cluster with the chart installed."""

    cluster: RealCluster
    namespace: str = RELEASE_NAMESPACE

    @property
    def plane(self) -> ControlPlane:
        return self.cluster.plane


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
    """The chart from this checkout, with the built images, operator and router as real pods."""
    plane = real_cluster.plane
    plane.kubectl("create", "namespace", TENANT)
    plane.kubectl("label", "namespace", TENANT, "pod-security.kubernetes.io/enforce=restricted")
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
        f"tenantNamespaces={{{TENANT}}}",
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
