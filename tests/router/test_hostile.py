"""Callers and plugins that try to hurt everyone else: the router keeps serving the rest.

Each test is an attack that worked before (slow bodies locking every caller
out, deep JSON answered with a 500, a plugin answering garbage taking the
channel down, a caller's idempotency key ejecting an endpoint for everyone,
in-flight failures doubling an ejection) and the outcome callers see now.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from switchboard.client import Forbidden, InvalidRequest
from switchboard.router.auth import ApiKey
from switchboard.router.endpoints import EndpointPool
from switchboard.router.settings import RouterSettings
from switchboard.router.v1 import router_pb2, router_pb2_grpc
from switchboard.sdk import InvalidInput, PluginClient
from tests.router.conftest import API_KEY, TENANT

SEND = {"channel": "sms", "recipient": "+15551234567", "content": "x"}


async def _open_slow_request(port: int, headers: str, body_prefix: bytes = b"") -> Any:
    """A connection that sent ``headers`` (and maybe part of a body) and then stalls."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(headers.encode() + body_prefix)
    await writer.drain()
    return reader, writer


def _post_headers(length: int, token: str | None = API_KEY) -> str:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        "POST /v1/messages HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
        f"{auth}Content-Length: {length}\r\n\r\n"
    )


async def test_slow_bodies_do_not_lock_out_other_callers(
    start_provider: Any, start_router: Any
) -> None:
    provider = start_provider("only")
    router = await start_router(max_concurrency=4, body_timeout_seconds=3.0)
    router.publish(provider.route())
    # Four times the concurrency limit, authenticated, each body stuck half-way.
    slow = [
        await _open_slow_request(router.router.http_port, _post_headers(200), b'{"chan')
        for _ in range(16)
    ]
    # And as many that never authenticate.
    anonymous = [
        await _open_slow_request(router.router.http_port, _post_headers(200, token=None))
        for _ in range(16)
    ]
    stalled = [asyncio.ensure_future(reader.read(4096)) for reader, _ in slow]
    client = router.client()

    # Every slot is theirs: the stalled connections hold none, over HTTP ...
    served = await asyncio.gather(
        *(client.send_message("sms", "+15551234567", f"m{i}") for i in range(4))
    )
    # ... nor over gRPC (the attack answered them RESOURCE_EXHAUSTED).
    async with grpc.aio.insecure_channel(router.grpc_target) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        served_grpc = await asyncio.gather(
            *(
                stub.SendMessage(
                    router_pb2.SendMessageRequest(
                        channel="sms", recipient="+15551234567", content=f"g{i}"
                    ),
                    metadata=(("authorization", f"Bearer {API_KEY}"),),
                    timeout=10,
                )
                for i in range(4)
            )
        )
    still_stalled = not any(read.done() for read in stalled)

    assert all(result.plugin == f"{TENANT}/only" for result in served)
    assert [sent.plugin for sent in served_grpc] == [f"{TENANT}/only"] * 4
    assert still_stalled  # the callers were served during the attack, not after it
    assert sorted(d["content"] for d in provider.deliveries()) == [
        *(f"g{i}" for i in range(4)),
        *(f"m{i}" for i in range(4)),
    ]
    answers = await asyncio.gather(*(reader.read(4096) for reader, _ in anonymous), *stalled)
    assert all(answer.startswith(b"HTTP/1.1 401") for answer in answers[:16]), answers[0]
    assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers[16:]), answers[16]
    assert b"did not arrive within 3s" in answers[16]
    for _, writer in anonymous + slow:
        writer.close()


async def test_a_connection_that_never_finishes_its_headers_is_closed(
    start_provider: Any, start_router: Any
) -> None:
    provider = start_provider("only")
    router = await start_router(header_timeout_seconds=1.0)
    router.publish(provider.route())
    reader, writer = await _open_slow_request(
        router.router.http_port, "POST /v1/messages HTTP/1.1\r\nHost: rou"
    )

    sent = await router.client().send_message("sms", "+15551234567", "meanwhile")
    closed = await asyncio.wait_for(reader.read(), timeout=10)

    assert sent.plugin == f"{TENANT}/only"
    assert closed == b""  # closed by the router, nothing answered
    writer.close()


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


async def test_deeply_nested_json_is_a_400_over_http_and_grpc(
    start_provider: Any, start_router: Any
) -> None:
    provider = start_provider("only")
    router = await start_router(max_body_bytes=1024 * 1024)
    router.publish(provider.route(kind="VendorIntegration", route_key="acme"))
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(headers=headers) as http:
        abyss = await http.post(
            f"{router.url}/v1/messages",
            content='{"channel": "sms", "recipient": "+1", "content": "x", "metadata": '
            + _nested(50_000)
            + "}",
        )
        params = {"params": json.loads(_nested(40)), "namespace": TENANT}
        deep_params = await http.post(
            f"{router.url}/v1/integrations/only/operations/echo", json=params
        )
        anonymous = await http.post(
            f"{router.url}/v1/messages",
            content=_nested(50_000),
            headers={"Authorization": ""},
        )

    assert abyss.status_code == 400
    assert "deeper than 32 levels" in abyss.json()["error"]["message"]
    assert deep_params.status_code == 400
    assert anonymous.status_code == 401
    async with grpc.aio.insecure_channel(router.grpc_target) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Invoke(
                router_pb2.InvokeRequest(
                    integration="only", operation="echo", params_json=_nested(50_000)
                ),
                metadata=(("authorization", f"Bearer {API_KEY}"),),
            )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "deeper than 32 levels" in (raised.value.details() or "")


