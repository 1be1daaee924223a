"""``noted mcp`` over stdio, through the MCP SDK's own client: one real server process for
the module, its tools called one by one and the SQLite file checked after each."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apsw
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS

from mcp_client import Connected, Loop, module_db, stdio
from noted import Memory, MemoryQuery, SqliteDb, UserMemory
from noted.mcp.stdio import _Incoming

NOTED = str(Path(sys.executable).parent / "noted")
USER = "ava"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteDb]:
    yield from module_db(tmp_path_factory.mktemp("mcp"))


@pytest.fixture(scope="module")
def db_file(db: SqliteDb) -> Path:
    return Path(db.db_file)


@pytest.fixture(scope="module")
def client(db_file: Path, db: SqliteDb) -> Iterator[Connected]:
    loop = Loop()
    env = {"NOTED_DB": str(db_file)}  # --db wins over it: checked by the store below
    connected = Connected(loop, stdio(NOTED, "mcp", "--db", str(db_file), "--user", USER, env=env))
    yield connected
    connected.close()
    loop.close()


def stored(db: SqliteDb, user: str | None = USER) -> list[UserMemory]:
    return db.list_memories(MemoryQuery(user_id=user, sort_by="created_at", sort_order="asc"))


def snapshot(db: SqliteDb) -> list[tuple[dict[str, Any], list[str]]]:
    """Every user's memories with their history: what a refused call must leave as it was."""
    return [
        (
            m.to_dict(),
            [e.event_id for e in db.get_memory_history(m.memory_id or "", m.user_id or "")],
        )
        for m in stored(db, None)
    ]


def test_the_tools_resources_and_prompts_are_listed(client: Connected) -> None:
    tools = client.loop.run(client.session.list_tools()).tools
    assert [t.name for t in tools] == [
        "add_memory",
        "search_memories",
        "list_memories",
        "get_memory",
        "update_memory",
        "delete_memory",
        "list_topics",
    ]
    for tool in tools:
        assert tool.description and len(tool.description) > 30
        assert tool.input_schema["additionalProperties"] is False
        assert "user_id" not in tool.input_schema["properties"]  # the user is --user
    add = next(t for t in tools if t.name == "add_memory")
    assert add.input_schema["required"] == ["memory"]
    assert add.annotations is not None and add.annotations.read_only_hint is False
    resources = client.loop.run(client.session.list_resources()).resources
    assert [r.uri for r in resources] == ["noted://profile"]
    prompts = client.loop.run(client.session.list_prompts()).prompts
    assert [p.name for p in prompts] == ["profile"]


def test_add_writes_through_the_memory_api_as_mcp(client: Connected, db: SqliteDb) -> None:
    added = client.ok("add_memory", {"memory": "The user likes to ski", "topics": ["hobbies"]})
    assert added["memory"] == "The user likes to ski"
    assert added["topics"] == ["hobbies"]
    assert added["created_at"] == added["updated_at"]
    [memory] = [m for m in stored(db) if m.memory_id == added["id"]]
    assert (memory.user_id, memory.memory, memory.topics) == (
        USER,
        "The user likes to ski",
        ["hobbies"],
    )
    assert memory.updated_at is not None and memory.updated_at.isoformat() == added["updated_at"]
    [event] = db.get_memory_history(added["id"], USER)
    assert (event.event, event.actor, event.new_memory) == ("add", "mcp", "The user likes to ski")


def test_search_by_keyword_meaning_and_both(client: Connected) -> None:
    for text, topics in [
        ("The user's sister Mia lives in Lyon", ["family"]),
        ("The user drinks green tea every morning", ["food"]),
        ("The user works as a nurse in Berlin", ["work"]),
    ]:
        client.ok("add_memory", {"memory": text, "topics": topics})
    keyword = client.ok("search_memories", {"query": "green tea", "method": "keyword"})
    assert keyword["memories"][0]["memory"] == "The user drinks green tea every morning"
    assert {"id", "memory", "topics", "created_at", "updated_at", "score"} <= set(
        keyword["memories"][0]
    )
    semantic = client.ok(
        "search_memories", {"query": "What does she do for a living?", "method": "semantic"}
    )
    assert semantic["memories"][0]["memory"] == "The user works as a nurse in Berlin"
    hybrid = client.ok("search_memories", {"query": "where does her sibling live", "limit": 1})
    assert [m["memory"] for m in hybrid["memories"]] == ["The user's sister Mia lives in Lyon"]
    only_food = client.ok("search_memories", {"query": "morning tea lyon", "topics": ["food"]})
    assert [m["topics"] for m in only_food["memories"]] == [["food"]]


