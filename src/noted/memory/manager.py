"""MemoryManager: one model call per turn decides every memory change.

The model sees the new messages and a bounded list of the user's existing memories that
matter for them, numbered 1..k, and answers with operations on those numbers. The answer
is checked (:mod:`noted.memory.operations`) before anything is written; what does not pass
is dropped and logged, and malformed output changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from noted.audit import AuditContext
from noted.db.base import MemoryQuery, MemoryStore
from noted.errors import UserError
from noted.limits import MAX_OPERATIONS
from noted.memory.door import MemoryDoor
from noted.memory.index import MemoryIndex
from noted.memory.operations import (
    Operation,
    Permissions,
    Plan,
    normalize,
    number_memories,
    operations_schema,
    parse_operations,
)
from noted.memory.prompts import (
    drop_example_copies,
    manager_system_prompt,
    manager_user_prompt,
)
from noted.memory.selection import select_memories
from noted.memory.two_calls import (
    FACTS_SCHEMA,
    facts_as_adds,
    facts_system_prompt,
    facts_user_prompt,
    parse_facts,
    reconcile_system_prompt,
    reconcile_user_prompt,
)
from noted.models.base import ChatModel
from noted.models.registry import get_model
from noted.models.types import Message, ModelRequest, ModelResponse, Usage
from noted.schema import UserMemory
from noted.tracing import _hooks as tracing

__all__ = ["MemoryManager", "MemoryUpdate", "log_dropped"]

log = logging.getLogger("noted.memory")

_SAME_TEXT_DEPTH: Final = 10  # matches read when looking for a fact already stored

DEFAULT_MAX_TOKENS = 256
"""The default cap on one answer of the manager's model: about seven operations."""


@dataclass(slots=True)
class MemoryUpdate:
    """What one pass of the manager did."""

    operations: list[Operation] = field(default_factory=list)  # written
    rejected: list[str] = field(default_factory=list)  # dropped, each with its reason
    memory_ids: list[str] = field(default_factory=list)  # added or updated
    model_calls: int = 0
    usage: Usage = field(default_factory=Usage)


# Drops that are the model doing its job (a fact it was told already, a conversation with
# no facts): logged at INFO; the others are faults of its answer, logged at WARNING.
_ORDINARY_DROPS: Final = ("already stored", "changes nothing", "the answer says")


def log_dropped(user_id: str, reasons: Sequence[str]) -> None:
    """Log each operation a manager's pass dropped, with its reason."""
    for reason in reasons:
        level = logging.INFO if reason.startswith(_ORDINARY_DROPS) else logging.WARNING
        log.log(level, "memory operation for user %r dropped: %s", user_id, reason)


