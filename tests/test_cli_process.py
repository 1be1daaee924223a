"""The `noted` command as a person meets it: the installed script in its own process, with
its standard streams piped (not a terminal), on real SQLite files."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from noted import Memory, SqliteDb, UserMemory
from noted.cli_files import written_file
from noted.errors import UserError

NOTED = str(Path(sys.executable).with_name("noted"))
# the code under test, for the script run in any directory (a relative PYTHONPATH would
# give way, in another directory, to the checkout the environment was installed from)
SRC = str(Path(__file__).resolve().parents[1] / "src")
FIXTURES = Path(__file__).parent / "fixtures"


def noted(
    *argv: str, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return _run([NOTED, *argv], cwd, script_env(), stdin)


def script_env(dropped: tuple[str, ...] = ("NOTED_DB", "COLUMNS")) -> dict[str, str]:
    """The environment of the script: this one's without ``dropped`` (and without every
    NOTED_ variable for ``("NOTED_",)``), with the code under test first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    return env


def _run(
    command: list[str], cwd: Path | None, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        input=stdin,
        timeout=60,
    )


@pytest.fixture
def two_users(tmp_path: Path) -> str:
    """A store with memories of ava (3) and bob (1), none of the user "default"."""
    db = str(tmp_path / "two.db")
    memory = Memory(db=SqliteDb(db))
    memory.add_user_memories(
        [UserMemory(f"Ava fact {i}: she likes to ski") for i in range(3)], user_id="ava"
    )
    memory.add_user_memory(UserMemory("Bob likes to ski too"), user_id="bob")
    memory.db.close()
    return db


def test_a_closed_pipe_ends_the_command_quietly(two_users: str, tmp_path: Path) -> None:
    memory = Memory(db=SqliteDb(two_users))
    memory.add_user_memories([UserMemory(f"bulk {i}") for i in range(3000)], user_id="ava")
    memory.db.close()
    for argv in (
        ["memories", "export", "--user", "ava"],
        ["memories", "list", "--user", "ava", "--limit", "3000"],
        ["memories", "list", "--user", "ava", "--limit", "3000", "--json"],
    ):
        script = f"{NOTED} {' '.join(argv)} --db {two_users} | head -1"
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", script],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.stdout.count("\n") == 1, argv
        assert "Traceback" not in done.stderr, done.stderr
        assert "BrokenPipe" not in done.stderr, done.stderr
        assert done.stderr.strip() == "", done.stderr


def test_without_user_the_commands_say_whose_memories_they_show(two_users: str) -> None:
    for argv in (["list"], ["list", "--json"], ["search", "ski", "--embedder", "none"]):
        done = noted("memories", *argv, "--db", two_users)
        assert done.returncode == 0, done.stderr
        note = " ".join(done.stderr.split())
        assert "no --user given" in note, argv
        assert "user 'default'" in note, argv
        assert "2 other users have memories (bob, ava)" in note, argv
    assert json.loads(noted("memories", "list", "--json", "--db", two_users).stdout) == []

    done = noted("memories", "export", "--db", two_users)
    assert done.stdout == ""  # nothing of the default user, and the note is not in the data
    assert "user 'default'" in done.stderr
    assert "--all" in done.stderr

    # with --user (or every user), no note
    for argv in (["list", "--user", "ava"], ["list", "--all-users"], ["export", "--all"]):
        done = noted("memories", *argv, "--db", two_users)
        assert done.returncode == 0
        assert "no --user" not in done.stderr, argv

    done = noted("memories", "delete", "no-such-id", "--db", two_users)
    assert done.returncode == 1
    assert "user 'default' has no memory with id 'no-such-id'" in done.stderr
    done = noted("memories", "delete", "no-such-id", "--user", "ava", "--db", two_users)
    assert "user 'ava' has no memory with id 'no-such-id'" in done.stderr


