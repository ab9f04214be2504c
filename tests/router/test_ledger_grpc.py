"""The ledger over the router's gRPC API, through a real `switchboard router` process.

GetMessage, ListMessages, WatchMessages, ReplayMessage and an asynchronous
SendMessage, called the way a gRPC application calls them (a channel to the
router's port, a bearer token in the metadata), against flaky-sms plugin
processes whose deliveries land in a file. Every test runs on a SQLite file
and on the suite's PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from switchboard.router.v1 import router_pb2, router_pb2_grpc
from tests.ledger.conftest import ledger_postgres  # noqa: F401 - fixture
from tests.router.conftest import API_KEY, TENANT
from tests.router.ledger_process import (  # noqa: F401 - fixtures
    engine_url_fixture,
    ledger_router_fixture,
)

AUTH = (("authorization", f"Bearer {API_KEY}"),)
RECIPIENT = "+15551234567"
FINAL = {"sent", "delivered", "failed", "unknown", "expired"}


@pytest.fixture
async def stub_for() -> AsyncIterator[Any]:
    channels: list[grpc.aio.Channel] = []

    async def open_stub(target: str) -> router_pb2_grpc.RouterStub:
        channel = grpc.aio.insecure_channel(target)
        channels.append(channel)
        # /readyz answered; the gRPC port is bound in the same start-up, a moment apart.
        await asyncio.wait_for(channel.channel_ready(), 30)
        return router_pb2_grpc.RouterStub(channel)

    yield open_stub
    for channel in channels:
        await channel.close()


async def _get(stub: Any, message_id: str) -> dict[str, Any]:
    answer = await stub.GetMessage(
        router_pb2.GetMessageRequest(id=message_id, namespace=TENANT), metadata=AUTH, timeout=10
    )
    found: dict[str, Any] = json.loads(answer.json)
    return found


async def _until(stub: Any, message_id: str, states: set[str], seconds: float) -> dict[str, Any]:
    """GetMessage until the message is in one of ``states``; fails after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        message = await _get(stub, message_id)
        if message["state"] in states:
            return message
        assert time.monotonic() < deadline, f"still {message['state']} after {seconds}s: {message}"
        await asyncio.sleep(0.1)


async def _list(stub: Any, **query: Any) -> list[dict[str, Any]]:
    answer = await stub.ListMessages(
        router_pb2.ListMessagesRequest(namespace=TENANT, **query), metadata=AUTH, timeout=10
    )
    messages: list[dict[str, Any]] = json.loads(answer.json)["messages"]
    return messages


async def _watch(stub: Any, after: int, count: int, seconds: float = 30) -> list[dict[str, Any]]:
    """The first ``count`` state changes WatchMessages streams after sequence number ``after``."""
    call = stub.WatchMessages(
        router_pb2.WatchMessagesRequest(namespace=TENANT, after=after), metadata=AUTH
    )
    seen: list[dict[str, Any]] = []

    async def read() -> None:
        async for item in call:
            seen.append(json.loads(item.json))
            if len(seen) == count:
                return

    try:
        await asyncio.wait_for(read(), seconds)
    except TimeoutError:
        raise AssertionError(f"{len(seen)} of {count} events in {seconds}s: {seen}") from None
    finally:
        call.cancel()
    return seen


async def _until_healthy(stub: Any, channel: str, seconds: float) -> None:
    """GetSystemStatus until every plugin of ``channel`` is healthy (none ejected)."""
    deadline = time.monotonic() + seconds
    while True:
        answer = await stub.GetSystemStatus(
            router_pb2.GetSystemStatusRequest(namespace=TENANT), metadata=AUTH, timeout=10
        )
        plugins = json.loads(answer.status_json)["channels"][channel]
        if all(p["healthy"] for p in plugins):
            return
        assert time.monotonic() < deadline, f"not healthy after {seconds}s: {plugins}"
        await asyncio.sleep(0.1)


async def _send(
    stub: Any, content: str, *, channel: str = "sms", recipient: str = RECIPIENT, **fields: Any
) -> Any:
    """SendMessage in the test tenant (``fields``: asynchronous, idempotency_key, ...)."""
    return await stub.SendMessage(
        router_pb2.SendMessageRequest(
            channel=channel, recipient=recipient, content=content, namespace=TENANT, **fields
        ),
        metadata=AUTH,
        timeout=30,
    )


def _error_json(error: grpc.aio.AioRpcError) -> dict[str, Any]:
    trailers = dict(error.trailing_metadata() or ())
    body: dict[str, Any] = json.loads(trailers["switchboard-error-json"])["error"]
    return body


async def test_an_asynchronous_send_answers_at_once_and_get_and_watch_follow_it_to_sent(
    start_provider: Any,
    ledger_router: Any,
    engine_url: str,
    stub_for: Any,
) -> None:
    provider = start_provider("only")
    router = ledger_router([provider.route()], engine_url)
    stub = await stub_for(router.grpc_target)
    # A first message gives a sequence number to watch from: no race with the stream's start.
    first = await _send(stub, "first")
    watched_from = (await _get(stub, first.id))["history"][-1]["seq"]
    provider.set("slow", delay=2)

    accepted = await _send(stub, "later", asynchronous=True)
    delivered_when_answered = [d["content"] for d in provider.deliveries()]
    events = await _watch(stub, after=watched_from, count=3)
    final = await _until(stub, accepted.id, FINAL, seconds=30)
    resumed = await _watch(stub, after=events[0]["seq"], count=2)

    assert first.state == "sent" and accepted.id != first.id
    assert (accepted.state, len(accepted.id), accepted.plugin) == ("accepted", 32, "")
    assert delivered_when_answered == ["first"], "the answer waited for the provider"
    assert [(e["id"], e["state"]) for e in events] == [
        (accepted.id, "accepted"),
        (accepted.id, "sending"),
        (accepted.id, "sent"),
    ]
    assert all(e["channel"] == "sms" and e["namespace"] == TENANT for e in events)
    assert [(e["id"], e["state"]) for e in resumed] == [
        (accepted.id, "sending"),
        (accepted.id, "sent"),
    ]
    assert final["state"] == "sent" and final["asynchronous"] is True
    assert final["plugin"] == f"{TENANT}/only"
    assert final["providerMessageId"].startswith("only-")
    assert [(a["plugin"], a["outcome"]) for a in final["attempts"]] == [
        (f"{TENANT}/only", "success")
    ]
    assert [h["state"] for h in final["history"]] == ["accepted", "sending", "sent"]
    assert [d["content"] for d in provider.deliveries()] == ["first", "later"]


