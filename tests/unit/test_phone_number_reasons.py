"""An invalid phone number's error says why, so the caller can fix it (issue 19, item 1)."""

from __future__ import annotations

import pytest

from switchboard.sdk import InvalidInput
from switchboard.sdk.providers import normalize_phone_number


@pytest.mark.parametrize(
    ("number", "strict", "why"),
    [
        # The seeds' own sample number: nine digits after +1.
        ("+1234567890", False, "too short for a +1 number"),
        ("+1 555 123 4567 89", False, "too long for a +1 number"),
        ("+15551234567", True, "(an unknown area code)"),
    ],
)
def test_an_invalid_number_names_the_reason(number: str, strict: bool, why: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        normalize_phone_number(number, strict=strict)
    assert str(raised.value).startswith(f"recipient: {number!r} is not a valid phone number: ")
    assert str(raised.value).endswith(why)


def test_a_possible_number_passes_in_e164() -> None:
    assert normalize_phone_number("+1 (555) 123-4567") == "+15551234567"
