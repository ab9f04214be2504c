"""The router's API as callers meet it: HTTP, gRPC, auth, bad input, status, metrics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from switchboard.client import Forbidden, InvalidRequest, NotAuthenticated, Switchboard
from switchboard.router.auth import ApiKey
from switchboard.router.openapi import openapi_document
from switchboard.router.v1 import router_pb2, router_pb2_grpc
from tests.router.conftest import API_KEY, TENANT

REPO = Path(__file__).resolve().parents[2]

BAD_BODIES: list[tuple[str, Any, str]] = [
    ("missing-channel", {"recipient": "+1", "content": "x"}, "channel"),
    ("missing-recipient", {"channel": "sms", "content": "x"}, "recipient"),
    ("channel-with-spaces", {"channel": "s m s", "recipient": "+1", "content": "x"}, "channel"),
    ("empty-recipient", {"channel": "sms", "recipient": "", "content": "x"}, "recipient"),
    ("content-not-text", {"channel": "sms", "recipient": "+1", "content": 5}, "content"),
    (
        "metadata-not-strings",
        {"channel": "sms", "recipient": "+1", "content": "x", "metadata": {"a": 1}},
        "metadata.a",
    ),
    (
        "unknown-field",
        {"channel": "sms", "recipient": "+1", "content": "x", "priorty": 1},
        "priorty",
    ),
    (
        "bad-namespace",
        {"channel": "sms", "recipient": "+1", "content": "x", "namespace": "Not_A_NS"},
        "namespace",
    ),
    (
        "empty-idempotency-key",
        {"channel": "sms", "recipient": "+1", "content": "x", "idempotencyKey": ""},
        "idempotencyKey",
    ),
    ("array-body", [1, 2], "body"),
]


@pytest.fixture
async def served(start_provider: Any, start_router: Any) -> Any:
    provider = start_provider("only")
    router = await start_router(
        keys=[
            ApiKey("tests", API_KEY),
            ApiKey("team-a", "key-team-a", frozenset({"team-a"}), frozenset()),
        ],
        max_body_bytes=4096,
    )
    router.publish(
        provider.route(),
        provider.route(
            kind="VendorIntegration",
            route_key="voltha",
            permissions=("network.fiber.manage",),
        ),
        provider.route(namespace="team-a"),
        provider.route(
            kind="VendorIntegration",
            route_key="voltha",
            namespace="team-a",
            permissions=("network.fiber.manage",),
        ),
    )
    return router, provider


async def _post(url: str, body: Any, token: str = API_KEY, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(
            f"{url}/v1/messages",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            **kwargs,
        )


@pytest.mark.parametrize(("case", "body", "field"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
async def test_malformed_request_is_a_400_naming_the_field(
    served: Any, case: str, body: Any, field: str
) -> None:
    router, provider = served
    response = await _post(router.url, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_REQUEST"
    assert field in error["message"]
    assert provider.deliveries() == []


async def test_broken_json_wrong_type_and_oversized_bodies_are_4xx(served: Any) -> None:
    router, _ = served
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient() as http:
        broken = await http.post(
            f"{router.url}/v1/messages",
            content=b'{"channel": ',
            headers={**headers, "Content-Type": "application/json"},
        )
        as_text = await http.post(f"{router.url}/v1/messages", content=b"hi", headers=headers)
        huge = await http.post(
            f"{router.url}/v1/messages",
            json={"channel": "sms", "recipient": "+1", "content": "x" * 10_000},
            headers=headers,
        )
        unknown_path = await http.get(f"{router.url}/v1/nothing", headers=headers)
    assert (broken.status_code, broken.json()["error"]["code"]) == (400, "INVALID_REQUEST")
    assert as_text.status_code == 415
    assert (huge.status_code, huge.json()["error"]["code"]) == (413, "TOO_LARGE")
    assert unknown_path.status_code == 404


async def test_callers_need_a_known_key_and_stay_in_their_namespaces(served: Any) -> None:
    router, provider = served
    async with httpx.AsyncClient() as http:
        anonymous = await http.post(
            f"{router.url}/v1/messages", json={"channel": "sms", "recipient": "+1", "content": "x"}
        )
    assert anonymous.status_code == 401
    with pytest.raises(NotAuthenticated):
        await router.client(token="nope").send_message("sms", "+1555", "x")
    team_a = router.client(token="key-team-a", namespace=None)
    sent = await team_a.send_message("sms", "+1555", "x")  # its own namespace by default
    assert sent.namespace == "team-a"
    with pytest.raises(Forbidden) as other_tenant:
        await team_a.send_message("sms", "+1555", "x", namespace=TENANT)
    assert "team-a" in other_tenant.value.message and TENANT in other_tenant.value.message
    assert [d["tenant"] for d in provider.deliveries()] == ["team-a"]


async def test_invoke_checks_the_integrations_permissions(served: Any) -> None:
    router, _ = served
    result = await router.client().invoke("only", "echo", {"value": "hi"})
    assert result.result == {"value": "hi", "provider": "only"}
    with pytest.raises(Forbidden) as missing:
        await router.client(token="key-team-a", namespace=None).invoke(
            "only", "echo", {"value": "x"}
        )
    assert "network.fiber.manage" in missing.value.message
    with pytest.raises(InvalidRequest) as bad_params:
        await router.client().invoke("only", "echo", {"nope": 1})
    assert bad_params.value.status == 422


async def test_an_operation_can_need_its_own_permission(
    start_provider: Any, start_router: Any
) -> None:
    provider = start_provider("only")
    router = await start_router(
        keys=[
            ApiKey("reader", "key-reader", frozenset({TENANT}), frozenset({"fiber.read"})),
            ApiKey("manager", "key-manager", frozenset({TENANT}), frozenset({"*"})),
        ]
    )
    router.publish(
        provider.route(
            kind="VendorIntegration",
            route_key="acme",
            permissions=("fiber.read",),
            operation_permissions=(("echo", "fiber.manage"),),
        )
    )

    with pytest.raises(Forbidden) as refused:
        await router.client(token="key-reader").invoke("only", "echo", {"value": "x"})
    allowed = await router.client(token="key-manager").invoke("only", "echo", {"value": "x"})

    assert "fiber.manage" in refused.value.message
    assert allowed.result == {"value": "x", "provider": "only"}


async def test_status_metrics_and_openapi(served: Any) -> None:
    router, provider = served
    client = router.client()
    await client.send_message("sms", "+1555", "x")
    status = await client.system_status()
    assert status["namespace"] == TENANT
    [entry] = status["channels"]["sms"]
    assert (entry["name"], entry["priority"], entry["weight"], entry["healthy"]) == (
        "only",
        1,
        100,
        True,
    )
    assert entry["endpoints"]["ready"] == [provider.address]
    assert entry["sent"] >= 1
    assert status["integrations"]["only"]["permissions"] == ["network.fiber.manage"]
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{router.url}/metrics")).text
        served_openapi = (await http.get(f"{router.url}/openapi.json")).json()
        ready = await http.get(f"{router.url}/readyz")
    assert 'switchboard_router_requests_total{key="sms",kind="send",result="sent"} 1.0' in metrics
    assert ready.status_code == 200
    committed = json.loads((REPO / "docs" / "openapi.json").read_text())
    assert served_openapi == committed == openapi_document(), (
        "docs/openapi.json is stale: run `switchboard router --openapi > docs/openapi.json`"
    )


async def test_the_same_api_over_grpc(served: Any) -> None:
    router, provider = served
    async with grpc.aio.insecure_channel(router.grpc_target) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        auth = (("authorization", f"Bearer {API_KEY}"),)
        sent = await stub.SendMessage(
            router_pb2.SendMessageRequest(channel="sms", recipient="+1555", content="over grpc"),
            metadata=auth,
        )
        assert sent.plugin == f"{TENANT}/only" and sent.attempts[0].outcome == "success"
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.SendMessage(router_pb2.SendMessageRequest(channel="sms", recipient="+1"))
        assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await stub.SendMessage(router_pb2.SendMessageRequest(channel="s m s"), metadata=auth)
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        error = dict(invalid.value.trailing_metadata() or ())["switchboard-error-json"]
        assert json.loads(error)["error"]["code"] == "INVALID_REQUEST"
        status = await stub.GetSystemStatus(router_pb2.GetSystemStatusRequest(), metadata=auth)
        assert "only" in json.loads(status.status_json)["integrations"]
    assert [d["content"] for d in provider.deliveries()] == ["over grpc"]


async def test_the_blocking_client(served: Any) -> None:
    router, provider = served

    def send() -> Any:
        with Switchboard(router.url, API_KEY, namespace=TENANT) as client:
            return client.send_message("sms", "+1555", "from sync code", subject="hi")

    result = await asyncio.to_thread(send)
    assert result.plugin == f"{TENANT}/only"
    assert provider.deliveries()[0]["content"] == "from sync code"


async def test_module_level_send_message_reads_url_and_token_from_the_environment(
    served: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import switchboard

    router, provider = served
    monkeypatch.setenv("SWITCHBOARD_URL", router.url)
    monkeypatch.setenv("SWITCHBOARD_TOKEN", "key-team-a")
    result = await switchboard.send_message("sms", "+15551234567", "Your code is 123456")
    assert result.namespace == "team-a"
    assert provider.deliveries()[-1]["content"] == "Your code is 123456"
