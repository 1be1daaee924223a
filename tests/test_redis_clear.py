"""Clearing a user on RedisDb: a batch of memories per script, so that the server answers
every other client (other users' reads and writes, other programs) between two batches
instead of after the whole clear, with every memory the user had when the clear began
deleted once with its "delete" event, and the user's keys consistent after every batch
(see "Clearing" in noted.db.redisdb.store), on a real redis-server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from clearing import Clearing
from conftest import server_url
from noted import Memory, StoreError, UserMemory
from noted._time import utc_now
from noted.db.redisdb import RedisDb
from noted.db.redisdb import store as redis_store
from servers import Server

MANY = 20_000  # memories of the user cleared
SMALL_BATCH = 100  # the clear's batch in the tests that watch it part-way: 200 batches
SRC = str(Path(__file__).resolve().parents[1] / "src")

# Read in one script, so at one moment between two of the clear's: the user's memory
# count by M:upd, or what is inconsistent between their keys (M:upd, M:crt, the memory
# hashes and M:users).
CHECK_LUA = """
local P, user = ARGV[1], ARGV[2]
local upd = redis.call('ZRANGE', P .. ':upd:' .. user, 0, -1, 'WITHSCORES')
local crt = redis.call('ZRANGE', P .. ':crt:' .. user, 0, -1)
if #crt * 2 ~= #upd then return 'M:crt holds ' .. #crt .. ', M:upd ' .. #upd / 2 end
for i = 1, #upd, 2 do
  local owner = redis.call('HGET', P .. ':m:' .. upd[i], 'user_id')
  if owner ~= user then return 'no memory ' .. upd[i] end
  if not redis.call('ZSCORE', P .. ':crt:' .. user, upd[i]) then
    return 'not in M:crt: ' .. upd[i]
  end
end
local place = redis.call('ZSCORE', P .. ':users', user)
if #upd == 0 and place then return 'in M:users without memories' end
if #upd > 0 and place ~= '-' .. upd[#upd] then return 'M:users at ' .. tostring(place) end
return #upd / 2
"""


def unique(kind: str) -> str:
    return f"c{uuid.uuid4().hex[:10]}_{kind}"


@pytest.fixture
def url(servers: dict[str, Server | str]) -> str:
    return server_url(servers, "redis")


@pytest.fixture
def client(url: str) -> Iterator[redis.Redis]:
    """A plain client of the same server: another program's connection."""
    raw = redis.Redis.from_url(url)
    yield raw
    raw.close()


@pytest.fixture
def db(url: str) -> Iterator[RedisDb]:
    store = RedisDb(url, memory_table=unique("memories"), session_table=unique("sessions"))
    yield store
    store.close()


def filled(db: RedisDb, count: int = MANY, user: str = "ava") -> Memory:
    memory = Memory(db=db)
    for start in range(0, count, 10_000):
        texts = (f"{user} fact {i} about skiing" for i in range(start, min(count, start + 10_000)))
        memory.add_user_memories([UserMemory(t, topics=["ski"]) for t in texts], user_id=user)
    memory.add_user_memory(UserMemory("Bo likes tea"), user_id="bo")
    return memory


class Checker:
    """The user's keys as one script reads them (see CHECK_LUA)."""

    def __init__(self, client: redis.Redis, db: RedisDb, user: str = "ava") -> None:
        self.script = client.register_script(CHECK_LUA)
        self.args = [db.memory_table, user]

    def __call__(self) -> int:
        """The user's memory count; AssertionError naming what is inconsistent."""
        found = self.script(args=self.args)
        assert isinstance(found, int), found.decode()
        return found


def deletes(client: redis.Redis, db: RedisDb, user: str = "ava") -> Counter[str]:
    """How many "delete" events each memory of the user has in its history (a key that is
    not a list left out)."""
    prefix = f"{db.memory_table}:e:{len(user)}:{user}:"
    found: Counter[str] = Counter()
    keys = list(client.scan_iter(match=prefix + "*", count=10_000))
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.lrange(key, 0, -1)
        histories = pipe.execute(raise_on_error=False)
    for key, history in zip(keys, histories, strict=True):
        if isinstance(history, redis.ResponseError):
            continue
        memory_id = key.decode()[len(prefix) :]
        found[memory_id] += sum(json.loads(raw)[1] == "delete" for raw in history)
    return found


