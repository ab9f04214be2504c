"""Switchboard: communication channels and vendor integrations as plugins on Kubernetes.

What applications import::

    from switchboard import send_message, get_message, invoke, system_status

See `switchboard.client` for the clients (`AsyncSwitchboard`, `Switchboard`)
and the error classes.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from switchboard.client import (
        AsyncSwitchboard,
        Conflict,
        DeliveryFailed,
        Forbidden,
        InvalidRequest,
        InvokeResult,
        MessageStatus,
        NotAuthenticated,
        NotFound,
        Overloaded,
        SendResult,
        Switchboard,
        SwitchboardError,
        get_message,
        invoke,
        send_message,
        system_status,
    )


def _installed_version() -> str:
    # pyproject.toml is the one place the version is written; the package
    # reads it back from its installed metadata.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("switchboard")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "0+unknown"


__version__ = _installed_version()

__all__ = [
    "AsyncSwitchboard",
    "Conflict",
    "DeliveryFailed",
    "Forbidden",
    "InvalidRequest",
    "InvokeResult",
    "MessageStatus",
    "NotAuthenticated",
    "NotFound",
    "Overloaded",
    "SendResult",
    "Switchboard",
    "SwitchboardError",
    "__version__",
    "get_message",
    "invoke",
    "send_message",
    "system_status",
]


def __getattr__(name: str) -> Any:
    # The client (and httpx with it) loads on first use, so the router, the
    # operator and plugins, which import `switchboard.*` but never the client,
    # do not carry it in memory.
    if name in __all__ and name != "__version__":
        from switchboard import client

        return getattr(client, name)
    raise AttributeError(f"module 'switchboard' has no attribute {name!r}")
