"""crds/ is generated from the models, and a stale copy is caught."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from switchboard.api.crdgen import render_crds

REPO_ROOT = Path(__file__).resolve().parents[2]


def _crds_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchboard", "crds", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_committed_crds_match_the_models() -> None:
    result = _crds_command(
        "--check",
        "--output",
        str(REPO_ROOT / "crds"),
        "--reference",
        str(REPO_ROOT / "docs" / "crd-reference.md"),
    )
    assert result.returncode == 0, result.stderr


def test_check_fails_and_says_how_to_fix_when_crds_are_stale(tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "crds", tmp_path / "crds")
    stale = tmp_path / "crds" / "communicationplugins.switchboard.dev.yaml"
    stale.write_text(stale.read_text().replace("maximum: 1000", "maximum: 10"))
    result = _crds_command("--check", "--output", str(tmp_path / "crds"))
    assert result.returncode == 1
    assert "communicationplugins.switchboard.dev.yaml" in result.stderr
    assert "run `switchboard crds --output" in result.stderr


def test_cross_field_rules_become_cel_validations() -> None:
    crds = {name: yaml.safe_load(text) for name, text in render_crds().items()}
    vi = crds["vendorintegrations.switchboard.dev.yaml"]["spec"]["versions"][0]
    root_rules = vi["schema"]["openAPIV3Schema"]["x-kubernetes-validations"]
    assert any("self.metadata.name in self.spec.dependsOn" in r["rule"] for r in root_rules)
    cp = crds["communicationplugins.switchboard.dev.yaml"]["spec"]["versions"][0]
    spec_rules = cp["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"]
    assert [r["fieldPath"] for r in spec_rules] == [".requiredSecrets"]
