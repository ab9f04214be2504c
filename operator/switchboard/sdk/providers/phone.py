"""Phone numbers in E.164 and region codes, checked with ``phonenumbers`` (imported on
first use: a plugin that handles no phone number does not install it)."""

from __future__ import annotations

import re
from typing import Any

from switchboard.sdk._errors import ConfigError, InvalidInput
from switchboard.sdk.providers._detail import one_line


def validate_region(region: str, *, field: str = "config.default_region") -> str:
    """``region`` upper-cased if it is a region ``phonenumbers`` knows (``US``, ``GB``, ...).

    Raises ``ConfigError`` naming ``field`` otherwise. Call it from ``validate_config``.
    """
    import phonenumbers  # only plugins that handle phone numbers need it

    upper = region.strip().upper()
    if upper not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(
            f"{field}: {region!r} is not an ISO 3166-1 alpha-2 region code such as 'US' or 'GB'"
        )
    return upper


def normalize_phone_number(
    number: str,
    *,
    default_region: str | None = None,
    strict: bool = False,
    field: str = "recipient",
) -> str:
    """``number`` in E.164 (``+14155552671``), or ``InvalidInput`` naming it.

    Spaces, dashes, dots and parentheses are allowed. A number without a
    leading ``+`` is read as a national number of ``default_region`` (e.g.
    ``"(415) 555-2671"`` with ``"US"``); without a region it is rejected.
    By default a number passes when its length is possible for its country;
    ``strict=True`` also requires it to be in an assigned range
    (``phonenumbers.is_valid_number``), which rejects made-up numbers such as
    +1 555 123 4567 but lags behind newly assigned ranges.
    """
    import phonenumbers  # only plugins that handle phone numbers need it

    text = number.strip()
    where = f" for region {default_region}" if default_region and not text.startswith("+") else ""
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as error:
        if error.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise InvalidInput(
                f"{field}: {number!r} has no valid country code; write it as "
                "+<country code><number> (or configure default_region)"
            ) from None
        reason = re.sub(r"^\(\d+\)\s*", "", one_line(str(error))).rstrip(".")
        raise InvalidInput(f"{field}: {number!r} is not a phone number: {reason}") from None
    why = _impossible_number_reason(parsed)
    if why is None and strict and not phonenumbers.is_valid_number(parsed):
        region = phonenumbers.region_code_for_country_code(parsed.country_code or 0)
        why = f"no number range assigned in {region} starts like this (an unknown area code)"
    if why is not None:
        raise InvalidInput(f"{field}: {number!r} is not a valid phone number{where}: {why}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _impossible_number_reason(parsed: Any) -> str | None:
    """Why a parsed number cannot exist (too short, too long...), or None if its length fits."""
    import phonenumbers

    reason = phonenumbers.is_possible_number_with_reason(parsed)
    result = phonenumbers.ValidationResult
    country = f"+{parsed.country_code}"
    return {
        result.IS_POSSIBLE: None,
        result.IS_POSSIBLE_LOCAL_ONLY: None,
        result.TOO_SHORT: f"too short for a {country} number",
        result.TOO_LONG: f"too long for a {country} number",
        result.INVALID_LENGTH: f"no {country} number has this many digits",
        result.INVALID_COUNTRY_CODE: f"{country} is not a country code",
    }.get(reason, "not a possible number")
