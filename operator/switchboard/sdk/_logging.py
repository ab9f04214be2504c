"""Structured JSON logs on stderr, with every loaded secret value replaced by ``***``.

A plugin container's stderr is collected by the cluster's log pipeline, so
each record is one JSON object: ``ts``, ``level``, ``msg``, ``plugin``,
``logger``, the record's ``extra`` fields, the active trace and span ids, and
the formatted exception if any. Redaction runs on the record's values before
they are serialized, so a secret can't slip through as an escaped variant, and
it covers third-party libraries too because the handler sits on the root logger.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from opentelemetry import trace

REDACTED: Final = "***"

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRIBUTES: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime"}
)


class Redactor:
    """Replaces known secret values in text. Values are only ever added, never removed,
    because a retired plugin instance may still log with the previous secrets."""

    def __init__(self) -> None:
        self._values: list[str] = []

    def add(self, values: Iterable[str]) -> None:
        """Redact ``values`` from now on (empty and whitespace-only values are ignored)."""
        known = set(self._values)
        known.update(value for value in values if value.strip())
        # Longest first, so a secret containing another secret is hidden whole.
        self._values = sorted(known, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def redact_value(self, value: Any) -> Any:
        """``value`` with secrets redacted from every string in it; other objects become strings."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, bool | int | float) or value is None:
            return value
        if isinstance(value, dict):
            return {self.redact(str(key)): self.redact_value(item) for key, item in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact_value(item) for item in value]
        return self.redact(str(value))


class RedactingFilter(logging.Filter):
    """Redacts a record in place, before any handler formats it.

    The runtime puts this on the loggers it owns (the plugin's and its own),
    so secrets stay out of whatever handlers an embedding application
    configured; ``JsonLogFormatter`` covers every other logger of a plugin process.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._redactor.redact(record.getMessage())
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRIBUTES:
                setattr(record, key, self._redactor.redact_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redactor.redact(record.exc_text)
        return True


class JsonLogFormatter(logging.Formatter):
    """Formats a record as one redacted JSON line."""

    def __init__(self, plugin: str, redactor: Redactor) -> None:
        super().__init__()
        #: The ``plugin`` field of every record: the plugin id once the manifest is read.
        self.plugin = plugin
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
            "plugin": self.plugin,
            "logger": record.name,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and key not in payload:
                payload[key] = value
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            payload["trace_id"] = format(span_context.trace_id, "032x")
            payload["span_id"] = format(span_context.span_id, "016x")
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["error"] = record.exc_text
        return json.dumps(self._redactor.redact_value(payload), ensure_ascii=False)


def configure_logging(
    plugin: str, redactor: Redactor, level: str = "INFO", stream: TextIO | None = None
) -> JsonLogFormatter:
    """Send every log record of this process to ``stream`` (stderr) as redacted JSON.

    Meant for the plugin process (``switchboard plugin serve``); an application
    embedding ``serve_plugin`` keeps its own logging setup.
    """
    formatter = JsonLogFormatter(plugin, redactor)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return formatter
