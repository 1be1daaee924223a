"""Filtering, ordering and search done in Python over one user's memories: for stores whose
server has no full-text or vector index of its own (in-memory, Redis, MongoDB without one).

Stores that keep a copy of each user's memories between searches (Redis, MongoDB) hold it as
a :class:`UserSnapshot` in a :class:`SnapshotCache`: how the copy is read and known to be
current is theirs, ranking it is shared here and answers as :func:`keyword_rank` and
:func:`semantic_rank` do."""

from __future__ import annotations

import bisect
import copy
import heapq
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from operator import attrgetter
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt

from noted._time import to_micros
from noted.db.base import MemoryQuery, ScoredMemory, SortField, after_cursor
from noted.retrieval.ranking import KeywordIndex, PatchedIndex, bm25_scores, query_stems
from noted.retrieval.vectors import (
    UserVectors,
    Vector,
    centred,
    cosine_scores,
    mean_direction,
    top_indices,
)
from noted.schema import UserMemory

__all__ = [
    "PATCHED_FOR",
    "Shape",
    "SnapshotCache",
    "UserSnapshot",
    "keyword_rank",
    "matches",
    "page",
    "semantic_rank",
    "sort_memories",
]

Shape = tuple[str, int]  # the (embedding model, dimensions) of a set of vectors
_T = TypeVar("_T")
_MEMORY_BYTES: Final = 500  # a snapshot's memory's objects, besides its texts (a rough guess)
_TEXT_SEARCHES_KEPT: Final = 8  # a snapshot's text_only searches kept
_FILTERS_KEPT: Final = 8  # a snapshot's filters kept with the memories that pass each
# sort_memories picks a page with a heap when it ends within the first 1/32 of the memories:
# beyond about 1/20 a full sort was as fast (10,000 memories)
_HEAP_BELOW: Final = 32
_NO_TIME: Final = -(2**62)  # where a memory without the time sorted by stands: first
PATCHED_FOR: Final = 60.0  # seconds a snapshot may be patched after it was read whole
_REFRESH_LOCKS: Final = 64  # see SnapshotCache.refreshing
_BUILDING = threading.Lock()  # held while a snapshot builds its keyword index


def matches(query: MemoryQuery, m: UserMemory) -> bool:
    """Whether ``m`` passes the query's filters (its user is the caller's concern)."""
    after, before = query.updated_after, query.updated_before
    return (
        (query.agent_id is None or m.agent_id == query.agent_id)
        and (query.team_id is None or m.team_id == query.team_id)
        and (not query.topics or not set(query.topics).isdisjoint(m.topics))
        and (after is None or (m.updated_at is not None and m.updated_at >= after))
        and (before is None or (m.updated_at is not None and m.updated_at < before))
    )


def page(items: list[ScoredMemory], query: MemoryQuery) -> list[ScoredMemory]:
    end = None if query.limit is None else query.offset + query.limit
    return items[query.offset : end]


def sort_memories(found: list[UserMemory], query: MemoryQuery) -> list[UserMemory]:
    """The query's order (ties by id, in the same direction) and page (past its ``after``
    first). A page near the top (the newest few of many) is picked with a bounded heap, in
    the order a full sort gives; ``found`` may be reordered."""
    if query.after is not None:
        found = [m for m in found if after_cursor(query, m)]
    key = attrgetter(query.sort_by, "memory_id")
    descending = query.sort_order == "desc"
    if query.limit is not None:
        count = query.offset + query.limit
        if count * _HEAP_BELOW <= len(found):
            best = heapq.nlargest if descending else heapq.nsmallest
            return best(count, found, key=key)[query.offset :]
    found.sort(key=key, reverse=descending)
    end = None if query.limit is None else query.offset + query.limit
    return found[query.offset : end]


