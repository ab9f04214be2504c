"""E-mail addresses (checked with ``email-validator``, imported on first use), the text
and HTML bodies of an e-mail message, and custom headers from metadata."""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from switchboard.sdk._errors import InvalidInput, PluginError
from switchboard.sdk._messages import Message
from switchboard.sdk.providers.text import html_to_text


@dataclass(frozen=True, slots=True)
class EmailAddress:
    """One mailbox: the normalized address and an optional display name."""

    address: str
    name: str = ""

    def formatted(self) -> str:
        """``"Name <address>"`` quoted as RFC 5322 needs, or the bare address."""
        return email.utils.formataddr((self.name, self.address)) if self.name else self.address


def parse_email_addresses(
    value: str,
    *,
    field: str = "recipient",
    error: type[PluginError] = InvalidInput,
) -> list[EmailAddress]:
    """The mailboxes in ``value``, a comma-separated list of ``addr`` or ``Name <addr>``.

    Each address is checked for syntax only with ``email-validator`` (no DNS
    lookups: ``check_deliverability=False``) and normalized (the domain
    lower-cased and IDNA-decoded). Raises ``error`` (``InvalidInput`` by
    default; pass ``ConfigError`` for configured addresses) naming ``field``
    and the offending address.
    """
    import email_validator  # only email plugins need it

    if "\r" in value or "\n" in value:
        raise error(f"{field}: line breaks are not allowed in an address")
    if not value.strip(" \t,"):
        raise error(f"{field}: no email address given")
    pairs = email.utils.getaddresses([value])
    # The parser answers ("", "") for what it can't read at all.
    if not pairs or any(not address for _, address in pairs):
        raise error(
            f"{field}: {value.strip()!r} is not an email address "
            "(or a comma-separated list of them)"
        )
    mailboxes: list[EmailAddress] = []
    for name, address in pairs:
        try:
            checked = email_validator.validate_email(address, check_deliverability=False)
        except email_validator.EmailNotValidError as invalid:
            raise error(
                f"{field}: {address or name!r} is not an email address: {invalid}"
            ) from None
        mailboxes.append(EmailAddress(checked.normalized, name.strip()))
    return mailboxes


def parse_email_address(
    value: str,
    *,
    field: str,
    error: type[PluginError] = InvalidInput,
) -> EmailAddress:
    """Exactly one mailbox (``addr`` or ``Name <addr>``), as ``parse_email_addresses`` checks it.

    For senders and Reply-To; raises ``error`` naming ``field`` for a list.
    """
    addresses = parse_email_addresses(value, field=field, error=error)
    if len(addresses) != 1:
        raise error(f"{field}: give one address, not {len(addresses)}")
    return addresses[0]


@dataclass(frozen=True, slots=True)
class EmailBodies:
    """The plain-text body every email gets, and the HTML alternative when there is one."""

    text: str
    html: str | None = None


def email_bodies(message: Message) -> EmailBodies:
    """The text and HTML bodies of an email ``message``.

    * ``content_type`` ``text/html``: ``content`` is the HTML; the text part
      is ``metadata["text"]`` or, failing that, ``html_to_text(content)``.
    * anything else: ``content`` is the text; ``metadata["html"]``, when
      present, is the HTML alternative.

    So every HTML email is ``multipart/alternative`` with a readable text part.
    """
    if message.content_type.split(";")[0].strip().lower() == "text/html":
        text = message.metadata.get("text") or html_to_text(message.content)
        return EmailBodies(text=text, html=message.content)
    return EmailBodies(text=message.content, html=message.metadata.get("html") or None)


#: Headers an email plugin sets itself; ``metadata_headers`` refuses them.
RESERVED_EMAIL_HEADERS: Final = frozenset(
    {
        "bcc",
        "cc",
        "content-disposition",
        "content-transfer-encoding",
        "content-type",
        "date",
        "dkim-signature",
        "from",
        "message-id",
        "mime-version",
        "received",
        "reply-to",
        "return-path",
        "sender",
        "subject",
        "to",
    }
)
#: RFC 5322 field names: printable US-ASCII except the colon.
_HEADER_NAME: Final = re.compile(r"^[!-9;-~]+$")


def metadata_headers(
    metadata: Mapping[str, str],
    *,
    prefix: str = "header.",
    reserved: frozenset[str] = RESERVED_EMAIL_HEADERS,
) -> dict[str, str]:
    """Custom headers from metadata keys starting with ``prefix`` (``header.X-Tag`` → ``X-Tag``).

    Raises ``InvalidInput`` naming the metadata key when the name isn't a
    valid header name, is one the plugin sets itself (``reserved``,
    case-insensitive: From, To, Subject, Message-ID, Content-Type, ...), or the
    value holds a line break (header injection).
    """
    headers: dict[str, str] = {}
    for key, value in metadata.items():
        if not key.startswith(prefix):
            continue
        name = key.removeprefix(prefix)
        if not _HEADER_NAME.match(name):
            raise InvalidInput(f"metadata.{key}: {name!r} is not a valid header name")
        if name.lower() in reserved:
            raise InvalidInput(
                f"metadata.{key}: {name} is set by the plugin and cannot be overridden"
            )
        if "\r" in value or "\n" in value:
            raise InvalidInput(f"metadata.{key}: line breaks are not allowed in a header value")
        headers[name] = value
    return headers
