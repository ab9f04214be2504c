"""Every plugin folder is a valid, buildable, documented package, and the examples use it right."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from switchboard.cli import main
from switchboard.sdk import load_manifest
from tests.plugins.conftest import PLUGIN_IMAGES, PLUGINS, REPO_ROOT

DOCS = REPO_ROOT / "docs" / "plugins"
EXAMPLES = REPO_ROOT / "examples"


@pytest.mark.parametrize("name", PLUGINS)
def test_switchboard_plugin_validate_passes(name: str) -> None:
    # The `switchboard` command itself, in-process: a fresh interpreter per
    # plugin would cost seconds (test_child_process runs the real executable).
    result = CliRunner().invoke(main, ["plugin", "validate", str(PLUGIN_IMAGES / name)])

    assert result.exit_code == 0, result.output
    assert f"{name} 0.1.0 is valid" in result.output


@pytest.mark.parametrize("name", PLUGINS)
def test_the_image_adds_only_the_plugin_module_to_the_base_and_runs_as_non_root(name: str) -> None:
    folder = PLUGIN_IMAGES / name
    module = f"{name.replace('-', '_')}_plugin"
    dockerfile = (folder / "Dockerfile").read_text()
    instructions = [line for line in dockerfile.splitlines() if line and not line.startswith("#")]

    assert load_manifest(folder).entry_module == module
    assert instructions[0] == "ARG BASE_IMAGE=switchboard/plugin-base:0.1.0"
    assert [line for line in instructions if line.startswith("FROM ")] == [
        "FROM ${BASE_IMAGE} AS build",
        "FROM ${BASE_IMAGE}",
    ]
    assert f"COPY manifest.yml {module}.py /plugin/" in instructions
    assert "COPY --from=build /plugin /plugin" in instructions
    assert instructions[-1] == "USER 65532:65532"
    assert sorted(path.name for path in folder.iterdir() if path.name != "__pycache__") == sorted(
        ["Dockerfile", "manifest.yml", f"{module}.py"]
        + (["requirements.txt"] if (folder / "requirements.txt").exists() else [])
    )


@pytest.mark.parametrize("name", PLUGINS)
def test_the_docs_page_covers_every_config_key_and_capability(name: str) -> None:
    page = (DOCS / f"{name}.md").read_text()
    manifest = load_manifest(PLUGIN_IMAGES / name)

    for key in manifest.required_config.get("properties", {}):
        assert f"`{key}`" in page, f"docs/plugins/{name}.md does not document config.{key}"
    for capability in manifest.capabilities:
        assert f"`{capability}`" in page, f"docs/plugins/{name}.md does not list {capability}"
    assert "kind: CommunicationPlugin" in page


def _examples() -> list[tuple[str, dict[str, object]]]:
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == "CommunicationPlugin":
                image = str(document["spec"]["image"])
                name = image.rsplit("/", 1)[-1].split(":")[0].removeprefix("plugin-")
                if name in PLUGINS:
                    found.append((name, document))
    return found


@pytest.mark.parametrize(("name", "resource"), _examples(), ids=[name for name, _ in _examples()])
def test_examples_use_the_config_keys_and_capabilities_the_plugin_declares(
    name: str, resource: dict[str, dict[str, object]]
) -> None:
    manifest = load_manifest(PLUGIN_IMAGES / name)
    spec = resource["spec"]
    config = spec.get("config") or {}
    assert isinstance(config, dict)
    declared = set(manifest.required_config.get("properties", {}))

    assert set(config) <= declared, f"unknown config keys {set(config) - declared}"
    assert set(manifest.required_config.get("required", [])) <= set(config)
    capabilities = spec.get("capabilities") or []
    assert isinstance(capabilities, list)
    assert set(capabilities) <= set(manifest.capabilities)


def test_every_plugin_has_an_example() -> None:
    assert {name for name, _ in _examples()} == set(PLUGINS)


def test_plugin_modules_have_unique_names() -> None:
    modules = [load_manifest(PLUGIN_IMAGES / name).entry_module for name in PLUGINS]
    assert len(set(modules)) == len(modules)
