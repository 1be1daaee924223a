"""The terminal chat's own commands (/memories, /forget, /new, ...): answered by the chat
on a real SQLite store, never sent to the model; and in a real chat fed from a pipe."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

from noted import Agent, Memory, SqliteDb, UserMemory
from noted.agent.chat_commands import Chat, take_line
from noted.models import Message, ToolDefinition
from noted.testing import FunctionModel, ScriptedModel
from test_chat import child_env, piped


def consoles() -> tuple[Console, Console, io.StringIO, io.StringIO]:
    said, refused = io.StringIO(), io.StringIO()
    return (
        Console(file=said, width=200, color_system=None),
        Console(file=refused, width=200, color_system=None),
        said,
        refused,
    )


@pytest.fixture
def db(tmp_path: Path) -> SqliteDb:
    return SqliteDb(tmp_path / "chat.db")


def chat_of(agent: Agent, user_id: str | None = None) -> tuple[Chat, io.StringIO, io.StringIO]:
    console, errors, said, refused = consoles()
    return Chat(agent, user_id, "s-1", console, errors), said, refused


def test_memories_lists_what_is_remembered_newest_first_and_searches_by_words(
    db: SqliteDb,
) -> None:
    memory = Memory(db=db, embedder=None)
    ids = [
        memory.add_user_memory(UserMemory(text), user_id="ava")
        for text in ("Ava is allergic to shellfish", "Ava lives in Lisbon", "Ava likes to ski")
    ]
    memory.add_user_memory(UserMemory("Bob hates skiing"), user_id="bob")
    model = ScriptedModel([])
    agent = Agent(model, db=db, memory=memory, user_id="ava", add_memories_to_context=True)
    chat, said, refused = chat_of(agent)
    assert take_line("/memories", chat) is None
    listed = said.getvalue()
    assert "Memories of user ava, newest first (3 of 3)" in listed
    assert all(i in listed for i in ids) and "Bob" not in listed
    assert listed.index("ski") < listed.index("Lisbon") < listed.index("shellfish")

    said.truncate(0)
    said.seek(0)
    assert take_line("/memories  shellfish ", chat) is None
    found = said.getvalue()
    assert "matching 'shellfish' (1)" in found and "allergic to shellfish" in found
    assert "Lisbon" not in found and "match" in found
    assert refused.getvalue() == "" and model.requests == []


def test_memories_with_a_long_query_quotes_only_its_beginning(db: SqliteDb) -> None:
    memory = Memory(db=db, embedder=None)
    memory.add_user_memory(UserMemory("Ava likes to ski"), user_id="ava")
    chat, said, refused = chat_of(Agent(ScriptedModel([]), db=db, memory=memory, user_id="ava"))
    query = "ski " * 2500  # 10,000 characters, pasted
    assert take_line("/memories " + query, chat) is None
    found = said.getvalue()
    said_words = " ".join(found.split())
    assert f"Memories of user ava matching {'ski ' * 14 + 'ski'!r}… (1)" in said_words
    assert "Ava likes to ski" in found and len(found) < 1000 and refused.getvalue() == ""


def test_forget_deletes_one_of_the_users_memories_and_no_one_elses(db: SqliteDb) -> None:
    memory = Memory(db=db, embedder=None)
    mine = memory.add_user_memory(UserMemory("Ava lives in Lisbon"), user_id="ava")
    theirs = memory.add_user_memory(UserMemory("Bob lives in Oslo"), user_id="bob")
    agent = Agent(ScriptedModel([]), db=db, memory=memory, add_memories_to_context=True)
    chat, said, refused = chat_of(agent, user_id="ava")
    take_line(f"/forget {theirs}", chat)
    assert f"no memory {theirs} of user ava" in refused.getvalue()
    assert memory.get_user_memory(theirs, "bob") is not None
    take_line(f"/forget {mine}", chat)
    assert f"forgot {mine}: Ava lives in Lisbon" in said.getvalue()
    assert memory.get_user_memories("ava") == []
    take_line("/forget", chat)
    take_line("/forget a b", chat)
    assert refused.getvalue().count("usage: /forget ID") == 2


def test_the_commands_are_about_the_chats_user_not_the_agents(db: SqliteDb) -> None:
    """A chat for bob with an agent made for ava: its messages are bob's runs, so
    /memories lists bob's memories only and /forget cannot delete one of ava's."""
    memory = Memory(db=db, embedder=None)
    avas = memory.add_user_memory(UserMemory("Ava lives in Lisbon"), user_id="ava")
    bobs = memory.add_user_memory(UserMemory("Bob lives in Oslo"), user_id="bob")
    model = ScriptedModel(["Hello Bob"])
    agent = Agent(model, db=db, memory=memory, user_id="ava", add_memories_to_context=True)
    chat, said, refused = chat_of(agent, user_id="bob")
    message = take_line("hello", chat)
    assert message == "hello"
    assert agent.run(message, user_id=chat.user_id, session_id=chat.session).user_id == "bob"
    take_line("/memories", chat)
    take_line("/memories lives", chat)
    listed = said.getvalue()
    assert "Memories of user bob" in listed and listed.count("Oslo") == 2
    assert "Ava" not in listed and "Lisbon" not in listed and avas not in listed
    take_line(f"/forget {avas}", chat)
    assert f"no memory {avas} of user bob" in refused.getvalue()
    assert memory.get_user_memory(avas, "ava") is not None
    take_line(f"/forget {bobs}", chat)
    assert f"forgot {bobs}: Bob lives in Oslo" in said.getvalue()
    assert [m.memory for m in memory.get_user_memories("ava")] == ["Ava lives in Lisbon"]


def test_memories_waits_for_the_last_turns_memory_update(db: SqliteDb) -> None:
    """A fact just said is learned in the background: /memories shows it, not the list of
    before the turn."""

    def answer(messages: list[Message], tools: list[ToolDefinition]) -> str:
        if (messages[0].content or "").startswith("You maintain the long-term memory"):
            ops = [{"op": "add", "id": None, "memory": "Ava is allergic to shellfish"}]
            return json.dumps({"operations": ops})
        return "Noted."

    memory = Memory(db=db, embedder=None)
    agent = Agent(
        FunctionModel(answer), db=db, memory=memory, user_id="ava", enable_user_memories=True
    )
    chat, said, _ = chat_of(agent)
    message = take_line("I am allergic to shellfish", chat)
    assert message == "I am allergic to shellfish"
    agent.run(message, session_id=chat.session)
    take_line("/memories", chat)
    assert "Ava is allergic to shellfish" in said.getvalue()


def test_lines_that_are_not_commands_go_to_the_model(db: SqliteDb) -> None:
    chat, said, refused = chat_of(Agent(ScriptedModel([]), db=db))
    assert take_line("/usr/bin/env is missing", chat) == "/usr/bin/env is missing"
    assert take_line("//memories is a command", chat) == "/memories is a command"
    assert take_line("hello /memories", chat) == "hello /memories"
    assert take_line("/memorie", chat) is None
    assert "no command /memorie: /help lists them" in refused.getvalue()
    take_line("/help", chat)
    assert "/forget ID" in said.getvalue() and "//TEXT" in said.getvalue()
    assert not chat.leaving
    take_line("/EXIT", chat)
    assert chat.leaving


def test_new_starts_a_session_and_session_names_it(db: SqliteDb) -> None:
    chat, said, _ = chat_of(Agent(ScriptedModel([]), db=db))
    take_line("/session", chat)
    assert "session s-1" in said.getvalue()
    take_line("/new", chat)
    assert chat.session != "s-1" and f"new session {chat.session}" in said.getvalue()


def test_memories_on_an_agent_without_memory_reads_its_store(db: SqliteDb) -> None:
    Memory(db=db, embedder=None).add_user_memory(UserMemory("Ava likes tea"), user_id="ava")
    agent = Agent(ScriptedModel([]), db=db, user_id="ava")
    assert agent.memory is None
    chat, said, _ = chat_of(agent)
    take_line("/memories", chat)
    assert "Ava likes tea" in said.getvalue()
    chat, said, _ = chat_of(Agent(ScriptedModel([])))  # the in-process store
    take_line("/memories", chat)
    assert "nothing remembered about user default yet" in said.getvalue()


def test_a_refused_command_is_an_error_line_and_the_chat_goes_on(db: SqliteDb) -> None:
    chat, said, refused = chat_of(Agent(ScriptedModel([]), db=db))
    assert take_line("/forget " + "x" * 5000, chat) is None
    assert refused.getvalue().startswith("error: memory_id")
    take_line("/session", chat)
    assert "session s-1" in said.getvalue()


CHAT = textwrap.dedent(
    """
    import sys
    from noted import Agent, Memory, SqliteDb, UserMemory
    from noted.testing import ScriptedModel

    db = SqliteDb(sys.argv[1])
    memory = Memory(db=db, embedder=None)
    memory.add_user_memory(UserMemory("Ava likes green tea"), user_id="ava")
    model = ScriptedModel(["First answer.", "Second answer."])
    Agent(model, db=db, memory=memory, user_id="ava", add_memories_to_context=True).cli_app(
        stream=False, session_id="one"
    )
    print("sent:", [r.messages[-1].content for r in model.requests])
    """
)


def test_a_chat_answers_its_commands_between_messages(tmp_path: Path) -> None:
    said = "hello\n/memories tea\n/new\n//second\n/nope\n/exit\nnever sent\n"
    done = piped(["-c", CHAT, str(tmp_path / "chat.db")], said)
    assert done.returncode == 0, done.stderr
    assert "sent: ['hello', '/second']" in done.stdout
    assert "Ava likes green tea" in done.stdout and "new session" in done.stdout
    assert "no command /nope" in done.stderr and "Traceback" not in done.stderr
    with SqliteDb(tmp_path / "chat.db") as db:
        sessions = {s.session_id: s.run_count for s in db.list_sessions("ava")}
    assert sessions.pop("one") == 1 and list(sessions.values()) == [1]


def test_a_piped_file_that_begins_with_a_byte_order_mark_has_its_commands_answered(
    tmp_path: Path,
) -> None:
    """A file saved with a byte order mark (as Windows' Notepad saves UTF-8) piped to the
    chat: its first line, "/memories tea", was sent to the model as a message."""
    said = "\ufeff/memories tea\nhello\n/exit\n"
    done = piped(["-c", CHAT, str(tmp_path / "chat.db")], said)
    assert done.returncode == 0, done.stderr
    assert "sent: ['hello']" in done.stdout
    assert "Ava likes green tea" in done.stdout


def test_noted_chat_searches_with_the_embedder_it_is_given(tmp_path: Path) -> None:
    """`noted chat` took no --embedder (as `noted serve`, `noted mcp` and `memories search`
    do): its agent always used the default ($NOTED_EMBEDDER, else the local model). The
    agent's memory is the command's now, with the command's embedder."""
    with SqliteDb(tmp_path / "c.db") as store:
        Memory(db=store, embedder=None).add_user_memory(UserMemory("Ava loves pizza"), "ava")
    argv = ["-m", "noted.cli", "chat", "--model", "openai:test-model"]
    argv += ["--user", "ava", "--db", str(tmp_path / "c.db")]
    env = child_env(OPENAI_API_KEY="test-key", NOTED_EMBEDDER="local:/nowhere/model")
    found = {
        bool(given): piped([*argv, *given], "/memories pizza\n", env)
        for given in ([], ["--embedder", "none"])
    }
    assert "no model directory at '/nowhere/model'" in found[False].stderr
    assert found[True].returncode == 0, found[True].stderr
    assert "Ava loves pizza" in found[True].stdout


def test_noted_chat_with_memory_off_searches_with_its_embedder(tmp_path: Path) -> None:
    """With --memory off the agent keeps no memory of its own: /memories WORDS searched
    by words alone whatever --embedder said. It searches with the command's memory now,
    by meaning too ("prawns" finds the shellfish allergy, which shares no word with it)."""
    with SqliteDb(tmp_path / "c.db") as store:
        memory = Memory(db=store, embedder=None)
        memory.add_user_memory(UserMemory("Ava is allergic to shellfish"), "ava")
        memory.add_user_memory(UserMemory("Ava plays the cello on Sundays"), "ava")
    argv = ["-m", "noted.cli", "chat", "--model", "openai:test-model", "--memory", "off"]
    argv += ["--user", "ava", "--db", str(tmp_path / "c.db")]
    env = child_env(OPENAI_API_KEY="test-key")
    env.pop("NOTED_EMBEDDER", None)
    by_meaning = piped([*argv, "--embedder", "local"], "/memories prawns\n", env)
    assert by_meaning.returncode == 0, by_meaning.stderr
    rows = [line for line in by_meaning.stdout.splitlines() if "Ava " in line]
    assert rows and "shellfish" in rows[0], by_meaning.stdout
    by_words = piped([*argv, "--embedder", "none"], "/memories prawns\n", env)
    assert by_words.returncode == 0, by_words.stderr
    assert "(0)" in by_words.stdout and "shellfish" not in by_words.stdout
