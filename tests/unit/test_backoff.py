"""The one back-off rule: doubling from the base, never above the cap."""

from __future__ import annotations

from switchboard.api.backoff import Backoff, backoff_seconds


def test_backoff_doubles_from_the_base_up_to_the_cap() -> None:
    assert [backoff_seconds(n, base=1, cap=300) for n in range(0, 5)] == [0, 1, 2, 4, 8]
    assert backoff_seconds(9, base=1, cap=300) == 256
    assert backoff_seconds(10, base=1, cap=300) == 300
    # A long outage neither overflows nor exceeds the cap.
    assert backoff_seconds(10_000, base=1, cap=300) == 300


def test_a_retry_loop_starts_again_from_the_base_after_a_success() -> None:
    backoff = Backoff(0.5, 10.0)

    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_a_cap_below_the_base_waits_the_base() -> None:
    assert [Backoff(2.0, 1.0).next() for _ in range(2)] == [2.0, 2.0]
