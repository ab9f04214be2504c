"""Turning mounted files into a plugin's ``config`` and ``secrets``.

The operator renders a resource's ``config`` into a ConfigMap file and mounts
its Secret as a directory of one file per key. It never resolves ``${KEY}``
references: that happens here, inside the pod, so secret values exist only in
the plugin's memory. Every failure is a ``ConfigError`` whose message names the
file, key or field to fix and never contains a secret value.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import jsonschema
import yaml

from switchboard.sdk._errors import ConfigError

#: ``${KEY}`` references a secret (or, failing that, an environment variable);
#: ``$${KEY}`` is the escape for a literal ``${KEY}``.
_REFERENCE: Final = re.compile(r"\$(\$?)\{([-._a-zA-Z0-9]+)\}")
#: Kubernetes mounts a Secret as ``..data -> ..2024_01_01_00_00_00.123/`` plus
#: one ``KEY -> ..data/KEY`` symlink per key; swapping ``..data`` is atomic.
_ATOMIC_DATA_LINK: Final = "..data"
_MAX_REPORTED_PROBLEMS: Final = 3
#: jsonschema quotes the offending value; a huge one must not flood a message.
_MAX_PROBLEM_LENGTH: Final = 300


def read_config_file(path: Path) -> dict[str, Any]:
    """The config mapping in ``path``: JSON for ``.json``, else YAML. A missing file is ``{}``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise ConfigError(f"Could not read config file {path}: {error.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"Config file {path} is not valid: {_one_line(str(error))}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping, not {type(data).__name__}")
    return data


def read_secrets_dir(directory: Path) -> dict[str, str]:
    """Secret values by key from a directory of one file per key; a missing directory is ``{}``.

    Dotfiles and Kubernetes' ``..data``/``..<timestamp>`` bookkeeping are
    skipped. When ``..data`` exists the files are read through it, so one call
    sees one consistent version of the Secret even while it is being swapped.
    One trailing newline is dropped: ``echo token > file`` is a common way to
    create a Secret and the newline is never part of the credential.
    """
    if not directory.is_dir():
        return {}
    data_dir = directory / _ATOMIC_DATA_LINK
    source = data_dir.resolve() if data_dir.is_dir() else directory
    secrets: dict[str, str] = {}
    try:
        entries = sorted(os.scandir(source), key=lambda entry: entry.name)
    except FileNotFoundError:  # ..data was swapped between resolve() and scandir()
        return read_secrets_dir(directory)
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_file():
            continue
        try:
            raw = Path(entry.path).read_bytes()
        except OSError as error:
            raise ConfigError(f"Could not read secret {entry.name!r}: {error.strerror}") from None
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"Secret {entry.name!r} is not UTF-8 text") from None
        secrets[entry.name] = value.removesuffix("\n").removesuffix("\r")
    return secrets


def require_secrets(secrets: Mapping[str, str], required: tuple[str, ...], directory: Path) -> None:
    """Raise ``ConfigError`` naming every required key missing from ``secrets``."""
    missing = [key for key in required if key not in secrets]
    if missing:
        raise ConfigError(
            f"Required secret key(s) {', '.join(missing)} not found in {directory}; "
            "add them to the Secret named by secretRef"
        )


def resolve_references(
    config: Mapping[str, Any],
    secrets: Mapping[str, str],
    environ: Mapping[str, str],
) -> tuple[dict[str, Any], set[str]]:
    """Substitute ``${KEY}`` in every string of ``config``: secrets first, then ``environ``.

    Returns the resolved config and every substituted value, which callers must
    treat as secret (redact them from logs). An unresolved reference raises
    ``ConfigError`` naming the key and where it was used.
    """
    substituted: set[str] = set()

    def resolve(value: Any, where: str) -> Any:
        if isinstance(value, str):
            return _REFERENCE.sub(lambda match: replace(match, where), value)
        if isinstance(value, Mapping):
            return {key: resolve(item, f"{where}.{key}") for key, item in value.items()}
        if isinstance(value, list):
            return [resolve(item, f"{where}[{index}]") for index, item in enumerate(value)]
        return value

    def replace(match: re.Match[str], where: str) -> str:
        escaped, key = match.groups()
        if escaped:
            return "${" + key + "}"
        if key in secrets:
            found = secrets[key]
        elif key in environ:
            found = environ[key]
        else:
            raise ConfigError(
                f"{where} references ${{{key}}}, but the Secret has no key {key!r} "
                f"and no environment variable {key} is set"
            )
        substituted.add(found)
        return found

    return resolve(dict(config), "config"), substituted


def schema_violations(instance: Any, schema: Mapping[str, Any], root: str) -> str | None:
    """One line describing how ``instance`` breaks ``schema``, or ``None`` if it conforms.

    Each problem starts with the path of the offending field from ``root``
    (``config.smtp.port``, ``params.device_id``).
    """
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(instance), key=lambda error: list(error.path))
    if not errors:
        return None
    problems = [
        _shorten(_one_line(f"{root}{_json_path(error.absolute_path)}: {error.message}"))
        for error in errors[:_MAX_REPORTED_PROBLEMS]
    ]
    if len(errors) > _MAX_REPORTED_PROBLEMS:
        problems.append(f"and {len(errors) - _MAX_REPORTED_PROBLEMS} more")
    return "; ".join(problems)


def _json_path(path: Any) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_PROBLEM_LENGTH else text[: _MAX_PROBLEM_LENGTH - 3] + "..."
