"""The ledger's gauges and the receipt counter on a real router's /metrics, on both engines.

`switchboard_ledger_messages{state}` and
`switchboard_ledger_oldest_unfinished_seconds` are read from the ledger
(every replica's messages) by the router's housekeeping, every 15 seconds,
so the test polls /metrics the way a Prometheus scrape would, within a bound.
The oldest-unfinished gauge is documented as 0 when no message is unfinished.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import replace
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.ledger.conftest import ledger_postgres  # noqa: F401 - fixture
from tests.router.conftest import API_KEY, RECEIPT_SECRET, TENANT
from tests.router.ledger_process import (  # noqa: F401 - fixtures
    engine_url_fixture,
    ledger_router_fixture,
)

HEADERS = {"Authorization": f"Bearer {API_KEY}"}
#: The housekeeping period is 15 s: two of them and a margin for a loaded machine.
GAUGE_SECONDS = 40


def _scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by (name, labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _by_state(samples: dict[Any, float]) -> dict[str, float]:
    return {
        dict(labels)["state"]: value
        for (name, labels), value in samples.items()
        if name == "switchboard_ledger_messages"
    }


async def _metrics_until(
    http: httpx.AsyncClient, wanted: Any, what: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Scrape /metrics until ``wanted(samples)``; fails after GAUGE_SECONDS."""
    deadline = time.monotonic() + GAUGE_SECONDS
    while True:
        samples = _scrape((await http.get("/metrics")).text)
        if wanted(samples):
            return samples
        assert time.monotonic() < deadline, (
            f"/metrics never showed {what} within {GAUGE_SECONDS}s: "
            f"{_by_state(samples)}, oldest "
            f"{samples.get(('switchboard_ledger_oldest_unfinished_seconds', ()))}"
        )
        await asyncio.sleep(0.5)


async def _send(http: httpx.AsyncClient, channel: str, content: str, wait: bool) -> httpx.Response:
    body = {
        "channel": channel,
        "recipient": "+15551234567",
        "content": content,
        "namespace": TENANT,
        "wait": wait,
    }
    return await http.post("/v1/messages", json=body, headers=HEADERS, timeout=30)


async def _state_of(http: httpx.AsyncClient, message_id: str, states: set[str]) -> str:
    deadline = time.monotonic() + 30
    while True:
        answer = await http.get(f"/v1/messages/{message_id}", headers=HEADERS, timeout=10)
        state: str = answer.json()["state"]
        if state in states:
            return state
        assert time.monotonic() < deadline, f"{message_id} still {state}"
        await asyncio.sleep(0.1)


async def _receipt(http: httpx.AsyncClient, provider_id: str, secret: str = RECEIPT_SECRET) -> int:
    raw = json.dumps({"id": provider_id, "status": "delivered"}).encode()
    signature = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    answer = await http.post(
        f"/v1/receipts/{TENANT}/texts",
        content=raw,
        headers={"X-Flaky-Signature": signature, "Content-Type": "application/json"},
    )
    return answer.status_code


async def test_metrics_count_messages_by_state_and_the_age_of_the_oldest_unfinished_one(
    start_provider: Any, ledger_router: Any, engine_url: str
) -> None:
    texts, queue = start_provider("texts", "queue")
    queue.set("retryable")
    router = ledger_router(
        [
            texts.route(route_key="sms"),
            queue.route(route_key="push", max_delivery_seconds=1.5),  # expires
            replace(queue.route(route_key="fax"), name="queue-fax"),  # retried for a day
        ],
        engine_url,
    )
    async with httpx.AsyncClient(base_url=router.url) as http:
        at_start = await _metrics_until(
            http, lambda s: len(_by_state(s)) == 7, "a gauge for every state"
        )
        started = time.time()
        sent = (await _send(http, "sms", "stays sent", wait=True)).json()
        delivered = (await _send(http, "sms", "gets a receipt", wait=True)).json()
        texts.set("permanent")
        failed = await _send(http, "sms", "blocked", wait=True)
        expiring = (await _send(http, "push", "dead letter", wait=False)).json()
        pending = (await _send(http, "fax", "still trying", wait=False)).json()
        receipts = [
            await _receipt(http, delivered["providerMessageId"]),  # applied
            await _receipt(http, delivered["providerMessageId"]),  # stale: delivered already
            await _receipt(http, "no-such-message"),  # unknown_message
            await _receipt(http, delivered["providerMessageId"], secret="forged"),  # rejected
        ]
        await _state_of(http, expiring["id"], {"expired"})

        def while_pending(s: Any) -> bool:
            # The retried message is `sending` for the milliseconds of each round.
            states = _by_state(s)
            return states.get("expired") == 1 and states["accepted"] + states["sending"] == 1

        busy = await _metrics_until(http, while_pending, "the expired and pending messages")
        busy_age = time.time() - started
        queue.set("ok")
        await _state_of(http, pending["id"], {"sent"})

        def all_finished(s: Any) -> bool:
            return _by_state(s).get("sent") == 2

        done = await _metrics_until(http, all_finished, "every message finished")

    oldest = ("switchboard_ledger_oldest_unfinished_seconds", ())
    assert set(_by_state(at_start).values()) == {0.0} and at_start[oldest] == 0.0
    assert (sent["state"], delivered["state"]) == ("sent", "sent")
    assert failed.status_code == 502 and failed.json()["error"]["code"] == "PERMANENT"
    assert (expiring["state"], pending["state"]) == ("accepted", "accepted")
    assert receipts == [200, 200, 200, 401]
    assert _by_state(busy) == {
        "accepted": _by_state(busy)["accepted"],
        "sending": 1.0 - _by_state(busy)["accepted"],
        "sent": 1.0,
        "delivered": 1.0,
        "failed": 1.0,
        "unknown": 0.0,
        "expired": 1.0,
    }
    assert 0 < busy[oldest] <= busy_age, (busy[oldest], busy_age)
    assert _by_state(done) == {
        "accepted": 0.0,
        "sending": 0.0,
        "sent": 2.0,
        "delivered": 1.0,
        "failed": 1.0,
        "unknown": 0.0,
        "expired": 1.0,
    }
    assert done[oldest] == 0.0
    received = {
        dict(labels)["outcome"]: value
        for (name, labels), value in done.items()
        if name == "switchboard_router_receipts_total"
    }
    assert received == {"applied": 1.0, "stale": 1.0, "unknown_message": 1.0, "rejected": 1.0}
