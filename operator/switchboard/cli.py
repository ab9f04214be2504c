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
    from switchboard.logs import configure_logging

    configure_logging()
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

    from switchboard.logs import configure_logging
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
        "watch_namespace": namespace,
        "api_keys_file": api_keys,
        "static_file": routes,
    }
    settings = RouterSettings(**{k: v for k, v in overrides.items() if v is not None})
    configure_logging()
    asyncio.run(serve(settings, kubeconfig))


STATE_DIR = Path(".switchboard")


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--plugins",
    "plugin_roots",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    default=[Path("plugin-images")],
    show_default=True,
    help="Where plugin folders are found (repeatable).",
)
@click.option("--port", type=int, default=8080, show_default=True, help="Router HTTP port.")
@click.option("--grpc-port", type=int, default=9090, show_default=True, help="Router gRPC port.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=STATE_DIR,
    show_default=True,
    help="Where local mode keeps its key, rendered configs and secrets.",
)
@click.option(
    "--live/--no-live",
    default=None,
    help="Show the live status table (default: when the terminal is interactive).",
)
def up(
    paths: tuple[Path, ...],
    plugin_roots: tuple[Path, ...],
    port: int,
    grpc_port: int,
    state_dir: Path,
    live: bool | None,
) -> None:
    """Run plugin resources locally: each plugin a child process, the router in front.

    PATHS are YAML files or folders with CommunicationPlugin, VendorIntegration
    and Secret documents, the same ones you would `kubectl apply`. Editing a file
    reloads only the plugins it changes.
    """
    import asyncio

    from switchboard.local.up import run_up
    from switchboard.logs import configure_logging

    show_live = sys.stderr.isatty() if live is None else live
    configure_logging(json_lines=not show_live)
    code = asyncio.run(
        run_up(
            list(paths) or [Path(".")], list(plugin_roots), state_dir, port, grpc_port, show_live
        )
    )
    sys.exit(code)


def _client_options(func: Any) -> Any:
    for option in reversed(
        [
            click.option("--url", envvar="SWITCHBOARD_URL", help="Router URL [local router]."),
            click.option("--token", envvar="SWITCHBOARD_TOKEN", help="Bearer token or API key."),
            click.option("--namespace", "-n", default=None, help="Tenant namespace."),
            click.option("--json", "as_json", is_flag=True, help="Print the raw JSON answer."),
        ]
    ):
        func = option(func)
    return func


def _client(url: str | None, token: str | None, namespace: str | None) -> Any:
    from switchboard.client import Switchboard
    from switchboard.local.up import read_state

    state = read_state(STATE_DIR)
    return Switchboard(url or state.get("url"), token or state.get("token"), namespace=namespace)


def _fail(error: Exception) -> None:
    from switchboard.client import SwitchboardError

    if isinstance(error, SwitchboardError):
        click.echo(f"Error {error.status} {error.code}: {error.message}", err=True)
        for field in error.fields:
            click.echo(f"  {field['field']}: {field['message']}", err=True)
        for attempt in error.attempts:
            click.echo(
                f"  attempt {attempt.plugin} at {attempt.endpoint}: {attempt.outcome} "
                f"{attempt.message}",
                err=True,
            )
        sys.exit(1)
    raise error


@main.command()
@click.argument("channel")
@click.argument("recipient")
@click.argument("content")
@click.option("--subject", default=None, help="Subject line, for channels that have one.")
@click.option("--idempotency-key", default=None, help="Retrying with it never sends twice.")
@click.option(
    "--metadata", "-m", multiple=True, help="KEY=VALUE passed to the plugin (repeatable)."
)
@_client_options
def send(
    channel: str,
    recipient: str,
    content: str,
    subject: str | None,
    idempotency_key: str | None,
    metadata: tuple[str, ...],
    url: str | None,
    token: str | None,
    namespace: str | None,
    as_json: bool,
) -> None:
    """Send CONTENT to RECIPIENT on CHANNEL; the router picks the plugin."""
    import dataclasses
    import json

    extras = dict(item.split("=", 1) for item in metadata if "=" in item)
    try:
        with _client(url, token, namespace) as client:
            result = client.send_message(
                channel,
                recipient,
                content,
                subject=subject,
                metadata=extras or None,
                idempotency_key=idempotency_key,
            )
    except Exception as error:
        _fail(error)
        return
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(result), indent=2))
        return
    click.echo(f"Sent by {result.plugin} ({result.provider_message_id})")
    for attempt in result.attempts:
        click.echo(f"  {attempt.plugin} at {attempt.endpoint}: {attempt.outcome} {attempt.message}")


