"""The `switchboard` command: one CLI, `--help` everywhere.

Conventions every command keeps (docs/operations.md#the-cli):

- Commands that print data take `-o table|json|yaml` (`table`, for people, is
  the default); `--json` is `-o json`.
- Exit codes: 0 done; 1 the router or plugin answered with an error (the
  request was refused or a delivery failed); 2 the command line or the files
  it names are wrong (nothing was done); 3 no router or plugin could be
  reached. `switchboard up -- COMMAND` exits with COMMAND's code.
- An error says what happened, then `Fix:` and what to do about it.
- Without `--url` or `SWITCHBOARD_URL`, commands talk to the local router of
  `switchboard up` (found from this folder, a parent, or the one running for
  this user), never to an address nobody named.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shlex
import sys
from collections.abc import Awaitable, Callable
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
import yaml

from switchboard import __version__
from switchboard.sdk._cli import plugin

if TYPE_CHECKING:
    # Only for annotations: the client (httpx) is imported when a command runs, not for --help.
    from switchboard.client import MessageEvent, Switchboard


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
    from switchboard.controller import keep_kubernetes_client_out

    keep_kubernetes_client_out()  # before kopf is imported
    from switchboard.controller.main import run
    from switchboard.telemetry import configure_tracing, shutdown_tracing

    _logging()
    tracing = _tracing("switchboard-operator", configure_tracing)
    try:
        run(kubeconfig)
    finally:
        shutdown_tracing(tracing)


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
    from switchboard.telemetry import configure_tracing, shutdown_tracing

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
    _logging()
    tracing = _tracing("switchboard-router", configure_tracing)
    try:
        asyncio.run(serve(settings, kubeconfig))
    finally:
        shutdown_tracing(tracing)


class Exit(IntEnum):
    """The exit codes of every command (docs/operations.md#exit-codes)."""

    OK = 0
    FAILED = 1
    """The router or the plugin answered with an error: refused, or not delivered."""
    USAGE = 2
    """The command line or the files it names are wrong; nothing was done."""
    UNREACHABLE = 3
    """No router (or plugin) could be reached, or none is known."""


def _metadata(items: tuple[str, ...]) -> dict[str, str]:
    """`--metadata KEY=VALUE` options as a map; anything else is a usage error."""
    malformed = [item for item in items if "=" not in item]
    if malformed:
        raise click.BadParameter(f"{malformed[0]!r} is not KEY=VALUE", param_hint="--metadata")
    return dict(item.split("=", 1) for item in items)


def _logging(json_lines: bool = True) -> None:
    """Logging as SWITCHBOARD_LOG_LEVEL says; a usage error if it names no level."""
    from switchboard.logs import configure_logging

    try:
        configure_logging(json_lines=json_lines)
    except ValueError as error:
        raise click.UsageError(str(error)) from None


def _tracing(service: str, configure: Any) -> Any:
    """The process's tracer provider from OTEL_* variables; a usage error if they are wrong."""
    try:
        return configure(service)
    except ValueError as error:
        raise click.UsageError(str(error)) from None


# --- output --------------------------------------------------------------------------

FORMATS = ("table", "json", "yaml")


def _output_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add `-o table|json|yaml` and its hidden alias `--json`; `command` gets one `output`."""

    @click.option(
        "--output",
        "-o",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="table for people; json or yaml for programs.",
    )
    @click.option("--json", "as_json", is_flag=True, hidden=True, help="Same as -o json.")
    @functools.wraps(command)  # click reads the name and help text from the wrapper
    def with_output(*args: Any, output: str, as_json: bool, **kwargs: Any) -> None:
        command(*args, output="json" if as_json else output, **kwargs)

    return with_output


def _emit(data: Any, output: str, table: Callable[[], None]) -> None:
    """Print `data` as JSON or YAML, or call `table` to print it for people."""
    if output == "json":
        click.echo(json.dumps(data, indent=2, default=str))
    elif output == "yaml":
        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)
    else:
        table()


def columns(headers: list[str], rows: list[list[str]]) -> str:
    """A table as kubectl prints one: upper-case headers, columns padded, nothing cut."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [
        "   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in (headers, *rows)
    ]
    return "\n".join(lines)


# --- errors --------------------------------------------------------------------------


