"""Importing Agno databases written by agno 1.7.12, 2.2.13 and 3.1.10 (see
tests/fixtures/agno/make_fixtures.py), compared field by field with the source rows."""

from __future__ import annotations

import ast
import gc
import hashlib
import json
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import server_url
from noted import Memory, RunTooLargeError, SessionStore, SqliteDb, StoreError, UserError
from noted.cli import main
from noted.importers import import_agno
from noted.sessions import Session, SessionSummary
from servers import Server

FIXTURES = Path(__file__).parent / "fixtures" / "agno"
V1_TABLES = {"memory_table": "user_memories", "session_table": "agent_sessions"}
VERSIONS = {"1.7.12": V1_TABLES, "2.2.13": {}, "3.1.10": {}}

# what make_fixtures.py gave each version (Agno 1.x memories carry no agent or team id)
EXPECTED = {
    "mem-ava-name": (
        "ava",
        "The user's name is Ava",
        ["name"],
        "My name is Ava",
        "assistant",
        None,
    ),
    "mem-ava-ski": ("ava", "The user likes to ski", ["hobbies", "sport"], None, None, "team-1"),
    "mem-bob-home": ("bob", "The user lives in Paris", ["location"], "I live in Paris", None, None),
}
CONVERSATIONS = {
    "sess-ava-1": (
        "ava",
        [
            ("run-1", "My name is Ava", "Nice to meet you, Ava!", 1_760_000_000),
            ("run-2", "I like to ski", "Skiing is great fun.", 1_760_000_010),
        ],
    ),
    "sess-bob-1": ("bob", [("run-3", "I live in Paris", "Paris is lovely.", 1_760_000_100)]),
}


def _utc(value: object) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, int):
        return datetime.fromtimestamp(value, UTC)
    assert isinstance(value, str)
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _times_query(version: str, schema: str = "") -> str:
    if version.startswith("1."):
        # Agno 1 on PostgreSQL leaves updated_at NULL: the body's last_updated, its local
        # time (UTC: make_fixtures.py runs Agno so), which is a moment before created_at
        if schema:
            last = "(memory->>'last_updated')::timestamp AT TIME ZONE 'UTC'"
            updated = f"greatest(coalesce(updated_at, {last}), created_at)"
        else:
            updated = "coalesce(updated_at, created_at)"
        return f"SELECT id, created_at, {updated} FROM {schema}user_memories"
    if version.startswith("2."):
        return f"SELECT memory_id, updated_at, updated_at FROM {schema}agno_memories"
    return f"SELECT memory_id, created_at, updated_at FROM {schema}agno_memories"


def _source_times(source: str, version: str) -> dict[str, tuple[datetime, datetime]]:
    """Each memory's created and updated time as the source row holds them."""
    if source.startswith("postgresql"):
        import psycopg

        with psycopg.connect(source) as conn:
            rows = conn.execute(_times_query(version, "ai.")).fetchall()
        return {r[0]: (_utc(r[1]), _utc(r[2])) for r in rows}
    # read-only and closed at once: a read-write connection would checkpoint the fixture's
    # write-ahead log on close and delete its -wal and -shm files from the source tree
    conn = sqlite3.connect(f"{Path(source).resolve().as_uri()}?mode=ro", uri=True)
    try:
        found = conn.execute(_times_query(version)).fetchall()
    finally:
        conn.close()
    return {r[0]: (_utc(r[1]), _utc(r[2])) for r in found}


_databases = iter(range(1, 1000))


@pytest.fixture(params=["sqlite", "postgres"])
def source_of(
    request: pytest.FixtureRequest, servers: dict[str, Server | str]
) -> Callable[[str], str]:
    """The fixture of one Agno version as a SQLite file, or loaded into a new PostgreSQL
    database from its dump."""

    def sqlite_file(version: str) -> str:
        return str(FIXTURES / f"agno-{version}.db")

    def postgres_database(version: str) -> str:
        import psycopg

        url = server_url(servers, "postgres")
        name = f"agno_import_{next(_databases)}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        target = url.rsplit("/", 1)[0] + "/" + name
        dump = (FIXTURES / f"agno-{version}.postgres.sql").read_text()
        script = "\n".join(line for line in dump.splitlines() if not line.startswith("\\"))
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute(script.encode())
        return target

    return sqlite_file if request.param == "sqlite" else postgres_database


