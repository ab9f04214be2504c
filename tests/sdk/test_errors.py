"""``errors_from_rpc_error`` without the plugin's error trailer: dead peers, deadlines, proxies."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from switchboard.plugin.v1 import plugin_pb2, plugin_pb2_grpc
from switchboard.sdk import (
    ErrorClass,
    InvalidInput,
    PermanentError,
    PluginClient,
    RetryableError,
    Unauthenticated,
    errors_from_rpc_error,
    serve_plugin,
)
from tests.sdk.conftest import echo_config
from tests.sdk.harness import ECHO_SMS, MountedSecret


@pytest.fixture
async def bare_status_server() -> AsyncIterator[str]:
    """A PluginService that fails every Send with the status code named in the recipient,
    without the trailer: what a proxy or an old plugin would answer."""

    async def send(request: plugin_pb2.SendRequest, context: grpc.aio.ServicerContext) -> None:  # type: ignore[type-arg]
        await context.abort(grpc.StatusCode[request.recipient], "from a proxy")

    handler = grpc.method_handlers_generic_handler(
        "switchboard.plugin.v1.PluginService",
        {
            "Send": grpc.unary_unary_rpc_method_handler(
                send,
                request_deserializer=plugin_pb2.SendRequest.FromString,
                response_serializer=plugin_pb2.SendResponse.SerializeToString,
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)


@pytest.mark.parametrize(
    ("status_code", "exception"),
    [
        ("INVALID_ARGUMENT", InvalidInput),
        ("OUT_OF_RANGE", InvalidInput),
        ("FAILED_PRECONDITION", PermanentError),
        ("NOT_FOUND", PermanentError),
        ("PERMISSION_DENIED", PermanentError),
        ("UNAUTHENTICATED", Unauthenticated),
        ("UNAVAILABLE", RetryableError),
        ("RESOURCE_EXHAUSTED", RetryableError),
        ("INTERNAL", RetryableError),
        ("UNKNOWN", RetryableError),
    ],
)
async def test_status_without_trailer_is_classified_by_its_code(
    bare_status_server: str, status_code: str, exception: type[Exception]
) -> None:
    async with grpc.aio.insecure_channel(bare_status_server) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await plugin_pb2_grpc.PluginServiceStub(channel).Send(
                plugin_pb2.SendRequest(recipient=status_code), timeout=5
            )

    classified = errors_from_rpc_error(raised.value)
    assert type(classified) is exception
    assert classified.message == f"{status_code}: from a proxy"
    assert classified.retry_after is None


async def test_unreachable_plugin_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    async with PluginClient(f"127.0.0.1:{free_port}", timeout=5) as client:
        with pytest.raises(RetryableError) as raised:
            await client.describe()

    assert raised.value.error_class is ErrorClass.RETRYABLE
    assert raised.value.message.startswith("UNAVAILABLE")


async def test_deadline_exceeded_is_retryable(state_dir: Path, secret: MountedSecret) -> None:
    async with (
        serve_plugin(
            ECHO_SMS, config=echo_config(state_dir), secrets_dir=secret.directory, shutdown_grace=2
        ) as server,
        PluginClient(server.address, timeout=0.2) as client,
    ):
        with pytest.raises(RetryableError, match="DEADLINE_EXCEEDED"):
            await client.send("slow:1", "too slow")
