"""The operator against a real control plane: what `kubectl` users see."""

from __future__ import annotations

import asyncio
import datetime
import json
from typing import Any

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from switchboard.api import constants
from switchboard.controller import licensing
from switchboard.controller.kube import Kube
from switchboard.controller.leader import LeaseElector
from switchboard.controller.reconciler import Reconciler
from switchboard.controller.runtime import Key
from switchboard.kubeclient import kube_config
from tests.cluster.conftest import RunningOperator
from tests.support import loops
from tests.support.controlplane import ControlPlane
from tests.support.resources import communication_plugin, vendor_integration
from tests.support.wait import wait_for

pytestmark = pytest.mark.cluster

GVK_PLURAL = {
    "CommunicationPlugin": constants.COMMUNICATION_PLUGINS,
    "VendorIntegration": constants.VENDOR_INTEGRATIONS,
}
SUFFIX = {"CommunicationPlugin": "-plugin", "VendorIntegration": "-integration"}


class Cluster:
    """What a test does to the cluster, as a user would with kubectl."""

    def __init__(self, plane: ControlPlane, api: k8s.ApiClient, namespace: str) -> None:
        self.plane, self.api, self.namespace = plane, api, namespace
        self.core = k8s.CoreV1Api(api)
        self.apps = k8s.AppsV1Api(api)
        self.custom = k8s.CustomObjectsApi(api)

    def apply(self, resource: dict[str, Any]) -> None:
        self.plane.kubectl(
            "apply",
            "--server-side",
            "-n",
            self.namespace,
            "-f",
            "-",
            input=yaml.safe_dump(resource),
        )

    def secret(self, name: str, **data: str) -> None:
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name},
                "stringData": data,
            }
        )

    def get(self, kind: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            constants.GROUP, constants.VERSION, self.namespace, GVK_PLURAL[kind], name
        )
        return obj

    def condition(self, kind: str, name: str, type_: str) -> dict[str, Any] | None:
        status = self.get(kind, name).get("status") or {}
        return next((c for c in status.get("conditions", []) if c["type"] == type_), None)

    def wait_condition(
        self,
        kind: str,
        name: str,
        type_: str,
        status: str,
        reason: str | None = None,
        timeout: float = 45,
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            c = self.condition(kind, name, type_)
            ok = c and c["status"] == status and (reason is None or c["reason"] == reason)
            return c if ok else None

        return wait_for(probe, timeout, what=f"{kind}/{name} {type_}={status} {reason or ''}")

    def deployment(self, kind: str, name: str) -> k8s.V1Deployment | None:
        try:
            return self.apps.read_namespaced_deployment(name + SUFFIX[kind], self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def pods(self, name: str) -> list[k8s.V1Pod]:
        selector = f"{constants.LABEL_PLUGIN}={name}"
        return list(self.core.list_namespaced_pod(self.namespace, label_selector=selector).items)

    def set_pod_status(self, pod: str, status: dict[str, Any]) -> None:
        """Play the kubelet: write a pod's status as a node would."""
        self.plane.kubectl(
            "patch",
            "pod",
            pod,
            "-n",
            self.namespace,
            "--subresource=status",
            "--type=strategic",
            "-p",
            json.dumps({"status": status}),
        )


@pytest.fixture
def cluster(
    operator: RunningOperator,
    control_plane: ControlPlane,
    api_client: k8s.ApiClient,
    namespace: str,
) -> Cluster:
    return Cluster(control_plane, api_client, namespace)


def _sms(name: str = "sms", **spec: Any) -> dict[str, Any]:
    spec.setdefault("image", "ghcr.io/switchboard-dev/plugin-twilio-sms:0.1.0")
    return communication_plugin(name, **spec)


# --- children and their security ---------------------------------------------------


def test_plugin_becomes_ready_with_secured_owned_children(cluster: Cluster) -> None:
    cluster.secret("twilio", TWILIO_AUTH_TOKEN="s3cr3t-value")
    cluster.apply(
        _sms(secretRef={"name": "twilio"}, requiredSecrets=["TWILIO_AUTH_TOKEN"], config={"a": 1})
    )
    out = cluster.plane.kubectl(
        "wait",
        "--for=condition=Ready",
        "communicationplugin/sms",
        "-n",
        cluster.namespace,
        "--timeout=60s",
    )
    assert "condition met" in out.stdout

    plugin = cluster.get("CommunicationPlugin", "sms")
    status = plugin["status"]
    assert status["observedGeneration"] == plugin["metadata"]["generation"]
    assert all(
        c["observedGeneration"] == plugin["metadata"]["generation"] for c in status["conditions"]
    )
    assert (status["replicas"], status["readyReplicas"]) == (1, 1)
    types = {c["type"]: c["status"] for c in status["conditions"]}
    assert types["SecretsReady"] == "True" and types["ConfigValid"] == "True"
    assert types["Progressing"] == "False" and types["Degraded"] == "False"
    assert types["Stalled"] == "False" and types["Reconciling"] == "False"
    assert "kopf" not in status

    deployment = cluster.deployment("CommunicationPlugin", "sms")
    assert deployment is not None
    owner = deployment.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("CommunicationPlugin", "sms", True)
    pod_spec = deployment.spec.template.spec
    assert pod_spec.security_context.run_as_non_root is True
    assert pod_spec.security_context.seccomp_profile.type == "RuntimeDefault"
    assert pod_spec.automount_service_account_token is False
    container = pod_spec.containers[0]
    assert container.security_context.read_only_root_filesystem is True
    assert container.security_context.allow_privilege_escalation is False
    assert container.security_context.capabilities.drop == ["ALL"]
    assert container.readiness_probe.grpc.port == constants.PLUGIN_GRPC_PORT
    assert container.liveness_probe.grpc.port == constants.PLUGIN_GRPC_PORT
    assert container.termination_message_policy == "FallbackToLogsOnError"
    secret_mount = next(m for m in container.volume_mounts if m.name == "secrets")
    assert secret_mount.read_only and secret_mount.mount_path == constants.PLUGIN_SECRETS_DIR
    assert deployment.spec.strategy.rolling_update.max_unavailable == 0

    # Pods were admitted under enforce=restricted and kwok made them ready.
    pods = cluster.pods("sms")
    assert len(pods) == 1 and pods[0].status.phase == "Running"

    service = cluster.core.read_namespaced_service("sms-plugin", cluster.namespace)
    assert [p.port for p in service.spec.ports] == [constants.PLUGIN_GRPC_PORT]
    config = cluster.core.read_namespaced_config_map("sms-plugin", cluster.namespace)
    assert json.loads(config.data["config.json"]) == {"a": 1}
    policy = k8s.NetworkingV1Api(cluster.api).read_namespaced_network_policy(
        "sms-plugin", cluster.namespace
    )
    assert policy.spec.policy_types == ["Ingress", "Egress"]
    account = cluster.core.read_namespaced_service_account("sms-plugin", cluster.namespace)
    assert account.automount_service_account_token is False
    # No secret value in any child the operator wrote.
    dumped = json.dumps(
        [cluster.api.sanitize_for_serialization(o) for o in (deployment, config, service, policy)]
    )
    assert "s3cr3t-value" not in dumped
    assert wait_for(
        lambda: (
            (cluster.get("CommunicationPlugin", "sms")["status"].get("endpoints") or {}).get(
                "ready"
            )
            == 1
        ),
        what="one ready endpoint in status",
    )


def test_ready_follows_the_pods(cluster: Cluster) -> None:
    cluster.apply(_sms())
    cluster.wait_condition("CommunicationPlugin", "sms", "Ready", "True")
    pod = cluster.pods("sms")[0].metadata.name
    cluster.set_pod_status(pod, {"conditions": [{"type": "Ready", "status": "False"}]})
    # The EndpointSlice may say so before the Deployment does ("1/1 plugin pods
    # ready; waiting for their endpoints"), and kwok's fake pods do not always let
    # the Deployment see it: either way the resource is PodsNotReady.
    ready = cluster.wait_condition("CommunicationPlugin", "sms", "Ready", "False", "PodsNotReady")
    assert "plugin pods ready" in ready["message"]
    assert cluster.condition("CommunicationPlugin", "sms", "Degraded")["status"] == "True"  # type: ignore[index]
    cluster.set_pod_status(pod, {"conditions": [{"type": "Ready", "status": "True"}]})
    cluster.wait_condition("CommunicationPlugin", "sms", "Ready", "True")


def test_disruption_budget_exists_only_with_more_than_one_replica(cluster: Cluster) -> None:
    policy = k8s.PolicyV1Api(cluster.api)
    cluster.apply(_sms(replicas=2))
    cluster.wait_condition("CommunicationPlugin", "sms", "Ready", "True")
    assert policy.read_namespaced_pod_disruption_budget("sms-plugin", cluster.namespace)
    cluster.apply(_sms(replicas=1))

    def gone() -> bool:
        try:
            policy.read_namespaced_pod_disruption_budget("sms-plugin", cluster.namespace)
        except ApiException as error:
            return error.status == 404
        return False

    wait_for(gone, what="the PodDisruptionBudget to be removed")


def test_deleting_the_resource_garbage_collects_children(cluster: Cluster) -> None:
    cluster.apply(_sms())
    cluster.wait_condition("CommunicationPlugin", "sms", "Ready", "True")
    cluster.plane.kubectl("delete", "communicationplugin", "sms", "-n", cluster.namespace)
    wait_for(lambda: cluster.deployment("CommunicationPlugin", "sms") is None, 60, what="GC")


def test_a_deleted_or_edited_child_is_restored(cluster: Cluster) -> None:
    cluster.apply(_sms(config={"region": "eu"}))
    cluster.wait_condition("CommunicationPlugin", "sms", "Ready", "True")
    ns = cluster.namespace
    cluster.plane.kubectl("delete", "service", "sms-plugin", "-n", ns)
    wait_for(
        lambda: (
            cluster.plane.kubectl("get", "service", "sms-plugin", "-n", ns, check=False).returncode
            == 0
        ),
        what="the Service to come back",
    )
    cluster.plane.kubectl("scale", "deployment", "sms-plugin", "--replicas=4", "-n", ns)
    wait_for(
        lambda: cluster.deployment("CommunicationPlugin", "sms").spec.replicas == 1,  # type: ignore[union-attr]
        what="the Deployment to be scaled back to 1",
    )
    cluster.plane.kubectl(
        "patch", "configmap", "sms-plugin", "-n", ns, "-p", '{"data":{"config.json":"{}"}}'
    )
    wait_for(
        lambda: (
            json.loads(
                cluster.core.read_namespaced_config_map("sms-plugin", ns).data["config.json"]
            )
            == {"region": "eu"}
        ),
        what="the ConfigMap to be restored",
    )


# --- hot reload ----------------------------------------------------------------------


def _template_annotations(cluster: Cluster, name: str) -> dict[str, str]:
    deployment = cluster.deployment("CommunicationPlugin", name)
    assert deployment is not None
    return dict(deployment.spec.template.metadata.annotations)


def test_config_change_and_secret_rotation_each_roll_exactly_one_deployment(
    cluster: Cluster,
) -> None:
    cluster.secret("creds-a", TOKEN="one")
    cluster.secret("creds-b", TOKEN="one")
    cluster.apply(_sms("sms-a", secretRef={"name": "creds-a"}, config={"from": "A"}))
    cluster.apply(_sms("sms-b", priority=2, secretRef={"name": "creds-b"}, config={"from": "B"}))
    cluster.wait_condition("CommunicationPlugin", "sms-a", "Ready", "True")
    cluster.wait_condition("CommunicationPlugin", "sms-b", "Ready", "True")
    before_a = _template_annotations(cluster, "sms-a")
    b_version = cluster.deployment("CommunicationPlugin", "sms-b").metadata.resource_version  # type: ignore[union-attr]

    cluster.apply(_sms("sms-a", secretRef={"name": "creds-a"}, config={"from": "A2"}))
    after_config = wait_for(
        lambda: (
            (a := _template_annotations(cluster, "sms-a"))[constants.ANNOTATION_CONFIG_CHECKSUM]
            != before_a[constants.ANNOTATION_CONFIG_CHECKSUM]
            and a
        ),
        what="the config checksum to change",
    )
    assert (
        after_config[constants.ANNOTATION_SECRET_CHECKSUM]
        == before_a[constants.ANNOTATION_SECRET_CHECKSUM]
    )
    cluster.secret("creds-a", TOKEN="two")
    wait_for(
        lambda: (
            _template_annotations(cluster, "sms-a")[constants.ANNOTATION_SECRET_CHECKSUM]
            != after_config[constants.ANNOTATION_SECRET_CHECKSUM]
        ),
        what="the secret checksum to change",
    )
    cluster.wait_condition("CommunicationPlugin", "sms-a", "Ready", "True")
    deployment_b = cluster.deployment("CommunicationPlugin", "sms-b")
    assert deployment_b is not None and deployment_b.metadata.resource_version == b_version


# --- gates ---------------------------------------------------------------------------


def test_missing_secret_blocks_deployment_and_recovers_when_fixed(cluster: Cluster) -> None:
    cluster.apply(_sms(secretRef={"name": "twilio"}, requiredSecrets=["SID", "TOKEN"]))
    missing = cluster.wait_condition(
        "CommunicationPlugin", "sms", "SecretsReady", "False", "SecretNotFound"
    )
    assert "'twilio'" in missing["message"]
    ready = cluster.condition("CommunicationPlugin", "sms", "Ready")
    assert ready and ready["status"] == "False" and ready["reason"] == "SecretNotFound"
    assert cluster.deployment("CommunicationPlugin", "sms") is None

    cluster.secret("twilio", SID="AC123")
    lacking = cluster.wait_condition(
        "CommunicationPlugin", "sms", "SecretsReady", "False", "SecretKeyMissing"
    )
    assert "TOKEN" in lacking["message"] and "SID" not in lacking["message"].split("key(s)")[1]
    assert cluster.deployment("CommunicationPlugin", "sms") is None

    cluster.secret("twilio", SID="AC123", TOKEN="t")
    cluster.wait_condition("CommunicationPlugin", "sms", "Ready", "True")
    events = cluster.core.list_namespaced_event(cluster.namespace).items
    reasons = {(e.reason, e.involved_object.name) for e in events}
    assert ("SecretNotFound", "sms") in reasons and ("Available", "sms") in reasons


def test_image_policy_refuses_unlisted_registry_and_tag_only_production_image(
    cluster: Cluster,
) -> None:
    cluster.apply(_sms(image="docker.io/someone/sms:latest"))
    refused = cluster.wait_condition(
        "CommunicationPlugin", "sms", "ConfigValid", "False", "ImageRefused"
    )
    assert "allowed registry" in refused["message"]
    assert cluster.condition("CommunicationPlugin", "sms", "Stalled")["status"] == "True"  # type: ignore[index]
    cluster.apply(
        vendor_integration("voltha", image="registry.test/voltha:1.0", environment="production")
    )
    refused = cluster.wait_condition(
        "VendorIntegration", "voltha", "ConfigValid", "False", "ImageRefused"
    )
    assert "digest-pinned" in refused["message"]
    assert cluster.deployment("VendorIntegration", "voltha") is None
    pinned = "registry.test/voltha@sha256:" + "a" * 64
    cluster.apply(vendor_integration("voltha", image=pinned, environment="production"))
    cluster.wait_condition("VendorIntegration", "voltha", "Ready", "True")
    deployment = cluster.deployment("VendorIntegration", "voltha")
    assert deployment is not None and deployment.spec.replicas == 3  # the production preset


def test_termination_message_of_a_rejected_config_surfaces_as_config_valid_false(
    cluster: Cluster,
) -> None:
    cluster.apply(_sms(config={"port": "not-a-number"}))
    cluster.wait_condition("CommunicationPlugin", "sms", "Ready", "True")
    pod = cluster.pods("sms")[0].metadata.name
    cluster.set_pod_status(
        pod,
        {
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [
                {
                    "name": "plugin",
                    "image": "ghcr.io/switchboard-dev/plugin-twilio-sms:0.1.0",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {
                        "terminated": {
                            "exitCode": 2,
                            "reason": "Error",
                            "message": "config.port: 'not-a-number' is not of type 'integer'",
                        }
                    },
                }
            ],
        },
    )
    rejected = cluster.wait_condition(
        "CommunicationPlugin", "sms", "ConfigValid", "False", "ConfigRejected"
    )
    assert "config.port: 'not-a-number' is not of type 'integer'" in rejected["message"]
    ready = cluster.condition("CommunicationPlugin", "sms", "Ready")
    assert ready and ready["status"] == "False" and ready["reason"] == "ConfigRejected"


# --- VendorIntegration ---------------------------------------------------------------


def _vi(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("image", "registry.test/plugin-voltha:1.0")
    return vendor_integration(name, **spec)


def test_dependencies_deploy_in_order(cluster: Cluster) -> None:
    cluster.apply(
        _vi("analytics", vendor="analytics", integrationType="analytics", dependsOn=["voltha"])
    )
    waiting = cluster.wait_condition(
        "VendorIntegration", "analytics", "DependenciesReady", "False", "WaitingForDependency"
    )
    assert "'voltha'" in waiting["message"]
    assert cluster.deployment("VendorIntegration", "analytics") is None
    cluster.apply(_vi("voltha"))
    cluster.wait_condition("VendorIntegration", "voltha", "Ready", "True")
    cluster.wait_condition("VendorIntegration", "analytics", "Ready", "True")
    met = cluster.condition("VendorIntegration", "analytics", "DependenciesReady")
    assert met and met["reason"] == "DependenciesMet"


def test_dependency_cycle_is_rejected_naming_the_cycle(cluster: Cluster) -> None:
    cluster.apply(_vi("alpha", dependsOn=["beta"]))
    cluster.apply(_vi("beta", dependsOn=["alpha"]))
    cycle = cluster.wait_condition(
        "VendorIntegration", "alpha", "DependenciesReady", "False", "DependencyCycle"
    )
    assert "alpha → beta → alpha" in cycle["message"]
    assert cluster.condition("VendorIntegration", "alpha", "Stalled")["status"] == "True"  # type: ignore[index]
    assert cluster.deployment("VendorIntegration", "alpha") is None


def _license(
    operator: RunningOperator,
    namespace: str,
    expires_in: datetime.timedelta,
    plugin: str = "voltha",
) -> str:
    expires = datetime.datetime.now(datetime.UTC) + expires_in
    return licensing.sign(operator.license_key, plugin, namespace, expires)


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("valid", "True", "LicenseValid"),
        ("in-grace", "True", "LicenseInGracePeriod"),
        ("expired", "False", "LicenseExpired"),
        ("forged", "False", "LicenseInvalid"),
        ("other-tenant", "False", "LicenseInvalid"),
    ],
)
def test_licence_is_checked(
    cluster: Cluster, operator: RunningOperator, case: str, status: str, reason: str
) -> None:
    ns = cluster.namespace
    token = {
        "valid": lambda: _license(operator, ns, datetime.timedelta(days=30)),
        "in-grace": lambda: _license(operator, ns, datetime.timedelta(hours=-2)),
        "expired": lambda: _license(operator, ns, datetime.timedelta(days=-3)),
        "forged": lambda: licensing.sign(
            Ed25519PrivateKey.generate(),
            "voltha",
            ns,
            datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30),
        ),
        "other-tenant": lambda: _license(operator, "someone-else", datetime.timedelta(days=30)),
    }[case]()
    cluster.secret("voltha-license", license=token)
    cluster.apply(_vi("voltha", license={"secretName": "voltha-license"}))
    condition = cluster.wait_condition("VendorIntegration", "voltha", "Licensed", status, reason)
    if status == "True":
        cluster.wait_condition("VendorIntegration", "voltha", "Ready", "True")
    else:
        assert cluster.deployment("VendorIntegration", "voltha") is None
        assert token not in condition["message"]