@pytest.fixture
def target(tmp_path: Path) -> Memory:
    return Memory(db=SqliteDb(tmp_path / "noted.db"))


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_import_field_by_field_and_twice(
    version: str, target: Memory, source_of: Callable[[str], str]
) -> None:
    source = source_of(version)
    # the fixtures were written in UTC (see make_fixtures.py)
    report = import_agno(source, target, **VERSIONS[version], agno_timezone="UTC")
    assert (report.memories_written, report.runs_written, report.summaries_written) == (3, 3, 1)
    times = _source_times(source, version)
    for memory_id, (user, text, topics, said, agent, team) in EXPECTED.items():
        got = target.get_user_memory(memory_id, user_id=user)
        assert got is not None
        v1 = version.startswith("1.")
        assert (got.memory, got.topics, got.input, got.agent_id, got.team_id) == (
            text,
            topics,
            said,
            None if v1 else agent,
            None if v1 else team,
        )
        assert (got.created_at, got.updated_at) == times[memory_id]
    assert target.get_user_memories(user_id="ava")[0].user_id == "ava"
    db = target.db
    assert isinstance(db, SqliteDb)
    for session_id, (user, runs) in CONVERSATIONS.items():
        session = db.get_session(session_id, user)
        assert session is not None and session.agent_id == "assistant"
        assert [
            (r.run_id, r.input, r.content, r.created_at, r.status, r.agent_id) for r in session.runs
        ] == [
            (run_id, said, answer, _utc(at), "completed", "assistant")
            for run_id, said, answer, at in runs
        ]
        for run, (_, said, answer, _) in zip(session.runs, runs, strict=True):
            assert [(m.role, m.content) for m in run.messages] == [
                ("user", said),
                ("assistant", answer),
            ]
    summary = db.get_session_summary("sess-ava-1", "ava")
    assert summary is not None
    assert summary.summary == "Ava introduced herself and said she likes to ski."
    assert summary.topics == ["intro", "hobbies"] and summary.run_count == 2
    assert db.get_session_summary("sess-bob-1", "bob") is None

    before = {m: target.get_memory_history(m, user_id=u[0]) for m, u in EXPECTED.items()}
    listed = db.list_sessions(None)
    again = import_agno(source, target, **VERSIONS[version], agno_timezone="UTC")
    assert (again.memories_written, again.runs_written, again.summaries_written) == (0, 0, 0)
    assert {m: target.get_memory_history(m, user_id=u[0]) for m, u in EXPECTED.items()} == before
    assert db.list_sessions(None) == listed


def test_one_users_memories_and_sessions(target: Memory) -> None:
    report = import_agno(str(FIXTURES / "agno-3.1.10.db"), target, user_id="bob")
    bobs = [m for m, (user, *_) in EXPECTED.items() if user == "bob"]
    assert (report.memories_written, report.memories_skipped) == (len(bobs), 3 - len(bobs))
    assert [s.user_id for s in target.get_user_stats()] == ["bob"]
    db = target.db
    assert isinstance(db, SqliteDb)
    assert {s.user_id for s in db.list_sessions(None)} == {"bob"}
    assert report.runs_written == sum(
        len(runs) for user, runs in CONVERSATIONS.values() if user == "bob"
    )


def test_dry_run_writes_nothing(target: Memory) -> None:
    report = import_agno(str(FIXTURES / "agno-3.1.10.db"), target, dry_run=True)
    assert (report.memories_written, report.runs_written, report.summaries_written) == (3, 3, 1)
    assert target.get_user_stats() == []
    db = target.db
    assert isinstance(db, SqliteDb) and db.list_sessions(None) == []


