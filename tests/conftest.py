from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from noted import InMemoryDb, Memory, MemoryStore, SqliteDb
from wire import WireServer, serve


@pytest.fixture(params=["sqlite", "in-memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemoryStore]:
    db: MemoryStore = (
        SqliteDb(tmp_path / "memory.db") if request.param == "sqlite" else InMemoryDb()
    )
    yield db
    db.close()


@pytest.fixture
def memory(store: MemoryStore) -> Memory:
    return Memory(db=store)


@pytest.fixture
def wire() -> Iterator[WireServer]:
    """A local server that replays a provider's wire format (see tests/wire.py)."""
    yield from serve()