def test_db_paths_get_clear_words(tmp_path: Path) -> None:
    done = noted("memories", "list", "--db", "nope/deeper/x.db", cwd=tmp_path)
    assert done.returncode == 1
    assert "create_dirs" not in done.stderr
    assert "directory nope/deeper does not exist" in done.stderr
    assert "mkdir -p nope/deeper" in done.stderr
    assert not (tmp_path / "nope").exists()

    done = noted("memories", "add", "x", "--db", "./scratchdir/", cwd=tmp_path)
    assert done.returncode == 1
    assert "names a directory" in done.stderr
    assert "scratchdir/noted.db" in done.stderr
    assert not (tmp_path / "scratchdir").exists()

    (tmp_path / "adir").mkdir()
    done = noted("memories", "list", "--db", "adir", cwd=tmp_path)
    assert done.returncode == 1
    assert "unable to open" not in done.stderr
    assert "adir is a directory" in done.stderr
    assert "adir/noted.db" in done.stderr
    assert list((tmp_path / "adir").iterdir()) == []

    done = noted("memories", "list", "--db", "sqlite:///adir", cwd=tmp_path)
    assert "adir is a directory" in done.stderr
    # a file in an existing directory still works, and serve's --db too is checked
    assert noted("memories", "add", "x", "--db", "adir/ok.db", cwd=tmp_path).returncode == 0
    done = noted("serve", "--db", "nope/x.db", "--port", "1", cwd=tmp_path)
    assert done.returncode == 1
    assert "directory nope does not exist" in done.stderr


def test_error_lines_are_whole_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    long_id = "an-id-long-enough-to-be-cut-at-eighty-columns-" + "x" * 60
    done = noted("memories", "show", long_id, "--user", "ava", "--db", str(tmp_path / "x.db"))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0] == f"error: user 'ava' has no memory with id {long_id!r}"


def test_import_with_user_imports_only_that_users_memories(two_users: str, tmp_path: Path) -> None:
    everyone = tmp_path / "everyone.jsonl"
    assert (
        noted("memories", "export", "--all", "-o", str(everyone), "--db", two_users).returncode == 0
    )
    no_owner = json.dumps({"memory": "a memory without a user"})
    with everyone.open("a") as f:
        f.write(no_owner + "\n")
    fresh = str(tmp_path / "fresh.db")
    done = noted("memories", "import", str(everyone), "--user", "ava", "--db", fresh)
    assert done.returncode == 0, done.stderr
    assert "imported 4 memories of user 'ava'" in done.stdout
    assert "skipped 1 memory of other users" in done.stdout
    memory = Memory(db=SqliteDb(fresh))
    assert memory.count_user_memories(user_id="ava") == 4
    assert memory.count_user_memories(user_id="bob") == 0
    assert [s.user_id for s in memory.get_user_stats()] == ["ava"]
    done = noted(
        "memories",
        "import",
        "-",
        "--user",
        "bob",
        "--json",
        "--db",
        fresh,
        stdin=everyone.read_text(),
    )
    assert json.loads(done.stdout) == {"imported": 2, "unchanged": 0, "skipped": 3}
    # again: what is stored as it is is not written again (the memory without an id is new)
    done = noted("memories", "import", str(everyone), "--user", "ava", "--json", "--db", fresh)
    assert json.loads(done.stdout) == {"imported": 1, "unchanged": 3, "skipped": 1}
    for m in memory.get_user_memories(user_id="ava"):
        assert m.memory_id is not None
        history = memory.get_memory_history(m.memory_id, user_id="ava")
        assert [e.event for e in history] == ["add"]


def test_no_progress_bar_is_drawn_into_a_file(two_users: str, tmp_path: Path) -> None:
    # Standard error is a pipe here: the bar of an import, an Agno import and a reindex
    # would only be noise in a log.
    exported = tmp_path / "all.jsonl"
    assert (
        noted("memories", "export", "--all", "-o", str(exported), "--db", two_users).returncode == 0
    )
    agno = tmp_path / "agno.db"
    shutil.copy(FIXTURES / "agno" / "agno-1.7.12.db", agno)
    fresh = str(tmp_path / "fresh.db")
    for argv in (
        ("memories", "import", str(exported)),
        ("import", "agno", str(agno)),
        ("memories", "reindex", "--embedder", "local"),
    ):
        done = noted(*argv, "--db", fresh)
        assert done.returncode == 0, done.stderr
        assert done.stderr == "", argv
    # the Agno file keeps its memories in user_memories, found by its columns
    assert "read 3 memories" in noted("import", "agno", str(agno), "--db", fresh).stdout


def test_serve_help_lists_only_what_serve_uses() -> None:
    done = noted("serve", "--help")
    assert done.returncode == 0
    assert "--db" in done.stdout
    assert "--user" not in done.stdout
    assert "--json" not in done.stdout


