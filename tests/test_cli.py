"""The `noted` command, run in-process through main() and once as an installed script."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from noted import Agent, Memory, SqliteDb, UserMemory
from noted.cli import build_parser, main
from noted.db.urls import DEFAULT_TABLES
from noted.errors import UserError
from noted.testing import ScriptedModel


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "cli.db")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_add_list_show_edit_delete(capsys, db: str) -> None:
    added = run_json(
        capsys, "memories", "add", "Ava likes to ski", "-t", "hobbies", "--user", "ava", "--db", db
    )
    assert isinstance(added, dict)
    mid = added["memory_id"]
    assert added["topics"] == ["hobbies"]

    code, out, _ = run(capsys, "memories", "list", "--user", "ava", "--db", db)
    assert code == 0
    assert "Ava likes to ski" in out
    assert mid in out
    assert "(1-1 of 1)" in out

    shown = run_json(capsys, "memories", "show", mid, "--user", "ava", "--db", db)
    assert shown == added
    code, out, _ = run(capsys, "memories", "show", mid, "--user", "ava", "--db", db)
    assert "hobbies" in out

    edited = run_json(
        capsys,
        "memories",
        "edit",
        mid,
        "--text",
        "Ava likes to snowboard",
        "--user",
        "ava",
        "--db",
        db,
    )
    assert isinstance(edited, dict)
    assert edited["memory"] == "Ava likes to snowboard"
    assert edited["topics"] == ["hobbies"]
    assert edited["created_at"] == added["created_at"]
    retopic = run_json(
        capsys, "memories", "edit", mid, "-t", "sport", "-t", "winter", "--user", "ava", "--db", db
    )
    assert isinstance(retopic, dict)
    assert retopic["topics"] == ["sport", "winter"]
    same = ("memories", "edit", mid, "--text", "Ava likes to snowboard", "--user", "ava")
    code, out, _ = run(capsys, *same, "--db", db)
    assert (code, out.startswith(f"unchanged {mid}")) == (0, True)
    assert run_json(capsys, *same, "--json", "--db", db) == retopic  # nothing written
    history = Memory(db=SqliteDb(db)).get_memory_history(mid, user_id="ava")
    assert [e.event for e in history] == ["add", "update", "update"]

    code, out, _ = run(capsys, "memories", "delete", mid, "--user", "ava", "--db", db)
    assert (code, out.strip()) == (0, "deleted 1")
    code, out, err = run(capsys, "memories", "delete", mid, "--user", "ava", "--db", db)
    assert (code, out) == (1, "deleted 0\n")
    assert err == f"error: 1 not found: user 'ava' has no memory with id {mid!r}\n"
    # --json names the ids not found, as noted sessions delete does (it gave their count)
    kept = run_json(capsys, "memories", "add", "kept", "--user", "ava", "--db", db)
    assert isinstance(kept, dict)
    argv = ("memories", "delete", kept["memory_id"], "nope", mid, "--user", "ava", "--json")
    code, out, _ = run(capsys, *argv, "--db", db)
    assert (code, json.loads(out)) == (1, {"deleted": 1, "not_found": ["nope", mid]})
    code, out, _ = run(capsys, "sessions", "delete", "nope", "--json", "--db", db)
    assert (code, json.loads(out)) == (1, {"deleted": 0, "not_found": ["nope"]})

    # --topic and --no-topics together: a usage error, where the topics were dropped
    with pytest.raises(SystemExit) as ended:
        main(["memories", "edit", mid, "--no-topics", "-t", "x", "--user", "ava", "--db", db])
    assert ended.value.code == 2
    assert "not allowed with argument --no-topics" in capsys.readouterr().err


def test_other_users_are_out_of_reach(capsys, db: str) -> None:
    added = run_json(capsys, "memories", "add", "secret", "--user", "ava", "--db", db)
    assert isinstance(added, dict)
    mid = added["memory_id"]
    for argv in (["show", mid], ["edit", mid, "--text", "hacked"], ["delete", mid]):
        code, _, _err = run(capsys, "memories", *argv, "--user", "bob", "--db", db)
        assert code == 1, argv
    assert run_json(capsys, "memories", "list", "--user", "bob", "--db", db) == []
    kept = Memory(db=SqliteDb(db)).get_user_memory(mid, user_id="ava")
    assert kept is not None
    assert kept.memory == "secret"


def test_a_user_id_with_whitespace_around_it_takes_no_new_memories(capsys, db: str) -> None:
    # `--user " ava"` made a second user beside "ava"; what such an id holds (imported
    # before) is still listed, edited and deleted by it
    code, _, err = run(capsys, "memories", "add", "Likes jazz", "--user", " ava", "--db", db)
    assert code == 1
    assert "user_id must not begin or end with whitespace, got ' ava'" in err
    Memory(db=SqliteDb(db)).import_user_memories(
        [UserMemory("Likes tea", memory_id="tea", user_id=" ava")]
    )
    listed = run_json(capsys, "memories", "list", "--user", " ava", "--db", db)
    assert isinstance(listed, list) and [m["memory"] for m in listed] == ["Likes tea"]
    code, _, err = run(
        capsys, "memories", "edit", "tea", "--text", "Likes green tea", "--user", " ava", "--db", db
    )
    assert code == 0, err
    assert run(capsys, "memories", "delete", "tea", "--user", " ava", "--db", db)[0] == 0
    assert Memory(db=SqliteDb(db)).get_user_stats() == []


def test_list_filters_and_all_users(capsys, db: str) -> None:
    memory = Memory(db=SqliteDb(db))
    memory.add_user_memories(
        [UserMemory(f"a{i}", topics=["x" if i % 2 else "y"]) for i in range(5)], user_id="ava"
    )
    memory.add_user_memory(UserMemory("b0"), user_id="bob")
    memory.db.close()
    rows = run_json(capsys, "memories", "list", "--user", "ava", "--limit", "2", "--db", db)
    assert [r["memory"] for r in rows] == ["a4", "a3"]  # type: ignore[index,union-attr]
    rows = run_json(
        capsys, "memories", "list", "--user", "ava", "-t", "x", "--order", "asc", "--db", db
    )
    assert [r["memory"] for r in rows] == ["a1", "a3"]  # type: ignore[index,union-attr]
    rows = run_json(capsys, "memories", "list", "--all-users", "--db", db)
    assert len(rows) == 6  # type: ignore[arg-type]
    _, out, _ = run(capsys, "memories", "list", "--all-users", "--db", db)
    assert "bob" in out
    assert run_json(capsys, "memories", "topics", "--user", "ava", "--db", db) == ["x", "y"]
    stats = run_json(capsys, "memories", "stats", "--db", db)
    assert [(s["user_id"], s["memory_count"]) for s in stats] == [("bob", 1), ("ava", 5)]  # type: ignore[index,union-attr]
    _code, out, _ = run(capsys, "memories", "stats", "--db", db)
    assert "ava" in out
    assert "5" in out


def test_list_filters_are_read_as_the_memory_api_reads_them(capsys, db: str) -> None:
    memory = Memory(db=SqliteDb(db))
    memory.add_user_memories([UserMemory("a fact", topics=["a"])], user_id="ava")
    memory.db.close()
    rows = run_json(capsys, "memories", "list", "--user", "ava", "-t", " a ", "--db", db)
    assert [r["memory"] for r in rows] == ["a fact"]  # type: ignore[index,union-attr]
    for argv, said in (
        (["list", "--user", "ava", "-t", ""], "each topic must be a non-empty string"),
        (["list", "--user", "ava", "-t", "t" * 256], "at most 255 characters"),
    ):
        code, _, err = run(capsys, "memories", *argv, "--db", db)
        assert code == 1 and said in err, (argv, err)
    for argv, said in (
        (["list", "--user", "ava", "--agent", ""], "--agent: must not be empty or blank"),
        (["list", "--user", "ava", "--team", "  "], "--team: must not be empty or blank"),
        (["list", "--user", "  "], "--user: must not be empty or blank"),
        (["search", "fact", "--user", ""], "--user: must not be empty or blank"),
        (["export", "--user", ""], "--user: must not be empty or blank"),
        (["list", "--user", "u" * 256], "--user: must be at most 255 characters"),
        (["list", "--user", "ava", "--limit", "0"], "--limit: must be a positive integer"),
        (["search", "fact", "--user", "ava", "--limit", "0"], "must be a positive integer"),
        (["stats", "--limit", "-1"], "--limit: must be a positive integer"),
    ):
        with pytest.raises(SystemExit) as stopped:
            main(["memories", *argv, "--db", db])
        assert stopped.value.code == 2
        assert said in capsys.readouterr().err, argv
    with pytest.raises(SystemExit):
        main(["sessions", "list", "--limit", "0", "--db", db])
    assert "must be a positive integer" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["memories", "stats"], ["jobs", "list"], ["jobs", "retry", "J1"], ["jobs", "drop", "J1"]],
)
def test_commands_of_every_user_refuse_a_user(capsys, db: str, argv: list[str]) -> None:
    """`memories stats` and the `jobs` commands span every user: a `--user` given to them
    is a usage error, not set aside (stats of every user shown for `--user ava`)."""
    Memory(db=SqliteDb(db)).add_user_memory(UserMemory("a"), user_id="bob")
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--user", "ava", "--db", db])
    assert stopped.value.code == 2
    assert "unrecognized arguments: --user ava" in capsys.readouterr().err
    code, _, err = run(capsys, *argv, "--db", db)
    assert code == (1 if argv[1] in ("retry", "drop") else 0), err


def test_clear_needs_a_target_and_a_yes(capsys, db: str, monkeypatch) -> None:
    memory = Memory(db=SqliteDb(db))
    memory.add_user_memory(UserMemory("a"), user_id="ava")
    memory.add_user_memory(UserMemory("b"), user_id="bob")
    code, _, err = run(capsys, "memories", "clear", "--db", db)
    assert code == 1
    assert "--user" in err
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    code, _, err = run(capsys, "memories", "clear", "--user", "ava", "--db", db)
    assert code == 1
    assert "--yes" in err
    assert memory.count_user_memories(user_id="ava") == 1
    assert run_json(capsys, "memories", "clear", "--user", "ava", "--yes", "--db", db) == {
        "deleted": 1
    }
    assert memory.count_user_memories(user_id="bob") == 1
    assert run_json(capsys, "memories", "clear", "--all", "--yes", "--db", db) == {"deleted": 1}


def test_export_import_round_trip_is_lossless(capsys, db: str, tmp_path: Path) -> None:
    memory = Memory(db=SqliteDb(db))
    memory.add_user_memories(
        [
            UserMemory(
                f"fact {i} — ünïcødé 🎿",
                topics=[f"t{i % 3}"],
                input=f"said {i}",
                agent_id="ag" if i % 2 else None,
                session_id=f"s{i}",
            )
            for i in range(2500)
        ],
        user_id="ava",
    )
    memory.add_user_memory(UserMemory("bob's"), user_id="bob")
    everything = tmp_path / "all.jsonl"
    code, _, err = run(capsys, "memories", "export", "--all", "-o", str(everything), "--db", db)
    assert code == 0
    assert "exported 2501" in err
    code, ava_only, _ = run(capsys, "memories", "export", "--user", "ava", "--db", db)
    assert len(ava_only.splitlines()) == 2500

    fresh = str(tmp_path / "fresh.db")
    code, out, _ = run(capsys, "memories", "import", str(everything), "--db", fresh)
    assert code == 0
    assert "imported 2501" in out
    again = tmp_path / "again.jsonl"
    run(capsys, "memories", "export", "--all", "-o", str(again), "--db", fresh)
    assert sorted(again.read_text().splitlines()) == sorted(everything.read_text().splitlines())


def test_import_of_a_bad_line_names_it_and_imports_nothing(capsys, db: str, tmp_path: Path) -> None:
    good = UserMemory("fine", user_id="ava").to_json()
    for bad, message in [
        ("{not json", "line 3: not valid JSON"),
        ('{"memory": ""}', "line 3: memory must not be empty"),
        ('{"memory": "x", "topics": "solo"}', "line 3: topics must be a list"),
        ('["a list"]', "line 3: a memory must be a JSON object"),
    ]:
        path = tmp_path / "bad.jsonl"
        path.write_text("\n".join([good, good.replace("fine", "also fine"), bad, good]) + "\n")
        code, _, err = run(capsys, "memories", "import", str(path), "--db", db)
        assert code == 1
        assert message in " ".join(err.split()), err
        assert Memory(db=SqliteDb(db)).count_user_memories(user_id="ava") == 0


def test_import_takes_memories_longer_than_the_default_limit_when_told(
    capsys, db: str, tmp_path: Path
) -> None:
    source_db = str(tmp_path / "long.db")
    source = Memory(db=SqliteDb(source_db), embedder=None, max_memory_length=20_000)
    long = "Ava's travel notes: " + "x" * 7_980  # 8,000 characters
    source.add_user_memory(UserMemory(long), user_id="ava")
    path = tmp_path / "long.jsonl"
    assert run(capsys, "memories", "export", "--all", "-o", str(path), "--db", source_db)[0] == 0

    code, _, err = run(capsys, "memories", "import", str(path), "--db", db)
    assert code == 1
    said = " ".join(err.split())
    assert "memory text is 8000 characters; the limit is 5000 (--max-memory-length" in said
    assert Memory(db=SqliteDb(db)).count_user_memories(user_id="ava") == 0

    code, out, err = run(
        capsys, "memories", "import", str(path), "--db", db, "--max-memory-length", "10000"
    )
    assert (code, out.strip(), err) == (0, "imported 1 memory", "")
    [imported] = Memory(db=SqliteDb(db)).get_user_memories(user_id="ava")
    assert imported.memory == long
    with pytest.raises(SystemExit) as ended:
        main(["memories", "import", str(path), "--db", db, "--max-memory-length", "0"])
    assert ended.value.code == 2
    assert "argument --max-memory-length: must be a positive" in capsys.readouterr().err


def test_add_and_edit_store_a_memory_over_the_default_limit_when_told(capsys, db: str) -> None:
    long = "Ava's travel notes: " + "x" * 7_980  # 8,000 characters
    longer = long + " and more"
    added = run_json(capsys, "memories", "add", long, "--db", db, "--max-memory-length", "8000")
    assert isinstance(added, dict) and added["memory"] == long
    edit = ("memories", "edit", added["memory_id"], "--text", longer, "--db", db)
    code, _, err = run(capsys, *edit)
    assert code == 1 and "(--max-memory-length raises it)" in err
    assert run(capsys, *edit, "--max-memory-length", "9000")[0] == 0
    [stored] = Memory(db=SqliteDb(db)).get_user_memories(user_id="default")
    assert stored.memory == longer


def test_import_refuses_ids_of_other_users(capsys, db: str, tmp_path: Path) -> None:
    memory = Memory(db=SqliteDb(db))
    mid = memory.add_user_memory(UserMemory("ava's"), user_id="ava")
    path = tmp_path / "steal.jsonl"
    path.write_text(
        UserMemory("new", user_id="bob").to_json()
        + "\n"
        + UserMemory("stolen", user_id="bob", memory_id=mid).to_json()
        + "\n"
    )
    code, _, err = run(capsys, "memories", "import", str(path), "--db", db)
    assert code == 1
    assert "belongs to another user" in err
    assert memory.count_user_memories(user_id="bob") == 0
    kept = memory.get_user_memory(mid, user_id="ava")
    assert kept is not None
    assert kept.memory == "ava's"


def test_errors_are_clear(capsys, db: str, tmp_path: Path) -> None:
    code, _, err = run(capsys, "memories", "add", "   ", "--db", db)
    assert (code, "memory must not be empty" in err) == (1, True)
    code, _, err = run(capsys, "memories", "list", "--db", str(tmp_path / "nope" / "x.db"))
    assert code == 1
    assert "does not exist" in err
    code, _, err = run(capsys, "memories", "list", "--db", "ftp://x/y")
    assert code == 1
    assert "a database must be a file path" in err
    code, _, err = run(capsys, "memories", "edit", "some-id", "--db", db)
    assert "nothing to change" in err
    code, _, err = run(capsys, "memories", "import", str(tmp_path / "absent.jsonl"), "--db", db)
    assert "cannot read" in err
    for target in (tmp_path / "nope" / "out.jsonl", tmp_path):
        code, _, err = run(capsys, "memories", "export", "-o", str(target), "--db", db)
        assert (code, f"error: cannot write {target}:" in err) == (1, True)
    twice = tmp_path / "twice.jsonl"
    lines = [
        UserMemory(f"The user likes {d}", memory_id="m-tea").to_json() for d in ("tea", "tea.")
    ]
    twice.write_text("\n".join(lines) + "\n")
    code, _, err = run(capsys, "memories", "import", str(twice), "--db", db)
    assert (code, "memory id 'm-tea' is given twice" in err) == (1, True)
    assert Memory(db=SqliteDb(db)).count_user_memories() == 0


def test_counts_out_of_range_are_usage_errors(capsys, db: str) -> None:
    # A limit past 2**63 - 1 crashed noted jobs list with OverflowError; a negative offset
    # or --history passed parsing and failed later in the API's own words.
    too_big = str(2**63)
    for argv in (
        ["jobs", "list", "--limit", too_big],
        ["memories", "list", "--limit", too_big],
        ["memories", "stats", "--limit", too_big],
        ["sessions", "list", "--limit", too_big],
        ["memories", "list", "--offset", "-1"],
        ["memories", "list", "--offset", too_big],
        ["sessions", "list", "--offset", "-1"],
        ["chat", "--history", "-3", "--model", "ollama:x"],
    ):
        with pytest.raises(SystemExit) as ended:
            main([*argv, "--db", db])
        assert ended.value.code == 2, argv
        option = next(a for a in argv if a.startswith("--"))
        assert f"argument {option}: must be" in capsys.readouterr().err, argv
    largest = str(2**63 - 1)
    assert run_json(capsys, "jobs", "list", "--limit", largest, "--db", db) == []
    assert run_json(capsys, "sessions", "list", "--offset", largest, "--db", db) == []


def test_a_database_that_cannot_be_reached_is_one_error_line(capsys) -> None:
    from servers import free_port

    url = f"postgresql://127.0.0.1:{free_port()}/x"  # nothing listens there
    code, out, err = run(capsys, "memories", "list", "--user", "ava", "--db", url)
    assert (code, out) == (1, "")
    [line] = err.splitlines()  # psycopg's message goes on over a second, indented line
    assert line.startswith(f"error: cannot connect to {url}: "), line
    assert "Connection refused Is the server running" in line, line


def test_a_group_without_its_command_is_a_usage_error(capsys) -> None:
    for group in ([], ["memories"], ["sessions"], ["import"], ["jobs"]):
        code, out, _ = run(capsys, *group)
        assert code == 2 and "usage: noted" in out, group


def test_db_defaults_to_env_then_noted_db(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run(capsys, "memories", "add", "here", "--db", "noted.db")
    assert (tmp_path / "noted.db").is_file()
    monkeypatch.setenv("NOTED_DB", str(tmp_path / "env.db"))
    code = main(["memories", "add", "from env"])
    assert code == 0
    assert (tmp_path / "env.db").is_file()


@pytest.mark.parametrize(
    "command",
    [
        ["memories", "reindex"],
        ["memories", "import"],
        ["import", "mem0"],
        ["import", "agno"],
    ],
)
def test_help_of_the_commands_of_every_user_says_so(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """Without --user these act on every user's memories, not on the user 'default'."""
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert "--user USER only this user's memories (default: every user's)" in said


