"""The terminal chat's own commands: a line that starts with ``/`` and a command's name
(``/memories``, ``/forget``, ``/new``, ...) is answered by the chat, not sent to the
model. A line that starts with ``//`` is sent with one ``/`` less; one whose first word is
not a plain name (``/usr/bin/env is missing``) is sent as it is."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from rich.console import Console
from rich.table import Table
from rich.text import Text

from noted._console import printable
from noted._memory_listing import MATCH_LEGEND, match_column, memory_table, quoted_query
from noted.db.base import MemoryQuery, MemoryStore
from noted.errors import NotedError
from noted.memory import DEFAULT_USER_ID, Memory
from noted.sessions import new_session_id

if TYPE_CHECKING:
    from noted.agent.agent import Agent

__all__ = ["Chat", "take_line"]

MEMORIES_SHOWN: Final = 50
"""The most memories ``/memories`` lists (newest first), and ``/memories WORDS`` finds."""
FOUND_SHOWN: Final = 10
UPDATE_WAIT: Final = 30.0
"""How long ``/memories`` waits for the memory update of the turns before it (seconds)."""

_COMMAND = re.compile(r"/([A-Za-z]+)(?:\s+(.*))?", re.DOTALL)


@dataclass
class Chat:
    """What the chat's commands read and change: the agent, whose memories they are
    (``user_id``), the session the next message goes to, where they answer (``console``;
    a refusal on ``errors``), whether to leave, and the memory to read when the agent
    uses none (``memory``)."""

    agent: Agent
    user_id: str | None
    session: str
    console: Console
    errors: Console
    leaving: bool = False
    memory: Memory | None = None  # the memories' when the agent uses none (`noted chat`'s)

    @property
    def user(self) -> str:
        return self.user_id or self.agent.user_id or DEFAULT_USER_ID


Command = Callable[[Chat, str], None]


def take_line(line: str, chat: Chat) -> str | None:
    """The message ``line`` sends to the model, or None when it was one of the chat's
    commands (answered on the chat's console; ``/exit`` sets ``chat.leaving``)."""
    text = line.strip()
    if text.startswith("//"):
        return line.lstrip()[1:]
    found = _COMMAND.fullmatch(text)
    if found is None:
        return line
    name, rest = found.group(1).lower(), (found.group(2) or "").strip()
    command = _COMMANDS.get(name)
    if command is None:
        _refuse(
            chat,
            f"no command /{found.group(1)}: /help lists them (a message that begins with / "
            "is sent when it begins with //)",
        )
        return None
    try:
        command(chat, rest)
    except NotedError as exc:  # a store that cannot answer: the chat goes on
        _refuse(chat, f"error: {exc}")
    return None


def _note(chat: Chat, said: str) -> None:
    chat.console.print(Text(printable(said), style="dim"))


def _refuse(chat: Chat, said: str) -> None:
    chat.errors.print(Text(printable(said), style="red"))


def _memory(chat: Chat) -> Memory | None:
    """The agent's memory; when the agent uses none (memory off), the chat's, else one
    over the agent's store, searching by words."""
    if chat.agent.memory is not None:
        return chat.agent.memory.memory
    if chat.memory is not None:
        return chat.memory
    db = chat.agent.db
    return Memory(db=db, embedder=None) if isinstance(db, MemoryStore) else None


def _help(chat: Chat, rest: str) -> None:
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    for usage, said in _HELP:
        table.add_row(Text(usage, style="bold"), said)
    chat.console.print(table)


def _memories(chat: Chat, rest: str) -> None:
    memory = _memory(chat)
    if memory is None:
        _note(chat, "this agent keeps no memories (it has no store of them)")
        return
    if not chat.agent.wait_for_memories(timeout=UPDATE_WAIT):
        _note(chat, "the memory update of the last turn is still running: not shown yet")
    user = chat.user
    if rest:
        found = memory.search_user_memories(rest, user_id=user, limit=FOUND_SHOWN)
        title = f"Memories of user {user} matching {quoted_query(rest)} ({len(found)})"
        chat.console.print(memory_table(found, title, False, match_column(found), MATCH_LEGEND))
        return
    shown = memory.get_user_memories(user, limit=MEMORIES_SHOWN)
    if not shown:
        _note(chat, f"nothing remembered about user {user} yet")
        return
    total = memory.db.count_memories(MemoryQuery(user_id=user))
    title = f"Memories of user {user}, newest first ({len(shown)} of {total})"
    chat.console.print(memory_table(shown, title, False))


def _forget(chat: Chat, rest: str) -> None:
    if not rest or len(rest.split()) != 1:
        _refuse(chat, "usage: /forget ID (the ids are in /memories)")
        return
    memory = _memory(chat)
    if memory is None:
        _note(chat, "this agent keeps no memories (it has no store of them)")
        return
    user = chat.user
    known = memory.get_user_memory(rest, user)
    if known is None or not memory.delete_user_memory(rest, user):
        _refuse(chat, f"no memory {rest} of user {user} (/memories lists them)")
        return
    _note(chat, f"forgot {rest}: {known.memory}")


def _new(chat: Chat, rest: str) -> None:
    chat.session = new_session_id()
    _note(chat, f"new session {chat.session} (what was learned about you stays)")


def _session(chat: Chat, rest: str) -> None:
    _note(chat, f"session {chat.session}")


def _exit(chat: Chat, rest: str) -> None:
    chat.leaving = True


_COMMANDS: Final[dict[str, Command]] = {
    "help": _help,
    "memories": _memories,
    "forget": _forget,
    "new": _new,
    "session": _session,
    "exit": _exit,
    "quit": _exit,
}
_HELP: Final = (
    ("/memories", f"what is remembered about you, newest first (up to {MEMORIES_SHOWN})"),
    ("/memories WORDS", "the remembered facts that best match WORDS"),
    ("/forget ID", "delete one remembered fact (its id is in /memories)"),
    ("/new", "start a new session (what was learned about you stays)"),
    ("/session", "the id of this session, to go on with it later"),
    ("/exit", "leave (as exit, quit, Ctrl-D)"),
    ("//TEXT", "send a message that begins with /"),
)
