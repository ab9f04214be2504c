"""What happened to message X: the router's ledger, through the API, with real plugin processes.

Each test drives the router the way an application does (the client
library, HTTP) against flaky-sms plugin processes whose deliveries land in a
file, so "sent twice" and "lost" are counted at the provider, not guessed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import signal
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard.client import Conflict, DeliveryFailed, InvalidRequest
from switchboard.sdk import Attachment, Template
from tests.ledger.conftest import ledger_postgres  # noqa: F401 - fixture
from tests.router.conftest import API_KEY, RECEIPT_SECRET, TENANT, Provider
from tests.vendor.postgres import PostgresServer

SMS = ("sms", "+15551234567")


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


async def test_a_sent_message_can_be_looked_up_with_its_attempts_and_history(
    start_provider: Any, start_router: Any, tmp_path: Path
) -> None:
    primary, secondary = start_provider("primary", "secondary")
    primary.set("retryable")
    router = await start_router(ledger_url=_sqlite(tmp_path))
    router.publish(primary.route(priority=1), secondary.route(priority=2))
    client = router.client()

    sent = await client.send_message(*SMS, "Your code is 123456")
    status = await client.get_message(sent.id)

    assert sent.state == "sent" and len(sent.id) == 32
    assert status.state == "sent" and status.plugin == f"{TENANT}/secondary"
    assert status.provider_message_id == sent.provider_message_id
    assert [(a.plugin, a.outcome) for a in status.attempts] == [
        (f"{TENANT}/primary", "retryable"),
        (f"{TENANT}/secondary", "success"),
    ]
    assert [h["state"] for h in status.history] == ["accepted", "sending", "sent"]
    listed = await client.list_messages(state="sent", channel="sms")
    assert [m.id for m in listed] == [sent.id]


async def test_wait_false_answers_once_recorded_and_a_worker_delivers_it(
    start_provider: Any, start_router: Any, tmp_path: Path
) -> None:
    provider = start_provider("only")
    provider.set("slow", delay=0.5)
    router = await start_router(ledger_url=_sqlite(tmp_path))
    router.publish(provider.route())
    client = router.client()

    accepted = await client.send_message(*SMS, "later", wait=False)
    assert accepted.state == "accepted" and provider.deliveries() == []
    final = await client.wait_for_message(accepted.id, states={"sent"}, timeout=20)

    assert final.plugin == f"{TENANT}/only"
    assert [d["content"] for d in provider.deliveries()] == ["later"]


async def test_an_asynchronous_message_is_retried_with_back_off_until_a_provider_takes_it(
    start_provider: Any, start_router: Any, tmp_path: Path
) -> None:
    provider = start_provider("only")
    provider.set("retryable")
    router = await start_router(ledger_url=_sqlite(tmp_path), retry_base_seconds=0.2)
    router.publish(provider.route())
    client = router.client()

    accepted = await client.send_message(*SMS, "persist", wait=False)
    for _ in range(200):  # until it has been retried a few times
        waiting = await client.get_message(accepted.id)
        if sum(h["state"] == "accepted" for h in waiting.history) >= 3:
            break
        await asyncio.sleep(0.1)
    provider.set("ok")
    final = await client.wait_for_message(accepted.id, states={"sent"}, timeout=20)

    assert waiting.state in ("accepted", "sending") and waiting.error_code == "UNAVAILABLE"
    assert final.state == "sent"
    rounds = {a.round for a in final.attempts}
    assert len(rounds) >= 3  # retried, not given up
    assert len(provider.deliveries()) == 1


async def test_a_message_past_its_max_delivery_time_expires_and_a_replay_sends_it(
    start_provider: Any, start_router: Any, tmp_path: Path
) -> None:
    provider = start_provider("only")
    provider.set("retryable")
    router = await start_router(ledger_url=_sqlite(tmp_path), retry_base_seconds=0.2)
    router.publish(replace(provider.route(), max_delivery_seconds=1.0))
    client = router.client()

    accepted = await client.send_message(*SMS, "dead letter", wait=False)
    expired = await client.wait_for_message(accepted.id, states={"expired"}, timeout=20)
    # Replayed while the channel still fails (the provider, or its plugin still
    # ejected): one round, answered with that round's own failure.
    with pytest.raises(DeliveryFailed) as still_down:
        await client.replay_message(accepted.id)
    failed = await client.get_message(accepted.id)
    provider.set("ok")
    for _ in range(40):  # until the plugin is routable again (ejection runs out)
        with contextlib.suppress(DeliveryFailed):
            replayed = await client.replay_message(accepted.id)
            break
        await asyncio.sleep(0.25)
    else:
        raise AssertionError("no replay was sent within 10 s of the provider recovering")
    final = await client.get_message(accepted.id)

    assert expired.error_code == "EXPIRED"
    assert "maxDeliveryTime" in expired.error_message
    assert still_down.value.code in ("UNAVAILABLE", "NO_ENDPOINT"), still_down.value
    assert "maxDeliveryTime" not in str(still_down.value)
    assert (failed.state, failed.error_code) == ("failed", still_down.value.code)
    assert replayed.state == "sent" and replayed.id == accepted.id
    states = [h["state"] for h in final.history]
    assert states[states.index("expired") + 1 :][:2] == ["sending", "failed"]
    assert states[-2:] == ["sending", "sent"] and "expired" not in states[-3:]
    assert len(provider.deliveries()) == 1
    with pytest.raises(Conflict, match="only failed, unknown or expired") as again:
        await client.replay_message(accepted.id)
    assert again.value.status == 409


async def test_an_idempotency_key_outlives_the_router_and_another_payload_is_a_conflict(
    start_provider: Any, start_router: Any, tmp_path: Path
) -> None:
    provider = start_provider("only")
    first_router = await start_router(ledger_url=_sqlite(tmp_path))
    first_router.publish(provider.route())
    first = await first_router.client().send_message(*SMS, "once", idempotency_key="order-7")
    await first_router.stop()

    restarted = await start_router(ledger_url=_sqlite(tmp_path))
    restarted.publish(provider.route())
    client = restarted.client()
    again = await client.send_message(*SMS, "once", idempotency_key="order-7")
    with pytest.raises(Conflict, match="order-7") as conflict:
        await client.send_message(*SMS, "something else", idempotency_key="order-7")

    assert again.replayed and again.id == first.id
    assert again.provider_message_id == first.provider_message_id
    assert conflict.value.message_id == first.id
    assert len(provider.deliveries()) == 1


async def _kill_under_load(
    primary: Provider, client: Any, total: int, concurrency: int
) -> list[Any]:
    """Sends ``total`` messages with keys; kills the primary's process a third of the way."""
    outcomes: list[Any] = []
    queue = list(range(total))

    async def worker() -> None:
        while queue:
            index = queue.pop(0)
            if index == total // 3:
                os.kill(primary.process.pid, signal.SIGKILL)
            try:
                outcomes.append(
                    await client.send_message(*SMS, f"m{index}", idempotency_key=f"key-{index}")
                )
            except Exception as error:
                outcomes.append(error)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), 120)
    return outcomes


