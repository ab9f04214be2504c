"""How ``switchboard plugin serve`` is configured: environment variables, each documented.

The operator sets these on the plugin container only when it deviates from the
defaults; the defaults are the contract paths in ``switchboard.api.constants``.
Local mode and tests set them to temporary files and port 0.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from switchboard.api.constants import PLUGIN_CONFIG_PATH, PLUGIN_GRPC_PORT, PLUGIN_SECRETS_DIR


class RuntimeSettings(BaseSettings):
    """Settings of one plugin process, read from ``SWITCHBOARD_*`` environment variables."""

    model_config = SettingsConfigDict(extra="ignore", use_attribute_docstrings=True)

    config_path: Path = Field(
        default=Path(PLUGIN_CONFIG_PATH), validation_alias="SWITCHBOARD_PLUGIN_CONFIG"
    )
    """`SWITCHBOARD_PLUGIN_CONFIG`: the config file, JSON (`.json`) or YAML. A missing
    file means an empty config. Default: the ConfigMap mount,
    /etc/switchboard/config/config.json."""

    secrets_dir: Path = Field(
        default=Path(PLUGIN_SECRETS_DIR), validation_alias="SWITCHBOARD_PLUGIN_SECRETS_DIR"
    )
    """`SWITCHBOARD_PLUGIN_SECRETS_DIR`: directory of one file per secret key. A missing
    directory means no secrets. Default: the Secret mount, /etc/switchboard/secrets."""

    host: str = Field(
        default="0.0.0.0",  # noqa: S104 - a pod is reached on its pod IP; NetworkPolicy limits who may.
        validation_alias="SWITCHBOARD_PLUGIN_HOST",
    )
    """`SWITCHBOARD_PLUGIN_HOST`: address to listen on. Default 0.0.0.0 (all interfaces, as a
    pod needs); use 127.0.0.1 on a workstation."""

    port: int = Field(
        default=PLUGIN_GRPC_PORT, ge=0, le=65535, validation_alias="SWITCHBOARD_PLUGIN_PORT"
    )
    """`SWITCHBOARD_PLUGIN_PORT`: gRPC port. Default 50051. 0 picks a free port and logs it
    (the "Listening" record carries `port`)."""

    secrets_poll_seconds: float = Field(
        default=1.0, gt=0, validation_alias="SWITCHBOARD_PLUGIN_SECRETS_POLL_SECONDS"
    )
    """`SWITCHBOARD_PLUGIN_SECRETS_POLL_SECONDS`: how often the secrets directory is checked
    for rotation, in seconds. Default 1."""

    shutdown_grace_seconds: float = Field(
        default=20.0, ge=0, validation_alias="SWITCHBOARD_SHUTDOWN_GRACE_SECONDS"
    )
    """`SWITCHBOARD_SHUTDOWN_GRACE_SECONDS`: after SIGTERM, how long in-flight calls may run
    before they are cancelled, in seconds. Default 20; keep it below the pod's
    terminationGracePeriodSeconds (30 by default)."""

    termination_log: Path = Field(
        default=Path("/dev/termination-log"), validation_alias="SWITCHBOARD_TERMINATION_LOG"
    )
    """`SWITCHBOARD_TERMINATION_LOG`: where the one-line reason for a failed start is written,
    for Kubernetes to show in the pod status. Default /dev/termination-log, written only
    if it exists (the kubelet creates it) so a workstation run never creates it."""

    log_level: str = Field(default="INFO", validation_alias="SWITCHBOARD_PLUGIN_LOG_LEVEL")
    """`SWITCHBOARD_PLUGIN_LOG_LEVEL`: DEBUG, INFO, WARNING or ERROR. Default INFO."""

    @property
    def termination_log_explicit(self) -> bool:
        """True when the termination-log path came from the environment."""
        return "termination_log" in self.model_fields_set
