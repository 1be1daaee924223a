from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from noted import InMemoryDb, Memory, MemoryStore, SessionStore, SqliteDb
from servers import Server, Unavailable, start_mongo, start_phoenix, start_postgres, start_redis
from wire import WireServer, serve

if TYPE_CHECKING:
    from traces import Traces

# Every backend the conformance suite runs on. The server-backed ones need a server that
# the harness starts once per test session (see servers.py).
BACKENDS = ["sqlite", "in-memory", "postgres", "mongo", "redis"]
SERVERS: dict[str, Callable[[Path], Server]] = {
    "postgres": start_postgres,
    "mongo": start_mongo,
    "redis": start_redis,
    "phoenix": start_phoenix,
}
# Set by .ci/run: a server that cannot start is a failure there, not a skip.
REQUIRE_SERVERS = os.environ.get("NOTED_REQUIRE_SERVERS") == "1"

_names = itertools.count(1)


@pytest.fixture(autouse=True)
def keyword_default(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memories, agents, the CLI and the server search by keyword in tests unless a test
    is marked ``default_embedder``: most tests are about other things, and the embedded
    model costs seconds to load and milliseconds per text. Tests of search by meaning name
    their embedder, or carry the mark to run on the real default."""
    if request.node.get_closest_marker("default_embedder") is None:
        monkeypatch.setenv("NOTED_EMBEDDER", "none")
    else:
        monkeypatch.delenv("NOTED_EMBEDDER", raising=False)


@pytest.fixture(scope="session")
def servers(request: pytest.FixtureRequest) -> Iterator[dict[str, Server | str]]:
    """The servers, started on first use and stopped by pid at the end of the session,
    whatever the tests did. A server that cannot start maps to the reason.

    Phoenix, which takes 20 s or more to start, starts in the background as soon as the
    session first asks for any server when one of its tests is marked ``phoenix``: the
    tests before that one run meanwhile, and it waits for the start to end.

    Their files live in a directory of their own, not under pytest's temporary directory:
    another pytest session of the same user (a test file run while the suite runs) makes
    that one private again, and the servers, which run as another user where the session
    is root's, would lose their data directories under them."""
    root = Path(tempfile.mkdtemp(prefix="noted-test-servers-"))
    background = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="server-start")
    early: dict[str, concurrent.futures.Future[Server]] = {}
    if any(item.get_closest_marker("phoenix") for item in request.session.items):
        early["phoenix"] = background.submit(SERVERS["phoenix"], root / "phoenix")

    class Lazy(dict[str, Server | str]):
        def __missing__(self, name: str) -> Server | str:
            starting = early.pop(name, None)
            try:
                self[name] = SERVERS[name](root / name) if starting is None else starting.result()
            except Unavailable as exc:
                self[name] = str(exc)
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                self[name] = f"FAILED to start: {exc}"
            return self[name]

    started = Lazy()
    try:
        yield started
    finally:
        for client in _mongo_clients.values():
            client.close()
        _mongo_clients.clear()
        for starting in early.values():  # started for tests that did not run
            with contextlib.suppress(
                Unavailable, OSError, RuntimeError, subprocess.SubprocessError
            ):
                starting.result().stop()
        background.shutdown()
        for server in started.values():
            if isinstance(server, Server):
                server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def mongo_databases_dropped(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test that uses the servers, the MongoDB-protocol server's databases are
    dropped: every test opens collections of its own names, and the test server's every
    request grows slower with the collections its database holds (one each of a store's
    five: a request took ten times as long at 1,500 collections as at none), so kept
    they made the suite's last MongoDB tests many times slower than its first.

    No fixture that outlives a test may keep MongoDB collections."""
    started = request.getfixturevalue("servers") if "servers" in request.fixturenames else {}
    yield
    server = started.get("mongo")  # dict.get: a server this test did not start stays unstarted
    if isinstance(server, Server):
        _drop_databases(server.url)


_mongo_clients: dict[str, Any] = {}


def _drop_databases(url: str) -> None:
    """Drop every database but the server's own on the MongoDB-protocol server at ``url``."""
    import pymongo

    client = _mongo_clients.get(url)
    if client is None:
        client = _mongo_clients[url] = pymongo.MongoClient(url)
    for name in client.list_database_names():
        if name not in ("admin", "config", "local"):
            client.drop_database(name)


def server_url(servers: dict[str, Server | str], name: str) -> str:
    """The running server's URL; skip (or fail under NOTED_REQUIRE_SERVERS=1) without it."""
    server = servers[name]
    if isinstance(server, str):
        message = f"{name} tests need a {name} server: {server}"
        if REQUIRE_SERVERS or server.startswith("FAILED"):
            pytest.fail(message)
        pytest.skip(message)
    return server.url


def open_store(
    kind: str, servers: dict[str, Server | str], tmp_path: Path, **options: object
) -> MemoryStore:
    """A fresh, empty store of ``kind``: its own tables, collections or keys."""
    n = next(_names)
    names = {"memory_table": f"m{n}_memories", "session_table": f"m{n}_sessions"}
    names.update(options)  # type: ignore[arg-type]
    if kind == "sqlite":
        return SqliteDb(tmp_path / f"memory{n}.db", **names)  # type: ignore[arg-type]
    if kind == "in-memory":
        return InMemoryDb()
    url = server_url(servers, kind)
    if kind == "postgres":
        from noted.db.postgres import PostgresDb

        return PostgresDb(url, **names)  # type: ignore[arg-type]
    if kind == "mongo":
        from noted.db.mongodb import MongoDb

        return MongoDb(url, database="noted_tests", **names)  # type: ignore[arg-type]
    if kind == "redis":
        from noted.db.redisdb import RedisDb

        return RedisDb(url, **names)  # type: ignore[arg-type]
    raise ValueError(kind)


@pytest.fixture(params=BACKENDS)
def sessions(
    request: pytest.FixtureRequest, servers: dict[str, Server | str], tmp_path: Path
) -> Iterator[SessionStore]:
    """A fresh, empty store of each kind, as a session store."""
    db = open_store(request.param, servers, tmp_path)
    assert isinstance(db, SessionStore)
    yield db
    db.close()


@pytest.fixture
def traces() -> Iterator[Traces]:
    """noted's spans, collected while tracing is on for the test."""
    from noted import tracing as noted_tracing
    from traces import Traces

    found = Traces()
    noted_tracing.instrument(tracer_provider=found.provider)
    yield found
    noted_tracing.uninstrument()


@pytest.fixture(params=BACKENDS)
def store(
    request: pytest.FixtureRequest, servers: dict[str, Server | str], tmp_path: Path
) -> Iterator[MemoryStore]:
    db = open_store(request.param, servers, tmp_path)
    yield db
    db.close()


@pytest.fixture
def memory(store: MemoryStore) -> Memory:
    return Memory(db=store)


@pytest.fixture
def wire() -> Iterator[WireServer]:
    """A local server that replays a provider's wire format (see tests/wire.py)."""
    yield from serve()
