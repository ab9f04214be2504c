"""Local mode's tests: each runs `switchboard up` and the CLI in a folder of its own."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
