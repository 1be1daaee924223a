"""The rules of a memory write that every store keeps, written once.

A store is left the primitives its database is good at (reading what it holds of some ids,
writing rows and history rows in one transaction, a script, a conditional update); the
rules come from here:

- **Ownership**: a memory id belongs to the user who stored it. An upsert that names
  another user's id is refused with :func:`foreign_memory` before anything is written
  (:func:`upsert_changes`), and a batch is checked whole first on a store that cannot undo
  a change (:func:`write_batch`).
- **History**: every add, overwrite and delete is one :class:`Change`, and its event row
  (:data:`~noted.db._rows.EVENT_COLUMNS` order) is built by :func:`history_rows`: the same
  ids, actor, session, run and time on every store.
- **A replace's record**: the memory keeps its creation time and each id the replace
  does not give (:func:`replaced_fields`); the store writes the record whole.
- **Embeddings**: a write's new record says whether the memory keeps its stored embedding
  (:func:`clears_embedding`: a new memory has none, a changed text loses the one made from
  the old text). The store reads the stored side and writes the record in one atomic unit
  (a transaction, its lock, a compare-and-set), so the decision is made on what it replaces
  and a vector never outlives its text.
- **Capabilities**: each store declares what its database gives (:class:`Capabilities`);
  the core reads them where behaviour differs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Generic, NamedTuple, Protocol, TypeVar, cast

from noted._time import to_micros
from noted.audit import AuditContext, EventType, new_event_ids, resolve_audit
from noted.db._rows import decode_topics, stamped_keys
from noted.db.base import (
    MemoryQuery,
    MemoryStore,
    QueryVector,
    ScoredMemory,
    WriteBatch,
    check_page,
    write_in_transaction,
)
from noted.errors import ConflictError, UserError
from noted.retrieval.vectors import check_centering
from noted.schema import UserMemory, UserStats

__all__ = [
    "KEPT_UNLESS_GIVEN",
    "Capabilities",
    "Change",
    "PageRules",
    "PendingCount",
    "PendingCounts",
    "StoredSide",
    "UndoingStore",
    "additions",
    "batch_changes",
    "clears_embedding",
    "deletions",
    "event_stamp",
    "foreign_memory",
    "history_rows",
    "keyword_user",
    "readable_topics",
    "replaced_fields",
    "replacement",
    "unchanged_only",
    "upsert_changes",
    "write_batch",
]

T = TypeVar("T")  # how a store holds topics: JSON text (SQL) or a list (documents)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a store's database does itself.

    ``transactions``: a failed write undoes the rest of its transaction, so a batch is
    all or nothing by itself; without them the core checks a batch whole before any of
    it is written. ``native_fulltext``: keyword search runs in the database (else BM25 in
    Python over the user's memories). ``native_vectors``: semantic search can run in the
    database (else exact cosine in Python)."""

    transactions: bool
    native_fulltext: bool = False
    native_vectors: bool = False


class Change(NamedTuple, Generic[T]):
    """One memory's change, as its history event records it."""

    memory_id: str
    user_id: str
    event: EventType
    old_memory: str | None
    new_memory: str | None
    old_topics: T | None
    new_topics: T | None


class StoredSide(NamedTuple, Generic[T]):
    """What the rules need of a stored memory: its owner, text and topics."""

    user_id: str
    memory: str
    topics: T


def clears_embedding(change: Change[Any]) -> bool:
    """Whether the write that makes ``change`` leaves the memory without an embedding: a new
    memory has none, and one whose text changes loses the embedding made from its old text
    (an overwrite with the same text keeps it). Stores write this decision as part of the
    record, in the same atomic write as the text."""
    return change.event != "update" or change.old_memory != change.new_memory


KEPT_UNLESS_GIVEN: Final = ("input", "agent_id", "team_id", "session_id")


def replaced_fields(given: Mapping[str, Any], stored: Mapping[str, Any]) -> dict[str, Any]:
    """What the record a replace writes takes from the memory it replaces: always its
    ``created_at``, and each of :data:`KEPT_UNLESS_GIVEN` the replace gives as None. The
    rest (text, topics, ``updated_at``) is the replace's own. Stores write the record
    whole, decided on the stored memory read in the same atomic write."""
    kept = {"created_at": stored["created_at"]}
    for name in KEPT_UNLESS_GIVEN:
        if given.get(name) is None:
            kept[name] = stored.get(name)
    return kept


