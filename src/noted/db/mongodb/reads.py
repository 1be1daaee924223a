"""MongoDb's reads: listings, counts, keyword and semantic search (in the server where it
can, else over the search cache), the memories still to embed, history, topics and stats.
The writes are in :mod:`.store`."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Final

from noted._time import from_micros
from noted.audit import MemoryEvent
from noted.db._client_search import SnapshotCache, UserSnapshot
from noted.db.base import MemoryQuery, QueryVector, ScoredMemory
from noted.db.core import PageRules, keyword_user
from noted.db.mongodb.docs import (
    Doc,
    event_of,
    memories_of,
    past_cursor,
    query_filter,
    unembedded,
    unembedded_in_order,
)
from noted.db.mongodb.search import (
    atlas_search,
    batch_written,
    kept_snapshot,
    load_snapshot,
    text_query,
)
from noted.db.mongodb.server import (
    NO_VECTOR,
    Collections,
    SchemaWatch,
    VectorIndex,
    atlas_can_answer,
    list_vector_index,
)
from noted.retrieval.ranking import fts_terms
from noted.retrieval.vectors import check_centering, search_target
from noted.schema import UserMemory, UserStats

if TYPE_CHECKING:
    from pymongo.collection import Collection
    from pymongo.cursor import Cursor

__all__ = ["MongoReads"]

# Memory ids per query of their histories: a query is one BSON document (16 MB at most).
_IDS_PER_QUERY: Final = 10_000


def _sorted(
    db: Collections, match: Doc, query: MemoryQuery, skip: int, limit: int | None
) -> Cursor[Doc]:
    """The memories ``match`` finds, in the query's order (ties by ``_id``), ``skip`` of
    them skipped and at most ``limit`` read."""
    direction = -1 if query.sort_order == "desc" else 1
    order = [(query.sort_by, direction), ("_id", direction)]
    cursor = db.memories.find(match, NO_VECTOR).sort(order).skip(skip)
    return cursor if limit is None else cursor.limit(limit)


class MongoReads(PageRules):
    """The read methods of :class:`~noted.db.base.MemoryStore` for MongoDb."""

    cache: SnapshotCache
    _where: str
    _text_search: bool  # whether the server's $text answers keyword searches
    schema_watch: SchemaWatch  # when the store checks its indexes again
    _vector_checked: bool
    _vector_index: VectorIndex | None

    def _db(self) -> AbstractContextManager[Collections]:
        raise NotImplementedError

    def get_memory(self, memory_id: str, user_id: str) -> UserMemory | None:
        with self._db() as db:
            doc = db.memories.find_one({"_id": memory_id, "user_id": user_id}, NO_VECTOR)
        return None if doc is None else memories_of([doc])[0]

    def get_memories(self, memory_ids: Sequence[str], user_id: str) -> dict[str, UserMemory]:
        """The memories among ``memory_ids`` that ``user_id`` has, by id: what
        :meth:`get_memory` answers for each, read many at a time."""
        found: dict[str, UserMemory] = {}
        for start in range(0, len(memory_ids), _IDS_PER_QUERY):
            chunk = list(dict.fromkeys(memory_ids[start : start + _IDS_PER_QUERY]))
            wanted = {"_id": {"$in": chunk}, "user_id": user_id}
            with self._db() as db:
                docs = list(db.memories.find(wanted, NO_VECTOR))
            found.update((m.memory_id, m) for m in memories_of(docs) if m.memory_id is not None)
        return found

    def _kept(self, db: Collections, query: MemoryQuery) -> UserSnapshot | None:
        """The snapshot of the query's user a search keeps, at the user's generation now
        (see kept_snapshot); None when there is none, the query spans every user, or a
        batch is being written here (its generations move at its end)."""
        if query.user_id is None or batch_written.get() is not None:
            return None
        return kept_snapshot(db, self.cache, query.user_id)

    def list_memories(self, query: MemoryQuery) -> list[UserMemory]:
        """From the user's kept snapshot while a search keeps one (the agent's newest
        memories, at every turn: the server sorts all of a user's memories where its
        index cannot), else from the server."""
        if query.limit == 0:  # a cursor's limit(0) means no limit
            return []
        with self._db() as db:
            snapshot = self._kept(db, query)
            if snapshot is not None:
                return snapshot.listed(query)
            if query.after is not None:
                return self._past_cursor(db, query)
            cursor = _sorted(db, query_filter(query), query, query.offset, query.limit)
            return memories_of(cursor)

    @staticmethod
    def _past_cursor(db: Collections, query: MemoryQuery) -> list[UserMemory]:
        """The page past the query's ``after``: the rest of the memories of the cursor's
        time (their ids compared here: usually none or a few), then those past that time,
        read from the index at the cursor (see past_cursor)."""
        assert query.after is not None
        same, beyond = past_cursor(query)
        memory_id, desc = query.after[1], query.sort_order == "desc"
        found = db.memories.find(same, NO_VECTOR)
        past = [d for d in found if d["_id"] != memory_id and (d["_id"] < memory_id) == desc]
        tied = sorted(past, key=lambda d: str(d["_id"]), reverse=desc)
        end = None if query.limit is None else query.offset + query.limit
        page = tied[query.offset : end]
        wanted = None if query.limit is None else query.limit - len(page)
        if wanted == 0:
            return memories_of(page)
        skip = max(0, query.offset - len(tied))
        return memories_of(page) + memories_of(_sorted(db, beyond, query, skip, wanted))

    def count_memories(self, query: MemoryQuery) -> int:
        with self._db() as db:
            snapshot = self._kept(db, query)
            if snapshot is not None:
                return snapshot.count(query)
            return db.memories.count_documents(query_filter(query))

    def keyword_search(
        self, query: MemoryQuery, text: str, *, text_only: bool = False
    ) -> list[ScoredMemory]:
        """The server's text index ranks the words, or BM25 over the user's cached
        snapshot where it cannot: with ``text_only`` (a text index covers the memory's
        topics and input too) or when the server refused $text."""
        user_id = keyword_user(query)
        words = fts_terms(text)
        if not words or query.limit == 0:
            return []
        with self._db() as db:
            if self._text_search and not text_only:
                found = text_query(db.memories, query, words, self._where)
                if found is not None:
                    return found
                self._text_search = False
                self.schema_watch.doubt()  # the text index may be gone with the others
            snapshot = load_snapshot(db, self.cache, user_id, vectors=False)
        return snapshot.keyword(query, text, text_only)

    def semantic_search(
        self, query: MemoryQuery, vector: QueryVector, model: str, centering: float = 0.0
    ) -> list[ScoredMemory]:
        """Atlas Vector Search where the collection has an index that can answer (the
        query as it is: the index holds no user's mean, so ``centering`` is not applied
        there), else cosine over the user's cached snapshot."""
        user_id, target = search_target(query.user_id, vector)
        centering = check_centering(centering)
        if query.limit == 0:
            return []
        with self._db() as db:
            index = self._atlas_index(db.memories)
            if index is not None and atlas_can_answer(index, query, target.size):
                found = atlas_search(db.memories, index, query, target, model, self._where)
                if found is not None:
                    return found
                self._vector_index = None
            snapshot = load_snapshot(db, self.cache, user_id, vectors=True)
        return snapshot.semantic(query, target, model, centering)

    def _atlas_index(self, memories: Collection[Doc]) -> VectorIndex | None:
        """The collection's usable Atlas vector index, looked up once per object."""
        if not self._vector_checked:
            self._vector_index = list_vector_index(memories, self._where)
            self._vector_checked = True
        return self._vector_index

    def _unembedded(self, user_id: str | None, model: str, limit: int | None) -> list[UserMemory]:
        with self._db() as db:
            cursor = db.memories.find(unembedded_in_order(user_id, model), NO_VECTOR).sort(
                [("created_at", 1), ("_id", 1)]
            )
            if limit is not None:
                cursor = cursor.limit(limit)
            return memories_of(cursor)

    def count_memories_to_embed(self, user_id: str | None, model: str) -> int:
        """For one user, from the cached snapshot (every search asks): its memories less
        those with a vector made by ``model``."""
        with self._db() as db:
            if user_id is None:
                return db.memories.count_documents(unembedded(None, model))
            snapshot = load_snapshot(db, self.cache, user_id, vectors=True)
            embedded = sum(
                found.keys.size
                for (made_by, _), found in (snapshot.vectors or {}).items()
                if made_by == model
            )
            return len(snapshot.memories) - embedded

    def get_memory_history(self, memory_id: str, user_id: str) -> list[MemoryEvent]:
        with self._db() as db:
            docs = list(
                db.events.find({"user_id": user_id, "memory_id": memory_id}).sort(
                    [("created_at", 1), ("seq", 1)]
                )
            )
        return [event_of(doc) for doc in docs]

    def last_deletions(self, memory_ids: Sequence[str], user_id: str | None) -> dict[str, datetime]:
        """When each of ``user_id``'s memories among ``memory_ids`` was last deleted (None:
        each memory of any user's with that id): the time of its latest ``"delete"``
        event, for those that have one."""
        found: dict[str, datetime] = {}
        for start in range(0, len(memory_ids), _IDS_PER_QUERY):
            chunk = list(memory_ids[start : start + _IDS_PER_QUERY])
            match: Doc = {"memory_id": {"$in": chunk}, "event": "delete"}
            if user_id is not None:
                match["user_id"] = user_id
            pipeline: list[Doc] = [
                {"$match": match},
                {"$group": {"_id": "$memory_id", "at": {"$max": "$created_at"}}},
            ]
            with self._db() as db:
                docs = list(db.events.aggregate(pipeline))
            found.update((str(doc["_id"]), from_micros(int(doc["at"]))) for doc in docs)
        return found

    def get_topics(self, user_id: str | None) -> list[str]:
        with self._db() as db:
            topics = db.memories.distinct("topics", {} if user_id is None else {"user_id": user_id})
            if all(type(t) is str for t in topics) and not db.memories.find_one(
                self._damaged_topics(user_id), {"_id": 1}
            ):
                return sorted(topics)
            mine = {} if user_id is None else {"user_id": user_id}
            docs = list(db.memories.find(mine, NO_VECTOR))
        return sorted({t for m in memories_of(docs) for t in m.topics})  # damaged: none

    @staticmethod
    def _damaged_topics(user_id: str | None) -> Doc:
        """A filter for the memories of ``user_id`` (everyone's for None) whose topics
        are stored as a string (a hand-edited document), which ``distinct`` gives as if
        it were a topic: a string, and not an array with a first element. Topics stored
        as anything else not a list of strings give ``distinct`` something not a string."""
        found: Doc = {"topics": {"$type": "string"}, "topics.0": {"$exists": False}}
        if user_id is not None:
            found["user_id"] = user_id
        return found

    def _user_stats(self, limit: int | None, offset: int) -> list[UserStats]:
        pipeline: list[Doc] = [
            {"$group": {"_id": "$user_id", "count": {"$sum": 1}, "last": {"$max": "$updated_at"}}},
            {"$sort": {"last": -1, "_id": 1}},
        ]
        if offset:
            pipeline.append({"$skip": offset})
        if limit is not None:
            pipeline.append({"$limit": limit})
        with self._db() as db:
            docs = list(db.memories.aggregate(pipeline))
        return [UserStats(d["_id"], int(d["count"]), from_micros(d["last"])) for d in docs]
