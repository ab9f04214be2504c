"""The API models reject what the CRDs reject, naming the field, without a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from switchboard.api.models import (
    CommunicationPlugin,
    VendorIntegration,
    parse_duration,
)
from tests.support.resources import INVALID_CASES, InvalidCase, communication_plugin

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODELS = {"CommunicationPlugin": CommunicationPlugin, "VendorIntegration": VendorIntegration}


def _names_field(error: ValidationError, field: str) -> bool:
    """Whether one of the errors is located at `field` (or an item of it), or is a
    cross-field error on a parent whose message names the rest of the path."""
    for item in error.errors():
        path = ""
        for part in item["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
        if path == field or path.startswith((f"{field}.", f"{field}[")):
            return True  # the field itself, or a part of it
        if field.startswith(f"{path}["):
            return True  # the list that holds the offending item
        if field.startswith(path) and field[len(path) :].lstrip(".") in item["msg"]:
            return True  # a cross-field rule on a parent, naming the field
    return False


@pytest.mark.parametrize("case", INVALID_CASES, ids=lambda c: c.id)
def test_models_reject_invalid_resource_naming_the_field(case: InvalidCase) -> None:
    model = MODELS[case.resource["kind"]]
    with pytest.raises(ValidationError) as caught:
        model.model_validate(case.resource)
    assert _names_field(caught.value, case.field), (
        f"{case.id}: expected an error about {case.field}, got: {caught.value}"
    )


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_a_valid_resource(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") in MODELS:
            MODELS[doc["kind"]].model_validate(doc)


def test_defaults_match_the_documented_ones() -> None:
    plugin = CommunicationPlugin.model_validate(communication_plugin())
    assert (plugin.spec.priority, plugin.spec.weight, plugin.spec.enabled) == (1, 100, True)
    assert parse_duration(plugin.spec.send_timeout) == 10.0


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("10s", 10.0), ("1m30s", 90.0), ("1.5s", 1.5)]
)
def test_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
