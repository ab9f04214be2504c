"""Generate the CustomResourceDefinitions from the API models.

pydantic's JSON Schema is close to, but not, a structural OpenAPI v3 schema:
it uses `$ref`, expresses optional fields as `anyOf [X, null]`, and carries
titles. `structural()` rewrites it into what the API server accepts, keeping
descriptions, defaults, enums, bounds and patterns. Cross-field rules become
`x-kubernetes-validations` (CEL).
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from switchboard.api import constants
from switchboard.api.models import (
    RESOURCE_MODELS,
    CommunicationPlugin,
    CrossFieldRule,
    ObjectMeta,
    PluginStatus,
    VendorIntegration,
)

_DROPPED_KEYS = {"title", "$defs", "additionalProperties"}
_READY = '.status.conditions[?(@.type=="Ready")].status'
#: The Ready condition's message, as cert-manager shows it (`kubectl get -o wide`).
_STATUS = {
    "name": "Status",
    "type": "string",
    "jsonPath": '.status.conditions[?(@.type=="Ready")].message',
    "priority": 1,
}

PRINTER_COLUMNS: dict[str, list[dict[str, Any]]] = {
    CommunicationPlugin.kind_name: [
        {"name": "Channel", "type": "string", "jsonPath": ".spec.channelType"},
        {"name": "Priority", "type": "integer", "jsonPath": ".spec.priority"},
        {"name": "Weight", "type": "integer", "jsonPath": ".spec.weight", "priority": 1},
        {"name": "Enabled", "type": "boolean", "jsonPath": ".spec.enabled", "priority": 1},
        {"name": "Ready", "type": "string", "jsonPath": _READY},
        {"name": "Endpoints", "type": "integer", "jsonPath": ".status.endpoints.ready"},
        _STATUS,
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
    VendorIntegration.kind_name: [
        {"name": "Vendor", "type": "string", "jsonPath": ".spec.vendor"},
        {"name": "Type", "type": "string", "jsonPath": ".spec.integrationType"},
        {"name": "Environment", "type": "string", "jsonPath": ".spec.environment"},
        {"name": "Ready", "type": "string", "jsonPath": _READY},
        {"name": "Endpoints", "type": "integer", "jsonPath": ".status.endpoints.ready"},
        _STATUS,
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
}


def structural(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rewrite a pydantic JSON Schema into a structural OpenAPI v3 schema."""
    defs = schema.get("$defs", {}) if defs is None else defs
    out: dict[str, Any] = {}
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        out.update(structural(target, defs))
    if "anyOf" in schema:
        branches = [b for b in schema["anyOf"] if b.get("type") != "null"]
        if len(branches) == 1:  # Optional[X]: absence, not null, means unset.
            out.update(structural(branches[0], defs))
        else:
            out["anyOf"] = [structural(b, defs) for b in branches]
    for key, value in schema.items():
        if key in _DROPPED_KEYS or key in ("$ref", "anyOf"):
            continue
        if key == "default" and value is None:
            continue
        if key == "description":
            value = " ".join(value.split())  # docstrings wrap; kubectl explain re-wraps.
        if key == "properties":
            out["properties"] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out["items"] = structural(value, defs)
        else:
            out[key] = value
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        out["additionalProperties"] = structural(additional, defs)
    elif additional is True and "properties" not in schema:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out["type"] = "object"
        out.pop("additionalProperties", None)
    if out.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def _validations(rules: tuple[CrossFieldRule, ...]) -> dict[str, Any]:
    return {"x-kubernetes-validations": [r.as_validation() for r in rules]} if rules else {}


def crd(model: type[CommunicationPlugin] | type[VendorIntegration]) -> dict[str, Any]:
    """The CustomResourceDefinition of one resource model."""
    spec_model = model.model_fields["spec"].annotation
    assert isinstance(spec_model, type)
    spec_schema = structural(spec_model.model_json_schema(by_alias=True, mode="validation"))
    spec_schema.update(_validations(getattr(spec_model, "cross_field_rules", ())))
    status_schema = structural(PluginStatus.model_json_schema(by_alias=True, mode="validation"))
    description = " ".join((model.__doc__ or "").split())
    openapi: dict[str, Any] = {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "Versioned schema of this object: switchboard.dev/v1alpha1.",
            },
            "kind": {"type": "string", "description": f"Always {model.kind_name}."},
            # The only metadata a CRD may constrain is the name.
            "metadata": {
                "type": "object",
                "properties": {
                    "name": structural(ObjectMeta.model_json_schema())["properties"]["name"]
                },
            },
            "spec": spec_schema,
            "status": status_schema,
        },
        **_validations(model.root_rules),
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{model.plural}.{constants.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "switchboard"},
        },
        "spec": {
            "group": constants.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": model.kind_name,
                "listKind": f"{model.kind_name}List",
                "plural": model.plural,
                "singular": model.kind_name.lower(),
                "shortNames": list(model.short_names),
                "categories": [constants.CATEGORY],
            },
            "versions": [
                {
                    "name": constants.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS[model.kind_name],
                    "schema": {"openAPIV3Schema": openapi},
                }
            ],
        },
    }


