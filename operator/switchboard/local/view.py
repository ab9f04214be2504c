"""What a person sees of local mode: the live view of `switchboard up` and the status table.

Both fit a terminal of 80 columns: one line per plugin, the detail column
(endpoint, why it is blocked or down, the next restart) cut with an ellipsis
rather than wrapped.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

_FAILED_CALL = re.compile(r"^Failed a call \((\w+)\): ")
STYLES = {
    "serving": "green",
    "starting": "yellow",
    "degraded": "red",
    "failed": "red",
    "blocked": "magenta",
    "stopped": "dim",
}


def detail(row: Mapping[str, Any], now: float | None = None) -> str:
    """The one thing to know about a plugin beyond its state."""
    state = row.get("state")
    if state == "blocked":
        return f"{row.get('reason')}: {row.get('message')}"
    if state == "serving":
        extra = f" ({row['lastError']})" if row.get("lastError") else ""
        return f"{row.get('endpoint', '')}{extra}"
    # "Failed a call (Send): RETRYABLE ..." reads as "Send: RETRYABLE ..." where space is short.
    text = _FAILED_CALL.sub(r"\1: ", str(row.get("lastError") or ""))
    restart_at = row.get("nextRestartAt")
    if state == "degraded" and restart_at:
        seconds = max(0, round(float(restart_at) - (now or time.time())))
        text = f"restart {row.get('restarts', 0)} in {seconds}s: {text}".rstrip(": ")
    return text


def route_text(row: Mapping[str, Any]) -> str:
    priority = row.get("priority")
    return f"{row.get('route', '')} p{priority}" if priority else str(row.get("route", ""))


def plugins_table(rows: Sequence[Mapping[str, Any]], title: str = "") -> Table:
    """One line per plugin: name, route, state and the detail, cut to fit."""
    table = Table(title=title or None, title_justify="left", box=None, pad_edge=False, expand=True)
    table.add_column("PLUGIN", no_wrap=True, overflow="ellipsis", max_width=24)
    table.add_column("ROUTE", no_wrap=True, overflow="ellipsis", max_width=10)
    table.add_column("STATE", no_wrap=True, min_width=8)
    table.add_column("DETAIL", no_wrap=True, overflow="ellipsis", ratio=1)
    now = time.time()
    for row in rows:
        state = str(row.get("state", ""))
        table.add_row(
            str(row.get("plugin", "")),
            route_text(row),
            Text(state, style=STYLES.get(state, "")),
            detail(row, now),
        )
    return table


def live_view(
    rows: Sequence[Mapping[str, Any]],
    url: str,
    load_error: str = "",
    events: Iterable[str] = (),
) -> RenderableType:
    """The screen of `switchboard up`: the table, a YAML error if any, the latest events."""
    parts: list[RenderableType] = [
        Text(f"Switchboard local mode: router at {url or '(starting)'}; Ctrl-C stops it", "bold")
        .append("\n")
        .append(f"{sum(1 for r in rows if r.get('state') == 'serving')} of {len(rows)} serving"),
        plugins_table(rows),
    ]
    if load_error:
        first = load_error.splitlines()[0]
        parts.append(Text(f"YAML not applied (the plugins above keep running): {first}", "red"))
    recent = list(events)
    if recent:
        parts.append(Text("\n".join(recent), style="dim", no_wrap=True, overflow="ellipsis"))
    return Group(*parts)
