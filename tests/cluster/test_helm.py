"""The Helm chart against the real API server: it lints, renders manifests the
API server accepts, installs until its pods are Ready, and grants its
ServiceAccounts exactly enough.

The RBAC proof runs the real operator in this process, authenticated only by
a token of the chart's operator ServiceAccount, through a full reconcile: a
permission the chart forgot makes it fail.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from lightkube import KubeConfig
from lightkube.config.kubeconfig import SingleConfig
from lightkube.config.models import Cluster, User
from pydantic_settings import BaseSettings

from switchboard import cli
from switchboard.api import constants
from switchboard.api.models import Environment
from switchboard.controller import licensing
from switchboard.controller.kube import Kube
from switchboard.controller.leader import LeaseElector
from switchboard.controller.main import Operator
from switchboard.controller.settings import OperatorSettings
from switchboard.logs import extra_fields, render_fields
from switchboard.router.settings import RouterSettings
from tests.cluster.conftest import start_in_thread
from tests.conftest import REPO_ROOT
from tests.support import loops
from tests.support.controlplane import ControlPlane
from tests.support.resources import communication_plugin, vendor_integration
from tests.support.wait import wait_for

pytestmark = pytest.mark.cluster

BaseSettingsT = TypeVar("BaseSettingsT", bound=BaseSettings)

CHART = REPO_ROOT / "helm" / "switchboard"
RELEASE = "switchboard"
OPERATOR_SA = "switchboard-operator"
ROUTER_SA = "switchboard-router"
#: Only the in-process operator of these tests admits this registry, so no
#: other operator in the session deploys what these tests create.
TEST_REGISTRY = "registry.rbac.invalid/"

#: Everything the defaults leave off, on.
NON_DEFAULT_VALUES: dict[str, Any] = {
    "crds": {"enabled": False},
    "admissionPolicy": {"enabled": False},
    "tests": {"enabled": False},
    "image": {"digest": "sha256:" + "ab" * 32, "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "registry-pull"}],
    "operator": {
        "replicas": 3,
        "settings": {
            "allowedRegistries": ["ghcr.io/acme/"],
            "presets": {
                "production": {
                    "replicas": 4,
                    "resources": {"requests": {"cpu": "200m"}, "limits": {"memory": "1Gi"}},
                    "logLevel": "WARNING",
                    "requireDigest": True,
                }
            },
            "maxSecurityLevel": "elevated",
            "licenseGraceDays": 2.5,
            "resyncSeconds": 30,
        },
        "extraEnv": [{"name": "OTEL_SERVICE_NAME", "value": "switchboard-operator"}],
        "podDisruptionBudget": {"enabled": True},
        "networkPolicy": {"enabled": True, "apiServerCIDRs": ["10.96.0.1/32"]},
        "podAnnotations": {"example.com/team": "messaging"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "priorityClassName": "",
    },
    "router": {
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6},
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": "50%"},
        "networkPolicy": {
            "enabled": True,
            "ingressFrom": [
                {"namespaceSelector": {"matchLabels": {"switchboard.dev/client": "true"}}}
            ],
        },
        "service": {"annotations": {"example.com/lb": "internal"}},
        "ledger": {"database": "postgresql", "existingSecret": "ledger-database"},
    },
    "serviceMonitor": {"enabled": False},
}

#: A ServiceMonitor CRD with just enough schema to accept what the chart renders.
SERVICE_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {
            "kind": "ServiceMonitor",
            "plural": "servicemonitors",
            "singular": "servicemonitor",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


# --- helpers -------------------------------------------------------------------------


def helm(
    plane: ControlPlane, *args: str, check: bool = True, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [plane.binary("helm"), f"--kubeconfig={plane.kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}{result.stdout}")
    return result


def values_file(directory: Path, values: dict[str, Any]) -> str:
    path = directory / f"values-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def render(plane: ControlPlane, namespace: str, *args: str) -> str:
    return helm(plane, "template", RELEASE, str(CHART), "--namespace", namespace, *args).stdout


def objects(manifest: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def find(manifest: str, kind: str, component: str) -> dict[str, Any]:
    return next(
        o
        for o in objects(manifest)
        if o["kind"] == kind
        and o["metadata"]["labels"].get("app.kubernetes.io/component") == component
    )


def server_dry_run(plane: ControlPlane, manifest: str) -> str:
    """Submit to the API server without persisting: schema, admission (pod security) and all.

    `helm test` hooks are left out: they are made when the test runs, and the
    hook pod needs the hook ServiceAccount, which a dry run does not keep."""
    installed = [
        o
        for o in objects(manifest)
        if "helm.sh/hook" not in ((o.get("metadata") or {}).get("annotations") or {})
    ]
    manifest = yaml.safe_dump_all(installed)
    return plane.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=helm-test",
        "--dry-run=server",
        "-f",
        "-",
        input=manifest,
    ).stdout


def assert_no_wildcard_rules(manifest: str) -> None:
    for role in objects(manifest):
        if role["kind"] in ("Role", "ClusterRole"):
            for rule in role["rules"]:
                for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                    assert not any("*" in item for item in rule.get(field, [])), (
                        role["metadata"]["name"],
                        rule,
                    )


def operator_setting(release: Release, variable: str) -> str:
    """A setting of the installed operator, as its Deployment sets it."""
    deployments = release.plane.kubectl(
        "get",
        "deployments",
        "-n",
        release.namespace,
        "-l",
        "app.kubernetes.io/component=operator",
        "-o",
        "json",
    ).stdout
    container = json.loads(deployments)["items"][0]["spec"]["template"]["spec"]["containers"][0]
    return str(next(e["value"] for e in container["env"] if e["name"] == variable))


def can_i(plane: ControlPlane, subject: str, *args: str) -> bool:
    """`kubectl auth can-i` as a ServiceAccount, `subject` being `namespace:name`."""
    result = plane.kubectl(
        "auth", "can-i", f"--as=system:serviceaccount:{subject}", *args, check=False
    )
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


def service_account_token(plane: ControlPlane, namespace: str, service_account: str) -> str:
    return plane.kubectl(
        "create", "token", service_account, "-n", namespace, "--duration=1h"
    ).stdout.strip()


def token_config(plane: ControlPlane, namespace: str, service_account: str) -> SingleConfig:
    """The operator's connection, authenticated only with a ServiceAccount token."""
    config = KubeConfig.from_one(
        cluster=Cluster(server=plane.server, certificate_auth=str(plane.pki / "ca.crt")),
        user=User(token=service_account_token(plane, namespace, service_account)),
    ).get()
    assert config is not None
    return config


