"""Reports: from a report definition (``report_type``, ``parameters``) to its figures.

Every report reads a time range: ``start`` (inclusive) and ``end``
(exclusive, default now) as RFC 3339, or ``last`` (15m, 24h, 7d) instead of
``start``; the default is the last 24 hours. The store answers the queries;
this module checks the parameters and shapes the answers, the same for both
engines.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from switchboard.sdk import InvalidInput

from .events import iso, parse_time
from .schemas import DURATION, DURATION_UNITS, MONEY_PROPERTIES
from .sqljson import property_path, value_order
from .store import EventStore, Filters, FunnelStep

#: A time series has at most this many buckets.
MAX_BUCKETS: Final = 1000


async def run_report(
    store: EventStore, report_type: str, parameters: Mapping[str, Any], path: str
) -> dict[str, Any]:
    """The figures of one report; ``path`` names the parameters in error messages."""
    start, end = time_range(parameters, path)
    window = {"report_type": report_type, "start": iso(start), "end": iso(end)}
    filters = Filters(event_type=parameters.get("event_type"), category=parameters.get("category"))
    if report_type == "counts":
        result = {**window, **count_summary(await store.counts(start, end, filters))}
        if "breakdown" in parameters:
            result["breakdown"] = {
                "property": parameters["breakdown"],
                "values": await store.breakdown(
                    start,
                    end,
                    filters,
                    property_path(parameters["breakdown"]),
                    parameters.get("limit", 50),
                ),
            }
        return result
    if report_type == "timeseries":
        return {**window, **await _timeseries(store, start, end, filters, parameters, path)}
    if report_type == "funnel":
        steps = [funnel_step(step) for step in parameters["steps"]]
        users = await store.funnel(steps, start, end)
        return {**window, "steps": funnel_rows(steps, users)}
    if report_type == "revenue":
        event_types = parameters.get("event_types", ["transaction"])
        rows = await store.revenue(start, end, event_types)
        return {**window, "event_types": event_types, "currencies": money_rows(rows)}
    if report_type == "top":
        array, _, element = parameters["property"].partition("[].")
        path_keys = (element,) if element else (array,)
        items = await store.breakdown(
            start,
            end,
            Filters(event_type=parameters["event_type"]),
            path_keys,
            parameters.get("limit", 10),
            array=(array,) if element else (),
        )
        return {
            **window,
            "event_type": parameters["event_type"],
            "property": parameters["property"],
            "items": items,
        }
    counts = await store.counts(start, end)
    revenue = await store.revenue(start, end, sorted(MONEY_PROPERTIES))
    return {**window, **count_summary(counts), "currencies": money_rows(revenue)}


async def _timeseries(
    store: EventStore,
    start: datetime,
    end: datetime,
    filters: Filters,
    parameters: Mapping[str, Any],
    path: str,
) -> dict[str, Any]:
    interval = parameters.get("interval", "1h")
    width = duration(interval, f"{path}.interval")
    buckets = -(-(end - start) // width)
    if buckets > MAX_BUCKETS:
        raise InvalidInput(
            f"{path}.interval: {interval} makes {buckets} buckets over the range; "
            f"at most {MAX_BUCKETS}: widen the interval or narrow the range"
        )
    totals = {row["bucket"]: row for row in await store.timeseries(start, end, filters, width)}
    series = []
    for index in range(buckets):
        row = totals.get(index, {"count": 0, "users": 0})
        series.append(
            {"start": iso(start + index * width), "count": row["count"], "users": row["users"]}
        )
    result: dict[str, Any] = {"interval": interval, "buckets": series}
    if "breakdown" in parameters:
        rows = await store.timeseries(
            start, end, filters, width, property_path(parameters["breakdown"])
        )
        by_bucket: dict[int, list[dict[str, Any]]] = collections.defaultdict(list)
        for row in rows:
            by_bucket[row["bucket"]].append(
                {"value": row["value"], "count": row["count"], "users": row["users"]}
            )
        for index, bucket in enumerate(series):
            bucket["breakdown"] = sorted(
                by_bucket.get(index, []), key=lambda v: (-v["count"], *value_order(v["value"]))
            )
        result["breakdown_property"] = parameters["breakdown"]
    return result


def duration(text: str, path: str) -> timedelta:
    match = DURATION.match(text)
    if match is None:
        raise InvalidInput(f"{path}: use a number and a unit: 15m, 24h, 7d")
    return timedelta(seconds=int(match[1]) * DURATION_UNITS[match[2]])


def time_range(parameters: Mapping[str, Any], path: str) -> tuple[datetime, datetime]:
    """``[start, end)`` from start/end/last; default: the 24 hours before now."""
    end = datetime.now(UTC)
    if "end" in parameters:
        try:
            end = parse_time(parameters["end"])
        except ValueError as error:
            raise InvalidInput(f"{path}.end: {error}") from None
    if "start" in parameters and "last" in parameters:
        raise InvalidInput(f"{path}: give start or last, not both")
    if "start" in parameters:
        try:
            start = parse_time(parameters["start"])
        except ValueError as error:
            raise InvalidInput(f"{path}.start: {error}") from None
    else:
        start = end - duration(parameters.get("last", "24h"), f"{path}.last")
    if start >= end:
        raise InvalidInput(f"{path}: start {iso(start)} is not before end {iso(end)}")
    return start, end


def count_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
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


def funnel_step(step: str | Mapping[str, Any]) -> FunnelStep:
    if isinstance(step, str):
        return FunnelStep(step)
    return FunnelStep(step["event"], dict(step.get("where", {})))


def funnel_rows(steps: Sequence[FunnelStep], users: Sequence[int]) -> list[dict[str, Any]]:
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


def money_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
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
