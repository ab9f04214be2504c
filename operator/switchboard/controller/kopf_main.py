"""Entry for `kopf run -m switchboard.controller.kopf_main`: the default registry.

The same handlers as `switchboard operator` (see `main.build_registry`),
registered where `kopf run` looks for them. Importing this module registers
handlers and reads `SWITCHBOARD_*` settings; it reaches no API server (that
happens in kopf's login and startup handlers).
"""

from __future__ import annotations

import kopf

from switchboard.controller.main import Operator, build_registry, describe_over_grpc
from switchboard.controller.settings import OperatorSettings

_settings = OperatorSettings()
build_registry(
    Operator(_settings, describer=describe_over_grpc(_settings.describe_timeout_seconds)),
    kopf.get_default_registry(),
)
