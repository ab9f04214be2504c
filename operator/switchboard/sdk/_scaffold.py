"""``switchboard plugin create``: a new plugin folder that validates and passes its test at once.

Templates live in ``switchboard/sdk/templates/`` as package data: ``common/``
for every kind, one folder per kind for the rest. A template is plain text
with ``{{placeholder}}`` markers (no template engine: Python and Dockerfiles
are full of braces and dollars); a marker left unreplaced is a bug caught by
the scaffold tests.
"""

from __future__ import annotations

import re
from enum import StrEnum
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Final

from switchboard import __version__

_PLUGIN_ID: Final = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_KEY: Final = re.compile(r"^[a-z][a-z0-9_-]*$")
_PLACEHOLDER: Final = re.compile(r"\{\{(\w+)\}\}")
_TEMPLATE_SUFFIX: Final = ".tmpl"


class PluginType(StrEnum):
    """What ``--type`` accepts, and the template folder of each."""

    MESSAGING = "messaging"
    NETWORK = "network"
    MONITORING = "monitoring"
    ANALYTICS = "analytics"


def create_plugin(
    name: str,
    plugin_type: PluginType,
    output_dir: Path,
    *,
    channel_type: str | None = None,
    vendor: str | None = None,
) -> Path:
    """Write ``output_dir/name/`` from the templates of ``plugin_type``; return the folder.

    ``channel_type`` (messaging) defaults to the last ``-`` part of ``name``
    (``acme-sms`` -> ``sms``); ``vendor`` (the others) to the first
    (``voltha-olt`` -> ``voltha``). Raises ``ValueError`` for a bad name and
    ``FileExistsError`` rather than overwrite a folder.
    """
    if not _PLUGIN_ID.match(name):
        raise ValueError(
            f"{name!r} is not a plugin name: use lowercase letters, digits and '-', "
            "starting with a letter, at most 63 characters (it becomes the plugin_id, a DNS label)"
        )
    parts = name.split("-")
    values = {
        "plugin_id": name,
        "display_name": " ".join(part.capitalize() for part in parts),
        "class_name": "".join(part.capitalize() for part in parts) + "Plugin",
        "channel_type": channel_type or parts[-1],
        "vendor": vendor or parts[0],
        "sdk_version": __version__,
    }
    for key in ("channel_type", "vendor"):
        if not _KEY.match(values[key]):
            raise ValueError(f"{key} {values[key]!r} must be lowercase letters, digits, '_' or '-'")
    target = output_dir / name
    if target.exists():
        raise FileExistsError(f"{target} already exists; pick another name or remove it")
    templates = resources.files("switchboard.sdk").joinpath("templates")
    rendered = {
        **_render_folder(templates.joinpath("common"), values),
        **_render_folder(templates.joinpath(plugin_type.value), values),
    }
    target.mkdir(parents=True)
    for file_name, text in sorted(rendered.items()):
        (target / file_name).write_text(text, encoding="utf-8")
    return target


def _render_folder(folder: Traversable, values: dict[str, str]) -> dict[str, str]:
    rendered = {}
    for template in folder.iterdir():
        if not template.name.endswith(_TEMPLATE_SUFFIX):
            continue
        text = _PLACEHOLDER.sub(
            lambda match: values[match.group(1)], template.read_text(encoding="utf-8")
        )
        rendered[template.name.removesuffix(_TEMPLATE_SUFFIX)] = text
    return rendered
