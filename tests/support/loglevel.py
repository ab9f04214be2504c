"""The log level of the Switchboard processes tests start: the most verbose.

The operator, router and `switchboard up` processes read
``SWITCHBOARD_LOG_LEVEL`` (docs/operations.md): the session sets it in its
own environment (tests/conftest.py), which every child inherits.

pytest records the test process's own logs at every level (``log_level =
"NOTSET"`` in pyproject.toml); a plugin process would log at INFO by default,
so when a test fails, the child's DEBUG lines would be missing from its output.
Plugins read ``SWITCHBOARD_PLUGIN_LOG_LEVEL`` (docs/plugin-authoring.md); under
``switchboard up`` a plugin gets only its resource's ``spec.env``, so a
resource carries the variable there, as it would in a cluster.
"""

from __future__ import annotations

from typing import Final

CHILD_LOG_LEVEL: Final = "DEBUG"


def verbose_plugin_env() -> dict[str, str]:
    """Environment variables that make a ``switchboard plugin serve`` process log everything."""
    return {"SWITCHBOARD_PLUGIN_LOG_LEVEL": CHILD_LOG_LEVEL}


def verbose_spec_env() -> list[dict[str, str]]:
    """The same, as a CommunicationPlugin's or VendorIntegration's ``spec.env``."""
    return [{"name": name, "value": value} for name, value in verbose_plugin_env().items()]


def verbose_switchboard_env() -> dict[str, str]:
    """Environment variables that make operator, router and local-mode processes log everything."""
    return {"SWITCHBOARD_LOG_LEVEL": CHILD_LOG_LEVEL}
