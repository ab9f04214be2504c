"""The operator process carries only what it runs: its memory is mostly libraries."""

from __future__ import annotations

from tests.support.imports import loaded_after


def test_the_operator_loads_no_generated_kubernetes_apis_and_no_cryptography() -> None:
    # What `switchboard operator` imports and builds before it runs. The generated
    # API classes (CoreV1Api alone is about 20 MB) and their models are not needed
    # for the operator's plain JSON requests; cryptography (about 9 MB) only when
    # it checks a licence.
    loaded = loaded_after(
        "import switchboard.cli, switchboard.controller.main, switchboard.controller.leader; "
        "from kubernetes import client; from switchboard.controller.kube import Kube; "
        "Kube(client.ApiClient(), 'switchboard-operator')"
    )

    assert {m for m in loaded if m.startswith("kubernetes.client.api.")} == set()
    assert len({m for m in loaded if m.startswith("kubernetes.client.models.")}) < 10
    assert "cryptography" not in loaded