@pytest.mark.parametrize("policy", ["AtMostOnce", "AtLeastOnce"])
async def test_kill_9_of_a_slow_provider_under_load_follows_the_delivery_policy(
    start_provider: Any, start_router: Any, tmp_path: Path, policy: str
) -> None:
    primary, secondary = start_provider("primary", "secondary")
    primary.set("accept_then_slow", delay=0.4)
    router = await start_router(ledger_url=_sqlite(tmp_path))
    router.publish(
        primary.route(priority=1, delivery=policy), secondary.route(priority=2, delivery=policy)
    )
    client = router.client()

    outcomes = await _kill_under_load(primary, client, total=120, concurrency=16)

    delivered = Counter(d["idempotency_key"] for p in (primary, secondary) for d in p.deliveries())
    messages = {m.idempotency_key: m for m in await _all_messages(router)}
    assert len(messages) == 120
    in_doubt = [m for m in messages.values() if m.state == "unknown"]
    if policy == "AtMostOnce":
        assert all(count == 1 for count in delivered.values()), "sent twice"
        assert in_doubt, "the killed calls' outcomes are unknown"
        assert {m.state for m in messages.values()} <= {"sent", "unknown"}
        failed = [o for o in outcomes if isinstance(o, Exception)]
        assert all(getattr(o, "code", "") == "UNKNOWN_OUTCOME" for o in failed)
        assert len(failed) == len(in_doubt)
    else:
        assert [o for o in outcomes if isinstance(o, Exception)] == []
        assert set(delivered) == {f"key-{i}" for i in range(120)}, "lost"
        twice = {key for key, count in delivered.items() if count > 1}
        assert twice, "the killed calls had reached the provider"
        assert all(messages[key].possible_duplicate for key in twice)
        assert in_doubt == []


