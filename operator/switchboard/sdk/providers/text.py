"""HTML rendered as readable plain text (the text part of an HTML e-mail)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Final


def html_to_text(html: str) -> str:
    """A readable plain-text rendering of ``html``: block elements on their own lines,
    links as ``text (href)``, scripts and styles dropped, entities decoded."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return parser.text()


class _TextExtractor(HTMLParser):
    _BLOCKS: Final = frozenset(
        {"address", "blockquote", "div", "dl", "dt", "dd", "fieldset", "figure", "footer",
         "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav",
         "ol", "p", "pre", "section", "table", "tr", "ul"}
    )  # fmt: skip
    _HIDDEN: Final = frozenset({"head", "script", "style", "template", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._parts: list[str] = []
        self._hidden_depth = 0
        #: The href of each open <a> and where its text starts in ``_parts``.
        self._links: list[tuple[str | None, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden_depth += 1
        elif tag == "br":
            self._parts.append("\n")
        elif tag in self._BLOCKS:
            self._parts.append("\n\n" if tag in {"p", "table", "ul", "ol"} else "\n")
            if tag == "li":
                self._parts.append("- ")
        elif tag == "a":
            self._links.append((dict(attrs).get("href"), len(self._parts)))
        elif tag in {"td", "th"}:
            self._parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden_depth = max(0, self._hidden_depth - 1)
        elif tag in self._BLOCKS and tag != "li":
            self._parts.append("\n")
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            label = "".join(self._parts[start:]).strip()
            if href and href != label and not href.startswith(("#", "javascript:")):
                self._parts.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if not self._hidden_depth:
            self._parts.append(re.sub(r"\s+", " ", data))

    def text(self) -> str:
        lines = [line.strip() for line in "".join(self._parts).split("\n")]
        collapsed = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
        return collapsed.strip()
