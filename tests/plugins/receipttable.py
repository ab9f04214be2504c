"""The receipt table of a plugin's docs page: tests drive every status through the plugin.

Each receipt-taking plugin's ``docs/plugins/NAME.md`` has a section
``## Delivery receipts`` whose first table lists every status its provider's
callbacks report. Its first column holds the provider's status values as
`code spans` (several per row when they mean the same), and its ``state``
column what the plugin reports::

    sent          DeliveryState.SENT: accepted or on its way, not final
    delivered     DeliveryState.DELIVERED
    failed        DeliveryState.FAILED (the error says why)
    no receipt    nothing: the callback carries no news about a sent message

A test module signs a callback for each status as the provider documents it
and checks the receipt the plugin returns; another compares the table with
the plugin's own status table, so that neither lists a status the other lacks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from switchboard.sdk import DeliveryState
from tests.plugins.errortable import section_table

STATES: dict[str, DeliveryState | None] = {
    "sent": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "failed": DeliveryState.FAILED,
    "no receipt": None,
}


@dataclass(frozen=True)
class StatusRow:
    """One provider status and the state the docs promise for it."""

    status: str
    state: DeliveryState | None
    cells: dict[str, str]
    line: str


def receipt_table(plugin: str) -> list[StatusRow]:
    """One ``StatusRow`` per status value in the table under ``## Delivery receipts``."""
    rows: list[StatusRow] = []
    for cells, line in section_table(plugin, "## Delivery receipts"):
        first = next(iter(cells.values()))
        statuses = re.findall(r"`([^`]*)`", first)
        assert statuses, f"{line}: no `status` in the first column"
        state = cells["state"].strip().split(",")[0].strip()
        assert state in STATES, f"{line}: unknown state {state!r}"
        rows.extend(StatusRow(status, STATES[state], cells, line) for status in statuses)
    assert rows, f"docs/plugins/{plugin}.md has no receipt table"
    return rows


def statuses_as_params(plugin: str) -> list[Any]:
    """``pytest.param(row, id=status)`` for every documented status."""
    return [pytest.param(row, id=row.status) for row in receipt_table(plugin)]


def documented_states(plugin: str) -> dict[str, DeliveryState | None]:
    """The table as a mapping: status value -> state (None: no receipt)."""
    return {row.status: row.state for row in receipt_table(plugin)}
