"""MongoDb's searches: the server's ``$text`` and Atlas ``$vectorSearch`` when it has
them, and each user's memories loaded for the searches run in Python (see MongoDb's notes
on the search cache)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final, Protocol

from noted.db._client_search import SnapshotCache, UserSnapshot
from noted.db.base import MemoryQuery, QueryVector, ScoredMemory
from noted.db.mongodb.docs import memories_of, query_filter, user_vectors
from noted.db.mongodb.server import NO_VECTOR, VectorIndex, atlas_pipeline

if TYPE_CHECKING:
    from pymongo.collection import Collection

__all__ = ["SearchedCollections", "atlas_search", "load_snapshot", "text_query"]

logger = logging.getLogger("noted.db.mongodb")

Doc = dict[str, Any]

# A user's memories as searches cache them: oldest first (the user_created index, reversed)
_LOAD_ORDER: Final = [("created_at", 1), ("_id", 1)]


class SearchedCollections(Protocol):
    """Where a store keeps its memories and each user's generation."""

    @property
    def memories(self) -> Collection[Doc]: ...

    @property
    def generations(self) -> Collection[Doc]: ...


def load_snapshot(
    db: SearchedCollections, cache: SnapshotCache, user_id: str, *, vectors: bool
) -> UserSnapshot:
    """The user's memories, with all their vectors when ``vectors``: the cached snapshot
    while it was loaded at the user's generation (one find_one), else loaded now and
    cached under the generation read before loading."""
    found = db.generations.find_one({"_id": user_id})
    generation = 0 if found is None else int(found["generation"])
    cached = cache.get(user_id, generation)
    if cached is not None and (cached.vectors is not None or not vectors):
        return cached
    cursor = db.memories.find({"user_id": user_id}, None if vectors else NO_VECTOR)
    docs = list(cursor.sort(_LOAD_ORDER))
    shapes = user_vectors(generation, docs) if vectors else None
    snapshot = UserSnapshot(generation, memories_of(docs), shapes)
    cache.put(user_id, snapshot)
    return snapshot


def text_query(
    memories: Collection[Doc], query: MemoryQuery, words: list[str], where: str
) -> list[ScoredMemory] | None:
    """The server's $text answer, or None if the server refuses $text (said once here;
    the store then searches in Python from now on). The words hold letters and digits
    only: no quote, ``-`` or phrase syntax."""
    from pymongo.errors import OperationFailure

    score = {"$meta": "textScore"}
    try:
        cursor = (
            memories.find(
                {**query_filter(query), "$text": {"$search": " ".join(words)}},
                {**NO_VECTOR, "_score": score},
            )
            .sort([("_score", score), ("_id", 1)])
            .skip(query.offset)
        )
        if query.limit is not None:
            cursor = cursor.limit(query.limit)
        docs = list(cursor)
    except OperationFailure as exc:
        logger.warning(
            "MongoDB at %s refused a $text query (%s): keyword search runs BM25 in Python "
            "from now on",
            where,
            exc,
        )
        return None
    found = memories_of(docs)
    return [ScoredMemory(m, float(doc["_score"])) for m, doc in zip(found, docs, strict=True)]


def atlas_search(
    memories: Collection[Doc],
    index: VectorIndex,
    query: MemoryQuery,
    target: QueryVector,
    model: str,
    where: str,
) -> list[ScoredMemory] | None:
    """The best memories by Atlas $vectorSearch, or None if it fails (said once here; the
    store then searches in Python from now on). Atlas scores cosine and dot product as
    (1 + x) / 2; they are given back as x."""
    from pymongo.errors import OperationFailure

    pipeline = atlas_pipeline(index, query, target, model)
    try:
        docs = list(memories.aggregate(pipeline))[query.offset :]
    except OperationFailure as exc:
        logger.warning(
            "MongoDB at %s refused $vectorSearch (%s): semantic search runs in Python from now on",
            where,
            exc,
        )
        return None
    return [
        ScoredMemory(m, 2.0 * float(doc["_score"]) - 1.0)
        for m, doc in zip(memories_of(docs), docs, strict=True)
    ]