class _GarbageAnswers(grpc.GenericRpcHandler):
    """A plugin endpoint whose Send answers bytes that are no SendResponse."""

    def service(self, handler_call_details: Any) -> Any:
        if handler_call_details.method != "/switchboard.plugin.v1.PluginService/Send":
            return None

        async def send(request: bytes, context: Any) -> bytes:
            return b"\xff\xfe not a protobuf \x00\x01"

        return grpc.unary_unary_rpc_method_handler(send)


async def test_a_plugin_answering_garbage_fails_over_and_is_ejected(
    start_provider: Any, start_router: Any
) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_GarbageAnswers(),))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    try:
        backup = start_provider("backup")
        router = await start_router(ejection_failures=3, ejection_base_seconds=60)
        garbage = replace(
            backup.route(priority=1), name="garbage", endpoints=(f"127.0.0.1:{port}",)
        )
        router.publish(garbage, backup.route(priority=2))
        client = router.client()

        results = [await client.send_message("sms", "+15551234567", f"m{i}") for i in range(20)]

        assert all(result.plugin == f"{TENANT}/backup" for result in results)
        assert [a.outcome for a in results[0].attempts] == ["unknown_outcome", "success"]
        assert "not a valid reply" in (results[0].attempts[0].message or "")
        assert all(len(result.attempts) == 1 for result in results[3:])  # ejected after 3
        status = await client.system_status()
        entry = next(p for p in status["channels"]["sms"] if p["name"] == "garbage")
        assert entry["healthy"] is False
        assert entry["endpoints"]["ejected"] == [f"127.0.0.1:{port}"]
        assert len(backup.deliveries()) == 20
    finally:
        await server.stop(0)


@pytest.mark.parametrize(
    "key",
    ["line\r\nX-Injected: 1", "ключ", 'quote"d', "back\\slash", "has space", "x" * 256],
)
async def test_a_hostile_idempotency_key_is_the_callers_error_and_ejects_nobody(
    start_provider: Any, start_router: Any, key: str
) -> None:
    provider = start_provider("only")
    router = await start_router(ejection_failures=1)
    router.publish(provider.route())
    client = router.client()

    for _ in range(3):
        with pytest.raises(InvalidRequest) as refused:
            await client.send_message("sms", "+15551234567", "x", idempotency_key=key)
        assert "idempotencyKey" in refused.value.message
    sent = await client.send_message("sms", "+15551234567", "x", idempotency_key="order-42")
    # The plugin refuses it too when called directly (local callers, other routers).
    async with PluginClient(provider.address) as plugin:
        with pytest.raises(InvalidInput, match="idempotency_key"):
            await plugin.send("+15551234567", "x", idempotency_key=key)

    assert sent.plugin == f"{TENANT}/only"
    status = await client.system_status()
    assert status["channels"]["sms"][0]["endpoints"]["ejected"] == []


async def test_metadata_with_control_characters_is_refused_at_the_edge(
    start_provider: Any, start_router: Any
) -> None:
    provider = start_provider("only")
    router = await start_router()
    router.publish(provider.route())
    client = router.client()

    with pytest.raises(InvalidRequest, match="control characters"):
        await client.send_message("sms", "+1555", "x", metadata={"header.X-Tag": "a\r\nb: c"})
    with pytest.raises(InvalidRequest, match="must start with a letter or digit"):
        await client.send_message("sms", "+1555", "x", metadata={"\nkey": "v"})
    sent = await client.send_message("sms", "+1555", "x", metadata={"note": "line one\nline two"})
    assert sent.plugin == f"{TENANT}/only"


def test_failures_already_in_flight_at_an_ejection_do_not_eject_again() -> None:
    now = [100.0]
    pool = EndpointPool(
        RouterSettings(ejection_failures=3, ejection_base_seconds=5, ejection_max_seconds=300),
        clock=lambda: now[0],
    )
    address = "127.0.0.1:1"
    in_flight_since = now[0]  # 20 requests started while it was eligible
    assert [pool.record_failure(address, in_flight_since) for _ in range(3)] == [
        False,
        False,
        True,
    ]
    now[0] += 0.5
    # The other 17 fail now, for the same outage: no second, doubled ejection.
    assert not any(pool.record_failure(address, in_flight_since) for _ in range(17))
    assert pool.states[address].ejected_until == pytest.approx(105.0)
    now[0] = 105.0
    assert pool.eligible(address)
    # New attempts after the ejection count again (and the next ejection doubles).
    assert [pool.record_failure(address, now[0]) for _ in range(3)] == [False, False, True]
    assert pool.states[address].ejected_until == pytest.approx(115.0)


async def test_keys_are_matched_by_key_not_by_name(start_provider: Any, start_router: Any) -> None:
    with pytest.raises(ValueError, match="the name 'ci' is used twice"):
        await start_router(
            keys=[
                ApiKey("ci", "key-a", frozenset({TENANT})),
                ApiKey("ci", "key-b", frozenset({"tenant-b"})),
            ]
        )
    provider = start_provider("only")
    router = await start_router(
        keys=[
            ApiKey("ci-a", "key-a", frozenset({TENANT})),
            ApiKey("ci-b", "key-b", frozenset({"tenant-b"})),
        ]
    )
    router.publish(provider.route())

    with pytest.raises(Forbidden):
        await router.client(token="key-b").send_message("sms", "+1555", "x", namespace=TENANT)
    sent = await router.client(token="key-a").send_message("sms", "+1555", "x")
    assert sent.namespace == TENANT
    assert [d["tenant"] for d in provider.deliveries()] == [TENANT]