def _broken(tmp_path: Path, sql: str, version: str = "3.1.10") -> str:
    copy = tmp_path / "broken.db"
    shutil.copy(FIXTURES / f"agno-{version}.db", copy)
    with sqlite3.connect(copy) as conn:
        conn.executescript(sql)
    return str(copy)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (
            "UPDATE agno_memories SET topics = '[\"a\",' WHERE memory_id = 'mem-bob-home'",
            "table 'agno_memories', row memory_id='mem-bob-home': column 'topics' is not valid JSON",
        ),
        (
            "UPDATE agno_runs SET run_data = '{oops' WHERE run_id = 'run-3'",
            "table 'agno_runs', row run_id='run-3': column 'run_data' is not valid JSON",
        ),
        (
            "UPDATE agno_schema_versions SET version = '4.0.0' WHERE table_name = 'agno_memories'",
            "table 'agno_memories' has Agno schema version '4.0.0'",
        ),
        (
            "UPDATE agno_memories SET memory = '\"\"' WHERE memory_id = 'mem-ava-ski'",
            "row memory_id='mem-ava-ski': memory must not be empty",
        ),
    ],
)
def test_a_malformed_source_writes_nothing(
    tmp_path: Path, target: Memory, sql: str, message: str
) -> None:
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(")):
        import_agno(_broken(tmp_path, sql), target)
    assert target.get_user_stats() == []
    db = target.db
    assert isinstance(db, SqliteDb) and db.list_sessions(None) == []


def test_a_run_larger_than_a_store_keeps_writes_nothing(tmp_path: Path, target: Memory) -> None:
    # every store refuses a run over noted.limits.MAX_RUN_BYTES: the import is refused
    # before its first write, not halfway through (a dry run says so too)
    source = _broken(
        tmp_path,
        "UPDATE agno_runs SET run_data = json_set(run_data, '$.content', "
        "replace(hex(zeroblob(2500000)), '0', 'x')) WHERE run_id = 'run-3'",
    )
    for dry_run in (True, False):
        with pytest.raises(RunTooLargeError, match="run 'run-3' is .* bytes as JSON"):
            import_agno(source, target, dry_run=dry_run)
    assert target.get_user_stats() == []
    db = target.db
    assert isinstance(db, SqliteDb) and db.list_sessions(None) == []


def test_cli_max_memory_length(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # an Agno memory over the default limit: refused (a dry run too) with the option that
    # raises the limit named, and imported with it
    source = _broken(
        tmp_path,
        "UPDATE agno_memories SET memory = '\"' || replace(hex(zeroblob(3000)), '0', 'x') "
        "|| '\"' WHERE memory_id = 'mem-ava-ski'",
    )
    db = str(tmp_path / "cli.db")
    for dry_run in ([], ["--dry-run"]):
        assert main(["import", "agno", source, "--db", db, *dry_run]) == 1
        said = capsys.readouterr().err
        assert "6000 characters; the limit is 5000 (--max-memory-length raises it)" in said
    assert Memory(db=SqliteDb(db)).get_user_stats() == []
    assert main(["import", "agno", source, "--db", db, "--max-memory-length", "6000"]) == 0
    assert "wrote 3 memories" in capsys.readouterr().out


def test_missing_tables_and_bad_rows_of_agno_1(tmp_path: Path, target: Memory) -> None:
    with pytest.raises(UserError, match="table 'nope' not found"):
        import_agno(str(FIXTURES / "agno-2.2.13.db"), target, memory_table="nope")
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(UserError, match="no Agno tables found"):
        import_agno(str(empty), target)
    source = _broken(
        tmp_path,
        'UPDATE agent_sessions SET memory = \'{"runs": [{"content": "x"}]}\' '
        "WHERE session_id = 'sess-bob-1'",
        "1.7.12",
    )
    with pytest.raises(UserError, match="table 'agent_sessions', row session_id='sess-bob-1'"):
        import_agno(source, target, **V1_TABLES)
    with pytest.raises(UserError, match="is not an Agno memory table"):
        import_agno(str(FIXTURES / "agno-2.2.13.db"), target, memory_table="agno_sessions")
    assert target.get_user_stats() == []


def test_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from noted._console import err

    monkeypatch.setattr(err, "_force_terminal", True)  # the bar is drawn on a terminal only
    db = str(tmp_path / "cli.db")
    source = str(FIXTURES / "agno-2.2.13.db")
    assert main(["import", "agno", source, "--db", db, "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["memories_written"] == 3
    assert main(["memories", "list", "--all-users", "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["import", "agno", source, "--db", db]) == 0
    printed = capsys.readouterr()
    assert "wrote 3 memories, 3 runs, 1 summary" in printed.out
    assert "importing" in printed.err  # the progress bar
    assert main(["import", "agno", source, "--db", db]) == 0
    assert "wrote 0 memories, 0 runs, 0 summaries" in capsys.readouterr().out
    v1 = str(FIXTURES / "agno-1.7.12.db")
    assert main(["import", "agno", v1, "--db", db, "--memory-table", "user_memories"]) == 0
    assert "read 3 memories, 2 sessions (3 runs)" in capsys.readouterr().out
    assert main(["import", "agno", v1, "--db", db, "--session-table", "missing"]) == 1
    assert "table 'missing' not found" in capsys.readouterr().err


def test_into_every_backend(memory: Memory) -> None:
    """Agno 3's SQLite fixture into each noted backend, twice."""
    source = str(FIXTURES / "agno-3.1.10.db")
    first = import_agno(source, memory)
    assert (first.memories_written, first.runs_written, first.summaries_written) == (3, 3, 1)
    assert sorted(m.memory for m in memory.get_user_memories(user_id="ava")) == [
        "The user likes to ski",
        "The user's name is Ava",
    ]
    db = memory.db
    assert isinstance(db, SessionStore)
    session = db.get_session("sess-ava-1", "ava")
    assert session is not None and [r.run_id for r in session.runs] == ["run-1", "run-2"]
    history = memory.get_memory_history("mem-ava-ski", user_id="ava")
    again = import_agno(source, memory)
    assert (again.memories_written, again.runs_written, again.summaries_written) == (0, 0, 0)
    assert memory.get_memory_history("mem-ava-ski", user_id="ava") == history


def test_source_files_untouched(tmp_path: Path) -> None:
    """Agno 3 keeps its SQLite file in write-ahead-log mode: importing from it, closing, and
    collecting garbage leave the file and its -wal and -shm companions as they were."""
    names = ["agno-3.1.10.db", "agno-3.1.10.db-wal", "agno-3.1.10.db-shm"]
    for name in names:
        shutil.copy(FIXTURES / name, tmp_path / name)

    def digests() -> dict[str, str]:
        return {
            f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(tmp_path.iterdir())
        }

    before = digests()
    assert sorted(before) == sorted(names)
    target = Memory(db=SqliteDb(db_file=str(tmp_path.parent / f"{tmp_path.name}-target.db")))
    report = import_agno(str(tmp_path / names[0]), target)
    assert report.memories_written == 3
    assert _source_times(str(tmp_path / names[0]), "3.1.10").keys() == set(EXPECTED)
    gc.collect()
    assert digests() == before


def test_a_memory_table_of_another_name_is_found_by_its_columns(tmp_path: Path) -> None:
    # Agno 1.x's SqliteMemoryDb(table_name="user_memories"), beside the default session
    # table: read without --memory-table; two such tables must be named.
    source = tmp_path / "agno.db"
    shutil.copy(FIXTURES / "agno-1.7.12.db", source)
    memory = Memory(db=SqliteDb(tmp_path / "noted.db"), embedder=None)
    report = import_agno(str(source), memory, dry_run=True)
    assert (report.memories_read, report.sessions_read) == (3, 2)
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE old_memories AS SELECT * FROM user_memories")
    conn.close()
    with pytest.raises(UserError, match=r"memory tables \(old_memories, user_memories\)"):
        import_agno(str(source), memory)
    assert memory.get_user_stats() == []
    report = import_agno(str(source), memory, memory_table="old_memories")
    assert report.memories_written == 3


def test_cli_table_options_name_the_source_tables_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--memory-table and --session-table name Agno's tables; the store of --db keeps its
    own table names, so the other commands see what was imported."""
    db = str(tmp_path / "cli.db")
    source = str(FIXTURES / "agno-1.7.12.db")
    options = ["--memory-table", "user_memories", "--session-table", "agent_sessions"]
    assert main(["import", "agno", source, "--db", db, *options]) == 0
    assert "wrote 3 memories, 3 runs, 1 summary" in capsys.readouterr().out
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert {"noted_memories", "noted_sessions"} <= tables
    assert not {"user_memories", "agent_sessions"} & tables
    assert main(["memories", "list", "--user", "ava", "--db", db, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert main(["import", "agno", source, "--db", db]) == 0
    assert "wrote 0 memories, 0 runs, 0 summaries" in capsys.readouterr().out


# a session of Agno 1.x's legacy AgentMemory (agno.memory.agent), as agno 1.7.12's
# SqliteStorage wrote it: each run an AgentRun around its RunResponse, one summary
_MESSAGE = '{"content": "%s", "from_history": false, "stop_after_tool_call": false, "role": "%s"}'
_LEGACY_MEMORY = (
    '{"update_system_message_on_change": false, "create_session_summary": false, '
    '"update_session_summary_after_run": true, "create_user_memories": false, '
    '"update_user_memories_after_run": true, "messages": [], "runs": [{"message": '
    + _MESSAGE % ("hello", "user")
    + ', "messages": ['
    + _MESSAGE % ("hello", "user")
    + ", "
    + _MESSAGE % ("hi", "assistant")
    + '], "response": {"content": "hi", "content_type": "str", "run_id": "r-legacy", '
    '"session_id": "s-legacy", "created_at": 1796514979, "status": "RUNNING", "messages": ['
    + _MESSAGE % ("You are kind.", "system")
    + ", "
    + _MESSAGE % ("hello", "user")
    + ", "
    + _MESSAGE % ("hi", "assistant")
    + ']}}], "summary": {"summary": "A greeting.", "topics": ["greeting"]}}'
)


def test_agno_1_legacy_agent_memory_sessions(tmp_path: Path, target: Memory) -> None:
    source = _broken(
        tmp_path,
        "INSERT INTO agent_sessions (session_id, user_id, memory, session_data, extra_data, "
        "created_at, updated_at, agent_id, agent_data) VALUES ('s-legacy', 'ava', "
        f"'{_LEGACY_MEMORY}', '{{}}', NULL, 1796514979, NULL, 'a1', '{{\"agent_id\": \"a1\"}}')",
        "1.7.12",
    )
    report = import_agno(source, target, memory_table="user_memories")
    assert (report.memories_written, report.runs_written, report.summaries_written) == (3, 4, 2)
    db = target.db
    assert isinstance(db, SqliteDb)
    session = db.get_session("s-legacy", "ava")
    assert session is not None
    [run] = session.runs
    assert (run.run_id, run.input, run.content, run.agent_id, run.created_at) == (
        "r-legacy",
        "hello",
        "hi",
        "a1",
        _utc(1796514979),
    )
    assert [(m.role, m.content) for m in run.messages] == [("user", "hello"), ("assistant", "hi")]
    summary = db.get_session_summary("s-legacy", "ava")
    assert summary is not None
    assert (summary.summary, summary.topics, summary.updated_at) == (
        "A greeting.",
        ["greeting"],
        _utc(1796514979),
    )


def _read_only(path: Path, query: str) -> list[tuple[object, ...]]:
    """Rows of a fixture read without writing to it (see _source_times)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def _with_agno_3_tables(tmp_path: Path, *runs: tuple[object, ...]) -> str:
    """A copy of Agno 2's fixture as Agno 3 leaves it when it goes on using it: the
    sessions keep their runs column, and Agno 3's runs table (its own schema) holds
    ``runs`` (rows of agno 3.1.10's agno_runs)."""
    v3 = FIXTURES / "agno-3.1.10.db"
    schema = _read_only(
        v3,
        "SELECT sql FROM sqlite_master WHERE tbl_name IN ('agno_runs', 'agno_schema_versions') "
        "AND sql IS NOT NULL ORDER BY type DESC",
    )
    copy = tmp_path / "agno-2-then-3.db"
    shutil.copy(FIXTURES / "agno-2.2.13.db", copy)
    with sqlite3.connect(copy) as conn:
        for (sql,) in schema:
            conn.execute(str(sql))
        conn.execute(
            "INSERT INTO agno_schema_versions VALUES "
            "('agno_runs', '3.0.0', '2026-12-05T23:57:34.171483', '2026-12-05T23:57:34.171483')"
        )
        conn.executemany(f"INSERT INTO agno_runs VALUES ({', '.join('?' * 13)})", runs)
    conn.close()
    return str(copy)


def _agno_3_run(run_id: str, run_index: int, **changes: object) -> tuple[object, ...]:
    """A row of agno 3.1.10's agno_runs: the fixture's run-2, as run ``run_id``."""
    [row] = _read_only(
        FIXTURES / "agno-3.1.10.db", "SELECT * FROM agno_runs WHERE run_id = 'run-2'"
    )
    data = json.loads(str(row[10])) | {"run_id": run_id} | changes
    return (run_id, *row[1:9], run_index, json.dumps(data), *row[11:])


def test_agno_2_runs_beside_agno_3_runs_table(tmp_path: Path, target: Memory) -> None:
    """Agno 3 reads a session's runs from the session row and its runs table both: the
    row's first, each in the table's version when it has one, then the table's others."""
    source = _with_agno_3_tables(
        tmp_path,
        _agno_3_run("run-4", 2, content="Later, on Agno 3."),
        _agno_3_run("run-2", 1, content="Skiing is great fun!"),
    )
    report = import_agno(source, target)
    assert (report.runs_read, report.runs_written) == (4, 4)
    db = target.db
    assert isinstance(db, SqliteDb)
    session = db.get_session("sess-ava-1", "ava")
    assert session is not None
    assert [(r.run_id, r.content) for r in session.runs] == [
        ("run-1", "Nice to meet you, Ava!"),
        ("run-2", "Skiing is great fun!"),
        ("run-4", "Later, on Agno 3."),
    ]
    bob = db.get_session("sess-bob-1", "bob")
    assert bob is not None and [r.run_id for r in bob.runs] == ["run-3"]


@pytest.fixture
def local_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Sets this process's local time zone, for the test."""

    def set_zone(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()


def _with_local_times(tmp_path: Path) -> tuple[str, str]:
    """Copies of Agno 2's and Agno 1's fixtures with the times Agno writes from
    ``datetime.now()``, naive, at 11:01:40 local time on 2025-10-09: Agno 2's summary
    ``updated_at``; Agno 1's summary ``last_updated`` and a memory body's
    ``last_updated`` (its updated_at column NULL, as PostgresMemoryDb leaves it)."""
    v2 = tmp_path / "agno-2.db"
    shutil.copy(FIXTURES / "agno-2.2.13.db", v2)
    with sqlite3.connect(v2) as conn:
        [(text,)] = conn.execute(
            "SELECT summary FROM agno_sessions WHERE session_id = 'sess-ava-1'"
        )
        summary = json.loads(json.loads(text)) | {"updated_at": "2025-10-09T11:01:40.250000"}
        conn.execute(
            "UPDATE agno_sessions SET summary = ? WHERE session_id = 'sess-ava-1'",
            (json.dumps(json.dumps(summary)),),
        )
    conn.close()
    v1 = tmp_path / "agno-1.db"
    shutil.copy(FIXTURES / "agno-1.7.12.db", v1)
    with sqlite3.connect(v1) as conn:
        [(text,)] = conn.execute(
            "SELECT memory FROM agent_sessions WHERE session_id = 'sess-ava-1'"
        )
        body = json.loads(text)
        body["summaries"]["ava"]["sess-ava-1"]["last_updated"] = "2025-10-09T11:01:40.250000"
        conn.execute(
            "UPDATE agent_sessions SET memory = ? WHERE session_id = 'sess-ava-1'",
            (json.dumps(body),),
        )
        [(text,)] = conn.execute("SELECT memory FROM user_memories WHERE id = 'mem-ava-ski'")
        memory = ast.literal_eval(text) | {"last_updated": "2025-10-09T11:01:40.250000"}
        conn.execute(
            "UPDATE user_memories SET memory = ?, created_at = '2025-10-09 08:00:00', "
            "updated_at = NULL WHERE id = 'mem-ava-ski'",
            (str(memory),),
        )
    conn.close()
    return str(v2), str(v1)


WRITTEN = datetime(2025, 10, 9, 9, 1, 40, 250000, UTC)  # 11:01:40.25 in Paris


def _local_times_read(target: Memory) -> list[datetime]:
    db = target.db
    assert isinstance(db, SqliteDb)
    summary = db.get_session_summary("sess-ava-1", "ava")
    memory = target.get_user_memory("mem-ava-ski", user_id="ava")
    assert summary is not None and memory is not None
    return [summary.updated_at, memory.updated_at]


def test_naive_agno_times_are_local_times(
    tmp_path: Path, target: Memory, local_zone: Callable[[str], None]
) -> None:
    local_zone("Europe/Paris")  # UTC+2 on 2025-10-09
    v2, v1 = _with_local_times(tmp_path)
    import_agno(v2, target)
    db = target.db
    assert isinstance(db, SqliteDb)
    summary = db.get_session_summary("sess-ava-1", "ava")
    assert summary is not None and summary.updated_at == WRITTEN
    other = Memory(db=SqliteDb(tmp_path / "v1.db"))
    import_agno(v1, other, **V1_TABLES)
    assert _local_times_read(other) == [WRITTEN, WRITTEN]
    # SQL's CURRENT_TIMESTAMP and the epochs stay UTC
    name = other.get_user_memory("mem-ava-name", user_id="ava")
    times = _source_times(str(FIXTURES / "agno-1.7.12.db"), "1.7.12")
    assert name is not None and (name.created_at, name.updated_at) == times["mem-ava-name"]
    session = db.get_session("sess-ava-1", "ava")
    assert session is not None and session.runs[0].created_at == _utc(1_760_000_000)
    again = import_agno(v1, other, **V1_TABLES)
    assert (again.memories_written, again.summaries_written) == (0, 0)


def test_the_time_zone_agno_ran_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], local_zone: Callable[[str], None]
) -> None:
    """Where the import runs in another time zone than Agno did, --agno-timezone names
    Agno's; SQL's and epoch times stay UTC."""
    local_zone("America/New_York")
    _, v1 = _with_local_times(tmp_path)
    target = Memory(db=SqliteDb(tmp_path / "noted.db"))
    import_agno(v1, target, **V1_TABLES, agno_timezone="Europe/Paris")
    assert _local_times_read(target) == [WRITTEN, WRITTEN]
    assert target.get_user_memory("mem-ava-name", user_id="ava") is not None
    db = str(tmp_path / "cli.db")
    options = ["--memory-table", "user_memories", "--agno-timezone", "Europe/Paris"]
    assert main(["import", "agno", v1, "--db", db, *options]) == 0
    capsys.readouterr()
    assert _local_times_read(Memory(db=SqliteDb(db))) == [WRITTEN, WRITTEN]
    assert main(["import", "agno", v1, "--db", db, "--agno-timezone", "Mars/Olympus"]) == 1
    assert "unknown time zone 'Mars/Olympus'" in capsys.readouterr().err


def test_agno_3_runs_table_of_another_name(
    tmp_path: Path, target: Memory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Agno 3's SqliteDb(runs_table="my_runs"): found by its columns, or named."""
    source = _broken(
        tmp_path,
        "ALTER TABLE agno_runs RENAME TO my_runs; UPDATE agno_schema_versions "
        "SET table_name = 'my_runs' WHERE table_name = 'agno_runs'",
    )
    report = import_agno(source, target, dry_run=True)
    assert (report.memories_written, report.runs_written, report.summaries_written) == (3, 3, 1)
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE old_runs AS SELECT * FROM my_runs WHERE run_id = 'run-1'")
    conn.close()
    with pytest.raises(UserError, match=r"runs tables \(my_runs, old_runs\).*--runs-table"):
        import_agno(source, target)
    with pytest.raises(UserError, match="table 'agno_sessions' is not an Agno runs table"):
        import_agno(source, target, runs_table="agno_sessions")
    report = import_agno(source, target, runs_table="old_runs", dry_run=True)
    assert report.runs_written == 1
    db = str(tmp_path / "cli.db")
    assert main(["import", "agno", source, "--db", db, "--runs-table", "my_runs"]) == 0
    assert "wrote 3 memories, 3 runs, 1 summary" in capsys.readouterr().out


def test_agno_3_before_its_first_run(tmp_path: Path, target: Memory) -> None:
    """Agno 3 makes its runs table with the first run: without one, the sessions have
    none, and a session without runs is not kept (nor its summary)."""
    source = _broken(tmp_path, "DROP TABLE agno_runs")
    dry = import_agno(source, target, dry_run=True)
    report = import_agno(source, target)
    for done in (dry, report):
        assert (done.memories_written, done.sessions_read, done.runs_read) == (3, 2, 0)
        assert (done.runs_written, done.summaries_written) == (0, 0)
    db = target.db
    assert isinstance(db, SqliteDb) and db.list_sessions(None) == []
    again = import_agno(source, target)
    assert (again.memories_written, again.runs_written, again.summaries_written) == (0, 0, 0)


def _message(role: str, content: str) -> dict[str, object]:
    return {
        "id": f"{role}-{len(content)}",
        "content": content,
        "from_history": False,
        "stop_after_tool_call": False,
        "role": role,
        "created_at": 1796515389,
    }


# a team session as agno 2.2.13's Team keeps it: the member agent's run (its parent the
# leader's run) beside the leader's, in the session row's runs column
TEAM_RUNS = [
    {
        "run_id": "member-1",
        "agent_id": "researcher",
        "session_id": "t1",
        "parent_run_id": "lead-1",
        "content": "Hotel list...",
        "content_type": "str",
        "created_at": 1796515389,
        "status": "COMPLETED",
        "messages": [
            _message("user", "Research hotels in Rome"),
            _message("assistant", "Hotel list..."),
        ],
        "input": {"input_content": "Research hotels in Rome"},
    },
    {
        "run_id": "lead-1",
        "team_id": "team-1",
        "session_id": "t1",
        "input": {"input_content": "Plan my trip to Rome"},
        "content": "Here is your plan.",
        "content_type": "str",
        "member_responses": [],
        "created_at": 1796515389,
        "status": "COMPLETED",
        "messages": [
            _message("user", "Plan my trip to Rome"),
            _message("assistant", "Here is your plan."),
        ],
    },
]


def test_team_member_runs_are_no_turns(tmp_path: Path, target: Memory) -> None:
    source = tmp_path / "team.db"
    shutil.copy(FIXTURES / "agno-2.2.13.db", source)
    with sqlite3.connect(source) as conn:
        conn.execute(
            "INSERT INTO agno_sessions (session_id, session_type, agent_id, team_id, user_id, "
            "session_data, agent_data, team_data, metadata, runs, summary, created_at, "
            "updated_at) VALUES ('t1', 'team', NULL, 'team-1', 'ava', 'null', NULL, 'null', "
            "'null', ?, 'null', 1796515389, 1796515389)",
            (json.dumps(json.dumps(TEAM_RUNS)),),
        )
    conn.close()
    report = import_agno(str(source), target)
    assert (report.sessions_read, report.runs_read, report.runs_written) == (3, 4, 4)
    db = target.db
    assert isinstance(db, SqliteDb)
    session = db.get_session("t1", "ava")
    assert session is not None
    assert [(r.run_id, r.input, r.content) for r in session.runs] == [
        ("lead-1", "Plan my trip to Rome", "Here is your plan.")
    ]


def _kept_in_session(session_id: str, at: int, memories: dict[str, object]) -> tuple[object, ...]:
    """An agent_sessions row of agno 1.7.12's SqliteStorage for an Agent whose memory.v2
    Memory has no database: the user memories are kept in the row's memory column."""
    body = {
        "summaries": {},
        "memories": memories,
        "runs": [
            {
                "content": "hi",
                "content_type": "str",
                "run_id": f"run-{session_id}",
                "session_id": session_id,
                "created_at": at,
                "status": "RUNNING",
                "messages": [
                    {
                        "content": "hello",
                        "from_history": False,
                        "stop_after_tool_call": False,
                        "role": role,
                        "created_at": at,
                    }
                    for role in ("user", "assistant")
                ],
            }
        ],
    }
    return (
        session_id,
        "carol",
        json.dumps(body),
        "{}",
        "null",
        at,
        None,
        "a2",
        '{"agent_id": "a2"}',
    )


KEPT_INSERT = (
    "INSERT INTO agent_sessions (session_id, user_id, memory, session_data, extra_data, "
    "created_at, updated_at, agent_id, agent_data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _kept(text: str, memory_id: str, last_updated: str) -> dict[str, object]:
    return {"memory_id": memory_id, "memory": text, "topics": ["x"], "last_updated": last_updated}


def test_agno_1_memories_kept_in_session_rows(tmp_path: Path, target: Memory) -> None:
    """Without a memory table, the memories the session rows keep are imported, each in
    its newest copy; with one, Agno reads that table, and so does the import."""
    [(schema,)] = _read_only(
        FIXTURES / "agno-1.7.12.db",
        "SELECT sql FROM sqlite_master WHERE name = 'agent_sessions'",
    )
    rows = [
        _kept_in_session(
            "s-carol-1",
            1_760_000_000,
            {"carol": {"ms-1": _kept("Carol skis", "ms-1", "2025-10-09T09:00:00.5")}},
        ),
        _kept_in_session(
            "s-carol-2",
            1_760_000_500,
            {
                "carol": {
                    "ms-1": _kept("Carol snowboards", "ms-1", "2025-10-09T09:05:00.5"),
                    "ms-2": _kept("Carol lives in Oslo", "ms-2", "2025-10-09T09:06:00.5"),
                }
            },
        ),
    ]
    source = tmp_path / "no-memory-table.db"
    with sqlite3.connect(source) as conn:
        conn.execute(str(schema))
        conn.executemany(KEPT_INSERT, rows)
    conn.close()
    report = import_agno(str(source), target, agno_timezone="UTC")
    assert (report.memories_written, report.runs_written) == (2, 2)
    got = {m.memory_id: m for m in target.get_user_memories(user_id="carol")}
    assert {k: (m.memory, m.topics) for k, m in got.items()} == {
        "ms-1": ("Carol snowboards", ["x"]),
        "ms-2": ("Carol lives in Oslo", ["x"]),
    }
    assert got["ms-1"].updated_at == datetime(2025, 10, 9, 9, 5, 0, 500000, UTC)
    again = import_agno(str(source), target, agno_timezone="UTC")
    assert (again.memories_written, again.runs_written) == (0, 0)

    beside = _broken(tmp_path, "", "1.7.12")
    with sqlite3.connect(beside) as conn:
        conn.executemany(KEPT_INSERT, rows)
    conn.close()
    report = import_agno(beside, Memory(db=SqliteDb(tmp_path / "other.db")), dry_run=True)
    assert (report.memories_read, report.runs_read) == (3, 5)


def test_one_user_at_a_time_with_memories_of_no_user(
    tmp_path: Path, memory: Memory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Agno 2/3 keep user_id NULL on a memory given no user. The first import of one user
    takes it; the imports of the others, and of everyone, skip it (and say so) instead of
    failing as a whole."""
    source = _broken(
        tmp_path, "UPDATE agno_memories SET user_id = NULL WHERE memory_id = 'mem-ava-ski'"
    )
    first = import_agno(source, memory, user_id="bob")
    assert (first.memories_written, first.memories_skipped) == (2, 1)
    assert memory.get_user_memory("mem-ava-ski", user_id="bob") is not None
    ava = import_agno(source, memory, user_id="ava")
    assert (ava.memories_written, ava.memories_skipped) == (1, 2)
    assert [m.memory_id for m in memory.get_user_memories(user_id="ava")] == ["mem-ava-name"]
    everyone = import_agno(source, memory)
    assert (everyone.memories_written, everyone.memories_skipped) == (0, 1)
    again = import_agno(source, memory, user_id="bob")
    assert (again.memories_written, again.memories_skipped) == (0, 1)
    assert memory.get_user_memories(user_id="default") == []
    if isinstance(memory.db, SqliteDb):  # the command line says so
        db = str(tmp_path / "cli.db")
        assert main(["import", "agno", source, "--db", db, "--user", "bob"]) == 0
        assert main(["import", "agno", source, "--db", db]) == 0
        assert (
            capsys.readouterr()
            .out.splitlines()[1]
            .endswith("wrote 1 memory, 2 runs, 1 summary; skipped 1 memory of other users")
        )


def test_a_damaged_source_is_a_store_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], servers: dict[str, Server | str]
) -> None:
    """A SQLite file whose header and schema read but whose pages do not, and a
    PostgreSQL table that fails when read: an error naming the source and the table."""
    source = tmp_path / "damaged.db"
    shutil.copy(FIXTURES / "agno-2.2.13.db", source)
    with sqlite3.connect(source) as conn:
        row = conn.execute(
            "SELECT * FROM agno_memories WHERE memory_id = 'mem-bob-home'"
        ).fetchone()
        marks = ", ".join("?" * len(row))
        conn.executemany(
            f"INSERT INTO agno_memories VALUES ({marks})",
            [(f"mem-{i:05}", *row[1:]) for i in range(2000)],
        )
        [(pages,)] = conn.execute("PRAGMA page_count")
    conn.close()
    with source.open("r+b") as damaged:  # three pages of the middle overwritten
        damaged.seek(4096 * (pages // 2))
        damaged.write(b"\xff" * 4096 * 3)
    target = Memory(db=SqliteDb(tmp_path / "noted.db"))
    with pytest.raises(StoreError, match="damaged.db: cannot read table 'agno_memories': "):
        import_agno(str(source), target)
    assert main(["import", "agno", str(source), "--db", str(tmp_path / "cli.db")]) == 1
    printed = capsys.readouterr().err
    assert "error: " in printed and "Traceback" not in printed

    import psycopg

    url = server_url(servers, "postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE agno_damaged")
    damaged_url = url.rsplit("/", 1)[0] + "/agno_damaged"
    with psycopg.connect(damaged_url, autocommit=True) as conn:
        conn.execute(
            "CREATE SCHEMA ai; CREATE VIEW ai.agno_memories AS SELECT 'm'::text AS memory_id, "
            "'x'::text AS memory, 'u'::text AS user_id, '[]'::text AS topics, "
            "(1 / 0)::bigint AS updated_at"
        )
    with pytest.raises(StoreError, match="cannot read table 'agno_memories': division by zero"):
        import_agno(damaged_url, target)


def test_a_memory_deleted_here_since_the_import_stays_deleted(
    tmp_path: Path, memory: Memory
) -> None:
    """On every backend. Importing again after a delete in noted (one memory, or a user's
    clear) brings neither back; the runs are not written again either. A memory Agno
    changed after the deletion is written."""
    source = str(FIXTURES / "agno-3.1.10.db")
    import_agno(source, memory)
    assert memory.delete_user_memory("mem-ava-ski", "ava")
    assert memory.clear("bob") == 1
    again = import_agno(source, memory)
    assert [m.memory_id for m in memory.get_user_memories(user_id="ava")] == ["mem-ava-name"]
    assert memory.get_user_memories(user_id="bob") == []
    assert (again.memories_written, again.memories_deleted_here, again.runs_written) == (0, 2, 0)
    [*_, deleted] = memory.get_memory_history("mem-ava-ski", user_id="ava")
    assert deleted.event == "delete"
    later = int(deleted.created_at.timestamp()) + 2
    changed = _broken(
        tmp_path,
        "UPDATE agno_memories SET memory = '\"The user snowboards now\"', "
        f"updated_at = {later} WHERE memory_id = 'mem-ava-ski'",
    )
    report = import_agno(changed, memory)
    assert (report.memories_written, report.memories_deleted_here) == (1, 1)
    got = memory.get_user_memory("mem-ava-ski", user_id="ava")
    assert got is not None and got.memory == "The user snowboards now"


class CountedSessionReads(SqliteDb):
    """A SQLite store that counts the sessions and summaries read one at a time."""

    one_by_one = 0

    def get_session(self, session_id: str, user_id: str | None) -> Session | None:
        self.one_by_one += 1
        return super().get_session(session_id, user_id)

    def get_session_summary(self, session_id: str, user_id: str) -> SessionSummary | None:
        self.one_by_one += 1
        return super().get_session_summary(session_id, user_id)


class SessionsOneByOne(CountedSessionReads):
    """A store that reads no sessions many at a time (as a store of another package may)."""

    get_sessions = None  # type: ignore[assignment]


def test_the_stored_sessions_are_read_many_at_a_time(tmp_path: Path) -> None:
    """Deciding which runs and summaries to write reads the store's copies of the
    sessions many at a time, not each session (and its summary) in turn: on a database
    server each read is a round trip. A store that cannot gets the same import, one
    session at a time."""
    source = str(FIXTURES / "agno-3.1.10.db")
    reports = []
    for store in (CountedSessionReads(tmp_path / "many.db"), SessionsOneByOne(tmp_path / "one.db")):
        target = Memory(db=store)
        dry = import_agno(source, target, dry_run=True)
        first = import_agno(source, target)
        again = import_agno(source, target)
        reports.append(([r.to_dict() for r in (dry, first, again)], store.one_by_one))
        store.close()
    (many, many_reads), (one, one_reads) = reports
    assert many == one
    _, first, again = many
    assert (first["sessions_read"], first["runs_written"], first["summaries_written"]) == (2, 3, 1)
    assert (again["runs_written"], again["summaries_written"]) == (0, 0)
    assert many_reads == 0
    assert one_reads == 3 * 2
