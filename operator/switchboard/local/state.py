"""Where local mode keeps what outlives one call of the CLI, and how the CLI finds it.

A state folder (`.switchboard/` next to where `switchboard up` ran, or
`--state-dir`) holds:

| file | what | lifetime |
| --- | --- | --- |
| `up.lock` | held (flock) while `switchboard up` runs: one per folder | running |
| `local.json` | the router's URL, the API key, the namespace, the pid | running |
| `status.json` | each plugin's state, gates and last error (`switchboard status`) | running |
| `api-keys.yaml` | the local API key (mode 0600), kept so the token survives restarts | kept |
| `ledger.db` | the router's delivery ledger (SQLite) | kept |
| `logs/` | one log file per plugin (`switchboard logs PLUGIN`) and local mode's own | kept |

Secrets never go there: a plugin's credentials are written to a private
folder in memory (`runtime_dir`), removed when the plugin stops and, after a
crash, when `switchboard up` next starts in the same state folder.

Each running `switchboard up` also leaves a pointer in the user's state
folder (`$XDG_STATE_HOME/switchboard/routers/`), so `switchboard env` and the
other commands find the one local router from any folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

STATE_DIR_NAME = ".switchboard"
LOCK_FILE = "up.lock"
STATE_FILE = "local.json"
STATUS_FILE = "status.json"
KEYS_FILE = "api-keys.yaml"
LEDGER_FILE = "ledger.db"
LOGS_DIR = "logs"
LOCAL_KEY_NAME = "local"


class StateError(Exception):
    """No usable local router state; the message says what to do."""


@dataclass(frozen=True)
class LocalRouter:
    """A running `switchboard up`, as its state folder describes it."""

    state_dir: Path
    url: str
    token: str
    namespace: str
    pid: int


# --- the state folder ----------------------------------------------------------------


@contextlib.contextmanager
def exclusive(state_dir: Path) -> Iterator[IO[str]]:
    """Hold the state folder's lock; StateError when another `switchboard up` holds it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = (state_dir / LOCK_FILE).open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            running = read_router(state_dir)
            where = f" (router at {running.url}, pid {running.pid})" if running else ""
            raise StateError(
                f"switchboard up already runs with state folder {state_dir}{where}; stop it "
                "first (Ctrl-C in its terminal), or give this one another --state-dir."
            ) from None
        yield handle
    finally:
        handle.close()


def api_key(state_dir: Path) -> str:
    """The local API key: the one kept in the state folder, or a new one kept from now on."""
    path = state_dir / KEYS_FILE
    with contextlib.suppress(OSError, yaml.YAMLError, KeyError, TypeError, IndexError):
        data = yaml.safe_load(path.read_text())
        for entry in data["keys"]:
            if entry["name"] == LOCAL_KEY_NAME and len(str(entry["key"])) >= 16:
                return str(entry["key"])
    key = secrets.token_urlsafe(24)
    write_private(path, yaml.safe_dump({"keys": [{"name": LOCAL_KEY_NAME, "key": key}]}))
    return key


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.chmod(staging, 0o600)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def write_router(router: LocalRouter) -> None:
    """Announce a running router: in its state folder and in the user's registry."""
    data = {
        "url": router.url,
        "token": router.token,
        "namespace": router.namespace,
        "pid": router.pid,
        "stateDir": str(router.state_dir.resolve()),
    }
    write_private(router.state_dir / STATE_FILE, json.dumps(data))
    pointer = {"stateDir": data["stateDir"], "pid": router.pid}
    write_private(_registry_entry(router.state_dir), json.dumps(pointer))


def forget_router(state_dir: Path, pid: int) -> None:
    """The router of process `pid` stopped: remove what announced it (and nothing newer)."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        if int(json.loads((state_dir / STATE_FILE).read_text())["pid"]) != pid:
            return
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    (state_dir / STATUS_FILE).unlink(missing_ok=True)
    _registry_entry(state_dir).unlink(missing_ok=True)


def read_router(state_dir: Path) -> LocalRouter | None:
    """The router `switchboard up` announced in `state_dir`, if its process still runs."""
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
        router = LocalRouter(
            state_dir, str(data["url"]), str(data["token"]), data["namespace"], int(data["pid"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return router if _alive(router.pid) else None


def write_status(state_dir: Path, status: Mapping[str, Any]) -> None:
    write_private(state_dir / STATUS_FILE, json.dumps(status))


def read_status(state_dir: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((state_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- finding the router from anywhere --------------------------------------------------


def registry_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The user's folder of pointers to running local routers."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME", "~")) / ".local/state")
    return Path(base).expanduser() / "switchboard" / "routers"


def _registry_entry(state_dir: Path) -> Path:
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:16]
    return registry_dir() / f"{digest}.json"


def running_routers() -> list[LocalRouter]:
    """Every local router of this user that still runs (stale pointers are removed)."""
    found = []
    folder = registry_dir()
    for entry in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            state_dir = Path(json.loads(entry.read_text())["stateDir"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        router = read_router(state_dir)
        if router is None:
            entry.unlink(missing_ok=True)
        else:
            found.append(router)
    return found


def find_router(start: Path, state_dir: Path | None = None) -> LocalRouter:
    """The local router a command in `start` means; StateError saying what to do if none.

    `state_dir` when given; else the nearest `.switchboard/` of `start` or a
    parent folder with a running router; else the one running local router of
    this user.
    """
    if state_dir is not None:
        router = read_router(state_dir)
        if router is None:
            raise StateError(
                f"No switchboard up runs with state folder {state_dir}; start one with "
                f"`switchboard up --state-dir {state_dir} DIR`."
            )
        return router
    for folder in (start, *start.parents):
        candidate = folder / STATE_DIR_NAME
        if (candidate / STATE_FILE).is_file():
            router = read_router(candidate)
            if router is not None:
                return router
    running = running_routers()
    if len(running) == 1:
        return running[0]
    if running:
        listed = ", ".join(f"{r.state_dir} ({r.url})" for r in running)
        raise StateError(
            f"Several local routers run: {listed}; pick one with --state-dir, or set "
            "SWITCHBOARD_URL and SWITCHBOARD_TOKEN."
        )
    raise StateError(
        "No router to talk to: no switchboard up runs on this machine, and SWITCHBOARD_URL "
        "is not set. Start one with `make demo` or `switchboard up DIR`, or set "
        "SWITCHBOARD_URL (and SWITCHBOARD_TOKEN) for a router elsewhere."
    )


# --- secrets in memory -----------------------------------------------------------------


def runtime_dir(state_dir: Path, environ: Mapping[str, str] | None = None) -> Path:
    """A private folder for this state folder's plugin secrets, in memory where possible.

    `$XDG_RUNTIME_DIR` (a per-user tmpfs), else `/dev/shm`, else the system's
    temporary folder; never the state folder, which is on disk and kept.
    """
    environ = os.environ if environ is None else environ
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:16]
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if runtime and Path(runtime).is_dir():
        base = Path(runtime) / "switchboard"
    elif Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK):  # noqa: S108 - a tmpfs
        base = Path("/dev/shm") / f"switchboard-{os.getuid()}"  # noqa: S108 - private 0700
    else:
        base = Path(tempfile.gettempdir()) / f"switchboard-{os.getuid()}"
    return base / digest


def fresh_runtime_dir(state_dir: Path) -> Path:
    """The runtime folder, emptied of what a crashed run left (its secrets), mode 0700."""
    folder = runtime_dir(state_dir)
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.parent.chmod(0o700)
    folder.mkdir(mode=0o700)
    return folder