def test_list_recent_get_and_topics(client: Connected, db: SqliteDb) -> None:
    newest = client.ok(
        "add_memory", {"memory": "The user is learning Italian", "topics": ["study"]}
    )
    recent = client.ok("list_memories", {"limit": 2})["memories"]
    assert len(recent) == 2 and recent[0]["id"] == newest["id"]
    assert [m["topics"] for m in client.ok("list_memories", {"topics": ["study"]})["memories"]] == [
        ["study"]
    ]
    assert client.ok("get_memory", {"id": newest["id"]}) == newest
    assert client.ok("list_topics")["topics"] == db.get_topics(USER)
    assert "study" in client.ok("list_topics")["topics"]


def test_update_changes_text_or_topics_and_keeps_the_rest(client: Connected, db: SqliteDb) -> None:
    mid = client.ok("add_memory", {"memory": "The user lives in Paris", "topics": ["home"]})["id"]
    moved = client.ok("update_memory", {"id": mid, "memory": "The user lives in Rome"})
    assert (moved["memory"], moved["topics"]) == ("The user lives in Rome", ["home"])
    relabelled = client.ok("update_memory", {"id": mid, "topics": ["home", "travel"]})
    assert (relabelled["memory"], relabelled["topics"]) == (
        "The user lives in Rome",
        ["home", "travel"],
    )
    memory = db.get_memory(mid, USER)
    assert memory is not None and memory.memory == "The user lives in Rome"
    assert memory.topics == ["home", "travel"]
    history = db.get_memory_history(mid, USER)
    assert [(e.event, e.actor) for e in history] == [
        ("add", "mcp"),
        ("update", "mcp"),
        ("update", "mcp"),
    ]
    assert history[1].old_memory == "The user lives in Paris"
    # restating them writes nothing, as the REST API's PATCH and `noted memories edit`
    same = client.ok("update_memory", {"id": mid, "memory": "The user lives in Rome"})
    assert same == client.ok("get_memory", {"id": mid}) == relabelled
    assert len(db.get_memory_history(mid, USER)) == 3


def test_timestamps_are_written_to_the_microsecond_as_the_rest_api_writes_them(
    client: Connected, db: SqliteDb
) -> None:
    whole = datetime(2020, 1, 1, tzinfo=UTC)  # no microseconds, which isoformat() drops
    born = UserMemory(
        "The user was born in Oslo",
        memory_id="born",
        user_id=USER,
        created_at=whole,
        updated_at=whole,
    )
    Memory(db=db).import_user_memories([born])
    shown = client.ok("get_memory", {"id": "born"})
    assert shown["created_at"] == shown["updated_at"] == "2020-01-01T00:00:00.000000+00:00"
    stored = db.get_memory("born", USER)
    assert stored is not None and shown["created_at"] == stored.to_dict()["created_at"]


def test_delete_removes_the_memory_and_keeps_its_history(client: Connected, db: SqliteDb) -> None:
    mid = client.ok("add_memory", {"memory": "The user owns a red bicycle"})["id"]
    assert client.ok("delete_memory", {"id": mid}) == {"deleted": mid}
    assert db.get_memory(mid, USER) is None
    assert [(e.event, e.actor) for e in db.get_memory_history(mid, USER)] == [
        ("add", "mcp"),
        ("delete", "mcp"),
    ]
    assert "no memory with id" in client.error("get_memory", {"id": mid})


def test_another_users_memories_are_out_of_reach(client: Connected, db: SqliteDb) -> None:
    other = Memory(db=db)
    bob = other.add_user_memory(UserMemory("Bob's secret: he fears spiders", topics=["bob"]), "bob")
    before = snapshot(db)
    for name, arguments in [
        ("get_memory", {"id": bob}),
        ("update_memory", {"id": bob, "memory": "changed"}),
        ("delete_memory", {"id": bob}),
    ]:
        assert f"no memory with id {bob!r}" in client.error(name, arguments)
    assert "unknown argument(s) user_id" in client.error("list_memories", {"user_id": "bob"})
    assert "unknown argument(s) user_id" in client.error(
        "add_memory", {"memory": "x", "user_id": "bob"}
    )
    found = client.ok("search_memories", {"query": "secret spiders fears"})["memories"]
    assert all("Bob" not in m["memory"] for m in found)
    assert "bob" not in client.ok("list_topics")["topics"]
    assert snapshot(db) == before


LONG = "x" * 5001


