"""The seeds' code examples, written for Agno, run on noted.agno as scripts.

The examples are read at run time from ``../shared/seeds/examples/`` next to the project,
or next to the repository a clone was made from (``NOTED_SEEDS`` names another folder). Each is run in its own process and working
directory with only its import lines rewritten (``from agno.X import Y`` ->
``from noted.agno import Y``), its database URLs pointed at the test PostgreSQL server, the
hosted models replaced by the offline rule-based test model (tests/run_seed.py), the names a
fragment uses without defining them defined before it, and for the fragments that print
nothing a few lines after it that print what they did.
"""

from __future__ import annotations

import difflib
import itertools
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from conftest import REQUIRE_SERVERS, server_url
from servers import Server
from test_tracing_phoenix import wait_for_spans

ROOT = Path(__file__).resolve().parents[1]


def _seeds_folder() -> Path:
    """``NOTED_SEEDS``; else ``../shared/seeds/examples`` beside the project or, for a
    clone of a repository on this machine, beside the repository it was cloned from."""
    named = os.environ.get("NOTED_SEEDS")
    if named:
        return Path(named)
    beside = ROOT.parent / "shared" / "seeds" / "examples"
    if beside.is_dir():
        return beside
    found = subprocess.run(
        ["git", "-C", str(ROOT), "config", "--get", "remote.origin.url"],
        capture_output=True,
        text=True,
        check=False,
    )
    origin = found.stdout.strip()
    if origin and "://" not in origin and ":" not in origin.split("/")[0]:  # a path
        source = (ROOT / origin).resolve()  # an absolute origin stays as it is
        cloned_from = source.parent / "shared" / "seeds" / "examples"
        if cloned_from.is_dir():
            return cloned_from
    return beside


SEEDS = _seeds_folder()
RUNNER = Path(__file__).parent / "run_seed.py"
SRC = str(ROOT / "src")

_IMPORT = re.compile(r"^(\s*)from agno(?:\.[\w.]+)? import (.+)$", re.MULTILINE)
_PG_URL = re.compile(r"postgresql(\+\w+)?://[^\"'\s]+")
_databases = itertools.count(1)


def rewrite(source: str, postgres_url: str | None = None) -> str:
    """The example with its Agno imports on noted.agno and its PostgreSQL URLs (keeping a
    ``+driver`` suffix) on ``postgres_url``; every other line as it was."""
    code = _IMPORT.sub(r"\1from noted.agno import \2", source)
    if postgres_url is not None:
        tail = postgres_url.removeprefix("postgresql")
        code = _PG_URL.sub(lambda m: "postgresql" + (m.group(1) or "") + tail, code)
    return code


@dataclass(frozen=True)
class Seed:
    before: str = ""  # defines what a fragment uses without defining it
    after: str = ""  # prints what a fragment that prints nothing did
    stdin: str = ""
    postgres: bool = False


