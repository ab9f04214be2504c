"""How a provider's words and an exception's text are quoted in error messages: one
line, at most ``MAX_DETAIL`` characters. Private to the package."""

from __future__ import annotations

from typing import Final

#: A provider's error text is cut to this many characters in error messages.
MAX_DETAIL: Final = 300


def exception_text(error: Exception) -> str:
    return shorten(one_line(str(error))) or "no details"


def one_line(text: str) -> str:
    return " ".join(text.split())


def shorten(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 3] + "..."
