"""End to end on the real node: the chart, the examples, real pods, real probes, real traffic.

`helm install` of helm/switchboard with the images built from this checkout
(conftest); the operator and the router run as pods under the chart's
ServiceAccounts and reach the API server through the `kubernetes` Service
address. Then `kubectl apply` of the examples (email, the SMS pair with its
priorities, the signed webhook) with their Secrets, pointed at the demo's
sink, which listens inside the tier's network namespace. Messages go through
the router pod; the tests read what arrived at the sink. Every pod runs under
the NetworkPolicies the chart and the operator write, enforced
(test_network_policy.py shows what they keep out).

The tests run in order: the rollouts and the pod kill come after the first
deliveries; test_uninstall.py removes the release when the tier ends.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from switchboard.api import constants
from switchboard.client import SwitchboardError
from tests.realnode.tenant import (
    EXAMPLE_CONFIG,
    RELEASE,
    RELEASE_NAMESPACE,
    SECRETS,
    TENANT,
    Installed,
    Tenant,
    example,
    get_json,
    plugin_pods,
    send_when_authorized,
)
from tests.support.controlplane import REPO_ROOT, ControlPlane
from tests.support.realnode import NODE_NAME
from tests.support.wait import wait_for

pytestmark = [pytest.mark.realnode, pytest.mark.timeout(1200)]


def deployment_revisions(plane: ControlPlane) -> dict[str, str]:
    """Plugin name → its Deployment's pod template (a change rolls the pods)."""
    deployments = get_json(plane, "deployments", "-n", TENANT)["items"]
    return {
        d["metadata"]["labels"][constants.LABEL_INSTANCE]: json.dumps(
            d["spec"]["template"], sort_keys=True
        )
        for d in deployments
    }


def deployment_of(plane: ControlPlane, plugin: str) -> str:
    (name,) = plane.kubectl(
        "get", "deployments", "-n", TENANT, "-l", f"{constants.LABEL_INSTANCE}={plugin}",
        "-o", "name",
    ).stdout.split()  # fmt: skip
    return str(name)


def signature_ok(record: dict[str, Any], secret: str) -> bool:
    headers = {k.lower(): v for k, v in record["headers"].items()}
    timestamp = headers["x-switchboard-timestamp"]
    expected = hmac.new(
        secret.encode(), f"{timestamp}.{record['raw']}".encode(), hashlib.sha256
    ).hexdigest()
    return bool(headers["x-switchboard-signature"] == f"sha256={expected}")


@dataclass
class Load:
    """Light, bounded load on one channel from a thread: a send every `interval` seconds."""

    tenant: Tenant
    channel: str
    recipient: str
    interval: float = 0.2
    limit_seconds: float = 240
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit_seconds
        with self.tenant.client() as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    client.send_message(self.channel, self.recipient, f"load {self.sent}")
                except SwitchboardError as error:
                    self.failures.append(f"{type(error).__name__}: {error}")
                except Exception as error:
                    self.failures.append(repr(error))
                self.sent += 1
                self._stop.wait(self.interval)

    def __enter__(self) -> Load:
        # Started from the test's thread, so it sends from inside the tier's namespace.
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=60)


# --- the tests, in order ------------------------------------------------------------------


def test_operator_and_router_run_as_pods_under_the_chart_service_accounts(
    installed: Installed,
) -> None:
    pods = get_json(installed.plane, "pods", "-n", RELEASE_NAMESPACE)["items"]
    by_component = {
        p["metadata"]["labels"]["app.kubernetes.io/component"]: p
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
    }
    for component in ("operator", "router"):
        pod = by_component[component]
        assert pod["spec"]["serviceAccountName"] == f"{RELEASE}-{component}"
        assert pod["spec"]["nodeName"] == NODE_NAME
        assert pod["status"]["phase"] == "Running"
        (container,) = pod["status"]["containerStatuses"]
        assert container["ready"], container
        assert container["image"] == "ghcr.io/switchboard-dev/switchboard:0.1.0"


