"""``switchboard plugin``: create, validate and serve plugins.

Thin wrappers: each command parses its arguments and calls one SDK function,
so the container entry point (``serve``), CI (``validate``) and authors
(``create``) run exactly the code the tests exercise.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click

from switchboard.sdk._scaffold import PluginType, create_plugin

_PLUGIN_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


@click.group()
def plugin() -> None:
    """Create, validate and serve plugins."""


@plugin.command()
@click.argument("plugin_dir", type=_PLUGIN_DIR)
def serve(plugin_dir: Path) -> None:
    """Serve the plugin in PLUGIN_DIR over gRPC until SIGTERM (the container entry point).

    Configured by environment variables: SWITCHBOARD_PLUGIN_CONFIG,
    SWITCHBOARD_PLUGIN_SECRETS_DIR, SWITCHBOARD_PLUGIN_HOST, SWITCHBOARD_PLUGIN_PORT,
    SWITCHBOARD_PLUGIN_SECRETS_POLL_SECONDS, SWITCHBOARD_SHUTDOWN_GRACE_SECONDS,
    SWITCHBOARD_TERMINATION_LOG, SWITCHBOARD_PLUGIN_LOG_LEVEL.
    Exit codes: 0 stopped, 1 crashed while starting, 2 config rejected, 3 plugin folder invalid.
    """
    # Each command imports what it runs, so that `switchboard router` and the
    # other commands do not load the plugin runtime.
    from switchboard.sdk._runtime import run

    sys.exit(run(plugin_dir))


@plugin.command()
@click.argument("plugin_dir", type=_PLUGIN_DIR)
def validate(plugin_dir: Path) -> None:
    """Check PLUGIN_DIR: its manifest, its entry point, and that they agree."""
    from switchboard.sdk._loader import load_plugin
    from switchboard.sdk.manifest import PluginPackageError

    try:
        loaded = load_plugin(plugin_dir)
    except PluginPackageError as error:
        click.echo(f"{plugin_dir}: {error}", err=True)
        sys.exit(1)
    problems = loaded.disagreements()
    if problems:
        click.echo(
            f"{plugin_dir}: {loaded.plugin_class.__qualname__} and manifest.yml disagree:",
            err=True,
        )
        for problem in problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(1)
    manifest = loaded.manifest
    kind = (
        f"channel {manifest.channel_type}"
        if manifest.is_communication_plugin
        else f"{manifest.integration_type} integration for {manifest.vendor}"
    )
    operations = ", ".join(manifest.operations) or "none"
    click.echo(
        f"{plugin_dir}: {manifest.plugin_id} {manifest.version} is valid "
        f"({kind}; operations: {operations})."
    )


@plugin.command()
@click.argument("name")
@click.option(
    "--type",
    "plugin_type",
    type=click.Choice([kind.value for kind in PluginType]),
    required=True,
    help="messaging: a channel answering Send; the others: vendor integrations answering Invoke.",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("plugin-images"),
    show_default=True,
    help="Where the plugin folder NAME is created.",
)
@click.option("--channel-type", help="messaging: the channel (default: NAME's last '-' part).")
@click.option("--vendor", help="integrations: the vendor (default: NAME's first '-' part).")
def create(
    name: str,
    plugin_type: str,
    output_dir: Path,
    channel_type: str | None,
    vendor: str | None,
) -> None:
    """Create the plugin folder OUTPUT_DIR/NAME: manifest, code, test and Dockerfile."""
    try:
        target = create_plugin(
            name, PluginType(plugin_type), output_dir, channel_type=channel_type, vendor=vendor
        )
    except (ValueError, FileExistsError) as error:
        raise click.UsageError(str(error)) from None
    click.echo(f"Created {target}. Next:")
    click.echo(f"  {_as_typed(Path(sys.argv[0]))} plugin validate {target}")
    click.echo(f"  {_as_typed(Path(sys.executable))} -m pytest {target}")
    click.echo(f"  docker build -t {name}:0.1.0 {target}")


def _as_typed(program: Path) -> str:
    """How to call `program` from here: its bare name if that is what the shell finds,
    else its path (relative below this folder), so a hint works in a shell with no
    virtualenv activated."""
    absolute = Path(os.path.abspath(program))
    found = shutil.which(program.name)
    # Compared as typed, not resolved: a virtualenv's `python` is a symlink to the
    # interpreter it was made from, so another `python` earlier on PATH resolves
    # to the same file yet runs without the virtualenv's packages.
    if found is not None and Path(os.path.abspath(found)) == absolute:
        return program.name
    if absolute.is_relative_to(Path.cwd()):
        return str(absolute.relative_to(Path.cwd()))
    return str(absolute)