_HEADER = (
    "# Generated by `switchboard crds` from operator/switchboard/api/models.py.\n"
    "# Do not edit: change the models and regenerate.\n"
)


def render_crds() -> dict[str, str]:
    """File name → YAML text of every CRD."""
    return {
        f"{model.plural}.{constants.GROUP}.yaml": _HEADER
        + yaml.safe_dump(crd(model), sort_keys=False, width=100, allow_unicode=True)
        for model in RESOURCE_MODELS
    }


def _constraints(schema: dict[str, Any]) -> str:
    parts = []
    if "enum" in schema:
        parts.append("one of " + ", ".join(f"`{v}`" for v in schema["enum"]))
    if "minimum" in schema or "maximum" in schema:
        parts.append(f"{schema.get('minimum', '')}–{schema.get('maximum', '')}")
    if "pattern" in schema and len(schema["pattern"]) <= 40:
        parts.append(f"pattern `{schema['pattern']}`")
    if "maxLength" in schema:
        parts.append(f"≤ {schema['maxLength']} chars")
    if "maxItems" in schema:
        parts.append(f"≤ {schema['maxItems']} items")
    if schema.get("x-kubernetes-list-type") == "set":
        parts.append("unique items")
    return "; ".join(parts)


def _type_name(schema: dict[str, Any]) -> str:
    if schema.get("x-kubernetes-int-or-string"):
        return "int or string"
    if schema.get("type") == "array":
        return f"[]{_type_name(schema.get('items', {}))}"
    if schema.get("type") == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map[string]{_type_name(schema['additionalProperties'])}"
    return str(schema.get("type", "object"))


def _rows(schema: dict[str, Any], path: str, required: bool) -> list[str]:
    default = f"`{json.dumps(schema['default'])}`" if "default" in schema else ""
    description = schema.get("description", "").replace("|", "\\|")
    flag = " *(required)*" if required else ""
    rows = [
        f"| `{path}`{flag} | {_type_name(schema)} | {default} | {_constraints(schema)} "
        f"| {description} |"
    ]
    children = schema.get("properties", {})
    if schema.get("type") == "array":
        children = schema.get("items", {}).get("properties", {})
        path = f"{path}[]"
    needed = set(schema.get("required", []) or schema.get("items", {}).get("required", []))
    for name, sub in children.items():
        rows.extend(_rows(sub, f"{path}.{name}", name in needed))
    return rows


def render_reference() -> str:
    """docs/crd-reference.md: every field of both resources, from the models."""
    lines = [
        "# CRD reference",
        "",
        "Generated by `switchboard crds --reference docs/crd-reference.md` from",
        "`operator/switchboard/api/models.py`; `kubectl explain` shows the same text.",
        f"Group `{constants.GROUP}`, version `{constants.VERSION}`, both namespaced.",
    ]
    for model in RESOURCE_MODELS:
        definition = crd(model)
        version = definition["spec"]["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]
        names = definition["spec"]["names"]
        lines += [
            "",
            f"## {model.kind_name}",
            "",
            schema["description"],
            "",
            f"Short names: {', '.join(f'`{n}`' for n in names['shortNames'])}; "
            f"category `{constants.CATEGORY}` (`kubectl get switchboard`).",
            "",
            "| field | type | default | constraints | description |",
            "| --- | --- | --- | --- | --- |",
        ]
        for part in ("spec", "status"):
            lines += _rows(schema["properties"][part], part, part == "spec")
        rules = [*schema.get("x-kubernetes-validations", [])]
        rules += schema["properties"]["spec"].get("x-kubernetes-validations", [])
        if rules:
            lines += ["", "Rules across fields, enforced by the API server (CEL):", ""]
            lines += [f"- `{r['fieldPath']}`: {r['message']}" for r in rules]
        lines += [
            "",
            "Printer columns: "
            + ", ".join(
                c["name"] + (" (wide)" if c.get("priority") else "")
                for c in version["additionalPrinterColumns"]
            )
            + ".",
        ]
    return "\n".join(lines) + "\n"