async def test_list_messages_filters_by_state_and_channel(
    start_provider: Any,
    ledger_router: Any,
    engine_url: str,
    stub_for: Any,
) -> None:
    texts, mail = start_provider("texts", "mail")
    mail.set("permanent")
    router = ledger_router(
        [texts.route(route_key="sms"), mail.route(route_key="email")], engine_url
    )
    stub = await stub_for(router.grpc_target)

    sms = await _send(stub, "hello")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _send(stub, "hi", channel="email", recipient="ann@example.org")
    email_id = _error_json(refused.value)["messageId"]
    everything = await _list(stub)
    failed = await _list(stub, state="failed")
    on_sms = await _list(stub, channel="sms")
    sent_email = await _list(stub, state="sent", channel="email")
    failed_email = await _list(stub, state="failed", channel="email")
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await _list(stub, state="lost")

    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert [m["id"] for m in everything] == [email_id, sms.id]  # newest first
    assert [(m["id"], m["state"], m["channel"]) for m in failed] == [(email_id, "failed", "email")]
    assert failed[0]["error"]["code"] == "PERMANENT"
    assert [(m["id"], m["state"], m["channel"]) for m in on_sms] == [(sms.id, "sent", "sms")]
    assert sent_email == []
    assert [m["id"] for m in failed_email] == [email_id]
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'lost' is not one of accepted, sending, sent" in (invalid.value.details() or "")


async def test_replaying_an_expired_message_sends_the_same_message_again(
    start_provider: Any,
    ledger_router: Any,
    engine_url: str,
    stub_for: Any,
) -> None:
    provider = start_provider("only")
    provider.set("retryable")
    router = ledger_router([provider.route(max_delivery_seconds=1.5)], engine_url)
    stub = await stub_for(router.grpc_target)

    accepted = await _send(stub, "dead letter", asynchronous=True, idempotency_key="order-42")
    expired = await _until(stub, accepted.id, FINAL, seconds=30)
    provider.set("ok")
    await _until_healthy(stub, "sms", seconds=30)  # its failures had ejected the plugin
    replayed = await stub.ReplayMessage(
        router_pb2.GetMessageRequest(id=accepted.id, namespace=TENANT), metadata=AUTH, timeout=30
    )
    final = await _get(stub, accepted.id)
    listed = await _list(stub)

    assert expired["state"] == "expired" and expired["error"]["code"] == "EXPIRED"
    assert all(a["outcome"] == "retryable" for a in expired["attempts"])
    assert (replayed.id, replayed.state) == (accepted.id, "sent")
    assert replayed.plugin == f"{TENANT}/only" and replayed.attempts[-1].outcome == "success"
    assert final["state"] == "sent" and final["idempotencyKey"] == "order-42"
    assert final["rounds"] > expired["rounds"]
    assert [h["state"] for h in final["history"]][-3:] == ["expired", "sending", "sent"]
    assert [m["id"] for m in listed] == [accepted.id], "a replay is no new message"
    assert [d["content"] for d in provider.deliveries()] == ["dead letter"]


async def test_an_unknown_message_id_is_not_found_with_a_message_naming_it(
    start_provider: Any,
    ledger_router: Any,
    engine_url: str,
    stub_for: Any,
) -> None:
    provider = start_provider("only")
    router = ledger_router([provider.route()], engine_url)
    stub = await stub_for(router.grpc_target)
    missing = router_pb2.GetMessageRequest(id="0" * 32, namespace=TENANT)

    with pytest.raises(grpc.aio.AioRpcError) as get:
        await stub.GetMessage(missing, metadata=AUTH, timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as replay:
        await stub.ReplayMessage(missing, metadata=AUTH, timeout=10)

    for raised in (get.value, replay.value):
        assert raised.code() == grpc.StatusCode.NOT_FOUND
        assert raised.details() == f"No message '{'0' * 32}' in namespace '{TENANT}'."
        assert _error_json(raised)["code"] == "NOT_FOUND"
    assert provider.deliveries() == []


async def test_replaying_a_sent_message_is_refused_as_a_failed_precondition(
    start_provider: Any,
    ledger_router: Any,
    engine_url: str,
    stub_for: Any,
) -> None:
    """The proto promises FAILED_PRECONDITION for a refusal the caller can act on, never UNKNOWN."""
    provider = start_provider("only")
    router = ledger_router([provider.route()], engine_url)
    stub = await stub_for(router.grpc_target)
    sent = await _send(stub, "once")

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ReplayMessage(
            router_pb2.GetMessageRequest(id=sent.id, namespace=TENANT), metadata=AUTH, timeout=10
        )

    assert "only failed, unknown or expired" in (refused.value.details() or "")
    assert _error_json(refused.value)["code"] == "NOT_REPLAYABLE"
    assert [d["content"] for d in provider.deliveries()] == ["once"]
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, refused.value.code()