def replacement(
    memory_id: str, user_id: str, stored: tuple[str, T], text: str, topics: T
) -> Change[T]:
    """The ``"update"`` change of a replace of the stored (text, topics)."""
    return Change(memory_id, user_id, "update", stored[0], text, stored[1], topics)


def foreign_memory(memory_id: str) -> ConflictError:
    """What every store raises for a memory id of another user."""
    return ConflictError(f"memory_id {memory_id!r} belongs to another user; nothing was written")


def upsert_changes(
    entries: Iterable[tuple[str, str, str, T]], stored: Mapping[str, StoredSide[T]]
) -> list[Change[T]]:
    """The history of an upsert of (memory_id, user_id, text, topics) entries, in order:
    an ``"add"`` for a new id, an ``"update"`` of what is stored (the same id twice in one
    batch is an add, then an update of it). ConflictError, before anything is written,
    if an id belongs to another user, stored or earlier in the batch."""
    current = dict(stored)
    changes: list[Change[T]] = []
    for memory_id, user_id, text, topics in entries:
        old = current.get(memory_id)
        if old is None:
            changes.append(Change(memory_id, user_id, "add", None, text, None, topics))
        elif old.user_id != user_id:
            raise foreign_memory(memory_id)
        else:
            change = Change(memory_id, user_id, "update", old.memory, text, old.topics, topics)
            changes.append(change)
        current[memory_id] = StoredSide(user_id, text, topics)
    return changes


def batch_changes(
    user_id: str,
    clear: bool,
    deletes: Iterable[str],
    updates: Iterable[tuple[str, str, str, T]],
    adds: Iterable[tuple[str, str, str, T]],
    stored: Mapping[str, StoredSide[T]],
) -> tuple[list[Change[T] | None], list[Change[T]]]:
    """What a :class:`~noted.db.base.WriteBatch` of ``user_id`` will change, decided before
    it is written, for a store that reads first and writes after (with nothing changed in
    between, which it makes sure of): ``stored`` holds the stored sides of its updates'
    and adds' ids as they are before the batch. Per update its change, or None when the
    memory is not the user's by then (a clear or delete of the batch, or never); and the
    adds' changes (:func:`upsert_changes`, so ConflictError for another user's id)."""
    view = dict(stored)
    if clear:
        view = {i: side for i, side in view.items() if side.user_id != user_id}
    for memory_id in deletes:
        side = view.get(memory_id)
        if side is not None and side.user_id == user_id:
            del view[memory_id]
    updated: list[Change[T] | None] = []
    for memory_id, owner, text, topics in updates:
        side = view.get(memory_id)
        if side is None or side.user_id != owner:
            updated.append(None)
            continue
        updated.append(replacement(memory_id, owner, (side.memory, side.topics), text, topics))
        view[memory_id] = StoredSide(owner, text, topics)
    return updated, upsert_changes(adds, view)


def additions(entries: Iterable[tuple[str, str, str, T]]) -> list[Change[T]]:
    """The ``"add"`` changes of (memory_id, user_id, text, topics) memories new to the store."""
    return [
        Change(memory_id, user_id, "add", None, text, None, topics)
        for memory_id, user_id, text, topics in entries
    ]


def deletions(found: Iterable[tuple[str, str, str, T]]) -> list[Change[T]]:
    """The ``"delete"`` changes of (memory_id, user_id, text, topics) memories deleted."""
    return [
        Change(memory_id, user_id, "delete", text, None, topics, None)
        for memory_id, user_id, text, topics in found
    ]


def event_stamp(audit: AuditContext, at: Any) -> tuple[Any, ...]:
    """The last columns of every event row of one write: actor, session_id, run_id, time."""
    return (audit.actor, audit.session_id, audit.run_id, at)


def history_rows(
    changes: Sequence[Change[Any]], audit: AuditContext, at: Any
) -> list[tuple[Any, ...]]:
    """One event row per change (EVENT_COLUMNS order), each with a new event id, all
    written by ``audit`` at ``at`` (in the store's own form of a time)."""
    stamp = event_stamp(audit, at)
    return [
        (event_id, *change._replace(old_topics=readable_topics(change.old_topics)), *stamp)
        for event_id, change in zip(new_event_ids(len(changes)), changes, strict=True)
    ]


