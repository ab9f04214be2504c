"""Local mode's process supervisor: plugins as child processes, the router in front.

Each resource first passes the operator's gates (`switchboard.controller.gates`,
the same checks and words as in the cluster); one that does not is shown as
`blocked` with the gate's message and not started. The others run as
`python -m switchboard plugin serve DIR`, configured the way the operator
configures a pod (`plugin_environment`), and join the routing table once
their `grpc.health.v1` service says SERVING: the signal the router and the
kubelet read, not a log line.

What keeps a plugin honest while files and processes change:

- *Start*: a plugin that is not serving within `start_timeout` is killed and
  restarted with back-off (1 s, 2 s, 4 s ... 30 s), shown as `degraded` with
  why. One that rejects its config or its package (exit 2 or 3) is `failed`
  and waits for the YAML to change.
- *Reload*: an edited resource gets a new process; once it serves, the table
  switches to it, requests that already chose the old one get `DRAIN_SECONDS`
  to reach it, and only then is the old one stopped (SIGTERM: it finishes what
  it has in flight). Resources that did not change are left alone.
- *Crash*: a plugin that exits leaves the table at once, is shown as
  `degraded` with its last error, and is restarted with the same back-off.
- *Stop*: SIGTERM to each plugin, SIGKILL to its process group after
  `STOP_GRACE`.
- *Death of local mode itself*: each plugin runs in a process group of its
  own and gets SIGKILL from the kernel when `switchboard up` dies, however it
  dies (`SWITCHBOARD_PARENT_PID`: the runtime asks Linux for `PR_SET_PDEATHSIG`),
  so no plugin outlives it.

Secrets live in a private in-memory folder (`state.runtime_dir`) only while
their process runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, TextIO

from switchboard.api.backoff import backoff_seconds
from switchboard.api.models import VendorIntegration
from switchboard.controller.gates import Gate, GatePolicy, GateResult, evaluate
from switchboard.controller.settings import OperatorSettings
from switchboard.local import state
from switchboard.local.loader import Loaded, LoadError, LocalPlugin, load, observed
from switchboard.logs import render_fields
from switchboard.router.discovery import StaticDiscovery
from switchboard.router.table import PluginRoute

log = logging.getLogger("switchboard.local")

START_TIMEOUT: Final = 60.0
STOP_GRACE: Final = 10.0
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
#: A plugin that served this long gets its restart back-off reset.
HEALTHY_RESET: Final = 60.0
#: After the table moved to a new process, how long the old one still takes calls.
DRAIN_SECONDS: Final = 1.0
#: How often gates are evaluated again without a change (a licence expires by the clock).
RECHECK_SECONDS: Final = 60.0
#: Exit codes after which restarting cannot help (the runtime's CONFIG_REJECTED, PACKAGE_INVALID).
NOT_RESTARTED: Final = frozenset({2, 3})
#: Variables of `switchboard up`'s environment a plugin inherits, besides `OTEL_*`.
INHERITED: Final = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR")
LOG_FILE_LIMIT: Final = 10 * 1024 * 1024


class State(StrEnum):
    BLOCKED = "blocked"
    """A gate failed (the same one the operator would report): not started."""
    STARTING = "starting"
    SERVING = "serving"
    DEGRADED = "degraded"
    """It exited or did not start in time: restarting with back-off."""
    FAILED = "failed"
    """It rejected its config or its package: not restarted until the YAML changes."""
    STOPPED = "stopped"


def plugin_environment(
    environ: Mapping[str, str],
    plugin: LocalPlugin,
    *,
    port: int,
    workdir: Path,
    parent: int,
    shutdown_grace: float = STOP_GRACE,
) -> dict[str, str]:
    """The whole environment of one plugin process: what a pod would have, nothing more.

    `switchboard up`'s own environment is not passed on (its tokens and keys are
    none of the plugin's business): only `INHERITED` and `OTEL_*` variables
    (minus `OTEL_SERVICE_NAME`: each plugin names itself), the resource's
    `spec.env`, and the runtime's settings, which local mode owns.
    """
    env = {name: environ[name] for name in INHERITED if name in environ}
    env.update(
        {
            name: value
            for name, value in environ.items()
            if name.startswith("OTEL_") and name != "OTEL_SERVICE_NAME"
        }
    )
    env.setdefault("LANG", "C.UTF-8")
    env.update({variable.name: variable.value for variable in plugin.resource.spec.env})
    kind = "vendorintegration" if isinstance(plugin.resource, VendorIntegration) else "plugin"
    env.update(
        {
            "HOME": str(workdir / "tmp"),
            "TMPDIR": str(workdir / "tmp"),
            "SWITCHBOARD_PLUGIN_HOST": "127.0.0.1",
            "SWITCHBOARD_PLUGIN_PORT": str(port),
            "SWITCHBOARD_PLUGIN_CONFIG": str(workdir / "config.json"),
            "SWITCHBOARD_PLUGIN_SECRETS_DIR": str(workdir / "secrets"),
            "SWITCHBOARD_TERMINATION_LOG": str(workdir / "termination-log"),
            "SWITCHBOARD_SHUTDOWN_GRACE_SECONDS": f"{shutdown_grace:g}",
            "SWITCHBOARD_TENANT": plugin.namespace,
            "SWITCHBOARD_RESOURCE": f"{kind}/{plugin.name}",
            # The plugin ends when local mode does, however local mode ends.
            "SWITCHBOARD_PARENT_PID": str(parent),
        }
    )
    env.setdefault("SWITCHBOARD_PLUGIN_LOG_LEVEL", "INFO")
    return env


def exit_reason(code: int, termination_message: str, start_timeout: float | None) -> str:
    """Why a plugin process ended, for the status view."""
    if start_timeout is not None:
        return f"did not become ready within {start_timeout:g}s; killed it"
    if termination_message:
        return termination_message
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


# --- a plugin's log lines ----------------------------------------------------------------

#: Fields of a plugin's JSON log record that the one-line rendering leaves out.
_QUIET_FIELDS: Final = frozenset({"ts", "level", "msg", "plugin", "logger", "error"})


def render_record(line: str) -> str:
    """One plugin log line for a person: `level msg key=value ...` (JSON), else as it came."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict):
        return line
    fields = {k: v for k, v in record.items() if k not in _QUIET_FIELDS}
    error = str(record.get("error", "")).strip()
    if error:
        fields["error"] = error.splitlines()[-1]
    return f"{record.get('level', ''):<7} {record.get('msg', '')}{render_fields(fields)}"


