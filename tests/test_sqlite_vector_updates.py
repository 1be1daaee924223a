"""SqliteDb brings a user's loaded vectors up to date after this process's own writes by
reading only the memories they wrote (see noted.db._journal): the result must equal
a full read after every kind of write, and a write it does not know of (another process's,
a rolled back one's generation taken by another) must make it read everything again."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apsw
import numpy as np
import pytest

from noted import ConflictError, Memory, MemoryStore, SqliteDb, StoreError, UserMemory
from noted._time import utc_now
from noted.db import _journal as journal
from noted.db._journal import ChangeJournal, Written
from noted.db._loaded import LoadedVectors
from noted.db.base import WriteBatch
from noted.db.sqlite import store as sqlite_store
from noted.db.sqlite.migrations import MIGRATIONS, record_version
from noted.retrieval.embedders import BaseEmbedder, Kind

DIMENSIONS = 8


class HashEmbedder(BaseEmbedder):
    """A vector per text from its hash: cheap, and the same text always the same vector."""

    def __init__(self, name: str = "test-hash") -> None:
        super().__init__(name, DIMENSIONS)

    def _embed_batch(self, texts: list[str], kind: Kind) -> Any:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            rows.append(np.random.default_rng(seed).standard_normal(DIMENSIONS))
        return np.asarray(rows, dtype=np.float32)


MODEL = HashEmbedder().model_name


def vectors(db: SqliteDb, user: str = "ava") -> LoadedVectors:
    found = db._vectors.user_vectors(user, MODEL, DIMENSIONS)
    assert isinstance(found, LoadedVectors)
    return found


def read_in_full(path: Path, user: str = "ava") -> LoadedVectors:
    """The user's vectors as a process that has loaded none reads them."""
    with SqliteDb(path) as fresh:
        return vectors(fresh, user)


def assert_same(held: LoadedVectors, full: LoadedVectors) -> None:
    assert held.generation == full.generation
    assert held.keys.tolist() == full.keys.tolist()
    assert held.ids == full.ids
    assert np.array_equal(held.matrix, full.matrix)
    assert np.array_equal(held.stamps, full.stamps)
    assert np.allclose(held.mean, full.mean, atol=1e-5)


@contextmanager
def full_reads(db: SqliteDb) -> Iterator[list[str]]:
    """The statements that read all of a user's vectors, as ``db`` runs them."""
    seen: list[str] = []

    def trace(cursor: apsw.Cursor, sql: str, bindings: Any) -> bool:
        if "ORDER BY rowid" in sql and "embedding_model = ?" in sql:
            seen.append(sql)
        return True

    with db._session() as conn:
        conn.exec_trace = trace  # type: ignore[attr-defined]
    try:
        yield seen
    finally:
        with db._session() as conn:
            conn.exec_trace = None  # type: ignore[attr-defined]


def test_every_kind_of_own_write_is_read_alone_and_gives_what_a_full_read_does(
    tmp_path: Path,
) -> None:
    path = tmp_path / "own.db"
    db = SqliteDb(path)
    memory = Memory(db=db, embedder=HashEmbedder())
    ids = memory.add_user_memories([UserMemory(f"Ava fact {i}") for i in range(40)], "ava")
    memory.add_user_memory(UserMemory("Bob sails"), "bob")

    def search() -> None:  # embeds what is new, then uses the user's vectors
        memory.search_user_memories("fact", "ava", 5, "semantic")

    search()
    steps = [
        lambda: memory.add_user_memory(UserMemory("Ava started pottery"), "ava"),
        lambda: memory.add_user_memories([UserMemory(f"Ava new {i}") for i in range(3)], "ava"),
        lambda: memory.replace_user_memory(ids[3], UserMemory("Ava moved to Lyon"), "ava"),
        lambda: memory.replace_user_memory(
            ids[4], UserMemory("Ava fact 4", topics=["kept text"]), "ava"
        ),
        lambda: memory.delete_user_memory(ids[0], "ava"),
        lambda: memory.delete_user_memory(ids[39], "ava"),  # the last row
        lambda: memory.import_user_memories(  # a deleted id back, under a new rowid
            [UserMemory("Ava fact 0 again", memory_id=ids[0], user_id="ava")]
        ),
        lambda: memory.add_user_memory(UserMemory("Bob plays go"), "bob"),  # another user
        lambda: memory.delete_user_memories([ids[5], ids[6], ids[7]], "ava"),
    ]
    with full_reads(db) as seen:
        for step in steps:
            step()
            search()
            assert_same(vectors(db), read_in_full(path))
    assert seen == []  # each brought up to date by reading what it wrote
    memory.clear(user_id="ava")  # every row at once
    memory.add_user_memory(UserMemory("Ava is back"), "ava")
    search()
    assert_same(vectors(db), read_in_full(path))
    assert vectors(db).ids == [m.memory_id for m in memory.get_user_memories(user_id="ava")]
    db.close()