@dataclass
class Release:
    plane: ControlPlane
    namespace: str
    watch_namespace: str | None
    tenant: str

    @property
    def operator(self) -> str:
        return f"{self.namespace}:{OPERATOR_SA}"

    @property
    def router(self) -> str:
        return f"{self.namespace}:{ROUTER_SA}"


@pytest.fixture
def tenant(api_client: k8s.ApiClient) -> Iterator[str]:
    """A second namespace: where plugins live, apart from the release's own."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    k8s.CoreV1Api(api_client).create_namespace(
        k8s.V1Namespace(
            metadata=k8s.V1ObjectMeta(
                name=name, labels={"pod-security.kubernetes.io/enforce": "restricted"}
            )
        )
    )
    yield name
    k8s.CoreV1Api(api_client).delete_namespace(name)


@pytest.fixture(params=["cluster-wide", "namespaced"])
def release(
    request: pytest.FixtureRequest,
    crds_installed: ControlPlane,
    namespace: str,
    tenant: str,
    tmp_path: Path,
) -> Iterator[Release]:
    """The chart installed into a fresh namespace, cluster-wide or watching `tenant` only.

    The session installed the CRDs already (`crds_installed`), and CRDs are
    cluster-wide, so this release leaves them alone (crds.enabled=false);
    rendering them is tested with a server-side dry run instead.
    """
    watch = tenant if request.param == "namespaced" else None
    values = {
        "crds": {"enabled": False},
        "watchNamespace": watch or "",
        "tenantNamespaces": [tenant],
    }
    helm(
        crds_installed,
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        namespace,
        "--values",
        values_file(tmp_path, values),
        "--wait",
        "--timeout",
        "120s",
    )
    yield Release(crds_installed, namespace, watch, tenant)
    # ClusterRoles and their bindings outlive the namespace; the release removes them.
    helm(crds_installed, "uninstall", RELEASE, "--namespace", namespace, "--wait")


# --- lint and render -----------------------------------------------------------------


def test_chart_lints_with_default_and_non_default_values(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    helm(control_plane, "lint", "--strict", str(CHART))
    non_default = values_file(tmp_path, {**NON_DEFAULT_VALUES, "watchNamespace": "tenant-a"})
    helm(control_plane, "lint", "--strict", str(CHART), "--values", non_default)


def test_values_outside_the_schema_are_refused(control_plane: ControlPlane) -> None:
    misspelt = helm(
        control_plane, "template", str(CHART), "--set", "operator.replica=1", check=False
    )
    assert misspelt.returncode != 0
    assert "replica" in misspelt.stderr
    number_quantity = helm(
        control_plane,
        "template",
        str(CHART),
        "--set-json",
        'operator.settings.defaultResources={"requests":{"cpu":1}}',
        check=False,
    )
    assert number_quantity.returncode != 0, "the operator's settings need quantities as strings"


def test_default_render_is_accepted_by_the_api_server(
    crds_installed: ControlPlane, namespace: str
) -> None:
    manifest = render(crds_installed, namespace)
    kinds = sorted({o["kind"] for o in objects(manifest)})
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "Lease",  # the operator's, so that `helm uninstall` removes it
        "Pod",  # the `helm test` hook
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    crds = [o for o in objects(manifest) if o["kind"] == "CustomResourceDefinition"]
    assert {c["metadata"]["name"] for c in crds} == {
        "communicationplugins.switchboard.dev",
        "vendorintegrations.switchboard.dev",
    }
    assert all(c["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for c in crds)
    assert_no_wildcard_rules(manifest)
    server_dry_run(crds_installed, manifest)


def test_crds_render_without_keep_annotation_when_keep_is_false(
    control_plane: ControlPlane,
) -> None:
    manifest = render(control_plane, "default", "--set", "crds.keep=false")
    crds = [o for o in objects(manifest) if o["kind"] == "CustomResourceDefinition"]
    assert len(crds) == 2
    assert all(
        "helm.sh/resource-policy" not in (c["metadata"].get("annotations") or {}) for c in crds
    )


def test_non_default_render_is_accepted_by_the_api_server(
    control_plane: ControlPlane, namespace: str, tenant: str, tmp_path: Path
) -> None:
    values = {**NON_DEFAULT_VALUES, "watchNamespace": tenant}
    manifest = render(control_plane, namespace, "--values", values_file(tmp_path, values))
    kinds = sorted(o["kind"] for o in objects(manifest))
    assert kinds == [
        "ClusterRole",  # the operator's get on its one Namespace (its security-level label)
        "ClusterRole",  # the router's TokenReview/SubjectAccessReview, cluster-scoped
        "ClusterRoleBinding",
        "ClusterRoleBinding",
        "Deployment",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Lease",  # the operator's, so that `helm uninstall` removes it
        "NetworkPolicy",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "PodDisruptionBudget",
        "Role",  # the operator's, in the tenant namespace
        "Role",  # the operator's: the API server's EndpointSlices in default
        "Role",  # the operator's Lease, in the release namespace
        "Role",  # the router's, in the tenant namespace
        "RoleBinding",
        "RoleBinding",
        "RoleBinding",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ServiceAccount",
    ]
    roles = {
        (o["kind"], o["metadata"]["namespace"], o["metadata"]["name"])
        for o in objects(manifest)
        if o["kind"] == "Role"
    }
    assert roles == {
        ("Role", tenant, "switchboard-operator"),
        ("Role", tenant, "switchboard-router"),
        ("Role", namespace, "switchboard-operator-leader-election"),
        ("Role", "default", "switchboard-operator-api-server"),
    }
    namespaces = next(
        o for o in objects(manifest) if o["metadata"]["name"].endswith("-operator-namespaces")
    )
    assert namespaces["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["namespaces"],
            "resourceNames": [tenant],
            "verbs": ["get"],
        }
    ]
    router = find(manifest, "Deployment", "router")
    assert "replicas" not in router["spec"], "the HorizontalPodAutoscaler owns the replica count"
    assert router["spec"]["template"]["spec"]["containers"][0]["image"].endswith(
        "@sha256:" + "ab" * 32
    )
    assert_no_wildcard_rules(manifest)
    server_dry_run(control_plane, manifest)


def test_the_ledger_renders_for_each_database_and_refuses_what_cannot_work(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    default = render(control_plane, namespace)
    router = find(default, "Deployment", "router")
    env = {e["name"]: e for e in router["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert router["spec"]["replicas"] == 1, "a SQLite ledger lives in one pod"
    assert env["SWITCHBOARD_ROUTER_LEDGER_URL"]["value"].startswith("sqlite:////")
    assert env["SWITCHBOARD_ROUTER_INSTANCE"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.name"
    )

    values = {
        "router": {
            "ledger": {"database": "evaluation"},
            "receipts": {
                "publicUrl": "https://switchboard.example.com",
                "ingress": {"enabled": True, "host": "switchboard.example.com"},
            },
        }
    }
    evaluation = render(control_plane, namespace, "--values", values_file(tmp_path, values))
    secret = next(o for o in objects(evaluation) if o["kind"] == "Secret")
    password = secret["stringData"]["password"]
    router = find(evaluation, "Deployment", "router")
    env = {e["name"]: e for e in router["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SWITCHBOARD_ROUTER_LEDGER_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": "url",
    }
    assert env["SWITCHBOARD_ROUTER_PUBLIC_URL"]["value"] == "https://switchboard.example.com"
    assert router["spec"]["replicas"] == 2
    assert len(password) == 32
    assert password not in yaml.safe_dump_all(
        [o for o in objects(evaluation) if o["kind"] != "Secret"]
    )
    ingress = next(o for o in objects(evaluation) if o["kind"] == "Ingress")
    assert [p["path"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]] == [
        "/v1/receipts/"
    ]
    # The evaluation database passes the restricted pod security level.
    server_dry_run(control_plane, evaluation)
    # Or a Gateway API route: again only the receipts path, to the router's HTTP port.
    gateway = {
        "router": {
            "receipts": {
                "publicUrl": "https://switchboard.example.com",
                "httpRoute": {
                    "enabled": True,
                    "parentRefs": [{"name": "edge", "namespace": "gateways"}],
                    "hostnames": ["switchboard.example.com"],
                },
            }
        }
    }
    routed = render(control_plane, namespace, "--values", values_file(tmp_path, gateway))
    route = next(o for o in objects(routed) if o["kind"] == "HTTPRoute")
    assert route["spec"]["parentRefs"] == [{"name": "edge", "namespace": "gateways"}]
    assert route["spec"]["hostnames"] == ["switchboard.example.com"]
    [rule] = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/v1/receipts/"}}]
    router_service = find(routed, "Service", "router")
    assert [(b["name"], b["port"]) for b in rule["backendRefs"]] == [
        (router_service["metadata"]["name"], 8080)
    ]
    assert not any(o["kind"] == "Ingress" for o in objects(routed))

    for refused_values, complaint in (
        ({"router": {"ledger": {"database": "postgresql"}}}, "existingSecret"),
        ({"router": {"autoscaling": {"enabled": True}}}, "one pod"),
    ):
        refused = helm(
            control_plane,
            "template",
            str(CHART),
            "--values",
            values_file(tmp_path, refused_values),
            check=False,
        )
        assert refused.returncode != 0 and complaint in refused.stderr


def test_service_monitor_is_accepted_by_the_api_server(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.apply(SERVICE_MONITOR_CRD)
    control_plane.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
    )
    manifest = render(
        control_plane,
        namespace,
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "serviceMonitor.labels.release=prometheus",
    )
    monitor = find(manifest, "ServiceMonitor", "router")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    server_dry_run(control_plane, yaml.safe_dump(monitor))


def container_of(manifest: str, component: str) -> dict[str, Any]:
    deployment = find(manifest, "Deployment", component)
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def read_settings(
    settings_class: type[BaseSettingsT], container: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> BaseSettingsT:
    """The settings a container's process would load from its rendered environment."""
    with monkeypatch.context() as env:
        for name in list(os.environ):
            if name.startswith("SWITCHBOARD_"):
                env.delenv(name)
        for item in container.get("env", []):
            if "value" in item:
                env.setenv(item["name"], item["value"])
            elif item["name"] == "SWITCHBOARD_IDENTITY":  # the downward API: the pod name
                env.setenv(item["name"], "switchboard-operator-0")
        return settings_class()


