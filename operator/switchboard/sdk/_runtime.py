"""Running a plugin: the gRPC server, its lifecycle, secret rotation and graceful stop.

``PluginServer`` is the whole runtime; two front doors share it:

* ``run(plugin_dir)`` is ``switchboard plugin serve DIR``, the container's
  entry point. It reads ``RuntimeSettings`` from the environment, logs JSON to
  stderr, stops on SIGTERM/SIGINT and turns start-up failures into exit codes
  (``ExitCode``) plus a one-line reason in the termination log.
* ``serve_plugin(plugin_dir, ...)`` runs the same server inside an existing
  event loop, for tests and local mode.

Start-up order: resolve config and secrets and validate them (nothing is bound
yet, so a bad config fails fast), bind the port with health NOT_SERVING, run
``initialize`` and ``activate``, then report SERVING.

Secret rotation needs no restart. The secrets directory is polled; when its
contents change a new plugin instance is built from the new values, initialized
and activated, and swapped in for new calls. Calls already running finish on
the old instance, which is then deactivated and cleaned up. If the new secrets
are rejected the old instance keeps serving and the rejection is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from enum import IntEnum
from pathlib import Path
from typing import Any, Final

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace

from switchboard.plugin.v1 import plugin_pb2_grpc
from switchboard.sdk._config import (
    read_config_file,
    read_secrets_dir,
    require_secrets,
    resolve_references,
    schema_violations,
)
from switchboard.sdk._errors import ConfigError
from switchboard.sdk._health import HealthService
from switchboard.sdk._loader import LoadedPlugin, load_plugin
from switchboard.sdk._logging import RedactingFilter, Redactor, configure_logging
from switchboard.sdk._plugin import Plugin
from switchboard.sdk._service import SERVICE_NAME, Generation, PluginServicer
from switchboard.sdk._settings import RuntimeSettings
from switchboard.sdk.manifest import PluginPackageError
from switchboard.telemetry import configure_tracing, shutdown_tracing

logger = logging.getLogger("switchboard.sdk.runtime")

#: prctl(2) option: the signal this process gets when its parent dies.
_PR_SET_PDEATHSIG: Final = 1
#: Kubernetes keeps at most 4096 bytes of a termination message.
_TERMINATION_MESSAGE_LIMIT: Final = 4000
_ALL_INTERFACES: Final = frozenset({"0.0.0.0", "::", "[::]", ""})  # noqa: S104 - only compared


class ExitCode(IntEnum):
    """How ``switchboard plugin serve`` ends; the operator reads these."""

    STOPPED = 0
    """Stopped on SIGTERM/SIGINT after in-flight calls finished."""
    CRASHED = 1
    """Plugin code failed unexpectedly while starting (a bug, or the port was taken)."""
    CONFIG_REJECTED = 2
    """The config or secrets were rejected: schema, ``${KEY}``, missing secret, ``ConfigError``."""
    PACKAGE_INVALID = 3
    """The image's plugin folder is broken: manifest or entry point (fix the image)."""


