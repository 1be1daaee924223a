"""Clearing a user on SqliteDb: a batch of memories per transaction, so that other writers
(this process's threads, other processes) wait for one batch and not for the whole clear,
with every memory stored when it began deleted and recorded once, and no more than one
batch's rows read into memory at once (see "Clearing" in noted.db.sqlite.deleting)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import apsw
import pytest

from clearing import Clearing, clear_peak
from noted import Memory, SqliteDb, UserMemory
from noted._time import utc_now
from noted.db.sqlite import deleting

MANY = 20_000  # memories of the user cleared
SMALL_BATCH = 200  # the clear's batch in the tests that watch it part-way: a hundred batches


def filled(path: Path, count: int = MANY, text: str = "Ava fact {i} about skiing") -> Memory:
    memory = Memory(db=SqliteDb(path))
    for start in range(0, count, 10_000):
        memories = [UserMemory(text.format(i=i)) for i in range(start, min(count, start + 10_000))]
        memory.add_user_memories(memories, user_id="ava")
    memory.add_user_memory(UserMemory("Bo likes tea"), user_id="bo")
    return memory


def count(path: Path, user_id: str) -> int:
    """The user's memories as another connection reads them (a committed state)."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        table = "noted_memories"
        row = conn.execute(f"SELECT count(*) FROM {table} WHERE user_id = ?", (user_id,))
        return int(row.fetchone()[0])
    finally:
        conn.close()


def events(path: Path, user_id: str) -> Counter[tuple[str, str]]:
    """How many events of each kind each of the user's memory ids has: (id, event)."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = conn.execute(
            "SELECT memory_id, event FROM noted_memories_events WHERE user_id = ?", (user_id,)
        ).fetchall()
    finally:
        conn.close()
    return Counter((str(memory_id), str(event)) for memory_id, event in rows)


def indexed(path: Path, user_id: str) -> int:
    """How many of the user's memories the keyword index counts."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        sql = "SELECT memories FROM noted_memories_fts_users WHERE user_id = ?"
        row = conn.execute(sql, (user_id,)).fetchone()
    finally:
        conn.close()
    return 0 if row is None else int(row[0])


def wait_part_way(path: Path, total: int, done: threading.Event | None = None) -> int:
    """Poll until the user ava has some but not all of ``total`` memories left (a clear
    committed part of its work): that count; 0 when the clear ended without showing one."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        left = count(path, "ava")
        if 0 < left < total:
            return left
        if left == 0 or (done is not None and done.is_set()):
            return 0
        time.sleep(0.001)
    raise AssertionError("the clear neither began nor ended in 120 s")


def test_another_thread_writes_while_a_large_user_is_cleared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another thread's add on the same store goes in between two batches of a clear: the
    cleared user still has memories when it returns (one transaction for the whole clear
    made every other writer wait for all of it)."""
    monkeypatch.setattr(deleting, "CLEAR_BATCH", SMALL_BATCH)
    path = tmp_path / "clear.db"
    memory = filled(path)
    clearing = Clearing(memory)
    try:
        left = wait_part_way(path, MANY, clearing.done)
        assert left, "the clear was never seen part-way: it ran as one transaction"
        memory.add_user_memory(UserMemory("Bo likes coffee"), user_id="bo")
        assert count(path, "ava") > 0, "the add waited for the whole clear"
    finally:
        clearing.join()
    assert clearing.cleared == [MANY]
    assert count(path, "ava") == 0
    assert memory.count_user_memories(user_id="bo") == 2


WRITER = textwrap.dedent(
    """
    import sys
    import apsw
    from noted import Memory, SqliteDb, UserMemory

    path, total = sys.argv[1], int(sys.argv[2])

    def left():
        conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
        try:
            sql = "SELECT count(*) FROM noted_memories WHERE user_id = 'ava'"
            return conn.execute(sql).fetchone()[0]
        finally:
            conn.close()

    memory = Memory(db=SqliteDb(path))
    memory.count_user_memories(user_id="bo")  # opened
    print("ready", flush=True)
    while True:
        seen = left()
        if seen == 0:
            print("never part-way", flush=True)
            break
        if seen < total:
            memory.add_user_memory(UserMemory("Bo likes coffee"), user_id="bo")
            print(left(), flush=True)
            break
    """
)