def test_bringing_vectors_up_to_date_reads_the_written_rows_by_id(tmp_path: Path) -> None:
    # The rows a write changed were read with "user_id = ?", which SQLite answered by
    # walking all of the user's memories: a search after each write read every one.
    db = SqliteDb(tmp_path / "by_id.db")
    memory = Memory(db=db, embedder=HashEmbedder())
    memory.add_user_memories([UserMemory(f"Ava fact {i}") for i in range(4000)], "ava")
    memory.search_user_memories("fact", "ava", 5, "semantic")  # embeds them; loads vectors
    memory.add_user_memories([UserMemory(f"Ava new {i}") for i in range(50)], "ava")
    steps: list[int] = []
    with full_reads(db) as seen, db._session() as conn:
        conn.set_progress_handler(lambda: steps.append(1) is not None, 100)
        try:
            patched = vectors(db)
        finally:
            conn.set_progress_handler(None, 0)
    assert not seen, "the vectors were read again in full, not brought up to date"
    assert len(steps) * 100 < 3000, f"{len(steps) * 100} VM steps to read 50 written rows"
    assert_same(patched, read_in_full(tmp_path / "by_id.db"))


def test_another_processs_write_makes_the_next_search_read_everything(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    db = SqliteDb(path)
    memory = Memory(db=db, embedder=HashEmbedder())
    memory.add_user_memories([UserMemory(f"Ava fact {i}") for i in range(5)], "ava")
    memory.search_user_memories("fact", "ava", 1, "semantic")
    with SqliteDb(path) as other:
        theirs = Memory(db=other, embedder=HashEmbedder())
        theirs.add_user_memory(UserMemory("Ava plays go"), "ava")
        theirs.search_user_memories("go", "ava", 1, "semantic")  # and embeds it
    memory.add_user_memory(UserMemory("Ava sings"), "ava")  # then one of our own
    with full_reads(db) as seen:
        found = memory.search_user_memories("go", "ava", 10, "semantic")
    assert len(seen) == 1
    assert {"Ava plays go", "Ava sings"} <= {m.memory for m in found}
    assert_same(vectors(db), read_in_full(path))
    db.close()


def test_a_rolled_back_write_leaves_no_entry_for_another_processs_generation(
    tmp_path: Path,
) -> None:
    """The failed batch moved the user's generation inside its transaction; once rolled
    back (and the next transaction of this process committed), another process's write
    takes that number, and must not be read as the batch's."""
    path = tmp_path / "rollback.db"
    db = SqliteDb(path)
    plain = Memory(db=db)
    ids = plain.add_user_memories([UserMemory(f"Ava fact {i}") for i in range(4)], "ava")
    (bobs,) = plain.add_user_memories([UserMemory("Bob sails")], "bob")
    embedder = HashEmbedder()
    pending = db.memories_to_embed("ava", MODEL, None)
    late = next(m for m in pending if m.memory_id == ids[3])
    first = [m for m in pending if m.memory_id != ids[3]]
    vectors_of_first = embedder.embed([m.memory for m in first])
    db.set_embeddings(MODEL, list(zip(first, vectors_of_first, strict=True)))
    assert len(vectors(db).ids) == 3
    now = utc_now()
    foreign = UserMemory("Mine", memory_id=bobs, user_id="ava", created_at=now, updated_at=now)
    batch = WriteBatch("ava", deletes=(ids[0],), adds=(foreign,))
    with pytest.raises(ConflictError):
        db.write_batch(batch)
    plain.add_user_memory(UserMemory("Bob rows"), "bob")  # the next transaction commits
    with SqliteDb(path) as other:  # takes the generation the batch had moved to
        other.set_embeddings(MODEL, [(late, embedder.embed([late.memory])[0])])
    assert len(vectors(db).ids) == 4
    assert_same(vectors(db), read_in_full(path))
    db.close()


def test_rows_appended_to_a_later_snapshot_leave_an_earlier_one_as_it_was(
    tmp_path: Path,
) -> None:
    db = SqliteDb(tmp_path / "snapshots.db")
    memory = Memory(db=db, embedder=HashEmbedder())
    memory.add_user_memories([UserMemory(f"Ava fact {i}") for i in range(10)], "ava")
    memory.search_user_memories("fact", "ava", 1, "semantic")
    memory.add_user_memory(UserMemory("Ava one"), "ava")
    memory.search_user_memories("fact", "ava", 1, "semantic")
    earlier = vectors(db)
    copies = earlier.keys.copy(), earlier.matrix.copy(), earlier.stamps.copy(), list(earlier.ids)
    for text in ("Ava two", "Ava three"):
        memory.add_user_memory(UserMemory(text), "ava")
        memory.search_user_memories("fact", "ava", 1, "semantic")
    later = vectors(db)
    assert later.keys.size == earlier.keys.size + 2
    assert earlier.keys.tolist() == copies[0].tolist() and earlier.ids == copies[3]
    assert np.array_equal(earlier.matrix, copies[1])
    assert np.array_equal(earlier.stamps, copies[2])
    assert np.shares_memory(earlier.matrix, later.matrix)  # appended, not copied
    db.close()


def test_memories_to_embed_are_counted_whatever_the_models_names(store: MemoryStore) -> None:
    """Every store (SQLite and PostgreSQL count ranges of an index by model name)."""
    plain = Memory(db=store)
    plain.add_user_memories([UserMemory(f"Ava fact {i}") for i in range(6)], "ava")
    plain.add_user_memory(UserMemory("Bob sails"), "bob")
    pending = store.memories_to_embed("ava", "m-model", None)
    for name, chosen in (("a-model", pending[:2]), ("m-model", pending[2:4]), ("z", pending[4:5])):
        store.set_embeddings(name, [(m, np.ones(DIMENSIONS, dtype=np.float32)) for m in chosen])
    # one with none (the sixth), two of a name before, one of a name after
    assert store.count_memories_to_embed("ava", "m-model") == 4
    assert {m.memory_id for m in store.memories_to_embed("ava", "m-model", None)} == {
        m.memory_id for m in [*pending[:2], *pending[4:]]
    }
    assert store.count_memories_to_embed("ava", "a-model") == 4
    assert store.count_memories_to_embed("ava", "zz") == 6
    assert store.count_memories_to_embed("ava", "M-MODEL") == 6  # names compare exactly
    assert store.count_memories_to_embed(None, "m-model") == 5  # bob's too


def before(name: str) -> int:
    """The schema version of a file that the migration ``name`` has not reached yet."""
    return [step.__name__ for step in MIGRATIONS].index(name)


def test_the_upgrade_makes_an_embedding_and_its_model_go_together(tmp_path: Path) -> None:
    path = tmp_path / "upgrade.db"
    with SqliteDb(path) as db:
        plain = Memory(db=db)
        plain.add_user_memories([UserMemory(f"Ava fact {i}") for i in range(3)], "ava")
        first, second, third = db.memories_to_embed("ava", "model", None)
        vector = np.ones(DIMENSIONS, dtype=np.float32)
        db.set_embeddings("model", [(first, vector), (second, vector), (third, vector)])
    # as an older version may have left them: one embedding without its model, one model
    # without its embedding; the index the upgrade makes not there yet
    conn = apsw.Connection(str(path))
    conn.execute(
        "UPDATE noted_memories SET embedding_model = NULL WHERE memory_id = ?", (first.memory_id,)
    )
    conn.execute(
        "UPDATE noted_memories SET embedding = NULL WHERE memory_id = ?", (second.memory_id,)
    )
    conn.execute("DROP INDEX ix_noted_memories_user_model")
    record_version(conn, "noted_memories", before("m008_embedding_model_index"), 0)
    conn.close()
    with SqliteDb(path) as db:
        assert db.schema_version() == len(MIGRATIONS)
        assert db.count_memories_to_embed("ava", "model") == 2
        assert {m.memory_id for m in db.memories_to_embed("ava", "model", None)} == {
            first.memory_id,
            second.memory_id,
        }


def test_the_journal_answers_only_for_generations_it_kept_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kept = ChangeJournal()
    kept.stage("ava", 2, ["a"], False)
    kept.commit()
    kept.stage("ava", 3, ["b"], True)
    kept.discard()  # rolled back
    kept.stage("ava", 3, ["c"], False)
    kept.stage("bob", 7, None, False)  # ids not known
    kept.commit()
    assert kept.written("ava", 1, 3) == Written(frozenset({"a", "c"}), False)
    assert kept.written("ava", 0, 3) is None  # generation 1 is not this process's
    assert kept.written("ava", 3, 3) is None and kept.written("bob", 6, 7) is None
    kept.forget("ava", 2)
    assert kept.written("ava", 1, 3) is None and kept.written("ava", 2, 3) is not None
    kept.stage("ava", 4, [str(i) for i in range(journal.LISTED_AT_MOST + 1)], False)
    kept.commit()
    assert kept.written("ava", 3, 4) is None  # too many to list
    monkeypatch.setattr(journal, "IDS_KEPT", 10)
    for user in ("u1", "u2", "u3"):
        kept.stage(user, 1, [f"{user}-{i}" for i in range(4)], False)
        kept.commit()
    # past ten ids in all, the users least recently written went first
    assert kept.written("ava", 2, 3) is None and kept.written("u1", 0, 1) is None
    assert kept.written("u2", 0, 1) is not None and kept.written("u3", 0, 1) is not None


def test_the_journal_keeps_no_entry_for_users_it_has_nothing_of_and_stays_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A user whose generations were all forgotten (vectors loaded after each write, as a
    search of every new user does) leaves no entry; entries of writes whose ids are not
    listed count against the bound too."""
    kept = ChangeJournal()
    for n in range(20_000):
        kept.stage(f"u{n}", 1, [f"m{n}"], False)
        kept.commit()
        kept.forget(f"u{n}", 1)
    assert len(kept._kept) == 0 and kept._ids == 0
    monkeypatch.setattr(journal, "IDS_KEPT", 100)
    for n in range(1_000):
        kept.stage(f"v{n}", 1, None, False)  # a write too large to list
        kept.commit()
    assert len(kept._kept) <= 100 and kept._ids <= 100


WRITER = textwrap.dedent(
    """
    import hashlib, random, sys, time
    from pathlib import Path
    import numpy as np
    from noted import Memory, SqliteDb, UserMemory
    from noted.retrieval.embedders import BaseEmbedder

    class HashEmbedder(BaseEmbedder):
        def __init__(self):
            super().__init__("test-hash", 8)

        def _embed_batch(self, texts, kind):
            rows = []
            for text in texts:
                digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
                seed = int.from_bytes(digest, "little")
                rows.append(np.random.default_rng(seed).standard_normal(8))
            return np.asarray(rows, dtype=np.float32)

    memory = Memory(db=SqliteDb(sys.argv[1]), embedder=HashEmbedder())
    Path(sys.argv[3]).touch()  # ready
    while not Path(sys.argv[2]).exists():
        time.sleep(0.002)
    rng = random.Random(7)
    mine = []
    for i in range(60):
        mine.append(memory.add_user_memory(UserMemory(f"theirs {i}"), "ava"))
        if i % 3 == 2:
            memory.delete_user_memory(mine.pop(rng.randrange(len(mine))), "ava")
        if i % 4 == 0:
            memory.search_user_memories("theirs", "ava", 3, "semantic")  # embeds theirs
    """
)


def test_writes_of_two_processes_and_two_threads_at_once_end_as_a_full_read(
    tmp_path: Path,
) -> None:
    """Every interleaving of this process's patched reads with another process's writes
    must end where a full read does."""
    path = tmp_path / "busy.db"
    go = tmp_path / "go"
    db = SqliteDb(path)
    memory = Memory(db=db, embedder=HashEmbedder())
    memory.add_user_memories([UserMemory(f"Ava fact {i}") for i in range(30)], "ava")
    memory.search_user_memories("fact", "ava", 1, "semantic")
    ready = tmp_path / "ready"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(go), str(ready)], stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while not ready.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    errors: list[BaseException] = []

    def ours(name: str) -> None:
        try:
            rng = random.Random(name)
            held: list[str] = []
            for i in range(60):
                held.append(memory.add_user_memory(UserMemory(f"{name} {i}"), "ava"))
                if i % 3 == 1:
                    memory.replace_user_memory(held[-1], UserMemory(f"{name} {i} again"), "ava")
                if i % 5 == 4:
                    memory.delete_user_memory(held.pop(rng.randrange(len(held))), "ava")
                memory.search_user_memories(f"{name}", "ava", 3, "semantic")
        except BaseException as exc:  # reported by the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=ours, args=(name,)) for name in ("left", "right")]
    go.touch()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 0, stderr.decode()
    assert not errors, errors
    memory.search_user_memories("fact", "ava", 1, "semantic")  # embeds what is left
    assert_same(vectors(db), read_in_full(path))
    assert len(vectors(db).ids) == memory.count_user_memories(user_id="ava")
    db.close()


def stamped(text: str, memory_id: str | None = None) -> UserMemory:
    now = utc_now()
    return UserMemory(
        text, memory_id=memory_id or uuid.uuid4().hex, user_id="ava", created_at=now, updated_at=now
    )


def busy_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, SqliteDb]:
    """A store on a file left in rollback-journal mode (as on a file system where SQLite
    cannot use WAL): a COMMIT then waits for readers, and is refused as busy while one
    reads (within a short busy timeout)."""
    monkeypatch.setattr(sqlite_store.migrations, "use_wal", lambda conn, timeout, where: None)
    path = tmp_path / "busy.db"
    return path, SqliteDb(path, busy_timeout=0.2)


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Another connection inside a read transaction that has read the memory table."""
    reader = apsw.Connection(str(path))
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM noted_memories").fetchall()
    try:
        yield
    finally:
        reader.execute("COMMIT")
        reader.close()


def test_a_commit_refused_as_busy_is_rolled_back_and_the_next_write_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, db = busy_store(tmp_path, monkeypatch)
    memory = Memory(db=db)
    memory.add_user_memory(UserMemory("one"), "ava")
    with reading(path), pytest.raises(StoreError):
        memory.add_user_memory(UserMemory("two"), "ava")
    assert db._conn is not None and not db._conn.in_transaction
    memory.add_user_memory(UserMemory("three"), "ava")
    db.close()
    with SqliteDb(path) as fresh:
        kept = sorted(m.memory for m in Memory(db=fresh).get_user_memories(user_id="ava"))
    assert kept == ["one", "three"]


def test_what_a_refused_commit_staged_is_never_kept_for_another_writers_generation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, db = busy_store(tmp_path, monkeypatch)
    first = [stamped(f"Ava fact {i}") for i in range(4)]
    db.upsert_memories(first)
    db.set_embeddings(MODEL, [(m, np.ones(DIMENSIONS, dtype=np.float32)) for m in first])
    vectors(db)
    with reading(path), pytest.raises(StoreError):
        db.upsert_memories([stamped("refused")])  # its generation is taken by others next
    with SqliteDb(path) as other:
        other.delete_memories([first[0].memory_id], "ava")
    with SqliteDb(path) as other:
        other.update_memory(stamped("Ava changed", memory_id=first[1].memory_id))
    db.upsert_memories([stamped("ours")])
    assert_same(vectors(db), read_in_full(path))
    db.close()


def test_the_mean_after_many_removals_is_a_full_reads(tmp_path: Path) -> None:
    """A sum kept through removals keeps their rounding; it is made again instead."""
    path = tmp_path / "drift.db"
    db = SqliteDb(path)
    memories = [stamped(f"m{i}") for i in range(2000)]
    db.upsert_memories(memories)
    rng = np.random.default_rng(0)
    shared = rng.standard_normal(DIMENSIONS).astype(np.float32)
    rows = [
        (m, shared + 0.05 * rng.standard_normal(DIMENSIONS).astype(np.float32)) for m in memories
    ]
    db.set_embeddings(MODEL, rows)
    vectors(db)
    for memory in memories[:-1]:
        db.delete_memories([memory.memory_id], "ava")
        vectors(db)
    held, full = vectors(db), read_in_full(path)
    assert held.ids == full.ids == [memories[-1].memory_id]
    assert np.array_equal(held.mean, full.mean)
    db.delete_memories([memories[-1].memory_id], "ava")
    assert vectors(db).keys.size == 0 and not vectors(db).mean.any()
    db.close()


def test_a_write_that_changes_no_vector_keeps_the_arrays(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "same.db")
    memory = Memory(db=db, embedder=HashEmbedder())
    memory.add_user_memories([UserMemory(f"Ava fact {i}") for i in range(10)], "ava")
    memory.search_user_memories("fact", "ava", 1, "semantic")
    before = vectors(db)
    Memory(db=db).add_user_memory(UserMemory("not embedded yet"), "ava")
    after = vectors(db)
    assert after.generation == before.generation + 1
    assert after.matrix is before.matrix and after.ids is before.ids
    db.close()


SHAPES = [("model-a", DIMENSIONS), ("model-b", DIMENSIONS), ("model-a", 4)]


def test_random_writes_of_every_kind_always_end_as_a_full_read(tmp_path: Path) -> None:
    """Two users, three (model, size) shapes, and 300 random writes through the store:
    adds, embeddings (some of a text that has since changed, which store nothing), replaces
    with the same text or another, deletes, a deleted id back (for either user), batches
    with a clear, deletes, updates and adds at once, and batches refused part-way. Every
    other step, each shape of each user held by this process equals a full read."""
    path = tmp_path / "random.db"
    db = SqliteDb(path)
    rng = random.Random(11)
    held: dict[str, list[str]] = {"ava": [], "bob": []}
    gone: list[str] = []

    def vector(text: str, dims: int) -> Any:
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
        return np.random.default_rng(seed).standard_normal(dims).astype(np.float32)

    def memory(text: str, user: str, memory_id: str | None = None) -> UserMemory:
        now = utc_now()
        memory_id = memory_id or uuid.uuid4().hex
        return UserMemory(text, memory_id=memory_id, user_id=user, created_at=now, updated_at=now)

    def embed(user: str) -> None:
        model, dims = rng.choice(SHAPES)
        pending = db.memories_to_embed(user, model, None)
        chosen = rng.sample(pending, min(len(pending), rng.randint(0, 5)))
        items = []
        for m in chosen:
            if rng.random() < 0.15:  # its text changed since: nothing is stored
                stale = memory(m.memory + " before", user, m.memory_id)
                items.append((stale, vector(model + stale.memory, dims)))
            else:
                items.append((m, vector(model + m.memory, dims)))
        db.set_embeddings(model, items)

    for step in range(300):
        user = rng.choice(["ava", "bob"])
        other = "bob" if user == "ava" else "ava"
        mine = held[user]
        choice = rng.random()
        if choice < 0.2:
            added = [memory(f"{user} {step} {i}", user) for i in range(rng.randint(1, 4))]
            db.upsert_memories(added)
            mine += [m.memory_id or "" for m in added]
        elif choice < 0.45:
            embed(user)
        elif choice < 0.55 and mine:
            target = db.get_memory(rng.choice(mine), user)
            assert target is not None
            text = target.memory if rng.random() < 0.5 else f"{user} changed {step}"
            db.update_memory(memory(text, user, target.memory_id))
        elif choice < 0.63 and mine:
            deleted = rng.sample(mine, min(len(mine), rng.randint(1, 3)))
            db.delete_memories(deleted, user)
            for memory_id in deleted:
                mine.remove(memory_id)
                gone.append(memory_id)
        elif choice < 0.68 and gone:
            back = gone.pop(rng.randrange(len(gone)))
            db.upsert_memories([memory(f"back {step}", user, back)])
            mine.append(back)
        elif choice < 0.8:
            deletes = tuple(rng.sample(mine, min(len(mine), rng.randint(0, 2))))
            updates = tuple(
                memory(f"batch {step}", user, m)
                for m in rng.sample(mine, min(len(mine), rng.randint(0, 2)))
            )
            adds = [memory(f"{user} batch {step} {i}", user) for i in range(rng.randint(0, 2))]
            if deletes and rng.random() < 0.5:
                adds.append(memory(f"again {step}", user, deletes[0]))  # deleted, then back
            clear = rng.random() < 0.05
            db.write_batch(WriteBatch(user, clear, deletes, updates, tuple(adds)))
            for memory_id in held[user] if clear else deletes:
                gone.append(memory_id)
            held[user] = [] if clear else [m for m in mine if m not in deletes]
            for m in adds:
                held[user].append(m.memory_id or "")
                if m.memory_id in gone:
                    gone.remove(m.memory_id)
        elif held[other]:  # refused part-way: another user's id
            foreign = memory("not mine", user, held[other][0])
            with pytest.raises(ConflictError):
                db.write_batch(WriteBatch(user, deletes=tuple(mine[:1]), adds=(foreign,)))
        if step % 2:
            for who in ("ava", "bob"):
                for model, dims in SHAPES:
                    ours = db._vectors.user_vectors(who, model, dims)
                    with SqliteDb(path) as fresh:
                        theirs = fresh._vectors.user_vectors(who, model, dims)
                    assert isinstance(ours, LoadedVectors) and isinstance(theirs, LoadedVectors)
                    assert_same(ours, theirs)
    db.close()