@pytest.mark.parametrize(
    ("name", "arguments", "says"),
    [
        ("get_memory", {"id": "no-such-id"}, "no memory with id 'no-such-id'"),
        ("update_memory", {"id": "no-such-id", "memory": "x"}, "no memory with id 'no-such-id'"),
        ("delete_memory", {"id": "no-such-id"}, "no memory with id 'no-such-id'"),
        ("add_memory", {"memory": ""}, "memory must not be empty"),
        ("add_memory", {"memory": "   "}, "memory must not be empty"),
        ("add_memory", {}, "the argument 'memory' is required"),
        ("add_memory", {"memory": LONG}, "memory text is 5001 characters; the limit is 5000"),
        ("update_memory", {"id": "{first}", "memory": LONG}, "the limit is 5000"),
        ("update_memory", {"id": "{first}"}, "give the new memory text, the new topics, or both"),
        ("update_memory", {"id": "{first}", "memory": ""}, "memory must not be empty"),
        ("add_memory", {"memory": 42}, "memory must be a string, got int"),
        (
            "add_memory",
            {"memory": "x", "topics": "food"},
            "topics must be a list of strings, got str",
        ),
        ("add_memory", {"memory": "x", "topics": [1]}, "each of topics must be a string, got int"),
        (
            "search_memories",
            {"query": "x", "limit": "ten"},
            "limit must be a whole number from 1 to 100",
        ),
        (
            "search_memories",
            {"query": "x", "limit": 0},
            "limit must be a whole number from 1 to 100",
        ),
        ("list_memories", {"limit": 1000}, "limit must be a whole number from 1 to 100"),
        ("list_memories", {"limit": True}, "limit must be a whole number from 1 to 100"),
        (
            "search_memories",
            {"query": "x", "method": "fuzzy"},
            "method must be one of hybrid, semantic, keyword",
        ),
        ("search_memories", {"query": ""}, "query must not be empty"),
        ("search_memories", {"query": "x" * 1001}, "query must be at most 1000 characters"),
        (
            "add_memory",
            {"memory": "x", "topics": [f"t{n}" for n in range(51)]},
            "topics may hold at most 50, got 51",
        ),
        (
            "update_memory",
            {"id": "{first}", "topics": ["t"] * 51},
            "topics may hold at most 50, got 51",
        ),
        ("search_memories", {"query": ["x"]}, "query must be a string, got list"),
        ("get_memory", {"id": 7}, "id must be a string, got int"),
        ("get_memory", {"memory_id": "x"}, "unknown argument(s) memory_id; it takes id"),
        ("no_such_tool", {}, "unknown tool 'no_such_tool'"),
    ],
)
def test_bad_arguments_are_tool_errors_that_change_nothing(
    client: Connected, db: SqliteDb, name: str, arguments: dict[str, Any], says: str
) -> None:
    first = (
        stored(db)[0].memory_id if stored(db) else client.ok("add_memory", {"memory": "seed"})["id"]
    )
    arguments = {k: first if v == "{first}" else v for k, v in arguments.items()}
    before = snapshot(db)
    assert says in client.error(name, arguments)
    assert snapshot(db) == before
    assert client.ok("list_topics")  # and the server keeps serving


@pytest.mark.parametrize(
    ("name", "arguments", "said"),
    [
        # the Memory API's limit, without its hint at Memory(max_memory_length=...)
        ("add_memory", {"memory": LONG}, "memory text is 5001 characters; the limit is 5000"),
        (
            "update_memory",
            {"id": "{first}", "memory": LONG},
            "memory text is 5001 characters; the limit is 5000",
        ),
        ("add_memory", {"memory": "a\x00b"}, "memory must not contain NUL characters"),
        ("update_memory", {"id": "{first}", "memory": "\x00"}, "memory must not contain NUL"),
        # a search refuses NUL as the writes do (it answered [])
        ("search_memories", {"query": "\x00"}, "query must not contain NUL characters"),
        ("search_memories", {"query": "tea\x00"}, "query must not contain NUL characters"),
        ("get_memory", {"id": "a\x00"}, "id must not contain NUL characters"),
        # the tool's argument, not the Python API's memory_id
        ("get_memory", {"id": "x" * 256}, "id must be at most 255 characters, got 256"),
        ("update_memory", {"id": "x" * 300, "memory": "m"}, "id must be at most 255 characters"),
        ("delete_memory", {"id": "x" * 256}, "id must be at most 255 characters, got 256"),
        (
            "get_memory",
            {"id": "no-such-id"},
            "there is no memory with id 'no-such-id'; search or list the memories for its id",
        ),
        # the limit as it was sent, not its 300 digits
        (
            "list_memories",
            {"limit": 1e300},
            "limit must be a whole number from 1 to 100, got 1e+300",
        ),
        (
            "search_memories",
            {"query": "x", "limit": 10**300},
            "limit must be a whole number from 1 to 100, got a number of 301 digits",
        ),
    ],
)
def test_a_tool_error_names_the_tool_and_not_the_python_api(
    client: Connected, db: SqliteDb, name: str, arguments: dict[str, Any], said: str
) -> None:
    first = (
        stored(db)[0].memory_id if stored(db) else client.ok("add_memory", {"memory": "seed"})["id"]
    )
    arguments = {k: first if v == "{first}" else v for k, v in arguments.items()}
    before = snapshot(db)
    message = client.error(name, arguments)
    assert message.startswith(f"{name}: {said}"), message
    assert len(message) < 200
    assert snapshot(db) == before