def error_summary(line: str) -> str | None:
    """What a warning or error record says went wrong, in one line; None for other records."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("level") not in ("warning", "error", "critical"):
        return None
    message = str(record.get("msg", ""))
    if record.get("rpc"):
        # A plugin's "Failed a call" says which call in a field.
        message += f" ({record['rpc']})"
    detail = " ".join(
        str(part)
        for part in (record.get("error_class"), str(record.get("error", "")).strip())
        if part
    )
    if detail:
        message += ": " + detail.splitlines()[-1]
    return message


class PluginLog:
    """A plugin's log file under the state folder, one per resource, kept after it stops."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size > LOG_FILE_LIMIT:
            path.replace(path.with_suffix(".log.1"))
        self._file: TextIO = path.open("a", encoding="utf-8")

    def write(self, line: str) -> None:
        self._file.write(line + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def log_path(state_dir: Path, namespace: str, name: str) -> Path:
    return state_dir / state.LOGS_DIR / f"{namespace}-{name}.log"


# --- processes that die with local mode --------------------------------------------------


def die_with_us(command: list[str], signum: signal.Signals = signal.SIGTERM) -> list[str]:
    """`command`, made to get `signum` when local mode dies (`setpriv --pdeathsig`, Linux).

    An exec wrapper rather than a `preexec_fn`: Python code run between fork and
    exec in a process with gRPC threads can crash the child.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return command
    return [setpriv, f"--pdeathsig={signum.name.removeprefix('SIG')}", "--", *command]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- one plugin ---------------------------------------------------------------------------


@dataclass
class Instance:
    """One resource and, unless it is blocked, one generation of its process."""

    plugin: LocalPlugin
    workdir: Path
    gates: GateResult
    state: State = State.STARTING
    process: asyncio.subprocess.Process | None = None
    port: int = 0
    restarts: int = 0
    last_error: str = ""
    started_at: float = 0.0
    next_restart: float | None = None
    stopping: bool = False
    reported: dict[str, Any] = field(default_factory=dict)
    """What the running plugin reported about itself (Describe), for the routing table."""
    reload_error: str = ""
    failed_edit: LocalPlugin | None = None
    """An edit of this resource that did not start; tried again when the YAML changes again."""
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the first start ended: serving, or failed."""
    task: asyncio.Task[None] | None = None

    @property
    def label(self) -> str:
        kind = "integration" if isinstance(self.plugin.resource, VendorIntegration) else "plugin"
        return f"{kind} {self.plugin.namespace}/{self.plugin.name}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}" if self.port else ""

    @property
    def pid(self) -> int | None:
        running = self.process is not None and self.process.returncode is None
        return self.process.pid if running and self.process is not None else None

    @property
    def blocking(self) -> Gate | None:
        return self.gates.blocking

    def log_fields(self, **fields: Any) -> dict[str, Any]:
        """The ``extra`` of a log record about this resource: named as `switchboard status`
        names it, ``fields`` in between (the kind last: the live view cuts long lines)."""
        return {
            "plugin": f"{self.plugin.namespace}/{self.plugin.name}",
            **fields,
            "kind": self.plugin.resource.kind,
        }


class Supervisor:
    def __init__(
        self,
        paths: list[Path],
        plugins: list[Path],
        state_dir: Path,
        discovery: StaticDiscovery,
        on_change: Callable[[], None] = lambda: None,
        *,
        runtime_dir: Path | None = None,
        start_timeout: float = START_TIMEOUT,
        echo: Callable[[str, str], None] | None = None,
        policy: GatePolicy | None = None,
        on_gate: Callable[[LocalPlugin, GateResult], None] | None = None,
    ) -> None:
        self.paths, self.plugins, self.state_dir = paths, plugins, state_dir
        #: Told when a resource's gates change verdict (the audit trail).
        self.on_gate = on_gate
        self.discovery = discovery
        self.on_change = on_change
        self.runtime_dir = runtime_dir or state.fresh_runtime_dir(state_dir)
        self.start_timeout = start_timeout
        self.echo = echo
        self.policy = policy or OperatorSettings().gate_policy()
        self.instances: dict[tuple[str, str, str], Instance] = {}
        self.loaded = Loaded([])
        self.load_error = ""
        self._generation = 0
        self._logs: dict[tuple[str, str, str], PluginLog] = {}
        self._wake = asyncio.Event()
        self._reconciler: asyncio.Task[None] | None = None
        self._serving: frozenset[tuple[str, str, str]] = frozenset()

    # -- start and stop --

    def load(self) -> None:
        """Read and check the YAML; LoadError (naming each file and field) if it can't run."""
        self.loaded = load(self.paths, self.plugins, os.environ)

    async def start(self) -> None:
        """Start every plugin that passes its gates (after `load`)."""
        await self._reconcile()
        self._reconciler = asyncio.create_task(self._reconcile_forever(), name="reconcile")

    async def settled(self) -> None:
        """Until every plugin that may run has served or failed once."""
        while True:
            waiting = [i for i in self.instances.values() if not i.settled.is_set()]
            if not waiting:
                return
            await asyncio.wait({asyncio.ensure_future(i.settled.wait()) for i in waiting})

    async def stop(self) -> None:
        if self._reconciler is not None:
            self._reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconciler
        await asyncio.gather(*(self._stop(i) for i in self.instances.values()))
        self.instances.clear()
        self.publish()
        for plugin_log in self._logs.values():
            plugin_log.close()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)

    # -- the routing table --

    def publish(self) -> None:
        routes = []
        for instance in self.instances.values():
            body = instance.plugin.resource.model_dump(by_alias=True, mode="json")
            body["metadata"]["namespace"] = instance.plugin.namespace
            if instance.reported:
                body["status"] = {"plugin": instance.reported}
            serving = instance.state is State.SERVING
            ready = [instance.address] if serving else []
            not_ready = [instance.address] if instance.address and not serving else []
            routes.append(PluginRoute.from_resource(body, ready, not_ready))
        self.discovery.publish(routes)
        serving_now = frozenset(k for k, i in self.instances.items() if i.state is State.SERVING)
        if serving_now != self._serving:
            self._serving = serving_now
            self._wake.set()  # a dependency may have become Ready, or stopped being
        self.on_change()

    def _changed(self, instance: Instance) -> None:
        if self.instances.get(instance.plugin.key) is instance:
            self.publish()

    # -- what should run --

    async def _reconcile_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RECHECK_SECONDS)
            self._wake.clear()
            try:
                await self._reconcile()
            except Exception:
                log.exception("Could not bring the plugins in line with the YAML")

    async def _reconcile(self) -> None:
        """Make what runs match the loaded YAML and the gates."""
        serving = {k for k, i in self.instances.items() if i.state is State.SERVING}
        wanted = {plugin.key: plugin for plugin in self.loaded.plugins}
        for key, plugin in wanted.items():
            result = evaluate(plugin.resource, self.policy, observed(plugin, self.loaded, serving))
            current = self.instances.get(key)
            if self.on_gate is not None and _verdict(current.gates if current else None) != (
                _verdict(result)
            ):
                self.on_gate(plugin, result)
            if not result.passed:
                await self._block(key, plugin, result, current)
            elif current is None or current.state is State.BLOCKED:
                self._install(self._launch(plugin, result))
            elif current.plugin != plugin and current.failed_edit != plugin:
                await self._replace(current, self._launch(plugin, result))
            else:
                current.gates = result
        for key in set(self.instances) - set(wanted):
            gone = self.instances.pop(key)
            self.publish()
            await asyncio.sleep(DRAIN_SECONDS if gone.state is State.SERVING else 0)
            await self._stop(gone)
            log.info(
                "Stopped a plugin: its resource is gone from the YAML", extra=gone.log_fields()
            )
        self.publish()

    async def _block(
        self,
        key: tuple[str, str, str],
        plugin: LocalPlugin,
        result: GateResult,
        current: Instance | None,
    ) -> None:
        blocking = result.blocking
        assert blocking is not None
        if current is not None and current.state is State.BLOCKED and current.plugin == plugin:
            if current.blocking != blocking:
                current.gates = result
                log.warning("A plugin does not run", extra=_blocked(current, blocking))
            return
        instance = Instance(plugin, self._workdir(plugin), result, state=State.BLOCKED)
        instance.settled.set()
        self.instances[key] = instance
        self.publish()
        log.warning("A plugin does not run", extra=_blocked(instance, blocking))
        if current is not None:
            await self._stop(current)

    def _install(self, instance: Instance) -> None:
        self.instances[instance.plugin.key] = instance
        self.publish()

    async def _replace(self, old: Instance, fresh: Instance) -> None:
        """Move to `fresh` without a failed request: only once it serves, then drain `old`."""
        if old.state is not State.SERVING:
            await self._stop(old)  # a broken process is no fallback
            self._install(fresh)
            log.info("Reloaded a plugin", extra=fresh.log_fields())
            return
        await fresh.settled.wait()
        if fresh.state is not State.SERVING:
            await self._stop(fresh)
            old.failed_edit = fresh.plugin
            old.reload_error = (
                f"The edited resource did not start ({fresh.last_error}); "
                "the previous version keeps serving."
            )
            log.error(
                "An edited plugin did not start; kept the old one",
                extra=old.log_fields(error=fresh.last_error),
            )
            self._changed(old)
            return
        self._install(fresh)  # new requests go to the new process from here on
        await asyncio.sleep(DRAIN_SECONDS)  # requests that chose the old one reach it
        await self._stop(old)  # SIGTERM: it finishes what it has in flight
        log.info("Reloaded a plugin", extra=fresh.log_fields())

    def reload(self) -> None:
        """Read the YAML again; what changed is applied next. Bad YAML keeps what runs."""
        try:
            loaded = load(self.paths, self.plugins, os.environ)
        except LoadError as error:
            self.load_error = str(error)
            log.error("Kept the running plugins; the YAML has errors", extra={"error": str(error)})
            self.on_change()
            return
        self.load_error = ""
        for instance in self.instances.values():
            instance.failed_edit = None
        self.loaded = loaded
        self._wake.set()

    # -- one process --

    def _workdir(self, plugin: LocalPlugin) -> Path:
        self._generation += 1
        return self.runtime_dir / f"{plugin.namespace}-{plugin.name}-{self._generation}"

    def _launch(self, plugin: LocalPlugin, result: GateResult) -> Instance:
        instance = Instance(plugin, self._workdir(plugin), result)
        instance.task = asyncio.create_task(self._supervise(instance), name=instance.label)
        return instance

    def _log(self, plugin: LocalPlugin) -> PluginLog:
        if plugin.key not in self._logs:
            self._logs[plugin.key] = PluginLog(
                log_path(self.state_dir, plugin.namespace, plugin.name)
            )
        return self._logs[plugin.key]

    async def _supervise(self, instance: Instance) -> None:
        """Run, watch and restart one generation until it is stopped."""
        try:
            while not instance.stopping:
                code = await self._run_once(instance)
                if instance.stopping:
                    return
                instance.settled.set()
                if code in NOT_RESTARTED:
                    instance.state = State.FAILED
                    self._changed(instance)
                    log.error(
                        "A plugin cannot start; fix the YAML (it reloads by itself)",
                        extra=instance.log_fields(error=instance.last_error),
                    )
                    return
                if time.monotonic() - instance.started_at >= HEALTHY_RESET:
                    instance.restarts = 0
                delay = backoff_seconds(instance.restarts + 1, base=BACKOFF_FIRST, cap=BACKOFF_MAX)
                instance.restarts += 1
                instance.state = State.DEGRADED
                instance.next_restart = time.time() + delay
                self._changed(instance)
                log.info(
                    "Restarting a plugin",
                    extra=instance.log_fields(retry_in_seconds=delay, restarts=instance.restarts),
                )
                await asyncio.sleep(delay)
                instance.next_restart = None
        finally:
            instance.settled.set()

    def _prepare(self, instance: Instance) -> None:
        """The files a pod would have mounted: config, secrets (0600), a private /tmp."""
        workdir = instance.workdir
        secrets = workdir / "secrets"
        (workdir / "tmp").mkdir(parents=True, mode=0o700, exist_ok=True)
        secrets.mkdir(mode=0o700, exist_ok=True)
        for key, value in instance.plugin.secrets.items():
            path = secrets / key
            path.touch(mode=0o600)
            path.write_text(value)
        (workdir / "config.json").write_text(json.dumps(instance.plugin.resource.spec.config))
        (workdir / "termination-log").write_text("")

    async def _run_once(self, instance: Instance) -> int | None:
        """Start the process, wait until it serves, then until it ends; its exit code."""
        instance.state, instance.port, instance.reported = State.STARTING, free_port(), {}
        self._changed(instance)
        self._prepare(instance)
        plugin_log = self._log(instance.plugin)
        instance.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "switchboard",
            "plugin",
            "serve",
            str(instance.plugin.plugin_dir),
            env=plugin_environment(
                os.environ,
                instance.plugin,
                port=instance.port,
                workdir=instance.workdir,
                parent=os.getpid(),
            ),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        instance.started_at = time.monotonic()
        reader = asyncio.create_task(self._read_output(instance, plugin_log))
        hung = False
        if await self._until_serving(instance):
            instance.state = State.SERVING
            instance.settled.set()
            self._changed(instance)
            log.info(
                "Started a plugin",
                extra=instance.log_fields(endpoint=instance.address, pid=instance.pid),
            )
        elif instance.process.returncode is None and not instance.stopping:
            hung = True
            self._kill(instance)
        code = await instance.process.wait()
        await reader
        self._kill(instance)  # whatever it started itself goes with it
        shutil.rmtree(instance.workdir / "secrets", ignore_errors=True)
        if instance.stopping:
            return code
        instance.last_error = exit_reason(
            code,
            _read_text(instance.workdir / "termination-log"),
            self.start_timeout if hung else None,
        )
        log.warning(
            "A plugin exited", extra=instance.log_fields(exit_code=code, error=instance.last_error)
        )
        return code

    async def _until_serving(self, instance: Instance) -> bool:
        """True once the health service says SERVING; False if it exits or the time is up."""
        from switchboard.sdk import PluginClient

        process = instance.process
        assert process is not None
        deadline = time.monotonic() + self.start_timeout
        async with PluginClient(instance.address, timeout=1.0) as client:
            while process.returncode is None and not instance.stopping:
                with contextlib.suppress(Exception):
                    if await client.health() == "SERVING":
                        instance.reported = await _reported(client)
                        return True
                if time.monotonic() >= deadline:
                    return False
                await asyncio.sleep(0.1)
        return False

    async def _read_output(self, instance: Instance, plugin_log: PluginLog) -> None:
        process = instance.process
        assert process is not None
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            plugin_log.write(line)
            summary = error_summary(line)
            if summary:
                instance.last_error = summary
                if self.instances.get(instance.plugin.key) is instance:
                    self.on_change()  # the status view shows it; the routes did not change
            if self.echo is not None:
                self.echo(instance.plugin.name, render_record(line))

    def _kill(self, instance: Instance) -> None:
        """SIGKILL the plugin's process group (the plugin and anything it started)."""
        if instance.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(instance.process.pid, signal.SIGKILL)

    async def _stop(self, instance: Instance) -> None:
        instance.stopping = True
        was = instance.state
        instance.state = State.STOPPED if was is not State.BLOCKED else was
        process = instance.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE + 2)
            except TimeoutError:
                self._kill(instance)
        if instance.task is not None:
            instance.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await instance.task
        if process is not None:
            if process.returncode is None:
                self._kill(instance)
                await process.wait()
            self._kill(instance)
        shutil.rmtree(instance.workdir, ignore_errors=True)

    # -- reload on change --

    def _snapshot(self) -> dict[Path, float]:
        mtimes: dict[Path, float] = {}
        for path in self.paths:
            files = path.rglob("*") if path.is_dir() else [path]
            for file in files:
                if file.suffix in (".yaml", ".yml") and file.is_file():
                    mtimes[file] = file.stat().st_mtime
        return mtimes

    async def watch(self) -> None:
        """Reload whenever a YAML file changes, appears or disappears."""
        from watchfiles import awatch

        logging.getLogger("watchfiles").setLevel(logging.WARNING)  # one line per change is noise
        last = self._snapshot()
        changed = asyncio.Event()

        directories = [path.resolve() for path in self.paths if path.is_dir()]
        files = {path.resolve() for path in self.paths if not path.is_dir()}

        def relevant(_change: Any, path: str) -> bool:
            """A named file, or a YAML file in a named folder (not the logs written next to it)."""
            candidate = Path(path).resolve()
            return candidate in files or (
                candidate.suffix in (".yaml", ".yml")
                and any(candidate.is_relative_to(folder) for folder in directories)
            )

        async def follow(folders: set[Path], recursive: bool) -> None:
            async for _changes in awatch(
                *folders, debounce=300, recursive=recursive, watch_filter=relevant
            ):
                changed.set()

        # Folders named on the command line are watched whole; a named file by its folder
        # alone (it may sit in a big tree, and editors replace files rather than write them).
        watchers = [
            asyncio.create_task(follow(folders, recursive))
            for folders, recursive in (
                ({p for p in self.paths if p.is_dir()}, True),
                ({p.parent for p in self.paths if not p.is_dir()}, False),
            )
            if folders
        ]
        try:
            while True:
                await changed.wait()
                changed.clear()
                current = self._snapshot()
                if current != last:
                    last = current
                    self.reload()
        finally:
            for watcher in watchers:
                watcher.cancel()

    # -- what `switchboard status` shows --

    def snapshot(self) -> list[dict[str, Any]]:
        """One row per resource."""
        rows = []
        for instance in sorted(self.instances.values(), key=lambda i: i.plugin.key):
            spec = instance.plugin.resource.spec
            blocking = instance.blocking
            rows.append(
                {
                    "plugin": f"{instance.plugin.namespace}/{instance.plugin.name}",
                    "kind": instance.plugin.resource.kind,
                    "route": getattr(spec, "channel_type", None) or getattr(spec, "vendor", ""),
                    "priority": getattr(spec, "priority", None),
                    "state": instance.state.value,
                    "reason": blocking.reason if blocking else "",
                    "message": blocking.message if blocking else "",
                    "endpoint": instance.address if instance.state is State.SERVING else "",
                    "pid": instance.pid,
                    "restarts": instance.restarts,
                    "nextRestartAt": instance.next_restart,
                    "lastError": instance.reload_error or instance.last_error,
                    "gates": [
                        {
                            "type": str(gate.type),
                            "ok": gate.ok,
                            "reason": str(gate.reason),
                            "message": gate.message,
                        }
                        for gate in instance.gates.gates
                    ],
                    "log": str(log_path(self.state_dir, *instance.plugin.key[1:])),
                }
            )
        return rows


def _blocked(instance: Instance, blocking: Gate) -> dict[str, Any]:
    """The fields of "A plugin does not run": the gate that holds it back, and why."""
    return instance.log_fields(
        gate=str(blocking.type), reason=blocking.reason, detail=blocking.message
    )


async def _reported(client: Any) -> dict[str, Any]:
    """The running plugin's own report (Describe), as the operator puts it in status.plugin."""
    try:
        reply = await client.describe()
    except Exception:
        return {}
    return {
        "name": reply.name,
        "version": reply.version,
        "capabilities": list(reply.capabilities),
        "operations": [op.name for op in reply.operations],
        "operationPermissions": {
            op.name: op.permission for op in reply.operations if op.permission
        },
    }


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _verdict(result: GateResult | None) -> str | None:
    """What changes count for the audit trail: passing, or the blocking reason."""
    if result is None:
        return None
    return "passed" if result.blocking is None else str(result.blocking.reason)