def test_rendered_environment_is_what_operator_and_router_read(
    control_plane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    public_key = licensing.public_key_text(Ed25519PrivateKey.generate())
    values = {
        **NON_DEFAULT_VALUES,
        "watchNamespace": "tenant-a",
        "operator": {
            **NON_DEFAULT_VALUES["operator"],
            "settings": {
                **NON_DEFAULT_VALUES["operator"]["settings"],
                "licensePublicKeys": [public_key],
            },
        },
    }
    manifest = render(control_plane, "sb-system", "--values", values_file(tmp_path, values))
    operator, router = container_of(manifest, "operator"), container_of(manifest, "router")

    # Both commands parse as the CLI defines them.
    for container in (operator, router):
        program, command, *args = container["command"]
        assert program == "switchboard"
        subcommand = cli.main.get_command(click.Context(cli.main), command)
        assert subcommand is not None, command
        subcommand.make_context(command, list(args))
    assert router["command"][1:] == [
        "router",
        "--backend",
        "kubernetes",
        "--http-port",
        "8080",
        "--grpc-port",
        "9090",
    ]

    identity = next(e for e in operator["env"] if e["name"] == "SWITCHBOARD_IDENTITY")
    assert identity["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    settings = read_settings(OperatorSettings, operator, monkeypatch)
    assert settings.namespace == "tenant-a"
    assert settings.leader_election is True
    assert settings.identity == "switchboard-operator-0"
    assert (settings.lease_namespace, settings.lease_name) == ("sb-system", "switchboard-operator")
    assert settings.router_namespace == "sb-system"
    # The labels the operator's plugin NetworkPolicies admit are the chart's pod labels.
    for component, wanted in (
        ("router", settings.router_pod_labels),
        ("operator", settings.operator_pod_labels),
    ):
        pod_labels = find(manifest, "Deployment", component)["spec"]["template"]["metadata"]
        assert wanted.items() <= pod_labels["labels"].items()
    assert settings.allowed_registries == ["ghcr.io/acme/"]
    assert (settings.max_security_level, settings.admission_policy) == ("elevated", "")
    assert settings.api_server_cidrs == ["10.96.0.1/32"]
    production = settings.presets[Environment.PRODUCTION]
    assert (production.replicas, production.log_level, production.require_digest) == (
        4,
        "WARNING",
        True,
    )
    assert production.resources == {"requests": {"cpu": "200m"}, "limits": {"memory": "1Gi"}}
    assert settings.license_public_keys == [public_key]
    assert (settings.license_grace_days, settings.resync_seconds) == (2.5, 30)
    assert settings.default_resources["limits"] == {"memory": "256Mi"}

    # The router routes within the watched namespace only.
    assert read_settings(RouterSettings, router, monkeypatch).watch_namespace == "tenant-a"


def test_rendered_manifests_hold_no_secret(control_plane: ControlPlane, tmp_path: Path) -> None:
    """Licence keys in values are public keys; credentials reach pods only by reference."""
    signing_key = Ed25519PrivateKey.generate()
    private_raw = signing_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    private_pem = signing_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_key = licensing.public_key_text(signing_key)
    values: dict[str, Any] = {
        "operator": {
            "settings": {"licensePublicKeys": [public_key]},
            "extraEnv": [
                {
                    "name": "SWITCHBOARD_EXAMPLE_TOKEN",
                    "valueFrom": {"secretKeyRef": {"name": "operator-extra", "key": "token"}},
                }
            ],
        },
        "imagePullSecrets": [{"name": "registry-pull"}],
    }
    manifest = render(control_plane, "default", "--values", values_file(tmp_path, values))
    assert public_key in manifest
    for secret_text in (
        base64.b64encode(private_raw).decode(),
        base64.urlsafe_b64encode(private_raw).decode().rstrip("="),
        private_raw.hex(),
        "PRIVATE KEY",
    ):
        assert secret_text not in manifest
    assert not [o for o in objects(manifest) if o["kind"] == "Secret"]
    # The one credential-shaped input is a reference, rendered as a reference.
    env = find(manifest, "Deployment", "operator")["spec"]["template"]["spec"]["containers"][0][
        "env"
    ]
    assert {
        "name": "SWITCHBOARD_EXAMPLE_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "operator-extra", "key": "token"}},
    } in env

    # A private key where a public key belongs never renders: the schema refuses it.
    values["operator"]["settings"]["licensePublicKeys"] = [private_pem]
    refused = helm(
        control_plane,
        "template",
        str(CHART),
        "--values",
        values_file(tmp_path, values),
        check=False,
    )
    assert refused.returncode != 0
    assert "licensePublicKeys" in refused.stderr
    assert "PRIVATE KEY" not in refused.stdout


# --- install -------------------------------------------------------------------------


def test_install_waits_until_operator_and_router_are_ready(
    release: Release, api_client: k8s.ApiClient
) -> None:
    apps = k8s.AppsV1Api(api_client)
    for name in ("switchboard-operator", "switchboard-router"):
        deployment = apps.read_namespaced_deployment(name, release.namespace)
        assert deployment.status is not None and deployment.spec is not None
        # The operator runs two replicas; the router as many as its ledger allows.
        assert deployment.status.ready_replicas == deployment.spec.replicas >= 1, name
    status = json.loads(
        helm(release.plane, "status", RELEASE, "-n", release.namespace, "-o", "json").stdout
    )
    assert status["info"]["status"] == "deployed"
    notes = status["info"]["notes"]
    assert "kubectl" in notes and "condition=Ready" in notes
    # Someone who installed from a chart repository has no checkout: nothing the
    # notes tell them to run may need one, and the plugin they apply is inline.
    assert "examples/" not in notes and "crds/" not in notes
    assert "kind: CommunicationPlugin" in notes and "get switchboard -o wide" in notes
    plugin = yaml.safe_load(notes.split("<<'YAML'")[1].split("YAML")[0].replace("\n   ", "\n"))
    assert plugin["kind"] == "CommunicationPlugin" and plugin["spec"]["channelType"] == "sms"


# --- RBAC ----------------------------------------------------------------------------


class LogRecorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # The facts (a 403's reason among them) are the record's fields, not its message.
        text = record.getMessage() + render_fields(extra_fields(record))
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]!r}"
        self.lines.append(f"{record.name}: {text}")

    def forbidden(self) -> list[str]:
        return [
            line
            for line in self.lines
            # A 403 says Forbidden in its reason (kubernetes client) or its repr (kopf).
            if "forbidden" in line.lower()
            # Other tests' namespaces being deleted refuse new objects with a 403.
            and "being terminated" not in line
        ]


