"""The `noted` command's tables on terminals of any width from 40 columns up, and in a pipe:
every id whole on one line, every memory's text whole (wrapped), nothing cut with "…"."""

from __future__ import annotations

import json
import os
import pty
import re
import struct
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fcntl import ioctl
from pathlib import Path
from termios import TIOCSWINSZ

import pytest
from rich.cells import cell_len

from noted import Agent, Memory, SqliteDb, UserMemory
from noted._console import out
from noted.agent.jobs import job_worker
from noted.cli import main
from noted.errors import ModelError
from noted.models.types import Message, ToolDefinition
from noted.sessions import SessionSummary
from noted.testing import FunctionModel
from test_cli_process import NOTED, script_env

WIDTHS = (40, 60, 80, 120)
SESSION = "ava-ski-trip-to-the-alps-2026"
LONG_USER = "carol.the-beekeeper@example.com.au"  # too wide for "user: " at 40
DOWN = "the model is down: the provider answered 503 Service Unavailable three times"


@dataclass(frozen=True)
class Store:
    """A SQLite file with memories of three users, a memory an agent's run wrote (so its
    history names a session and a run), an edited memory, and a job that failed once."""

    path: str
    memories: dict[str, tuple[str, str]]  # memory id -> (user, text)
    edited: str  # the id of a memory changed after it was added
    learned: str  # the id of the memory the agent's run wrote
    run_id: str
    job_id: str
    sessions: list[str]


def _manager(messages: list[Message]) -> bool:
    return (messages[0].content or "").startswith("You maintain the long-term memory")


def remembering() -> FunctionModel:
    """As the memory manager, adds "User said: <message>"; as the agent, "Noted."."""

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        if _manager(messages):
            prompt = messages[-1].content or ""
            chat = prompt.split("<conversation>")[1].split("</conversation>")[0]
            said = chat.strip().splitlines()[0].removeprefix("user: ").strip('"')
            op = {"op": "add", "id": None, "memory": f"User said: {said}", "topics": ["music"]}
            return json.dumps({"operations": [op]})
        return "Noted."

    return FunctionModel(fn)


def failing() -> FunctionModel:
    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        if _manager(messages):
            raise ModelError(DOWN)
        return "Noted."

    return FunctionModel(fn)


def _fill(db: SqliteDb) -> tuple[str, str]:
    """The agent's runs: one that writes a memory of ava's, one whose job fails; the
    run's id and the failed job's."""
    agent = Agent(
        remembering(), db=db, user_id="ava", session_id=SESSION, enable_user_memories=True
    )
    run = agent.run("I am learning to play the cello with a teacher from Vienna")
    assert agent.wait_for_memories(timeout=10)
    other = Agent(failing(), db=db, user_id="bob", enable_user_memories=True)
    worker = job_worker(other)
    assert worker is not None
    worker.max_attempts = 2  # kept, waiting for its retry, with its error
    other.run("I moved to Lyon")
    assert other.wait_for_memories(timeout=10)
    (job,) = db.list_jobs()
    assert job.error == DOWN
    return run.run_id, job.job_id


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    path = str(tmp_path_factory.mktemp("widths") / "widths.db")
    with SqliteDb(path) as db:
        run_id, job_id = _fill(db)
        memory = Memory(db=db, embedder=None)
        texts = {
            "ava": [
                "Ava likes to ski in the Alps every winter with her two brothers and their dog",
                "Ava is allergic to peanuts",
                "Ava's notes are at https://example.com/a/rather/long/address/of/her/notes.html",
            ],
            "bob": ["Bob works as a nurse at the night shift of a big hospital in Lyon"],
            LONG_USER: ["Carol keeps bees"],
        }
        topics = ["hobbies", "family", "a-topic-written-as-one-long-word"]
        for user, said in texts.items():
            memory.add_user_memories([UserMemory(t, topics=topics) for t in said], user_id=user)
        memories = {
            m.memory_id or "": (m.user_id or "", m.memory)
            for user in (*texts, "ava")
            for m in memory.get_user_memories(user)
        }
        edited = next(i for i, (user, text) in memories.items() if "peanuts" in text)
        changed = "Ava is allergic to peanuts and to the pollen of birch trees in spring"
        memory.edit_user_memory(edited, "ava", memory=changed)
        memories[edited] = ("ava", changed)
        learned = next(i for i, (user, text) in memories.items() if "cello" in text)
        sessions = [s.session_id for s in db.list_sessions(None)]
    assert SESSION in sessions and len(sessions) == 2
    return Store(path, memories, edited, learned, run_id, job_id, sessions)


def printed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, width: int, *argv: str
) -> str:
    """What a command prints on a terminal ``width`` columns wide."""
    monkeypatch.setattr(out, "width", width)
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def in_order(words: Sequence[str], tokens: Sequence[str]) -> bool:
    """Whether ``words`` are among ``tokens`` in their order (a table's other columns may
    come between them, where a cell wraps)."""
    left = iter(tokens)
    return all(any(token == word for token in left) for word in words)