class PluginServer:
    """One plugin served over gRPC. Use ``serve_plugin`` or ``run`` rather than this directly."""

    def __init__(
        self,
        loaded: LoadedPlugin,
        *,
        config: Mapping[str, Any],
        secrets_dir: Path | None,
        environ: Mapping[str, str],
        host: str,
        port: int,
        secrets_poll_interval: float | None,
        shutdown_grace: float,
        redactor: Redactor | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.loaded = loaded
        self.redactor = redactor or Redactor()
        self._raw_config = dict(config)
        self._secrets_dir = secrets_dir
        self._environ = environ
        self._host = host
        self._requested_port = port
        self._poll_interval = secrets_poll_interval
        self._shutdown_grace = shutdown_grace
        self._logger = logging.getLogger(f"switchboard.plugin.{loaded.manifest.plugin_id}")
        self._health = HealthService([SERVICE_NAME])
        self._servicer = PluginServicer(
            loaded,
            self.redactor,
            trace.get_tracer("switchboard.sdk", tracer_provider=tracer_provider),
            logger,
        )
        self._server: grpc.aio.Server | None = None
        self._port: int | None = None
        self._secrets: dict[str, str] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._retirements: set[asyncio.Task[None]] = set()
        self._stopped = False
        self._redacting_filter = RedactingFilter(self.redactor)
        self._redacted_loggers = (self._logger, logger)

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for)."""
        if self._port is None:
            raise RuntimeError("The server has not been started")
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` to dial, e.g. ``127.0.0.1:50051`` (loopback if bound to all interfaces)."""
        host = "127.0.0.1" if self._host in _ALL_INTERFACES else self._host
        return f"{host}:{self.port}"

    @property
    def plugin(self) -> Plugin:
        """The plugin instance new calls go to (it changes when secrets rotate)."""
        if self._servicer.generation is None:
            raise RuntimeError("The plugin is not active")
        return self._servicer.generation.plugin

    async def start(self) -> None:
        """Validate config and secrets, bind, initialize and activate; then report SERVING.

        Raises ``ConfigError`` when the config or secrets are rejected.
        """
        for owned in self._redacted_loggers:
            owned.addFilter(self._redacting_filter)
        try:
            await self._start()
        except BaseException:
            self._remove_log_filters()
            raise

    async def _start(self) -> None:
        self._secrets = self._read_secrets()
        plugin = self._build_plugin(self._secrets)
        server = grpc.aio.server()
        plugin_pb2_grpc.add_PluginServiceServicer_to_server(self._servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            [
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            server,
        )
        self._port = server.add_insecure_port(f"{self._host}:{self._requested_port}")
        self._server = server
        await server.start()
        logger.info(
            "Listening for calls",
            extra={"host": self._host, "port": self._port, "health": "NOT_SERVING"},
        )
        try:
            self._servicer.generation = await self._activate(plugin)
        except BaseException:
            await server.stop(None)
            raise
        await self._health.set_serving(plugin.healthy)
        logger.info(
            "Activated the plugin",
            extra={"port": self._port, "health": _health_name(plugin.healthy)},
        )
        if self._poll_interval is not None and self._secrets_dir is not None:
            self._watcher = asyncio.create_task(self._watch_secrets(self._poll_interval))

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, refuse new calls, let running ones finish, then retire the plugin.

        ``grace`` (default: the server's shutdown grace) bounds how long running
        calls may take before they are cancelled.
        """
        if self._stopped:
            return
        self._stopped = True
        grace = self._shutdown_grace if grace is None else grace
        await self._health.shut_down()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._server is not None:
            logger.info("Stopped accepting new calls", extra={"grace_seconds": grace})
            await self._server.stop(grace)
        generation, self._servicer.generation = self._servicer.generation, None
        if generation is not None:
            await self._retire(generation, grace=self._shutdown_grace)
        if self._retirements:
            await asyncio.gather(*self._retirements)
        logger.info("Stopped the plugin")
        self._remove_log_filters()

    def _remove_log_filters(self) -> None:
        for owned in self._redacted_loggers:
            owned.removeFilter(self._redacting_filter)

    def _read_secrets(self) -> dict[str, str]:
        secrets = read_secrets_dir(self._secrets_dir) if self._secrets_dir is not None else {}
        self.redactor.add(secrets.values())
        require_secrets(
            secrets,
            self.loaded.manifest.secrets.required,
            self._secrets_dir or Path("(no secrets directory)"),
        )
        return secrets

    def _build_plugin(self, secrets: Mapping[str, str]) -> Plugin:
        """A new, unstarted plugin instance for ``secrets``; ``ConfigError`` if unusable."""
        config, substituted = resolve_references(self._raw_config, secrets, self._environ)
        self.redactor.add(substituted)
        violation = schema_violations(config, self.loaded.manifest.required_config, root="config")
        if violation is not None:
            raise ConfigError(self.redactor.redact(violation))
        plugin = self.loaded.plugin_class(config=config, secrets=secrets, logger=self._logger)
        plugin.validate_config()
        plugin._health_listener = self._plugin_health_changed
        return plugin

    async def _plugin_health_changed(self, plugin: Plugin) -> None:
        """Follow ``plugin.report_health`` when ``plugin`` is the instance taking calls."""
        generation = self._servicer.generation
        if self._stopped or generation is None or generation.plugin is not plugin:
            return
        await self._health.set_serving(plugin.healthy)
        logger.info("Plugin reported its health", extra={"health": _health_name(plugin.healthy)})

    async def _activate(self, plugin: Plugin) -> Generation:
        try:
            await plugin.initialize()
            await plugin.activate()
        except BaseException:
            with contextlib.suppress(Exception):
                await plugin.cleanup()
            raise
        return Generation(plugin)

    async def _watch_secrets(self, interval: float) -> None:
        assert self._secrets_dir is not None
        last_seen = self._secrets
        while True:
            await asyncio.sleep(interval)
            try:
                secrets = read_secrets_dir(self._secrets_dir)
            except ConfigError as error:
                logger.warning("Could not read the secrets directory", extra={"error": str(error)})
                continue
            if secrets != last_seen:
                last_seen = secrets
                await self._rotate(secrets)

    async def _rotate(self, secrets: dict[str, str]) -> None:
        changed = sorted(
            key
            for key in secrets.keys() | self._secrets.keys()
            if secrets.get(key) != self._secrets.get(key)
        )
        try:
            self.redactor.add(secrets.values())
            require_secrets(
                secrets, self.loaded.manifest.secrets.required, self._secrets_dir or Path()
            )
            generation = await self._activate(self._build_plugin(secrets))
        except Exception as error:
            logger.error(
                "Rejected rotated secrets; the previous ones stay in use",
                extra={"changed_keys": changed, "error": self.redactor.redact(str(error))},
            )
            return
        previous, self._servicer.generation = self._servicer.generation, generation
        self._secrets = secrets
        await self._health.set_serving(generation.plugin.healthy)
        logger.info("Rotated secrets without a restart", extra={"changed_keys": changed})
        if previous is not None:
            task = asyncio.create_task(self._retire(previous, grace=self._shutdown_grace))
            self._retirements.add(task)
            task.add_done_callback(self._retirements.discard)

    async def _retire(self, generation: Generation, *, grace: float) -> None:
        """Deactivate and clean up ``generation`` once its calls finished (at most ``grace`` s)."""
        try:
            await asyncio.wait_for(generation.wait_idle(), timeout=grace)
        except TimeoutError:
            logger.warning(
                "Retired a plugin instance with calls still running",
                extra={"in_flight": generation.in_flight},
            )
        for hook in (generation.plugin.deactivate, generation.plugin.cleanup):
            try:
                await hook()
            except Exception:
                logger.exception(
                    "A retired plugin instance's hook raised", extra={"hook": hook.__name__}
                )


@contextlib.asynccontextmanager
async def serve_plugin(
    plugin_dir: str | os.PathLike[str],
    *,
    config: Mapping[str, Any] | None = None,
    config_path: str | os.PathLike[str] | None = None,
    secrets_dir: str | os.PathLike[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    secrets_poll_interval: float | None = 1.0,
    shutdown_grace: float = 5.0,
    environ: Mapping[str, str] | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> AsyncIterator[PluginServer]:
    """Serve the plugin in ``plugin_dir`` in this event loop until the block exits.

    ``config`` (a mapping) or ``config_path`` (a JSON/YAML file) is the raw
    config, ``${KEY}`` references included; ``secrets_dir`` holds one file per
    secret key; ``environ`` is the fallback for ``${KEY}`` (default
    ``os.environ``). ``port=0`` picks a free port: read it from ``server.port``.
    ``secrets_poll_interval=None`` turns rotation off. Raises
    ``PluginPackageError`` for a broken plugin folder and ``ConfigError`` for a
    rejected config, as the process would exit 3 and 2.

        async with serve_plugin("plugin-images/acme-sms", config={...}) as server:
            async with PluginClient(server.address) as client:
                await client.send("+15551234567", "hello")
    """
    if config is not None and config_path is not None:
        raise ValueError("Pass config or config_path, not both")
    raw_config = (
        dict(config)
        if config is not None
        else (read_config_file(Path(config_path)) if config_path is not None else {})
    )
    server = PluginServer(
        load_plugin(plugin_dir),
        config=raw_config,
        secrets_dir=Path(secrets_dir) if secrets_dir is not None else None,
        environ=os.environ if environ is None else environ,
        host=host,
        port=port,
        secrets_poll_interval=secrets_poll_interval,
        shutdown_grace=shutdown_grace,
        tracer_provider=tracer_provider,
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def run(plugin_dir: str | os.PathLike[str], settings: RuntimeSettings | None = None) -> int:
    """Serve ``plugin_dir`` until SIGTERM/SIGINT, configured from the environment.

    Returns the process exit code (``ExitCode``).
    """
    settings = settings or RuntimeSettings()
    if not _die_with_parent(os.environ.get("SWITCHBOARD_PARENT_PID", "")):
        return ExitCode.STOPPED  # the process that started it is already gone
    redactor = Redactor()
    log_formatter = configure_logging(Path(plugin_dir).name, redactor, settings.log_level)
    try:
        loaded = load_plugin(plugin_dir)
    except PluginPackageError as error:
        return _fail(ExitCode.PACKAGE_INVALID, f"Plugin package is invalid: {error}", settings)
    log_formatter.plugin = loaded.manifest.plugin_id
    try:
        # OTEL_* variables decide where spans go; the provider calls a plugin
        # makes over httpx become client spans of the same trace.
        tracing = configure_tracing(
            f"switchboard-plugin-{loaded.manifest.plugin_id}", instrument_httpx=True
        )
    except ValueError as error:
        return _fail(ExitCode.CONFIG_REJECTED, f"Configuration rejected: {error}", settings)
    try:
        return asyncio.run(_serve_until_signalled(loaded, settings, redactor))
    finally:
        shutdown_tracing(tracing)


async def _serve_until_signalled(
    loaded: LoadedPlugin, settings: RuntimeSettings, redactor: Redactor
) -> int:
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    signalled = asyncio.create_task(stop_requested.wait())
    try:
        server = PluginServer(
            loaded,
            config=read_config_file(settings.config_path),
            secrets_dir=settings.secrets_dir,
            environ=os.environ,
            host=settings.host,
            port=settings.port,
            secrets_poll_interval=settings.secrets_poll_seconds,
            shutdown_grace=settings.shutdown_grace_seconds,
            redactor=redactor,
        )
        starting = asyncio.create_task(server.start())
        await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            logger.info("Stopped while starting")
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            await server.stop(0)
            return ExitCode.STOPPED
        starting.result()
    except ConfigError as error:
        signalled.cancel()
        reason = f"Configuration rejected: {redactor.redact(error.message)}"
        return _fail(ExitCode.CONFIG_REJECTED, reason, settings)
    except Exception as error:
        signalled.cancel()
        logger.exception("Plugin failed to start")
        reason = f"Plugin failed to start: {type(error).__name__}: {redactor.redact(str(error))}"
        return _fail(ExitCode.CRASHED, reason, settings)
    await signalled
    logger.info("Received a stop signal")
    await server.stop()
    return ExitCode.STOPPED


def _die_with_parent(parent: str) -> bool:
    """With `SWITCHBOARD_PARENT_PID` (local mode), end with that process however it ends.

    Linux delivers SIGKILL when the parent dies (``PR_SET_PDEATHSIG``); set here,
    in the plugin itself, because code run between fork and exec in a parent
    with gRPC threads can crash the child. False when the parent is gone already.
    """
    if not parent.isdigit():
        return True
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    return os.getppid() == int(parent)


def _health_name(serving: bool) -> str:
    return "SERVING" if serving else "NOT_SERVING"


def _fail(code: ExitCode, reason: str, settings: RuntimeSettings) -> int:
    """Log ``reason`` and leave it, on one line, where Kubernetes shows it in the pod status."""
    one_line = " ".join(reason.split())
    logger.error("Plugin stopped", extra={"exit_code": int(code), "reason": one_line})
    path = settings.termination_log
    if settings.termination_log_explicit or path.exists():
        with contextlib.suppress(OSError):
            path.write_text(one_line[:_TERMINATION_MESSAGE_LIMIT] + "\n", encoding="utf-8")
    return code