@dataclass
class InProcessOperator:
    kube: Kube
    logs: LogRecorder
    license_key: Ed25519PrivateKey
    operator: Operator


@pytest.fixture
def operator_as_service_account(release: Release) -> Iterator[InProcessOperator]:
    """The operator, authenticated only by the chart's operator ServiceAccount token."""
    # The admin operator of tests/cluster/conftest.py would reconcile these
    # resources too, and the outcome would prove nothing about the chart's RBAC;
    # it is module-scoped, so it never runs during this module.
    assert not any(t.name == "operator" and t.is_alive() for t in threading.enumerate())
    license_key = Ed25519PrivateKey.generate()
    settings = OperatorSettings(
        namespace=release.watch_namespace,
        tenant_namespaces=[] if release.watch_namespace else [release.tenant],
        router_namespace=release.namespace,
        allowed_registries=[TEST_REGISTRY],
        license_public_keys=[licensing.public_key_text(license_key)],
        resync_seconds=15,
        admission_policy=operator_setting(release, "SWITCHBOARD_ADMISSION_POLICY"),
    )
    running = Operator(settings, config=token_config(release.plane, release.namespace, OPERATOR_SA))
    logs = LogRecorder()
    logging.getLogger().addHandler(logs)
    try:
        stop, thread, _url = start_in_thread(running, "operator-as-service-account")
        try:
            yield InProcessOperator(running.kube, logs, license_key, running)
        finally:
            stop.set()
            thread.join(30)
    finally:
        logging.getLogger().removeHandler(logs)