def stored(client: redis.Redis, db: RedisDb, user: str = "ava") -> set[str]:
    return {i.decode() for i in client.zrange(f"{db.memory_table}:upd:{user}", 0, -1)}


def clear_keys(client: redis.Redis, db: RedisDb) -> list[bytes]:
    """The keys a clear keeps of its own while it runs."""
    return list(client.scan_iter(match=f"{db.memory_table}:clr:*", count=10_000))


def wait_part_way(check: Checker, total: int, done: threading.Event | None = None) -> int:
    """Poll (each poll one command of another client) until the user has some but not all
    of ``total`` memories left: that count; 0 when the clear ended without showing one."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        left = check()
        if 0 < left < total:
            return left
        if left == 0 or (done is not None and done.is_set()):
            return 0
        time.sleep(0.001)
    raise AssertionError("the clear neither began nor ended in 120 s")


def test_other_clients_are_answered_between_the_batches_of_a_clear(
    db: RedisDb, client: redis.Redis, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a large user is cleared, another client's commands are answered before the
    clear ends (one script for the whole clear held every client of the server until it
    ended), and every state they see between two batches is consistent: the user's sorted
    sets, memory hashes and place in M:users agree."""
    monkeypatch.setattr(redis_store, "CLEAR_BATCH", SMALL_BATCH, raising=False)
    memory = filled(db)
    check = Checker(client, db)
    other = Memory(db=RedisDb(url, memory_table=db.memory_table, session_table=db.session_table))
    clearing = Clearing(memory)
    seen: list[int] = []
    try:
        left = wait_part_way(check, MANY, clearing.done)
        assert left, "the clear was never seen part-way: it ran as one script"
        other.add_user_memory(UserMemory("Bo likes coffee"), user_id="bo")
        assert other.count_user_memories(user_id="bo") == 2
        assert check() > 0, "the other client's add waited for the whole clear"
        while clearing.thread.is_alive():
            seen.append(check())
    finally:
        clearing.join()
        other.db.close()
    assert clearing.cleared == [MANY]
    assert check() == 0
    assert seen == sorted(seen, reverse=True)
    assert not clear_keys(client, db)
    assert memory.count_user_memories(user_id="bo") == 2


def test_memories_written_during_a_clear_end_deleted_once_or_kept(
    db: RedisDb, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between two batches, the user's most recent memory is replaced with older times (it
    moves to the front of M:upd, behind the part already cleared), another is updated,
    and a new one is added: the replaced and updated ones are deleted all the same, the
    new one is deleted or kept, and every memory deleted has exactly one "delete" event."""
    monkeypatch.setattr(redis_store, "CLEAR_BATCH", SMALL_BATCH, raising=False)
    memory = filled(db)
    check = Checker(client, db)
    newest, older_one = memory.get_user_memories(user_id="ava", limit=2)
    assert newest.memory_id is not None and older_one.memory_id is not None
    clearing = Clearing(memory)
    try:
        assert wait_part_way(check, MANY, clearing.done), "never seen part-way"
        older = utc_now() - timedelta(days=3650)
        moved = UserMemory(
            "Ava moved behind",
            memory_id=newest.memory_id,
            user_id="ava",
            created_at=older,
            updated_at=older,
        )
        db.upsert_memories([moved])
        memory.replace_user_memory(older_one.memory_id, UserMemory("Ava changed"), "ava")
        added = memory.add_user_memory(UserMemory("Ava added meanwhile"), user_id="ava")
    finally:
        clearing.join()
    kept = stored(client, db)
    assert kept <= {added}
    assert check() == len(kept)
    history = deletes(client, db)
    assert history[newest.memory_id] == 1
    assert history[older_one.memory_id] == 1
    assert history[added] == (0 if added in kept else 1)
    assert set(history.values()) == {1} | ({0} if added in kept else set())
    assert clearing.cleared == [MANY + (0 if added in kept else 1)]
    assert sum(history.values()) == clearing.cleared[0]


def test_a_failing_batch_writes_nothing_and_a_second_clear_finishes(
    db: RedisDb, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that cannot write one of its memories' histories (the key holds a string,
    written by something else) fails before it writes anything: the batches before it
    stay deleted and recorded, every other memory stored with no "delete" event, the keys
    consistent; once the key is repaired, clearing again finishes the work."""
    monkeypatch.setattr(redis_store, "CLEAR_BATCH", SMALL_BATCH, raising=False)
    total = 2_000
    memory = filled(db, total)
    check = Checker(client, db)
    order = [i.decode() for i in client.zrange(f"{db.memory_table}:upd:ava", 0, -1)]
    bad = order[5 * SMALL_BATCH + 50]  # in the sixth batch
    bad_history = f"{db.memory_table}:e:3:ava:{bad}"
    client.delete(bad_history)
    client.set(bad_history, "not a history")
    with pytest.raises(StoreError) as failed:
        memory.clear(user_id="ava")
    left = stored(client, db)
    assert left == set(order[5 * SMALL_BATCH :])
    assert "not a history list" in str(failed.value)
    assert check() == len(left)
    history = deletes(client, db)
    assert {i for i, n in history.items() if n} == set(order[: 5 * SMALL_BATCH])
    assert set(history.values()) <= {0, 1}
    assert clear_keys(client, db)  # left for the clear's next batch, expiring
    assert all(0 < client.ttl(key) <= 3600 for key in clear_keys(client, db))
    client.delete(bad_history)
    assert memory.clear(user_id="ava") == total - 5 * SMALL_BATCH
    assert check() == 0
    history = deletes(client, db)
    assert len(history) == total and set(history.values()) == {1}
    assert memory.search_user_memories("skiing", "ava", 5, "keyword") == []


