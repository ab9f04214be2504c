"""The version is written once (pyproject.toml); every other place that names it agrees."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

import switchboard

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_the_package_reports_the_projects_version() -> None:
    assert switchboard.__version__ == VERSION


def test_the_image_the_chart_and_the_kind_script_name_the_same_version() -> None:
    chart = yaml.safe_load((REPO / "helm" / "switchboard" / "Chart.yaml").read_text())
    label = re.search(
        r'org\.opencontainers\.image\.version="([^"]+)"', (REPO / "Dockerfile").read_text()
    )
    kind = re.search(r'^VERSION="([^"]+)"', (REPO / "hack" / "kind-up.sh").read_text(), re.M)

    assert chart["appVersion"] == VERSION
    assert label is not None and label.group(1) == VERSION
    assert kind is not None and kind.group(1) == VERSION
