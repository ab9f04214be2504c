"""The plugin manifest, ``manifest.yml``: what a plugin image says about itself.

Every folder under ``plugin-images/`` has one. It is read by three parties: the
plugin runtime (to find the entry point and validate config), ``switchboard
plugin validate`` (to check the code agrees with it), and the operator (to
validate a resource's ``config`` and ``requiredSecrets`` before deploying).
Validation errors name the field and say what to write instead, because the
reader is a plugin author looking at their YAML.

A communication plugin names a ``channel_type``; a vendor integration names a
``vendor`` and an ``integration_type``. Exactly one of the two forms.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final, Self

import jsonschema
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from switchboard.api.models import IntegrationType

MANIFEST_FILE: Final = "manifest.yml"

_SEMVER: Final = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
_DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_ROUTING_KEY: Final = re.compile(r"^[a-z][a-z0-9_-]*$")
_IDENTIFIER: Final = r"[A-Za-z_][A-Za-z0-9_]*"
_ENTRY_POINT: Final = re.compile(rf"^({_IDENTIFIER}(?:\.{_IDENTIFIER})*)[:.]({_IDENTIFIER})$")
#: Kubernetes Secret data keys.
_SECRET_KEY: Final = re.compile(r"^[-._a-zA-Z0-9]+$")
_OPERATION_NAME: Final = re.compile(r"^[a-z][a-z0-9_]*$")
_PERMISSION: Final = re.compile(r"^[a-z0-9]+([._:-][a-z0-9]+)*$")


class PluginPackageError(Exception):
    """A plugin folder is unusable: bad manifest, missing entry point, wrong class.

    The message lists every problem, one per line, each saying what to fix.
    """


class SecretKeys(BaseModel):
    """Keys of the Kubernetes Secret mounted into the plugin, one file per key."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    required: tuple[str, ...] = ()
    """Keys that must exist before the plugin starts; the operator checks them too."""
    optional: tuple[str, ...] = ()
    """Keys the plugin uses when present."""

    @field_validator("required", "optional")
    @classmethod
    def _keys_are_secret_keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        bad = [key for key in keys if not _SECRET_KEY.match(key)]
        if bad:
            raise ValueError(f"{bad} are not valid Secret keys (letters, digits, '-', '_', '.')")
        _reject_duplicates(keys)
        return keys

    @model_validator(mode="after")
    def _required_and_optional_are_disjoint(self) -> Self:
        both = sorted(set(self.required) & set(self.optional))
        if both:
            raise ValueError(f"{both} are listed as both required and optional; keep one")
        return self