def test_a_user_id_with_whitespace_around_it_takes_no_new_memories(tmp_path: Path) -> None:
    # `noted mcp --user " ava"` stored memories for a second user beside "ava"; what such
    # an id holds (imported before) is still listed, changed and deleted
    db_file = tmp_path / "spaced.db"
    Memory(SqliteDb(db_file)).import_user_memories(
        [UserMemory("Likes tea", memory_id="tea", user_id=" ava")]
    )
    loop = Loop()
    connected = Connected(loop, stdio(NOTED, "mcp", "--db", str(db_file), "--user", " ava"))
    try:
        said = connected.error("add_memory", {"memory": "Likes jazz"})
        assert "user_id must not begin or end with whitespace, got ' ava'" in said, said
        assert [m["memory"] for m in connected.ok("list_memories")["memories"]] == ["Likes tea"]
        connected.ok("update_memory", {"id": "tea", "memory": "Likes green tea"})
        connected.ok("delete_memory", {"id": "tea"})
    finally:
        connected.close()
        loop.close()
    assert Memory(SqliteDb(db_file)).get_user_stats() == []


def test_the_profile_resource_and_prompt(client: Connected, db: SqliteDb) -> None:
    client.ok("add_memory", {"memory": "The user's name is Ava", "topics": ["identity"]})
    read = client.loop.run(client.session.read_resource("noted://profile"))
    text = read.contents[0].text  # type: ignore[union-attr]
    assert "- The user's name is Ava [identity]" in text
    assert all(m.memory in text for m in stored(db))
    assert "Bob" not in text
    prompt = client.loop.run(client.session.get_prompt("profile"))
    assert prompt.messages[0].content.text == text  # type: ignore[union-attr]


def test_a_failing_store_is_the_profiles_internal_error_not_a_bad_request(tmp_path: Path) -> None:
    """A store that cannot answer (here a file that is no database) is JSON-RPC's internal
    error (-32603), saying why; it was -32602, invalid params, as if the client had asked
    wrongly. An unknown resource or prompt still is a bad request."""
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 500)
    loop = Loop()
    command = ["mcp", "--db", str(junk), "--user", USER, "--embedder", "none"]
    connected = Connected(loop, stdio(NOTED, *command))
    session = connected.session
    try:
        # the profile: the store's fault (internal); another name: the caller's (params)
        for name, code in (("profile", INTERNAL_ERROR), ("other", INVALID_PARAMS)):
            reads = (session.read_resource, session.get_prompt)
            for read, asked in zip(reads, (f"noted://{name}", name), strict=True):
                with pytest.raises(MCPError) as failed:
                    loop.run(read(asked))
                assert failed.value.code == code, (name, failed.value)
                if code == INTERNAL_ERROR:
                    assert "not a SQLite database" in failed.value.message
    finally:
        connected.close()
        loop.close()
    assert junk.read_bytes() == b"this is not a database" * 500


def test_the_config_file_names_the_store_and_the_user(tmp_path: Path) -> None:
    configured = tmp_path / "configured.db"
    config = tmp_path / "noted.toml"
    config.write_text(f'[server]\ndb = "{configured}"\nuser = "carol"\nembedder = "none"\n')
    loop = Loop()
    client = Connected(loop, stdio(NOTED, "mcp", "--config", str(config)))
    try:
        mid = client.ok("add_memory", {"memory": "Carol keeps bees"})["id"]
        semantic = {"query": "insects", "method": "semantic"}  # the file says embedder none
        assert "semantic search needs an embedder" in client.error("search_memories", semantic)
    finally:
        client.close()
        loop.close()
    with contextlib.closing(SqliteDb(db_file=str(configured))) as store:
        memory = store.get_memory(mid, "carol")
        assert memory is not None and memory.memory == "Carol keeps bees"
        assert [e.actor for e in store.get_memory_history(mid, "carol")] == ["mcp"]


@pytest.mark.parametrize("named", ["--db", "NOTED_DB", "neither"])
def test_db_and_noted_db_win_over_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, named: str
) -> None:
    # Even when they name the default file, noted.db.
    from noted.cli import build_parser, resolve_db
    from noted.cli_mcp import _configured
    from noted.db.urls import open_store

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NOTED_DB", raising=False)
    (tmp_path / "noted.toml").write_text('[server]\ndb = "configured.db"\nembedder = "none"\n')
    argv = ["mcp", "--config", "noted.toml"]
    if named == "--db":
        argv += ["--db", "noted.db"]
    elif named == "NOTED_DB":
        monkeypatch.setenv("NOTED_DB", "noted.db")
    args = build_parser().parse_args(argv)
    resolve_db(args)
    served, user, _ = _configured(Memory(open_store(args.db), embedder=None), args)
    try:
        served.add_user_memory(UserMemory("Carol keeps bees"), user_id=user)
    finally:
        served.db.close()
    expected = "configured.db" if named == "neither" else "noted.db"
    with contextlib.closing(SqliteDb(db_file=str(tmp_path / expected))) as store:
        assert [m.memory for m in store.list_memories(MemoryQuery(user_id=user))] == [
            "Carol keeps bees"
        ]


