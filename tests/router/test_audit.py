"""The audit trail: who sent, invoked or was refused what, with no content and no secret."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from switchboard.client import Forbidden, NotAuthenticated
from switchboard.router.auth import ApiKey
from tests.router.conftest import API_KEY, TENANT


async def test_sends_invokes_and_refusals_are_audited_without_content_or_secrets(
    start_provider: Any, start_router: Any, caplog: pytest.LogCaptureFixture
) -> None:
    provider = start_provider("only")
    router = await start_router(
        keys=[
            ApiKey("ci", API_KEY, frozenset({TENANT})),
            ApiKey("intruder", "key-intruder", frozenset({"elsewhere"})),
        ]
    )
    router.publish(provider.route(), provider.route(kind="VendorIntegration", route_key="acme"))
    client = router.client()
    caplog.set_level(logging.INFO, logger="switchboard.audit")

    sent = await client.send_message("sms", "+15551234567", "Your code is 424242")
    await client.invoke("only", "echo", {"value": "hello"})
    with pytest.raises(Forbidden):
        await router.client(token="key-intruder", namespace=TENANT).send_message(
            "sms", "+15551234567", "x"
        )
    with pytest.raises(NotAuthenticated):
        await router.client(token="not-a-key").send_message("sms", "+15551234567", "x")

    events: list[dict[str, Any]] = []
    for _ in range(50):  # the table is written in batches
        events = (await client._request("GET", "/v1/audit", params={"namespace": TENANT}))["events"]
        if len(events) >= 3:
            break
        await asyncio.sleep(0.1)
    trail = [(e["actor"], e["action"], e["target"], e["outcome"]) for e in reversed(events)]

    assert trail == [
        ("ci", "send", "sms", "sent"),
        ("ci", "invoke", "only/echo", "ok"),
        ("intruder", "denied", "send communicationplugins", "forbidden"),
    ]
    assert events[-1]["messageId"] == sent.id
    audit_lines = [r for r in caplog.records if r.name == "switchboard.audit"]
    assert {getattr(r, "outcome", None) for r in audit_lines} >= {
        "sent",
        "ok",
        "forbidden",
        "unknown_token",
    }
    logged = " ".join(str(vars(r)) for r in audit_lines)
    for private in ("424242", "+15551234567", "hello", API_KEY, "key-intruder", "not-a-key"):
        assert private not in logged
        assert private not in str(events)
