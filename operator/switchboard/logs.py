"""Log output of Switchboard's own processes (router, operator, local mode).

Structured JSON lines for machines (a pod's log, a non-interactive run), in
the format plugins log in (``switchboard.sdk._logging``: ``extra`` fields and
trace ids included); a plain format for a person at a terminal. Messages never
carry secrets or message bodies: the code logs names, counts and outcomes
only. (Plugins also redact the secret values they loaded.)
"""

from __future__ import annotations

import logging
import sys

from switchboard.sdk._logging import JsonLogFormatter

__all__ = ["JsonLogFormatter", "configure_logging"]


def configure_logging(json_lines: bool = True, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLogFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
