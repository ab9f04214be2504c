"""The Helm chart's generated parts are current, and its RBAC names what it grants."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from types import ModuleType

import pytest
import yaml

from tests.conftest import REPO_ROOT

CHART = REPO_ROOT / "helm" / "switchboard"
TEMPLATES = CHART / "templates"


def _chart_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "chart_docs", REPO_ROOT / "hack" / "chart-docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_chart_crds_are_copies_of_crds_dir() -> None:
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "sync-chart-crds.sh"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_values_schema_and_readme_are_generated_from_values() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "hack" / "chart-docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_an_undocumented_value_is_an_error() -> None:
    docs = _chart_docs()
    with pytest.raises(docs.ValuesDocError, match=r"values.yaml:3 \(image.tag\)"):
        docs.parse_values("# The image.\nimage:\n  tag: latest\n")


def test_free_form_values_keep_their_default_whole() -> None:
    docs = _chart_docs()
    values = docs.parse_values(
        "# Resources.\n"
        '# @schema {"type": "object"}\n'
        "resources:\n"
        "  limits:\n"
        "    memory: 1Gi\n"
        "# Replicas.\n"
        "# Example:\n"
        "#   replicas: 3\n"
        "replicas: 1\n"
    )
    schema = docs.json.loads(docs.render_schema(values))["properties"]
    assert schema["resources"] == {"description": "Resources.", "type": "object"}
    assert schema["replicas"] == {"description": "Replicas.", "type": "integer"}
    assert "```yaml\nreplicas: 3\n```" in docs.render_readme(values)


def _rule_lines() -> list[tuple[str, str]]:
    """(template, line) of every RBAC rule field the templates hold.

    Rendered Roles are checked too (tests/cluster/test_helm.py); this catches a
    wildcard in any branch of the templates, rendered by the tests or not.
    """
    found = []
    for path in [*sorted(TEMPLATES.glob("*-role.yaml")), TEMPLATES / "_helpers.tpl"]:
        for line in path.read_text().splitlines():
            if re.match(r"^\s*(- )?(apiGroups|resources|verbs|resourceNames):", line):
                found.append((path.name, line.strip()))
    return found


def test_rbac_rules_use_no_wildcard() -> None:
    rules = _rule_lines()
    assert len(rules) > 20, "the RBAC templates moved; update this test"
    for template, line in rules:
        assert "*" not in line, f"{template}: wildcard in {line!r}"


def test_rbac_grants_no_escalation_verbs() -> None:
    verbs = {
        verb
        for _, line in _rule_lines()
        if line.startswith(("verbs:", "- verbs:"))
        for verb in yaml.safe_load(line.partition(":")[2])
    }
    assert verbs == {"get", "list", "watch", "create", "patch", "update", "delete"}


def test_templates_are_named_component_kind() -> None:
    components = {"operator", "router", "ledger", "crds"}
    for path in TEMPLATES.glob("*.yaml"):
        component, _, kind = path.stem.partition("-")
        assert component in components and kind, path.name
    assert (TEMPLATES / "NOTES.txt").is_file()


def test_chart_version_and_app_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == "0.1.0"


def test_chart_crds_are_byte_copies() -> None:
    """The chart's CRDs are the files in crds/, not a re-serialisation."""
    for source in sorted((REPO_ROOT / "crds").glob("*.yaml")):
        copy = CHART / "files" / "crds" / source.name
        assert copy.read_bytes() == source.read_bytes(), source.name