def _written_without_vectors(file: Path) -> None:
    """More memories than a named embedder embeds in one search (an import, `noted memories
    add`): none has a vector yet, and the one about skiing shares no word with the query."""
    from noted.memory.index import EMBED_ON_SEARCH

    memories = [
        UserMemory(f"The user bought notebook number {n}", memory_id=f"n{n}", user_id=USER)
        for n in range(EMBED_ON_SEARCH)
    ]
    memories.append(UserMemory("The user goes skiing in the Alps", memory_id="ski", user_id=USER))
    with contextlib.closing(SqliteDb(db_file=str(file))) as store:
        Memory(store, embedder=None).import_user_memories(memories)


SNOW = {"query": "winter holidays on snowy slopes", "method": "semantic", "limit": 1}


def test_a_search_embeds_every_memory_still_without_a_vector(tmp_path: Path) -> None:
    """As `noted serve` and the `noted` command do with the default embedder: a search
    misses no memory for want of a vector, however many were written without one."""
    file = tmp_path / "imported.db"
    _written_without_vectors(file)
    loop = Loop()
    client = Connected(loop, stdio(NOTED, "mcp", "--db", str(file), "--user", USER))
    try:
        found = client.ok("search_memories", SNOW)["memories"]
    finally:
        client.close()
        loop.close()
    assert [m["id"] for m in found] == ["ski"]


def test_create_server_keeps_how_the_memory_embeds(tmp_path: Path) -> None:
    """``create_server(memory=...)`` (``noted serve --mcp``) searches as the Memory does."""
    from mcp.client.client import Client

    from noted.mcp import create_server

    file = tmp_path / "imported.db"
    _written_without_vectors(file)
    with contextlib.closing(SqliteDb(db_file=str(file))) as store:
        # as the default embedder does: every memory still without a vector at search
        memory = Memory(store, embedder="local", embed_on_write=False)
        server = create_server(memory=memory, user_id=USER)

        async def search() -> Any:
            async with Client(server) as client:
                result = await client.call_tool("search_memories", SNOW)
                assert not result.is_error, result.content
                return result.structured_content

        found = asyncio.run(search())
        assert [m["id"] for m in found["memories"]] == ["ski"]
        assert memory.actor == "api"  # the served copy's writes are recorded as mcp


@pytest.mark.default_embedder
def test_create_server_searches_by_meaning_by_default(tmp_path: Path) -> None:
    """``create_server(db)`` has the default embedder, as ``Memory(db)``, ``create_app(db)``
    and ``noted mcp`` have: a search by meaning finds a memory that shares no word with
    the query. ``embedder=None`` searches by words only."""
    from mcp.client.client import Client

    from noted.mcp import create_server

    file = str(tmp_path / "noted.db")
    with contextlib.closing(SqliteDb(db_file=file)) as store:
        Memory(store, embedder=None).add_user_memories(
            [
                UserMemory("The user likes to ski", memory_id="ski"),
                UserMemory("The user has a cat"),
            ],
            user_id=USER,
        )

    async def search(server: Any) -> Any:
        async with Client(server) as client:
            return await client.call_tool("search_memories", SNOW)

    found = asyncio.run(search(create_server(file, user_id=USER)))
    assert not found.is_error, found.content
    assert [m["id"] for m in found.structured_content["memories"]] == ["ski"]
    words_only = asyncio.run(search(create_server(file, embedder=None, user_id=USER)))
    assert words_only.is_error


# -- the stdio transport itself: raw JSON-RPC lines, as any client writes them ---------------

HELLO = {
    "protocolVersion": "2025-06-18",
    "capabilities": {},
    "clientInfo": {"name": "raw", "version": "1"},
}


