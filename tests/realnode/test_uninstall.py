"""The release's end on the real node: `helm test`, then `helm uninstall` leaves nothing.

Runs last in the tier (conftest's MODULES): every other module uses the release.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.realnode.tenant import (
    OTHER_TENANT,
    RELEASE,
    RELEASE_NAMESPACE,
    TENANT,
    Installed,
    Tenant,
)

pytestmark = [pytest.mark.realnode, pytest.mark.timeout(600)]


def test_helm_test_passes(installed: Installed) -> None:
    # (No --logs: the test's objects are deleted as soon as it passes.)
    result = installed.plane.helm(
        "test", RELEASE, "-n", RELEASE_NAMESPACE, "--timeout", "180s", timeout=240
    )
    suites = re.findall(r"TEST SUITE:\s+(\S+).*?Phase:\s+(\w+)", result.stdout, re.S)
    assert suites and all(phase == "Succeeded" for _, phase in suites), result.stdout


def test_helm_uninstall_leaves_nothing_behind(installed: Installed, tenant: Tenant) -> None:
    plane = installed.plane
    plane.helm("uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--wait", "--timeout", "180s")
    # The CRDs went with the release (crds.keep=false): every plugin resource, and so
    # (by owner references) every Deployment, Service and ConfigMap the operator made.
    assert "switchboard.dev" not in plane.kubectl("get", "crd", "-o", "name").stdout

    def leftovers() -> list[str]:
        found = []
        kinds = "deployments,replicasets,pods,services,configmaps,networkpolicies,pdb"
        for namespace in (RELEASE_NAMESPACE, TENANT, OTHER_TENANT):
            listed = plane.kubectl("get", kinds, "-n", namespace, "-o", "name").stdout.split()
            found += [f"{namespace}: {n}" for n in listed if n != "configmap/kube-root-ca.crt"]
        release_only = "serviceaccounts,roles,rolebindings,leases,secrets"
        listed = plane.kubectl("get", release_only, "-n", RELEASE_NAMESPACE, "-o", "name")
        found += [n for n in listed.stdout.split() if n != "serviceaccount/default"]
        cluster_wide = plane.kubectl("get", "clusterroles,clusterrolebindings", "-o", "name")
        # (The harness's own grants to the real node are not the release's.)
        found += [
            n for n in cluster_wide.stdout.split() if "switchboard" in n and "real-node" not in n
        ]
        return found

    deadline = time.monotonic() + 180
    while (left := leftovers()) and time.monotonic() < deadline:
        time.sleep(2)
    assert left == []
