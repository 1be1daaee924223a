"""SqliteDb when its file cannot be written for a while: a full disk (SQLite's
``max_page_count``, which fails a write as a full disk does), a file made read-only, and
what works again after."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from full_disk import fill, free
from noted import Memory, MemoryQuery, SqliteDb, UserMemory
from noted.errors import StoreError
from noted.retrieval.embedders import BaseEmbedder, Kind


class HashEmbedder(BaseEmbedder):
    """A vector per text from its hash: the same text always the same vector."""

    def __init__(self) -> None:
        super().__init__("test-hash", 8)

    def _embed_batch(self, texts: list[str], kind: Kind) -> Any:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            rows.append(np.random.default_rng(seed).standard_normal(8))
        return np.asarray(rows, dtype=np.float32)


def test_a_write_on_a_full_disk_says_so_and_keeps_what_was_written(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "full.db")
    memory = Memory(db=db, embedder=None)
    first = memory.add_user_memory(UserMemory("Ava likes tea"), user_id="ava")
    fill(db)
    large = "Ava walks " + "far " * 1000
    with pytest.raises(StoreError, match="disk is full"):
        memory.add_user_memory(UserMemory(large), user_id="ava")
    batch = [UserMemory(f"{large} {i}", user_id="ava") for i in range(20)]
    with pytest.raises(StoreError, match="disk is full"):
        memory.import_user_memories(batch)
    # nothing of the refused writes is kept, and what was there is whole
    assert [m.memory_id for m in memory.get_user_memories("ava")] == [first]
    assert [e.event for e in memory.get_memory_history(first, user_id="ava")] == ["add"]
    free(db)  # space again: the same store object writes on
    second = memory.add_user_memory(UserMemory(large), user_id="ava")
    assert memory.import_user_memories(batch) == 20
    assert {first, second} <= {m.memory_id for m in memory.get_user_memories("ava")}
    db.close()


def test_a_search_on_a_full_disk_reads_what_it_cannot_index(tmp_path: Path) -> None:
    """A search indexes the memories added since the last one (keyword index, vectors):
    on a full disk it cannot, and finds them as a read-only store does."""
    db = SqliteDb(tmp_path / "full.db")
    keyword = Memory(db=db, embedder=None)
    hybrid = Memory(db=db, embedder=HashEmbedder())
    words = " ".join(f"word{i}" for i in range(300))
    keyword.add_user_memory(UserMemory("Ava likes green tea"), user_id="ava")
    keyword.import_user_memories([UserMemory(f"{words} {i}", user_id="ava") for i in range(200)])
    fill(db)
    for memory in (hybrid, keyword):
        found = memory.search_user_memories("green tea", user_id="ava", limit=1)
        assert [m.memory for m in found] == ["Ava likes green tea"]
    free(db)
    for memory in (hybrid, keyword):
        found = memory.search_user_memories("green tea", user_id="ava", limit=1)
        assert [m.memory for m in found] == ["Ava likes green tea"]
    assert db.count_memories_to_embed("ava", hybrid.index.model_name) == 0  # type: ignore[union-attr]
    db.close()


def writable(path: Path, can: bool) -> None:
    """Make ``path`` writable or not: its mode, or for root (whom modes do not stop) the
    immutable attribute."""
    if os.geteuid() != 0:
        path.chmod(0o600 if can else 0o400)
        return
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("chattr is not installed")
    done = subprocess.run(
        [chattr, "-i" if can else "+i", str(path)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"chattr cannot change {path}: {done.stderr.decode().strip()}")


def test_a_file_made_read_only_is_read_then_written_again_once_it_can_be(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ro.db"
    db = SqliteDb(path)
    memory = Memory(db=db, embedder=None)
    first = memory.add_user_memory(UserMemory("Ava likes green tea"), user_id="ava")
    db.close()
    writable(path, False)
    try:
        # opened now, SQLite opens the file read-only: reads and searches work
        assert [m.memory_id for m in memory.get_user_memories("ava")] == [first]
        found = memory.search_user_memories("green tea", user_id="ava")
        assert [m.memory_id for m in found] == [first]
        with pytest.raises(StoreError, match="read-only"):
            memory.add_user_memory(UserMemory("Ava walks"), user_id="ava")
        assert [m.memory_id for m in memory.get_user_memories("ava")] == [first]
    finally:
        writable(path, True)
    # writable again: the next write writes, without closing the store
    second = memory.add_user_memory(UserMemory("Ava walks"), user_id="ava")
    assert {m.memory_id for m in memory.get_user_memories("ava")} == {first, second}
    db.close()
    with SqliteDb(path) as again:
        assert again.count_memories(MemoryQuery(user_id="ava")) == 2