def test_expired_licence_stops_a_running_integration(
    cluster: Cluster, operator: RunningOperator
) -> None:
    ns = cluster.namespace
    cluster.secret("voltha-license", license=_license(operator, ns, datetime.timedelta(days=30)))
    cluster.apply(_vi("voltha", license={"secretName": "voltha-license"}))
    cluster.wait_condition("VendorIntegration", "voltha", "Ready", "True")
    cluster.secret("voltha-license", license=_license(operator, ns, datetime.timedelta(days=-5)))
    cluster.wait_condition("VendorIntegration", "voltha", "Licensed", "False", "LicenseExpired")
    wait_for(
        lambda: cluster.deployment("VendorIntegration", "voltha").spec.replicas == 0,  # type: ignore[union-attr]
        what="the unlicensed integration to be scaled to zero",
    )


# --- writes --------------------------------------------------------------------------


def test_reconciling_a_settled_resource_writes_nothing(
    cluster: Cluster, operator: RunningOperator
) -> None:
    cluster.secret("creds", TOKEN="x")
    cluster.apply(_sms(secretRef={"name": "creds"}, replicas=2))
    cluster.wait_condition("CommunicationPlugin", "sms", "Ready", "True")

    async def reconcile_twice() -> Kube:
        kube = Kube.from_config(kube_config(str(cluster.plane.kubeconfig)), "switchboard-operator")
        reconciler = Reconciler(kube, operator.settings)
        key = Key("CommunicationPlugin", cluster.namespace, "sms")
        await reconciler.reconcile(key)
        await reconciler.reconcile(key)
        await kube.close()
        return kube

    kube = loops.run(reconcile_twice())
    assert sum(kube.writes.values()) == 0, kube.writes