def readable_topics(topics: T) -> T:
    """Stored topics as an event records them: as they are when they are a list of
    strings (or its JSON text), else an empty list. A memory whose stored topics are
    damaged (a hand-edited row) is deleted or replaced with its old text recorded and no
    old topics, so that its history stays readable."""
    if isinstance(topics, str):
        try:
            decode_topics(topics)
        except (ValueError, TypeError):  # json.JSONDecodeError is a ValueError
            return cast(T, "[]")
    elif topics is not None and not (
        isinstance(topics, list | tuple) and all(isinstance(t, str) for t in topics)
    ):
        return cast(T, [])
    return topics


class DeleteRules:
    """The delete methods of :class:`~noted.db.base.MemoryStore` once: the audit context
    resolved, ids taken once each in the order given, nothing asked for no ids; the
    backend deletes (recording a ``"delete"`` event per memory, see :func:`deletions`)."""

    def delete_memories(
        self, memory_ids: Sequence[str], user_id: str, *, audit: AuditContext | None = None
    ) -> int:
        context = resolve_audit(audit)
        ids = list(dict.fromkeys(memory_ids))
        return self._delete_ids(ids, user_id, context) if ids else 0

    def clear_memories(self, user_id: str, *, audit: AuditContext | None = None) -> int:
        return self._delete_all(user_id, resolve_audit(audit))

    def clear_all_memories(self, *, audit: AuditContext | None = None) -> int:
        return self._delete_all(None, resolve_audit(audit))

    def _delete_ids(self, memory_ids: list[str], user_id: str, audit: AuditContext) -> int:
        """Delete those of ``memory_ids`` (distinct, at least one) that ``user_id`` owns."""
        raise NotImplementedError

    def _delete_all(self, user_id: str | None, audit: AuditContext) -> int:
        """Delete every memory of ``user_id``, or of every user when it is None."""
        raise NotImplementedError


def keyword_user(query: MemoryQuery) -> str:
    """The user a keyword search is for: keyword search spans one user, so a query that
    names none is a UserError (semantic search's rule is
    :func:`~noted.retrieval.vectors.search_target`)."""
    if query.user_id is None:
        raise UserError("keyword search is for one user: give a user_id")
    return query.user_id


class PageRules:
    """The paged reads of :class:`~noted.db.base.MemoryStore` that take a bare limit
    (``memories_to_embed``, ``get_user_stats``) once: the limit and offset checked
    (UserError for one that is not a non-negative integer, or None for the limit), a
    limit of 0 answered without a query; the backend reads the page."""

    def memories_to_embed(
        self, user_id: str | None, model: str, limit: int | None = None
    ) -> list[UserMemory]:
        check_page(limit, 0)
        return [] if limit == 0 else self._unembedded(user_id, model, limit)

    def get_user_stats(self, limit: int | None = None, offset: int = 0) -> list[UserStats]:
        check_page(limit, offset)
        return [] if limit == 0 else self._user_stats(limit, offset)

    def _unembedded(self, user_id: str | None, model: str, limit: int | None) -> list[UserMemory]:
        """At most ``limit`` (a positive integer, or None for all) memories of ``user_id``
        (or of everyone) without an embedding made by ``model``, by ``created_at`` then
        ``memory_id``."""
        raise NotImplementedError

    def _user_stats(self, limit: int | None, offset: int) -> list[UserStats]:
        """A page (``limit`` positive or None) of per-user counts and last updates, the
        most recently updated user first (ties by user id)."""
        raise NotImplementedError


class VectorHelper(Protocol):
    """A store's embeddings and semantic search, kept by a helper object of its own."""

    def search(
        self, query: MemoryQuery, vector: QueryVector, model: str, centering: float = 0.0
    ) -> list[ScoredMemory]: ...

    def to_embed(self, user_id: str | None, model: str, limit: int | None) -> list[UserMemory]: ...

    def count_to_embed(self, user_id: str | None, model: str) -> int: ...

    def store(self, model: str, items: Sequence[tuple[UserMemory, QueryVector]]) -> int: ...


