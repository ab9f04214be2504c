"""The work queue, without a cluster: folding, back-off and failure reports."""

from __future__ import annotations

import asyncio

import pytest

from switchboard.controller.runtime import OK, RETRY, Key, Outcome, WorkQueue

KEY = Key("CommunicationPlugin", "t", "sms")


async def test_triggers_during_a_reconcile_fold_into_one_more_run() -> None:
    runs: list[Key] = []
    release = asyncio.Event()

    async def reconcile(key: Key) -> Outcome:
        runs.append(key)
        if len(runs) == 1:
            await release.wait()
        return OK

    queue = WorkQueue(reconcile, workers=2)
    queue.start()
    queue.request(KEY)
    await asyncio.sleep(0.01)
    for _ in range(5):
        queue.request(KEY)  # while the first run is in progress
    release.set()
    await asyncio.sleep(0.05)
    await queue.stop()
    assert runs == [KEY, KEY]


async def test_failures_are_retried_with_growing_delays_and_reported() -> None:
    attempts: list[float] = []
    reports: list[tuple[Key, str, float]] = []
    loop = asyncio.get_running_loop()

    async def reconcile(key: Key) -> Outcome:
        attempts.append(loop.time())
        if len(attempts) < 3:
            raise RuntimeError("the API server is away")
        return OK

    async def on_failure(key: Key, error: BaseException, delay: float) -> None:
        reports.append((key, str(error), delay))

    queue = WorkQueue(reconcile, on_failure, workers=1, base_backoff=0.05, max_backoff=1)
    queue.start()
    queue.request(KEY)
    for _ in range(100):
        if len(attempts) >= 3:
            break
        await asyncio.sleep(0.02)
    await queue.stop()
    assert len(attempts) == 3
    assert [delay for _, _, delay in reports] == [0.05, 0.1]
    assert reports[0][1] == "the API server is away"
    assert attempts[2] - attempts[1] >= attempts[1] - attempts[0] >= 0.04


async def test_a_retry_outcome_comes_back_and_success_resets_the_backoff() -> None:
    outcomes = [RETRY, RETRY, OK]
    runs = 0

    async def reconcile(key: Key) -> Outcome:
        nonlocal runs
        runs += 1
        return outcomes[min(runs, len(outcomes)) - 1]

    queue = WorkQueue(reconcile, workers=1, base_backoff=0.02, max_backoff=1)
    queue.start()
    queue.request(KEY)
    for _ in range(100):
        if runs >= 3:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    await queue.stop()
    assert runs == 3
    assert queue.depth() == 0


async def test_a_forgotten_key_is_not_retried() -> None:
    runs = 0

    async def reconcile(key: Key) -> Outcome:
        nonlocal runs
        runs += 1
        return RETRY

    queue = WorkQueue(reconcile, workers=1, base_backoff=0.05)
    queue.start()
    queue.request(KEY)
    await asyncio.sleep(0.02)
    queue.forget(KEY)
    await asyncio.sleep(0.15)
    await queue.stop()
    assert runs == 1


@pytest.mark.parametrize("workers", [1, 4])
async def test_queue_depth_and_age_are_measured(workers: int) -> None:
    async def reconcile(key: Key) -> Outcome:
        await asyncio.sleep(1)
        return OK

    queue = WorkQueue(reconcile, workers=workers)
    for index in range(10):
        queue.request(Key("CommunicationPlugin", "t", f"p{index}"))
    await asyncio.sleep(0.05)
    assert queue.depth() == 10 and queue.oldest_seconds() >= 0.04
    await queue.stop()
