"""The operator, run once per module against the shared control plane."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from switchboard.controller import licensing
from switchboard.controller import metrics as metrics_
from switchboard.controller.main import Operator, describe_over_grpc, operate
from switchboard.controller.settings import OperatorSettings
from switchboard.kubeclient import kube_config
from tests.support import loops
from tests.support.controlplane import ControlPlane
from tests.support.netns import LIVE_ADDRESSES

#: The only registries the test operator admits images from.
ALLOWED_REGISTRIES = ["ghcr.io/switchboard-dev/", "registry.test/"]
#: The API server's addresses as the test operator is told them (kwok has no Service IP).
API_SERVER_CIDRS = ["10.96.0.1/32"]


@dataclass
class RunningOperator:
    settings: OperatorSettings
    operator: Operator
    license_key: Ed25519PrivateKey
    metrics_url: str


def start_in_thread(operator: Operator, name: str) -> tuple[threading.Event, threading.Thread, str]:
    """Run `operator` (and its /metrics server on a loopback port) in a thread with its
    own event loop; returns the stop flag, the thread and the metrics URL."""
    stop, ready = threading.Event(), threading.Event()
    failure: list[BaseException] = []
    port: list[int] = []

    async def main() -> None:
        runner, bound = await metrics_.serve(operator.metrics, operator.health, "127.0.0.1", 0)
        port.append(bound)
        try:
            await operate(operator, stop_flag=stop, ready_flag=ready)
        finally:
            await runner.cleanup()

    def run() -> None:
        try:
            loops.run(main())
        except BaseException as error:  # surfaced to the test session below
            failure.append(error)
            ready.set()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    assert ready.wait(60), "the operator did not start within 60 s"
    assert not failure, failure
    return stop, thread, f"http://127.0.0.1:{port[0]}"


@pytest.fixture(scope="module")
def operator(crds_installed: ControlPlane) -> Iterator[RunningOperator]:
    """The operator, cluster-wide, in a thread with its own event loop.

    Module-scoped: the modules that test other operators (the chart's RBAC) never
    run beside this one."""
    license_key = Ed25519PrivateKey.generate()
    settings = OperatorSettings(
        allowed_registries=ALLOWED_REGISTRIES,
        license_public_keys=[licensing.public_key_text(license_key)],
        license_grace_days=1,
        resync_seconds=15,
        api_server_cidrs=API_SERVER_CIDRS,
    )
    # Describe only pods a test made real: kwok's other pod IPs lead nowhere,
    # and tests send traffic only to addresses they own.
    describer = describe_over_grpc(
        2.0, reachable=lambda address: address.rsplit(":", 1)[0] in LIVE_ADDRESSES
    )
    running = Operator(
        settings, config=kube_config(str(crds_installed.kubeconfig)), describer=describer
    )
    stop, thread, url = start_in_thread(running, "operator")
    yield RunningOperator(settings, running, license_key, url)
    stop.set()
    thread.join(30)
