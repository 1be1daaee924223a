"""Memory: the standalone API to add, replace, delete, list, clear and search user memories."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Final

from noted import _portal
from noted._async import async_twin
from noted.audit import Actor, AuditContext, MemoryEvent
from noted.db.base import (
    MemoryQuery,
    MemoryStore,
    ScoredMemory,
    SessionStore,
    SortField,
    SortOrder,
    check_page,
)
from noted.db.memory import InMemoryDb
from noted.db.urls import open_store
from noted.errors import ConflictError, DamagedMemoryError, NotFoundError, UserError
from noted.limits import MAX_MEMORY_LENGTH
from noted.memory.door import DEFAULT_USER_ID, MemoryDoor, resolve_user
from noted.memory.index import HYBRID_DEPTH, MemoryIndex, Progress, memory_index
from noted.memory.manager import MemoryManager, MemoryUpdate
from noted.memory.search import agentic_search
from noted.memory.selection import lifted, select_memories
from noted.memory.summary import SessionSummarizer, read_for_update
from noted.models.base import ChatModel
from noted.models.registry import get_model
from noted.models.types import Message
from noted.retrieval.choice import DEFAULT_EMBEDDER
from noted.retrieval.embedders import Embedder
from noted.retrieval.fusion import check_half_life
from noted.schema import (
    MemoryMatch,
    UserMemory,
    UserStats,
    check_id,
    check_new_user_id,
    check_topics,
    check_unicode,
    require_id,
)
from noted.sessions import SessionSummary
from noted.tracing import _hooks as tracing

__all__ = ["DEFAULT_USER_ID", "RETRIEVAL_METHODS", "Memory"]

RETRIEVAL_METHODS: Final = ("last_n", "first_n", "keyword", "semantic", "hybrid", "agentic")
_NEEDS_QUERY: Final = ("keyword", "semantic", "hybrid", "agentic")
AGENTIC_CANDIDATES: Final = 100  # how many memories agentic search shows the model


def _query(
    user_id: str | None,
    topics: Iterable[str] | str | None,
    agent_id: str | None,
    team_id: str | None,
    sort_by: SortField = "updated_at",
    sort_order: SortOrder = "desc",
    limit: int | None = None,
    offset: int = 0,
    updated_after: datetime | None = None,
    updated_before: datetime | None = None,
) -> MemoryQuery:
    """A validated query for one user's memories (a single topic may be a plain string)."""
    return MemoryQuery(
        user_id=resolve_user(user_id),
        topics=()
        if topics is None
        else tuple(check_topics([topics] if isinstance(topics, str) else topics)),
        agent_id=check_id("agent_id", agent_id),
        team_id=check_id("team_id", team_id),
        updated_after=updated_after,
        updated_before=updated_before,
        sort_by=sort_by,
        sort_order=sort_order,
        limit=limit,
        offset=offset,
    )