def error_fix(status: int, code: str, retry_after: float | None = None) -> str:
    """What to do about an error the router answered (or the lack of an answer)."""
    if status == 0:
        return (
            "start a router (`make demo`, or `switchboard up DIR`), or point --url / "
            "SWITCHBOARD_URL at one that runs."
        )
    if status == 401:
        return (
            "pass a token the router accepts with --token or SWITCHBOARD_TOKEN (local mode: "
            'eval "$(switchboard env)"; Kubernetes: a ServiceAccount token).'
        )
    if status == 403:
        return (
            "grant the caller that verb in that namespace with RBAC "
            "(docs/operations.md#who-may-send-rbac)."
        )
    if status == 404 and code in ("NO_PLUGIN", "NOT_FOUND"):
        return (
            "apply a plugin resource for it, or check the name; `switchboard status` lists "
            "what runs."
        )
    if status == 404:
        return "check the id; `switchboard messages list` shows recent messages."
    if status == 409:
        return (
            "use a new idempotency key for a different message; `switchboard messages show ID` "
            "tells what happened to the first."
        )
    if status == 429:
        wait = f" after {retry_after:g}s" if retry_after else ""
        return f"retry{wait}: the router is at capacity."
    if status in (400, 408, 413, 415, 422):
        return "change the request as the message says; sent again unchanged it fails again."
    return (
        "see why each attempt failed above; `switchboard status` and `switchboard logs PLUGIN` "
        "say more about a plugin."
    )


def describe_error(error: Exception) -> tuple[list[str], Exit]:
    """The lines a person reads about `error`, and the exit code it means."""
    from switchboard.client import SwitchboardError
    from switchboard.local.state import StateError

    if isinstance(error, StateError):
        return [f"Error: {error}"], Exit.UNREACHABLE
    if not isinstance(error, SwitchboardError):
        raise error
    if error.status == 0:
        return [f"Error: {error.message}.", f"Fix: {error_fix(0, error.code)}"], Exit.UNREACHABLE
    lines = [f"Error: {error.message} (HTTP {error.status} {error.code})"]
    lines += [f"  {field['field']}: {field['message']}" for field in error.fields]
    lines += [
        f"  attempt {a.plugin} at {a.endpoint}: {a.outcome} {a.message}".rstrip()
        for a in error.attempts
    ]
    if error.message_id:
        lines.append(f"  message {error.message_id}: switchboard messages show {error.message_id}")
    lines.append(f"Fix: {error_fix(error.status, error.code, error.retry_after)}")
    return lines, Exit.FAILED


def _fail(error: Exception) -> NoReturn:
    lines, code = describe_error(error)
    for line in lines:
        click.echo(line, err=True)
    sys.exit(code)


# --- finding the router ----------------------------------------------------------------


