"""Local mode's process supervisor: plugins as child processes, the router in front.

Each resource runs as `python -m switchboard plugin serve DIR`, with its
config and Secret written to a private folder the way Kubernetes would mount
them. The router (static backend, in this process) only sees plugins that
report SERVING. Three things keep it true while files and processes change:

- *Reload*: an edited resource gets a new process; once it serves, the table
  switches to it and only then is the old one stopped (SIGTERM: it finishes
  what it has in flight). Resources that did not change are left alone.
- *Crash*: a plugin that exits is taken out of the table at once, shown as
  degraded with its last error, and restarted with a growing back-off.
- *Stop*: everything gets SIGTERM and is waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from switchboard.local.loader import LoadError, LocalPlugin, load
from switchboard.router.discovery import StaticDiscovery
from switchboard.router.table import PluginRoute

log = logging.getLogger("switchboard.local")

START_TIMEOUT = 30.0
STOP_GRACE = 10.0
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
#: A plugin that served this long gets its restart back-off reset.
HEALTHY_RESET = 60.0


class State(StrEnum):
    STARTING = "starting"
    SERVING = "serving"
    DEGRADED = "degraded"
    STOPPED = "stopped"


@dataclass
class Instance:
    plugin: LocalPlugin
    workdir: Path
    process: asyncio.subprocess.Process | None = None
    address: str = ""
    state: State = State.STARTING
    restarts: int = 0
    last_error: str = ""
    started_at: float = 0.0
    stopping: bool = False
    serving: asyncio.Event = field(default_factory=asyncio.Event)
    monitor: asyncio.Task[None] | None = None
    restart: asyncio.Task[None] | None = None

    @property
    def label(self) -> str:
        kind = "integration" if self.plugin.resource.kind == "VendorIntegration" else "plugin"
        return f"{kind} {self.plugin.namespace}/{self.plugin.name}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


class Supervisor:
    def __init__(
        self,
        paths: list[Path],
        plugins: list[Path],
        state_dir: Path,
        discovery: StaticDiscovery,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.paths, self.plugins, self.state_dir = paths, plugins, state_dir
        self.discovery = discovery
        self.on_change = on_change
        self.instances: dict[tuple[str, str, str], Instance] = {}
        self.load_error = ""
        self._mtimes: dict[Path, float] = {}
        self._generation = 0

    # -- start and stop --

    async def start(self) -> None:
        """Load and start everything; raises LoadError (nothing started) on bad YAML."""
        plugins = load(self.paths, self.plugins, dict(os.environ))
        self._mtimes = self._snapshot()
        started = [self._new_instance(p) for p in plugins]
        for instance in started:
            # Registered before launch: one that fails to start is shown as
            # degraded and restarted with back-off, like any crash.
            self.instances[instance.plugin.key] = instance
        await asyncio.gather(*(self._launch(i) for i in started))
        self.publish()

    async def stop(self) -> None:
        await asyncio.gather(*(self._stop(i) for i in self.instances.values()))
        self.instances.clear()
        self.publish()

    # -- the routing table --

    def publish(self) -> None:
        routes = []
        for instance in self.instances.values():
            resource = instance.plugin.resource
            body = resource.model_dump(by_alias=True, mode="json")
            body["metadata"]["namespace"] = instance.plugin.namespace
            serving = instance.state is State.SERVING and instance.address
            routes.append(
                PluginRoute.from_resource(
                    body,
                    [instance.address] if serving else [],
                    [] if serving or not instance.address else [instance.address],
                )
            )
        self.discovery.publish(routes)
        self.on_change()

    # -- one plugin process --

    def _new_instance(self, plugin: LocalPlugin) -> Instance:
        self._generation += 1
        workdir = (
            self.state_dir / "plugins" / f"{plugin.namespace}-{plugin.name}-{self._generation}"
        )
        secrets = workdir / "secrets"
        secrets.mkdir(parents=True, exist_ok=True)
        for key, value in plugin.secrets.items():
            path = secrets / key
            path.write_text(value)
            path.chmod(0o600)
        (workdir / "config.json").write_text(json.dumps(plugin.resource.spec.config))
        return Instance(plugin, workdir)

    async def _launch(self, instance: Instance) -> bool:
        """Start the process and wait until it serves; False if it did not."""
        instance.state, instance.address = State.STARTING, ""
        instance.serving.clear()
        termination = instance.workdir / "termination-log"
        termination.write_text("")
        env = {
            **os.environ,
            "SWITCHBOARD_PLUGIN_HOST": "127.0.0.1",
            "SWITCHBOARD_PLUGIN_PORT": "0",
            "SWITCHBOARD_PLUGIN_CONFIG": str(instance.workdir / "config.json"),
            "SWITCHBOARD_PLUGIN_SECRETS_DIR": str(instance.workdir / "secrets"),
            "SWITCHBOARD_TERMINATION_LOG": str(termination),
            "SWITCHBOARD_TENANT": instance.plugin.namespace,
        }
        instance.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "switchboard",
            "plugin",
            "serve",
            str(instance.plugin.plugin_dir),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        instance.started_at = time.monotonic()
        monitor = asyncio.create_task(self._monitor(instance), name=instance.label)
        instance.monitor = monitor
        serving = asyncio.create_task(instance.serving.wait())
        await asyncio.wait(
            {serving, monitor}, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if not serving.done():
            serving.cancel()
            instance.last_error = instance.last_error or "did not start serving in time"
            return False
        log.info("Started %s at %s (pid %s)", instance.label, instance.address, instance.pid)
        return True

    async def _monitor(self, instance: Instance) -> None:
        process = instance.process
        assert process is not None
        assert process.stderr is not None
        async for raw in process.stderr:
            line = raw.decode(errors="replace").strip()
            try:
                record = json.loads(line)
            except ValueError:
                continue
            message = str(record.get("msg", ""))
            if message == "Listening for calls":
                instance.address = f"127.0.0.1:{record['port']}"
            elif message == "Activated the plugin" and instance.address:
                instance.state = State.SERVING
                instance.serving.set()
                if (
                    instance.plugin.key in self.instances
                    and self.instances[instance.plugin.key] is instance
                ):
                    self.publish()
            if record.get("level") in ("error", "critical", "warning"):
                instance.last_error = message
        code = await process.wait()
        if instance.stopping:
            return
        reason = (instance.workdir / "termination-log").read_text().strip()
        instance.last_error = reason or instance.last_error or f"exited with code {code}"
        instance.state = State.DEGRADED
        instance.serving.clear()
        log.warning("The %s exited (code %s): %s", instance.label, code, instance.last_error)
        if self.instances.get(instance.plugin.key) is instance:
            self.publish()
            instance.restart = asyncio.create_task(
                self._restart(instance), name=f"restart {instance.label}"
            )

    async def _restart(self, instance: Instance) -> None:
        served = time.monotonic() - instance.started_at
        if served >= HEALTHY_RESET:
            instance.restarts = 0
        delay = min(BACKOFF_FIRST * 2**instance.restarts, BACKOFF_MAX)
        instance.restarts += 1
        log.info("Restarting %s in %.0fs (restart %d)", instance.label, delay, instance.restarts)
        await asyncio.sleep(delay)
        if self.instances.get(instance.plugin.key) is not instance or instance.stopping:
            return
        await self._launch(instance)

    async def _stop(self, instance: Instance) -> None:
        instance.stopping = True
        instance.state = State.STOPPED
        if instance.restart is not None:
            instance.restart.cancel()
        process = instance.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE + 5)
        except TimeoutError:
            process.kill()
            await process.wait()
        if instance.monitor is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await instance.monitor

    # -- reload --

    def _snapshot(self) -> dict[Path, float]:
        mtimes: dict[Path, float] = {}
        for path in self.paths:
            files = path.rglob("*") if path.is_dir() else [path]
            for file in files:
                if file.suffix in (".yaml", ".yml") and file.is_file():
                    mtimes[file] = file.stat().st_mtime
        return mtimes

    async def watch(self, interval: float = 0.5) -> None:
        """Reload whenever a YAML file changes, appears or disappears."""
        while True:
            await asyncio.sleep(interval)
            snapshot = self._snapshot()
            if snapshot != self._mtimes:
                self._mtimes = snapshot
                await self.reload()

    async def reload(self) -> None:
        try:
            wanted = {p.key: p for p in load(self.paths, self.plugins, dict(os.environ))}
        except LoadError as error:
            self.load_error = str(error)
            log.error("Kept the running plugins; the YAML has errors:\n%s", error)
            self.on_change()
            return
        self.load_error = ""
        replaced: list[tuple[Instance, Instance]] = []
        for key, plugin in wanted.items():
            current = self.instances.get(key)
            if current is not None and current.plugin == plugin:
                continue  # unchanged: its process is left alone
            fresh = self._new_instance(plugin)
            if not await self._launch(fresh):
                log.error(
                    "The new %s did not start (%s); kept the old one", fresh.label, fresh.last_error
                )
                await self._stop(fresh)
                continue
            self.instances[key] = fresh
            if current is not None:
                replaced.append((current, fresh))
            self.publish()  # traffic moves to the new process before the old one stops
        for key in set(self.instances) - set(wanted):
            gone = self.instances.pop(key)
            self.publish()
            replaced.append((gone, gone))
        for old, _new in replaced:
            await self._stop(old)
            log.info("Reloaded %s", old.label)
        self.on_change()

    def snapshot(self) -> list[dict[str, Any]]:
        """What the status view shows, one row per plugin."""
        rows = []
        for instance in sorted(self.instances.values(), key=lambda i: i.plugin.key):
            spec = instance.plugin.resource.spec
            rows.append(
                {
                    "plugin": f"{instance.plugin.namespace}/{instance.plugin.name}",
                    "kind": instance.plugin.resource.kind,
                    "route": getattr(spec, "channel_type", None) or getattr(spec, "vendor", ""),
                    "priority": getattr(spec, "priority", ""),
                    "state": instance.state.value,
                    "endpoint": instance.address,
                    "pid": instance.pid,
                    "restarts": instance.restarts,
                    "last_error": instance.last_error,
                }
            )
        return rows