KILLED = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[3])
    from noted import Memory
    from noted.db.redisdb import RedisDb
    from noted.db.redisdb import store
    store.CLEAR_BATCH = 50
    db = RedisDb(sys.argv[1], memory_table=sys.argv[2])
    print("ready", flush=True)
    Memory(db=db).clear(user_id="ava")
    """
)


def test_a_clear_killed_part_way_leaves_whole_batches_recorded(
    db: RedisDb, client: redis.Redis, url: str
) -> None:
    """A clear stopped part-way (its process killed) leaves each memory either deleted
    with one "delete" event or stored with none, and the user's keys consistent; searches
    see the memories left; a second clear finishes the work."""
    memory = filled(db)
    assert len(memory.search_user_memories("skiing", "ava", 3, "keyword")) == 3  # cached
    check = Checker(client, db)
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED, url, db.memory_table, SRC],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"ready"
        left = wait_part_way(check, MANY)
    finally:
        child.send_signal(signal.SIGKILL)
        _, err = child.communicate()
    assert left, f"the clear was never seen part-way: {err.decode()}"
    kept = stored(client, db)
    history = deletes(client, db)
    deleted = {i for i, n in history.items() if n}
    assert 0 < len(kept) < MANY
    assert check() == len(kept)
    assert not kept & deleted
    assert len(kept) + len(deleted) == MANY
    assert set(history.values()) <= {0, 1}
    assert memory.count_user_memories(user_id="ava") == len(kept)
    found = memory.search_user_memories("skiing", "ava", MANY, "keyword")
    assert {m.memory_id for m in found} == kept  # the cached copy followed the batches
    assert memory.clear(user_id="ava") == len(kept)
    assert check() == 0
    history = deletes(client, db)
    assert len(history) == MANY and set(history.values()) == {1}
    assert memory.search_user_memories("skiing", "ava", 5, "keyword") == []


def test_clearing_every_user_goes_user_by_user_in_batches(
    db: RedisDb, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """clear_all_memories deletes every user's memories, a batch at a time across users
    (a batch finishes small users and goes on with the next), each with one event, and
    leaves no key of its own."""
    monkeypatch.setattr(redis_store, "CLEAR_BATCH", SMALL_BATCH, raising=False)
    filled(db, 1_050, user="ava")  # and bo's one
    filled(db, 7, user="cy")  # and bo's second
    assert db.clear_all_memories() == 1_050 + 7 + 2
    for user, count in (("ava", 1_050), ("cy", 7), ("bo", 2)):
        assert Checker(client, db, user)() == 0
        history = deletes(client, db, user)
        assert len(history) == count and set(history.values()) == {1}
    assert client.zcard(f"{db.memory_table}:users") == 0
    assert not clear_keys(client, db)
    assert db.clear_all_memories() == 0