def _state_dir_option(help_text: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """`--state-dir` (or SWITCHBOARD_STATE_DIR): which `switchboard up` a command means."""
    return click.option(
        "--state-dir",
        envvar="SWITCHBOARD_STATE_DIR",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=help_text,
    )


@dataclasses.dataclass(frozen=True)
class RouterOptions:
    """The router a command talks to, as --url, --token, --namespace and --state-dir name it."""

    url: str | None
    token: str | None
    namespace: str | None
    state_dir: Path | None


def _client_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add the options that find the router; `command` gets them as one `router`."""

    @click.option("--url", envvar="SWITCHBOARD_URL", help="Router URL [the local router].")
    @click.option("--token", envvar="SWITCHBOARD_TOKEN", help="Bearer token or API key.")
    @click.option("--namespace", "-n", default=None, help="Tenant namespace.")
    @_state_dir_option("The local router of `switchboard up --state-dir DIR`.")
    @functools.wraps(command)  # click reads the name and help text from the wrapper
    def with_router(
        *args: Any,
        url: str | None,
        token: str | None,
        namespace: str | None,
        state_dir: Path | None,
        **kwargs: Any,
    ) -> None:
        command(*args, router=RouterOptions(url, token, namespace, state_dir), **kwargs)

    return with_router


def _client(router: RouterOptions) -> Switchboard:
    """A client of the named router, else of the local one; StateError if there is none."""
    from switchboard.client import Switchboard
    from switchboard.local.state import find_router
    from switchboard.telemetry import configure_tracing

    # With OTEL_* set, the trace starts here; spans leave when the process exits.
    _tracing("switchboard-cli", configure_tracing)
    url, token = router.url, router.token
    if not url:
        local = find_router(Path.cwd(), router.state_dir)
        url, token = local.url, token or local.token
    return Switchboard(url, token, namespace=router.namespace)


_Answer = TypeVar("_Answer")


def _call_router(router: RouterOptions, call: Callable[[Switchboard], _Answer]) -> _Answer:
    """`call(client)` on the router's client, closed after; an error ends the command (_fail)."""
    try:
        with _client(router) as client:
            return call(client)
    except Exception as error:
        _fail(error)


def _local_status(url: str | None, state_dir: Path | None) -> dict[str, Any] | None:
    """What local mode knows beyond the router (gates, states, errors), when it is local."""
    from switchboard.local.state import StateError, find_router, read_status

    try:
        local = find_router(Path.cwd(), state_dir)
    except StateError:
        return None
    if url and url.rstrip("/") != local.url:
        return None
    return read_status(local.state_dir)


def _read_argument(value: str, what: str) -> str:
    """`value`, or standard input when it is `-`."""
    if value != "-":
        return value
    if sys.stdin.isatty():
        click.echo(f"Reading the {what} from standard input; end it with Ctrl-D.", err=True)
    return sys.stdin.read().removesuffix("\n")


# --- send, invoke, status, env ---------------------------------------------------------


def _print_sent(result: Any) -> None:
    if result.state == "accepted":
        click.echo(
            f"Accepted as message {result.id}; the router sends it in the background.\n"
            f"  Follow it: switchboard messages show {result.id}"
        )
        return
    click.echo(f"Sent by {result.plugin} ({result.provider_message_id}) as message {result.id}")
    for a in result.attempts:
        click.echo(f"  {a.plugin} at {a.endpoint}: {a.outcome} {a.message}".rstrip())
    if result.possible_duplicate:
        click.echo("  An earlier attempt may have delivered it too (possible duplicate).")


@main.command()
@click.argument("channel")
@click.argument("recipient")
@click.argument("content")
@click.option("--subject", default=None, help="Subject line, for channels that have one.")
@click.option("--content-type", default=None, help="text/plain (default), text/markdown, ...")
@click.option("--idempotency-key", default=None, help="Retrying with it never sends twice.")
@click.option(
    "--metadata", "-m", multiple=True, help="KEY=VALUE passed to the plugin (repeatable)."
)
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="--no-wait: return once the router recorded it; it sends in the background.",
)
@_output_options
@_client_options
def send(
    channel: str,
    recipient: str,
    content: str,
    subject: str | None,
    content_type: str | None,
    idempotency_key: str | None,
    metadata: tuple[str, ...],
    wait: bool,
    output: str,
    router: RouterOptions,
) -> None:
    """Send CONTENT to RECIPIENT on CHANNEL; the router picks the plugin.

    CONTENT `-` reads the message from standard input.
    """
    extras = _metadata(metadata)
    body = _read_argument(content, "message")
    result = _call_router(
        router,
        lambda client: client.send_message(
            channel,
            recipient,
            body,
            subject=subject,
            content_type=content_type,
            metadata=extras or None,
            idempotency_key=idempotency_key,
            wait=wait,
        ),
    )
    _emit(dataclasses.asdict(result), output, lambda: _print_sent(result))


@main.command()
@click.argument("integration")
@click.argument("operation")
@click.argument("params", required=False, default="{}")
@click.option("--idempotency-key", default=None, help="Retrying with it never runs twice.")
@_output_options
@_client_options
def invoke(
    integration: str,
    operation: str,
    params: str,
    idempotency_key: str | None,
    output: str,
    router: RouterOptions,
) -> None:
    """Run OPERATION of INTEGRATION with PARAMS (a JSON object; `-` reads it from stdin)."""
    try:
        arguments = json.loads(_read_argument(params, "parameters"))
    except ValueError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="PARAMS") from error
    result = _call_router(
        router,
        lambda client: client.invoke(
            integration, operation, arguments, idempotency_key=idempotency_key
        ),
    )
    _emit(
        dataclasses.asdict(result),
        output,
        lambda: click.echo(json.dumps(result.result, indent=2)),
    )


def router_state(entry: dict[str, Any], local_state: str | None) -> str:
    """A plugin's state as the router sees it, refined by what local mode knows."""
    endpoints = entry["endpoints"]
    if entry["healthy"]:
        return local_state or "serving"
    if endpoints["ejected"]:
        return "ejected"  # it serves, but failed too often: the router skips it for a while
    if local_state and local_state != "serving":
        return local_state
    return "not ready" if entry.get("enabled", True) else "disabled"


