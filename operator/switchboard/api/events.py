"""Kubernetes Events about Switchboard's resources, as the operator and the router post them.

One shape for both writers, so `kubectl describe` and `kubectl events` show
them alike: the involved object names the resource by uid (which is how
`kubectl describe` finds its events), the message is cut to the 1,024
characters the API server keeps.
"""

from __future__ import annotations

import datetime
from typing import Any, Final

#: The longest Event message the API server accepts.
MESSAGE_LIMIT: Final = 1024


def timestamp(now: datetime.datetime | None = None) -> str:
    """An Event time stamp (RFC 3339, seconds, UTC)."""
    return (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_about(
    involved: dict[str, Any],
    type_: str,
    reason: str,
    message: str,
    component: str,
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """A core/v1 Event about ``involved`` (a resource as the API server returned it)."""
    meta = involved["metadata"]
    stamp = timestamp(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": involved["apiVersion"],
            "kind": involved["kind"],
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:MESSAGE_LIMIT],
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": component,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