def check_whole(shown: str, width: int, ids: Sequence[str], texts: Sequence[str]) -> None:
    """Every id whole on a line, every text whole and in order, nothing cut, no line wider
    than the terminal."""
    assert "…" not in shown, shown
    lines = shown.splitlines()
    assert all(cell_len(line.rstrip()) <= width for line in lines), shown
    tokens = shown.split()
    for i in ids:
        assert i in tokens, f"{i} not whole at {width} columns:\n{shown}"
    for text in texts:
        words = [w for w in text.split() if len(w) <= width - 2]  # a longer one is folded
        assert in_order(words, tokens), f"{text!r} not whole at {width} columns:\n{shown}"


def _texts(store: Store, user: str | None = None) -> tuple[list[str], list[str]]:
    mine = {i: t for i, (u, t) in store.memories.items() if user is None or u == user}
    return list(mine), list(mine.values())


@pytest.mark.parametrize("width", WIDTHS)
def test_memories_list_and_search_show_whole_ids_and_texts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, store: Store, width: int
) -> None:
    db = ("--db", store.path)
    ids, texts = _texts(store, "ava")
    shown = printed(capsys, monkeypatch, width, "memories", "list", "--user", "ava", *db)
    check_whole(shown, width, ids, texts)
    assert "hobbies" in shown and "a-topic-written-as-one-long-word" in shown

    ids, texts = _texts(store)
    shown = printed(capsys, monkeypatch, width, "memories", "list", "--all-users", *db)
    check_whole(shown, width, [*ids, LONG_USER], texts)

    search = ("memories", "search", "Ava", "--user", "ava", "--method", "keyword")
    search += ("--embedder", "none", *db)
    listed = json.loads(printed(capsys, monkeypatch, width, *search, "--json"))
    found = [m["memory_id"] for m in listed]
    assert len(found) >= 2
    shown = printed(capsys, monkeypatch, width, *search)
    check_whole(shown, width, found, [store.memories[i][1] for i in found])
    assert "100%" in shown
    assert in_order(["match:", "each", "result's", "score", "as", "a", "share"], shown.split())


@pytest.mark.parametrize("width", WIDTHS)
def test_memories_history_and_show_keep_ids_and_texts_whole(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, store: Store, width: int
) -> None:
    db = ("--db", store.path, "--user", "ava")
    shown = printed(capsys, monkeypatch, width, "memories", "history", store.edited, *db)
    old, new = "Ava is allergic to peanuts", store.memories[store.edited][1]
    check_whole(shown, width, [store.edited], [f"{old} -> {new}"])
    assert shown.split().count("update") == 1

    shown = printed(capsys, monkeypatch, width, "memories", "history", store.learned, *db)
    check_whole(shown, width, [SESSION, store.run_id], [store.memories[store.learned][1]])

    for memory_id, (_user, text) in store.memories.items():
        if _user == "ava":
            shown = printed(capsys, monkeypatch, width, "memories", "show", memory_id, *db)
            check_whole(shown, width, [memory_id], [text])


@pytest.mark.parametrize("width", WIDTHS)
def test_stats_sessions_and_jobs_keep_their_ids_whole(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, store: Store, width: int
) -> None:
    db = ("--db", store.path)
    shown = printed(capsys, monkeypatch, width, "memories", "stats", *db)
    check_whole(shown, width, ["ava", "bob", LONG_USER], [])

    shown = printed(capsys, monkeypatch, width, "sessions", "list", *db)
    check_whole(shown, width, [*store.sessions, "ava", "bob"], [])

    shown = printed(capsys, monkeypatch, width, "jobs", "list", *db)
    check_whole(shown, width, [store.job_id, "bob"], [DOWN])


@pytest.mark.parametrize("width", WIDTHS)
def test_sessions_show_prints_the_summary_topics_and_run_count(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    width: int,
) -> None:
    """`noted sessions show` printed a summary's text only: not its topics, nor how many
    of the session's runs it covers."""
    path = str(tmp_path / "summary.db")
    text = "Ava plans a ski trip to the Alps in February with her two brothers and their dog"
    topics = ["travel", "skiing", "a-topic-written-as-one-long-word"]
    with SqliteDb(path) as db:
        agent = Agent(
            FunctionModel(lambda m, t: "Noted."), db=db, user_id="ava", session_id=SESSION
        )
        runs = [agent.run(said).run_id for said in ("I ski.", "In the Alps.", "In February.")]
        summary = SessionSummary(text, topics, 2, datetime(2026, 3, 1, 12, 0, tzinfo=UTC), runs[1])
        assert db.set_session_summary(SESSION, "ava", summary)
    shown = printed(capsys, monkeypatch, width, "sessions", "show", SESSION, "--db", path)
    check_whole(shown, width, [SESSION, *runs], [text, ", ".join(topics)])
    tokens = shown.split()
    assert in_order(["topics:", "travel,", "skiing,"], tokens), shown
    covers = ["covers", "2", "completed", "run(s),", "updated", "2026-03-01", "12:00:00", "UTC"]
    assert in_order(covers, tokens), shown
    assert in_order(["3", "run(s),"], tokens), shown  # the session's own count


