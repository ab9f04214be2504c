"""``switchboard.sdk.__all__`` is exactly the public surface plugin authors depend on."""

from __future__ import annotations

import inspect
import subprocess
import sys

import switchboard.sdk as sdk


def test_every_name_in_all_exists() -> None:
    missing = [name for name in sdk.__all__ if not hasattr(sdk, name)]

    assert missing == []


def test_every_public_name_is_in_all_and_nothing_else() -> None:
    public = {
        name
        for name, value in vars(sdk).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }

    assert public == set(sdk.__all__)
    assert len(sdk.__all__) == len(set(sdk.__all__))


def test_exported_names_are_documented() -> None:
    undocumented = [name for name in sdk.__all__ if not inspect.getdoc(getattr(sdk, name))]

    assert undocumented == []


def test_sdk_imports_no_operator_side_code() -> None:
    # A plugin image should not need the operator's dependencies at import time.
    # A fresh interpreter, because this test session has imported them already.
    probe = (
        "import sys, switchboard.sdk; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'kopf', 'kubernetes'}) + "
        "sorted(m for m in sys.modules if m.startswith('switchboard.controller')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )

    assert result.stdout.strip() == "[]"