def keyword_rank(
    found: Sequence[UserMemory], query: MemoryQuery, text: str, text_only: bool = False
) -> list[ScoredMemory]:
    """BM25 over the memories' text, topics and input (their text alone with
    ``text_only``: see UserSnapshot.keyword); those sharing no word are left out.
    ``found`` must already be the user's memories that pass the query's filters."""
    documents = [m.memory if text_only else _document(m) for m in found]
    scored = [
        ScoredMemory(m, score)
        for m, score in zip(found, bm25_scores(documents, text), strict=True)
        if score > 0
    ]
    scored.sort(key=lambda r: (-r.score, r.memory.memory_id or ""))
    return page(scored, query)


def semantic_rank(
    found: Sequence[tuple[UserMemory, Vector]],
    query: MemoryQuery,
    target: Vector,
    mean: Vector | None = None,
    centering: float = 0.0,
) -> list[ScoredMemory]:
    """Cosine similarity (unit vectors: a dot product) of each memory's vector to
    ``target``, best first, the target centred on ``mean`` by ``centering`` first (see
    :func:`~noted.retrieval.vectors.centred`). Vectors of another size than ``target``
    are left out."""
    usable = [(m, v) for m, v in found if v.shape == target.shape]
    if not usable or query.limit == 0:
        return []
    if centering and mean is not None:
        target = centred(target, mean, centering)
    scores = cosine_scores(np.stack([v for _, v in usable]), target)
    count = None if query.limit is None else query.offset + query.limit
    return [
        ScoredMemory(usable[i][0], float(scores[i]))
        for i in top_indices(scores, count)[query.offset :]
    ]


def _document(m: UserMemory) -> str:
    """What keyword search ranks of a memory: its text, topics and input."""
    return " ".join([m.memory, *m.topics, m.input or ""])


def _spliced(
    items: Sequence[_T], taken: npt.NDArray[np.intp], spots: Sequence[int], added: Sequence[_T]
) -> list[_T]:
    """``items`` without those at the positions ``taken`` (ascending), ``added[j]`` put in
    before the item at position ``spots[j]`` (ascending; ``len(items)``: at the end): a
    few cuts, the runs between them copied whole."""
    spliced: list[_T] = []
    start = j = 0
    for cut in [*taken.tolist(), len(items)]:
        while j < len(spots) and spots[j] <= cut:
            spliced.extend(items[start : spots[j]])
            spliced.append(added[j])
            start = spots[j]
            j += 1
        spliced.extend(items[start:cut])
        start = cut + 1
    return spliced


def _texts_size(documents: Sequence[str]) -> int:
    """What the memories of ``documents`` take (a rough guess): their objects and their
    texts twice, in the memories and in the documents."""
    return _MEMORY_BYTES * len(documents) + 2 * sum(map(len, documents))


def _id_of(memories: Sequence[UserMemory]) -> Callable[[np.intp | int], str]:
    return lambda p: memories[int(p)].memory_id or ""


def _field_of(
    memories: Sequence[UserMemory], field: SortField
) -> Callable[[np.intp | int], tuple[int, str]]:
    """The key of a position in ``memories`` by ``field``, then by id."""

    def key(p: np.intp | int) -> tuple[int, str]:
        memory = memories[int(p)]
        return (_micros(getattr(memory, field)), memory.memory_id or "")

    return key


def _micros(value: datetime | None) -> int:
    return _NO_TIME if value is None else to_micros(value)


def _reordered(
    order: npt.NDArray[np.intp],
    moved: npt.NDArray[np.intp],
    placed: npt.NDArray[np.intp],
    key: Callable[[np.intp | int], Any],
) -> npt.NDArray[np.intp]:
    """``order`` (positions in ``key``'s order) after a patch: each kept position at its
    memory's new one (``moved``, -1 for one taken out), the rows' new positions
    (``placed``) put in at their places by ``key`` (of a new position)."""
    kept = moved[order]
    kept = kept[kept >= 0]
    if not placed.size:
        return kept
    newcomers = sorted(placed.tolist(), key=key)
    spots = [bisect.bisect_left(kept, key(p), key=key) for p in newcomers]
    return np.insert(kept, spots, newcomers)


