"""`switchboard up`: plugins as child processes, the router in front, a live view.

Order of start, so that a failure leaves nothing behind: take the state
folder's lock (one `up` per folder), read the YAML (nothing starts if it is
wrong), bind the router (a port in use stops here, before any plugin
starts), start the plugins, announce the router (`local.json`) and, with
`-- COMMAND`, run the application once the plugins settled, with
`SWITCHBOARD_URL` and `SWITCHBOARD_TOKEN` set. Everything stops when the
application exits, on Ctrl-C or on SIGTERM; the exit code is the
application's, else 0.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live

from switchboard.controller.gates import GateResult
from switchboard.ledger import LedgerError
from switchboard.local import state
from switchboard.local.loader import LoadError, LocalPlugin
from switchboard.local.supervisor import START_TIMEOUT, Supervisor, die_with_us
from switchboard.local.view import live_view
from switchboard.logs import JsonLogFormatter, extra_fields, render_fields
from switchboard.router.app import Router
from switchboard.router.auth import ApiKey, ApiKeyAuthority
from switchboard.router.discovery import StaticDiscovery
from switchboard.router.settings import RouterSettings
from switchboard.telemetry import configure_tracing, shutdown_tracing

log = logging.getLogger("switchboard.local")

#: `switchboard up` could not start: bad YAML, the state folder or the port in use.
NOT_STARTED = 2
#: `switchboard up -- COMMAND` could not run COMMAND (as a shell says it).
COMMAND_NOT_RUN = 127
#: Events kept for the live view.
RECENT_EVENTS = 6
APP_STOP_GRACE = 10.0


@dataclass
class UpOptions:
    paths: list[Path]
    plugins: list[Path]
    state_dir: Path
    port: int = 8080
    grpc_port: int = 9090
    live: bool = False
    start_timeout: float = START_TIMEOUT
    command: list[str] = field(default_factory=list)
    namespace: str = "default"


class _Events(logging.Handler):
    """The latest local-mode log records, for the live view: the message's first line and
    the fields, as the plain log format writes them."""

    def __init__(self, keep: int = RECENT_EVENTS) -> None:
        super().__init__(logging.INFO)
        self.recent: collections.deque[str] = collections.deque(maxlen=keep)

    def emit(self, record: logging.LogRecord) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        first_line = next(iter(record.getMessage().splitlines()), "")
        self.recent.append(f"{stamp} {first_line}{render_fields(extra_fields(record))}")


def _plugin_echo(console: Console) -> Callable[[str, str], None]:
    """Print a plugin's log line with its name in front, as `docker compose` does."""
    width = [12]

    def echo(name: str, text: str) -> None:
        width[0] = max(width[0], len(name))
        console.print(f"{name:<{width[0]}} | {text}", highlight=False, markup=False, soft_wrap=True)

    return echo


def _port_in_use(error: OSError, port: int) -> str:
    return (
        f"Port {port} on 127.0.0.1 is in use, so the router cannot listen there. Is another "
        "`switchboard up` (or `make demo`) running? `switchboard status` shows it. Stop it, "
        "or pass --port (and --grpc-port) for this one."
        if error.errno == errno.EADDRINUSE
        else f"The router could not listen on port {port}: {error}"
    )


async def run_up(options: UpOptions) -> int:
    console = Console(stderr=True)
    try:
        with state.exclusive(options.state_dir):
            return await _run(options, console)
    except state.StateError as error:
        console.print(f"[red]Nothing was started:[/] {error}", highlight=False)
        return NOT_STARTED