_JANE = 'user_id="jane_doe@example.com"'
SEEDS_RUN: dict[str, Seed] = {
    "001_1_agentic_memory.py": Seed(),
    "001_2_create_memories_after_each_run.py": Seed(),
    "001_3_memory_with_storage.py": Seed(
        after="from noted.agno import UserMemory\n"
        'memory.add_user_memory(UserMemory(memory="The user likes tea"), user_id="u")\n'
        'print("stored:", [m.memory for m in Memory(db=memory_db).get_user_memories("u")])\n'
    ),
    "001_4_add_memory.py": Seed(
        after=f"m = memory.get_user_memory(memory_id, {_JANE})\n"
        'print("added:", m.memory, m.topics, m.memory_id == memory_id)\n'
    ),
    "001_5_update_memory.py": Seed(
        before='previous_memory_id = "jane-name"\n',
        after=f"m = memory.get_user_memory(previous_memory_id, {_JANE})\n"
        'print("replaced:", memory_id, m.memory, m.topics)\n',
    ),
    "001_6_delete_memory.py": Seed(
        before="from noted.agno import Memory as _Memory, UserMemory as _UserMemory\n"
        "memory_id = _Memory().add_user_memory(\n"
        f'    _UserMemory(memory="The user\'s name is Jane Doe"), {_JANE}\n'
        ")\n",
        after=f'print("left:", memory.get_user_memories({_JANE}))\n',
    ),
    "001_7_create_memories_from_message.py": Seed(),
    "001_8_create_memories_from_messages.py": Seed(),
    "001_9_search_last_n_first_n.py": Seed(),
    "001_10_agentic_search.py": Seed(),
    "002_1_setting_up_storage.py": Seed(),
    "002_2_sqlite_memory.py": Seed(),
    "002_3_postgres_memory.py": Seed(postgres=True),
    "002_4_agent_storage.py": Seed(
        after='agent.run("My name is Ava and I like to ski.", user_id="ava")\n'
        'print("memories:", sorted(m.memory for m in memory.get_user_memories(user_id="ava")))\n'
        "from noted import SqliteDb\n"
        'sessions = SqliteDb("tmp/agent_storage.db", session_table="agent_sessions")\n'
        'print("sessions:", [s.run_count for s in sessions.list_sessions(user_id="ava")])\n'
    ),
    "002_5_memory_management_fragment.py": Seed(
        before="from noted.agno import Memory, SqliteMemoryDb, UserMemory\n"
        'memory = Memory(db=SqliteMemoryDb(table_name="memories", db_file="tmp/memory.db"))\n'
        "memory.add_user_memory(\n"
        '    UserMemory(memory="The user likes tea", memory_id="memory_123"),\n'
        '    user_id="user@example.com",\n'
        ")\n"
        'memory.add_user_memory(UserMemory(memory="Someone else"), user_id="other")\n',
        after='print("left:", memory.get_user_memories(user_id="user@example.com"), '
        'memory.get_user_memories(user_id="other"))\n',
    ),
    "003_1_lesson_11_memory.py": Seed(
        stdin="My name is Ava and I like to ski.\nWhat do you know about me?\nexit\n",
        postgres=True,
    ),
    "004_1_memory_example.py": Seed(),
}


@pytest.fixture(scope="module")
def seeds() -> Path:
    if not SEEDS.is_dir():
        message = f"the seeds' examples are not at {SEEDS} (set NOTED_SEEDS to their folder)"
        if REQUIRE_SERVERS:
            pytest.fail(message)
        pytest.skip(message)
    return SEEDS


