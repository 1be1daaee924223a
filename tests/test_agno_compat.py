"""noted.agno: Agno's names and arguments as thin adapters on noted's own API."""

from __future__ import annotations

import json
import re
import shutil
import socket
import sqlite3
import warnings
from pathlib import Path

import pytest

from conftest import server_url
from noted import ConflictError, ModelError, UserError
from noted.agno import (
    Agent,
    Claude,
    Gemini,
    Memory,
    Message,
    OpenAIChat,
    PostgresDb,
    PostgresMemoryDb,
    PostgresStorage,
    RunResponse,
    SqliteDb,
    SqliteMemoryDb,
    SqliteStorage,
    UserMemory,
)
from noted.models import ModelResponse, ToolCall
from noted.testing import FunctionModel
from servers import Server


@pytest.mark.parametrize("cls", [OpenAIChat, Gemini, Claude])
def test_models_construct_without_a_key_and_fail_when_called(
    cls: type[OpenAIChat], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    model = cls(id="some-model")
    assert model.id == "some-model"
    assert cls().id  # Agno's default id
    with pytest.raises((UserError, ModelError), match="API key"):
        Memory(model=model).create_user_memories(message="My name is Ava", user_id="ava")


def test_a_replaced_invoke_answers_every_request(tmp_path: Path) -> None:
    seen: list[list[Message]] = []

    def invoke(messages: list[Message], **kwargs: object) -> Message:
        seen.append(messages)
        assert "tools" in kwargs
        return Message(role="assistant", content=f"you said {messages[-1].content}")

    model = OpenAIChat(id="mock")
    model.invoke = invoke  # type: ignore[attr-defined]
    agent = Agent(model=model, storage=SqliteStorage(table_name="s", db_file=tmp_path / "a.db"))
    assert agent.run("hello", user_id="ava").content == "you said hello"
    streamed = list(agent.run("again", user_id="ava", stream=True))
    assert streamed[-1].result.content == "you said again"  # type: ignore[union-attr]
    assert len(seen) == 2

    calls = iter(
        [
            ModelResponse(tool_calls=[ToolCall("add_memory", {"memory": "User likes tea"})]),
            "Noted.",
        ]
    )
    model.invoke = lambda messages, tools: next(calls)  # type: ignore[attr-defined]
    memory = Memory(db=SqliteMemoryDb(db_file=tmp_path / "m.db"))
    agent = Agent(model=model, memory=memory, enable_agentic_memory=True)
    agent.print_response("I like tea", user_id="ava")
    assert [m.memory for m in memory.get_user_memories(user_id="ava")] == ["User likes tea"]

    model.invoke = lambda messages: 42  # type: ignore[attr-defined]
    with pytest.raises(UserError, match="must return a Message"):
        agent.run("x", user_id="ava")


def test_memory_v1_api(tmp_path: Path) -> None:
    db = SqliteMemoryDb(table_name="memory", db_file=tmp_path / "deep" / "er" / "m.db")
    assert (tmp_path / "deep" / "er").is_dir()
    db.create()
    assert (tmp_path / "deep" / "er" / "m.db").is_file()
    memory = Memory(db=db)
    memory.initialize(user_id="ava")
    mid = memory.add_user_memory(UserMemory(memory="The user likes tea"), user_id="ava")
    memory.add_user_memory(UserMemory(memory="The user likes jam"), user_id="ava")
    assert [m.memory for m in memory.get_user_memories(user_id="ava")] == [
        "The user likes tea",
        "The user likes jam",
    ]  # in the order they were added, as Agno lists them
    assert memory.delete_user_memory(
        memory.get_user_memories(user_id="ava")[1].memory_id or "", user_id="ava"
    )
    got = memory.get_user_memories(user_id="ava")[0]
    assert got.last_updated == got.updated_at is not None
    # Agno's replace stores under the id when the user has no such memory
    assert memory.replace_user_memory("new-id", UserMemory(memory="x"), user_id="ava") == "new-id"
    memory.replace_user_memory(mid, UserMemory(memory="The user likes coffee"), user_id="ava")
    assert sorted(m.memory for m in memory.get_user_memories(user_id="ava")) == [
        "The user likes coffee",
        "x",
    ]
    with pytest.raises(ConflictError):  # another user's id is still refused
        memory.replace_user_memory(mid, UserMemory(memory="y"), user_id="bob")

    memory.add_run(
        "s1",
        RunResponse(
            content="a",
            messages=[Message("system", "sys"), Message("user", "q1"), Message("assistant", "a1")],
        ),
    )
    memory.add_run(
        "s1",
        RunResponse(
            content="b",
            messages=[Message("system", "sys2"), Message("user", "q2"), Message("assistant", "a2")],
        ),
    )
    texts = [m.content for m in memory.get_messages_from_last_n_runs("s1")]
    assert texts == ["sys", "q1", "a1", "q2", "a2"]
    assert [m.content for m in memory.get_messages_from_last_n_runs("s1", last_n=1)] == [
        "sys2",
        "q2",
        "a2",
    ]
    assert memory.get_messages_from_last_n_runs("s1", skip_role="assistant")[-1].content == "q2"
    assert memory.get_messages_from_last_n_runs("other") == []
    with pytest.raises(UserError):
        memory.add_run("s1", "not a run")  # type: ignore[arg-type]
    # a run kept again under its id takes its own place, as Agno 1.x's add_run does
    for answer in ("first", "again"):
        memory.add_run(
            "s2",
            RunResponse(
                content=answer,
                run_id="r1",
                messages=[Message("user", "hello"), Message("assistant", answer)],
            ),
        )
    assert [r.content for r in memory.get_runs("s2")] == ["again"]
    assert [m.content for m in memory.get_messages_from_last_n_runs("s2")] == ["hello", "again"]


def test_an_agent_without_storage_shares_its_summaries_with_its_memory(tmp_path: Path) -> None:
    def fn(messages: list[Message], tools: object) -> str:
        if (messages[0].content or "").startswith("You keep a running summary"):
            prompt = messages[-1].content or ""
            before = prompt.split("<summary>\n")[1].split("\n</summary>")[0]
            said = [] if before == "(none yet)" else [before]
            said += re.findall(r"user: (.*)", prompt)
            return json.dumps({"summary": " | ".join(said), "topics": []})
        return "Noted."

    memory = Memory(db=SqliteMemoryDb(table_name="memory", db_file=str(tmp_path / "m.db")))
    agent = Agent(model=FunctionModel(fn), memory=memory, enable_session_summaries=True)
    agent.run("My name is Ava.", user_id="ava", session_id="s1")
    agent.run("I live in Paris.", user_id="ava", session_id="s1")
    summary = memory.get_session_summary("s1", "ava")
    assert summary is not None and summary.summary == "My name is Ava. | I live in Paris."
    assert memory.create_session_summary("s1", "ava") == summary  # nothing new: no call


def test_sqlite_urls_and_tables(tmp_path: Path) -> None:
    db = SqliteDb(db_url=f"sqlite:///{tmp_path}/x/agno2.db", memory_table="mem")
    assert db.db_file == tmp_path / "x" / "agno2.db" and db.memory_table == "mem"
    storage = SqliteStorage(table_name="agent_sessions", db_file=tmp_path / "a.db")
    assert storage.session_table == "agent_sessions"
    with pytest.raises(UserError):
        SqliteMemoryDb(db_file=tmp_path / "a.db", db_url="sqlite:///b.db")
    with pytest.raises(UserError):
        SqliteDb(db_url="postgresql://h/db")


def test_no_warnings_for_agentic_and_automatic_memory_together() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        agent = Agent(
            model=OpenAIChat(id="gpt-4.1"),
            memory=Memory(),
            enable_agentic_memory=True,
            enable_user_memories=True,
            add_history_to_messages=True,
        )
    assert agent.memory is not None and agent.memory.mode == "agentic"
    assert agent.add_history_to_context


def test_postgres_constructors(servers: dict[str, Server | str]) -> None:
    url = server_url(servers, "postgres")
    driver_url = url.replace("postgresql://", "postgresql+psycopg://")
    dbs = [
        PostgresMemoryDb(table_name="agno_compat_a", connection_string=url),
        PostgresMemoryDb(table_name="agno_compat_a", db_url=driver_url),
    ]
    for db in dbs:
        memory = Memory(db=db)
        memory.add_user_memory(UserMemory(memory="The user likes tea"), user_id="pg-ava")
    assert Memory(db=dbs[0]).count_user_memories(user_id="pg-ava") == 2
    storage = PostgresStorage(table_name="agno_compat_s", db_url=driver_url)
    assert storage.session_table == "agno_compat_s"
    both = PostgresDb(db_url=driver_url, memory_table="agno_compat_m2")
    assert both.memory_table == "agno_compat_m2"
    with pytest.raises(UserError):
        PostgresMemoryDb(db_url=url, connection_string=driver_url)
    for db in (*dbs, storage, both):
        db.close()


def test_search_takes_agnos_arguments_and_order() -> None:
    memory = Memory()
    for text in ("first", "second", "third"):
        memory.add_user_memory(UserMemory(memory=f"The user said {text}"), user_id="ava")

    def said(found: list[UserMemory]) -> list[str]:
        return [m.memory.removeprefix("The user said ") for m in found]

    # Agno lists the newest n oldest first; positional (query, limit); no method: last_n
    assert said(memory.search_user_memories(None, 2, "last_n", "ava")) == ["second", "third"]
    assert said(memory.search_user_memories("third", 2, user_id="ava")) == ["second", "third"]
    assert said(memory.search_user_memories(limit=0, user_id="ava")) == ["first", "second", "third"]
    assert said(
        memory.search_user_memories(limit=2, retrieval_method="first_n", user_id="ava")
    ) == [
        "first",
        "second",
    ]
    found = memory.search_user_memories("third", 1, "keyword", "ava", refresh_from_db=False)
    assert said(found) == ["third"]


def test_num_history_responses_is_num_history_runs() -> None:
    agent = Agent(model=OpenAIChat(api_key="k"), num_history_responses=5)
    assert agent.num_history_runs == 5
    assert Agent(model=OpenAIChat(api_key="k")).num_history_runs == 3


def test_user_memory_takes_agnos_fields_and_order(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    import noted

    when = datetime(2025, 3, 9, 12, 0, tzinfo=UTC)
    made = UserMemory("The user likes tea", ["drinks"], "I like tea", when, "m-tea")
    assert isinstance(made, noted.UserMemory)
    assert (made.topics, made.input, made.last_updated, made.memory_id) == (
        ["drinks"],
        "I like tea",
        when,
        "m-tea",
    )
    assert UserMemory(memory="x", topics=None).topics == []
    agnos = {"memory_id": "m-2", "memory": "The user skis", "last_updated": when.isoformat()}
    read = UserMemory.from_dict(agnos)
    assert (read.memory_id, read.updated_at) == ("m-2", when)
    memory = Memory(db=SqliteMemoryDb(table_name="memory", db_file=tmp_path / "m.db"))
    memory.add_user_memory(made, user_id="ava")
    stored = memory.get_user_memory("m-tea", user_id="ava")
    assert stored is not None and stored.topics == ["drinks"]


def summaries_of_what_was_said() -> FunctionModel:
    """Answers "Noted."; asked for a session summary, joins what the user said."""

    def fn(messages: list[Message], tools: object) -> str:
        if not (messages[0].content or "").startswith("You keep a running summary"):
            return "Noted."
        said = re.findall(r"^user: (.*)$", messages[1].content or "", re.MULTILINE)
        return json.dumps({"summary": " | ".join(said), "topics": ["chat"]})

    return FunctionModel(fn)


def test_session_summaries_as_agnos_memory_kept_them(tmp_path: Path) -> None:
    model = summaries_of_what_was_said()
    # the runs kept with add_run are summarized in this process
    memory = Memory(model=model, db=SqliteMemoryDb(db_file=tmp_path / "m.db"))
    said = [Message(role="user", content="My name is Ava"), Message(role="assistant", content="Hi")]
    memory.add_run("s1", RunResponse(content="Hi", messages=said))
    summary = memory.create_session_summary(session_id="s1", user_id="ava")
    assert summary.summary.endswith("My name is Ava") and summary.run_count == 1
    assert memory.get_session_summary(session_id="s1", user_id="ava") == summary
    assert memory.get_session_summary(session_id="s1", user_id="bob") is None
    # turns kept without ids: the next update sends the new turn only, on the summary
    more = [
        Message(role="user", content="I live in Porto"),
        Message(role="assistant", content="Ok"),
    ]
    memory.add_run("s1", RunResponse(content="Ok", messages=more))
    summary = memory.create_session_summary(session_id="s1", user_id="ava")
    update = model.requests[-1].messages[1].content or ""
    assert summary.run_count == 2 and "user: My name is Ava" not in update
    # an agent's summaries, its storage apart from the memories' file, are the memory's too
    memory = Memory(model=model, db=SqliteMemoryDb(db_file=tmp_path / "memory.db"))
    storage = SqliteStorage(table_name="agent_sessions", db_file=tmp_path / "storage.db")
    agent = Agent(model=model, memory=memory, storage=storage, enable_session_summaries=True)
    agent.run("I like to ski", user_id="ava", session_id="s2")
    kept = memory.get_session_summary(session_id="s2", user_id="ava")
    assert kept is not None and kept.summary.endswith("I like to ski")
    assert memory.create_session_summary(session_id="s2", user_id="ava") == kept  # current


def test_a_naive_last_updated_is_local_time() -> None:
    from datetime import UTC, datetime

    naive = datetime(2025, 3, 9, 12, 0)
    assert UserMemory(memory="x", last_updated=naive).updated_at == naive.astimezone(UTC)
    read = UserMemory.from_dict({"memory": "x", "last_updated": naive.isoformat()})
    assert read.updated_at == naive.astimezone(UTC)


def test_a_stream_of_arun_may_be_awaited_first_as_in_agno() -> None:
    import asyncio

    from noted.agent import RunCompleted

    agent = Agent(model=summaries_of_what_was_said())

    async def kinds(awaited: bool) -> list[str]:
        events = agent.arun("Hello", stream=True)
        stream = await events if awaited else events  # type: ignore[misc]
        return [type(e).__name__ async for e in stream]  # type: ignore[union-attr]

    for awaited in (True, False):
        got = asyncio.run(kinds(awaited))
        assert got[-1] == RunCompleted.__name__ and len(got) >= 2
    result = asyncio.run(agent.arun("Hi"))  # type: ignore[arg-type]
    assert result.content == "Noted."


AGNO_FIXTURES = Path(__file__).parent / "fixtures" / "agno"


def test_a_table_agno_wrote_is_refused_before_the_file_is_touched(tmp_path: Path) -> None:
    """Swapping the imports of a program whose file Agno wrote: its tables are Agno's, so
    noted says to import them (or to name another table) and leaves the file as it was."""
    agno1 = tmp_path / "agno1.db"
    shutil.copy(AGNO_FIXTURES / "agno-1.7.12.db", agno1)
    agno2 = tmp_path / "agno2.db"
    shutil.copy(AGNO_FIXTURES / "agno-2.2.13.db", agno2)
    before = {f: f.read_bytes() for f in (agno1, agno2)}
    refused = [
        (lambda: SqliteMemoryDb(table_name="user_memories", db_file=agno1), "table_name"),
        (lambda: SqliteStorage(table_name="agent_sessions", db_file=agno1), "table_name"),
        (lambda: SqliteDb(db_file=agno2, memory_table="agno_memories"), "memory_table"),
        (
            lambda: SqliteDb(db_url=f"sqlite:///{agno2}", session_table="agno_sessions"),
            "session_table",
        ),
    ]
    for make, option in refused:
        with pytest.raises(UserError, match=rf"written by Agno.*noted import agno .*\({option}="):
            make()
    assert {f: f.read_bytes() for f in before} == before
    assert not list(tmp_path.glob("*-wal"))
    with sqlite3.connect(agno1) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    conn.close()
    # noted's own tables, of Agno's names or not, open again as before
    for make in (
        lambda: SqliteMemoryDb(table_name="memory", db_file=tmp_path / "noted.db"),
        lambda: SqliteStorage(table_name="agent_sessions", db_file=tmp_path / "noted.db"),
        lambda: SqliteDb(db_file=agno2),
    ):
        memory = Memory(db=make())
        memory.add_user_memory(UserMemory("likes tea"), user_id="ava")
        memory.db.close()
    reopened = Memory(db=SqliteMemoryDb(table_name="memory", db_file=tmp_path / "noted.db"))
    assert [m.memory for m in reopened.get_user_memories(user_id="ava")] == ["likes tea"]


def test_async_twins_take_agnos_arguments_and_order() -> None:
    import asyncio

    memory = Memory()
    for text in ("first", "second", "third"):
        memory.add_user_memory(UserMemory(memory=text), user_id="ava")

    async def read() -> list[list[str]]:
        found = [
            await memory.asearch_user_memories(None, 2, "last_n", "ava"),  # Agno's order
            await memory.asearch_user_memories(limit=1, retrieval_method="first_n", user_id="ava"),
            await memory.aget_user_memories(user_id="ava"),
        ]
        return [[m.memory for m in listed] for listed in found]

    assert asyncio.run(read()) == [["second", "third"], ["first"], ["first", "second", "third"]]
    # a replace of an id the user has not yet stores it, as the sync one does
    new = UserMemory(memory="fourth")
    assert asyncio.run(memory.areplace_user_memory("m-4", new, "ava")) == "m-4"
    kept = memory.get_user_memory("m-4", user_id="ava")
    assert kept is not None and kept.memory == "fourth"


def manager_clearing() -> FunctionModel:
    """Answers the memory manager, whatever it is told, with "clear every memory"."""

    def fn(messages: list[Message], tools: object) -> str:
        prompt = messages[0].content or ""
        assert "Keep it short." in prompt  # the manager's additional_instructions
        return json.dumps({"operations": [{"op": "clear", "id": None, "memory": None}]})

    return FunctionModel(fn)


def test_memory_flags_with_a_memory_manager_given(tmp_path: Path) -> None:
    from noted.agno import MemoryManager, SessionSummarizer

    manager = MemoryManager(additional_instructions="Keep it short.")
    memory = Memory(
        model=manager_clearing(),
        db=SqliteMemoryDb(db_file=tmp_path / "m.db"),
        memory_manager=manager,
        summarizer=SessionSummarizer(additional_instructions="One line."),
        delete_memories=True,
        clear_memories=True,
    )
    memory.add_user_memory(UserMemory(memory="The user likes tea"), user_id="ava")
    memory.create_user_memories(message="Forget everything about me.", user_id="ava")
    assert memory.get_user_memories(user_id="ava") == []
    # the manager given is left as it was: the flags are this memory's
    assert (manager.permissions.delete, manager.permissions.clear) == (False, False)
    # without the flags, the manager may not clear: the memory stays
    kept = Memory(model=manager_clearing(), db=memory.db, memory_manager=manager)
    kept.add_user_memory(UserMemory(memory="The user likes coffee"), user_id="ava")
    kept.create_user_memories(message="Forget everything about me.", user_id="ava")
    assert [m.memory for m in kept.get_user_memories(user_id="ava")] == ["The user likes coffee"]


def test_agent_takes_agnos_memory_and_summary_arguments(tmp_path: Path) -> None:
    from noted.agno import MemoryManager, SessionSummarizer

    model = summaries_of_what_was_said()
    manager = MemoryManager(additional_instructions="Keep it short.")
    summarizer = SessionSummarizer(additional_instructions="One line.")
    db = SqliteDb(db_file=tmp_path / "agent.db")
    agent = Agent(  # Agno 2's names
        model=model,
        db=db,
        user_id="ava",
        memory_manager=manager,
        enable_user_memories=True,
        add_memories_to_context=False,
        enable_session_summaries=True,
        add_session_summary_to_context=False,
        session_summary_manager=summarizer,
        debug_mode=True,
    )
    assert agent.memory is not None and agent.memory.manager is manager
    assert agent.memory.in_context is False
    assert agent.summaries is not None and agent.summaries.summarizer is summarizer
    assert agent.summaries.in_context is False
    older = Agent(  # Agno 1.x's names
        model=model,
        memory=Memory(db=db),
        enable_user_memories=True,
        add_memory_references=False,
        enable_session_summaries=True,
        add_session_summary_references=False,
    )
    assert older.memory is not None and older.memory.in_context is False
    assert older.summaries is not None and older.summaries.in_context is False


def test_agent_reads_its_session_summary_and_memories_as_agno_does(tmp_path: Path) -> None:
    model = summaries_of_what_was_said()
    db = SqliteDb(db_file=tmp_path / "agent.db")
    agent = Agent(model=model, db=db, user_id="ava", enable_session_summaries=True)
    assert agent.get_session_summary() is None  # nothing said yet
    agent.run("My name is Ava")
    agent.run("I live in Porto", session_id="porto")
    summary = agent.get_session_summary()  # the session its next run continues
    assert summary is not None and summary.summary.endswith("My name is Ava")
    assert summary.last_updated == summary.updated_at  # Agno 1.x's name
    porto = agent.get_session_summary(session_id="porto", user_id="ava")
    assert porto is not None and porto.summary.endswith("I live in Porto")
    assert agent.get_session_summary(session_id="porto", user_id="bob") is None
    # the user's memories in the order they were added
    memory = Memory(db=db)
    for text in ("first", "second", "third"):
        memory.add_user_memory(UserMemory(memory=text), user_id="ava")
    memory.replace_user_memory(
        memory.get_user_memories(user_id="ava")[0].memory_id or "",
        UserMemory(memory="first, again"),
        user_id="ava",
    )
    listed = [m.memory for m in agent.get_user_memories(user_id="ava")]
    assert listed == ["first, again", "second", "third"]


def test_mongo_and_redis_memory_dbs(servers: dict[str, Server | str]) -> None:
    from urllib.parse import urlsplit

    from noted.agno import MongoMemoryDb, RedisMemoryDb

    mongo = server_url(servers, "mongo")
    redis_at = urlsplit(server_url(servers, "redis"))
    assert redis_at.hostname is not None and redis_at.port is not None
    dbs = [
        MongoMemoryDb(collection_name="agno_compat", db_url=mongo, db_name="noted_tests"),
        RedisMemoryDb(prefix="agno_compat", host=redis_at.hostname, port=redis_at.port),
    ]
    for db in dbs:
        memory = Memory(db=db)
        memory.add_user_memory(UserMemory(memory="The user likes tea"), user_id="ava")
        again = Memory(db=db)  # another Memory, as after a restart, reads it back
        assert [m.memory for m in again.get_user_memories(user_id="ava")] == ["The user likes tea"]
        assert db.memory_table == "agno_compat"
        memory.clear()
        db.close()
    with pytest.raises(UserError, match="db_url"):
        MongoMemoryDb()


def test_a_redis_memory_db_on_an_ipv6_host(servers: dict[str, Server | str]) -> None:
    """``host="::1"``, as Agno's RedisMemoryDb takes it: its colons were read as the port's
    ("Port could not be cast to integer value as ':1:6379'")."""
    from urllib.parse import urlsplit

    from noted.agno import RedisMemoryDb

    port = urlsplit(server_url(servers, "redis")).port
    assert port is not None
    try:
        socket.create_connection(("::1", port), timeout=2).close()
    except OSError as exc:  # the test server listens on ::1 where the machine has it
        pytest.skip(f"no IPv6 loopback here: {exc}")
    for host in ("::1", "[::1]"):
        db = RedisMemoryDb(prefix="agno_ipv6", host=host, port=port)
        memory = Memory(db=db)
        memory.add_user_memory(UserMemory(memory="The user likes tea"), user_id="ava")
        assert [m.memory for m in memory.get_user_memories(user_id="ava")] == ["The user likes tea"]
        memory.clear()
        db.close()
