"""The tenant boundary on the real control plane: who may run what, what a plugin
may reach, and a child that cannot be applied.

Alice may create plugin resources in her namespace and nothing else (no pods,
no Deployments, no Secrets). She tries to escalate through a resource: another
ServiceAccount, a higher security level, someone else's Secret, an image from
anywhere. With the chart's ValidatingAdmissionPolicy the API server refuses
each; without it the operator refuses what it can judge alone.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from switchboard.api import constants
from switchboard.controller.main import Operator
from switchboard.controller.reconciler import Reconciler
from switchboard.controller.settings import OperatorSettings
from switchboard.kubeclient import kube_config
from tests.cluster.conftest import API_SERVER_CIDRS, RunningOperator
from tests.cluster.test_helm import CHART, objects
from tests.cluster.test_operator import Cluster
from tests.support import loops
from tests.support.controlplane import ControlPlane
from tests.support.resources import communication_plugin, vendor_integration
from tests.support.wait import wait_for

pytestmark = pytest.mark.cluster

ALICE = "alice"
ALLOWED_IMAGE = "ghcr.io/switchboard-dev/plugin-voltha:0.1.0"

#: Each way to escalate through a resource, and the words the refusal must hold.
ESCALATIONS: list[tuple[str, dict[str, Any], str]] = [
    ("service-account", {"serviceAccountName": "ci-deployer"}, "serviceaccounts.switchboard.dev"),
    ("system-level", {"securityLevel": "system"}, "securitylevels.switchboard.dev/system"),
    ("elevated-level", {"securityLevel": "elevated"}, "securitylevels.switchboard.dev/elevated"),
    ("other-secret", {"secretRef": {"name": "team-b-credentials"}}, "Secret team-b-credentials"),
    ("licence-secret", {"license": {"secretName": "team-b-licence"}}, "team-b-licence"),
    (
        "any-registry",
        {"image": "docker.io/someone/voltha:1"},
        "registries.switchboard.dev/docker.io",
    ),
]


@pytest.fixture
def cluster(
    operator: RunningOperator,
    control_plane: ControlPlane,
    api_client: k8s.ApiClient,
    namespace: str,
) -> Cluster:
    return Cluster(control_plane, api_client, namespace)


def as_alice(
    plane: ControlPlane, namespace: str, resource: dict[str, Any], *, dry_run: bool = False
) -> subprocess.CompletedProcess[str]:
    """`kubectl apply` as alice (a dry run still passes admission, and keeps nothing)."""
    return plane.kubectl(
        f"--as={ALICE}",
        "apply",
        "--server-side",
        *(["--dry-run=server"] if dry_run else []),
        "-n",
        namespace,
        "-f",
        "-",
        input=yaml.safe_dump(resource),
        check=False,
    )


def wait_for_policy(plane: ControlPlane, namespace: str) -> None:
    """The API server loads a new policy within moments; wait until it refuses."""
    escalating = _vi("probe", securityLevel="system")
    wait_for(
        lambda: as_alice(plane, namespace, escalating, dry_run=True).returncode != 0,
        timeout=30,
        what="the admission policy to be in force",
    )


def grant_alice_authoring(plane: ControlPlane, namespace: str) -> None:
    """Alice may write plugin resources in `namespace`, and nothing else."""
    plane.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "plugin-author", "namespace": namespace},
            "rules": [
                {
                    "apiGroups": [constants.GROUP],
                    "resources": [constants.COMMUNICATION_PLUGINS, constants.VENDOR_INTEGRATIONS],
                    "verbs": ["get", "list", "create", "update", "patch"],
                }
            ],
        }
    )
    plane.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "alice-authors", "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "plugin-author",
            },
            "subjects": [{"kind": "User", "name": ALICE, "apiGroup": "rbac.authorization.k8s.io"}],
        }
    )
    for verb in ("create", "get"):
        result = plane.kubectl(
            "auth", "can-i", f"--as={ALICE}", verb, "secrets", "-n", namespace, check=False
        )
        assert result.stdout.strip() == "no", "alice must hold no Secret rights"


@pytest.fixture
def admission_policy(
    control_plane: ControlPlane, crds_installed: ControlPlane, namespace: str
) -> Iterator[str]:
    """The chart's ValidatingAdmissionPolicy and binding, as `helm template` renders them.

    Removed afterwards, and waited for: the API server keeps enforcing a deleted
    policy for moments, and the tests that follow run without one.
    """
    release = f"vap-{uuid.uuid4().hex[:6]}"
    manifest = control_plane.helm("template", release, str(CHART), "--namespace", "sb").stdout
    policy = [o for o in objects(manifest) if o["kind"].startswith("ValidatingAdmissionPolicy")]
    assert {o["kind"] for o in policy} == {
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    text = yaml.safe_dump_all(policy)
    control_plane.apply(text)
    yield policy[0]["metadata"]["name"]
    control_plane.kubectl("delete", "--ignore-not-found", "-f", "-", input=text)
    grant_alice_authoring(control_plane, namespace)
    escalating = _vi("probe", securityLevel="system")
    wait_for(
        lambda: as_alice(control_plane, namespace, escalating, dry_run=True).returncode == 0,
        timeout=30,
        what="the deleted admission policy to be out of force",
    )


def _vi(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("image", ALLOWED_IMAGE)
    return vendor_integration(name, **spec)


# --- with the admission policy: the API server refuses --------------------------------


def test_the_api_server_refuses_every_escalation_an_unprivileged_author_tries(
    control_plane: ControlPlane, namespace: str, admission_policy: str
) -> None:
    grant_alice_authoring(control_plane, namespace)
    wait_for_policy(control_plane, namespace)
    refused = []
    for case, spec, words in ESCALATIONS:
        result = as_alice(control_plane, namespace, _vi(f"evil-{case}", **spec))
        assert result.returncode != 0, f"{case} was admitted"
        assert admission_policy in result.stderr and words in result.stderr, (case, result.stderr)
        assert ALICE in result.stderr
        refused.append(case)
    assert len(refused) == len(ESCALATIONS)
    # A CommunicationPlugin's ServiceAccount, Secret and image are held to the same
    # rules (it has no securityLevel or licence: the schema refuses those fields).
    for case, spec, words in ESCALATIONS:
        if case not in ("service-account", "other-secret", "any-registry"):
            continue
        result = as_alice(control_plane, namespace, communication_plugin(f"evil-{case}", **spec))
        assert result.returncode != 0, f"{case} was admitted on a CommunicationPlugin"
        assert words in result.stderr, (case, result.stderr)
    # What asks for nothing special is admitted, and so are CommunicationPlugins.
    assert as_alice(control_plane, namespace, _vi("plain")).returncode == 0
    plugin = communication_plugin("sms", image="ghcr.io/switchboard-dev/plugin-twilio-sms:0.1.0")
    assert as_alice(control_plane, namespace, plugin).returncode == 0


def test_granted_rights_admit_and_an_update_is_checked_only_for_what_it_changes(
    control_plane: ControlPlane, namespace: str, admission_policy: str
) -> None:
    grant_alice_authoring(control_plane, namespace)
    wait_for_policy(control_plane, namespace)
    # An admin made an elevated integration that uses a Secret; alice may change
    # its replicas (nothing she lacks changes), not its image or its level.
    control_plane.kubectl("create", "secret", "generic", "team-b-credentials", "-n", namespace)
    elevated = _vi("shared", securityLevel="elevated", secretRef={"name": "team-b-credentials"})
    control_plane.kubectl(
        "apply", "--server-side", "-n", namespace, "-f", "-", input=yaml.safe_dump(elevated)
    )
    assert (
        as_alice(
            control_plane, namespace, {**elevated, "spec": {**elevated["spec"], "replicas": 2}}
        ).returncode
        == 0
    )
    raised = {**elevated, "spec": {**elevated["spec"], "securityLevel": "system"}}
    assert as_alice(control_plane, namespace, raised).returncode != 0
    # A platform team grants her the elevated level and the Secret: now admitted.
    control_plane.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "elevated-author", "namespace": namespace},
            "rules": [
                {
                    "apiGroups": [constants.GROUP],
                    "resources": ["securitylevels"],
                    "resourceNames": ["elevated"],
                    "verbs": ["use"],
                },
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": ["team-b-credentials"],
                    "verbs": ["get"],
                },
            ],
        }
    )
    control_plane.kubectl(
        "create",
        "rolebinding",
        "alice-elevated",
        "--role=elevated-author",
        f"--user={ALICE}",
        "-n",
        namespace,
    )
    own = _vi("own", securityLevel="elevated", secretRef={"name": "team-b-credentials"})
    wait_for(
        lambda: as_alice(control_plane, namespace, own).returncode == 0,
        timeout=30,
        what="the granted rights to admit alice's elevated integration",
    )
    assert (
        as_alice(control_plane, namespace, _vi("own-system", securityLevel="system")).returncode
        != 0
    )


# --- without the policy: the operator refuses what it can judge alone --------------------


@pytest.mark.asyncio
async def test_the_operator_trusts_the_admission_policy_only_while_it_is_in_force(
    crds_installed: ControlPlane, admission_policy: str
) -> None:
    """A deleted binding must not leave the cluster with nobody checking levels."""
    settings = OperatorSettings(admission_policy=admission_policy, allowed_registries=["ghcr.io/"])
    operator = Operator(settings, config=kube_config(str(crds_installed.kubeconfig)))
    operator.reconciler = Reconciler(operator.kube, settings)
    try:
        await operator.follow_admission_policy()
        assert operator.admission_policy_in_force is True
        assert operator.reconciler.policy.max_security_level is None  # the policy decides
        assert operator.reconciler.policy.allowed_registries == ()

        crds_installed.kubectl("delete", "validatingadmissionpolicybinding", admission_policy)
        await operator.follow_admission_policy()
        assert operator.admission_policy_in_force is False
        assert operator.reconciler.policy.max_security_level == "standard"
        assert operator.reconciler.policy.allowed_registries == ("ghcr.io/",)

        missing = Operator(
            OperatorSettings(admission_policy="no-such-policy"),
            config=kube_config(str(crds_installed.kubeconfig)),
        )
        missing.reconciler = Reconciler(missing.kube, missing.settings)
        await missing.follow_admission_policy()
        assert missing.admission_policy_in_force is False
        assert missing.reconciler.policy.max_security_level == "standard"
        await missing.kube.close()
    finally:
        await operator.kube.close()
        await loops.connections_closed()


def test_the_operator_refuses_a_level_above_the_namespace_ceiling_until_the_namespace_allows_it(
    cluster: Cluster,
) -> None:
    grant_alice_authoring(cluster.plane, cluster.namespace)
    assert (
        as_alice(
            cluster.plane, cluster.namespace, _vi("escalate", securityLevel="system")
        ).returncode
        == 0
    )
    refused = cluster.wait_condition(
        "VendorIntegration", "escalate", "ConfigValid", "False", "SecurityLevelRefused"
    )
    assert "'system'" in refused["message"]
    assert "switchboard.dev/max-security-level" in refused["message"]
    stalled = cluster.condition("VendorIntegration", "escalate", "Stalled")
    assert stalled and stalled["status"] == "True"
    assert cluster.deployment("VendorIntegration", "escalate") is None
    warnings = [
        e
        for e in cluster.core.list_namespaced_event(cluster.namespace).items
        if e.involved_object.name == "escalate" and e.reason == "SecurityLevelRefused"
    ]
    assert warnings and warnings[0].type == "Warning"

    # The platform team raises the namespace's ceiling to elevated: an elevated
    # integration runs, a system one still does not.
    cluster.plane.kubectl(
        "label", "namespace", cluster.namespace, f"{constants.LABEL_MAX_SECURITY_LEVEL}=elevated"
    )
    as_alice(cluster.plane, cluster.namespace, _vi("raised", securityLevel="elevated"))
    cluster.wait_condition("VendorIntegration", "raised", "Ready", "True")
    cluster.wait_condition(
        "VendorIntegration", "escalate", "ConfigValid", "False", "SecurityLevelRefused"
    )


def test_the_operator_refuses_an_image_outside_the_allowed_registries(cluster: Cluster) -> None:
    grant_alice_authoring(cluster.plane, cluster.namespace)
    as_alice(cluster.plane, cluster.namespace, _vi("foreign", image="docker.io/someone/voltha:1"))
    refused = cluster.wait_condition(
        "VendorIntegration", "foreign", "ConfigValid", "False", "ImageRefused"
    )
    assert "allowed registry" in refused["message"]
    assert cluster.deployment("VendorIntegration", "foreign") is None


# --- egress ------------------------------------------------------------------------------


def _egress(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    policy = k8s.NetworkingV1Api(cluster.api).read_namespaced_network_policy(
        name, cluster.namespace
    )
    egress: list[dict[str, Any]] = cluster.api.sanitize_for_serialization(policy.spec)["egress"]
    return egress


def test_declared_egress_reaches_exactly_its_ports_and_never_metadata_or_the_api_server(
    cluster: Cluster,
) -> None:
    # VOLTHA (55555) and PostgreSQL (5432) at the standard level: no `elevated` needed.
    cluster.apply(
        _vi(
            "voltha",
            egress=[
                {"cidrs": ["10.20.0.0/16"], "ports": [{"port": 55555}]},
                {"ports": [{"port": 5432}]},
            ],
        )
    )
    cluster.wait_condition("VendorIntegration", "voltha", "Ready", "True")
    egress = _egress(cluster, "voltha-integration")
    dns, voltha, postgres = egress
    assert {p["port"] for p in dns["ports"]} == {53}
    assert voltha == {
        "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
        "ports": [{"protocol": "TCP", "port": 55555}],
    }
    v4 = next(p["ipBlock"] for p in postgres["to"] if p["ipBlock"]["cidr"] == "0.0.0.0/0")
    v6 = next(p["ipBlock"] for p in postgres["to"] if p["ipBlock"]["cidr"] == "::/0")
    assert set(v4["except"]) == {"169.254.0.0/16", *API_SERVER_CIDRS}
    assert v6["except"] == ["fe80::/10"]
    assert postgres["ports"] == [{"protocol": "TCP", "port": 5432}]

    # Without a declaration, standard reaches the usual provider ports, still not metadata.
    cluster.apply(
        communication_plugin("sms", image="ghcr.io/switchboard-dev/plugin-twilio-sms:0.1.0")
    )
    cluster.wait_condition("CommunicationPlugin", "sms", "Ready", "True")
    _dns, default = _egress(cluster, "sms-plugin")
    assert {p["port"] for p in default["ports"]} == {443, 80, 25, 465, 587}
    v4 = next(p["ipBlock"] for p in default["to"] if p["ipBlock"]["cidr"] == "0.0.0.0/0")
    assert "169.254.0.0/16" in v4["except"]


def test_egress_into_the_metadata_service_is_refused(cluster: Cluster) -> None:
    cluster.apply(
        _vi("greedy", egress=[{"cidrs": ["169.254.169.254/32"], "ports": [{"port": 80}]}])
    )
    refused = cluster.wait_condition(
        "VendorIntegration", "greedy", "ConfigValid", "False", "EgressRefused"
    )
    assert "169.254.169.254/32" in refused["message"]
    assert cluster.deployment("VendorIntegration", "greedy") is None


# --- a child that cannot be applied ------------------------------------------------------


def test_a_child_the_api_refuses_degrades_the_resource_without_stopping_the_others(
    cluster: Cluster,
) -> None:
    # A quota that allows no Service: the Service cannot be created, every other child can.
    cluster.plane.apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "no-services", "namespace": cluster.namespace},
            "spec": {"hard": {"services": "0"}},
        }
    )
    wait_for(
        lambda: (
            (
                cluster.core.read_namespaced_resource_quota(
                    "no-services", cluster.namespace
                ).status.hard
                or {}
            ).get("services")
            == "0"
        ),
        what="the quota to be in force",
    )
    cluster.apply(
        communication_plugin("sms", image="ghcr.io/switchboard-dev/plugin-twilio-sms:0.1.0")
    )
    degraded = cluster.wait_condition(
        "CommunicationPlugin", "sms", "Degraded", "True", "ApplyFailed"
    )
    assert "Service/sms-plugin" in degraded["message"] and "exceeded quota" in degraded["message"]
    ready = cluster.condition("CommunicationPlugin", "sms", "Ready")
    assert ready and ready["status"] == "False" and ready["reason"] == "ApplyFailed"
    # The others were applied regardless.
    assert cluster.deployment("CommunicationPlugin", "sms") is not None
    cluster.core.read_namespaced_config_map("sms-plugin", cluster.namespace)
    k8s.NetworkingV1Api(cluster.api).read_namespaced_network_policy("sms-plugin", cluster.namespace)
    warning = wait_for(
        lambda: [
            e
            for e in cluster.core.list_namespaced_event(cluster.namespace).items
            if e.involved_object.name == "sms" and e.reason == "ApplyFailed" and e.type == "Warning"
        ],
        what="a Warning event ApplyFailed",
    )
    assert "exceeded quota" in warning[0].message

    cluster.plane.kubectl("delete", "resourcequota", "no-services", "-n", cluster.namespace)
    cluster.wait_condition("CommunicationPlugin", "sms", "Ready", "True", timeout=60)
    cluster.wait_condition("CommunicationPlugin", "sms", "Degraded", "False")


def test_a_hand_edited_service_port_is_repaired(
    cluster: Cluster, operator: RunningOperator
) -> None:
    cluster.apply(
        communication_plugin("sms", image="ghcr.io/switchboard-dev/plugin-twilio-sms:0.1.0")
    )
    cluster.wait_condition("CommunicationPlugin", "sms", "Ready", "True")
    # Renumbering the named port in place makes a plain server-side apply of ours
    # fail with 422 "duplicate port name" (the port list is keyed by number).
    cluster.plane.kubectl(
        "patch",
        "service",
        "sms-plugin",
        "-n",
        cluster.namespace,
        "--type=json",
        "-p",
        json.dumps([{"op": "replace", "path": "/spec/ports/0/port", "value": 50052}]),
    )

    def ports() -> list[tuple[str, int]]:
        service = cluster.core.read_namespaced_service("sms-plugin", cluster.namespace)
        return [(p.name, p.port) for p in service.spec.ports]

    wait_for(
        lambda: ports() == [(constants.PLUGIN_PORT_NAME, constants.PLUGIN_GRPC_PORT)],
        timeout=45,
        what="the Service's port to be restored",
    )
    assert operator.operator.kube.writes["repair Service"] >= 1
    cluster.wait_condition("CommunicationPlugin", "sms", "Ready", "True")
