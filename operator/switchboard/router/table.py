"""The routing table: which plugins serve what, and where their endpoints are.

A table is an immutable snapshot. Discovery builds a new one whenever
something changes and swaps it in with one assignment; a request keeps the
snapshot it started with, so a table update never disturbs requests in flight.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from switchboard.api import constants
from switchboard.api.models import DeliveryPolicy, parse_duration

DEFAULT_DELIVERY = DeliveryPolicy.AT_LEAST_ONCE.value
AT_MOST_ONCE = DeliveryPolicy.AT_MOST_ONCE.value
DEFAULT_MAX_DELIVERY_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class PluginRoute:
    """One CommunicationPlugin or VendorIntegration as the router sees it."""

    kind: str
    namespace: str
    name: str
    #: Channel type (CommunicationPlugin) or vendor (VendorIntegration).
    route_key: str
    priority: int = 1
    weight: int = 100
    enabled: bool = True
    timeout_seconds: float = 10.0
    permissions: tuple[str, ...] = ()
    endpoints: tuple[str, ...] = ()
    """Ready endpoint addresses (`host:port`)."""
    not_ready: tuple[str, ...] = ()
    """Endpoints that exist but are not ready, for the status view."""
    capabilities: tuple[str, ...] = ()
    """What the plugin can deliver (attachments, templates, ...): the running
    plugin's own report when the operator has one, else the resource's list."""
    delivery: str = DEFAULT_DELIVERY
    """`AtLeastOnce` or `AtMostOnce` (CommunicationPlugin.spec.delivery)."""
    max_delivery_seconds: float = DEFAULT_MAX_DELIVERY_SECONDS
    """How long an asynchronous message on this channel is retried."""
    fallback_window_seconds: float | None = None
    """Set when a failed-delivery receipt sends the message again (receiptFallback)."""
    fallback_channel: str | None = None
    """The channel of that second send; None: the next plugin of this channel."""
    operation_permissions: tuple[tuple[str, str], ...] = ()
    """(operation, permission) pairs: what each operation needs beyond `permissions`."""

    def operation_permission(self, operation: str) -> str | None:
        return dict(self.operation_permissions).get(operation)

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def from_resource(
        cls, resource: dict[str, Any], endpoints: Iterable[str], not_ready: Iterable[str] = ()
    ) -> PluginRoute:
        """A route from a resource body as the API server returns it."""
        spec = resource.get("spec", {})
        kind = resource["kind"]
        communication = kind == constants.COMMUNICATION_PLUGIN
        plugin = (resource.get("status") or {}).get("plugin") or {}
        reported = plugin.get("capabilities")
        fallback = spec.get("receiptFallback") or None
        return cls(
            kind=kind,
            namespace=resource["metadata"].get("namespace") or "default",
            name=resource["metadata"]["name"],
            route_key=spec.get("channelType" if communication else "vendor", ""),
            priority=int(spec.get("priority", 1)),
            weight=int(spec.get("weight", 100)),
            enabled=bool(spec.get("enabled", True)),
            timeout_seconds=parse_duration(spec.get("sendTimeout", "10s")) if communication else 0,
            permissions=tuple(spec.get("permissions", []) or []),
            endpoints=tuple(sorted(endpoints)),
            not_ready=tuple(sorted(not_ready)),
            capabilities=tuple(reported or spec.get("capabilities") or ()),
            delivery=spec.get("delivery", DEFAULT_DELIVERY),
            max_delivery_seconds=parse_duration(spec.get("maxDeliveryTime", "24h")),
            fallback_window_seconds=(
                parse_duration(fallback.get("window", "1h")) if fallback is not None else None
            ),
            fallback_channel=fallback.get("channelType") if fallback is not None else None,
            operation_permissions=tuple(sorted((plugin.get("operationPermissions") or {}).items())),
        )


@dataclass(frozen=True)
class RoutingTable:
    routes: tuple[PluginRoute, ...] = ()
    _by_channel: dict[tuple[str, str], list[PluginRoute]] = field(
        default_factory=dict, compare=False, repr=False
    )
    _by_name: dict[tuple[str, str, str], PluginRoute] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        by_channel: dict[tuple[str, str], list[PluginRoute]] = defaultdict(list)
        for route in self.routes:
            if route.kind == constants.COMMUNICATION_PLUGIN:
                by_channel[(route.namespace, route.route_key)].append(route)
            self._by_name[(route.kind, route.namespace, route.name)] = route
        self._by_channel.update(by_channel)

    def channel(self, namespace: str, channel_type: str) -> list[PluginRoute]:
        """Every plugin of a channel type in one tenant, enabled or not."""
        return list(self._by_channel.get((namespace, channel_type), []))

    def integration(self, namespace: str, name: str) -> PluginRoute | None:
        return self._by_name.get((constants.VENDOR_INTEGRATION, namespace, name))

    def plugin(self, namespace: str, name: str) -> PluginRoute | None:
        return self._by_name.get((constants.COMMUNICATION_PLUGIN, namespace, name))

    def delivery_policy(self, namespace: str, channel_type: str) -> str:
        """The channel's policy: `AtMostOnce` if any of its plugins asks for it."""
        policies = {route.delivery for route in self.channel(namespace, channel_type)}
        return AT_MOST_ONCE if AT_MOST_ONCE in policies else DEFAULT_DELIVERY

    def max_delivery_seconds(self, namespace: str, channel_type: str) -> float:
        """How long the channel's asynchronous messages are retried (its most patient plugin)."""
        routes = self.channel(namespace, channel_type)
        return max((r.max_delivery_seconds for r in routes), default=DEFAULT_MAX_DELIVERY_SECONDS)


def priority_groups(routes: Iterable[PluginRoute]) -> Iterator[list[PluginRoute]]:
    """Enabled routes grouped by priority, lowest number first."""
    groups: dict[int, list[PluginRoute]] = defaultdict(list)
    for route in routes:
        if route.enabled:
            groups[route.priority].append(route)
    for priority in sorted(groups):
        yield groups[priority]


def weighted_order(routes: list[PluginRoute], rng: random.Random) -> list[PluginRoute]:
    """A random order in which heavier routes tend to come first (weighted sampling
    without replacement, Efraimidis-Spirakis). Weight 0 comes after every other."""

    def key(route: PluginRoute) -> float:
        if route.weight <= 0:
            return -1.0 - rng.random()
        return float(rng.random() ** (1.0 / route.weight))

    return sorted(routes, key=key, reverse=True)