def _status_rows(document: dict[str, Any], local: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per plugin: the router's view, with local mode's state where it has one."""
    namespace = document["namespace"]
    known = {row["plugin"]: row for row in (local or {}).get("plugins", [])}
    rows = []
    entries = [(p, "plugin") for plugins in document["channels"].values() for p in plugins]
    entries += [(p, "integration") for p in document["integrations"].values()]
    for entry, kind in entries:
        name = f"{namespace}/{entry['name']}"
        here = known.pop(name, {})
        problem = entry.get("problem")
        if problem and not here.get("lastError"):
            here = {**here, "lastError": f"{problem['reason']}: {problem['message']}"}
        route = next(
            (c for c, ps in document["channels"].items() if entry in ps), entry.get("vendor", "")
        )
        rows.append(
            {
                **here,
                "plugin": name,
                "kind": kind,
                "route": route,
                "priority": entry.get("priority"),
                "state": router_state(entry, here.get("state")),
                "healthy": entry["healthy"],
                "endpoint": ", ".join(entry["endpoints"]["ready"]),
                "errorRate": entry["recentErrorRate"],
                "sent": entry["sent"],
                "failed": entry["failed"],
            }
        )
    rows += [{**row, "healthy": False} for row in known.values()]
    return rows


@main.command()
@_output_options
@_client_options
def status(output: str, router: RouterOptions) -> None:
    """Show every plugin: state, endpoint, error rate, and why one does not serve."""
    from switchboard.local.view import detail, route_text

    document, router_url = _call_router(
        router, lambda client: (dict(client.system_status()), client.url)
    )
    local = _local_status(router_url, router.state_dir)
    rows = _status_rows(document, local)
    healthy = sum(1 for row in rows if row["healthy"])

    def table() -> None:
        click.echo(
            f"Namespace {document['namespace']}: {healthy} of {len(rows)} plugins serving "
            f"(router {router_url})"
        )
        if rows:
            click.echo(
                columns(
                    ["PLUGIN", "ROUTE", "STATE", "ERRORS", "RESTARTS", "DETAIL"],
                    [
                        [
                            row["plugin"],
                            route_text(row),
                            str(row["state"]),
                            f"{row.get('errorRate', 0):.0%}",
                            str(row.get("restarts", "-")),
                            detail(row),
                        ]
                        for row in rows
                    ],
                )
            )
        if local and local.get("loadError"):
            click.echo(f"YAML not applied (the plugins above keep running): {local['loadError']}")

    data = {**document, "plugins": rows}
    if local is not None:
        data["loadError"] = local.get("loadError", "")
    _emit(data, output, table)


@main.command()
@click.option(
    "--output",
    "-o",
    type=click.Choice(["shell", "dotenv", "json"]),
    default="shell",
    show_default=True,
    help="shell: export lines for eval; dotenv: a .env file; json.",
)
@_state_dir_option("The local router of `switchboard up --state-dir DIR`.")
def env(output: str, state_dir: Path | None) -> None:
    """Print SWITCHBOARD_URL and SWITCHBOARD_TOKEN of the local router, for your code.

    \b
    eval "$(switchboard env)"          # this shell
    switchboard env -o dotenv > .env   # a .env file
    switchboard up DIR -- COMMAND      # or let `up` run your app with both set
    """
    from switchboard.local.state import StateError, find_router

    try:
        local = find_router(Path.cwd(), state_dir)
    except StateError as error:
        _fail(error)
    variables = {"SWITCHBOARD_URL": local.url, "SWITCHBOARD_TOKEN": local.token}
    if output == "json":
        click.echo(json.dumps(variables, indent=2))
        return
    prefix = "export " if output == "shell" else ""
    for name, value in variables.items():
        click.echo(f"{prefix}{name}={shlex.quote(value)}")


# --- local mode ----------------------------------------------------------------------


class _UpCommand(click.Command):
    """`switchboard up PATHS... -- COMMAND ARGS...`: everything after `--` is the app."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            at = args.index("--")
            ctx.meta["up_command"] = args[at + 1 :]
            args = args[:at]
        return super().parse_args(ctx, args)


@main.command(cls=_UpCommand)
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
@click.option(
    "--grpc-port", type=int, default=9090, show_default=True, help="Router gRPC port; -1: none."
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".switchboard"),
    show_default=True,
    help="Where local mode keeps its key, ledger, logs and status.",
)
@click.option(
    "--start-timeout",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds a plugin may take to serve before it is killed and restarted.",
)
@click.option(
    "--live/--no-live",
    default=None,
    help="The live status view (default: on a terminal, without -- COMMAND).",
)
@click.pass_context
def up(
    ctx: click.Context,
    paths: tuple[Path, ...],
    plugin_roots: tuple[Path, ...],
    port: int,
    grpc_port: int,
    state_dir: Path,
    start_timeout: float,
    live: bool | None,
) -> None:
    """Run plugin resources locally: each plugin a child process, the router in front.

    PATHS are YAML files or folders with CommunicationPlugin, VendorIntegration,
    Secret (and Namespace) documents: the ones you would `kubectl apply`. The
    image `.../plugin-NAME:TAG` (or `NAME:TAG`) runs the folder NAME under
    --plugins. Editing a file reloads only the plugins it changes.

    \b
    switchboard up examples/local
    switchboard up examples/local -- python app.py   # run app.py, then stop everything
    """
    import asyncio

    from switchboard.local.up import UpOptions, run_up

    command: list[str] = ctx.meta.get("up_command", [])
    if not paths:
        raise click.UsageError(
            "Name the YAML files or folders to run, e.g. `switchboard up examples/local`."
        )
    if "up_command" in ctx.meta and not command:
        raise click.UsageError("Nothing after `--`: name the command to run.")
    show_live = (sys.stderr.isatty() and not command) if live is None else live
    _logging(json_lines=not sys.stderr.isatty())
    options = UpOptions(
        paths=list(paths),
        plugins=list(plugin_roots),
        state_dir=state_dir,
        port=port,
        grpc_port=grpc_port,
        live=show_live,
        start_timeout=start_timeout,
        command=command,
    )
    sys.exit(asyncio.run(run_up(options)))


