"""Entry for `kopf run -m switchboard.controller.kopf_main`: the default registry."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from switchboard.controller.handlers import (
    register_communication_plugins,
    register_dependents,
    register_vendor_integrations,
)
from switchboard.controller.kube import Kube
from switchboard.controller.main import configure_kopf, connection_info, describe_over_grpc
from switchboard.controller.reconciler import Reconciler
from switchboard.controller.runtime import OperatorRuntime
from switchboard.controller.settings import OperatorSettings

_settings = OperatorSettings()
_kube = Kube.from_environment(_settings.field_manager)
_runtime = OperatorRuntime(
    Reconciler(_kube, _settings, describe_over_grpc(_settings.describe_timeout_seconds))
)
_registry = kopf.get_default_registry()
register_communication_plugins(_registry, _runtime)
register_vendor_integrations(_registry, _runtime)
register_dependents(_registry, _runtime, _settings.field_manager)


@kopf.on.startup()
async def operator_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure_kopf(settings, _settings)
    memo.resync = asyncio.create_task(_runtime.resync_forever(_settings.resync_seconds))


@kopf.on.login()
def operator_login(**_: Any) -> kopf.ConnectionInfo:
    return connection_info(_kube)