async def _all_messages(router: Any) -> list[Any]:
    assert router.router.ledger is not None
    from switchboard.ledger import ListFilter

    return await router.router.ledger.list_messages(ListFilter(TENANT, limit=1000))


async def test_two_routers_on_one_postgresql_share_the_queue_and_never_send_twice(
    start_provider: Any,
    start_router: Any,
    ledger_postgres: PostgresServer,  # noqa: F811
) -> None:
    name = f"shared_{uuid.uuid4().hex[:8]}"
    url = ledger_postgres.create_database(name).replace("postgresql://", "postgresql+psycopg://")
    provider = start_provider("only")
    provider.set("slow", delay=0.05)
    accepting = await start_router(ledger_url=url, delivery_workers=0)
    accepting.publish(provider.route())
    first = await start_router(ledger_url=url, delivery_workers=8)
    second = await start_router(ledger_url=url, delivery_workers=8)
    for router in (first, second):
        router.publish(provider.route())
    client = accepting.client()

    ids = [
        (await client.send_message(*SMS, f"m{i}", wait=False, idempotency_key=f"k{i}")).id
        for i in range(150)
    ]
    for message_id in ids:
        await client.wait_for_message(message_id, states={"sent"}, timeout=60)

    delivered = Counter(d["idempotency_key"] for d in provider.deliveries())
    assert set(delivered) == {f"k{i}" for i in range(150)}
    assert set(delivered.values()) == {1}
    worked = [
        router.router.metrics.messages.labels("sms", "sent")._value.get()
        for router in (first, second)
    ]
    assert all(count > 0 for count in worked), worked
    for router in (accepting, first, second):
        await router.stop()
    ledger_postgres.drop_database(name)


async def test_a_database_outage_refuses_messages_with_a_reason_and_recovers_by_itself(
    start_provider: Any,
    start_router: Any,
    ledger_postgres: PostgresServer,  # noqa: F811
) -> None:
    name = f"outage_{uuid.uuid4().hex[:8]}"
    url = ledger_postgres.create_database(name).replace("postgresql://", "postgresql+psycopg://")
    provider = start_provider("only")
    router = await start_router(ledger_url=url)
    router.publish(provider.route())
    client = router.client()
    try:
        ledger_postgres.refuse_connections(name)
        with pytest.raises(DeliveryFailed) as refused:
            await client.send_message(*SMS, "during the outage")
        ledger_postgres.accept_connections(name)
        after = await client.send_message(*SMS, "after the outage")
    finally:
        ledger_postgres.accept_connections(name)

    assert (refused.value.status, refused.value.code) == (503, "LEDGER_UNAVAILABLE")
    assert "nothing was sent" in refused.value.message
    assert after.state == "sent"
    assert [d["content"] for d in provider.deliveries()] == ["after the outage"]
    await router.stop()
    ledger_postgres.drop_database(name)


async def test_a_message_only_goes_to_plugins_that_declare_what_it_needs(
    start_provider: Any, start_router: Any
) -> None:
    plain, capable = start_provider("plain", "capable")
    router = await start_router()
    router.publish(
        plain.route(priority=1, capabilities=("send",)),
        capable.route(priority=2, capabilities=("send", "attachments")),
    )
    client = router.client()
    invoice = Attachment("invoice.pdf", "application/pdf", data=b"%PDF-1.7")

    sent = await client.send_message(*SMS, "see attached", attachments=[invoice])
    with pytest.raises(InvalidRequest, match="declares templates") as nobody:
        await client.send_message(*SMS, "x", template=Template("HX1"))

    assert [a.plugin for a in sent.attempts] == [f"{TENANT}/capable"]
    assert nobody.value.code == "NO_CAPABLE_PLUGIN"
    assert "default/plain" in nobody.value.message


def _signed(body: dict[str, Any], secret: str = RECEIPT_SECRET) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    signature = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"X-Flaky-Signature": signature, "Content-Type": "application/json"}


