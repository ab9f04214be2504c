"""Alarms and events: what VOLTHA's change events and device states mean, and where they are kept.

``from_change_event`` and ``from_device_state`` turn what VOLTHA says into
entries (pure functions): a port going down is a ``major`` alarm, a deleted
port ``minor``, a device disconnecting ``critical``, an OpenFlow error
``major``; an enabled device turning FAILED or UNREACHABLE is ``critical``;
ports added, devices reconnecting and other state changes are ``info``
events.

``AlarmLog`` keeps them numbered (``seq``), the newest ``capacity`` of them:
in memory, or, with a path, in a SQLite file, so the history survives a
restart of the plugin (put the file on a mounted volume: the pod's root
filesystem is read-only). Reading it never asks VOLTHA, so it answers while
VOLTHA is down.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from voltha_protos import device_pb2, openflow_13_pb2

from .views import ADMIN, CONNECT, OPER

_T = TypeVar("_T")
_OFP = openflow_13_pb2
SEVERITIES: Final = ("info", "warning", "minor", "major", "critical")
#: (admin state, oper status, connect status) of a device, as last seen.
DeviceState = tuple[int, int, int]


@dataclass(frozen=True)
class Query:
    """Which entries ``get_alarms`` wants."""

    after_seq: int = 0
    device_id: str | None = None
    min_severity: str = "info"
    alarms_only: bool = False
    limit: int = 100


def from_change_event(event: openflow_13_pb2.ChangeEvent) -> dict[str, Any] | None:
    """The entry for one ``ReceiveChangeEvents`` event, or None for kinds not followed."""
    which = event.WhichOneof("event")
    if which == "port_status":
        status = event.port_status
        port = status.desc
        link_down = bool(port.state & _OFP.OFPPS_LINK_DOWN)
        if status.reason == _OFP.OFPPR_DELETE:
            severity, alarm, what = "minor", True, "was deleted"
        elif link_down:
            severity, alarm, what = "major", True, "is down"
        elif status.reason == _OFP.OFPPR_ADD:
            severity, alarm, what = "info", False, "was added"
        else:
            severity, alarm, what = "info", False, "is up"
        return entry(
            kind="port_status",
            alarm=alarm,
            severity=severity,
            logical_device_id=event.id,
            description=f"Port {port.name or port.port_no} {what}",
            details={
                "reason": _OFP.ofp_port_reason.Name(status.reason),
                "port_no": port.port_no,
                "port_name": port.name,
                "link_down": link_down,
            },
        )
    if which == "device_status":
        connected = event.device_status.status == _OFP.OFPDEV_CONNECTED
        return entry(
            kind="device_status",
            alarm=not connected,
            severity="info" if connected else "critical",
            logical_device_id=event.id,
            description=f"Device {'connected' if connected else 'disconnected'}",
            details={"status": _OFP.ofp_device_connection.Name(event.device_status.status)},
        )
    if which == "error":
        error = event.error
        return entry(
            kind="openflow_error",
            alarm=True,
            severity="major",
            logical_device_id=event.id,
            description=f"OpenFlow error type {error.type} code {error.code}",
            details={"type": error.type, "code": error.code, "data": error.data.hex()},
        )
    return None


def from_device_state(
    device: device_pb2.Device, previous: DeviceState | None
) -> dict[str, Any] | None:
    """The entry for a device's state as polled, or None when nothing worth saying changed.

    An enabled device that failed or can't be reached is an alarm, also when
    first seen (say, after a restart of the plugin); any other change is an event.
    """
    state = (device.admin_state, device.oper_status, device.connect_status)
    broken = device.admin_state == ADMIN.ENABLED and (
        device.oper_status == OPER.FAILED or device.connect_status == CONNECT.UNREACHABLE
    )
    if previous == state or (previous is None and not broken):
        return None
    return entry(
        kind="device_state",
        alarm=broken,
        severity="critical" if broken else "info",
        device_id=device.id,
        description=(
            f"{'OLT' if device.root else 'ONU'} {device.serial_number or device.id} is "
            f"{ADMIN.Name(device.admin_state)}/{OPER.Name(device.oper_status)}/"
            f"{CONNECT.Name(device.connect_status)}"
        ),
        details={
            "admin_state": ADMIN.Name(device.admin_state),
            "oper_status": OPER.Name(device.oper_status),
            "connect_status": CONNECT.Name(device.connect_status),
            "previous_oper_status": OPER.Name(previous[1]) if previous else None,
            "reason": device.reason,
        },
    )


def entry(
    *,
    kind: str,
    alarm: bool,
    severity: str,
    description: str,
    details: Mapping[str, Any],
    device_id: str = "",
    logical_device_id: str = "",
) -> dict[str, Any]:
    """An alarm or event, before the log numbers it."""
    return {
        "received_at": now(),
        "kind": kind,
        "alarm": alarm,
        "severity": severity,
        "device_id": device_id,
        "logical_device_id": logical_device_id,
        "description": description,
        "details": dict(details),
    }


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AlarmLog:
    """The newest ``capacity`` entries, numbered; in memory, or in SQLite with ``open(path)``."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: collections.deque[dict[str, Any]] = collections.deque(maxlen=capacity)
        self._sequence = itertools.count(1)
        self.dropped = 0

    @staticmethod
    async def open(path: str | None, capacity: int) -> AlarmLog:
        if path is None:
            return AlarmLog(capacity)
        log = _SqliteAlarmLog(path, capacity)
        await log.start()
        return log

    @property
    def last_seq(self) -> int:
        return int(self._entries[-1]["seq"]) if self._entries else 0

    async def append(self, new: Mapping[str, Any]) -> None:
        if len(self._entries) == self._entries.maxlen:
            self.dropped += 1
        self._entries.append({"seq": next(self._sequence), **new})

    async def select(self, query: Query) -> list[dict[str, Any]]:
        return list(itertools.islice(_matching(self._entries, query), query.limit))

    async def close(self) -> None:
        pass


