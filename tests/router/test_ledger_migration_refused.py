"""`switchboard router` on a ledger it cannot migrate stops, says why, and never serves.

The database was migrated by a newer Switchboard (its schema is at a
revision this code does not know). A router that served anyway would
write rows the newer schema does not expect; it must exit non-zero at
start, name the revision and the likely cause, and never open its ports.
Both engines: the refusal comes from each engine's migration run.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from switchboard.ledger import Ledger
from tests.ledger.conftest import ledger_postgres  # noqa: F401 - fixture
from tests.ledger.schema_versions import FOREIGN_AUDIT_TABLE, head, migrate
from tests.router.ledger_process import (
    LedgerRouter,
    engine_url_fixture,  # noqa: F401 - fixture
)

#: A loaded 2-core machine takes a while to import everything; a refusal takes no longer.
EXIT_SECONDS = 90


def _set_version(url: str, version: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if version:
                conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": version})
            found = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            return str(found) if found is not None else None
    finally:
        engine.dispose()


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _run_until_exit(router: LedgerRouter, log: Path) -> tuple[int | None, str, bool]:
    """Start the router; (exit code, output, whether a port of it ever accepted a connection).

    Killed after EXIT_SECONDS (exit code -9) if it has not stopped by itself.
    """
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "switchboard", "router"],
            env=router.env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    listened = False
    deadline = time.monotonic() + EXIT_SECONDS
    try:
        while process.poll() is None and time.monotonic() < deadline:
            listened = listened or _accepts(router.port) or _accepts(router.grpc_port)
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=15)
    return process.returncode, log.read_text(errors="replace"), listened


async def _migrate(url: str) -> None:
    ledger = await Ledger.open(url)
    await ledger.close()


def test_a_ledger_migrated_by_a_newer_version_stops_the_router_with_the_reason(
    engine_url: str, tmp_path: Path
) -> None:
    asyncio.run(_migrate(engine_url))  # today's schema, then "a newer one"
    assert _set_version(engine_url, "9999") == "9999"
    router = LedgerRouter(tmp_path, [], engine_url)

    code, output, listened = _run_until_exit(router, tmp_path / "refused.log")

    assert code not in (None, 0, -9), (code, output[-3000:])
    assert "The router did not start" in output, output[-3000:]
    assert "'9999'" in output and "newer Switchboard" in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert "Router listening" not in output
    assert not listened, "the router opened a port although it could not migrate its ledger"
    assert _set_version(engine_url, "") == "9999", "the refused schema was changed"


def test_a_ledger_whose_migration_fails_stops_the_router_saying_it_could_not_migrate(
    engine_url: str, tmp_path: Path
) -> None:
    migrate(engine_url, "0001", lambda conn: conn.execute(FOREIGN_AUDIT_TABLE))
    router = LedgerRouter(tmp_path, [], engine_url)

    code, output, listened = _run_until_exit(router, tmp_path / "refused.log")

    assert code not in (None, 0, -9), (code, output[-3000:])
    assert "The router did not start: Could not migrate the ledger" in output, output[-3000:]
    assert f"from revision 0001 to {head()}" in output and "audit" in output, output[-3000:]
    assert "Cannot reach" not in output, "a schema conflict is not an unreachable database"
    assert "Traceback" not in output, output[-3000:]
    assert not listened, "the router opened a port although it could not migrate its ledger"
    assert _set_version(engine_url, "") == "0001", "the failed migration was left half-applied"
