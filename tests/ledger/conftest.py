"""The ledger's engines, for real: a SQLite file and a PostgreSQL server started by the suite."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from switchboard.ledger import Ledger
from tests.vendor.postgres import INSTALL_HINT, PostgresServer, find_bindir


@pytest.fixture(scope="session")
def ledger_postgres() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    if bindir is None:
        pytest.fail(f"PostgreSQL is not installed: {INSTALL_HINT}")
    server = PostgresServer(bindir)
    server.start()
    yield server
    server.destroy()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(
    request: pytest.FixtureRequest, tmp_path: Path, ledger_postgres: PostgresServer
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    name = f"ledger_{uuid.uuid4().hex[:10]}"
    url = ledger_postgres.create_database(name)
    yield url.replace("postgresql://", "postgresql+psycopg://", 1)
    ledger_postgres.accept_connections(name)
    ledger_postgres.drop_database(name)


@pytest.fixture
async def ledger(ledger_url: str) -> AsyncIterator[Ledger]:
    opened = await Ledger.open(ledger_url)
    yield opened
    await opened.close()
