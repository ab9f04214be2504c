"""Structured JSON logs on stderr, with every loaded secret value replaced by ``***``.

The one log format of every Switchboard process: plugins, the operator, the
router and local mode. A container's stderr is collected by the cluster's log
pipeline, so each record is one JSON object: ``ts``, ``level``, ``msg``,
``plugin`` (in a plugin process), ``logger``, the record's ``extra`` fields,
the active trace and span ids, and the formatted exception if any.
Redaction runs on the record's values before they are serialized, so a secret
can't slip through as an escaped variant, and it covers third-party libraries
too because the handler sits on the root logger.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Final, TextIO
from urllib.parse import quote, quote_plus

from opentelemetry import trace

REDACTED: Final = "***"

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRIBUTES: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime"}
)


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a log call passed as ``extra``: the record's non-standard attributes."""
    return {key: value for key, value in vars(record).items() if key not in _STANDARD_ATTRIBUTES}


#: Secrets shorter than this are redacted only where they stand alone (not
#: inside a longer word): replacing every "k" would wreck every log line.
MIN_SUBSTRING_SECRET: Final = 4
#: A run of base64 (standard or URL-safe alphabet) long enough to hide a secret,
#: e.g. the credentials of an HTTP Basic Authorization header a provider echoed.
_BASE64_RUN: Final = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}")


class Redactor:
    """Replaces known secret values in text, in every encoding the SDK can produce.

    A secret is hidden as itself, URL-encoded (``quote``, ``quote_plus``) and
    inside any base64 run that decodes to text containing it (HTTP Basic
    credentials ``base64(user:password)`` echoed by a provider). Values are
    only ever added, never removed, because a retired plugin instance may
    still log with the previous secrets.
    """

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._substrings: list[str] = []
        self._words: re.Pattern[str] | None = None

    def add(self, values: Iterable[str]) -> None:
        """Redact ``values`` from now on (empty and whitespace-only values are ignored)."""
        self._secrets.update(value for value in values if value.strip())
        long_ones = {value for value in self._secrets if len(value) >= MIN_SUBSTRING_SECRET}
        variants = {
            variant
            for value in long_ones
            for variant in (value, quote(value, safe=""), quote(value), quote_plus(value))
        }
        # Longest first, so a secret containing another secret is hidden whole.
        self._substrings = sorted(variants, key=len, reverse=True)
        short_ones = sorted(self._secrets - long_ones, key=len, reverse=True)
        self._words = (
            re.compile("|".join(rf"(?<![\w]){re.escape(value)}(?![\w])" for value in short_ones))
            if short_ones
            else None
        )

    def redact(self, text: str) -> str:
        for value in self._substrings:
            if value in text:
                text = text.replace(value, REDACTED)
        if self._substrings and len(text) >= 8:
            text = _BASE64_RUN.sub(self._redact_encoded, text)
        if self._words is not None:
            text = self._words.sub(REDACTED, text)
        return text

    def _redact_encoded(self, match: re.Match[str]) -> str:
        run = match.group(0)
        for decoded in _base64_decodings(run):
            if any(secret in decoded for secret in self._substrings):
                return REDACTED
        return run

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


def _base64_decodings(run: str) -> Iterator[str]:
    """The text ``run`` decodes to as standard and as URL-safe base64, if it does."""
    padded = run.rstrip("=")
    padded += "=" * (-len(padded) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            yield decode(padded).decode("utf-8", errors="replace")
        except (binascii.Error, ValueError):
            continue


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
        for key, value in extra_fields(record).items():
            setattr(record, key, self._redactor.redact_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redactor.redact(record.exc_text)
        return True


class JsonLogFormatter(logging.Formatter):
    """Formats a record as one JSON line, redacted when given a ``Redactor``."""

    def __init__(self, plugin: str | None = None, redactor: Redactor | None = None) -> None:
        super().__init__()
        #: The ``plugin`` field of every record (none outside plugin processes): the
        #: plugin id once the manifest is read.
        self.plugin = plugin
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
            **({"plugin": self.plugin} if self.plugin is not None else {}),
            "logger": record.name,
        }
        for key, value in extra_fields(record).items():
            payload.setdefault(key, value)
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            payload["trace_id"] = format(span_context.trace_id, "032x")
            payload["span_id"] = format(span_context.span_id, "016x")
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["error"] = record.exc_text
        if self._redactor is not None:
            payload = self._redactor.redact_value(payload)
        # Whatever an `extra` field holds, the line is written (as its str() if need be).
        return json.dumps(payload, ensure_ascii=False, default=str)


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