class MemoryManager:
    """Extracts facts about a user from conversations and keeps them current.

    With no ``model``, the agent's (or the Memory's) model is used. Adding and updating
    are allowed by default; deleting single memories and clearing all of a user's
    memories only when ``delete_memories`` / ``clear_memories`` say so.

    ``max_tokens`` caps the length of each answer (the model's own limit applies when it
    is lower; None leaves only the model's): the default fits a plan of about seven
    operations, so an answer that runs away (a small model repeating operations) stops
    early. An answer cut off at the limit is malformed: nothing of it is written, and the
    drop is logged.

    ``two_calls=True`` asks for the facts first and for the operations second (see
    :mod:`noted.memory.two_calls`): smaller tasks for small models, a second call when the
    turn states facts and existing memories were shown.
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
        candidates: int = 60,
        max_operations: int = MAX_OPERATIONS,
        max_tokens: int | None = DEFAULT_MAX_TOKENS,
        two_calls: bool = False,
    ) -> None:
        self.model = None if model is None else get_model(model)
        self.system_message = system_message
        self.memory_capture_instructions = memory_capture_instructions
        self.additional_instructions = additional_instructions
        self.permissions = Permissions(
            add=add_memories, update=update_memories, delete=delete_memories, clear=clear_memories
        )
        limits = (
            ("memories_in_prompt", memories_in_prompt),
            ("candidates", candidates),
            ("max_operations", max_operations),
        )
        for name, value in limits:
            if type(value) is not int or value < 1:
                raise UserError(f"{name} must be an integer >= 1, got {value!r}")
        if max_tokens is not None and (type(max_tokens) is not int or max_tokens < 1):
            raise UserError(f"max_tokens must be an integer >= 1 or None, got {max_tokens!r}")
        self.memories_in_prompt = memories_in_prompt
        self.candidates = candidates
        self.max_operations = max_operations
        self.max_tokens = max_tokens
        if type(two_calls) is not bool:
            raise UserError(f"two_calls must be True or False, got {two_calls!r}")
        if two_calls and system_message is not None:
            raise UserError(
                "system_message replaces the one-call prompt; it cannot be combined with "
                "two_calls=True (use memory_capture_instructions or additional_instructions)"
            )
        self.two_calls = two_calls

    def system_prompt(self) -> str:
        return manager_system_prompt(
            self.permissions,
            capture_instructions=self.memory_capture_instructions,
            additional_instructions=self.additional_instructions,
            system_message=self.system_message,
        )

    @tracing.traced("retriever")
    def relevant_memories(
        self,
        db: MemoryStore,
        user_id: str,
        text: str,
        index: MemoryIndex | None = None,
        *,
        agent_id: str | None = None,
    ) -> list[UserMemory]:
        """The user's memories that matter most for ``text``, at most ``memories_in_prompt``:
        the best of the ``candidates`` best matches of a search over all the user's
        memories (hybrid with an ``index``, keyword without), then the newest (see
        :mod:`noted.memory.selection`). With ``agent_id``, only that agent's memories and
        those written with no agent id."""
        query = MemoryQuery(user_id=user_id, limit=self.candidates)
        return select_memories(
            db, query, text, self.memories_in_prompt, index=index, agent_id=agent_id
        )

    def shown_memories(
        self, db: MemoryStore, user_id: str, text: str, index: MemoryIndex | None = None
    ) -> dict[int, UserMemory]:
        """The existing memories the model is shown for ``text``, numbered 1..k."""
        return number_memories(self.relevant_memories(db, user_id, text, index))

    @tracing.traced("extraction")
    async def aprocess(
        self,
        messages: Sequence[Message],
        *,
        user_id: str,
        door: MemoryDoor,
        model: ChatModel | None = None,
        audit: AuditContext | None = None,
        agent_id: str | None = None,
    ) -> MemoryUpdate:
        """Read a turn, ask the model once, and write the checked operations through the
        door (together, or none of them)."""
        update = MemoryUpdate()
        planned = await self.aplan(messages, user_id=user_id, door=door, model=model)
        if planned is None:
            return update  # nothing the user said: nothing to learn, no model call
        plan, shown, said, usage, calls = planned
        update.model_calls = calls
        update.usage = usage
        context = audit or AuditContext(actor="manager")
        applied = await asyncio.to_thread(
            door.apply, plan, shown, user_id, context, said=said, agent_id=agent_id
        )
        update.rejected = plan.rejected + applied.rejected
        log_dropped(user_id, update.rejected)
        update.memory_ids = [m.memory_id for m in applied.written if m.memory_id is not None]
        update.operations = applied.operations
        return update

    async def aplan(
        self,
        messages: Sequence[Message],
        *,
        user_id: str,
        door: MemoryDoor,
        model: ChatModel | None = None,
    ) -> tuple[Plan, dict[int, UserMemory], str, Usage, int] | None:
        """The model's checked (and capped) plan for a turn, with the memories it was
        shown, what the user said, the calls' usage and their number; None (no model
        call) when the user said nothing."""
        chat_model = self.model or model
        if chat_model is None:
            raise UserError("the memory manager needs a model: MemoryManager(model=...)")
        said = " ".join(m.content for m in messages if m.role == "user" and m.content)
        if not said.strip():
            return None
        shown = await asyncio.to_thread(self.shown_memories, door.db, user_id, said, door.index)
        usage = Usage()
        if self.two_calls:
            plan, calls = await self._plan_in_two_calls(
                chat_model, messages, shown, door.max_length, usage, said
            )
        else:
            prompts = (self.system_prompt(), manager_user_prompt(messages, shown))
            plan = await self._operations(chat_model, prompts, shown, door.max_length, usage, said)
            calls = 1
        if self.system_message is None:  # the default prompt, with its examples, was used
            known = "\n".join(m.memory for m in shown.values())
            grounded = "\n".join([*(m.content or "" for m in messages), known])
            answer = "\n".join(m.content or "" for m in messages if m.role == "assistant")
            # With the default capture instructions, a memory of the user's asking, of
            # what the assistant answered or advised, or guessed from what the user asked,
            # is no fact about the user (custom ones may want what the user asks about).
            asking = self.memory_capture_instructions is None
            drop_example_copies(plan, grounded, said, asking=asking, answer=answer, known=known)
        await asyncio.to_thread(self.drop_stored, plan, door, user_id, shown)
        self.cap(plan, shown)
        return plan, shown, said, usage, calls

    async def _ask(
        self,
        model: ChatModel,
        system: str,
        user: str,
        schema: tuple[str, dict[str, Any]],
        usage: Usage,
    ) -> ModelResponse:
        """One call of the manager's model, answering under ``schema`` (its name and JSON
        schema); its usage is added to ``usage``."""
        name, json_schema = schema
        request = ModelRequest(
            messages=[Message("system", system), Message("user", user)],
            response_schema=json_schema,
            response_schema_name=name,
            max_tokens=self.max_tokens,
        )
        response = await tracing.complete(model, request, "memory manager")
        usage.add(response.usage)
        return response

    async def _operations(
        self,
        model: ChatModel,
        prompts: tuple[str, str],
        shown: dict[int, UserMemory],
        max_length: int,
        usage: Usage,
        said: str,
        *,
        ask_facts: bool = True,
    ) -> Plan:
        """The checked operations one call (``prompts``: system, user) answers with."""
        schema = operations_schema(shown, self.permissions, ask_facts=ask_facts)
        response = await self._ask(model, *prompts, ("memory_operations", schema), usage)
        if response.cut_short:
            return self.cut_short(response)
        return parse_operations(
            response.content, shown, self.permissions, max_length, salvage=True, said=said
        )

    async def _plan_in_two_calls(
        self,
        model: ChatModel,
        messages: Sequence[Message],
        shown: dict[int, UserMemory],
        max_length: int,
        usage: Usage,
        said: str,
    ) -> tuple[Plan, int]:
        """The facts first; then, when memories were shown, how they change them (see
        :mod:`noted.memory.two_calls`). The plan and the number of calls."""
        system = facts_system_prompt(self.memory_capture_instructions, self.additional_instructions)
        facts_schema = ("memory_facts", FACTS_SCHEMA)
        first = await self._ask(model, system, facts_user_prompt(messages), facts_schema, usage)
        if first.cut_short:
            return self.cut_short(first), 1
        facts = parse_facts(first.content)
        if facts is None:
            return Plan(rejected=[f"the answer is not JSON facts: {str(first.content)[:200]!r}"]), 1
        removes = self.permissions.delete or self.permissions.clear
        if not shown or not (facts or removes):
            return parse_operations(facts_as_adds(facts), shown, self.permissions, max_length), 1
        prompts = (
            reconcile_system_prompt(self.permissions),
            reconcile_user_prompt(messages, shown, facts),
        )
        plan = await self._operations(
            model, prompts, shown, max_length, usage, said, ask_facts=False
        )
        return plan, 2

    def drop_stored(
        self, plan: Plan, door: MemoryDoor, user_id: str, shown: dict[int, UserMemory]
    ) -> None:
        """Drop the plan's adds of facts the user has stored already but that were not
        shown (those shown are dropped as the answer is checked): each is looked up by its
        words in the memories' own texts, where a memory of the same text ranks first. A
        plan that clears keeps its adds.

        Once ``max_operations`` operations are kept, the rest are kept unsearched: the cap
        drops them all, so an answer of thousands of adds costs as many searches as the cap
        keeps adds (and the stored ones among them), not one per add."""
        if any(op.kind == "clear" for op in plan.operations):
            return
        seen = {m.memory_id for m in shown.values()}
        query = MemoryQuery(user_id=user_id, limit=_SAME_TEXT_DEPTH)
        kept: list[Operation] = []
        for op in plan.operations:
            if len(kept) < self.max_operations and op.kind == "add" and op.memory is not None:
                text = normalize(op.memory)
                found = door.db.keyword_search(query, op.memory, text_only=True)
                if any(
                    hit.memory.memory_id not in seen and normalize(hit.memory.memory) == text
                    for hit in found
                ):
                    plan.rejected.append(f"already stored: {op.memory[:200]!r}")
                    continue
            kept.append(op)
        plan.operations = kept

    def cut_short(self, response: ModelResponse) -> Plan:
        """The empty plan of an answer cut off at its token limit, saying why: and, when
        the model thought first, for how long (its own thinking setting bounds that)."""
        limit = "its token limit" if self.max_tokens is None else f"max_tokens={self.max_tokens}"
        thinking = response.usage.reasoning_tokens
        thought = (
            f" after {thinking} tokens of the model's thinking (the model's "
            "thinking_budget or reasoning_effort bounds it)"
            if thinking
            else ""
        )
        return Plan(
            rejected=[
                f"the answer was cut off at {limit} (MemoryManager(max_tokens=...)){thought}, "
                f"so none of it is used: {str(response.content)[-200:]!r}"
            ]
        )

    def cap(self, plan: Plan, shown: Mapping[int, UserMemory]) -> None:
        """Keep at most ``max_operations`` of a plan's operations; say once what is dropped.

        An add of a shown memory's fact passed as new only because the answer deletes that
        memory (or clears them all): when the cap drops that delete, the add goes too, or
        the fact would be stored twice."""
        extra = len(plan.operations) - self.max_operations
        if extra <= 0:
            return
        dropped = plan.operations[self.max_operations :]
        del plan.operations[self.max_operations :]
        plan.rejected.append(
            f"{extra} more operations than the {self.max_operations} one answer may hold "
            "(MemoryManager(max_operations=...)) were dropped"
        )
        cleared = any(op.kind == "clear" for op in dropped)
        undone = {op.memory_id for op in dropped if op.kind == "delete"}
        stays = {normalize(m.memory) for m in shown.values() if cleared or m.memory_id in undone}
        for op in list(plan.operations):
            if op.kind == "add" and op.memory is not None and normalize(op.memory) in stays:
                plan.operations.remove(op)
                plan.rejected.append(
                    f"already stored (its delete was dropped): {op.memory[:200]!r}"
                )