class EmbeddingsInHelper:
    """The embedding methods of :class:`~noted.db.base.MemoryStore` for a store whose
    vectors are kept by a helper (``_vectors``: SQLite's and PostgreSQL's)."""

    _vectors: VectorHelper

    def semantic_search(
        self, query: MemoryQuery, vector: QueryVector, model: str, centering: float = 0.0
    ) -> list[ScoredMemory]:
        return self._vectors.search(query, vector, model, check_centering(centering))

    def _unembedded(self, user_id: str | None, model: str, limit: int | None) -> list[UserMemory]:
        return self._vectors.to_embed(user_id, model, limit)  # PageRules's primitive

    def count_memories_to_embed(self, user_id: str | None, model: str) -> int:
        return self._vectors.count_to_embed(user_id, model)

    def set_embeddings(self, model: str, items: Sequence[tuple[UserMemory, QueryVector]]) -> int:
        return self._vectors.store(model, items)


@dataclass(frozen=True, slots=True)
class PendingCount:
    """A user's count of memories without an embedding by a model, at ``generation``;
    ``ids`` are those memories when the store listed them (else None)."""

    generation: int
    count: int
    ids: frozenset[str] | None = None
    token: str = ""  # what the store's change log calls the write that made ``generation``


class PendingCounts:
    """Each user's count of memories without an embedding by a model, kept with the
    generation of the user's memories it was counted at: a semantic search asks before it
    searches, and while the generation stays (nothing written or embedded since), the
    count stands. At most ``most`` are kept (all are dropped past that). For stores whose
    writes move a per-user generation on (SQLite, Redis, PostgreSQL)."""

    def __init__(self, most: int = 10_000) -> None:
        self._most = most
        self._kept: dict[tuple[str, str], PendingCount] = {}

    def get(self, user_id: str, model: str, generation: int) -> int | None:
        """The kept count, if it was counted at ``generation``."""
        kept = self._kept.get((user_id, model))
        return kept.count if kept is not None and kept.generation == generation else None

    def entry(self, user_id: str, model: str) -> PendingCount | None:
        """What is kept for the user and model, at whatever generation."""
        return self._kept.get((user_id, model))

    def put(
        self,
        user_id: str,
        model: str,
        generation: int,
        count: int,
        ids: frozenset[str] | None = None,
        token: str = "",
    ) -> None:
        if len(self._kept) >= self._most:
            self._kept.clear()
        self._kept[(user_id, model)] = PendingCount(generation, count, ids, token)

    def clear(self) -> None:
        self._kept.clear()


class UndoingStore(MemoryStore, Protocol):
    """What :func:`write_batch` asks of a store: its capabilities, who owns some memory
    ids (of those it holds), and when some of a user's memories last changed."""

    @property
    def capabilities(self) -> Capabilities: ...

    def memory_owners(self, memory_ids: Sequence[str]) -> Mapping[str, str]: ...

    def memory_times(self, memory_ids: Sequence[str], user_id: str) -> Mapping[str, int]:
        """The ``updated_at`` (microseconds) of the user's memories among ``memory_ids``,
        read in the transaction the store holds open around a batch (their rows locked
        until it ends, where the store locks rows)."""
        ...


def unchanged_only(batch: WriteBatch, stored: Mapping[str, int]) -> WriteBatch:
    """``batch`` without the updates and deletes of the memories of its ``unchanged`` that
    changed since they were read, or are gone: ``stored`` holds the ``updated_at``
    (microseconds) of those the user still has."""
    changed = {i for i, read in batch.unchanged if stored.get(i) != to_micros(read)}
    return replace(
        batch,
        deletes=tuple(i for i in batch.deletes if i not in changed),
        updates=tuple(m for m in batch.updates if m.memory_id not in changed),
        unchanged=(),
    )


def write_batch(
    store: UndoingStore, batch: WriteBatch, audit: AuditContext | None
) -> list[UserMemory]:
    """A batch as the store's own calls, inside the transaction the store holds open
    around this call if it has them. Without transactions (the first change cannot be
    undone when a later one fails) the one change that can be refused, an add with another
    user's id, is looked for first: then nothing is written."""
    if batch.unchanged:
        ids = [memory_id for memory_id, _ in batch.unchanged]
        batch = unchanged_only(batch, store.memory_times(ids, batch.user_id))
    if batch.adds and not store.capabilities.transactions:
        ids = [stamped_keys(m)[0] for m in batch.adds]
        held = store.memory_owners(ids)
        for memory_id in ids:
            owner = held.get(memory_id)
            if owner is not None and owner != batch.user_id:
                raise foreign_memory(memory_id)
    return write_in_transaction(store, batch, audit)
