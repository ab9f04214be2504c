"""Traces out of every Switchboard process, configured the OpenTelemetry way: `OTEL_*` variables.

The router, the operator, local mode, the CLI and every plugin call
`configure_tracing(<service name>)` once at start. It reads the standard
variables and nothing else:

- `OTEL_TRACES_EXPORTER`: `otlp` or `console` (comma-separated), or `none`.
  Unset: `otlp` when an OTLP endpoint is set, else nothing is exported (a
  process never sends spans to a default address nobody configured).
- `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: where;
  `OTEL_EXPORTER_OTLP_PROTOCOL` / `..._TRACES_PROTOCOL`: `http/protobuf` (the
  specification's default) or `grpc`. Headers, timeouts, certificates and
  compression are read by the exporters themselves (`OTEL_EXPORTER_OTLP_*`).
- `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` name the process; without
  them it is the name the caller passes (`switchboard-router`, ...).
- `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*` (batching) and `OTEL_SDK_DISABLED` work
  as the SDK documents them.

Context crosses processes as W3C `traceparent`: the client injects it into its
HTTP requests, the router continues it (HTTP headers, gRPC metadata) and passes
it on to the plugin in gRPC metadata, and a plugin's HTTP calls to its
provider carry it on (`instrument_httpx`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

log = logging.getLogger("switchboard.telemetry")

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
#: The protocol the OpenTelemetry specification makes the default.
DEFAULT_PROTOCOL = "http/protobuf"
SUPPORTED_PROTOCOLS = frozenset({"grpc", "http/protobuf"})


@dataclass(frozen=True)
class TracingChoice:
    """Where this process's spans go, as the environment asks."""

    otlp_protocol: str | None
    """`grpc` or `http/protobuf` when spans go to an OTLP endpoint; None otherwise."""
    console: bool = False
    """Spans are also printed on stdout (`OTEL_TRACES_EXPORTER=console`)."""


def tracing_choice(environ: Mapping[str, str]) -> TracingChoice | None:
    """What `OTEL_*` variables in `environ` ask for; None when no span should leave the process.

    Raises ValueError for an exporter or protocol this build cannot honour,
    naming the variable, so a typo is not a silent loss of every trace.
    """
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    has_endpoint = any(environ.get(name, "").strip() for name in _ENDPOINTS)
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    exporters = {part.strip() for part in named.split(",") if part.strip()}
    if not exporters:
        exporters = {"otlp"} if has_endpoint else set()
    if exporters <= {"none"}:
        return None
    unknown = exporters - {"otlp", "console"}
    if unknown:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER: {', '.join(sorted(unknown))} is not available here; "
            "use otlp, console or none"
        )
    protocol = None
    if "otlp" in exporters:
        protocol = next(
            (environ[name].strip() for name in _PROTOCOLS if environ.get(name, "").strip()),
            DEFAULT_PROTOCOL,
        )
        if protocol not in SUPPORTED_PROTOCOLS:
            raise ValueError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported; "
                "use grpc or http/protobuf"
            )
    return TracingChoice(protocol, console="console" in exporters)


def service_resource(default_name: str, environ: Mapping[str, str]) -> Resource:
    """The process's resource: `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` win over the
    default name."""
    named_by_environment = bool(environ.get("OTEL_SERVICE_NAME", "").strip()) or any(
        pair.split("=", 1)[0].strip() == SERVICE_NAME
        for pair in environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(",")
    )
    if named_by_environment:
        return Resource.create()
    return Resource.create({SERVICE_NAME: default_name})


def _otlp_exporter(protocol: str) -> SpanExporter:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    return HttpSpanExporter()


def configure_tracing(
    service_name: str,
    *,
    environ: Mapping[str, str] | None = None,
    instrument_httpx: bool = False,
) -> TracerProvider | None:
    """Install the global tracer provider the environment asks for; None when it asks for none.

    `instrument_httpx` makes every httpx request of the process a client span
    that carries `traceparent` (a plugin's calls to its provider). Call
    `shutdown_tracing(provider)` before the process exits so the last spans leave.
    """
    environ = os.environ if environ is None else environ
    choice = tracing_choice(environ)
    if choice is None:
        return None
    provider = TracerProvider(resource=service_resource(service_name, environ))
    if choice.otlp_protocol is not None:
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(choice.otlp_protocol)))
    if choice.console:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    if instrument_httpx:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    log.info(
        "Exporting traces",
        extra={"exporter": choice.otlp_protocol or "console", "service": service_name},
    )
    return provider


def shutdown_tracing(provider: TracerProvider | None) -> None:
    """Send the spans still buffered and stop exporting (a no-op for None)."""
    if provider is not None:
        provider.shutdown()