def _patched_vectors(
    found: UserVectors,
    generation: int,
    moved: npt.NDArray[np.intp],
    placed: npt.NDArray[np.intp],
    vectors: Sequence[tuple[str, Vector] | None],
    shape: Shape,
) -> UserVectors:
    """``found`` after a patch: each row at its memory's new position (``moved``, -1 for
    a memory taken out), then the rows' vectors of ``shape`` at theirs (``placed``), in
    position order. Rows added after all the others (a new memory, or its embedding) go
    into spare rows kept after the matrix, so the matrix is not copied."""
    keys = moved[found.keys]
    alive = keys >= 0
    added = sorted(
        (int(placed[i]), v)
        for i, item in enumerate(vectors)
        if item is not None
        for model, v in [item]
        if (model, v.size) == shape
    )
    if alive.all() and not added:
        if isinstance(found, _RoomyVectors):
            return _RoomyVectors(generation, keys, found.matrix, found.room)
        return UserVectors(generation, keys, found.matrix)
    if alive.all() and (not keys.size or added[0][0] > keys[-1]):
        fresh = np.array([p for p, _ in added], dtype=np.int64)
        room, matrix = _Room.appended(found, np.stack([v for _, v in added]))
        return _RoomyVectors(generation, np.concatenate([keys, fresh]), matrix, room)
    matrix = found.matrix[alive]
    keys = keys[alive]
    if added:
        keys = np.concatenate([keys, np.array([p for p, _ in added], dtype=keys.dtype)])
        matrix = np.concatenate([matrix, np.stack([v for _, v in added])])
    sort = np.argsort(keys, kind="stable")
    return UserVectors(generation, keys[sort].astype(np.int64, copy=False), matrix[sort])


def _no_vectors(generation: int, dimensions: int) -> UserVectors:
    empty = np.zeros((0, dimensions), dtype=np.float32)
    return UserVectors(generation, np.zeros(0, dtype=np.int64), empty)


