"""Fixtures shared by every test tier.

The control plane starts once per session, the first time a test asks for
it; each test that uses it gets a namespace of its own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests.support.controlplane import ControlPlane, running_control_plane
from tests.support.loglevel import verbose_switchboard_env

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """Every Switchboard process a test starts logs at its most verbose level, so that
    a log call that fails (or hides a failure) at DEBUG fails a test too."""
    os.environ.update(verbose_switchboard_env())


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    with running_control_plane() as plane:
        yield plane


@pytest.fixture(scope="session")
def api_client(control_plane: ControlPlane) -> Iterator[k8s.ApiClient]:
    api = k8s_config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    yield api
    api.close()


@pytest.fixture(scope="session")
def crds_installed(control_plane: ControlPlane) -> ControlPlane:
    control_plane.install_crds(REPO_ROOT / "crds")
    return control_plane


@pytest.fixture
def namespace(control_plane: ControlPlane, api_client: k8s.ApiClient) -> Iterator[str]:
    """A fresh namespace for one test, enforcing the restricted pod security level."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = k8s.CoreV1Api(api_client)
    core.create_namespace(
        k8s.V1Namespace(
            metadata=k8s.V1ObjectMeta(
                name=name, labels={"pod-security.kubernetes.io/enforce": "restricted"}
            )
        )
    )
    yield name
    core.delete_namespace(name)