def test_another_process_writes_while_a_large_user_is_cleared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's add, issued once the clear has begun, commits before the clear
    ends: it waited for a batch, not for every memory of the user."""
    monkeypatch.setattr(deleting, "CLEAR_BATCH", SMALL_BATCH)
    path = tmp_path / "clear.db"
    memory = filled(path)
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(MANY)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        assert memory.clear(user_id="ava") == MANY
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    assert out.strip() != "never part-way", "the clear ran as one transaction"
    assert int(out) > 0, "the other process's add waited for the whole clear"
    assert memory.count_user_memories(user_id="bo") == 2


def test_a_clear_holds_one_batch_of_rows_in_memory(tmp_path: Path) -> None:
    """The rows a clear reads (to record their history) are read a batch at a time: its
    peak of Python memory stays near one batch's, whatever the user's size."""
    path = tmp_path / "clear.db"
    many = 40_000  # eight batches
    memory = filled(path, many, text="Ava fact {i} " + "about skiing and other things " * 20)
    whole = many * 600  # bytes of the texts alone: less than every row read at once holds
    cleared, peak = clear_peak(memory)
    assert cleared == many
    assert peak < whole / 2, f"{peak:,} bytes at the peak of a clear of {whole:,} bytes of text"


def test_memories_written_during_a_clear_end_deleted_once_or_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between two batches, one of the user's memories is replaced with an older
    ``created_at`` (it moves behind the part already cleared) and a new one is added: the
    replaced one is deleted all the same, the new one is deleted or kept, and every memory
    deleted has exactly one "delete" event, the rest none."""
    monkeypatch.setattr(deleting, "CLEAR_BATCH", SMALL_BATCH)
    path = tmp_path / "clear.db"
    memory = filled(path)
    newest = memory.get_user_memories(user_id="ava", sort_by="created_at", limit=1)[0]
    assert newest.memory_id is not None
    clearing = Clearing(memory)
    try:
        assert wait_part_way(path, MANY, clearing.done), "the clear was never seen part-way"
        older = utc_now() - timedelta(days=3650)
        moved = UserMemory(
            "Ava moved behind",
            memory_id=newest.memory_id,
            user_id="ava",
            created_at=older,
            updated_at=older,
        )
        memory.db.upsert_memories([moved])
        added = memory.add_user_memory(UserMemory("Ava added meanwhile"), user_id="ava")
    finally:
        clearing.join()
    kept = {m.memory_id for m in memory.get_user_memories(user_id="ava")}
    assert kept <= {added}
    history = events(path, "ava")
    deletes = {memory_id: n for (memory_id, event), n in history.items() if event == "delete"}
    assert deletes.get(newest.memory_id) == 1
    assert set(deletes.values()) == {1}
    assert deletes.get(added, 0) == (0 if added in kept else 1)
    assert clearing.cleared == [MANY + (0 if added in kept else 1)]
    assert len(deletes) == clearing.cleared[0]


KILLED = textwrap.dedent(
    """
    import sys
    from noted import Memory, SqliteDb
    from noted.db.sqlite import deleting
    deleting.CLEAR_BATCH = 100
    Memory(db=SqliteDb(sys.argv[1])).clear(user_id="ava")
    """
)


def test_a_clear_killed_part_way_leaves_whole_batches_recorded(tmp_path: Path) -> None:
    """A clear stopped part-way (its process killed) leaves each memory either deleted
    with one "delete" event or stored with none, the keyword index in step; a second
    clear finishes the work."""
    path = tmp_path / "clear.db"
    memory = filled(path)
    assert memory.search_user_memories("skiing", "ava", 1, "keyword")  # all indexed
    memory.db.close()
    child = subprocess.Popen([sys.executable, "-c", KILLED, str(path)], stderr=subprocess.PIPE)
    try:
        left = wait_part_way(path, MANY)
    finally:
        child.send_signal(signal.SIGKILL)
        _, err = child.communicate()
    assert left, f"the clear was never seen part-way: {err.decode()}"
    memory = Memory(db=SqliteDb(path))
    stored = {m.memory_id for m in memory.get_user_memories(user_id="ava")}
    history = events(path, "ava")
    deleted = {memory_id for (memory_id, event) in history if event == "delete"}
    assert 0 < len(stored) < MANY
    assert not stored & deleted
    assert len(stored) + len(deleted) == MANY
    assert all(n == 1 for (_, event), n in history.items() if event == "delete")
    assert indexed(path, "ava") == len(stored)
    assert memory.clear(user_id="ava") == len(stored)
    assert sum(n for (_, event), n in events(path, "ava").items() if event == "delete") == MANY
    assert indexed(path, "ava") == 0
    assert memory.search_user_memories("skiing", "ava", 1, "keyword") == []
