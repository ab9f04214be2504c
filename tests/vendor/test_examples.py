"""The VendorIntegration examples of the vendor plugins agree with the plugins' manifests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from switchboard.sdk import load_manifest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {
    "voltha.yaml": "voltha",
    "voltha-production.yaml": "voltha",
    "analytics-events.yaml": "analytics-events",
    "analytics-events-production.yaml": "analytics-events",
}
_REFERENCE = re.compile(r"\$\{([A-Za-z0-9_.-]+)\}")


def _resolve(value: Any, seen: set[str]) -> Any:
    """The config with each ``${KEY}`` replaced by a plausible value, as the pod would see it."""
    if isinstance(value, dict):
        return {key: _resolve(item, seen) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, seen) for item in value]
    if isinstance(value, str):
        seen.update(_REFERENCE.findall(value))
        return _REFERENCE.sub("postgresql://user:secret@db:5432/analytics", value)
    return value


@pytest.mark.parametrize(("example", "plugin"), EXAMPLES.items())
def test_example_matches_the_plugin_manifest(example: str, plugin: str) -> None:
    resource = yaml.safe_load((ROOT / "examples" / example).read_text())
    manifest = load_manifest(ROOT / "plugin-images" / plugin)
    spec = resource["spec"]
    referenced: set[str] = set()

    jsonschema.validate(_resolve(spec["config"], referenced), manifest.required_config)

    assert (spec["vendor"], spec["integrationType"]) == (
        manifest.vendor,
        str(manifest.integration_type),
    )
    known = set(manifest.secrets.required) | set(manifest.secrets.optional)
    required = set(spec.get("requiredSecrets", []))
    assert set(manifest.secrets.required) <= required <= known
    assert referenced <= required
    if spec.get("environment") == "production":
        assert re.search(r"@sha256:[a-f0-9]{64}$", spec["image"])
