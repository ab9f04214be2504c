"""The operator: reconciles CommunicationPlugins and VendorIntegrations (docs/architecture.md)."""

from __future__ import annotations

import sys


def keep_kubernetes_client_out() -> None:
    """Keep the `kubernetes` client out of the operator process.

    The operator talks through lightkube. kopf imports the `kubernetes` client
    whenever it is installed (the router's image has it), only to recognise
    that client's objects, which the operator never hands it; its config
    loaders bring requests, oauthlib and google-auth: 18 MB of the operator's
    memory. Call this before kopf is imported, in the operator's own process
    only (`switchboard operator`); a process that already loaded the client
    keeps it."""
    sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]