def test_operator_service_account_is_enough_for_a_full_reconcile(
    release: Release,
    tenant: str,
    operator_as_service_account: InProcessOperator,
    api_client: k8s.ApiClient,
) -> None:
    plane, operator = release.plane, operator_as_service_account
    custom = k8s.CustomObjectsApi(api_client)

    def apply(obj: dict[str, Any]) -> None:
        plane.kubectl("apply", "--server-side", "-n", tenant, "-f", "-", input=yaml.safe_dump(obj))

    def condition(plural: str, name: str, type_: str) -> dict[str, Any] | None:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(
            constants.GROUP, constants.VERSION, tenant, plural, name
        )
        conditions = (obj.get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), None)

    def wait_ready(plural: str, name: str) -> None:
        try:
            wait_for(
                lambda: (c := condition(plural, name, "Ready")) and c["status"] == "True",
                timeout=90,
                what=f"{plural}/{name} Ready",
            )
        except AssertionError as error:
            raise AssertionError(f"{error}\nrefused: {operator.logs.forbidden()}") from None

    image = f"{TEST_REGISTRY}plugin-sms:0.1.0"
    # First without its Secret: SecretsReady=False, announced with an Event.
    apply(
        communication_plugin(
            "rbac-sms",
            image=image,
            replicas=2,
            secretRef={"name": "rbac-credentials"},
            requiredSecrets=["TOKEN"],
        )
    )
    wait_for(
        lambda: (
            (c := condition("communicationplugins", "rbac-sms", "SecretsReady"))
            and c["status"] == "False"
        ),
        timeout=60,
        what="SecretsReady=False before the Secret exists",
    )
    apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "rbac-credentials"},
            "stringData": {"TOKEN": "not-a-real-token"},
        }
    )
    # A licensed integration that depends on another: Secrets read, siblings listed.
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30)
    apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "rbac-license"},
            "stringData": {
                "license": licensing.sign(operator.license_key, "voltha", tenant, expires)
            },
        }
    )
    apply(vendor_integration("rbac-base", image=f"{TEST_REGISTRY}plugin-voltha:0.1.0"))
    apply(
        vendor_integration(
            "rbac-licensed",
            image=f"{TEST_REGISTRY}plugin-voltha:0.1.0",
            license={"secretName": "rbac-license"},
            dependsOn=["rbac-base"],
        )
    )
    wait_ready("communicationplugins", "rbac-sms")
    wait_ready("vendorintegrations", "rbac-base")
    wait_ready("vendorintegrations", "rbac-licensed")

    core, apps = k8s.CoreV1Api(api_client), k8s.AppsV1Api(api_client)
    networking, policy = k8s.NetworkingV1Api(api_client), k8s.PolicyV1Api(api_client)
    child = "rbac-sms-plugin"
    apps.read_namespaced_deployment(child, tenant)
    core.read_namespaced_service(child, tenant)
    core.read_namespaced_config_map(child, tenant)
    core.read_namespaced_service_account(child, tenant)
    networking.read_namespaced_network_policy(child, tenant)
    policy.read_namespaced_pod_disruption_budget(child, tenant)

    # One replica needs no disruption budget: the operator deletes it.
    apply(
        communication_plugin(
            "rbac-sms",
            image=image,
            replicas=1,
            secretRef={"name": "rbac-credentials"},
            requiredSecrets=["TOKEN"],
        )
    )

    def budget_gone() -> bool:
        try:
            policy.read_namespaced_pod_disruption_budget(child, tenant)
        except ApiException as error:
            return bool(error.status == 404)
        return False

    wait_for(budget_gone, timeout=60, what="the PodDisruptionBudget to be deleted")

    # The writes were this operator's, made with the ServiceAccount's token.
    writes = operator.kube.writes
    for kind in ("Deployment", "Service", "ConfigMap", "ServiceAccount", "NetworkPolicy"):
        assert writes[f"apply {kind}"] >= 1, (kind, writes)
    assert writes["apply PodDisruptionBudget"] >= 1, writes
    # Counted once the DELETE's answer is in, which can be just after the test saw it gone.
    wait_for(lambda: writes["delete PodDisruptionBudget"] >= 1, timeout=10, what="the delete")
    assert writes["create Event"] >= 1, writes
    assert writes["patch-status CommunicationPlugin"] >= 1, writes
    assert writes["patch-status VendorIntegration"] >= 1, writes
    # The operator never writes the resource itself (only its status): no
    # finalizer, so deleting a plugin never waits for the operator.
    sms: dict[str, Any] = custom.get_namespaced_custom_object(
        constants.GROUP, constants.VERSION, tenant, "communicationplugins", "rbac-sms"
    )
    assert not sms["metadata"].get("finalizers")
    assert operator.logs.forbidden() == []
    # It read the chart's admission policy with its own rights, and found it in force.
    assert operator.operator.admission_policy_in_force is True