def test_python_dash_m_noted(tmp_path: Path) -> None:
    db = str(tmp_path / "m.db")
    done = subprocess.run(
        [sys.executable, "-m", "noted", "memories", "add", "via -m", "--db", db, "--json"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["memory"] == "via -m"
    done = subprocess.run(
        [sys.executable, "-m", "noted", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "usage: noted" in done.stdout


def test_search_shows_each_match_as_a_share_of_the_best(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    memory = Memory(db=SqliteDb(db))
    for text in ("The user likes to ski", "The user lives in Seattle", "The user skis and skis"):
        memory.add_user_memory(UserMemory(text), user_id="ava")
    memory.db.close()
    search = ["memories", "search", "ski", "--user", "ava", "--method", "keyword"]
    done = noted(*search, "--embedder", "none", "--db", db)
    assert done.returncode == 0, done.stderr
    # no raw BM25 score such as 2e-06 (a memory's id may hold "1e-04": ids left out)
    assert "e-0" not in re.sub(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "", done.stdout)
    assert "100%" in done.stdout
    assert "match: each result's score as a share of the best one's" in done.stdout
    raw = json.loads(noted(*search, "--embedder", "none", "--json", "--db", db).stdout)
    reopened = Memory(db=SqliteDb(db), embedder=None)
    api = reopened.search_user_memories("ski", user_id="ava", retrieval_method="keyword")
    reopened.db.close()
    # JSON keeps the API's raw scores, not the shares the table shows
    assert {m["memory_id"]: m["score"] for m in raw} == {m.memory_id: m.score for m in api}
    assert len(api) == 2 and max(m.score for m in api) != 1.0


def test_a_memory_that_looks_like_markup_is_shown_as_written(tmp_path: Path) -> None:
    db = str(tmp_path / "m.db")
    text = "[/] closes nothing, [bold]is not bold[/bold]"
    added = noted("memories", "add", text, "-t", "[red]", "--user", "ava", "--db", db, "--json")
    mid = json.loads(added.stdout)["memory_id"]
    for argv in (
        ["list"],
        ["search", "closes", "--method", "keyword", "--embedder", "none"],
        ["show", mid],
    ):
        done = noted("memories", *argv, "--user", "ava", "--db", db)
        assert done.returncode == 0, done.stderr
        assert text in done.stdout
        assert "[red]" in done.stdout


def _without(packages: list[str], argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``noted argv`` in a process where importing ``packages`` fails, as it does where
    their extra is not installed."""
    code = (
        "import sys\n"
        f"for name in {packages!r}: sys.modules[name] = None\n"
        "from noted.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    env = script_env(("NOTED_",))
    env["NOTED_TOKEN_SECRET"] = "a-secret-of-at-least-thirty-two-bytes!!"
    return _run([sys.executable, "-c", code], cwd, env)


def test_tokens_and_workers_need_no_web_framework(tmp_path: Path) -> None:
    token = _without(["fastapi", "uvicorn"], ["token", "ava", "--db", "t.db"], tmp_path)
    assert token.returncode == 0, token.stderr
    assert token.stdout.count(".") >= 2  # a JWT
    (tmp_path / "noted.toml").write_text('[server]\ndb = "w.db"\n')
    worker = _without(["fastapi", "uvicorn"], ["worker", "--config", "noted.toml"], tmp_path)
    assert worker.returncode == 1
    assert (
        worker.stderr.strip() == "error: noted.toml has no [agent]: a worker runs that agent's jobs"
    )


@pytest.mark.parametrize(
    ("packages", "argv", "extra"),
    [
        (["mcp"], ["serve", "--mcp", "--workers", "2"], "mcp"),
        (["mcp"], ["serve", "--mcp"], "mcp"),
        (["mcp"], ["mcp"], "mcp"),
        (["fastapi"], ["serve"], "server"),
        (["jwt"], ["token", "ava"], "server"),
    ],
)
def test_a_missing_extra_is_named_before_anything_starts(
    tmp_path: Path, packages: list[str], argv: list[str], extra: str
) -> None:
    done = _without(packages, [*argv, "--db", "t.db"], tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""  # no banner of a server that is not going to serve
    [line] = done.stderr.strip().splitlines()  # one line, no traceback
    assert line.endswith(f"pip install 'noted[{extra}]'"), line
    assert "None" not in line, line


def test_version() -> None:
    done = noted("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"noted {metadata.version('noted')}"


def test_noted_serve_prints_its_database_without_the_password(tmp_path: Path) -> None:
    from servers import free_port

    url = f"postgresql://postgres:S3cr3tPW@127.0.0.1:{free_port()}/x?password=Other5ecret"
    env = script_env(("NOTED_",))
    command = [NOTED, "serve", "--db", url, "--port", str(free_port()), "--embedder", "none"]
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path
    )
    try:
        assert server.stdout is not None
        said = [server.stdout.readline() for _ in range(2)]
    finally:
        server.terminate()
        server.wait(20)
        assert server.stdout is not None
        server.stdout.close()
    banner = "".join(said)
    assert "noted serving postgresql://postgres:***@127.0.0.1:" in banner, banner
    assert "S3cr3tPW" not in banner and "Other5ecret" not in banner


def test_ctrl_c_ends_a_command_with_status_130_and_one_line(tmp_path: Path) -> None:
    db = str(tmp_path / "big.db")
    memory = Memory(db=SqliteDb(db), embedder=None)
    memory.add_user_memories([UserMemory(f"bulk fact {i}") for i in range(20_000)], user_id="ava")
    memory.db.close()
    env = script_env()
    # Its output is a pipe read once: the export is then under way, blocked on the pipe
    # with megabytes to go, when Ctrl-C (SIGINT) comes.
    command = [NOTED, "memories", "export", "--user", "ava", "--db", db]
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    ) as process:
        assert process.stdout is not None
        first = process.stdout.read(4096)
        process.send_signal(signal.SIGINT)
        rest, error = process.communicate(timeout=60)
    assert process.returncode == 130
    assert error.decode() == "interrupted\n"
    assert first.startswith(b'{"memory":"bulk fact 0"')
    assert (first + rest).count(b"\n") < 20_000


def test_an_export_stopped_half_way_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "memories.jsonl"
    target.write_text("an earlier export\n")
    target.chmod(0o640)

    def half_written(stop: BaseException) -> None:
        with written_file(str(target)) as stream:
            stream.write('{"memory":"half"}\n')
            raise stop

    for stop in (KeyboardInterrupt(), OSError(errno.ENOSPC, "No space left on device")):
        with pytest.raises((KeyboardInterrupt, UserError)) as raised:
            half_written(stop)
        if isinstance(stop, OSError):
            assert str(raised.value) == f"cannot write {target}: No space left on device"
        assert target.read_text() == "an earlier export\n"
        assert [p.name for p in tmp_path.iterdir()] == ["memories.jsonl"]  # no temporary
    with written_file(str(target)) as stream:
        stream.write('{"memory":"whole"}\n')
    assert target.read_text() == '{"memory":"whole"}\n'
    assert target.stat().st_mode & 0o777 == 0o640  # the file's own permissions
    fresh = tmp_path / "fresh.jsonl"
    with written_file(str(fresh)) as stream:
        stream.write("x\n")
    umask = os.umask(0o022)
    os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would make it


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_under_an_export_is_one_error_line(two_users: str) -> None:
    done = noted("memories", "export", "--all", "-o", "/dev/full", "--db", two_users)
    assert (done.returncode, done.stderr) == (
        1,
        "error: cannot write /dev/full: No space left on device\n",
    )
    script = f"{NOTED} memories export --all --db {two_users} > /dev/full"
    done = subprocess.run(["bash", "-c", script], check=False, capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (
        1,
        "error: cannot write to standard output: No space left on device\n",
    )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_under_any_command_is_one_error_line(two_users: str) -> None:
    """Every command, not only an export, says it cannot write its standard output: it
    was an OSError traceback (from a write, or from the flush at the end)."""
    memory_id = Memory(db=SqliteDb(two_users)).get_user_memories(user_id="bob")[0].memory_id
    for argv in (
        "memories list --user ava",
        "memories list --user ava --json",
        f"memories show {memory_id} --user bob",
        "memories search ski --user ava --embedder none",
        f"memories history {memory_id} --user bob",
        "memories add fresh --user carl",
        "sessions list",
        "jobs list --json",
    ):
        script = f"{NOTED} {argv} --db {two_users} > /dev/full"
        env = script_env()
        done = subprocess.run(
            ["bash", "-c", script], check=False, capture_output=True, text=True, env=env
        )
        assert (done.returncode, done.stderr) == (
            1,
            "error: cannot write to standard output: No space left on device\n",
        ), argv


def test_a_db_name_that_is_not_utf8_is_refused_in_one_line(tmp_path: Path) -> None:
    # A file name of other bytes reaches Python as lone surrogates, which SQLite and the
    # drivers cannot take: it was a UnicodeEncodeError traceback.
    env = script_env()
    here = os.fsencode(tmp_path)
    for db, said in (
        (here + b"/caf\xe9.db", f"error: cannot use {tmp_path}/caf?.db as the database: its"),
        (b"postgresql://u:secret@h\xff/x", "error: cannot use the --db URL: it is not valid UTF-8"),
    ):
        done = subprocess.run(
            [os.fsencode(NOTED), b"memories", b"list", b"--user", b"ava", b"--db", db],
            check=False,
            capture_output=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 1
        assert done.stderr.decode().startswith(said), done.stderr
        assert done.stderr.count(b"\n") == 1
        assert b"secret" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_search_for_text_that_is_not_utf8_is_refused(two_users: str) -> None:
    """A query of other bytes reaches Python as lone surrogates: it matched nothing, with
    status 0, where the same bytes in a memory are refused."""
    for method in (b"keyword", b"hybrid"):
        argv = [b"search", b"caf\xe9", b"--user", b"ava", b"--method", method]
        done = subprocess.run(
            [os.fsencode(NOTED), b"memories", *argv, b"--db", os.fsencode(two_users)],
            check=False,
            capture_output=True,
            env=script_env(),
            timeout=60,
        )
        assert (done.returncode, done.stdout, done.stderr.decode()) == (
            1,
            b"",
            "error: query must be valid Unicode text: surrogates not allowed at 3\n",
        ), method
    with pytest.raises(UserError, match="query must be valid Unicode text"):
        Memory(db=SqliteDb(two_users)).search_user_memories("caf\udce9", user_id="ava")


def test_ctrl_c_stops_a_reindex_with_a_line_and_keeps_what_it_embedded(tmp_path: Path) -> None:
    """No traceback: a line saying how many memories got their vectors (each batch's are
    stored as it is done), the process ending by SIGINT; a second run embeds the rest."""
    import signal
    import time

    import noted as package
    from noted.retrieval.registry import get_embedder

    db = str(tmp_path / "many.db")
    with SqliteDb(db) as store:
        Memory(store, embedder=None).add_user_memories(
            [UserMemory(f"The user wrote note {i} about the garden") for i in range(3000)],
            user_id="ava",
        )
    env = {k: v for k, v in os.environ.items() if k not in ("NOTED_DB", "NOTED_EMBEDDER")}
    env["PYTHONPATH"] = str(Path(package.__file__).resolve().parents[1])
    child = subprocess.Popen(
        [NOTED, "memories", "reindex", "--db", db],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    )
    model = get_embedder("local").model_name
    with SqliteDb(db) as store:
        deadline = time.monotonic() + 60
        while not store.count_memories_to_embed("ava", model) < 3000:
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, (out, err)
    assert "Traceback" not in err
    said = re.search(r"embedded (\d+) memories of every user before the interrupt", err)
    assert said is not None, err
    assert "interrupted" in err.splitlines()[-1]
    with SqliteDb(db) as store:
        left = store.count_memories_to_embed("ava", model)
    assert 0 < left <= 3000 - int(said[1])
    again = noted("memories", "reindex", "--db", db, "--embedder", "local", "--json")
    assert json.loads(again.stdout)["embedded"] == left


def test_a_damaged_memory_is_told_of_once_on_standard_error(tmp_path: Path) -> None:
    """`memories list`, `search` and `show` say of a memory with damaged topics what is
    wrong and how to repair it; the store's own log line saying the same is held back
    (it was printed too, the memory named twice), except under --json, where it is the
    only word of it on standard error."""
    db = str(tmp_path / "noted.db")
    memory = Memory(db=SqliteDb(db))
    damaged = memory.add_user_memory(UserMemory("Ava likes to ski"), user_id="ava")
    memory.db.close()
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE noted_memories SET topics = '{bad'")
    connection.close()
    user = ("--user", "ava", "--db", db)
    for argv in (["list"], ["search", "ski", "--method", "keyword"], ["show", damaged]):
        done = noted("memories", *argv, *user)
        assert done.returncode == 0 and "Ava likes to ski" in done.stdout, argv
        assert done.stderr.count(damaged) == 3, done.stderr  # the note: its id, edit, delete
        assert done.stderr.startswith("note: memory") and "read with none" not in done.stderr
        told = noted("memories", *argv, *user, "--json")
        assert told.returncode == 0 and json.loads(told.stdout), argv
        assert "has damaged topics" in told.stderr and "read with none" in told.stderr