class Manifest(BaseModel):
    """The contents of ``manifest.yml``."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    plugin_id: str
    """Stable identifier, a DNS label such as ``twilio-sms``."""
    name: str = Field(min_length=1)
    """Human-readable name."""
    version: str
    """Semantic version of the plugin, such as ``1.4.0``."""
    description: str = ""
    """One sentence on what the plugin does."""
    channel_type: str | None = None
    """Communication plugins: the routing key (``email``, ``sms``, ``slack``, ...)."""
    vendor: str | None = None
    """Vendor integrations: who the integration talks to (``voltha``, ...)."""
    integration_type: IntegrationType | None = None
    """Vendor integrations: ``network_automation``, ``monitoring`` or ``analytics``."""
    capabilities: tuple[str, ...] = ()
    """Free-form feature flags the router and operators read (``attachments``, ...)."""
    required_config: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    """JSON Schema the plugin's ``config`` must satisfy (checked before start)."""
    secrets: SecretKeys = SecretKeys()
    """Secret keys the plugin reads."""
    operations: tuple[str, ...] = ()
    """Names of the operations ``Invoke`` accepts; must match the code."""
    operation_permissions: dict[str, str] = Field(default_factory=dict)
    """The permission a caller must hold for an operation, by operation (e.g.
    ``get_device_status: network.fiber.read``, ``provision_olt:
    network.fiber.manage``), checked by the router on top of the resource's
    ``permissions``; an operation not listed needs only those."""
    entry_point: str
    """``module:Class`` (or ``module.Class``), the module relative to the plugin folder."""

    @field_validator("plugin_id")
    @classmethod
    def _plugin_id_is_a_dns_label(cls, plugin_id: str) -> str:
        if not _DNS_LABEL.match(plugin_id):
            raise ValueError(
                f"{plugin_id!r} is not a DNS label: lowercase letters, digits and '-', "
                "at most 63 characters, such as `acme-sms`"
            )
        return plugin_id

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_semver(cls, version: object) -> object:
        # YAML reads `version: 1.0` as a number; say what is wrong with it, not its type.
        text = str(version) if isinstance(version, int | float) else version
        if isinstance(text, str) and not _SEMVER.match(text):
            raise ValueError(f"{text!r} is not a semantic version such as `1.4.0`")
        return text

    @field_validator("channel_type", "vendor")
    @classmethod
    def _routing_keys_are_lowercase(cls, key: str | None) -> str | None:
        if key is not None and not _ROUTING_KEY.match(key):
            raise ValueError(f"{key!r} must be lowercase letters, digits, '_' or '-'")
        return key

    @field_validator("capabilities")
    @classmethod
    def _capabilities_are_unique(cls, capabilities: tuple[str, ...]) -> tuple[str, ...]:
        _reject_duplicates(capabilities)
        return capabilities

    @field_validator("operations")
    @classmethod
    def _operations_are_names(cls, operations: tuple[str, ...]) -> tuple[str, ...]:
        bad = [name for name in operations if not _OPERATION_NAME.match(name)]
        if bad:
            raise ValueError(f"{bad} are not operation names (lower_snake_case)")
        _reject_duplicates(operations)
        return operations

    @field_validator("required_config")
    @classmethod
    def _required_config_is_a_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as error:
            where = "/".join(str(part) for part in error.path) or "(top level)"
            raise ValueError(f"not a valid JSON Schema at {where}: {error.message}") from None
        if schema.get("type", "object") != "object":
            raise ValueError("must describe an object: set `type: object`")
        return schema

    @field_validator("entry_point")
    @classmethod
    def _entry_point_names_a_class(cls, entry_point: str) -> str:
        if not _ENTRY_POINT.match(entry_point):
            raise ValueError(
                f"{entry_point!r} is not `module:Class` or `module.Class` "
                "(for example `plugin:AcmeSmsPlugin`)"
            )
        return entry_point

    @model_validator(mode="after")
    def _permissions_name_operations(self) -> Self:
        unknown = sorted(set(self.operation_permissions) - set(self.operations))
        if unknown:
            raise ValueError(
                f"operation_permissions names {unknown}, which are not in `operations`"
            )
        bad = [p for p in self.operation_permissions.values() if not _PERMISSION.match(p)]
        if bad:
            raise ValueError(f"{bad} are not permission names such as `network.fiber.read`")
        return self

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Self:
        vendor_form = (self.vendor, self.integration_type)
        if self.channel_type is not None and any(part is not None for part in vendor_form):
            raise ValueError(
                "set either `channel_type` (a communication plugin) or `vendor` and "
                "`integration_type` (a vendor integration), not both"
            )
        if self.channel_type is None and None in vendor_form:
            raise ValueError(
                "set `channel_type` for a communication plugin, or both `vendor` and "
                "`integration_type` for a vendor integration"
            )
        return self

    @property
    def is_communication_plugin(self) -> bool:
        """True for a channel (``channel_type``), False for a vendor integration."""
        return self.channel_type is not None

    @property
    def entry_module(self) -> str:
        """The module part of ``entry_point``."""
        return self._split_entry_point()[0]

    @property
    def entry_class(self) -> str:
        """The class part of ``entry_point``."""
        return self._split_entry_point()[1]

    def _split_entry_point(self) -> tuple[str, str]:
        match = _ENTRY_POINT.match(self.entry_point)
        assert match is not None  # checked by the validator
        return match.group(1), match.group(2)


def load_manifest(plugin_dir: str | Path) -> Manifest:
    """Read and validate ``plugin_dir/manifest.yml``.

    Raises ``PluginPackageError`` listing every problem as ``field: what is wrong``.
    """
    path = Path(plugin_dir) / MANIFEST_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PluginPackageError(f"{path} does not exist; every plugin folder needs one") from None
    except yaml.YAMLError as error:
        raise PluginPackageError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise PluginPackageError(f"{path} must be a mapping of fields, got {type(data).__name__}")
    try:
        return Manifest.model_validate(data)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(part) for part in issue['loc']) or '(top level)'}: "
            f"{issue['msg'].removeprefix('Value error, ')}"
            for issue in error.errors()
        ]
        raise PluginPackageError(f"{path} is invalid:\n  " + "\n  ".join(problems)) from None


def _reject_duplicates(items: tuple[str, ...]) -> None:
    duplicates = sorted({item for item in items if items.count(item) > 1})
    if duplicates:
        raise ValueError(f"{duplicates} are listed more than once")
