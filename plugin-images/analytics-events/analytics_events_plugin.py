"""Analytics events: tracking, reports, dashboards and alert rules on PostgreSQL (or SQLite).

How an event travels::

    track_event / track_events_batch
      -> validated: the envelope by the SDK (JSON Schema), then each event's
         properties against its type's schema and its category against the
         configured list; the whole call is refused, naming every bad
         ``params.events[i].<field>``, if one event is wrong
      -> buffered in memory (bounded: ``max_buffered_events``; when full a call
         waits up to ``backpressure_timeout`` for room, then fails RETRYABLE)
      -> written in batches of ``batch_size`` as soon as a batch is full, and
         whatever is buffered every ``flush_interval`` seconds
      -> a failed write is retried with exponential backoff (tenacity) until it
         succeeds; the events stay buffered meanwhile, so none is lost to a
         database blip. ``deactivate`` (SIGTERM) writes what is left, for at
         most ``shutdown_flush_timeout`` seconds.

Every event has an ``event_id`` (the caller's, or a new one), unique in the
table, so a batch written twice (a retry after a lost commit acknowledgement)
or an event resent by the caller is stored once.

Reports (``generate_report``) and dashboards (saved report definitions) write
the buffer first, so they include every accepted event. Alert rules from the
config are evaluated every ``alert_evaluation_interval`` seconds over tumbling
windows; a rule whose count exceeds its threshold fires once per window: the
firing is claimed in the database, and the notification goes through the
router's ``POST /v1/messages`` with idempotency key ``alert:<rule>:<window
start>``, so a retried notification is delivered once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final

import jsonschema
from analytics_events_notify import (
    Notification,
    NotificationFailed,
    NotificationRejected,
    Notifier,
    RouterNotifier,
)
from analytics_events_store import (
    EventRejected,
    EventStore,
    FunnelStep,
    SchemaTooNew,
    StorageUnavailable,
    StoredEvent,
    open_store,
)
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_random_exponential,
)

from switchboard.sdk import (
    AnalyticsPlugin,
    ConfigError,
    InvalidInput,
    PermanentError,
    RetryableError,
    operation,
)

DEFAULT_CATEGORIES: Final = (
    "business",
    "technical",
    "security",
    "marketing",
    "product",
    "operations",
)
_CURRENCY = {"type": "string", "pattern": "^[A-Z]{3}$"}
_MONEY = {"type": "number", "minimum": 0, "maximum": 1_000_000_000_000}
#: Schemas of the built-in event types' ``properties``; the config may add or replace types.
BUILTIN_EVENT_SCHEMAS: Final[Mapping[str, Mapping[str, Any]]] = {
    "page_view": {
        "type": "object",
        "properties": {
            "url": {"type": "string", "minLength": 1, "maxLength": 2048},
            "title": {"type": "string", "maxLength": 512},
            "referrer": {"type": "string", "maxLength": 2048},
        },
        "required": ["url"],
    },
    "conversion": {
        "type": "object",
        "properties": {
            "goal": {"type": "string", "minLength": 1, "maxLength": 256},
            "value": _MONEY,
            "currency": _CURRENCY,
        },
        "required": ["goal"],
    },
    "transaction": {
        "type": "object",
        "properties": {
            "transaction_id": {"type": "string", "minLength": 1, "maxLength": 256},
            "amount": _MONEY,
            "currency": _CURRENCY,
            "items": {
                "type": "array",
                "maxItems": 500,
                "items": {
                    "type": "object",
                    "properties": {
                        "product_id": {"type": "string", "minLength": 1, "maxLength": 256},
                        "quantity": {"type": "integer", "minimum": 1},
                        "price": _MONEY,
                    },
                    "required": ["product_id"],
                },
            },
        },
        "required": ["transaction_id", "amount", "currency"],
    },
}
#: Where each type's monetary value is: (amount property, currency property).
_MONEY_PROPERTIES: Final = {
    "transaction": ("amount", "currency"),
    "conversion": ("value", "currency"),
}
_MAX_REPORTED_PROBLEMS: Final = 10
_DURATION = re.compile(r"^([1-9][0-9]{0,5})([smhdw])$")
_DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

_EVENT: Final[Mapping[str, Any]] = {
    "type": "object",
    "properties": {
        "event": {
            "type": "string",
            "pattern": "^[a-z][a-z0-9_.-]{0,63}$",
            "description": "Event type: page_view, conversion, transaction or a configured one",
        },
        "category": {
            "type": "string",
            "pattern": "^[a-z][a-z0-9_-]{0,31}$",
            "description": "business, technical, security, ... (default: the type's)",
        },
        "event_id": {
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "description": "Your id for the event: resent with the same id, it is stored once",
        },
        "user_id": {"type": "string", "maxLength": 256},
        "session_id": {"type": "string", "maxLength": 256},
        "timestamp": {"type": "string", "description": "RFC 3339; default: when received"},
        "properties": {"type": "object"},
    },
    "required": ["event"],
    "additionalProperties": False,
}
_TIME_RANGE: Final[Mapping[str, Any]] = {
    "start": {"type": "string", "description": "RFC 3339, inclusive"},
    "end": {"type": "string", "description": "RFC 3339, exclusive; default: now"},
    "last": {
        "type": "string",
        "pattern": _DURATION.pattern,
        "description": "Instead of start: this long before end, e.g. 15m, 24h, 7d",
    },
}
_REPORT_PARAMETERS: Final[Mapping[str, Mapping[str, Any]]] = {
    "counts": {
        "type": "object",
        "properties": {
            **_TIME_RANGE,
            "event_type": {"type": "string"},
            "category": {"type": "string"},
        },
        "additionalProperties": False,
    },
    "funnel": {
        "type": "object",
        "properties": {
            **_TIME_RANGE,
            "steps": {
                "type": "array",
                "minItems": 2,
                "maxItems": 10,
                "items": {
                    "oneOf": [
                        {"type": "string", "minLength": 1},
                        {
                            "type": "object",
                            "properties": {
                                "event": {"type": "string", "minLength": 1},
                                "where": {
                                    "type": "object",
                                    "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                                    "additionalProperties": {
                                        "type": ["string", "number", "boolean"]
                                    },
                                },
                            },
                            "required": ["event"],
                            "additionalProperties": False,
                        },
                    ]
                },
            },
        },
        "required": ["steps"],
        "additionalProperties": False,
    },
    "revenue": {
        "type": "object",
        "properties": {
            **_TIME_RANGE,
            "event_types": {
                "type": "array",
                "items": {"enum": sorted(_MONEY_PROPERTIES)},
                "minItems": 1,
                "uniqueItems": True,
            },
        },
        "additionalProperties": False,
    },
    "top": {
        "type": "object",
        "properties": {
            **_TIME_RANGE,
            "event_type": {"type": "string", "minLength": 1},
            "property": {
                "type": "string",
                "pattern": "^[A-Za-z_][A-Za-z0-9_]*(\\[\\]\\.[A-Za-z_][A-Za-z0-9_]*)?$",
                "description": "A property (url) or a property of array items (items[].product_id)",
            },
            "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
        },
        "required": ["event_type", "property"],
        "additionalProperties": False,
    },
    "summary": {
        "type": "object",
        "properties": {**_TIME_RANGE},
        "additionalProperties": False,
    },
}
_REPORT: Final[Mapping[str, Any]] = {
    "type": "object",
    "properties": {
        "report_type": {"enum": sorted(_REPORT_PARAMETERS)},
        "parameters": {"type": "object"},
    },
    "required": ["report_type"],
    "additionalProperties": False,
    "allOf": [
        {
            "if": {"properties": {"report_type": {"const": name}}, "required": ["report_type"]},
            "then": {"properties": {"parameters": schema}},
        }
        for name, schema in _REPORT_PARAMETERS.items()
    ],
}
_NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"}


@dataclass(frozen=True)
class AlertRule:
    """Fire when more than ``threshold`` matching events fall in one window."""

    name: str
    threshold: int
    window: timedelta
    channel: str
    recipient: str
    subject: str
    event_type: str | None
    category: str | None

    def window_start(self, moment: datetime) -> datetime:
        seconds = int(self.window.total_seconds())
        epoch = int(moment.timestamp())
        return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


@dataclass(frozen=True)
class _Options:
    database_url: str
    batch_size: int
    flush_interval: float
    max_buffered_events: int
    backpressure_timeout: float
    shutdown_flush_timeout: float
    database_timeout: float
    startup_timeout: float
    max_connections: int
    max_event_bytes: int
    categories: tuple[str, ...]
    default_category: str
    allow_undeclared_events: bool
    default_currency: str
    router_url: str | None
    alert_rules: tuple[AlertRule, ...]
    alert_evaluation_interval: float


class AnalyticsEventsPlugin(AnalyticsPlugin):
    """Event tracking with batching, reports, dashboards and alert rules."""

    vendor = "analytics"
    capabilities = ("event_tracking", "batching", "reports", "dashboards", "alert_rules")
    optional_secrets = ("ANALYTICS_DB_CONNECTION", "ROUTER_TOKEN")

    # --- lifecycle ------------------------------------------------------------------

    def validate_config(self) -> None:
        config = self.config
        url = str(config.get("database_url") or "sqlite:////tmp/analytics-events.sqlite3")
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
        self._schemas = self._compile_event_schemas(config.get("event_schemas", {}))
        rules = tuple(self._alert_rule(rule) for rule in config.get("alert_rules", []))
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
        self.options = _Options(
            database_url=url,
            batch_size=batch_size,
            flush_interval=float(config.get("flush_interval", 30)),
            max_buffered_events=max_buffered,
            backpressure_timeout=float(config.get("backpressure_timeout", 2)),
            shutdown_flush_timeout=float(config.get("shutdown_flush_timeout", 8)),
            database_timeout=float(config.get("database_timeout", 5)),
            startup_timeout=float(config.get("startup_timeout", 30)),
            max_connections=int(config.get("max_connections", 4)),
            max_event_bytes=int(config.get("max_event_bytes", 32_768)),
            categories=categories,
            default_category=default_category,
            allow_undeclared_events=bool(config.get("allow_undeclared_events", True)),
            default_currency=str(config.get("default_currency", "USD")),
            router_url=router_url,
            alert_rules=rules,
            alert_evaluation_interval=float(config.get("alert_evaluation_interval", 15)),
        )

    async def initialize(self) -> None:
        self._buffer: collections.deque[StoredEvent] = collections.deque()
        self._changed = asyncio.Condition()
        self._write_lock = asyncio.Lock()
        self._stopping = False
        self._give_up_at: float | None = None
        self._storing_failed = False
        self._tasks: list[asyncio.Task[None]] = []
        self.store = await self._open_store()
        self.notifier = self.build_notifier()

    async def activate(self) -> None:
        self._tasks.append(asyncio.create_task(self._flush_periodically(), name="analytics-flush"))
        if self.options.alert_rules:
            self._tasks.append(
                asyncio.create_task(self._evaluate_alerts_periodically(), name="analytics-alerts")
            )

    async def deactivate(self) -> None:
        """Stop alerting, then write every buffered event (for ``shutdown_flush_timeout`` s)."""
        loop = asyncio.get_running_loop()
        self._stopping = True
        self._give_up_at = loop.time() + self.options.shutdown_flush_timeout
        async with self._changed:
            self._changed.notify_all()
        for task in self._tasks:
            if task.get_name() == "analytics-alerts":
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        buffered = len(self._buffer)
        try:
            await self._drain(everything=True)
        except StorageUnavailable as error:
            self.logger.error(
                "Lost buffered events: the database stayed unavailable while stopping",
                extra={"lost_events": len(self._buffer), "error": str(error)},
            )
        else:
            self.logger.info("Flushed buffered events before stopping", extra={"events": buffered})

    async def cleanup(self) -> None:
        if self.notifier is not None:
            await self.notifier.close()
        await self.store.close()

    def build_notifier(self) -> Notifier | None:
        """The notifier for alert rules; override to send elsewhere (tests, other transports)."""
        if not self.options.alert_rules or self.options.router_url is None:
            return None
        return RouterNotifier(
            self.options.router_url,
            self.secrets["ROUTER_TOKEN"],
            timeout=self.options.database_timeout,
        )

    # --- tracking -------------------------------------------------------------------

    @operation(schema=_EVENT)
    async def track_event(self, params: dict[str, Any]) -> Any:
        """Record one event (buffered; written within flush_interval)."""
        [event] = self._validate([params], lambda _: "params")
        await self._enqueue([event])
        return {"accepted": 1, "event_id": event.event_id}

    @operation(
        schema={
            "type": "object",
            "properties": {
                "events": {"type": "array", "items": _EVENT, "minItems": 1, "maxItems": 1000}
            },
            "required": ["events"],
            "additionalProperties": False,
        }
    )
    async def track_events_batch(self, params: dict[str, Any]) -> Any:
        """Record up to 1000 events at once: all are accepted, or none."""
        events = self._validate(params["events"], lambda index: f"params.events[{index}]")
        await self._enqueue(events)
        return {"accepted": len(events), "event_ids": [event.event_id for event in events]}

    # --- reports and dashboards ------------------------------------------------------

    @operation(schema=_REPORT)
    async def generate_report(self, params: dict[str, Any]) -> Any:
        """Counts, a conversion funnel, revenue, top values, or a summary, over a time range."""
        await self._flush_for_read()
        return await self._report(
            params["report_type"], params.get("parameters", {}), "params.parameters"
        )

    @operation(
        schema={
            "type": "object",
            "properties": {
                "name": _NAME,
                "title": {"type": "string", "maxLength": 200},
                "description": {"type": "string", "maxLength": 2000},
                "widgets": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 24,
                    "items": {
                        **_REPORT,
                        "properties": {**_REPORT["properties"], "title": {"type": "string"}},
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
            _time_range(widget.get("parameters", {}), f"params.widgets[{index}].parameters")
        now = datetime.now(UTC)
        saved = await self._storing(
            self.store.save_dashboard(
                params["name"], definition, replace=params.get("replace", False), now=now
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
            "properties": {"name": _NAME, **_TIME_RANGE},
            "required": ["name"],
            "additionalProperties": False,
        }
    )
    async def get_dashboard(self, params: dict[str, Any]) -> Any:
        """A saved dashboard with every widget's data (time range: the call's or the widget's)."""
        stored = await self._storing(self.store.get_dashboard(params["name"]))
        if stored is None:
            raise PermanentError(f"no dashboard named {params['name']!r}")
        await self._flush_for_read()
        override = {key: params[key] for key in _TIME_RANGE if key in params}
        definition = stored["definition"]
        widgets = []
        for index, widget in enumerate(definition["widgets"]):
            parameters = dict(widget.get("parameters", {}))
            if override:
                for key in _TIME_RANGE:
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
            "updated_at": _iso(stored["updated_at"]),
            "widgets": widgets,
        }

    @operation(
        schema={
            "type": "object",
            "properties": {"rule": _NAME},
            "additionalProperties": False,
        }
    )
    async def list_alert_rules(self, params: dict[str, Any]) -> Any:
        """The configured alert rules and the windows in which they fired."""
        firings = await self._storing(self.store.alert_firings(params.get("rule")))
        return {
            "rules": [
                {
                    "name": rule.name,
                    "event_type": rule.event_type,
                    "category": rule.category,
                    "threshold": rule.threshold,
                    "window_seconds": int(rule.window.total_seconds()),
                    "channel": rule.channel,
                    "recipient": rule.recipient,
                }
                for rule in self.options.alert_rules
                if params.get("rule") in (None, rule.name)
            ],
            "firings": [
                {
                    **firing,
                    "window_start": _iso(firing["window_start"]),
                    "notified_at": _iso(firing["notified_at"]) if firing["notified_at"] else None,
                }
                for firing in firings
            ],
        }

    # --- validation -----------------------------------------------------------------

    def _validate(self, raw_events: Sequence[Mapping[str, Any]], where: Any) -> list[StoredEvent]:
        """Events ready to store, or ``InvalidInput`` naming every bad field of every event."""
        problems: list[str] = []
        events: list[StoredEvent] = []
        now = datetime.now(UTC)
        for index, raw in enumerate(raw_events):
            path = where(index)
            before = len(problems)
            event_type = raw["event"]
            category = raw.get("category", self.options.default_category)
            if category not in self.options.categories:
                problems.append(
                    f"{path}.category: {category!r} is not one of {list(self.options.categories)}"
                )
            properties = raw.get("properties", {})
            validator = self._schemas.get(event_type)
            if validator is None and not self.options.allow_undeclared_events:
                problems.append(
                    f"{path}.event: {event_type!r} has no schema "
                    f"(declared: {', '.join(sorted(self._schemas))})"
                )
            elif validator is not None:
                for error in sorted(validator.iter_errors(properties), key=lambda e: list(e.path)):
                    problems.append(
                        f"{path}.properties{_json_path(error.absolute_path)}: {error.message}"
                    )
            problems += [
                f"{path}.properties{where_nul}: contains a NUL character, which cannot be stored"
                for where_nul in _nul_paths(properties)
            ]
            size = len(json.dumps(properties, separators=(",", ":")).encode())
            if size > self.options.max_event_bytes:
                problems.append(
                    f"{path}.properties: {size} bytes is over the limit of "
                    f"{self.options.max_event_bytes}"
                )
            occurred_at = now
            if "timestamp" in raw:
                try:
                    occurred_at = _parse_time(raw["timestamp"])
                except ValueError as error:
                    problems.append(f"{path}.timestamp: {error}")
            if len(problems) > before:
                continue
            amount_e4, currency = self._money(event_type, properties)
            events.append(
                StoredEvent(
                    event_id=raw.get("event_id") or uuid.uuid4().hex,
                    event_type=event_type,
                    category=category,
                    user_id=raw.get("user_id"),
                    session_id=raw.get("session_id"),
                    occurred_at=occurred_at,
                    received_at=now,
                    properties=properties,
                    amount_e4=amount_e4,
                    currency=currency,
                )
            )
        if problems:
            shown = problems[:_MAX_REPORTED_PROBLEMS]
            if len(problems) > _MAX_REPORTED_PROBLEMS:
                shown.append(f"and {len(problems) - _MAX_REPORTED_PROBLEMS} more")
            raise InvalidInput("; ".join(shown))
        return events

    def _money(
        self, event_type: str, properties: Mapping[str, Any]
    ) -> tuple[int | None, str | None]:
        keys = _MONEY_PROPERTIES.get(event_type)
        if keys is None or not isinstance(properties.get(keys[0]), int | float):
            return None, None
        amount = Decimal(str(properties[keys[0]])) * 10_000
        currency = str(properties.get(keys[1]) or self.options.default_currency)
        return int(amount.to_integral_value(ROUND_HALF_EVEN)), currency

    @staticmethod
    def _compile_event_schemas(custom: Mapping[str, Any]) -> dict[str, Any]:
        validators = {}
        for name, schema in {**BUILTIN_EVENT_SCHEMAS, **custom}.items():
            cls = jsonschema.validators.validator_for(schema)
            try:
                cls.check_schema(schema)
            except jsonschema.SchemaError as error:
                where = _json_path(error.path)
                raise ConfigError(
                    f"config.event_schemas.{name}{where}: not a valid JSON Schema: {error.message}"
                ) from None
            validators[name] = cls(schema, format_checker=cls.FORMAT_CHECKER)
        return validators

    @staticmethod
    def _alert_rule(rule: Mapping[str, Any]) -> AlertRule:
        return AlertRule(
            name=rule["name"],
            threshold=int(rule["threshold"]),
            window=timedelta(seconds=int(rule["window_seconds"])),
            channel=rule["channel"],
            recipient=rule["recipient"],
            subject=rule.get("subject") or f"Analytics alert: {rule['name']}",
            event_type=rule.get("event_type"),
            category=rule.get("category"),
        )

    # --- buffering and writing --------------------------------------------------------

    async def _enqueue(self, events: Sequence[StoredEvent]) -> None:
        capacity = self.options.max_buffered_events
        if len(events) > capacity:
            raise InvalidInput(
                f"params.events: {len(events)} events are more than the plugin buffers "
                f"({capacity}); send smaller batches"
            )
        if self._stopping:
            raise RetryableError("The plugin is stopping; send the events again", retry_after=1)
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: len(self._buffer) + len(events) <= capacity),
                    timeout=self.options.backpressure_timeout,
                )
            except TimeoutError:
                raise RetryableError(
                    f"The event buffer is full ({len(self._buffer)} of {capacity} events) "
                    "because the database is not keeping up; try again shortly",
                    retry_after=max(1.0, self.options.flush_interval / 2),
                ) from None
            self._buffer.extend(events)
            if len(self._buffer) >= self.options.batch_size:
                self._changed.notify_all()

    async def _flush_periodically(self) -> None:
        """Write full batches as they fill, and everything every ``flush_interval``."""
        loop = asyncio.get_running_loop()
        options = self.options
        next_flush = loop.time() + options.flush_interval
        while not self._stopping:
            async with self._changed:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(
                            lambda: len(self._buffer) >= options.batch_size or self._stopping
                        ),
                        timeout=max(0.0, next_flush - loop.time()),
                    )
                    timed_out = False
                except TimeoutError:
                    timed_out = True
            if self._stopping:
                return
            try:
                await self._drain(everything=timed_out)
            except StorageUnavailable:
                continue  # only when stopping: deactivate takes over
            except Exception:
                self.logger.exception("Failed to write events")
                await asyncio.sleep(min(1.0, options.flush_interval))
            if timed_out:
                next_flush = loop.time() + options.flush_interval

    async def _drain(self, *, everything: bool) -> None:
        """Write buffered events in batches: all present now, or only full batches."""
        async with self._write_lock:
            remaining = len(self._buffer)
            batch_size = self.options.batch_size
            while self._buffer and (
                remaining > 0 if everything else len(self._buffer) >= batch_size
            ):
                batch = list(itertools.islice(self._buffer, batch_size))
                await self._write(batch)
                for _ in batch:
                    self._buffer.popleft()
                remaining -= len(batch)
                async with self._changed:
                    self._changed.notify_all()

    async def _write(self, batch: Sequence[StoredEvent]) -> None:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(StorageUnavailable),
            # Full jitter: replicas that lost the database together don't retry in step.
            wait=wait_random_exponential(
                multiplier=0.05, max=max(0.2, min(5.0, self.options.flush_interval))
            ),
            stop=self._should_give_up,
            before_sleep=self._note_failed_write,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                try:
                    await self.store.insert_events(batch)
                except EventRejected:
                    # One value the database cannot store must not block the rest:
                    # write the batch event by event and drop only what it refuses.
                    await self._write_one_by_one(batch)
        if self._storing_failed:
            self._storing_failed = False
            self.logger.info("Stored events again", extra={"buffered": len(self._buffer)})
            await self.report_health(True)

    async def _write_one_by_one(self, batch: Sequence[StoredEvent]) -> None:
        for event in batch:
            try:
                await self.store.insert_events([event])
            except EventRejected as error:
                self.logger.error(
                    "Dropped an event the database refused",
                    extra={
                        "event_id": event.event_id,
                        "event_type": event.event_type,
                        "error": str(error),
                    },
                )

    def _should_give_up(self, state: RetryCallState) -> bool:
        give_up_at = self._give_up_at
        return give_up_at is not None and asyncio.get_running_loop().time() >= give_up_at

    async def _note_failed_write(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if not self._storing_failed:
            self._storing_failed = True
            self.logger.warning(
                "Could not store events; retrying",
                extra={"buffered": len(self._buffer), "error": str(error)},
            )
        # Say NOT_SERVING only once the buffer can't absorb much more: until then
        # the plugin still accepts events and loses none.
        if len(self._buffer) >= 0.9 * self.options.max_buffered_events:
            await self.report_health(False)

    async def _flush_for_read(self) -> None:
        try:
            await asyncio.wait_for(
                self._drain(everything=True), timeout=max(1.0, 2 * self.options.database_timeout)
            )
        except (TimeoutError, StorageUnavailable):
            raise RetryableError(
                "The database is unavailable; events are kept and the report can be asked again",
                retry_after=1.0,
            ) from None

    async def _storing(self, work: Any) -> Any:
        try:
            return await work
        except StorageUnavailable as error:
            raise RetryableError(str(error), retry_after=1.0) from None

    async def _open_store(self) -> EventStore:
        options = self.options
        deadline = asyncio.get_running_loop().time() + options.startup_timeout
        delay = 0.2
        while True:
            store = open_store(
                options.database_url,
                max_connections=options.max_connections,
                timeout=options.database_timeout,
            )
            try:
                applied = await store.open()
            except SchemaTooNew as error:
                await store.close()
                raise ConfigError(f"config.database_url: {error}") from None
            except StorageUnavailable as error:
                with contextlib.suppress(Exception):
                    await store.close()
                if asyncio.get_running_loop().time() + delay > deadline:
                    raise RuntimeError(
                        f"the database stayed unavailable for {options.startup_timeout:g}s: {error}"
                    ) from None
                self.logger.warning("Waiting for the database", extra={"error": str(error)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.logger.info(
                "Opened the event store",
                extra={"backend": store.dialect.name, "migrations_applied": applied},
            )
            return store

    # --- reports ----------------------------------------------------------------------

    async def _report(self, report_type: str, parameters: Mapping[str, Any], path: str) -> Any:
        start, end = _time_range(parameters, path)
        store = self.store
        window = {"start": _iso(start), "end": _iso(end)}
        try:
            if report_type == "counts":
                rows = await store.counts(
                    start,
                    end,
                    event_type=parameters.get("event_type"),
                    category=parameters.get("category"),
                )
                return {"report_type": "counts", **window, **_count_summary(rows)}
            if report_type == "funnel":
                steps = [_funnel_step(step) for step in parameters["steps"]]
                users = await store.funnel(steps, start, end)
                return {"report_type": "funnel", **window, "steps": _funnel_rows(steps, users)}
            if report_type == "revenue":
                event_types = parameters.get("event_types", ["transaction"])
                rows = await store.revenue(start, end, event_types)
                return {
                    "report_type": "revenue",
                    **window,
                    "event_types": event_types,
                    "currencies": _money_rows(rows),
                }
            if report_type == "top":
                limit = parameters.get("limit", 10)
                rows = await store.top(
                    parameters["event_type"], parameters["property"], start, end, limit
                )
                return {
                    "report_type": "top",
                    **window,
                    "event_type": parameters["event_type"],
                    "property": parameters["property"],
                    "items": rows,
                }
            counts = await store.counts(start, end)
            revenue = await store.revenue(start, end, sorted(_MONEY_PROPERTIES))
            return {
                "report_type": "summary",
                **window,
                **_count_summary(counts),
                "currencies": _money_rows(revenue),
            }
        except StorageUnavailable as error:
            raise RetryableError(str(error), retry_after=1.0) from None

    # --- alerts -----------------------------------------------------------------------

    async def _evaluate_alerts_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.options.alert_evaluation_interval)
            try:
                await self.evaluate_alerts(datetime.now(UTC))
            except StorageUnavailable as error:
                self.logger.warning("Could not evaluate alert rules", extra={"error": str(error)})
            except Exception:
                self.logger.exception("Failed to evaluate alert rules")

    async def evaluate_alerts(self, now: datetime) -> None:
        """Check every rule over its current and previous window; notify once per window."""
        for rule in self.options.alert_rules:
            current = rule.window_start(now)
            for start in (current - rule.window, current):
                count = await self.store.count_in_window(
                    start, start + rule.window, event_type=rule.event_type, category=rule.category
                )
                if count <= rule.threshold:
                    continue
                claim = await self.store.claim_alert(rule.name, start, count, now)
                if claim.status == "pending":
                    await self._notify(rule, start, count, now)

    async def _notify(self, rule: AlertRule, start: datetime, count: int, now: datetime) -> None:
        if self.notifier is None:
            return
        what = " ".join(part for part in (rule.category, rule.event_type) if part) or "analytics"
        end = start + rule.window
        notification = Notification(
            channel=rule.channel,
            recipient=rule.recipient,
            subject=rule.subject,
            content=(
                f"{count} {what} events between {_iso(start)} and {_iso(end)}: more than the "
                f"threshold of {rule.threshold} for alert rule {rule.name}."
            ),
            idempotency_key=f"alert:{rule.name}:{_iso(start)}",
        )
        try:
            await self.notifier.send(notification)
        except NotificationFailed as error:
            self.logger.warning(
                "Could not send an alert notification; retrying on the next evaluation",
                extra={"rule": rule.name, "window_start": _iso(start), "error": str(error)},
            )
            return
        except NotificationRejected as error:
            self.logger.error(
                "The router rejected an alert notification",
                extra={"rule": rule.name, "window_start": _iso(start), "error": str(error)},
            )
            await self.store.settle_alert(
                rule.name, start, status="rejected", now=now, error=str(error)
            )
            return
        await self.store.settle_alert(rule.name, start, status="sent", now=now)
        self.logger.info(
            "Sent an alert notification",
            extra={"rule": rule.name, "window_start": _iso(start), "events": count},
        )


# --- helpers ------------------------------------------------------------------------------


def _json_path(path: Iterable[Any]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)


def _nul_paths(value: Any, path: str = "") -> Iterable[str]:
    """Where NUL characters are in a JSON value (PostgreSQL's text and jsonb refuse them)."""
    if isinstance(value, str):
        if "\x00" in value:
            yield path
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if "\x00" in key:
                yield f"{path}.{key!r}"
            yield from _nul_paths(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_paths(item, f"{path}[{index}]")


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 date-time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone (add Z or an offset such as +02:00)")
    return moment.astimezone(UTC)


def _time_range(parameters: Mapping[str, Any], path: str) -> tuple[datetime, datetime]:
    """``[start, end)`` from start/end/last; default: the 24 hours before now."""
    end = datetime.now(UTC)
    if "end" in parameters:
        try:
            end = _parse_time(parameters["end"])
        except ValueError as error:
            raise InvalidInput(f"{path}.end: {error}") from None
    if "start" in parameters and "last" in parameters:
        raise InvalidInput(f"{path}: give start or last, not both")
    if "start" in parameters:
        try:
            start = _parse_time(parameters["start"])
        except ValueError as error:
            raise InvalidInput(f"{path}.start: {error}") from None
    else:
        match = _DURATION.match(parameters.get("last", "24h"))
        if match is None:
            raise InvalidInput(f"{path}.last: use a number and a unit: 15m, 24h, 7d")
        start = end - timedelta(seconds=int(match[1]) * _DURATION_UNITS[match[2]])
    if start >= end:
        raise InvalidInput(f"{path}: start {_iso(start)} is not before end {_iso(end)}")
    return start, end


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _count_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    by_type: dict[str, int] = collections.Counter()
    by_category: dict[str, int] = collections.Counter()
    for row in rows:
        by_type[row["event_type"]] += row["count"]
        by_category[row["category"]] += row["count"]
    return {
        "total": sum(by_type.values()),
        "by_type": dict(sorted(by_type.items())),
        "by_category": dict(sorted(by_category.items())),
        "rows": list(rows),
    }


def _funnel_step(step: str | Mapping[str, Any]) -> FunnelStep:
    if isinstance(step, str):
        return FunnelStep(step)
    where = {
        key: (str(value).lower() if isinstance(value, bool) else str(value))
        for key, value in step.get("where", {}).items()
    }
    return FunnelStep(step["event"], where)


def _funnel_rows(steps: Sequence[FunnelStep], users: Sequence[int]) -> list[dict[str, Any]]:
    rows = []
    for index, (step, reached) in enumerate(zip(steps, users, strict=True)):
        previous = users[index - 1] if index else reached
        rows.append(
            {
                "step": index + 1,
                "event": step.event_type,
                "where": dict(step.where),
                "users": reached,
                "conversion_from_previous": round(reached / previous, 4) if previous else 0.0,
                "conversion_from_first": round(reached / users[0], 4) if users[0] else 0.0,
            }
        )
    return rows


def _money_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    result = []
    for row in rows:
        total = Decimal(row["total_e4"]) / 10_000
        result.append(
            {
                "currency": row["currency"],
                "total": float(total),
                "total_exact": f"{total:.4f}",
                "events": row["events"],
                "users": row["users"],
            }
        )
    return result
