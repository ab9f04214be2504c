"""`--metadata` takes KEY=VALUE only: anything else is refused before any call, never dropped."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from switchboard.cli import main


@pytest.mark.parametrize(
    "command",
    [
        ["send", "sms", "+15551234567", "hello"],
        ["plugin", "call", "127.0.0.1:1", "send", "+15551234567", "hello"],
    ],
)
def test_metadata_without_an_equals_sign_is_a_usage_error(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "-m", "team=ops", "-m", "urgent"])
    assert result.exit_code == 2, result.output
    assert "'urgent' is not KEY=VALUE" in result.output
