"""Selection and failover, with real plugin processes behind a real router."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from switchboard.client import DeliveryFailed, InvalidRequest, NotFound, Overloaded
from tests.router.conftest import TENANT

pytestmark = pytest.mark.asyncio


async def test_lowest_priority_number_gets_every_message(
    start_provider: Any, start_router: Any
) -> None:
    primary, secondary = start_provider("primary", "secondary")
    router = await start_router()
    router.publish(primary.route(priority=1), secondary.route(priority=2))
    client = router.client()
    results = [await client.send_message("sms", "+15551234567", f"code {i}") for i in range(10)]
    assert {r.plugin for r in results} == {f"{TENANT}/primary"}
    assert len(primary.deliveries()) == 10
    assert secondary.deliveries() == []
    assert all(len(r.attempts) == 1 and r.attempts[0].outcome == "success" for r in results)


async def test_weights_split_traffic_within_a_priority(
    start_provider: Any, start_router: Any
) -> None:
    heavy, light = start_provider("heavy", "light")
    router = await start_router()
    router.publish(heavy.route(weight=80), light.route(weight=20))
    client = router.client()
    sends = 400
    for batch in range(0, sends, 20):
        await asyncio.gather(
            *(client.send_message("sms", "+15551234567", f"m{batch + i}") for i in range(20))
        )
    share = len(heavy.deliveries()) / sends
    # Binomial(400, 0.8) has a standard deviation of 2 points: 8 points is 4 sigma.
    assert 0.72 <= share <= 0.88, share
    assert len(heavy.deliveries()) + len(light.deliveries()) == sends


async def test_weight_zero_only_takes_traffic_when_its_peer_fails(
    start_provider: Any, start_router: Any
) -> None:
    main, standby = start_provider("main", "standby")
    router = await start_router()
    router.publish(main.route(weight=100), standby.route(weight=0))
    client = router.client()
    for i in range(10):
        await client.send_message("sms", "+15551234567", f"m{i}")
    assert len(main.deliveries()) == 10
    main.set("retryable")
    result = await client.send_message("sms", "+15551234567", "now")
    assert result.plugin == f"{TENANT}/standby"


async def test_retryable_primary_fails_over_to_the_next_priority(
    start_provider: Any, start_router: Any
) -> None:
    primary, secondary = start_provider("primary", "secondary")
    primary.set("retryable")
    router = await start_router()
    router.publish(primary.route(priority=1), secondary.route(priority=2))
    result = await router.client().send_message("sms", "+15551234567", "hello")
    assert result.plugin == f"{TENANT}/secondary"
    assert [a.outcome for a in result.attempts] == ["retryable", "success"]
    assert [a.plugin for a in result.attempts] == [f"{TENANT}/primary", f"{TENANT}/secondary"]
    assert len(secondary.deliveries()) == 1
    assert primary.deliveries() == []


async def test_a_primary_that_times_out_fails_over_without_a_late_duplicate(
    start_provider: Any, start_router: Any
) -> None:
    primary, secondary = start_provider("primary", "secondary")
    primary.set("slow", delay=1.5)
    router = await start_router()
    router.publish(primary.route(priority=1, timeout_seconds=0.3), secondary.route(priority=2))
    started = time.monotonic()
    result = await router.client().send_message("sms", "+15551234567", "hello")
    assert time.monotonic() - started < 1.2
    assert [a.outcome for a in result.attempts] == ["timeout", "success"]
    await asyncio.sleep(1.6)  # past the moment the slow primary would have finished
    assert primary.deliveries() == []  # the deadline cancelled its send
    assert len(secondary.deliveries()) == 1


async def test_permanent_and_invalid_input_are_never_retried(
    start_provider: Any, start_router: Any
) -> None:
    primary, secondary = start_provider("primary", "secondary")
    router = await start_router()
    router.publish(primary.route(priority=1), secondary.route(priority=2))
    client = router.client()
    primary.set("permanent")
    with pytest.raises(DeliveryFailed) as permanent:
        await client.send_message("sms", "+15551234567", "hello")
    assert (permanent.value.status, permanent.value.code) == (502, "PERMANENT")
    assert [a.outcome for a in permanent.value.attempts] == ["permanent"]
    primary.set("invalid")
    with pytest.raises(InvalidRequest) as invalid:
        await client.send_message("sms", "+15551234567", "hello")
    assert (invalid.value.status, invalid.value.code) == (422, "INVALID_INPUT")
    assert "not a reachable number" in invalid.value.message
    assert secondary.deliveries() == []


async def test_unauthenticated_plugin_fails_over(start_provider: Any, start_router: Any) -> None:
    primary, secondary = start_provider("primary", "secondary")
    primary.set("unauthenticated")
    router = await start_router()
    router.publish(primary.route(priority=1), secondary.route(priority=2))
    result = await router.client().send_message("sms", "+15551234567", "hello")
    assert [a.outcome for a in result.attempts] == ["unauthenticated", "success"]


async def test_a_plugin_whose_settings_the_provider_refuses_fails_over_and_says_so(
    start_provider: Any, start_router: Any
) -> None:
    primary, secondary = start_provider("primary", "secondary")
    primary.set("configuration")
    router = await start_router()
    router.publish(primary.route(priority=1), secondary.route(priority=2))
    client = router.client()
    for text in ("one", "two"):
        result = await client.send_message("sms", "+15551234567", text)
        assert [a.outcome for a in result.attempts] == ["configuration", "success"]
    assert len(secondary.deliveries()) == 2

    def problem_of(status: dict[str, Any]) -> Any:
        return next(p for p in status["channels"]["sms"] if p["name"] == "primary").get("problem")

    assert problem_of(await client.system_status()) == {
        "reason": "ProviderRejectedConfiguration",
        "message": "the sender +15550001111 is not a number of this account",
        "failures": 2,
    }
    # Fixed (here: the provider takes it again): the next delivery clears it.
    primary.set("ok")
    await client.send_message("sms", "+15551234567", "three")
    assert problem_of(await client.system_status()) is None


async def test_retry_after_holds_a_plugin_back(start_provider: Any, start_router: Any) -> None:
    primary, secondary = start_provider("primary", "secondary")
    primary.set("retryable", retry_after=2)
    router = await start_router()
    router.publish(primary.route(priority=1), secondary.route(priority=2))
    client = router.client()
    first = await client.send_message("sms", "+15551234567", "one")
    assert first.attempts[0].retry_after_seconds == 2
    second = await client.send_message("sms", "+15551234567", "two")
    assert [a.plugin for a in second.attempts] == [f"{TENANT}/secondary"]  # primary skipped
    status = await client.system_status()
    held = next(p for p in status["channels"]["sms"] if p["name"] == "primary")
    assert 0 < held["heldForSeconds"] <= 2
    primary.set("ok")
    await asyncio.sleep(2.1)
    third = await client.send_message("sms", "+15551234567", "three")
    assert third.plugin == f"{TENANT}/primary"


async def test_consecutive_failures_eject_an_endpoint_until_it_recovers(
    start_provider: Any, start_router: Any, caplog: pytest.LogCaptureFixture
) -> None:
    primary, secondary = start_provider("primary", "secondary")
    primary.set("retryable")
    router = await start_router(ejection_failures=3, ejection_base_seconds=1.0)
    router.publish(primary.route(priority=1), secondary.route(priority=2))
    client = router.client()
    for _ in range(3):
        result = await client.send_message("sms", "+15551234567", "x")
        assert [a.outcome for a in result.attempts] == ["retryable", "success"]
    ejected = await client.send_message("sms", "+15551234567", "x")
    assert [a.plugin for a in ejected.attempts] == [f"{TENANT}/secondary"]
    assert any(
        r.getMessage() == "Ejected an endpoint after repeated failures"
        and (getattr(r, "plugin", None), getattr(r, "endpoint", None), getattr(r, "seconds", None))
        == (f"{TENANT}/primary", primary.address, 1.0)
        for r in caplog.records
    )
    status = await client.system_status()
    entry = next(p for p in status["channels"]["sms"] if p["name"] == "primary")
    assert entry["endpoints"]["ejected"] == [primary.address]
    assert entry["recentErrorRate"] == 1.0
    primary.set("ok")
    await asyncio.sleep(1.1)
    recovered = await client.send_message("sms", "+15551234567", "x")
    assert recovered.plugin == f"{TENANT}/primary"


async def test_not_serving_plugin_is_drained(start_provider: Any, start_router: Any) -> None:
    primary, secondary = start_provider("primary", "secondary")
    router = await start_router()
    router.publish(primary.route(priority=1), secondary.route(priority=2))
    client = router.client()
    assert (await client.send_message("sms", "+1555", "x")).plugin == f"{TENANT}/primary"
    primary.process.terminate()  # SIGTERM: NOT_SERVING at once, then a graceful stop
    await primary.process.async_wait_exit()
    result = await client.send_message("sms", "+15551234567", "after")
    assert [a.plugin for a in result.attempts] == [f"{TENANT}/secondary"]


async def test_kill_9_under_load_loses_nothing_and_a_retry_never_sends_twice(
    start_provider: Any, start_router: Any
) -> None:
    primary, secondary = start_provider("primary", "secondary")
    router = await start_router()
    router.publish(primary.route(priority=1), secondary.route(priority=2))
    client = router.client()
    total, concurrency = 200, 8
    outcomes: list[Any] = []
    queue = list(range(total))

    async def worker() -> None:
        while queue:
            index = queue.pop(0)
            if index == total // 3:
                os.kill(primary.process.pid, signal.SIGKILL)
            try:
                outcomes.append(
                    await client.send_message(
                        "sms", "+15551234567", f"m{index}", idempotency_key=f"key-{index}"
                    )
                )
            except Exception as error:  # counted as a lost message below
                outcomes.append(error)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), 60)
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert errors == []
    delivered = Counter(d["idempotency_key"] for p in (primary, secondary) for d in p.deliveries())
    assert set(delivered) == {f"key-{i}" for i in range(total)}
    assert len(secondary.deliveries()) > 0

    # The client retries everything with the same keys: nothing is sent again.
    before = sum(delivered.values())
    again = [
        await client.send_message("sms", "+15551234567", f"m{i}", idempotency_key=f"key-{i}")
        for i in range(total)
    ]
    assert all(r.replayed for r in again)
    after = sum(len(p.deliveries()) for p in (primary, secondary))
    assert after == before


async def test_concurrent_duplicates_send_once(start_provider: Any, start_router: Any) -> None:
    provider = start_provider("only")
    provider.set("slow", delay=0.3)
    router = await start_router()
    router.publish(provider.route())
    client = router.client()
    results = await asyncio.gather(
        *(client.send_message("sms", "+1555", "x", idempotency_key="same") for _ in range(5))
    )
    assert len(provider.deliveries()) == 1
    assert sorted(r.replayed for r in results) == [False, True, True, True, True]
    assert len({r.provider_message_id for r in results}) == 1


async def test_overload_is_refused_at_once(start_provider: Any, start_router: Any) -> None:
    provider = start_provider("only")
    provider.set("slow", delay=3.0)
    router = await start_router(max_concurrency=2)
    router.publish(provider.route())
    client = router.client()

    async def timed_send(i: int) -> tuple[float, Any]:
        started = time.monotonic()
        try:
            result: Any = await client.send_message("sms", "+1555", f"m{i}")
        except Overloaded as error:
            result = error
        return time.monotonic() - started, result

    outcomes = await asyncio.gather(*(timed_send(i) for i in range(6)))
    refused = [(t, r) for t, r in outcomes if isinstance(r, Overloaded)]
    served = [(t, r) for t, r in outcomes if not isinstance(r, Overloaded)]
    assert len(served) == 2 and len(refused) == 4
    # At once: not after waiting for a slot (the slots are held for 3 s).
    assert all(t < 1.5 for t, _ in refused), refused
    assert all(r.retry_after == 1 for _, r in refused)


async def test_a_table_update_does_not_drop_requests_in_flight(
    start_provider: Any, start_router: Any
) -> None:
    old, new = start_provider("old", "new")
    old.set("slow", delay=0.8)
    router = await start_router()
    router.publish(old.route())
    client = router.client()
    in_flight = asyncio.create_task(client.send_message("sms", "+1555", "during"))
    await asyncio.sleep(0.2)
    router.publish(new.route())  # `old` is gone from the table mid-request
    result = await in_flight
    assert result.plugin == f"{TENANT}/old"
    assert (await client.send_message("sms", "+1555", "after")).plugin == f"{TENANT}/new"


async def test_disabled_plugins_and_unknown_channels(
    start_provider: Any, start_router: Any
) -> None:
    provider = start_provider("only")
    router = await start_router()
    router.publish(replace(provider.route(), enabled=False))
    client = router.client()
    with pytest.raises(DeliveryFailed) as none_ready:
        await client.send_message("sms", "+1555", "x")
    assert (none_ready.value.status, none_ready.value.code) == (503, "NO_ENDPOINT")
    with pytest.raises(NotFound) as unknown:
        await client.send_message("fax", "+1555", "x")
    assert unknown.value.status == 404
    assert "'fax'" in str(unknown.value)