def test_search_with_a_long_query_quotes_only_its_beginning(capsys, db: str) -> None:
    run_json(capsys, "memories", "add", "Ava likes to ski", "--user", "ava", "--db", db)
    query = "ski " * 2500  # 10,000 characters
    code, out, _ = run(capsys, "memories", "search", query, "--user", "ava", "--db", db)
    assert code == 0 and "Ava likes to ski" in out and len(out) < 1000
    said = " ".join(out.split())
    assert f"Memories of user ava matching {'ski ' * 14 + 'ski'!r}… (1)" in said


def test_every_command_has_help() -> None:
    parser = build_parser()
    groups = next(a for a in parser._actions if a.dest == "group")
    memories = groups.choices["memories"]  # type: ignore[index]
    commands = next(a for a in memories._actions if a.dest == "command")
    names = set(commands.choices)  # type: ignore[arg-type]
    assert names == {
        "add",
        "list",
        "search",
        "reindex",
        "show",
        "edit",
        "history",
        "delete",
        "clear",
        "topics",
        "stats",
        "export",
        "import",
    }
    for choice in commands._choices_actions:
        assert choice.help, choice.dest


def test_installed_console_script(db: str) -> None:
    script = Path(sys.executable).with_name("noted")
    done = subprocess.run(
        [str(script), "memories", "add", "from a real process", "--db", db, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout)["memory"] == "from a real process"
    listed = subprocess.run(
        [str(script), "memories", "list", "--db", db], capture_output=True, text=True, check=True
    )
    assert "from a real process" in listed.stdout


@pytest.mark.parametrize("kind", ["postgres", "mongo", "redis"])
def test_the_cli_works_on_a_database_url(capsys, servers, kind: str) -> None:
    from conftest import server_url

    url = server_url(servers, kind)
    if kind == "mongo":
        url += "cli_tests"
    code, out, _ = run(capsys, "memories", "add", "Ava likes to ski", "--user", "ava", "--db", url)
    assert code == 0
    code, out, _ = run(capsys, "memories", "list", "--user", "ava", "--json", "--db", url)
    assert code == 0
    assert [m["memory"] for m in json.loads(out)] == ["Ava likes to ski"]
    code, out, _ = run(capsys, "memories", "clear", "--user", "ava", "--yes", "--db", url)
    assert code == 0


def test_the_session_commands_say_they_span_every_user(capsys) -> None:
    for command in ("list", "show", "delete"):
        with pytest.raises(SystemExit):
            main(["sessions", command, "--help"])
        said = " ".join(capsys.readouterr().out.split())
        assert "--user USER only this user's sessions (default: every user's)" in said, command


def test_the_table_options_name_the_tables_a_store_takes_by_default(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["memories", "list", "--help"])
    said = " ".join(capsys.readouterr().out.split())
    for option, default in DEFAULT_TABLES.items():
        assert f"else {default})" in said, option
    assert SqliteDb(":memory:").memory_table == DEFAULT_TABLES["memory_table"]
    assert SqliteDb(":memory:").session_table == DEFAULT_TABLES["session_table"]


def test_tables_of_other_names(capsys, tmp_path: Path, monkeypatch) -> None:
    """Agno's layout: sessions in agent_sessions, memories in user_memories."""
    path = str(tmp_path / "agent.db")
    store = SqliteDb(path, memory_table="user_memories", session_table="agent_sessions")
    Memory(db=store).add_user_memory(UserMemory("The user likes tea"), user_id="ava")
    Agent(ScriptedModel(["Hi!"]), db=store, user_id="ava", session_id="s1").run("Hello")
    store.close()
    tables = ["--memory-table", "user_memories", "--session-table", "agent_sessions"]
    sessions = run_json(capsys, "sessions", "list", "--db", path, *tables)
    assert [s["session_id"] for s in sessions] == ["s1"]  # type: ignore[index, union-attr]
    assert run_json(capsys, "sessions", "list", "--db", path) == []  # the default tables
    listed = run_json(capsys, "memories", "list", "--user", "ava", "--db", path, *tables)
    assert [m["memory"] for m in listed] == ["The user likes tea"]  # type: ignore[index, union-attr]
    assert "NOTED_SESSION_TABLE" not in os.environ  # set for the command only
    monkeypatch.setenv("NOTED_SESSION_TABLE", "agent_sessions")
    sessions = run_json(capsys, "sessions", "list", "--db", path)
    assert [s["session_id"] for s in sessions] == ["s1"]  # type: ignore[index, union-attr]


def _damage(db: str, memory_ids: list[str], stored: str) -> None:
    """Write ``stored`` as the topics of ``memory_ids`` behind the store's back (a
    hand-edited file)."""
    with sqlite3.connect(db) as connection:
        connection.executemany(
            f"UPDATE {DEFAULT_TABLES['memory_table']} SET topics = ? WHERE memory_id = ?",
            [(stored, memory_id) for memory_id in memory_ids],
        )
    connection.close()


def test_a_memory_with_damaged_topics_is_listed_with_a_note(capsys, db: str) -> None:
    """A row whose topics are not a JSON list of strings (a hand-edited or damaged file)
    made `memories list`, `search` and `show` of its user fail (one error line), so that
    none of the user's other memories could be listed either. They now list it with no
    topics, marked "(damaged)", and a note on standard error says what is wrong and how
    to repair or delete it; `--json` gives its "damaged". An export still refuses it:
    written without its topics, it would be restored as a sound memory."""
    memory = Memory(db=SqliteDb(db))
    kept = memory.add_user_memory(UserMemory("Ava likes tea", topics=["food"]), user_id="ava")
    damaged = memory.add_user_memory(UserMemory("Ava likes to ski"), user_id="ava")
    memory.db.close()
    user = ("--user", "ava", "--db", db)
    for stored, said in (
        ("{bad", "not valid JSON (Expecting property name enclosed in double quotes): '{bad'"),
        ('{"a": 1}', """not a JSON list of strings: '{"a": 1}'"""),
        ("[1]", "not a JSON list of strings: '[1]'"),
    ):
        _damage(db, [damaged], stored)
        note = f"memory {damaged!r} has damaged topics: {said}; {_repair(damaged)}"
        for argv in (["list"], ["search", "likes"], ["show", damaged]):
            code, out, err = run(capsys, "memories", *argv, *user)
            assert code == 0 and "Ava likes to ski" in out, argv
            assert err == f"note: {note}\n", argv
        code, out, _ = run(capsys, "memories", "list", *user)
        assert "(damaged)" in out and "food" in out
        listed = run_json(capsys, "memories", "list", *user)
        assert [(m["memory_id"], m["topics"]) for m in listed] == [(damaged, []), (kept, ["food"])]  # type: ignore[index]
        assert listed[0]["damaged"] == said and "damaged" not in listed[1]  # type: ignore[index, operator]
        code, out, err = run(capsys, "memories", "export", *user)
        assert (code, err) == (1, f"error: {note}\n")
        assert run_json(capsys, "memories", "topics", *user) == ["food"]


def _repair(memory_id: str) -> str:
    """What the command says to do about a memory whose topics are damaged."""
    return (
        f"`noted memories edit {memory_id} --topic TOPIC` (or --no-topics) repairs it, "
        f"`noted memories delete {memory_id}` deletes it"
    )


def test_a_memory_with_damaged_topics_can_be_deleted_or_repaired(capsys, db: str) -> None:
    """`memories delete` deletes a memory whose stored topics are damaged, and records its
    text and no topics; `memories edit` with its topics repairs it, keeping the rest (the
    text unless given, the input); an edit of its text alone is refused, as it would keep
    topics nobody can read."""
    memory = Memory(db=SqliteDb(db))
    kept = memory.add_user_memory(UserMemory("Ava likes tea", topics=["food"]), user_id="ava")
    ids = [
        memory.add_user_memory(UserMemory(f"Ava likes {x}", input=f"I like {x}"), user_id="ava")
        for x in "abc"
    ]
    memory.db.close()
    _damage(db, ids, "[bad")
    first, second, third = ids
    user = ("--user", "ava", "--db", db)
    damaged = f"memory {first!r} has damaged topics: not valid JSON (Expecting value): '[bad'"
    code, out, err = run(capsys, "memories", "edit", first, "--text", "Ava likes skis", *user)
    assert (code, out, err) == (1, "", f"error: {damaged}; {_repair(first)}\n")
    code, out, err = run(capsys, "memories", "edit", first, "-t", "ski", *user)
    assert (code, out, err) == (0, f"updated {first}\n", "")
    shown = run_json(capsys, "memories", "show", first, *user)
    assert (shown["memory"], shown["topics"], shown["input"]) == (
        "Ava likes a",
        ["ski"],
        "I like a",
    )  # type: ignore[index]
    assert "damaged" not in shown  # type: ignore[operator]
    code, out, err = run(capsys, "memories", "edit", third, "--no-topics", *user)
    assert (code, out, err) == (0, f"updated {third}\n", "")  # none, said on purpose: written
    code, out, err = run(capsys, "memories", "delete", second, "missing", *user, "--json")
    assert (code, json.loads(out)) == (1, {"deleted": 1, "not_found": ["missing"]})
    assert err == "error: 1 not found: user 'ava' has no memory with id 'missing'\n"
    listed = run_json(capsys, "memories", "list", *user)
    assert [m["memory_id"] for m in listed] == [third, first, kept]  # type: ignore[index, union-attr]
    assert not any("damaged" in m for m in listed)  # type: ignore[operator, union-attr]
    for memory_id, event, text in (
        (first, "update", "Ava likes a"),
        (second, "delete", "Ava likes b"),
    ):
        history = run_json(capsys, "memories", "history", memory_id, *user)
        last = history[-1]  # type: ignore[index]
        assert (last["event"], last["old_memory"], last["old_topics"]) == (event, text, [])


def test_an_empty_db_is_a_usage_error_and_an_empty_noted_db_is_unset(
    capsys, tmp_path: Path, monkeypatch
) -> None:
    """``--db ''`` (an unset variable in ``--db "$DB"``) silently meant ./noted.db."""
    monkeypatch.chdir(tmp_path)
    for empty in ("", "  "):
        with pytest.raises(SystemExit) as stopped:
            main(["memories", "add", "a fact", "--db", empty])
        assert stopped.value.code == 2
        said = capsys.readouterr().err
        assert f"argument --db: must name a SQLite file or a database URL, got {empty!r}" in said
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("NOTED_DB", "")  # as if unset: the default file
    assert run(capsys, "memories", "add", "a fact")[0] == 0
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".db"] == ["noted.db"]


