"""``serve_plugin`` in-process: config and secret loading, tracing, vendor integrations."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from switchboard.plugin.v1 import plugin_pb2, plugin_pb2_grpc
from switchboard.sdk import (
    ConfigError,
    InvalidInput,
    PermanentError,
    PluginClient,
    PluginPackageError,
    serve_plugin,
)
from tests.sdk.conftest import TOKEN, echo_config, token_id
from tests.sdk.harness import ECHO_SMS, MINI_OLT, MountedSecret, eventually


async def test_config_references_resolve_from_secrets_first_then_environment(
    state_dir: Path, secret: MountedSecret
) -> None:
    config = echo_config(
        state_dir, auth_header="Bearer ${API_TOKEN}; region=${REGION}; literal=$${API_TOKEN}"
    )
    environ = {"REGION": "eu-west-1", "API_TOKEN": "from-environment"}

    async with serve_plugin(
        ECHO_SMS, config=config, secrets_dir=secret.directory, environ=environ
    ) as server:
        resolved = server.plugin.config["auth_header"]
        redacted = server.redactor.redact(f"header {resolved}")

    assert resolved == f"Bearer {TOKEN}; region=eu-west-1; literal=${{API_TOKEN}}"
    assert redacted == "header Bearer ***; region=***; literal=${API_TOKEN}"


async def test_unresolved_reference_is_a_config_error_naming_the_key(
    state_dir: Path, secret: MountedSecret
) -> None:
    config = echo_config(state_dir, auth_header="${MISSING_KEY}")

    with pytest.raises(ConfigError, match=r"config\.auth_header references \$\{MISSING_KEY\}"):
        async with serve_plugin(ECHO_SMS, config=config, secrets_dir=secret.directory, environ={}):
            pass


async def test_secrets_are_read_through_the_kubernetes_layout_skipping_dotfiles(
    tmp_path: Path, state_dir: Path
) -> None:
    secret = MountedSecret(tmp_path / "secrets", {"API_TOKEN": TOKEN, "WEBHOOK_SECRET": "whsec"})
    (secret.directory / ".hidden").write_text("not a secret key")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(f"state_dir: {state_dir}\nsender: Switchboard\n")

    async with serve_plugin(
        ECHO_SMS, config_path=config_file, secrets_dir=secret.directory
    ) as server:
        secrets = dict(server.plugin.secrets)

    # The trailing newline the files were written with is not part of the value.
    assert secrets == {"API_TOKEN": TOKEN, "WEBHOOK_SECRET": "whsec"}


async def test_caller_trace_context_parents_the_plugin_span(
    state_dir: Path, secret: MountedSecret
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace_id, parent_span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"

    async with (
        serve_plugin(
            ECHO_SMS,
            config=echo_config(state_dir),
            secrets_dir=secret.directory,
            tracer_provider=provider,
        ) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        await plugin_pb2_grpc.PluginServiceStub(channel).Send(
            plugin_pb2.SendRequest(recipient="+15551234567", content="traced"),
            metadata=(("traceparent", f"00-{trace_id}-{parent_span_id}-01"),),
            timeout=10,
        )

    [span] = exporter.get_finished_spans()
    assert span.name == "switchboard.plugin.v1.PluginService/Send"
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == parent_span_id
    provider.shutdown()


async def test_vendor_integration_serves_its_operations_and_refuses_send() -> None:
    async with serve_plugin(MINI_OLT) as server, PluginClient(server.address) as client:
        described = await client.describe()
        devices = await client.invoke("discover_devices")
        await client.invoke("configure_device", {"device_id": "olt-2", "settings": {"vlan": 7}})
        status = await client.invoke("get_device_status", {"device_id": "olt-2"})
        rebooted = await client.invoke("reboot_device", {"device_id": "olt-1"})
        with pytest.raises(PermanentError, match="call Invoke"):
            await client.send("+15551234567", "hello")
        with pytest.raises(PermanentError, match="'olt-9' is unknown"):
            await client.invoke("get_device_status", {"device_id": "olt-9"})
        with pytest.raises(InvalidInput, match="'settings' is a required property"):
            await client.invoke("configure_device", {"device_id": "olt-1"})

    assert described.WhichOneof("kind") == "integration_type"
    assert (described.integration_type, described.vendor) == ("network_automation", "voltha")
    assert [operation.name for operation in described.operations] == [
        "configure_device",
        "discover_devices",
        "get_device_status",
        "reboot_device",
    ]
    assert devices == ["olt-1", "olt-2"]
    assert status == {"device_id": "olt-2", "settings": {"vlan": 7}}
    assert rebooted == {"rebooted": "olt-1"}


async def test_health_reports_serving_while_the_in_process_server_runs(
    state_dir: Path, secret: MountedSecret
) -> None:
    async with (
        serve_plugin(ECHO_SMS, config=echo_config(state_dir), secrets_dir=secret.directory) as s,
        PluginClient(s.address) as client,
    ):
        assert await client.health() == "SERVING"
        assert await client.health("switchboard.plugin.v1.PluginService") == "SERVING"


async def test_broken_plugin_folder_raises_plugin_package_error(tmp_path: Path) -> None:
    with pytest.raises(PluginPackageError, match=r"manifest\.yml does not exist"):
        async with serve_plugin(tmp_path):
            pass


async def test_reflection_lists_the_plugin_and_health_services(
    state_dir: Path, secret: MountedSecret
) -> None:
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async with (
        serve_plugin(ECHO_SMS, config=echo_config(state_dir), secrets_dir=secret.directory) as s,
        grpc.aio.insecure_channel(s.address) as channel,
    ):
        call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([request]), timeout=5
        )
        response = await call.read()

    services = {service.name for service in response.list_services_response.service}
    assert {"switchboard.plugin.v1.PluginService", "grpc.health.v1.Health"} <= services


async def test_check_credentials_answers_not_ok_when_the_provider_rejects_them(
    tmp_path: Path, state_dir: Path
) -> None:
    secret = MountedSecret(tmp_path / "secrets", {"API_TOKEN": "rejected-token"})

    async with (
        serve_plugin(ECHO_SMS, config=echo_config(state_dir), secrets_dir=secret.directory) as s,
        PluginClient(s.address) as client,
    ):
        answer = await client.check_credentials()

    assert not answer.ok
    assert answer.message == "the provider rejected the token"


async def test_rejected_rotation_keeps_the_previous_secrets_serving(
    state_dir: Path, secret: MountedSecret, caplog: pytest.LogCaptureFixture
) -> None:
    def rejections() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage().startswith("Rejected rotated secrets")]

    async with (
        serve_plugin(
            ECHO_SMS,
            config=echo_config(state_dir),
            secrets_dir=secret.directory,
            secrets_poll_interval=0.02,
        ) as server,
        PluginClient(server.address) as client,
    ):
        before = server.plugin
        secret.update({"WEBHOOK_SECRET": "whsec"})  # API_TOKEN, a required key, is gone
        await eventually(lambda: bool(rejections()), what="the rotation to be rejected")
        await asyncio.sleep(0.2)  # ten more polls: the same rejected secrets are not retried
        result = await client.send("+15551234567", "still works")
        assert server.plugin is before

    assert result.details["token_id"] == token_id(TOKEN)
    assert len(rejections()) == 1
    assert "API_TOKEN" in rejections()[0].error  # type: ignore[attr-defined]
    assert (state_dir / "lifecycle.log").read_text().count("initialize") == 1
