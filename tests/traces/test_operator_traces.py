"""The operator's traces, read from a real OTLP receiver: one span per reconcile.

`switchboard operator` as its own process (bench/operator_process.py: the
command, calling Describe only on loopback addresses, since kwok's pod IPs
lead off the machine) against the test control plane, exporting over
OTLP/HTTP as the standard OTEL_* variables say.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.controlplane import ControlPlane
from tests.support.wait import wait_for
from tests.traces.otlp import HttpReceiver, ReceivedSpan

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]


def _reconciles(receiver: HttpReceiver, resource: str) -> list[ReceivedSpan]:
    return [
        span
        for span in list(receiver.spans)
        if span.name == "switchboard.reconcile CommunicationPlugin"
        and span.attributes.get("switchboard.resource") == resource
    ]


def test_the_operator_exports_a_span_per_reconcile(
    crds_installed: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    receiver = HttpReceiver()
    log = (tmp_path / "operator.log").open("wb")
    operator = subprocess.Popen(
        [sys.executable, "-m", "bench.operator_process", str(crds_installed.kubeconfig)],
        cwd=REPO,
        env={
            **os.environ,
            "SWITCHBOARD_NAMESPACE": namespace,
            "SWITCHBOARD_METRICS_HOST": "127.0.0.1",
            "SWITCHBOARD_METRICS_PORT": "0",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        crds_installed.apply(
            {
                "apiVersion": "switchboard.dev/v1alpha1",
                "kind": "CommunicationPlugin",
                "metadata": {"name": "traced", "namespace": namespace},
                "spec": {
                    "image": "ghcr.io/switchboard-dev/plugin-generic-webhook:0.1.0",
                    "channelType": "webhook",
                },
            }
        )
        spans = wait_for(
            lambda: _reconciles(receiver, f"{namespace}/traced") or None,
            timeout=60,
            what="a reconcile span of the operator",
        )
        span = spans[0]
        assert span.service == "switchboard-operator"
        assert span.kind == "SPAN_KIND_INTERNAL"
        assert span.parent_span_id == ""  # a reconcile starts its own trace
        assert span.attributes["k8s.namespace.name"] == namespace
        assert span.attributes["switchboard.result"] in ("ok", "retry")
    finally:
        operator.send_signal(signal.SIGTERM)
        try:
            operator.wait(30)
        finally:
            if operator.poll() is None:
                operator.kill()
                operator.wait()
            log.close()
            receiver.close()
