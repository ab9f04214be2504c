"""kill -9 of the router itself under asynchronous load, then a restart: nothing accepted is lost.

The router runs as a real `switchboard router` process with a SQLite ledger
file; the providers are flaky-sms processes that accept a message and then
take a while to answer, so the kill lands while calls are in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest

from switchboard.client import AsyncSwitchboard
from tests.router.conftest import API_KEY, TENANT


@pytest.mark.parametrize("policy", ["AtLeastOnce", "AtMostOnce"])
async def test_kill_9_of_the_router_under_asynchronous_load_loses_nothing(
    start_provider: Any, router_process: Any, policy: str
) -> None:
    provider = start_provider("only")
    provider.set("accept_then_slow", delay=0.3)
    router = router_process([provider.route(delivery=policy)])
    router.start()
    total = 200
    async with AsyncSwitchboard(router.url, API_KEY, namespace=TENANT) as client:
        ids = {
            f"k{i}": (
                await client.send_message(
                    "sms", "+15551234567", f"m{i}", wait=False, idempotency_key=f"k{i}"
                )
            ).id
            for i in range(total)
        }
        # Let the workers get going, then pull the plug mid-send.
        for _ in range(600):
            if len(provider.deliveries()) >= 20:
                break
            await asyncio.sleep(0.05)
        router.kill()
        accepted_before_restart = len(ids)
        router.start()
        finals = {}
        deadline = time.monotonic() + 120
        while len(finals) < total and time.monotonic() < deadline:
            for key, message_id in ids.items():
                if key not in finals:
                    status = await client.get_message(message_id)
                    if status.state in ("sent", "delivered", "failed", "unknown", "expired"):
                        finals[key] = status
            await asyncio.sleep(0.2)

    assert accepted_before_restart == total
    assert len(finals) == total, "some accepted messages never finished"
    delivered = Counter(d["idempotency_key"] for d in provider.deliveries())
    twice = {key for key, count in delivered.items() if count > 1}
    if policy == "AtMostOnce":
        assert twice == set(), "a message reached the provider twice"
        in_doubt = {key for key, status in finals.items() if status.state == "unknown"}
        assert in_doubt, "the messages in flight at the kill are unknown, not resent"
        assert {s.state for s in finals.values()} == {"sent", "unknown"}
        assert set(delivered) | in_doubt == set(ids)  # every one sent or said to be in doubt
    else:
        assert {s.state for s in finals.values()} == {"sent"}
        assert set(delivered) == set(ids), "lost"
        assert twice, "the messages in flight at the kill were sent again"
        assert all(finals[key].possible_duplicate for key in twice)
