"""The `switchboard` command: one CLI, `--help` everywhere."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from switchboard import __version__
from switchboard.sdk._cli import plugin


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="switchboard")
def main() -> None:
    """Run communication channels and vendor integrations as plugins."""


@main.command()
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("crds"),
    show_default=True,
    help="Directory to write the CustomResourceDefinitions into.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Write nothing; exit 1 if the files in --output differ from what the models generate.",
)
@click.option(
    "--reference",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write (or with --check, compare) the Markdown field reference at this path.",
)
def crds(output: Path, check: bool, reference: Path | None) -> None:
    """Generate the CRDs (and optionally their Markdown reference) from the API models."""
    from switchboard.api.crdgen import render_crds, render_reference

    rendered = {output / name: text for name, text in render_crds().items()}
    if reference is not None:
        rendered[reference] = render_reference()
    if check:
        stale = [
            str(path)
            for path, text in rendered.items()
            if not path.is_file() or path.read_text() != text
        ]
        if stale:
            click.echo(
                f"{', '.join(stale)} differ from the models; run "
                f"`switchboard crds --output {output}"
                + (f" --reference {reference}" if reference else "")
                + "` and commit the result.",
                err=True,
            )
            sys.exit(1)
        click.echo(f"{len(rendered)} generated files match the models.")
        return
    for path, text in rendered.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        click.echo(f"Wrote {path}")


@main.command()
@click.option(
    "--kubeconfig",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Kubeconfig to use outside a cluster (default: in-cluster, then ~/.kube/config).",
)
def operator(kubeconfig: str | None) -> None:
    """Run the operator: reconcile CommunicationPlugins and VendorIntegrations.

    Settings come from SWITCHBOARD_* environment variables (docs/operations.md).
    """
    from switchboard.controller.main import run

    run(kubeconfig)


@main.command()
@click.option(
    "--backend",
    type=click.Choice(["kubernetes", "static"]),
    default=None,
    help="Discover plugins in Kubernetes, or from a static routes file (local mode).",
)
@click.option("--http-port", type=int, default=None, help="HTTP/JSON API port [8080].")
@click.option("--grpc-port", type=int, default=None, help="gRPC API port [9090]; -1 disables it.")
@click.option("--namespace", default=None, help="Route only within this namespace.")
@click.option(
    "--api-keys",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Static backend: YAML file of API keys.",
)
@click.option(
    "--routes",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Static backend: JSON routes file, re-read when it changes.",
)
@click.option("--kubeconfig", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--openapi", is_flag=True, help="Print the OpenAPI document and exit.")
def router(
    backend: str | None,
    http_port: int | None,
    grpc_port: int | None,
    namespace: str | None,
    api_keys: Path | None,
    routes: Path | None,
    kubeconfig: str | None,
    openapi: bool,
) -> None:
    """Run the router: the HTTP and gRPC front door that picks a healthy plugin.

    Settings come from SWITCHBOARD_ROUTER_* environment variables; options override them.
    """
    import asyncio
    import json

    from switchboard.router.app import serve
    from switchboard.router.openapi import openapi_document
    from switchboard.router.settings import RouterSettings

    if openapi:
        click.echo(json.dumps(openapi_document(), indent=2, sort_keys=True))
        return
    overrides: dict[str, Any] = {
        "backend": backend,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "namespace": namespace,
        "api_keys_file": api_keys,
        "static_file": routes,
    }
    settings = RouterSettings(**{k: v for k, v in overrides.items() if v is not None})
    asyncio.run(serve(settings, kubeconfig))


# The plugin SDK owns `switchboard plugin ...`.
main.add_command(plugin)
