"""One trace across every hop, read from a real OTLP receiver (issue 19, deliverable 6).

`switchboard send` (the client) → the router (local mode) → the plugin →
the plugin's HTTP call to its provider, each process exporting its own spans
over OTLP as the standard `OTEL_*` variables say; and the router continuing a
trace that arrives over its gRPC API.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from switchboard.router.v1 import router_pb2, router_pb2_grpc
from tests.local.harness import REPO, LocalMode, isolated_env, secret
from tests.support.controlplane import free_port
from tests.support.wait import wait_for
from tests.traces.otlp import GrpcReceiver, HttpReceiver, ReceivedSpan


class Provider:
    """A webhook endpoint that keeps the `traceparent` of every request it gets."""

    def __init__(self) -> None:
        self.traceparents: list[str] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the http.server method name
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                provider.traceparents.append(self.headers.get("traceparent", ""))
                body = json.dumps({"id": "provider-1"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def provider() -> Iterator[Provider]:
    fake = Provider()
    yield fake
    fake.close()


def _webhook_yaml(workdir: Path, url: str) -> None:
    plugin = {
        "apiVersion": "switchboard.dev/v1alpha1",
        "kind": "CommunicationPlugin",
        "metadata": {"name": "webhook"},
        "spec": {
            "image": "ghcr.io/switchboard-dev/plugin-generic-webhook:0.1.0",
            "channelType": "webhook",
            "config": {"url": url, "signing_secret": "${WEBHOOK_SIGNING_SECRET}"},
            "secretRef": {"name": "hooks"},
            "requiredSecrets": ["WEBHOOK_SIGNING_SECRET"],
        },
    }
    documents = [secret("hooks", WEBHOOK_SIGNING_SECRET="0123456789abcdef-signing"), plugin]
    (workdir / "plugins.yaml").write_text(yaml.safe_dump_all(documents))


def _otel(endpoint: str, protocol: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


def _one(spans: list[ReceivedSpan], **match: str) -> ReceivedSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, spans)
    return found[0]


def test_one_trace_runs_from_the_client_through_router_and_plugin_to_the_provider(
    workdir: Path, provider: Provider
) -> None:
    receiver = GrpcReceiver()
    _webhook_yaml(workdir, provider.url)
    env = isolated_env(workdir, **_otel(receiver.endpoint, "grpc"))
    local = LocalMode(workdir, "plugins.yaml", "--plugins", str(REPO / "plugin-images"), env=env)
    try:
        local.wait_ready()
        sent = local.cli("send", "webhook", "ops", "traced")
        assert sent.returncode == 0, sent.stderr
        client = wait_for(
            lambda: next((s for s in receiver.spans if s.service == "switchboard-cli"), None),
            30,
            what="the client's span",
        )
        wanted = 5  # client, router request, router attempt, plugin call, provider call
        spans = wait_for(
            lambda: (found := receiver.trace(client.trace_id)) and len(found) >= wanted and found,
            60,
            what="the whole trace",
        )
    finally:
        local.stop()
        receiver.close()
    assert client.name == "POST /v1/messages" and client.kind == "SPAN_KIND_CLIENT"
    request = _one(spans, name="switchboard.send", service="switchboard-local")
    attempt = _one(spans, name="switchboard.attempt default/webhook")
    served = _one(spans, name="switchboard.plugin.v1.PluginService/Send")
    outgoing = _one(spans, service="switchboard-plugin-generic-webhook", kind="SPAN_KIND_CLIENT")
    assert request.parent_span_id == client.span_id
    assert attempt.parent_span_id == request.span_id
    assert served.service == "switchboard-plugin-generic-webhook"
    assert served.parent_span_id == attempt.span_id
    assert outgoing.parent_span_id == served.span_id
    assert outgoing.attributes.get("http.request.method", outgoing.attributes.get("http.method"))
    # The provider got the trace too, with the plugin's outgoing call as the parent.
    [traceparent] = provider.traceparents
    _, trace_id, parent_id, _ = traceparent.split("-")
    assert (trace_id, parent_id) == (client.trace_id, outgoing.span_id)


def test_the_router_continues_a_trace_that_arrives_over_grpc(
    workdir: Path, provider: Provider
) -> None:
    receiver = HttpReceiver()  # and over OTLP/HTTP this time
    _webhook_yaml(workdir, provider.url)
    env = isolated_env(workdir, **_otel(receiver.endpoint, "http/protobuf"))
    grpc_port = free_port()
    local = LocalMode(
        workdir,
        "plugins.yaml",
        "--plugins",
        str(REPO / "plugin-images"),
        env=env,
        grpc_port=str(grpc_port),
    )
    trace_id, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    try:
        info = local.wait_ready()
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            answer = router_pb2_grpc.RouterStub(channel).SendMessage(
                router_pb2.SendMessageRequest(channel="webhook", recipient="ops", content="hi"),
                metadata=(
                    ("authorization", f"Bearer {info['token']}"),
                    ("traceparent", f"00-{trace_id}-{caller_span}-01"),
                ),
                timeout=30,
            )
        assert answer.plugin == "default/webhook"
        spans = wait_for(
            lambda: (found := receiver.trace(trace_id)) and len(found) >= 4 and found,
            60,
            what="the continued trace",
        )
    finally:
        local.stop()
        receiver.close()
    request = _one(spans, name="switchboard.send")
    assert request.parent_span_id == caller_span
    served = _one(spans, name="switchboard.plugin.v1.PluginService/Send")
    assert served.service == "switchboard-plugin-generic-webhook"
    assert provider.traceparents[0].split("-")[1] == trace_id
