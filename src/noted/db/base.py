"""The storage protocol every memory backend satisfies, and the query it answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt

from noted.audit import AuditContext, MemoryEvent
from noted.errors import UserError
from noted.limits import MAX_PAGE
from noted.schema import UserMemory, UserStats, check_time
from noted.sessions import RunResult, Session, SessionSummary

__all__ = [
    "JsonListing",
    "MemoryQuery",
    "MemoryStore",
    "QueryVector",
    "ScoredMemory",
    "SessionStore",
    "SortField",
    "SortOrder",
    "Store",
    "StoreContext",
    "WriteBatch",
    "write_in_transaction",
]

SortField = Literal["updated_at", "created_at"]
SortOrder = Literal["asc", "desc"]
SORT_FIELDS: tuple[SortField, ...] = ("updated_at", "created_at")
SORT_ORDERS: tuple[SortOrder, ...] = ("asc", "desc")
QueryVector = npt.NDArray[np.float32]  # one unit-length vector


def check_page(limit: object, offset: object) -> None:
    if limit is not None and (type(limit) is not int or not 0 <= limit <= MAX_PAGE):
        raise UserError(
            f"limit must be a non-negative integer (at most 2**63 - 1) or None, got {limit!r}"
        )
    if type(offset) is not int or not 0 <= offset <= MAX_PAGE:
        raise UserError(
            f"offset must be a non-negative integer (at most 2**63 - 1), got {offset!r}"
        )


def check_cursor(after: object) -> tuple[datetime, str] | None:
    """``MemoryQuery.after`` checked: None, or a (timezone-aware time, memory id) pair,
    its time in UTC."""
    if after is None:
        return None
    if not isinstance(after, tuple) or len(after) != 2 or not isinstance(after[1], str):
        raise UserError(f"after must be a (time, memory_id) pair or None, got {after!r}")
    when = None if after[0] is None else check_time("after's time", after[0])
    if when is None:
        raise UserError(f"after must be a (time, memory_id) pair or None, got {after!r}")
    return (when, after[1])


def after_cursor(query: MemoryQuery, memory: UserMemory) -> bool:
    """Whether ``memory`` comes strictly after the query's ``after`` in its order (True
    when it has none): the rule every store's listing keeps."""
    if query.after is None:
        return True
    when = getattr(memory, query.sort_by)
    if when is None:
        return False
    key = (when, memory.memory_id or "")
    return key < query.after if query.sort_order == "desc" else key > query.after


@dataclass(frozen=True, slots=True)
class MemoryQuery:
    """Which memories to list, in which order, and which page of them.

    ``user_id=None`` spans every user: only administrative callers (the CLI with ``--all``,
    the server's admin key) build such queries; the :class:`~noted.Memory` API always names
    a user. ``topics`` matches memories that carry any of the given topics;
    ``updated_after`` (inclusive) and ``updated_before`` (exclusive) bound ``updated_at``.

    The order is total: equal times are ordered by ``memory_id``, in the same direction.
    ``after``, a ``(time, memory_id)`` pair, starts the page just past that point of the
    order: only memories whose ``(sort_by value, memory_id)`` comes strictly after it in
    ``sort_order``'s direction are listed (then ``offset`` and ``limit`` apply). Walking
    every page with ``after`` set to the last memory of the page before
    (:meth:`following`) costs the same per page however deep it is, and neither skips nor
    repeats a memory that stays while others are added or deleted meanwhile. Like
    ``limit`` and ``offset`` it picks the page, not the memories: ``count_memories`` and
    the searches do not read it.
    """

    user_id: str | None
    topics: tuple[str, ...] = ()
    agent_id: str | None = None
    team_id: str | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    sort_by: SortField = "updated_at"
    sort_order: SortOrder = "desc"
    limit: int | None = None
    offset: int = 0
    after: tuple[datetime, str] | None = None

    def __post_init__(self) -> None:
        if self.sort_by not in SORT_FIELDS:
            raise UserError(
                f"sort_by must be one of {', '.join(SORT_FIELDS)}, got {self.sort_by!r}"
            )
        if self.sort_order not in SORT_ORDERS:
            raise UserError(f"sort_order must be 'asc' or 'desc', got {self.sort_order!r}")
        check_page(self.limit, self.offset)
        for name in ("updated_after", "updated_before"):
            object.__setattr__(self, name, check_time(name, getattr(self, name)))
        object.__setattr__(self, "after", check_cursor(self.after))

    def following(self, memory: UserMemory) -> Self:
        """This query for the page after ``memory`` (one it listed): ``after`` set to its
        time and id."""
        if memory.memory_id is None:
            raise UserError("a page follows a stored memory: this one has no memory_id")
        when = getattr(memory, self.sort_by)
        if when is None:
            raise UserError(f"a page follows a stored memory: this one has no {self.sort_by}")
        return replace(self, after=(when, memory.memory_id))

    @property
    def filtered(self) -> bool:
        """Whether anything beyond the user narrows the memories."""
        return bool(
            self.topics
            or self.agent_id is not None
            or self.team_id is not None
            or self.updated_after is not None
            or self.updated_before is not None
        )