async def _run(options: UpOptions, console: Console) -> int:
    state_dir = options.state_dir
    try:
        tracing = configure_tracing("switchboard-local")
    except ValueError as error:
        console.print(f"[red]Nothing was started:[/] {error}", highlight=False)
        return NOT_STARTED
    events = _Events()
    if options.live:
        _log_to_file(state_dir, events)  # from the first record on: the view owns the screen
    view: Live | None = None
    url = ""
    discovery = StaticDiscovery()

    def changed() -> None:
        rows = supervisor.snapshot()
        document = {
            "url": url,
            "pid": os.getpid(),
            "stateDir": str(state_dir.resolve()),
            "loadError": supervisor.load_error,
            "plugins": rows,
            "updatedAt": time.time(),
        }
        with contextlib.suppress(OSError):
            state.write_status(state_dir, document)
        if view is not None:
            view.update(live_view(rows, url, supervisor.load_error, events.recent))

    echo = None if options.live else _plugin_echo(console)
    router: Router | None = None

    def audit_gate(plugin: LocalPlugin, result: GateResult) -> None:
        # Late bound: the router (and its audit trail) starts after the YAML is read.
        blocking = result.blocking
        if router is not None:
            router.service.auditor.record(
                plugin.namespace,
                "switchboard-up",
                "gate",
                f"{plugin.resource.kind}/{plugin.resource.metadata.name}",
                "passed" if blocking is None else str(blocking.reason),
                detail=None if blocking is None else blocking.message,
            )

    supervisor = Supervisor(
        options.paths,
        options.plugins,
        state_dir,
        discovery,
        changed,
        runtime_dir=state.fresh_runtime_dir(state_dir),  # a crashed run's secrets go here
        start_timeout=options.start_timeout,
        echo=echo,
        on_gate=audit_gate,
    )
    try:
        supervisor.load()
    except LoadError as error:
        console.print(f"[red]Nothing was started:[/]\n{error}", highlight=False, markup=True)
        shutdown_tracing(tracing)
        return NOT_STARTED
    token = state.api_key(state_dir)
    # The ledger is a file next to the state: what was accepted survives a restart.
    settings = RouterSettings(
        backend="static",
        host="127.0.0.1",
        http_port=options.port,
        grpc_port=options.grpc_port,
        ledger_url=f"sqlite:///{state_dir.resolve() / state.LEDGER_FILE}",
    )
    router = Router(settings, discovery, ApiKeyAuthority([ApiKey(state.LOCAL_KEY_NAME, token)]))
    try:
        await router.start()
    except (OSError, LedgerError) as error:
        await router.stop(grace=0)
        message = _port_in_use(error, options.port) if isinstance(error, OSError) else str(error)
        console.print(f"[red]Nothing was started:[/] {message}", highlight=False)
        shutdown_tracing(tracing)
        return NOT_STARTED
    url = f"http://127.0.0.1:{router.http_port}"
    router.settings.public_url = url  # plugins give providers this address for receipts
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    app: asyncio.subprocess.Process | None = None
    watcher: asyncio.Task[None] | None = None
    try:
        state.write_router(state.LocalRouter(state_dir, url, token, options.namespace, os.getpid()))
        log.info("Announced the local router", extra={"url": url})
        if options.live:
            view = Live(
                live_view([], url, "", events.recent),
                console=console,
                refresh_per_second=4,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            view.start()
        elif not options.command:
            console.print(
                f"Router at {url}. In another terminal:\n"
                "  .venv/bin/switchboard status\n"
                "  .venv/bin/switchboard send sms +15551234567 'Hello'\n"
                '  eval "$(.venv/bin/switchboard env)"   # for your own code\n'
                "Ctrl-C stops everything.",
                highlight=False,
            )
        await supervisor.start()
        watcher = asyncio.create_task(supervisor.watch(), name="watch YAML")
        settled = asyncio.create_task(supervisor.settled())
        await asyncio.wait(
            {settled, asyncio.ensure_future(stop.wait())}, return_when=asyncio.FIRST_COMPLETED
        )
        if settled.done():
            log.info("Plugins settled", extra={"states": _counts(supervisor.snapshot())})
        if options.command and not stop.is_set():
            try:
                app = await _start_app(options.command, url, token)
            except OSError as error:
                log.error(
                    "Could not run the command",
                    extra={"command": options.command[0], "error": str(error)},
                )
                return COMMAND_NOT_RUN
            log.info(
                "Started the command", extra={"command": " ".join(options.command), "pid": app.pid}
            )
            await asyncio.wait(
                {asyncio.ensure_future(app.wait()), asyncio.ensure_future(stop.wait())},
                return_when=asyncio.FIRST_COMPLETED,
            )
        else:
            await stop.wait()
    finally:
        if view is not None:
            view.stop()
        if app is not None:
            await _stop_app(app)
        if watcher is not None:
            watcher.cancel()
        await supervisor.stop()
        await router.stop()
        state.forget_router(state_dir, os.getpid())
        log.info("Stopped every plugin and the router")
        shutdown_tracing(tracing)
    if app is not None and app.returncode is not None:
        return app.returncode if app.returncode >= 0 else 128 - app.returncode
    return 0


def _counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many plugins are in each state, e.g. ``{"failed": 1, "serving": 2}``."""
    return dict(sorted(collections.Counter(str(row["state"]) for row in rows).items()))


def _log_to_file(state_dir: Path, events: _Events) -> None:
    """With the live view on screen, log records go to a file and the view, never the screen."""
    folder = state_dir / state.LOGS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(folder / "switchboard.log", encoding="utf-8")
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler, events]


async def _start_app(command: list[str], url: str, token: str) -> asyncio.subprocess.Process:
    environment = {
        **os.environ,
        "SWITCHBOARD_URL": url,
        "SWITCHBOARD_TOKEN": token,
    }
    # The application keeps the terminal (same process group: Ctrl-C reaches it too)
    # and gets SIGTERM if local mode dies without stopping it.
    return await asyncio.create_subprocess_exec(*die_with_us(command), env=environment)


async def _stop_app(app: asyncio.subprocess.Process) -> None:
    if app.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            app.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(app.wait(), APP_STOP_GRACE)
        except TimeoutError:
            app.kill()
            await app.wait()


def read_state(state_dir: Path) -> dict[str, Any]:
    """The running local router's URL and key, if `switchboard up` runs with `state_dir`."""
    router = state.read_router(state_dir)
    if router is None:
        return {}
    return {"url": router.url, "token": router.token, "namespace": router.namespace}
