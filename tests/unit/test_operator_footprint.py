"""The operator process carries only what it runs, and does nothing on import."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.imports import loaded_after


def test_the_operator_loads_no_kubernetes_client_and_no_cryptography() -> None:
    # What `switchboard operator` imports and builds before it runs. The operator
    # talks through lightkube; the `kubernetes` client (which kopf would import
    # when installed, with requests, oauthlib and google-auth: 18 MB) stays out,
    # and so does kubernetes_asyncio (which loads every generated model at once).
    # cryptography (about 9 MB) loads only when a licence is checked.
    loaded = loaded_after(
        "import switchboard.cli; "
        "from switchboard.controller import keep_kubernetes_client_out; "
        "keep_kubernetes_client_out(); "
        "import switchboard.controller.main, switchboard.controller.leader; "
        "from switchboard.controller.main import Operator; "
        "from switchboard.controller.settings import OperatorSettings; "
        "Operator(OperatorSettings())"
    )

    # ("kubernetes" itself is in sys.modules as None: the entry that keeps it out.)
    assert not {m for m in loaded if m.startswith(("kubernetes.", "google.auth"))}
    assert not {m for m in loaded if m.startswith(("kubernetes_asyncio", "requests_oauthlib"))}
    assert "cryptography" not in loaded
    assert "lightkube" in loaded and "kopf" in loaded


def test_importing_the_kopf_entry_reaches_no_api_server(tmp_path: object) -> None:
    # `kopf run -m switchboard.controller.kopf_main` imports the module first; with
    # no kubeconfig anywhere, the import must still succeed: the API server is
    # first reached in kopf's login and startup handlers, not at import time.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")
    }
    env["KUBECONFIG"] = os.devnull
    env["HOME"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", "import switchboard.controller.kopf_main"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