def test_an_import_file_may_start_with_a_byte_order_mark(
    capsys, db: str, tmp_path: Path, monkeypatch
) -> None:
    """Files saved by Windows editors start with a UTF-8 BOM: it was refused ("Unexpected
    UTF-8 BOM")."""
    line = UserMemory("Ava likes tea", memory_id="m1", user_id="ava").to_json()
    bom = tmp_path / "windows.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + f"{line}\r\n".encode())
    assert run_json(capsys, "memories", "import", str(bom), "--db", db) == {
        "imported": 1,
        "unchanged": 0,
    }
    monkeypatch.setattr("sys.stdin", io.StringIO(f"\ufeff{line}\n"))
    assert run_json(capsys, "memories", "import", "-", "--db", db) == {
        "imported": 0,
        "unchanged": 1,
    }
    assert [m.memory for m in Memory(db=SqliteDb(db)).get_user_memories(user_id="ava")] == [
        "Ava likes tea"
    ]


def test_an_over_long_memory_is_refused_without_the_python_hint(capsys, db: str) -> None:
    """The limit, said to a shell user without "(Memory(max_memory_length=...))", which
    only a Python caller can act on (and still reads)."""
    long = "x" * 5001
    said = (
        "error: memory text is 5001 characters; the limit is 5000 (--max-memory-length raises it)\n"
    )
    assert run(capsys, "memories", "add", long, "--db", db) == (1, "", said)
    added = run_json(capsys, "memories", "add", "short", "--db", db)
    assert isinstance(added, dict)
    edit = ("memories", "edit", added["memory_id"], "--text", long, "--db", db)
    assert run(capsys, *edit) == (1, "", said)
    with pytest.raises(UserError, match=r"limit is 5000 \(Memory\(max_memory_length=\.\.\.\)\)"):
        Memory(db=SqliteDb(db)).add_user_memory(UserMemory(long))


