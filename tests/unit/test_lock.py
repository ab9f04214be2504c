"""The locked installs agree with pyproject.toml, with each other and with what the tests run.

A fresh machine installs requirements/dev.txt (``make dev``), the Switchboard
image requirements/switchboard.txt, the plugin base image
requirements/plugin-base.txt and each plugin image its
plugin-images/NAME/requirements.txt;
``make lock`` writes all of them. If pyproject.toml changes without a
``make lock``, or a file is edited by hand, these tests say which pin is off.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO_ROOT / "requirements"
PLUGIN_IMAGES = REPO_ROOT / "plugin-images"
_ENTRY = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)(?: ; (?P<marker>[^\\]+?))? \\\n"
    r"(?P<hashes>(?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n?)+)",
    re.M,
)


@dataclass(frozen=True)
class Pin:
    version: str
    marker: str | None
    hashes: frozenset[str]


def pins(path: Path) -> dict[str, Pin]:
    """name → pin of a compiled requirements file; every line must be a pin, a hash or a comment."""
    text = path.read_text()
    found = {}
    for match in _ENTRY.finditer(text):
        hashes = frozenset(re.findall(r"[0-9a-f]{64}", match["hashes"]))
        found[canonicalize_name(match["name"])] = Pin(match["version"], match["marker"], hashes)
    entries = [line for line in text.splitlines() if line and not line.lstrip().startswith("#")]
    hash_lines = sum(len(pin.hashes) for pin in found.values())
    assert len(entries) == len(found) + hash_lines, (
        f"{path}: a line is not `name==version \\` or a hash"
    )
    return found


def _project() -> dict[str, object]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert isinstance(project, dict)
    return project


def requirements_of(extra: str | None) -> list[Requirement]:
    """The project's requirements for one extra (None: the base), self-references expanded."""
    project = _project()
    extras = project["optional-dependencies"]
    assert isinstance(extras, dict)
    raw = project["dependencies"] if extra is None else extras[extra]
    assert isinstance(raw, list)
    found = []
    for requirement in map(Requirement, raw):
        if requirement.name == "switchboard":
            found += [r for name in sorted(requirement.extras) for r in requirements_of(name)]
        else:
            found.append(requirement)
    return found


def plugin_extras() -> list[str]:
    extras = _project()["optional-dependencies"]
    assert isinstance(extras, dict)
    return sorted(name.removeprefix("plugin-") for name in extras if name.startswith("plugin-"))


DEV = pins(REQUIREMENTS / "dev.txt")
#: The Switchboard image: the project with its `server` extra.
SERVER = pins(REQUIREMENTS / "switchboard.txt")
#: The plugin base image: the project's own dependencies alone.
BASE = pins(REQUIREMENTS / "plugin-base.txt")
#: What only the operator, the router and local mode import (aiohttp is both: the
#: router's server, and the connection pool under every plugin's provider client).
SERVER_ONLY = {"kopf", "kubernetes", "rich", "cryptography", "prometheus-client"}


@pytest.mark.parametrize(
    "extra", [None, "server", "dev", *(f"plugin-{name}" for name in plugin_extras())]
)
def test_every_declared_requirement_is_satisfied_by_the_lock(extra: str | None) -> None:
    for requirement in requirements_of(extra):
        pin = DEV.get(canonicalize_name(requirement.name))
        assert pin is not None, f"{requirement} is not in requirements/dev.txt: run `make lock`"
        assert requirement.specifier.contains(pin.version, prereleases=True), (
            f"{requirement} but requirements/dev.txt pins {pin.version}: run `make lock`"
        )
    for requirement in requirements_of(None):
        assert canonicalize_name(requirement.name) in BASE, f"{requirement} missing from the base"
    for requirement in requirements_of(None) + requirements_of("server"):
        name = canonicalize_name(requirement.name)
        assert name in SERVER, f"{requirement} missing from requirements/switchboard.txt"


@pytest.mark.parametrize("image_lock", [SERVER, BASE], ids=["switchboard", "plugin-base"])
def test_the_images_locks_are_the_dev_lock_restricted_to_the_project(
    image_lock: dict[str, Pin],
) -> None:
    for name, pin in image_lock.items():
        assert DEV[name].version == pin.version, name
        assert pin.hashes <= DEV[name].hashes, name
    assert "pytest" not in image_lock


def test_the_plugin_base_holds_no_operator_or_router_library() -> None:
    assert set(SERVER) >= SERVER_ONLY, "the Switchboard image lacks a server library"
    assert not SERVER_ONLY & set(BASE), "the plugin base image would carry a server library"
    assert set(BASE) <= set(SERVER), "the two images would hold different SDKs"


@pytest.mark.parametrize("plugin", plugin_extras())
def test_a_plugin_image_installs_its_extra_beyond_the_base_at_the_dev_versions(
    plugin: str,
) -> None:
    folder = PLUGIN_IMAGES / plugin
    locked = pins(folder / "requirements.txt")
    declared = {canonicalize_name(r.name) for r in requirements_of(f"plugin-{plugin}")}

    assert declared - set(BASE) <= set(locked), "a library of the plugin's extra is not locked"
    assert not set(locked) & set(BASE), "the image would install again what the base holds"
    for name, pin in locked.items():
        assert DEV[name].version == pin.version, f"{plugin}: {name}"
        assert pin.hashes and pin.hashes <= DEV[name].hashes, f"{plugin}: {name}"
    assert "--require-hashes" in (folder / "Dockerfile").read_text()


def test_the_running_environment_is_the_lock() -> None:
    # What the tests import is what a fresh machine and the images get.
    environment = default_environment()
    for name, pin in DEV.items():
        marker = Requirement(f"{name}; {pin.marker}").marker if pin.marker else None
        if marker and not marker.evaluate(environment):
            continue
        assert importlib.metadata.version(name) == pin.version, f"{name}: run `make dev`"


@pytest.mark.parametrize(
    ("dockerfile", "lock"),
    [("Dockerfile", "switchboard.txt"), ("plugin-images/base/Dockerfile", "plugin-base.txt")],
)
def test_the_images_install_from_the_lock_with_hashes(dockerfile: str, lock: str) -> None:
    text = (REPO_ROOT / dockerfile).read_text()
    install = re.search(rf"pip install --require-hashes --no-deps [^&]*{re.escape(lock)}", text)
    assert install, f"{dockerfile} does not install requirements/{lock} with hashes"
