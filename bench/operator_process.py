"""`switchboard operator` as the benchmark runs it: `python -m bench.operator_process KUBECONFIG`.

The same process as the command (`switchboard.controller.main.run`, the same
settings from SWITCHBOARD_* variables, the same logging, traces exported as
the OTEL_* variables say), with one difference:
Describe is called only on loopback addresses. kwok gives pods IP addresses
that lead nowhere, and the benchmark's traffic stays on this machine; the
describer is still built and loads the gRPC client as the command's does.
"""

from __future__ import annotations

import sys

import switchboard.cli  # noqa: F401  (what the command has loaded when it runs the operator)
from switchboard.controller import keep_kubernetes_client_out

keep_kubernetes_client_out()  # as the command does, before kopf is imported

from switchboard.controller.main import describe_over_grpc, run  # noqa: E402
from switchboard.controller.settings import OperatorSettings  # noqa: E402
from switchboard.logs import configure_logging  # noqa: E402
from switchboard.telemetry import configure_tracing, shutdown_tracing  # noqa: E402


def loopback(address: str) -> bool:
    return address.startswith("127.")


if __name__ == "__main__":
    configure_logging()
    tracing = configure_tracing("switchboard-operator")
    timeout = OperatorSettings().describe_timeout_seconds
    try:
        run(sys.argv[1], describer=describe_over_grpc(timeout, reachable=loopback))
    finally:
        shutdown_tracing(tracing)
