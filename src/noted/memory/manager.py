"""MemoryManager: one model call per turn decides every memory change.

The model sees the new messages and a bounded list of the user's existing memories that
matter for them, numbered 1..k, and answers with operations on those numbers. The answer
is checked (:mod:`noted.memory.operations`) before anything is written; what does not pass
is dropped and logged, and malformed output changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from noted._time import from_micros, now_micros
from noted.audit import AuditContext
from noted.db.base import MemoryQuery, MemoryStore
from noted.errors import UserError
from noted.memory.index import MemoryIndex
from noted.memory.operations import (
    Operation,
    Permissions,
    Plan,
    number_memories,
    operations_schema,
    parse_operations,
)
from noted.memory.prompts import manager_system_prompt, manager_user_prompt
from noted.memory.relevance import rank_memories
from noted.models.base import ChatModel
from noted.models.registry import get_model
from noted.models.types import Message, ModelRequest, Usage
from noted.schema import UserMemory, new_memory_id

__all__ = ["MemoryManager", "MemoryUpdate", "apply_plan"]

log = logging.getLogger("noted.memory")


@dataclass(slots=True)
class MemoryUpdate:
    """What one pass of the manager did."""

    operations: list[Operation] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    memory_ids: list[str] = field(default_factory=list)  # added or updated
    model_calls: int = 0
    usage: Usage = field(default_factory=Usage)


class MemoryManager:
    """Extracts facts about a user from conversations and keeps them current.

    With no ``model``, the agent's (or the Memory's) model is used. Adding and updating
    are allowed by default; deleting single memories and clearing all of a user's
    memories only when ``delete_memories`` / ``clear_memories`` say so.
    """

    def __init__(
        self,
        model: ChatModel | str | None = None,
        *,
        system_message: str | None = None,
        memory_capture_instructions: str | None = None,
        additional_instructions: str | None = None,
        add_memories: bool = True,
        update_memories: bool = True,
        delete_memories: bool = False,
        clear_memories: bool = False,
        memories_in_prompt: int = 30,
        candidates: int = 200,
    ) -> None:
        self.model = None if model is None else get_model(model)
        self.system_message = system_message
        self.memory_capture_instructions = memory_capture_instructions
        self.additional_instructions = additional_instructions
        self.permissions = Permissions(
            add=add_memories, update=update_memories, delete=delete_memories, clear=clear_memories
        )
        for name, value in (("memories_in_prompt", memories_in_prompt), ("candidates", candidates)):
            if type(value) is not int or value < 1:
                raise UserError(f"{name} must be an integer >= 1, got {value!r}")
        self.memories_in_prompt = memories_in_prompt
        self.candidates = candidates

    def system_prompt(self) -> str:
        return manager_system_prompt(
            self.permissions,
            capture_instructions=self.memory_capture_instructions,
            additional_instructions=self.additional_instructions,
            system_message=self.system_message,
        )

    def relevant_memories(
        self, db: MemoryStore, user_id: str, text: str, index: MemoryIndex | None = None
    ) -> list[UserMemory]:
        """The user's memories that matter most for ``text``, at most ``memories_in_prompt``.

        Ranked by shared words, then recency, within the ``candidates`` most recent
        memories; with an ``index``, the best hybrid matches among all the user's memories
        come first (two thirds of the places), so an old fact on the subject is found too.
        """
        recent = db.list_memories(MemoryQuery(user_id=user_id, limit=self.candidates))
        ranked = rank_memories(recent, text, self.memories_in_prompt)
        if index is None or not text.strip():
            return ranked
        wanted = -(-2 * self.memories_in_prompt // 3)
        found = index.hybrid(MemoryQuery(user_id=user_id, limit=wanted), text)
        chosen = {r.memory.memory_id: r.memory for r in found}
        for memory in ranked:
            if len(chosen) >= self.memories_in_prompt:
                break
            chosen.setdefault(memory.memory_id, memory)
        return list(chosen.values())

    def shown_memories(
        self, db: MemoryStore, user_id: str, text: str, index: MemoryIndex | None = None
    ) -> dict[int, UserMemory]:
        """The existing memories the model is shown for ``text``, numbered 1..k."""
        return number_memories(self.relevant_memories(db, user_id, text, index))

    async def aprocess(
        self,
        messages: Sequence[Message],
        *,
        user_id: str,
        db: MemoryStore,
        model: ChatModel | None = None,
        audit: AuditContext | None = None,
        agent_id: str | None = None,
        max_memory_length: int = 5000,
        index: MemoryIndex | None = None,
    ) -> MemoryUpdate:
        """Read a turn, ask the model once, apply the checked operations (and embed what
        was written, with an ``index``)."""
        chat_model = self.model or model
        if chat_model is None:
            raise UserError("the memory manager needs a model: MemoryManager(model=...)")
        said = " ".join(m.content for m in messages if m.role == "user" and m.content)
        update = MemoryUpdate()
        if not said.strip():
            return update  # nothing the user said: nothing to learn, no model call
        shown = await asyncio.to_thread(self.shown_memories, db, user_id, said, index)
        request = ModelRequest(
            messages=[
                Message("system", self.system_prompt()),
                Message("user", manager_user_prompt(messages, shown)),
            ],
            response_schema=operations_schema(shown, self.permissions),
            response_schema_name="memory_operations",
        )
        response = await chat_model.acomplete(request)
        update.model_calls = 1
        update.usage = response.usage
        plan = parse_operations(
            response.content, shown, self.permissions, max_memory_length, salvage=True
        )
        for reason in plan.rejected:
            log.warning("memory operation for user %r dropped: %s", user_id, reason)
        update.rejected = plan.rejected
        context = audit or AuditContext(actor="manager")
        written = await asyncio.to_thread(
            apply_plan, db, plan, shown, user_id, said, agent_id, context
        )
        if index is not None and written:
            await asyncio.to_thread(index.embed_written, written)
        update.memory_ids = [m.memory_id for m in written if m.memory_id is not None]
        update.operations = plan.operations
        return update


def apply_plan(
    db: MemoryStore,
    plan: Plan,
    shown: dict[int, UserMemory],
    user_id: str,
    said: str,
    agent_id: str | None,
    audit: AuditContext,
) -> list[UserMemory]:
    """Write a checked plan; return the memories updated and added, as stored."""
    by_id = {m.memory_id: m for m in shown.values()}
    written: list[UserMemory] = []
    added: list[UserMemory] = []
    for op in plan.operations:
        now = from_micros(now_micros())
        if op.kind == "clear":
            db.clear_memories(user_id, audit=audit)
        elif op.kind == "delete" and op.memory_id is not None:
            db.delete_memories([op.memory_id], user_id, audit=audit)
        elif op.kind == "update" and op.memory_id is not None and op.memory is not None:
            changed = by_id[op.memory_id].copy()
            changed.memory = op.memory
            changed.topics = list(op.topics)
            changed.updated_at = now
            if db.update_memory(changed, audit=audit):
                written.append(changed)
        elif op.kind == "add" and op.memory is not None:
            added.append(
                UserMemory(
                    op.memory,
                    topics=list(op.topics),
                    input=said[:5000],
                    memory_id=new_memory_id(),
                    user_id=user_id,
                    agent_id=agent_id,
                    session_id=audit.session_id,
                    created_at=now,
                    updated_at=now,
                )
            )
    if added:
        db.upsert_memories(added, audit=audit)
        written.extend(added)
    return written
