"""One trace from the router's request through the attempt into the plugin."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from switchboard.client import AsyncSwitchboard
from switchboard.router.app import Router
from switchboard.router.auth import ApiKey, ApiKeyAuthority
from switchboard.router.discovery import StaticDiscovery
from switchboard.router.settings import RouterSettings
from switchboard.router.table import PluginRoute
from switchboard.sdk import serve_plugin
from tests.router.conftest import API_KEY, FLAKY_SMS


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_trace_context_travels_from_router_to_plugin(tmp_path: Path) -> None:
    router_traces, router_spans = _provider()
    plugin_traces, plugin_spans = _provider()
    config = {"provider": "traced", "state_dir": str(tmp_path)}
    async with serve_plugin(FLAKY_SMS, config=config, tracer_provider=plugin_traces) as plugin:
        discovery = StaticDiscovery()
        router = Router(
            RouterSettings(backend="static", host="127.0.0.1", http_port=0, grpc_port=-1),
            discovery,
            ApiKeyAuthority([ApiKey("tests", API_KEY)]),
            tracer_provider=router_traces,
        )
        await router.start()
        try:
            discovery.publish(
                [
                    PluginRoute(
                        "CommunicationPlugin",
                        "default",
                        "traced",
                        "sms",
                        endpoints=(plugin.address,),
                    )
                ]
            )
            async with AsyncSwitchboard(f"http://127.0.0.1:{router.http_port}", API_KEY) as client:
                await client.send_message("sms", "+15551234567", "traced")
        finally:
            await router.stop(grace=0)
    request = next(s for s in router_spans.get_finished_spans() if s.name == "switchboard.send")
    attempt = next(
        s for s in router_spans.get_finished_spans() if s.name.startswith("switchboard.attempt")
    )
    [handled] = [s for s in plugin_spans.get_finished_spans() if s.parent is not None]
    assert attempt.parent is not None and attempt.parent.span_id == request.context.span_id
    assert handled.context.trace_id == request.context.trace_id
    assert handled.parent is not None and handled.parent.span_id == attempt.context.span_id
    assert request.attributes is not None and request.attributes["switchboard.channel"] == "sms"