class _Room:
    """A matrix with spare rows after the first ``used``, which belong to the newest
    vectors made from it: rows appended later go into the spare ones, and vectors made
    earlier keep their own length, never seeing them."""

    _lock = threading.Lock()

    def __init__(self, buffer: Vector, used: int) -> None:
        self.buffer = buffer
        self.used = used

    @classmethod
    def appended(cls, found: UserVectors, rows: Vector) -> tuple[_Room, Vector]:
        """A room holding ``found``'s rows then ``rows``, and the matrix of those: in
        ``found``'s own room when nothing was appended to it since (then it is taken, so
        only once), else in a new one with a sixteenth more rows than needed (64 at
        least)."""
        size = found.matrix.shape[0]
        end = size + rows.shape[0]
        room = found.room if isinstance(found, _RoomyVectors) else None
        with cls._lock:
            taken = room is not None and room.used == size and room.buffer.shape[0] >= end
            if room is not None and taken:
                room.used = end
        if room is None or not taken:
            buffer = np.empty((end + max(64, end // 16), found.matrix.shape[1]), np.float32)
            buffer[:size] = found.matrix
            room = cls(buffer, end)
        room.buffer[size:end] = rows
        return room, room.buffer[:end]


@dataclass(frozen=True, slots=True)
class _RoomyVectors(UserVectors):
    """Vectors whose matrix is the first rows of a :class:`_Room`'s."""

    room: _Room

    @property
    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.room.buffer.nbytes)


class UserSnapshot:
    """One user's memories as a store read them at ``generation``, in the store's order
    (which equal semantic scores keep), and per (model, dimensions) the vectors of those
    that have one (``keys`` are positions in ``memories``); ``vectors`` is None when they
    were not read. Searches rank it without reading the store again.

    Shared between threads, so never changed once made: :meth:`with_vectors` makes a new
    one, and a memory is copied before a caller gets it. The one thing made later is the
    keyword index, on the first keyword search (a race may build it twice; either serves).
    """

    __slots__ = (
        "_by_id",
        "_documents",
        "_index",
        "_means",
        "_orders",
        "_passed",
        "_text_bytes",
        "_texts",
        "generation",
        "loaded_at",
        "memories",
        "ordered_by",
        "token",
        "vectors",
    )

    def __init__(
        self,
        generation: int,
        memories: Sequence[UserMemory],
        vectors: Mapping[Shape, UserVectors] | None = None,
        *,
        documents: Sequence[str] | None = None,
        by_id: npt.NDArray[np.intp] | None = None,
        token: str = "",
        ordered_by: SortField | None = None,
        text_bytes: int | None = None,
    ) -> None:
        """``documents``, ``by_id`` and ``text_bytes``, when given, are what this would make
        of the memories (see :meth:`patched`). ``token`` is what the store's change log calls
        the write that made ``generation`` ("" when it does not say). ``ordered_by``: the
        field whose order, then the ids', the memories are in, if one is."""
        self.generation = generation
        self.token = token
        self.ordered_by = ordered_by
        self.loaded_at = time.monotonic()  # when read whole (a patch keeps it)
        self.memories = tuple(memories)
        self.vectors = vectors
        self._documents = tuple(documents or map(_document, self.memories))
        # memory_id order: keyword_rank's among equal scores
        if by_id is None:
            order = sorted(
                range(len(self.memories)), key=lambda k: self.memories[k].memory_id or ""
            )
            by_id = np.array(order, dtype=np.intp)
        self._by_id = by_id
        if text_bytes is None:
            text_bytes = _texts_size(self._documents)
        self._text_bytes = text_bytes
        self._index: KeywordIndex | PatchedIndex | None = None
        self._means: dict[Shape, Vector] = {}  # made on a centred search's first need
        # for text_only searches: indexes of the memories' texts, each of one query's
        # words only (the selection asks the same words at every turn), made on first need
        self._texts: dict[frozenset[str], KeywordIndex | PatchedIndex] = {}
        # a query's filters (the query without its order and page) -> which memories pass
        # them, made on first need (an agent scoped to its own memories asks the same
        # filter at every search)
        self._passed: dict[MemoryQuery, npt.NDArray[np.bool_]] = {}
        # a sort field -> the memories' positions by it, then by id (see _order)
        self._orders: dict[SortField, npt.NDArray[np.intp]] = {}

    def patched(
        self,
        generation: int,
        changed: Collection[str],
        rows: Sequence[UserMemory],
        vectors: Sequence[tuple[str, Vector] | None],
        order: Callable[[UserMemory], Any],
        *,
        every_shape: bool = False,
        token: str = "",
    ) -> UserSnapshot:
        """This snapshot at ``generation``, after writes to the memories ``changed`` names
        (ids): those are taken out, and ``rows`` (what those ids hold now that is the
        user's) put in at their places in ``order``, the store's order that the memories
        follow. ``vectors[i]`` is ``rows[i]``'s embedding (its model and vector) or None:
        it joins the vectors of its shape when the snapshot holds those (or any shape's,
        with ``every_shape``: the snapshot holds all of the user's vectors, and a shape no
        memory has any more goes); a keyword index
        already made is carried over with the rows' documents indexed beside it (see
        :class:`PatchedIndex`). Equal to the snapshot a full read at ``generation``
        makes, and ranks as it does."""
        old = self.memories
        taken = self._positions(changed)
        kept = np.delete(np.arange(len(old), dtype=np.intp), taken)
        incoming = sorted(range(len(rows)), key=lambda i: order(rows[i]))
        # each row's place among the kept memories (before the first not below it; the
        # order may know only the memories the store holds now)
        after = [
            bisect.bisect_left(kept, order(rows[i]), key=lambda k: order(old[int(k)]))
            for i in incoming
        ]
        spots = [int(kept[k]) if k < len(kept) else len(old) for k in after]  # old's terms
        arriving = [rows[i] for i in incoming]
        arriving_documents = [_document(m) for m in arriving]
        memories = _spliced(old, taken, spots, arriving)
        documents = _spliced(self._documents, taken, spots, arriving_documents)
        # each new position's source: an old position, or ~i for rows[i]
        arrived = np.invert(np.asarray(incoming, dtype=np.intp))
        where = np.insert(kept, np.asarray(after, dtype=np.intp), arrived)
        olds = where >= 0
        moved = np.full(len(old), -1, dtype=np.intp)  # each old position's new one, or -1
        moved[where[olds]] = np.flatnonzero(olds)
        placed = np.empty(len(rows), dtype=np.intp)  # each row's position
        placed[~where[~olds]] = np.flatnonzero(~olds)
        by_id = _reordered(self._by_id, moved, placed, _id_of(memories))
        held = dict(self.vectors or {})
        if every_shape and self.vectors is not None:
            for item in vectors:
                if item is not None and (item[0], item[1].size) not in held:
                    held[(item[0], item[1].size)] = _no_vectors(self.generation, item[1].size)
        shapes = {
            shape: _patched_vectors(found, generation, moved, placed, vectors, shape)
            for shape, found in held.items()
        }
        if every_shape:  # as a full read of every shape: only those some memory has
            shapes = {shape: found for shape, found in shapes.items() if found.keys.size}
        gone = [self._documents[int(k)] for k in taken]
        text_bytes = self._text_bytes + _texts_size(arriving_documents) - _texts_size(gone)
        twin = UserSnapshot(
            generation,
            memories,
            None if self.vectors is None else shapes,
            documents=documents,
            by_id=by_id,
            token=token,
            ordered_by=self.ordered_by,
            text_bytes=text_bytes,
        )
        twin.loaded_at = self.loaded_at
        for field, kept_order in list(self._orders.items()):  # (a copy, as for texts below)
            key = _field_of(memories, field)
            twin._orders[field] = _reordered(kept_order, moved, placed, key)
        if self._index is not None:
            added = [documents[int(p)] for p in placed]
            twin._index = PatchedIndex.patch(
                self._index, moved, added, placed, len(memories), every=documents
            )
        texts = [memories[int(p)].memory for p in placed]
        # (a copy: a search of this snapshot on another thread may add one meanwhile)
        for words, index in list(self._texts.items()):  # never None: of a few words
            patched = PatchedIndex.patch(index, moved, texts, placed, len(memories), words)
            if patched is not None:
                twin._texts[words] = patched
        return twin

    def _positions(self, ids: Collection[str]) -> npt.NDArray[np.intp]:
        """The positions of the memories ``ids`` names (those it holds), ascending."""
        id_of = _id_of(self.memories)
        found: list[int] = []
        for memory_id in ids:
            spot = bisect.bisect_left(self._by_id, memory_id, key=id_of)
            if spot < len(self._by_id) and id_of(self._by_id[spot]) == memory_id:
                found.append(int(self._by_id[spot]))
        return np.array(sorted(found), dtype=np.intp)

    @property
    def patchable(self) -> bool:
        """Whether a store that patches snapshots with what its change log names may
        patch this one: for ``PATCHED_FOR`` seconds after it was read whole. A write
        whose log entry was lost (a process stopped between the two) is then read by
        the next full read after that, at the user's next change."""
        return time.monotonic() - self.loaded_at < PATCHED_FOR

    def with_vectors(self, shape: Shape, found: UserVectors) -> UserSnapshot:
        """This snapshot with ``found`` as its vectors of ``shape`` too (the rest shared)."""
        twin = copy.copy(self)
        twin.vectors = {**(self.vectors or {}), shape: found}
        means = list(self._means.items())  # (a centred search may add one meanwhile)
        twin._means = {kept: mean for kept, mean in means if kept != shape}
        return twin

    @property
    def nbytes(self) -> int:
        """Roughly what the snapshot takes in the process."""
        vectors = sum(v.nbytes for v in (self.vectors or {}).values())
        texts = sum(index.nbytes for index in list(self._texts.values()))
        masks = sum(passed.nbytes for passed in list(self._passed.values()))
        masks += sum(order.nbytes for order in list(self._orders.values()))
        index = 0 if self._index is None else self._index.nbytes
        return self._text_bytes + vectors + texts + masks + index

    def keyword(self, query: MemoryQuery, text: str, text_only: bool = False) -> list[ScoredMemory]:
        """keyword_rank's answer (BM25 of the filtered memories' documents, those sharing
        no word left out, equal scores by memory_id) from the snapshot's keyword index.
        With ``text_only``, BM25 of the memories' texts alone, from an index of the texts
        made for the query's words only and kept with the snapshot (the selection asks
        the same words at every turn; patched with the snapshot as the other is)."""
        index = self._text_index(text) if text_only else self._keyword_index()
        scores = index.scores(text, self._passing(query))[self._by_id]
        scores[scores <= 0] = -np.inf  # those sharing no word are left out
        return self._best(scores, self._by_id, query)

    def _keyword_index(self) -> KeywordIndex | PatchedIndex:
        """The index of the memories' documents, made on first need."""
        index = self._index
        if index is None:
            with _BUILDING:  # searches side by side build it once
                index = self._index
                if index is None:
                    index = self._index = KeywordIndex(self._documents)
        return index

    def _text_index(self, text: str) -> KeywordIndex | PatchedIndex:
        """The index of the memories' texts for the words of ``text``, made on first need."""
        words = frozenset(query_stems(text))
        index = self._texts.get(words)
        if index is None:
            with _BUILDING:
                index = self._texts.get(words)
                if index is None:
                    if len(self._texts) >= _TEXT_SEARCHES_KEPT:
                        self._texts.clear()
                    texts = [m.memory for m in self.memories]
                    index = self._texts[words] = KeywordIndex(texts, words=words)
        return index

    def semantic(
        self, query: MemoryQuery, target: Vector, model: str, centering: float = 0.0
    ) -> list[ScoredMemory]:
        """semantic_rank's answer for the memories that pass the filters and have a vector
        by ``model`` of the target's size, in the snapshot's order: one product of all the
        vectors, the filtered-out ones scored -inf, which ``top_indices`` skips; the
        target centred on all of those vectors by ``centering`` first."""
        shape = (model, target.size)
        found = (self.vectors or {}).get(shape)
        if found is None:
            return []
        if centering:
            mean = self._means.get(shape)
            if mean is None:  # two threads may both make it: either serves
                mean = self._means[shape] = mean_direction(found.matrix)
            target = centred(target, mean, centering)
        scores = cosine_scores(found.matrix, target)
        passing = self._passing(query)
        if passing is not None:
            scores[~passing[found.keys]] = -np.inf
        return self._best(scores, found.keys, query)

    def count(self, query: MemoryQuery) -> int:
        """How many memories pass the query's filters (all when it has none)."""
        passing = self._passing(query)
        return len(self.memories) if passing is None else int(np.count_nonzero(passing))

    def listed(self, query: MemoryQuery) -> list[UserMemory]:
        """The query's page of the memories that pass its filters, in its order (equal
        times by id, in the same direction), as :func:`sort_memories` gives it: copies."""
        order = self._order(query.sort_by)
        if query.after is not None:
            order = self._past(order, query)
        passing = self._passing(query)
        if passing is not None:
            order = order[passing[order]]
        if query.sort_order == "desc":
            order = order[::-1]
        end = None if query.limit is None else query.offset + query.limit
        return [self.memories[int(k)].copy() for k in order[query.offset : end]]

    def _past(self, order: npt.NDArray[np.intp], query: MemoryQuery) -> npt.NDArray[np.intp]:
        """The part of ``order`` (:meth:`_order`'s by the query's field) that comes after
        the query's ``after`` in its direction, found by bisection."""
        assert query.after is not None
        memories, field = self.memories, query.sort_by
        cursor = (to_micros(query.after[0]), query.after[1])

        def place(k: np.intp) -> tuple[int, str]:
            m = memories[int(k)]
            return _micros(getattr(m, field)), m.memory_id or ""

        if query.sort_order == "desc":
            return order[: bisect.bisect_left(order, cursor, key=place)]
        return order[bisect.bisect_right(order, cursor, key=place) :]

    def _order(self, field: SortField) -> npt.NDArray[np.intp]:
        """The memories' positions by ``field``, then by id, ascending: kept with the
        snapshot (and patched with it) unless the memories are in that order."""
        count = len(self.memories)
        if field == self.ordered_by:
            return np.arange(count, dtype=np.intp)
        order = self._orders.get(field)
        if order is None:  # two threads may both make it: either serves
            times = (_micros(getattr(m, field)) for m in self.memories)
            stamps = np.fromiter(times, dtype=np.int64, count=count)
            ranks = np.empty(count, dtype=np.intp)  # each position's place by id
            ranks[self._by_id] = np.arange(count, dtype=np.intp)
            order = np.lexsort((ranks, stamps)).astype(np.intp, copy=False)
            order.flags.writeable = False
            self._orders[field] = order
        return order

    def _passing(self, query: MemoryQuery) -> npt.NDArray[np.bool_] | None:
        """Which memories pass the query's filters (read-only, kept with the snapshot for
        the next search with the same filters); None when it has none."""
        if not query.filtered:
            return None
        key = replace(
            query,
            topics=tuple(query.topics),  # (a caller may give a list)
            sort_by="updated_at",
            sort_order="desc",
            limit=None,
            offset=0,
            after=None,
        )
        passed = self._passed.get(key)
        if passed is None:  # two threads may both make it: either serves
            passing = (matches(query, m) for m in self.memories)
            passed = np.fromiter(passing, dtype=np.bool_, count=len(self.memories))
            passed.flags.writeable = False
            if len(self._passed) >= _FILTERS_KEPT:
                self._passed.clear()
            self._passed[key] = passed
        return passed

    def _best(
        self,
        scores: npt.NDArray[np.floating],
        positions: npt.NDArray[np.integer],
        query: MemoryQuery,
    ) -> list[ScoredMemory]:
        """The query's page of the best finite ``scores``, each the score of the memory at
        ``positions[i]``, equal ones in the order of ``positions``; copies of the memories."""
        count = None if query.limit is None else query.offset + query.limit
        return [
            ScoredMemory(self.memories[int(positions[i])].copy(), float(scores[i]))
            for i in top_indices(scores, count)[query.offset :]
        ]


class SnapshotCache:
    """The most recently searched users' snapshots, within ``max_bytes`` in all (by their
    estimates), the least recently used dropped first. Thread-safe. A user who alone
    exceeds it is not kept.

    A snapshot grows when it builds its keyword index, after it was put here: each entry
    keeps the size it was charged, and :meth:`get` charges the difference, so the total
    never drifts from what the entries held.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[UserSnapshot, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._refreshing = [threading.Lock() for _ in range(_REFRESH_LOCKS)]

    def refreshing(self, user_id: str) -> threading.Lock:
        """The lock a store holds while it brings the user's snapshot up to date, so that
        searches of one selection, run side by side after a write, read the change once:
        the second finds the first's snapshot (one lock per user id's hash, among a few)."""
        return self._refreshing[hash(user_id) % _REFRESH_LOCKS]

    def get(self, user_id: str, generation: int | None = None) -> UserSnapshot | None:
        """The user's snapshot (if read at ``generation``, when given)."""
        with self._lock:
            entry = self._entries.get(user_id)
            if entry is None or (generation is not None and entry[0].generation != generation):
                return None
            snapshot, charged = entry
            self._entries.move_to_end(user_id)
            if snapshot.nbytes != charged:
                self._keep(user_id, snapshot)
            return snapshot

    def put(self, user_id: str, snapshot: UserSnapshot) -> None:
        with self._lock:
            self._keep(user_id, snapshot)

    def _keep(self, user_id: str, snapshot: UserSnapshot) -> None:
        """Hold ``snapshot`` as the user's, most recently used, at its size now; then drop
        the least recently used while over budget. Under the lock."""
        old = self._entries.pop(user_id, None)
        if old is not None:
            self._bytes -= old[1]
        size = snapshot.nbytes
        if size > self.max_bytes:
            return
        self._entries[user_id] = (snapshot, size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes
