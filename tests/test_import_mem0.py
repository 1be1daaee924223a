"""Importing what mem0ai 2.2.1's get_all returned (tests/fixtures/mem0/make_fixture.py)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from noted import Memory, SqliteDb, UserError, UserMemory
from noted.cli import main
from noted.importers import import_mem0
from noted.importers.plan import not_stored_as_is

FIXTURE = Path(__file__).parent / "fixtures" / "mem0" / "mem0-2.2.1-get_all.json"


@pytest.fixture
def target(tmp_path: Path) -> Memory:
    return Memory(db=SqliteDb(tmp_path / "noted.db"))


def test_import_field_by_field_and_twice(memory: Memory) -> None:
    """On every backend."""
    target = memory
    items = json.loads(FIXTURE.read_text())["results"]
    report = import_mem0(FIXTURE, target)
    assert (report.memories_read, report.memories_written) == (3, 3)
    for item in items:
        got = target.get_user_memory(item["id"], user_id=item["user_id"])
        assert got is not None
        assert (got.memory, got.agent_id, got.session_id) == (
            item["memory"],
            item.get("agent_id"),
            item.get("run_id"),
        )
        assert got.topics == ((item.get("metadata") or {}).get("topics") or [])
        assert got.created_at == datetime.fromisoformat(item["created_at"])
        assert got.updated_at == datetime.fromisoformat(item["updated_at"])
    history = target.get_memory_history(items[0]["id"], user_id="ava")
    again = import_mem0(FIXTURE, target, dry_run=False)
    assert again.memories_written == 0
    assert target.get_memory_history(items[0]["id"], user_id="ava") == history


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"results": ' + "[" * 200_000 + "]" * 200_000 + "}", "nested too deeply"),
        (
            '[{"id": "a", "memory": "x", "user_id": "u", "metadata": '
            + "[" * 200_000
            + "]" * 200_000
            + "}]",
            "nested too deeply",
        ),
        ('{"something": 1}', "expected a list of memories"),
        (
            '[{"id": "a", "memory": "The user likes tea", "user_id": "u"}, {"id": "b"}]',
            "item 1 \\(id='b'\\): a memory needs a string 'id' and 'memory'",
        ),
        (
            '[{"id": "a", "memory": "x", "user_id": "u", "created_at": "yesterday"}]',
            "item 0 \\(id='a'\\): column 'created_at' is not a timestamp",
        ),
    ],
)
def test_malformed_json_writes_nothing(
    tmp_path: Path, target: Memory, content: str, message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(UserError, match=message):
        import_mem0(bad, target)
    assert target.get_user_stats() == []


def test_cli_dry_run_then_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "cli.db")
    assert main(["import", "mem0", str(FIXTURE), "--db", db, "--dry-run"]) == 0
    assert "would write 3 memories" in capsys.readouterr().out
    assert main(["import", "mem0", str(FIXTURE), "--db", db]) == 0
    assert "wrote 3 memories" in capsys.readouterr().out
    assert main(["memories", "list", "--user", "bob", "--db", db, "--json"]) == 0
    assert [m["memory"] for m in json.loads(capsys.readouterr().out)] == ["The user lives in Paris"]


def test_one_users_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = json.loads(FIXTURE.read_text())["results"]
    items.append({"id": "no-user", "memory": "The user plays the cello"})
    source = tmp_path / "everyone.json"
    source.write_text(json.dumps(items))
    db = str(tmp_path / "cli.db")
    assert main(["import", "mem0", str(source), "--user", "ava", "--db", db]) == 0
    said = capsys.readouterr().out
    assert "wrote 3 memories" in said and "skipped 1 memory of other users" in said
    target = Memory(db=SqliteDb(db))
    assert [s.user_id for s in target.get_user_stats()] == ["ava"]
    assert "The user plays the cello" in [m.memory for m in target.get_user_memories("ava")]
    other = Memory(db=SqliteDb(tmp_path / "bob.db"))
    report = import_mem0(source, other, user_id="bob")
    assert (report.memories_read, report.memories_written, report.memories_skipped) == (4, 2, 2)
    assert [s.user_id for s in other.get_user_stats()] == ["bob"]


def test_a_memory_changed_here_since_the_import_is_kept(
    memory: Memory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On every backend. Importing again after an edit in noted leaves the edit; a version
    changed in mem0 after it (a later updated_at) is written."""
    target = memory
    import_mem0(FIXTURE, target)
    ski = json.loads(FIXTURE.read_text())["results"][0]
    edited = target.edit_user_memory(ski["id"], "ava", memory="The user skis in Chamonix")
    again = import_mem0(FIXTURE, target)
    assert (again.memories_written, again.memories_kept) == (0, 1)
    assert target.get_user_memory(ski["id"], "ava") == edited
    assert [e.event for e in target.get_memory_history(ski["id"], "ava")] == ["add", "update"]
    assert edited.updated_at is not None
    later = {**ski, "memory": "The user snowboards now"}
    later["updated_at"] = (edited.updated_at + timedelta(seconds=1)).isoformat()
    source = tmp_path / "later.json"
    source.write_text(json.dumps([later]))
    report = import_mem0(source, target)
    assert (report.memories_written, report.memories_kept) == (1, 0)
    got = target.get_user_memory(ski["id"], "ava")
    assert got is not None and got.memory == "The user snowboards now"


def test_cli_says_how_many_memories_changed_here_were_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "cli.db")
    assert main(["import", "mem0", str(FIXTURE), "--db", db]) == 0
    ski = json.loads(FIXTURE.read_text())["results"][0]["id"]
    assert main(["memories", "edit", ski, "--user", "ava", "--text", "Skis", "--db", db]) == 0
    capsys.readouterr()
    assert main(["import", "mem0", str(FIXTURE), "--db", db]) == 0
    said = capsys.readouterr().out
    assert "wrote 0 memories" in said and "kept 1 memory changed here since" in said
    assert main(["import", "mem0", str(FIXTURE), "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["memories_kept"] == 1


def test_a_memory_deleted_here_since_the_import_stays_deleted(
    memory: Memory, tmp_path: Path
) -> None:
    """On every backend. Importing again after a delete in noted (one memory, or a clear)
    does not bring the memory back; a version changed in mem0 after the deletion is
    written."""
    target = memory
    import_mem0(FIXTURE, target)
    ski = json.loads(FIXTURE.read_text())["results"][0]
    assert target.delete_user_memory(ski["id"], "ava")
    dry = import_mem0(FIXTURE, target, dry_run=True)
    assert dry.memories_written == 0
    again = import_mem0(FIXTURE, target)
    assert target.get_user_memory(ski["id"], "ava") is None
    assert again.memories_written == 0
    assert (dry.memories_deleted_here, again.memories_deleted_here) == (1, 1)
    history = target.get_memory_history(ski["id"], "ava")
    assert [e.event for e in history] == ["add", "delete"]
    assert target.clear() == 2
    cleared = import_mem0(FIXTURE, target)
    assert target.get_user_stats() == []
    assert (cleared.memories_written, cleared.memories_deleted_here) == (0, 3)
    later = {**ski, "memory": "The user snowboards now"}
    later["updated_at"] = (history[-1].created_at + timedelta(seconds=1)).isoformat()
    source = tmp_path / "later.json"
    source.write_text(json.dumps([later]))
    report = import_mem0(source, target)
    assert (report.memories_written, report.memories_deleted_here) == (1, 0)
    got = target.get_user_memory(ski["id"], "ava")
    assert got is not None and got.memory == "The user snowboards now"


def test_cli_says_how_many_memories_deleted_here_stayed_deleted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "cli.db")
    assert main(["import", "mem0", str(FIXTURE), "--db", db]) == 0
    ski = json.loads(FIXTURE.read_text())["results"][0]["id"]
    assert main(["memories", "delete", ski, "--user", "ava", "--db", db]) == 0
    capsys.readouterr()
    assert main(["import", "mem0", str(FIXTURE), "--db", db]) == 0
    said = capsys.readouterr().out
    assert "wrote 0 memories" in said and "left out 1 memory deleted here since" in said
    assert main(["memories", "clear", "--all", "--yes", "--db", db]) == 0
    capsys.readouterr()
    assert main(["import", "mem0", str(FIXTURE), "--db", db, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["memories_written"], got["memories_deleted_here"]) == (0, 3)
    assert main(["memories", "list", "--all-users", "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


class CountedReads(SqliteDb):
    """A SQLite store that counts the memories read one at a time (``get_memory``)."""

    one_by_one = 0

    def get_memory(self, memory_id: str, user_id: str) -> UserMemory | None:
        self.one_by_one += 1
        return super().get_memory(memory_id, user_id)


class OneByOne(CountedReads):
    """A store that reads no memories many at a time (as a store of another package may)."""

    get_memories = None  # type: ignore[assignment]


def _many(tmp_path: Path, count: int) -> Path:
    """A mem0 export of ``count`` memories of two users."""
    at = "2026-01-02T03:04:05+00:00"
    items = [
        {
            "id": f"m{i}",
            "memory": f"The user likes tea number {i}",
            "user_id": ("ava", "bob")[i % 2],
            "metadata": {"topics": ["drinks"]},
            "created_at": at,
            "updated_at": at,
        }
        for i in range(count)
    ]
    source = tmp_path / "many.json"
    source.write_text(json.dumps(items))
    return source


def test_the_stored_memories_are_read_many_at_a_time(tmp_path: Path) -> None:
    """Deciding what to write reads the store's copies many at a time, not one per memory
    (on a database server, each read would be a round trip); a store that cannot still
    gets the same import, one by one."""
    source = _many(tmp_path, 60)
    reports = []
    for store in (CountedReads(tmp_path / "many.db"), OneByOne(tmp_path / "one.db")):
        target = Memory(db=store)
        first = import_mem0(source, target)
        reads = store.one_by_one
        target.edit_user_memory("m0", "ava", memory="The user likes coffee")
        target.delete_user_memory("m1", "bob")
        store.one_by_one = reads  # the edit's own reads are not the import's
        again = import_mem0(source, target)
        stored = target.get_user_memories("ava", limit=100)
        assert not_stored_as_is(store, stored) == []  # as `noted memories import` asks
        reports.append((first.to_dict(), again.to_dict(), store.one_by_one))
        assert (again.memories_written, again.memories_kept, again.memories_deleted_here) == (
            0,
            1,
            1,
        )
        store.close()
    (many_first, many_again, many_reads), (one_first, one_again, one_reads) = reports
    assert (many_first, many_again) == (one_first, one_again)
    assert many_reads == 0
    assert one_reads == 60 + 60 + 30  # each import's memories, then ava's 30


def _no_user(tmp_path: Path, name: str, updated_at: str) -> Path:
    """A mem0 export of the fixture's memories and one that names no user."""
    items = json.loads(FIXTURE.read_text())["results"]
    at = "2026-01-02T03:04:05+00:00"
    cello = {"id": "cello", "memory": "The user plays the cello", "created_at": at}
    items.append(cello | {"updated_at": updated_at})
    source = tmp_path / name
    source.write_text(json.dumps(items))
    return source


def test_a_memory_of_no_user_deleted_by_its_user_stays_deleted_for_every_user(
    memory: Memory, tmp_path: Path
) -> None:
    """On every backend. A memory that names no user in the source becomes the user's of
    the import that first writes it (``ann`` with ``--user``, or ``default``); once that
    user deleted it, importing again, for them, for another user or for all, leaves it
    out (it is not brought back as another user's); a version of it the source changed
    after the deletion is written."""
    source = _no_user(tmp_path, "no-user.json", "2026-01-02T03:04:05+00:00")
    first = import_mem0(source, memory, user_id="ann")
    assert first.memories_written == 1
    assert memory.delete_user_memory("cello", "ann")
    for user_id, written in ((None, 3), ("bob", 0), ("ann", 0), (None, 0)):
        again = import_mem0(source, memory, user_id=user_id)
        assert (again.memories_written, again.memories_deleted_here) == (written, 1), user_id
        assert sorted(s.user_id for s in memory.get_user_stats()) == ["ava", "bob"]
    [*_, deleted] = memory.get_memory_history("cello", "ann")
    later = (deleted.created_at + timedelta(seconds=1)).isoformat()
    changed = _no_user(tmp_path, "changed.json", later)
    report = import_mem0(changed, memory, user_id="bob")
    assert (report.memories_written, report.memories_deleted_here) == (1, 0)
    assert memory.get_user_memory("cello", "bob") is not None


def test_a_memory_of_no_user_imported_as_default_and_deleted_stays_deleted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command line: imported for all (the memory naming no user is ``default``'s),
    deleted by ``default``, then imported for one user: not written as theirs."""
    source = str(_no_user(tmp_path, "no-user.json", "2026-01-02T03:04:05+00:00"))
    db = str(tmp_path / "cli.db")
    assert main(["import", "mem0", source, "--db", db]) == 0
    assert main(["memories", "delete", "cello", "--user", "default", "--db", db]) == 0
    capsys.readouterr()
    assert main(["import", "mem0", source, "--user", "ann", "--db", db, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["memories_written"], got["memories_deleted_here"]) == (0, 1)
    assert main(["memories", "list", "--all-users", "--db", db, "--json"]) == 0
    assert "cello" not in [m["memory_id"] for m in json.loads(capsys.readouterr().out)]


class NoDeletionTimes(SqliteDb):
    """A store that does not tell when memories were deleted (``last_deletions``), as a
    store of another package may: the import reads their histories."""

    last_deletions = None  # type: ignore[assignment]


def test_a_store_without_deletion_times_reads_the_histories_of_its_users(
    tmp_path: Path,
) -> None:
    """The memory that names no user, imported for ``ava`` and deleted by her, is found
    deleted in her history (a user who has memories) by the import for all."""
    source = _no_user(tmp_path, "no-user.json", "2026-01-02T03:04:05+00:00")
    target = Memory(db=NoDeletionTimes(tmp_path / "plain.db"))
    assert import_mem0(source, target, user_id="ava").memories_written == 3
    assert target.delete_user_memory("cello", "ava")
    again = import_mem0(source, target)
    assert (again.memories_written, again.memories_deleted_here) == (1, 1)
    assert target.get_user_memory("cello", "default") is None


def test_cli_max_memory_length(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a store used with Memory(max_memory_length=8000) takes mem0's longer memories: the
    # import says how to raise its limit, and a dry run refuses what the import would
    source = tmp_path / "long.json"
    source.write_text(json.dumps([{"id": "long", "memory": "x" * 6000, "user_id": "ava"}]))
    db = str(tmp_path / "cli.db")
    for dry_run in ([], ["--dry-run"]):
        assert main(["import", "mem0", str(source), "--db", db, *dry_run]) == 1
        said = capsys.readouterr().err
        assert "6000 characters; the limit is 5000 (--max-memory-length raises it)" in said
    assert Memory(db=SqliteDb(db)).get_user_stats() == []
    command = ["import", "mem0", str(source), "--db", db, "--max-memory-length", "8000"]
    assert main(command) == 0
    assert "wrote 1 memory" in capsys.readouterr().out
    stored = Memory(db=SqliteDb(db), max_memory_length=8000).get_user_memory("long", "ava")
    assert stored is not None and len(stored.memory) == 6000