def _matching(entries: Iterable[dict[str, Any]], query: Query) -> Iterable[dict[str, Any]]:
    floor = SEVERITIES.index(query.min_severity)
    for item in entries:
        if (
            item["seq"] > query.after_seq
            and SEVERITIES.index(item["severity"]) >= floor
            and (not query.alarms_only or item["alarm"])
            and (query.device_id in (None, item["device_id"], item["logical_device_id"]))
        ):
            yield item


class _SqliteAlarmLog(AlarmLog):
    """The log in a SQLite file: survives restarts; ``seq`` carries on."""

    _SCHEMA: Final = (
        "CREATE TABLE IF NOT EXISTS alarms ("
        " seq INTEGER PRIMARY KEY AUTOINCREMENT, severity_rank INTEGER NOT NULL,"
        " alarm INTEGER NOT NULL, device_id TEXT NOT NULL, logical_device_id TEXT NOT NULL,"
        " entry TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS alarm_log (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    )

    def __init__(self, path: str, capacity: int) -> None:
        super().__init__(capacity)
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voltha-alarms")
        self._db: sqlite3.Connection | None = None
        self._last_seq = 0

    async def start(self) -> None:
        await self._run(self._connect)

    def _connect(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        for statement in self._SCHEMA:
            db.execute(statement)
        self._db = db
        self._last_seq = int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM alarms").fetchone()[0])
        row = db.execute("SELECT value FROM alarm_log WHERE key = 'dropped'").fetchone()
        self.dropped = int(row[0]) if row else 0

    @property
    def last_seq(self) -> int:
        return self._last_seq

    async def append(self, new: Mapping[str, Any]) -> None:
        self._last_seq = await self._run(lambda: self._insert(new))

    def _insert(self, new: Mapping[str, Any]) -> int:
        db = self._connection()
        with db:
            cursor = db.execute(
                "INSERT INTO alarms (severity_rank, alarm, device_id, logical_device_id, entry)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    SEVERITIES.index(new["severity"]),
                    int(bool(new["alarm"])),
                    new["device_id"],
                    new["logical_device_id"],
                    json.dumps(dict(new), separators=(",", ":")),
                ),
            )
            seq = int(cursor.lastrowid or 0)
            pruned = db.execute("DELETE FROM alarms WHERE seq <= ?", (seq - self.capacity,))
            if pruned.rowcount > 0:
                self.dropped += pruned.rowcount
                db.execute(
                    "INSERT INTO alarm_log (key, value) VALUES ('dropped', ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (self.dropped,),
                )
        return seq

    async def select(self, query: Query) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            conditions = ["seq > ?", "severity_rank >= ?"]
            values: list[Any] = [query.after_seq, SEVERITIES.index(query.min_severity)]
            if query.alarms_only:
                conditions.append("alarm = 1")
            if query.device_id is not None:
                conditions.append("(device_id = ? OR logical_device_id = ?)")
                values += [query.device_id, query.device_id]
            rows = self._connection().execute(
                f"SELECT seq, entry FROM alarms WHERE {' AND '.join(conditions)}"  # noqa: S608
                " ORDER BY seq LIMIT ?",
                (*values, query.limit),
            )
            return [{"seq": seq, **json.loads(text)} for seq, text in rows]

        return await self._run(read)

    async def close(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        try:
            await self._run(close)
        finally:
            self._executor.shutdown(wait=True)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the alarm log is closed")
        return self._db

    async def _run(self, work: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)
