"""What a plugin author subclasses: the lifecycle, the four plugin kinds, ``@operation``.

A plugin is one class. The runtime constructs it with the resolved config and
the mounted secrets, then drives the lifecycle::

    validate_config()  ->  initialize()  ->  activate()  ->  ... calls ...
                                         ->  deactivate()  ->  cleanup()

The same class may be instantiated again while the process runs: when a secret
rotates, a new instance is built and activated, calls move to it, and the old
one is deactivated and cleaned up after its in-flight calls finish. Keep state
on ``self``, not in module globals.

Operations are coroutine methods taking one ``params`` mapping, already
validated against the operation's JSON Schema, and returning a JSON-serializable
value. The vendor base classes declare their standard operations with schemas;
override the method to implement it (the schema is inherited), or decorate the
override with ``@operation(schema=...)`` to replace the schema.
"""

from __future__ import annotations

import abc
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Final, TypeVar, overload

import jsonschema

from switchboard.api.models import IntegrationType
from switchboard.sdk._errors import PermanentError
from switchboard.sdk._messages import (
    Message,
    Receipt,
    ReceiptReply,
    ReceiptRequest,
    SendResult,
)

OperationMethod = TypeVar("OperationMethod", bound=Callable[..., Awaitable[Any]])

_MARKER: Final = "__switchboard_operation__"


@dataclass(frozen=True, slots=True)
class OperationSpec:
    """An operation as ``Describe`` reports it and ``Invoke`` dispatches it."""

    name: str
    description: str
    params_schema: Mapping[str, Any]
    #: The method implementing it on the plugin class.
    method_name: str


@dataclass(frozen=True, slots=True)
class _OperationMarker:
    name: str | None
    description: str | None
    schema: Mapping[str, Any]


