"""RedisDb when its server goes away under a running process: an outage, a restart that
lost the data, and one on an older snapshot (the writes since it lost), on a redis-server
of each test's own."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from conftest import REQUIRE_SERVERS
from noted import MemoryQuery, StoreError, UserMemory
from noted._time import utc_now
from noted.db.redisdb import RedisDb
from servers import Server, Unavailable, start_redis


@pytest.fixture
def own_server() -> Iterator[Server]:
    """A redis-server of this test's own, which it may stop and start again."""
    workdir = Path(tempfile.mkdtemp(prefix="noted-test-own-redis-"))
    try:
        server = start_redis(workdir)
    except Unavailable as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        if REQUIRE_SERVERS:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def restart(server: Server, *, crash: bool) -> None:
    """Stop ``server`` (killed when ``crash``: nothing saved) and start it again on its
    port and working directory, on the ``dump.rdb`` there if any."""
    if crash and server.process is not None:
        server.process.kill()
        server.process.wait()
    server.stop()
    started = start_redis(server.workdir, urlsplit(server.url).port)
    server.pid, server.process = started.pid, started.process


def memory(text: str, memory_id: str) -> UserMemory:
    now = utc_now()
    return UserMemory(
        text, memory_id=memory_id, user_id="ava", topics=["drinks"], created_at=now, updated_at=now
    )


def found(db: RedisDb) -> dict[str, list[str]]:
    """What each read this process answers from its cache says of ava's memories."""
    searched = db.keyword_search(MemoryQuery("ava"), "tea")
    listed = db.list_memories(MemoryQuery("ava", topics=("drinks",)))
    return {
        "search": sorted(r.memory.memory for r in searched),
        "listing": sorted(m.memory for m in listed),
        "to embed": [str(db.count_memories_to_embed("ava", "model"))],
    }


def test_an_outage_fails_each_call_at_once_and_the_first_call_after_works(
    own_server: Server,
) -> None:
    db = RedisDb(own_server.url)
    try:
        db.upsert_memories([memory("Ava likes tea", "m1")])
        assert found(db)["search"] == ["Ava likes tea"]
        own_server.stop()
        for call in (
            lambda: db.keyword_search(MemoryQuery("ava"), "tea"),
            lambda: db.upsert_memories([memory("Ava likes mint tea", "m2")]),
            lambda: db.get_runs("s1", "ava"),
        ):
            started = time.monotonic()
            with pytest.raises(StoreError, match="Redis at redis://127.0.0.1:.*refused"):
                call()
            assert time.monotonic() - started < 1
        restart(own_server, crash=False)  # without persistence: the memories are gone
        assert found(db) == {"search": [], "listing": [], "to embed": ["0"]}
        db.upsert_memories([memory("Ava likes mint tea", "m2")])
        assert found(db)["search"] == ["Ava likes mint tea"]
    finally:
        db.close()


def test_a_server_back_on_an_older_snapshot_is_not_answered_from_the_cache(
    own_server: Server,
) -> None:
    """A server that crashed comes back on its last snapshot, without the writes since:
    the user's generation goes back, and the next writes take the generations the lost
    ones had. A process that read the lost writes must read again, not take the same
    generation for the same memories."""
    db, other = RedisDb(own_server.url), RedisDb(own_server.url)
    admin = redis.Redis.from_url(own_server.url)
    try:
        db.upsert_memories([memory("Ava likes tea", "m1")])
        admin.save()  # the snapshot the server comes back on
        db.upsert_memories([memory("Ava likes black tea", "m2")])
        assert found(db)["search"] == ["Ava likes black tea", "Ava likes tea"]
        restart(own_server, crash=True)
        assert db.get_memory("m2", "ava") is None
        # one write, as m2's was: it takes m2's generation
        other.upsert_memories([memory("Ava likes mint tea", "m3"), memory("Ava: no tea", "m4")])
        expected = ["Ava likes mint tea", "Ava likes tea", "Ava: no tea"]
        assert found(db) == {"search": expected, "listing": expected, "to embed": ["3"]}
    finally:
        admin.close()
        other.close()
        db.close()


@pytest.mark.parametrize("password", [None, "wrong"], ids=["none", "wrong"])
def test_a_login_the_server_refuses_says_what_was_wrong(
    own_server: Server, password: str | None
) -> None:
    admin = redis.Redis.from_url(own_server.url)
    admin.config_set("requirepass", "s3cret-pw")
    admin.close()
    port = urlsplit(own_server.url).port
    given = "" if password is None else f":{password}@"
    db = RedisDb(f"redis://{given}127.0.0.1:{port}/0")
    expected = (
        "requires a password, and the URL gives none"
        if password is None
        else "refused the user name and password of the URL"
    )
    try:
        with pytest.raises(StoreError, match=expected) as info:
            db.count_memories(MemoryQuery("ava"))
        assert "s3cret" not in str(info.value) and "wrong" not in str(info.value)
    finally:
        db.close()
