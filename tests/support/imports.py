"""What a process loads: module names in a fresh interpreter after a statement."""

from __future__ import annotations

import subprocess
import sys


def loaded_after(statement: str) -> set[str]:
    # A fresh interpreter: a test session has imported everything already.
    probe = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return set(result.stdout.split())
