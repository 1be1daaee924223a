"""Memory: the standalone API to add, replace, delete, list, clear and search user memories."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from noted._async import async_twin
from noted._time import from_micros, now_micros
from noted.audit import Actor, AuditContext, MemoryEvent
from noted.db.base import MemoryQuery, MemoryStore, SortField, SortOrder, check_page
from noted.db.memory import InMemoryDb
from noted.errors import NotFoundError, UserError
from noted.schema import UserMemory, UserStats, check_id, check_topics, new_memory_id

__all__ = ["DEFAULT_USER_ID", "RETRIEVAL_METHODS", "Memory"]

DEFAULT_USER_ID: Final = "default"
DEFAULT_MAX_MEMORY_LENGTH: Final = 5000
RETRIEVAL_METHODS: Final = ("last_n", "first_n")
_LATER_METHODS: Final = ("agentic", "semantic", "keyword", "hybrid")


def _resolve_user(user_id: str | None, memory: UserMemory | None = None) -> str:
    given = check_id("user_id", user_id)
    carried = None if memory is None else memory.user_id
    if given is not None and carried is not None and given != carried:
        raise UserError(f"user_id {given!r} does not match the memory's own user_id {carried!r}")
    return given or carried or DEFAULT_USER_ID


def _query(
    user_id: str | None,
    topics: Iterable[str] | str | None,
    agent_id: str | None,
    team_id: str | None,
    sort_by: SortField = "updated_at",
    sort_order: SortOrder = "desc",
    limit: int | None = None,
    offset: int = 0,
) -> MemoryQuery:
    """A validated query for one user's memories (a single topic may be a plain string)."""
    return MemoryQuery(
        user_id=_resolve_user(user_id),
        topics=()
        if topics is None
        else tuple(check_topics([topics] if isinstance(topics, str) else topics)),
        agent_id=check_id("agent_id", agent_id),
        team_id=check_id("team_id", team_id),
        sort_by=sort_by,
        sort_order=sort_order,
        limit=limit,
        offset=offset,
    )


