"""Selection and failover: try plugins by priority and weight until one succeeds.

For one request: take the routes of the channel (or the one integration),
lowest priority number first; inside a priority, a weighted random order of
plugins; inside a plugin, its eligible endpoints in random order. Each
attempt gets the plugin's own timeout, cut to what is left of the overall
deadline. What happens after a failed attempt depends on its class:

    INVALID_INPUT, PERMANENT      stop: no other plugin will do better
    UNAUTHENTICATED               next plugin: this one's credentials are bad
    CONFIGURATION                 next plugin: this one's settings or account are wrong
    RETRYABLE with retry-after    next plugin; this one is held back that long
    RETRYABLE, refused connection next endpoint, then the next plugin
    UNKNOWN_OUTCOME, timeout,     the provider may have accepted it. AtLeastOnce: next
    connection broken mid-call    endpoint, then the next plugin (a possible duplicate);
                                  AtMostOnce: stop, the outcome is unknown

Every attempt is reported in the answer. A message only goes to plugins that
declare every capability it needs (attachments, templates, ...).

UNAUTHENTICATED and CONFIGURATION say something about the plugin, not the
message: the dispatcher keeps the plugin's latest such problem (shown by the
status view until the plugin delivers again) and tells ``on_problem`` when a
problem is new or last told more than ``PROBLEM_REPORT_SECONDS`` ago (the
Kubernetes backend turns that into a Warning Event on the resource).

Errors:

    DispatchError       the request could not be served; `code` is a stable
                        machine-readable word (the API turns it into a status)
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from opentelemetry import trace

from switchboard.router.endpoints import EndpointPool
from switchboard.router.idempotency import IdempotencyStore
from switchboard.router.metrics import RouterMetrics
from switchboard.router.settings import RouterSettings
from switchboard.router.table import (
    AT_MOST_ONCE,
    DEFAULT_DELIVERY,
    PluginRoute,
    RoutingTable,
    priority_groups,
    weighted_order,
)
from switchboard.sdk import (
    Attachment,
    ConfigError,
    InvalidInput,
    OutcomeUnknown,
    PermanentError,
    PluginClient,
    PluginError,
    RetryableError,
    Template,
    Unauthenticated,
)
from switchboard.sdk._messages import required_capabilities

R = TypeVar("R")
log = logging.getLogger("switchboard.router")


#: What an attempt can end with.
OUTCOMES = (
    "success",
    "invalid_input",
    "permanent",
    "unauthenticated",
    "configuration",
    "retryable",
    "unknown_outcome",
    "timeout",
    "unavailable",
)


@dataclass(frozen=True)
class Attempt:
    plugin: str
    endpoint: str
    outcome: str
    """One of `OUTCOMES`."""
    duration_ms: float
    message: str = ""
    retry_after_seconds: float | None = None


#: Attempt outcomes after which the provider may have accepted the message.
MAYBE_SENT = frozenset({"unknown_outcome", "timeout"})

#: Attempt outcomes that say the plugin itself is broken → the reason reported for it.
PLUGIN_PROBLEMS = {
    "unauthenticated": "ProviderRejectedCredentials",
    "configuration": "ProviderRejectedConfiguration",
}
#: A problem that persists is reported again after this long (not on every message).
PROBLEM_REPORT_SECONDS = 300.0


@dataclass
class Problem:
    """What the provider last said is wrong with a plugin's own settings or credentials."""

    reason: str
    """One of `PLUGIN_PROBLEMS`' values."""
    message: str
    failures: int = 1
    """Attempts that failed this way since the plugin last delivered."""
    reported_at: float = float("-inf")


def track_problem(
    problems: dict[str, Problem], plugin: str, outcome: str, message: str, now: float
) -> Problem | None:
    """Record a failed attempt of ``plugin``; the problem to report now, if any."""
    reason = PLUGIN_PROBLEMS.get(outcome)
    if reason is None:
        return None
    problem = problems.get(plugin)
    if problem is None or problem.reason != reason:
        problem = problems[plugin] = Problem(reason, message, 0)
    problem.failures += 1
    problem.message = message
    if now - problem.reported_at < PROBLEM_REPORT_SECONDS:
        return None
    problem.reported_at = now
    return problem


@dataclass(frozen=True)
class Outgoing:
    recipient: str
    content: str
    subject: str = ""
    content_type: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()
    template: Template | None = None
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()

    @property
    def needs(self) -> frozenset[str]:
        """The capabilities a plugin must declare to deliver this message."""
        return required_capabilities(self.attachments, self.template, self.cc, self.bcc)


@dataclass
class Routed:
    """A served request: which plugin did it, what it returned, every attempt."""

    plugin: str
    endpoint: str
    attempts: list[Attempt]
    provider_message_id: str = ""
    details: dict[str, str] = field(default_factory=dict)
    result: Any = None
    replayed: bool = False
    #: Further provider ids of the message (parts of a long SMS).
    part_ids: tuple[str, ...] = ()

    @property
    def possible_duplicate(self) -> bool:
        """An earlier attempt may have reached a provider before the one that succeeded."""
        return any(attempt.outcome in MAYBE_SENT for attempt in self.attempts[:-1])