@overload
def operation(method: OperationMethod, /) -> OperationMethod: ...
@overload
def operation(
    *,
    name: str | None = None,
    schema: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> Callable[[OperationMethod], OperationMethod]: ...
def operation(
    method: OperationMethod | None = None,
    /,
    *,
    name: str | None = None,
    schema: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> OperationMethod | Callable[[OperationMethod], OperationMethod]:
    """Expose a coroutine method as an ``Invoke`` operation.

    ``name`` defaults to the method name; ``description`` to the first line of
    its docstring; ``schema`` (JSON Schema for ``params``) to any object. Params
    are validated against the schema before the method runs, so a violation
    is INVALID_INPUT naming the field and the method never sees it.
    """
    params_schema: Mapping[str, Any] = schema if schema is not None else {"type": "object"}
    jsonschema.validators.validator_for(params_schema).check_schema(dict(params_schema))

    def mark(func: OperationMethod) -> OperationMethod:
        is_coroutine_function = inspect.iscoroutinefunction(func)
        if not is_coroutine_function:
            raise TypeError(f"@operation needs an `async def` method, {func.__qualname__} is not")
        setattr(func, _MARKER, _OperationMarker(name, description, params_schema))
        return func

    return mark(method) if method is not None else mark


class Plugin:
    """Base of every plugin: configuration, secrets, logger and lifecycle hooks.

    Don't override ``__init__``; open clients in ``initialize``. The class
    attributes below are optional: where a subclass sets one, ``Describe``
    reports it and ``switchboard plugin validate`` checks it against
    ``manifest.yml``; where it doesn't, the manifest's value is reported.
    """

    channel_type: ClassVar[str | None] = None
    vendor: ClassVar[str | None] = None
    integration_type: ClassVar[IntegrationType | None] = None
    capabilities: ClassVar[Collection[str] | None] = None
    required_secrets: ClassVar[Collection[str] | None] = None
    optional_secrets: ClassVar[Collection[str] | None] = None

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        #: The resolved configuration (``${KEY}`` references already substituted).
        self.config: dict[str, Any] = dict(config or {})
        #: Mounted secret values by key. Never log them (the runtime redacts them anyway).
        self.secrets: Mapping[str, str] = MappingProxyType(dict(secrets or {}))
        self.logger: logging.Logger = logger or logging.getLogger(
            f"switchboard.plugin.{type(self).__name__}"
        )
        self._healthy = True
        #: Set by the runtime: told when ``report_health`` changes the plugin's health.
        self._health_listener: Callable[[Plugin], Awaitable[None]] | None = None

    @property
    def healthy(self) -> bool:
        """Whether the plugin can do its work, as it last said through ``report_health``."""
        return self._healthy

    async def report_health(self, serving: bool) -> None:
        """Say whether this plugin can do its work now, e.g. whether its provider is reachable.

        While ``serving`` is False the runtime reports the plugin's gRPC health
        as NOT_SERVING (the router skips it, the readiness probe fails), and
        SERVING again once it is True. Calls still reach the plugin either way.
        Call it from ``initialize``/``activate`` (the first status follows the
        last report) or from a background task. Only the instance taking calls
        counts; outside the runtime it only sets ``healthy``.
        """
        if serving == self._healthy:
            return
        self._healthy = serving
        if self._health_listener is not None:
            await self._health_listener(self)

    def validate_config(self) -> None:
        """Raise ``ConfigError`` if ``self.config`` is unusable. No I/O here.

        Runs after the manifest's ``required_config`` schema has passed, before
        ``initialize``. A ``ConfigError`` stops the plugin with exit code 2.
        """

    async def initialize(self) -> None:
        """Open clients and connections. Runs once per instance."""

    async def activate(self) -> None:
        """Start taking work; the plugin reports SERVING once this returns."""

    async def deactivate(self) -> None:
        """Stop background work; no new calls reach this instance."""

    async def cleanup(self) -> None:
        """Close what ``initialize`` opened. Runs after in-flight calls finished."""

    async def check_credentials(self) -> str:
        """Verify the credentials with the provider; return a message for humans.

        Raise ``Unauthenticated`` when the provider rejects them (the call then
        answers ``ok=False``), ``RetryableError`` when the provider can't say.
        The default only reports that the required secrets were found.
        """
        return "Required secrets are present; this plugin does not verify them with its provider"

    @classmethod
    def declared_operations(cls) -> dict[str, OperationSpec]:
        """Every ``@operation`` of this class, including inherited ones, by name."""
        found: dict[str, OperationSpec] = {}
        for method_name in sorted(dir(cls)):
            marker = _find_marker(cls, method_name)
            if marker is None:
                continue
            method = getattr(cls, method_name)
            name = marker.name or method_name
            if name in found:
                raise TypeError(f"{cls.__qualname__} declares operation {name!r} twice")
            found[name] = OperationSpec(
                name=name,
                description=marker.description or _first_line(method.__doc__),
                params_schema=marker.schema,
                method_name=method_name,
            )
        return found


class MessagingPlugin(Plugin, abc.ABC):
    """A communication channel: email, SMS, chat, webhooks. Answers ``Send``."""

    @abc.abstractmethod
    async def send_message(self, message: Message) -> SendResult:
        """Deliver ``message``; raise ``InvalidInput``/``PermanentError``/... on failure."""

    async def handle_receipt(self, request: ReceiptRequest) -> list[Receipt] | ReceiptReply:
        """Read a delivery callback of this plugin's provider (capability ``delivery_receipts``).

        Verify the provider's signature with the plugin's own secret first and
        raise ``Unauthenticated`` when it does not match: nothing is recorded.
        Return one ``Receipt`` per message the callback is about (an empty list
        for a callback that carries no news, such as a test ping), or a
        ``ReceiptReply`` when the provider expects a body back.
        """
        raise PermanentError(f"{type(self).__name__} does not take delivery receipts")


class NetworkAutomationPlugin(Plugin, abc.ABC):
    """A network-automation vendor integration (e.g. fiber access over VOLTHA)."""

    integration_type = IntegrationType.NETWORK_AUTOMATION

    @operation(
        schema={
            "type": "object",
            "properties": {
                "filters": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "Match devices by attribute, e.g. {'type': 'olt'}.",
                }
            },
            "additionalProperties": False,
        }
    )
    @abc.abstractmethod
    async def discover_devices(self, params: dict[str, Any]) -> Any:
        """List the devices the vendor manages."""

    @operation(
        schema={
            "type": "object",
            "properties": {
                "device_id": {"type": "string", "minLength": 1},
                "settings": {"type": "object"},
            },
            "required": ["device_id", "settings"],
            "additionalProperties": False,
        }
    )
    @abc.abstractmethod
    async def configure_device(self, params: dict[str, Any]) -> Any:
        """Apply settings to one device."""

    @operation(
        schema={
            "type": "object",
            "properties": {"device_id": {"type": "string", "minLength": 1}},
            "required": ["device_id"],
            "additionalProperties": False,
        }
    )
    @abc.abstractmethod
    async def get_device_status(self, params: dict[str, Any]) -> Any:
        """Report one device's state."""


class MonitoringPlugin(Plugin, abc.ABC):
    """A monitoring vendor integration: metrics in, alerts out."""

    integration_type = IntegrationType.MONITORING

    @operation(
        schema={
            "type": "object",
            "properties": {"names": {"type": "array", "items": {"type": "string"}}},
            "additionalProperties": False,
        }
    )
    @abc.abstractmethod
    async def collect_metrics(self, params: dict[str, Any]) -> Any:
        """Return current metric values, all or those named in ``names``."""

    @operation(
        schema={
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "severity": {"enum": ["info", "warning", "critical"]},
                "condition": {"type": "string"},
                "message": {"type": "string"},
            },
            "required": ["name", "severity"],
            "additionalProperties": False,
        }
    )
    @abc.abstractmethod
    async def create_alert(self, params: dict[str, Any]) -> Any:
        """Create an alert rule; return at least its ``alert_id``."""

    @operation(
        schema={
            "type": "object",
            "properties": {"alert_id": {"type": "string", "minLength": 1}},
            "required": ["alert_id"],
            "additionalProperties": False,
        }
    )
    @abc.abstractmethod
    async def get_alert_status(self, params: dict[str, Any]) -> Any:
        """Report one alert's state."""