# --- two replicas --------------------------------------------------------------------


def test_only_one_replica_holds_the_lease_and_a_standby_takes_over(cluster: Cluster) -> None:
    async def elect() -> None:
        kube = Kube.from_config(kube_config(str(cluster.plane.kubeconfig)), "switchboard-operator")
        first = LeaseElector(kube.client, cluster.namespace, "switchboard-operator", "pod-a", 2)
        second = LeaseElector(kube.client, cluster.namespace, "switchboard-operator", "pod-b", 2)
        assert await first.try_acquire()
        assert not await second.try_acquire()
        assert await first.try_acquire()  # renewing one's own lease works
        # The leader stops renewing (it died); after the lease runs out the standby leads.
        for _ in range(40):
            if await second.try_acquire():
                break
            await asyncio.sleep(0.25)
        else:
            raise AssertionError("the standby never took over")
        assert not await first.try_acquire()
        await kube.close()

    loops.run(elect())
    lease = k8s.CoordinationV1Api(cluster.api).read_namespaced_lease(
        "switchboard-operator", cluster.namespace
    )
    assert (lease.spec.holder_identity, lease.spec.lease_transitions) == ("pod-b", 1)


# --- what the operator shows ---------------------------------------------------------


def _metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text, or None."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        sample, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in sample for k, v in labels.items()):
            return float(value)
    return None


