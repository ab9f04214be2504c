"""Switchboard: communication channels and vendor integrations as plugins on Kubernetes.

What applications import::

    from switchboard import send_message, invoke, system_status

See `switchboard.client` for the clients (`AsyncSwitchboard`, `Switchboard`)
and the error classes.
"""

from switchboard.client import (
    AsyncSwitchboard,
    DeliveryFailed,
    Forbidden,
    InvalidRequest,
    InvokeResult,
    NotAuthenticated,
    NotFound,
    Overloaded,
    SendResult,
    Switchboard,
    SwitchboardError,
    invoke,
    send_message,
    system_status,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncSwitchboard",
    "DeliveryFailed",
    "Forbidden",
    "InvalidRequest",
    "InvokeResult",
    "NotAuthenticated",
    "NotFound",
    "Overloaded",
    "SendResult",
    "Switchboard",
    "SwitchboardError",
    "__version__",
    "invoke",
    "send_message",
    "system_status",
]