def _log_file(plugin_name: str, state_dir: Path | None) -> Path:
    """The log file of PLUGIN (`name` or `namespace/name`) in the local state folder."""
    from switchboard.local import state

    folder = _state_folder(state_dir) / state.LOGS_DIR
    wanted = plugin_name.replace("/", "-")
    exact = folder / f"{wanted}.log"
    if exact.is_file():
        return exact
    matches = sorted(folder.glob(f"*-{plugin_name}.log")) if "/" not in plugin_name else []
    if len(matches) == 1:
        return matches[0]
    known = sorted(p.stem for p in folder.glob("*.log"))
    if matches:
        hint = ", ".join(m.stem.replace("-", "/", 1) for m in matches)
        raise click.UsageError(f"{plugin_name!r} is in several namespaces: {hint}; name one.")
    raise click.UsageError(
        f"No log of plugin {plugin_name!r} in {folder}"
        + (f"; there are: {', '.join(known)}" if known else "; has switchboard up run here?")
    )


def _state_folder(state_dir: Path | None) -> Path:
    from switchboard.local import state

    if state_dir is not None:
        return state_dir
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / state.STATE_DIR_NAME / state.LOGS_DIR).is_dir():
            return folder / state.STATE_DIR_NAME
    try:
        return state.find_router(Path.cwd()).state_dir
    except state.StateError as error:
        _fail(error)


@main.command()
@click.argument("plugin_name", metavar="PLUGIN")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option("--tail", "-n", "lines", type=int, default=None, help="Only the last N lines.")
@click.option("--raw", is_flag=True, help="The JSON records as the plugin wrote them.")
@_state_dir_option("The state folder of `switchboard up --state-dir DIR`.")
def logs(
    plugin_name: str, follow: bool, lines: int | None, raw: bool, state_dir: Path | None
) -> None:
    """Print the log of a plugin run by `switchboard up` (PLUGIN: name or namespace/name)."""
    import time

    from switchboard.local.supervisor import render_record

    path = _log_file(plugin_name, state_dir)
    show = (lambda line: line) if raw else render_record
    with path.open(encoding="utf-8", errors="replace") as handle:
        existing = handle.read().splitlines()
        for line in existing[-lines:] if lines is not None else existing:
            click.echo(show(line))
        while follow:
            line = handle.readline()
            if line:
                click.echo(show(line.rstrip("\n")))
            else:
                time.sleep(0.2)


