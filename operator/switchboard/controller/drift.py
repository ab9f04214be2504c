"""Does a live object still say what we applied? (no API access here)

The operator applies a child only when the live object differs from the
desired manifest in a field the operator sets. Fields the API server or other
controllers add (defaults, status, clusterIP) are ignored, so a relist or a
resync causes no writes, while `kubectl edit` or `kubectl scale` on a child is
noticed and undone.
"""

from __future__ import annotations

from typing import Any

#: Keys of metadata that the operator sets; the rest (uid, resourceVersion,
#: managedFields, annotations added by others) is not its business.
_OWNED_METADATA = {"name", "namespace", "labels", "ownerReferences", "annotations"}


def _scalar_equal(desired: Any, live: Any) -> bool:
    if desired == live:
        return True
    # Quantities and ports come back as strings when we sent numbers.
    if isinstance(desired, int | float | str) and isinstance(live, int | float | str):
        return str(desired) == str(live)
    return False


def contains(desired: Any, live: Any) -> bool:
    """Whether `live` holds every field and value of `desired` (lists element-wise)."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(k in live and contains(v, live[k]) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return False
        return all(contains(d, lv) for d, lv in zip(desired, live, strict=True))
    return _scalar_equal(desired, live)


def in_sync(desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
    """Whether applying `desired` would change nothing the operator owns."""
    if live is None:
        return False
    meta = {k: v for k, v in desired.get("metadata", {}).items() if k in _OWNED_METADATA}
    body = {k: v for k, v in desired.items() if k not in ("metadata", "apiVersion", "kind")}
    return contains(meta, live.get("metadata", {})) and contains(body, live)


def owned_fields(desired: dict[str, Any]) -> dict[str, Any]:
    """`desired` as a JSON merge patch: the fields the operator sets, lists whole.

    A merge patch replaces each list it names, so it mends an object whose
    keyed list (a Service's ports) holds an entry that clashes with ours."""
    meta = desired.get("metadata", {})
    patch = {k: v for k, v in desired.items() if k not in ("metadata", "apiVersion", "kind")}
    patch["metadata"] = {
        k: meta[k] for k in ("labels", "annotations", "ownerReferences") if k in meta
    }
    return patch