class DispatchError(Exception):
    """A request no plugin served; ``code`` says why (the API maps it to a status)."""

    def __init__(
        self,
        code: str,
        message: str,
        attempts: list[Attempt] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.attempts = attempts or []
        self.retry_after = retry_after


def _as_plugin_error(raised: Exception, endpoint: str) -> PluginError:
    """A failed attempt as a typed error: a plugin's own, or an unknown outcome.

    Anything other than a ``PluginError`` (an answer the client could not
    use) still ends the attempt, never the request: the plugin may or may not
    have done the work, and the next one is tried.
    """
    if isinstance(raised, PluginError):
        return raised
    log.warning(
        "Could not use the answer of plugin endpoint",
        extra={"endpoint": endpoint, "error": f"{type(raised).__name__}: {raised}"},
    )
    error = OutcomeUnknown(
        f"The router could not use the plugin's answer ({type(raised).__name__})"
    )
    error.__cause__ = raised
    return error


def _outcome(error: PluginError) -> str:
    cause = error.__cause__
    if isinstance(cause, grpc.aio.AioRpcError) and not cause.trailing_metadata():
        code = cause.code()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return "timeout"
        if code == grpc.StatusCode.UNAVAILABLE:
            # Refused before the request left: safe to send elsewhere. Anything
            # else (reset, closed, GOAWAY) broke the call after it was sent.
            if "failed to connect" in (cause.details() or "").lower():
                return "unavailable"
            return "unknown_outcome"
    return str(error.error_class.value).lower()


class Dispatcher:
    def __init__(
        self,
        settings: RouterSettings,
        pool: EndpointPool,
        table: Callable[[], RoutingTable],
        metrics: RouterMetrics,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        tracer: trace.Tracer | None = None,
        on_problem: Callable[[PluginRoute, Problem], None] | None = None,
    ) -> None:
        self.settings, self.pool, self.table, self.metrics = settings, pool, table, metrics
        self.on_problem = on_problem
        #: Plugin id → its latest credentials or configuration problem (until it delivers).
        self.problems: dict[str, Problem] = {}
        self.tracer = tracer or trace.get_tracer("switchboard.router")
        self.rng = rng or random.Random()  # noqa: S311 - load spreading, not security
        self.clock = clock
        self.idempotency: IdempotencyStore[Routed] = IdempotencyStore(
            settings.idempotency_window_seconds, settings.idempotency_max_keys
        )

    async def send(
        self,
        tenant: str,
        channel: str,
        message: Outgoing,
        idempotency_key: str = "",
        *,
        policy: str = DEFAULT_DELIVERY,
        exclude: frozenset[str] = frozenset(),
        receipt_url: Callable[[PluginRoute], str] | None = None,
    ) -> Routed:
        """One round of attempts for ``message`` on ``channel``: the first plugin that takes it.

        ``exclude`` names plugins (``namespace/name``) not to try (a fallback after
        their receipt said the message failed); ``receipt_url`` gives each plugin
        the URL its provider should send delivery callbacks to.
        """
        routes = [r for r in self.table().channel(tenant, channel) if r.id not in exclude]
        if not routes:
            raise DispatchError(
                "NO_PLUGIN",
                f"No CommunicationPlugin serves channel {channel!r} in namespace {tenant!r}.",
            )
        needs = message.needs
        capable = [r for r in routes if needs <= set(r.capabilities)]
        if not capable:
            missing = ", ".join(sorted(needs))
            raise DispatchError(
                "NO_CAPABLE_PLUGIN",
                f"No plugin of channel {channel!r} in namespace {tenant!r} declares {missing}, "
                f"which this message needs; skipped: {', '.join(r.id for r in routes)}.",
            )

        async def call(client: PluginClient, route: PluginRoute, timeout: float) -> Routed:
            result = await client.send(
                message.recipient,
                message.content,
                subject=message.subject,
                content_type=message.content_type,
                metadata=message.metadata,
                idempotency_key=idempotency_key,
                tenant=tenant,
                attachments=message.attachments,
                template=message.template,
                cc=message.cc,
                bcc=message.bcc,
                receipt_url=receipt_url(route) if receipt_url is not None else "",
                timeout=timeout,
            )
            return Routed(
                "",
                "",
                [],
                provider_message_id=result.provider_message_id,
                details=dict(result.details),
                part_ids=result.part_ids,
            )

        return await self._route(
            "send",
            channel,
            list(priority_groups(capable)),
            call,
            at_most_once=policy == AT_MOST_ONCE,
        )

    async def invoke(
        self,
        tenant: str,
        integration: str,
        operation: str,
        params: Mapping[str, Any],
        idempotency_key: str = "",
    ) -> Routed:
        route = self.table().integration(tenant, integration)
        if route is None:
            raise DispatchError(
                "NO_PLUGIN",
                f"No VendorIntegration {integration!r} in namespace {tenant!r}.",
            )

        async def call(client: PluginClient, route: PluginRoute, timeout: float) -> Routed:
            result = await client.invoke(
                operation, params, idempotency_key=idempotency_key, tenant=tenant, timeout=timeout
            )
            return Routed("", "", [], result=result)

        async def work() -> Routed:
            return await self._route(
                "invoke", integration, [[route]] if route.enabled else [], call
            )

        if not idempotency_key:
            return await work()
        routed, replayed = await self.idempotency.run(
            tenant, f"invoke:{integration}:{idempotency_key}", work
        )
        return Routed(
            routed.plugin,
            routed.endpoint,
            [] if replayed else routed.attempts,
            result=routed.result,
            replayed=replayed,
        )

    def _note_problem(self, route: PluginRoute, outcome: str, message: str) -> None:
        problem = track_problem(self.problems, route.id, outcome, message, self.clock())
        if problem is None:
            return
        log.warning(
            "A provider rejected a plugin's own settings",
            extra={"plugin": route.id, "reason": problem.reason, "error": message},
        )
        if self.on_problem is not None:
            self.on_problem(route, problem)

    async def _route(
        self,
        kind: str,
        key: str,
        groups: list[list[PluginRoute]],
        call: Callable[[PluginClient, PluginRoute, float], Awaitable[Routed]],
        *,
        at_most_once: bool = False,
    ) -> Routed:
        deadline = self.clock() + self.settings.deadline_seconds
        attempts: list[Attempt] = []
        retry_after: float | None = None
        for group in groups:
            for route in weighted_order(group, self.rng):
                held = self.pool.held(route.id)
                if held > 0:
                    retry_after = held if retry_after is None else min(retry_after, held)
                    continue
                endpoints = [e for e in route.endpoints if self.pool.eligible(e)]
                self.rng.shuffle(endpoints)
                for endpoint in endpoints:
                    remaining = deadline - self.clock()
                    if remaining <= 0:
                        raise DispatchError(
                            "DEADLINE_EXCEEDED",
                            f"No plugin answered within {self.settings.deadline_seconds}s.",
                            attempts,
                        )
                    timeout = min(
                        route.timeout_seconds or self.settings.invoke_timeout_seconds, remaining
                    )
                    if attempts:
                        self.metrics.failovers.labels(kind, key).inc()
                    started = self.clock()
                    with self.tracer.start_as_current_span(
                        f"switchboard.attempt {route.id}",
                        attributes={"switchboard.plugin": route.id, "server.address": endpoint},
                    ) as span:
                        try:
                            routed = await call(self.pool.client(endpoint), route, timeout)
                        except Exception as raised:
                            error = _as_plugin_error(raised, endpoint)
                            outcome = _outcome(error)
                            span.set_attribute("switchboard.outcome", outcome)
                            elapsed = (self.clock() - started) * 1000
                            attempts.append(
                                Attempt(
                                    route.id,
                                    endpoint,
                                    outcome,
                                    round(elapsed, 3),
                                    error.message,
                                    getattr(error, "retry_after", None),
                                )
                            )
                            self.metrics.attempts.labels(route.id, outcome).inc()
                            self._note_problem(route, outcome, error.message)
                            if isinstance(error, InvalidInput | PermanentError):
                                self.pool.record_success(endpoint)  # the plugin itself is fine
                                raise DispatchError(
                                    error.error_class.value,
                                    error.message,
                                    attempts,
                                ) from error
                            if self.pool.record_failure(endpoint, started, route.id):
                                self.metrics.ejections.labels(route.id).inc()
                            if at_most_once and outcome in MAYBE_SENT:
                                raise DispatchError(
                                    "UNKNOWN_OUTCOME",
                                    f"{route.id} may have delivered the message "
                                    "(its answer never came); the channel is AtMostOnce, "
                                    "so no other plugin was tried.",
                                    attempts,
                                ) from error
                            if isinstance(error, RetryableError) and error.retry_after:
                                self.pool.hold(route.id, error.retry_after)
                                retry_after = error.retry_after
                                break  # the whole plugin asked for a pause
                            if isinstance(error, Unauthenticated | ConfigError):
                                break  # its credentials or settings are bad on every endpoint
                            continue
                    elapsed = (self.clock() - started) * 1000
                    self.pool.record_success(endpoint)
                    self.problems.pop(route.id, None)
                    self.metrics.attempts.labels(route.id, "success").inc()
                    attempts.append(Attempt(route.id, endpoint, "success", round(elapsed, 3)))
                    routed.plugin, routed.endpoint, routed.attempts = route.id, endpoint, attempts
                    return routed
        if not attempts:
            raise DispatchError(
                "NO_ENDPOINT",
                f"No ready endpoint for {key!r}: every plugin is unready, ejected or held back.",
                attempts,
                retry_after,
            )
        raise DispatchError(
            "UNAVAILABLE",
            f"Every plugin for {key!r} failed; see attempts.",
            attempts,
            retry_after,
        )