async def test_a_verified_receipt_moves_the_message_and_a_forged_one_changes_nothing(
    start_provider: Any, start_router: Any
) -> None:
    provider = start_provider("only")
    router = await start_router()
    router.publish(provider.route())
    client = router.client()
    sent = await client.send_message(*SMS, "receipt please")
    receipts = f"{router.url}/v1/receipts/{TENANT}/only"

    async with httpx.AsyncClient() as http:
        body, headers = _signed({"id": sent.provider_message_id, "status": "failed"}, "wrong")
        forged = await http.post(receipts, content=body, headers=headers)
        still = await client.get_message(sent.id)
        body, headers = _signed({"id": sent.provider_message_id, "status": "delivered"})
        verified = await http.post(receipts, content=body, headers=headers)
        body, headers = _signed({"id": "no-such-message", "status": "delivered"})
        stray = await http.post(receipts, content=body, headers=headers)
        nowhere = await http.post(f"{router.url}/v1/receipts/{TENANT}/ghost", content=b"{}")

    assert forged.status_code == 401 and still.state == "sent"
    assert verified.status_code == 200
    assert (await client.get_message(sent.id)).state == "delivered"
    assert stray.status_code == 200  # recorded and ignored, never an error loop
    assert nowhere.status_code == 404
    metrics = (await router.client()._http.get("/metrics")).text
    assert 'switchboard_router_receipts_total{outcome="unknown_message"} 1.0' in metrics
    assert 'switchboard_router_receipts_total{outcome="rejected"} 1.0' in metrics


async def test_a_failed_delivery_receipt_sends_it_again_through_the_next_plugin(
    start_provider: Any, start_router: Any
) -> None:
    primary, secondary = start_provider("primary", "secondary")
    router = await start_router()
    router.publish(
        primary.route(priority=1, fallback_window_seconds=60.0), secondary.route(priority=2)
    )
    client = router.client()
    sent = await client.send_message(*SMS, "important")
    body, headers = _signed({"id": sent.provider_message_id, "status": "failed", "error": "30003"})

    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{router.url}/v1/receipts/{TENANT}/primary", content=body, headers=headers
        )
    final = await client.wait_for_message(sent.id, states={"sent"}, timeout=20)
    for _ in range(100):
        final = await client.get_message(sent.id)
        if final.plugin == f"{TENANT}/secondary":
            break
        await asyncio.sleep(0.1)

    assert answer.status_code == 200
    assert final.plugin == f"{TENANT}/secondary" and final.state == "sent"
    assert [h["state"] for h in final.history] == [
        "accepted",
        "sending",
        "sent",
        "failed",
        "sending",
        "sent",
    ]
    assert [d["content"] for d in secondary.deliveries()] == ["important"]


async def test_a_failed_delivery_receipt_can_fall_back_to_another_channel(
    start_provider: Any, start_router: Any
) -> None:
    whatsapp, sms = start_provider("whatsapp", "sms-backup")
    router = await start_router()
    router.publish(
        whatsapp.route(route_key="whatsapp", fallback_window_seconds=60.0, fallback_channel="sms"),
        sms.route(route_key="sms"),
    )
    client = router.client()
    sent = await client.send_message("whatsapp", "+15551234567", "your parcel is here")
    body, headers = _signed({"id": sent.provider_message_id, "status": "failed"})

    async with httpx.AsyncClient() as http:
        await http.post(
            f"{router.url}/v1/receipts/{TENANT}/whatsapp", content=body, headers=headers
        )
    final = await client.get_message(sent.id)
    for _ in range(100):
        if final.plugin == f"{TENANT}/sms-backup":
            break
        await asyncio.sleep(0.1)
        final = await client.get_message(sent.id)

    assert final.channel == "whatsapp" and final.state == "sent"
    assert final.plugin == f"{TENANT}/sms-backup"
    assert [d["content"] for d in sms.deliveries()] == ["your parcel is here"]


async def test_state_changes_stream_as_server_sent_events(
    start_provider: Any, start_router: Any
) -> None:
    provider = start_provider("only")
    router = await start_router()
    router.publish(provider.route())
    client = router.client()
    seen: list[dict[str, Any]] = []

    async def listen() -> None:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with (
            httpx.AsyncClient(timeout=30) as http,
            http.stream("GET", f"{router.url}/v1/messages/events", headers=headers) as stream,
        ):
            async for line in stream.aiter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line.removeprefix("data: ")))
                    if len(seen) == 3:
                        return

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0.5)
    sent = await client.send_message(*SMS, "watch me")
    await asyncio.wait_for(listener, 20)

    assert [(e["id"], e["state"]) for e in seen] == [
        (sent.id, "accepted"),
        (sent.id, "sending"),
        (sent.id, "sent"),
    ]