class Memory:
    """User memories on a store: ``Memory()`` keeps them in this process,
    ``Memory(db=SqliteDb(db_file="tmp/memory.db"))`` (or ``Memory(db="tmp/memory.db")``, any
    string :func:`~noted.db.open_store` takes) in a file.

    Every method is scoped by ``user_id`` (``"default"`` when omitted); every I/O method has an
    async twin named with an ``a`` prefix (``aadd_user_memory`` ...). Every write is recorded
    in the memory's history under ``actor`` (``"api"`` unless told otherwise).

    ``embedder`` makes memories searchable by meaning, and ``search_user_memories`` then
    defaults to hybrid search. By default it is the embedded local model (or
    ``$NOTED_EMBEDDER``), loaded on first use, and memories are embedded by the user's next
    search so writes stay fast; ``embedder=None`` (or ``"none"``) turns it off. A named
    embedder (``"local"``, ``"openai:<model>"``, an :class:`~noted.retrieval.Embedder`)
    embeds each memory when it is written; ``embed_on_write`` says otherwise.

    ``model`` is used to create memories from messages, for agentic search and for session
    summaries (an agent given this Memory uses its own model when this is None).
    ``delete_memories`` and ``clear_memories`` let the memory manager delete single
    memories and clear all of a user's memories; pass ``memory_manager`` (and
    ``summarizer``) to configure them fully instead.
    """

    def __init__(
        self,
        db: MemoryStore | str | None = None,
        *,
        model: ChatModel | str | None = None,
        embedder: Embedder | str | None = DEFAULT_EMBEDDER,
        embed_on_write: bool | None = None,
        memory_manager: MemoryManager | None = None,
        summarizer: SessionSummarizer | None = None,
        delete_memories: bool = False,
        clear_memories: bool = False,
        max_memory_length: int = MAX_MEMORY_LENGTH,
        actor: Actor = "api",
    ) -> None:
        if isinstance(db, str):  # as `noted --db`: a SQLite file or a database URL
            db = open_store(db)
        if db is not None and not isinstance(db, MemoryStore):
            raise UserError(
                "db must be a memory store such as SqliteDb, or a string open_store() takes "
                f"('memory.db', 'postgresql://...'), got {db!r}"
            )
        if memory_manager is not None and (delete_memories or clear_memories):
            raise UserError(
                "with memory_manager=..., set delete_memories and clear_memories on the "
                "MemoryManager itself"
            )
        self._audit = AuditContext(actor=actor)
        self.db: MemoryStore = InMemoryDb() if db is None else db
        self.model = None if model is None else get_model(model)
        self.index = memory_index(self.db, embedder, embed_on_write)
        self.memory_manager = memory_manager or MemoryManager(
            delete_memories=delete_memories, clear_memories=clear_memories
        )
        self.summarizer = summarizer or SessionSummarizer()
        self.door = MemoryDoor(self.db, self.index, max_memory_length)

    @property
    def max_memory_length(self) -> int:
        """The longest memory text this Memory writes, in characters."""
        return self.door.max_length

    @property
    def embedder(self) -> Embedder | None:
        return None if self.index is None else self.index.embedder

    def _index(self, needs: str) -> MemoryIndex:
        """The index, for what ``needs`` says needs an embedder ("semantic search needs
        an embedder"); a UserError saying so, and how to give one, without it."""
        if self.index is None:
            raise UserError(
                f"{needs}, and this memory has none: "
                "Memory(db, embedder='local') in Python, --embedder local for noted's "
                "commands and servers (the embedded default model)"
            )
        return self.index

    @property
    def actor(self) -> Actor:
        """Who this Memory's writes are recorded as in the history."""
        return self._audit.actor

    def acting_as(self, actor: Actor) -> Memory:
        """This Memory with its writes recorded under ``actor``: the same store, index
        (its embedder and how it keeps the vectors up), model and settings."""
        if actor == self.actor:
            return self
        other = copy.copy(self)
        other._audit = AuditContext(actor=actor)
        return other

    def __repr__(self) -> str:
        return f"Memory(db={self.db!r})"

    def _model(self, owner: MemoryManager | SessionSummarizer | None = None) -> ChatModel:
        model = (owner.model if owner is not None else None) or self.model
        if model is None:
            raise UserError(
                "this needs a model: Memory(model=...), e.g. model='openai:gpt-4o-mini'"
            )
        return model

    def _sessions(self) -> SessionStore:
        if not isinstance(self.db, SessionStore):
            raise UserError(f"{self.db!r} keeps no sessions; use a db such as SqliteDb")
        return self.db

    # -- writes (all through the door) -----------------------------------------------------

    def add_user_memory(self, memory: UserMemory, user_id: str | None = None) -> str:
        """Store a memory for a user and return its id.

        A memory carrying the id of another user's memory is refused with ConflictError.
        """
        (stored,) = self.door.add([memory], user_id, self._audit)
        assert stored.memory_id is not None
        return stored.memory_id

    def add_user_memories(
        self, memories: Iterable[UserMemory], user_id: str | None = None
    ) -> list[str]:
        """Store many memories in one transaction (all or nothing: an invalid memory or an
        id given twice writes none); return their ids."""
        return [m.memory_id for m in self.door.add(memories, user_id, self._audit) if m.memory_id]

    def import_user_memories(self, memories: Iterable[UserMemory]) -> int:
        """Store memories exactly as given (ids, users, timestamps), as a restore from export.

        Missing ids are generated, a missing user is ``"default"``, missing timestamps are now.
        All or nothing: one invalid or conflicting memory (an id given twice too) writes
        none of them.
        """
        return len(self.door.restore(memories, self._audit))

    def replace_user_memory(
        self, memory_id: str, memory: UserMemory, user_id: str | None = None
    ) -> str:
        """Replace the text and topics of one of the user's memories; keep its creation time.

        Returns the id, as Agno's does (:meth:`replace_user_memory_record` returns the
        memory as stored). Raises NotFoundError when the user has no memory with this id
        (another user's id included): nothing is written then.
        """
        self.replace_user_memory_record(memory_id, memory, user_id)
        return memory_id

    def replace_user_memory_record(
        self, memory_id: str, memory: UserMemory, user_id: str | None = None
    ) -> UserMemory:
        """:meth:`replace_user_memory`, answering with the memory exactly as stored (its
        kept ``created_at`` and ids included)."""
        return self.door.replace(memory_id, memory, user_id, self._audit)

    def edit_user_memory(
        self,
        memory_id: str,
        user_id: str | None = None,
        *,
        memory: str | None = None,
        topics: list[str] | None = None,
    ) -> UserMemory:
        """Change the text, the topics or both of one of the user's memories, keeping the
        rest (its input, agent, team, session and creation time); answer it as stored.

        A change that restates the stored text and topics writes nothing (no event, the
        same ``updated_at``), as the REST API's PATCH, the MCP tool ``update_memory`` and
        ``noted memories edit`` do through here. Raises UserError when neither is given,
        NotFoundError when the user has no memory with this id. A memory whose stored
        topics are damaged (read with ``damaged`` set and no topics) is repaired by a change
        that gives its topics; a change of its text alone raises
        :class:`~noted.errors.DamagedMemoryError`, as it would keep topics nobody can read.
        A memory whose stored text is over this Memory's ``max_memory_length`` (stored by
        one with a higher limit) keeps that text through a change of its topics.
        """
        if memory is None and topics is None:
            raise UserError("nothing to change: give the memory's new text, its topics or both")
        user = resolve_user(user_id)
        current = self.get_user_memory(memory_id, user)
        if current is None:
            raise NotFoundError(f"user {user!r} has no memory with id {memory_id!r}")
        if current.damaged is not None and topics is None:
            raise DamagedMemoryError(memory_id, current.damaged)
        changed = UserMemory(
            current.memory if memory is None else memory,
            topics=current.topics if topics is None else topics,
            input=current.input,
            agent_id=current.agent_id,
            team_id=current.team_id,
            session_id=current.session_id,
            created_at=current.created_at,
        )
        if current.damaged is None and (changed.memory, changed.topics) == (
            current.memory,
            current.topics,
        ):
            return current
        # Its text as stored passes over this Memory's length limit (one stored with a
        # higher limit keeps its topics editable); a new text does not.
        return self.door.replace(memory_id, changed, user, self._audit, stored_text=current.memory)

    def delete_user_memory(self, memory_id: str, user_id: str | None = None) -> bool:
        """Delete one of the user's memories; False when the user has no such memory."""
        return self.door.delete([require_id("memory_id", memory_id)], user_id, self._audit) == 1

    def delete_user_memories(self, memory_ids: Sequence[str], user_id: str | None = None) -> int:
        """Delete several of the user's memories; return how many existed and were deleted."""
        return self.door.delete(memory_ids, user_id, self._audit)

    def clear(self, user_id: str | None = None) -> int:
        """Delete every memory of one user, or of every user when no user is named."""
        return self.door.clear(user_id, self._audit)

    # -- reads ----------------------------------------------------------------------------

    def get_user_memory(self, memory_id: str, user_id: str | None = None) -> UserMemory | None:
        """One of the user's memories, or None (also for another user's memory id)."""
        return self.db.get_memory(require_id("memory_id", memory_id), resolve_user(user_id))

    def get_memory_history(self, memory_id: str, user_id: str | None = None) -> list[MemoryEvent]:
        """Every recorded add, update and delete of one of the user's memories, oldest first.

        A deleted memory keeps its history, so its last text can still be read here; another
        user's memory id has none (an empty list).
        """
        return self.db.get_memory_history(require_id("memory_id", memory_id), resolve_user(user_id))

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

    @tracing.traced("search")
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
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        recency_weight: float = 0.0,
        half_life: timedelta = timedelta(days=30),
    ) -> list[MemoryMatch]:
        """Find the user's memories.

        - ``"last_n"`` / ``"first_n"``: newest / oldest first (``"last_n"`` is the default
          without a query);
        - ``"keyword"``: the memories sharing words with ``query``, best BM25 match first;
        - ``"semantic"``: the memories closest in meaning to ``query`` (needs an embedder);
        - ``"hybrid"``: both fused, the default for a query when an embedder is configured
          (``"keyword"`` otherwise); ``recency_weight`` (0..1) favours newer memories, their
          weight halving every ``half_life``;
        - ``"agentic"``: the model picks the memories that answer ``query`` from a bounded
          list of candidates (one model call).

        Every method returns :class:`~noted.schema.MemoryMatch` objects: the memories
        with a ``score`` where the method ranks by one (keyword, semantic, hybrid; None
        otherwise). The filters apply inside every search.
        """
        if query is not None and not isinstance(query, str):
            raise UserError(f"query must be a string, got {type(query).__name__}")
        if query is not None:  # a lone surrogate (bytes that were not UTF-8) matches nothing
            check_unicode("query", query)
        method = retrieval_method or (
            "last_n" if query is None else "hybrid" if self.index is not None else "keyword"
        )
        if method not in RETRIEVAL_METHODS:
            raise UserError(
                f"retrieval_method must be one of {', '.join(RETRIEVAL_METHODS)}, got {method!r}"
            )
        check_page(limit, 0)
        check_half_life(half_life)
        if method in _NEEDS_QUERY and (query is None or not query.strip()):
            raise UserError(f"{method} search needs a query")
        selected = _query(
            user_id,
            topics,
            agent_id,
            team_id,
            limit=limit,
            updated_after=updated_after,
            updated_before=updated_before,
        )
        text = query or ""  # a query is required above for every method that reads it
        found: list[ScoredMemory]
        if method == "keyword":
            found = self.db.keyword_search(selected, text)
        elif method == "semantic":
            found = self._index(f"{method} search needs an embedder").semantic(selected, text)
        elif method == "hybrid":
            # read as deep as the fusion does, so the best matches' episodes are lifted from
            # among all it found (selection.lifted) and a shorter page is the head of a
            # longer one
            deep = None if limit is None else max(limit, HYBRID_DEPTH)
            found = lifted(
                self._index(f"{method} search needs an embedder").hybrid(
                    dataclasses.replace(selected, limit=deep),
                    text,
                    recency_weight=recency_weight,
                    half_life=half_life,
                )
            )[:limit]
        elif method == "agentic":
            model = self._model()
            candidates = self._candidates(selected, text)
            chosen = _portal.run(agentic_search(model, text, candidates, limit))
            return [MemoryMatch.of(m) for m in chosen]
        else:
            order: SortOrder = "desc" if method == "last_n" else "asc"
            listed = self.db.list_memories(dataclasses.replace(selected, sort_order=order))
            return [MemoryMatch.of(m) for m in listed]
        return [MemoryMatch.of(r.memory, r.score) for r in found]

    def _candidates(self, selected: MemoryQuery, text: str) -> list[UserMemory]:
        """What agentic search shows the model: the best matches among all the user's
        memories (hybrid with an embedder, keyword without), then the newest."""
        wide = dataclasses.replace(selected, limit=AGENTIC_CANDIDATES)
        return select_memories(self.db, wide, text, AGENTIC_CANDIDATES, index=self.index)

    def reindex_user_memories(
        self, user_id: str | None = None, *, progress: Progress | None = None
    ) -> int:
        """Embed the memories (of one user, or of every user) that have no embedding from
        this Memory's embedder: after a change of embedder, or memories written without
        one. ``progress(done, total)`` is called after each batch. Return how many."""
        index = self._index("reindexing needs an embedder to compute the vectors")
        return index.reindex(check_id("user_id", user_id), progress=progress)

    # -- model-driven: memories from messages, session summaries ----------------------------

    @tracing.traced("create_memories")
    async def acreate_user_memories(
        self,
        message: str | None = None,
        messages: Iterable[Message] | None = None,
        user_id: str | None = None,
    ) -> MemoryUpdate:
        """Let the memory manager learn from a message (or a conversation): one model
        call decides every memory to add, update (or delete, when allowed)."""
        if (message is None) == (messages is None):
            raise UserError("give either message='...' or messages=[Message(...), ...]")
        if message is not None:
            if not isinstance(message, str) or not message.strip():
                raise UserError(f"message must be a non-empty string, got {message!r}")
            turn = [Message("user", message)]
        else:
            if isinstance(messages, str | bytes | Message) or not isinstance(messages, Iterable):
                raise UserError("messages must be a list of Message objects")
            turn = list(messages)  # once: a generator is read here, and only here
            if not all(isinstance(m, Message) for m in turn):
                raise UserError("messages must be a list of Message objects")
        for m in turn:
            if m.content:
                check_unicode("message", m.content)
        return await self.memory_manager.aprocess(
            turn,
            user_id=check_new_user_id(resolve_user(user_id)),
            door=self.door,
            model=self._model(self.memory_manager),
            audit=AuditContext(actor="manager"),
        )

    def create_user_memories(
        self,
        message: str | None = None,
        messages: Iterable[Message] | None = None,
        user_id: str | None = None,
    ) -> MemoryUpdate:
        """Sync :meth:`acreate_user_memories`."""
        return _portal.run(self.acreate_user_memories(message, messages, user_id))

    async def acreate_session_summary(
        self, session_id: str, user_id: str | None = None
    ) -> SessionSummary:
        """Summarize the session (updating its summary with the runs it does not cover
        yet) and store it; one model call, none when the summary is current."""
        store = self._sessions()
        session_id = require_id("session_id", session_id)
        user = resolve_user(user_id)
        missing = NotFoundError(f"user {user!r} has no session {session_id!r}")
        try:
            previous, runs = await read_for_update(store, session_id, user)
        except ConflictError:  # another user's session
            raise missing from None
        none = previous is None and not runs
        if none and not await asyncio.to_thread(store.get_runs, session_id, user, last_n=1):
            raise missing
        summary = await self.summarizer.asummarize(previous, runs, self.model)
        if summary is not previous:
            await asyncio.to_thread(store.set_session_summary, session_id, user, summary)
        return summary

    def create_session_summary(self, session_id: str, user_id: str | None = None) -> SessionSummary:
        """Sync :meth:`acreate_session_summary`."""
        return _portal.run(self.acreate_session_summary(session_id, user_id))

    def get_session_summary(
        self, session_id: str, user_id: str | None = None
    ) -> SessionSummary | None:
        """The stored summary of one of the user's sessions, or None."""
        return self._sessions().get_session_summary(
            require_id("session_id", session_id), resolve_user(user_id)
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
    areplace_user_memory_record = async_twin(replace_user_memory_record)
    aedit_user_memory = async_twin(edit_user_memory)
    adelete_user_memory = async_twin(delete_user_memory)
    adelete_user_memories = async_twin(delete_user_memories)
    aclear = async_twin(clear)
    aget_user_memory = async_twin(get_user_memory)
    aget_memory_history = async_twin(get_memory_history)
    aget_user_memories = async_twin(get_user_memories)
    acount_user_memories = async_twin(count_user_memories)
    asearch_user_memories = async_twin(search_user_memories)
    areindex_user_memories = async_twin(reindex_user_memories)
    aget_session_summary = async_twin(get_session_summary)
    aget_topics = async_twin(get_topics)
    aget_user_stats = async_twin(get_user_stats)