def test_a_wide_terminal_keeps_the_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, store: Store
) -> None:
    """Where the ids, the times and a readable text column fit, it is a table as before:
    one header line naming the columns."""
    shown = printed(
        capsys, monkeypatch, 160, "memories", "list", "--user", "ava", "--db", store.path
    )
    assert re.search(r"^\s+id\s+memory\s+topics\s+updated \(UTC\)\s*$", shown, re.M), shown
    ids, texts = _texts(store, "ava")
    check_whole(shown, 160, ids, texts)


def terminal(width: int, argv: Sequence[str]) -> str:
    """What ``noted argv`` writes on a terminal (a pseudo-terminal) ``width`` columns wide."""
    leader, follower = pty.openpty()
    ioctl(follower, TIOCSWINSZ, struct.pack("HHHH", 50, width, 0, 0))
    env = {**script_env(), "TERM": "xterm", "NO_COLOR": "1"}
    child = subprocess.Popen(
        [NOTED, *argv], stdin=follower, stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    written = b"".join(_read(leader))
    os.close(leader)
    assert child.wait(timeout=60) == 0, written
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", written.decode().replace("\r\n", "\n"))


def _read(fd: int) -> Iterator[bytes]:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            return
        if not chunk:
            return
        yield chunk


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal")
@pytest.mark.parametrize("width", [40, 60])
def test_a_narrow_terminal_shows_whole_ids_and_texts(store: Store, width: int) -> None:
    shown = terminal(width, ["memories", "list", "--all-users", "--db", store.path])
    ids, texts = _texts(store)
    check_whole(shown, width, ids, texts)


def test_piped_output_cuts_nothing(store: Store, tmp_path: Path) -> None:
    """A pipe is 200 columns wide: a user id or a topic too long for a table's column
    beside the others is shown whole too."""
    path = str(tmp_path / "long.db")
    long_user = "user-" + "x" * 70
    topic = "a-topic-name-that-is-written-as-one-long-word-by-an-importer"
    text = " ".join(f"word{i}" for i in range(60))
    memory = Memory(db=SqliteDb(path))
    memory_id = memory.add_user_memory(UserMemory(text, topics=[topic]), user_id=long_user)
    memory.db.close()
    done = subprocess.run(
        [NOTED, "memories", "list", "--all-users", "--db", path],
        capture_output=True,
        text=True,
        env=script_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    check_whole(done.stdout, 200, [memory_id, long_user, topic], [text])


def test_piped_output_has_no_spaces_at_line_ends_and_takes_columns(store: Store) -> None:
    """In a file or a pipe every line of a table ended in spaces (its padding, the right
    of its last column: 200 columns' worth on a title line), and $COLUMNS was not heard.
    Now no line ends in a space, and $COLUMNS, when set, is the width laid out for."""
    memory_id = store.edited
    commands = [
        ["memories", "list", "--all-users"],
        ["memories", "show", memory_id, "--user", "ava"],
        ["memories", "history", memory_id, "--user", "ava"],
        ["memories", "search", "peanuts", "--user", "ava", "--embedder", "none"],
        ["memories", "stats"],
        ["sessions", "list"],
        ["jobs", "list"],
    ]
    ids, texts = _texts(store)
    for columns in (None, 60):
        env = script_env() | ({} if columns is None else {"COLUMNS": str(columns)})
        for argv in commands:
            done = subprocess.run(
                [NOTED, *argv, "--db", store.path],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            lines = done.stdout.splitlines()
            assert len(lines) > 2, done.stdout
            ending = [line for line in lines if line != line.rstrip()]
            assert not ending, f"{argv} at {columns}: {ending}"
            widest = max(cell_len(line) for line in lines)
            assert widest <= (columns or 200), f"{argv} at {columns}:\n{done.stdout}"
            if argv[:2] == ["memories", "list"]:
                check_whole(done.stdout, columns or 200, ids, texts)
                assert (widest > 100) == (columns is None)  # a table, or a block each


def test_sessions_show_prints_the_newest_runs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`noted sessions show` printed every run of a session, however many."""
    path = str(tmp_path / "long.db")
    with SqliteDb(path) as db:
        agent = Agent(FunctionModel(lambda m, t: "Noted."), db=db, user_id="ava", session_id="s")
        runs = [agent.run(f"Message {i}").run_id for i in range(55)]
    shown = printed(capsys, monkeypatch, 120, "sessions", "show", "s", "--db", path)
    assert [r for r in runs if r in shown] == runs[5:]
    assert "5 older run(s) not shown: --offset 50" in shown
    shown = printed(
        capsys, monkeypatch, 120, "sessions", "show", "s", "--db", path, "--offset", "50"
    )
    assert [r for r in runs if r in shown] == runs[:5]
    assert "older run(s)" not in shown
    shown = printed(capsys, monkeypatch, 120, "sessions", "show", "s", "--db", path, "--all")
    assert [r for r in runs if r in shown] == runs
    listed = json.loads(
        printed(
            capsys,
            monkeypatch,
            120,
            "sessions",
            "show",
            "s",
            "--db",
            path,
            "--limit",
            "3",
            "--json",
        )
    )
    assert [r["run_id"] for r in listed["runs"]] == runs[-3:]
    assert listed["run_count"] == 55