def test_operator_service_account_holds_the_leadership_lease(release: Release) -> None:
    config = token_config(release.plane, release.namespace, OPERATOR_SA)

    async def elect() -> None:
        kube = Kube.from_config(config, "switchboard-operator")
        try:
            elector = LeaseElector(kube.client, release.namespace, "switchboard-operator", "pod-a")
            assert await elector.try_acquire(), "create"
            assert await elector.try_acquire(), "get and update (renew)"
            rival = LeaseElector(kube.client, release.namespace, "switchboard-operator", "pod-b")
            assert not await rival.try_acquire(), "a live lease is not taken over"
        finally:
            await kube.close()

    loops.run(elect())
    # Only its own Lease, only in its own namespace.
    plane, operator = release.plane, release.operator
    assert can_i(plane, operator, "update", "leases/switchboard-operator", "-n", release.namespace)
    assert not can_i(plane, operator, "update", "leases/someone-else", "-n", release.namespace)
    assert not can_i(plane, operator, "get", "leases/switchboard-operator", "-n", "default")


def test_service_account_permissions_are_exactly_what_the_code_uses(
    release: Release, tenant: str
) -> None:
    plane, ns = release.plane, release.namespace
    scope = ["-n", tenant] if release.watch_namespace else ["--all-namespaces"]

    for resource in (
        "communicationplugins.switchboard.dev",
        "vendorintegrations.switchboard.dev",
        "deployments.apps",
        "services",
        "configmaps",
        "serviceaccounts",
        "networkpolicies.networking.k8s.io",
        "poddisruptionbudgets.policy",
        "pods",
        "endpointslices.discovery.k8s.io",
    ):
        for verb in ("list", "watch"):
            assert can_i(plane, release.operator, verb, resource, *scope), (verb, resource)
    assert can_i(
        plane,
        release.operator,
        "patch",
        "communicationplugins.switchboard.dev",
        "--subresource=status",
        "-n",
        tenant,
    )
    assert can_i(plane, release.operator, "create", "events", "-n", tenant)
    # Children are written, and Secrets read by name, only where plugins run.
    for verb, resource in (
        ("create", "deployments.apps"),
        ("patch", "deployments.apps"),
        ("patch", "services"),
        ("delete", "poddisruptionbudgets.policy"),
        ("get", "secrets/any-name"),
    ):
        assert can_i(plane, release.operator, verb, resource, "-n", tenant), (verb, resource)
        for elsewhere in ("kube-system", ns):
            assert not can_i(plane, release.operator, verb, resource, "-n", elsewhere), (
                verb,
                resource,
                elsewhere,
            )
    # Secrets are never listed or watched: no cache of every Secret anywhere.
    for verb in ("list", "watch"):
        assert not can_i(plane, release.operator, verb, "secrets", "-n", tenant), verb
        assert not can_i(plane, release.operator, verb, "secrets", "--all-namespaces"), verb
    # The admission policy and its binding, by name: is the policy in force?
    policy_name = operator_setting(release, "SWITCHBOARD_ADMISSION_POLICY")
    assert plane.kubectl("get", "validatingadmissionpolicy", policy_name).returncode == 0
    for resource in ("validatingadmissionpolicies", "validatingadmissionpolicybindings"):
        named = f"{resource}.admissionregistration.k8s.io/{policy_name}"
        assert can_i(plane, release.operator, "get", named), named
        assert not can_i(
            plane, release.operator, "get", f"{resource}.admissionregistration.k8s.io/other"
        )
        assert not can_i(plane, release.operator, "update", named), named
    # Its tenant's Namespace object only (the switchboard.dev/max-security-level label).
    assert can_i(plane, release.operator, "get", f"namespaces/{tenant}")
    assert not can_i(plane, release.operator, "get", "namespaces/kube-system")
    for verb, resource in (
        ("create", "secrets"),
        ("update", "secrets"),
        ("delete", "deployments.apps"),
        ("delete", "communicationplugins.switchboard.dev"),
        ("patch", "communicationplugins.switchboard.dev"),
        ("create", "pods"),
        ("update", "deployments.apps"),
    ):
        assert not can_i(plane, release.operator, verb, resource, "-n", tenant), (verb, resource)

    # The router: discovery and caller authentication, never Secrets.
    for resource in (
        "communicationplugins.switchboard.dev",
        "vendorintegrations.switchboard.dev",
        "endpointslices.discovery.k8s.io",
    ):
        for verb in ("list", "watch"):
            assert can_i(plane, release.router, verb, resource, *scope), (verb, resource)
    assert can_i(plane, release.router, "create", "tokenreviews.authentication.k8s.io")
    assert can_i(plane, release.router, "create", "subjectaccessreviews.authorization.k8s.io")
    # Warning Events on a plugin whose provider refuses its credentials or settings.
    assert can_i(plane, release.router, "create", "events", "-n", tenant)
    assert not can_i(plane, release.router, "delete", "events", "-n", tenant)
    for verb in ("get", "list", "watch"):
        assert not can_i(plane, release.router, verb, "secrets", "-n", tenant), verb
        assert not can_i(plane, release.router, verb, "secrets", "-n", ns), verb
    assert not can_i(
        plane, release.router, "patch", "communicationplugins.switchboard.dev", "-n", tenant
    )
    assert not can_i(plane, release.router, "create", "pods", "-n", ns)