# --- messages --------------------------------------------------------------------------


@main.group()
def messages() -> None:
    """What happened to messages: list, show, watch and replay them (the router's ledger)."""


def _message_rows(found: list[Any]) -> None:
    if not found:
        click.echo("No messages match.")
        return
    rows = [
        [
            message.id,
            message.state + ("*" if message.possible_duplicate else ""),
            message.channel,
            message.recipient or "",
            message.plugin or "",
            message.updated_at,
        ]
        for message in found
    ]
    click.echo(columns(["ID", "STATE", "CHANNEL", "RECIPIENT", "PLUGIN", "UPDATED"], rows))
    if any(message.possible_duplicate for message in found):
        click.echo("* possible duplicate: an earlier attempt may have delivered it too")


@main.command()
@click.option("--since", default=None, help="ISO 8601 time, e.g. 2026-01-31T12:00:00Z.")
@click.option("--limit", type=int, default=None, help="At most this many (1-1000) [100].")
@_output_options
@_client_options
def audit(since: str | None, limit: int | None, output: str, router: RouterOptions) -> None:
    """The audit trail: who sent, invoked, replayed or was refused what, and gate changes.

    Newest first. No message content, recipient or secret is ever in it.
    """
    events = _call_router(router, lambda client: client.audit_trail(since=since, limit=limit))

    def table() -> None:
        if not events:
            click.echo("No audit events.")
            return
        rows = [
            [e["at"], e["actor"], e["action"], e["target"], e["outcome"], e.get("messageId", "")]
            for e in events
        ]
        click.echo(columns(["AT", "ACTOR", "ACTION", "TARGET", "OUTCOME", "MESSAGE"], rows))

    _emit(events, output, table)


@messages.command("list")
@click.option("--state", default=None, help="accepted, sending, sent, delivered, failed, ...")
@click.option("--channel", default=None)
@click.option("--recipient", default=None)
@click.option("--since", default=None, help="ISO 8601 time, e.g. 2026-01-31T12:00:00Z.")
@click.option("--until", default=None, help="ISO 8601 time.")
@click.option("--limit", type=int, default=None, help="At most this many (1-1000) [100].")
@_output_options
@_client_options
def messages_list(
    state: str | None,
    channel: str | None,
    recipient: str | None,
    since: str | None,
    until: str | None,
    limit: int | None,
    output: str,
    router: RouterOptions,
) -> None:
    """Messages, newest first."""
    found = _call_router(
        router,
        lambda client: client.list_messages(
            state=state,
            channel=channel,
            recipient=recipient,
            since=since,
            until=until,
            limit=limit,
        ),
    )
    _emit([dataclasses.asdict(m) for m in found], output, lambda: _message_rows(found))


def _print_message(message: Any) -> None:
    duplicate = " (possible duplicate)" if message.possible_duplicate else ""
    click.echo(f"Message {message.id}: {message.state}{duplicate}")
    for label, value in (
        ("namespace", message.namespace),
        ("channel", message.channel),
        ("recipient", message.recipient),
        ("plugin", message.plugin),
        ("provider id", message.provider_message_id),
        ("created", message.created_at),
        ("updated", message.updated_at),
    ):
        if value:
            click.echo(f"  {label + ':':<13}{value}")
    if message.error_code or message.error_message:
        click.echo(f"  {'error:':<13}{message.error_code} {message.error_message}".rstrip())
    if message.attempts:
        click.echo("Attempts:")
        for attempt in message.attempts:
            click.echo(
                f"  {attempt.plugin} at {attempt.endpoint}: "
                f"{attempt.outcome} {attempt.message}".rstrip()
            )
    if message.history:
        click.echo("History:")
        for event in message.history:
            detail = f"  {event['detail']}" if event.get("detail") else ""
            click.echo(f"  {event.get('at', '')} {event.get('state', '')}{detail}")


@messages.command("show")
@click.argument("message_id", metavar="ID")
@_output_options
@_client_options
def messages_show(message_id: str, output: str, router: RouterOptions) -> None:
    """One message: its state, every attempt and its history."""
    message = _call_router(router, lambda client: client.get_message(message_id))
    _emit(dataclasses.asdict(message), output, lambda: _print_message(message))