def test_metrics_and_probes_show_reconciles_writes_queue_and_conditions(
    cluster: Cluster, operator: RunningOperator
) -> None:
    cluster.apply(_sms())
    cluster.wait_condition("CommunicationPlugin", "sms", "Ready", "True")
    with httpx.Client(base_url=operator.metrics_url, timeout=10) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
        text = wait_for(
            lambda: (
                (body := http.get("/metrics").text)
                and (
                    _metric(
                        body,
                        "switchboard_operator_resources",
                        kind="CommunicationPlugin",
                        condition="Ready",
                        status="True",
                    )
                    or 0
                )
                >= 1
                and body
            ),
            what="a Ready CommunicationPlugin in the condition gauge",
        )
    ok = _metric(
        text, "switchboard_operator_reconciles_total", kind="CommunicationPlugin", result="ok"
    )
    assert ok is not None and ok >= 1
    applied = _metric(
        text, "switchboard_operator_api_writes_total", verb="apply", kind="Deployment"
    )
    assert applied is not None and applied >= 1
    assert _metric(text, "switchboard_operator_queue_depth") is not None
    assert _metric(text, "switchboard_operator_queue_oldest_seconds") is not None
    assert _metric(text, "switchboard_operator_leader") == 1
    assert "switchboard_operator_reconcile_seconds_bucket" in text


