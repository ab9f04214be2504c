"""Read the resource YAML local mode runs: the very files you `kubectl apply`.

CommunicationPlugin and VendorIntegration documents are validated with the
same models the CRDs are generated from; Secret documents provide the
credentials their `secretRef` names. Each resource's image names the plugin
folder to run: `.../plugin-<name>:<tag>` runs `<plugins dir>/<name>`, unless
the annotation `switchboard.dev/plugin-dir` names a folder (relative to the
YAML file). Any problem is reported with the file and the field, and nothing
is started.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from switchboard.api import constants
from switchboard.api.models import CommunicationPlugin, VendorIntegration

ANNOTATION_PLUGIN_DIR = f"{constants.PREFIX}/plugin-dir"
_MODELS: dict[str, type[CommunicationPlugin] | type[VendorIntegration]] = {
    CommunicationPlugin.kind_name: CommunicationPlugin,
    VendorIntegration.kind_name: VendorIntegration,
}
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.-]*)\}")


class LoadError(Exception):
    """The YAML cannot be run; the message names the file and what to fix."""


@dataclass(frozen=True)
class LocalPlugin:
    """One resource, ready to run as a child process."""

    resource: CommunicationPlugin | VendorIntegration
    source: Path
    plugin_dir: Path
    secrets: dict[str, str] = field(default_factory=dict, compare=True)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.resource.kind, self.namespace, self.resource.metadata.name)

    @property
    def namespace(self) -> str:
        return self.resource.metadata.namespace or "default"

    @property
    def name(self) -> str:
        return self.resource.metadata.name


def _files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml")))
        elif path.is_file():
            files.append(path)
        else:
            raise LoadError(f"{path}: no such file or folder")
    return files


def _field_errors(source: Path, kind: str, name: str, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        path = ""
        for part in item["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        lines.append(f"{source}: {kind} {name!r}: {path or 'resource'}: {item['msg']}")
    return "\n".join(lines)


def _secret_data(source: Path, doc: dict[str, Any]) -> dict[str, str]:
    data = {str(k): str(v) for k, v in (doc.get("stringData") or {}).items()}
    for key, value in (doc.get("data") or {}).items():
        try:
            data[str(key)] = base64.b64decode(str(value), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as error:
            name = doc.get("metadata", {}).get("name")
            raise LoadError(
                f"{source}: Secret {name!r}: data.{key}: not base64 text ({error})"
            ) from error
    return data


def _plugin_dir(
    plugin: CommunicationPlugin | VendorIntegration, source: Path, plugins: list[Path]
) -> Path:
    explicit = plugin.metadata.annotations.get(ANNOTATION_PLUGIN_DIR)
    if explicit:
        folder = (source.parent / explicit).resolve()
        if not (folder / "manifest.yml").is_file():
            raise LoadError(
                f"{source}: {plugin.kind} {plugin.metadata.name!r}: "
                f"metadata.annotations.{ANNOTATION_PLUGIN_DIR}: {folder} has no manifest.yml"
            )
        return folder
    image = plugin.spec.image.split("@", 1)[0]
    repository = image.rsplit("/", 1)[-1].split(":", 1)[0]
    name = repository.removeprefix("plugin-")
    for root in plugins:
        if (root / name / "manifest.yml").is_file():
            return (root / name).resolve()
    searched = ", ".join(str(p) for p in plugins)
    raise LoadError(
        f"{source}: {plugin.kind} {plugin.metadata.name!r}: spec.image: no plugin folder "
        f"{name!r} in {searched}; set --plugins or the {ANNOTATION_PLUGIN_DIR} annotation"
    )


def load(paths: list[Path], plugins: list[Path], environ: dict[str, str]) -> list[LocalPlugin]:
    """Every runnable plugin in `paths`; raises LoadError listing every problem."""
    problems: list[str] = []
    resources: list[tuple[Path, CommunicationPlugin | VendorIntegration]] = []
    secrets: dict[tuple[str, str], dict[str, str]] = {}
    for source in _files(paths):
        try:
            documents = list(yaml.safe_load_all(source.read_text()))
        except yaml.YAMLError as error:
            problems.append(f"{source}: not valid YAML: {error}")
            continue
        for doc in documents:
            if not isinstance(doc, dict):
                continue
            kind = doc.get("kind")
            name = (doc.get("metadata") or {}).get("name", "?")
            if kind == "Secret":
                namespace = (doc.get("metadata") or {}).get("namespace") or "default"
                try:
                    secrets[(namespace, name)] = _secret_data(source, doc)
                except LoadError as error:
                    problems.append(str(error))
                continue
            model = _MODELS.get(str(kind))
            if model is None:
                continue  # other kinds (a Namespace, a Role...) mean nothing locally
            try:
                resources.append((source, model.model_validate(doc)))
            except ValidationError as error:
                problems.append(_field_errors(source, str(kind), name, error))
    loaded: list[LocalPlugin] = []
    seen: dict[tuple[str, str, str], Path] = {}
    for source, resource in resources:
        namespace = resource.metadata.namespace or "default"
        key = (resource.kind, namespace, resource.metadata.name)
        if key in seen:
            where = seen[key]
            problems.append(
                f"{source}: {resource.kind} {resource.metadata.name!r} is also in {where}"
            )
            continue
        seen[key] = source
        try:
            folder = _plugin_dir(resource, source, plugins)
        except LoadError as error:
            problems.append(str(error))
            continue
        values: dict[str, str] = {}
        if resource.spec.secret_ref is not None:
            values = secrets.get((namespace, resource.spec.secret_ref.name), {})
        missing = [
            k for k in resource.spec.required_secrets if k not in values and k not in environ
        ]
        if missing:
            secret = resource.spec.secret_ref.name if resource.spec.secret_ref else "?"
            problems.append(
                f"{source}: {resource.kind} {resource.metadata.name!r}: spec.requiredSecrets: "
                f"{', '.join(missing)} missing; add them to Secret {secret!r} or set them as "
                "environment variables"
            )
            continue
        unresolved = sorted(
            {
                variable
                for value in _strings(resource.spec.config)
                for variable in _VARIABLE.findall(value)
                if variable not in values and variable not in environ
            }
        )
        if unresolved:
            problems.append(
                f"{source}: {resource.kind} {resource.metadata.name!r}: spec.config: "
                f"${{{unresolved[0]}}} has no value; define it in the Secret or the environment"
            )
            continue
        loaded.append(LocalPlugin(resource, source, folder, values))
    if problems:
        raise LoadError("\n".join(problems))
    return loaded


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