class Memory:
    """User memories on a store: ``Memory()`` keeps them in this process,
    ``Memory(db=SqliteDb(db_file="tmp/memory.db"))`` in a file.

    Every method is scoped by ``user_id`` (``"default"`` when omitted); every I/O method has an
    async twin named with an ``a`` prefix (``aadd_user_memory`` ...). Every write is recorded
    in the memory's history under ``actor`` (``"api"`` unless told otherwise).
    """

    def __init__(
        self,
        db: MemoryStore | None = None,
        *,
        max_memory_length: int = DEFAULT_MAX_MEMORY_LENGTH,
        actor: Actor = "api",
    ) -> None:
        if db is not None and not isinstance(db, MemoryStore):
            raise UserError(f"db must be a memory store such as SqliteDb, got {db!r}")
        if type(max_memory_length) is not int or max_memory_length < 1:
            raise UserError(
                f"max_memory_length must be a positive integer, got {max_memory_length!r}"
            )
        self._audit = AuditContext(actor=actor)
        self.db: MemoryStore = InMemoryDb() if db is None else db
        self.max_memory_length = max_memory_length

    @property
    def actor(self) -> Actor:
        """Who this Memory's writes are recorded as in the history."""
        return self._audit.actor

    def __repr__(self) -> str:
        return f"Memory(db={self.db!r})"

    # -- pure helpers -------------------------------------------------------------------

    def _check_length(self, memory: UserMemory) -> None:
        if not isinstance(memory, UserMemory):
            raise UserError(f"memory must be a UserMemory, got {type(memory).__name__}")
        if len(memory.memory) > self.max_memory_length:
            raise UserError(
                f"memory text is {len(memory.memory)} characters; the limit is "
                f"{self.max_memory_length} (Memory(max_memory_length=...))"
            )

    def _stamped(
        self, memory: UserMemory, user_id: str | None, memory_id: str | None = None
    ) -> UserMemory:
        """A copy of ``memory`` ready to store: id, user and timestamps set (updated now)."""
        self._check_length(memory)
        stamped = memory.copy()
        stamped.user_id = _resolve_user(user_id, memory)
        stamped.memory_id = memory_id or memory.memory_id or new_memory_id()
        stamped.updated_at = from_micros(now_micros())
        stamped.created_at = memory.created_at or stamped.updated_at
        return stamped

    # -- writes ---------------------------------------------------------------------------

    def add_user_memory(self, memory: UserMemory, user_id: str | None = None) -> str:
        """Store a memory for a user and return its id.

        A memory carrying the id of another user's memory is refused with ConflictError.
        """
        stamped = self._stamped(memory, user_id)
        self.db.upsert_memories([stamped], audit=self._audit)
        assert stamped.memory_id is not None
        return stamped.memory_id

    def add_user_memories(
        self, memories: Iterable[UserMemory], user_id: str | None = None
    ) -> list[str]:
        """Store many memories in one transaction (all or nothing); return their ids."""
        stamped = [self._stamped(m, user_id) for m in memories]
        self.db.upsert_memories(stamped, audit=self._audit)
        return [m.memory_id for m in stamped if m.memory_id is not None]

    def import_user_memories(self, memories: Iterable[UserMemory]) -> int:
        """Store memories exactly as given (ids, users, timestamps), as a restore from export.

        Missing ids are generated, a missing user is ``"default"``, missing timestamps are now.
        All or nothing: one invalid or conflicting memory writes none of them.
        """
        restored: list[UserMemory] = []
        for m in memories:
            stamped = self._stamped(m, None)
            stamped.updated_at = m.updated_at or stamped.updated_at
            restored.append(stamped)
        self.db.upsert_memories(restored, audit=self._audit)
        return len(restored)

    def replace_user_memory(
        self, memory_id: str, memory: UserMemory, user_id: str | None = None
    ) -> str:
        """Replace the text and topics of one of the user's memories; keep its creation time.

        Raises NotFoundError when the user has no memory with this id (another user's id
        included): nothing is written then.
        """
        memory_id = self._memory_id(memory_id)
        new = self._stamped(memory, user_id, memory_id=memory_id)
        if not self.db.update_memory(new, audit=self._audit):  # keeps the stored created_at
            raise NotFoundError(f"user {new.user_id!r} has no memory with id {memory_id!r}")
        return memory_id

    def delete_user_memory(self, memory_id: str, user_id: str | None = None) -> bool:
        """Delete one of the user's memories; False when the user has no such memory."""
        memory_id = self._memory_id(memory_id)
        return self.db.delete_memories([memory_id], _resolve_user(user_id), audit=self._audit) == 1

    def delete_user_memories(self, memory_ids: Sequence[str], user_id: str | None = None) -> int:
        """Delete several of the user's memories; return how many existed and were deleted."""
        if isinstance(memory_ids, str):
            raise UserError("memory_ids must be a list of ids, not a single string")
        ids = [self._memory_id(m) for m in memory_ids]
        return self.db.delete_memories(ids, _resolve_user(user_id), audit=self._audit)

    def clear(self, user_id: str | None = None) -> int:
        """Delete every memory of one user, or of every user when no user is named."""
        if user_id is None:
            return self.db.clear_all_memories(audit=self._audit)
        return self.db.clear_memories(_resolve_user(user_id), audit=self._audit)

    # -- reads ----------------------------------------------------------------------------

    @staticmethod
    def _memory_id(memory_id: object) -> str:
        checked = check_id("memory_id", memory_id)
        if checked is None:
            raise UserError("memory_id is required")
        return checked

    def get_user_memory(self, memory_id: str, user_id: str | None = None) -> UserMemory | None:
        """One of the user's memories, or None (also for another user's memory id)."""
        return self.db.get_memory(self._memory_id(memory_id), _resolve_user(user_id))

    def get_memory_history(self, memory_id: str, user_id: str | None = None) -> list[MemoryEvent]:
        """Every recorded add, update and delete of one of the user's memories, oldest first.

        A deleted memory keeps its history, so its last text can still be read here; another
        user's memory id has none (an empty list).
        """
        return self.db.get_memory_history(self._memory_id(memory_id), _resolve_user(user_id))

    def get_user_memories(
        self,
        user_id: str | None = None,
        *,
        topics: Iterable[str] | str | None = None,
        agent_id: str | None = None,
        team_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        sort_by: SortField = "updated_at",
        sort_order: SortOrder = "desc",
    ) -> list[UserMemory]:
        """The user's memories, most recently updated first unless asked otherwise."""
        return self.db.list_memories(
            _query(user_id, topics, agent_id, team_id, sort_by, sort_order, limit, offset)
        )

    def count_user_memories(
        self,
        user_id: str | None = None,
        *,
        topics: Iterable[str] | str | None = None,
        agent_id: str | None = None,
        team_id: str | None = None,
    ) -> int:
        return self.db.count_memories(_query(user_id, topics, agent_id, team_id))

    def search_user_memories(
        self,
        query: str | None = None,
        user_id: str | None = None,
        limit: int | None = None,
        retrieval_method: str | None = None,
        *,
        topics: Iterable[str] | str | None = None,
        agent_id: str | None = None,
        team_id: str | None = None,
    ) -> list[UserMemory]:
        """Find the user's memories: ``"last_n"`` (newest first, the default) or
        ``"first_n"`` (oldest first)."""
        method = retrieval_method or "last_n"
        if method in _LATER_METHODS:
            raise UserError(
                f"retrieval_method {method!r} is not available in this version of noted; "
                f"use one of {', '.join(RETRIEVAL_METHODS)}"
            )
        if method not in RETRIEVAL_METHODS:
            raise UserError(
                f"retrieval_method must be one of {', '.join(RETRIEVAL_METHODS)}, got {method!r}"
            )
        if query is not None and not isinstance(query, str):
            raise UserError(f"query must be a string, got {type(query).__name__}")
        return self.get_user_memories(
            user_id,
            topics=topics,
            agent_id=agent_id,
            team_id=team_id,
            limit=limit,
            sort_by="updated_at",
            sort_order="desc" if method == "last_n" else "asc",
        )

    def get_topics(self, user_id: str | None = None) -> list[str]:
        """The distinct topics of one user's memories, or of everyone's when no user is named."""
        return self.db.get_topics(check_id("user_id", user_id))

    def get_user_stats(self, limit: int | None = None, offset: int = 0) -> list[UserStats]:
        """Per-user memory count and last update, most recently active user first."""
        check_page(limit, offset)
        return self.db.get_user_stats(limit=limit, offset=offset)

    # -- async twins (same behaviour, run in a worker thread) -------------------------------

    aadd_user_memory = async_twin(add_user_memory)
    aadd_user_memories = async_twin(add_user_memories)
    aimport_user_memories = async_twin(import_user_memories)
    areplace_user_memory = async_twin(replace_user_memory)
    adelete_user_memory = async_twin(delete_user_memory)
    adelete_user_memories = async_twin(delete_user_memories)
    aclear = async_twin(clear)
    aget_user_memory = async_twin(get_user_memory)
    aget_memory_history = async_twin(get_memory_history)
    aget_user_memories = async_twin(get_user_memories)
    acount_user_memories = async_twin(count_user_memories)
    asearch_user_memories = async_twin(search_user_memories)
    aget_topics = async_twin(get_topics)
    aget_user_stats = async_twin(get_user_stats)
