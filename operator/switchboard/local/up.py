"""`switchboard up`: plugins as child processes, the router in front, a live view.

Writes `<state dir>/local.json` (router URL, API key, namespace) so that
`switchboard send`, `invoke` and `status` find the local router by themselves,
and prints the environment variables the Python client reads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import signal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from switchboard.ledger import LedgerError
from switchboard.local.loader import LoadError
from switchboard.local.supervisor import Supervisor
from switchboard.router.app import Router
from switchboard.router.auth import ApiKey, ApiKeyAuthority
from switchboard.router.discovery import StaticDiscovery
from switchboard.router.settings import RouterSettings

log = logging.getLogger("switchboard.local")
STATE_FILE = "local.json"
LEDGER_FILE = "ledger.db"


def _table(supervisor: Supervisor, url: str) -> Table:
    table = Table(title=f"Switchboard local mode: router at {url}", expand=True)
    for column in (
        "plugin",
        "kind",
        "route",
        "priority",
        "state",
        "endpoint",
        "restarts",
        "last error",
    ):
        table.add_column(column)
    styles = {"serving": "green", "starting": "yellow", "degraded": "red", "stopped": "dim"}
    for row in supervisor.snapshot():
        table.add_row(
            row["plugin"],
            row["kind"],
            str(row["route"]),
            str(row["priority"]),
            f"[{styles.get(row['state'], '')}]{row['state']}[/]",
            row["endpoint"],
            str(row["restarts"]),
            row["last_error"][:60],
        )
    if supervisor.load_error:
        table.caption = f"[red]YAML not applied: {supervisor.load_error.splitlines()[0]}[/]"
    return table


async def run_up(
    paths: list[Path], plugins: list[Path], state_dir: Path, port: int, grpc_port: int, live: bool
) -> int:
    state_dir.mkdir(parents=True, exist_ok=True)
    api_key = secrets.token_urlsafe(24)
    keys_file = state_dir / "api-keys.yaml"
    keys_file.write_text(json.dumps({"keys": [{"name": "local", "key": api_key}]}))
    keys_file.chmod(0o600)
    discovery = StaticDiscovery()
    # The ledger is a file next to the state: what was accepted survives a restart.
    settings = RouterSettings(
        backend="static",
        host="127.0.0.1",
        http_port=port,
        grpc_port=grpc_port,
        ledger_url=f"sqlite+aiosqlite:///{state_dir.resolve() / LEDGER_FILE}",
    )
    router = Router(settings, discovery, ApiKeyAuthority([ApiKey("local", api_key)]))
    console = Console(stderr=True)
    view: Live | None = None
    url = ""

    def refresh() -> None:
        if view is not None:
            view.update(_table(supervisor, url))

    supervisor = Supervisor(paths, plugins, state_dir, discovery, refresh)
    try:
        await supervisor.start()
    except LoadError as error:
        console.print(f"[red]Nothing was started:[/]\n{error}", highlight=False)
        return 2
    try:
        await router.start()
    except LedgerError as error:
        await supervisor.stop()
        console.print(f"[red]The router did not start:[/] {error}", highlight=False)
        return 2
    url = f"http://127.0.0.1:{router.http_port}"
    # Plugins give providers this address for delivery receipts.
    router.settings.public_url = url
    state = {"url": url, "token": api_key, "namespace": "default"}
    state_path = state_dir / STATE_FILE
    state_path.write_text(json.dumps(state))
    state_path.chmod(0o600)
    log.info("Router listening at %s", url)
    console.print(
        f"Router at {url}.\n"
        "  Try:              switchboard send sms +15551234567 'Hello'\n"
        '  Python client:    eval "$(switchboard env)"\n'
        "  Ctrl-C stops everything.",
        highlight=False,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    watcher = asyncio.create_task(supervisor.watch(), name="watch YAML")
    try:
        if live:
            with Live(_table(supervisor, url), console=console, refresh_per_second=4) as view:
                await stop.wait()
        else:
            await stop.wait()
    finally:
        view = None
        watcher.cancel()
        await supervisor.stop()
        await router.stop()
        state_path.unlink(missing_ok=True)
        log.info("Stopped every plugin and the router")
    return 0


def read_state(state_dir: Path) -> dict[str, Any]:
    """The running local router's URL and key, if `switchboard up` runs here."""
    path = state_dir / STATE_FILE
    if not path.is_file():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data