def test_plugin_pods_run_restricted_read_only_as_65532_with_the_secret_as_files(
    tenant: Tenant,
) -> None:
    plane = tenant.plane
    labels = get_json(plane, "namespace", TENANT)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for name in EXAMPLE_CONFIG:
        (pod,) = plugin_pods(plane, name)
        assert pod["spec"]["nodeName"] == NODE_NAME
        (container,) = pod["spec"]["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        pod_name = pod["metadata"]["name"]
        probe = plane.kubectl(
            "exec",
            "-n",
            TENANT,
            pod_name,
            "--",
            "python",
            "-c",
            "import os, pathlib, importlib.util\n"
            "try:\n"
            "    open('/written', 'w')\n"
            "    writable = True\n"
            "except OSError:\n"
            "    writable = False\n"
            f"secrets = sorted(p.name for p in pathlib.Path('{constants.PLUGIN_SECRETS_DIR}')"
            ".iterdir() if not p.name.startswith('.'))\n"
            "server = [m for m in ('kopf', 'kubernetes', 'rich', 'prometheus_client')"
            " if importlib.util.find_spec(m)]\n"
            "print(os.getuid(), os.getgid(), writable, ','.join(secrets), ','.join(server))",
        ).stdout.split()
        uid, gid, writable, secrets, *server = probe
        secret_name = pod["spec"]["volumes"]
        expected = sorted(SECRETS[example(name)["spec"]["secretRef"]["name"]])
        assert (uid, gid, writable) == ("65532", "65532", "False"), (name, probe, secret_name)
        assert secrets.split(",") == expected, name
        # The slim plugin image: none of the operator's or router's libraries (aiohttp is
        # in it as the provider clients' connection pool).
        assert server == [], (name, server)


def test_ready_through_real_probes_with_the_plugins_own_describe_in_status(
    tenant: Tenant,
) -> None:
    plane = tenant.plane
    for name in EXAMPLE_CONFIG:
        (pod,) = plugin_pods(plane, name)
        (container,) = pod["spec"]["containers"]
        assert "grpc" in container["readinessProbe"], container["readinessProbe"]
        (state,) = pod["status"]["containerStatuses"]
        assert state["ready"] and state["restartCount"] == 0, state
        manifest = yaml.safe_load((REPO_ROOT / "plugin-images" / name / "manifest.yml").read_text())
        described = wait_for(
            lambda name=name: (
                get_json(plane, "communicationplugin", name, "-n", TENANT).get("status") or {}
            ).get("plugin"),
            timeout=60,
            what=f"status.plugin of {name}",
        )
        assert described["name"] == manifest["name"]
        assert described["version"] == manifest["version"]
    assert tenant.apply_to_ready < 300
    tenant.installed.cluster.timings["kubectl apply to Ready"] = tenant.apply_to_ready


def test_email_sms_failover_and_a_signed_webhook_go_through_the_router_pod(
    tenant: Tenant,
) -> None:
    subject = f"real node {uuid.uuid4().hex[:8]}"
    email = send_when_authorized(
        tenant, "email", "ops@example.com", "Hello from a real pod", subject=subject
    )
    assert email.plugin == f"{TENANT}/smtp-email"
    (message,) = [m for m in tenant.sink.emails() if m["Subject"] == subject]
    assert message["To"] == "ops@example.com"

    with tenant.client() as client:
        sms = client.send_message("sms", "+15551234567", "failover on a real node")
    assert [(a.plugin, a.outcome) for a in sms.attempts][-1] == (f"{TENANT}/vonage-sms", "success")
    assert sms.attempts[0].plugin == f"{TENANT}/twilio-sms"
    assert sms.plugin == f"{TENANT}/vonage-sms"
    assert any(s["text"] == "failover on a real node" for s in tenant.sink.sms())

    with tenant.client() as client:
        hook = client.send_message("webhook", "ops", "signed on a real node")
    assert hook.plugin == f"{TENANT}/generic-webhook"
    (record,) = [w for w in tenant.sink.webhooks() if "signed on a real node" in w["raw"]]
    # Signed with the value in the Secret: the plugin read the mounted file.
    assert signature_ok(record, SECRETS["webhook-signing"]["WEBHOOK_SIGNING_SECRET"])
    assert record["headers"]


def _rollout(tenant: Tenant, change: Any, deployment: str) -> tuple[float, Load, set[str]]:
    """Make `change` under light webhook load; wait until plugin `deployment` rolled. Returns
    the rollout's duration, the load, and the plugins whose pod template changed."""
    plane = tenant.plane
    before = deployment_revisions(plane)
    with Load(tenant, "webhook", "ops") as load:
        wait_for(lambda: load.sent >= 5, timeout=60, what="load running")
        started = time.monotonic()
        change()
        wait_for(
            lambda: deployment_revisions(plane)[deployment] != before[deployment],
            timeout=60,
            what=f"{deployment}'s template to change",
        )
        plane.kubectl(
            "rollout", "status", deployment_of(plane, deployment), "-n", TENANT, "--timeout=240s",
            timeout=260,
        )  # fmt: skip
        wait_for(
            lambda: len(plugin_pods(plane, deployment)) == 1,
            timeout=120,
            what="the old pod to be gone",
        )
        rolled = time.monotonic() - started
        sent_at_end = load.sent
        wait_for(lambda: load.sent >= sent_at_end + 10, timeout=60, what="load after rollout")
    after = deployment_revisions(plane)
    changed = {name for name in after if after[name] != before.get(name)}
    return rolled, load, changed


def test_secret_rotation_rolls_exactly_one_deployment_with_no_failed_request(
    tenant: Tenant,
) -> None:
    rotated = "real-node-signing-secret-2"

    def rotate() -> None:
        tenant.plane.kubectl(
            "create", "secret", "generic", "webhook-signing", "-n", TENANT,
            f"--from-literal=WEBHOOK_SIGNING_SECRET={rotated}", "--dry-run=client", "-o", "yaml",
        )  # fmt: skip
        data = {"stringData": {"WEBHOOK_SIGNING_SECRET": rotated}}
        tenant.plane.kubectl(
            "patch", "secret", "webhook-signing", "-n", TENANT, "--type=merge",
            "-p", json.dumps(data),
        )  # fmt: skip

    rolled, load, changed = _rollout(tenant, rotate, "generic-webhook")
    assert load.failures == [], load.failures[:5]
    assert changed == {"generic-webhook"}
    assert load.sent > 10
    last = tenant.sink.webhooks()[-1]
    assert signature_ok(last, rotated)
    tenant.installed.cluster.timings["secret rotation rollout"] = rolled


def test_config_change_rolls_exactly_one_deployment_with_no_failed_request(
    tenant: Tenant,
) -> None:
    def reconfigure() -> None:
        patch = {"spec": {"config": {"headers": {"X-Source": "switchboard-real-node"}}}}
        tenant.plane.kubectl(
            "patch", "communicationplugin", "generic-webhook", "-n", TENANT, "--type=merge",
            "-p", json.dumps(patch),
        )  # fmt: skip

    rolled, load, changed = _rollout(tenant, reconfigure, "generic-webhook")
    assert load.failures == [], load.failures[:5]
    assert changed == {"generic-webhook"}
    (pod,) = plugin_pods(tenant.plane, "generic-webhook")
    mounted = tenant.plane.kubectl(
        "exec", "-n", TENANT, pod["metadata"]["name"], "--", "cat", constants.PLUGIN_CONFIG_PATH
    ).stdout  # fmt: skip
    assert "switchboard-real-node" in mounted, mounted
    tenant.installed.cluster.timings["config change rollout"] = rolled


def test_a_killed_plugin_pod_fails_no_request_and_comes_back(tenant: Tenant) -> None:
    plane = tenant.plane
    patch = {"spec": {"replicas": 2}}
    plane.kubectl(
        "patch", "communicationplugin", "generic-webhook", "-n", TENANT, "--type=merge",
        "-p", json.dumps(patch),
    )  # fmt: skip
    plane.kubectl(
        "wait", "--for=condition=Ready", "communicationplugin/generic-webhook", "-n", TENANT,
        "--timeout=180s", timeout=200,
    )  # fmt: skip
    wait_for(
        lambda: (
            sum(
                all(c["ready"] for c in p["status"].get("containerStatuses", []))
                for p in plugin_pods(plane, "generic-webhook")
            )
            == 2
        ),
        timeout=180,
        what="two ready webhook pods",
    )
    victim = plugin_pods(plane, "generic-webhook")[0]["metadata"]["name"]
    with Load(tenant, "webhook", "ops") as load:
        wait_for(lambda: load.sent >= 5, timeout=60, what="load running")
        plane.kubectl("delete", "pod", victim, "-n", TENANT, "--grace-period=0", "--force")

        def ready_others() -> list[str] | None:
            names = [
                p["metadata"]["name"]
                for p in plugin_pods(plane, "generic-webhook")
                if p["metadata"]["name"] != victim
                and p["status"].get("containerStatuses")
                and all(c["ready"] for c in p["status"]["containerStatuses"])
            ]
            return names if len(names) == 2 else None

        replaced = wait_for(
            ready_others, timeout=180, what="the Deployment to bring a second pod back"
        )
        sent_then = load.sent
        wait_for(lambda: load.sent >= sent_then + 10, timeout=60, what="traffic after")
    assert load.failures == [], load.failures[:5]
    assert victim not in replaced and len(replaced) == 2
    tenant.installed.cluster.timings["pod kill: requests sent, none failed"] = load.sent
    with tenant.client() as client:
        assert client.send_message("webhook", "ops", "after the kill").plugin.endswith(
            "/generic-webhook"
        )


def test_a_plugin_that_rejects_its_config_ends_config_valid_false_with_its_message(
    tenant: Tenant,
) -> None:
    plane = tenant.plane
    rejected = example("generic-webhook")
    rejected["metadata"]["name"] = "rejected-webhook"
    # The manifest's schema allows any header name; the plugin itself refuses this one.
    rejected["spec"]["config"]["headers"] = {"Bad Header": "x"}
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(rejected))

    def condition() -> dict[str, Any] | None:
        status = (
            get_json(plane, "communicationplugin", "rejected-webhook", "-n", TENANT).get("status")
            or {}
        )
        found = [c for c in status.get("conditions", []) if c["type"] == "ConfigValid"]
        return found[0] if found and found[0]["status"] == "False" else None

    valid = wait_for(condition, timeout=180, interval=1, what="ConfigValid=False")
    assert "'Bad Header' is not a valid header name" in valid["message"], valid
    (pod,) = plugin_pods(plane, "rejected-webhook")
    (state,) = pod["status"]["containerStatuses"]
    terminated = state.get("lastState", {}).get("terminated") or state["state"].get("terminated")
    assert terminated and "'Bad Header' is not a valid header name" in terminated["message"]
    plane.kubectl("delete", "communicationplugin", "rejected-webhook", "-n", TENANT)