@messages.command("replay")
@click.argument("message_id", metavar="ID")
@_output_options
@_client_options
def messages_replay(message_id: str, output: str, router: RouterOptions) -> None:
    """Send a failed, unknown or expired message again: a new round of the same message."""
    result = _call_router(router, lambda client: client.replay_message(message_id))
    _emit(dataclasses.asdict(result), output, lambda: _print_sent(result))


@messages.command("watch")
@click.option(
    "--after", type=int, default=None, help="Resume after this event (its seq); default: now."
)
@click.option("--count", type=int, default=None, help="Stop after this many events.")
@_output_options
@_client_options
def messages_watch(
    after: int | None, count: int | None, output: str, router: RouterOptions
) -> None:
    """Print every state change of the tenant's messages as it happens (Ctrl-C stops).

    A dropped connection is resumed where it stopped (Last-Event-ID).
    """
    try:
        _call_router(router, lambda client: _follow_events(client, after, count, output))
    except KeyboardInterrupt:
        return


def _follow_events(client: Switchboard, after: int | None, count: int | None, output: str) -> None:
    """Print events after `after` until `count` of them (or forever); reconnect when cut off."""
    import time

    from switchboard.api.backoff import Backoff
    from switchboard.client import SwitchboardError

    seen = 0
    backoff = Backoff(0.5, 10.0)
    while count is None or seen < count:
        try:
            for event in client.message_events(after=after):
                after, seen = event.seq, seen + 1
                backoff.reset()
                _print_event(event, output)
                if count is not None and seen >= count:
                    return
        except SwitchboardError as error:
            if error.status != 0:
                raise
            click.echo(f"Lost the router ({error.message}); reconnecting.", err=True)
        time.sleep(backoff.next())


def _print_event(event: MessageEvent, output: str) -> None:
    """One event: a JSON line, a YAML document, or a line for people."""
    if output == "json":
        click.echo(json.dumps(dataclasses.asdict(event)))
    elif output == "yaml":
        click.echo("---\n" + yaml.safe_dump(dataclasses.asdict(event)), nl=False)
    else:
        detail = f"  {event.detail}" if event.detail else ""
        click.echo(f"{event.at}  {event.id}  {event.state:<10} {event.channel}{detail}")


# --- talking to one plugin ---------------------------------------------------------------


def _plugin_target(target: str, state_dir: Path | None) -> str:
    """`host:port` as given, or the endpoint of a plugin `switchboard up` runs."""
    from switchboard.local import state

    if ":" in target:
        return target
    try:
        local = state.find_router(Path.cwd(), state_dir)
    except state.StateError as error:
        _fail(error)
    rows = (state.read_status(local.state_dir) or {}).get("plugins", [])
    for row in rows:
        if target in (row["plugin"], row["plugin"].split("/", 1)[1]) and row.get("endpoint"):
            return str(row["endpoint"])
    names = ", ".join(row["plugin"] for row in rows) or "none"
    click.echo(
        f"Error: no serving plugin {target!r} in local mode (plugins: {names}).\n"
        "Fix: pass HOST:PORT of a plugin, or see `switchboard status` for why it does not serve.",
        err=True,
    )
    sys.exit(Exit.UNREACHABLE)


@click.group("call")
@click.argument("target")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per call.")
@_state_dir_option("The state folder of `switchboard up --state-dir DIR`.")
@click.pass_context
def plugin_call(ctx: click.Context, target: str, timeout: float, state_dir: Path | None) -> None:
    """Call one plugin directly, as the router would: TARGET is HOST:PORT or a local plugin.

    \b
    switchboard plugin call 127.0.0.1:50051 describe
    switchboard plugin call email send you@example.com "Hello" --subject Hi
    switchboard plugin call voltha invoke get_device_status '{"device_id": "olt-1"}'
    """
    ctx.obj = {"target": _plugin_target(target, state_dir), "timeout": timeout}


