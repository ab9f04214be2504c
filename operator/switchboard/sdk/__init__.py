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

# Private aliases: the module's public names are exactly `__all__`.
import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from switchboard.api.backoff import Backoff
    from switchboard.api.models import IntegrationType
    from switchboard.sdk._client import PluginClient
    from switchboard.sdk._errors import (
        ConfigError,
        ErrorClass,
        InvalidInput,
        OutcomeUnknown,
        PermanentError,
        PluginError,
        RetryableError,
        Unauthenticated,
        errors_from_rpc_error,
    )
    from switchboard.sdk._http_plugin import HttpProviderPlugin
    from switchboard.sdk._messages import (
        Attachment,
        DeliveryState,
        Message,
        Receipt,
        ReceiptReply,
        ReceiptRequest,
        SendResult,
        Template,
    )
    from switchboard.sdk._plugin import (
        AnalyticsPlugin,
        MessagingPlugin,
        MonitoringPlugin,
        NetworkAutomationPlugin,
        OperationSpec,
        Plugin,
        operation,
    )
    from switchboard.sdk._runtime import ExitCode, PluginServer, serve_plugin
    from switchboard.sdk.manifest import Manifest, PluginPackageError, load_manifest

__all__ = [
    "AnalyticsPlugin",
    "Attachment",
    "Backoff",
    "ConfigError",
    "DeliveryState",
    "ErrorClass",
    "ExitCode",
    "HttpProviderPlugin",
    "IntegrationType",
    "InvalidInput",
    "Manifest",
    "Message",
    "MessagingPlugin",
    "MonitoringPlugin",
    "NetworkAutomationPlugin",
    "OperationSpec",
    "OutcomeUnknown",
    "PermanentError",
    "Plugin",
    "PluginClient",
    "PluginError",
    "PluginPackageError",
    "PluginServer",
    "Receipt",
    "ReceiptReply",
    "ReceiptRequest",
    "RetryableError",
    "SendResult",
    "Template",
    "Unauthenticated",
    "errors_from_rpc_error",
    "load_manifest",
    "operation",
    "serve_plugin",
]

# Each name loads its module on first use: a process that only calls plugins
# (the router: `PluginClient` and the error classes) does not load the plugin
# runtime, JSON Schema or the manifest loader.
_HOME = {
    "AnalyticsPlugin": "switchboard.sdk._plugin",
    "Attachment": "switchboard.sdk._messages",
    "Backoff": "switchboard.api.backoff",
    "ConfigError": "switchboard.sdk._errors",
    "DeliveryState": "switchboard.sdk._messages",
    "ErrorClass": "switchboard.sdk._errors",
    "ExitCode": "switchboard.sdk._runtime",
    "HttpProviderPlugin": "switchboard.sdk._http_plugin",
    "IntegrationType": "switchboard.api.models",
    "InvalidInput": "switchboard.sdk._errors",
    "Manifest": "switchboard.sdk.manifest",
    "Message": "switchboard.sdk._messages",
    "MessagingPlugin": "switchboard.sdk._plugin",
    "MonitoringPlugin": "switchboard.sdk._plugin",
    "NetworkAutomationPlugin": "switchboard.sdk._plugin",
    "OperationSpec": "switchboard.sdk._plugin",
    "OutcomeUnknown": "switchboard.sdk._errors",
    "PermanentError": "switchboard.sdk._errors",
    "Plugin": "switchboard.sdk._plugin",
    "PluginClient": "switchboard.sdk._client",
    "PluginError": "switchboard.sdk._errors",
    "PluginPackageError": "switchboard.sdk.manifest",
    "PluginServer": "switchboard.sdk._runtime",
    "Receipt": "switchboard.sdk._messages",
    "ReceiptReply": "switchboard.sdk._messages",
    "ReceiptRequest": "switchboard.sdk._messages",
    "RetryableError": "switchboard.sdk._errors",
    "SendResult": "switchboard.sdk._messages",
    "Template": "switchboard.sdk._messages",
    "Unauthenticated": "switchboard.sdk._errors",
    "errors_from_rpc_error": "switchboard.sdk._errors",
    "load_manifest": "switchboard.sdk.manifest",
    "operation": "switchboard.sdk._plugin",
    "serve_plugin": "switchboard.sdk._runtime",
}


def __getattr__(name: str) -> _typing.Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'switchboard.sdk' has no attribute {name!r}")
    value = getattr(_importlib.import_module(home), name)
    globals()[name] = value
    return value
