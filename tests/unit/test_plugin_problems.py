"""What the router reports when a provider refuses a plugin's own credentials or settings."""

from __future__ import annotations

from switchboard.router.dispatch import PROBLEM_REPORT_SECONDS, Problem, track_problem
from switchboard.router.kubernetes import problem_message


def test_a_problem_is_reported_at_once_then_at_most_every_interval() -> None:
    problems: dict[str, Problem] = {}
    first = track_problem(problems, "ns/sms", "configuration", "sender not on account", 100.0)
    assert first is not None and first.reason == "ProviderRejectedConfiguration"
    assert first.failures == 1
    assert (
        track_problem(problems, "ns/sms", "configuration", "sender not on account", 160.0) is None
    )
    later = track_problem(
        problems, "ns/sms", "configuration", "still not", 100.0 + PROBLEM_REPORT_SECONDS
    )
    assert later is not None
    assert (later.failures, later.message) == (3, "still not")


def test_a_different_problem_is_reported_at_once_and_counts_afresh() -> None:
    problems: dict[str, Problem] = {}
    track_problem(problems, "ns/sms", "configuration", "sender not on account", 0.0)
    credentials = track_problem(problems, "ns/sms", "unauthenticated", "bad token", 1.0)
    assert credentials is not None
    assert (credentials.reason, credentials.failures) == ("ProviderRejectedCredentials", 1)


def test_failures_that_say_nothing_about_the_plugin_are_not_problems() -> None:
    problems: dict[str, Problem] = {}
    for outcome in ("retryable", "invalid_input", "permanent", "timeout", "unknown_outcome"):
        assert track_problem(problems, "ns/sms", outcome, "x", 0.0) is None
    assert problems == {}


def test_the_event_names_what_was_refused_and_where_the_messages_went() -> None:
    text = problem_message(Problem("ProviderRejectedCredentials", "401 from the provider", 4))
    assert text.startswith("The provider refused this plugin's credentials: 401 from the provider")
    assert "4 failed attempt(s)" in text and "next plugin" in text
