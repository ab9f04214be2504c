"""The router process carries only what it runs: its memory is mostly libraries."""

from __future__ import annotations

from tests.support.imports import loaded_after


def test_a_static_router_loads_no_kubernetes_client_plugin_runtime_or_http_client() -> None:
    # What `switchboard router --backend static` imports before it serves.
    loaded = loaded_after(
        "import switchboard.cli, switchboard.router.app, switchboard.router.settings"
    )

    heavy = {"kubernetes", "kopf", "jsonschema", "httpx", "rich"}
    assert {m.split(".")[0] for m in loaded} & heavy == set()
    assert "switchboard.sdk._runtime" not in loaded
    assert "switchboard.sdk._client" in loaded  # what the router does need


def test_the_kubernetes_backend_loads_the_kubernetes_client() -> None:
    loaded = loaded_after("import switchboard.router.kubernetes")

    assert "kubernetes.client" in loaded
