"""MemoryDoor: the one way memories are written.

The Memory API, the memory manager's plans, the agent's memory tools, the server, the
command line and imports all write through one door. It checks every value whatever
object it is handed (a :class:`~noted.UserMemory` changed after it was built is checked
again whole), stamps ids, users and times, hands the store one call per write (so the
history is recorded in the same transaction), and keeps embeddings current.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from noted._time import from_micros, now_micros
from noted.audit import AuditContext
from noted.db.base import MemoryStore, WriteBatch
from noted.errors import NotFoundError, UserError
from noted.limits import MAX_INPUT_CHARS, MAX_MEMORY_LENGTH
from noted.memory.index import MemoryIndex
from noted.memory.operations import Operation, Plan
from noted.schema import UserMemory, check_id, check_new_user_id, new_memory_id, require_id

__all__ = ["DEFAULT_USER_ID", "Applied", "MemoryDoor", "TextTooLong", "resolve_user", "told"]

log = logging.getLogger("noted.memory")

DEFAULT_USER_ID = "default"


def resolve_user(user_id: object, memory: UserMemory | None = None) -> str:
    """The user a call names, else the memory's own, else ``"default"``; UserError when
    the two disagree."""
    given = check_id("user_id", user_id)
    carried = None if memory is None else memory.user_id
    if given is not None and carried is not None and given != carried:
        raise UserError(f"user_id {given!r} does not match the memory's own user_id {carried!r}")
    return given or carried or DEFAULT_USER_ID


def _each(memories: object) -> Iterable[object]:
    if isinstance(memories, UserMemory | str | bytes) or not isinstance(memories, Iterable):
        raise UserError(
            f"memories must be a list of UserMemory objects, got {type(memories).__name__}"
        )
    return memories


def _once_each(memories: list[UserMemory]) -> list[UserMemory]:
    """``memories``, when no id is given twice (a write names each memory once)."""
    seen: set[str | None] = set()
    for m in memories:
        if m.memory_id in seen:
            raise UserError(f"memory id {m.memory_id!r} is given twice; nothing was written")
        seen.add(m.memory_id)
    return memories


@dataclass(slots=True)
class Applied:
    """What a plan wrote: the operations written, the memories updated and added, as
    stored, and the operations dropped at the door with the reason for each."""

    operations: list[Operation] = field(default_factory=list)
    written: list[UserMemory] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    moved: dict[str, UserMemory | None] = field(default_factory=dict)
    """The memories whose change was dropped because they changed since they were shown,
    as they are now (None: deleted)."""


class TextTooLong(UserError):
    """A memory text over the limit. Its message names ``Memory(max_memory_length=...)``
    for a Python caller; ``without_hint`` says the same to those who cannot pass it (the
    command's and the MCP tools' users)."""

    def __init__(self, length: int, limit: int) -> None:
        self.without_hint = f"memory text is {length} characters; the limit is {limit}"
        super().__init__(f"{self.without_hint} (Memory(max_memory_length=...))")


def told(exc: Exception) -> str:
    """``exc``'s message as the command and the MCP tools say it: without a hint at the
    Python API."""
    return exc.without_hint if isinstance(exc, TextTooLong) else str(exc)


class MemoryDoor:
    """Writes to ``db``, embedding what it writes with ``index`` (when there is one)."""

    def __init__(
        self,
        db: MemoryStore,
        index: MemoryIndex | None = None,
        max_length: int = MAX_MEMORY_LENGTH,
    ) -> None:
        if type(max_length) is not int or max_length < 1:
            raise UserError(f"max_memory_length must be a positive integer, got {max_length!r}")
        self.db = db
        self.index = index
        self.max_length = max_length

    # -- checks ---------------------------------------------------------------------------

    def check(self, memory: object, *, stored_text: str | None = None) -> UserMemory:
        """A checked copy of ``memory``: every field valid, the text within the limit, or
        the ``stored_text`` it keeps (stored by a Memory with a higher limit)."""
        if not isinstance(memory, UserMemory):
            raise UserError(f"memory must be a UserMemory, got {type(memory).__name__}")
        checked = memory.checked()
        if len(checked.memory) > self.max_length and checked.memory != stored_text:
            raise TextTooLong(len(checked.memory), self.max_length)
        return checked

    def stamp(
        self,
        memory: object,
        user_id: str | None,
        memory_id: str | None = None,
        *,
        stored_text: str | None = None,
    ) -> UserMemory:
        """A checked copy ready to store: id, user and timestamps set (updated now)."""
        stamped = self.check(memory, stored_text=stored_text)
        stamped.user_id = resolve_user(user_id, stamped)
        stamped.memory_id = memory_id or stamped.memory_id or new_memory_id()
        stamped.updated_at = from_micros(now_micros())
        stamped.created_at = stamped.created_at or stamped.updated_at
        return stamped

    # -- writes ---------------------------------------------------------------------------

    def add(
        self, memories: Iterable[object], user_id: str | None, audit: AuditContext
    ) -> list[UserMemory]:
        """Store memories in one transaction (all or nothing), as given or new; under a
        user id without whitespace around it (see :func:`check_new_user_id`)."""
        stamped = _once_each([self.stamp(m, user_id) for m in _each(memories)])
        for memory in stamped:
            check_new_user_id(memory.user_id or DEFAULT_USER_ID)
        self.db.upsert_memories(stamped, audit=audit)
        self._embed(stamped)
        return stamped

    def restore(self, memories: Iterable[object], audit: AuditContext) -> list[UserMemory]:
        """Store memories exactly as given (ids, users, timestamps), as a restore from an
        export: missing ids are new, a missing user is ``"default"``, missing times now."""
        restored: list[UserMemory] = []
        for m in _each(memories):
            stamped = self.stamp(m, None)
            if isinstance(m, UserMemory) and m.updated_at is not None:
                stamped.updated_at = self.check(m).updated_at
            restored.append(stamped)
        self.db.upsert_memories(_once_each(restored), audit=audit)
        self._embed(restored)
        return restored

    def replace(
        self,
        memory_id: object,
        memory: object,
        user_id: str | None,
        audit: AuditContext,
        *,
        stored_text: str | None = None,
    ) -> UserMemory:
        """Overwrite one of the user's memories, keeping its creation time and the ids the
        new memory does not give; the memory as stored. NotFoundError when the user has
        no such memory (nothing is written then). A text over the length limit passes when
        it is ``stored_text``, the memory's own as read (a change of its topics alone)."""
        checked_id = require_id("memory_id", memory_id)
        new = self.stamp(memory, user_id, memory_id=checked_id, stored_text=stored_text)
        stored = self.db.update_memory(new, audit=audit)
        if stored is None:
            raise NotFoundError(f"user {new.user_id!r} has no memory with id {checked_id!r}")
        self._embed([stored])
        return stored

    def delete(self, memory_ids: object, user_id: str | None, audit: AuditContext) -> int:
        """Delete some of the user's memories; how many existed and were deleted."""
        if isinstance(memory_ids, str) or not isinstance(memory_ids, Sequence):
            raise UserError("memory_ids must be a list of ids, not a single string")
        ids = [require_id("memory_id", m) for m in memory_ids]
        return self.db.delete_memories(ids, resolve_user(user_id), audit=audit)

    def clear(self, user_id: str | None, audit: AuditContext) -> int:
        """Delete every memory of one user, or of every user when ``user_id`` is None."""
        if user_id is None:
            return self.db.clear_all_memories(audit=audit)
        return self.db.clear_memories(resolve_user(user_id), audit=audit)

    def apply(
        self,
        plan: Plan,
        shown: Mapping[int, UserMemory],
        user_id: str,
        audit: AuditContext,
        *,
        said: str = "",
        agent_id: str | None = None,
        new_id: Callable[[int], str] | None = None,
        commit: Callable[[WriteBatch], list[UserMemory]] | None = None,
    ) -> Applied:
        """Write a model's checked plan: every change it asks for is built and checked
        here first; one that does not pass is dropped with its reason, and the rest are
        written together in one batch (all of them, or none when the write fails).

        ``new_id(i)`` gives the id of the plan's i-th operation when it adds a memory (a
        background job derives them from its own id, so a retry writes the same
        memories); ``commit`` writes the batch in place of the store's ``write_batch``
        (a job completes in the same transaction)."""
        by_id = {m.memory_id: m for m in shown.values()}
        applied = Applied()
        now = from_micros(now_micros())
        said = said.replace("\x00", "")  # kept as each new memory's input, which holds none
        clear = False
        deletes: list[str] = []
        updates: list[UserMemory] = []
        adds: list[UserMemory] = []
        for index, op in enumerate(plan.operations):
            if self._moved_since_shown(op, by_id, user_id, applied):
                continue
            if op.kind == "clear":
                clear = True
                applied.operations.append(op)
            elif op.kind == "delete" and op.memory_id is not None:
                deletes.append(op.memory_id)
                applied.operations.append(op)
            elif op.memory is not None and op.kind in ("update", "add"):
                if op.kind == "update":
                    candidate = by_id[op.memory_id].copy()
                    candidate.memory = op.memory
                    candidate.topics = list(op.topics)
                    candidate.updated_at = now
                else:
                    memory_id = new_memory_id() if new_id is None else new_id(index)
                    candidate = _new_memory(op, memory_id, user_id, agent_id, said, audit, now)
                try:
                    checked = self.check(candidate)
                except UserError as exc:
                    applied.rejected.append(f"{op.kind} refused at the door: {exc}")
                    continue
                (updates if op.kind == "update" else adds).append(checked)
                applied.operations.append(op)
        batch = WriteBatch(
            user_id,
            clear,
            tuple(deletes),
            tuple(updates),
            tuple(adds),
            _as_shown(by_id, deletes, updates),
        )
        if batch:
            if commit is None:
                applied.written = self.db.write_batch(batch, audit=audit)
            else:
                applied.written = commit(batch)
            self._embed(applied.written)
            _unwritten_updates(applied)
        return applied

    def _moved_since_shown(
        self,
        op: Operation,
        shown: Mapping[str | None, UserMemory],
        user_id: str,
        applied: Applied,
    ) -> bool:
        """Whether ``op`` (an update or delete of a memory the model was shown) is dropped
        because the memory was deleted, or changed by another writer, since it was shown;
        it is then counted in ``applied``. (The store checks this again as it writes, in
        the batch's transaction.)"""
        memory = shown.get(op.memory_id) if op.kind in ("update", "delete") else None
        if memory is None or memory.updated_at is None or op.memory_id is None:
            return False
        current = self.db.get_memory(op.memory_id, user_id)
        if current is not None and current.updated_at == memory.updated_at:
            return False
        applied.moved[op.memory_id] = current
        applied.rejected.append(
            f"{op.kind} of memory {op.memory_id!r} not written: it was deleted since it was shown"
            if current is None
            else f"{op.kind} of memory {op.memory_id!r} not written: another writer changed "
            f"it since it was shown (it now reads {current.memory!r})"
        )
        return True

    def _embed(self, memories: Sequence[UserMemory]) -> None:
        if self.index is not None and memories:
            self.index.embed_written(memories)


