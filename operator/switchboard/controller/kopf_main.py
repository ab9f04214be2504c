"""Entry for `kopf run -m switchboard.controller.kopf_main`: the default registry.

The same handlers as `switchboard operator` (see `main.build_registry`),
registered where `kopf run` looks for them.
"""

from __future__ import annotations

import kopf

from switchboard.controller.kube import Kube
from switchboard.controller.main import build_registry, describe_over_grpc
from switchboard.controller.settings import OperatorSettings

_settings = OperatorSettings()
build_registry(
    _settings,
    Kube.from_environment(_settings.field_manager),
    describe_over_grpc(_settings.describe_timeout_seconds),
    kopf.get_default_registry(),
)