@pytest.fixture
def fresh_database(servers: dict[str, Server | str]) -> Iterator[Callable[[], str]]:
    """Makes an empty PostgreSQL database on the test server and returns its URL."""
    made: list[str] = []

    def make() -> str:
        import psycopg

        url = server_url(servers, "postgres")
        name = f"seeds_{os.getpid()}_{next(_databases)}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} OWNER postgres")
        made.append(name)
        return url.rsplit("/", 1)[0] + "/" + name

    yield make
    import psycopg

    with psycopg.connect(server_url(servers, "postgres"), autocommit=True) as conn:
        for name in made:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run_seed(
    seeds: Path,
    name: str,
    workdir: Path,
    postgres_url: str | None,
    extra_env: dict[str, str] | None = None,
) -> str:
    seed = SEEDS_RUN[name]
    source = (seeds / name).read_text()
    code = rewrite(source, postgres_url)
    changed = [
        line
        for line in difflib.ndiff(source.splitlines(), code.splitlines())
        if line.startswith(("- ", "+ "))
    ]
    assert all("import" in line or "postgresql" in line for line in changed), (
        f"only import lines and database URLs may change: {changed}"
    )
    script = workdir / name
    script.write_text(seed.before + code.rstrip("\n") + "\n" + seed.after)
    env = {**os.environ, "PYTHONPATH": SRC, "NO_COLOR": "1", "COLUMNS": "100", **(extra_env or {})}
    for key in ("OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY", "ANTHROPIC_API_KEY"):
        env.pop(key, None)
    # every warning is an error, but the deprecations Phoenix's own dependencies raise
    warnings = ["-W", "error::Warning", "-W", "ignore::DeprecationWarning"]
    if not entry_points(group="openinference_instrumentor"):
        # without an installed instrumentor, Phoenix's auto_instrument=True only says so
        warnings += ["-W", "ignore:No OpenInference instrumentors found:UserWarning"]
    done = subprocess.run(
        [sys.executable, *warnings, str(RUNNER), str(script)],
        cwd=workdir,
        check=False,
        input=seed.stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + "\n--stderr--\n" + done.stderr


def test_every_example_is_run(seeds: Path) -> None:
    assert sorted(p.name for p in seeds.glob("*.py")) == sorted(SEEDS_RUN)


def test_rewrite_touches_only_the_imports_and_urls() -> None:
    source = (
        "from agno.memory.v2.memory import Memory, UserMemory\n"
        "from agno.agent import Agent\n"
        "from agno.memory.v2 import Memory\n"
        "from rich.pretty import pprint\n"
        'db = PostgresDb(db_url="postgresql+psycopg://ai:ai@localhost:5532/ai")\n'
        "x = 'from agno.agent import Agent'\n"
    )
    assert rewrite(source, "postgresql://postgres@127.0.0.1:5/t") == (
        "from noted.agno import Memory, UserMemory\n"
        "from noted.agno import Agent\n"
        "from noted.agno import Memory\n"
        "from rich.pretty import pprint\n"
        'db = PostgresDb(db_url="postgresql+psycopg://postgres@127.0.0.1:5/t")\n'
        "x = 'from agno.agent import Agent'\n"
    )


def _out(
    seeds: Path,
    name: str,
    tmp_path: Path,
    url: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> str:
    return run_seed(seeds, name, tmp_path, url, extra_env)


def test_004_prints_what_agno_printed(seeds: Path, tmp_path: Path) -> None:
    out = _out(seeds, "004_1_memory_example.py", tmp_path)
    printed, _, errors = out.partition("\n--stderr--\n")
    expected = (seeds / "004_1_memory_example.agno-1.7.12-output.txt").read_text()
    assert printed.splitlines() == expected.splitlines()
    assert errors == ""
    assert (tmp_path / "my_agent_memory.db").is_file()


def test_001_1_agentic_memories_are_listed_after_each_run(seeds: Path, tmp_path: Path) -> None:
    out = _out(seeds, "001_1_agentic_memory.py", tmp_path)
    first, second = out.split("Memories about Ava:")[1:]
    first, answer = first.split("\n]\n", 1)  # the listing, then the next answer
    assert "User's name is Ava" in first and "User likes to ski" in first
    assert "San Francisco" not in first
    assert "User lives in San Francisco" in second
    assert "From San Francisco, Lake Tahoe" in answer  # it used the remembered home
    assert (tmp_path / "tmp" / "agent.db").is_file()


def test_001_2_memories_after_each_run_and_removed(seeds: Path, tmp_path: Path) -> None:
    out = _out(seeds, "001_2_create_memories_after_each_run.py", tmp_path)
    listed, removed = out.split("Memories about John Doe:")[1:]
    assert "User's name is John Doe" in listed
    assert "User likes to hike in the mountains on weekends" in listed
    assert "hike" in out.split("Memories about John Doe:")[0]  # "What are my hobbies?"
    assert removed.split("--stderr--")[0].strip() == "[]"


def test_001_memory_api_fragments(seeds: Path, tmp_path: Path) -> None:
    for name in ("001_3", "001_4", "001_5", "001_6"):
        (tmp_path / name).mkdir()
    out = _out(seeds, "001_3_memory_with_storage.py", tmp_path / "001_3")
    assert "stored: ['The user likes tea']" in out
    assert (tmp_path / "001_3" / "memory.db").is_file()
    out = _out(seeds, "001_4_add_memory.py", tmp_path / "001_4")
    assert "added: The user's name is Jane Doe ['personal', 'name'] True" in out
    out = _out(seeds, "001_5_update_memory.py", tmp_path / "001_5")
    assert "replaced: jane-name The user's name is Verna Doe ['personal', 'name']" in out
    out = _out(seeds, "001_6_delete_memory.py", tmp_path / "001_6")
    assert "left: []" in out


def test_001_memories_from_messages(seeds: Path, tmp_path: Path) -> None:
    out = _out(seeds, "001_7_create_memories_from_message.py", tmp_path)
    listing = out.split("John Doe's memories:")[1].split("--stderr--")[0].strip().splitlines()
    assert len(listing) >= 6
    assert any(
        "User enjoys hiking in the mountains on weekends - ['hobbies']" in line for line in listing
    )
    assert any("User enjoys playing chess with friends" in line for line in listing)
    assert any("photography" in line for line in listing)
    out = _out(seeds, "001_8_create_memories_from_messages.py", tmp_path)
    listing = out.split("Jane Doe's memories:")[1].split("--stderr--")[0].strip().splitlines()
    assert sorted(listing) == [
        "0: User's name is Jane Doe - ['name']",
        "1: User likes to play chess - ['hobbies']",
    ] or sorted(line[3:] for line in listing) == [
        "User likes to play chess - ['hobbies']",
        "User's name is Jane Doe - ['name']",
    ]


def test_001_searches(seeds: Path, tmp_path: Path) -> None:
    out = _out(seeds, "001_9_search_last_n_first_n.py", tmp_path)
    assert (
        "John Doe's last_n memories:\n"
        "0: The user enjoys reading science fiction novels before bed\n"
        "John Doe's first_n memories:\n"
        "0: The user enjoys hiking in the mountains on weekends\n"
    ) in out
    out = _out(seeds, "001_10_agentic_search.py", tmp_path)
    assert out.startswith(
        "John Doe's found memories:\n0: The user enjoys hiking in the mountains on weekends\n"
        "\n--stderr--"
    )


def test_002_storage(seeds: Path, tmp_path: Path) -> None:
    out = _out(seeds, "002_1_setting_up_storage.py", tmp_path)
    assert (tmp_path / "path" / "to").is_dir()  # folders made, as Agno makes them
    out = _out(seeds, "002_2_sqlite_memory.py", tmp_path)
    lines = out.splitlines()
    assert lines[:2] == [
        "Memory: The user prefers dark mode in applications",
        "Topics: ['preferences', 'ui']",
    ]
    assert re.fullmatch(r"Last Updated: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+\+00:00", lines[2])
    out = _out(seeds, "002_4_agent_storage.py", tmp_path)
    assert "memories: ['User likes to ski', \"User's name is Ava\"]" in out
    assert "sessions: [1]" in out
    out = _out(seeds, "002_5_memory_management_fragment.py", tmp_path)
    assert "left: [] []" in out  # clear() with no user clears every user, as in Agno


def test_002_3_postgres_memory(
    seeds: Path, tmp_path: Path, fresh_database: Callable[[], str]
) -> None:
    out = _out(seeds, "002_3_postgres_memory.py", tmp_path, fresh_database())
    assert out.startswith("User has 1 memories stored\n")


@pytest.mark.phoenix
def test_003_agno2_agent_on_postgres_with_tracing(
    seeds: Path,
    tmp_path: Path,
    fresh_database: Callable[[], str],
    servers: dict[str, Server | str],
) -> None:
    url = fresh_database()
    phoenix = server_url(servers, "phoenix")
    server = servers["phoenix"]
    assert isinstance(server, Server)
    # register(batch=True) exports over gRPC to the collector's host at PHOENIX_GRPC_PORT
    collector = {
        "PHOENIX_COLLECTOR_ENDPOINT": "http://127.0.0.1",
        "PHOENIX_GRPC_PORT": str(server.grpc_port),
    }
    out = _out(seeds, "003_1_lesson_11_memory.py", tmp_path, url, collector)
    printed, _, errors = out.partition("\n--stderr--\n")
    assert "Here is what I remember:" in printed
    assert "User likes to ski" in printed and "User's name is Ava" in printed
    assert "Phoenix Project: 11-memory" in printed  # register(verbose=True) said so
    # the chat's banner (with its session id) is all it writes to stderr from a pipe
    assert re.fullmatch(r"Chatting with \S+ \(session [0-9a-f-]{36}\)\.\n", errors), errors
    # register(auto_instrument=True) found noted's instrumentor: each turn is in Phoenix
    spans = wait_for_spans(
        phoenix, "11-memory", lambda found: sum(s["span_kind"] == "AGENT" for s in found) >= 2
    )
    runs = [s for s in spans if s["span_kind"] == "AGENT"]
    assert len(runs) == 2
    assert {s["attributes"]["user.id"] for s in runs} == {"demo-user"}
    assert any(s["name"] == "memory extraction" for s in spans)
    from noted.db.postgres import PostgresDb

    with PostgresDb(url) as db:  # the agent's memories and session, in noted's tables
        from noted.db.base import MemoryQuery

        stored = sorted(m.memory for m in db.list_memories(MemoryQuery(user_id="demo-user")))
        assert stored == ["User likes to ski", "User's name is Ava"]
        sessions = db.list_sessions(user_id="demo-user")
        assert [s.run_count for s in sessions] == [2]
