"""Read the resource YAML local mode runs: the very files you `kubectl apply`.

CommunicationPlugin and VendorIntegration documents are validated with the
same models the CRDs are generated from; Secret documents provide the
credentials their `secretRef` names. Each resource's image names the plugin
folder to run: `.../plugin-<name>:<tag>` runs `<plugins dir>/<name>`, unless
the annotation `switchboard.dev/plugin-dir` names a folder (relative to the
YAML file). A document the API server would refuse (a field that fails the
schema, a Secret whose data is not base64) is reported with the file and the
field, and nothing is started.

What the operator would decide per resource (a missing Secret or key, a refused
image, a licence, dependencies) is not decided here: the supervisor runs the
operator's gates (`switchboard.controller.gates`) on what this module found,
`observed()` being what a cluster lookup would have returned.

Values the resource's Secret lacks may come from the environment of
`switchboard up`: a key in `requiredSecrets`, or a `${VAR}` in `config` that
neither the Secret nor `env` defines. They reach the plugin the way the
Secret's own values do (as secret files), never through its environment.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from switchboard.api import constants
from switchboard.api.models import CommunicationPlugin, SecurityLevel, VendorIntegration
from switchboard.controller import gates

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
    """One resource, ready to run as a child process once its gates pass."""

    resource: CommunicationPlugin | VendorIntegration
    source: Path
    plugin_dir: Path
    secrets: dict[str, str] = field(default_factory=dict, compare=True)
    """What the plugin gets as secret files: the Secret's values and environment fallbacks."""
    secret_keys: frozenset[str] | None = None
    """Key names the gates see in the Secret `secretRef` names; None: no such Secret."""
    license_token: str | None = None
    """The licence from the Secret `spec.license` names, if any."""

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


@dataclass(frozen=True)
class Loaded:
    """Everything `load` found: the plugins, and the namespaces' security ceilings."""

    plugins: list[LocalPlugin]
    namespace_levels: dict[str, SecurityLevel] = field(default_factory=dict)


def load(paths: list[Path], plugins: list[Path], environ: Mapping[str, str]) -> Loaded:
    """Every plugin resource in `paths`; raises LoadError listing every problem."""
    problems: list[str] = []
    resources: list[tuple[Path, CommunicationPlugin | VendorIntegration]] = []
    secrets: dict[tuple[str, str], dict[str, str]] = {}
    levels: dict[str, SecurityLevel] = {}
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
            metadata = doc.get("metadata") or {}
            name = metadata.get("name", "?")
            if kind == "Secret":
                namespace = metadata.get("namespace") or "default"
                try:
                    secrets[(namespace, name)] = _secret_data(source, doc)
                except LoadError as error:
                    problems.append(str(error))
                continue
            if kind == "Namespace":
                level = namespace_ceiling(metadata.get("labels") or {})
                if level is not None:
                    levels[name] = level
                continue
            model = _MODELS.get(str(kind))
            if model is None:
                continue  # other kinds (a Role, a ConfigMap...) mean nothing locally
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
        loaded.append(_local_plugin(resource, source, folder, secrets, environ))
    if problems:
        raise LoadError("\n".join(problems))
    return Loaded(loaded, levels)


def _local_plugin(
    resource: CommunicationPlugin | VendorIntegration,
    source: Path,
    folder: Path,
    secrets: Mapping[tuple[str, str], dict[str, str]],
    environ: Mapping[str, str],
) -> LocalPlugin:
    """The resource with what its Secret, its licence Secret and the environment give it."""
    namespace = resource.metadata.namespace or "default"
    spec = resource.spec
    secret = secrets.get((namespace, spec.secret_ref.name)) if spec.secret_ref else None
    values = dict(secret or {})
    from_environment = {k for k in spec.required_secrets if k not in values and k in environ}
    plain = {variable.name for variable in spec.env}
    from_environment |= {
        variable
        for text in _strings(spec.config)
        for variable in _VARIABLE.findall(text)
        if variable not in values and variable not in plain and variable in environ
    }
    values.update({k: environ[k] for k in from_environment})
    keys: frozenset[str] | None = frozenset(values)
    if secret is None and not (
        spec.required_secrets and set(spec.required_secrets) <= values.keys()
    ):
        keys = None  # the Secret is missing, and the environment does not stand in for it
    token = None
    if isinstance(resource, VendorIntegration) and resource.spec.license is not None:
        licence = resource.spec.license
        token = secrets.get((namespace, licence.secret_name), {}).get(licence.key)
    return LocalPlugin(resource, source, folder, values, keys, token)


def namespace_ceiling(labels: Mapping[str, str]) -> SecurityLevel | None:
    """A Namespace's `switchboard.dev/max-security-level` label, if it names a level."""
    value = labels.get(constants.LABEL_MAX_SECURITY_LEVEL)
    try:
        return SecurityLevel(value) if value else None
    except ValueError:
        return None


def observed(
    plugin: LocalPlugin,
    everything: Loaded,
    serving: set[tuple[str, str, str]],
) -> gates.Observed:
    """What the operator would have looked up in the cluster for `plugin`'s gates.

    A sibling VendorIntegration is Ready when its process serves (`serving`).
    """
    siblings = {
        other.name: gates.Sibling(
            depends_on=tuple(other.resource.spec.depends_on),
            ready=other.key in serving,
        )
        for other in everything.plugins
        if isinstance(other.resource, VendorIntegration) and other.namespace == plugin.namespace
    }
    return gates.Observed(
        secret_keys=plugin.secret_keys,
        license_token=plugin.license_token,
        siblings=siblings,
        namespace_max_security_level=everything.namespace_levels.get(plugin.namespace),
    )


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
