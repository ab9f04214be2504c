"""From a plugin folder to a plugin class, and what that class will say about itself.

``load_plugin`` reads ``manifest.yml`` and imports its entry point with the
folder on ``sys.path``. ``describe`` builds the ``Describe`` answer; the runtime
serves it and ``switchboard plugin validate`` compares it with the manifest
(``disagreements``), so the check and the real answer can't drift apart.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from switchboard import __version__
from switchboard.plugin.v1 import plugin_pb2
from switchboard.sdk._plugin import MessagingPlugin, Plugin
from switchboard.sdk.manifest import Manifest, PluginPackageError, load_manifest

_KINDS = "MessagingPlugin, NetworkAutomationPlugin, MonitoringPlugin or AnalyticsPlugin"


@dataclass(frozen=True)
class LoadedPlugin:
    """A plugin folder whose manifest parsed and whose entry point imported."""

    directory: Path
    manifest: Manifest
    plugin_class: type[Plugin]

    def describe(self) -> plugin_pb2.DescribeResponse:
        """The ``Describe`` answer: identity from the manifest, behaviour from the code."""
        manifest, cls = self.manifest, self.plugin_class
        response = plugin_pb2.DescribeResponse(
            plugin_id=manifest.plugin_id,
            name=manifest.name,
            version=manifest.version,
            vendor=cls.vendor or manifest.vendor or "",
            capabilities=_declared(cls.capabilities, manifest.capabilities),
            required_config_schema_json=json.dumps(manifest.required_config, sort_keys=True),
            secrets=plugin_pb2.SecretKeys(
                required=_declared(cls.required_secrets, manifest.secrets.required),
                optional=_declared(cls.optional_secrets, manifest.secrets.optional),
            ),
            operations=[
                plugin_pb2.Operation(
                    name=spec.name,
                    description=spec.description,
                    params_schema_json=json.dumps(spec.params_schema, sort_keys=True),
                    permission=manifest.operation_permissions.get(spec.name, ""),
                )
                for spec in cls.declared_operations().values()
            ],
            sdk_version=__version__,
        )
        if issubclass(cls, MessagingPlugin):
            response.channel_type = cls.channel_type or manifest.channel_type or ""
        else:
            response.integration_type = str(cls.integration_type or "")
        return response

    def disagreements(self) -> list[str]:
        """Where the code and ``manifest.yml`` disagree, each saying what to change."""
        manifest, cls = self.manifest, self.plugin_class
        described = self.describe()
        name = cls.__qualname__
        problems: list[str] = []
        if issubclass(cls, MessagingPlugin) != manifest.is_communication_plugin:
            code_kind = (
                "a communication plugin (MessagingPlugin)"
                if issubclass(cls, MessagingPlugin)
                else f"a {cls.integration_type} integration"
            )
            manifest_kind = (
                f"channel_type {manifest.channel_type!r}"
                if manifest.is_communication_plugin
                else f"integration_type {manifest.integration_type}"
            )
            problems.append(
                f"kind: manifest.yml declares {manifest_kind} but {name} is {code_kind}; "
                "change the manifest or the base class"
            )
        elif manifest.is_communication_plugin:
            if described.channel_type != manifest.channel_type:
                problems.append(
                    f"channel_type: manifest.yml says {manifest.channel_type!r}, "
                    f"{name}.channel_type says {described.channel_type!r}; make them equal"
                )
        else:
            if described.integration_type != manifest.integration_type:
                problems.append(
                    f"integration_type: manifest.yml says {manifest.integration_type}, "
                    f"{name} is a {described.integration_type} plugin; change one of them"
                )
            if described.vendor != manifest.vendor:
                problems.append(
                    f"vendor: manifest.yml says {manifest.vendor!r}, {name}.vendor says "
                    f"{described.vendor!r}; make them equal"
                )
        problems += _set_differences(
            "capabilities", manifest.capabilities, described.capabilities, f"{name}.capabilities"
        )
        problems += _set_differences(
            "secrets.required",
            manifest.secrets.required,
            described.secrets.required,
            f"{name}.required_secrets",
        )
        problems += _set_differences(
            "secrets.optional",
            manifest.secrets.optional,
            described.secrets.optional,
            f"{name}.optional_secrets",
        )
        declared = {operation.name for operation in described.operations}
        for missing in sorted(set(manifest.operations) - declared):
            problems.append(
                f"operations: manifest.yml lists {missing!r} but {name} has no such "
                "operation; remove it from the manifest or declare it with @operation"
            )
        for extra in sorted(declared - set(manifest.operations)):
            problems.append(
                f"operations: {name} declares {extra!r} but manifest.yml does not list it; "
                "add it under `operations:`"
            )
        for spec in cls.declared_operations().values():
            if not inspect.iscoroutinefunction(getattr(cls, spec.method_name)):
                problems.append(
                    f"operations: {name}.{spec.method_name} must be `async def` "
                    f"to serve operation {spec.name!r}"
                )
        return problems


def load_plugin(plugin_dir: str | os.PathLike[str]) -> LoadedPlugin:
    """Load the plugin in ``plugin_dir``; raise ``PluginPackageError`` saying what to fix."""
    directory = Path(plugin_dir).resolve()
    if not directory.is_dir():
        raise PluginPackageError(f"{directory} is not a directory")
    manifest = load_manifest(directory)
    module = _import_entry_module(directory, manifest.entry_module)
    plugin_class = getattr(module, manifest.entry_class, None)
    where = f"entry_point {manifest.entry_point!r}"
    if plugin_class is None:
        raise PluginPackageError(
            f"{where}: module {manifest.entry_module!r} has no {manifest.entry_class!r}"
        )
    if not (isinstance(plugin_class, type) and issubclass(plugin_class, Plugin)):
        raise PluginPackageError(
            f"{where}: {manifest.entry_class} must be a class subclassing {_KINDS}"
        )
    if not issubclass(plugin_class, MessagingPlugin) and plugin_class.integration_type is None:
        raise PluginPackageError(f"{where}: {manifest.entry_class} must subclass one of {_KINDS}")
    if inspect.isabstract(plugin_class):
        missing = ", ".join(sorted(getattr(plugin_class, "__abstractmethods__", ())))
        raise PluginPackageError(f"{where}: {manifest.entry_class} does not implement {missing}")
    try:
        plugin_class.declared_operations()
    except TypeError as error:
        raise PluginPackageError(f"{where}: {error}") from None
    return LoadedPlugin(directory=directory, manifest=manifest, plugin_class=plugin_class)


def _import_entry_module(directory: Path, module_name: str) -> object:
    # The plugin folder is a source root, like a container's WORKDIR. When a
    # second plugin folder is loaded into the same process (tests, local
    # mode), a module of the same name from another folder would shadow it:
    # forget that one first. Classes already loaded from it keep working.
    top_level = module_name.partition(".")[0]
    cached = sys.modules.get(top_level)
    cached_file = getattr(cached, "__file__", None)
    if cached is not None and not (
        cached_file and Path(cached_file).resolve().is_relative_to(directory)
    ):
        for name in [name for name in sys.modules if name.partition(".")[0] == top_level]:
            del sys.modules[name]
    if str(directory) in sys.path:
        sys.path.remove(str(directory))
    sys.path.insert(0, str(directory))
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and module_name.startswith(error.name):
            raise PluginPackageError(
                f"entry_point: no module {module_name!r} in {directory} "
                f"(expected {directory / module_name.replace('.', '/')}.py)"
            ) from None
        raise PluginPackageError(
            f"entry_point: importing {module_name!r} failed: {error}; "
            "install the missing package in the plugin's image"
        ) from error
    except Exception as error:
        raise PluginPackageError(
            f"entry_point: importing {module_name!r} raised {type(error).__name__}: {error}"
        ) from error
    module_file = getattr(module, "__file__", None)
    if not module_file or not Path(module_file).resolve().is_relative_to(directory):
        raise PluginPackageError(
            f"entry_point: {module_name!r} resolved to {module_file}, outside {directory}; "
            "rename the module so it doesn't collide with an installed one"
        )
    return module


def _declared(from_code: Collection[str] | None, from_manifest: Collection[str]) -> list[str]:
    return sorted(from_code if from_code is not None else from_manifest)


def _set_differences(
    field: str, in_manifest: Collection[str], described: Collection[str], attribute: str
) -> list[str]:
    problems = []
    if missing := sorted(set(in_manifest) - set(described)):
        problems.append(
            f"{field}: manifest.yml lists {missing} but {attribute} does not; "
            "add them to the class or remove them from the manifest"
        )
    if extra := sorted(set(described) - set(in_manifest)):
        problems.append(
            f"{field}: {attribute} declares {extra} but manifest.yml does not; "
            f"add them under `{field}:` in manifest.yml"
        )
    return problems