def test_counts_of_one_take_the_singular(capsys, db: str, tmp_path: Path) -> None:
    """It said "exported 1 memories", "imported 1 memories", "(1 events)"."""
    added = run_json(capsys, "memories", "add", "Ava likes tea", "--user", "ava", "--db", db)
    assert isinstance(added, dict)
    file = str(tmp_path / "one.jsonl")
    code, _, err = run(capsys, "memories", "export", "--user", "ava", "-o", file, "--db", db)
    assert (code, err) == (0, f"exported 1 memory to {file}\n")
    other = str(tmp_path / "other.db")
    assert run(capsys, "memories", "import", file, "--db", other) == (0, "imported 1 memory\n", "")
    code, out, _ = run(
        capsys, "memories", "history", added["memory_id"], "--user", "ava", "--db", db
    )
    assert "(1 event)" in " ".join(out.split())


def test_reindex_without_an_embedder_says_reindexing_needs_one(capsys, db: str) -> None:
    """It said "semantic search needs an embedder", for a command that does not search."""
    run_json(capsys, "memories", "add", "Ava likes tea", "--user", "ava", "--db", db)
    code, out, err = run(capsys, "memories", "reindex", "--embedder", "none", "--db", db)
    assert (code, out) == (1, "")
    assert err.startswith(
        "error: reindexing needs an embedder to compute the vectors, and this memory has none: "
    ), err
    assert "--embedder local" in err
    assert "search" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["worker", "--json", "--config", "noted.toml"],
        ["worker", "--user", "ava", "--config", "noted.toml"],
        ["mcp", "--json"],
    ],
)
def test_options_a_command_would_ignore_are_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    # the worker runs every user's jobs and prints no result; the MCP server answers over
    # its transport: --user and --json were taken, and did nothing
    with pytest.raises(SystemExit) as ended:
        main(argv)
    assert ended.value.code == 2
    assert f"unrecognized arguments: {argv[1]}" in capsys.readouterr().err
