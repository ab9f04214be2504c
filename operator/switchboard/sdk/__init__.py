"""The Switchboard plugin SDK: everything a plugin author imports, and nothing else.

A plugin is one class::

    from switchboard.sdk import Message, MessagingPlugin, SendResult

    class AcmeSms(MessagingPlugin):
        async def send_message(self, message: Message) -> SendResult:
            ...

plus a ``manifest.yml`` naming it. ``switchboard plugin serve DIR`` runs it
(the container entry point), ``serve_plugin`` runs it in-process for tests,
``PluginClient`` calls it. The runtime owns the port, health, signals, config
and secret loading, secret rotation and log redaction; see
docs/plugin-authoring.md. Names outside ``__all__`` are private.
"""

from switchboard.api.models import IntegrationType
from switchboard.sdk._client import PluginClient
from switchboard.sdk._errors import (
    ConfigError,
    ErrorClass,
    InvalidInput,
    PermanentError,
    PluginError,
    RetryableError,
    Unauthenticated,
    errors_from_rpc_error,
)
from switchboard.sdk._plugin import (
    AnalyticsPlugin,
    Message,
    MessagingPlugin,
    MonitoringPlugin,
    NetworkAutomationPlugin,
    OperationSpec,
    Plugin,
    SendResult,
    operation,
)
from switchboard.sdk._runtime import ExitCode, PluginServer, serve_plugin
from switchboard.sdk.manifest import Manifest, PluginPackageError, load_manifest

__all__ = [
    "AnalyticsPlugin",
    "ConfigError",
    "ErrorClass",
    "ExitCode",
    "IntegrationType",
    "InvalidInput",
    "Manifest",
    "Message",
    "MessagingPlugin",
    "MonitoringPlugin",
    "NetworkAutomationPlugin",
    "OperationSpec",
    "PermanentError",
    "Plugin",
    "PluginClient",
    "PluginError",
    "PluginPackageError",
    "PluginServer",
    "RetryableError",
    "SendResult",
    "Unauthenticated",
    "errors_from_rpc_error",
    "load_manifest",
    "operation",
    "serve_plugin",
]
