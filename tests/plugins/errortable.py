"""The error table of a plugin's docs page, read so that tests drive every row through the plugin.

Each ``docs/plugins/NAME.md`` has a section ``## Errors`` whose first table
lists every provider answer the plugin tells apart. Its columns differ per
provider (``HTTP``, ``code``, ``status``, ``error``, ...), but every table has
an ``outcome`` column in this vocabulary::

    success                       the send succeeds
    success, partial              it succeeds, details say which parts failed
    invalid input                 InvalidInput
    permanent                     PermanentError
    configuration                 ConfigError
    unauthenticated               Unauthenticated
    retryable                     RetryableError, no retry-after
    retryable, retry-after N s    RetryableError(retry_after=N)
    retryable, `Retry-After`      RetryableError with the seconds of the answer's Retry-After
    unknown                       OutcomeUnknown

and a ``source`` column naming the section of the provider's specification.
A test module turns each row into the provider's answer (its fake), sends a
message and checks the outcome with ``assert_outcome``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from switchboard.sdk import (
    ConfigError,
    InvalidInput,
    OutcomeUnknown,
    PermanentError,
    PluginError,
    RetryableError,
    SendResult,
    Unauthenticated,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins"
#: The seconds a fake puts in Retry-After for rows whose outcome follows that header.
RETRY_AFTER_SECONDS = 7

OUTCOMES: dict[str, type[PluginError] | None] = {
    "success": None,
    "invalid input": InvalidInput,
    "permanent": PermanentError,
    "configuration": ConfigError,
    "unauthenticated": Unauthenticated,
    "retryable": RetryableError,
    "unknown": OutcomeUnknown,
}


@dataclass(frozen=True)
class Row:
    """One row: its cells by lower-cased column name, and the outcome it promises."""

    cells: dict[str, str]
    #: The error class, or None for a success.
    error: type[PluginError] | None
    #: "partial" for a partial success.
    partial: bool
    #: Expected retry_after: seconds, "header" (the answer's Retry-After), or None.
    retry_after: float | str | None
    line: str

    def __getitem__(self, column: str) -> str:
        return self.cells[column]

    def code(self, column: str) -> str:
        """The cell's first `code span`, or the cell's text when it has none."""
        cell = self.cells[column]
        found = re.search(r"`([^`]*)`", cell)
        return found.group(1) if found else cell.strip()

    def codes(self, column: str) -> list[str]:
        """Every `code span` of the cell, in order."""
        return re.findall(r"`([^`]*)`", self.cells[column])

    @property
    def wants_retry_after_header(self) -> bool:
        return self.retry_after == "header"


def error_table(plugin: str) -> list[Row]:
    """The rows of the first table under ``## Errors`` in docs/plugins/``plugin``.md."""
    rows = [_row(cells, line) for cells, line in section_table(plugin, "## Errors")]
    assert rows, f"docs/plugins/{plugin}.md has no error table"
    return rows


def section_table(plugin: str, heading: str) -> list[tuple[dict[str, str], str]]:
    """The first table under ``heading`` in docs/plugins/``plugin``.md: each row's cells
    by lower-cased column name, and where the row is (``NAME.md:LINE``)."""
    lines = (DOCS / f"{plugin}.md").read_text().splitlines()
    start = lines.index(heading)
    table_start = next(i for i in range(start, len(lines)) if lines[i].startswith("|"))
    header = [name.lower() for name in _cells(lines[table_start])]
    rows = []
    for number in range(table_start + 2, len(lines)):
        if not lines[number].startswith("|"):
            break
        values = _cells(lines[number])
        assert len(values) == len(header), f"{plugin}.md line {number + 1}: {len(values)} cells"
        rows.append((dict(zip(header, values, strict=True)), f"{plugin}.md:{number + 1}"))
    return rows


def rows_as_params(plugin: str) -> list[Any]:
    """``pytest.param(row, id=...)`` for every row, named by its first cells."""
    return [
        pytest.param(row, id="-".join([_slug(value) for value in row.cells.values() if value][:3]))
        for row in error_table(plugin)
    ]


def assert_outcome(row: Row, outcome: SendResult | BaseException) -> None:
    """``outcome`` (what the send returned or raised) is what ``row`` promises."""
    if row.error is None:
        assert isinstance(outcome, SendResult), f"{row.line}: expected success, got {outcome!r}"
        assert (outcome.details.get("partial") == "true") == row.partial, (row.line, outcome)
        return
    assert type(outcome) is row.error, f"{row.line}: expected {row.error.__name__}, got {outcome!r}"
    assert isinstance(outcome, PluginError)
    if row.retry_after == "header":
        assert outcome.retry_after is not None, row.line
        assert RETRY_AFTER_SECONDS - 2 <= outcome.retry_after <= RETRY_AFTER_SECONDS, row.line
    else:
        assert outcome.retry_after == row.retry_after, (row.line, outcome.retry_after)


async def outcome_of(send: Any) -> SendResult | BaseException:
    """What awaiting ``send`` gave: the result or the exception it raised."""
    try:
        result: SendResult = await send
    except PluginError as error:
        return error
    return result


def _row(cells: dict[str, str], line: str) -> Row:
    text = cells["outcome"].strip().replace("`", "")
    kind, _, extra = (part.strip() for part in text.partition(","))
    assert kind in OUTCOMES, f"{line}: unknown outcome {kind!r}"
    retry_after: float | str | None = None
    if extra.startswith("retry-after"):
        value = extra.removeprefix("retry-after").strip()
        retry_after = (
            "header"
            if value.lower().startswith("from retry-after")
            else (float(value.removesuffix("s").strip()))
        )
    elif extra.lower() == "retry-after":
        retry_after = "header"
    else:
        assert extra in ("", "partial"), f"{line}: unknown outcome detail {extra!r}"
    return Row(cells, OUTCOMES[kind], extra == "partial", retry_after, line)


def _cells(line: str) -> list[str]:
    # Split on pipes that are not inside a code span or escaped.
    parts, current, in_code = [], "", False
    for index, char in enumerate(line.strip().strip("|")):
        if char == "`":
            in_code = not in_code
        if (
            char == "|"
            and not in_code
            and (index == 0 or line.strip().strip("|")[index - 1] != "\\")
        ):
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return [part.replace("\\|", "|") for part in parts]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", text.replace("`", "")).strip("_")[:40] or "any"
