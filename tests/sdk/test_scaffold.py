"""``switchboard plugin create``: every kind of plugin validates and passes its own test at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from switchboard.cli import main
from tests.sdk.harness import SWITCHBOARD


@pytest.mark.parametrize(
    ("name", "plugin_type", "kind_line"),
    [
        ("acme-sms", "messaging", "(channel sms;"),
        ("voltha-olt", "network", "(network_automation integration for voltha;"),
        ("prom-alerts", "monitoring", "(monitoring integration for prom;"),
        ("segment-events", "analytics", "(analytics integration for segment;"),
    ],
)
def test_created_plugin_validates_and_its_generated_test_passes(
    tmp_path: Path, name: str, plugin_type: str, kind_line: str
) -> None:
    created = CliRunner().invoke(
        main, ["plugin", "create", name, "--type", plugin_type, "--output-dir", str(tmp_path)]
    )
    assert created.exit_code == 0, created.output
    plugin_dir = tmp_path / name
    assert sorted(path.name for path in plugin_dir.iterdir()) == [
        "Dockerfile",
        "manifest.yml",
        "plugin.py",
        "test_plugin.py",
    ]
    assert "FROM ${BASE_IMAGE}" in (plugin_dir / "Dockerfile").read_text()

    validated = subprocess.run(
        [SWITCHBOARD, "plugin", "validate", str(plugin_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert validated.returncode == 0, validated.stderr
    assert kind_line in validated.stdout

    # As its author would run it: from the plugin folder, warnings as errors.
    tested = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-W",
            "error",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:asyncio",
            "test_plugin.py",
        ],
        cwd=plugin_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "2 passed" in tested.stdout


def test_create_refuses_to_overwrite_an_existing_folder(tmp_path: Path) -> None:
    (tmp_path / "acme-sms").mkdir()

    result = CliRunner().invoke(
        main, ["plugin", "create", "acme-sms", "--type", "messaging", "--output-dir", str(tmp_path)]
    )

    assert result.exit_code == 2
    assert "already exists" in result.output


def test_create_rejects_a_name_that_is_not_a_dns_label(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["plugin", "create", "Acme_SMS", "--type", "messaging", "--output-dir", str(tmp_path)]
    )

    assert result.exit_code == 2
    assert "is not a plugin name" in result.output
    assert not any(tmp_path.iterdir())


def _pytest_hint(output: str) -> str:
    """The printed command that runs the new plugin's test, without its arguments."""
    line = next(line for line in output.splitlines() if " -m pytest " in line)
    return line.strip().split(" -m pytest ")[0]


def test_pytest_hint_names_the_virtualenv_python_when_another_python_on_path_is_the_same_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A `python` first on PATH that is the very interpreter the virtualenv links to:
    # running it by name would miss the virtualenv's pytest.
    shadowing_bin = tmp_path / "bin"
    shadowing_bin.mkdir()
    (shadowing_bin / Path(sys.executable).name).symlink_to(Path(sys.executable).resolve())
    monkeypatch.setenv("PATH", f"{shadowing_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(
        main, ["plugin", "create", "acme-sms", "--type", "messaging", "--output-dir", "plugins"]
    )

    assert result.exit_code == 0, result.output
    assert _pytest_hint(result.output) == os.path.abspath(sys.executable)


def test_pytest_hint_is_the_bare_name_when_the_virtualenv_is_first_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv_bin = Path(os.path.abspath(sys.executable)).parent
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(
        main, ["plugin", "create", "acme-sms", "--type", "messaging", "--output-dir", "plugins"]
    )

    assert result.exit_code == 0, result.output
    assert _pytest_hint(result.output) == Path(sys.executable).name
