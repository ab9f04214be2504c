"""Log output of Switchboard's own processes (router, operator, local mode).

Structured JSON lines for machines (a pod's log, a non-interactive run), in
the format plugins log in (``switchboard.sdk._logging``: ``extra`` fields and
trace ids included); a plain format for a person at a terminal, the same
fields as `` key=value`` after the message. Messages are constant event
names, their facts ``extra`` fields, and neither ever carries secrets or
message bodies: the code logs names, counts and outcomes only. (Plugins also
redact the secret values they loaded.)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Any, Final

from switchboard.sdk._logging import JsonLogFormatter, extra_fields

__all__ = [
    "JsonLogFormatter",
    "PlainLogFormatter",
    "configure_logging",
    "extra_fields",
    "log_level",
    "render_fields",
]

#: A value written bare; anything else (spaces, quotes, `=`, empty) is quoted.
_BARE: Final = re.compile(r"[^\s\"'=]+")


def render_fields(fields: Mapping[str, Any]) -> str:
    """`` key=value`` for each field, for a person: strings bare, or quoted as JSON
    strings when they hold a space, a quote, ``=`` or nothing; other values as JSON."""
    return "".join(f" {key}={_render_value(value)}" for key, value in fields.items())


def _render_value(value: Any) -> str:
    if value is None or isinstance(value, bool | int | float | list | tuple | dict):
        # A dict with tuple keys, say, is written as its text below.
        with contextlib.suppress(TypeError, ValueError):
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    text = str(value)  # any other object as its text, as the JSON lines write it
    return text if _BARE.fullmatch(text) else json.dumps(text, ensure_ascii=False)


class PlainLogFormatter(logging.Formatter):
    """``time LEVEL message key=value ...``: one line per record (a traceback follows it)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        return super().formatMessage(record) + render_fields(extra_fields(record))


#: The variable that sets how much the operator, the router and local mode log.
LOG_LEVEL_VARIABLE: Final = "SWITCHBOARD_LOG_LEVEL"
#: The levels it takes, most verbose first.
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")


def log_level(environ: Mapping[str, str]) -> int:
    """The level ``SWITCHBOARD_LOG_LEVEL`` names (default INFO); ValueError says what it takes."""
    name = environ.get(LOG_LEVEL_VARIABLE, "").strip().upper() or "INFO"
    if name not in LOG_LEVELS:
        raise ValueError(
            f"{LOG_LEVEL_VARIABLE}={environ[LOG_LEVEL_VARIABLE]!r} is not a log level: "
            f"use one of {', '.join(LOG_LEVELS)}"
        )
    return logging.getLevelNamesMapping()[name]


def configure_logging(json_lines: bool = True, level: int | None = None) -> None:
    """Log to stderr at ``level`` (default: ``SWITCHBOARD_LOG_LEVEL``, else INFO).

    Raises ValueError when the variable names no level (the CLI says so and stops).
    """
    chosen = log_level(os.environ) if level is None else level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter() if json_lines else PlainLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(chosen)
