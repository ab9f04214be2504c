"""The router in Kubernetes mode: discovery from the API server, RBAC for callers.

The operator deploys two sms plugins; kwok gives their pods IP addresses;
each pod IP is made real by a network namespace running the plugin process.
The router discovers them through the EndpointSlices the cluster builds, and
callers authenticate with real ServiceAccount tokens checked by TokenReview
and SubjectAccessReview.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from switchboard.client import AsyncSwitchboard, Forbidden, NotAuthenticated
from switchboard.router.app import Router
from switchboard.router.kubernetes import KubernetesAuthority, KubernetesDiscovery
from switchboard.router.settings import RouterSettings
from tests.cluster.conftest import RunningOperator
from tests.cluster.test_operator import Cluster
from tests.router.conftest import FLAKY_SMS
from tests.sdk.harness import PluginProcess, write_config
from tests.support.controlplane import ControlPlane
from tests.support.netns import PodSandbox
from tests.support.wait import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.asyncio]

SEND_ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "Role",
    "metadata": {"name": "switchboard-sender"},
    "rules": [
        {
            "apiGroups": ["switchboard.dev"],
            "resources": ["communicationplugins"],
            "verbs": ["send", "list"],
        }
    ],
}


def _binding(namespace: str, account: str, account_namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"{account}-sends", "namespace": namespace},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "switchboard-sender",
        },
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": account_namespace}],
    }


def _token(plane: ControlPlane, namespace: str, account: str) -> str:
    plane.kubectl("create", "serviceaccount", account, "-n", namespace)
    return plane.kubectl("create", "token", account, "-n", namespace).stdout.strip()


@pytest.fixture
def sandboxes() -> Iterator[list[PodSandbox]]:
    made: list[PodSandbox] = []
    yield made
    for sandbox in made:
        sandbox.delete()


@pytest.fixture
async def k8s_router(control_plane: ControlPlane, api_client: Any) -> AsyncIterator[Router]:
    settings = RouterSettings(host="127.0.0.1", http_port=0, grpc_port=-1, auth_cache_seconds=0.5)
    router = Router(settings, KubernetesDiscovery(api_client), KubernetesAuthority(api_client, 0.5))
    await router.start()
    yield router
    await router.stop(grace=0)


def _plugin_in_pod(
    sandbox: PodSandbox, tmp_path: Path, name: str, processes: list[PluginProcess]
) -> Path:
    state = tmp_path / name
    state.mkdir()
    config = write_config(tmp_path / f"{name}.json", {"provider": name, "state_dir": str(state)})
    process = PluginProcess(
        FLAKY_SMS,
        {
            "SWITCHBOARD_PLUGIN_CONFIG": str(config),
            "SWITCHBOARD_PLUGIN_HOST": sandbox.address,
            "SWITCHBOARD_PLUGIN_PORT": "50051",
        },
        prefix=sandbox.exec_prefix,
    )
    processes.append(process)
    process.wait_serving()
    return state


async def test_router_follows_endpoint_readiness_and_rbac(
    operator: RunningOperator,
    control_plane: ControlPlane,
    api_client: Any,
    namespace: str,
    tmp_path: Path,
    sandboxes: list[PodSandbox],
    k8s_router: Router,
) -> None:
    cluster = Cluster(control_plane, api_client, namespace)
    for name, priority in (("sms-a", 1), ("sms-b", 2)):
        cluster.apply(
            {
                "apiVersion": "switchboard.dev/v1alpha1",
                "kind": "CommunicationPlugin",
                "metadata": {"name": name},
                "spec": {
                    "image": "ghcr.io/switchboard-dev/plugin-flaky-sms:1.0.0",
                    "channelType": "sms",
                    "priority": priority,
                },
            }
        )
    states: dict[str, Path] = {}
    processes: list[PluginProcess] = []
    try:
        for name in ("sms-a", "sms-b"):
            cluster.wait_condition("CommunicationPlugin", name, "Ready", "True")
            pod = cluster.pods(name)[0]
            sandbox = PodSandbox(pod.status.pod_ip).create()
            sandboxes.append(sandbox)
            states[name] = _plugin_in_pod(sandbox, tmp_path, name, processes)

        control_plane.apply(
            {**SEND_ROLE, "metadata": {**SEND_ROLE["metadata"], "namespace": namespace}}
        )
        app_token = _token(control_plane, namespace, "app")
        control_plane.apply(_binding(namespace, "app", namespace))
        url = f"http://127.0.0.1:{k8s_router.http_port}"

        async with AsyncSwitchboard(url, app_token) as app:

            async def deliver() -> Any:
                try:
                    return await app.send_message("sms", "+15551234567", "hello")
                except Forbidden:
                    return None  # the RoleBinding is still on its way

            first = await _eventually(deliver, lambda r: r is not None)
            assert first.plugin == f"{namespace}/sms-a"
            assert first.namespace == namespace
            delivered = [
                json.loads(x)
                for x in (states["sms-a"] / "deliveries.jsonl").read_text().splitlines()
            ]
            assert [(d["content"], d["tenant"]) for d in delivered] == [("hello", namespace)]

            # The primary's pod stops being ready: the cluster marks its endpoint
            # not ready, and the router follows.
            pod = cluster.pods("sms-a")[0].metadata.name
            cluster.set_pod_status(pod, {"conditions": [{"type": "Ready", "status": "False"}]})
            moved = await _eventually(
                lambda: app.send_message("sms", "+15551234567", "after"),
                lambda r: r.plugin == f"{namespace}/sms-b",
            )
            assert [a.plugin for a in moved.attempts] == [f"{namespace}/sms-b"]
            status = await app.system_status()
            primary = next(p for p in status["channels"]["sms"] if p["name"] == "sms-a")
            assert (
                primary["endpoints"]["ready"] == [] and len(primary["endpoints"]["notReady"]) == 1
            )

            cluster.set_pod_status(pod, {"conditions": [{"type": "Ready", "status": "True"}]})
            back = await _eventually(
                lambda: app.send_message("sms", "+15551234567", "again"),
                lambda r: r.plugin == f"{namespace}/sms-a",
            )
            assert back.attempts[0].outcome == "success"

            # The provider refuses sms-a's own settings: messages go to sms-b, and
            # sms-a's resource says why (a Warning Event that `kubectl describe` shows).
            (states["sms-a"] / "control.json").write_text(json.dumps({"mode": "configuration"}))
            refused = await app.send_message("sms", "+15551234567", "refused")
            assert [(a.plugin, a.outcome) for a in refused.attempts] == [
                (f"{namespace}/sms-a", "configuration"),
                (f"{namespace}/sms-b", "success"),
            ]
            described = wait_for(
                lambda: _describe_with(
                    control_plane, namespace, "sms-a", "ProviderRejectedConfiguration"
                ),
                timeout=30,
                what="the router's Event on sms-a",
            )
            assert "The provider refused this plugin's configuration" in described
            assert "is not a number of this account" in described
            (states["sms-a"] / "control.json").write_text(json.dumps({"mode": "ok"}))

        # The operator asked the running plugin what it is (Describe).
        reported = wait_for(
            lambda: (cluster.get("CommunicationPlugin", "sms-a").get("status") or {}).get("plugin"),
            timeout=30,
            what="status.plugin of sms-a",
        )
        assert reported["name"] == "Flaky SMS" and reported["version"] == "1.0.0"
        assert sorted(reported["capabilities"]) == ["delivery_receipts", "send"]
        assert reported["operations"] == ["echo"]

        # A ServiceAccount without a RoleBinding is refused, and so is one from
        # another namespace, even one allowed to send in its own.
        before = _delivered(states)
        stranger_token = _token(control_plane, namespace, "stranger")
        other = f"{namespace}-other"
        control_plane.kubectl("create", "namespace", other)
        try:
            control_plane.apply(
                {**SEND_ROLE, "metadata": {**SEND_ROLE["metadata"], "namespace": other}}
            )
            outsider_token = _token(control_plane, other, "app")
            control_plane.apply(_binding(other, "app", other))
            async with AsyncSwitchboard(url, stranger_token) as stranger:
                with pytest.raises(Forbidden):
                    await stranger.send_message("sms", "+1555", "x")
            async with AsyncSwitchboard(url, outsider_token, namespace=namespace) as outsider:
                with pytest.raises(Forbidden) as cross:
                    await outsider.send_message("sms", "+1555", "x")
                assert f"system:serviceaccount:{other}:app" in cross.value.message
            async with AsyncSwitchboard(url, "not-a-token") as nobody:
                with pytest.raises(NotAuthenticated):
                    await nobody.send_message("sms", "+1555", "x")
        finally:
            control_plane.kubectl("delete", "namespace", other, "--wait=false")
        assert _delivered(states) == before  # nothing from refused callers
    finally:
        for process in processes:
            process.kill()
            process.wait_exit()


def _describe_with(plane: ControlPlane, namespace: str, name: str, reason: str) -> str | None:
    """`kubectl describe` of a CommunicationPlugin, once it shows an Event with ``reason``."""
    text = plane.kubectl("describe", "communicationplugin", name, "-n", namespace).stdout
    return text if reason in text else None


def _delivered(states: dict[str, Path]) -> int:
    sinks = [s / "deliveries.jsonl" for s in states.values()]
    return sum(len(sink.read_text().splitlines()) for sink in sinks if sink.exists())


async def _eventually(call: Any, done: Any, timeout: float = 30) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while loop.time() < deadline:
        try:
            last = await call()
        except Exception as error:  # still converging: keep the last failure for the message
            last = error
        else:
            if done(last):
                return last
        await asyncio.sleep(0.3)
    raise AssertionError(f"not converged within {timeout}s; last: {last!r}")


async def test_gate_changes_the_operator_writes_reach_the_routers_audit_trail(
    operator: RunningOperator,
    control_plane: ControlPlane,
    api_client: Any,
    namespace: str,
    k8s_router: Router,
) -> None:
    """In a cluster the operator has no database: the router, which watches the
    resources anyway, records each gate verdict once in the ledger's audit table."""
    cluster = Cluster(control_plane, api_client, namespace)
    cluster.apply(
        {
            "apiVersion": "switchboard.dev/v1alpha1",
            "kind": "CommunicationPlugin",
            "metadata": {"name": "gated"},
            "spec": {
                "image": "ghcr.io/switchboard-dev/plugin-flaky-sms:1.0.0",
                "channelType": "sms",
                "secretRef": {"name": "gated-creds"},
                "requiredSecrets": ["TOKEN"],
            },
        }
    )
    assert k8s_router.ledger is not None
    ledger = k8s_router.ledger

    async def gate_outcomes() -> list[str]:
        trail = await ledger.audit_trail(namespace, limit=50)
        return [e.outcome for e in reversed(trail) if e.action == "gate"]

    missing = await _eventually(gate_outcomes, lambda o: "SecretNotFound" in o)
    control_plane.kubectl(
        "create", "secret", "generic", "gated-creds", "-n", namespace, "--from-literal=TOKEN=t"
    )
    outcomes = await _eventually(gate_outcomes, lambda o: o[-1:] == ["passed"])
    assert outcomes[: len(missing)] == missing  # appended, never rewritten
    trail = await ledger.audit_trail(namespace, limit=50)
    gates = [e for e in trail if e.action == "gate"]
    assert {(e.actor, e.target) for e in gates} == {
        ("switchboard-operator", "CommunicationPlugin/gated")
    }
    assert len(gates) == len({e.outcome for e in gates})  # each verdict once