def _request(n: int, method: str, params: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": n, "method": method, "params": params}).encode()


def _talk(
    proc: subprocess.Popen[bytes], next_answer: Callable[[], dict[str, Any]]
) -> tuple[str, int]:
    """initialize, add a memory, find it by keyword: each answer read before the next
    request is written. Returns the new memory's id and how many threads the server ran
    once initialized, waiting for the next line (before any tool call: each call's store
    work runs in a worker thread)."""
    assert proc.stdin is not None
    proc.stdin.write(_request(1, "initialize", HELLO) + b"\n")
    proc.stdin.flush()
    assert next_answer()["result"]["serverInfo"]["name"] == "noted"
    threads = len(list(Path(f"/proc/{proc.pid}/task").iterdir()))
    proc.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
    add = {"name": "add_memory", "arguments": {"memory": "Ava keeps bees on the roof"}}
    proc.stdin.write(_request(2, "tools/call", add) + b"\n")
    proc.stdin.flush()
    added = next_answer()
    assert added["id"] == 2 and not added["result"]["isError"], added
    search = {"name": "search_memories", "arguments": {"query": "bees", "method": "keyword"}}
    proc.stdin.write(_request(3, "tools/call", search) + b"\n")
    proc.stdin.flush()
    found = next_answer()
    assert found["id"] == 3, found
    memory_id = str(added["result"]["structuredContent"]["id"])
    assert [m["id"] for m in found["result"]["structuredContent"]["memories"]] == [memory_id]
    proc.stdin.close()  # end of input: the server stops
    assert proc.wait(60) == 0
    return memory_id, threads


def _serve(db_file: Path, stdout: Any) -> subprocess.Popen[bytes]:
    command = [NOTED, "mcp", "--db", str(db_file), "--user", USER, "--embedder", "none"]
    # numeric libraries' own thread pools off, so that the server's threads are its own
    env = os.environ | {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=stdout, env=env)


class _Lines:
    """The server's answers, line by line, from the pipe's file descriptor: read with a
    buffer of its own, so a line that came in the same read as the one before is not left
    in a file object's buffer while ``select`` waits on the descriptor for more."""

    def __init__(self, pipe: Any) -> None:
        self._fd: int = pipe.fileno()
        self._buffer = b""
        self.ended = False

    def next(self, timeout: float = 60.0) -> bytes | None:
        """The next whole line (without its newline), or None when none came in time or
        the server closed its end."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer and not self.ended:
            ready, _, _ = select.select([self._fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(self._fd, 1 << 16)
            self.ended = not chunk
            self._buffer += chunk
        if b"\n" not in self._buffer:
            return None
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def rest(self) -> bytes:
        """Everything after the lines read, to the end (the server has closed its end)."""
        while not self.ended:
            chunk = os.read(self._fd, 1 << 16)
            self.ended = not chunk
            self._buffer += chunk
        rest, self._buffer = self._buffer, b""
        return rest


def test_raw_json_rpc_over_pipes(tmp_path: Path) -> None:
    """Pipes on both sides (as under every MCP client): the event loop (uvloop's) reads
    and writes them; each answer comes as one JSON line before the next request is sent."""
    proc = _serve(tmp_path / "pipes.db", subprocess.PIPE)
    assert proc.stdout is not None
    out = proc.stdout
    lines = _Lines(out)

    def next_answer() -> dict[str, Any]:
        line = lines.next()
        assert line is not None, "no answer within 60 s"
        answer: dict[str, Any] = json.loads(line)
        return answer

    try:
        memory_id, threads = _talk(proc, next_answer)
        assert threads == 1  # no worker thread reads or writes the wire
        assert lines.rest() == b""  # nothing else was written on the wire
    finally:
        proc.kill()
        proc.wait()
        out.close()
    with contextlib.closing(SqliteDb(db_file=str(tmp_path / "pipes.db"))) as store:
        assert [e.actor for e in store.get_memory_history(memory_id, USER)] == ["mcp"]


def test_stdout_a_regular_file_is_served_by_the_sdk_transport(tmp_path: Path) -> None:
    """A regular file cannot be watched by the event loop: the SDK's own transport (its
    worker threads) serves it, with the same answers."""
    written = tmp_path / "out.jsonl"
    with written.open("wb") as sink:
        proc = _serve(tmp_path / "file.db", sink)
    seen = 0

    def next_answer() -> dict[str, Any]:
        nonlocal seen
        deadline = time.monotonic() + 60
        while len(lines := written.read_bytes().splitlines()) <= seen:
            assert time.monotonic() < deadline and proc.poll() is None, "no answer"
            time.sleep(0.02)
        seen += 1
        answer: dict[str, Any] = json.loads(lines[seen - 1])
        return answer

    try:
        _, threads = _talk(proc, next_answer)
        assert threads > 1  # the SDK's worker threads
    finally:
        proc.kill()
        proc.wait()
    assert len(written.read_bytes().splitlines()) == 3


def test_pipelined_requests_and_a_bad_line_over_pipes(tmp_path: Path) -> None:
    """Requests written all at once, one of them not JSON-RPC at all: the server reads
    each line as it asks for the next message, answers every request as one whole JSON
    line (answers written concurrently never interleave), answers the bad lines with an
    error of no id (as over HTTP: the SDK's stdio transport leaves their client waiting),
    and keeps serving."""
    proc = _serve(tmp_path / "pipelined.db", subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    lines = _Lines(proc.stdout)
    try:
        proc.stdin.write(_request(1, "initialize", HELLO) + b"\n")
        proc.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        proc.stdin.write(b"this is not JSON-RPC\n")
        half = {"name": "add_memory", "arguments": {"memory": "a\ud800b"}}  # half an emoji
        proc.stdin.write(
            json.dumps(
                {"jsonrpc": "2.0", "id": 99, "method": "tools/call", "params": half}
            ).encode()
            + b"\n"
        )
        facts = [f"Ava's plant number {n} is a fern" for n in range(6)]
        for n, fact in enumerate(facts, start=2):
            add = {"name": "add_memory", "arguments": {"memory": fact}}
            proc.stdin.write(_request(n, "tools/call", add) + b"\n")
        proc.stdin.write(_request(8, "ping", {}) + b"\n")
        proc.stdin.flush()
        answers: dict[int, dict[str, Any]] = {}
        refused: list[dict[str, Any]] = []
        while len(answers) < 8 or len(refused) < 2:
            line = lines.next()
            assert line is not None, f"no answer within 60 s; have {sorted(answers)}"
            answer = json.loads(line)
            if answer["id"] is None:
                refused.append(answer["error"])
            else:
                answers[answer["id"]] = answer
        assert sorted(answers) == list(range(1, 9))
        assert [e["code"] for e in refused] == [-32700, -32700]
        assert all(e["message"].startswith("Parse error: ") for e in refused)
        added = [answers[n]["result"]["structuredContent"] for n in range(2, 8)]
        assert sorted(a["memory"] for a in added) == sorted(facts)
        assert answers[8]["result"] == {}
        listed = {"name": "list_memories", "arguments": {"limit": 50}}
        proc.stdin.write(_request(9, "tools/call", listed) + b"\n")
        proc.stdin.flush()
        line = lines.next()
        assert line is not None, "no answer after the bad line"
        memories = json.loads(line)["result"]["structuredContent"]["memories"]
        assert sorted(m["memory"] for m in memories) == sorted(facts)
        proc.stdin.close()
        assert proc.wait(60) == 0
        assert lines.rest() == b""
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def _call(n: int, tool: str, arguments: dict[str, Any]) -> bytes:
    return _request(n, "tools/call", {"name": tool, "arguments": arguments}) + b"\n"


def test_reads_are_answered_while_writes_wait_for_another_processs_lock(tmp_path: Path) -> None:
    """Another process holds the file's write lock (a long write): the client's writes
    wait for it (up to the store's busy timeout), its reads sent after them are answered
    meanwhile, and once the lock is let go the writes are applied in the order sent."""
    db_file = tmp_path / "locked.db"
    proc = _serve(db_file, subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    lines = _Lines(proc.stdout)

    def answer() -> dict[str, Any]:
        line = lines.next()
        assert line is not None, "no answer within 60 s"
        found: dict[str, Any] = json.loads(line)
        return found

    other: apsw.Connection | None = None
    try:
        proc.stdin.write(_request(1, "initialize", HELLO) + b"\n")
        proc.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        proc.stdin.write(_call(2, "add_memory", {"memory": "Ava keeps bees"}))
        proc.stdin.flush()
        assert [answer()["id"], answer()["id"]] == [1, 2]
        search = {"query": "bees", "method": "keyword"}
        proc.stdin.write(_call(3, "search_memories", search))  # its index caught up now
        proc.stdin.flush()
        kept = answer()["result"]["structuredContent"]["memories"][0]
        other = apsw.Connection(str(db_file))
        other.execute("BEGIN IMMEDIATE")  # another process writing at length
        texts = [f"Ava keeps {n} hives of bees" for n in range(1, 7)]
        for n, text in enumerate(texts, start=10):
            proc.stdin.write(_call(n, "update_memory", {"id": kept["id"], "memory": text}))
        proc.stdin.write(_call(20, "add_memory", {"memory": "Ava has a cat"}))
        proc.stdin.write(_call(21, "list_memories", {}))
        proc.stdin.write(_call(22, "search_memories", search))
        proc.stdin.write(_call(23, "get_memory", {"id": kept["id"]}))
        proc.stdin.flush()
        reads: dict[int, dict[str, Any]] = {}
        while len(reads) < 3:
            line = lines.next(20)  # the writes wait up to 30 s: the reads come well before
            assert line is not None, f"the reads waited behind the writes; have {sorted(reads)}"
            found = json.loads(line)
            assert found["id"] in (21, 22, 23), f"a write was answered first: {found}"
            reads[found["id"]] = found["result"]["structuredContent"]
        other.execute("COMMIT")
        other.close()
        other = None
        writes = {found["id"]: found["result"] for found in (answer() for _ in range(7))}
        assert sorted(writes) == [*range(10, 16), 20]
        assert not any(result["isError"] for result in writes.values()), writes
        proc.stdin.close()
        assert proc.wait(60) == 0
    finally:
        if other is not None:
            other.close()
        proc.kill()
        proc.wait()
        proc.stdout.close()
    # the reads saw the memories as they were before the writes
    assert [m["memory"] for m in reads[21]["memories"]] == ["Ava keeps bees"]
    assert [m["memory"] for m in reads[22]["memories"]] == ["Ava keeps bees"]
    assert reads[23]["memory"] == "Ava keeps bees"
    with contextlib.closing(SqliteDb(db_file=str(db_file))) as store:
        history = store.get_memory_history(kept["id"], USER)
        assert [e.new_memory for e in history] == ["Ava keeps bees", *texts]
        assert [m.memory for m in store.list_memories(MemoryQuery(user_id=USER))] == [
            "Ava has a cat",
            texts[-1],
        ]


@pytest.mark.parametrize("first", ["stdin", "stdout"])
def test_the_server_ends_quietly_whichever_end_the_client_closes_first(
    tmp_path: Path, first: str
) -> None:
    command = [NOTED, "mcp", "--db", str(tmp_path / "m.db"), "--user", USER, "--embedder", "none"]
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(_request(1, "initialize", HELLO) + b"\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["id"] == 1
        ends = [proc.stdin, proc.stdout] if first == "stdin" else [proc.stdout, proc.stdin]
        for end in ends:
            end.close()
            time.sleep(0.2)
        assert proc.stderr is not None
        code = proc.wait(30)
        assert (code, proc.stderr.read().decode()) == (0, "")
    finally:
        proc.kill()
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


_LOOP = (
    "import asyncio, sys; from noted.mcp.stdio import run_stdio\n"
    "class Probe:\n"
    "    def create_initialization_options(self): return None\n"
    "    async def run(self, read, write, options):\n"
    "        print(type(asyncio.get_running_loop()).__module__, file=sys.stderr)\n"
    "        async for _ in read: pass\n"
    "        await write.aclose()\n"
    "run_stdio(Probe())\n"
)


@pytest.mark.parametrize(
    ("stdin", "stdout", "loop"),
    [
        ("pipe", "pipe", "uvloop"),
        ("pipe", "file", "asyncio.unix_events"),
        ("null", "pipe", "asyncio.unix_events"),
    ],
)
def test_the_loop_is_uvloops_over_pipes_and_asyncios_otherwise(
    tmp_path: Path, stdin: str, stdout: str, loop: str
) -> None:
    """What the stdio server runs on: uvloop when stdin and stdout are pipes (a tool
    call's many small steps cost less on it); asyncio's own loop for a regular file or
    /dev/null, which uvloop cannot serve. Each serves until its input ends."""
    with (tmp_path / "out").open("wb") as file:
        done = subprocess.run(
            [sys.executable, "-c", _LOOP],
            stdin=subprocess.PIPE if stdin == "pipe" else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout == "pipe" else file,
            stderr=subprocess.PIPE,
            timeout=60,
            check=True,
        )
    assert done.stderr.decode().split() == [loop]


def test_a_line_longer_than_the_limit_is_skipped_answered_and_the_next_served() -> None:
    ping = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode() + b"\n"

    class Answers:
        def __init__(self) -> None:
            self.sent: list[tuple[int, str]] = []

        async def refuse(self, code: int, message: str) -> None:
            self.sent.append((code, message))

    async def read(*pieces: bytes) -> tuple[list[str], list[tuple[int, str]]]:
        reader = asyncio.StreamReader(limit=64)
        answers = Answers()
        incoming = _Incoming(reader, answers)  # type: ignore[arg-type]

        async def feed() -> None:
            for piece in pieces:  # each arrives on its own, as from a pipe
                reader.feed_data(piece)
                await asyncio.sleep(0)
            reader.feed_eof()

        feeding = asyncio.ensure_future(feed())
        got = [type(message).__name__ async for message in incoming]
        await feeding
        return got, answers.sent

    skipped = (
        ["SessionMessage"],
        [(-32700, "Parse error: a message longer than 67108864 bytes was skipped")],
    )
    assert asyncio.run(read(b"x" * 200 + b"\n" + ping)) == skipped  # its end in the buffer
    assert asyncio.run(read(b"x" * 100, b"x" * 100, b"x" * 30 + b"\n", ping)) == skipped
    # short bad lines: what does not parse, and JSON that is no message
    got, sent = asyncio.run(read(ping, b"x" * 30 + b"\n", b'{"id": 2}\n', ping))
    assert got == ["SessionMessage", "SessionMessage"]
    assert [code for code, _ in sent] == [-32700, -32602]
    assert sent[0][1].startswith("Parse error: ") and sent[1][1].startswith("Validation error: ")
