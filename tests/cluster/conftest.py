"""The operator, run once per session against the shared control plane."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from switchboard.controller import licensing
from switchboard.controller.kube import Kube
from switchboard.controller.main import describe_over_grpc, operate
from switchboard.controller.settings import OperatorSettings
from tests.support.controlplane import ControlPlane
from tests.support.netns import LIVE_ADDRESSES

#: The only registries the test operator admits images from.
ALLOWED_REGISTRIES = ["ghcr.io/switchboard-dev/", "registry.test/"]


@dataclass
class RunningOperator:
    settings: OperatorSettings
    kube: Kube
    license_key: Ed25519PrivateKey


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
    )
    kube = Kube.from_environment(settings.field_manager, str(crds_installed.kubeconfig))
    # Describe only pods a test made real: kwok's other pod IPs lead nowhere,
    # and tests send traffic only to addresses they own.
    describer = describe_over_grpc(
        2.0, reachable=lambda address: address.rsplit(":", 1)[0] in LIVE_ADDRESSES
    )
    stop, ready = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(
                operate(settings, kube, describer=describer, stop_flag=stop, ready_flag=ready)
            )
        except BaseException as error:  # surfaced to the test session below
            failure.append(error)
            ready.set()

    thread = threading.Thread(target=run, name="operator", daemon=True)
    thread.start()
    assert ready.wait(60), "the operator did not start within 60 s"
    assert not failure, failure
    yield RunningOperator(settings, kube, license_key)
    stop.set()
    thread.join(30)
