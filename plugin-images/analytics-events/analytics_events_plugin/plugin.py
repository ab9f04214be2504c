"""The analytics-events plugin: its configuration, lifecycle and operations.

The work happens in the modules beside it: ``events`` checks what callers
send, ``buffer`` batches it into the database, ``store`` is the database
(SQLAlchemy Core on PostgreSQL or SQLite), ``reports`` turns report
definitions into figures, ``alerts`` evaluates alert rules and ``notify``
sends their notifications through the router.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from switchboard.sdk import (
    AnalyticsPlugin,
    Backoff,
    ConfigError,
    PermanentError,
    RetryableError,
    operation,
)

from .alerts import AlertEvaluator, AlertRule
from .buffer import BufferSettings, EventBuffer
from .events import Accepted, EventValidator, Rules, iso
from .migrations import SchemaTooNew
from .notify import Notifier, RouterNotifier
from .reports import run_report, time_range
from .schemas import (
    ALERT_RULE,
    DEFAULT_CATEGORIES,
    EVENT,
    NAME,
    REPORT,
    SPEC_BATCH,
    SPEC_CALLS,
    TIME_RANGE,
    USER,
)
from .store import EventStore, StorageUnavailable, open_store

_DEFAULT_DATABASE = "sqlite:////tmp/analytics-events.sqlite3"


@dataclass(frozen=True)
class _Options:
    database_url: str
    buffer: BufferSettings
    shutdown_flush_timeout: float
    startup_timeout: float
    max_connections: int
    router_url: str | None
    alert_rules: tuple[AlertRule, ...]
    alert_evaluation_interval: float


class AnalyticsEventsPlugin(AnalyticsPlugin):
    """Event tracking with batching, reports, dashboards and alert rules."""

    vendor = "analytics"
    capabilities = (
        "event_tracking",
        "tracking_spec",
        "batching",
        "reports",
        "dashboards",
        "alert_rules",
        "privacy_requests",
    )
    optional_secrets = ("ANALYTICS_DB_CONNECTION", "ROUTER_TOKEN")

    # --- lifecycle ------------------------------------------------------------------

    def validate_config(self) -> None:
        config = self.config
        url = str(config.get("database_url") or _DEFAULT_DATABASE)
        if not url.startswith(("postgresql://", "postgres://", "sqlite://")):
            raise ConfigError(
                "config.database_url: use postgresql://user:password@host:5432/db, "
                "or sqlite:///path for local mode"
            )
        batch_size = int(config.get("batch_size", 100))
        max_buffered = int(config.get("max_buffered_events", max(10_000, batch_size)))
        if max_buffered < batch_size:
            raise ConfigError(
                f"config.max_buffered_events: {max_buffered} is less than batch_size "
                f"{batch_size}; the buffer must hold at least one batch"
            )
        categories = tuple(config.get("categories", DEFAULT_CATEGORIES))
        default_category = str(config.get("default_category", "business"))
        if default_category not in categories:
            raise ConfigError(
                f"config.default_category: {default_category!r} is not in categories {categories}"
            )
        self.validator = EventValidator(
            Rules(
                categories=categories,
                default_category=default_category,
                allow_undeclared_events=bool(config.get("allow_undeclared_events", True)),
                default_currency=str(config.get("default_currency", "USD")),
                max_event_bytes=int(config.get("max_event_bytes", 32_768)),
                max_clock_skew=timedelta(seconds=float(config.get("max_clock_skew", 300))),
                late_after=timedelta(days=float(config.get("late_after_days", 30))),
            ),
            config.get("event_schemas", {}),
        )
        rules = tuple(AlertRule.from_definition(rule) for rule in config.get("alert_rules", []))
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            raise ConfigError(f"config.alert_rules: rule names must be unique, got {names}")
        router_url = config.get("router_url")
        if rules and not router_url:
            raise ConfigError("config.router_url: needed to send the notifications of alert_rules")
        if rules and not self.secrets.get("ROUTER_TOKEN"):
            raise ConfigError(
                "secret ROUTER_TOKEN: needed to authenticate alert notifications to the router"
            )
        database_timeout = float(config.get("database_timeout", 5))
        self.options = _Options(
            database_url=url,
            buffer=BufferSettings(
                batch_size=batch_size,
                flush_interval=float(config.get("flush_interval", 30)),
                max_buffered_events=max_buffered,
                backpressure_timeout=float(config.get("backpressure_timeout", 2)),
                database_timeout=database_timeout,
            ),
            shutdown_flush_timeout=float(config.get("shutdown_flush_timeout", 8)),
            startup_timeout=float(config.get("startup_timeout", 30)),
            max_connections=int(config.get("max_connections", 4)),
            router_url=router_url,
            alert_rules=rules,
            alert_evaluation_interval=float(config.get("alert_evaluation_interval", 15)),
        )

    async def initialize(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []
        self.store = await self._open_store()
        self.buffer = EventBuffer(self.store, self.options.buffer, self.logger, self.report_health)
        self.notifier = self.build_notifier()
        self.alerts = AlertEvaluator(self.store, self.notifier, self.logger)

    async def activate(self) -> None:
        self._tasks.append(
            asyncio.create_task(self.buffer.flush_periodically(), name="analytics-flush")
        )
        if self.notifier is not None:
            self._tasks.append(
                asyncio.create_task(self._evaluate_alerts_periodically(), name="analytics-alerts")
            )

    async def deactivate(self) -> None:
        """Stop alerting, then write every buffered event (for ``shutdown_flush_timeout`` s)."""
        await self.buffer.stop(self.options.shutdown_flush_timeout)
        for task in self._tasks:
            if task.get_name() == "analytics-alerts":
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        buffered = len(self.buffer)
        try:
            await self.buffer.drain(everything=True)
        except StorageUnavailable as error:
            self.logger.error(
                "Lost buffered events: the database stayed unavailable while stopping",
                extra={"lost_events": len(self.buffer), "error": str(error)},
            )
        else:
            self.logger.info("Flushed buffered events before stopping", extra={"events": buffered})

    async def cleanup(self) -> None:
        if self.notifier is not None:
            await self.notifier.close()
        await self.store.close()

    def build_notifier(self) -> Notifier | None:
        """The notifier for alert rules; override to send elsewhere (tests, other transports)."""
        token = self.secrets.get("ROUTER_TOKEN")
        if self.options.router_url is None or not token:
            return None
        return RouterNotifier(
            self.options.router_url, token, timeout=self.options.buffer.database_timeout
        )

    # --- tracking: the plugin's own events ---------------------------------------------

    @operation(schema=EVENT)
    async def track_event(self, params: dict[str, Any]) -> Any:
        """Record one event (buffered; written within flush_interval)."""
        accepted = self.validator.own_events([params], lambda _: "params")
        await self.buffer.add(accepted.events)
        return {"accepted": 1, "event_id": accepted.events[0].event_id, **_flags(accepted)}

    @operation(
        schema={
            "type": "object",
            "properties": {
                "events": {"type": "array", "items": EVENT, "minItems": 1, "maxItems": 1000}
            },
            "required": ["events"],
            "additionalProperties": False,
        }
    )
    async def track_events_batch(self, params: dict[str, Any]) -> Any:
        """Record up to 1000 events at once: all are accepted, or none."""
        accepted = self.validator.own_events(params["events"], lambda i: f"params.events[{i}]")
        await self.buffer.add(accepted.events)
        return {
            "accepted": len(accepted.events),
            "event_ids": [event.event_id for event in accepted.events],
            **_flags(accepted),
        }

    # --- tracking: the tracking spec (Segment's) --------------------------------------

    @operation(schema=SPEC_CALLS["track"])
    async def track(self, params: dict[str, Any]) -> Any:
        """Record what a user did ("Order Completed"), as the tracking spec's track call."""
        return await self._spec_call("track", params)

    @operation(schema=SPEC_CALLS["identify"])
    async def identify(self, params: dict[str, Any]) -> Any:
        """Record who a user is: traits merged into their profile."""
        return await self._spec_call("identify", params)

    @operation(schema=SPEC_CALLS["page"])
    async def page(self, params: dict[str, Any]) -> Any:
        """Record a page view (stored as page_view; url from properties or context.page)."""
        return await self._spec_call("page", params)

    @operation(schema=SPEC_CALLS["group"])
    async def group(self, params: dict[str, Any]) -> Any:
        """Record that a user belongs to a group (company, account), with the group's traits."""
        return await self._spec_call("group", params)

    @operation(schema=SPEC_CALLS["alias"])
    async def alias(self, params: dict[str, Any]) -> Any:
        """Record that previousId (an anonymous id) is userId: reports count them as one."""
        return await self._spec_call("alias", params)

    @operation(schema=SPEC_BATCH)
    async def batch(self, params: dict[str, Any]) -> Any:
        """Up to 1000 calls of the tracking spec at once (each with its ``type``): all or none."""
        accepted = self.validator.spec_calls(
            [(call["type"], call) for call in params["batch"]],
            lambda index: f"params.batch[{index}]",
            batch_context=params.get("context"),
            batch_sent_at=params.get("sentAt"),
        )
        await self.buffer.add(accepted.events)
        return {
            "accepted": len(accepted.events),
            "event_ids": [event.event_id for event in accepted.events],
            **_flags(accepted),
        }

    async def _spec_call(self, call: str, params: Mapping[str, Any]) -> Any:
        accepted = self.validator.spec_calls([(call, params)], lambda _: "params")
        await self.buffer.add(accepted.events)
        return {"accepted": 1, "event_id": accepted.events[0].event_id, **_flags(accepted)}

    # --- privacy requests ----------------------------------------------------------------

    @operation(schema=USER)
    async def delete_user_data(self, params: dict[str, Any]) -> Any:
        """Delete one person's events, traits and aliases (a privacy request), buffered ones too."""
        user_id = params["user_id"]
        ids = await self._storing(self.store.ids_of_person(user_id))
        buffered = await self.buffer.forget_person(ids)
        removed = await self._storing(self.store.delete_person(ids))
        self.logger.info(
            "Deleted a person's data",
            extra={"ids": len(ids), "events": removed["events"] + buffered},
        )
        return {"user_id": user_id, "deleted": {**removed, "buffered_events": buffered}}

    @operation(schema=USER)
    async def get_user_profile(self, params: dict[str, Any]) -> Any:
        """A person's traits (from identify), the ids they used and how many events they have."""
        await self.buffer.flush_for_read()
        user_id = params["user_id"]
        ids = await self._storing(self.store.ids_of_person(user_id))
        profiles = [await self._storing(self.store.profile(key)) for key in sorted(ids)]
        traits: dict[str, Any] = {}
        seen = [profile for profile in profiles if profile is not None]
        for profile in sorted(seen, key=lambda p: p["last_seen"]):
            traits.update(profile["traits"])
        return {
            "user_id": user_id,
            "ids": sorted(ids),
            "traits": traits,
            "events": await self._storing(self.store.count_person_events(ids)),
            "first_seen": iso(min(p["first_seen"] for p in seen)) if seen else None,
            "last_seen": iso(max(p["last_seen"] for p in seen)) if seen else None,
        }

    # --- reports and dashboards ------------------------------------------------------

    @operation(schema=REPORT)
    async def generate_report(self, params: dict[str, Any]) -> Any:
        """Counts (broken down by any property), a time series, a funnel, revenue, top values."""
        await self.buffer.flush_for_read()
        return await self._report(
            params["report_type"], params.get("parameters", {}), "params.parameters"
        )

    @operation(
        schema={
            "type": "object",
            "properties": {
                "name": NAME,
                "title": {"type": "string", "maxLength": 200},
                "description": {"type": "string", "maxLength": 2000},
                "widgets": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 24,
                    "items": {
                        **REPORT,
                        "properties": {**REPORT["properties"], "title": {"type": "string"}},
                    },
                },
                "replace": {"type": "boolean", "default": False},
            },
            "required": ["name", "widgets"],
            "additionalProperties": False,
        }
    )
    async def create_dashboard(self, params: dict[str, Any]) -> Any:
        """Save a dashboard: named report definitions that ``get_dashboard`` evaluates."""
        definition: dict[str, Any] = {
            key: params[key] for key in ("title", "description", "widgets") if key in params
        }
        for index, widget in enumerate(params["widgets"]):
            # Check the time ranges now rather than when the dashboard is opened.
            time_range(widget.get("parameters", {}), f"params.widgets[{index}].parameters")
        saved = await self._storing(
            self.store.save_dashboard(
                params["name"],
                definition,
                replace=params.get("replace", False),
                now=datetime.now(UTC),
            )
        )
        if not saved:
            existing = await self._storing(self.store.get_dashboard(params["name"]))
            if existing is None or existing["definition"] != definition:
                raise PermanentError(
                    f"dashboard {params['name']!r} exists with another definition; "
                    "pass replace: true to overwrite it"
                )
        return {"name": params["name"], "widgets": len(params["widgets"]), "saved": True}

    @operation(
        schema={
            "type": "object",
            "properties": {"name": NAME, **TIME_RANGE},
            "required": ["name"],
            "additionalProperties": False,
        }
    )
    async def get_dashboard(self, params: dict[str, Any]) -> Any:
        """A saved dashboard with every widget's data (time range: the call's or the widget's)."""
        stored = await self._storing(self.store.get_dashboard(params["name"]))
        if stored is None:
            raise PermanentError(f"no dashboard named {params['name']!r}")
        await self.buffer.flush_for_read()
        override = {key: params[key] for key in TIME_RANGE if key in params}
        definition = stored["definition"]
        widgets = []
        for index, widget in enumerate(definition["widgets"]):
            parameters = dict(widget.get("parameters", {}))
            if override:
                for key in TIME_RANGE:
                    parameters.pop(key, None)
                parameters.update(override)
            data = await self._report(
                widget["report_type"], parameters, f"dashboard widgets[{index}].parameters"
            )
            widgets.append(
                {
                    "title": widget.get("title", ""),
                    "report_type": widget["report_type"],
                    "data": data,
                }
            )
        return {
            "name": params["name"],
            "title": definition.get("title", ""),
            "description": definition.get("description", ""),
            "updated_at": iso(stored["updated_at"]),
            "widgets": widgets,
        }

    @operation(schema={"type": "object", "additionalProperties": False})
    async def list_dashboards(self, params: dict[str, Any]) -> Any:
        """Every saved dashboard: name, title, widget count, when created and last changed."""
        stored = await self._storing(self.store.list_dashboards())
        return {
            "dashboards": [
                {
                    "name": row["name"],
                    "title": row["definition"].get("title", ""),
                    "widgets": len(row["definition"]["widgets"]),
                    "created_at": iso(row["created_at"]),
                    "updated_at": iso(row["updated_at"]),
                }
                for row in stored
            ]
        }

    @operation(
        schema={
            "type": "object",
            "properties": {"name": NAME},
            "required": ["name"],
            "additionalProperties": False,
        }
    )
    async def delete_dashboard(self, params: dict[str, Any]) -> Any:
        """Delete a saved dashboard; ``deleted`` is false if there was none (retry-safe)."""
        deleted = await self._storing(self.store.delete_dashboard(params["name"]))
        return {"name": params["name"], "deleted": deleted}

    # --- alert rules ----------------------------------------------------------------

    @operation(
        schema={
            "type": "object",
            "properties": {"rule": NAME},
            "additionalProperties": False,
        }
    )
    async def list_alert_rules(self, params: dict[str, Any]) -> Any:
        """The alert rules (from the config and from operations) and the windows they fired in."""
        wanted = params.get("rule")
        rules = await self._storing(self.alert_rules())
        firings = await self._storing(self.store.alert_firings(wanted))
        return {
            "rules": [rule.describe() for rule in rules if wanted in (None, rule.name)],
            "firings": [
                {
                    **firing,
                    "window_start": iso(firing["window_start"]),
                    "notified_at": iso(firing["notified_at"]) if firing["notified_at"] else None,
                }
                for firing in firings
            ],
        }

    @operation(
        schema={
            **ALERT_RULE,
            "properties": {
                **ALERT_RULE["properties"],
                "replace": {"type": "boolean", "default": False},
            },
        }
    )
    async def create_alert_rule(self, params: dict[str, Any]) -> Any:
        """Add an alert rule (kept in the database, evaluated by every replica)."""
        if self.notifier is None:
            raise PermanentError(
                "alert rules need config.router_url and the secret ROUTER_TOKEN to notify anyone"
            )
        name = params["name"]
        if any(rule.name == name for rule in self.options.alert_rules):
            raise PermanentError(f"alert rule {name!r} is defined in the config; change it there")
        definition = {key: value for key, value in params.items() if key != "replace"}
        saved = await self._storing(
            self.store.save_alert_rule(
                name, definition, replace=params.get("replace", False), now=datetime.now(UTC)
            )
        )
        if not saved:
            existing = await self._storing(self.store.get_alert_rule(name))
            if existing is None or existing["definition"] != definition:
                raise PermanentError(
                    f"alert rule {name!r} exists with another definition; "
                    "pass replace: true to overwrite it"
                )
        return {
            "rule": AlertRule.from_definition(definition, "operation").describe(),
            "saved": True,
        }

    @operation(
        schema={
            "type": "object",
            "properties": {"name": NAME},
            "required": ["name"],
            "additionalProperties": False,
        }
    )
    async def delete_alert_rule(self, params: dict[str, Any]) -> Any:
        """Delete a rule made by ``create_alert_rule``; ``deleted`` is false if there was none."""
        name = params["name"]
        if any(rule.name == name for rule in self.options.alert_rules):
            raise PermanentError(f"alert rule {name!r} is defined in the config; remove it there")
        deleted = await self._storing(self.store.delete_alert_rule(name))
        return {"name": name, "deleted": deleted}

    async def alert_rules(self) -> list[AlertRule]:
        """The rules in force: the config's, then those made through operations."""
        stored = await self.store.list_alert_rules()
        return [
            *self.options.alert_rules,
            *(AlertRule.from_definition(row["definition"], "operation") for row in stored),
        ]

    async def evaluate_alerts(self, now: datetime) -> None:
        """Evaluate every rule in force at ``now``."""
        await self.alerts.evaluate(await self.alert_rules(), now)

    # --- plumbing -------------------------------------------------------------------

    async def _evaluate_alerts_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.options.alert_evaluation_interval)
            try:
                await self.evaluate_alerts(datetime.now(UTC))
            except StorageUnavailable as error:
                self.logger.warning("Could not evaluate alert rules", extra={"error": str(error)})
            except Exception:
                self.logger.exception("Failed to evaluate alert rules")

    async def _report(self, report_type: str, parameters: Mapping[str, Any], path: str) -> Any:
        try:
            return await run_report(self.store, report_type, parameters, path)
        except StorageUnavailable as error:
            raise RetryableError(str(error), retry_after=1.0) from None

    async def _storing(self, work: Any) -> Any:
        try:
            return await work
        except StorageUnavailable as error:
            raise RetryableError(str(error), retry_after=1.0) from None

    async def _open_store(self) -> EventStore:
        options = self.options
        deadline = asyncio.get_running_loop().time() + options.startup_timeout
        backoff = Backoff(0.2, 5.0)
        while True:
            store = open_store(
                options.database_url,
                max_connections=options.max_connections,
                timeout=options.buffer.database_timeout,
            )
            try:
                applied = await store.open()
            except SchemaTooNew as error:
                await store.close()
                raise ConfigError(f"config.database_url: {error}") from None
            except StorageUnavailable as error:
                delay = backoff.next()
                if asyncio.get_running_loop().time() + delay > deadline:
                    raise RuntimeError(
                        f"the database stayed unavailable for {options.startup_timeout:g}s: {error}"
                    ) from None
                self.logger.warning("Waiting for the database", extra={"error": str(error)})
                await asyncio.sleep(delay)
                continue
            self.logger.info(
                "Opened the event store",
                extra={"backend": store.backend, "migrations_applied": applied},
            )
            return store


def _flags(accepted: Accepted) -> dict[str, Any]:
    return {"flagged": accepted.flagged} if accepted.flagged else {}