def _call_plugin(ctx: click.Context, call: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run `call(client)` against the plugin; errors are printed with the exit code they mean."""
    import asyncio

    import grpc

    from switchboard.sdk import PluginClient, PluginError

    target, timeout = ctx.obj["target"], ctx.obj["timeout"]

    async def run() -> Any:
        async with PluginClient(target, timeout=timeout) as client:
            try:
                await client.health()
            except grpc.aio.AioRpcError as error:
                click.echo(
                    f"Error: no plugin answers at {target} ({error.code().name}).\n"
                    "Fix: start it (`switchboard up DIR`, or `switchboard plugin serve DIR`) "
                    "and check the address; `switchboard status` shows local plugins.",
                    err=True,
                )
                sys.exit(Exit.UNREACHABLE)
            return await call(client)

    try:
        return asyncio.run(run())
    except PluginError as error:
        click.echo(f"Error: {error.error_class.value}: {error.message}", err=True)
        sys.exit(Exit.FAILED)


def _message_dict(message: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    data: dict[str, Any] = MessageToDict(message, preserving_proto_field_name=True)
    return data


@plugin_call.command("describe")
@_output_options
@click.pass_context
def call_describe(ctx: click.Context, output: str) -> None:
    """What the plugin is: id, version, kind, capabilities, secrets, operations."""
    reply = _call_plugin(ctx, lambda client: client.describe())
    data = _message_dict(reply)

    def table() -> None:
        kind = (
            f"channel {reply.channel_type}"
            if reply.channel_type
            else f"{reply.integration_type} integration for {reply.vendor}"
        )
        click.echo(f"{reply.plugin_id} {reply.version} ({reply.name}): {kind}")
        click.echo(f"  capabilities: {', '.join(reply.capabilities) or 'none'}")
        click.echo(
            f"  secrets:      required {', '.join(reply.secrets.required) or 'none'}; "
            f"optional {', '.join(reply.secrets.optional) or 'none'}"
        )
        click.echo(f"  operations:   {', '.join(o.name for o in reply.operations) or 'none'}")
        click.echo(f"  sdk:          {reply.sdk_version}")

    _emit(data, output, table)


@plugin_call.command("health")
@click.pass_context
def call_health(ctx: click.Context) -> None:
    """The plugin's grpc.health.v1 status (SERVING, NOT_SERVING)."""
    status_name = _call_plugin(ctx, lambda client: client.health())
    click.echo(status_name)
    if status_name != "SERVING":
        sys.exit(Exit.FAILED)


@plugin_call.command("check-credentials")
@_output_options
@click.pass_context
def call_check_credentials(ctx: click.Context, output: str) -> None:
    """Whether the provider accepts the plugin's credentials (exit 1 if not)."""
    reply = _call_plugin(ctx, lambda client: client.check_credentials())
    _emit(
        {"ok": reply.ok, "message": reply.message},
        output,
        lambda: click.echo(f"{'ok' if reply.ok else 'REJECTED'}: {reply.message}"),
    )
    if not reply.ok:
        sys.exit(Exit.FAILED)


@plugin_call.command("send")
@click.argument("recipient")
@click.argument("content")
@click.option("--subject", default="")
@click.option("--idempotency-key", default="")
@click.option("--metadata", "-m", multiple=True, help="KEY=VALUE (repeatable).")
@_output_options
@click.pass_context
def call_send(
    ctx: click.Context,
    recipient: str,
    content: str,
    subject: str,
    idempotency_key: str,
    metadata: tuple[str, ...],
    output: str,
) -> None:
    """Send one message through this plugin (CONTENT `-` reads stdin)."""
    extras = _metadata(metadata)
    body = _read_argument(content, "message")
    result = _call_plugin(
        ctx,
        lambda client: client.send(
            recipient, body, subject=subject, metadata=extras, idempotency_key=idempotency_key
        ),
    )
    data = {"providerMessageId": result.provider_message_id, "details": dict(result.details)}

    def table() -> None:
        click.echo(f"Sent: provider message id {result.provider_message_id}")
        for key, value in sorted(result.details.items()):
            click.echo(f"  {key}: {value}")

    _emit(data, output, table)


@plugin_call.command("invoke")
@click.argument("operation")
@click.argument("params", required=False, default="{}")
@click.option("--idempotency-key", default="")
@_output_options
@click.pass_context
def call_invoke(
    ctx: click.Context,
    operation: str,
    params: str,
    idempotency_key: str,
    output: str,
) -> None:
    """Run OPERATION with PARAMS (a JSON object; `-` reads stdin)."""
    try:
        arguments = json.loads(_read_argument(params, "parameters"))
    except ValueError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="PARAMS") from error
    result = _call_plugin(
        ctx,
        lambda client: client.invoke(operation, arguments, idempotency_key=idempotency_key),
    )
    _emit(result, output, lambda: click.echo(json.dumps(result, indent=2)))


plugin.add_command(plugin_call)


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