def test_kubectl_get_wide_shows_why_a_resource_is_not_ready(cluster: Cluster) -> None:
    cluster.apply(_sms(secretRef={"name": "absent"}))
    cluster.wait_condition("CommunicationPlugin", "sms", "Ready", "False", "SecretNotFound")
    wide = cluster.plane.kubectl(
        "get", "communicationplugin", "sms", "-n", cluster.namespace, "-o", "wide"
    ).stdout
    header, row = wide.splitlines()[:2]
    assert "STATUS" in header.split()
    assert "Secret 'absent' does not exist" in row
    narrow = cluster.plane.kubectl("get", "communicationplugin", "sms", "-n", cluster.namespace)
    assert "STATUS" not in narrow.stdout.splitlines()[0].split(), "priority 1: only with -o wide"


def _errors_counted(operator: RunningOperator) -> float:
    text = httpx.get(f"{operator.metrics_url}/metrics", timeout=10).text
    counted = _metric(
        text, "switchboard_operator_reconciles_total", kind="CommunicationPlugin", result="error"
    )
    return counted or 0.0


def test_a_failing_reconcile_is_retried_with_growing_delays_and_reported(
    cluster: Cluster, operator: RunningOperator
) -> None:
    # An admission policy refuses every status write of this one resource: each
    # reconcile fails at its end, and nothing but back-off and Events can say so.
    name = f"deny-status-{cluster.namespace}"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [constants.GROUP],
                        "apiVersions": ["*"],
                        "operations": ["UPDATE"],
                        "resources": ["communicationplugins/status"],
                    }
                ]
            },
            "validations": [
                {
                    "expression": "!has(object.metadata.labels) || "
                    "!('test.switchboard.dev/deny-status' in object.metadata.labels)",
                    "message": "status writes are refused by this test",
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": cluster.namespace}
                }
            },
        },
    }
    cluster.plane.apply(yaml.safe_dump_all([policy, binding]))
    denied = {"test.switchboard.dev/deny-status": "true"}
    try:
        probe = _sms("probe")
        probe["metadata"]["labels"] = denied
        cluster.apply(probe)
        wait_for(
            lambda: (
                cluster.plane.kubectl(
                    "patch",
                    "communicationplugin",
                    "probe",
                    "-n",
                    cluster.namespace,
                    "--subresource=status",
                    "--type=merge",
                    "--dry-run=server",
                    "-p",
                    '{"status": {"replicas": 7}}',
                    check=False,
                ).returncode
                != 0
            ),
            timeout=30,
            what="the test's admission policy to be in force",
        )
        errors_before = _errors_counted(operator)
        stuck = _sms("stuck")
        stuck["metadata"]["labels"] = denied
        cluster.apply(stuck)

        def failures() -> list[str]:
            return sorted(
                (
                    e.message
                    for e in cluster.core.list_namespaced_event(cluster.namespace).items
                    if e.involved_object.name == "stuck" and e.reason == "ReconcileFailed"
                ),
                key=lambda m: float(m.rsplit("retrying in ", 1)[1].rstrip("s.")),
            )

        seen = wait_for(
            lambda: (found := failures()) and len(found) >= 3 and found,
            timeout=60,
            what="three ReconcileFailed events",
        )
        assert all(
            e.type == "Warning"
            for e in cluster.core.list_namespaced_event(cluster.namespace).items
            if e.reason == "ReconcileFailed"
        )
        assert "refused by this test" in seen[0]
        delays = [float(m.rsplit("retrying in ", 1)[1].rstrip("s.")) for m in seen]
        assert delays[:3] == [1.0, 2.0, 4.0], delays
        # And the operator's metrics count them (an alert on errors can fire).
        assert _errors_counted(operator) - errors_before >= 3
        assert cluster.deployment("CommunicationPlugin", "stuck") is not None
    finally:
        cluster.plane.kubectl("delete", "-f", "-", input=yaml.safe_dump_all([policy, binding]))
    # Once the status can be written again, a retry makes it Ready.
    cluster.wait_condition("CommunicationPlugin", "stuck", "Ready", "True", timeout=60)
