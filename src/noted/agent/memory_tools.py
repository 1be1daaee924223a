"""Agentic memory: tools the agent calls itself to add, update, delete and clear what it
remembers about the user.

The tools write directly, with the same checks as the memory manager (no nested model
call), and only ever see one user's memories. Memories are named by short numbers: the
ones in the prompt's memory section, and the ones a search or an add returns. A number
the agent was never given names nothing. Each run numbers afresh, after the highest
number that the session's replayed turns name (:func:`numbers_given`), so a number the
model reads in an earlier turn never names another memory now: it names nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

from noted.agent.tools import Tool
from noted.audit import AuditContext
from noted.db.base import MemoryQuery
from noted.memory.door import MemoryDoor
from noted.memory.manager import MemoryManager
from noted.memory.operations import Operation, parse_operations
from noted.memory.selection import scoped
from noted.schema import UserMemory
from noted.sessions import RunResult

__all__ = ["MEMORY_TOOL_NAMES", "WRITING_TOOL_NAMES", "MemoryTools", "numbers_given"]

log = logging.getLogger("noted.agent")

_SEARCH_RESULTS = 10
MEMORY_TOOL_NAMES = (
    "add_memory",
    "update_memory",
    "delete_memory",
    "clear_memories",
    "search_memories",
)
WRITING_TOOL_NAMES = frozenset(MEMORY_TOOL_NAMES) - {"search_memories"}  # they change memories
_definitions: dict[str, Tool] = {}  # read once from the first instance's methods
_NUMBER = re.compile(r"\[(\d{1,4})\]")  # a run's numbers stay far below 10,000


def numbers_given(runs: Sequence[RunResult]) -> int:
    """The highest memory number that the memory tools' calls and answers in ``runs``
    name (0 for none)."""
    top = 0
    for run in runs:
        for message in run.messages:
            for call in message.tool_calls:
                number = call.arguments.get("id") if call.name in MEMORY_TOOL_NAMES else None
                if type(number) is int and 0 < number < 10_000:  # not a model's wild guess
                    top = max(top, number)
            if message.role == "tool" and message.name in MEMORY_TOOL_NAMES:
                top = max([top, *(int(n) for n in _NUMBER.findall(message.content or ""))])
    return top


# A user's tool writes take turns across the runs of the process (each run has its own
# tools): a fact two runs add at once is looked up by the second after the first wrote it.
# Striped: a few locks, each shared by the users whose key falls on it.
_WRITE_LOCKS: Final = tuple(threading.Lock() for _ in range(64))


def _write_lock(store: object, user_id: str) -> threading.Lock:
    return _WRITE_LOCKS[hash((id(store), user_id)) % len(_WRITE_LOCKS)]


class MemoryTools:
    """The memory tools of one run, scoped to ``user_id``."""

    def __init__(
        self,
        door: MemoryDoor,
        manager: MemoryManager,
        user_id: str,
        shown: dict[int, UserMemory],
        audit: AuditContext,
        *,
        said: str = "",
        agent_id: str | None = None,
        scope_agent: str | None = None,
        first: int = 1,
    ) -> None:
        self._scope = scope_agent  # search only its memories and those of no agent
        self._door = door
        self._store = door.db
        self._index = door.index
        self._manager = manager
        self._user_id = user_id
        self._numbers = dict(shown)
        self._first = first  # the run's first number (those before it name nothing)
        self._audit = audit
        self._said = said
        self._agent_id = agent_id
        self._lock = threading.Lock()

    def tools(self) -> list[Tool]:
        """The tools the flags allow (search always)."""
        allowed = self._manager.permissions
        wanted = {
            "add_memory": allowed.add,
            "update_memory": allowed.update,
            "delete_memory": allowed.delete,
            "clear_memories": allowed.clear,
            "search_memories": True,
        }
        tools: list[Tool] = []
        for name in MEMORY_TOOL_NAMES:
            if not wanted[name]:
                continue
            method: Callable[..., Any] = getattr(self, name)
            if name not in _definitions:
                _definitions[name] = Tool.from_function(method)
            tools.append(dataclasses.replace(_definitions[name], function=method))
        return tools

    # -- the tools (their docstrings are what the model reads) ------------------------------

    async def add_memory(self, memory: str, topics: list[str] | None = None) -> str:
        """Remember a new fact about the user, for later conversations.

        Args:
            memory: One short fact in the third person, e.g. "User likes to ski".
            topics: 1-3 short lowercase topics, e.g. ["hobbies"].
        """
        return await self._run({"op": "add", "id": None, "memory": memory, "topics": topics})

    async def update_memory(self, id: int, memory: str, topics: list[str] | None = None) -> str:
        """Replace a remembered fact that changed (the user moved, changed their mind).

        Args:
            id: The memory's number, as shown in brackets.
            memory: The fact as it is now, e.g. "User lives in Seattle".
            topics: 1-3 short lowercase topics; the old ones are kept when omitted.
        """
        return await self._run({"op": "update", "id": id, "memory": memory, "topics": topics})

    async def delete_memory(self, id: int) -> str:
        """Forget one fact: only when the user says it is wrong or asks for it to be forgotten.

        Args:
            id: The memory's number, as shown in brackets.
        """
        return await self._run({"op": "delete", "id": id, "memory": None, "topics": []})

    async def clear_memories(self) -> str:
        """Forget EVERYTHING about the user: only when they clearly ask for that."""
        return await self._run({"op": "clear", "id": None, "memory": None, "topics": []})

    async def search_memories(self, query: str) -> str:
        """Look up what is remembered about the user on a subject.

        Args:
            query: What to look for, e.g. "food preferences".
        """
        return await asyncio.to_thread(self._search, query)

    # -- the work ------------------------------------------------------------------------------

    async def _run(self, item: dict[str, Any]) -> str:
        return await asyncio.to_thread(self._apply, item)

    def _number(self, memory: UserMemory) -> int:
        for number, known in self._numbers.items():
            if known.memory_id == memory.memory_id:
                self._numbers[number] = memory
                return number
        number = max(self._numbers, default=self._first - 1) + 1
        self._numbers[number] = memory
        return number

    def _apply(self, item: dict[str, Any]) -> str:
        number = item.get("id")
        if type(number) is int and number < 1:
            # (the memories looked up below for repeats are keyed below 1: never named)
            return f"Not done: [{number}] names no memory the memory section or search showed."
        if type(number) is int and number < self._first:
            return (
                f"Not done: [{number}] is a number from an earlier turn, and numbers are new "
                "each turn: use those of the memory section or of search_memories."
            )
        with self._lock, _write_lock(self._store, self._user_id):
            shown = dict(self._numbers)
            if item["op"] in ("add", "update") and isinstance(item["memory"], str):
                # Facts already stored in other words are looked up, not only those shown.
                for memory in self._manager.relevant_memories(
                    self._store, self._user_id, item["memory"], self._index, agent_id=self._scope
                ):
                    if all(m.memory_id != memory.memory_id for m in shown.values()):
                        shown[-len(shown) - 1] = memory
            plan = parse_operations(
                json.dumps({"operations": [item]}),
                shown,
                self._manager.permissions,
                self._door.max_length,
            )
            if self._scope is not None and plan.operations == [Operation("clear")]:
                # an agent that sees only its own memories (and those of no agent) forgets
                # those, not what other agents learned
                every = self._store.list_memories(MemoryQuery(user_id=self._user_id))
                plan.operations = [
                    Operation("delete", m.memory_id) for m in scoped(every, self._scope)
                ]
            applied = self._door.apply(
                plan, shown, self._user_id, self._audit, said=self._said, agent_id=self._agent_id
            )
            if applied.moved and isinstance(number := item.get("id"), int):
                return self._moved(number, next(iter(applied.moved.values())))
            refused = plan.rejected + applied.rejected
            if refused:
                log.warning("memory tool call for user %r refused: %s", self._user_id, refused)
                return "Not done: " + "; ".join(refused)
            written = applied.written
            if item["op"] == "clear":
                if self._scope is None:
                    self._numbers.clear()
                    return "Forgot everything about the user."
                gone = {op.memory_id for op in plan.operations}
                self._numbers = {n: m for n, m in self._numbers.items() if m.memory_id not in gone}
                return f"Forgot the {len(gone)} memories of the user that this agent sees."
            kind = plan.operations[0].kind
            if kind == "delete":
                del self._numbers[item["id"]]
                return f"Forgot memory [{item['id']}]."
            if not written:
                return "Not done: the memory no longer exists."
            number = self._number(written[0])
            verb = "Added" if kind == "add" else "Updated"
            return f"{verb} memory [{number}]: {written[0].memory}"

    def _moved(self, number: int, current: UserMemory | None) -> str:
        """The answer to a change of memory [number] that was not made because another
        writer changed or deleted the memory since it was shown (numbered as it is now)."""
        if current is None:
            self._numbers.pop(number, None)
            return f"Not done: memory [{number}] was deleted since it was shown."
        self._numbers[number] = current
        return (
            f"Not done: memory [{number}] was changed since it was shown; it now reads: "
            f"{current.memory}"
        )

    def _search(self, query: str) -> str:
        if not isinstance(query, str) or not query.strip():
            return "Not done: the query must not be empty."
        found = self._manager.relevant_memories(
            self._store, self._user_id, query, self._index, agent_id=self._scope
        )
        with self._lock:
            lines = [
                f"[{self._number(memory)}] {memory.memory}" for memory in found[:_SEARCH_RESULTS]
            ]
        return "\n".join(lines) if lines else "Nothing is remembered about that."
