"""SqliteDb when its file is deleted, or another file put in its place, while the store
has it open: no write is acknowledged into the file that is gone, the store goes on with
the file at its path (what a restart would open), and nothing it kept of the old file is
taken for the new one's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from noted import Memory, MemoryQuery, SqliteDb, UserMemory
from noted.db.sqlite import transactions
from noted.errors import StoreError
from test_sqlite_vector_updates import HashEmbedder


def remove_database(path: Path) -> None:
    """Delete the database file with its ``-wal`` and ``-shm``, as ``rm noted.db*`` does."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def other_database(path: Path, text: str) -> Path:
    """A database of its own at ``path``, closed, holding one memory of Ava's."""
    with SqliteDb(path) as other:
        Memory(db=other, embedder=None).add_user_memory(UserMemory(text), user_id="ava")
    return path


def texts(memory: Memory) -> set[str]:
    return {m.memory for m in memory.get_user_memories("ava")}


def stored(path: Path) -> set[str]:
    """What a fresh store on ``path`` reads (as after a restart)."""
    with SqliteDb(path) as again:
        return {m.memory for m in again.list_memories(MemoryQuery(user_id="ava"))}


def searched(memory: Memory, text: str) -> list[str]:
    return [m.memory for m in memory.search_user_memories(text, user_id="ava")]


def test_a_write_after_the_file_was_deleted_is_kept_in_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "gone.db"
    db = SqliteDb(path)
    memory = Memory(db=db, embedder=None)
    memory.add_user_memory(UserMemory("Ava likes green tea"), user_id="ava")
    assert searched(memory, "tea") == ["Ava likes green tea"]  # kept for the user's generation
    remove_database(path)
    # the write goes into a new database at the path, not into the deleted file
    memory.add_user_memory(UserMemory("Ava drinks black tea"), user_id="ava")
    assert texts(memory) == {"Ava drinks black tea"}
    # the same generation in the new file: the search kept from the old one is not given
    assert searched(memory, "tea") == ["Ava drinks black tea"]
    db.close()
    assert stored(path) == {"Ava drinks black tea"}  # acknowledged, and still there


def test_a_write_after_another_file_replaced_it_goes_into_that_file(tmp_path: Path) -> None:
    """``os.replace`` of another database over the file, its ``-wal`` and ``-shm`` left
    beside it: the old file's pages in that log are not read into the new file."""
    path = tmp_path / "b.db"
    db = SqliteDb(path)
    hybrid = Memory(db=db, embedder=HashEmbedder())
    hybrid.add_user_memory(UserMemory("Ava likes green tea"), user_id="ava")
    assert searched(hybrid, "tea") == ["Ava likes green tea"]
    assert Path(f"{path}-wal").stat().st_size > 0  # the old file's pages, not checkpointed
    os.replace(other_database(tmp_path / "other.db", "Ava has a dog"), path)
    hybrid.add_user_memory(UserMemory("Ava drinks black tea"), user_id="ava")
    assert texts(hybrid) == {"Ava has a dog", "Ava drinks black tea"}
    assert set(searched(hybrid, "tea")) == {"Ava has a dog", "Ava drinks black tea"}
    db.close()
    assert stored(path) == {"Ava has a dog", "Ava drinks black tea"}


def test_a_file_moved_away_keeps_every_write_made_to_it(tmp_path: Path) -> None:
    """Renamed (its ``-wal`` keeps the old name) and a new file put at the path: the
    store empties that log into the file it belongs to before it opens the new one."""
    path, kept = tmp_path / "b.db", tmp_path / "kept.db"
    db = SqliteDb(path)
    memory = Memory(db=db, embedder=None)
    memory.add_user_memory(UserMemory("Ava likes green tea"), user_id="ava")
    os.rename(path, kept)
    os.replace(other_database(tmp_path / "other.db", "Ava has a dog"), path)
    memory.add_user_memory(UserMemory("Ava drinks black tea"), user_id="ava")
    db.close()
    assert stored(kept) == {"Ava likes green tea"}
    assert stored(path) == {"Ava has a dog", "Ava drinks black tea"}


def test_a_write_whose_file_is_replaced_meanwhile_is_not_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    db = SqliteDb(path)
    memory = Memory(db=db, embedder=None)
    memory.add_user_memory(UserMemory("Ava likes green tea"), user_id="ava")
    other = other_database(tmp_path / "other.db", "Ava has a dog")

    def write_while_replaced() -> None:
        with db._transaction():  # the write's transaction, the file replaced inside it
            memory.add_user_memory(UserMemory("Ava walks"), user_id="ava")
            os.replace(other, path)

    with pytest.raises(StoreError, match="replaced by another file while this write"):
        write_while_replaced()
    memory.add_user_memory(UserMemory("Ava drinks black tea"), user_id="ava")
    assert texts(memory) == {"Ava has a dog", "Ava drinks black tea"}
    db.close()
    assert stored(path) == {"Ava has a dog", "Ava drinks black tea"}


@pytest.mark.parametrize("read_only", [False, True])
def test_reads_follow_the_file_at_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_only: bool
) -> None:
    """Reads check the path too (at most once every MOVED_CHECK seconds, 0 here): the
    new file's memories, not the old one's from its cache; a read-only store whose file
    is gone says so."""
    monkeypatch.setattr(transactions, "MOVED_CHECK", 0.0)
    path = other_database(tmp_path / "b.db", "Ava likes green tea")
    db = SqliteDb(path, read_only=read_only)
    memory = Memory(db=db, embedder=None)
    assert searched(memory, "tea") == ["Ava likes green tea"]
    os.replace(other_database(tmp_path / "other.db", "Ava drinks black tea"), path)
    assert texts(memory) == {"Ava drinks black tea"}
    assert searched(memory, "tea") == ["Ava drinks black tea"]
    remove_database(path)
    if read_only:
        with pytest.raises(StoreError, match="no such file"):
            texts(memory)
    else:
        assert texts(memory) == set()
    db.close()


def test_reads_between_checks_use_the_open_file(tmp_path: Path) -> None:
    """Between two checks (MOVED_CHECK seconds apart) a read uses the file open, as a
    read begun just before the replacement would have."""
    path = other_database(tmp_path / "b.db", "Ava likes green tea")
    db = SqliteDb(path)
    memory = Memory(db=db, embedder=None)
    assert texts(memory) == {"Ava likes green tea"}
    os.replace(other_database(tmp_path / "other.db", "Ava drinks black tea"), path)
    assert texts(memory) == {"Ava likes green tea"}
    db._moved_check_due = 0.0  # the check is due
    assert texts(memory) == {"Ava drinks black tea"}
    db.close()


def test_a_store_in_memory_reads_and_writes_as_before() -> None:
    db = SqliteDb(":memory:")
    memory = Memory(db=db, embedder=None)
    memory.add_user_memory(UserMemory("Ava likes green tea"), user_id="ava")
    db._moved_check_due = 0.0
    assert texts(memory) == {"Ava likes green tea"}
    assert searched(memory, "tea") == ["Ava likes green tea"]
    db.close()