@main.command()
@click.argument("integration")
@click.argument("operation")
@click.argument("params", required=False, default="{}")
@click.option("--idempotency-key", default=None, help="Retrying with it never runs twice.")
@_client_options
def invoke(
    integration: str,
    operation: str,
    params: str,
    idempotency_key: str | None,
    url: str | None,
    token: str | None,
    namespace: str | None,
    as_json: bool,
) -> None:
    """Run OPERATION of INTEGRATION with PARAMS (a JSON object)."""
    import json

    try:
        arguments = json.loads(params)
    except ValueError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="PARAMS") from error
    try:
        with _client(url, token, namespace) as client:
            result = client.invoke(
                integration, operation, arguments, idempotency_key=idempotency_key
            )
    except Exception as error:
        _fail(error)
        return
    click.echo(json.dumps(result.result, indent=2))


@main.command()
@_client_options
def status(url: str | None, token: str | None, namespace: str | None, as_json: bool) -> None:
    """Show plugins per channel and integration: health, endpoints, error rates."""
    import json

    try:
        with _client(url, token, namespace) as client:
            document = client.system_status()
    except Exception as error:
        _fail(error)
        return
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(
        f"Namespace {document['namespace']}: {document['healthyPlugins']}/"
        f"{document['totalPlugins']} plugins healthy"
    )
    for channel, plugins in sorted(document["channels"].items()):
        click.echo(f"channel {channel}")
        for p in plugins:
            mark = "ok " if p["healthy"] else "DOWN"
            click.echo(
                f"  {mark} p{p['priority']} w{p['weight']} {p['name']}: "
                f"{len(p['endpoints']['ready'])} ready, error rate {p['recentErrorRate']:.0%}, "
                f"sent {p['sent']}, failed {p['failed']}"
            )
    for name, p in sorted(document["integrations"].items()):
        mark = "ok " if p["healthy"] else "DOWN"
        click.echo(
            f"integration {name} ({p['vendor']}): {mark} {len(p['endpoints']['ready'])} ready"
        )


@main.command()
def env() -> None:
    """Print the variables that point the Python client at the local router.

    Use as: eval "$(switchboard env)"
    """
    from switchboard.local.up import read_state

    state = read_state(STATE_DIR)
    if not state:
        click.echo("No local router runs here; start one with `switchboard up`.", err=True)
        sys.exit(1)
    click.echo(f"export SWITCHBOARD_URL={state['url']}")
    click.echo(f"export SWITCHBOARD_TOKEN={state['token']}")


@main.group()
def license() -> None:
    """Make licences for commercial VendorIntegrations (EdDSA-signed JWTs)."""


@license.command("keygen")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the new Ed25519 private key (PEM, mode 0600). Keep it secret.",
)
def license_keygen(out: Path) -> None:
    """Make a signing key; print the public key for the operator's licensePublicKeys."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from switchboard.controller.licensing import public_key_text

    if out.exists():
        raise click.BadParameter(f"{out} exists; refusing to overwrite a key", param_hint="--out")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    out.touch(mode=0o600)
    out.write_bytes(pem)
    click.echo(
        f"Wrote the private key to {out}. Public key (operator licensePublicKeys):", err=True
    )
    click.echo(public_key_text(key))


@license.command("sign")
@click.option(
    "--key",
    "key_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The Ed25519 private key (PEM) from `switchboard license keygen`.",
)
@click.option("--vendor", required=True, help="The integration's spec.vendor, e.g. voltha.")
@click.option("--namespace", required=True, help="The tenant namespace the licence is for.")
@click.option(
    "--expires",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    required=True,
    help="Expiry (UTC), e.g. 2027-01-31. The operator adds its grace period.",
)
def license_sign(key_file: Path, vendor: str, namespace: str, expires: Any) -> None:
    """Print a licence token: put it in a Secret named by spec.license.secretName."""
    import datetime

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from switchboard.controller.licensing import sign

    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise click.BadParameter("not an Ed25519 private key", param_hint="--key")
    click.echo(sign(key, vendor, namespace, expires.replace(tzinfo=datetime.UTC)))


# The plugin SDK owns `switchboard plugin ...`.
main.add_command(plugin)