@dataclass(frozen=True, slots=True)
class WriteBatch:
    """Changes to one user's memories that are written together or not at all: first
    ``clear`` (every memory of the user), then ``deletes``, then ``updates`` (of memories
    that exist; one that is gone meanwhile is skipped), then ``adds``. Every memory is
    stamped (id, ``user_id``, timestamps) and belongs to ``user_id``.

    ``unchanged`` pairs memory ids with the ``updated_at`` they had when the writer read
    them: an update or delete of one that another writer changed since (or deleted) is
    skipped, checked in the batch's transaction, so a decision made on what was read never
    overwrites a newer change."""

    user_id: str
    clear: bool = False
    deletes: tuple[str, ...] = ()
    updates: tuple[UserMemory, ...] = ()
    adds: tuple[UserMemory, ...] = ()
    unchanged: tuple[tuple[str, datetime], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.clear or self.deletes or self.updates or self.adds)


@runtime_checkable
class MemoryStore(Protocol):
    """Where user memories live. Every method is scoped by ``user_id``.

    A memory id that belongs to another user never matches: ``get_memory`` returns None,
    ``update_memory`` and ``delete_memories`` change nothing, and ``upsert_memories``
    raises :class:`~noted.errors.ConflictError` and writes nothing.

    Every write records its changes in the memory's history (see
    :class:`~noted.audit.MemoryEvent`) in the same transaction, with the actor, session and
    run of ``audit`` (``None`` means ``AuditContext()``, the API). A write that changes
    nothing, or fails, records nothing.
    """

    def upsert_memories(
        self, memories: Sequence[UserMemory], *, audit: AuditContext | None = None
    ) -> None:
        """Insert or overwrite each memory (all stamped, with ids and users) in one
        transaction: an ``"add"`` event for a new id, an ``"update"`` for an overwrite."""
        ...

    def write_batch(
        self, batch: WriteBatch, *, audit: AuditContext | None = None
    ) -> list[UserMemory]:
        """Apply ``batch`` in one transaction (all of it, or nothing when it fails), each
        change recorded as its own method would; return the memories updated and added,
        as stored."""
        ...

    def update_memory(
        self, memory: UserMemory, *, audit: AuditContext | None = None
    ) -> UserMemory | None:
        """Overwrite an existing memory of ``memory.user_id`` with the record the core
        decides (:func:`~noted.db.core.replaced_fields`: its ``created_at`` and the ids
        ``memory`` does not give are kept), with an ``"update"`` event; return that record
        as stored, or None when the user has no such memory (nothing is written)."""
        ...

    def get_memory(self, memory_id: str, user_id: str) -> UserMemory | None: ...

    def list_memories(self, query: MemoryQuery) -> list[UserMemory]: ...

    def count_memories(self, query: MemoryQuery) -> int:
        """How many memories match the query's filters (its sort and page are ignored)."""
        ...

    def delete_memories(
        self, memory_ids: Sequence[str], user_id: str, *, audit: AuditContext | None = None
    ) -> int:
        """Delete the given memories of one user; return how many were deleted."""
        ...

    def clear_memories(self, user_id: str, *, audit: AuditContext | None = None) -> int:
        """Delete every memory of one user; return how many were deleted. A store may
        delete them in batches, each with its events (SQLite, Redis): a clear stopped
        part-way leaves whole batches done, and clearing again finishes it."""
        ...

    def clear_all_memories(self, *, audit: AuditContext | None = None) -> int:
        """Delete every memory of every user: a separate, explicit call on purpose."""
        ...

    def keyword_search(
        self, query: MemoryQuery, text: str, *, text_only: bool = False
    ) -> list[ScoredMemory]:
        """The memories ``query`` selects that contain words of ``text``, best BM25 match
        first, at most ``query.limit``; ``query.user_id`` is required. Any text is safe:
        it is never read as query syntax. ``text_only``: only the memories whose own text
        holds one of the words, ranked by the words' occurrences there, not in their topics
        or the conversation they came from (``input``); the selection finds the facts it
        always shows this way."""
        ...

    def semantic_search(
        self, query: MemoryQuery, vector: QueryVector, model: str, centering: float = 0.0
    ) -> list[ScoredMemory]:
        """The memories ``query`` selects that have an embedding made by ``model``, by cosine
        similarity to ``vector`` (unit length), best first, at most ``query.limit``;
        ``query.user_id`` is required. ``centering`` (0 to 1) centres ``vector`` on the
        user's vectors by ``model`` of its size first (see :mod:`noted.retrieval.vectors`)."""
        ...

    def memories_to_embed(
        self, user_id: str | None, model: str, limit: int | None = None
    ) -> list[UserMemory]:
        """Memories of one user (or of everyone) that have no embedding made by ``model``:
        new ones, changed ones, and those embedded by another model; oldest first, the
        same order on every store: by ``created_at``, then by ``memory_id`` (so a smaller
        limit gives the head of the same list, and a memory changed since it was
        embedded keeps its place)."""
        ...

    def count_memories_to_embed(self, user_id: str | None, model: str) -> int: ...

    def set_embeddings(self, model: str, items: Sequence[tuple[UserMemory, QueryVector]]) -> int:
        """Store each memory's embedding made by ``model``, unless the memory has changed
        its text or gone meanwhile (its owner and id must match too); return how many
        were stored. Not an audited change: the memory itself stays as it is."""
        ...

    def get_memory_history(self, memory_id: str, user_id: str) -> list[MemoryEvent]:
        """The recorded changes of one of the user's memories, oldest first; deleted
        memories included. Another user's memory id has no history here."""
        ...

    def get_topics(self, user_id: str | None) -> list[str]:
        """The distinct topics of one user's memories (or everyone's), sorted."""
        ...

    def get_user_stats(self, limit: int | None = None, offset: int = 0) -> list[UserStats]:
        """Per-user memory counts and last update, most recently updated user first."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ScoredMemory:
    """A search result: the memory and how well it matched (higher is better)."""

    memory: UserMemory
    score: float


@runtime_checkable
class SessionStore(Protocol):
    """Where session history lives: sessions, each owned by one user, holding runs in order.

    ``user_id=None`` in ``get_session``, ``list_sessions`` and ``delete_session`` spans every
    user (administrative callers only); otherwise a session of another user is never
    returned, listed or deleted.
    """

    def append_run(self, run: RunResult, *, existing: bool | str = False) -> bool:
        """Add a run at the end of ``run.session_id``, creating the session for
        ``run.user_id`` on its first run; True when it is written.
        :class:`~noted.errors.ConflictError` if the session belongs to another user
        (nothing is written).

        ``existing`` says the run continues a session its caller read as existing when
        the run began: the id of a run the caller read from it (an Agent passes the last
        one it read), or True (whichever session of that id exists). The run is appended
        only while that session is there: a session deleted meanwhile is not created
        again by the run, and one deleted and begun again meanwhile (by another writer,
        under the same id) does not hold the run named, so the run is not its run either
        (False: nothing is written, for either). Checked in the write itself, atomically
        with a concurrent delete."""
        ...

    def get_runs(
        self,
        session_id: str,
        user_id: str,
        *,
        last_n: int | None = None,
        completed_only: bool = False,
    ) -> list[RunResult]:
        """The session's runs, oldest first (only the last ``last_n`` when given). A
        session that does not exist yet has no runs; one that belongs to another user
        raises :class:`~noted.errors.ConflictError`."""
        ...

    def get_session(
        self,
        session_id: str,
        user_id: str | None,
        *,
        last_n: int | None = None,
        offset: int = 0,
    ) -> Session | None:
        """The session with its runs, oldest first, or None: all of them, or (with
        ``last_n``) the last ``last_n`` of those before the newest ``offset``, a page of
        its runs counted from the newest (``run_count`` says how many there are)."""
        ...

    def list_sessions(
        self, user_id: str | None, *, limit: int | None = None, offset: int = 0
    ) -> list[Session]:
        """Sessions without their runs, most recently updated first."""
        ...

    def delete_session(self, session_id: str, user_id: str | None) -> bool:
        """Delete a session and its runs; False when there was no such session."""
        ...

    def get_session_summary(self, session_id: str, user_id: str) -> SessionSummary | None:
        """The session's summary, or None (no summary yet, or no such session of the user)."""
        ...

    def set_session_summary(self, session_id: str, user_id: str, summary: SessionSummary) -> bool:
        """Store the session's summary in place of the previous one; False when the
        session does not exist, or does not hold the run the summary names as its last
        (it was deleted, and perhaps begun again, while the summary was written).
        :class:`~noted.errors.ConflictError` if it belongs to another user (nothing is
        written)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class JsonListing(Protocol):
    """A store that can write a listing as JSON itself, which serves the server's most
    frequent request without building a Python object per memory (SqliteDb does)."""

    def list_memories_json(self, query: MemoryQuery) -> list[str]:
        """``list_memories(query)``, each memory's ``to_dict()`` as JSON text."""
        ...


@runtime_checkable
class Store(MemoryStore, SessionStore, Protocol):
    """A backend that keeps both memories and sessions, as every noted backend does."""


class StoreContext:
    """What every backend class shares: ``with SqliteDb(...) as db:`` closes it at the end."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_in_transaction(
    store: MemoryStore, batch: WriteBatch, audit: AuditContext | None
) -> list[UserMemory]:
    """A batch as the store's own calls, for a store that runs them inside the one
    transaction it holds open around this call."""
    if batch.clear:
        store.clear_memories(batch.user_id, audit=audit)
    if batch.deletes:
        store.delete_memories(batch.deletes, batch.user_id, audit=audit)
    written: list[UserMemory] = []
    for memory in batch.updates:
        stored = store.update_memory(memory, audit=audit)
        if stored is not None:
            written.append(stored)
    if batch.adds:
        store.upsert_memories(batch.adds, audit=audit)
        written.extend(batch.adds)
    return written
