"""From what callers send to the events the plugin stores, with every problem named.

Two ways in, one result (``StoredEvent``):

* the plugin's own events (``track_event``/``track_events_batch``): ``event``,
  ``category``, ``user_id``, ``properties`` ...;
* the tracking spec analytics libraries speak (Segment's): ``track`` with any
  event name ("Order Completed"), ``identify`` (traits), ``page``, ``group``,
  ``alias``, ``userId``/``anonymousId``, ``context``, ``messageId``, and
  ``timestamp``/``sentAt`` with the device's clock skew taken out.

Each event's ``properties`` are checked against its type's JSON Schema, its
category against the configured list, its size, NUL characters (PostgreSQL
can't store them) and its time: more than ``max_clock_skew`` in the future is
refused, older than ``late_after`` is accepted and flagged ``late``. A call
is accepted whole or refused whole, ``InvalidInput`` naming up to ten
problems by path (``params.batch[3].userId: ...``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final

import jsonschema

from switchboard.sdk import ConfigError, InvalidInput

from .schemas import BUILTIN_EVENT_SCHEMAS, MONEY_PROPERTIES, SPEC_REVENUE

_MAX_REPORTED_PROBLEMS: Final = 10
#: The event types the spec's calls other than ``track`` are stored as.
SPEC_EVENT_TYPES: Final = {
    "identify": "identify",
    "page": "page_view",
    "group": "group",
    "alias": "alias",
}


@dataclass(frozen=True)
class StoredEvent:
    """One accepted event, as it is written."""

    event_id: str
    event_type: str
    category: str
    user_id: str | None
    session_id: str | None
    occurred_at: datetime
    received_at: datetime
    properties: Mapping[str, Any]
    #: Monetary value in ten-thousandths of ``currency`` (exact sums), if any.
    amount_e4: int | None = None
    currency: str | None = None
    #: The tracking spec's call (track, identify, page, group, alias); None: the plugin's own.
    call: str | None = None
    anonymous_id: str | None = None
    context: Mapping[str, Any] | None = None
    #: Older than ``late_after`` when received.
    late: bool = False

    @property
    def people(self) -> set[str]:
        """The ids that name this event's person (for deleting one person's data)."""
        return {key for key in (self.user_id, self.anonymous_id) if key}


@dataclass(frozen=True)
class Accepted:
    events: list[StoredEvent]
    #: ``{"index": i, "event_id": ..., "reason": ...}`` for each accepted but flagged event.
    flagged: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Rules:
    categories: tuple[str, ...]
    default_category: str
    allow_undeclared_events: bool
    default_currency: str
    max_event_bytes: int
    max_clock_skew: timedelta
    late_after: timedelta


class EventValidator:
    """Checks calls against the configured event schemas and rules."""

    def __init__(self, rules: Rules, custom_schemas: Mapping[str, Any]) -> None:
        self.rules = rules
        self.schemas = compile_event_schemas(custom_schemas)

    def own_events(
        self, raw_events: Sequence[Mapping[str, Any]], path_of: Callable[[int], str]
    ) -> Accepted:
        """The plugin's own event shape (``event``, ``user_id``, ...)."""
        now = datetime.now(UTC)
        checked = _Checked()
        for index, raw in enumerate(raw_events):
            path = path_of(index)
            checked.start(index)
            occurred_at = self._time(checked, path, raw.get("timestamp"), None, now)
            self._add(
                checked,
                path,
                now,
                occurred_at,
                event_id=raw.get("event_id"),
                event_type=raw["event"],
                category=raw.get("category", self.rules.default_category),
                user_id=raw.get("user_id"),
                session_id=raw.get("session_id"),
                properties=raw.get("properties", {}),
            )
        return checked.result()

    def spec_calls(
        self,
        calls: Sequence[tuple[str, Mapping[str, Any]]],
        path_of: Callable[[int], str],
        *,
        batch_context: Mapping[str, Any] | None = None,
        batch_sent_at: str | None = None,
    ) -> Accepted:
        """Calls of the tracking spec: (``track``/``identify``/..., the call's fields)."""
        now = datetime.now(UTC)
        checked = _Checked()
        for index, (call, raw) in enumerate(calls):
            path = path_of(index)
            checked.start(index)
            user_id = _id(raw.get("userId"))
            anonymous_id = _id(raw.get("anonymousId"))
            if call != "alias" and user_id is None and anonymous_id is None:
                checked.problem(f"{path}: give userId or anonymousId (or both)")
            context = {**(batch_context or {}), **raw.get("context", {})}
            occurred_at = self._time(
                checked,
                path,
                raw.get("timestamp") or raw.get("originalTimestamp"),
                raw.get("sentAt") or batch_sent_at,
                now,
            )
            event_type, properties = _spec_event(call, raw, context)
            if call == "page" and "url" not in properties:
                checked.problem(f"{path}.properties.url: required (or context.page.url)")
                continue
            self._add(
                checked,
                path,
                now,
                occurred_at,
                event_id=raw.get("messageId"),
                event_type=event_type,
                category=raw.get("category", self.rules.default_category),
                user_id=user_id,
                session_id=None,
                properties=properties,
                call=call,
                anonymous_id=anonymous_id,
                context=context or None,
            )
        return checked.result()

    # --- the checks ---------------------------------------------------------------------

    def _add(
        self,
        checked: _Checked,
        path: str,
        now: datetime,
        occurred_at: datetime | None,
        *,
        event_id: str | None,
        event_type: str,
        category: str,
        user_id: str | None,
        session_id: str | None,
        properties: Mapping[str, Any],
        call: str | None = None,
        anonymous_id: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        rules = self.rules
        if category not in rules.categories:
            checked.problem(f"{path}.category: {category!r} is not one of {list(rules.categories)}")
        validator = self.schemas.get(event_type)
        if validator is None and not rules.allow_undeclared_events and call in (None, "track"):
            checked.problem(
                f"{path}.event: {event_type!r} has no schema "
                f"(declared: {', '.join(sorted(self.schemas))})"
            )
        elif validator is not None:
            for error in sorted(validator.iter_errors(properties), key=lambda e: list(e.path)):
                checked.problem(
                    f"{path}.properties{json_path(error.absolute_path)}: {error.message}"
                )
        for where, value in (("properties", properties), ("context", context or {})):
            for nul in nul_paths(value):
                checked.problem(
                    f"{path}.{where}{nul}: contains a NUL character, which cannot be stored"
                )
        size = len(json.dumps([properties, context], separators=(",", ":")).encode())
        if size > rules.max_event_bytes:
            checked.problem(
                f"{path}.properties: {size} bytes (with the context) is over the limit of "
                f"{rules.max_event_bytes}"
            )
        if checked.failed or occurred_at is None:
            return
        amount_e4, currency = self._money(event_type, properties)
        event = StoredEvent(
            event_id=event_id or uuid.uuid4().hex,
            event_type=event_type,
            category=category,
            user_id=user_id,
            session_id=session_id,
            occurred_at=occurred_at,
            received_at=now,
            properties=properties,
            amount_e4=amount_e4,
            currency=currency,
            call=call,
            anonymous_id=anonymous_id,
            context=context,
            late=now - occurred_at > rules.late_after,
        )
        checked.accept(event)

    def _time(
        self,
        checked: _Checked,
        path: str,
        timestamp: str | None,
        sent_at: str | None,
        now: datetime,
    ) -> datetime | None:
        """When the event happened, the device's clock skew taken out; None if refused."""
        if timestamp is None:
            return now
        try:
            moment = parse_time(timestamp)
        except ValueError as error:
            checked.problem(f"{path}.timestamp: {error}")
            return None
        if sent_at is not None:
            try:
                # The device's clock said sent_at when we got it at `now`.
                moment += now - parse_time(sent_at)
            except ValueError as error:
                checked.problem(f"{path}.sentAt: {error}")
                return None
        if moment - now > self.rules.max_clock_skew:
            checked.problem(
                f"{path}.timestamp: {iso(moment)} is more than "
                f"{self.rules.max_clock_skew.total_seconds():g}s in the future"
            )
            return None
        return moment

    def _money(
        self, event_type: str, properties: Mapping[str, Any]
    ) -> tuple[int | None, str | None]:
        amount_key, currency_key = MONEY_PROPERTIES.get(event_type, SPEC_REVENUE)
        amount = properties.get(amount_key)
        if isinstance(amount, bool) or not isinstance(amount, int | float):
            return None, None
        currency = str(properties.get(currency_key) or self.rules.default_currency)
        exact = Decimal(str(amount)) * 10_000
        return int(exact.to_integral_value(ROUND_HALF_EVEN)), currency


class _Checked:
    """Accepted events and problems, as one call's events are checked."""

    def __init__(self) -> None:
        self.events: list[StoredEvent] = []
        self.flagged: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self._index = 0
        self._problems_before = 0

    def start(self, index: int) -> None:
        self._index = index
        self._problems_before = len(self.problems)

    @property
    def failed(self) -> bool:
        return len(self.problems) > self._problems_before

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def accept(self, event: StoredEvent) -> None:
        self.events.append(event)
        if event.late:
            self.flagged.append(
                {
                    "index": self._index,
                    "event_id": event.event_id,
                    "reason": f"late: happened at {iso(event.occurred_at)}",
                }
            )

    def result(self) -> Accepted:
        if self.problems:
            shown = self.problems[:_MAX_REPORTED_PROBLEMS]
            if len(self.problems) > _MAX_REPORTED_PROBLEMS:
                shown.append(f"and {len(self.problems) - _MAX_REPORTED_PROBLEMS} more")
            raise InvalidInput("; ".join(shown))
        return Accepted(self.events, self.flagged)


def _spec_event(
    call: str, raw: Mapping[str, Any], context: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The event type and properties a call of the tracking spec is stored with."""
    if call == "track":
        return str(raw["event"]), dict(raw.get("properties", {}))
    if call == "identify":
        return SPEC_EVENT_TYPES[call], dict(raw.get("traits", {}))
    if call == "page":
        page = context.get("page")
        properties = {
            **{
                key: value
                for key, value in (page if isinstance(page, Mapping) else {}).items()
                if key in ("url", "title", "referrer", "path", "search")
            },
            **raw.get("properties", {}),
        }
        if raw.get("name"):
            properties.setdefault("name", raw["name"])
        return SPEC_EVENT_TYPES[call], properties
    if call == "group":
        return SPEC_EVENT_TYPES[call], {
            "group_id": _id(raw["groupId"]),
            "traits": dict(raw.get("traits", {})),
        }
    return SPEC_EVENT_TYPES[call], {"previous_id": _id(raw["previousId"])}


def _id(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Identities:
    """What a batch of events says about people: traits, groups and who is who."""

    #: user key -> (traits to merge, when)
    profiles: dict[str, tuple[dict[str, Any], datetime]]
    #: group id -> (traits to merge, when)
    groups: dict[str, tuple[dict[str, Any], datetime]]
    #: previous (anonymous) id -> user id
    aliases: dict[str, str]


def identities(events: Iterable[StoredEvent]) -> Identities:
    """Traits from ``identify``, groups from ``group``, and aliases from ``alias`` and from
    any call naming both a user id and an anonymous id (later calls win)."""
    found = Identities({}, {}, {})
    for event in sorted(events, key=lambda e: e.occurred_at):
        if event.user_id and event.anonymous_id and event.anonymous_id != event.user_id:
            found.aliases[event.anonymous_id] = event.user_id
        if event.call == "alias" and event.user_id:
            found.aliases[str(event.properties["previous_id"])] = event.user_id
        key = event.user_id or event.anonymous_id
        if event.call == "identify" and key:
            traits, _ = found.profiles.get(key, ({}, event.occurred_at))
            found.profiles[key] = ({**traits, **event.properties}, event.occurred_at)
        if event.call == "group":
            group_id = str(event.properties["group_id"])
            traits, _ = found.groups.get(group_id, ({}, event.occurred_at))
            found.groups[group_id] = ({**traits, **event.properties["traits"]}, event.occurred_at)
    return found


def compile_event_schemas(custom: Mapping[str, Any]) -> dict[str, Any]:
    """A validator per event type: the built-in ones with ``custom`` added or replacing."""
    validators = {}
    for name, schema in {**BUILTIN_EVENT_SCHEMAS, **custom}.items():
        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as error:
            raise ConfigError(
                f"config.event_schemas.{name}{json_path(error.path)}: "
                f"not a valid JSON Schema: {error.message}"
            ) from None
        validators[name] = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return validators


def json_path(path: Iterable[Any]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)


def nul_paths(value: Any, path: str = "") -> Iterator[str]:
    """Where NUL characters are in a JSON value (PostgreSQL's text and jsonb refuse them)."""
    if isinstance(value, str):
        if "\x00" in value:
            yield path
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if "\x00" in key:
                yield f"{path}.{key!r}"
            yield from nul_paths(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from nul_paths(item, f"{path}[{index}]")


def parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 date-time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone (add Z or an offset such as +02:00)")
    return moment.astimezone(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