_EVENT_SCHEMA: Final[Mapping[str, Any]] = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "minLength": 1},
        "user_id": {"type": "string"},
        "properties": {"type": "object"},
        "timestamp": {"type": "string", "description": "RFC 3339"},
    },
    "required": ["event"],
    "additionalProperties": False,
}


class AnalyticsPlugin(Plugin, abc.ABC):
    """An analytics vendor integration: events in, reports out."""

    integration_type = IntegrationType.ANALYTICS

    @operation(schema=_EVENT_SCHEMA)
    @abc.abstractmethod
    async def track_event(self, params: dict[str, Any]) -> Any:
        """Record one event."""

    @operation(
        schema={
            "type": "object",
            "properties": {"events": {"type": "array", "items": _EVENT_SCHEMA, "minItems": 1}},
            "required": ["events"],
            "additionalProperties": False,
        }
    )
    @abc.abstractmethod
    async def track_events_batch(self, params: dict[str, Any]) -> Any:
        """Record several events at once."""

    @operation(
        schema={
            "type": "object",
            "properties": {
                "report_type": {"type": "string", "minLength": 1},
                "parameters": {"type": "object"},
            },
            "required": ["report_type"],
            "additionalProperties": False,
        }
    )
    @abc.abstractmethod
    async def generate_report(self, params: dict[str, Any]) -> Any:
        """Build a report from the recorded events."""


def _find_marker(cls: type, method_name: str) -> _OperationMarker | None:
    # The most derived decorated definition wins, so an undecorated override
    # inherits the base class's operation name and schema.
    for klass in cls.__mro__:
        candidate = vars(klass).get(method_name)
        marker = getattr(candidate, _MARKER, None)
        if isinstance(marker, _OperationMarker):
            return marker
    return None


def _first_line(docstring: str | None) -> str:
    return (docstring or "").strip().partition("\n")[0]