def _new_memory(
    op: Operation,
    memory_id: str,
    user_id: str,
    agent_id: str | None,
    said: str,
    audit: AuditContext,
    now: datetime,
) -> UserMemory:
    """The memory an add of a plan makes (to be checked at the door)."""
    memory = UserMemory.__new__(UserMemory)
    memory.memory = op.memory or ""
    memory.topics = list(op.topics)
    memory.input = said[:MAX_INPUT_CHARS] or None
    memory.memory_id = memory_id
    memory.user_id = user_id
    memory.agent_id = agent_id
    memory.team_id = None
    memory.session_id = audit.session_id
    memory.created_at = now
    memory.updated_at = now
    memory.damaged = None
    return memory


def _as_shown(
    shown: Mapping[str | None, UserMemory], deletes: Sequence[str], updates: Sequence[UserMemory]
) -> tuple[tuple[str, datetime], ...]:
    """The shown memories that ``deletes`` and ``updates`` change, with their times as
    shown: a change decided on a memory is written only while it is still as shown."""
    pairs: dict[str, datetime] = {}
    for memory_id in [*deletes, *(u.memory_id for u in updates)]:
        memory = shown.get(memory_id)
        if memory_id is not None and memory is not None and memory.updated_at is not None:
            pairs[memory_id] = memory.updated_at
    return tuple(pairs.items())


def _unwritten_updates(applied: Applied) -> None:
    """Move the updates the store skipped (their memory changed or went between the
    door's look and the write) from the operations written to those dropped."""
    written = {m.memory_id for m in applied.written}
    for op in [o for o in applied.operations if o.kind == "update"]:
        if op.memory_id not in written:
            applied.operations.remove(op)
            applied.rejected.append(
                f"update of memory {op.memory_id!r} not written: it was changed or deleted "
                "by another writer as it was written"
            )
