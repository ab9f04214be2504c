"""Analytics events: tracking, reports, dashboards and alert rules on PostgreSQL (or SQLite).

How an event travels::

    track_event / track_events_batch        the plugin's own event shape
    track / identify / page / group / alias / batch   the tracking spec (Segment's)
      -> events: checked (schema per event type, category, size, time) and
         turned into StoredEvents; the whole call is refused, naming every bad
         field, if one event is wrong
      -> buffer: held in memory (bounded, back-pressure) and written in
         batches, retried with backoff until the database takes them
      -> store: one SQL layer (SQLAlchemy Core) on PostgreSQL or SQLite,
         migrated at start (migrations), JSON access alike on both (sqljson)
    generate_report / dashboards -> reports -> store
    alert rules (config or operations) -> alerts -> notify -> the router

Every event has an ``event_id`` (the caller's, the spec's ``messageId``, or a
new one), unique in the table, so an event written twice is stored once.
"""

from .plugin import AnalyticsEventsPlugin

__all__ = ["AnalyticsEventsPlugin"]
